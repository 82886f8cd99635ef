// net/mesh.hpp — net::Mesh, the real Transport: a full TCP mesh (one connection per pair of
// ranks) over standalone Asio, with authenticated handshakes, chunked two-priority writers,
// heartbeats and sticky fail-stop errors.
//
// Lifecycle
//   Mesh mesh(cfg);   validates cfg and binds the listening socket: rank 0 on
//                     bind_addr:master_port (0 = any free port), others on bind_addr:0. port()
//                     is then known, so tests can run N ranks as threads of one process.
//   mesh.start();     rendezvous: every rank > 0 connects to rank 0 (MASTER_ADDR:MASTER_PORT,
//                     retrying with exponential backoff), handshakes (net/auth.hpp) and reports
//                     its listening address; once all are in, rank 0 sends everyone the address
//                     table; rank i then connects to every 0 < j < i and accepts every j > i.
//                     The rank-0 connection is kept as the 0<->i link. Returns when all
//                     world-1 links are up; throws PeerError/TimeoutError (connect_timeout_s).
//   send/recv/flush   see net/transport.hpp.
//   mesh.close(d);    flush, BYE to every peer, wait for theirs (bounded by d and op_timeout_s),
//                     stop the network thread. The destructor never blocks for long and never
//                     throws; without close() it simply drops the connections.
//
// Contract
// - One network thread (Asio io_context) per Mesh runs every socket operation; callers' threads
//   queue and wait, and send() computes the payload CRC32C of every chunk on the caller's thread
//   (send(span) while copying the bytes, so they are hashed from L1). TCP_NODELAY on every link.
// - Per link, a writer sends high-priority chunks before low-priority ones, choosing again after
//   every write, so a bulk message delays urgent traffic by at most one write: one chunk, or on
//   an unpaced link with chunks under kCoalesceBytes (256 KiB) up to that many bytes of
//   consecutive chunks of one message in one gather write (fewer system calls and wake-ups per
//   byte at 64 KiB chunks; the frames on the wire are unchanged). With a Pacer
//   (net/pacing.hpp) application frames are written in slices of pacer->slice_bytes(), each
//   after reserve(peer, n) + latency(); protocol frames (heartbeats, BYE, ERROR) are not paced.
// - A reader validates each header (net/frame.hpp) before reading its payload straight into the
//   reassembly buffer; the payload CRC is computed piece by piece as the bytes arrive (while
//   they are still in cache) and checked before the message is delivered.
// - Payload buffers (sent copies, reassembled messages) come from one PayloadPool per Mesh
//   (net/payload.hpp, at most pool_bytes of free buffers kept); allocate() hands out the same
//   buffers. send(Payload&&) and send(SharedPayload) queue the caller's buffer without copying
//   it; a shared one may sit in several links' queues at once.
// - Heartbeats go out after heartbeat_interval_s without traffic; a peer silent for
//   heartbeat_timeout_s fails the mesh, as does a write not completing within op_timeout_s.
// - The first failure is sticky (net/transport.hpp) and is sent to every peer in an ERROR frame
//   (key = blamed rank + 1), so they report the root cause. A recv/flush deadline passing throws
//   TimeoutError without failing the mesh.
// - Incoming connections that fail the handshake (garbage, wrong secret, mismatched run) are
//   answered with an ERROR frame when possible, logged, and dropped; the listener keeps serving,
//   and a rendezvous that then times out names the last refusal. Connections this rank makes are
//   fatal when refused.
// - No secret is allowed only when every address involved is loopback, unless cfg.insecure.
// - Knobs are fields of MeshConfig; the MERCURY_* names in comments and error messages are the
//   environment variables / CLI flags that fill them (read elsewhere, e.g. by the launcher).
#pragma once

// Clang with libstdc++: Asio only looks for <experimental/coroutine>, but <coroutine> works.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif
#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/address.hpp"
#include "net/auth.hpp"
#include "net/frame.hpp"
#include "net/mailbox.hpp"
#include "net/pacing.hpp"
#include "net/transport.hpp"

namespace mercury::net {

struct MeshConfig {
  int rank = 0;                           // RANK
  int world = 1;                          // WORLD_SIZE
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR (rank 0's address, a name or an IP)
  uint16_t master_port = 29500;           // MASTER_PORT; 0 on rank 0 = pick a free port
  std::string bind_addr = "127.0.0.1";    // MERCURY_BIND: IP every rank listens on
  std::string advertise_addr;             // IP others reach this rank at ("" = bind_addr, or
                                          // the address rank 0 sees when bind_addr is 0.0.0.0)
  std::string run_id = "mercury";         // MERCURY_RUN_ID, 1..64 of [A-Za-z0-9._-]
  uint32_t run_epoch = 0;                 // restart attempt of this run
  uint64_t plan_hash = 0;                 // ShardPlan hash, must match on all ranks
  uint64_t layout_hash = 0;               // model layout hash, must match on all ranks
  std::vector<std::byte> secret;          // MERCURY_SECRET_FILE (see load_secret_file)
  bool insecure = false;                  // MERCURY_INSECURE: allow no secret off loopback
  double connect_timeout_s = 30;          // MERCURY_CONNECT_TIMEOUT: whole rendezvous
  double op_timeout_s = 60;               // MERCURY_OP_TIMEOUT: handshake, one write, BYE
  double heartbeat_interval_s = 1;        // MERCURY_HEARTBEAT_INTERVAL
  double heartbeat_timeout_s = 10;        // MERCURY_HEARTBEAT_TIMEOUT
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;         // MERCURY_MAX_FRAME
  uint32_t chunk_bytes = kDefaultChunkBytes;                    // MERCURY_CHUNK, 64 KiB..4 MiB
  std::shared_ptr<Pacer> pacer;                                 // nullptr = unshaped
  std::size_t pool_bytes = PayloadPool::kDefaultRetainedBytes;  // free payload buffers kept
  // Tests: called on the network thread for every outgoing application chunk after its CRC was
  // computed; may change the header (its CRC is recomputed) or the payload (its CRC is not).
  std::function<void(FrameHeader&, std::vector<std::byte>&)> fault_hook;
  // Called on the network thread with one line per event (refused connections, failures).
  // Default: stderr, prefixed "mercury.net rank R: ".
  std::function<void(const std::string&)> log;
};

// One rank's listening address, as exchanged at rendezvous.
struct PeerAddress {
  std::string host;  // numeric IP
  uint16_t port = 0;
};

inline void write_address(ByteWriter& w, const PeerAddress& a) {
  w.str(a.host);
  w.u16(a.port);
}

inline PeerAddress read_address(ByteReader& r) {
  PeerAddress a;
  a.host = r.str(kMaxRunIdBytes);
  a.port = r.u16();
  return a;
}

inline std::vector<std::byte> encode_address_table(const std::vector<PeerAddress>& table) {
  ByteWriter w;
  w.u32(static_cast<uint32_t>(table.size()));
  for (const PeerAddress& a : table) write_address(w, a);
  return w.take();
}

inline std::vector<PeerAddress> decode_address_table(std::span<const std::byte> payload,
                                                     uint32_t world) {
  ByteReader r(payload, "TABLE payload");
  const uint32_t n = r.u32();
  if (n != world)
    throw FrameError(frame_detail::cat("TABLE payload: expected ", world, " entries, found ", n));
  std::vector<PeerAddress> table;
  for (uint32_t i = 0; i < n; ++i) table.push_back(read_address(r));
  r.finish();
  return table;
}

class Mesh final : public Transport {
  using tcp = asio::ip::tcp;
  template <typename T>
  using awaitable = asio::awaitable<T>;

 public:
  explicit Mesh(MeshConfig cfg) : cfg_(std::move(cfg)), acceptor_(io_) {
    validate_config();
    pool_ = PayloadPool::create(cfg_.pool_bytes);
    limits_ = {cfg_.chunk_bytes, cfg_.max_message_bytes};
    const auto n = static_cast<std::size_t>(cfg_.world);
    peers_.resize(n);
    addresses_.resize(n);
    claimed_.assign(n, 0);
    grace_ = std::min(cfg_.op_timeout_s, 2.0);
    if (cfg_.world == 1) return;
    const tcp::endpoint ep(asio::ip::make_address(cfg_.bind_addr),
                           cfg_.rank == 0 ? cfg_.master_port : 0);
    std::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw PeerError(
          cfg_.rank,
          frame_detail::cat("rank ", cfg_.rank, " cannot listen on ", endpoint_text(ep), ": ",
                            ec.message(), cfg_.rank == 0 ? "; pick another MASTER_PORT" : ""));
    port_ = acceptor_.local_endpoint().port();
    const auto bind = asio::ip::make_address(cfg_.bind_addr);
    advertise_ = !cfg_.advertise_addr.empty() ? cfg_.advertise_addr
                 : bind.is_unspecified()      ? std::string()
                                              : cfg_.bind_addr;
    addresses_[0] = host_port(cfg_.master_addr, cfg_.rank == 0 ? port_ : cfg_.master_port);
    table_.resize(n);
    table_[0] = {cfg_.master_addr, port_};
    if (cfg_.rank != 0) addresses_[cfg_.rank] = host_port(advertise_, port_);
  }

