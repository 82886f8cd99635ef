// memory_probe — peak memory and throughput of one zoo model's training or scoring steps, in a
// process of its own (peak RSS is per process), for the side-by-side table against PyTorch
// (bench/compare_zoo.sh runs it and bench/peers/torch_zoo.py model by model).
//
//   memory_probe --model vgg13 [--batch 64] [--mode train|score] [--steps 5] [--threads 1]
//                [--bump]
//
// One JSON line: peak RSS (VmHWM) and the RSS before the first step (model, optimizer state and
// the input batches), the planned activation block and what a bump arena holding every tensor
// of the step would take, samples/s over the timed steps. --bump runs the engine without the
// planner (the arena the engine used before it) for comparison.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "bench/micro/zoo_workloads.hpp"
#include "mercury/mercury.hpp"

using namespace mercury;

namespace {

// A "Vm…:  123 kB" line of /proc/self/status, in MiB (-1 where the file is not there).
double status_mib(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;
  }
  return -1.0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, mode = "train";
  int64_t batch = 0, steps = 5;
  int threads = 1;
  bool bump = false;
  std::vector<std::string> names;
  for (const auto& w : bench::zoo_workloads()) names.push_back(w.model);
  CLI::App app{"Peak memory and throughput of one zoo model's steps (one JSON line)"};
  app.add_option("--model", model, "zoo model")->required()->check(CLI::IsMember(names));
  app.add_option("--batch", batch, "batch size (default: the paper's for the model)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--mode", mode, "train (grad + Adam) or score (forward, eval BN)")
      ->check(CLI::IsMember({"train", "score"}));
  app.add_option("--steps", steps, "timed steps after two warm-up steps")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--threads", threads, "threads")->check(CLI::Range(1, 256));
  app.add_flag("--bump", bump, "no planner: every tensor of a step kept to its end");
  CLI11_PARSE(app, argc, argv);

  bench::Workload w{};
  for (const auto& c : bench::zoo_workloads())
    if (model == c.model) w = c;
  if (batch > 0) w.batch = batch;
  thread_pool().set_threads(threads);
  auto m = models::make_model(w.model, w.sample, w.classes, 1);
  nn::Engine eng(*m, 1);
  eng.set_planned(!bump);
  const bool train = mode == "train";
  std::unique_ptr<optim::Optimizer> adam;
  if (train) adam = std::make_unique<optim::Optimizer>(optim::OptimizerConfig{}, m->params.size());
  const bench::Batches data(w, m->sample_numel(), 16, 7);
  std::vector<float> losses(static_cast<std::size_t>(w.batch));
  const double base_rss = status_mib("VmRSS");

  std::size_t next = 0;
  auto step = [&] {
    const float* x = data.x[next].data();
    const int32_t* y = data.y[next].data();
    next = (next + 1) % data.x.size();
    if (train) {
      m->params.zero_grad();
      eng.grad(x, y, nullptr, w.batch);
      adam->step(m->params.values(), m->params.grads(), 1e-3f);
    } else {
      eng.score(x, y, w.batch, losses.data());
    }
  };
  step();  // records the plan
  step();  // first planned step
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) step();
  const double secs = base::seconds_since(t0);

  const double mib = 1.0 / (1 << 20);
  const Tape& tape = eng.tape();
  std::printf(
      "{\"engine\": \"mercury\", \"model\": \"%s\", \"mode\": \"%s\", \"batch\": %lld, "
      "\"params\": %lld, \"threads\": %d, \"isa\": \"%s\", \"planner\": %s, "
      "\"samples_per_s\": %.2f, \"peak_rss_mib\": %.1f, \"base_rss_mib\": %.1f, "
      "\"activations_mib\": %.1f",
      w.model, mode.c_str(), static_cast<long long>(w.batch),
      static_cast<long long>(m->params.count()), threads, kernels::isa_name(kernels::table().isa),
      bump ? "false" : "true", static_cast<double>(steps * w.batch) / secs, status_mib("VmHWM"),
      base_rss, (bump ? eng.tape().arena().capacity_bytes() : tape.planned_bytes()) * mib);
  if (const StepPlan* p = tape.last_plan()) {
    std::printf(
        ", \"plan\": {\"tensors\": %zu, \"block_mib\": %.1f, \"live_peak_mib\": %.1f, "
        "\"all_tensors_mib\": %.1f, \"recording_step_mib\": %.1f}",
        p->tensors.size(), p->block_floats * 4 * mib, p->live_floats * 4 * mib,
        p->total_floats * 4 * mib, p->record_floats * 4 * mib);
  }
  std::printf("}\n");
  return 0;
}
