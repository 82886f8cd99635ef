// net/transport.hpp — the message transport every distributed component talks to.
//
// Contract
// - A Transport connects `world()` ranks; this object is rank `rank()`. Messages are byte
//   payloads addressed by (src, type, key, iteration); `type` is an application type >= 16
//   (below 16 the wire protocol's own frame types live, see net/frame.hpp).
// - send() queues the payload and returns at once: send(span) copies the bytes (the caller may
//   reuse its buffer at once); send(Payload&&) takes the buffer over without copying;
//   send(SharedPayload) shares an immutable buffer without copying, so one buffer can go to
//   many ranks (a broadcast) or many times (a null one throws std::invalid_argument). Messages
//   from one sender to one receiver with the same priority arrive in send order. High priority
//   (aggregation traffic) preempts low priority (bulk samples) at chunk boundaries (on an unpaced
//   Mesh link with chunks under 256 KiB, at the end of each gather write of up to 256 KiB).
// - allocate(n) hands out an n-byte Payload of unspecified content (net/payload.hpp) from the
//   transport's buffer pool, to be filled completely and passed to send(Payload&&): the way to
//   build a message without a second copy. Received payloads come from the same pool; dropping
//   a Message returns its buffer, so steady traffic allocates (and page-faults) nothing new.
// - recv() blocks until the message with exactly that (src, type, key, iteration) has arrived,
//   or the deadline passes (TimeoutError), or the transport has failed (PeerError).
// - Failure is sticky and fail-stop: the first peer failure (closed connection, heartbeat
//   timeout, CRC error, protocol error, a peer's ERROR frame) is recorded once, and every later
//   send/recv/flush throws that same error, naming rank, address, phase, iteration and the knob
//   to change. A rank that fails sends ERROR frames to the others so they name the root cause.
// - close() flushes queued sends (bounded by the deadline), says BYE to every peer, and waits
//   for their BYE; it is idempotent. Destruction without close() drops connections.
// - Thread-safe: any thread may call send/recv/flush concurrently.
//
// - now() is the rank's clock (steady_clock, or the simulator's virtual time): everything that
//   times distributed work (BSP's split, resharding's waits, the trainer's wall_s) reads it.
//
// Implementations: net::Mesh (Asio TCP full mesh, net/mesh.hpp) and net::LocalHub (ranks as
// threads of one process, net/local.hpp), which with a net::VirtualNetwork is the simulator's
// virtual-clock transport. All three keep what arrived in a net::Mailbox (net/mailbox.hpp).
#pragma once

#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/payload.hpp"

namespace mercury::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// steady_clock as seconds: the clock of real transports (Transport::now()).
inline double steady_seconds() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

// CPU time of the calling thread, in seconds (what the simulator charges a device for).
inline double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

inline Deadline deadline_in(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

enum class Priority : uint8_t { high = 0, low = 1 };

// An immutable payload that may be queued for several sends at once.
using SharedPayload = std::shared_ptr<const Payload>;

// First application message type; lower values are reserved for the wire protocol.
inline constexpr uint8_t kFirstAppType = 16;

struct Message {
  int src = -1;
  uint8_t type = 0;
  uint64_t key = 0;
  uint64_t iteration = 0;
  Payload payload;
  double arrival_s = 0;  // the simulator: virtual time its last byte arrived (0 elsewhere)
};

// A peer (or the transport as a whole) failed. what() is the full human-readable message.
class PeerError : public std::runtime_error {
 public:
  PeerError(int peer_rank, const std::string& message)
      : std::runtime_error(message), peer_(peer_rank) {}
  // The rank whose failure this is (-1 when not attributable to one peer).
  int peer() const { return peer_; }

 private:
  int peer_;
};

// A blocking call ran past its deadline.
class TimeoutError : public PeerError {
 public:
  using PeerError::PeerError;
};

// Per-peer traffic counters (bytes include frame headers).
struct LinkStats {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_received = 0;
  double throughput_bps = 0;  // measured EWMA of the write throughput, bits/s (0: no data yet)
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Copies `payload`.
  virtual void send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
                    std::span<const std::byte> payload, Priority priority = Priority::high) = 0;
  // Takes `payload` over (no copy); best with a buffer from allocate().
  virtual void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, Payload&& payload,
                    Priority priority = Priority::high) = 0;
  // Shares `payload` (no copy); it stays alive until every send of it has been written.
  virtual void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, SharedPayload payload,
                    Priority priority = Priority::high) = 0;
  // A `bytes`-byte buffer of unspecified content for send(Payload&&) / send(SharedPayload).
  virtual Payload allocate(std::size_t bytes) { return Payload(bytes); }
  virtual Message recv(int src, uint8_t type, uint64_t key, uint64_t iteration,
                       Deadline deadline) = 0;
  // Wait until every queued send has been handed to the network (or the deadline passes).
  virtual void flush(Deadline deadline) = 0;
  virtual void close(Deadline deadline) = 0;
  virtual LinkStats stats(int peer) const = 0;

  // Time, in seconds, as the algorithms on this rank should see it: steady_clock on real
  // transports; on the simulator's (net/virtual_net.hpp) the calling rank's virtual time (its
  // thread's CPU time × the device's factor, plus what it waited for the network). Call it
  // from the rank's own thread.
  virtual double now() { return steady_seconds(); }
  // The simulator: the calling rank waited off the network (for BACC's scorer) until virtual
  // time t; its clock moves to at least t. Real transports ignore it (that wait was real).
  virtual void advance_to(double /*t*/) {}
  // The simulator: the factor from this host's CPU seconds to the device's; nullopt on real
  // transports.
  virtual std::optional<double> device_factor() const { return std::nullopt; }
};

}  // namespace mercury::net
