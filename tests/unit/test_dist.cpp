// Distributed BSP training: LocalTransport semantics, rank-order reduction, ranks-as-threads
// training equal to a closed-form sequential reference, mean-of-means vs one big batch, and
// fail-stop without hangs. All runs use threads = 1 (the engine's sums depend on the count and
// the process-wide pool serves one caller at a time).
#include <doctest/doctest.h>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "file_test_support.hpp"
#include "mercury/mercury.hpp"
#include "net/local.hpp"
#include "ranks_as_threads.hpp"
#include "synthetic_data.hpp"

using namespace mercury;
using mercury::testing::require_no_errors;
using mercury::testing::run_ranks;
using mercury::testing::synthetic_images;
using namespace std::chrono_literals;

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> b;
  for (int v : values) b.push_back(static_cast<std::byte>(v));
  return b;
}

std::vector<float> slab(const float* p, int64_t n) {
  return std::vector<float>(p, p + n);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("mercury_test_dist_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

train::TrainConfig dist_config() {
  train::TrainConfig c;
  c.model = "mlp";
  c.epochs = 2;
  c.batch = 32;  // global: 8 per rank at world 4
  c.lr = 0.01;
  c.threads = 1;
  c.seed = 5;
  c.progress = false;
  c.eval_batch = 32;
  c.op_timeout = 60;
  return c;
}

// A transport that misbehaves on one rank at one iteration: either fails the hub (fail-stop,
// as a crashed device whose peers notice) or stalls silently (a frozen device: peers see only
// a deadline).
class FaultyTransport final : public net::Transport {
 public:
  enum class Mode { fail, stall };
  FaultyTransport(net::LocalHub& hub, int rank, int bad_rank, uint64_t bad_iteration, Mode mode)
      : hub_(hub),
        inner_(hub.transport(rank)),
        bad_rank_(bad_rank),
        bad_it_(bad_iteration),
        mode_(mode) {}
  int rank() const override { return inner_.rank(); }
  int world() const override { return inner_.world(); }
  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
            std::span<const std::byte> payload, net::Priority p) override {
    inject(type, iteration);
    inner_.send(dst, type, key, iteration, payload, p);
  }
  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, net::Payload&& payload,
            net::Priority p) override {
    inject(type, iteration);
    inner_.send(dst, type, key, iteration, std::move(payload), p);
  }
  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, net::SharedPayload payload,
            net::Priority p) override {
    inject(type, iteration);
    inner_.send(dst, type, key, iteration, std::move(payload), p);
  }
  net::Payload allocate(std::size_t bytes) override { return inner_.allocate(bytes); }
  net::Message recv(int src, uint8_t type, uint64_t key, uint64_t iteration,
                    net::Deadline deadline) override {
    return inner_.recv(src, type, key, iteration, deadline);
  }
  void flush(net::Deadline d) override { inner_.flush(d); }
  void close(net::Deadline d) override { inner_.close(d); }
  net::LinkStats stats(int peer) const override { return inner_.stats(peer); }

 private:
  void inject(uint8_t type, uint64_t iteration) {
    if (rank() == bad_rank_ && type == dist::kGradPush && iteration == bad_it_) {
      if (mode_ == Mode::fail) {
        hub_.fail(rank(), "injected fault at iteration " + std::to_string(iteration));
      } else {
        throw std::runtime_error("rank " + std::to_string(rank()) + " froze (injected)");
      }
    }
  }

  net::LocalHub& hub_;
  net::LocalTransport& inner_;
  int bad_rank_;
  uint64_t bad_it_;
  Mode mode_;
};

}  // namespace

// ---- (a) LocalTransport ------------------------------------------------------------------------

TEST_CASE("local transport: same-tuple messages arrive in send order, others match exactly") {
  net::LocalHub hub(3);
  auto& a = hub.transport(0);
  auto& b = hub.transport(1);
  for (int v : {1, 2, 3}) a.send(1, 16, 7, 9, bytes_of({v, v}));
  a.send(1, 16, 8, 9, bytes_of({42}));
  a.send(1, 17, 7, 9, bytes_of({43}));
  const auto far = net::deadline_in(5);
  // Exact matching: the later messages are reachable first.
  CHECK(b.recv(0, 17, 7, 9, far).payload == bytes_of({43}));
  CHECK(b.recv(0, 16, 8, 9, far).payload == bytes_of({42}));
  for (int v : {1, 2, 3}) {
    const net::Message m = b.recv(0, 16, 7, 9, far);
    CHECK(m.src == 0);
    CHECK(m.type == 16);
    CHECK(m.key == 7);
    CHECK(m.iteration == 9);
    CHECK(m.payload == bytes_of({v, v}));
  }
  // Payload bytes and messages per link, both ends.
  CHECK(a.stats(1).bytes_sent == 8);
  CHECK(a.stats(1).messages_sent == 5);
  CHECK(b.stats(0).bytes_received == 8);
  CHECK(b.stats(0).messages_received == 5);
  CHECK(a.stats(2).bytes_sent == 0);
  CHECK(b.stats(0).throughput_bps == 0);
  // The payload is copied at send: the sender may reuse its buffer at once.
  std::vector<std::byte> buf = bytes_of({5});
  a.send(2, 20, 0, 0, buf);
  buf[0] = std::byte{6};
  CHECK(hub.transport(2).recv(0, 20, 0, 0, far).payload == bytes_of({5}));
}

TEST_CASE("local transport: a payload sent by move is delivered as that very buffer") {
  net::LocalHub hub(2);
  auto& a = hub.transport(0);
  const std::size_t n = std::size_t{1} << 20;
  net::Payload out = a.allocate(n);
  CHECK(out.pooled());
  for (std::size_t i = 0; i < n; ++i) out[i] = std::byte(i * 7);
  const net::Payload expect = out;  // a deep copy
  const std::byte* buffer = out.data();
  a.send(1, 16, 0, 0, std::move(out));
  CHECK(out.empty());  // NOLINT(bugprone-use-after-move): taken over by send
  net::Message m = hub.transport(1).recv(0, 16, 0, 0, net::deadline_in(5));
  CHECK(m.payload.data() == buffer);
  CHECK(m.payload == expect);
  CHECK(a.stats(1).bytes_sent == n);
  CHECK(hub.transport(1).stats(0).bytes_received == n);
  // A shared payload is copied into each mailbox; the sender's stays as it was.
  const net::SharedPayload shared = std::make_shared<const net::Payload>(expect);
  a.send(1, 16, 0, 1, shared);
  net::Message copy = hub.transport(1).recv(0, 16, 0, 1, net::deadline_in(5));
  CHECK(copy.payload == expect);
  CHECK(copy.payload.data() != shared->data());
  CHECK_THROWS_AS(a.send(1, 16, 0, 2, net::SharedPayload{}), std::invalid_argument);
  CHECK_THROWS_AS(a.send(0, 16, 0, 0, a.allocate(1)), std::invalid_argument);   // to itself
  CHECK_THROWS_AS(a.send(1, 3, 0, 0, net::Payload(1)), std::invalid_argument);  // reserved type
}

