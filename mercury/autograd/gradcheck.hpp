// mercury/autograd/gradcheck.hpp — finite-difference check of backward rules (public, so users
// can check their own ops and modules, like dlib's test_layer()).
//
// Contract
// - `build(tape, leaves)` builds a graph from the given leaves and returns any output Var. The
//   check reduces it to a scalar L = Σ r_k·out_k with fixed random r (double accumulation), runs
//   backward once, then for every element of every input perturbs it by ±eps and compares the
//   central difference (L(x+eps) − L(x−eps)) / 2eps, computed in double, with the analytic
//   gradient. Ops run in float32, so eps and tolerances are float-sized (defaults below).
// - Inputs are modified during the check and restored afterwards.
// - Non-smooth points (ReLU at 0, max ties) make differences meaningless: choose inputs away
//   from kinks (the tests do).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mercury/autograd/tape.hpp"

namespace mercury {

struct GradcheckOptions {
  float eps = 1e-2f;
  double atol = 2e-3;
  double rtol = 2e-2;
  uint64_t seed = 1;
  // Inputs whose gradient is checked (default: all).
  std::vector<bool> check;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0;
  std::string worst;  // "input i, element j: analytic a, numeric n"
  int64_t checked = 0;
};

using GraphBuilder = std::function<Var(Tape&, const std::vector<Var>&)>;

namespace detail {

// L = Σ r_k·out_k with r fixed on first use (uniform in [-1, 1] from `seed`); with_grad also
// seeds backward with r. Shared by gradcheck() and nn::check_module().
class Projection {
 public:
  explicit Projection(uint64_t seed) : seed_(seed) {}
  double apply(Tape& tape, Var out, bool with_grad) {
    if (r_.empty()) {
      std::mt19937_64 rng(seed_);
      std::uniform_real_distribution<double> u(-1.0, 1.0);
      r_.resize(static_cast<std::size_t>(out->numel()));
      for (double& v : r_) v = u(rng);
    }
    double L = 0;
    for (int64_t j = 0; j < out->numel(); ++j) L += r_[j] * out->value.data[j];
    if (with_grad) {
      Tensor seed = tape.scratch(out->shape());
      for (int64_t j = 0; j < out->numel(); ++j) seed.data[j] = static_cast<float>(r_[j]);
      tape.backward(out, seed);
    }
    return L;
  }

 private:
  uint64_t seed_;
  std::vector<double> r_;
};

// Compares `analytic` with central differences of `loss()` for each element of x (perturbed in
// place and restored), recording the first failure as "<what>, element j: ...".
template <class Loss>
void compare_elements(const std::string& what, float* x, const float* analytic, int64_t n,
                      Loss&& loss, const GradcheckOptions& opt, GradcheckResult& res) {
  for (int64_t j = 0; j < n; ++j) {
    const float orig = x[j];
    x[j] = orig + opt.eps;
    const double lp = loss();
    x[j] = orig - opt.eps;
    const double lm = loss();
    x[j] = orig;
    const double num = (lp - lm) / (2.0 * static_cast<double>(opt.eps));
    const double err = std::abs(num - analytic[j]);
    ++res.checked;
    res.max_abs_err = std::max(res.max_abs_err, err);
    if (err > opt.atol + opt.rtol * std::abs(num)) {
      if (res.ok) {
        res.worst = what + ", element " + std::to_string(j) + ": analytic " +
                    std::to_string(analytic[j]) + ", numeric " + std::to_string(num);
      }
      res.ok = false;
    }
  }
}

}  // namespace detail

inline GradcheckResult gradcheck(const GraphBuilder& build, std::vector<Tensor> inputs,
                                 GradcheckOptions opt = {}) {
  Tape tape;
  std::vector<AlignedBuffer> grads;
  for (const Tensor& in : inputs) grads.emplace_back(in.numel());
  detail::Projection proj(opt.seed);

  auto run = [&](bool with_grad) -> double {
    tape.reset();
    std::vector<Var> leaves;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      leaves.push_back(tape.leaf(inputs[k], grads[k].tensor(inputs[k].shape), with_grad));
    }
    return proj.apply(tape, build(tape, leaves), with_grad);
  };
  run(true);

  GradcheckResult res;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!opt.check.empty() && !opt.check[k]) continue;
    detail::compare_elements(
        "input " + std::to_string(k), inputs[k].data, grads[k].data(), inputs[k].numel(),
        [&] { return run(false); }, opt, res);
  }
  return res;
}

}  // namespace mercury
