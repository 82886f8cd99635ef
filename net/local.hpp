// net/local.hpp — an in-process Transport: W ranks as threads of one process.
//
// Contract (the Transport contract of net/transport.hpp, with these specifics)
// - LocalHub hub(W) owns W LocalTransport objects; hub.transport(r) is rank r's. Each rank's
//   transport may be used from any thread (typically one thread per rank). The hub must outlive
//   every use of its transports.
// - send() puts the payload straight into the receiver's mailbox (delivery is instantaneous,
//   so priorities only exist for interface compatibility) and returns: send(span) and
//   send(SharedPayload) copy it (every mailbox owns its messages), send(Payload&&) moves it.
//   allocate() and the copies use one PayloadPool per hub. Messages with the same
//   (src, type, key, iteration) are received in send order; others are matched exactly, in any
//   order.
// - recv() returns the oldest message with exactly (src, type, key, iteration) or blocks until
//   one arrives. Past the deadline it throws TimeoutError naming this rank, the awaited rank and
//   the message; a message already waiting is returned even when the deadline has passed.
// - Fail-stop, sticky: hub.fail(r, reason) records "rank r failed: reason" on every rank's
//   transport that has no failure yet (r's own included) and wakes every waiter. From then on
//   each send/recv/flush of those transports throws PeerError(r, ...) — the first failure a
//   transport saw, forever, even for messages already delivered by live peers.
// - close(deadline) is idempotent and never throws: it marks this rank closed (BYE) and waits
//   until every peer has closed or failed, or the deadline passes. After a peer has closed, a
//   recv waiting on a message from it that is not in the mailbox throws PeerError(peer) (it can
//   never arrive); send to a closed peer throws PeerError(peer). A closed transport throws
//   PeerError(-1) from send/recv/flush.
// - stats(peer) counts payload bytes and messages (there are no frame headers in-process);
//   throughput_bps stays 0 (no link to measure; the simulator: the link's rate at the rank's
//   virtual time). Received = delivered into the mailbox.
// - The simulator: LocalHub(std::shared_ptr<VirtualNetwork>) runs the same mailboxes on virtual
//   clocks (net/virtual_net.hpp). A message is still delivered at once, stamped with the virtual
//   time it arrives (Message::arrival_s); the receiver's clock moves to that time when it takes
//   the message. now() is the rank's virtual time, advance_to() moves it, device_factor() is the
//   device's compute factor. Each rank's transport must then be used by one thread (its own).
// - On a shared medium (VirtualNetwork::ordered()) sends are committed in virtual-time order:
//   a rank's send at its virtual time t waits (real time) until every other rank is known not
//   to send before t — closed, blocked in recv on a message not sent yet, or with a clock (as of
//   its last send/recv) at or past t; ties go to the lower rank. A blocked rank whose message
//   has been sent counts at max(its clock, the arrival). Every message reaches the shared
//   channel in nondecreasing virtual time. The wait is bounded by order_timeout_s (real
//   seconds); past it the send throws TimeoutError naming the rank that held it back.
// - Argument errors (dst/src outside [0, W) or equal to this rank, type < kFirstAppType) throw
//   std::invalid_argument naming the expected range and the value found.
// - Thread-safe: one mutex guards the hub; each rank waits on its own condition variable.
//   Mailboxes are net::Mailbox, as in net::Mesh.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "net/mailbox.hpp"
#include "net/transport.hpp"
#include "net/virtual_net.hpp"

namespace mercury::net {

class LocalHub;

class LocalTransport final : public Transport {
 public:
  int rank() const override { return rank_; }
  int world() const override;
  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
            std::span<const std::byte> payload, Priority priority = Priority::high) override;
  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, Payload&& payload,
            Priority priority = Priority::high) override;
  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, SharedPayload payload,
            Priority priority = Priority::high) override;
  Payload allocate(std::size_t bytes) override;
  Message recv(int src, uint8_t type, uint64_t key, uint64_t iteration, Deadline deadline) override;
  void flush(Deadline deadline) override;
  void close(Deadline deadline) override;
  LinkStats stats(int peer) const override;
  double now() override;
  void advance_to(double t) override;
  std::optional<double> device_factor() const override;

 private:
  friend class LocalHub;
  LocalTransport(LocalHub& hub, int rank) : hub_(hub), rank_(rank) {}

  LocalHub& hub_;
  int rank_;
};

class LocalHub {
 public:
  explicit LocalHub(int world) : LocalHub(world, nullptr) {}
  // The simulator's hub: world = net->world() ranks on net's virtual clocks.
  explicit LocalHub(std::shared_ptr<VirtualNetwork> net) : LocalHub(net ? net->world() : 0, net) {}