TEST_CASE("local transport: a receiver blocked in recv wakes when the message is sent") {
  net::LocalHub hub(2);
  std::vector<std::byte> got;
  std::thread receiver(
      [&] { got = hub.transport(1).recv(0, 16, 1, 1, net::deadline_in(10)).payload.to_vector(); });
  std::this_thread::sleep_for(20ms);
  hub.transport(0).send(1, 16, 1, 1, bytes_of({9}));
  receiver.join();
  CHECK(got == bytes_of({9}));
}

TEST_CASE("local transport: recv past its deadline throws TimeoutError naming both ranks") {
  net::LocalHub hub(2);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    hub.transport(1).recv(0, 16, 3, 4, net::deadline_in(0.05));
    FAIL("recv returned");
  } catch (const net::TimeoutError& e) {
    CHECK(e.peer() == 0);
    CHECK(std::string(e.what()).find("rank 1: recv from rank 0") != std::string::npos);
    CHECK(std::string(e.what()).find("type 16 key 3 iteration 4") != std::string::npos);
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= 50ms);
  CHECK(waited < 5s);
  // A message already waiting is delivered even when the deadline has passed.
  hub.transport(0).send(1, 16, 3, 4, bytes_of({1}));
  CHECK(hub.transport(1).recv(0, 16, 3, 4, net::Clock::now() - 1s).payload == bytes_of({1}));
}

TEST_CASE("local transport: hub.fail is fail-stop and sticky, naming the failed rank") {
  net::LocalHub hub(4);
  hub.transport(0).send(1, 16, 0, 0, bytes_of({1}));  // delivered before the failure
  std::exception_ptr pending;
  std::thread waiter([&] {
    try {
      hub.transport(3).recv(1, 16, 0, 0, net::deadline_in(30));
    } catch (...) {
      pending = std::current_exception();
    }
  });
  std::this_thread::sleep_for(20ms);
  const auto t0 = std::chrono::steady_clock::now();
  hub.fail(2, "power loss");
  waiter.join();
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // woken, not timed out
  REQUIRE(pending);
  auto check_names_rank2 = [](const std::function<void()>& call) {
    try {
      call();
      FAIL("no error");
    } catch (const net::TimeoutError&) {
      FAIL("a failure must not look like a timeout");
    } catch (const net::PeerError& e) {
      CHECK(e.peer() == 2);
      CHECK(std::string(e.what()).find("rank 2 failed: power loss") != std::string::npos);
    }
  };
  check_names_rank2([&] { std::rethrow_exception(pending); });
  hub.fail(3, "later failure");  // the first failure stays the one every rank reports
  check_names_rank2([&] { hub.transport(1).recv(0, 16, 0, 0, net::deadline_in(1)); });
  check_names_rank2([&] { hub.transport(0).send(1, 16, 0, 1, bytes_of({2})); });
  check_names_rank2([&] { hub.transport(2).flush(net::deadline_in(1)); });
  check_names_rank2([&] { hub.transport(3).recv(0, 16, 0, 0, net::deadline_in(1)); });
}

TEST_CASE("local transport: close is idempotent, waits for every BYE, and ends waits on it") {
  net::LocalHub hub(2);
  auto& a = hub.transport(0);
  auto& b = hub.transport(1);
  a.send(1, 16, 0, 0, bytes_of({7}));
  const auto t0 = std::chrono::steady_clock::now();
  a.close(net::deadline_in(0.05));  // rank 1 has not said BYE: returns at the deadline
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  a.close(net::deadline_in(0.05));                                           // idempotent
  CHECK(b.recv(0, 16, 0, 0, net::deadline_in(1)).payload == bytes_of({7}));  // sent before BYE
  try {
    b.recv(0, 16, 0, 1, net::deadline_in(30));
    FAIL("recv returned");
  } catch (const net::PeerError& e) {
    CHECK(e.peer() == 0);
    CHECK(std::string(e.what()).find("closed") != std::string::npos);
  }
  CHECK_THROWS_AS(b.send(0, 16, 0, 0, bytes_of({1})), net::PeerError);
  CHECK_THROWS_WITH_AS(a.send(1, 16, 0, 0, bytes_of({1})), doctest::Contains("after close"),
                       net::PeerError);
  const auto t1 = std::chrono::steady_clock::now();
  b.close(net::deadline_in(10));  // everyone has closed: returns at once
  CHECK(std::chrono::steady_clock::now() - t1 < 5s);
}

TEST_CASE("local transport: bad ranks and reserved types are refused with the expected range") {
  net::LocalHub hub(2);
  auto& a = hub.transport(0);
  CHECK_THROWS_WITH_AS(a.send(0, 16, 0, 0, bytes_of({1})), doctest::Contains("other than 0"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(a.send(2, 16, 0, 0, bytes_of({1})), doctest::Contains("found 2"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(a.send(1, 3, 0, 0, bytes_of({1})),
                       doctest::Contains("expected >= 16 (application types), found 3"),
                       std::invalid_argument);
  CHECK_THROWS_AS(a.recv(-1, 16, 0, 0, net::deadline_in(1)), std::invalid_argument);
  CHECK_THROWS_WITH_AS(net::LocalHub(0), doctest::Contains("expected world >= 1, found 0"),
                       std::invalid_argument);
  CHECK_THROWS_AS(hub.transport(2), std::invalid_argument);
}

// ---- (b) rank-order reduction ------------------------------------------------------------------

TEST_CASE("shard server reduces in rank order: bitwise the same whatever the arrival order") {
  constexpr int W = 4;
  constexpr int64_t n = 1008;  // a padded slab size: 63 blocks, cut 15/16/16/16
  // Magnitudes far apart make float addition order-sensitive.
  std::vector<std::vector<float>> grads(W, std::vector<float>(n));
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  const float scale[W] = {1e8f, 1.0f, -1e8f, 1e-3f};
  for (int r = 0; r < W; ++r)
    for (int64_t i = 0; i < n; ++i) grads[r][i] = scale[r] * (1.0f + 0.5f * u(rng));
  std::vector<float> expected(n);
  int order_matters = 0;
  for (int64_t i = 0; i < n; ++i) {
    float acc = grads[0][i];
    for (int r = 1; r < W; ++r) acc += grads[r][i];
    expected[i] = acc / static_cast<float>(W);
    float reversed = grads[3][i];
    for (int r = 2; r >= 0; --r) reversed += grads[r][i];
    order_matters += reversed / static_cast<float>(W) != expected[i];
  }
  REQUIRE(order_matters > 0);  // the data would expose an arrival-order sum

  // Directly: contributions indexed by rank.
  dist::ShardServer direct({0, n}, W, optim::OptimizerConfig{});
  std::vector<const float*> ptrs;
  for (int r = 0; r < W; ++r) ptrs.push_back(grads[r].data());
  direct.reduce(ptrs);
  CHECK(slab(direct.gradient(), n) == expected);

  // Through BSP over the local hub, with the ranks' pushes arriving in different orders.
  optim::OptimizerConfig sgd;
  sgd.kind = optim::Kind::sgd;
  sgd.momentum = 0;
  const dist::ShardPlan plan(n, W);
  for (const std::array<int, W>& delay_ms :
       {std::array<int, W>{0, 10, 20, 30}, std::array<int, W>{30, 20, 10, 0},
        std::array<int, W>{20, 0, 30, 10}}) {
    net::LocalHub hub(W);
    std::vector<std::vector<float>> values(W), reduced(W), averaged(W);
    require_no_errors(run_ranks(W, [&](int r) {
      nn::ParamStore ps;
      ps.declare("w", Shape{n}, nn::Init::zeros);
      ps.finalize(0);
      std::copy(grads[r].begin(), grads[r].end(), ps.grads());
      dist::BspSync bsp(hub.transport(r), plan, ps, sgd, 30);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms[r]));
      bsp.step(1.0f, 0);  // w = 0 - 1 * mean: exactly -mean
      values[r] = slab(ps.values(), n);
      reduced[r] = slab(bsp.server().gradient(), bsp.server().size());
      // Local SGD's averaging: the values themselves, reduced the same way.
      std::copy(grads[r].begin(), grads[r].end(), ps.values());
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms[W - 1 - r]));
      bsp.average_params(1);
      averaged[r] = slab(ps.values(), n);
    }));
    std::vector<float> minus(n);
    for (int64_t i = 0; i < n; ++i) minus[i] = -expected[i];
    for (int r = 0; r < W; ++r) {
      CHECK(values[r] == minus);
      CHECK(averaged[r] == expected);
      CHECK(reduced[r] ==
            std::vector<float>(expected.begin() + plan.begin(r), expected.begin() + plan.end(r)));
    }
  }
}

