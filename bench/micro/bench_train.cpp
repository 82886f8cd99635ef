// Training-step and scoring throughput of the model zoo on one thread, as samples/s
// (items_per_second). The reference CNN at batch 64 (train) and 320 (score) is what the
// PyTorch peer (bench/peers/torch_cnn.py) measures; bench/compare_torch.sh runs both and prints
// the ratios. Score/train ratio: compare BM_ScoreCNN/320 with BM_TrainStepCNN/64.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "mercury/mercury.hpp"

using namespace mercury;

namespace {

struct Fixture {
  std::unique_ptr<nn::Model> model;
  std::vector<float> x;
  std::vector<int32_t> y;
  Fixture(const std::string& name, int64_t batch) {
    thread_pool().set_threads(1);
    model = models::make_model(name, Shape{1, 28, 28}, 10, 1);
    x.resize(static_cast<std::size_t>(batch * 784));
    y.resize(static_cast<std::size_t>(batch));
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : x) v = n(rng);
    for (int64_t i = 0; i < batch; ++i) y[i] = static_cast<int32_t>(i % 10);
  }
};

void train_step(benchmark::State& state, const std::string& name) {
  const int64_t B = state.range(0);
  Fixture f(name, B);
  nn::Engine eng(*f.model);
  optim::Optimizer adam(optim::OptimizerConfig{}, f.model->params.size());
  for (auto _ : state) {
    f.model->params.zero_grad();
    benchmark::DoNotOptimize(eng.grad(f.x.data(), f.y.data(), nullptr, B));
    adam.step(f.model->params.values(), f.model->params.grads(), 1e-3f);
  }
  state.SetItemsProcessed(state.iterations() * B);
  state.SetLabel(kernels::isa_name(kernels::table().isa));
}

void score(benchmark::State& state, const std::string& name) {
  const int64_t B = state.range(0);
  Fixture f(name, B);
  nn::Engine eng(*f.model);
  std::vector<float> losses(static_cast<std::size_t>(B));
  for (auto _ : state) {
    eng.score(f.x.data(), f.y.data(), B, losses.data());
    benchmark::DoNotOptimize(losses.data());
  }
  state.SetItemsProcessed(state.iterations() * B);
  state.SetLabel(kernels::isa_name(kernels::table().isa));
}

void BM_TrainStepCNN(benchmark::State& s) {
  train_step(s, "cnn");
}
void BM_ScoreCNN(benchmark::State& s) {
  score(s, "cnn");
}
void BM_TrainStepMLP(benchmark::State& s) {
  train_step(s, "mlp");
}
void BM_ScoreMLP(benchmark::State& s) {
  score(s, "mlp");
}

}  // namespace

BENCHMARK(BM_TrainStepCNN)->Arg(64)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_ScoreCNN)->Arg(64)->Arg(320)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_TrainStepMLP)->Arg(64)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_ScoreMLP)->Arg(320)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK_MAIN();
