// A program outside the build system: compiled with nothing but -I flags (see
// tests/CMakeLists.txt) to prove <mercury/mercury.hpp> works header-only. Trains the mlp for a
// few steps on a synthetic separable problem and fails unless the loss drops.
#include <mercury/mercury.hpp>

#include <cstdio>
#include <random>
#include <vector>

int main() {
  using namespace mercury;
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
  nn::Engine engine(*model);
  optim::Optimizer adam(optim::OptimizerConfig{}, model->params.size());
  const int64_t B = 32;
  std::vector<float> x(static_cast<std::size_t>(B * 784));
  std::vector<int32_t> y(static_cast<std::size_t>(B));
  std::mt19937_64 rng(7);
  for (int64_t i = 0; i < B; ++i) {
    y[i] = static_cast<int32_t>(i % 10);
    for (int64_t p = 0; p < 784; ++p)
      x[i * 784 + p] =
          (p % 10 == y[i] ? 1.0f : 0.0f) + 0.1f * static_cast<float>(rng() % 100) / 100;
  }
  float first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    model->params.zero_grad();
    last = engine.grad(x.data(), y.data(), nullptr, B);
    if (step == 0) first = last;
    adam.step(model->params.values(), model->params.grads(), 1e-3f);
  }
  std::printf("header-only consumer (%s kernels): loss %.4f -> %.4f\n",
              kernels::isa_name(kernels::table().isa), first, last);
  return last < 0.5f * first ? 0 : 1;
}
