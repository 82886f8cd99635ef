// The `mercury` CLI end to end: bad flags, configs, data and checkpoints fail with a clear
// message and a non-zero exit code; a tiny run on generated IDX files succeeds and writes
// metrics and a checkpoint.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "net/shaper.hpp"
#include "synthetic_data.hpp"

namespace fs = std::filesystem;

namespace {

using Result = mercury::testing::CliResult;

Result run(const std::string& args) {
  return mercury::testing::run_mercury(args);
}

// A usage error: exit code 2 and a message containing `message`.
void check_refused(const std::string& args, const std::string& message) {
  const Result r = run(args);
  INFO(args << " -> " << r.output);
  CHECK(r.code == 2);
  CHECK(r.output.find(message) != std::string::npos);
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("mercury_cli_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name, const std::string& contents) const {
    std::ofstream(path / name, std::ios::binary) << contents;
    return (path / name).string();
  }
};

}  // namespace

TEST_CASE("unknown flags and bad flag values exit non-zero naming the flag") {
  auto r = run("train --no-such-flag 3");
  CHECK(r.code != 0);
  CHECK(r.output.find("--no-such-flag") != std::string::npos);
  check_refused("train --epochs abc", "--epochs: expected an integer, found 'abc'");
  check_refused("train --nesterov maybe", "expected true or false, found 'maybe'");
  check_refused("train --batch 0", "batch: expected 1..16777216, found 0");
  check_refused("train --sampler mercury --draw stratified",
                "draw: expected iid or systematic, found 'stratified'");
  check_refused("train --sampler mercury --in-group gradnorm",
                "--in-group: expected loss or rank, found 'gradnorm'");
  check_refused("train --sampler kf --kf-tau-th -0.5",
                "kf_tau_th: expected -1 (automatic) or a finite value >= 0");
  check_refused("train --sampler mercury --in-group rank --lambda 0",
                "lambda: expected > 0 with in_group rank");
  // Non-finite, underflowing and overflowing numbers, refused before any data is looked for.
  check_refused("train --data-dir /nonexistent --sampler mercury --beta nan",
                "beta: expected a finite value");
  check_refused("train --data-dir /nonexistent --sampler mercury --beta inf", "found inf");
  check_refused("train --data-dir /nonexistent --schedule step --gamma inf",
                "gamma: expected a finite value in (0, 1000], found inf");
  check_refused("train --data-dir /nonexistent --weight-decay inf",
                "weight_decay: expected a finite value in [0, 100], found inf");
  check_refused("train --data-dir /nonexistent --lr 1e-50",
                "lr: expected a rate representable in float");
  check_refused("train --data-dir /nonexistent --lr -nan", "lr: expected a finite value");
  check_refused("train --data-dir /nonexistent --epochs 9223372036854775807",
                "epochs: expected 1..1000000, found 9223372036854775807");
  check_refused("train --data-dir /nonexistent --sampler kf --kf-presample 1000000",
                "kf_presample: expected 1..64, found 1000000");
  check_refused("train --data-dir /nonexistent --lr 1e400",
                "--lr: expected a number, found '1e400'");
  r = run("train --optimizer rmsprop --data-dir /nonexistent");
  CHECK(r.code != 0);
  r = run("");
  CHECK(r.code != 0);
}

TEST_CASE(
    "train --help types every option; CLI11 checks values; a flag given twice takes the last") {
  const Result help = run("train --help");
  REQUIRE(help.code == 0);
  for (const char* typed : {"--epochs INT", "--lr FLOAT", "--nesterov BOOL", "--checkpoint PATH",
                            "--data-dir DIR", "--draw {iid,systematic}",
                            "--sampler {uniform,mercury,all-is,kf,selective-backprop,infobatch}",
                            "--model {cnn,mlp,", "--data {fashion-mnist,", "--config PATH"}) {
    CAPTURE(typed);
    CHECK(help.output.find(std::string("  ") + typed) != std::string::npos);
  }
  // The only free-text option left: all | none | a count.
  std::istringstream lines(help.output);
  std::vector<std::string> text_typed;
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find(" TEXT ");
    if (line.rfind("  --", 0) == 0 && at != std::string::npos && at < line.find("  ", 4))
      text_typed.push_back(line.substr(2, at - 2));
  }
  CHECK(text_typed == std::vector<std::string>{"--reshard-share"});
  // Checked while parsing, for mercury sim's train flags too.
  check_refused("train --optimizer lamb", "--optimizer: expected sgd, adam or adamw, found 'lamb'");
  check_refused("train --lr fast", "--lr: expected a number, found 'fast'");
  check_refused("sim -n 2 -- --draw stratified",
                "--draw: expected iid or systematic, found 'stratified'");
  // The last of two values wins: batch 0 then 8 gets as far as the data; 8 then 0 does not.
  Result r = run("train --batch 0 --batch 8 --data-dir /nonexistent");
  CHECK(r.code == 1);
  CHECK(r.output.find("Fashion-MNIST not found") != std::string::npos);
  check_refused("train --batch 8 --batch 0 --data-dir /nonexistent",
                "batch: expected 1..16777216, found 0");
}

TEST_CASE("error messages escape control bytes and invalid UTF-8 and are cut at 4 KiB") {
  TempDir d;
  // A value with a control byte, a stray continuation byte and valid UTF-8 (kept as is).
  const std::string cfg = d.file("ctl.json", "{\"sampler\": \"\\u0001caf\u00e9\\u001b[2J\"}");
  auto r = run("train --data-dir /nonexistent --config " + cfg);
  CHECK(r.code == 2);
  CHECK(r.output.find("found '\\x01caf\u00e9\\x1B[2J'") != std::string::npos);
  CHECK(r.output.find('\x1b') == std::string::npos);  // no terminal escape reaches the screen
  // Bytes that are not UTF-8 at all (a stray continuation byte, 0xFF), through a flag.
  r = run("train --data-dir /nonexistent --sampler \"$(printf 'a\\200b\\377c')\"");
  CHECK(r.code == 2);
  CHECK(r.output.find("found 'a\\x80b\\xFFc'") != std::string::npos);
  // A 20,000-character value: the message is cut, saying by how much.
  r = run("train --data-dir /nonexistent --sampler " + std::string(20000, 'q'));
  CHECK(r.code == 2);
  CHECK(r.output.find("more bytes of the message cut") != std::string::npos);
  CHECK(r.output.size() < 4096 + 200);
}

TEST_CASE("malformed, mistyped and unknown-key configs are refused") {
  TempDir d;
  auto r = run("train --config " + d.file("bad.json", "{\"epochs\": 3,"));
  CHECK(r.code == 2);
  CHECK(r.output.find("malformed JSON") != std::string::npos);
  r = run("train --config " + d.file("type.json", "{\"epochs\": \"three\"}"));
  CHECK(r.code == 2);
  CHECK(r.output.find("key 'epochs' expects integer, found string \"three\"") != std::string::npos);
  r = run("train --config " + d.file("key.json", "{\"epoch\": 3}"));
  CHECK(r.code == 2);
  CHECK(r.output.find("unknown key 'epoch'") != std::string::npos);
  r = run("train --config " + d.file("arr.json", "[1, 2]"));
  CHECK(r.code == 2);
  CHECK(r.output.find("expected a JSON object, found array") != std::string::npos);
  r = run("train --config " + (d.path / "missing.json").string());
  CHECK(r.code == 2);
  CHECK(r.output.find("cannot open") != std::string::npos);
}

