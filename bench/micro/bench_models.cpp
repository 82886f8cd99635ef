// Training-step and scoring throughput of the paper's model zoo on one thread, as samples/s
// (items_per_second), at the paper's local batch sizes (32 images; 64 speech or text) on
// synthetic inputs of the real sample shapes:
//   CIFAR-10 / SVHN  resnet8, resnet20, resnet18  [3, 32, 32], 10 classes
//   CIFAR-100        resnet50                     [3, 32, 32], 100 classes
//   AID              mobilenetv2 (width 1, CIFAR strides)  [3, 64, 64], 30 classes — AID's
//                    600×600 aerial images downscaled to 64×64 (our choice for on-device runs)
//   Speech Commands  vgg13, ds_cnn (S)            [1, 161, 101] log-spectrograms, 35 classes
//   AG News          lstm_attention, textcnn      [100] token ids, vocab 20,000, 4 classes
// A train step is Engine::grad + Adam; a score is Engine::score (forward only, eval BN). Both
// run twice before the timed loop: the first call sizes the tape's arena in several blocks, the
// second call's reset coalesces them into one (a multi-GB allocation + memset for vgg13/ds_cnn at
// batch 64) — from then on nothing is allocated. The ratio Score/TrainStep of one model is the
// cost of ranking a sample relative to training on it — the quantity Mercury's importance
// sampling trades on.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "mercury/mercury.hpp"

using namespace mercury;

namespace {

struct Workload {
  const char* model;
  Shape sample;
  int64_t classes;
  int64_t batch;
  int64_t vocab;  // > 0: token-id inputs
};

struct Fixture {
  std::unique_ptr<nn::Model> model;
  std::vector<float> x;
  std::vector<int32_t> y;
  explicit Fixture(const Workload& w) {
    thread_pool().set_threads(1);
    model = models::make_model(w.model, w.sample, w.classes, 1);
    x.resize(static_cast<std::size_t>(w.batch * model->sample_numel()));
    y.resize(static_cast<std::size_t>(w.batch));
    std::mt19937 rng(1);
    if (w.vocab > 0) {
      std::uniform_int_distribution<int> u(1, static_cast<int>(w.vocab) - 1);
      for (float& v : x) v = static_cast<float>(u(rng));
    } else {
      std::normal_distribution<float> n(0.0f, 1.0f);
      for (float& v : x) v = n(rng);
    }
    for (int64_t i = 0; i < w.batch; ++i) y[i] = static_cast<int32_t>(i % w.classes);
  }
};

void train_step(benchmark::State& state, const Workload& w) {
  Fixture f(w);
  nn::Engine eng(*f.model);
  optim::Optimizer adam(optim::OptimizerConfig{}, f.model->params.size());
  auto step = [&] {
    f.model->params.zero_grad();
    benchmark::DoNotOptimize(eng.grad(f.x.data(), f.y.data(), nullptr, w.batch));
    adam.step(f.model->params.values(), f.model->params.grads(), 1e-3f);
  };
  step();  // warm-up: sizes the arena ...
  step();  // ... and coalesces it
  for (auto _ : state) step();
  state.SetItemsProcessed(state.iterations() * w.batch);
  state.counters["params"] = static_cast<double>(f.model->params.count());
  state.SetLabel(kernels::isa_name(kernels::table().isa));
}

void score(benchmark::State& state, const Workload& w) {
  Fixture f(w);
  nn::Engine eng(*f.model);
  std::vector<float> losses(static_cast<std::size_t>(w.batch));
  auto run = [&] {
    eng.score(f.x.data(), f.y.data(), w.batch, losses.data());
    benchmark::DoNotOptimize(losses.data());
  };
  run();  // warm-up, twice (see above)
  run();
  for (auto _ : state) run();
  state.SetItemsProcessed(state.iterations() * w.batch);
  state.SetLabel(kernels::isa_name(kernels::table().isa));
}

const Workload kWorkloads[] = {
    {"resnet8", Shape{3, 32, 32}, 10, 32, 0},     {"resnet20", Shape{3, 32, 32}, 10, 32, 0},
    {"resnet18", Shape{3, 32, 32}, 10, 32, 0},    {"resnet50", Shape{3, 32, 32}, 100, 32, 0},
    {"mobilenetv2", Shape{3, 64, 64}, 30, 32, 0}, {"vgg13", Shape{1, 161, 101}, 35, 64, 0},
    {"ds_cnn", Shape{1, 161, 101}, 35, 64, 0},    {"lstm_attention", Shape{100}, 4, 64, 20000},
    {"textcnn", Shape{100}, 4, 64, 20000},
};

[[maybe_unused]] const bool kRegistered = [] {
  for (const Workload& w : kWorkloads) {
    const std::string suffix = std::string(w.model) + "/" + std::to_string(w.batch);
    benchmark::RegisterBenchmark(("BM_TrainStep/" + suffix).c_str(), [w](benchmark::State& s) {
      train_step(s, w);
    })->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_Score/" + suffix).c_str(), [w](benchmark::State& s) {
      score(s, w);
    })->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
