// mercury/importance/worker.hpp — BACC's scorer thread: scores the next group while the
// training thread waits on aggregation.
//
// Contract
// - One ScoringWorker per rank, owned by the training thread T, which alone calls its methods;
//   the worker's own thread S runs the scoring. Between windows S sleeps (atomic wait, no lock).
// - Windows are numbered; window w works in slot w mod 2 (snapshot, candidates, scores), so S
//   may still finish a chunk of window w while T prepares window w + 1.
// - set_snapshot(weights, buffers) copies the parameter slab and the buffers (BN running
//   statistics) the next window scores with (without one, a window scores with the last); S
//   never reads the live slabs, so the pull of the aggregation may overwrite them while S
//   scores. Before reusing a slot it waits until S has left the window that used it last (S
//   never got the CPU for a whole step: rare).
// - open(candidates, target) starts a window over a copy of `candidates` (at most max_group of
//   them, local sample indices in the order they are to be scored):
//     target > 0: S scores exactly min(target, candidates) samples, whatever the window's length
//                 (a fixed group size: the bandwidth-agnostic ablation, and replay); close()
//                 waits for them;
//     target = 0: adaptive: S scores chunk after chunk until close() is called. close() does
//                 not wait: the group is the chunks S finished before it, and the chunk running
//                 at that moment is dropped (S discards it and moves on) — so the group follows
//                 the aggregation's length and the training thread never waits for a chunk
//                 boundary. A window closed before S finished its first chunk scores nothing.
//                 With finish_late_chunk, close() instead waits for the running chunk and
//                 counts it (S stops at the first chunk boundary after close()).
// - close() ends the window. The scores of the scored prefix of the candidates are then in
//   scores()[0, stats.scored), until the window after next. Each finished chunk reaches T through
//   a lock-free SPSC ring (importance/ring.hpp) and counts only once committed: S commits with a
//   compare-exchange on a word that close() marks closed, so a chunk finished after close() is
//   never half counted; close() checks that the committed chunks tile the prefix. An exception
//   thrown while scoring is rethrown by close() (a fixed group) or by the next call that finds
//   it (adaptive).
// - WindowStats: busy_s (S's wall time scoring since the last close) and cpu_s (its thread CPU
//   time; a dropped chunk counts in the window where it ends), exposed_s (T's waits in close()
//   and for a slot: scoring the aggregation did not hide), hidden_s = max(0, busy − exposed).
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

#include "mercury/base/clock.hpp"
#include "mercury/importance/ring.hpp"
#include "mercury/importance/scorer.hpp"
#include "mercury/tensor/thread_pool.hpp"
#include "net/transport.hpp"

namespace mercury::importance {

struct WorkerConfig {
  int64_t chunk = 32;  // samples per scoring chunk (the stopping granularity)
  // Adaptive windows: the chunk running at close() is dropped (close() never waits), or with
  // finish_late_chunk close() waits for it and counts it (a bigger group, some exposed time).
  bool finish_late_chunk = false;
  int64_t max_group = 8192;  // most samples one window may score
  int threads = 1;           // the scorer's own worker budget
  bool train_mode_norm = false;
  bool idle_priority = true;  // S (and its pool) under SCHED_IDLE: it only takes idle CPU
  // The simulator: > 0 puts windows on a virtual clock. A chunk then costs S's thread CPU time
  // × this factor, and close(budget) counts the chunks that fit in the budget (see close()).
  double virtual_factor = 0;
  // Tests: called on the scorer thread after each chunk with the samples scored so far.
  std::function<void(int64_t scored)> after_chunk;
  // Tests: called on the scorer thread when a chunk is scored, before it is committed, with the
  // samples committed so far.
  std::function<void(int64_t committed)> before_commit;
};

struct WindowStats {
  int64_t scored = 0;
  double virtual_s = 0;  // virtual mode: when, from the open, the counted chunks were done
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
        ring_(static_cast<std::size_t>(2 * ((cfg.max_group + cfg.chunk - 1) / cfg.chunk) + 2)) {
    for (Slot& s : slots_) {
      s.weights.resize(static_cast<std::size_t>(model.params.size()));
      s.buffers.resize(static_cast<std::size_t>(model.params.buffer_size()));
      s.candidates.resize(static_cast<std::size_t>(cfg.max_group));
      s.scores.resize(static_cast<std::size_t>(cfg.max_group));
    }
    scorer_.set_train_mode_norm(cfg.train_mode_norm);
    thread_ = std::thread([this] { loop(); });
  }
  // Stops a running window at its next chunk boundary (the training thread may be unwinding
  // from a failed aggregation), then joins.
  ~ScoringWorker() {
    stopping_.store(true, std::memory_order_release);
    seq_.fetch_add(1, std::memory_order_acq_rel);
    seq_.notify_all();
    thread_.join();
  }
  ScoringWorker(const ScoringWorker&) = delete;
  ScoringWorker& operator=(const ScoringWorker&) = delete;