TEST_CASE("a FIFO config is refused at once; outputs that are not regular files exit 2 first") {
  TempDir d;
  const std::string fifo = (d.path / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto r = run("train --config " + fifo);  // would block forever on open without a writer
  CHECK(r.code == 2);
  CHECK(r.output.find("expected a readable regular file, found a FIFO") != std::string::npos);
  const std::string link = (d.path / "null").string();
  std::filesystem::create_symlink("/dev/null", link);
  // Checked before the (missing) data is even looked for.
  r = run("train --data-dir /nonexistent --checkpoint " + link);
  CHECK(r.code == 2);
  CHECK(r.output.find("--checkpoint '" + link +
                      "': expected a regular file (or a new path) to "
                      "write, found a character device") != std::string::npos);
  r = run("train --data-dir /nonexistent --metrics " + fifo);
  CHECK(r.code == 2);
  CHECK(r.output.find("found a FIFO") != std::string::npos);
  r = run("train --data-dir /nonexistent --checkpoint " + (d.path / "no/dir/c.st").string());
  CHECK(r.code == 2);
  CHECK(r.output.find("to exist, found missing") != std::string::npos);
}

TEST_CASE("missing data and unknown models are named in the error") {
  TempDir d;
  auto r = run("train --data-dir " + d.path.string());
  CHECK(r.code == 1);
  CHECK(r.output.find("Fashion-MNIST not found") != std::string::npos);
  CHECK(r.output.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  mercury::testing::write_tiny_fashion_mnist(d.path, 20, 10);
  r = run("train --model resnet-9000 --data-dir " + d.path.string());
  CHECK(r.code == 2);
  CHECK(r.output.find("--model: expected cnn, mlp, ") != std::string::npos);
  CHECK(r.output.find("found 'resnet-9000'") != std::string::npos);
  r = run("train --data cifar-11 --data-dir " + d.path.string());
  CHECK(r.code == 2);
  CHECK(r.output.find("found 'cifar-11'") != std::string::npos);
}

TEST_CASE("a tiny run writes epoch metrics and a checkpoint that resumes and inspects") {
  TempDir d;
  mercury::testing::write_tiny_fashion_mnist(d.path, 64, 20);
  const std::string ck = (d.path / "ck.safetensors").string();
  const std::string metrics = (d.path / "m.jsonl").string();
  const std::string cfg = d.file("cfg.json", "{\"model\": \"mlp\", \"batch\": 16, \"epochs\": 1}");
  auto r = run("train --config " + cfg + " --epochs 5 --threads 1 --epochs 2 --data-dir " +
               d.path.string() + " --metrics " + metrics + " --checkpoint " + ck);
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::ifstream in(metrics);
  std::string line;
  int epochs = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    REQUIRE(j.contains("event"));
    if (j["event"] == "epoch") {
      ++epochs;
      for (const char* k :
           {"epoch", "train_loss", "test_loss", "test_acc", "wall_s", "train_samples_per_s"})
        CHECK(j.contains(k));
    }
  }
  CHECK(epochs == 2);  // the last flag overrode the first and the config's "epochs": 1
  r = run("inspect " + ck);
  CHECK(r.code == 0);
  CHECK(r.output.find("fc1.weight  F32 [256,784]  crc32c ") != std::string::npos);
  CHECK(r.output.find("checksum: verified (header and data)") != std::string::npos);
  r = run("train --config " + cfg + " --epochs 3 --threads 1 --data-dir " + d.path.string() +
          " --resume " + ck);
  CHECK(r.code == 0);
  CHECK(r.output.find("resumed from") != std::string::npos);
  // A truncated checkpoint is refused.
  fs::resize_file(ck, fs::file_size(ck) - 10);
  r = run("train --config " + cfg + " --data-dir " + d.path.string() + " --resume " + ck);
  CHECK(r.code == 2);  // bad input
  CHECK(r.output.find(ck) != std::string::npos);
}

TEST_CASE("report pools seeds per group and measures steps to a target from evaluations") {
  TempDir d;
  // Two samplers × two seeds; accuracy after 100, 200, 300 steps (CPU seconds = steps / 10).
  auto write = [&](const std::string& name, std::vector<double> acc) {
    std::string text = "{\"event\":\"start\",\"config\":{\"sampler\":\"x\"}}\n";
    for (std::size_t k = 0; k < acc.size(); ++k) {
      const int steps = 100 * static_cast<int>(k + 1);
      text += "{\"event\":\"eval\",\"steps\":" + std::to_string(steps) +
              ",\"test_acc\":" + std::to_string(acc[k]) +
              ",\"train_cpu_s\":" + std::to_string(steps / 10.0) + "}\n";
    }
    return d.file(name + ".jsonl", text);
  };
  const std::string files =
      write("uniform-s1", {0.5, 0.8, 0.91}) + " " + write("uniform-s2", {0.5, 0.92, 0.90}) + " " +
      write("mercury-s1", {0.95, 0.93, 0.94}) + " " + write("mercury-s2", {0.7, 0.9, 0.96});
  const std::string out = (d.path / "rep").string();
  auto r = run("report --target 0.9 --out " + out + " " + files);
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::ifstream in(out + "/groups.json");
  const auto groups = nlohmann::json::parse(in);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0]["group"] == "uniform");
  CHECK(groups[0]["mean_steps_to_target"].get<double>() == doctest::Approx(250));
  CHECK(groups[1]["group"] == "mercury");
  CHECK(groups[1]["mean_steps_to_target"].get<double>() == doctest::Approx(150));
  CHECK(groups[1]["uniform_over_this_steps_to_target"].get<double>() ==
        doctest::Approx(250.0 / 150));
  CHECK(groups[1]["uniform_over_this_train_cpu_s_to_target"].get<double>() ==
        doctest::Approx(25.0 / 15));
  CHECK(groups[1]["mean_final_test_acc"].get<double>() == doctest::Approx(0.95));
  // Seed-averaged curves: uniform 0.5, 0.86, 0.905 (reaches 0.9 at 300, 30 CPU s); mercury
  // 0.825, 0.915, 0.95 (at 200, 20 CPU s) — though both mercury seeds average to 150 above.
  CHECK(groups[0]["mean_steps_to_target_curve"].get<double>() == doctest::Approx(300));
  CHECK(groups[1]["mean_steps_to_target_curve"].get<double>() == doctest::Approx(200));
  CHECK(groups[1]["uniform_over_this_steps_to_target_curve"].get<double>() == doctest::Approx(1.5));
  CHECK(groups[1]["uniform_over_this_train_cpu_s_to_target_curve"].get<double>() ==
        doctest::Approx(1.5));
  CHECK(std::filesystem::exists(out + "/accuracy_vs_steps_mean.svg"));
  // Fewer than five evaluations: the mean of all of them, then over the group's runs.
  CHECK(groups[1]["mean_final_test_acc_last5"].get<double>() ==
        doctest::Approx((0.95 + 0.93 + 0.94 + 0.7 + 0.9 + 0.96) / 6));
  // Smoothed (mean of the last three evaluations): uniform never (0.74, 0.78), mercury-s1 at
  // 300 (0.94), mercury-s2 never (0.853).
  CHECK(groups[0]["reached_target_smoothed"] == 0);
  CHECK(groups[1]["reached_target_smoothed"] == 1);
  CHECK(!groups[1].contains("mean_steps_to_target_smoothed"));
  // A run that never reaches the target leaves its group without a mean, and says so.
  const std::string slow = write("slow-s1", {0.5, 0.6, 0.7});
  r = run("report --target 0.9 --out " + out + " " + slow + " " + files);
  REQUIRE(r.code == 0);
  std::ifstream in2(out + "/groups.json");
  const auto g2 = nlohmann::json::parse(in2);
  CHECK(g2[0]["group"] == "slow");
  CHECK(g2[0]["reached_target"] == 0);
  CHECK(!g2[0].contains("mean_steps_to_target"));
  r = run("report --target 1.5 --out " + out + " " + files);
  CHECK(r.code != 0);
  CHECK(r.output.find("--target") != std::string::npos);
}

