// The simulator: virtual clocks and links (net/virtual_net.hpp), the hub on them, BACC's
// virtual windows, and whole runs through sim::simulate against the same runs on a plain
// in-process hub (bitwise the same weights where the algorithm is deterministic).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "file_test_support.hpp"
#include "mercury/mercury.hpp"
#include "mercury/sim/simulator.hpp"
#include "net/local.hpp"
#include "net/virtual_net.hpp"
#include "ranks_as_threads.hpp"
#include "synthetic_data.hpp"

using namespace mercury;
using mercury::testing::synthetic_images;
// The images here are 16×16 (synthetic_images(n, seed, 16)), but in the tictac case: what
// these tests check does not depend on the size, and the models cost 2.4× (mlp) to 12× (cnn)
// less than at 28×28.

namespace {

// Burns about `seconds` of this thread's CPU time.
double burn(double seconds) {
  const double c0 = net::thread_cpu_seconds();
  volatile double x = 1;
  while (net::thread_cpu_seconds() - c0 < seconds)
    for (int i = 0; i < 1000; ++i) x = x * 1.0000001 + 1e-9;
  return net::thread_cpu_seconds() - c0;
}

net::VirtualNetworkConfig links(int world, double mbps, double latency_s = 0) {
  net::VirtualNetworkConfig c;
  c.factors.assign(static_cast<std::size_t>(world), 1.0);
  if (mbps > 0) c.trace = net::BandwidthTrace::constant(mbps);
  c.latency_s = latency_s;
  return c;
}

using mercury::testing::metrics_events;

train::TrainConfig config(const char* sampler) {
  train::TrainConfig c;
  c.model = "mlp";
  c.epochs = 2;
  c.batch = 18;
  c.lr = 0.01;
  c.threads = 1;
  c.seed = 5;
  c.progress = false;
  c.eval_batch = 32;
  c.eval_every = 3;
  c.op_timeout = 60;
  c.sampler = sampler;
  c.group_size = 12;
  return c;
}

struct Final {
  std::vector<float> weights;
  int64_t steps = 0;
};

// The run on a plain in-process hub (real clocks).
std::vector<Final> run_on_hub(const train::TrainConfig& cfg, int W, const data::Dataset& train,
                              const data::Dataset& test) {
  net::LocalHub hub(W);
  std::vector<Final> out(static_cast<std::size_t>(W));
  const auto errors = mercury::testing::run_ranks(W, [&](int r) {
    auto model = models::make_model(cfg.model, train.sample_shape(), train.num_classes(),
                                    static_cast<uint64_t>(cfg.seed));
    const train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), W)};
    std::ostringstream log;
    train::Trainer trainer(cfg, *model, train, test, log, &ctx);
    out[r].steps = trainer.run().steps;
    out[r].weights.assign(model->params.values(), model->params.values() + model->params.size());
    hub.transport(r).close(net::deadline_in(10));
  });
  mercury::testing::require_no_errors(errors);
  return out;
}

// The run in the simulator.
std::vector<Final> run_in_sim(const train::TrainConfig& cfg, sim::SimOptions o,
                              const data::Dataset& train, const data::Dataset& test,
                              sim::SimResult* result = nullptr) {
  std::vector<Final> out(o.factors.size());
  o.after_run = [&](int r, const train::Trainer& t, const nn::Model& m) {
    out[r].steps = t.cursor().global_step;
    out[r].weights.assign(m.params.values(), m.params.values() + m.params.size());
  };
  std::ostringstream log;
  const sim::SimResult res = sim::simulate(
      cfg, o,
      [&] {
        return models::make_model(cfg.model, train.sample_shape(), train.num_classes(),
                                  static_cast<uint64_t>(cfg.seed));
      },
      train, test, {}, log);
  if (result) *result = res;
  return out;
}

sim::SimOptions sim_options(int W, double mbps, double factor = 1) {
  sim::SimOptions o;
  o.factors.assign(static_cast<std::size_t>(W), factor);
  if (mbps > 0) o.trace = net::BandwidthTrace::constant(mbps);
  return o;
}

}  // namespace