  const WorkerConfig& config() const { return cfg_; }

  void set_snapshot(const float* weights, const float* buffers) {
    require_closed("set_snapshot");
    Slot& s = free_slot();
    std::memcpy(s.weights.data(), weights, s.weights.size() * sizeof(float));
    if (!s.buffers.empty())
      std::memcpy(s.buffers.data(), buffers, s.buffers.size() * sizeof(float));
    s.snapshot = true;
  }

  void open(std::span<const int64_t> candidates, int64_t target) {
    require_closed("open");
    if (target < 0) throw std::invalid_argument("ScoringWorker::open: target must be >= 0");
    Slot& s = free_slot();
    if (!s.snapshot) {  // no set_snapshot() since the last window: score with the same one
      if (opened_ == 0) throw std::logic_error("ScoringWorker::open: no snapshot was set");
      const Slot& last = slots_[opened_ & 1];  // S only reads it
      std::copy(last.weights.begin(), last.weights.end(), s.weights.begin());
      std::copy(last.buffers.begin(), last.buffers.end(), s.buffers.begin());
    }
    const std::size_t n = std::min<std::size_t>(candidates.size(), s.candidates.size());
    std::copy(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n),
              s.candidates.begin());
    s.count = static_cast<int64_t>(n);
    s.target = std::min<int64_t>(target, s.count);
    s.snapshot = false;
    const uint64_t w = opened_ + 1;
    commit_.store(w << kWindowShift, std::memory_order_release);
    opened_ = w;
    open_ = true;
    seq_.store(w, std::memory_order_release);
    seq_.notify_all();
  }

