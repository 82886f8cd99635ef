// Importance sampling in distributed training: the thread pool under two callers, the
// size-weighted unbiased estimate over unequal partitions (exact enumeration), every sampler on
// every rank (identical replicas, bitwise repeatable), the global train loss and BN statistics
// averaged over ranks. Ranks run as threads over net::LocalHub with threads = 1.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "file_test_support.hpp"
#include "mercury/mercury.hpp"
#include "net/local.hpp"
#include "ranks_as_threads.hpp"
#include "synthetic_data.hpp"
#include "tiny_model.hpp"

using namespace mercury;
using mercury::testing::gradient;
using mercury::testing::max_rel_diff;
using mercury::testing::synthetic_images;
using mercury::testing::tiny_images;
using mercury::testing::tiny_model;
// The images here are 16×16 (synthetic_images(n, seed, 16)): what these tests check does not
// depend on the size, and the models cost 2.4× (mlp) to 12× (cnn) less than at 28×28.

namespace {

std::vector<float> slab(const float* p, int64_t n) {
  return std::vector<float>(p, p + n);
}

// Runs fn(rank) on `world` threads; rethrows the first rank's exception.
void run_all(int world, const std::function<void(int)>& fn) {
  for (auto& e : mercury::testing::run_ranks(world, fn))
    if (e) std::rethrow_exception(e);
}

train::TrainConfig config(const char* sampler) {
  train::TrainConfig c;
  c.model = "mlp";
  c.epochs = 2;
  c.batch = 16;
  c.lr = 0.01;
  c.threads = 1;
  c.seed = 3;
  c.progress = false;
  c.eval_batch = 32;
  c.op_timeout = 60;
  c.sampler = sampler;
  c.partition = "dirichlet";  // unequal parts
  c.group_size = 12;
  return c;
}

struct RankOut {
  std::vector<float> weights, buffers;
  train::TrainResult result;
};

// A transport whose parameter pulls take a few milliseconds (varying by iteration): an
// aggregation long enough for BACC's scorer to score a few chunks.
class SlowTransport final : public net::Transport {
 public:
  explicit SlowTransport(net::Transport& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world() const override { return inner_.world(); }
  void send(int dst, uint8_t type, uint64_t key, uint64_t it, std::span<const std::byte> payload,
            net::Priority p) override {
    inner_.send(dst, type, key, it, payload, p);
  }
  void send(int dst, uint8_t type, uint64_t key, uint64_t it, net::Payload&& payload,
            net::Priority p) override {
    inner_.send(dst, type, key, it, std::move(payload), p);
  }
  void send(int dst, uint8_t type, uint64_t key, uint64_t it, net::SharedPayload payload,
            net::Priority p) override {
    inner_.send(dst, type, key, it, std::move(payload), p);
  }
  net::Payload allocate(std::size_t bytes) override { return inner_.allocate(bytes); }
  net::Message recv(int src, uint8_t type, uint64_t key, uint64_t it,
                    net::Deadline deadline) override {
    if (type == dist::kParams)
      std::this_thread::sleep_for(std::chrono::milliseconds(1 + (it * 7 + rank()) % 4));
    return inner_.recv(src, type, key, it, deadline);
  }
  void flush(net::Deadline d) override { inner_.flush(d); }
  void close(net::Deadline d) override { inner_.close(d); }
  net::LinkStats stats(int peer) const override { return inner_.stats(peer); }

 private:
  net::Transport& inner_;
};

std::vector<RankOut> train_ranks(const train::TrainConfig& cfg, int W, const data::Dataset& train,
                                 const data::Dataset& test, bool slow = false) {
  net::LocalHub hub(W);
  std::vector<RankOut> out(static_cast<std::size_t>(W));
  thread_pool().set_threads(1);
  run_all(W, [&](int r) {
    auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(),
                                    static_cast<uint64_t>(40 + r));
    SlowTransport slowed(hub.transport(r));
    net::Transport& t = slow ? static_cast<net::Transport&>(slowed) : hub.transport(r);
    const train::DistContext ctx{t, dist::ShardPlan(model->params.size(), W)};
    std::ostringstream log;
    train::Trainer trainer(cfg, *model, train, test, log, &ctx);
    out[r].result = trainer.run();
    out[r].weights = slab(model->params.values(), model->params.size());
    out[r].buffers = slab(model->params.buffers(), model->params.buffer_size());
  });
  return out;
}

std::vector<nlohmann::json> events(const std::string& path, const char* kind) {
  return mercury::testing::metrics_events(path, kind);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("mercury_test_dist_is_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace

TEST_CASE("thread pool: a second caller runs inline while the first owns the workers") {
  ThreadPool pool(2);
  std::promise<void> first_inside, second_done;
  auto second_finished = second_done.get_future();
  std::vector<int64_t> a(1000, 0), b(1000, 0);
  std::vector<std::pair<int64_t, int64_t>> b_bounds(2);
  std::thread first([&] {
    pool.parallel_for(1000, [&](int64_t i0, int64_t i1, int c) {
      if (c == 0) {  // the caller's chunk: hold the workers until the second call has finished
        first_inside.set_value();
        second_finished.wait();
      }
      for (int64_t i = i0; i < i1; ++i) a[i] += i;
    });
  });
  first_inside.get_future().wait();
  pool.parallel_for(1000, [&](int64_t i0, int64_t i1, int c) {
    b_bounds[c] = {i0, i1};
    for (int64_t i = i0; i < i1; ++i) b[i] += 2 * i;
  });
  second_done.set_value();
  first.join();
  CHECK(pool.busy_calls() == 1);  // the second call found the workers busy
  for (int64_t i = 0; i < 1000; ++i) {
    REQUIRE(a[i] == i);
    REQUIRE(b[i] == 2 * i);
  }
  // Inline runs keep the chunk boundaries, so per-chunk reductions stay deterministic.
  CHECK(b_bounds[0] == std::make_pair<int64_t, int64_t>(0, 500));
  CHECK(b_bounds[1] == std::make_pair<int64_t, int64_t>(500, 1000));
}

TEST_CASE("thread pool: a binding gives one thread its own pool, others keep the process pool") {
  ThreadPool& shared = thread_pool();
  ThreadPool own(1);
  std::thread t([&] {
    CHECK(&thread_pool() == &shared);
    {
      PoolBinding bind(own);
      CHECK(&thread_pool() == &own);
      CHECK(thread_pool().threads() == 1);
    }
    CHECK(&thread_pool() == &shared);
  });
  t.join();
  CHECK(&thread_pool() == &shared);
}

TEST_CASE("rank weight scale is W·N_k/N, exactly 1 for equal parts") {
  CHECK(train::rank_weight_scale({5, 5, 5, 5}, 2) == 1.0);
  CHECK(train::rank_weight_scale({3, 5}, 0) == doctest::Approx(0.75));
  CHECK(train::rank_weight_scale({3, 5}, 1) == doctest::Approx(1.25));
  importance::BatchPlan plan;
  plan.indices = {0, 1};
  train::scale_weights(plan, 1.0);
  CHECK(plan.weights.empty());  // untouched: an unweighted batch stays unweighted
  train::scale_weights(plan, 0.5);
  CHECK(plan.weights == std::vector<float>{0.5f, 0.5f});
  plan.weights = {2.0f, 4.0f};
  train::scale_weights(plan, 0.25);
  CHECK(plan.weights == std::vector<float>{0.5f, 1.0f});
}

TEST_CASE("unequal partitions: the mean of scaled rank estimates is the full-data gradient") {
  // Exact enumeration: two ranks own 4 and 9 of 13 samples. Each draws one slot by group-wise
  // importance sampling (exact weights) from its own cache; the shard servers average the two
  // gradients. The expectation over every (group, member) outcome must be the full-data mean
  // gradient with the W·N_k/N scale, and must differ from it without.
  auto model = tiny_model(3);
  nn::Engine eng(*model);
  const auto data = tiny_images(13, 4);
  const std::vector<std::vector<int64_t>> parts = {{0, 3, 7, 11}, {1, 2, 4, 5, 6, 8, 9, 10, 12}};
  const std::vector<int64_t> sizes = {4, 9};
  std::vector<double> scaled(static_cast<std::size_t>(model->params.size()), 0.0);
  std::vector<double> plain(scaled.size(), 0.0);
  for (int k = 0; k < 2; ++k) {
    const data::Subset local(data, parts[k]);
    importance::ImportanceCache cache(sizes[k], 3, 10 + k);  // groups of 3 (and a rest)
    std::mt19937_64 rng(20 + k);
    for (int64_t it = 0; it * 3 < sizes[k]; ++it) {  // distinct losses, distinct recencies
      const auto g = cache.next_group(3);
      std::vector<float> s(g.size());
      for (float& v : s) v = std::uniform_real_distribution<float>(0.1f, 3.0f)(rng);
      cache.refresh(s, it);
    }
    importance::SamplerConfig sc;
    sc.beta = 0.6;
    sc.weighting = importance::Weighting::exact;
    importance::GroupSampler sampler(sc);
    const auto pi = sampler.group_probabilities(cache);
    const double scale = train::rank_weight_scale(sizes, k);
    for (std::size_t gi = 0; gi < cache.groups().size(); ++gi) {
      const auto& g = cache.groups()[gi];
      const auto q = sampler.in_group_probabilities(cache, g);
      const auto members = cache.members(g);
      for (std::size_t j = 0; j < members.size(); ++j) {
        importance::BatchPlan plan;  // the slot as the trainer would see it
        plan.indices = {members[j]};
        plan.weights = {static_cast<float>(
            sampler.slot_weight(g.size, static_cast<double>(sizes[k]), pi[gi], q[j]))};
        const auto raw = gradient(*model, eng, local, plan.indices, plan.weights.data());
        train::scale_weights(plan, scale);
        const auto sg = gradient(*model, eng, local, plan.indices, plan.weights.data());
        const double p = pi[gi] * q[j];  // probability of this outcome on rank k
        for (std::size_t i = 0; i < scaled.size(); ++i) {
          scaled[i] += 0.5 * p * sg[i];  // the shard servers' mean over W = 2 ranks
          plain[i] += 0.5 * p * raw[i];
        }
      }
    }
  }
  std::vector<int64_t> all(13);
  std::iota(all.begin(), all.end(), int64_t{0});
  const auto full = gradient(*model, eng, data, all, nullptr);
  CHECK(max_rel_diff(scaled, full) < 1e-5);
  CHECK(max_rel_diff(plain, full) > 1e-2);  // the plain mean of means over-weights rank 0
}

TEST_CASE("every sampler on 3 ranks: identical replicas, bitwise repeatable, unequal parts") {
  const auto train = synthetic_images(120, 31, 16), test = synthetic_images(32, 32, 16);
  for (const char* sampler : {"mercury", "all-is", "kf", "selective-backprop", "infobatch"}) {
    CAPTURE(sampler);
    auto cfg = config(sampler);
    cfg.batch = 12;
    cfg.kf_tau_th = 0;  // kf: importance sampling from the first step
    cfg.metrics = temp_path(std::string(sampler) + ".jsonl");
    const auto a = train_ranks(cfg, 3, train, test);
    const auto b = train_ranks(cfg, 3, train, test);
    for (int r = 0; r < 3; ++r) {
      CAPTURE(r);
      CHECK(a[r].weights == a[0].weights);
      CHECK(b[r].weights == a[r].weights);
      CHECK(a[r].result.steps == a[0].result.steps);
    }
    const auto init = models::make_model("mlp", Shape{1, 16, 16}, 10, 40);
    CHECK(a[0].weights != slab(init->params.values(), init->params.size()));  // it did train
    // Every rank kept its own cache over its own, unequal part and scaled its weights.
    std::vector<int64_t> sizes;
    double scale_sum = 0;
    for (int r = 0; r < 3; ++r) {
      const auto start = events(train::dist_metrics_path(cfg.metrics, r), "start");
      REQUIRE(start.size() == 2);  // two runs appended to the same file
      sizes = start[0]["partition_sizes"].get<std::vector<int64_t>>();
      CHECK(start[0]["config"]["sampler"] == sampler);
      scale_sum += start[0]["weight_scale"].get<double>();
      CHECK(start[0]["weight_scale"].get<double>() ==
            doctest::Approx(3.0 * sizes[r] / std::accumulate(sizes.begin(), sizes.end(), 0.0)));
    }
    CHECK(sizes[0] != sizes[1]);
    CHECK(scale_sum == doctest::Approx(3.0));
    const auto epochs = events(cfg.metrics, "epoch");
    REQUIRE(epochs.size() == 4);
    CHECK(std::isfinite(epochs[1]["train_loss"].get<double>()));
    if (std::string(sampler) != "selective-backprop")
      CHECK(epochs[1]["is_steps"].get<int64_t>() > 0);
    // InfoBatch pruned some of its part's easy samples; the others prune nothing.
    CHECK((epochs[1]["pruned_samples"].get<int64_t>() > 0) ==
          (std::string(sampler) == "infobatch"));
    for (int r = 0; r < 3; ++r) std::filesystem::remove(train::dist_metrics_path(cfg.metrics, r));
  }
}

TEST_CASE("the epoch's train loss is the mean over every rank's steps") {
  const auto train = synthetic_images(64, 33, 16), test = synthetic_images(16, 34, 16);
  auto cfg = config("mercury");
  cfg.epochs = 1;
  cfg.metrics = temp_path("loss.jsonl");
  // The run, as `mercury train` does it (rank 0 logs the epoch).
  (void)train_ranks(cfg, 2, train, test);
  const auto epochs = events(cfg.metrics, "epoch");
  REQUIRE(epochs.size() == 1);
  // The same run stepped by hand (same init on both ranks, so the initial broadcast that run()
  // does changes nothing): every rank's per-step losses.
  cfg.metrics.clear();
  net::LocalHub hub(2);
  std::vector<std::vector<double>> losses(2);
  run_all(2, [&](int r) {
    auto model = models::make_model("mlp", Shape{1, 16, 16}, 10, 40);
    const train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), 2)};
    std::ostringstream log;
    train::Trainer t(cfg, *model, train, test, log, &ctx);
    for (int64_t s = 0; s < t.steps_per_epoch(); ++s) losses[r].push_back(t.step().loss);
  });
  REQUIRE(losses[0].size() == losses[1].size());
  double sum = 0;
  for (const auto& l : losses) sum += std::accumulate(l.begin(), l.end(), 0.0);
  const double global = sum / static_cast<double>(2 * losses[0].size());
  const double rank0 = std::accumulate(losses[0].begin(), losses[0].end(), 0.0) /
                       static_cast<double>(losses[0].size());
  CHECK(epochs[0]["train_loss"].get<double>() == doctest::Approx(global).epsilon(1e-12));
  CHECK(std::abs(global - rank0) > 1e-6);  // the check can tell the global from rank 0's
  std::filesystem::remove(temp_path("loss.jsonl"));
  std::filesystem::remove(train::dist_metrics_path(temp_path("loss.jsonl"), 1));
}

