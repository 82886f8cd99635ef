// mercury/dist/bsp.hpp — standard synchronous data-parallel SGD (BSP) over a Transport, with
// every rank a worker and the parameter server of one shard.
//
// Contract
// - BspSync(transport, plan, params, optimizer config, op_timeout_s): this rank (transport.rank())
//   serves plan.range(rank) of the parameter slab with a dist::ShardServer (its own moments).
//   plan.world() must equal transport.world() and plan.total() must equal params.size().
// - step(lr, iteration), called on every rank with the same arguments after the local gradient
//   (the mean over this rank's batch) is in params.grads():
//     1. push grads[range j] to rank j for every other rank j (type kGradPush, key j),
//     2. receive the W-1 contributions for my range and reduce them in rank order
//        (ShardServer::reduce: bitwise independent of arrival order), then optimizer-step my
//        range of params.values(),
//     3. send my updated range to every other rank (type kParams, key = my rank) and receive
//        every other range into params.values().
//   A rank's own range never touches the wire; empty ranges are skipped by both sides (the plan
//   is shared). Copies: each gradient range goes to one rank with send(span) (copied once into
//   a pooled transport buffer); with 3+ ranks my updated range is copied once into a
//   net::SharedPayload that every send shares (with 2, send(span)), as is rank 0's initial
//   broadcast; received buffers go back to the transport's pool when dropped. Afterwards every rank
//   holds bitwise the same params.values(). params.grads() is only read. Buffers (BN running
//   statistics) stay local, as in DDP without SyncBN.
// - Deadlines: each phase (gradient reduce, parameter gather) gets op_timeout_s. A TimeoutError
//   or PeerError from the transport is rethrown with the same type and peer, its message
//   prefixed with rank, iteration, phase and the knob (`op_timeout`).
// - Time split of a step (the transport's clock — wall, or the simulator's virtual time —
//   cumulative in timing(), per step in last()):
//     update_s: reduce + optimizer on my shard;
//     idle_s:   waiting for peers to produce data, estimated per receive as
//               max(0, time blocked in recv − payload bits / measured link throughput); a link
//               with no throughput estimate yet (and LocalTransport, whose delivery is
//               instantaneous) counts all blocked time as idle;
//     comm_s:   the rest of step() — sending, receiving, copying.
//   Compute (forward + backward) happens outside and is the caller's to measure.
//   bytes_sent/bytes_received are the payload bytes of this rank's step() messages, exactly
//   (per-step deltas of Transport::stats would misattribute bytes that arrive in the background;
//   link_traffic() gives those cumulative wire totals, frame headers included on a Mesh).
// - The start-up collectives (broadcast_initial_params, gather_blobs, scatter_blobs) take an
//   optional timeout_s for the wait, since ranks reach the start at different times (process
//   start, data loading); 0 uses op_timeout like every other phase.
// - broadcast_initial_params(iteration): rank 0's parameter values and buffers go to every rank,
//   so all start identical whatever their init seeds. The message carries rank 0's layout hash,
//   plan hash and slab sizes; a mismatch throws std::runtime_error naming both values.
// - check_replicas(iteration): every rank's CRC32C of params.values() goes to every other rank;
//   if any differ, every rank throws ReplicaMismatch listing all ranks' checksums. Returns the
//   (common) checksum.
// - broadcast_flag(flag, key, iteration): rank 0's flag, returned on every rank (a stop decision);
//   broadcast_value(v, key, iteration) likewise for an int64 (AdaComm's period).
// - average_params(iteration): local SGD's averaging — the same exchange as step() with the
//   parameter values in place of the gradients and the mean in place of the optimizer step;
//   average_params_unrecorded() leaves it out of the timing and byte totals.
// - gather_to_root(values, key, iteration): every rank's doubles (the same count on each) on
//   rank 0, in rank order (rank 0 gets world × count values, the others nothing): a global
//   train loss, per-rank counters.
// - average_buffers(key, iteration): every rank ends with the mean of all ranks' buffers (BN
//   running statistics), reduced on rank 0 in rank order like a gradient range, so every rank
//   holds bitwise the same buffers. A no-op for a model without buffers.
// - gather_blobs(bytes, key, iteration): every rank's byte blob (any size, at most the
//   transport's message limit) on rank 0, in rank order; the others get nothing (checkpoint
//   state). scatter_blobs(blobs, key, iteration): rank 0's blobs[r] delivered to rank r
//   (resume state); rank 0 passes world blobs, the others pass nothing.
// - Message types 16..25 (kGradPush, kParams, kInitialParams, kReplicaChecksum, kFlag,
//   kRankValues, kBuffers, kBufferMean, kBlobToRoot, kBlobFromRoot); keys and iterations make
//   each message of a step unique, so a fast rank may run ahead by a phase.
// - Floats travel as raw little-endian bytes (the only byte order Mercury targets).
// - TicTac (dist/tictac.hpp) schedules the same reduction layer by layer on this engine's shard
//   server, helpers and timing.
// - Not thread-safe: one training thread per rank calls it; its buffers are sized up front.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/dist/param_server.hpp"
#include "mercury/dist/shard_plan.hpp"
#include "mercury/io/crc32c.hpp"
#include "mercury/nn/params.hpp"
#include "mercury/optim/optimizer.hpp"
#include "net/transport.hpp"