  WindowStats close(double budget_s = -1) {
    if (!open_) throw std::logic_error("ScoringWorker::close: no window is open");
    if (cfg_.virtual_factor > 0) return close_virtual(budget_s);
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t w = opened_;
    const Slot& s = slots_[w & 1];
    open_ = false;
    // Wait until `need` chunks are committed or S has left the window: a fixed group's chunks,
    // every chunk up to S's next boundary (finish_late_chunk), or none (an adaptive window).
    const bool finish = s.target == 0 && cfg_.finish_late_chunk;
    if (finish) finish_.store(w, std::memory_order_release);  // S stops at its next boundary
    const uint64_t need = s.target > 0
                              ? static_cast<uint64_t>((s.target + cfg_.chunk - 1) / cfg_.chunk)
                          : finish ? kCountMask + 1
                                   : 0;
    for (uint64_t v = commit_.load(std::memory_order_acquire);
         (v & kCountMask) < need && !(v & kEnded); v = commit_.load(std::memory_order_acquire))
      commit_.wait(v, std::memory_order_acquire);
    const uint64_t committed = commit_.fetch_or(kClosed, std::memory_order_acq_rel) & kCountMask;
    WindowStats st;
    // The committed chunks are in the ring (each pushed before its commit). Everything else in
    // it is dropped: chunks S finished too late for an older window, or for this one after the
    // close. The ring is drained each time, so stale chunks never pile up.
    uint64_t got = 0;
    for (Chunk c; ring_.try_pop(c);) {
      if (c.window != w || got == committed) continue;
      if (c.begin != st.scored) {
        throw std::logic_error("ScoringWorker: chunk at " + std::to_string(c.begin) +
                               " does not continue the scored prefix of " +
                               std::to_string(st.scored) + " of window " + std::to_string(w));
      }
      st.scored += c.count;
      ++got;
    }
    if (got != committed) throw std::logic_error("ScoringWorker: a committed chunk is missing");
    last_closed_ = w;
    rethrow_error(s.target > 0 ? w : 0);
    st.exposed_s = pending_exposed_s_ + base::seconds_since(t0);
    pending_exposed_s_ = 0;
    const double busy = busy_s_.load(std::memory_order_acquire);
    const double cpu = cpu_s_.load(std::memory_order_acquire);
    st.busy_s = busy - reported_busy_s_;
    st.cpu_s = cpu - reported_cpu_s_;
    reported_busy_s_ = busy;
    reported_cpu_s_ = cpu;
    st.hidden_s = std::max(0.0, st.busy_s - st.exposed_s);
    return st;
  }

  // Virtual mode (the simulator): the window lasted budget_s of T's virtual time. An adaptive
  // window counts the chunks S finished within it on the virtual clock — their costs' running
  // sum at most budget_s — so the group is what the device would have scored while the
  // aggregation ran, however the host's threads were scheduled; T waits (in real time) until S
  // has scored past the budget or run out of candidates. With finish_late_chunk the chunk
  // crossing the budget counts too, and its overrun is exposed. A fixed group counts all its
  // chunks; what they cost beyond the budget is exposed. virtual_s is the counted chunks'
  // total cost: T's clock must reach open + max(budget, virtual_s).
  WindowStats close_virtual(double budget_s) {
    if (!(budget_s >= 0))
      throw std::invalid_argument("ScoringWorker::close: a virtual window needs a budget >= 0 s");
    const uint64_t w = opened_;
    const Slot& s = slots_[w & 1];
    open_ = false;
    WindowStats st;
    double cost = 0;  // every chunk of this window S finished, counted or not
    bool over = false;
    const bool finish = s.target == 0 && cfg_.finish_late_chunk;
    auto take = [&] {
      for (Chunk c; ring_.try_pop(c);) {
        if (c.window != w) continue;  // a chunk finished too late for an older window
        if (c.begin != st.scored && !over) {
          throw std::logic_error("ScoringWorker: chunk at " + std::to_string(c.begin) +
                                 " does not continue the scored prefix of " +
                                 std::to_string(st.scored) + " of window " + std::to_string(w));
        }
        cost += c.cost;
        if (over) continue;
        if (s.target == 0 && cost > budget_s) {
          over = true;
          if (!finish) continue;
        }
        st.scored += c.count;
        st.virtual_s = cost;
      }
    };
    const int64_t goal = s.target > 0 ? s.target : s.count;
    for (uint64_t v = commit_.load(std::memory_order_acquire);;
         v = commit_.load(std::memory_order_acquire)) {
      take();
      if (over || st.scored >= goal) break;
      if (v & kEnded) {  // S left the window: what it pushed before is in the ring
        take();
        break;
      }
      commit_.wait(v, std::memory_order_acquire);
    }
    commit_.fetch_or(kClosed, std::memory_order_acq_rel);  // S stops at its next chunk
    last_closed_ = w;
    rethrow_error(s.target > 0 ? w : 0);
    st.exposed_s = std::max(0.0, st.virtual_s - budget_s);
    st.busy_s = cost;
    const double cpu = cpu_s_.load(std::memory_order_acquire);
    st.cpu_s = cpu - reported_cpu_s_;
    reported_cpu_s_ = cpu;
    st.hidden_s = std::max(0.0, st.busy_s - st.exposed_s);
    return st;
  }