TEST_CASE("BN running statistics are averaged over ranks before evaluation and checkpoints") {
  const auto train = synthetic_images(48, 35, 16), test = synthetic_images(16, 36, 16);
  auto cfg = config("mercury");
  cfg.model = "resnet8";
  cfg.epochs = 1;
  cfg.batch = 8;
  cfg.group_size = 8;
  cfg.max_steps = 3;
  cfg.checkpoint = temp_path("bn.safetensors");
  const auto runs = train_ranks(cfg, 2, train, test);
  REQUIRE(!runs[0].buffers.empty());
  CHECK(runs[0].buffers == runs[1].buffers);  // each rank saw other data: equal only if averaged
  const auto init = models::make_model("resnet8", Shape{1, 16, 16}, 10, 40);
  CHECK(runs[0].buffers != slab(init->params.buffers(), init->params.buffer_size()));
  // Rank 0's checkpoint holds the averaged statistics.
  auto loaded = models::make_model("resnet8", Shape{1, 16, 16}, 10, 1);
  optim::Optimizer opt(train::Trainer::optimizer_config(cfg), 0);  // moments stay sharded
  (void)train::load_checkpoint(cfg.checkpoint, *loaded, opt);
  CHECK(slab(loaded->params.buffers(), loaded->params.buffer_size()) == runs[0].buffers);
  std::filesystem::remove(cfg.checkpoint);
}