TEST_CASE("shard server: one contribution per rank, world 1 is the identity") {
  dist::ShardServer s({16, 48}, 2, optim::OptimizerConfig{});
  CHECK(s.size() == 32);
  std::vector<float> g(32, 1.0f);
  const float* one[] = {g.data()};
  CHECK_THROWS_WITH_AS(s.reduce(one), doctest::Contains("expected one contribution per rank (2)"),
                       std::invalid_argument);
  dist::ShardServer solo({0, 32}, 1, optim::OptimizerConfig{});
  for (int i = 0; i < 32; ++i) g[i] = 0.1f * static_cast<float>(i) + 1e-7f;
  solo.reduce(one);
  CHECK(slab(solo.gradient(), 32) == g);
}

// ---- (c) ranks as threads vs a sequential reference --------------------------------------------

namespace {

// The closed-form expectation of a W-rank BSP run of train::Trainer: one model, the W local
// gradients computed one after the other with each rank's data, averaged in rank order, one
// optimizer per shard.
std::vector<float> sequential_reference(const train::TrainConfig& cfg, int W, uint64_t init_seed,
                                        const data::Dataset& train) {
  auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(), init_seed);
  nn::ParamStore& ps = model->params;
  const dist::ShardPlan plan(ps.size(), W);
  std::vector<std::unique_ptr<dist::ShardServer>> servers;
  for (int j = 0; j < W; ++j) {
    servers.push_back(std::make_unique<dist::ShardServer>(plan.range(j), W,
                                                          train::Trainer::optimizer_config(cfg)));
  }
  data::PartitionConfig pc;
  pc.scheme = data::parse_partition_scheme(cfg.partition);
  pc.devices = W;
  pc.seed = static_cast<uint64_t>(cfg.seed);
  pc.alpha = cfg.dirichlet_alpha;
  const data::Partition part = data::partition(train, pc);
  std::vector<std::unique_ptr<data::Subset>> local;
  std::vector<std::unique_ptr<nn::Engine>> engines;
  std::vector<std::mt19937_64> augment;
  int64_t largest = 0;
  for (int r = 0; r < W; ++r) {
    local.push_back(std::make_unique<data::Subset>(train, part.devices[r]));
    const uint64_t seed = train::rank_seed(static_cast<uint64_t>(cfg.seed), r);
    engines.push_back(std::make_unique<nn::Engine>(*model, seed));
    augment.emplace_back(seed ^ 0xA5A5A5A5ull);
    largest = std::max(largest, local[r]->size());
  }
  const int64_t B = cfg.batch / W, S = train.sample_numel();
  const int64_t steps = (largest + B - 1) / B;
  std::vector<std::vector<float>> grads(W, std::vector<float>(ps.size()));
  std::vector<float> x(B * S);
  std::vector<int32_t> y(B);
  std::vector<int64_t> idx(B);
  const auto lr = static_cast<float>(cfg.lr);  // constant schedule
  int64_t global_step = 0;
  for (int64_t epoch = 0; epoch < cfg.epochs; ++epoch) {
    std::vector<std::vector<int64_t>> perm(W);
    for (int r = 0; r < W; ++r) {
      perm[r].resize(local[r]->size());
      importance::epoch_permutation(train::rank_seed(static_cast<uint64_t>(cfg.seed), r), epoch,
                                    perm[r]);
    }
    for (int64_t s = 0; s < steps; ++s, ++global_step) {
      const int64_t count = std::min(B, largest - s * B);
      for (int r = 0; r < W; ++r) {
        for (int64_t k = 0; k < count; ++k)
          idx[k] = perm[r][(s * B + k) % static_cast<int64_t>(perm[r].size())];
        local[r]->gather(std::span<const int64_t>(idx.data(), count), x.data(), y.data(),
                         &augment[r]);
        ps.zero_grad();
        engines[r]->grad(x.data(), y.data(), nullptr, count, nullptr, count);
        std::copy(ps.grads(), ps.grads() + ps.size(), grads[r].begin());
      }
      for (int j = 0; j < W; ++j) {
        std::vector<const float*> contributions;
        for (int r = 0; r < W; ++r) contributions.push_back(grads[r].data() + plan.begin(j));
        servers[j]->reduce(contributions);
        servers[j]->step(ps.values() + plan.begin(j), lr);
      }
    }
  }
  return slab(ps.values(), ps.size());
}

struct RankRun {
  std::vector<float> weights;
  train::TrainResult result;
  std::string log;
};

// W ranks of train::Trainer over one LocalHub, rank r's model initialised with seed 100 + r.
std::vector<RankRun> train_ranks(const train::TrainConfig& cfg, int W, const data::Dataset& train,
                                 const data::Dataset& test) {
  net::LocalHub hub(W);
  std::vector<RankRun> runs(W);
  thread_pool().set_threads(1);  // before the ranks start: they must not resize it concurrently
  require_no_errors(run_ranks(W, [&](int r) {
    auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(),
                                    static_cast<uint64_t>(100 + r));
    const train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), W)};
    std::ostringstream log;
    train::Trainer trainer(cfg, *model, train, test, log, &ctx);
    runs[r].result = trainer.run();
    runs[r].weights = slab(model->params.values(), model->params.size());
    runs[r].log = log.str();
  }));
  return runs;
}

