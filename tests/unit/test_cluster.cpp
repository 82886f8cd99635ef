// Distributed training end to end: real `mercury train` processes on loopback (the Asio mesh,
// the handshake, BSP over sharded parameter servers) against the same ranks as threads of one
// process, and the faults a cluster must survive with a clear, bounded failure.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_run.hpp"
#include "file_test_support.hpp"
#include "mercury/mercury.hpp"
#include "models/registry.hpp"
#include "net/local.hpp"
#include "synthetic_data.hpp"
#include "tools/launch.hpp"
#include "tools/process.hpp"

using namespace mercury;
using mercury::testing::check_mentions;
using mercury::testing::TempDir;
using mercury::testing::write_tiny_fashion_mnist;

namespace {

// The mercury binary, through qemu in cross builds.
const std::vector<std::string> kMercury = mercury::testing::mercury_command();

// a, then b's words.
std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> train_args(const TempDir& d, int batch, int steps) {
  return {"train",
          "--data-dir",
          d.path().string(),
          "--model",
          "mlp",
          "--batch",
          std::to_string(batch),
          "--epochs",
          "2",
          "--max-steps",
          std::to_string(steps),
          "--threads",
          "1",
          "--progress",
          "false",
          "--test-limit",
          "64"};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The parameter tensors of a checkpoint, by name.
std::map<std::string, std::vector<uint8_t>> checkpoint_params(const std::string& path,
                                                              const nn::Model& model) {
  const auto f = io::SafetensorsFile::load(path);
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& p : model.params.params()) {
    const auto bytes = f.bytes(f.at(p.name));
    out[p.name].assign(bytes.begin(), bytes.end());
  }
  return out;
}

struct Rank {
  pid_t pid = -1;
  std::string log;
};

// Starts `world` ranks of `mercury train` directly (no launcher, so survivors are not torn down
// and each reports the failure itself), each with its own log file.
std::vector<Rank> start_ranks(const TempDir& d, int world, const std::vector<std::string>& args,
                              const std::vector<std::string>& extra_env,
                              const std::function<std::vector<std::string>(int)>& rank_env = {}) {
  const uint16_t port = tools::pick_free_port();
  const std::string run_id = tools::random_run_id();
  std::vector<Rank> ranks(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) {
    Rank& rank = ranks[static_cast<std::size_t>(r)];
    rank.log = d.file("rank" + std::to_string(r) + ".log");
    tools::Fd out(::open(rank.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(out);
    tools::SpawnOptions o;
    o.stdout_fd = o.stderr_fd = out.get();
    o.new_process_group = true;
    o.die_with_parent = true;
    o.env = {"RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(world),
             "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
             "MERCURY_RUN_ID=" + run_id};
    o.env.insert(o.env.end(), extra_env.begin(), extra_env.end());
    if (rank_env) {
      const auto more = rank_env(r);
      o.env.insert(o.env.end(), more.begin(), more.end());
    }
    std::vector<std::string> argv = cat(kMercury, args);
    rank.pid = tools::spawn(argv, o);
  }
  return ranks;
}

// Waits for every rank (except `skip`) up to `seconds`; returns exit codes (128+signal when
// killed, -1 when still running at the deadline — then it is killed).
std::vector<int> wait_ranks(std::vector<Rank>& ranks, double seconds, int skip = -1) {
  std::vector<int> codes(ranks.size(), -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    if (static_cast<int>(r) == skip) continue;
    int status = 0;
    for (;;) {
      const pid_t got = ::waitpid(ranks[r].pid, &status, WNOHANG);
      if (got == ranks[r].pid) {
        codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(ranks[r].pid, SIGKILL);
        ::waitpid(ranks[r].pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return codes;
}

// Under ThreadSanitizer (the tsan preset builds the mercury binary with it too) a rank that
// races prints a report to its stderr and exits 66 at the end; the fault cases expect non-zero
// exits, so their logs are checked for reports as well.
void check_no_tsan_report(const std::string& output, const std::string& who) {
  CHECK_MESSAGE(output.find("WARNING: ThreadSanitizer") == std::string::npos,
                who << " printed a ThreadSanitizer report:\n"
                    << output);
}

void check_no_tsan_report(const std::vector<Rank>& ranks) {
  for (std::size_t r = 0; r < ranks.size(); ++r)
    check_no_tsan_report(slurp(ranks[r].log), "rank " + std::to_string(r));
}

void kill_rank(Rank& rank) {
  ::kill(rank.pid, SIGKILL);
  int status = 0;
  ::waitpid(rank.pid, &status, 0);
}

}  // namespace

TEST_CASE("4 ranks as processes: bitwise equal to 4 ranks as threads and across repeated runs") {
  // Uniform sync SGD, and Mercury with BACC's fixed group and importance-aware resharding over
  // unequal parts.
  const std::vector<std::string> mercury_args = {
      "--sampler",   "mercury",   "--pipeline", "bacc",       "--group-size",     "40",
      "--partition", "dirichlet", "--reshard",  "importance", "--reshard-budget", "1"};
  for (const bool importance : {false, true}) {
    CAPTURE(importance);
    TempDir d;
    write_tiny_fashion_mnist(d.path(), 512, 64, /*noisy=*/true);
    const int W = 4, batch = 64, steps = 6;
    std::vector<std::string> ckpt;
    for (int run = 0; run < 2; ++run) {
      ckpt.push_back(d.file("run" + std::to_string(run) + ".safetensors"));
      std::vector<std::string> argv =
          cat(cat(kMercury, {"launch", "-n", std::to_string(W), "--"}), kMercury);
      const auto args = train_args(d, batch, steps);
      argv.insert(argv.end(), args.begin(), args.end());
      argv.insert(argv.end(), {"--checkpoint", ckpt.back()});
      if (importance) argv.insert(argv.end(), mercury_args.begin(), mercury_args.end());
      const auto r = tools::run_process(argv, 120);
      INFO(r.out, r.err);
      check_no_tsan_report(r.out + r.err, "mercury launch");
      REQUIRE(r.ok());
      CHECK(r.out.find("[rank 3]") != std::string::npos);
    }

    // The same ranks as threads over a LocalHub, in this process.
    data::DatasetOptions dopt;
    dopt.name = "fashion-mnist";
    dopt.dir = d.path().string();
    const data::LoadedData data = data::load_dataset(dopt);
    train::TrainConfig cfg;
    cfg.model = "mlp";
    cfg.data_dir = d.path().string();
    cfg.batch = batch;
    cfg.epochs = 2;
    cfg.max_steps = steps;
    cfg.threads = 1;
    cfg.progress = false;
    cfg.test_limit = 64;
    if (importance) {
      cfg.sampler = "mercury";
      cfg.pipeline = "bacc";
      cfg.group_size = 40;
      cfg.partition = "dirichlet";
      cfg.reshard = "importance";
      cfg.reshard_budget = 1;
    }
    net::LocalHub hub(W);
    std::vector<std::unique_ptr<nn::Model>> models;
    for (int r = 0; r < W; ++r) {
      models.push_back(
          models::make_model("mlp", data.train->sample_shape(), data.train->num_classes(), 1, {}));
    }
    std::vector<std::thread> threads;
    std::vector<std::string> errors(W);
    for (int r = 0; r < W; ++r) {
      threads.emplace_back([&, r] {
        try {
          std::ostringstream log;
          const train::DistContext ctx{hub.transport(r),
                                       dist::ShardPlan(models[r]->params.size(), W)};
          train::Trainer t(cfg, *models[r], *data.train, *data.test, log, &ctx);
          t.run();
          hub.transport(r).close(net::deadline_in(10));
        } catch (const std::exception& e) {
          errors[r] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& e : errors) CHECK(e == "");

    const auto first = checkpoint_params(ckpt[0], *models[0]);
    CHECK(first == checkpoint_params(ckpt[1], *models[0]));  // repeated multi-process runs
    for (const auto& p : models[0]->params.params()) {
      const auto* v = reinterpret_cast<const uint8_t*>(models[0]->params.values() + p.offset);
      const std::vector<uint8_t> threaded(v, v + p.shape.numel() * 4);
      CHECK_MESSAGE(first.at(p.name) == threaded, "tensor " << p.name);
    }
  }
}

TEST_CASE("the baselines over real processes: tictac ends bitwise as sync, adacomm averages") {
  TempDir d;
  write_tiny_fashion_mnist(d.path(), 384, 64, /*noisy=*/true);
  // The reference CNN (TicTac schedules its convolutions layer by layer) on 8 samples per rank
  // and 16 test samples: under qemu each rank trains ~8 samples a second.
  const int W = 3, batch = 24, steps = 4;
  std::map<std::string, std::string> ckpt;
  for (const char* algorithm : {"sync", "tictac", "adacomm"}) {
    CAPTURE(algorithm);
    std::vector<std::string> argv =
        cat(cat(kMercury, {"launch", "-n", std::to_string(W), "--"}), kMercury);
    auto args = train_args(d, batch, steps);
    *std::find(args.begin(), args.end(), "mlp") = "cnn";
    *std::next(std::find(args.begin(), args.end(), "--test-limit")) = "16";
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string metrics = d.file(std::string(algorithm) + ".jsonl");
    argv.insert(argv.end(), {"--algorithm", algorithm, "--metrics", metrics});
    if (std::string(algorithm) != "adacomm") {  // adacomm does not checkpoint yet
      ckpt[algorithm] = d.file(std::string(algorithm) + ".safetensors");
      argv.insert(argv.end(), {"--checkpoint", ckpt[algorithm]});
    } else {
      argv.insert(argv.end(), {"--adacomm-tau0", "2"});
    }
    const auto r = tools::run_process(argv, 120);
    INFO(r.out, r.err);
    check_no_tsan_report(r.out + r.err, "mercury launch");
    REQUIRE(r.ok());
    const auto done = mercury::testing::metrics_events(metrics, "done");
    REQUIRE(done.size() == 1);
    CHECK(done[0]["algorithm"] == algorithm);
    CHECK(done[0]["steps"] == steps);
    if (std::string(algorithm) == "adacomm") CHECK(done[0]["averagings"] == 2);  // after 2, 4
  }
  auto model = models::make_model("cnn", Shape{1, 28, 28}, 10, 1, {});
  const auto sync = checkpoint_params(ckpt["sync"], *model);
  CHECK(sync.size() == model->params.params().size());
  CHECK(checkpoint_params(ckpt["tictac"], *model) == sync);
}

TEST_CASE("a rank killed mid-run: every survivor exits non-zero within the timeout naming it") {
  TempDir d;
  write_tiny_fashion_mnist(d.path(), 512, 64, /*noisy=*/true);
  auto ranks = start_ranks(d, 3, train_args(d, 48, 40),
                           {"MERCURY_FAULT=rank=2,iter=3,action=kill", "MERCURY_OP_TIMEOUT=10"});
  const auto t0 = std::chrono::steady_clock::now();
  const auto codes = wait_ranks(ranks, 60);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(codes[2] == 128 + SIGKILL);
  for (int r : {0, 1}) {
    const std::string log = slurp(ranks[r].log);
    INFO("rank ", r, " log:\n", log);
    CHECK(codes[r] != 0);
    CHECK(codes[r] != -1);  // exited by itself
    check_mentions(log, {"rank 2"});
  }
  CHECK(took < 10 + 5 + 10);  // op timeout + 5 s, plus start-up on a loaded 2-core machine
  check_no_tsan_report(ranks);
}

TEST_CASE("resharding processes: a rank killed mid-swap, resumed, ends bit-exact") {
  TempDir d;
  write_tiny_fashion_mnist(d.path(), 512, 64, /*noisy=*/true);
  auto args = train_args(d, 48, 12);
  args.insert(args.end(),
              {"--sampler", "mercury", "--reshard", "importance", "--reshard-budget", "1",
               "--partition", "shards", "--checkpoint-every", "3", "--pipeline", "bacc",
               "--group-size", "32"});  // a fixed group: deterministic, so bit-exact
  auto launch = [&](const std::string& ckpt, const std::vector<std::string>& extra,
                    const std::vector<std::string>& env) {
    std::vector<std::string> argv = {"/usr/bin/env"};  // the fault reaches the ranks via launch
    argv.insert(argv.end(), env.begin(), env.end());
    argv = cat(cat(cat(argv, kMercury), {"launch", "-n", "3", "--"}), kMercury);
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--checkpoint", ckpt});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return tools::run_process(argv, 120);
  };
  const std::string whole = d.file("whole.safetensors"), cut = d.file("cut.safetensors");
  const auto w = launch(whole, {}, {});
  INFO(w.out, w.err);
  REQUIRE(w.ok());
  CHECK(w.out.find("resharded") != std::string::npos);
  // Rank 1 dies at step 7, its reshard samples just handed to the transport; step 6 was saved.
  const auto k = launch(cut, {}, {"MERCURY_FAULT=rank=1,iter=7,action=kill"});
  INFO(k.out, k.err);
  CHECK_FALSE(k.ok());
  check_no_tsan_report(k.out + k.err, "the killed run");
  const auto r = launch(cut, {"--resume", cut}, {});
  INFO(r.out, r.err);
  REQUIRE(r.ok());
  check_no_tsan_report(r.out + r.err, "the resumed run");
  CHECK(r.out.find("resumed from") != std::string::npos);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1, {});
  CHECK(checkpoint_params(cut, *model) == checkpoint_params(whole, *model));
}

TEST_CASE("a stalled rank (SIGSTOP) is named by a heartbeat timeout") {
  TempDir d;
  write_tiny_fashion_mnist(d.path(), 512, 64, /*noisy=*/true);
  auto ranks = start_ranks(d, 3, train_args(d, 48, 40),
                           {"MERCURY_FAULT=rank=1,iter=2,action=stall",
                            "MERCURY_HEARTBEAT_INTERVAL=0.2", "MERCURY_HEARTBEAT_TIMEOUT=2"});
  const auto codes = wait_ranks(ranks, 40, /*skip=*/1);
  kill_rank(ranks[1]);
  for (int r : {0, 2}) {
    const std::string log = slurp(ranks[r].log);
    INFO("rank ", r, " log:\n", log);
    CHECK(codes[r] != 0);
    CHECK(codes[r] != -1);
    check_mentions(log, {"rank 1", "heartbeat"});
  }
  check_no_tsan_report(ranks);
}

TEST_CASE("a corrupted frame fails with a CRC error naming the peer, frame type and iteration") {
  TempDir d;
  write_tiny_fashion_mnist(d.path(), 512, 64, /*noisy=*/true);
  auto ranks =
      start_ranks(d, 2, train_args(d, 32, 40), {"MERCURY_FAULT=rank=1,iter=3,action=corrupt"});
  const auto codes = wait_ranks(ranks, 60);
  const std::string log0 = slurp(ranks[0].log);
  INFO("rank 0 log:\n", log0, "\nrank 1 log:\n", slurp(ranks[1].log));
  CHECK(codes[0] != 0);
  CHECK(codes[1] != 0);
  check_mentions(log0, {"CRC", "rank 1", "frame type 16", "iteration 3"});
  check_no_tsan_report(ranks);
}

TEST_CASE("a wrong cluster secret is refused on both sides") {
  TempDir d;
  write_tiny_fashion_mnist(d.path(), 64, 16, /*noisy=*/true);
  std::ofstream(d.file("a.secret")) << "correct horse battery staple\n";
  std::ofstream(d.file("b.secret")) << "something else entirely\n";
  auto ranks = start_ranks(d, 2, train_args(d, 32, 2), {"MERCURY_CONNECT_TIMEOUT=10"}, [&](int r) {
    return std::vector<std::string>{"MERCURY_SECRET_FILE=" +
                                    d.file(r == 0 ? "a.secret" : "b.secret")};
  });
  const auto codes = wait_ranks(ranks, 40);
  for (int r : {0, 1}) {
    const std::string log = slurp(ranks[r].log);
    INFO("rank ", r, " log:\n", log);
    CHECK(codes[r] != 0);
    CHECK(codes[r] != -1);
    check_mentions(log, {"does not match the cluster secret"});  // not only the start-up line
  }
  check_no_tsan_report(ranks);
}