  ~LocalHub() { pool_->set_max_retained_bytes(0); }  // payloads outliving the hub are freed
  LocalHub(const LocalHub&) = delete;
  LocalHub& operator=(const LocalHub&) = delete;

  int world() const { return static_cast<int>(ranks_.size()); }

  LocalTransport& transport(int rank) {
    check_rank(rank, "LocalHub::transport: rank");
    return *ranks_[rank]->transport;
  }

  // Fail-stop injection: rank `rank` is dead. Every transport without a failure yet records
  // PeerError(rank, "rank <rank> failed: <reason>") and every blocked call wakes up and throws.
  void fail(int rank, const std::string& reason) {
    check_rank(rank, "LocalHub::fail: rank");
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int r = 0; r < world(); ++r) {
        if (!ranks_[r]->error) {
          ranks_[r]->error.emplace(rank, "rank " + std::to_string(rank) + " failed: " + reason +
                                             " (local hub, seen by rank " + std::to_string(r) +
                                             ")");
        }
      }
    }
    notify_all();
  }

  // Shared medium: the longest a send waits (real seconds) for its turn on the channel.
  void set_order_timeout(double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    order_timeout_s_ = seconds;
  }

 private:
  friend class LocalTransport;

  LocalHub(int world, std::shared_ptr<VirtualNetwork> net) : net_(std::move(net)) {
    if (world < 1) {
      throw std::invalid_argument("LocalHub: expected world >= 1, found " + std::to_string(world));
    }
    for (int r = 0; r < world; ++r) {
      ranks_.push_back(std::make_unique<RankState>());
      ranks_[r]->transport.reset(new LocalTransport(*this, r));
      ranks_[r]->links.resize(static_cast<std::size_t>(world));
    }
  }
  struct RankState {
    std::unique_ptr<LocalTransport> transport;
    Mailbox mailbox;
    std::condition_variable cv;
    std::optional<PeerError> error;  // the first failure this rank's transport saw (sticky)
    bool closed = false;
    std::vector<LinkStats> links;  // per peer
    // Shared medium (ordered sends): where this rank may send next, at the earliest.
    double vclock = 0;     // its virtual time as of its last send/recv
    bool blocked = false;  // in recv, the awaited message not yet sent
    MailKey awaited;       // ... that message
    bool woken = false;    // the awaited message was sent: it resumes at wake_s
    double wake_s = 0;
  };

  // The earliest virtual time rank q may still send at (+inf: it cannot before being woken by a
  // send that is itself ordered). Caller holds mu_.
  double earliest_send(int q) const {
    const RankState& s = *ranks_[q];
    if (s.closed || s.error) return std::numeric_limits<double>::infinity();
    if (s.blocked) return s.woken ? s.wake_s : std::numeric_limits<double>::infinity();
    return s.vclock;
  }
  // Whether rank self may commit a send at t: no other rank can send earlier. Caller holds mu_.
  // Returns the rank in the way, or -1.
  int held_back_by(int self, double t) const {
    for (int q = 0; q < world(); ++q) {
      if (q == self) continue;
      const double e = earliest_send(q);
      if (e < t || (e == t && q < self)) return q;
    }
    return -1;
  }
  // Ordered sends: waits for self's turn at virtual time t. Caller holds `lock` on mu_.
  void wait_for_turn(int self, double t, std::unique_lock<std::mutex>& lock) {
    RankState& me = *ranks_[self];
    me.vclock = std::max(me.vclock, t);
    order_cv_.notify_all();  // this rank's bound moved
    const Deadline limit = deadline_in(order_timeout_s_);
    for (int q = held_back_by(self, t); q >= 0; q = held_back_by(self, t)) {
      throw_if_unusable(self);
      if (order_cv_.wait_until(lock, limit) == std::cv_status::timeout && Clock::now() >= limit &&
          (q = held_back_by(self, t)) >= 0) {
        throw TimeoutError(
            q, "rank " + std::to_string(self) + ": shared medium: a send at " + std::to_string(t) +
                   " s (virtual) waited " + std::to_string(order_timeout_s_) + " s for rank " +
                   std::to_string(q) + ", whose clock is at " + std::to_string(earliest_send(q)) +
                   " s and which has not sent or received since");
      }
    }
    throw_if_unusable(self);
  }

  void check_rank(int rank, const char* what) const {
    if (rank < 0 || rank >= world()) {
      throw std::invalid_argument(std::string(what) + ": expected 0.." +
                                  std::to_string(world() - 1) + ", found " + std::to_string(rank));
    }
  }
  void check_peer(int self, int peer, const char* what) const {
    if (peer < 0 || peer >= world() || peer == self) {
      throw std::invalid_argument("rank " + std::to_string(self) + ": " + what +
                                  ": expected a peer rank in 0.." + std::to_string(world() - 1) +
                                  " other than " + std::to_string(self) + ", found " +
                                  std::to_string(peer));
    }
  }
  // Throws this rank's sticky failure, or the use-after-close error. Caller holds mu_.
  void throw_if_unusable(int self) const {
    const RankState& me = *ranks_[self];
    if (me.error) throw *me.error;
    if (me.closed) {
      throw PeerError(-1, "rank " + std::to_string(self) + ": transport used after close()");
    }
  }
  void notify_all() {
    for (auto& r : ranks_) r->cv.notify_all();
    order_cv_.notify_all();
  }

  void check_send(int self, int dst, uint8_t type) const {
    check_peer(self, dst, "send: destination");
    if (type < kFirstAppType) {
      throw std::invalid_argument(
          "rank " + std::to_string(self) + ": send: message type: expected >= " +
          std::to_string(kFirstAppType) + " (application types), found " + std::to_string(type));
    }
  }

  void send(int self, int dst, uint8_t type, uint64_t key, uint64_t iteration,
            std::span<const std::byte> payload) {
    check_send(self, dst, type);
    Payload copy = pool_->allocate(payload.size());  // before taking the lock
    if (!payload.empty()) std::memcpy(copy.data(), payload.data(), payload.size());
    deliver(self, dst, type, key, iteration, std::move(copy));
  }

  // `payload` passed check_send().
  void deliver(int self, int dst, uint8_t type, uint64_t key, uint64_t iteration,
               Payload&& payload) {
    const std::size_t bytes = payload.size();
    const bool ordered = net_ && net_->ordered();
    // The sender's clock: charged now; per link the channel is booked at once, on a shared
    // medium once this send's turn has come (below, under the lock).
    double arrival = 0;
    if (ordered) {
      arrival = net_->now(self);
    } else if (net_) {
      arrival = net_->on_send(self, dst, bytes);
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      throw_if_unusable(self);
      if (ordered) {
        wait_for_turn(self, arrival, lock);
        arrival = net_->reserve(self, dst, bytes, arrival);
      }
      RankState& to = *ranks_[dst];
      if (to.closed) {
        throw PeerError(dst, "rank " + std::to_string(self) + ": send to rank " +
                                 std::to_string(dst) + " (" +
                                 describe_message(type, key, iteration) + "): rank " +
                                 std::to_string(dst) + " has closed its transport");
      }
      if (ordered && to.blocked && !to.woken && to.awaited == MailKey{self, type, key, iteration}) {
        to.woken = true;
        to.wake_s = std::max(to.vclock, arrival);
      }
      to.mailbox.put(Message{self, type, key, iteration, std::move(payload), arrival});
      if (ordered) order_cv_.notify_all();
      LinkStats& out = ranks_[self]->links[dst];
      out.bytes_sent += bytes;
      ++out.messages_sent;
      LinkStats& in = to.links[self];
      in.bytes_received += bytes;
      ++in.messages_received;
    }
    ranks_[dst]->cv.notify_all();
  }

  Message recv(int self, int src, uint8_t type, uint64_t key, uint64_t iteration,
               Deadline deadline) {
    check_peer(self, src, "recv: source");
    const double t = net_ && net_->ordered() ? net_->now(self) : 0.0;
    Message m = take(self, MailKey{src, type, key, iteration}, deadline, t);
    if (net_) net_->on_recv(self, m.arrival_s);  // the receiver's clock, outside the lock
    return m;
  }

  // `now` (shared medium): the receiver's virtual time, charged before the call.
  Message take(int self, const MailKey& k, Deadline deadline, double now = 0) {
    std::unique_lock<std::mutex> lock(mu_);
    RankState& me = *ranks_[self];
    const bool ordered = net_ && net_->ordered();
    struct Unblock {  // whatever way take() ends, the rank is running again (at its new clock)
      LocalHub& hub;
      RankState& me;
      bool ordered;
      ~Unblock() {
        if (!ordered) return;
        me.blocked = me.woken = false;
        hub.order_cv_.notify_all();
      }
    } unblock{*this, me, ordered};
    if (ordered) me.vclock = std::max(me.vclock, now);
    for (;;) {
      throw_if_unusable(self);
      if (std::optional<Message> m = me.mailbox.take(k)) {
        if (ordered) me.vclock = std::max(me.vclock, m->arrival_s);
        return std::move(*m);
      }
      if (ordered && !me.blocked) {  // nothing to send before this message comes
        me.blocked = true;
        me.woken = false;
        me.awaited = k;
        order_cv_.notify_all();
      }
      if (ranks_[k.src]->closed) {
        throw PeerError(
            k.src, "rank " + std::to_string(self) + ": recv from rank " + std::to_string(k.src) +
                       " (" + describe_message(k.type, k.key, k.iteration) + "): rank " +
                       std::to_string(k.src) + " closed its transport without sending it");
      }
      if (me.cv.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
        // One last look: the message or a failure may have come with the deadline.
        throw_if_unusable(self);
        if (std::optional<Message> m = me.mailbox.take(k)) {
          if (ordered) me.vclock = std::max(me.vclock, m->arrival_s);
          return std::move(*m);
        }
        const std::size_t n = me.mailbox.count_from(k.src);
        throw TimeoutError(
            k.src, "rank " + std::to_string(self) + ": recv from rank " + std::to_string(k.src) +
                       " (" + describe_message(k.type, k.key, k.iteration) +
                       "): deadline passed, nothing arrived (local hub)" +
                       (n ? "; " + std::to_string(n) + " other message(s) from it are waiting: " +
                                me.mailbox.waiting_from(k.src, 3)
                          : std::string()));
      }
    }
  }

  void flush(int self) {
    std::lock_guard<std::mutex> lock(mu_);
    throw_if_unusable(self);  // delivery is synchronous: nothing is ever queued
  }

  void close(int self, Deadline deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    RankState& me = *ranks_[self];
    if (!me.closed) {
      me.closed = true;
      order_cv_.notify_all();
      lock.unlock();
      notify_all();  // receivers waiting on this rank learn it will send nothing more
      lock.lock();
    }
    auto peers_done = [&] {
      if (me.error) return true;
      for (const auto& r : ranks_)
        if (!r->closed) return false;
      return true;
    };
    me.cv.wait_until(lock, deadline, peers_done);
  }

  LinkStats stats(int self, int peer) const {
    check_peer(self, peer, "stats: peer");
    std::lock_guard<std::mutex> lock(mu_);
    LinkStats st = ranks_[self]->links[peer];
    if (net_) st.throughput_bps = net_->link_rate_bps(self);
    return st;
  }

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<RankState>> ranks_;  // condition variables do not move
  std::shared_ptr<PayloadPool> pool_ = PayloadPool::create();
  std::shared_ptr<VirtualNetwork> net_;  // the simulator's clocks (null: a plain hub)
  std::condition_variable order_cv_;     // shared medium: a rank's earliest send moved
  double order_timeout_s_ = 3600;
};