// The mean test loss of `weights` in eval mode, as the trainer's evaluation computes it.
double test_loss(const train::TrainConfig& cfg, const std::vector<float>& weights,
                 const data::Dataset& train, const data::Dataset& test) {
  auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(), 100);
  std::copy(weights.begin(), weights.end(), model->params.values());
  nn::Engine engine(*model);
  const int64_t n = test.size();
  std::vector<int64_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  std::vector<float> x(static_cast<std::size_t>(n * test.sample_numel())), losses(idx.size());
  std::vector<int32_t> y(idx.size());
  test.gather(idx, x.data(), y.data(), nullptr);
  engine.score(x.data(), y.data(), n, losses.data());
  return std::accumulate(losses.begin(), losses.end(), 0.0) / static_cast<double>(n);
}

}  // namespace

TEST_CASE("4 ranks as threads: identical weights everywhere, equal to the sequential reference") {
  const auto train = synthetic_images(96, 21), test = synthetic_images(16, 22);
  for (const char* partition : {"iid", "dirichlet"}) {
    CAPTURE(partition);
    auto cfg = dist_config();
    cfg.partition = partition;  // dirichlet: unequal parts, smaller ones wrap around
    cfg.replica_check_every = 2;
    const auto runs = train_ranks(cfg, 4, train, test);
    const auto reference = sequential_reference(cfg, 4, 100, train);
    for (int r = 0; r < 4; ++r) {
      CAPTURE(r);
      CHECK(runs[r].weights == runs[0].weights);
      CHECK(runs[r].result.steps == runs[0].result.steps);
    }
    CHECK(runs[0].weights == reference);
    const auto init = models::make_model("mlp", Shape{1, 28, 28}, 10, 100);
    CHECK(reference != slab(init->params.values(), init->params.size()));  // it did train
    CHECK(runs[0].log.find("epoch   2") != std::string::npos);             // rank 0 logs epochs
    CHECK(runs[1].log.find("epoch   1") == std::string::npos);             // the others do not
    CHECK(runs[1].log.find("rank 1 done") != std::string::npos);
  }
}

TEST_CASE("a world-1 distributed run equals the single-device trainer bit for bit") {
  const auto train = synthetic_images(100, 23), test = synthetic_images(16, 24);
  auto cfg = dist_config();
  cfg.batch = 16;  // 100 = 6·16 + 4: a partial last batch
  cfg.train_limit = 90;
  auto single = models::make_model("mlp", Shape{1, 28, 28}, 10, 7);
  std::ostringstream log;
  train::Trainer(cfg, *single, train, test, log).run();
  auto distributed = models::make_model("mlp", Shape{1, 28, 28}, 10, 7);
  net::LocalHub hub(1);
  const train::DistContext ctx{hub.transport(0), dist::ShardPlan(distributed->params.size(), 1)};
  const auto r = train::Trainer(cfg, *distributed, train, test, log, &ctx).run();
  CHECK(r.steps == 12);
  CHECK(slab(distributed->params.values(), distributed->params.size()) ==
        slab(single->params.values(), single->params.size()));
}

// ---- (d) mean of means == global mean ----------------------------------------------------------

TEST_CASE("2 ranks with batch B follow 1 rank with batch 2B (mean of equal-batch means)") {
  const auto d = synthetic_images(96, 25);
  constexpr int64_t B = 8, kSteps = 6;
  optim::OptimizerConfig sgd;
  sgd.kind = optim::Kind::sgd;
  sgd.momentum = 0.9f;
  const float lr = 0.05f;
  auto batch = [&](int64_t begin, int64_t count, std::vector<float>& x, std::vector<int32_t>& y) {
    std::vector<int64_t> idx(count);
    std::iota(idx.begin(), idx.end(), begin);
    x.resize(count * 784);
    y.resize(count);
    d.gather(idx, x.data(), y.data(), nullptr);
  };
  thread_pool().set_threads(1);

  // One rank, global batch 2B.
  std::vector<double> one_loss;
  auto one = models::make_model("mlp", Shape{1, 28, 28}, 10, 11);
  {
    nn::Engine eng(*one);
    optim::Optimizer opt(sgd, one->params.size());
    std::vector<float> x;
    std::vector<int32_t> y;
    for (int64_t s = 0; s < kSteps; ++s) {
      batch(s * 2 * B, 2 * B, x, y);
      one->params.zero_grad();
      one_loss.push_back(eng.grad(x.data(), y.data(), nullptr, 2 * B));
      opt.step(one->params.values(), one->params.grads(), lr);
    }
  }

  // Two ranks, B each: rank r takes the r-th half of the same global batch.
  net::LocalHub hub(2);
  std::vector<std::vector<double>> rank_loss(2);
  std::vector<std::vector<float>> weights(2);
  std::vector<dist::SyncTiming> timing(2);
  require_no_errors(run_ranks(2, [&](int r) {
    auto m = models::make_model("mlp", Shape{1, 28, 28}, 10, r == 0 ? 11 : 12);
    dist::BspSync bsp(hub.transport(r), dist::ShardPlan(m->params.size(), 2), m->params, sgd, 30);
    bsp.broadcast_initial_params();
    nn::Engine eng(*m);
    std::vector<float> x;
    std::vector<int32_t> y;
    for (int64_t s = 0; s < kSteps; ++s) {
      batch(s * 2 * B + r * B, B, x, y);
      m->params.zero_grad();
      rank_loss[r].push_back(eng.grad(x.data(), y.data(), nullptr, B));
      bsp.step(lr, s);
    }
    timing[r] = bsp.timing();
    weights[r] = slab(m->params.values(), m->params.size());
  }));
  CHECK(weights[0] == weights[1]);
  for (const auto& t : timing) {
    CHECK(t.steps == kSteps);
    CHECK(t.bytes_sent > 0);
    CHECK(t.bytes_sent == t.bytes_received);  // two ranks, equal halves
  }
  for (int64_t s = 0; s < kSteps; ++s) {
    CAPTURE(s);
    const double mean_of_means = 0.5 * (rank_loss[0][s] + rank_loss[1][s]);
    CHECK(mean_of_means == doctest::Approx(one_loss[s]).epsilon(1e-5));
  }
  CHECK(one_loss.back() < one_loss.front());  // it did train
  double max_diff = 0, max_abs = 0;
  for (std::size_t i = 0; i < weights[0].size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double(weights[0][i]) - one->params.values()[i]));
    max_abs = std::max(max_abs, std::abs(double(one->params.values()[i])));
  }
  CHECK(max_diff <= 1e-5 * max_abs);
}

// ---- (e) failures ------------------------------------------------------------------------------

