// The claims Mercury exists for, checked end to end on real Fashion-MNIST with the real binary
// (label "slow", ~4 minutes in a release build: tools/test --slow or ctest -L slow). Seeds are
// fixed, so the single-device numbers repeat exactly; the simulator's clocks advance by each
// device thread's CPU time, which a busy machine changes only slightly (BACC's group sizes follow
// it). The thresholds sit well inside what was measured (each case's comment; the measured values
// are printed with -s) and a regression in the sampler, BACC or the baselines moves them across.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "file_test_support.hpp"
#include "mercury/data/fashion_mnist.hpp"

namespace fs = std::filesystem;
using mercury::testing::metrics_events;
using mercury::testing::run_mercury;
using mercury::testing::TempDir;

namespace {

bool have_fashion_mnist() {
  if (fs::exists(mercury::data::kFashionMnistSystemDir)) return true;
  mercury::testing::missing_dependency(
      std::string("Fashion-MNIST in ") + mercury::data::kFashionMnistSystemDir,
      "apt-get install dataset-fashion-mnist");
  return false;
}

// The steps at the run's first evaluation at or above `target`, if any.
std::optional<int64_t> steps_to(const std::string& metrics, double target) {
  for (const auto& e : metrics_events(metrics, "eval"))
    if (e["test_acc"].get<double>() >= target) return e["steps"].get<int64_t>();
  return std::nullopt;
}

const std::string kTrain =
    "train --model cnn --data fashion-mnist --batch 64 --lr 0.001 --optimizer adam --threads 1 "
    "--progress false ";

}  // namespace

TEST_CASE("the reference CNN reaches 86% on Fashion-MNIST after one epoch on one device") {
  if (!have_fashion_mnist()) return;
  TempDir dir;
  const std::string metrics = dir.file("cnn.jsonl");
  const auto r = run_mercury(kTrain + "--epochs 1 --metrics " + metrics);
  INFO(r.output);
  REQUIRE(r.code == 0);
  const auto epochs = metrics_events(metrics, "epoch");
  REQUIRE(epochs.size() == 1);
  // Measured 87.63% (seed 1, 938 steps).
  MESSAGE("test accuracy after one epoch: " << epochs[0]["test_acc"].get<double>());
  CHECK(epochs[0]["test_acc"].get<double>() >= 0.86);
}

TEST_CASE("importance sampling reaches 87% in fewer steps than uniform sampling on one device") {
  if (!have_fashion_mnist()) return;
  TempDir dir;
  const std::string common = kTrain + "--epochs 3 --eval-every 100 --target-acc 0.87 --metrics ";
  const auto u = run_mercury(common + dir.file("uniform.jsonl") + " --sampler uniform");
  INFO(u.output);
  REQUIRE(u.code == 0);
  const auto m = run_mercury(common + dir.file("mercury.jsonl") +
                             " --sampler mercury --group-size 32 --groups-per-batch 32 "
                             "--draw systematic --weight-power 0.5");
  INFO(m.output);
  REQUIRE(m.code == 0);
  const auto su = steps_to(dir.file("uniform.jsonl"), 0.87);
  const auto sm = steps_to(dir.file("mercury.jsonl"), 0.87);
  REQUIRE(su.has_value());
  REQUIRE(sm.has_value());
  MESSAGE("steps to 87%: uniform " << *su << ", importance " << *sm);
  // Measured: uniform 900 steps, importance 600 (0.67; 700 under the earlier std::shuffle order).
  CHECK(static_cast<double>(*sm) <= 0.85 * static_cast<double>(*su));
}

TEST_CASE("suite paper, Fig. 11 at 10 Mbps: importance-sampled local SGD beats sync SGD >= 3x") {
  if (!have_fashion_mnist()) return;
  TempDir dir;
  const fs::path out = dir.path() / "suite";
  const auto r = run_mercury(
      "suite paper --quick --tasks image --figures 11 --bandwidths 10mbps --out " + out.string());
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::ifstream in(out / "summary.json");
  const auto summary = nlohmann::json::parse(in);
  const auto& row = summary["fig11"]["image"]["10mbps"];
  // Every run reached sync SGD's plateau minus 0.5 point. Measured (session 15): Mercury on local
  // SGD 6.18x, AdaComm tau0 10 / 20 4.89x / 5.42x, the paper's algorithm 1.00x, TicTac ~1.2x.
  for (const char* v :
       {"sync", "tictac", "adacomm-t10", "adacomm-t20", "mercury", "mercury-local-t20"}) {
    CAPTURE(v);
    CHECK(row[v]["reached"].get<int>() == 1);
  }
  // -1 when the run never reached the target (no speedup to show).
  auto speedup = [&](const char* v) {
    const auto& x = row[v]["speedup_mean"];
    return x.is_number() ? x.get<double>() : -1.0;
  };
  for (const char* v : {"tictac", "adacomm-t10", "adacomm-t20", "mercury", "mercury-local-t20"})
    MESSAGE(v << ": " << speedup(v) << "x over sync SGD");
  CHECK(speedup("mercury-local-t20") >= 3.0);
  CHECK(speedup("adacomm-t20") >= 2.0);
  // The paper's algorithm on sync SGD is not slower than sync SGD by more than its noise.
  CHECK(speedup("mercury") >= 0.8);
}
