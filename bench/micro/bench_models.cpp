// Training-step and scoring throughput of the paper's model zoo on one thread, as samples/s
// (items_per_second), at the paper's local batch sizes on synthetic inputs of the real sample
// shapes (zoo_workloads.hpp), cycling through 16 distinct batches. A train step is Engine::grad
// + Adam; a score is Engine::score (forward only, eval BN). Both run twice before the timed loop:
// the first call records the step's memory plan, the second is the first planned step — from
// then on nothing is allocated. The ratio Score/TrainStep of one model is the cost of ranking a
// sample relative to training on it — the quantity Mercury's importance sampling trades on.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "bench/micro/zoo_workloads.hpp"
#include "mercury/mercury.hpp"

using namespace mercury;

namespace {

using bench::Workload;

struct Fixture {
  std::unique_ptr<nn::Model> model;
  std::unique_ptr<bench::Batches> data;
  std::size_t next = 0;
  explicit Fixture(const Workload& w) {
    thread_pool().set_threads(1);
    model = models::make_model(w.model, w.sample, w.classes, 1);
    data = std::make_unique<bench::Batches>(w, model->sample_numel(), 16, 1);
  }
  // The next batch's inputs and labels.
  std::pair<const float*, const int32_t*> batch() {
    const std::size_t k = next;
    next = (next + 1) % data->x.size();
    return {data->x[k].data(), data->y[k].data()};
  }
};

void train_step(benchmark::State& state, const Workload& w) {
  Fixture f(w);
  nn::Engine eng(*f.model);
  optim::Optimizer adam(optim::OptimizerConfig{}, f.model->params.size());
  auto step = [&] {
    f.model->params.zero_grad();
    const auto [x, y] = f.batch();
    benchmark::DoNotOptimize(eng.grad(x, y, nullptr, w.batch));
    adam.step(f.model->params.values(), f.model->params.grads(), 1e-3f);
  };
  step();  // warm-up: records the memory plan ...
  step();  // ... and replays it once
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
    const auto [x, y] = f.batch();
    eng.score(x, y, w.batch, losses.data());
    benchmark::DoNotOptimize(losses.data());
  };
  run();  // warm-up: record, then replay (see above)
  run();
  for (auto _ : state) run();
  state.SetItemsProcessed(state.iterations() * w.batch);
  state.SetLabel(kernels::isa_name(kernels::table().isa));
}

[[maybe_unused]] const bool kRegistered = [] {
  for (const Workload& w : bench::zoo_workloads()) {
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