TEST_CASE("a rank failing mid-run makes every other rank throw PeerError naming it, at once") {
  const auto train = synthetic_images(96, 26), test = synthetic_images(16, 27);
  auto cfg = dist_config();
  cfg.op_timeout = 30;  // far longer than the test may take: nobody waits for it
  net::LocalHub hub(4);
  thread_pool().set_threads(1);
  const auto t0 = std::chrono::steady_clock::now();
  const auto errors = run_ranks(4, [&](int r) {
    FaultyTransport t(hub, r, 2, 3, FaultyTransport::Mode::fail);
    auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
    const train::DistContext ctx{t, dist::ShardPlan(model->params.size(), 4)};
    std::ostringstream log;
    train::Trainer(cfg, *model, train, test, log, &ctx).run();
  });
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    REQUIRE(errors[r]);
    try {
      std::rethrow_exception(errors[r]);
    } catch (const net::TimeoutError& e) {
      FAIL("timed out instead of failing fast: " << e.what());
    } catch (const net::PeerError& e) {
      CHECK(e.peer() == 2);
      CHECK(std::string(e.what()).find("rank 2 failed: injected fault at iteration 3") !=
            std::string::npos);
      CHECK(std::string(e.what()).find("BSP iteration") != std::string::npos);
    }
  }
}

TEST_CASE("a frozen rank makes the others time out naming it and the op_timeout knob") {
  const auto train = synthetic_images(96, 26), test = synthetic_images(16, 27);
  auto cfg = dist_config();
  cfg.op_timeout = 0.3;
  net::LocalHub hub(4);
  thread_pool().set_threads(1);
  const auto errors = run_ranks(4, [&](int r) {
    FaultyTransport t(hub, r, 2, 1, FaultyTransport::Mode::stall);
    auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
    const train::DistContext ctx{t, dist::ShardPlan(model->params.size(), 4)};
    std::ostringstream log;
    train::Trainer(cfg, *model, train, test, log, &ctx).run();
  });
  for (int r : {0, 1, 3}) {
    CAPTURE(r);
    REQUIRE(errors[r]);
    try {
      std::rethrow_exception(errors[r]);
    } catch (const net::TimeoutError& e) {
      CHECK(e.peer() == 2);
      CHECK(std::string(e.what()).find("--op-timeout") != std::string::npos);
      CHECK(std::string(e.what()).find("gradient reduce") != std::string::npos);
    }
  }
}

// ---- trainer integration -----------------------------------------------------------------------

TEST_CASE("target accuracy stops every rank after the same step; metrics go to one file each") {
  const auto train = synthetic_images(96, 28), test = synthetic_images(64, 29);
  auto cfg = dist_config();
  cfg.epochs = 3;
  cfg.eval_every = 2;
  cfg.target_acc = 0.01;  // reached at the first evaluation
  cfg.metrics = temp_path("metrics.jsonl");
  const auto runs = train_ranks(cfg, 2, train, test);
  CHECK(runs[0].result.steps == 2);
  CHECK(runs[1].result.steps == 2);
  CHECK(runs[0].weights == runs[1].weights);
  auto events = [](const std::string& path) {
    std::vector<nlohmann::json> v;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
    return v;
  };
  auto has = [](const std::vector<nlohmann::json>& v, const char* e) {
    return std::any_of(v.begin(), v.end(),
                       [&](const nlohmann::json& j) { return j["event"] == e; });
  };
  const auto r0 = events(cfg.metrics);
  const std::string rank1_path = train::dist_metrics_path(cfg.metrics, 1);
  const auto r1 = events(rank1_path);
  CHECK(has(r0, "target_reached"));
  CHECK(has(r0, "epoch"));
  CHECK(has(r0, "dist"));
  CHECK(has(r1, "dist"));
  CHECK_FALSE(has(r1, "epoch"));
  CHECK_FALSE(has(r1, "eval"));
  for (const auto& e : r1) {
    if (e["event"] != "dist") continue;
    CHECK(e["rank"] == 1);
    CHECK(e["bytes_sent"].get<uint64_t>() > 0);
    CHECK(e["comm_s"].get<double>() >= 0);
    CHECK(e["idle_s"].get<double>() >= 0);
  }
  std::filesystem::remove(cfg.metrics);
  std::filesystem::remove(rank1_path);
}

TEST_CASE("distributed metrics paths insert the rank before the extension") {
  CHECK(train::dist_metrics_path("run.jsonl", 0) == "run.jsonl");
  CHECK(train::dist_metrics_path("run.jsonl", 2) == "run.rank2.jsonl");
  CHECK(train::dist_metrics_path("out.d/log", 3) == "out.d/log.rank3");
  CHECK(train::dist_metrics_path("/tmp/.hidden", 1) == "/tmp/.hidden.rank1");
  CHECK(train::dist_metrics_path("", 1).empty());
}

TEST_CASE("distributed mode refuses what it does not support, with the reason") {
  const auto train = synthetic_images(40, 30), test = synthetic_images(8, 31);
  net::LocalHub hub(2);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
  const train::DistContext ctx{hub.transport(0), dist::ShardPlan(model->params.size(), 2)};
  std::ostringstream log;
  auto cfg = dist_config();
  cfg.batch = 33;
  CHECK_THROWS_WITH(train::Trainer(cfg, *model, train, test, log, &ctx),
                    doctest::Contains("batch: expected a multiple of the world size 2"));
  cfg = dist_config();
  cfg.micro_batch = 20;
  CHECK_THROWS_WITH(train::Trainer(cfg, *model, train, test, log, &ctx),
                    doctest::Contains("micro_batch: expected 0..local batch (batch / world = 16)"));
  const train::DistContext wrong{hub.transport(0), dist::ShardPlan(model->params.size() + 16, 2)};
  CHECK_THROWS_WITH(train::Trainer(dist_config(), *model, train, test, log, &wrong),
                    doctest::Contains("shard plan size: expected"));
  cfg = dist_config();
  cfg.partition = "random";
  CHECK_THROWS_WITH(train::Trainer(cfg, *model, train, test, log, &ctx),
                    doctest::Contains("expected iid, dirichlet or shards, found 'random'"));
}