TEST_CASE("report averages probe rank changes per lag over periods and charts them by lag") {
  TempDir d;
  std::string text = "{\"event\":\"eval\",\"steps\":100,\"test_acc\":0.5}\n";
  auto change = [&](int steps, int lag, double under10, double rho) {
    text += "{\"event\":\"rank_change\",\"steps\":" + std::to_string(steps) +
            ",\"lag\":" + std::to_string(lag) +
            ",\"under5\":0.1,\"under10\":" + std::to_string(under10) +
            ",\"spearman\":" + std::to_string(rho) + ",\"top10_kept\":" + std::to_string(rho / 2) +
            "}\n";
  };
  change(1000, 1, 0.9, 0.98);
  change(1000, 10, 0.7, 0.9);
  change(1000, 1000, 0.3, 0.5);
  change(2000, 1, 0.8, 0.96);
  change(2000, 10, 0.6, 0.8);
  const std::string f = d.file("mercury-s1.jsonl", text);
  const std::string out = (d.path / "rep").string();
  // --out naming a regular file, and an event whose field has the wrong type: named, exit 2/1.
  check_refused(
      "report --out " + f + " " + f,
      "report: --out '" + f + "': expected a directory (or a new path), found a regular file");
  const std::string typed =
      d.file("typed-s1.jsonl", "{\"event\": \"eval\", \"steps\": \"ten\", \"test_acc\": 0.5}\n");
  const auto bad = run("report --out " + out + " " + typed);
  CHECK(bad.code == 1);
  CHECK(bad.output.find("report: '" + typed +
                        "': an event lacks a field or has one of the wrong type") !=
        std::string::npos);
  const auto r = run("report --out " + out + " " + f);
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::ifstream in(out + "/summary.json");
  const auto row = nlohmann::json::parse(in)[0];
  CHECK(row["rank_moved_under10_lag1"].get<double>() == doctest::Approx(0.85));
  CHECK(row["rank_moved_under10_lag1000"].get<double>() == doctest::Approx(0.3));
  CHECK(row["rank_spearman_lag1"].get<double>() == doctest::Approx(0.97));
  CHECK(row["rank_spearman_lag10"].get<double>() == doctest::Approx(0.85));
  CHECK(row["rank_spearman_lag1000"].get<double>() == doctest::Approx(0.5));
  CHECK(row["top10_kept_lag10"].get<double>() == doctest::Approx(0.425));
  CHECK(std::filesystem::exists(out + "/top10_kept.svg"));
  // Bars are categorical: each lag gets its own slot and label, however far apart the lags are.
  std::ifstream svg(out + "/rank_correlation.svg");
  const std::string chart((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  std::vector<double> bar_x;
  for (std::size_t p = chart.find("<rect x='"); p != std::string::npos;
       p = chart.find("<rect x='", p + 1))
    bar_x.push_back(std::stod(chart.substr(p + 9)));
  REQUIRE(bar_x.size() == 5);  // the frame, one bar per lag, the legend's swatch
  CHECK(bar_x[2] - bar_x[1] == doctest::Approx(bar_x[3] - bar_x[2]));
  CHECK(chart.find(">1000</text>") != std::string::npos);
}

TEST_CASE("sim: a tiny run on virtual clocks; bad sim flags and train flags are named") {
  TempDir d;
  mercury::testing::write_tiny_fashion_mnist(d.path, 64, 20);
  const std::string metrics = (d.path / "sim.jsonl").string();
  const std::string train = " -- --model mlp --batch 16 --epochs 1 --eval-every 2 --data-dir " +
                            d.path.string() + " --metrics " + metrics;
  const Result r =
      run("sim -n 2 --bandwidth 10mbps --latency-ms 5 --device-mix rpi4:1,host:1" + train);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("sim: 2 devices on virtual clocks; links 10 Mbps per link") !=
        std::string::npos);
  std::ifstream in(metrics);
  std::vector<nlohmann::json> evals, sims;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "eval") evals.push_back(j);
    if (j["event"] == "sim") sims.push_back(j);
  }
  REQUIRE(sims.size() == 1);
  CHECK(sims[0]["devices"] == 2);
  CHECK(sims[0]["factors"][0].get<double>() == 4.1);
  REQUIRE(sims[0]["ranks"].size() == 2);
  for (const auto& rank : sims[0]["ranks"]) CHECK(rank["compute_s"].get<double>() > 0);
  // Every step moves at least a latency and the rank's share of the weights each way.
  REQUIRE(evals.size() >= 2);
  CHECK(evals[1]["wall_s"].get<double>() > evals[0]["wall_s"].get<double>() + 2 * 0.005);
  CHECK(fs::exists(d.path / "sim.rank1.jsonl"));

  check_refused("sim -n 0" + train, "sim: -n: expected 1..4096 devices, found 0");
  check_refused("sim -n 2 --device pi9" + train, "device: expected one of host, jetson-tx1");
  check_refused("sim -n 3 --device-mix rpi4:2" + train, "expected counts adding up to -n 3");
  check_refused("sim -n 2 --device rpi4 --device-mix rpi4:2" + train,
                "expected --device or --device-mix, found both");
  check_refused("sim -n 2 --device-factor -1" + train, "--device-factor: expected a number");
  check_refused("sim -n 2 --bandwidth 10xbps" + train, "expected a rate like '10mbps'");
  check_refused("sim -n 2 --latency-ms -3" + train, "MERCURY_LATENCY_MS");
  check_refused("sim -n 2 --bandwidth-trace " + (d.path / "none.csv").string() + train, "none.csv");
  check_refused("sim -n 2 --model mlp", "unexpected '--model mlp'");
  check_refused("sim -n 2" + train + " --threads 2", "threads: expected 1 in the simulator");
  check_refused("sim -n 2" + train + " --batch 15", "multiple of the world size 2");
  check_refused("sim -n 2" + train + " --epochs x", "--epochs: expected an integer, found 'x'");
  check_refused("sim -n 2 --fault rank=1,iter=1,action=corrupt" + train,
                "expected kill, exit, delay, stall or drop in the simulator, found corrupt");
  ::setenv("MERCURY_HEARTBEAT_TIMEOUT", "soon", 1);
  check_refused("sim -n 2" + train,
                "sim: MERCURY_HEARTBEAT_TIMEOUT='soon': expected a number of seconds");
  ::unsetenv("MERCURY_HEARTBEAT_TIMEOUT");
  check_refused("sim -n 2 --fault rank=1" + train, "--fault");
  check_refused("sim -n 2 --medium" + train,
                "sim: --medium: expected --bandwidth or --bandwidth-trace (the medium's rate), "
                "found unlimited links");
  const Result medium = run("sim -n 2 --medium --bandwidth 10mbps" + train);
  CHECK(medium.code == 0);
  CHECK(medium.output.find("links 10 Mbps shared medium") != std::string::npos);
  // A device that dies: named, with the code `mercury launch` would return for it.
  const Result died = run("sim -n 2 --fault rank=1,iter=1,action=kill" + train);
  CHECK(died.code == 137);
  CHECK(died.output.find("device 1 was killed at step 1 (injected fault)") != std::string::npos);
  // A device frozen for good: its peers' heartbeat timeout (the environment's) names it.
  ::setenv("MERCURY_HEARTBEAT_TIMEOUT", "3", 1);
  const Result stalled = run("sim -n 2 --fault rank=1,iter=1,action=stall" + train);
  ::unsetenv("MERCURY_HEARTBEAT_TIMEOUT");
  CHECK(stalled.code == 1);
  CHECK(stalled.output.find("heartbeat timeout: rank 1 sent nothing for 3 s") != std::string::npos);
  const Result dropped = run("sim -n 2 --fault rank=0,iter=2,action=drop" + train);
  CHECK(dropped.code == 1);
  CHECK(dropped.output.find("rank 0 dropped its connections at step 2") != std::string::npos);
}