TEST_CASE("distributed resume continues bit for bit: uniform and every sampler") {
  const auto train = synthetic_images(90, 37, 16), test = synthetic_images(16, 38, 16);
  for (const char* sampler :
       {"uniform", "mercury", "all-is", "kf", "selective-backprop", "infobatch"}) {
    CAPTURE(sampler);
    auto cfg = config(sampler);
    cfg.batch = 12;
    cfg.kf_tau_th = 0;
    cfg.optimizer = "adam";  // moments that must come back from their shard owners
    cfg.checkpoint = temp_path(std::string("resume-") + sampler + ".safetensors");
    const auto whole = train_ranks(cfg, 3, train, test);
    auto first = cfg;
    first.max_steps = 11;  // stops mid-epoch 2 (10 steps per epoch) and checkpoints there
    const auto part = train_ranks(first, 3, train, test);
    CHECK(part[0].result.steps == 11);
    CHECK(part[0].weights != whole[0].weights);
    auto second = cfg;
    second.resume = cfg.checkpoint;
    const auto resumed = train_ranks(second, 3, train, test);
    for (int r = 0; r < 3; ++r) {
      CAPTURE(r);
      CHECK(resumed[r].result.steps == whole[r].result.steps);
      CHECK(resumed[r].weights == whole[r].weights);
    }
    std::filesystem::remove(cfg.checkpoint);
  }
}

