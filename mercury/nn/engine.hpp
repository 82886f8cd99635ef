// mercury/nn/engine.hpp — the three execution modes over one memory plan.
//
// Contract
// - score(): forward only, no tape records, eval-mode normalisation (train-mode on request,
//   still without touching running statistics), per-sample losses out. Never writes weights,
//   gradients, BN running statistics or optimizer state. May read weights from a snapshot.
// - grad(): forward + backward; gradients ACCUMULATE into the model's gradient slab (call
//   params.zero_grad() between steps; k micro-batches accumulate like one batch when each is
//   seeded with its share, see `batch_total`). Per-sample weights enter only at the loss seed:
//   loss = Σ w_i·l_i / B.
// - The step mode is grad() followed by an optimizer step on the slabs (optim/, train/).
// - One Engine per thread; each owns its Tape, reused every call. Every call is a planned step
//   (tape.hpp) keyed by mode, batch size and options: the first call with a key records its
//   tensors' lifetimes and places them in one block so that tensors never alive together share
//   memory (score mode reuses each layer's input once the next layer has run; training keeps only
//   what backward reads); from the second call on, nothing is allocated.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "mercury/autograd/ops_loss.hpp"
#include "mercury/base/hash.hpp"
#include "mercury/nn/model.hpp"
#include "mercury/tensor/thread_pool.hpp"

namespace mercury::nn {

enum class ScoreKind {
  loss,             // per-sample cross-entropy
  grad_norm_bound,  // ‖softmax − onehot‖₂: the last-layer gradient-norm upper bound
                    // (Katharopoulos & Fleuret 2018), up to a per-batch constant
};

struct ScoreOptions {
  bool train_mode_norm = false;    // reproduce train-mode BN statistics (stats not written)
  const float* weights = nullptr;  // parameter snapshot (same layout) or null = live slab
  const float* buffers = nullptr;  // buffer (BN running statistics) snapshot or null = live
  ScoreKind kind = ScoreKind::loss;
};

class Engine {
 public:
  explicit Engine(Model& m, uint64_t seed = 0) : model_(m), rng_(seed) {}

  // Per-sample losses for B samples. pred (optional) receives the argmax class per sample.
  void score(const float* x, const int32_t* labels, int64_t B, float* losses,
             int32_t* pred = nullptr, const ScoreOptions& o = ScoreOptions{}) {
    begin(step_key(
        Mode::score, B,
        (o.train_mode_norm ? 1u : 0u) | (o.kind == ScoreKind::loss ? 2u : 0u) | (pred ? 4u : 0u)));
    NoGradGuard ng(tape_);
    scratch_buffers_.resize(static_cast<std::size_t>(model_.params.buffer_size()));
    // Eval mode only reads the buffers, so a snapshot is used in place.
    float* buffers = const_cast<float*>(o.buffers);
    if (o.train_mode_norm) {  // batch statistics; running-stat updates go to a throwaway copy
      const float* from = o.buffers ? o.buffers : model_.params.buffers();
      std::copy(from, from + model_.params.buffer_size(), scratch_buffers_.begin());
      buffers = scratch_buffers_.data();
    }
    Context ctx{tape_, model_.params, o.train_mode_norm, &rng_, o.weights, buffers};
    Var logits = forward(ctx, x, B);
    tape_.pin(logits);  // argmax reads it last
    if (o.kind == ScoreKind::loss) {
      Var l = ops::softmax_xent(tape_, logits, labels);
      std::copy(l->value.data, l->value.data + B, losses);
    } else {
      grad_norm_bounds(logits, labels, losses);
    }
    if (pred) argmax(logits, pred);
    tape_.end_step();
  }