TEST_CASE("virtual links: a message takes wire bytes / rate + latency, queued per link") {
  net::VirtualNetwork vn(links(3, 8.0, 0.002));  // 8 Mbps = 1 byte per microsecond
  const double t0 = vn.now(0);
  const std::size_t n = 100000;
  const double wire = static_cast<double>(n + net::kHeaderBytes) * 8 / 8e6;
  const double a = vn.on_send(0, 1, n);
  CHECK(a == doctest::Approx(t0 + wire + 0.002).epsilon(1e-3));
  // The next message on the same link waits for the first; another link is free.
  const double b = vn.on_send(0, 1, n);
  CHECK(b == doctest::Approx(a + wire).epsilon(1e-3));
  const double c = vn.on_send(0, 2, n);
  CHECK(c < b);
  CHECK(c == doctest::Approx(a).epsilon(1e-2));
  // A 3 MiB message pays one header per 1 MiB chunk.
  const double d = vn.on_send(0, 2, 3u << 20);
  CHECK(d - c == doctest::Approx(static_cast<double>((3u << 20) + 3 * net::kHeaderBytes) * 8 / 8e6)
                     .epsilon(1e-3));
  // Unlimited links: only the latency.
  net::VirtualNetwork free_links(links(2, 0, 0.01));
  const double t1 = free_links.now(0);
  CHECK(free_links.on_send(0, 1, 1 << 20) == doctest::Approx(t1 + 0.01).epsilon(1e-3));
}

TEST_CASE("virtual links follow a trace over virtual time") {
  net::VirtualNetworkConfig c = links(2, 0);
  c.trace = net::BandwidthTrace({{0, 8}, {1, 80}});  // 8 Mbps for 1 s, then 80
  net::VirtualNetwork vn(c);
  vn.now(0);
  vn.advance_to(0, 0.9);
  // 0.1 s at 1 byte/us covers 100,000 bytes; the remaining 900,000 go at 10 bytes/us.
  const std::size_t n = 1000000 - net::kHeaderBytes;
  CHECK(vn.on_send(0, 1, n) == doctest::Approx(1.09).epsilon(1e-3));
}

TEST_CASE("virtual clocks: compute is thread CPU time x factor, never backwards, one thread") {
  net::VirtualNetworkConfig c = links(2, 10);
  c.factors = {1.0, 4.0};
  net::VirtualNetwork vn(c);
  std::thread([&] {
    double last = vn.now(1);
    for (int k = 0; k < 5; ++k) {
      const double used = burn(0.004);
      const double t = vn.now(1);
      CHECK(t >= last + 4 * used * 0.99);
      last = t;
    }
    vn.on_recv(1, last - 1);  // a message that arrived long ago does not move the clock back
    CHECK(vn.now(1) >= last);
    vn.on_recv(1, last + 2);
    CHECK(vn.now(1) >= last + 2);
  }).join();
  const net::DeviceClock clock = vn.clock(1);
  CHECK(clock.compute_s >= 4 * 5 * 0.004 * 0.99);
  CHECK(clock.wait_s == doctest::Approx(2).epsilon(1e-3));
  CHECK(clock.now_s >= clock.compute_s + clock.wait_s - 1e-9);
  // Rank 1's clock belongs to the thread that first read it.
  CHECK_THROWS_WITH(vn.now(1), doctest::Contains("thread other than the rank's own"));
  CHECK_THROWS_AS(vn.now(2), std::invalid_argument);
  for (const double bad : {0.0, -1.0, std::nan("")}) {
    net::VirtualNetworkConfig b = links(2, 10);
    b.factors[1] = bad;
    CHECK_THROWS_WITH(net::VirtualNetwork{b}, doctest::Contains("device 1: expected a compute "
                                                                "factor > 0"));
  }
}