TEST_CASE("distributed resume refuses another world size or a single-device checkpoint") {
  const auto train = synthetic_images(48, 39, 16), test = synthetic_images(16, 40, 16);
  auto cfg = config("mercury");
  cfg.epochs = 1;
  cfg.checkpoint = temp_path("world.safetensors");
  (void)train_ranks(cfg, 2, train, test);
  auto resume_on = [&](int W) {
    auto c = cfg;
    c.checkpoint.clear();
    c.resume = cfg.checkpoint;
    net::LocalHub hub(W);
    return mercury::testing::run_ranks(W, [&](int r) {
      auto model = models::make_model("mlp", Shape{1, 16, 16}, 10, 1);
      const train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), W)};
      std::ostringstream log;
      train::Trainer(c, *model, train, test, log, &ctx).run();
    });
  };
  auto errors = resume_on(4);
  CHECK(mercury::testing::error_message(errors[0]).find(
            "world size was 2 in the checkpoint, now 4") != std::string::npos);
  for (int r = 1; r < 4; ++r) {
    CAPTURE(r);
    CHECK(mercury::testing::error_message(errors[r]).find("rank 0 refused the resume") !=
          std::string::npos);
    CHECK(mercury::testing::error_message(errors[r]).find("world size was 2") != std::string::npos);
  }
  // A single-device checkpoint: no per-rank state, and no world size.
  {
    auto model = models::make_model("mlp", Shape{1, 16, 16}, 10, 1);
    std::ostringstream log;
    train::Trainer(cfg, *model, train, test, log).run();
  }
  errors = resume_on(2);
  CHECK(mercury::testing::error_message(errors[0]).find("world size was 1 (a single-device run)") !=
        std::string::npos);
  CHECK(mercury::testing::error_message(errors[1]).find("rank 0 refused the resume") !=
        std::string::npos);
  std::filesystem::remove(cfg.checkpoint);
}

