// mercury/optim/optimizer.hpp — SGD (momentum, Nesterov, weight decay), Adam, AdamW on flat slabs.
//
// Contract
// - An optimizer owns the moments for ONE contiguous range of n floats (the whole parameter slab
//   on one device, or the shard a parameter server owns) and updates params[0, n) from
//   grads[0, n) in place. It never allocates after construction.
// - step() increments the step count used for Adam's bias correction.
// - state() exposes the moment slabs and the step count for checkpoints (exact resume).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "mercury/tensor/tensor.hpp"

namespace mercury::optim {

enum class Kind { sgd, adam, adamw };

struct OptimizerConfig {
  Kind kind = Kind::adam;
  float momentum = 0.9f;      // SGD
  bool nesterov = false;      // SGD
  float weight_decay = 0.0f;  // SGD, Adam: coupled (L2 in the gradient); AdamW: decoupled
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // Adam, AdamW
};

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::sgd:
      return "sgd";
    case Kind::adam:
      return "adam";
    case Kind::adamw:
      return "adamw";
  }
  return "?";
}
inline Kind parse_kind(const std::string& s) {
  if (s == "sgd") return Kind::sgd;
  if (s == "adam") return Kind::adam;
  if (s == "adamw") return Kind::adamw;
  throw std::invalid_argument("optimizer: expected sgd, adam or adamw, found '" + s + "'");
}

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& cfg, int64_t n) : cfg_(cfg), n_(n) {
    if (cfg.kind == Kind::sgd) {
      if (cfg.momentum != 0.0f) m_.resize(n);
    } else {
      m_.resize(n);
      v_.resize(n);
    }
    if (cfg.nesterov && (cfg.kind != Kind::sgd || cfg.momentum <= 0.0f)) {
      throw std::invalid_argument("optimizer: nesterov needs sgd with momentum > 0");
    }
  }

  void step(float* params, const float* grads, float lr) {
    ++t_;
    const auto& K = kernels::table();
    if (cfg_.kind == Kind::sgd) {
      sgd_step(params, grads, lr);
      return;
    }
    const float bc1 = 1.0f - std::pow(cfg_.beta1, static_cast<float>(t_));
    const float bc2 = 1.0f - std::pow(cfg_.beta2, static_cast<float>(t_));
    const bool decoupled = cfg_.kind == Kind::adamw;
    K.adam(n_, params, grads, m_.data(), v_.data(), lr, cfg_.beta1, cfg_.beta2, cfg_.eps,
           decoupled ? 0.0f : cfg_.weight_decay, decoupled ? cfg_.weight_decay : 0.0f, bc1, bc2);
  }

  int64_t size() const { return n_; }
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  const OptimizerConfig& config() const { return cfg_; }
  // Moment slabs by name ("m", "v"; empty for plain SGD).
  std::vector<std::pair<std::string, Tensor>> state() const {
    std::vector<std::pair<std::string, Tensor>> s;
    if (m_.size()) s.emplace_back("m", m_.tensor(Shape{n_}));
    if (v_.size()) s.emplace_back("v", v_.tensor(Shape{n_}));
    return s;
  }

 private:
  void sgd_step(float* p, const float* g, float lr) {
    const float wd = cfg_.weight_decay, mu = cfg_.momentum;
    float* m = m_.data();
    for (int64_t j = 0; j < n_; ++j) {
      float d = g[j] + wd * p[j];
      if (m) {
        // PyTorch semantics: buf = mu·buf + d (buf = d on the first step).
        m[j] = t_ == 1 ? d : mu * m[j] + d;
        d = cfg_.nesterov ? d + mu * m[j] : m[j];
      }
      p[j] -= lr * d;
    }
  }

  OptimizerConfig cfg_;
  int64_t n_;
  int64_t t_ = 0;
  AlignedBuffer m_, v_;
};

}  // namespace mercury::optim
