// net/pacing.hpp — the hook between a link's writer and bandwidth emulation.
//
// Contract
// - A Pacer decides when bytes may go on the wire. The writer of a link calls
//   reserve(peer, n) before writing n bytes and waits (asynchronously) until the returned time
//   point; an unshaped link never needs a Pacer. Implementations (net/shaper.hpp): a token
//   bucket at a fixed rate or following a bandwidth trace, one per link or one shared medium
//   for all links (a single Wi-Fi channel), optionally shared across processes.
// - slice_bytes() is the largest write the writer should make under this pacer, so pacing is
//   smooth at low rates (a 1 MiB chunk is 0.8 s at 10 Mbps).
// - latency() is a fixed one-way delay added to every write (0 by default).
// - Thread-safe.
//
// ThroughputEstimator: the measured (not configured) write throughput of one link, an EWMA of
// bytes / seconds per completed write; this is what a scheduler should trust.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>

namespace mercury::net {

class Pacer {
 public:
  virtual ~Pacer() = default;
  virtual std::chrono::steady_clock::time_point reserve(int peer, std::size_t bytes) = 0;
  virtual std::size_t slice_bytes() const = 0;
  virtual std::chrono::nanoseconds latency() const { return std::chrono::nanoseconds{0}; }
};

class ThroughputEstimator {
 public:
  explicit ThroughputEstimator(double alpha = 0.2) : alpha_(alpha) {}
  // One completed write of `bytes` that took `seconds` from start to completion.
  void observe(std::size_t bytes, double seconds) {
    if (seconds <= 0) return;
    const double bps = 8.0 * static_cast<double>(bytes) / seconds;
    std::lock_guard<std::mutex> lock(mu_);
    ewma_ = have_ ? (1 - alpha_) * ewma_ + alpha_ * bps : bps;
    have_ = true;
  }
  double bits_per_second() const {
    std::lock_guard<std::mutex> lock(mu_);
    return have_ ? ewma_ : 0.0;
  }

 private:
  mutable std::mutex mu_;
  double alpha_;
  double ewma_ = 0;
  bool have_ = false;
};

}  // namespace mercury::net