TEST_CASE("the hub on virtual clocks: the receiver waits until the message arrives") {
  auto vn = std::make_shared<net::VirtualNetwork>(links(2, 8.0));
  net::LocalHub hub(vn);
  CHECK(hub.transport(0).device_factor() == 1.0);
  CHECK(!net::LocalHub(2).transport(0).device_factor());
  double sent_at = 0, after_send = 0, arrived = 0, received_at = 0;
  const auto errors = mercury::testing::run_ranks(2, [&](int r) {
    net::Transport& t = hub.transport(r);
    if (r == 0) {
      burn(0.01);
      sent_at = t.now();
      t.send(1, 16, 0, 0, std::vector<std::byte>(80000));
      after_send = t.now();  // the copy into the message is the sender's CPU time
    } else {
      const net::Message m = t.recv(0, 16, 0, 0, net::deadline_in(10));
      arrived = m.arrival_s;
      received_at = t.now();
      CHECK(t.stats(0).throughput_bps == 8e6);
    }
  });
  mercury::testing::require_no_errors(errors);
  const double wire = (80000.0 + net::kHeaderBytes) / 1e6;
  CHECK(arrived >= sent_at + wire * 0.999);
  CHECK(arrived <= after_send + wire * 1.001);
  CHECK(received_at >= arrived);
  CHECK(received_at < arrived + 0.01);  // rank 1 did nothing else
}

