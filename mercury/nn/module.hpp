// mercury/nn/module.hpp — the Module interface, the per-call Context, and Sequential.
//
// Contract
// - A Module declares its parameters in its constructor (ParamStore::declare) and holds ids.
// - forward(ctx, x) builds the graph on ctx.tape. Mode is per call, not module state:
//   ctx.training selects batch statistics / dropout; grad recording follows the tape
//   (NoGradGuard). Score mode = training false + no grad: it never writes weights, BN running
//   statistics or optimizer state.
// - Context::hooks (optional) sees every parameter read of a forward pass, with the slab range
//   and the tape position of its leaf, before the leaf is made: a distributed step waits there
//   for a layer's parameters still on the wire (TicTac), and learns where each layer's gradient
//   becomes final in the backward sweep (the StepHooks are also the tape's SweepObserver).
// - Modules are immutable after construction, so one model can be scored on one thread while
//   another thread trains it, as long as each thread uses its own Tape and parameter view.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mercury/autograd/tape.hpp"
#include "mercury/nn/params.hpp"

namespace mercury::nn {

// Hooks into one training step (forward parameter reads, backward progress).
class StepHooks : public SweepObserver {
 public:
  // Parameter floats [offset, offset + numel) of the slab are about to be read; their leaf will
  // be tape position `leaf`.
  virtual void before_param(int64_t offset, int64_t numel, std::size_t leaf) = 0;

 protected:
  ~StepHooks() = default;
};

struct Context {
  Tape& tape;
  const ParamStore& params;
  bool training = true;
  std::mt19937_64* rng = nullptr;  // dropout; may be null when nothing random runs
  // Optional snapshot of the parameter slab (same layout) to read weights from instead of the
  // live slab: lets a scoring thread use a stable copy while training continues.
  const float* weights = nullptr;
  // BN running statistics to update in training mode (null: use the store's buffers).
  float* buffers = nullptr;
  StepHooks* hooks = nullptr;  // see the contract above; null: no hooks

  // A tape leaf for parameter `id`: value from the snapshot or the live slab; gradient
  // accumulates into the gradient slab when grad is enabled.
  Var param(ParamId id) const {
    if (hooks) {
      const ParamSpec& p = params.params()[id];
      hooks->before_param(p.offset, p.shape.numel(), tape.size());
    }
    Tensor v = params.value(id);
    if (weights) v.data = const_cast<float*>(weights) + params.params()[id].offset;
    return tape.leaf(v, tape.grad_enabled() ? params.grad(id) : Tensor{}, true);
  }
  Tensor buffer(ParamId id) const {
    Tensor b = params.buffer(id);
    if (buffers) b.data = buffers + params.buffer_specs()[id].offset;
    return b;
  }
};

class Module {
 public:
  virtual ~Module() = default;
  virtual Var forward(Context& ctx, Var x) = 0;
  virtual std::string describe() const = 0;
};

using ModulePtr = std::unique_ptr<Module>;

class Sequential : public Module {
 public:
  Sequential() = default;
  template <class M, class... Args>
  M& add(Args&&... args) {
    auto m = std::make_unique<M>(std::forward<Args>(args)...);
    M& ref = *m;
    layers_.push_back(std::move(m));
    return ref;
  }
  void push(ModulePtr m) { layers_.push_back(std::move(m)); }
  // Tells the tape what the layers leave behind: every node a layer made except its output, and
  // the previous layer's output once the next has consumed it, has no further consumers.
  Var forward(Context& ctx, Var x) override {
    Tape& t = ctx.tape;
    const std::size_t first = t.size();
    for (auto& l : layers_) {
      const std::size_t start = t.size();
      Var y = l->forward(ctx, x);
      t.release_made_since(start, y);
      if (x != y && t.position(x) >= first && t.position(x) < start) t.release(x);
      x = y;
    }
    return x;
  }
  std::string describe() const override {
    std::string s = "Sequential(";
    for (std::size_t k = 0; k < layers_.size(); ++k) s += (k ? ", " : "") + layers_[k]->describe();
    return s + ")";
  }
  std::size_t size() const { return layers_.size(); }

 private:
  std::vector<ModulePtr> layers_;
};

}  // namespace mercury::nn
