// BACC's building blocks: the lock-free SPSC ring and the scorer thread (ScoringWorker) —
// fixed and adaptive windows, the weight snapshot, failures. Runs under TSan in tools/test.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <numeric>
#include <random>
#include <thread>

#include "mercury/mercury.hpp"
#include "synthetic_data.hpp"

using namespace mercury;
using mercury::testing::synthetic_images;

namespace {

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

// The losses a fresh Scorer computes for `idx` with `weights` (and the model's buffers).
std::vector<float> reference_scores(nn::Model& m, const data::Dataset& d,
                                    const std::vector<int64_t>& idx, const float* weights) {
  importance::Scorer s(m, d, 16);
  s.set_snapshot(weights);
  std::vector<float> out(idx.size());
  s.score(idx, out.data());
  return out;
}

}  // namespace

TEST_CASE("SPSC ring: capacity rounds up, full and empty are reported, order is kept") {
  importance::SpscRing<int> ring(3);
  CHECK(ring.capacity() == 4);
  int v = 0;
  CHECK_FALSE(ring.try_pop(v));
  for (int k = 0; k < 4; ++k) CHECK(ring.try_push(k));
  CHECK_FALSE(ring.try_push(9));
  for (int k = 0; k < 4; ++k) {
    REQUIRE(ring.try_pop(v));
    CHECK(v == k);
  }
  CHECK_FALSE(ring.try_pop(v));
  CHECK_THROWS_WITH(importance::SpscRing<int>(0), doctest::Contains("capacity must be >= 1"));
}

TEST_CASE("SPSC ring: one producer and one consumer thread pass 200000 items in order") {
  importance::SpscRing<int64_t> ring(64);
  constexpr int64_t kItems = 200000;
  std::thread producer([&] {
    for (int64_t k = 0; k < kItems;)
      if (ring.try_push(k)) ++k;
  });
  int64_t expected = 0, v = 0;
  bool in_order = true;
  while (expected < kItems) {
    if (!ring.try_pop(v)) continue;
    in_order = in_order && v == expected;
    ++expected;
  }
  producer.join();
  CHECK(in_order);
  CHECK_FALSE(ring.try_pop(v));
}

TEST_CASE("scoring worker: a fixed group scores exactly N with the snapshot, not the live slab") {
  const auto data = synthetic_images(200, 41);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 5);
  nn::ParamStore& ps = model->params;
  const std::vector<float> w0(ps.values(), ps.values() + ps.size());
  importance::WorkerConfig wc;
  wc.chunk = 16;
  wc.max_group = 128;
  std::promise<void> first_chunk;
  std::atomic<bool> first_seen{false};
  std::atomic<bool> overwritten{false};
  wc.after_chunk = [&](int64_t) {
    if (!first_seen.exchange(true)) first_chunk.set_value();
    while (!overwritten.load()) std::this_thread::yield();  // score the rest after the "pull"
  };
  importance::ScoringWorker worker(*model, data, wc);
  const auto cand = iota(150);
  worker.set_snapshot(ps.values(), ps.buffers());
  worker.open(cand, 100);
  first_chunk.get_future().wait();
  for (int64_t i = 0; i < ps.size(); ++i) ps.values()[i] = 0.5f;  // the pull overwrites the slab
  overwritten = true;
  const importance::WindowStats st = worker.close();
  CHECK(st.scored == 100);  // a fixed group ignores the window's end
  CHECK(st.busy_s > 0);
  CHECK(st.hidden_s >= 0);
  const std::vector<int64_t> first(cand.begin(), cand.begin() + 100);
  const auto want = reference_scores(*model, data, first, w0.data());
  const auto got = worker.scores();
  CHECK(std::equal(want.begin(), want.end(), got.begin()));
  // A second window scores with the new snapshot (and at most max_group candidates).
  overwritten = true;
  worker.set_snapshot(ps.values(), ps.buffers());
  worker.open(iota(200), 200);
  CHECK(worker.close().scored == 128);
  const auto now = reference_scores(*model, data, iota(128), ps.values());
  CHECK(std::equal(now.begin(), now.end(), worker.scores().begin()));
}