TEST_CASE(
    "BACC with a fixed group: every window scores it, bitwise repeatable, time split logged") {
  const auto train = synthetic_images(120, 44, 16), test = synthetic_images(16, 45, 16);
  auto cfg = config("mercury");
  cfg.pipeline = "bacc";
  cfg.batch = 12;
  cfg.group_size = 10;
  cfg.bacc_chunk = 4;
  cfg.metrics = temp_path("bacc-fixed.jsonl");
  const auto a = train_ranks(cfg, 3, train, test, true);
  const auto b = train_ranks(cfg, 3, train, test);  // another timing: the same weights
  for (int r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(a[r].weights == a[0].weights);
    CHECK(b[r].weights == a[r].weights);
    const std::string path = train::dist_metrics_path(cfg.metrics, r);
    const auto windows = events(path, "bacc");
    const auto start = events(path, "start");
    REQUIRE(start.size() == 2);
    const int64_t local = start[0]["train_samples"].get<int64_t>();
    REQUIRE(windows.size() == 2 * static_cast<std::size_t>(a[r].result.steps));
    // Groups follow the cache's visiting order: 10 at a time, the rest at the end of a cycle.
    int64_t cursor = 0, scored = 0;
    for (std::size_t k = 0; k < windows.size() / 2; ++k) {
      const int64_t want = std::min<int64_t>(10, local - cursor);
      CHECK(windows[k]["group"].get<int64_t>() == want);
      CHECK(windows[k]["steps"].get<int64_t>() == static_cast<int64_t>(k));
      CHECK(windows[k]["hidden_s"].get<double>() >= 0);
      CHECK(windows[k]["exposed_s"].get<double>() >= 0);
      cursor = (cursor + want) % local;
      scored += want;
    }
    const auto dist_events = events(path, "dist");
    REQUIRE(dist_events.size() == 4);
    CHECK(dist_events[1]["scored_samples"].get<int64_t>() == scored);
    CHECK(dist_events[1]["score_hidden_s"].get<double>() > 0);
  }
  const auto epochs = events(cfg.metrics, "epoch");
  REQUIRE(!epochs.empty());
  CHECK(epochs[0]["pipeline"] == "bacc");
  CHECK(epochs[0]["score_s"].get<double>() == 0);  // nothing scored on the training thread
  CHECK(epochs[0]["scorer_busy_s"].get<double>() > 0);
  for (int r = 0; r < 3; ++r) std::filesystem::remove(train::dist_metrics_path(cfg.metrics, r));
}