namespace mercury::dist {

static_assert(std::endian::native == std::endian::little,
              "dist/: parameters travel as raw little-endian floats");

// Application message types of the BSP protocol.
inline constexpr uint8_t kGradPush = net::kFirstAppType;    // 16: gradient range for a server
inline constexpr uint8_t kParams = net::kFirstAppType + 1;  // 17: a server's updated range
inline constexpr uint8_t kInitialParams = net::kFirstAppType + 2;    // 18: rank 0's init
inline constexpr uint8_t kReplicaChecksum = net::kFirstAppType + 3;  // 19: CRC32C of the slab
inline constexpr uint8_t kFlag = net::kFirstAppType + 4;             // 20: rank 0's decision
inline constexpr uint8_t kRankValues = net::kFirstAppType + 5;       // 21: doubles for rank 0
inline constexpr uint8_t kBuffers = net::kFirstAppType + 6;          // 22: buffers for rank 0
inline constexpr uint8_t kBufferMean = net::kFirstAppType + 7;       // 23: their mean, from 0
inline constexpr uint8_t kBlobToRoot = net::kFirstAppType + 8;       // 24: state for rank 0
inline constexpr uint8_t kBlobFromRoot = net::kFirstAppType + 9;     // 25: state from rank 0

// The replicas' parameter slabs differ (a bug or corruption, never expected).
class ReplicaMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SyncTiming {
  int64_t steps = 0;
  double comm_s = 0;
  double idle_s = 0;
  double update_s = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
};

class BspSync {
 public:
  BspSync(net::Transport& transport, ShardPlan plan, nn::ParamStore& params,
          const optim::OptimizerConfig& cfg, double op_timeout_s)
      : t_(transport),
        plan_(std::move(plan)),
        params_(params),
        rank_(transport.rank()),
        world_(transport.world()),
        op_timeout_s_(op_timeout_s),
        server_(checked(plan_, transport, params, op_timeout_s).range(transport.rank()),
                transport.world(), cfg),
        inbox_(static_cast<std::size_t>(world_)),
        contributions_(static_cast<std::size_t>(world_), nullptr) {}