  ~Mesh() override {
    try {
      std::unique_lock lock(mu_);
      closed_ = true;
      if (error_ && started_) {  // give the ERROR frames to the other peers a moment to go out
        cv_.wait_for(lock, seconds(std::min(cfg_.op_timeout_s, 0.5)),
                     [&] { return !abort_pending_locked(); });
      }
      lock.unlock();
      shutdown_io();
    } catch (...) {
    }
    pool_->set_max_retained_bytes(0);  // payloads still held by callers are freed, not kept
  }
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  // The listening port (rank 0: the rendezvous port). 0 when world == 1.
  uint16_t port() const { return port_; }
  int rank() const override { return cfg_.rank; }
  int world() const override { return cfg_.world; }
  // "host:port" of a rank as this rank knows it.
  std::string peer_address(int rank) const {
    std::lock_guard lock(mu_);
    return addresses_.at(static_cast<std::size_t>(rank));
  }

  void start() {
    {
      std::lock_guard lock(mu_);
      if (started_) throw std::logic_error("Mesh::start() called twice");
      started_ = true;
      start_deadline_ = deadline_in(cfg_.connect_timeout_s);
      if (cfg_.world == 1) {
        ready_ = true;
        return;
      }
    }
    if (cfg_.rank != 0) resolve_master();
    if (expected_inbound() == 0) acceptor_.close();
    spawn(watchdog());
    if (expected_inbound() > 0) spawn(accept_loop());
    if (cfg_.rank != 0) spawn(join_rendezvous());
    thread_ = std::thread([this] { run_io(); });
    std::unique_lock lock(mu_);
    const Deadline limit =
        start_deadline_ + (cfg_.rank == 0 ? Clock::duration{} : seconds(grace_ + 0.1));
    cv_.wait_until(lock, limit, [&] { return ready_ || error_; });
    if (error_) std::rethrow_exception(error_);
    if (ready_) return;
    std::string missing, linked;
    int first_missing = -1;
    for (int r = 0; r < cfg_.world; ++r) {
      if (r == cfg_.rank) continue;
      std::string& list = peers_[r] ? linked : missing;
      list += (list.empty() ? "" : ", ") + std::to_string(r);
      if (!peers_[r] && first_missing < 0) first_missing = r;
    }
    const std::string message = frame_detail::cat(
        "rendezvous timed out after ", cfg_.connect_timeout_s, " s: ",
        cfg_.rank == 0 ? "rank(s) " + missing + " never connected to " + addresses_[0]
                       : "no link yet to rank(s) " + missing,
        linked.empty() ? "" : " (linked: " + linked + ")",
        last_refusal_.empty() ? "" : "; last refused connection: " + last_refusal_,
        flood_drops_ == 0
            ? ""
            : frame_detail::cat("; ", flood_drops_, " connection(s) were dropped unanswered ",
                                "because ", kMaxPendingHandshakes,
                                " unauthenticated handshakes were in progress (a flood of ",
                                "connections to this port? the last from ", last_flood_, ")"),
        "; check that every rank runs with the same MASTER_ADDR:MASTER_PORT and WORLD_SIZE, or "
        "raise MERCURY_CONNECT_TIMEOUT (now ",
        cfg_.connect_timeout_s, " s)");
    lock.unlock();
    fail(first_missing, message, true);
    lock.lock();
    std::rethrow_exception(error_);
  }

  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration,
            std::span<const std::byte> payload, Priority priority = Priority::high) override {
    check_send(dst, type, payload.size());
    Payload copy = pool_->allocate(payload.size());
    if (dst == cfg_.rank) {
      if (!payload.empty()) std::memcpy(copy.data(), payload.data(), payload.size());
      return deliver_to_self(type, key, iteration, std::move(copy));
    }
    std::vector<uint32_t> crcs = chunk_crcs(payload, cfg_.chunk_bytes, copy.data());  // one pass
    enqueue(dst, type, key, iteration, std::make_shared<const Payload>(std::move(copy)),
            std::move(crcs), priority);
  }

  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, Payload&& payload,
            Priority priority = Priority::high) override {
    check_send(dst, type, payload.size());
    if (dst == cfg_.rank) return deliver_to_self(type, key, iteration, std::move(payload));
    std::vector<uint32_t> crcs = chunk_crcs(payload.span(), cfg_.chunk_bytes);
    enqueue(dst, type, key, iteration, std::make_shared<const Payload>(std::move(payload)),
            std::move(crcs), priority);
  }

  void send(int dst, uint8_t type, uint64_t key, uint64_t iteration, SharedPayload payload,
            Priority priority = Priority::high) override {
    if (!payload)
      throw std::invalid_argument(
          frame_detail::cat("Mesh::send to rank ", dst, ": the shared payload is null"));
    check_send(dst, type, payload->size());
    if (dst == cfg_.rank) {  // our mailbox owns its messages: a copy
      Payload copy = pool_->allocate(payload->size());
      if (!payload->empty()) std::memcpy(copy.data(), payload->data(), payload->size());
      return deliver_to_self(type, key, iteration, std::move(copy));
    }
    std::vector<uint32_t> crcs = chunk_crcs(payload->span(), cfg_.chunk_bytes);
    enqueue(dst, type, key, iteration, std::move(payload), std::move(crcs), priority);
  }

  Payload allocate(std::size_t bytes) override { return pool_->allocate(bytes); }

  Message recv(int src, uint8_t type, uint64_t key, uint64_t iteration,
               Deadline deadline) override {
    check_rank(src, "recv");
    const auto begin = Clock::now();
    const MailKey k{src, type, key, iteration};
    std::unique_lock lock(mu_);
    for (bool expired = false;;
         expired = cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (error_) std::rethrow_exception(error_);
      if (std::optional<Message> m = mailbox_.take(k)) return std::move(*m);
      if (!ready_) throw std::logic_error("Mesh::recv() before start() succeeded");
      if (closed_) throw PeerError(-1, closed_message("recv"));
      if (src != cfg_.rank && peers_[src]->bye_received)
        throw PeerError(
            src,
            frame_detail::cat(describe_locked(src), " closed its transport (said BYE) without ",
                              "sending type ", int(type), " key ", key, " iteration ", iteration));
      if (expired || Clock::now() >= deadline) {
        const std::size_t n = mailbox_.count_from(src);
        throw TimeoutError(
            src, frame_detail::cat(
                     "rank ", cfg_.rank, " timed out after ", secs(Clock::now() - begin),
                     " s waiting for type ", int(type), " key ", key, " iteration ", iteration,
                     " from ", describe_locked(src),
                     n == 0 ? std::string("; nothing else from it is waiting either")
                            : frame_detail::cat("; ", n, " other message(s) from it are waiting: ",
                                                mailbox_.waiting_from(src, 3)),
                     "; is it slow, stalled, or waiting for us?"));
      }
    }
  }