namespace {

std::vector<nlohmann::json> read_events(const fs::path& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A suite run's evaluations, one per step (eval, epoch and target_reached events), read here
// independently of tools/suite.hpp.
struct EvalRow {
  int64_t steps, rounds;
  double acc, seconds;
};

std::vector<EvalRow> eval_rows(const fs::path& path) {
  std::vector<EvalRow> c;
  for (const auto& e : read_events(path)) {
    const std::string ev = e["event"];
    if ((ev == "eval" || ev == "epoch" || ev == "target_reached") &&
        (c.empty() || e["steps"] != c.back().steps))
      c.push_back({e["steps"].get<int64_t>(), e.value("comm_rounds", int64_t{-1}),
                   e["test_acc"].get<double>(), e["wall_s"].get<double>()});
  }
  return c;
}

// Sync SGD's plateau (the mean of its last three evaluations) minus 0.5 point.
double plateau_target(const std::vector<EvalRow>& sync) {
  REQUIRE(!sync.empty());
  const std::size_t k = std::min<std::size_t>(3, sync.size());
  double t = 0;
  for (std::size_t i = sync.size() - k; i < sync.size(); ++i) t += sync[i].acc / k;
  return t - 0.005;
}

// The first evaluation at or above the target, if any.
std::optional<EvalRow> first_at(const std::vector<EvalRow>& c, double target) {
  for (const auto& e : c)
    if (e.acc >= target) return e;
  return std::nullopt;
}

}  // namespace

TEST_CASE("suite paper: Fig. 11 runs, resumes without recomputing, restarts what was cut short") {
  TempDir d;
  mercury::testing::write_tiny_fashion_mnist(d.path, 1024, 100);
  const fs::path out = d.path / "suite";
  const std::string args =
      "suite paper --quick --tasks image --model mlp --figures 11 --bandwidths 100mbps --budget 8 "
      "--eval-every 4 --data-dir " +
      d.path.string() + " --out " + out.string();
  const Result first = run(args);
  INFO(first.output);
  REQUIRE(first.code == 0);
  CHECK(first.output.find("suite paper: 6 runs (quick)") != std::string::npos);
  CHECK(first.output.find("[6/6] image/100mbps/mercury-local-t20-s1") != std::string::npos);
  const fs::path points = out / "points/image/100mbps";
  // The target is sync's plateau (its last three evaluations) minus 0.5 point, and every
  // speedup in summary.json is sync's seconds to it over the run's, recomputed here.
  auto curve = [&](const std::string& name) { return eval_rows(points / (name + "-s1.jsonl")); };
  const auto sync = curve("sync");
  REQUIRE(sync.size() >= 2);
  const double target = plateau_target(sync);
  auto seconds_to = [&](const std::vector<EvalRow>& c) -> double {
    const auto hit = first_at(c, target);
    return hit ? hit->seconds : -1;
  };
  std::ifstream sin(out / "summary.json");
  const auto summary = nlohmann::json::parse(sin);
  const auto& row = summary["fig11"]["image"]["100mbps"];
  int speedups = 0;
  for (const char* v : {"tictac", "adacomm-t10", "adacomm-t20", "mercury", "mercury-local-t20"}) {
    CAPTURE(v);
    const double t = seconds_to(curve(v));
    const auto& cell = row[v]["seeds"]["1"];
    CHECK(cell["reached"].get<bool>() == (t >= 0));
    if (t > 0) {
      ++speedups;
      CHECK(cell["speedup"].get<double>() == doctest::Approx(seconds_to(sync) / t));
    }
    // The target was handed to the run: it stopped at its first evaluation at or above it.
    const auto events = read_events(points / (std::string(v) + "-s1.jsonl"));
    CHECK(events.front()["config"]["target_acc"].get<double>() ==
          doctest::Approx(target).epsilon(1e-4));
  }
  CHECK(speedups > 0);
  std::ifstream md_in(out / "index.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  CHECK(md.find("| 100mbps |") != std::string::npos);
  CHECK(md.find("paper: Mercury (CIFAR-10, CIFAR-100, SVHN (ResNets), AID (MobileNetV2))") !=
        std::string::npos);
  CHECK(fs::exists(out / "fig11_image.svg"));

  // Again: nothing is recomputed.
  const auto mtime = fs::last_write_time(points / "mercury-s1.jsonl");
  const Result again = run(args);
  CHECK(again.code == 0);
  CHECK(again.output.find("] image/") == std::string::npos);
  CHECK(fs::last_write_time(points / "mercury-s1.jsonl") == mtime);

  // A run cut short (no done event, a stray rank file) restarts from scratch, alone, and so does
  // a finished one damaged afterwards (a torn line before its done event); a finished run that
  // never reached the target is reported as such, not as a number.
  {
    const auto local = read_events(points / "mercury-local-t20-s1.jsonl");
    std::ofstream torn(points / "mercury-local-t20-s1.jsonl");
    for (std::size_t i = 0; i < local.size(); ++i)
      torn << (i == 1 ? std::string("{\"event\":\"eval\",\"ste\n") : "") << local[i].dump() << "\n";
    auto events = read_events(points / "tictac-s1.jsonl");
    std::ofstream cut(points / "tictac-s1.jsonl");
    cut << events.front().dump() << "\n";
    std::ofstream(points / "tictac-s1.rank7.jsonl") << "{\"event\":\"start\"}\n";
    events = read_events(points / "adacomm-t10-s1.jsonl");
    std::ofstream low(points / "adacomm-t10-s1.jsonl");
    for (auto& e : events) {
      if (e.contains("test_acc")) e["test_acc"] = 0.0;
      low << e.dump() << "\n";
    }
  }
  const Result resumed = run(args);
  INFO(resumed.output);
  CHECK(resumed.code == 0);
  CHECK(resumed.output.find("[2/6] image/100mbps/tictac-s1") != std::string::npos);
  CHECK(resumed.output.find("[1/6]") == std::string::npos);
  CHECK(resumed.output.find("[3/6]") == std::string::npos);
  CHECK(resumed.output.find("[6/6] image/100mbps/mercury-local-t20-s1") != std::string::npos);
  CHECK_NOTHROW(eval_rows(points / "mercury-local-t20-s1.jsonl"));
  CHECK(!fs::exists(points / "tictac-s1.rank7.jsonl"));
  std::ifstream sin2(out / "summary.json");
  const auto summary2 = nlohmann::json::parse(sin2);
  CHECK(summary2["fig11"]["image"]["100mbps"]["adacomm-t10"]["seeds"]["1"]["reached"] == false);
  std::ifstream md2_in(out / "index.md");
  const std::string md2((std::istreambuf_iterator<char>(md2_in)), std::istreambuf_iterator<char>());
  CHECK(md2.find("not reached (0/1)") != std::string::npos);

  // Another choice of figures is another piece of the same suite: Fig. 12 needs Fig. 11's runs
  // at the first bandwidth, all finished, so nothing runs and the report has Fig. 12 only.
  const Result piece = run(
      "suite paper --quick --tasks image --model mlp --figures 12 --bandwidths 100mbps --budget 8 "
      "--eval-every 4 --data-dir " +
      d.path.string() + " --out " + out.string());
  CHECK(piece.code == 0);
  CHECK(piece.output.find("] image/") == std::string::npos);
  std::ifstream md3_in(out / "index.md");
  const std::string md3((std::istreambuf_iterator<char>(md3_in)), std::istreambuf_iterator<char>());
  CHECK(md3.find("## Fig. 12") != std::string::npos);
  CHECK(md3.find("## Fig. 11") == std::string::npos);

  // Other settings in the same directory are refused; a run that fails names its log.
  check_refused(
      "suite paper --quick --tasks image --model mlp --figures 11 --bandwidths 100mbps --budget 9 "
      "--eval-every 4 --data-dir " +
          d.path.string() + " --out " + out.string(),
      "holds a suite run with other settings");
  const Result failed = run(
      "suite paper --quick --tasks image --model mlp --figures 11 --bandwidths 100mbps --budget 8 "
      "--data-dir " +
      (d.path / "nothing-here").string() + " --out " + (d.path / "failed").string());
  CHECK(failed.code != 0);
  CHECK(failed.output.find("suite: image/100mbps/sync-s1 exited with code") != std::string::npos);
  CHECK(failed.output.find("sync-s1.log") != std::string::npos);
  // --dry-run everywhere: a check that stopped refusing must not start a real suite.
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --seeds 1,2,1",
                "--seeds: expected distinct seeds, found 1 twice");
  check_refused(
      "suite paper --dry-run --out " + (d.path / "x").string() + " --bandwidths 10mbps,10mbps",
      "--bandwidths: expected distinct rates, found 10mbps twice");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --figures 11,19",
                "figure '19': expected one of 11, 12, 13, 14, 15, 16, 17, 18, 3, 6");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --tasks audio",
                "task 'audio': expected one of image, image-resnet8, speech, text, text-lstm");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --tasks text,text",
                "--tasks: expected distinct tasks, found text twice");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --speech-dir " +
                    (d.path / "none").string(),
                "--speech-dir '" + (d.path / "none").string() +
                    "': expected a directory, found nothing there");
  std::ofstream(d.path / "file.csv") << "x\n";
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --text-dir " +
                    (d.path / "file.csv").string(),
                "--text-dir '" + (d.path / "file.csv").string() +
                    "': expected a directory, found a regular file");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --seeds 1,two",
                "--seeds: expected non-negative integers, found 'two'");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --eval-every -1",
                "--eval-every: expected 1..budget");
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --model resnet9000",
                "--model 'resnet9000': expected one of");
  check_refused(
      "suite paper --dry-run --out " + (d.path / "x").string() + " --budget 10 --eval-every 11",
      "--eval-every: expected 1..budget (10), found 11");
}