  int rank() const { return rank_; }
  int world() const { return world_; }
  const ShardPlan& plan() const { return plan_; }
  // The transport the engine runs over (other traffic of the run, e.g. resharding, shares it).
  net::Transport& transport() { return t_; }
  ShardServer& server() { return server_; }
  const ShardServer& server() const { return server_; }
  double op_timeout() const { return op_timeout_s_; }
  const SyncTiming& timing() const { return total_; }
  const SyncTiming& last() const { return last_; }
  // Cumulative wire bytes over every link of the transport (frame headers included on a Mesh,
  // and any traffic besides BSP's).
  net::LinkStats link_traffic() const {
    net::LinkStats t;
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) continue;
      const net::LinkStats s = t_.stats(p);
      t.bytes_sent += s.bytes_sent;
      t.bytes_received += s.bytes_received;
      t.messages_sent += s.messages_sent;
      t.messages_received += s.messages_received;
    }
    return t;
  }

  void step(float lr, int64_t iteration) { exchange(params_.grads(), lr, iteration, false); }

  // Local SGD's averaging (AdaComm): every rank's parameter values go to the shard owners in
  // place of gradients; each owner sets its range to their mean (ShardServer::reduce: rank
  // order, bitwise reproducible) without an optimizer step, and the ranges come back as in
  // step(). Afterwards every rank holds bitwise the same params.values(). Same messages, phases,
  // deadlines and time split as step() (update_s is the averaging).
  void average_params(int64_t iteration) { exchange(params_.values(), 0, iteration, true); }
  // The same averaging left out of timing() and last(): an exchange that is not training's
  // (AdaComm's evaluation of the replicas' mean).
  void average_params_unrecorded(int64_t iteration) {
    const SyncTiming total = total_, last = last_;
    exchange(params_.values(), 0, iteration, true);
    total_ = total;
    last_ = last;
  }

  void broadcast_initial_params(int64_t iteration = 0, double timeout_s = 0) {
    const uint64_t it = checked_iteration(iteration);
    const std::vector<uint64_t> header = init_header();
    const std::size_t head_bytes = header.size() * sizeof(uint64_t);
    const std::size_t value_bytes = static_cast<std::size_t>(params_.size()) * sizeof(float);
    const std::size_t buffer_bytes =
        static_cast<std::size_t>(params_.buffer_size()) * sizeof(float);
    if (rank_ == 0) {  // built once in a transport buffer, shared by every send
      net::Payload payload = t_.allocate(head_bytes + value_bytes + buffer_bytes);
      std::memcpy(payload.data(), header.data(), head_bytes);
      if (value_bytes) std::memcpy(payload.data() + head_bytes, params_.values(), value_bytes);
      if (buffer_bytes) {
        std::memcpy(payload.data() + head_bytes + value_bytes, params_.buffers(), buffer_bytes);
      }
      const auto shared = std::make_shared<const net::Payload>(std::move(payload));
      for (int j = 1; j < world_; ++j) {
        guarded("initial parameter broadcast", iteration,
                [&] { t_.send(j, kInitialParams, 0, it, shared); });
      }
      return;
    }
    double idle = 0;
    const net::Message m = recv(0, kInitialParams, 0, it, net::deadline_in(limit(timeout_s)),
                                "initial parameters", -1, idle);
    std::vector<uint64_t> theirs(header.size());
    if (m.payload.size() >= head_bytes) std::memcpy(theirs.data(), m.payload.data(), head_bytes);
    static const char* const kFields[] = {"magic", "parameter layout hash", "shard plan hash",
                                          "parameter floats", "buffer floats"};
    for (std::size_t f = 0; f < header.size(); ++f) {
      if (m.payload.size() < head_bytes || theirs[f] != header[f]) {
        throw std::runtime_error(
            "rank " + std::to_string(rank_) + ": initial parameters from rank 0: " + kFields[f] +
            ": expected " + std::to_string(header[f]) + " (this rank), found " +
            (m.payload.size() < head_bytes
                 ? "a " + std::to_string(m.payload.size()) + "-byte message"
                 : std::to_string(theirs[f])) +
            " (rank 0): every rank must build the same model on the same sample shape");
      }
    }
    if (m.payload.size() != head_bytes + value_bytes + buffer_bytes) {
      throw std::runtime_error("rank " + std::to_string(rank_) +
                               ": initial parameters from rank 0: expected " +
                               std::to_string(head_bytes + value_bytes + buffer_bytes) +
                               " bytes, found " + std::to_string(m.payload.size()));
    }
    if (value_bytes) std::memcpy(params_.values(), m.payload.data() + head_bytes, value_bytes);
    if (buffer_bytes) {
      std::memcpy(params_.buffers(), m.payload.data() + head_bytes + value_bytes, buffer_bytes);
    }
  }

  uint32_t check_replicas(int64_t iteration) {
    const uint64_t it = checked_iteration(iteration);
    const uint32_t mine =
        io::crc32c(params_.values(), static_cast<std::size_t>(params_.size()) * sizeof(float));
    std::vector<uint32_t> all(static_cast<std::size_t>(world_), 0);
    all[rank_] = mine;
    for (int k = 1; k < world_; ++k) {
      const int j = (rank_ + k) % world_;
      send(j, kReplicaChecksum, 0, it,
           std::span<const std::byte>(reinterpret_cast<const std::byte*>(&mine), sizeof mine),
           "replica check");
    }
    const auto deadline = net::deadline_in(op_timeout_s_);
    double idle = 0;
    for (int k = 1; k < world_; ++k) {
      const int j = (rank_ + k) % world_;
      const net::Message m = recv(j, kReplicaChecksum, 0, it, deadline, "replica check", 4, idle);
      std::memcpy(&all[j], m.payload.data(), sizeof(uint32_t));
    }
    bool same = true;
    for (uint32_t c : all) same = same && c == mine;
    if (!same) {
      std::string list;
      char hex[16];
      for (int r = 0; r < world_; ++r) {
        std::snprintf(hex, sizeof hex, "%08x", all[r]);
        list += (r ? ", rank " : "rank ") + std::to_string(r) + " " + hex;
      }
      throw ReplicaMismatch("rank " + std::to_string(rank_) + ": replica check at iteration " +
                            std::to_string(iteration) +
                            ": expected every rank's parameter slab CRC32C to be equal, found " +
                            list);
    }
    return mine;
  }

  bool broadcast_flag(bool flag, uint64_t key, int64_t iteration) {
    const uint64_t it = checked_iteration(iteration);
    if (rank_ == 0) {
      const std::byte b{static_cast<unsigned char>(flag ? 1 : 0)};
      for (int j = 1; j < world_; ++j) {
        guarded("flag broadcast", iteration,
                [&] { t_.send(j, kFlag, key, it, std::span<const std::byte>(&b, 1)); });
      }
      return flag;
    }
    double idle = 0;
    const net::Message m =
        recv(0, kFlag, key, it, net::deadline_in(op_timeout_s_), "flag from rank 0", -1, idle);
    if (m.payload.size() != 1) {
      throw std::runtime_error("rank " + std::to_string(rank_) + ": flag from rank 0: expected 1 " +
                               "byte, found " + std::to_string(m.payload.size()));
    }
    return m.payload[0] != std::byte{0};
  }

  // Rank 0's value, returned on every rank (AdaComm's communication period).
  int64_t broadcast_value(int64_t value, uint64_t key, int64_t iteration) {
    const uint64_t it = checked_iteration(iteration);
    if (rank_ == 0) {
      for (int j = 1; j < world_; ++j) {
        guarded("value broadcast", iteration, [&] {
          t_.send(
              j, kFlag, key, it,
              std::span<const std::byte>(reinterpret_cast<const std::byte*>(&value), sizeof value));
        });
      }
      return value;
    }
    double idle = 0;
    const net::Message m = recv(0, kFlag, key, it, net::deadline_in(op_timeout_s_),
                                "value from rank 0", sizeof(int64_t), idle);
    int64_t v = 0;
    std::memcpy(&v, m.payload.data(), sizeof v);
    return v;
  }

  std::vector<double> gather_to_root(std::span<const double> values, uint64_t key,
                                     int64_t iteration) {
    const uint64_t it = checked_iteration(iteration);
    const std::size_t bytes = values.size() * sizeof(double);
    if (rank_ != 0) {
      send(0, kRankValues, key, it,
           std::span<const std::byte>(reinterpret_cast<const std::byte*>(values.data()), bytes),
           "values for rank 0");
      return {};
    }
    std::vector<double> all(values.size() * static_cast<std::size_t>(world_));
    std::copy(values.begin(), values.end(), all.begin());
    const auto deadline = net::deadline_in(op_timeout_s_);
    double idle = 0;
    for (int r = 1; r < world_; ++r) {
      const net::Message m = recv(r, kRankValues, key, it, deadline, "values from every rank",
                                  static_cast<int64_t>(bytes), idle);
      if (bytes) std::memcpy(all.data() + r * values.size(), m.payload.data(), bytes);
    }
    return all;
  }

  std::vector<std::vector<std::byte>> gather_blobs(std::span<const std::byte> mine, uint64_t key,
                                                   int64_t iteration, double timeout_s = 0) {
    const uint64_t it = checked_iteration(iteration);
    if (rank_ != 0) {
      send(0, kBlobToRoot, key, it, mine, "state for rank 0");
      return {};
    }
    std::vector<std::vector<std::byte>> all(static_cast<std::size_t>(world_));
    all[0].assign(mine.begin(), mine.end());
    const auto deadline = net::deadline_in(limit(timeout_s));
    double idle = 0;
    for (int r = 1; r < world_; ++r) {
      const net::Message m =
          recv(r, kBlobToRoot, key, it, deadline, "state from every rank", -1, idle);
      all[r].assign(m.payload.data(), m.payload.data() + m.payload.size());
    }
    return all;
  }

  std::vector<std::byte> scatter_blobs(const std::vector<std::vector<std::byte>>& blobs,
                                       uint64_t key, int64_t iteration, double timeout_s = 0) {
    const uint64_t it = checked_iteration(iteration);
    if (rank_ == 0) {
      if (blobs.size() != static_cast<std::size_t>(world_)) {
        throw std::invalid_argument("BspSync::scatter_blobs: expected " + std::to_string(world_) +
                                    " blobs, found " + std::to_string(blobs.size()));
      }
      for (int r = 1; r < world_; ++r)
        send(r, kBlobFromRoot, key, it, blobs[r], "state for a rank");
      return blobs[0];
    }
    double idle = 0;
    const net::Message m = recv(0, kBlobFromRoot, key, it, net::deadline_in(limit(timeout_s)),
                                "state from rank 0", -1, idle);
    return std::vector<std::byte>(m.payload.data(), m.payload.data() + m.payload.size());
  }

  void average_buffers(uint64_t key, int64_t iteration) {
    const int64_t n = params_.buffer_size();
    if (n == 0 || world_ == 1) return;
    const uint64_t it = checked_iteration(iteration);
    float* b = params_.buffers();
    const auto deadline = net::deadline_in(op_timeout_s_);
    double idle = 0;
    if (rank_ != 0) {
      send(0, kBuffers, key, it, b, n, "buffer average (send)");
      const net::Message m =
          recv(0, kBufferMean, key, it, deadline, "buffer average (receive)", n * 4, idle);
      std::memcpy(b, m.payload.data(), m.payload.size());
      return;
    }
    std::vector<net::Message> in(static_cast<std::size_t>(world_));
    std::vector<const float*> parts(static_cast<std::size_t>(world_), b);
    for (int r = 1; r < world_; ++r) {
      in[r] = recv(r, kBuffers, key, it, deadline, "buffer average (gather)", n * 4, idle);
      parts[r] = reinterpret_cast<const float*>(in[r].payload.data());
    }
    const float w = static_cast<float>(world_);
    for (int64_t i = 0; i < n; ++i) {  // rank order, as ShardServer::reduce
      float sum = parts[0][i];
      for (int r = 1; r < world_; ++r) sum += parts[r][i];
      b[i] = sum / w;
    }
    const net::SharedPayload mean = share(b, n);
    for (int r = 1; r < world_; ++r)
      guarded("buffer average (broadcast)", iteration,
              [&] { t_.send(r, kBufferMean, key, it, mean); });
  }

 private:
  // step() (source = the gradients, then the shard optimizer) or average_params() (source = the
  // values, then their mean written into my range).
  void exchange(const float* source, float lr, int64_t iteration, bool average) {
    const double t0 = t_.now();
    const uint64_t it = checked_iteration(iteration);
    double idle = 0;
    uint64_t sent = 0, received = 0;
    float* values = params_.values();
    const float* grads = source;
    const ShardRange mine = plan_.range(rank_);
    // 1. Push: ring order from the next rank on, so the ranks do not all start at rank 0.
    for (int k = 1; k < world_; ++k) {
      const int j = (rank_ + k) % world_;
      if (plan_.size(j) == 0) continue;
      send(j, kGradPush, static_cast<uint64_t>(j), it, grads + plan_.begin(j), plan_.size(j),
           "gradient push");
      sent += static_cast<uint64_t>(plan_.size(j)) * sizeof(float);
    }
    // 2. Reduce my range in rank order, then step it.
    double update = 0;
    if (!mine.empty()) {
      const auto deadline = net::deadline_in(op_timeout_s_);
      for (int r = 0; r < world_; ++r) {
        if (r == rank_) {
          contributions_[r] = grads + mine.begin;
          continue;
        }
        inbox_[r] = recv(r, kGradPush, static_cast<uint64_t>(rank_), it, deadline,
                         "gradient reduce", mine.size() * 4, idle);
        contributions_[r] = reinterpret_cast<const float*>(inbox_[r].payload.data());
        received += inbox_[r].payload.size();
      }
      const double tu = t_.now();
      server_.reduce(contributions_);
      if (average) {
        std::memcpy(values + mine.begin, server_.gradient(),
                    static_cast<std::size_t>(mine.size()) * sizeof(float));
      } else {
        server_.step(values + mine.begin, lr);
      }
      update = t_.now() - tu;
      for (auto& m : inbox_) m.payload = {};  // release the contributions before phase 3
    }
    // 3. Broadcast my range (3+ ranks: one copy shared by every send); gather the others.
    if (!mine.empty() && world_ > 1) {
      const net::SharedPayload updated =
          world_ > 2 ? share(values + mine.begin, mine.size()) : nullptr;
      for (int k = 1; k < world_; ++k) {
        const int j = (rank_ + k) % world_;
        if (updated) {
          guarded("parameter broadcast", iteration,
                  [&] { t_.send(j, kParams, static_cast<uint64_t>(rank_), it, updated); });
        } else {
          send(j, kParams, static_cast<uint64_t>(rank_), it, values + mine.begin, mine.size(),
               "parameter broadcast");
        }
        sent += static_cast<uint64_t>(mine.size()) * sizeof(float);
      }
    }
    const auto deadline = net::deadline_in(op_timeout_s_);
    for (int k = 1; k < world_; ++k) {
      const int j = (rank_ + k) % world_;
      if (plan_.size(j) == 0) continue;
      const net::Message m = recv(j, kParams, static_cast<uint64_t>(j), it, deadline,
                                  "parameter gather", plan_.size(j) * 4, idle);
      std::memcpy(values + plan_.begin(j), m.payload.data(), m.payload.size());
      received += m.payload.size();
    }

    record({1, std::max(0.0, t_.now() - t0 - update - idle), idle, update, sent, received});
  }

  // One step's split: last() and the running total.
  void record(const SyncTiming& step) {
    last_ = step;
    total_.steps += step.steps;
    total_.update_s += step.update_s;
    total_.idle_s += step.idle_s;
    total_.comm_s += step.comm_s;
    total_.bytes_sent += step.bytes_sent;
    total_.bytes_received += step.bytes_received;
  }

  friend class TicTac;  // dist/tictac.hpp: the same messages' helpers, another schedule

  using Clock = net::Clock;
  // A call's deadline: its own (startup phases, where ranks arrive at different times), else
  // op_timeout.
  double limit(double timeout_s) const { return timeout_s > 0 ? timeout_s : op_timeout_s_; }

  static const ShardPlan& checked(const ShardPlan& plan, const net::Transport& t,
                                  const nn::ParamStore& params, double op_timeout_s) {
    if (plan.world() != t.world()) {
      throw std::invalid_argument("BspSync: shard plan world size: expected " +
                                  std::to_string(t.world()) + " (the transport's), found " +
                                  std::to_string(plan.world()));
    }
    if (plan.total() != params.size()) {
      throw std::invalid_argument(
          "BspSync: shard plan size: expected " + std::to_string(params.size()) +
          " floats (the parameter slab), found " + std::to_string(plan.total()));
    }
    if (!(op_timeout_s > 0)) {
      throw std::invalid_argument("BspSync: op_timeout: expected > 0 seconds, found " +
                                  std::to_string(op_timeout_s));
    }
    return plan;
  }
  uint64_t checked_iteration(int64_t iteration) const {
    if (iteration < 0) {
      throw std::invalid_argument("BspSync: iteration: expected >= 0, found " +
                                  std::to_string(iteration));
    }
    return static_cast<uint64_t>(iteration);
  }

  std::vector<uint64_t> init_header() const {
    return {0x4D45524355525931ull,  // "MERCURY1"
            params_.layout_hash(), plan_.hash(), static_cast<uint64_t>(params_.size()),
            static_cast<uint64_t>(params_.buffer_size())};
  }

  // Runs a transport call; a failure is rethrown with the same type and peer, prefixed with
  // where it happened and the knob that bounds it.
  template <typename Fn>
  auto guarded(const char* phase, int64_t iteration, Fn&& fn) -> decltype(fn()) {
    auto context = [&](const net::PeerError& e) {
      char limit[64];
      std::snprintf(limit, sizeof limit, "%g", op_timeout_s_);
      return "rank " + std::to_string(rank_) + ", BSP iteration " + std::to_string(iteration) +
             ", " + phase + ": " + e.what() + " [deadline per phase: --op-timeout " + limit + " s]";
    };
    try {
      return fn();
    } catch (const net::TimeoutError& e) {
      throw net::TimeoutError(e.peer(), context(e));
    } catch (const net::PeerError& e) {
      throw net::PeerError(e.peer(), context(e));
    }
  }

  void send(int dst, uint8_t type, uint64_t key, uint64_t it, std::span<const std::byte> bytes,
            const char* phase) {
    guarded(phase, static_cast<int64_t>(it), [&] { t_.send(dst, type, key, it, bytes); });
  }
  // `count` floats in a transport buffer, to be shared by several sends.
  net::SharedPayload share(const float* data, int64_t count) {
    net::Payload p = t_.allocate(static_cast<std::size_t>(count) * sizeof(float));
    if (count > 0) std::memcpy(p.data(), data, p.size());
    return std::make_shared<const net::Payload>(std::move(p));
  }
  void send(int dst, uint8_t type, uint64_t key, uint64_t it, const float* data, int64_t count,
            const char* phase) {
    send(dst, type, key, it,
         std::span<const std::byte>(reinterpret_cast<const std::byte*>(data),
                                    static_cast<std::size_t>(count) * sizeof(float)),
         phase);
  }

  // Receives one message; expect_bytes >= 0 checks the payload size. Adds the estimated idle
  // part of the blocked time to `idle`.
  net::Message recv(int src, uint8_t type, uint64_t key, uint64_t it, net::Deadline deadline,
                    const char* phase, int64_t expect_bytes, double& idle) {
    const double t0 = t_.now();
    net::Message m = guarded(phase, static_cast<int64_t>(it),
                             [&] { return t_.recv(src, type, key, it, deadline); });
    const double blocked = t_.now() - t0;
    const double bps = t_.stats(src).throughput_bps;
    const double transfer = bps > 0 ? 8.0 * static_cast<double>(m.payload.size()) / bps : 0.0;
    idle += std::max(0.0, blocked - transfer);
    if (expect_bytes >= 0 && m.payload.size() != static_cast<std::size_t>(expect_bytes)) {
      throw std::runtime_error("rank " + std::to_string(rank_) + ", BSP iteration " +
                               std::to_string(it) + ", " + phase + ": message from rank " +
                               std::to_string(src) + ": expected " + std::to_string(expect_bytes) +
                               " bytes, found " + std::to_string(m.payload.size()) +
                               " (do both ranks use the same shard plan?)");
    }
    return m;
  }

  net::Transport& t_;
  ShardPlan plan_;
  nn::ParamStore& params_;
  int rank_;
  int world_;
  double op_timeout_s_;
  ShardServer server_;
  std::vector<net::Message> inbox_;
  std::vector<const float*> contributions_;
  SyncTiming total_, last_;
};

}  // namespace mercury::dist
