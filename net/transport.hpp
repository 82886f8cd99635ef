// net/transport.hpp — the message transport every distributed component talks to.
//
// Contract
// - A Transport connects `world()` ranks; this object is rank `rank()`. Messages are byte
//   payloads addressed by (src, type, key, iteration); `type` is an application type >= 16
//   (below 16 the wire protocol's own frame types live, see net/frame.hpp).
// - send() queues a copy of the payload and returns at once; messages from one sender to one
//   receiver with the same priority arrive in send order. High priority (aggregation traffic)
//   preempts low priority (bulk samples) at chunk boundaries.
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
// Implementations: net::Mesh (Asio TCP full mesh, net/mesh.hpp) and net::LocalHub (ranks as
// threads of one process, net/local.hpp); the simulator adds a virtual-clock one.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace mercury::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_in(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

enum class Priority : uint8_t { high = 0, low = 1 };

// First application message type; lower values are reserved for the wire protocol.
inline constexpr uint8_t kFirstAppType = 16;

struct Message {
  int src = -1;
  uint8_t type = 0;
  uint64_t key = 0;
  uint64_t iteration = 0;
  std::vector<std::byte> payload;
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
  virtual void send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
                    std::span<const std::byte> payload, Priority priority = Priority::high) = 0;
  virtual Message recv(int src, uint8_t type, uint64_t key, uint64_t iteration,
                       Deadline deadline) = 0;
  // Wait until every queued send has been handed to the network (or the deadline passes).
  virtual void flush(Deadline deadline) = 0;
  virtual void close(Deadline deadline) = 0;
  virtual LinkStats stats(int peer) const = 0;
};

}  // namespace mercury::net