TEST_CASE("scoring worker: an adaptive window's group is the chunks finished before close()") {
  const auto data = synthetic_images(300, 42);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 6);
  importance::WorkerConfig wc;
  wc.chunk = 8;
  wc.max_group = 256;
  std::promise<void> three_chunks;
  importance::ScoringWorker* self = nullptr;
  wc.after_chunk = [&](int64_t done) {
    if (done != 24) return;
    three_chunks.set_value();
    while (!self->closing()) std::this_thread::yield();  // the aggregation ends here
  };
  importance::ScoringWorker worker(*model, data, wc);
  self = &worker;
  worker.set_snapshot(model->params.values(), model->params.buffers());
  worker.open(iota(300), 0);
  three_chunks.get_future().wait();
  const importance::WindowStats st = worker.close();
  CHECK(st.scored == 24);  // three chunks: the one running at close() was the last
  CHECK(st.exposed_s >= 0);
  const auto want = reference_scores(*model, data, iota(24), model->params.values());
  CHECK(std::equal(want.begin(), want.end(), worker.scores().begin()));
  // A window closed at once scores at most one chunk per chunk already started; never more
  // than its candidates.
  wc.after_chunk = nullptr;
  importance::ScoringWorker quick(*model, data, wc);
  quick.set_snapshot(model->params.values(), model->params.buffers());
  quick.open(iota(20), 0);
  const auto q = quick.close();
  CHECK(q.scored <= 20);
  CHECK((q.scored % 8 == 0 || q.scored == 20));
}

TEST_CASE("scoring worker: an adaptive close() never waits for the running chunk: it is dropped") {
  const auto data = synthetic_images(300, 45);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 9);
  importance::WorkerConfig wc;
  wc.chunk = 8;
  wc.max_group = 256;
  std::promise<void> third_scored;
  std::atomic<bool> t_returned{false}, waited_for_t{false}, fired{false};
  wc.before_commit = [&](int64_t committed) {
    if (committed != 16 || fired.exchange(true)) return;
    third_scored.set_value();  // the third chunk is scored, not yet committed: close() comes now
    // Hold the chunk until close() has returned on the training thread (a close() that waited
    // for the chunk boundary would never return: give up after 10 s and fail below).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!t_returned.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
    waited_for_t = t_returned.load();
  };
  importance::ScoringWorker worker(*model, data, wc);
  worker.set_snapshot(model->params.values(), model->params.buffers());
  worker.open(iota(300), 0);
  third_scored.get_future().wait();
  const importance::WindowStats st = worker.close();
  t_returned = true;
  CHECK(st.scored == 16);  // the chunk running at close() is not in the group
  const auto want = reference_scores(*model, data, iota(16), model->params.values());
  CHECK(std::equal(want.begin(), want.end(), worker.scores().begin()));
  // The next window (other candidates, a fixed group) skips the dropped chunk S finished late.
  std::vector<int64_t> next(24);
  std::iota(next.begin(), next.end(), int64_t{100});
  worker.open(next, 24);  // no new snapshot: the last one again
  CHECK(worker.close().scored == 24);
  CHECK(waited_for_t.load());
  const auto want2 = reference_scores(*model, data, next, model->params.values());
  CHECK(std::equal(want2.begin(), want2.end(), worker.scores().begin()));
  // Short windows in a row, closed at once: the dropped chunks never corrupt a group.
  for (int k = 0; k < 100; ++k) {
    worker.set_snapshot(model->params.values(), model->params.buffers());
    worker.open(iota(300), k % 10 == 9 ? 8 : 0);
    const auto q = worker.close();
    CHECK((k % 10 != 9 || q.scored == 8));
    CHECK(q.scored % 8 == 0);
  }
}

TEST_CASE("scoring worker: with finish_late_chunk, close() waits for the running chunk") {
  const auto data = synthetic_images(300, 47);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 11);
  importance::WorkerConfig wc;
  wc.chunk = 8;
  wc.max_group = 256;
  wc.finish_late_chunk = true;
  std::promise<void> third_scored;
  std::atomic<bool> fired{false};
  importance::ScoringWorker* self = nullptr;
  wc.before_commit = [&](int64_t committed) {
    if (committed != 16 || fired.exchange(true)) return;
    third_scored.set_value();
    while (!self->closing()) std::this_thread::yield();  // close() has begun: it must wait
  };
  importance::ScoringWorker worker(*model, data, wc);
  self = &worker;
  worker.set_snapshot(model->params.values(), model->params.buffers());
  worker.open(iota(300), 0);
  third_scored.get_future().wait();
  const importance::WindowStats st = worker.close();
  CHECK(st.scored == 24);  // the chunk running at close() counts, and is the last
  const auto want = reference_scores(*model, data, iota(24), model->params.values());
  CHECK(std::equal(want.begin(), want.end(), worker.scores().begin()));
  for (int k = 0; k < 50; ++k) {  // windows closed at once stay whole chunks
    worker.open(iota(300), 0);
    CHECK(worker.close().scored % 8 == 0);
  }
}