inline int LocalTransport::world() const {
  return hub_.world();
}
inline void LocalTransport::send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
                                 std::span<const std::byte> payload, Priority) {
  hub_.send(rank_, dst, type, key, iteration, payload);
}
inline void LocalTransport::send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
                                 Payload&& payload, Priority) {
  hub_.check_send(rank_, dst, type);
  hub_.deliver(rank_, dst, type, key, iteration, std::move(payload));
}
inline void LocalTransport::send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
                                 SharedPayload payload, Priority priority) {
  if (!payload) {
    throw std::invalid_argument("rank " + std::to_string(rank_) + ": send to rank " +
                                std::to_string(dst) + ": the shared payload is null");
  }
  send(dst, type, key, iteration, payload->span(), priority);
}
inline Payload LocalTransport::allocate(std::size_t bytes) {
  return hub_.pool_->allocate(bytes);
}
inline Message LocalTransport::recv(int src, uint8_t type, uint64_t key, uint64_t iteration,
                                    Deadline deadline) {
  return hub_.recv(rank_, src, type, key, iteration, deadline);
}
inline void LocalTransport::flush(Deadline) {
  hub_.flush(rank_);
}
inline void LocalTransport::close(Deadline deadline) {
  hub_.close(rank_, deadline);
}
inline LinkStats LocalTransport::stats(int peer) const {
  return hub_.stats(rank_, peer);
}
inline double LocalTransport::now() {
  return hub_.net_ ? hub_.net_->now(rank_) : steady_seconds();
}
inline void LocalTransport::advance_to(double t) {
  if (hub_.net_) hub_.net_->advance_to(rank_, t);
}
inline std::optional<double> LocalTransport::device_factor() const {
  if (!hub_.net_) return std::nullopt;
  return hub_.net_->factor(rank_);
}

}  // namespace mercury::net