TEST_CASE("adacomm: tau local steps, then the weights averaged; tau follows the loss") {
  const auto train = synthetic_images(192, 32), test = synthetic_images(16, 33);
  auto cfg = dist_config();
  cfg.algorithm = "adacomm";
  cfg.optimizer = "sgd";
  cfg.momentum = 0;
  cfg.epochs = 1;  // 192 / 32 = 6 steps
  // tau 1 with plain SGD is sync SGD up to float rounding: mean(w - lr g_r) vs w - lr mean(g_r).
  cfg.adacomm_tau0 = 1;
  cfg.adacomm_t0 = 1e6;  // never re-evaluated
  auto sync_cfg = cfg;
  sync_cfg.algorithm = "sync";
  const auto local = train_ranks(cfg, 4, train, test);
  const auto sync = train_ranks(sync_cfg, 4, train, test);
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < sync[0].weights.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(local[0].weights[i] - sync[0].weights[i])));
    scale = std::max(scale, static_cast<double>(std::abs(sync[0].weights[i])));
  }
  CHECK(diff <= 1e-5 * scale);
  CHECK(local[0].weights != sync[0].weights);  // it did run the local path
  // tau 3: 6 steps are 2 averagings, and every rank ends with the same average.
  cfg.adacomm_tau0 = 3;
  const auto three = train_ranks(cfg, 4, train, test);
  for (int r = 1; r < 4; ++r) CHECK(three[r].weights == three[0].weights);
  CHECK(three[0].weights != local[0].weights);
  // tau 4: the run ends 2 local steps after the last averaging: the replicas differ.
  cfg.adacomm_tau0 = 4;
  const auto four = train_ranks(cfg, 4, train, test);
  CHECK(four[1].weights != four[0].weights);
  // Its last evaluation (epoch end, 2 steps into a period) saw the replicas' mean, the model
  // local SGD outputs, not rank 0's own weights; evaluating every step leaves training alone.
  std::vector<float> mean(four[0].weights.size());
  for (std::size_t i = 0; i < mean.size(); ++i)
    mean[i] =
        0.25f * (four[0].weights[i] + four[1].weights[i] + four[2].weights[i] + four[3].weights[i]);
  const double mean_loss = test_loss(cfg, mean, train, test);
  const double own_loss = test_loss(cfg, four[0].weights, train, test);
  CAPTURE(mean_loss);
  CAPTURE(own_loss);
  REQUIRE(std::abs(mean_loss - own_loss) > 1e-3);
  CHECK(four[0].result.final_test_loss == doctest::Approx(mean_loss).epsilon(1e-5));
  auto every_step = cfg;
  every_step.eval_every = 1;
  const auto evaluated = train_ranks(every_step, 4, train, test);
  for (int r = 0; r < 4; ++r) CHECK(evaluated[r].weights == four[r].weights);
  // tau0 20 (the paper's grid) is allowed; its first period is clipped to 16, as tau always is.
  cfg.adacomm_tau0 = 20;
  const auto twenty = train_ranks(cfg, 4, train, test);
  cfg.adacomm_tau0 = 16;
  const auto sixteen = train_ranks(cfg, 4, train, test);
  for (int r = 0; r < 4; ++r) CHECK(twenty[r].weights == sixteen[r].weights);
  // Re-evaluated at every averaging after the first: tau = ceil(sqrt(lr0 F / (lr F0)) tau0).
  const mercury::testing::TempDir dir;
  cfg.adacomm_tau0 = 2;
  cfg.adacomm_t0 = 1e-9;
  cfg.epochs = 3;
  cfg.schedule = "cosine";
  cfg.metrics = dir.file("adacomm.jsonl");
  train_ranks(cfg, 2, train, test);
  const auto updates = mercury::testing::metrics_events(cfg.metrics, "adacomm");
  REQUIRE(updates.size() >= 3);
  for (const auto& u : updates) {
    CAPTURE(u.dump());
    const double want = std::ceil(std::sqrt(cfg.lr * u["train_loss"].get<double>() /
                                            (u["lr"].get<double>() * u["f0"].get<double>())) *
                                  2);
    CHECK(u["tau"].get<int64_t>() == std::clamp<int64_t>(static_cast<int64_t>(want), 1, 16));
  }
  const auto done = mercury::testing::metrics_events(cfg.metrics, "done");
  REQUIRE(done.size() == 1);
  CHECK(done[0]["algorithm"] == "adacomm");
  CHECK(done[0]["averagings"].get<int64_t>() >= 3);
}

TEST_CASE("adacomm resumes bit for bit mid-period; the file's weights are the replicas' mean") {
  const auto train = synthetic_images(192, 32), test = synthetic_images(16, 33);
  const mercury::testing::TempDir dir;
  for (const char* sampler : {"uniform", "mercury"}) {
    CAPTURE(sampler);
    auto cfg = dist_config();
    cfg.algorithm = "adacomm";
    cfg.sampler = sampler;
    cfg.group_size = 16;     // mercury: BACC with a fixed group (deterministic)
    cfg.optimizer = "adam";  // local moments that must come back
    cfg.epochs = 2;          // 6 steps per epoch
    cfg.adacomm_tau0 = 4;
    cfg.adacomm_t0 = 1e-9;  // tau re-evaluated at every averaging after the first
    cfg.checkpoint = dir.file(std::string("adacomm-") + sampler + ".safetensors");
    const auto whole = train_ranks(cfg, 4, train, test);
    auto first = cfg;
    first.max_steps = 7;  // 3 local steps after the averaging of step 3: the replicas differ
    const auto part = train_ranks(first, 4, train, test);
    REQUIRE(part[0].result.steps == 7);
    REQUIRE(part[1].weights != part[0].weights);
    // The checkpoint's weights are the mean of the replicas as they were at step 7.
    auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(), 1);
    optim::Optimizer opt(train::Trainer::optimizer_config(cfg), model->params.size());
    train::load_checkpoint(cfg.checkpoint, *model, opt);
    double diff = 0;
    for (std::size_t i = 0; i < part[0].weights.size(); ++i) {
      const float mean = 0.25f * (part[0].weights[i] + part[1].weights[i] + part[2].weights[i] +
                                  part[3].weights[i]);
      diff = std::max(diff, static_cast<double>(std::abs(model->params.values()[i] - mean)));
    }
    CHECK(diff < 1e-6);
    auto second = cfg;
    second.resume = cfg.checkpoint;
    const auto resumed = train_ranks(second, 4, train, test);
    for (int r = 0; r < 4; ++r) {
      CAPTURE(r);
      CHECK(resumed[r].result.steps == whole[r].result.steps);
      CHECK(resumed[r].weights == whole[r].weights);
    }
    CHECK(resumed[0].result.final_test_acc == whole[0].result.final_test_acc);
    // Across algorithms the rank state does not fit: refused on every rank, saying why.
    auto as_sync = second;
    as_sync.algorithm = "sync";
    as_sync.pipeline = "sequential";
    net::LocalHub hub(4);
    const auto errors = run_ranks(4, [&](int r) {
      auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(), 100);
      const train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), 4)};
      std::ostringstream log;
      train::Trainer(as_sync, *model, train, test, log, &ctx).run();
    });
    for (int r = 0; r < 4; ++r) {
      CAPTURE(r);
      CHECK(mercury::testing::error_message(errors[r]).find(
                "the checkpoint was written by an adacomm run") != std::string::npos);
    }
  }
}

