// mercury/importance/worker.hpp — BACC's scorer thread: scores the next group while the
// training thread waits on aggregation.
//
// Contract
// - One ScoringWorker per rank, owned by the training thread T, which alone calls its methods;
//   the worker's own thread S runs the scoring. Between windows S sleeps (atomic wait, no lock).
// - set_snapshot(weights, buffers) copies the parameter slab and the buffers (BN running
//   statistics) the next window scores with; S never reads the live slabs, so the pull of the
//   aggregation may overwrite them while S scores. Call it only between windows.
// - open(candidates, target) starts a window over a copy of `candidates` (at most max_group of
//   them, local sample indices in the order they are to be scored):
//     target > 0: S scores exactly min(target, candidates) samples, whatever the window's length
//                 (a fixed group size: the bandwidth-agnostic ablation, and replay);
//     target = 0: adaptive: S scores chunk after chunk until close() is called, and stops at the
//                 first chunk boundary after it — so the group follows the aggregation's length.
//                 A window closed before S began its first chunk scores nothing.
// - close() ends the window and waits for S to reach that boundary. The scores of the scored
//   prefix of the candidates are then in scores()[0, stats.scored). Each finished chunk reaches T
//   through a lock-free SPSC ring (importance/ring.hpp); close() checks they tile the prefix.
//   An exception thrown while scoring is rethrown here.
// - WindowStats: busy_s (S's wall time scoring), cpu_s (S's thread CPU time), exposed_s (T's
//   wait in close(): scoring the aggregation did not hide), hidden_s = max(0, busy − exposed).
// - S runs on its own thread pool of `threads` workers (PoolBinding), never the process pool.
// - idle_priority (default): S and its pool's workers run under SCHED_IDLE (Linux), so they get
//   only CPU time no other thread wants — the training thread, the transport's I/O thread and
//   other processes' compute always go first; scoring fills what the aggregation leaves idle.
//   priority_applied() says whether the kernel accepted it (it is never refused on Linux: a
//   thread may always lower its own priority).
// - Destroying the worker with a window open (T unwinding from a failed aggregation) stops S at
//   its next chunk boundary, even for a fixed group, and joins it.
// - Scoring is forward-only in eval mode (train_mode_norm: batch statistics on a copy); it never
//   writes weights, gradients, BN statistics or optimizer state.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mercury/importance/ring.hpp"
#include "mercury/importance/scorer.hpp"
#include "mercury/tensor/thread_pool.hpp"

namespace mercury::importance {

struct WorkerConfig {
  int64_t chunk = 32;        // samples per scoring chunk (the stopping granularity)
  int64_t max_group = 8192;  // most samples one window may score
  int threads = 1;           // the scorer's own worker budget
  bool train_mode_norm = false;
  bool idle_priority = true;  // S (and its pool) under SCHED_IDLE: it only takes idle CPU
  // Tests: called on the scorer thread after each chunk with the samples scored so far.
  std::function<void(int64_t scored)> after_chunk;
};

struct WindowStats {
  int64_t scored = 0;
  double busy_s = 0;
  double cpu_s = 0;
  double exposed_s = 0;
  double hidden_s = 0;
};

class ScoringWorker {
 public:
  ScoringWorker(nn::Model& model, const data::Dataset& data, const WorkerConfig& cfg)
      : cfg_(checked(cfg)),
        scorer_(model, data, cfg.chunk),
        weights_(static_cast<std::size_t>(model.params.size())),
        buffers_(static_cast<std::size_t>(model.params.buffer_size())),
        candidates_(static_cast<std::size_t>(cfg.max_group)),
        scores_(static_cast<std::size_t>(cfg.max_group)),
        ring_(static_cast<std::size_t>((cfg.max_group + cfg.chunk - 1) / cfg.chunk)) {
    scorer_.set_train_mode_norm(cfg.train_mode_norm);
    scorer_.set_snapshot(weights_.data(), buffers_.empty() ? nullptr : buffers_.data());
    thread_ = std::thread([this] { loop(); });
  }
  // Stops a running window at its next chunk boundary (the training thread may be unwinding
  // from a failed aggregation), then joins.
  ~ScoringWorker() {
    close_.store(true, std::memory_order_release);
    stopping_.store(true, std::memory_order_release);
    state_.store(kStop, std::memory_order_release);
    state_.notify_all();
    thread_.join();
  }
  ScoringWorker(const ScoringWorker&) = delete;
  ScoringWorker& operator=(const ScoringWorker&) = delete;

  const WorkerConfig& config() const { return cfg_; }

  void set_snapshot(const float* weights, const float* buffers) {
    require_idle("set_snapshot");
    std::memcpy(weights_.data(), weights, weights_.size() * sizeof(float));
    if (!buffers_.empty()) std::memcpy(buffers_.data(), buffers, buffers_.size() * sizeof(float));
  }