  // The scores of the last closed window (its scored prefix is valid).
  std::span<const float> scores() const {
    const Slot& s = slots_[last_closed_ & 1];
    return {s.scores.data(), s.scores.size()};
  }
  // Whether S runs under SCHED_IDLE (-1: not asked, or S has not started yet; 0: refused).
  int priority_applied() const { return priority_.load(std::memory_order_acquire); }
  // Whether close() (or the destructor) has ended the open window (tests synchronise on it).
  bool closing() const {
    const uint64_t v = commit_.load(std::memory_order_acquire);
    return stopping_.load(std::memory_order_acquire) || (v & kClosed) != 0 ||
           finish_.load(std::memory_order_acquire) == (v >> kWindowShift);
  }

 private:
  // commit_: the window's number above kWindowShift, the closed flag, the committed chunks below.
  static constexpr int kWindowShift = 32;
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kEnded = uint64_t{1} << 30;  // S has left the window
  static constexpr uint64_t kCountMask = kEnded - 1;
  struct Chunk {
    uint64_t window = 0;
    int64_t begin = 0;
    int64_t count = 0;
    double cost = 0;  // virtual mode: S's CPU seconds for it × virtual_factor
  };
  struct Slot {
    std::vector<float> weights, buffers;
    std::vector<int64_t> candidates;
    std::vector<float> scores;
    int64_t count = 0, target = 0;  // written by T before opening the window, read by S in it
    bool snapshot = false;          // T only: set_snapshot() filled it for the next open()
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
  void require_closed(const char* what) const {
    if (open_) throw std::logic_error(std::string("ScoringWorker::") + what + ": a window is open");
  }
  // The slot of the next window, once S has left the window that used it before (window
  // opened_ − 1, two windows back from the next); the wait counts as exposed time.
  Slot& free_slot() {
    const uint64_t w = opened_ + 1;
    if (w >= 3) {
      const auto t0 = std::chrono::steady_clock::now();
      for (uint64_t d = done_.load(std::memory_order_acquire); d < w - 2;
           d = done_.load(std::memory_order_acquire))
        done_.wait(d, std::memory_order_acquire);
      pending_exposed_s_ += base::seconds_since(t0);
    }
    rethrow_error(0);
    return slots_[w & 1];
  }
  // An error S recorded (for window `w` only, when w > 0) is rethrown on T, once.
  void rethrow_error(uint64_t w) {
    if (w > 0) {  // a fixed group's close(): S has finished the window or given up on it
      for (uint64_t d = done_.load(std::memory_order_acquire); d < w;
           d = done_.load(std::memory_order_acquire))
        done_.wait(d, std::memory_order_acquire);
    }
    if (!has_error_.load(std::memory_order_acquire)) return;
    std::exception_ptr e = std::exchange(error_, nullptr);
    has_error_.store(false, std::memory_order_release);
    std::rethrow_exception(e);
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

  void loop() {
    // The priority first, then the pool: its workers inherit S's scheduling policy.
    if (cfg_.idle_priority) priority_.store(lower_priority() ? 1 : 0, std::memory_order_release);
    ThreadPool pool(cfg_.threads);
    PoolBinding bind(pool);
    uint64_t seen = 0;
    for (;;) {
      seq_.wait(seen, std::memory_order_acquire);
      if (stopping_.load(std::memory_order_acquire)) return;
      const uint64_t w = seq_.load(std::memory_order_acquire);
      if (w == seen) continue;
      seen = w;  // windows opened and closed while S was busy are skipped: nothing to score
      score_window(w);
      // Mark the window ended (a fixed group's close() waits on commit_ for it), unless T has
      // moved on to a later one.
      for (uint64_t v = commit_.load(std::memory_order_acquire); (v >> kWindowShift) == w;)
        if (commit_.compare_exchange_weak(v, v | kEnded, std::memory_order_acq_rel,
                                          std::memory_order_acquire))
          break;
      commit_.notify_all();
      done_.store(w, std::memory_order_release);
      done_.notify_all();
    }
  }

  // Commits one more chunk of window w; false once close() (or a later window) came first.
  bool commit(uint64_t w) {
    uint64_t v = commit_.load(std::memory_order_acquire);
    for (;;) {
      if ((v >> kWindowShift) != w || (v & (kClosed | kEnded))) return false;
      if (commit_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
        return true;
    }
  }

  void score_window(uint64_t w) {
    Slot& s = slots_[w & 1];
    scorer_.set_snapshot(s.weights.data(), s.buffers.empty() ? nullptr : s.buffers.data());
    const int64_t goal = s.target > 0 ? s.target : s.count;
    const auto closed = [&] {
      const uint64_t v = commit_.load(std::memory_order_acquire);
      return (v >> kWindowShift) != w || (v & kClosed) != 0;
    };
    try {
      for (int64_t done = 0; done < goal;) {
        if (stopping_.load(std::memory_order_acquire)) break;
        if (s.target == 0 && (closed() || finish_.load(std::memory_order_acquire) == w)) break;
        const int64_t c = std::min(cfg_.chunk, goal - done);
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = net::thread_cpu_seconds();
        scorer_.score(
            std::span<const int64_t>(s.candidates.data() + done, static_cast<std::size_t>(c)),
            s.scores.data() + done);
        busy_s_.store(busy_s_.load(std::memory_order_relaxed) + base::seconds_since(t0),
                      std::memory_order_release);
        const double cpu = net::thread_cpu_seconds() - c0;
        cpu_s_.store(cpu_s_.load(std::memory_order_relaxed) + cpu, std::memory_order_release);
        if (cfg_.before_commit) cfg_.before_commit(done);
        // Virtual mode: the chunk costs the device its CPU time x factor.
        if (!ring_.try_push(Chunk{w, done, c, cfg_.virtual_factor * cpu}))
          break;                // cannot happen: sized for 2 windows
        if (!commit(w)) break;  // closed while this chunk ran: dropped (close() skips it)
        commit_.notify_all();
        done += c;
        if (cfg_.after_chunk) cfg_.after_chunk(done);
      }
    } catch (...) {
      if (!has_error_.load(std::memory_order_acquire)) {
        error_ = std::current_exception();
        has_error_.store(true, std::memory_order_release);
      }
    }
  }

  WorkerConfig cfg_;
  Scorer scorer_;
  std::atomic<int> priority_{-1};  // -1 not yet set (or not asked), 0 refused, 1 applied
  Slot slots_[2];
  SpscRing<Chunk> ring_;
  // T only.
  uint64_t opened_ = 0, last_closed_ = 0;
  bool open_ = false;
  double pending_exposed_s_ = 0, reported_busy_s_ = 0, reported_cpu_s_ = 0;
  // Shared.
  std::atomic<uint64_t> seq_{0};     // the last window opened (T writes, S waits on it)
  std::atomic<uint64_t> done_{0};    // the last window S finished or gave up on
  std::atomic<uint64_t> commit_{0};  // window | closed | committed chunks
  std::atomic<uint64_t> finish_{0};  // finish_late_chunk: the window to end at a chunk boundary
  std::atomic<double> busy_s_{0}, cpu_s_{0};  // S's totals (S writes)
  std::exception_ptr error_;                  // S writes while !has_error_, T takes it after
  std::atomic<bool> has_error_{false};
  std::atomic<bool> stopping_{false};  // the destructor runs: even a fixed group stops
  std::thread thread_;
};

}  // namespace mercury::importance