TEST_CASE("shared medium: messages take the one channel in virtual-time order, not real order") {
  // Rank 2 sends first in real time but late in virtual time (0.5 s); rank 1 sends after it in
  // real time but at virtual ~0. Rank 1's message must get the channel first.
  net::VirtualNetworkConfig c = links(3, 8.0);  // 1 byte per microsecond
  c.shared_medium = true;
  auto vn = std::make_shared<net::VirtualNetwork>(c);
  REQUIRE(vn->ordered());
  net::LocalHub hub(vn);
  const std::size_t n = 100000;  // 0.1 s on the channel
  const double wire = static_cast<double>(n + net::kHeaderBytes) / 1e6;
  double from1 = 0, from2 = 0, sent1 = 0;
  std::atomic<bool> two_waiting{false};
  const auto errors = mercury::testing::run_ranks(3, [&](int r) {
    net::Transport& t = hub.transport(r);
    if (r == 0) {
      from2 = t.recv(2, 16, 0, 0, net::deadline_in(10)).arrival_s;
      from1 = t.recv(1, 16, 0, 0, net::deadline_in(10)).arrival_s;
    } else if (r == 2) {
      t.advance_to(0.5);
      two_waiting = true;
      t.send(0, 16, 0, 0, std::vector<std::byte>(n));  // waits for rank 1's turn
    } else {
      while (!two_waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // real time: no virtual cost
      sent1 = t.now();
      t.send(0, 16, 0, 0, std::vector<std::byte>(n));
    }
    t.close(net::deadline_in(10));  // a rank that is done must say so, or it holds others back
  });
  mercury::testing::require_no_errors(errors);
  CHECK(sent1 < 0.05);
  CHECK(from1 == doctest::Approx(sent1 + wire).epsilon(0.02));
  CHECK(from2 == doctest::Approx(0.5 + wire).epsilon(0.02));  // the channel was free again at 0.5
  // Per link, by contrast, the two would not share anything: the medium is what made rank 2
  // wait. A medium needs a rate.
  sim::SimOptions o = sim_options(2, 0);
  o.shared_medium = true;
  const auto d = synthetic_images(8, 1, 16);
  CHECK_THROWS_WITH(
      sim::simulate(
          config("uniform"), o, [&] { return models::make_model("mlp", d.sample_shape(), 10, 1); },
          d, d, {}, std::cout),
      doctest::Contains("a shared medium needs a rate"));
}

TEST_CASE("shared medium: overlapping sends queue on the one channel") {
  net::VirtualNetworkConfig c = links(3, 8.0);
  c.shared_medium = true;
  auto vn = std::make_shared<net::VirtualNetwork>(c);
  net::LocalHub hub(vn);
  const std::size_t n = 100000;
  const double wire = static_cast<double>(n + net::kHeaderBytes) / 1e6;
  std::vector<double> arrivals;
  const auto errors = mercury::testing::run_ranks(3, [&](int r) {
    net::Transport& t = hub.transport(r);
    if (r == 0) {
      arrivals.push_back(t.recv(1, 16, 0, 0, net::deadline_in(10)).arrival_s);
      arrivals.push_back(t.recv(2, 16, 0, 0, net::deadline_in(10)).arrival_s);
    } else {
      t.send(0, 16, 0, 0, std::vector<std::byte>(n));  // both at virtual ~0
    }
    t.close(net::deadline_in(10));
  });
  mercury::testing::require_no_errors(errors);
  std::sort(arrivals.begin(), arrivals.end());
  CHECK(arrivals[0] == doctest::Approx(wire).epsilon(0.05));
  CHECK(arrivals[1] == doctest::Approx(2 * wire).epsilon(0.05));  // behind the first
}

TEST_CASE("shared medium: a send held back past the order timeout names the rank in its way") {
  net::VirtualNetworkConfig c = links(2, 8.0);
  c.shared_medium = true;
  net::LocalHub hub(std::make_shared<net::VirtualNetwork>(c));
  hub.set_order_timeout(0.2);
  std::atomic<bool> sent{false};
  const auto errors = mercury::testing::run_ranks(2, [&](int r) {
    net::Transport& t = hub.transport(r);
    if (r == 0) {
      t.advance_to(1.0);  // rank 1 sits at virtual 0 and never sends, receives or closes
      CHECK_THROWS_WITH_AS(t.send(1, 16, 0, 0, std::vector<std::byte>(10)),
                           doctest::Contains("s for rank 1, whose clock is at 0.0"),
                           net::TimeoutError);
      sent = true;
    } else {
      while (!sent) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    t.close(net::deadline_in(1));
  });
  mercury::testing::require_no_errors(errors);
}

TEST_CASE("BACC in virtual mode: the group is the chunks whose cost fits the window") {
  const auto data = synthetic_images(256, 7, 16);
  auto model = models::make_model("mlp", data.sample_shape(), data.num_classes(), 1);
  std::vector<int64_t> candidates(256);
  for (int64_t i = 0; i < 256; ++i) candidates[i] = i;
  for (const bool finish : {false, true}) {
    CAPTURE(finish);
    importance::WorkerConfig wc;
    wc.chunk = 16;
    wc.max_group = 256;
    wc.virtual_factor = 2.0;
    wc.finish_late_chunk = finish;
    importance::ScoringWorker w(*model, data, wc);
    w.set_snapshot(model->params.values(), model->params.buffers());
    // No time at all: nothing fits; in finish mode the first chunk counts and is exposed.
    w.open(candidates, 0);
    importance::WindowStats st = w.close(0.0);
    CHECK(st.scored == (finish ? 16 : 0));
    CHECK(st.exposed_s == doctest::Approx(finish ? st.virtual_s : 0.0));
    if (finish) CHECK(st.virtual_s > 0);
    // Plenty of time: every candidate.
    w.open(candidates, 0);
    st = w.close(1e9);
    CHECK(st.scored == 256);
    CHECK(st.exposed_s == 0);
    CHECK(st.virtual_s > 0);
    const double per_sample = st.virtual_s / 256;
    // Half the full cost: about half the candidates, never more than fit.
    w.open(candidates, 0);
    st = w.close(per_sample * 128);
    CHECK(st.scored % 16 == 0);
    CHECK(st.scored >= 32);
    CHECK(st.scored <= 256);
    if (!finish) CHECK(st.virtual_s <= per_sample * 128);
    // A fixed group is scored whole, its cost beyond the window exposed.
    w.open(candidates, 40);
    st = w.close(0.0);
    CHECK(st.scored == 40);
    CHECK(st.exposed_s == doctest::Approx(st.virtual_s));
    CHECK(w.scores()[39] > 0);
  }
  importance::WorkerConfig wc;
  wc.virtual_factor = 1;
  importance::ScoringWorker w(*model, data, wc);
  w.set_snapshot(model->params.values(), model->params.buffers());
  w.open(candidates, 0);
  CHECK_THROWS_WITH(w.close(), doctest::Contains("a virtual window needs a budget"));
}

TEST_CASE("simulated runs equal real ones bit for bit, every device computes, time moves on") {
  const auto train = synthetic_images(192, 11, 16), test = synthetic_images(32, 12, 16);
  struct Case {
    const char* name;
    train::TrainConfig cfg;
  };
  std::vector<Case> cases;
  cases.push_back({"uniform", config("uniform")});
  cases.push_back({"mercury sequential", config("mercury")});
  cases.back().cfg.pipeline = "sequential";
  cases.push_back({"mercury bacc fixed group", config("mercury")});
  cases.back().cfg.pipeline = "bacc";
  cases.back().cfg.bacc_chunk = 4;
  for (auto& c : cases) {
    CAPTURE(c.name);
    const mercury::testing::TempDir dir;
    c.cfg.metrics = dir.file("bitwise.jsonl");
    sim::SimResult res;
    const auto simulated = run_in_sim(c.cfg, sim_options(3, 10.0), train, test, &res);
    const auto eval = metrics_events(c.cfg.metrics, "eval");
    auto real_cfg = c.cfg;
    real_cfg.metrics.clear();
    const auto real = run_on_hub(real_cfg, 3, train, test);
    for (int r = 0; r < 3; ++r) {
      CAPTURE(r);
      CHECK(simulated[r].steps == real[r].steps);
      CHECK(simulated[r].weights == real[r].weights);
      CHECK(res.clocks[r].compute_s > 0);  // a simulator that forgot compute fails here
      CHECK(res.clocks[r].now_s >= res.clocks[r].compute_s);
    }
    // Virtual wall time only moves forward, and each step costs at least its traffic: rank 0
    // pushes 2/3 of the gradient and pulls 2/3 of the weights over 10 Mbps links.
    REQUIRE(eval.size() >= 3);
    const double step_bytes = 4.0 * static_cast<double>(real[0].weights.size()) * 2 / 3;
    for (std::size_t k = 1; k < eval.size(); ++k) {
      const double dt = eval[k]["wall_s"].get<double>() - eval[k - 1]["wall_s"].get<double>();
      const int64_t ds = eval[k]["steps"].get<int64_t>() - eval[k - 1]["steps"].get<int64_t>();
      CHECK(dt > 0);
      CHECK(dt >= ds * step_bytes * 8 / 10e6 * 0.99);
    }
    const auto sim_done = metrics_events(c.cfg.metrics, "done");
    REQUIRE(sim_done.size() == 1);
    CHECK(sim_done[0]["wall_s"].get<double>() <= res.virtual_s + 1e-9);
  }
}

TEST_CASE("simulated BACC: adaptive groups follow the virtual window, stragglers show") {
  const auto train = synthetic_images(400, 13, 16), test = synthetic_images(32, 14, 16);
  auto cfg = config("mercury");
  cfg.group_size = 0;
  cfg.bacc_chunk = 2;
  cfg.batch = 16;
  cfg.epochs = 1;
  cfg.eval_every = 0;
  // Each rank's total group over the run (and the largest group of any window).
  int64_t largest = 0;
  auto groups = [&](double mbps, std::vector<double> factors) {
    const mercury::testing::TempDir dir;
    cfg.metrics = dir.file("adaptive.jsonl");
    sim::SimOptions o = sim_options(2, mbps);
    o.factors = factors;
    run_in_sim(cfg, o, train, test);
    std::vector<int64_t> total(2);
    largest = 0;
    for (int r = 0; r < 2; ++r) {
      const std::string path = train::dist_metrics_path(cfg.metrics, r);
      for (const auto& e : metrics_events(path, "bacc")) {
        total[r] += e["group"].get<int64_t>();
        largest = std::max(largest, e["group"].get<int64_t>());
      }
    }
    return total;
  };
  // By default a window scores at most 10 x the local batch (8 here), however long it lasts.
  REQUIRE(cfg.bacc_max_group == 0);
  groups(0.5, {1, 1});
  CHECK(largest == 80);
  // Above that ceiling the group follows the window.
  cfg.bacc_max_group = 400;
  const auto slow_link = groups(0.5, {1, 1});
  CHECK(largest > 80);
  const auto unlimited = groups(0, {1, 1});
  CAPTURE(slow_link[0]);
  CAPTURE(unlimited[0]);
  CHECK(slow_link[0] > unlimited[0]);  // a longer aggregation scores more
  CHECK(slow_link[1] > unlimited[1]);
  // A straggler 50x slower: the fast device waits for it and scores in the wait, the slow one
  // has no time left to score.
  const auto mixed = groups(0, {1, 50});
  CAPTURE(mixed[0]);
  CAPTURE(mixed[1]);
  CHECK(mixed[0] > mixed[1]);
  CHECK(mixed[0] > unlimited[0]);
  // Under adacomm the window of an averaging feeds tau local steps: its ceiling is tau x 80.
  cfg.bacc_max_group = 0;
  cfg.algorithm = "adacomm";
  cfg.adacomm_tau0 = 3;
  cfg.adacomm_t0 = 1e6;  // tau stays 3
  groups(0.5, {1, 1});
  CHECK(largest > 80);
  CHECK(largest <= 240);
}

TEST_CASE("simulated adacomm: fewer averagings than sync steps, so less virtual time per step") {
  const auto train = synthetic_images(192, 17, 16), test = synthetic_images(16, 18, 16);
  auto cfg = config("uniform");
  cfg.epochs = 1;
  cfg.eval_every = 0;
  cfg.adacomm_t0 = 1e6;
  sim::SimResult sync_res, local_res;
  run_in_sim(cfg, sim_options(3, 10.0), train, test, &sync_res);
  cfg.algorithm = "adacomm";
  cfg.adacomm_tau0 = 4;
  const auto local = run_in_sim(cfg, sim_options(3, 10.0), train, test, &local_res);
  CHECK(local[0].steps == 11);  // 192 / 18 rounded up
  // 11 steps: sync aggregates 11 times, adacomm 3 times (after steps 4 and 8, and for the final
  // evaluation, which sees the replicas' mean).
  CHECK(local_res.virtual_s < sync_res.virtual_s / 2);
  CHECK(local_res.clocks[0].compute_s > 0);
}

TEST_CASE("simulated tictac: sync's weights, with the compute hidden under the links") {
  // 28×28 here: the share of the compute tictac hides (the check at the end) is this size's.
  const auto train = synthetic_images(144, 19), test = synthetic_images(16, 20);
  auto cfg = config("uniform");
  cfg.model = "cnn";  // convolutions first: their compute overlaps the fully connected layers'
  cfg.epochs = 1;     // traffic in both directions
  cfg.eval_every = 0;
  // The links are set from this build's compute (sanitizers multiply it): per link, about five
  // times device 1's compute, so the run is link-bound, where sync pays compute + links and
  // tictac hides the compute that does not feed the first shard (the convolutions' gradients
  // are the last out and their weights the first needed): about 2/3 of it for this model.
  sim::SimResult free_res;
  run_in_sim(cfg, sim_options(3, 0), train, test, &free_res);
  const double compute = free_res.clocks[1].compute_s;
  auto model = models::make_model("cnn", train.sample_shape(), 10, 1);
  const double slab_bits = 32.0 * static_cast<double>(model->params.size());
  const double steps = 144.0 / 18;
  const double link_bits = slab_bits * (1 + 2 * steps / 3);  // initial weights, then 2 x 1/3 a step
  const double mbps = link_bits / (5 * compute) / 1e6;
  CAPTURE(compute);
  CAPTURE(mbps);
  sim::SimResult sync_res, tic_res;
  const auto sync = run_in_sim(cfg, sim_options(3, mbps), train, test, &sync_res);
  cfg.algorithm = "tictac";
  const auto tic = run_in_sim(cfg, sim_options(3, mbps), train, test, &tic_res);
  for (int r = 0; r < 3; ++r) CHECK(tic[r].weights == sync[0].weights);
  const net::DeviceClock& s = sync_res.clocks[1];  // rank 0 also evaluates at the end
  const net::DeviceClock& t = tic_res.clocks[1];
  CAPTURE(s.now_s);
  CAPTURE(s.compute_s);
  CAPTURE(t.now_s);
  CAPTURE(t.compute_s);
  CHECK(t.compute_s > 0);
  CHECK(s.now_s - s.compute_s > 3 * s.compute_s);  // link-bound, as set up
  // Under ThreadSanitizer the compute varies by +-20% between two runs, as much as the margin
  // below: there the run checks only the weights and races.
#if defined(__SANITIZE_THREAD__)
#define MERCURY_TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MERCURY_TEST_UNDER_TSAN 1
#endif
#endif
#ifdef MERCURY_TEST_UNDER_TSAN
  constexpr bool kTimingMeaningful = false;
#else
  constexpr bool kTimingMeaningful = true;
#endif
  if (kTimingMeaningful) CHECK(t.now_s < s.now_s - 0.35 * s.compute_s);
}

TEST_CASE("simulated shared medium: the same weights, every byte through one channel") {
  const auto train = synthetic_images(96, 23, 16), test = synthetic_images(16, 24, 16);
  auto cfg = config("uniform");
  cfg.batch = 24;
  cfg.epochs = 1;
  cfg.eval_every = 0;
  sim::SimResult link_res, medium_res;
  const auto per_link = run_in_sim(cfg, sim_options(4, 20.0), train, test, &link_res);
  auto o = sim_options(4, 20.0);
  o.shared_medium = true;
  const auto medium = run_in_sim(cfg, o, train, test, &medium_res);
  for (int r = 0; r < 4; ++r) CHECK(medium[r].weights == per_link[0].weights);
  // Every rank's payload (the initial broadcast, then per step 2 x 3/4 of the slab, and the
  // final stop flags) crosses the one 20 Mbps channel: the run takes at least that long, and
  // little more (the compute overlaps others' transfers).
  auto model = models::make_model("mlp", train.sample_shape(), 10, 1);
  const double slab = 4.0 * static_cast<double>(model->params.size());
  const double steps = static_cast<double>(medium[0].steps);
  const double bytes = 3 * slab + steps * 4 * 2 * 0.75 * slab;
  const double channel_s = bytes * 8 / 20e6;
  CAPTURE(channel_s);
  CAPTURE(medium_res.virtual_s);
  CAPTURE(link_res.virtual_s);
  CHECK(medium_res.virtual_s >= channel_s);
  double compute = 0;
  for (const auto& clock : medium_res.clocks) compute = std::max(compute, clock.compute_s);
  CHECK(medium_res.virtual_s <= 1.1 * channel_s + compute);
  CHECK(medium_res.virtual_s > 2 * link_res.virtual_s);  // 4 devices, 12 links vs 1 channel
}

TEST_CASE("simulated faults: a device that dies names itself, a straggler's delay shows") {
  const auto train = synthetic_images(192, 19, 16), test = synthetic_images(16, 20, 16);
  auto cfg = config("uniform");
  cfg.epochs = 1;
  cfg.eval_every = 0;
  sim::SimOptions o = sim_options(3, 10.0);
  for (const char* spec : {"rank=1,iter=3,action=kill", "rank=1,iter=3,action=exit,code=7"}) {
    CAPTURE(spec);
    o.fault = net::parse_fault(spec);
    try {
      run_in_sim(cfg, o, train, test);
      FAIL("the run survived the fault");
    } catch (const sim::DeviceFault& e) {
      CHECK(e.rank() == 1);
      CHECK(e.exit_code() == (o.fault->action == net::FaultAction::kill ? 137 : 7));
      CHECK(std::string(e.what()).find("device 1 ") == 0);
      CHECK(std::string(e.what()).find("at step 3") != std::string::npos);
    }
  }
  sim::SimResult plain, delayed;
  o.fault.reset();
  run_in_sim(cfg, o, train, test, &plain);
  o.fault = net::parse_fault("rank=2,iter=4,action=delay,seconds=7.5");
  run_in_sim(cfg, o, train, test, &delayed);
  // Every device waits for the straggler: the whole run is 7.5 s longer.
  CHECK(delayed.virtual_s - plain.virtual_s == doctest::Approx(7.5).epsilon(0.02));
  CHECK(delayed.clocks[0].wait_s - plain.clocks[0].wait_s == doctest::Approx(7.5).epsilon(0.02));
  // A stall shorter than the heartbeat timeout is a straggler's delay (the device resumes)...
  sim::SimResult paused;
  o.heartbeat_timeout_s = 10;
  o.fault = net::parse_fault("rank=2,iter=4,action=stall,seconds=7.5");
  run_in_sim(cfg, o, train, test, &paused);
  CHECK(paused.virtual_s - plain.virtual_s == doctest::Approx(7.5).epsilon(0.02));
  // ...a longer or endless one ends the run with the peers' heartbeat timeout naming the device.
  for (const char* spec :
       {"rank=2,iter=4,action=stall,seconds=7.5", "rank=2,iter=4,action=stall"}) {
    CAPTURE(spec);
    o.heartbeat_timeout_s = 5;
    o.fault = net::parse_fault(spec);
    sim::SimResult ended;
    try {
      run_in_sim(cfg, o, train, test, &ended);
      FAIL("the run survived a stall past the heartbeat timeout");
    } catch (const sim::DeviceFault& e) {
      CHECK(e.rank() == 2);
      CHECK(e.exit_code() == 1);
      CHECK(std::string(e.what()).find("heartbeat timeout: rank 2 sent nothing for 5 s") == 0);
      CHECK(std::string(e.what()).find("stalled at step 4") != std::string::npos);
    }
  }
  o.heartbeat_timeout_s = 10;
  o.fault = net::parse_fault("rank=0,iter=2,action=drop");
  CHECK_THROWS_WITH_AS(run_in_sim(cfg, o, train, test),
                       "rank 0 dropped its connections at step 2 (injected fault)",
                       sim::DeviceFault);
  for (const char* refused : {"rank=1,iter=3,action=corrupt", "rank=3,iter=3,action=kill"}) {
    CAPTURE(refused);
    o.fault = net::parse_fault(refused);
    CHECK_THROWS_AS(run_in_sim(cfg, o, train, test), std::invalid_argument);
  }
  o.fault.reset();
  o.heartbeat_timeout_s = 0;
  CHECK_THROWS_WITH_AS(run_in_sim(cfg, o, train, test),
                       doctest::Contains("heartbeat timeout: expected a positive number"),
                       std::invalid_argument);
}

TEST_CASE("simulate: one compute thread per device; a refused setting names itself") {
  const auto train = synthetic_images(64, 15, 16), test = synthetic_images(16, 16, 16);
  auto cfg = config("uniform");
  cfg.threads = 2;
  CHECK_THROWS_WITH(run_in_sim(cfg, sim_options(2, 10), train, test),
                    doctest::Contains("threads: expected 1 in the simulator"));
  cfg.threads = 1;
  cfg.batch = 15;  // not a multiple of the world
  CHECK_THROWS_AS(run_in_sim(cfg, sim_options(2, 10), train, test), std::invalid_argument);
  CHECK_THROWS_WITH(run_in_sim(cfg, sim::SimOptions{}, train, test),
                    doctest::Contains("at least 1 device"));
}

TEST_CASE("device profiles and mixes") {
  CHECK(sim::find_profile("host").factor == 1.0);
  for (const auto& p : sim::device_profiles()) {
    CHECK(p.factor >= 1.0);
    CHECK(!p.source.empty());
  }
  const auto mix = sim::parse_device_mix("rpi4:2,host:1", 3);
  REQUIRE(mix.size() == 3);
  CHECK(mix[0] == sim::find_profile("rpi4").factor);
  CHECK(mix[2] == 1.0);
  CHECK_THROWS_WITH(sim::find_profile("pi5"), doctest::Contains("expected one of host, "));
  CHECK_THROWS_WITH(sim::parse_device_mix("rpi4:2", 3),
                    doctest::Contains("expected counts adding up to -n 3, found 2"));
  CHECK_THROWS_WITH(sim::parse_device_mix("rpi4:4", 3), doctest::Contains("found more"));
  for (const char* bad : {"rpi4", "rpi4:", "rpi4:0", "rpi4:-1", "rpi4:x", ":2", "rpi4:2,", ""})
    CHECK_THROWS_AS(sim::parse_device_mix(bad, 2), std::invalid_argument);
}