// A quick suite of the mlp at 100 Mbps on n_train generated samples, in d.path/suite.
Result run_tiny_suite(const TempDir& d, int n_train, const std::string& flags) {
  mercury::testing::write_tiny_fashion_mnist(d.path, n_train, 100);
  return run("suite paper --quick --tasks image --model mlp --bandwidths 100mbps " + flags +
             " --data-dir " + d.path.string() + " --out " + (d.path / "suite").string());
}

TEST_CASE("suite paper: Figs. 12, 13, 15 and 16 from their own runs, every ratio recomputed") {
  TempDir d;
  const fs::path out = d.path / "suite";
  const Result r =
      run_tiny_suite(d, 1024, "--figures 12,13,15,16 --budget 8 --eval-every 4 --train-limit 800");
  INFO(r.output);
  REQUIRE(r.code == 0);
  // Fig. 12 needs Fig. 11's runs at the first bandwidth, Fig. 15 adds the sequential pipeline
  // (7); Fig. 13 runs in its own subset group (3: its sync sets the target); Fig. 16 on a
  // fluctuating link (3). Mercury at 100 Mbps serves Figs. 12 and 15 but runs once.
  CHECK(r.output.find("suite paper: 13 runs (quick)") != std::string::npos);
  CHECK(r.output.find("image-n800/100mbps/all-is-s1") != std::string::npos);
  CHECK(r.output.find("image/100mbps-fluct/mercury-fixed640-s1") != std::string::npos);

  auto curve = [&](const std::string& id) { return eval_rows(out / "points" / (id + ".jsonl")); };
  auto reach = [&](const std::string& group, const std::string& v) {
    return first_at(curve(group + "/" + v + "-s1"), plateau_target(curve(group + "/sync-s1")));
  };
  std::ifstream sin(out / "summary.json");
  const auto summary = nlohmann::json::parse(sin);
  // Every ratio in summary.json is recomputed from the runs' metrics: the reference's seconds
  // to the group's target over the subject's, and the subject's steps over the reference's.
  int numbers = 0;
  auto check_ratio = [&](const nlohmann::json& cell, const std::string& group,
                         const std::string& subject, const std::string& reference) {
    CAPTURE(group);
    CAPTURE(subject);
    REQUIRE(cell["finished"] == 1);
    const auto mine = reach(group, subject);
    const auto b = reach(group, reference);
    CHECK(cell["seeds"]["1"]["reached"].get<bool>() == mine.has_value());
    if (mine && b) {
      ++numbers;
      CHECK(cell["seeds"]["1"]["speedup"].get<double>() ==
            doctest::Approx(b->seconds / mine->seconds));
      CHECK(cell["seeds"]["1"]["step_ratio"].get<double>() ==
            doctest::Approx(static_cast<double>(mine->steps) / static_cast<double>(b->steps)));
    } else {
      CHECK(!cell["seeds"]["1"].contains("speedup"));
    }
  };
  check_ratio(summary["fig13"]["image"]["100mbps"]["mercury-seq"], "image-n800/100mbps",
              "mercury-seq", "all-is");
  CHECK(!summary["fig13"]["image"]["100mbps"].contains("mercury"));  // full mode only
  // Epoch-end evaluations (every 3 steps in the subset group, between the evaluations every 4)
  // carry the same clock as the others: training seconds, evaluations excluded (elapsed_s
  // counts them), so a curve's time never runs backwards.
  {
    const auto rows = curve("image-n800/100mbps/sync-s1");
    for (std::size_t i = 1; i < rows.size(); ++i) CHECK(rows[i].seconds >= rows[i - 1].seconds);
    int epochs = 0;
    bool evaluated = false;  // after an evaluation, elapsed_s includes its (virtual) time
    for (const auto& e : read_events(out / "points/image-n800/100mbps/sync-s1.jsonl")) {
      if (e["event"] == "epoch") {
        ++epochs;
        const double elapsed = e.value("elapsed_s", -1.0), wall = e["wall_s"].get<double>();
        CHECK(elapsed >= wall);
        if (evaluated) CHECK(elapsed > wall);
      }
      evaluated = evaluated || e["event"] == "eval" || e["event"] == "epoch";
    }
    CHECK(epochs >= 2);
  }
  check_ratio(summary["fig15"]["image"]["100mbps"], "image/100mbps", "mercury", "mercury-seq");
  const auto& f16 = summary["fig16"]["image"]["100mbps-fluct"];
  check_ratio(f16["adaptive"], "image/100mbps-fluct", "mercury", "sync");
  check_ratio(f16["fixed640"], "image/100mbps-fluct", "mercury-fixed640", "sync");
  check_ratio(f16["adaptive_over_fixed"], "image/100mbps-fluct", "mercury", "mercury-fixed640");
  CHECK(numbers > 0);

  // Fig. 13's subset group trains on the first 800 samples (200 per device), and all-is scores
  // all of them every step: its scored samples are 200 x its steps on rank 0.
  const auto allis = read_events(out / "points/image-n800/100mbps/all-is-s1.jsonl");
  CHECK(allis.front()["config"]["train_limit"] == 800);
  for (const auto& e : allis)
    if (e["event"] == "epoch")
      CHECK(e["scored_samples"].get<int64_t>() == 200 * e["steps"].get<int64_t>());

  // Fig. 16: the links follow the suite's trace, the seed's generate_trace call, and the fixed
  // group scores 640 samples in every window (here the whole 200-sample partition, the most a
  // group can hold) while the adaptive one scores what fits.
  const auto trace =
      mercury::net::BandwidthTrace::load((out / "traces/100mbps-fluct-s1.csv").string());
  const auto want = mercury::net::generate_trace(100, 0.10, 600, 0.5, 1);
  REQUIRE(trace.points().size() == want.points().size());
  for (std::size_t i = 0; i < want.points().size(); ++i)
    CHECK(trace.points()[i].mbps == want.points()[i].mbps);
  int fixed_windows = 0;
  for (const auto& e : read_events(out / "points/image/100mbps-fluct/mercury-fixed640-s1.jsonl"))
    if (e["event"] == "bacc") {
      ++fixed_windows;
      CHECK(e["group"] == 200);
    }
  CHECK(fixed_windows > 0);
  for (const auto& e : read_events(out / "points/image/100mbps-fluct/mercury-s1.jsonl"))
    if (e["event"] == "bacc") CHECK(e["group"].get<int64_t>() <= 640);
  CHECK(read_events(out / "points/image/100mbps/mercury-seq-s1.jsonl").front()["pipeline"] ==
        "sequential");

  // Fig. 12: a round is a step under sync SGD, an averaging under AdaComm (tau 10 here), and the
  // curves in summary.json are the runs' evaluations.
  for (const auto& e : curve("image/100mbps/sync-s1")) CHECK(e.rounds == e.steps);
  const auto ada = curve("image/100mbps/adacomm-t10-s1");
  REQUIRE(!ada.empty());
  for (const auto& e : ada) CHECK(e.rounds < e.steps);
  const auto& f12 = summary["fig12"]["image"]["100mbps"]["adacomm-t10"]["curve"];
  REQUIRE(f12["rounds"].size() == ada.size());
  for (std::size_t i = 0; i < ada.size(); ++i) CHECK(f12["rounds"][i] == ada[i].rounds);

  std::ifstream md_in(out / "index.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  for (const char* h : {"## Fig. 12", "## Fig. 13", "## Fig. 15", "## Fig. 16",
                        "4.2x faster, ~1.2x the iterations", "2.2x faster, ~1.05x the iterations"})
    CHECK(md.find(h) != std::string::npos);
  CHECK(md.find("## Fig. 11") == std::string::npos);
  CHECK(fs::exists(out / "fig12_image_time.svg"));
  CHECK(fs::exists(out / "fig12_image_rounds.svg"));
}