TEST_CASE("adaptive BACC: group sizes follow the aggregation and replay bit for bit") {
  const auto train = synthetic_images(160, 46, 16), test = synthetic_images(16, 47, 16);
  auto cfg = config("mercury");
  cfg.group_size = 0;  // adaptive; pipeline auto is bacc for a distributed mercury run
  cfg.bacc_chunk = 2;
  cfg.metrics = temp_path("bacc-adaptive.jsonl");
  auto replay = cfg;
  replay.replay_group_sizes = cfg.metrics;
  replay.metrics = temp_path("bacc-replay.jsonl");
  // The late chunk dropped (the default) or finished: either way the logged sizes replay.
  for (const bool finish : {false, true}) {
    CAPTURE(finish);
    cfg.bacc_finish_chunk = replay.bacc_finish_chunk = finish;
    for (const auto& p : {cfg.metrics, replay.metrics})
      for (int r = 0; r < 2; ++r) std::filesystem::remove(train::dist_metrics_path(p, r));
    const auto adaptive = train_ranks(cfg, 2, train, test, true);
    const auto repeated = train_ranks(replay, 2, train, test);  // unshaped: other windows
    int64_t total = 0;
    for (int r = 0; r < 2; ++r) {
      CAPTURE(r);
      CHECK(repeated[r].weights == adaptive[r].weights);
      const auto logged = events(train::dist_metrics_path(cfg.metrics, r), "bacc");
      const auto again = events(train::dist_metrics_path(replay.metrics, r), "bacc");
      REQUIRE(logged.size() == again.size());
      for (std::size_t k = 0; k < logged.size(); ++k) {
        CHECK(again[k]["group"] == logged[k]["group"]);
        total += logged[k]["group"].get<int64_t>();
      }
    }
    CHECK(total > 0);  // the slowed aggregation left time to score
    CHECK(adaptive[0].weights == adaptive[1].weights);
  }
  // A log without bacc events, or of another run, is refused with the file and step named.
  auto wrong = cfg;
  wrong.metrics.clear();
  wrong.replay_group_sizes = temp_path("no-such.jsonl");
  CHECK_THROWS_WITH(train_ranks(wrong, 2, train, test), doctest::Contains("no such file"));
  wrong.epochs = 4;
  wrong.replay_group_sizes = cfg.metrics;
  CHECK_THROWS_WITH(train_ranks(wrong, 2, train, test),
                    doctest::Contains("expected a bacc event for step"));
  for (const auto& p : {cfg.metrics, replay.metrics})
    for (int r = 0; r < 2; ++r) std::filesystem::remove(train::dist_metrics_path(p, r));
}

