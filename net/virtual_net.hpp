// net/virtual_net.hpp — the simulator's clocks and links: W devices as threads of one process,
// each with its own virtual clock, joined by emulated links.
//
// Contract
// - VirtualNetwork(config): config.factors holds one factor > 0 per rank (device r's compute
//   seconds per CPU second of this host: 1 for the host itself, more for a slower board).
//   A LocalHub built over it (net/local.hpp) is the simulator's Transport.
// - A rank's clock v_r belongs to one thread: the first that reads it (now, on_send, on_recv,
//   advance_to) owns it; another thread reading it throws std::logic_error, since its CPU time
//   would be charged to the wrong device. Every read first charges the owner's thread CPU time
//   since the last read: v_r += Δcpu × factor_r (compute). So v_r never runs backwards, and
//   all the rank's work between two transport calls — forward, backward, optimizer, copies —
//   costs what it cost this host's CPU, scaled to the device, whatever else ran meanwhile.
// - Links (the model of net/shaper.hpp, on the virtual clock): every directed link src → dst
//   is its own channel at the trace's rate (config.trace; none = unlimited), a
//   TokenBucketPacer with burst 0 (the channel itself, not the emulator's lead). A message of
//   n payload bytes puts on the wire what a Mesh would (n plus one 64-byte frame header per
//   1 MiB chunk) when both the sender is at it (v_src) and the channel is free, in send order
//   per link (priorities are not modelled: a low-priority message queues like any other), and
//   arrives when its last bit has left the channel plus config.latency_s. on_send returns that
//   arrival time; sending itself costs the sender only its CPU (a device's network writer is
//   another thread).
// - Shared medium (config.shared_medium): every message of every device goes through ONE
//   channel at the trace's rate, as on one Wi-Fi channel where only one station transmits at a
//   time (the rate is what a device-to-device transfer gets alone; relaying through an access
//   point is in that figure, not modelled on top). Messages from different devices must then
//   take the channel in virtual-time order, which threads running at their own pace do not give
//   by themselves: the hub (net/local.hpp) commits a send only when no other device can still
//   send earlier (conservative synchronisation), then calls reserve(). ordered() tells it so.
// - on_recv(r, arrival): the receiver's clock moves to max(v_r, arrival); the difference is
//   network wait (wait_s).
// - Deterministic given the CPU times: the clocks depend on what each rank did and sent, never
//   on the order in which the threads happened to run.
// - clock(r) (after the rank's thread has finished): its final time, compute and wait seconds.
// - Thread-safe in that sense: each rank's state is touched by its own thread only; the pacers
//   are thread-safe.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net/frame.hpp"
#include "net/shaper.hpp"
#include "net/transport.hpp"

namespace mercury::net {

struct VirtualNetworkConfig {
  std::vector<double> factors;          // per rank; its size is the world
  std::optional<BandwidthTrace> trace;  // every link's rate over virtual time; none: unlimited
  double latency_s = 0;                 // one-way delay of every message
  uint32_t chunk_bytes = kDefaultChunkBytes;  // the Mesh's framing: one header per chunk
  bool shared_medium = false;  // one channel for all devices (see the contract); else per link
};

struct DeviceClock {
  double now_s = 0;      // virtual time
  double compute_s = 0;  // CPU time × factor charged so far
  double wait_s = 0;     // time spent waiting for messages to arrive (or advance_to)
  int64_t reads = 0;     // clock reads (transport calls)
};

class VirtualNetwork {
 public:
  explicit VirtualNetwork(VirtualNetworkConfig config) : cfg_(std::move(config)) {
    if (cfg_.factors.empty())
      throw std::invalid_argument("virtual network: expected at least one device, found none");
    for (std::size_t r = 0; r < cfg_.factors.size(); ++r) {
      const double f = cfg_.factors[r];
      if (!(std::isfinite(f) && f > 0))
        throw std::invalid_argument("virtual network: device " + std::to_string(r) +
                                    ": expected a compute factor > 0, found " + std::to_string(f));
    }
    if (!(std::isfinite(cfg_.latency_s) && cfg_.latency_s >= 0))
      throw std::invalid_argument("virtual network: expected latency >= 0 s, found " +
                                  std::to_string(cfg_.latency_s));
    devices_.resize(cfg_.factors.size());
    PacerOptions po;
    po.burst = std::chrono::nanoseconds{0};
    po.epoch = TokenBucketPacer::Clock::time_point{};  // virtual time 0
    for (std::size_t r = 0; r < devices_.size(); ++r) {
      if (cfg_.trace && !cfg_.shared_medium)
        devices_[r].links = std::make_unique<TokenBucketPacer>(*cfg_.trace, po);
    }
    if (cfg_.trace && cfg_.shared_medium)
      medium_ = std::make_unique<TokenBucketPacer>(*cfg_.trace, po);
  }

