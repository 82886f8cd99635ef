// mercury/tensor/thread_pool.hpp — the engine's one thread pool (one level of parallelism).
//
// Contract
// - parallel_for(n, fn) splits [0, n) into at most threads() contiguous chunks, runs fn(begin,
//   end, chunk) on them (the caller runs chunk 0) and returns when all are done. Chunk boundaries
//   depend only on n and threads(), so per-chunk partial results reduced in chunk order are
//   deterministic for a given thread count.
// - Nested calls from inside a worker run inline (never two levels at once).
// - Safe to call from several threads at once: one caller at a time owns the workers; a caller
//   that finds them busy runs its chunks inline (same boundaries, so the same results) instead
//   of waiting or overwriting the running job. set_threads() waits for the running job.
// - threads() == 1 never starts a thread.
// - Default thread count: MERCURY_THREADS if set (validated), else hardware concurrency.
// - thread_pool() is the calling thread's pool: the process-wide one, or one bound to the thread
//   with PoolBinding (BACC's scorer thread runs on its own worker budget that way).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mercury {

class ThreadPool {
 public:
  using ChunkFn = std::function<void(int64_t begin, int64_t end, int chunk)>;

  explicit ThreadPool(int threads) { set_threads(threads); }
  ~ThreadPool() { stop(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_.load(std::memory_order_acquire); }

  // Serialised, and a no-op when the count is unchanged: several trainers in one process (ranks
  // as threads) may all ask for the same count at once.
  void set_threads(int n) {
    if (n < 1)
      throw std::invalid_argument("ThreadPool: thread count must be >= 1, got " +
                                  std::to_string(n));
    std::lock_guard<std::mutex> owner(job_mu_);
    if (started_ && n == threads()) return;
    started_ = true;
    stop();
    threads_.store(n, std::memory_order_release);
    stopping_ = false;
    // New workers wait for the NEXT job: one that started from generation 0 after earlier jobs
    // would wake at once and run the last job's stale (finished, null) function.
    const uint64_t now = generation_;
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t, now] { worker(t, now); });
  }

  // Number of chunks parallel_for(n) will use.
  int chunks_for(int64_t n) const {
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads(), n)));
  }

  void parallel_for(int64_t n, const ChunkFn& fn) {
    if (n <= 0) return;
    const int chunks = chunks_for(n);
    std::unique_lock<std::mutex> owner(job_mu_, std::defer_lock);
    const bool inline_run = chunks == 1 || in_worker();
    if (inline_run || !owner.try_lock()) {
      if (!inline_run) busy_calls_.fetch_add(1, std::memory_order_relaxed);
      // Inline: still honour the chunk split so reductions see the same boundaries.
      for (int c = 0; c < chunks; ++c) fn(bound(n, chunks, c), bound(n, chunks, c + 1), c);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &fn;
      job_n_ = n;
      job_chunks_ = chunks;
      pending_.store(chunks - 1, std::memory_order_relaxed);
      ++generation_;
    }
    cv_.notify_all();
    in_worker() = true;
    fn(bound(n, chunks, 0), bound(n, chunks, 1), 0);
    in_worker() = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    job_ = nullptr;
  }

  // Calls that ran inline because another caller owned the workers.
  int64_t busy_calls() const { return busy_calls_.load(std::memory_order_relaxed); }

 private:
  static int64_t bound(int64_t n, int chunks, int c) { return n * c / chunks; }
  static bool& in_worker() {
    thread_local bool flag = false;
    return flag;
  }

  void worker(int t, uint64_t seen) {
    in_worker() = true;
    for (;;) {
      const ChunkFn* fn;
      int64_t n;
      int chunks;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        fn = job_;
        n = job_n_;
        chunks = job_chunks_;
      }
      if (t < chunks) {
        (*fn)(bound(n, chunks, t), bound(n, chunks, t + 1), t);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lk(mu_);
          done_cv_.notify_one();
        }
      }
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::mutex job_mu_;  // held by the caller that owns the workers, and by set_threads()
  std::atomic<int64_t> busy_calls_{0};
  bool started_ = false;
  std::condition_variable cv_, done_cv_;
  const ChunkFn* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 1;
  std::atomic<int> pending_{0};
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

// Thread count from MERCURY_THREADS, else the hardware's.
inline int default_thread_count() {
  if (const char* s = std::getenv("MERCURY_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > 1024) {
      throw std::invalid_argument(std::string("MERCURY_THREADS: expected an integer in [1, 1024], "
                                              "found '") +
                                  s + "'");
    }
    return static_cast<int>(v);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

namespace detail {
inline ThreadPool*& bound_pool() {
  thread_local ThreadPool* pool = nullptr;
  return pool;
}
}  // namespace detail

// The calling thread's pool: the one bound by a live PoolBinding, else the process-wide pool.
inline ThreadPool& thread_pool() {
  if (ThreadPool* p = detail::bound_pool()) return *p;
  static ThreadPool pool(default_thread_count());
  return pool;
}

// Binds `pool` as thread_pool() of the constructing thread for the binding's lifetime (a
// second thread's own worker budget, e.g. BACC's scorer). Not movable; nests.
class PoolBinding {
 public:
  explicit PoolBinding(ThreadPool& pool) : previous_(detail::bound_pool()) {
    detail::bound_pool() = &pool;
  }
  ~PoolBinding() { detail::bound_pool() = previous_; }
  PoolBinding(const PoolBinding&) = delete;
  PoolBinding& operator=(const PoolBinding&) = delete;

 private:
  ThreadPool* previous_;
};

}  // namespace mercury
