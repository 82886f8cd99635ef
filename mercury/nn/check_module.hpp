// mercury/nn/check_module.hpp — finite-difference check of a whole Module: the gradient with
// respect to its input and to every parameter it declared (dlib's test_layer(), for users'
// own layers).
//
// Contract: the module must already be finalized in `params`. The check perturbs the input and
// the parameter slab in place and restores them; it zeroes and then overwrites the gradient
// slab. Same reduction and tolerances as gradcheck() (GradcheckOptions; `check` is ignored).
// BatchNorm running statistics are written in training mode, as a training pass would.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "mercury/autograd/gradcheck.hpp"
#include "mercury/nn/module.hpp"

namespace mercury::nn {

inline GradcheckResult check_module(Module& m, const ParamStore& params, Tensor input,
                                    bool training = true, GradcheckOptions opt = {}) {
  Tape tape;
  AlignedBuffer input_grad(input.numel());
  std::vector<double> r;
  std::mt19937_64 dropout_rng;

  auto run = [&](bool with_grad) -> double {
    tape.reset();
    tape.set_grad_enabled(with_grad);
    dropout_rng.seed(opt.seed);  // identical dropout masks on every evaluation
    Context ctx{tape, params, training, &dropout_rng};
    Var x = tape.leaf(input, input_grad.tensor(input.shape), true);
    Var out = m.forward(ctx, x);
    if (r.empty()) {
      std::mt19937_64 rng(opt.seed);
      std::uniform_real_distribution<double> u(-1.0, 1.0);
      r.resize(static_cast<std::size_t>(out->numel()));
      for (double& v : r) v = u(rng);
    }
    double L = 0;
    for (int64_t j = 0; j < out->numel(); ++j) L += r[j] * out->value.data[j];
    if (with_grad) {
      Tensor seed = tape.scratch(out->shape());
      for (int64_t j = 0; j < out->numel(); ++j) seed.data[j] = static_cast<float>(r[j]);
      tape.backward(out, seed);
    }
    return L;
  };

  params.zero_grad();
  input_grad.tensor(input.shape).zero();
  run(true);

  GradcheckResult res;
  auto check_tensor = [&](const std::string& what, float* x, const float* analytic, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
      const float orig = x[j];
      x[j] = orig + opt.eps;
      const double lp = run(false);
      x[j] = orig - opt.eps;
      const double lm = run(false);
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
  };
  check_tensor("input", input.data, input_grad.data(), input.numel());
  for (std::size_t k = 0; k < params.params().size(); ++k) {
    const auto id = static_cast<ParamId>(k);
    check_tensor("parameter " + params.params()[k].name, params.value(id).data,
                 params.grad(id).data, params.value(id).numel());
  }
  return res;
}

}  // namespace mercury::nn