  // Whether sends must be committed in virtual-time order across devices (the shared medium).
  bool ordered() const { return cfg_.shared_medium; }

  int world() const { return static_cast<int>(devices_.size()); }
  double factor(int rank) const { return cfg_.factors.at(static_cast<std::size_t>(rank)); }
  const VirtualNetworkConfig& config() const { return cfg_; }

  // Rank r's virtual time, its thread's CPU time charged first.
  double now(int r) { return charge(r).clock.now_s; }

  // Rank r sends `bytes` payload bytes to `dst`: the virtual time they have arrived there.
  // (Per-link mode; on a shared medium the hub calls now() and, once in order, reserve().)
  double on_send(int r, int dst, std::size_t bytes) {
    const double t = charge(r).clock.now_s;
    return reserve(r, dst, bytes, t);
  }

  // The channel for a message rank r sends at virtual time t (its clock, already charged):
  // the time it has arrived at dst. Does not read r's clock, so any thread may call it; on a
  // shared medium the caller must call it in nondecreasing t (the hub's ordering does).
  double reserve(int r, int dst, std::size_t bytes, double t) {
    TokenBucketPacer* channel =
        medium_ ? medium_.get() : devices_.at(static_cast<std::size_t>(r)).links.get();
    double done = t;
    if (channel) {
      const uint64_t chunks = std::max<uint64_t>(1, chunk_count_for(bytes, cfg_.chunk_bytes));
      const std::size_t wire = bytes + static_cast<std::size_t>(chunks) * kHeaderBytes;
      const auto res = channel->reserve_at(medium_ ? 0 : dst, wire, to_time_point(t));
      done = std::chrono::duration<double>(res.finish.time_since_epoch()).count();
    }
    return done + cfg_.latency_s;
  }

  // Rank r received a message that arrived at `arrival`.
  void on_recv(int r, double arrival) { advance(charge(r), arrival); }
  // Rank r waited off the network until `t`.
  void advance_to(int r, double t) { advance(charge(r), t); }

  // The rate of rank r's links at its current virtual time, bit/s (0: unlimited).
  double link_rate_bps(int r) const {
    return cfg_.trace ? cfg_.trace->rate_bps(devices_.at(static_cast<std::size_t>(r)).clock.now_s)
                      : 0.0;
  }

  // Rank r's clock (read it once the rank's thread is done).
  DeviceClock clock(int r) const { return devices_.at(static_cast<std::size_t>(r)).clock; }

 private:
  struct Device {
    DeviceClock clock;
    double cpu_mark = 0;
    std::thread::id owner;
    bool bound = false;
    std::unique_ptr<TokenBucketPacer> links;  // this rank's outgoing links (per-peer buckets)
  };

  static TokenBucketPacer::Clock::time_point to_time_point(double seconds) {
    return TokenBucketPacer::Clock::time_point{
        std::chrono::nanoseconds{static_cast<int64_t>(std::llround(seconds * 1e9))}};
  }

  static void advance(Device& d, double t) {
    if (t > d.clock.now_s) {
      d.clock.wait_s += t - d.clock.now_s;
      d.clock.now_s = t;
    }
  }

  Device& charge(int r) {
    if (r < 0 || r >= world())
      throw std::invalid_argument("virtual network: expected a rank in 0.." +
                                  std::to_string(world() - 1) + ", found " + std::to_string(r));
    Device& d = devices_[static_cast<std::size_t>(r)];
    const double cpu = thread_cpu_seconds();
    if (!d.bound) {
      d.bound = true;
      d.owner = std::this_thread::get_id();
      d.cpu_mark = cpu;
    } else if (d.owner != std::this_thread::get_id()) {
      throw std::logic_error("virtual network: rank " + std::to_string(r) +
                             "'s clock was read from a thread other than the rank's own: its CPU "
                             "time would be charged to the wrong device");
    }
    const double used = std::max(0.0, cpu - d.cpu_mark) * cfg_.factors[static_cast<std::size_t>(r)];
    d.cpu_mark = cpu;
    d.clock.compute_s += used;
    d.clock.now_s += used;
    ++d.clock.reads;
    return d;
  }

  VirtualNetworkConfig cfg_;
  std::vector<Device> devices_;
  std::unique_ptr<TokenBucketPacer> medium_;  // shared_medium: the one channel
};

}  // namespace mercury::net