TEST_CASE(
    "suite paper: Figs. 14, 17, 18, 3 and 6: their settings reach the runs, the tables "
    "recompute") {
  TempDir d;
  const fs::path out = d.path / "suite";
  const Result r = run_tiny_suite(d, 2400, "--figures 14,17,18,3,6 --budget 12 --eval-every 2");
  INFO(r.output);
  REQUIRE(r.code == 0);
  // Fig. 14: three resharding runs, no sync (they train half the budget); Fig. 17: sync and
  // Mercury on 4 and 8 devices; Fig. 18: sync and Mercury on 12; Figs. 3 and 6: one probe run.
  CHECK(r.output.find("suite paper: 10 runs (quick)") != std::string::npos);
  const fs::path points = out / "points";
  std::ifstream sin(out / "summary.json");
  const auto summary = nlohmann::json::parse(sin);

  // Fig. 14: the runs train on label-sorted shards with the named resharding (the model is
  // --model's when it is not the default cnn, which the figure replaces by resnet8); the fraction
  // moved is rank 0's samples sent over its partition, the accuracy the mean of the last three
  // evaluations.
  for (const char* v :
       {"mercury-reshard-off", "mercury-reshard-random-0.5", "mercury-reshard-importance-0.5"}) {
    CAPTURE(v);
    const auto events =
        read_events(points / "image-mlp-shards/100mbps" / (std::string(v) + "-s1.jsonl"));
    const auto& cfg = events.front()["config"];
    CHECK(cfg["partition"] == "shards");
    CHECK(cfg["shards_per_device"] == 2);
    CHECK(cfg["model"] == "mlp");
    CHECK(cfg["sampler"] == "mercury");
    CHECK(cfg["target_acc"].get<double>() == 0.0);
    const std::string kind = std::string(v).substr(16, std::string(v).find('-', 16) - 16);
    CHECK(cfg["reshard"] == (kind == "off" ? "off" : kind));
    const double part = events.front()["partition_sizes"][0].get<double>();
    double sent = 0;
    std::vector<double> acc;
    int64_t last = -1;
    for (const auto& e : events) {
      if (e.contains("reshard_sent")) sent = e["reshard_sent"].get<double>();
      const std::string ev = e["event"];
      if ((ev == "eval" || ev == "epoch") && e["steps"] != last) {
        last = e["steps"];
        acc.push_back(e["test_acc"].get<double>());
      }
    }
    CHECK(last == 6);  // half the budget in the quick mode
    REQUIRE(acc.size() >= 3);
    const double plateau = (acc[acc.size() - 1] + acc[acc.size() - 2] + acc[acc.size() - 3]) / 3;
    const auto& cell = summary["fig14"]["image"][v];
    CHECK(cell["final_acc_mean"].get<double>() == doctest::Approx(plateau));
    CHECK(cell["moved_mean"].get<double>() == doctest::Approx(sent / part));
    CHECK((kind == "off") == (sent == 0));
  }

  // Figs. 17 and 18: the device count, the global batch, the medium and the split reach the
  // runs, and each speedup is sync's seconds to the group's target over Mercury's.
  int compared = 0;  // speedups recomputed (a run that missed the target has none)
  auto check_group = [&](const fs::path& dir, int devices, const nlohmann::json& cell) {
    CAPTURE(dir);
    for (const char* v : {"sync-s1.jsonl", "mercury-s1.jsonl"}) {
      const auto events = read_events(dir / v);
      CHECK(events.front()["config"]["batch"] == 64 * devices);
      for (const auto& e : events)
        if (e["event"] == "sim") CHECK(e["devices"] == devices);
    }
    const auto sync = eval_rows(dir / "sync-s1.jsonl");
    REQUIRE(sync.size() >= 3);
    const double target = plateau_target(sync);
    const auto hs = first_at(sync, target),
               hm = first_at(eval_rows(dir / "mercury-s1.jsonl"), target);
    const double s = hs ? hs->seconds : -1, m = hm ? hm->seconds : -1;
    CHECK(cell["seeds"]["1"]["reached"].get<bool>() == (m >= 0));
    if (m > 0) {
      ++compared;
      CHECK(cell["seeds"]["1"]["speedup"].get<double>() == doctest::Approx(s / m));
    }
  };
  check_group(points / "image/100mbps-shared", 4, summary["fig17"]["image"]["4"]["mercury"]);
  check_group(points / "image/100mbps-shared/n8", 8, summary["fig17"]["image"]["8"]["mercury"]);
  check_group(points / "image-dir0.5/100mbps/n12", 12, summary["fig18"]["image"]["0.5"]);
  CHECK(compared > 0);
  for (const auto& e : read_events(points / "image/100mbps-shared/n8/sync-s1.jsonl"))
    if (e["event"] == "sim")
      CHECK(e["links"].get<std::string>().find("shared medium") != std::string::npos);
  const auto n12 = read_events(points / "image-dir0.5/100mbps/n12/mercury-s1.jsonl");
  CHECK(n12.front()["config"]["partition"] == "dirichlet");
  CHECK(n12.front()["config"]["reshard"] == "off");

  // Figs. 3 and 6: one device, a probe every budget / 3 = 4 steps; the table's means are the
  // probe events' means per lag.
  const auto probe = read_events(points / "image/local/probe-s1.jsonl");
  CHECK(probe.front()["config"]["importance_stats_every"] == 4);
  std::map<int64_t, std::vector<double>> under10;
  int hists = 0;
  for (const auto& e : probe) {
    if (e["event"] == "rank_change") under10[e["lag"].get<int64_t>()].push_back(e["under10"]);
    hists += e["event"] == "importance_hist";
  }
  CHECK(summary["fig3"]["image"].size() == static_cast<std::size_t>(hists));
  CHECK(hists == 3);  // steps 4, 8, 12
  REQUIRE(under10.count(1));
  for (const auto& [lag, v] : under10) {
    double m = 0;
    for (double x : v) m += x / static_cast<double>(v.size());
    CHECK(summary["fig6"]["image"][std::to_string(lag)]["under10"].get<double>() ==
          doctest::Approx(m));
  }
  std::ifstream md_in(out / "index.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  for (const char* h : {"## Fig. 14", "## Fig. 17", "## Fig. 18", "## Figs. 3 and 6",
                        "+1.84 points", "2.41x", "~50% < 5%, ~70% < 10%"})
    CHECK(md.find(h) != std::string::npos);
  for (const char* svg : {"fig14_image.svg", "fig3_image.svg", "fig6_image.svg"})
    CHECK(fs::exists(out / svg));
}