TEST_CASE("adacomm refuses what it cannot do, naming the setting") {
  const auto train = synthetic_images(40, 34), test = synthetic_images(8, 35);
  net::LocalHub hub(2);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
  const train::DistContext ctx{hub.transport(0), dist::ShardPlan(model->params.size(), 2)};
  std::ostringstream log;
  auto cfg = dist_config();
  cfg.algorithm = "adacomm";
  CHECK_THROWS_WITH(train::Trainer(cfg, *model, train, test, log),
                    doctest::Contains("algorithm: expected sync on a single device"));
  cfg.replica_check_every = 2;
  CHECK_THROWS_WITH(train::Trainer(cfg, *model, train, test, log, &ctx),
                    doctest::Contains("replica_check_every: expected 0 with algorithm adacomm"));
  cfg.replica_check_every = 0;
  cfg.sampler = "mercury";
  cfg.pipeline = "bacc";
  CHECK_NOTHROW(train::validate(cfg));  // importance-sampled local SGD
  cfg.pipeline = "auto";  // auto is bacc under adacomm too (test_dist_importance runs it)
  CHECK_NOTHROW(train::Trainer(cfg, *model, train, test, log, &ctx));
  for (const char* bad : {"TICTAC", "ADACOMM", ""}) {
    cfg.algorithm = bad;
    CHECK_THROWS_WITH(train::validate(cfg),
                      doctest::Contains("algorithm: expected sync, tictac or adacomm"));
  }
  cfg.algorithm = "adacomm";
  cfg.adacomm_tau0 = 65;
  CHECK_THROWS_WITH(train::validate(cfg), doctest::Contains("adacomm_tau0: expected 1..64"));
}

// Copies each parameter's gradient at the moment the sweep reports its leaf done, to compare with
// the gradient at the end of backward (the SweepObserver contract TicTac relies on).
class GradFinalProbe final : public nn::StepHooks {
 public:
  explicit GradFinalProbe(const nn::ParamStore& ps) : ps_(ps) {}
  void before_param(int64_t offset, int64_t numel, std::size_t leaf) override {
    uses_.push_back({offset, numel, leaf, false});
  }
  void swept(std::size_t k) override {
    ++calls_;
    for (Use& u : uses_) {
      // Final once every use of that parameter is passed: the earliest leaf of that offset.
      bool all = true;
      for (const Use& o : uses_)
        if (o.offset == u.offset && o.leaf + 1 < k) all = false;
      if (all && !u.taken) {
        u.taken = true;
        u.at_report.assign(ps_.grads() + u.offset, ps_.grads() + u.offset + u.numel);
      }
    }
  }
  struct Use {
    int64_t offset, numel;
    std::size_t leaf;
    bool taken;
    std::vector<float> at_report = {};
  };
  std::vector<Use> uses_;
  int64_t calls_ = 0;

 private:
  const nn::ParamStore& ps_;
};

TEST_CASE("backward reports where each parameter's gradient becomes final (TicTac's hook)") {
  const auto data = synthetic_images(8, 41);
  std::vector<float> x(8 * 784);
  std::vector<int32_t> y(8);
  std::vector<int64_t> idx(8);
  std::iota(idx.begin(), idx.end(), 0);
  data.gather(idx, x.data(), y.data(), nullptr);
  for (const char* name : {"mlp", "cnn", "resnet8"}) {
    CAPTURE(name);
    auto model = models::make_model(name, Shape{1, 28, 28}, 10, 3);
    nn::ParamStore& ps = model->params;
    nn::Engine engine(*model, 1);
    GradFinalProbe probe(ps);
    ps.zero_grad();
    engine.grad(x.data(), y.data(), nullptr, 8, nullptr, 0, nullptr, &probe);
    REQUIRE(probe.uses_.size() >= ps.params().size());  // every parameter read at least once
    CHECK(probe.calls_ > 0);
    for (const auto& u : probe.uses_) {
      CAPTURE(u.offset);
      REQUIRE(u.taken);
      const std::vector<float> final_grad(ps.grads() + u.offset, ps.grads() + u.offset + u.numel);
      CHECK(u.at_report == final_grad);
    }
    // Not everything at the very end: the last layer's gradient is final early in the sweep.
    std::size_t last_leaf = 0;
    for (const auto& u : probe.uses_) last_leaf = std::max(last_leaf, u.leaf);
    CHECK(last_leaf > probe.uses_.front().leaf);
  }
}

TEST_CASE("tictac pieces: cut at every layer and shard boundary, owned by the shard's rank") {
  auto model = models::make_model("cnn", Shape{1, 28, 28}, 10, 3);
  const nn::ParamStore& ps = model->params;
  net::LocalHub hub(3);
  const dist::ShardPlan plan(ps.size(), 3);
  dist::BspSync bsp(hub.transport(1), plan, model->params, optim::OptimizerConfig{}, 10);
  const dist::TicTac tic(bsp, model->params);
  const auto& pieces = tic.pieces();
  REQUIRE(!pieces.empty());
  CHECK(pieces.front().begin == 0);
  CHECK(pieces.back().end == ps.size());
  std::vector<int64_t> starts;
  for (std::size_t p = 0; p < pieces.size(); ++p) {
    CAPTURE(p);
    if (p) CHECK(pieces[p].begin == pieces[p - 1].end);
    CHECK(pieces[p].size() > 0);
    CHECK(plan.begin(pieces[p].owner) <= pieces[p].begin);
    CHECK(pieces[p].end <= plan.end(pieces[p].owner));
    starts.push_back(pieces[p].begin);
  }
  auto cut_at = [&](int64_t off) {
    return std::find(starts.begin(), starts.end(), off) != starts.end();
  };
  for (int r = 0; r < 3; ++r) CHECK(cut_at(plan.begin(r)));
  for (std::size_t i = 1; i < ps.params().size(); ++i) {
    const auto& a = ps.params()[i - 1].name;
    const auto& b = ps.params()[i].name;
    CAPTURE(b);
    const bool new_layer = a.substr(0, a.rfind('.')) != b.substr(0, b.rfind('.'));
    const int64_t off = ps.params()[i].offset;
    if (new_layer) {
      CHECK(cut_at(off));
    } else if (cut_at(off)) {  // weight and bias travel together unless a shard ends between
      bool shard_edge = false;
      for (int r = 1; r < 3; ++r) shard_edge = shard_edge || plan.begin(r) == off;
      CHECK(shard_edge);
    }
  }
  // The cnn's layers plus the two shard cuts inside them: more pieces than shards.
  CHECK(pieces.size() > 3);
}

TEST_CASE("tictac without a forward (finish alone) is BspSync::step on the same gradients") {
  const int W = 3;
  std::vector<std::vector<float>> by_step(W), by_tictac(W);
  for (const bool tic : {false, true}) {
    net::LocalHub hub(W);
    require_no_errors(run_ranks(W, [&](int r) {
      auto model = models::make_model("cnn", Shape{1, 28, 28}, 10, 9);
      nn::ParamStore& ps = model->params;
      for (int64_t i = 0; i < ps.size(); ++i)  // a different gradient on every rank
        ps.grads()[i] = 0.001f * static_cast<float>((i * (r + 3)) % 97) - 0.04f;
      optim::OptimizerConfig oc;
      oc.kind = optim::parse_kind("adam");
      dist::BspSync bsp(hub.transport(r), dist::ShardPlan(ps.size(), W), ps, oc, 30);
      if (tic) {
        dist::TicTac tt(bsp, ps);
        tt.finish(0.01f, 4);
        CHECK(tt.in_flight() > 0);  // the other shards' layers are still on their way
        tt.settle();
        CHECK(tt.in_flight() == 0);
        CHECK(bsp.timing().steps == 1);
        CHECK(bsp.timing().bytes_received == bsp.timing().bytes_sent);
      } else {
        bsp.step(0.01f, 4);
      }
      (tic ? by_tictac : by_step)[r] = slab(ps.values(), ps.size());
    }));
  }
  for (int r = 0; r < W; ++r) CHECK(by_tictac[r] == by_step[0]);
}