  void flush(Deadline deadline) override {
    std::unique_lock lock(mu_);
    const auto begin = Clock::now();
    for (;;) {
      if (error_) std::rethrow_exception(error_);
      if (queued_messages_ == 0) return;
      if (io_stopped_) throw PeerError(-1, closed_message("flush"));
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && queued_messages_ != 0) {
        std::string stuck;
        int first = -1;
        for (const PeerPtr& p : peers_) {
          if (!p || (p->queue[0].empty() && p->queue[1].empty())) continue;
          if (first < 0) first = p->rank;
          stuck +=
              frame_detail::cat(stuck.empty() ? "" : ", ", p->queue[0].size() + p->queue[1].size(),
                                " message(s) for ", describe_locked(p->rank));
        }
        throw TimeoutError(first,
                           frame_detail::cat("rank ", cfg_.rank, ": flush timed out after ",
                                             secs(Clock::now() - begin), " s with ", stuck,
                                             " still queued; is the link that slow or stalled?"));
      }
    }
  }

  // Throws only when a healthy mesh could not be closed cleanly (flush or BYE timed out, or a
  // peer failed meanwhile); closing a failed mesh is quiet, its error was already reported.
  void close(Deadline deadline) override {
    std::exception_ptr problem;
    bool clean = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      clean = ready_ && !error_ && cfg_.world > 1;
    }
    if (clean) {
      try {
        flush(deadline);
        std::unique_lock lock(mu_);
        closing_ = true;
        for (const PeerPtr& p : peers_)
          if (p) asio::post(io_, [p] { p->wake.cancel(); });
        const auto bye_begin = Clock::now();
        const Deadline bye_deadline = std::min(deadline, deadline_in(cfg_.op_timeout_s));
        const auto done = [&] {
          if (error_) return true;
          for (const PeerPtr& p : peers_)
            if (p && (!p->bye_sent || !p->bye_received)) return false;
          return true;
        };
        if (!cv_.wait_until(lock, bye_deadline, done)) {
          int late = -1;
          for (const PeerPtr& p : peers_)
            if (p && late < 0 && !(p->bye_sent && p->bye_received)) late = p->rank;
          throw TimeoutError(
              late,
              frame_detail::cat("rank ", cfg_.rank, ": close: ", describe_locked(late),
                                " did not complete the BYE exchange within ",
                                secs(Clock::now() - bye_begin),
                                " s; raise MERCURY_OP_TIMEOUT (now ", cfg_.op_timeout_s, " s)"));
        }
        if (error_) std::rethrow_exception(error_);
      } catch (...) {
        problem = std::current_exception();
      }
    }
    shutdown_io();
    if (problem) std::rethrow_exception(problem);
  }

  LinkStats stats(int peer) const override {
    check_rank(peer, "stats");
    PeerPtr p;
    {
      std::lock_guard lock(mu_);
      p = peers_[peer];
    }
    LinkStats s;
    if (!p) return s;
    s.bytes_sent = p->bytes_sent;
    s.bytes_received = p->bytes_received;
    s.messages_sent = p->messages_sent;
    s.messages_received = p->messages_received;
    s.throughput_bps = p->throughput.bits_per_second();
    return s;
  }

  // The payload buffer pool's counters (free buffers kept, new vs recycled buffers handed out).
  PayloadPool::Stats payload_pool_stats() const { return pool_->stats(); }

  // Fault injection (net/fault.hpp "drop"): fail this rank and drop every connection without an
  // ERROR frame, as a crashed device would; the peers see the connections close.
  void drop_connections_for_testing() {
    {
      std::lock_guard lock(mu_);
      if (!error_)
        error_ = std::make_exception_ptr(PeerError(
            cfg_.rank,
            frame_detail::cat("rank ", cfg_.rank, " dropped its connections (fault injection)")));
    }
    cv_.notify_all();
    asio::post(io_, [this] { close_sockets(); });
  }
  // Fault injection (net/fault.hpp "corrupt"): flip a payload byte of the next non-empty
  // application chunk after its CRC was computed.
  void corrupt_next_frame_for_testing() { corrupt_next_ = true; }

  // Tests: block the network thread for `seconds`, as if this process froze.
  void stall_io_for_testing(double seconds_to_stall) {
    asio::post(io_, [seconds_to_stall] {
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds_to_stall));
    });
  }

 private:
  struct OutMessage {
    FrameHeader base;
    SharedPayload payload;       // never null
    std::vector<uint32_t> crcs;  // [chunk] payload CRC32C, computed by send() (caller's thread)
    uint32_t next_chunk = 0;     // network thread; read under mu_
    uint32_t chunk_count = 1;
    Priority priority = Priority::high;
  };

  struct Peer {
    Peer(asio::io_context& io, std::shared_ptr<PayloadPool> pool)
        : socket(io), wake(io), pace(io), guard(io), reassembler(8, std::move(pool)) {}
    int rank = -1;
    bool inbound = false;
    tcp::socket socket;
    asio::steady_timer wake, pace, guard;
    // Network thread only.
    Reassembler reassembler;
    uint64_t guard_id = 0;
    bool guard_fired = false;
    Clock::time_point last_rx{}, last_tx{}, write_since{};
    // Under Mesh::mu_.
    std::deque<std::shared_ptr<OutMessage>> queue[2];  // [Priority]
    bool writer_running = false, bye_sent = false, bye_received = false, abort_pending = false;
    std::string abort_reason;
    int abort_blame = -1;
    // Any thread.
    std::atomic<uint64_t> iteration_plus1{0};  // last iteration seen on this link + 1
    std::atomic<uint64_t> bytes_sent{0}, bytes_received{0}, messages_sent{0}, messages_received{0};
    ThroughputEstimator throughput;
  };
  using PeerPtr = std::shared_ptr<Peer>;

  struct Frame {
    FrameHeader header;
    std::vector<std::byte> payload;
  };

  struct Stopped {};  // unwinds a coroutine when the mesh shuts down

  static Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }
  static double secs(Clock::duration d) {
    return std::round(std::chrono::duration<double>(d).count() * 100) / 100;
  }
  static std::string host_port(const std::string& host, uint16_t port) {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  }
  static std::string endpoint_text(const tcp::endpoint& ep) {
    return host_port(ep.address().to_string(), ep.port());
  }
  static std::string remote_text(const tcp::socket& socket) {
    std::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    return ec ? "an unknown address" : endpoint_text(remote);
  }
  static std::string text_of(std::span<const std::byte> payload) {
    std::string text;
    for (std::byte b : payload) {
      const auto c = std::to_integer<unsigned char>(b);
      text += (c >= 0x20 || c == '\n' || c == '\t') ? char(c) : '?';
    }
    return text;
  }

  void validate_config() {
    const MeshConfig& c = cfg_;
    const auto bad = [](const std::string& what) {
      throw std::invalid_argument("MeshConfig: " + what);
    };
    if (c.world < 1 || c.rank < 0 || c.rank >= c.world)
      bad(frame_detail::cat("rank ", c.rank, " (RANK) must be in [0, ", c.world, ") (WORLD_SIZE)"));
    if (c.chunk_bytes < kMinChunkBytes || c.chunk_bytes > kMaxChunkBytes)
      bad(frame_detail::cat("chunk_bytes (MERCURY_CHUNK) = ", c.chunk_bytes, ": expected ",
                            kMinChunkBytes, "..", kMaxChunkBytes));
    if (c.max_message_bytes < 1 || c.max_message_bytes / c.chunk_bytes >= 0xFFFFFFFFull)
      bad(frame_detail::cat("max_message_bytes (MERCURY_MAX_FRAME) = ", c.max_message_bytes,
                            ": expected 1..", uint64_t{c.chunk_bytes} * 0xFFFFFFFEull));
    if (!(c.connect_timeout_s > 0) || !(c.op_timeout_s > 0) || !(c.heartbeat_interval_s > 0) ||
        !(c.heartbeat_timeout_s > c.heartbeat_interval_s))
      bad(frame_detail::cat("timeouts must be positive and heartbeat_interval_s (",
                            c.heartbeat_interval_s, ") below heartbeat_timeout_s (",
                            c.heartbeat_timeout_s, ")"));
    if (!valid_run_id(c.run_id))
      bad("run_id (MERCURY_RUN_ID) '" + c.run_id + "': expected 1.." +
          std::to_string(kMaxRunIdChars) + " characters of [A-Za-z0-9._-]");
    std::error_code ec;
    asio::ip::make_address(c.bind_addr, ec);
    if (ec) bad("bind_addr (MERCURY_BIND) '" + c.bind_addr + "' is not an IP address");
    if (!c.advertise_addr.empty()) asio::ip::make_address(c.advertise_addr, ec);
    if (ec) bad("advertise_addr '" + c.advertise_addr + "' is not an IP address");
    if (!c.secret.empty()) {
      if (const std::string weak = check_secret_strength(c.secret); !weak.empty())
        bad(frame_detail::cat("secret (MERCURY_SECRET_FILE) ", weak, "; make one with `",
                              kMakeSecret, "`"));
    }
    if (c.secret.empty() && !c.insecure && c.world > 1 &&
        !(is_loopback_address(c.bind_addr) && is_loopback_address(c.master_addr)))
      bad(frame_detail::cat("refusing to run without a cluster secret off loopback (bind ",
                            c.bind_addr, ", master ", c.master_addr,
                            "): set MERCURY_SECRET_FILE, or MERCURY_INSECURE=1 on a trusted ",
                            "network"));
  }

  int expected_inbound() const {
    return cfg_.rank == 0 ? cfg_.world - 1 : cfg_.world - 1 - cfg_.rank;
  }

  void check_send(int dst, uint8_t type, std::size_t bytes) const {
    check_rank(dst, "send");
    if (type < kFirstAppType)
      throw std::invalid_argument(frame_detail::cat("Mesh::send: type ", int(type),
                                                    " is reserved for the protocol (use >= 16)"));
    if (bytes > cfg_.max_message_bytes)
      throw std::invalid_argument(frame_detail::cat(
          "Mesh::send to rank ", dst, ": a message of ", bytes,
          " bytes exceeds max_message_bytes = ", cfg_.max_message_bytes, " (MERCURY_MAX_FRAME)"));
  }

  // Queues a checked message (check_send) for the link to `dst` (not us), with the payload
  // CRC32C of each of its chunks.
  void enqueue(int dst, uint8_t type, uint64_t key, uint64_t iteration, SharedPayload payload,
               std::vector<uint32_t>&& crcs, Priority priority) {
    auto m = std::make_shared<OutMessage>();
    m->base.type = type;
    m->base.flags = static_cast<uint8_t>(priority);
    m->base.src = static_cast<uint32_t>(cfg_.rank);
    m->base.dst = static_cast<uint32_t>(dst);
    m->base.run_epoch = cfg_.run_epoch;
    m->base.key = key;
    m->base.iteration = iteration;
    m->chunk_count = static_cast<uint32_t>(chunk_count_for(payload->size(), cfg_.chunk_bytes));
    m->priority = priority;
    m->payload = std::move(payload);
    m->crcs = std::move(crcs);
    PeerPtr p;
    {
      std::lock_guard lock(mu_);
      throw_if_unusable_locked("send");
      p = peers_[dst];
      if (p->bye_received)
        throw PeerError(dst, frame_detail::cat(
                                 describe_locked(dst), " has closed its transport (it said BYE); ",
                                 "cannot send it type ", int(type), " iteration ", iteration));
      p->queue[static_cast<int>(priority)].push_back(std::move(m));
      ++queued_messages_;
    }
    asio::post(io_, [p] { p->wake.cancel(); });
  }

  // A checked message (check_send) to ourselves goes straight into the mailbox.
  void deliver_to_self(uint8_t type, uint64_t key, uint64_t iteration, Payload&& payload) {
    {
      std::lock_guard lock(mu_);
      throw_if_unusable_locked("send");
      mailbox_.put(Message{cfg_.rank, type, key, iteration, std::move(payload)});
    }
    cv_.notify_all();
  }

  void check_rank(int r, const char* what) const {
    if (r < 0 || r >= cfg_.world)
      throw std::invalid_argument(frame_detail::cat("Mesh::", what, ": rank ", r,
                                                    " is out of range [0, ", cfg_.world, ")"));
  }

  std::string closed_message(const char* what) const {
    return frame_detail::cat("rank ", cfg_.rank, ": ", what, " on a closed transport");
  }

  void throw_if_unusable_locked(const char* what) const {
    if (error_) std::rethrow_exception(error_);
    if (closed_) throw PeerError(-1, closed_message(what));
    if (!ready_)
      throw std::logic_error(frame_detail::cat("Mesh::", what, "() before start() succeeded"));
  }

  std::string describe_locked(int r) const {
    if (r < 0 || r >= cfg_.world) return "the transport";
    const std::string& a = addresses_[static_cast<std::size_t>(r)];
    return frame_detail::cat("rank ", r, " (", a.empty() ? "address unknown" : a, ")");
  }
  std::string describe(int r) const {
    std::lock_guard lock(mu_);
    return describe_locked(r);
  }
  static std::string where(const Peer& p) {
    const uint64_t it = p.iteration_plus1.load();
    return it == 0 ? " before any message" : frame_detail::cat(" at iteration ", it - 1);
  }
  static void note_iteration(Peer& p, uint64_t iteration) {
    uint64_t seen = p.iteration_plus1.load();
    while (seen < iteration + 1 && !p.iteration_plus1.compare_exchange_weak(seen, iteration + 1)) {
    }
  }

  void log(const std::string& line) const {
    if (cfg_.log) {
      cfg_.log(line);
    } else {
      std::fprintf(stderr, "mercury.net rank %d: %s\n", cfg_.rank, line.c_str());
    }
  }

  bool abort_pending_locked() const {
    return std::any_of(peers_.begin(), peers_.end(),
                       [](const PeerPtr& p) { return p && p->abort_pending && p->writer_running; });
  }

  // Records the first failure (sticky), wakes every waiter and tells every peer why.
  void fail(int blame, const std::string& message, bool timeout = false) {
    {
      std::lock_guard lock(mu_);
      if (error_) return;
      error_ = timeout ? std::make_exception_ptr(TimeoutError(blame, message))
                       : std::make_exception_ptr(PeerError(blame, message));
      error_blame_ = blame;
      for (const PeerPtr& p : peers_) {
        if (!p || !p->writer_running) continue;
        p->abort_pending = true;
        p->abort_reason = message;
        p->abort_blame = blame;
      }
    }
    cv_.notify_all();
    log(message);
    asio::post(io_, [this] {
      std::error_code ignored;
      acceptor_.close(ignored);
      for (const PeerPtr& p : peers_)
        if (p) p->wake.cancel();
      for (const PeerPtr& p : setup_links_) spawn(send_error_and_close(p));
    });
  }

  void fail_peer(const Peer& p, const char* phase, const std::string& what,
                 const std::string& details = {}, const std::string& hint = {}) {
    fail(p.rank, frame_detail::cat(describe(p.rank), " ", what, " during ", phase, where(p),
                                   details.empty() ? "" : ": ", details, hint));
  }

  void fail(const PeerError& e) {
    fail(e.peer(), e.what(), dynamic_cast<const TimeoutError*>(&e) != nullptr);
  }

  void internal_failure(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const Stopped&) {
    } catch (const std::exception& x) {
      fail(-1, frame_detail::cat("rank ", cfg_.rank,
                                 ": internal error on the network thread: ", x.what()));
    } catch (...) {
      fail(-1,
           frame_detail::cat("rank ", cfg_.rank, ": unknown internal error on the network thread"));
    }
  }

  template <typename Awaitable>
  void spawn(Awaitable&& a) {
    asio::co_spawn(io_, std::forward<Awaitable>(a), [this](std::exception_ptr e) {
      if (e) internal_failure(e);
    });
  }

  void run_io() {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        fail(-1, frame_detail::cat("rank ", cfg_.rank,
                                   ": internal error on the network thread: ", e.what()));
      }
    }
  }

  void shutdown_io() {
    {
      std::lock_guard lock(mu_);
      if (io_stopped_) return;
      io_stopped_ = true;
    }
    stopping_ = true;
    if (thread_.joinable()) {
      asio::post(io_, [this] {
        close_sockets();
        work_.reset();
        io_.stop();
      });
      thread_.join();
    }
    close_sockets();
    cv_.notify_all();
  }

  void close_sockets() {
    std::error_code ignored;
    acceptor_.close(ignored);
    std::vector<PeerPtr> all;
    {
      std::lock_guard lock(mu_);
      all = peers_;
    }
    all.insert(all.end(), setup_links_.begin(), setup_links_.end());
    for (const PeerPtr& p : all) {
      if (!p) continue;
      p->socket.shutdown(tcp::socket::shutdown_both, ignored);
      p->socket.close(ignored);
    }
  }

  void resolve_master() {
    std::error_code ec;
    tcp::resolver resolver(io_);
    const auto results = resolver.resolve(cfg_.master_addr, std::to_string(cfg_.master_port), ec);
    if (ec || results.empty()) {
      const std::string message =
          frame_detail::cat("rank ", cfg_.rank, " cannot resolve MASTER_ADDR '", cfg_.master_addr,
                            "': ", ec ? ec.message() : "no address");
      fail(0, message);
      throw PeerError(0, message);
    }
    master_ep_ = results.begin()->endpoint();
  }

  // ---- connection setup (network thread) ----------------------------------------------------

  // Closes the socket when `deadline` passes, so the pending operation fails (guard_fired).
  void arm(const PeerPtr& p, Deadline deadline) {
    const uint64_t id = ++p->guard_id;
    p->guard_fired = false;
    p->guard.expires_at(deadline);
    p->guard.async_wait([p, id](std::error_code ec) {
      if (ec || id != p->guard_id) return;
      p->guard_fired = true;
      std::error_code ignored;
      p->socket.close(ignored);
    });
  }
  static void disarm(Peer& p) {
    ++p.guard_id;
    p.guard.cancel();
  }
  Deadline op_deadline() const { return deadline_in(cfg_.op_timeout_s); }
  // Seconds an incoming connection may take to authenticate: well below the rendezvous
  // timeout, so idle or slow strangers cannot hold the listener's handshake slots for long.
  double auth_window() const {
    return std::min({kAuthTimeoutS, cfg_.op_timeout_s, std::max(1.0, cfg_.connect_timeout_s / 4)});
  }

  Hello my_hello() const {
    return Hello{cfg_.run_id,
                 cfg_.run_epoch,
                 static_cast<uint32_t>(cfg_.rank),
                 static_cast<uint32_t>(cfg_.world),
                 cfg_.chunk_bytes,
                 cfg_.plan_hash,
                 cfg_.layout_hash,
                 random_nonce()};
  }

  FrameHeader control_header(FrameType type, int dst, uint64_t key = 0) const {
    FrameHeader h;
    h.type = static_cast<uint8_t>(type);
    h.src = static_cast<uint32_t>(cfg_.rank);
    h.dst = dst < 0 ? 0xFFFFFFFFu : static_cast<uint32_t>(dst);
    h.run_epoch = cfg_.run_epoch;
    h.key = key;
    return h;
  }

  awaitable<void> write_frame(Peer& p, FrameHeader h, std::span<const std::byte> payload) {
    if (payload.size() > kMaxProtocolPayload)
      throw FrameError(frame_detail::cat(frame_type_name(h.type), " payload of ", payload.size(),
                                         " bytes exceeds ", kMaxProtocolPayload));
    const auto header = encode_header(chunk_header(h, payload, 0, kMaxProtocolPayload));
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(header),
                                                    asio::buffer(payload.data(), payload.size())};
    co_await asio::async_write(p.socket, buffers, asio::use_awaitable);
  }

  awaitable<void> write_error(Peer& p, const std::string& reason, int dst, int blame = -1) {
    const auto bytes =
        std::as_bytes(std::span(reason.data(), std::min<std::size_t>(reason.size(), 4096)));
    co_await write_frame(p, control_header(FrameType::error, dst, blame_key(blame)), bytes);
  }

  awaitable<Frame> read_setup_frame(Peer& p) {
    std::array<std::byte, kHeaderBytes> raw{};
    co_await asio::async_read(p.socket, asio::buffer(raw), asio::use_awaitable);
    const HeaderDecode d = decode_header(raw, limits_);
    if (!d.ok()) throw FrameError(d.reason);
    if (!is_protocol_type(d.header.type))
      throw FrameError("expected a handshake frame, found " + describe_frame(d.header));
    Frame f{d.header, std::vector<std::byte>(d.header.payload_len)};
    if (!f.payload.empty())
      co_await asio::async_read(p.socket, asio::buffer(f.payload), asio::use_awaitable);
    const std::string bad = check_payload(f.header, f.payload);
    if (!bad.empty()) throw FrameError(bad);
    co_return f;
  }

  std::string secret_mismatch(int other) const {
    return frame_detail::cat("the HMAC of rank ", other,
                             " does not match the cluster secret of rank ", cfg_.rank,
                             "; every rank needs the same secret (MERCURY_SECRET_FILE)");
  }

  std::string timed_out(const char* what, Clock::time_point began) const {
    return frame_detail::cat(what, " timed out after ", secs(Clock::now() - began),
                             " s; raise MERCURY_OP_TIMEOUT (now ", cfg_.op_timeout_s,
                             " s) or MERCURY_CONNECT_TIMEOUT (now ", cfg_.connect_timeout_s, " s)");
  }

  // Client side: connect with exponential backoff until `deadline`, then handshake. A handshake
  // the server dropped or left silent without an ERROR (it was busy, e.g. under a flood of
  // unauthenticated connections, or its authentication window closed) is retried the same way;
  // a refusal is final.
  awaitable<PeerPtr> connect_peer(int r, tcp::endpoint ep, Deadline deadline) {
    auto delay = std::chrono::milliseconds(20);
    std::string last;
    for (int attempt = 1;; ++attempt) {
      auto p = std::make_shared<Peer>(io_, pool_);
      p->rank = r;
      setup_links_.push_back(p);
      std::error_code ec;
      arm(p, std::min(deadline, op_deadline()));
      co_await p->socket.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
      disarm(*p);
      if (stopping_) throw Stopped{};
      if (!ec) {
        p->socket.set_option(tcp::no_delay(true), ec);
        try {
          co_await handshake_client(p, deadline);
          co_return p;
        } catch (const TransientHandshake& t) {
          last = "handshake: " + t.what;
        }
      } else {
        std::erase(setup_links_, p);
        last = p->guard_fired ? "attempt timed out" : ec.message();
      }
      if (Clock::now() + delay >= deadline)
        throw TimeoutError(r, frame_detail::cat("rank ", cfg_.rank, " could not connect to ",
                                                describe(r), " within ", cfg_.connect_timeout_s,
                                                " s (", attempt, " attempts, last: ", last,
                                                "); is it running and reachable? raise "
                                                "MERCURY_CONNECT_TIMEOUT (now ",
                                                cfg_.connect_timeout_s, " s)"));
      asio::steady_timer backoff(io_, delay);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_) throw Stopped{};
      delay = std::min(delay * 2, std::chrono::milliseconds(1000));
    }
  }

  // A handshake that ended without a refusal from the server: worth another attempt.
  struct TransientHandshake {
    std::string what;
  };

  // A handshake reply that is not `want`: an ERROR frame is rank r refusing (its text becomes
  // the problem), any other type a protocol violation to tell r about. False if it is `want`.
  static bool unexpected_reply(const Frame& reply, FrameType want, int r, const char* request,
                               std::string& problem, bool& tell, bool& refused) {
    if (reply.header.type == uint8_t(FrameType::error)) {
      refused = true;
      problem = text_of(reply.payload);
    } else if (reply.header.type != uint8_t(want)) {
      tell = true;
      problem = frame_detail::cat("rank ", r, " answered ", request, " with ",
                                  frame_type_name(reply.header.type));
    } else {
      return false;
    }
    return true;
  }

  awaitable<void> handshake_client(PeerPtr p, Deadline deadline) {
    const int r = p->rank;
    const auto began = Clock::now();
    arm(p, std::min(deadline, op_deadline()));
    const Hello mine = my_hello();
    const std::vector<std::byte> hello = encode_hello(mine);
    std::string problem;
    bool tell = false, refused = false;
    try {
      co_await write_frame(*p, control_header(FrameType::hello, r), hello);
      const Frame reply = co_await read_setup_frame(*p);
      if (!unexpected_reply(reply, FrameType::challenge, r, "HELLO", problem, tell, refused)) {
        const Nonce nonce = decode_challenge(reply.payload);
        co_await write_frame(*p, control_header(FrameType::auth, r),
                             client_mac(cfg_.secret, hello, nonce));
        const Frame w = co_await read_setup_frame(*p);
        if (!unexpected_reply(w, FrameType::welcome, r, "AUTH", problem, tell, refused)) {
          const Welcome welcome = decode_welcome(w.payload);
          if (!macs_equal(welcome.mac, server_mac(cfg_.secret, hello, nonce, welcome.hello)))
            problem = secret_mismatch(r);
          if (problem.empty()) problem = hello_mismatch(welcome.hello, mine);
          if (problem.empty() && welcome.hello.rank != uint32_t(r))
            problem = frame_detail::cat("expected rank ", r, " at this address, found rank ",
                                        welcome.hello.rank);
          tell = !problem.empty();
        }
      }
    } catch (const FrameError& e) {
      tell = true;
      problem = frame_detail::cat("rank ", r, " sent an invalid handshake frame: ", e.what());
    } catch (const std::system_error& e) {
      problem = p->guard_fired ? timed_out("the handshake", began)
                               : "the connection failed (" + e.code().message() + ")";
    }
    if (tell) {
      try {
        co_await write_error(*p, problem, r);
      } catch (...) {
      }
    }
    const bool guard_fired = p->guard_fired;
    disarm(*p);
    if (stopping_) throw Stopped{};
    if (!problem.empty()) {
      std::error_code ignored;
      p->socket.close(ignored);
      std::erase(setup_links_, p);
      // Dropped or silent without a word (no ERROR, no protocol violation): the server may be
      // busy (a flood) or have given up on us (its authentication window): try again.
      if (!tell && !refused && (!guard_fired || Clock::now() < deadline))
        throw TransientHandshake{problem};
      throw PeerError(
          r, refused ? frame_detail::cat(describe(r), " refused the handshake: ", problem)
                     : frame_detail::cat("handshake with ", describe(r), " failed: ", problem));
    }
  }

  // Server side of one incoming connection; refusals are logged and the connection dropped.
  // Until the peer's AUTH checks out it gets auth_window() seconds, learns nothing about this
  // run (its CHALLENGE is a bare nonce, its refusals name no id or hash) and holds no rank slot.
  awaitable<void> serve_inbound(PeerPtr p) {
    std::error_code ec;
    const auto remote = p->socket.remote_endpoint(ec);
    const std::string from = remote_text(p->socket);
    const auto began = Clock::now();
    p->socket.set_option(tcp::no_delay(true), ec);
    arm(p, deadline_in(auth_window()));
    std::string problem;
    bool tell = true, authenticated = false;
    int claimed = -1, claims = -1;
    try {
      const Frame f = co_await read_setup_frame(*p);
      if (f.header.type != uint8_t(FrameType::hello))
        throw FrameError("expected HELLO, found " + frame_type_name(f.header.type));
      const Hello theirs = decode_hello(f.payload);
      claims = int(theirs.rank);
      const Nonce nonce = random_nonce();
      co_await write_frame(*p, control_header(FrameType::challenge, -1), nonce);
      const Frame a = co_await read_setup_frame(*p);
      if (a.header.type == uint8_t(FrameType::error)) {
        tell = false;
        problem = frame_detail::cat(
            "it refused our CHALLENGE: ",
            text_of(std::span(a.payload).first(std::min<std::size_t>(a.payload.size(), 200))));
      } else if (a.header.type != uint8_t(FrameType::auth)) {
        problem = "expected AUTH, found " + frame_type_name(a.header.type);
      } else {
        ByteReader r(a.payload, "AUTH payload");
        Mac mac{};
        const auto got = r.bytes(kMacBytes);
        std::copy(got.begin(), got.end(), mac.begin());
        r.finish();
        if (!macs_equal(mac, client_mac(cfg_.secret, f.payload, nonce)))
          problem = secret_mismatch(claims);
      }
      if (problem.empty()) {  // authenticated: now it may learn why it cannot join, and join
        authenticated = true;
        arm(p, op_deadline());
        const Hello mine = my_hello();
        problem = hello_mismatch(theirs, mine);
        if (problem.empty()) problem = claim(claims);
        if (problem.empty()) {
          claimed = claims;
          p->rank = claimed;
          const auto welcome =
              encode_welcome({mine, server_mac(cfg_.secret, f.payload, nonce, mine)});
          co_await write_frame(*p, control_header(FrameType::welcome, claimed), welcome);
        }
        if (problem.empty() && cfg_.rank == 0) {
          const Frame af = co_await read_setup_frame(*p);
          if (af.header.type == uint8_t(FrameType::error)) {
            tell = false;
            problem =
                frame_detail::cat("rank ", claimed, " refused our WELCOME: ", text_of(af.payload));
          } else if (af.header.type != uint8_t(FrameType::address)) {
            throw FrameError("expected ADDRESS, found " + frame_type_name(af.header.type));
          } else {
            ByteReader r(af.payload, "ADDRESS payload");
            PeerAddress addr = read_address(r);
            r.finish();
            if (addr.host.empty()) addr.host = remote.address().to_string();
            asio::ip::make_address(addr.host, ec);
            if (ec || addr.port == 0)
              throw FrameError(frame_detail::cat("ADDRESS payload: expected an IP and a port, ",
                                                 "found '", addr.host, "' port ", addr.port));
            table_[claimed] = addr;
            std::lock_guard lock(mu_);
            addresses_[claimed] = host_port(addr.host, addr.port);
          }
        }
      }
    } catch (const FrameError& e) {
      problem = e.what();
    } catch (const std::system_error& e) {
      tell = false;
      problem = !p->guard_fired ? "the connection failed (" + e.code().message() + ")"
                : authenticated ? timed_out("the handshake", began)
                                : frame_detail::cat("the handshake timed out after ",
                                                    secs(Clock::now() - began),
                                                    " s without authenticating (unauthenticated "
                                                    "connections get ",
                                                    auth_window(), " s)");
    }
    if (!problem.empty() && tell && !stopping_) {
      try {
        co_await write_error(*p, problem, claims);
      } catch (...) {
      }
    }
    disarm(*p);
    --inbound_pending_;
    if (stopping_) co_return;
    if (!problem.empty()) {
      std::error_code ignored;
      p->socket.close(ignored);
      const std::string who = frame_detail::cat(
          from, claims >= 0 ? frame_detail::cat(" (claiming rank ", claims, ")") : "");
      log(frame_detail::cat("refused connection from ", who, ": ", problem));
      std::lock_guard lock(mu_);
      if (claimed >= 0) claimed_[claimed] = 0;
      last_refusal_ = who + ": " + problem;
      co_return;
    }
    if (failed()) co_return;
    p->inbound = true;
    if (cfg_.rank != 0) {
      {
        std::lock_guard lock(mu_);
        if (addresses_[claimed].empty()) addresses_[claimed] = from;
      }
      register_link(p);
      co_return;
    }
    setup_links_.push_back(p);
    if (++arrived_ == cfg_.world - 1) spawn(broadcast_table());
  }

  // "" and the rank is marked taken, or why it may not connect to us.
  std::string claim(int r) {
    std::lock_guard lock(mu_);
    if (r == cfg_.rank)
      return frame_detail::cat("it claims our own rank ", r,
                               "; were two processes started with RANK=", r, "?");
    if (r < cfg_.rank)
      return frame_detail::cat("rank ", r, " must not connect to rank ", cfg_.rank,
                               " (higher ranks connect to lower ones)");
    if (claimed_[r])
      return frame_detail::cat("rank ", r, " is already connected; were two processes started ",
                               "with RANK=", r, "?");
    claimed_[r] = 1;
    return {};
  }

  awaitable<void> accept_loop() {
    while (!stopping_ && acceptor_.is_open()) {
      tcp::socket socket(io_);
      std::error_code ec;
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_ || !acceptor_.is_open() || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        log("accept failed: " + ec.message());
        asio::steady_timer pause(io_, std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (inbound_pending_ >= kMaxPendingHandshakes) {
        const std::string who = remote_text(socket);
        bool first = false;
        {
          std::lock_guard lock(mu_);
          first = flood_drops_++ == 0;
          last_flood_ = who;
        }
        if (first)  // logged once; the count goes into the rendezvous error
          log(frame_detail::cat("dropped a connection from ", who, ": ", kMaxPendingHandshakes,
                                " handshakes already in progress (a connection flood?); later "
                                "drops are counted, not logged"));
        continue;
      }
      ++inbound_pending_;
      auto p = std::make_shared<Peer>(io_, pool_);
      p->socket = std::move(socket);
      spawn(serve_inbound(std::move(p)));
    }
  }

  // Rank 0, once every rank has arrived: send the address table, then bring the links up.
  awaitable<void> broadcast_table() {
    if (failed()) co_return;
    const std::vector<std::byte> payload = encode_address_table(table_);
    const std::vector<PeerPtr> links = setup_links_;
    for (const PeerPtr& p : links) {
      std::string problem;
      const auto began = Clock::now();
      arm(p, op_deadline());
      try {
        co_await write_frame(*p, control_header(FrameType::table, p->rank), payload);
      } catch (const std::system_error& e) {
        problem =
            p->guard_fired ? timed_out("sending the address table", began) : e.code().message();
      }
      disarm(*p);
      if (stopping_) co_return;
      if (!problem.empty()) {
        fail(p->rank, frame_detail::cat("rendezvous: sending the address table to ",
                                        describe(p->rank), " failed: ", problem));
        co_return;
      }
    }
    for (const PeerPtr& p : links) register_link(p);
  }

  // Rank > 0: connect to rank 0, report our address, get the table, connect to lower ranks.
  awaitable<void> join_rendezvous() {
    try {
      PeerPtr p = co_await connect_peer(0, master_ep_, start_deadline_);
      ByteWriter w;
      write_address(w, {advertise_, port_});
      const std::vector<std::byte> address = w.take();
      arm(p, op_deadline());
      std::optional<Frame> t;
      std::string problem;
      try {
        co_await write_frame(*p, control_header(FrameType::address, 0), address);
        arm(p, start_deadline_ + seconds(grace_));
        t = co_await read_setup_frame(*p);
      } catch (const std::system_error& e) {
        problem = p->guard_fired ? frame_detail::cat("rank 0 sent no address table within ",
                                                     cfg_.connect_timeout_s,
                                                     " s (are all ranks started?); raise "
                                                     "MERCURY_CONNECT_TIMEOUT (now ",
                                                     cfg_.connect_timeout_s, " s)")
                                 : "the connection failed (" + e.code().message() + ")";
      }
      disarm(*p);
      if (stopping_) co_return;
      if (!problem.empty())
        throw PeerError(0,
                        frame_detail::cat("rendezvous with ", describe(0), " failed: ", problem));
      if (t->header.type == uint8_t(FrameType::error))
        throw PeerError(blame_of(t->header, 0),
                        frame_detail::cat(describe(0), " aborted: ", text_of(t->payload)));
      if (t->header.type != uint8_t(FrameType::table))
        throw FrameError("expected TABLE, found " + frame_type_name(t->header.type));
      const std::vector<PeerAddress> table =
          decode_address_table(t->payload, static_cast<uint32_t>(cfg_.world));
      for (int r = 1; r < cfg_.world; ++r) {
        std::error_code ec;
        const auto ip = asio::ip::make_address(table[r].host, ec);
        if (ec || table[r].port == 0)
          throw FrameError(frame_detail::cat("TABLE entry of rank ", r, ": expected an IP and a ",
                                             "port, found '", table[r].host, "' port ",
                                             table[r].port));
        endpoints_[r] = tcp::endpoint(ip, table[r].port);
        std::lock_guard lock(mu_);
        if (r != cfg_.rank) addresses_[r] = host_port(table[r].host, table[r].port);
      }
      register_link(p);
      for (int r = 1; r < cfg_.rank; ++r) spawn(connect_link(r));
    } catch (const PeerError& e) {
      fail(e);
    } catch (const FrameError& e) {
      fail(0, frame_detail::cat("rendezvous with ", describe(0), " failed: ", e.what()));
    }
  }

  awaitable<void> connect_link(int r) {
    try {
      PeerPtr p = co_await connect_peer(r, endpoints_[r], start_deadline_);
      register_link(p);
    } catch (const PeerError& e) {
      fail(e);
    }
  }

  // An ERROR frame's key names the rank to blame: rank + 1, or 0 for none.
  static uint64_t blame_key(int blame) { return blame < 0 ? 0 : uint64_t(blame) + 1; }
  static int blame_of(const FrameHeader& h, int sender) {
    return h.key == 0 || h.key > 0x7FFFFFFF ? sender : static_cast<int>(h.key - 1);
  }

  void register_link(const PeerPtr& p) {
    std::erase(setup_links_, p);
    p->last_rx = p->last_tx = Clock::now();
    {
      std::lock_guard lock(mu_);
      peers_[p->rank] = p;
      p->writer_running = true;
      if (error_) {
        p->abort_pending = true;
        p->abort_blame = error_blame_;
        try {
          std::rethrow_exception(error_);
        } catch (const std::exception& e) {
          p->abort_reason = e.what();
        }
      }
      if (++links_up_ == cfg_.world - 1) ready_ = true;
    }
    cv_.notify_all();
    if (p->inbound && ++inbound_up_ == expected_inbound()) {
      std::error_code ignored;
      acceptor_.close(ignored);
    }
    spawn(reader(p));
    spawn(writer(p));
  }

  awaitable<void> send_error_and_close(PeerPtr p) {
    std::string reason;
    int blame = -1;
    {
      std::lock_guard lock(mu_);
      try {
        std::rethrow_exception(error_);
      } catch (const std::exception& e) {
        reason = e.what();
      }
      blame = error_blame_;
    }
    arm(p, op_deadline());
    try {
      co_await write_error(*p, reason, p->rank, blame);
    } catch (...) {
    }
    disarm(*p);
    std::error_code ignored;
    p->socket.shutdown(tcp::socket::shutdown_send, ignored);
  }

  // ---- steady state (network thread) --------------------------------------------------------

  awaitable<std::error_code> write_bytes(Peer& p, std::span<const std::byte> header,
                                         std::span<const std::byte> payload, bool app) {
    std::error_code ec;
    const auto start = Clock::now();
    const std::size_t total = header.size() + payload.size(), h = header.size();
    Pacer* pacer = app ? cfg_.pacer.get() : nullptr;  // protocol frames are never paced
    const std::size_t slice = pacer ? std::max<std::size_t>(1, pacer->slice_bytes()) : total;
    for (std::size_t off = 0; off < total && !ec;) {
      const std::size_t n = std::min(slice, total - off), end = off + n;
      if (pacer) {
        const auto when = std::chrono::time_point_cast<Clock::duration>(pacer->reserve(p.rank, n) +
                                                                        pacer->latency());
        if (when > Clock::now()) {
          p.pace.expires_at(when);
          co_await p.pace.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (stopping_) co_return asio::error::operation_aborted;
          ec = {};
        }
      }
      const std::array<asio::const_buffer, 2> buffers{
          asio::buffer(header.data() + std::min(off, h), std::min(end, h) - std::min(off, h)),
          asio::buffer(payload.data() + (std::max(off, h) - h),
                       std::max(end, h) - std::max(off, h))};
      p.write_since = Clock::now();
      co_await asio::async_write(p.socket, buffers, asio::redirect_error(asio::use_awaitable, ec));
      p.write_since = {};
      off = end;
    }
    if (!ec) note_written(p, total, start, app);
    co_return ec;
  }

  // Unpaced links with small chunks write up to this many bytes of consecutive chunks of one
  // message in one gather write (the preemption granularity for high priority).
  static constexpr std::size_t kCoalesceBytes = 256u << 10;

  // Writes chunks [first, first + n) of m (n >= 1) as frames in one gather write.
  awaitable<std::error_code> write_chunks(Peer& p, const OutMessage& m, uint32_t first,
                                          uint32_t n) {
    const std::span<const std::byte> message = m.payload->span();
    std::array<std::array<std::byte, kHeaderBytes>, kCoalesceBytes / kMinChunkBytes> headers;
    std::array<asio::const_buffer, 2 * headers.size()> buffers;
    std::size_t total = 0;
    for (uint32_t k = 0; k < n; ++k) {
      headers[k] = encode_header(
          chunk_header(m.base, message.size(), first + k, cfg_.chunk_bytes, m.crcs[first + k]));
      const auto payload = chunk_of(message, first + k, cfg_.chunk_bytes);
      buffers[2 * k] = asio::buffer(headers[k]);
      buffers[2 * k + 1] = asio::buffer(payload.data(), payload.size());
      total += kHeaderBytes + payload.size();
    }
    std::error_code ec;
    const auto start = Clock::now();
    p.write_since = start;
    co_await asio::async_write(p.socket, std::span(buffers.data(), 2 * std::size_t{n}),
                               asio::redirect_error(asio::use_awaitable, ec));
    p.write_since = {};
    if (!ec) note_written(p, total, start, true);
    co_return ec;
  }

  // After a successful write of `total` bytes begun at `start`: link statistics, and for
  // application frames the throughput estimate.
  static void note_written(Peer& p, std::size_t total, Clock::time_point start, bool app) {
    p.last_tx = Clock::now();
    p.bytes_sent += total;
    if (app) p.throughput.observe(total, std::chrono::duration<double>(p.last_tx - start).count());
  }

  // After `n` more chunks of m (the front of its queue) went out: pops m once it is complete.
  void chunks_sent(Peer& p, OutMessage& m, uint32_t n) {
    {
      std::lock_guard lock(mu_);
      m.next_chunk += n;
      if (m.next_chunk < m.chunk_count) return;
      p.queue[static_cast<int>(m.priority)].pop_front();
      --queued_messages_;
      ++p.messages_sent;
    }
    cv_.notify_all();
  }

  awaitable<void> writer(PeerPtr p) {
    const auto interval = seconds(cfg_.heartbeat_interval_s);
    enum class Job { idle, stop, error, bye, heartbeat, chunk };
    for (;;) {
      Job job = Job::idle;
      std::shared_ptr<OutMessage> m;
      std::string reason;
      int blame = -1;
      {
        std::lock_guard lock(mu_);
        if (p->abort_pending && !stopping_) {
          job = Job::error;
          reason = p->abort_reason;
          blame = p->abort_blame;
        } else if (stopping_ || error_) {
          job = Job::stop;
        } else if (!p->queue[0].empty() || !p->queue[1].empty()) {
          job = Job::chunk;
          m = !p->queue[0].empty() ? p->queue[0].front() : p->queue[1].front();
        } else if (closing_) {
          job = Job::bye;
        } else if (Clock::now() - p->last_tx >= interval) {
          job = Job::heartbeat;
        }
      }
      std::error_code ec;
      if (job == Job::stop) break;
      if (job == Job::idle) {
        p->wake.expires_at(p->last_tx + interval);
        co_await p->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      // Several chunks in one write: only on an unpaced link without fault hooks, and only when
      // a chunk is small enough that several fit in kCoalesceBytes.
      const uint32_t batch =
          job == Job::chunk && !cfg_.pacer && !cfg_.fault_hook && !corrupt_next_
              ? std::min<uint32_t>(m->chunk_count - m->next_chunk,
                                   static_cast<uint32_t>(kCoalesceBytes / cfg_.chunk_bytes))
              : 1;
      if (batch > 1) {
        note_iteration(*p, m->base.iteration);
        ec = co_await write_chunks(*p, *m, m->next_chunk, batch);
        if (!ec) {
          chunks_sent(*p, *m, batch);
          continue;
        }
      } else if (job == Job::chunk) {
        const std::span<const std::byte> message = m->payload->span();
        FrameHeader h = chunk_header(m->base, message.size(), m->next_chunk, cfg_.chunk_bytes,
                                     m->crcs[m->next_chunk]);
        std::span<const std::byte> payload = chunk_of(message, m->next_chunk, cfg_.chunk_bytes);
        std::vector<std::byte> altered;
        if (cfg_.fault_hook || (corrupt_next_ && !payload.empty())) {
          altered.assign(payload.begin(), payload.end());
          if (cfg_.fault_hook) cfg_.fault_hook(h, altered);
          if (!altered.empty() && corrupt_next_.exchange(false)) altered[0] ^= std::byte{0x5A};
          payload = altered;
        }
        const auto header = encode_header(h);
        note_iteration(*p, h.iteration);
        ec = co_await write_bytes(*p, header, payload, true);
        if (!ec) {
          chunks_sent(*p, *m, 1);
          continue;
        }
      } else {
        const FrameType type = job == Job::error ? FrameType::error
                               : job == Job::bye ? FrameType::bye
                                                 : FrameType::heartbeat;
        const std::span<const std::byte> payload =
            std::as_bytes(std::span(reason.data(), std::min<std::size_t>(reason.size(), 4096)));
        const auto header = encode_header(chunk_header(
            control_header(type, p->rank, blame_key(blame)), payload, 0, kMaxProtocolPayload));
        ec = co_await write_bytes(*p, header, payload, false);
        if (job == Job::heartbeat && !ec) continue;
      }
      if (job == Job::error) {
        std::error_code ignored;
        p->socket.shutdown(tcp::socket::shutdown_send, ignored);
      } else if (job == Job::bye && (!ec || peer_said_bye(*p))) {
        {
          std::lock_guard lock(mu_);
          p->bye_sent = true;  // a peer that left first may have closed already: attempt is enough
        }
        cv_.notify_all();
      } else if (ec && !stopping_) {
        if (!peer_said_bye(*p)) fail_peer(*p, "write", "failed", ec.message());
      }
      break;
    }
    {
      std::lock_guard lock(mu_);
      p->writer_running = false;
      p->abort_pending = false;
    }
    cv_.notify_all();
  }

  awaitable<void> reader(PeerPtr p) {
    std::array<std::byte, kHeaderBytes> raw{};
    std::size_t have = 0;  // bytes of the next header that came with the previous payload
    for (;;) {
      std::error_code ec;
      if (have < kHeaderBytes) {
        co_await asio::async_read(p->socket, asio::buffer(raw.data() + have, kHeaderBytes - have),
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return read_failed(*p, ec);
      }
      have = 0;
      p->last_rx = Clock::now();
      p->bytes_received += kHeaderBytes;
      const HeaderDecode d = decode_header(raw, limits_);
      if (!d.ok()) co_return fail_peer(*p, "read", "sent a malformed frame", d.reason);
      const FrameHeader& h = d.header;
      if (h.src != uint32_t(p->rank) || h.dst != uint32_t(cfg_.rank) ||
          h.run_epoch != cfg_.run_epoch)
        co_return fail_peer(
            *p, "read", "sent a misaddressed frame",
            frame_detail::cat(describe_frame(h), " says rank ", h.src, " -> rank ", h.dst,
                              " epoch ", h.run_epoch, ", expected rank ", p->rank, " -> rank ",
                              cfg_.rank, " epoch ", cfg_.run_epoch));
      const bool app = !is_protocol_type(h.type);
      std::vector<std::byte> control;
      std::span<std::byte> dst;
      if (app) {
        note_iteration(*p, h.iteration);
        std::string problem;
        try {
          dst = p->reassembler.prepare(h);
        } catch (const FrameError& e) {
          problem = e.what();
        }
        if (!problem.empty()) co_return fail_peer(*p, "read", "broke a chunk stream", problem);
      } else {
        control.resize(h.payload_len);
        dst = control;
      }
      uint32_t crc = 0;  // of the bytes read so far, hashed while they are in cache
      for (std::size_t got = 0; got < dst.size() && !ec;) {  // progress counts as liveness
        // Scatter read: the rest of the payload, then the next header, so one read often
        // brings both (one system call per frame fewer); raw is free, h holds this header.
        const std::array<asio::mutable_buffer, 2> buffers{
            asio::buffer(dst.data() + got, dst.size() - got), asio::buffer(raw)};
        const std::size_t n = co_await p->socket.async_read_some(
            buffers, asio::redirect_error(asio::use_awaitable, ec));
        const std::size_t mine = std::min(n, dst.size() - got);
        crc = io::crc32c(dst.data() + got, mine, crc);
        got += mine;
        have = n - mine;
        p->last_rx = Clock::now();
      }
      if (ec) co_return read_failed(*p, ec);
      p->bytes_received += dst.size();
      if (const std::string bad = check_payload_crc(h, crc); !bad.empty())
        co_return fail_peer(*p, "read", "sent a corrupt frame", bad);
      if (app) {
        if (std::optional<Message> m = p->reassembler.commit(h)) {
          ++p->messages_received;
          {
            std::lock_guard lock(mu_);
            mailbox_.put(std::move(*m));
          }
          cv_.notify_all();
        }
      } else if (h.type == uint8_t(FrameType::bye)) {
        {
          std::lock_guard lock(mu_);
          p->bye_received = true;
        }
        cv_.notify_all();
      } else if (h.type == uint8_t(FrameType::error)) {
        co_return fail(blame_of(h, p->rank),
                       frame_detail::cat(describe(p->rank), " aborted: ", text_of(control)));
      } else if (h.type != uint8_t(FrameType::heartbeat)) {
        co_return fail_peer(*p, "read", "sent an unexpected frame",
                            frame_type_name(h.type) + " after the handshake");
      }
    }
  }

  bool peer_said_bye(const Peer& p) const {
    std::lock_guard lock(mu_);
    return p.bye_received;
  }
  bool failed() const {
    std::lock_guard lock(mu_);
    return error_ != nullptr;
  }

  void read_failed(const Peer& p, const std::error_code& ec) {
    if (stopping_) return;
    {
      std::lock_guard lock(mu_);
      if (error_ || (ec == asio::error::eof && p.bye_received)) return;
    }
    fail_peer(p, "read",
              ec == asio::error::eof ? "closed the connection"
                                     : "broke the connection (" + ec.message() + ")");
  }

  // Heartbeat and write-progress checks for every link that is up.
  awaitable<void> watchdog() {
    asio::steady_timer tick(io_);
    const auto period =
        seconds(std::max(0.01, std::min(cfg_.heartbeat_interval_s, cfg_.heartbeat_timeout_s / 4)));
    const auto silence_limit = seconds(cfg_.heartbeat_timeout_s);
    auto last_tick = Clock::now();
    while (!stopping_) {
      std::error_code ec;
      tick.expires_after(period);
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      const auto now = Clock::now();
      const bool we_were_frozen = now - last_tick > silence_limit / 2;
      last_tick = now;
      std::vector<PeerPtr> links;
      {
        std::lock_guard lock(mu_);
        if (error_ || closed_) continue;
        for (const PeerPtr& p : peers_)
          if (p && !p->bye_received) links.push_back(p);
      }
      for (const PeerPtr& p : links) {
        if (we_were_frozen) {  // our own silence is not theirs: give them a fresh period
          p->last_rx = now;
          continue;
        }
        if (now - p->last_rx > silence_limit) {
          fail(p->rank, frame_detail::cat("heartbeat timeout: ", describe(p->rank),
                                          " sent nothing for ", secs(now - p->last_rx), " s",
                                          where(*p), "; raise MERCURY_HEARTBEAT_TIMEOUT (now ",
                                          cfg_.heartbeat_timeout_s, " s) if it is only slow"));
          break;
        }
        if (p->write_since != Clock::time_point{} &&
            now - p->write_since > seconds(cfg_.op_timeout_s)) {
          fail_peer(
              *p, "write", "stopped reading", "a write did not complete within the timeout",
              frame_detail::cat("; raise MERCURY_OP_TIMEOUT (now ", cfg_.op_timeout_s, " s)"));
          break;
        }
      }
    }
  }

  static constexpr int kMaxPendingHandshakes = 64;
  static constexpr double kAuthTimeoutS = 5;

  MeshConfig cfg_;
  FrameLimits limits_;
  std::shared_ptr<PayloadPool> pool_;  // before every Peer (their reassemblers use it)
  double grace_ = 2;
  asio::io_context io_;  // declared before everything holding sockets or timers
  // Keeps run() going between operations; the watchdog alone would too, this is belt and braces.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      io_.get_executor()};
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::string advertise_;
  tcp::endpoint master_ep_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> corrupt_next_{false};
  Deadline start_deadline_{};

  // Network thread only.
  std::vector<PeerPtr> setup_links_;        // handshaken or handshaking, not yet up
  std::map<int, tcp::endpoint> endpoints_;  // from the TABLE (ranks > 0)
  std::vector<PeerAddress> table_;          // rank 0: the TABLE being collected
  int inbound_pending_ = 0, inbound_up_ = 0, arrived_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::exception_ptr error_;
  int error_blame_ = -1;
  std::vector<PeerPtr> peers_;          // [rank], set once the link is up
  std::vector<std::string> addresses_;  // [rank] "host:port"
  std::vector<char> claimed_;           // [rank] an inbound handshake owns this rank
  Mailbox mailbox_;
  std::size_t queued_messages_ = 0;
  int links_up_ = 0;
  bool started_ = false, ready_ = false, closing_ = false, closed_ = false, io_stopped_ = false;
  std::string last_refusal_;
  uint64_t flood_drops_ = 0;  // connections dropped because kMaxPendingHandshakes were pending
  std::string last_flood_;
};

}  // namespace mercury::net