TEST_CASE("scoring worker: dropped chunks never fill the ring, however many windows drop one") {
  const auto data = synthetic_images(100, 46);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 10);
  importance::WorkerConfig wc;
  wc.chunk = 8;
  wc.max_group = 64;  // a ring of 2 · 8 + 2 chunks, rounded up to 32
  std::atomic<int> scored{0}, closed{0};
  std::atomic<bool> adaptive{true};
  wc.before_commit = [&](int64_t) {
    const int window = ++scored;  // one chunk per window: the k-th chunk is window k's
    while (adaptive.load() && closed.load() < window) std::this_thread::yield();
  };
  importance::ScoringWorker worker(*model, data, wc);
  worker.set_snapshot(model->params.values(), model->params.buffers());
  // Every window: S scores its first chunk, T closes before S commits it: a dropped chunk each.
  for (int k = 0; k < 100; ++k) {
    worker.open(iota(100), 0);
    while (scored.load() == k) std::this_thread::yield();
    CHECK(worker.close().scored == 0);
    ++closed;
  }
  adaptive = false;
  worker.open(iota(100), 40);  // a fixed group still gets all its chunks through
  CHECK(worker.close().scored == 40);
}

TEST_CASE("scoring worker: misuse and a failing scorer are reported, never hang") {
  const auto data = synthetic_images(40, 43);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 7);
  importance::WorkerConfig wc;
  wc.chunk = 0;
  CHECK_THROWS_WITH(importance::ScoringWorker(*model, data, wc),
                    doctest::Contains("expected chunk >= 1"));
  wc.chunk = 8;
  wc.max_group = 64;
  const data::Subset part(data, iota(40), "part");
  importance::ScoringWorker worker(*model, part, wc);
  worker.set_snapshot(model->params.values(), model->params.buffers());
  const std::vector<int64_t> bad = {0, 1, 999};  // 999 is not a sample of the part
  worker.open(bad, 3);
  CHECK_THROWS_WITH(worker.open(bad, 3), doctest::Contains("a window is open"));
  CHECK_THROWS(worker.close());  // the scorer's out-of-range error, rethrown on this thread
  worker.open(std::vector<int64_t>{0, 1}, 2);  // the worker is usable again
  CHECK(worker.close().scored == 2);
}

TEST_CASE("scoring worker: destroyed with a window open, it stops at the next chunk boundary") {
  const auto data = synthetic_images(64, 44);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 8);
  importance::WorkerConfig wc;
  wc.chunk = 4;
  wc.max_group = 64;
  std::promise<void> started;
  std::atomic<int64_t> last{0};
  std::atomic<bool> first{true};
  importance::ScoringWorker* self = nullptr;
  wc.after_chunk = [&](int64_t done) {
    last = done;
    if (first.exchange(false)) {
      started.set_value();
      while (!self->closing()) std::this_thread::yield();  // until the destructor has begun
    }
  };
  {
    importance::ScoringWorker worker(*model, data, wc);
    self = &worker;
    worker.set_snapshot(model->params.values(), model->params.buffers());
    worker.open(iota(64), 64);  // a fixed group: only the destructor can cut it short
    started.get_future().wait();
  }                         // as when the training thread throws out of the aggregation
  CHECK(last.load() == 4);  // the chunk running when the destructor began was the last
}

TEST_CASE("scoring worker: the scorer and its pool take only idle CPU (SCHED_IDLE) unless told") {
  const auto data = synthetic_images(64, 43);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 5);
  for (const bool idle : {true, false}) {
    CAPTURE(idle);
    importance::WorkerConfig wc;
    wc.chunk = 8;
    wc.max_group = 64;
    wc.threads = 2;
    wc.idle_priority = idle;
    std::atomic<int> policy{-1};
    wc.after_chunk = [&](int64_t) { policy = sched_getscheduler(0); };  // on the scorer thread
    importance::ScoringWorker worker(*model, data, wc);
    worker.set_snapshot(model->params.values(), model->params.buffers());
    worker.open(iota(16), 16);
    CHECK(worker.close().scored == 16);
    CHECK(policy.load() == (idle ? SCHED_IDLE : SCHED_OTHER));
    CHECK(worker.priority_applied() == (idle ? 1 : -1));
  }
  train::TrainConfig c;
  c.scorer_priority = "low";
  CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("scorer_priority: expected idle"),
                       std::invalid_argument);
}

TEST_CASE("a thread pool shrunk and grown again runs only new jobs on its new workers") {
  // Regression: workers started after earlier jobs woke at once and ran the last (finished)
  // job again — a null function call. Here (not in test_training) so the TSan stage runs it.
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 20; ++round) {
    pool.set_threads(1 + round % 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // new workers are up and waiting
    pool.parallel_for(100, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
  }
  CHECK(sum == 20 * 4950);
}