  void open(std::span<const int64_t> candidates, int64_t target) {
    require_idle("open");
    if (target < 0) throw std::invalid_argument("ScoringWorker::open: target must be >= 0");
    const std::size_t n = std::min<std::size_t>(candidates.size(), candidates_.size());
    std::copy(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n),
              candidates_.begin());
    count_ = static_cast<int64_t>(n);
    target_ = std::min<int64_t>(target, count_);
    close_.store(false, std::memory_order_relaxed);
    state_.store(kOpen, std::memory_order_release);
    state_.notify_all();
  }

  WindowStats close() {
    if (state_.load(std::memory_order_acquire) == kStop) throw std::logic_error("worker stopped");
    const auto t0 = std::chrono::steady_clock::now();
    close_.store(true, std::memory_order_release);
    for (uint32_t s = state_.load(std::memory_order_acquire); s == kOpen;
         s = state_.load(std::memory_order_acquire))
      state_.wait(kOpen, std::memory_order_acquire);
    WindowStats st;
    st.exposed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (Chunk c; ring_.try_pop(c);) {
      if (c.begin != st.scored) {
        throw std::logic_error("ScoringWorker: chunk at " + std::to_string(c.begin) +
                               " does not continue the scored prefix of " +
                               std::to_string(st.scored));
      }
      st.scored += c.count;
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    st.busy_s = busy_s_;
    st.cpu_s = cpu_s_;
    st.hidden_s = std::max(0.0, st.busy_s - st.exposed_s);
    return st;
  }

  std::span<const float> scores() const { return {scores_.data(), scores_.size()}; }
  // Whether S runs under SCHED_IDLE (-1: not asked, or S has not started yet; 0: refused).
  int priority_applied() const { return priority_.load(std::memory_order_acquire); }
  // Whether close() (or the destructor) has ended the open window (tests synchronise on it).
  bool closing() const { return close_.load(std::memory_order_acquire); }

 private:
  static constexpr uint32_t kIdle = 0, kOpen = 1, kStop = 2;
  struct Chunk {
    int64_t begin = 0;
    int64_t count = 0;
  };

  static const WorkerConfig& checked(const WorkerConfig& c) {
    if (c.chunk < 1 || c.max_group < 1 || c.threads < 1) {
      throw std::invalid_argument(
          "scoring worker: expected chunk >= 1, max_group >= 1 and threads >= 1, found chunk " +
          std::to_string(c.chunk) + ", max_group " + std::to_string(c.max_group) + ", threads " +
          std::to_string(c.threads));
    }
    return c;
  }
  void require_idle(const char* what) const {
    if (state_.load(std::memory_order_acquire) != kIdle)
      throw std::logic_error(std::string("ScoringWorker::") + what + ": a window is open");
  }
  static bool lower_priority() {
#if defined(__linux__) && defined(SCHED_IDLE)
    sched_param p{};
    p.sched_priority = 0;
    return pthread_setschedparam(pthread_self(), SCHED_IDLE, &p) == 0;
#else
    return false;
#endif
  }
  static double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }

  void loop() {
    // The priority first, then the pool: its workers inherit S's scheduling policy.
    if (cfg_.idle_priority) priority_.store(lower_priority() ? 1 : 0, std::memory_order_release);
    ThreadPool pool(cfg_.threads);
    PoolBinding bind(pool);
    for (;;) {
      state_.wait(kIdle, std::memory_order_acquire);
      const uint32_t s = state_.load(std::memory_order_acquire);
      if (s == kStop) return;
      if (s != kOpen) continue;
      score_window();
      uint32_t open = kOpen;  // a concurrent stop wins
      state_.compare_exchange_strong(open, kIdle, std::memory_order_acq_rel);
      state_.notify_all();
    }
  }

  void score_window() {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    const int64_t goal = target_ > 0 ? target_ : count_;
    try {
      for (int64_t done = 0; done < goal;) {
        if (target_ == 0 && close_.load(std::memory_order_acquire)) break;
        if (stopping_.load(std::memory_order_acquire)) break;
        const int64_t c = std::min(cfg_.chunk, goal - done);
        scorer_.score(
            std::span<const int64_t>(candidates_.data() + done, static_cast<std::size_t>(c)),
            scores_.data() + done);
        if (!ring_.try_push(Chunk{done, c})) break;  // cannot happen: the ring holds max_group
        done += c;
        if (cfg_.after_chunk) cfg_.after_chunk(done);
      }
    } catch (...) {
      error_ = std::current_exception();
    }
    busy_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu_s_ = thread_cpu_seconds() - c0;
  }

  WorkerConfig cfg_;
  Scorer scorer_;
  std::atomic<int> priority_{-1};  // -1 not yet set (or not asked), 0 refused, 1 applied
  std::vector<float> weights_, buffers_;
  std::vector<int64_t> candidates_;
  std::vector<float> scores_;
  SpscRing<Chunk> ring_;
  // Written by T before opening a window, read by S inside it.
  int64_t count_ = 0, target_ = 0;
  // Written by S inside a window, read by T after close().
  double busy_s_ = 0, cpu_s_ = 0;
  std::exception_ptr error_;
  std::atomic<uint32_t> state_{kIdle};
  std::atomic<bool> close_{false};
  std::atomic<bool> stopping_{false};  // the destructor runs: even a fixed group stops
  std::thread thread_;
};

}  // namespace mercury::importance