TEST_CASE("BACC under adacomm: the scorer works in each averaging, the local steps draw on it") {
  const auto train = synthetic_images(120, 44, 16), test = synthetic_images(16, 45, 16);
  auto cfg = config("mercury");
  cfg.algorithm = "adacomm";  // pipeline auto: bacc
  cfg.adacomm_tau0 = 3;
  cfg.adacomm_t0 = 1e6;  // tau stays 3: an averaging after steps 2, 5, 8, ...
  cfg.batch = 12;
  cfg.group_size = 10;
  cfg.bacc_chunk = 4;
  cfg.metrics = temp_path("bacc-adacomm.jsonl");
  auto again = cfg;
  again.metrics = temp_path("bacc-adacomm-again.jsonl");
  auto cleanup = [&] {
    for (const auto& p : {cfg.metrics, again.metrics})
      for (int r = 0; r < 3; ++r) std::filesystem::remove(train::dist_metrics_path(p, r));
  };
  cleanup();
  const auto a = train_ranks(cfg, 3, train, test, true);
  const auto b = train_ranks(again, 3, train, test);  // another timing: the same weights
  auto sequential = cfg;
  sequential.metrics.clear();
  sequential.pipeline = "sequential";  // scores a group before every step instead
  const auto seq = train_ranks(sequential, 3, train, test);
  for (int r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(b[r].weights == a[r].weights);
    CHECK(seq[r].weights != a[r].weights);
    const std::string path = train::dist_metrics_path(cfg.metrics, r);
    const auto windows = events(path, "bacc");
    const int64_t local = events(path, "start").at(0)["train_samples"].get<int64_t>();
    const int64_t steps = a[r].result.steps;
    REQUIRE(steps >= 6);
    REQUIRE(windows.size() == static_cast<std::size_t>(steps / 3));
    int64_t cursor = 0;
    for (std::size_t k = 0; k < windows.size(); ++k) {
      CAPTURE(k);
      const int64_t want = std::min<int64_t>(10, local - cursor);
      CHECK(windows[k]["steps"].get<int64_t>() == 3 * static_cast<int64_t>(k) + 2);
      CHECK(windows[k]["group"].get<int64_t>() == want);
      cursor = (cursor + want) % local;
    }
  }
  const auto epochs = events(cfg.metrics, "epoch");
  REQUIRE(!epochs.empty());
  CHECK(epochs[0]["pipeline"] == "bacc");
  CHECK(epochs[0]["algorithm"] == "adacomm");
  CHECK(epochs[0]["score_s"].get<double>() == 0);  // nothing scored on the training thread
  CHECK(epochs[0]["scorer_busy_s"].get<double>() > 0);
  CHECK(epochs.back()["ess"].get<double>() < 1);  // importance weights, not a uniform draw
  cleanup();
  // The cache is refreshed once per averaging, so beta counts averagings: beta / tau0 per step.
  cfg.beta = 0.1;
  CHECK(train::Trainer::sampler_beta(cfg) == doctest::Approx(cfg.beta / 3));
  cfg.adacomm_tau0 = 20;  // periods of at most 16
  CHECK(train::Trainer::sampler_beta(cfg) == doctest::Approx(cfg.beta / 16));
  cfg.beta = -1;  // the 4/D default stays as it is
  CHECK(train::Trainer::sampler_beta(cfg) == -1);
  cfg.beta = 0.1;
  cfg.algorithm = "sync";
  CHECK(train::Trainer::sampler_beta(cfg) == 0.1);
}