TEST_CASE("suite paper: the speech and text tasks, their data made by the suite or given") {
  TempDir d;
  const fs::path speech = d.path / "speech", out = d.path / "suite";
  mercury::testing::write_tone_speech_commands(speech, 100);  // 294 train clips, 3 words
  // Quick: image, speech and text by default, their data made first; speech and text run Fig. 11
  // at the first bandwidth on 3/10 of the budget: Mercury (and on text Mercury on local SGD)
  // against sync SGD.
  const Result plan = run("suite paper --quick --dry-run --out " + out.string());
  INFO(plan.output);
  CHECK(plan.output.find("data/speech (~1m00s): mercury data speech-synth --out " +
                         (out / "data/speech").string()) != std::string::npos);
  CHECK(plan.output.find("data/text (~0m03s): mercury data debian-text --out " +
                         (out / "data/text").string()) != std::string::npos);
  CHECK(plan.output.find("speech/10mbps/mercury-s1") != std::string::npos);
  CHECK(plan.output.find("speech/10mbps/mercury-local-t20-s1") == std::string::npos);
  CHECK(plan.output.find("text/10mbps/mercury-local-t20-s1") != std::string::npos);
  CHECK(plan.output.find("speech/100mbps/") == std::string::npos);
  CHECK(plan.output.find("text/10mbps/tictac-s1") == std::string::npos);
  CHECK(plan.output.find("text/10mbps/adacomm") == std::string::npos);
  CHECK(plan.output.find("--model ds_cnn --data speech-commands --data-dir " +
                         (out / "data/speech").string() + " --log-mel true") != std::string::npos);
  CHECK(plan.output.find("--model textcnn --data debian-text --data-dir " +
                         (out / "data/text").string()) != std::string::npos);
  CHECK(plan.output.find("--max-steps 60 --eval-every 8") != std::string::npos);
  // Full: all five tasks, those other than image at the first bandwidth with TicTac and AdaComm
  // added; Figs. 15 and 16 at the first and the last bandwidth; Fig. 14 (ResNet-8) on 3/10 of
  // the budget.
  const Result full = run("suite paper --dry-run --out " + out.string());
  CHECK(full.output.find("text-lstm/10mbps/tictac-s3") != std::string::npos);
  CHECK(full.output.find("text-lstm/10mbps/adacomm-t20-s3") != std::string::npos);
  CHECK(full.output.find("--model lstm_attention") != std::string::npos);
  CHECK(full.output.find("image-resnet8/10mbps/sync-s1") != std::string::npos);
  CHECK(full.output.find("speech/200mbps/") == std::string::npos);
  CHECK(full.output.find("image/200mbps-fluct/mercury-s3") != std::string::npos);
  CHECK(full.output.find("image/50mbps-fluct/") == std::string::npos);
  CHECK(full.output.find("image/200mbps/mercury-seq-s2") != std::string::npos);
  CHECK(full.output.find("image/50mbps/mercury-seq-s2") == std::string::npos);
  const auto reshard = full.output.find("image-resnet8-shards/10mbps/mercury-reshard-off-s1");
  REQUIRE(reshard != std::string::npos);
  CHECK(full.output.substr(reshard, full.output.find('\n', reshard) - reshard)
            .find("--max-steps 450 --eval-every 50") != std::string::npos);

  // A real run: speech from a given directory, text made by the suite (apt-cache dumpavail).
  const std::string args =
      "suite paper --quick --tasks speech,text --figures 11,12 --model mlp "
      "--bandwidths 100mbps --budget 20 --eval-every 5 --train-limit 600 "
      "--speech-dir " +
      speech.string() + " --out " + out.string();
  const Result r = run(args);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("suite paper: 5 runs (quick)") != std::string::npos);
  CHECK(r.output.find("suite paper: data text made in") != std::string::npos);
  CHECK(r.output.find("data speech") == std::string::npos);
  CHECK(fs::exists(out / "data/text/train.csv"));
  CHECK(fs::exists(out / "data/text.done"));
  CHECK(!fs::exists(out / "data/speech"));
  const auto start = read_events(out / "points/speech/100mbps/sync-s1.jsonl").front();
  CHECK(start["config"]["data"] == "speech-commands");
  CHECK(start["config"]["log_mel"] == true);
  CHECK(start["config"]["max_steps"] == 6);  // 3/10 of 20
  CHECK(read_events(out / "points/text/100mbps/mercury-s1.jsonl").front()["config"]["data"] ==
        "debian-text");
  std::ifstream sin(out / "summary.json");
  const auto summary = nlohmann::json::parse(sin);
  CHECK(summary["fig11"]["speech"]["100mbps"]["mercury"]["finished"] == 1);
  CHECK(!summary["fig11"]["speech"]["100mbps"].contains("mercury-local-t20"));
  CHECK(summary["fig11"]["text"]["100mbps"]["mercury"]["finished"] == 1);
  CHECK(summary["fig11"]["text"]["100mbps"]["mercury-local-t20"]["finished"] == 1);
  // Mercury's group: the mean of rank 0's bacc events' groups.
  double groups = 0, windows = 0;
  for (const auto& e : read_events(out / "points/text/100mbps/mercury-s1.jsonl"))
    if (e["event"] == "bacc") groups += e["group"].get<double>(), ++windows;
  REQUIRE(windows > 0);
  CHECK(summary["fig11"]["text"]["100mbps"]["mercury"]["group_mean"].get<double>() ==
        doctest::Approx(groups / windows));
  std::ifstream md_in(out / "index.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  CHECK(md.find("## Fig. 11: speedup over sync SGD (speech: mlp on") != std::string::npos);
  CHECK(md.find("paper: Mercury (Speech Commands v0.02") != std::string::npos);
  CHECK(md.find("2.62x |") != std::string::npos);  // the paper's speech number at 100 Mbps
  CHECK(md.find("1.62x |") != std::string::npos);  // and its AG News number
  CHECK(md.find("## Fig. 12: accuracy against time and against communication rounds (text") !=
        std::string::npos);
  CHECK(md.find("## Fig. 13") == std::string::npos);
  CHECK(md.find("Mercury's importance group (rank 0's samples scored per step") !=
        std::string::npos);

  // Again: neither the data nor a run is made twice.
  const auto mtime = fs::last_write_time(out / "data/text.done");
  const Result again = run(args);
  CHECK(again.code == 0);
  CHECK(again.output.find("data text made") == std::string::npos);
  CHECK(again.output.find("] speech/") == std::string::npos);
  CHECK(fs::last_write_time(out / "data/text.done") == mtime);
  // A given text directory without classes.txt is AG News.
  const fs::path ag = d.path / "ag";
  fs::create_directories(ag);
  mercury::testing::write_tiny_ag_news(ag, 40, 8);
  const Result agr = run("suite paper --quick --dry-run --tasks text --text-dir " + ag.string() +
                         " --out " + (d.path / "x").string());
  CHECK(agr.output.find("--data ag-news --data-dir " + ag.string()) != std::string::npos);
  CHECK(agr.output.find("data/text") == std::string::npos);
}

