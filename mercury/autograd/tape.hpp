// mercury/autograd/tape.hpp — reverse-mode automatic differentiation on a flat tape.
//
// Contract
// - Ops (mercury/autograd/ops_*.hpp) append Nodes in execution order; the tape is therefore a
//   topological order and backward() is one reverse sweep. Each Node holds its forward value,
//   its gradient (allocated lazily, zeroed, from the tape's arena) and a plain function pointer
//   for its backward rule plus a few saved tensors and scalars — no std::function, no heap.
// - Leaves wrap parameters: their `grad` points into the gradient slab, so backward ACCUMULATES
//   straight into the slab (zero it between steps; micro-batches accumulate for free).
// - When grad is disabled (NoGradGuard, or score mode) ops record nothing they would need for
//   backward; scoring thus costs one forward pass.
// - reset() recycles nodes and the arena: a step of the same shapes allocates nothing.
// - backward() may take a SweepObserver, told after each node of the reverse sweep that every
//   node from that tape position on has run its backward rule: a leaf created at position L has
//   its final gradient once position L + 1 is reported (its consumers come after it), which is
//   how a distributed step ships a layer's gradient while backward is still running (TicTac).
// - Not thread-safe: one Tape per thread of work.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/tensor/arena.hpp"

namespace mercury {

class Tape;
struct Node;
using Var = Node*;
using BackwardFn = void (*)(Node& node, Tape& tape);

// Progress of a backward sweep: swept(k) means every node at tape position >= k is done.
class SweepObserver {
 public:
  virtual void swept(std::size_t k) = 0;

 protected:
  ~SweepObserver() = default;
};

struct Node {
  Tensor value;
  Tensor grad;  // undefined until something flows into it
  BackwardFn backward = nullptr;
  Node* in[4] = {nullptr, nullptr, nullptr, nullptr};
  bool requires_grad = false;
  // Saved state for backward: tensors, scalars, and a pointer to op attributes that outlive the
  // tape (a module's config, say).
  Tensor saved[4];
  float f[4] = {0, 0, 0, 0};
  int64_t i[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const void* ctx = nullptr;

  const Shape& shape() const { return value.shape; }
  int64_t numel() const { return value.numel(); }
};

class Tape {
 public:
  explicit Tape(int64_t arena_floats = 0) : arena_(arena_floats) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  bool grad_enabled() const { return grad_enabled_; }
  void set_grad_enabled(bool on) { grad_enabled_ = on; }
  Arena& arena() { return arena_; }

  // A leaf: `value` (and `grad`, if given) are views into memory the caller owns.
  Var leaf(Tensor value, Tensor grad = {}, bool requires_grad = false) {
    Node& n = new_node();
    n.value = value;
    n.grad = grad;
    n.requires_grad = requires_grad && grad_enabled_;
    return &n;
  }
  // A constant input copied into the arena (e.g. a batch of samples).
  Var input(Shape s, bool requires_grad = false) {
    Node& n = new_node();
    n.value = arena_.tensor(s);
    n.requires_grad = requires_grad && grad_enabled_;
    return &n;
  }

  // An op's output node. It needs grad if grad is enabled and any input needs it; only then is
  // `fn` recorded.
  Var op(Shape out_shape, BackwardFn fn, std::initializer_list<Var> inputs) {
    Node& n = new_node();
    n.value = arena_.tensor(out_shape);
    int k = 0;
    bool rg = false;
    for (Var v : inputs) {
      if (k == 4) throw std::logic_error("Tape::op: at most 4 inputs");
      n.in[k++] = v;
      rg = rg || (v && v->requires_grad);
    }
    n.requires_grad = rg && grad_enabled_;
    n.backward = n.requires_grad ? fn : nullptr;
    return &n;
  }
  // Same as op() but the output aliases an existing tensor (reshape/flatten views).
  Var alias(Tensor value, BackwardFn fn, Var input) {
    Node& n = new_node();
    n.value = value;
    n.in[0] = input;
    n.requires_grad = input->requires_grad && grad_enabled_;
    n.backward = n.requires_grad ? fn : nullptr;
    return &n;
  }

  // The gradient buffer of v, allocated and zeroed on first use.
  Tensor& grad(Var v) {
    if (!v->grad.defined()) v->grad = arena_.zeros(v->value.shape);
    return v->grad;
  }
  // Scratch memory valid until reset().
  Tensor scratch(Shape s) { return arena_.tensor(s); }

  // Seeds d(root) = seed (same shape as root) and sweeps the tape backwards.
  void backward(Var root, const Tensor& seed, SweepObserver* observer = nullptr) {
    if (!root->requires_grad) {
      throw std::logic_error(
          "Tape::backward: the root does not depend on any parameter "
          "that requires grad (was it built under NoGradGuard?)");
    }
    if (seed.numel() != root->numel()) {
      throw std::invalid_argument("Tape::backward: seed has " + std::to_string(seed.numel()) +
                                  " elements, root " + root->value.shape.str());
    }
    Tensor& g = grad(root);
    for (int64_t j = 0; j < g.numel(); ++j) g.data[j] += seed.data[j];
    sweep(root, observer);
  }
  // Seeds d(root) = 1 for a scalar root.
  void backward(Var root) {
    if (root->numel() != 1) {
      throw std::invalid_argument("Tape::backward(root): root must be a scalar, got " +
                                  root->value.shape.str());
    }
    float one = 1.0f;
    backward(root, Tensor(&one, Shape{1}));
  }

  // Forgets every node and frees the arena for the next step.
  void reset() {
    used_ = 0;
    arena_.reset();
  }
  std::size_t size() const { return used_; }

 private:
  static constexpr std::size_t kChunk = 256;

  Node& new_node() {
    const std::size_t chunk = used_ / kChunk, slot = used_ % kChunk;
    if (chunk == chunks_.size()) chunks_.push_back(std::make_unique<Node[]>(kChunk));
    ++used_;
    Node& n = chunks_[chunk][slot];
    n = Node{};
    return n;
  }
  Node& at(std::size_t k) { return chunks_[k / kChunk][k % kChunk]; }

  void sweep(Var root, SweepObserver* observer) {
    // Nodes after root cannot contribute to it; start there and walk to the beginning.
    std::size_t k = used_;
    while (k > 0 && &at(k - 1) != root) --k;
    for (; k > 0; --k) {
      Node& n = at(k - 1);
      if (n.backward && n.grad.defined()) n.backward(n, *this);
      if (observer) observer->swept(k - 1);
    }
  }

  Arena arena_;
  std::vector<std::unique_ptr<Node[]>> chunks_;
  std::size_t used_ = 0;
  bool grad_enabled_ = true;
};

// Disables gradient recording on one tape for its scope (score mode).
class NoGradGuard {
 public:
  explicit NoGradGuard(Tape& t) : tape_(t), prev_(t.grad_enabled()) { t.set_grad_enabled(false); }
  ~NoGradGuard() { tape_.set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  Tape& tape_;
  bool prev_;
};

// Accumulates g into the gradient of v if v needs one (the common tail of backward rules).
inline void accumulate_grad(Tape& tape, Var v, const float* g) {
  if (!v || !v->requires_grad) return;
  Tensor& dst = tape.grad(v);
  for (int64_t j = 0; j < dst.numel(); ++j) dst.data[j] += g[j];
}

}  // namespace mercury