TEST_CASE("pipeline settings are checked: bacc needs mercury, group within the window cap") {
  auto cfg = config("kf");
  cfg.pipeline = "bacc";
  CHECK_THROWS_WITH(train::validate(cfg), doctest::Contains("pipeline bacc: expected sampler "
                                                            "mercury"));
  cfg = config("mercury");
  cfg.pipeline = "overlap";
  CHECK_THROWS_WITH(train::validate(cfg),
                    doctest::Contains("pipeline: expected auto, sequential or bacc, found "
                                      "'overlap'"));
  cfg.pipeline = "bacc";
  cfg.bacc_chunk = 64;
  cfg.bacc_max_group = 32;
  CHECK_THROWS_WITH(train::validate(cfg), doctest::Contains("bacc_max_group: expected"));
  const auto train = synthetic_images(40, 48, 16), test = synthetic_images(8, 49, 16);
  cfg = config("mercury");
  cfg.pipeline = "bacc";
  cfg.group_size = 9000;
  cfg.bacc_max_group = 8192;
  auto model = models::make_model("mlp", Shape{1, 16, 16}, 10, 1);
  std::ostringstream log;
  CHECK_THROWS_WITH(train::Trainer(cfg, *model, train, test, log),
                    doctest::Contains("group_size: expected at most bacc_max_group (8192)"));
  cfg.bacc_max_group = 0;  // the default ceiling, 10 x the local batch, gives way to a fixed group
  CHECK_NOTHROW(train::Trainer(cfg, *model, train, test, log));
}

TEST_CASE("ranks with different sampler or pipeline settings are refused, naming the field") {
  const auto train = synthetic_images(48, 50, 16), test = synthetic_images(16, 51, 16);
  auto run_with = [&](const std::function<void(train::TrainConfig&, int)>& edit) {
    net::LocalHub hub(2);
    return mercury::testing::run_ranks(2, [&](int r) {
      auto c = config("mercury");
      c.epochs = 1;
      edit(c, r);
      auto model = models::make_model("mlp", Shape{1, 16, 16}, 10, 1);
      const train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), 2)};
      std::ostringstream log;
      train::Trainer(c, *model, train, test, log, &ctx).run();
    });
  };
  auto errors = run_with([](train::TrainConfig& c, int r) {
    if (r == 1) c.sampler = "uniform";
  });
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK(mercury::testing::error_message(errors[r]).find(
              "training config field 'sampler': rank 0 has \"mercury\", rank 1 has \"uniform\"") !=
          std::string::npos);
  }
  errors = run_with([](train::TrainConfig& c, int r) {
    if (r == 1) c.pipeline = "sequential";
  });
  CHECK(mercury::testing::error_message(errors[1]).find("field 'pipeline'") != std::string::npos);
  errors = run_with([](train::TrainConfig& c, int r) {
    if (r == 1) c.group_size = 24;
  });
  CHECK(mercury::testing::error_message(errors[0]).find("field 'group_size'") != std::string::npos);
  // Per-device knobs may differ.
  errors = run_with([](train::TrainConfig& c, int r) {
    if (r == 1) {
      c.scorer_threads = 2;
      c.bacc_chunk = 8;
      c.op_timeout = 90;
    }
  });
  CHECK_FALSE(errors[0]);
  CHECK_FALSE(errors[1]);
}