TEST_CASE("tictac: sync SGD's weights bit for bit, whatever the micro-batches and samplers") {
  // 16×16 images: the reference CNN at a twelfth of its 28×28 cost.
  const auto train = synthetic_images(96, 42, 16), test = synthetic_images(16, 43, 16);
  struct Case {
    const char* model;
    int world;
    int64_t micro;
    const char* sampler;
  };
  for (const Case c :
       {Case{"mlp", 3, 0, "uniform"}, Case{"cnn", 4, 4, "uniform"}, Case{"cnn", 2, 0, "mercury"}}) {
    const std::string what = std::string(c.model) + " " + c.sampler;
    CAPTURE(what);
    CAPTURE(c.world);
    auto cfg = dist_config();
    cfg.batch = 24;  // 8, 6 (micro-batches of 4 and 2) or 12 per rank
    cfg.model = c.model;
    cfg.micro_batch = c.micro;
    cfg.sampler = c.sampler;
    cfg.group_size = 16;
    cfg.pipeline = "sequential";  // sync's mercury would pick bacc, whose groups are timed
    cfg.eval_every = 3;
    cfg.replica_check_every = 2;
    const auto sync = train_ranks(cfg, c.world, train, test);
    cfg.algorithm = "tictac";
    cfg.pipeline = "auto";  // sequential under tictac
    const auto tic = train_ranks(cfg, c.world, train, test);
    for (int r = 0; r < c.world; ++r) {
      CAPTURE(r);
      CHECK(tic[r].weights == sync[0].weights);
      CHECK(tic[r].result.steps == sync[0].result.steps);
    }
    CHECK(tic[0].result.final_test_acc == sync[0].result.final_test_acc);
  }
}

TEST_CASE("tictac refuses bacc and names the choices") {
  auto cfg = dist_config();
  cfg.algorithm = "tictac";
  cfg.sampler = "mercury";
  cfg.pipeline = "bacc";
  CHECK_THROWS_WITH(train::validate(cfg),
                    doctest::Contains("pipeline bacc: expected algorithm sync or adacomm (BACC "
                                      "scores while the aggregation holds the link; tictac "
                                      "overlaps the aggregation with compute instead), found "
                                      "algorithm tictac"));
}

TEST_CASE("initial broadcast refuses a rank whose model differs, naming both layout hashes") {
  net::LocalHub hub(2);
  auto mlp = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
  auto cnn = models::make_model("cnn", Shape{1, 28, 28}, 10, 1);
  std::string message;
  const auto errors = run_ranks(2, [&](int r) {
    nn::Model& m = r == 0 ? *mlp : *cnn;
    dist::BspSync bsp(hub.transport(r), dist::ShardPlan(m.params.size(), 2), m.params,
                      optim::OptimizerConfig{}, 10);
    bsp.broadcast_initial_params();
  });
  CHECK_FALSE(errors[0]);
  REQUIRE(errors[1]);
  try {
    std::rethrow_exception(errors[1]);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  CHECK(message.find("parameter layout hash: expected " +
                     std::to_string(cnn->params.layout_hash())) != std::string::npos);
  CHECK(message.find("found " + std::to_string(mlp->params.layout_hash())) != std::string::npos);
}

TEST_CASE("initial broadcast gives every rank of three rank 0's weights (copy, then move)") {
  net::LocalHub hub(3);
  std::vector<std::unique_ptr<nn::Model>> models;
  for (int r = 0; r < 3; ++r)
    models.push_back(models::make_model("mlp", Shape{1, 28, 28}, 10, uint64_t(21 + r)));
  const std::vector<float> rank0 = slab(models[0]->params.values(), models[0]->params.size());
  CHECK(slab(models[1]->params.values(), models[1]->params.size()) != rank0);
  require_no_errors(run_ranks(3, [&](int r) {
    nn::Model& m = *models[r];
    dist::BspSync bsp(hub.transport(r), dist::ShardPlan(m.params.size(), 3), m.params,
                      optim::OptimizerConfig{}, 10);
    bsp.broadcast_initial_params();
  }));
  for (int r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(slab(models[r]->params.values(), models[r]->params.size()) == rank0);
  }
}

TEST_CASE("replica check names every rank's checksum when the weights differ") {
  net::LocalHub hub(3);
  std::vector<uint32_t> agreed(3), local(3);
  const auto errors = run_ranks(3, [&](int r) {
    nn::ParamStore ps;
    ps.declare("w", Shape{32}, nn::Init::zeros);
    ps.finalize(0);
    dist::BspSync bsp(hub.transport(r), dist::ShardPlan(32, 3), ps, optim::OptimizerConfig{}, 10);
    agreed[r] = bsp.check_replicas(0);
    local[r] = io::crc32c(ps.values(), 32 * sizeof(float));
    if (r == 1) ps.values()[5] = 1.0f;
    bsp.check_replicas(1);
  });
  CHECK(agreed == local);
  for (int r = 0; r < 3; ++r) {
    REQUIRE(errors[r]);
    try {
      std::rethrow_exception(errors[r]);
    } catch (const dist::ReplicaMismatch& e) {
      CHECK(std::string(e.what()).find("rank 0 ") != std::string::npos);
      CHECK(std::string(e.what()).find("rank 2 ") != std::string::npos);
    }
  }
}

TEST_CASE("a subset gathers the mapped samples and checks its indices") {
  const auto d = synthetic_images(20, 32);
  const data::Subset sub(d, {7, 3, 3, 19}, "test part");
  CHECK(sub.size() == 4);
  CHECK(sub.label(0) == d.label(7));
  CHECK(sub.sample_shape() == d.sample_shape());
  CHECK(sub.describe().find("test part of 4 samples") != std::string::npos);
  std::vector<float> a(3 * 784), b(3 * 784);
  std::vector<int32_t> ya(3), yb(3);
  const int64_t local[] = {3, 0, 1};
  const int64_t global[] = {19, 7, 3};
  sub.gather(local, a.data(), ya.data(), nullptr);
  d.gather(global, b.data(), yb.data(), nullptr);
  CHECK(a == b);
  CHECK(ya == yb);
  const int64_t bad[] = {0, 4};
  CHECK_THROWS_WITH_AS(sub.gather(bad, a.data(), ya.data(), nullptr),
                       doctest::Contains("batch position 1 has index 4, expected 0..3"),
                       std::out_of_range);
  CHECK_THROWS_WITH_AS(data::Subset(d, {0, 20}), doctest::Contains("position 1 has index 20"),
                       std::out_of_range);
}