TEST_CASE("suite paper --real-clock: the same runs simulated and as real processes") {
  TempDir d;
  const fs::path out = d.path / "suite";
  const Result r = run_tiny_suite(d, 1024, "--figures 3 --real-clock --budget 8 --eval-every 4");
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(r.output.find("suite paper: 5 runs (quick)") != std::string::npos);
  auto simulated = [&](const std::string& id) {
    for (const auto& e : read_events(out / "points" / (id + ".jsonl")))
      if (e["event"] == "sim") return true;
    return false;
  };
  std::ifstream sin(out / "summary.json");
  const auto summary = nlohmann::json::parse(sin);
  for (const char* v : {"sync", "mercury"}) {
    CAPTURE(v);
    const std::string sid = std::string("image/100mbps/n2/") + v + "-s1";
    const std::string rid = std::string("image/100mbps/n2-real/") + v + "-s1";
    CHECK(simulated(sid));
    CHECK(!simulated(rid));  // mercury launch: real ranks, real clocks
    const auto sim = eval_rows(out / "points" / (sid + ".jsonl"));
    const auto real = eval_rows(out / "points" / (rid + ".jsonl"));
    REQUIRE(!sim.empty());
    REQUIRE(!real.empty());
    const auto per_step = [](const std::vector<EvalRow>& c) {
      return c.back().seconds / static_cast<double>(c.back().steps);
    };
    CHECK(summary["real_clock"]["image"][v]["real_over_sim_step"].get<double>() ==
          doctest::Approx(per_step(real) / per_step(sim)));
    if (std::string(v) == "sync") {  // deterministic: the same model at every evaluation
      REQUIRE(sim.size() == real.size());
      for (std::size_t i = 0; i < sim.size(); ++i) {
        CHECK(sim[i].steps == real[i].steps);
        CHECK(sim[i].acc == real[i].acc);
      }
    }
  }
  std::ifstream md_in(out / "index.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  CHECK(md.find("## The simulator against real processes") != std::string::npos);
  check_refused("suite paper --dry-run --out " + (d.path / "x").string() + " --figures real",
                "figure 'real': expected one of");
}