  // Forward + backward with per-sample weights (null = all ones). Returns Σ w_i·l_i / batch_total
  // (batch_total defaults to B; pass the full batch size when accumulating micro-batches).
  // losses (optional) receives the per-sample losses computed on the way, bounds (optional) the
  // per-sample last-layer gradient-norm bounds (ScoreKind::grad_norm_bound) of the same forward.
  // hooks (optional) sees the forward's parameter reads and the backward's progress.
  float grad(const float* x, const int32_t* labels, const float* weights, int64_t B,
             float* losses = nullptr, int64_t batch_total = 0, float* bounds = nullptr,
             StepHooks* hooks = nullptr) {
    grad_key_ = step_key(Mode::grad, B, (weights ? 1u : 0u) | (bounds ? 2u : 0u));
    begin(grad_key_);
    Context ctx{tape_, model_.params, true, &rng_, nullptr, nullptr, hooks};
    Var logits = forward(ctx, x, B);
    if (bounds) grad_norm_bounds(logits, labels, bounds);
    Var l = ops::softmax_xent(tape_, logits, labels);
    tape_.pin(l);  // the losses are copied out after the sweep
    Var loss = ops::weighted_mean(tape_, l, weights);
    tape_.pin(loss);
    const float share =
        static_cast<float>(B) / static_cast<float>(batch_total > 0 ? batch_total : B);
    tape_.backward(loss, Tensor(const_cast<float*>(&share), Shape{1}), hooks);
    if (losses) std::copy(l->value.data, l->value.data + B, losses);
    tape_.end_step();
    return loss->value.data[0] * share;
  }

  enum class Mode : uint64_t { score = 1, grad = 2 };
  // The plan key of a call: everything that changes its tensors' sizes or order (the thread
  // count sets how many per-chunk scratch buffers an op takes).
  static uint64_t step_key(Mode m, int64_t B, uint64_t options) {
    uint64_t h = base::fnv1a64_u64(static_cast<uint64_t>(m), base::kFnv64Offset);
    h = base::fnv1a64_u64(static_cast<uint64_t>(B), h);
    h = base::fnv1a64_u64(options, h);
    return base::fnv1a64_u64(static_cast<uint64_t>(thread_pool().threads()), h);
  }

  Tape& tape() { return tape_; }
  // Planned steps (default) or a bump arena that keeps every tensor of a step (the reference
  // the planner is tested against).
  void set_planned(bool on) { planned_ = on; }
  // The memory plan of the last grad() call's kind (null before one was recorded).
  const StepPlan* last_grad_plan() const { return tape_.plan(grad_key_); }
  std::mt19937_64& rng() { return rng_; }
  Model& model() { return model_; }

 private:
  Var forward(Context& ctx, const float* x, int64_t B) {
    Var in = tape_.leaf(Tensor(const_cast<float*>(x), model_.batch_shape(B)));
    return model_.net->forward(ctx, in);
  }
  // ‖softmax(logits_r) − onehot(label_r)‖₂ per row, into out (scratch from the tape's arena).
  void grad_norm_bounds(Var logits, const int32_t* labels, float* out) {
    const int64_t B = logits->shape()[0], K = logits->shape()[1];
    Tensor probs = tape_.scratch(logits->shape());
    Tensor l = tape_.scratch(Shape{B});
    kernels::table().softmax_xent(B, K, logits->value.data, labels, l.data, probs.data);
    for (int64_t r = 0; r < B; ++r) {
      float* p = probs.data + r * K;
      p[labels[r]] -= 1.0f;
      out[r] = std::sqrt(kernels::table().dot(K, p, p));
    }
  }
  static void argmax(Var logits, int32_t* pred) {
    const int64_t B = logits->shape()[0], K = logits->shape()[1];
    for (int64_t r = 0; r < B; ++r) {
      const float* row = logits->value.data + r * K;
      int32_t best = 0;
      for (int64_t k = 1; k < K; ++k)
        if (row[k] > row[best]) best = static_cast<int32_t>(k);
      pred[r] = best;
    }
  }

  void begin(uint64_t key) {
    if (planned_)
      tape_.begin_step(key);
    else
      tape_.reset();
  }

  Model& model_;
  bool planned_ = true;
  uint64_t grad_key_ = 0;
  Tape tape_;
  std::mt19937_64 rng_;
  std::vector<float> scratch_buffers_;
};

}  // namespace mercury::nn
