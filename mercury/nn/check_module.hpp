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
  mercury::detail::Projection proj(opt.seed);
  std::mt19937_64 dropout_rng;

  auto run = [&](bool with_grad) -> double {
    tape.reset();
    tape.set_grad_enabled(with_grad);
    dropout_rng.seed(opt.seed);  // identical dropout masks on every evaluation
    Context ctx{tape, params, training, &dropout_rng};
    Var x = tape.leaf(input, input_grad.tensor(input.shape), true);
    return proj.apply(tape, m.forward(ctx, x), with_grad);
  };

  params.zero_grad();
  run(true);

  GradcheckResult res;
  auto loss = [&] { return run(false); };
  mercury::detail::compare_elements("input", input.data, input_grad.data(), input.numel(), loss,
                                    opt, res);
  for (std::size_t k = 0; k < params.params().size(); ++k) {
    const auto id = static_cast<ParamId>(k);
    mercury::detail::compare_elements("parameter " + params.params()[k].name, params.value(id).data,
                                      params.grad(id).data, params.value(id).numel(), loss, opt,
                                      res);
  }
  return res;
}

}  // namespace mercury::nn
