// net::Mesh on loopback, ranks as threads of this process: intact delivery of empty, tiny and
// multi-chunk messages, closed-form sums over 4 ranks, priority preemption at chunk boundaries,
// refused handshakes (secret, version, ShardPlan), hostile bytes on the listening port, corrupt
// and oversized frames, frozen and dead peers, deadlines, and a clean close.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "file_test_support.hpp"
#include "net/mesh.hpp"

namespace {

using namespace mercury::net;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using tcp = asio::ip::tcp;
using MeshList = std::vector<std::unique_ptr<Mesh>>;
using Tweak = std::function<void(MeshConfig&)>;

constexpr uint8_t kData = kFirstAppType;

std::vector<std::byte> pattern(std::size_t n, std::size_t seed = 1) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::byte((i * 131 + seed * 7 + (i >> 11)) & 0xFF);
  return out;
}

// Thread-safe sink for the meshes' log lines.
struct LogLines {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mu);
      lines.push_back(line);
    };
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    return text;
  }
  // The log once it mentions `fragment` (lines are written on the network threads), or after 10 s.
  std::string once_mentioning(const std::string& fragment) {
    for (int i = 0; i < 1000 && all().find(fragment) == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return all();
  }
};

MeshConfig base_config(int rank, int world, LogLines& log) {
  MeshConfig c;
  c.rank = rank;
  c.world = world;
  c.master_port = 0;
  c.run_id = "test-run";
  c.plan_hash = 0xAB;
  c.layout_hash = 0xCD;
  c.connect_timeout_s = 20;
  c.op_timeout_s = 10;
  c.heartbeat_interval_s = 0.1;
  c.heartbeat_timeout_s = 5;
  c.log = log.sink();
  return c;
}

// Constructs all ranks (rank 0 first, on a free port) without starting them.
MeshList make_meshes(int world, LogLines& log, const Tweak& tweak = {}) {
  MeshList meshes;
  for (int r = 0; r < world; ++r) {
    MeshConfig c = base_config(r, world, log);
    if (r > 0) c.master_port = meshes[0]->port();
    if (tweak) tweak(c);
    meshes.push_back(std::make_unique<Mesh>(std::move(c)));
  }
  return meshes;
}

// Runs start() on every mesh concurrently; returns each one's error ("" = started).
std::vector<std::string> start_all(MeshList& meshes) {
  std::vector<std::string> errors(meshes.size());
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < meshes.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        meshes[r]->start();
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

MeshList connected(int world, LogLines& log, const Tweak& tweak = {}) {
  MeshList meshes = make_meshes(world, log, tweak);
  const auto errors = start_all(meshes);
  for (const auto& e : errors) REQUIRE_MESSAGE(e.empty(), e);
  return meshes;
}

// Runs `body(rank)` for every rank on its own thread; returns each one's exception text.
std::vector<std::string> on_every_rank(int world, const std::function<void(int)>& body) {
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

template <typename T>
std::vector<std::byte> as_payload(const std::vector<T>& values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// What start() threw ("" = it started).
std::string start_error(Mesh& mesh) {
  try {
    mesh.start();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

// Rank 0's start() on a thread of its own, so the test can act as other peers meanwhile.
struct BackgroundStart {
  std::string error;
  std::thread thread;
  explicit BackgroundStart(Mesh& mesh) : thread([this, &mesh] { error = start_error(mesh); }) {}
  BackgroundStart(const BackgroundStart&) = delete;
  BackgroundStart& operator=(const BackgroundStart&) = delete;
  ~BackgroundStart() {
    if (thread.joinable()) thread.join();  // a failed REQUIRE must not std::terminate
  }
  std::string join() {
    thread.join();
    return error;
  }
};

// Rank 1 starts while rank 0 waits in `rank0`: both must come up and a message must cross.
void rank1_joins(MeshList& m, BackgroundStart& rank0) {
  const std::string error1 = start_error(*m[1]);
  const std::string error0 = rank0.join();
  CHECK_MESSAGE(error0.empty(), error0);
  CHECK_MESSAGE(error1.empty(), error1);
  m[1]->send(0, kData, 1, 1, pattern(10));
  CHECK(m[0]->recv(1, kData, 1, 1, deadline_in(20)).payload == pattern(10));
}

// Blocking raw TCP client for speaking (bad) protocol at a listening mesh.
struct RawClient {
  asio::io_context io;
  tcp::socket socket{io};
  explicit RawClient(uint16_t port) { socket.connect({asio::ip::make_address("127.0.0.1"), port}); }
  void write(std::span<const std::byte> bytes) {
    asio::write(socket, asio::buffer(bytes.data(), bytes.size()));
  }
  // The ERROR frame the mesh answers with, as text ("" if the connection just closed).
  std::string read_error() {
    std::array<std::byte, kHeaderBytes> raw{};
    std::error_code ec;
    asio::read(socket, asio::buffer(raw), ec);
    if (ec) return "";
    const HeaderDecode d = decode_header(raw, {});
    REQUIRE_MESSAGE(d.ok(), d.reason);
    CHECK(d.header.type == uint8_t(FrameType::error));
    std::string text(d.header.payload_len, '\0');
    asio::read(socket, asio::buffer(text), ec);
    return text;
  }
};

// A pacer that holds each write until the test allows it, recording every reservation.
class GatedPacer : public Pacer {
 public:
  std::chrono::steady_clock::time_point reserve(int, std::size_t bytes) override {
    std::unique_lock lock(mu_);
    sizes_.push_back(bytes);
    const std::size_t call = sizes_.size();
    cv_.notify_all();
    cv_.wait(lock, [&] { return call <= allowed_; });
    return std::chrono::steady_clock::now();
  }
  std::size_t slice_bytes() const override { return std::size_t{1} << 30; }
  void allow(std::size_t calls) {
    std::lock_guard lock(mu_);
    allowed_ = calls;
    cv_.notify_all();
  }
  std::vector<std::size_t> wait_for_calls(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return sizes_.size() >= n; });
    return sizes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::size_t> sizes_;
  std::size_t allowed_ = 0;
};

// Counts paced bytes; lets everything through at once.
class CountingPacer : public Pacer {
 public:
  std::chrono::steady_clock::time_point reserve(int, std::size_t bytes) override {
    total += bytes;
    largest = std::max<std::size_t>(largest, bytes);
    return std::chrono::steady_clock::now();
  }
  std::size_t slice_bytes() const override { return 10000; }
  std::atomic<std::size_t> total{0}, largest{0};
};

}  // namespace

TEST_CASE("two ranks exchange empty, one-byte and multi-chunk messages intact") {
  LogLines log;
  MeshList m = connected(2, log);
  const std::vector<std::size_t> sizes = {0, 1, (std::size_t{5} << 20) + 3};
  for (std::size_t i = 0; i < sizes.size(); ++i)
    m[0]->send(1, kData, i, 4, pattern(sizes[i], unsigned(i)));
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const Message got = m[1]->recv(0, kData, i, 4, deadline_in(20));
    CHECK(got.src == 0);
    CHECK(got.key == i);
    CHECK(got.iteration == 4);
    CHECK(got.payload == pattern(sizes[i], unsigned(i)));
  }
  m[1]->send(0, kData + 1, 0, 5, pattern(77));
  CHECK(m[0]->recv(1, kData + 1, 0, 5, deadline_in(20)).payload == pattern(77));
  m[0]->flush(deadline_in(20));
  const LinkStats s = m[0]->stats(1);
  CHECK(s.messages_sent == 3);
  CHECK(s.messages_received == 1);
  CHECK(s.bytes_sent >= sizes[2] + 8 * kHeaderBytes);
  CHECK(s.throughput_bps > 0);
  CHECK(m[0]->peer_address(1).rfind("127.0.0.1:", 0) == 0);
}

TEST_CASE("a payload sent by move arrives intact and received buffers are recycled") {
  LogLines log;
  MeshList m = connected(2, log, [](MeshConfig& c) { c.chunk_bytes = kMinChunkBytes; });
  // send(Payload&&) with a buffer from allocate(): no copy, the caller's Payload is taken over.
  const auto expect = pattern((std::size_t{1} << 20) + 5, 2);
  Payload out = m[0]->allocate(expect.size());
  CHECK(out.pooled());
  std::memcpy(out.data(), expect.data(), expect.size());
  m[0]->send(1, kData, 0, 1, std::move(out));
  CHECK(out.empty());  // NOLINT(bugprone-use-after-move): taken over by send
  m[0]->send(1, kData, 1, 1, Payload::copy_of(pattern(3)));  // an unpooled one works too
  Message got = m[1]->recv(0, kData, 0, 1, deadline_in(20));
  CHECK(got.payload == expect);
  CHECK(got.payload.pooled());
  CHECK(m[1]->recv(0, kData, 1, 1, deadline_in(20)).payload == pattern(3));
  const std::byte* buffer = got.payload.data();
  got = {};  // the reassembly buffer goes back to rank 1's pool
  // A smaller message (more than half as large) is reassembled into that larger buffer, and
  // holds exactly its own bytes.
  const auto smaller = pattern(expect.size() * 3 / 4, 3);
  m[0]->send(1, kData, 0, 2, smaller);
  const Message again = m[1]->recv(0, kData, 0, 2, deadline_in(20));
  CHECK(again.payload.data() == buffer);
  CHECK(again.payload.capacity() >= expect.size());
  CHECK(again.payload == smaller);
  CHECK(m[1]->payload_pool_stats().reused >= 1);
  // Rank 0's buffers (allocate() and the copy send(span) made) come back once written; the
  // copy may already have reused the first one.
  m[0]->flush(deadline_in(20));
  const auto all_back = [&] {
    const PayloadPool::Stats s = m[0]->payload_pool_stats();
    return s.allocated + s.reused == 2 && s.retained_buffers == s.allocated;
  };
  for (int i = 0; i < 500 && !all_back(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(all_back());
  // Sending to ourselves by move hands the very buffer to our own mailbox.
  Payload self = m[1]->allocate(expect.size());
  std::memcpy(self.data(), expect.data(), expect.size());
  const std::byte* self_buffer = self.data();
  m[1]->send(1, kData, 7, 3, std::move(self));
  const Message mine = m[1]->recv(1, kData, 7, 3, deadline_in(1));
  CHECK(mine.payload.data() == self_buffer);
  CHECK(mine.payload == expect);
}

TEST_CASE("one shared payload goes to several ranks and to ourselves without changing") {
  LogLines log;
  MeshList m = connected(3, log, [](MeshConfig& c) { c.chunk_bytes = kMinChunkBytes; });
  const auto expect = pattern(5 * kMinChunkBytes + 77, 4);
  Payload bytes = m[0]->allocate(expect.size());
  std::memcpy(bytes.data(), expect.data(), expect.size());
  const SharedPayload shared = std::make_shared<const Payload>(std::move(bytes));
  for (int round = 0; round < 2; ++round) {  // queued on two links at once, then again
    for (int dst = 0; dst < 3; ++dst) m[0]->send(dst, kData, 0, uint64_t(round), shared);
  }
  for (int round = 0; round < 2; ++round) {
    for (int dst = 0; dst < 3; ++dst) {
      CAPTURE(dst);
      const Message got = m[dst]->recv(0, kData, 0, uint64_t(round), deadline_in(20));
      CHECK(got.payload == expect);
      CHECK(got.payload.data() != shared->data());  // every receiver owns its copy
    }
  }
  CHECK(*shared == expect);
  m[0]->flush(deadline_in(20));
  for (int i = 0; i < 500 && shared.use_count() > 1; ++i)  // the writers let go of it
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(shared.use_count() == 1);
  check_mentions(
      error_message<std::invalid_argument>([&] { m[0]->send(1, kData, 0, 9, SharedPayload{}); }),
      {"rank 1", "null"});
}

TEST_CASE("four ranks exchange multi-chunk vectors and every rank gets the closed-form sum") {
  LogLines log;
  constexpr int kWorld = 4;
  constexpr std::size_t kCount = 20000;  // 160 kB: three 64 KiB chunks
  MeshList m = connected(kWorld, log, [](MeshConfig& c) { c.chunk_bytes = kMinChunkBytes; });
  std::vector<std::vector<double>> sums(kWorld);
  const auto errors = on_every_rank(kWorld, [&](int r) {
    for (uint64_t it = 0; it < 3; ++it) {
      std::vector<double> mine(kCount);
      for (std::size_t i = 0; i < kCount; ++i)
        mine[i] = double(r + 1) * double(i + 1) * double(it + 1);
      const auto payload = as_payload(mine);
      for (int dst = 0; dst < kWorld; ++dst)
        if (dst != r) m[r]->send(dst, kData, 9, it, payload);
      std::vector<double> sum = mine;
      for (int src = 0; src < kWorld; ++src) {  // rank order: bitwise reproducible
        if (src == r) continue;
        const Message got = m[r]->recv(src, kData, 9, it, deadline_in(20));
        if (got.payload.size() != kCount * sizeof(double)) throw std::runtime_error("bad size");
        std::vector<double> theirs(kCount);
        std::memcpy(theirs.data(), got.payload.data(), got.payload.size());
        for (std::size_t i = 0; i < kCount; ++i) sum[i] += theirs[i];
      }
      if (it == 2) sums[r] = sum;
    }
  });
  for (const auto& e : errors) CHECK_MESSAGE(e.empty(), e);
  for (int r = 0; r < kWorld; ++r) {
    REQUIRE(sums[r].size() == kCount);
    for (std::size_t i : {std::size_t{0}, std::size_t{1234}, kCount - 1})
      CHECK(sums[r][i] == double(i + 1) * 3.0 * kWorld * (kWorld + 1) / 2);
  }
  for (auto& mesh : m) CHECK(mesh->stats(mesh->rank()).messages_sent == 0);
}

TEST_CASE("a high-priority message overtakes a queued 8 MiB low-priority one after one chunk") {
  LogLines log;
  auto pacer = std::make_shared<GatedPacer>();
  MeshList m = connected(2, log, [&](MeshConfig& c) {
    if (c.rank == 0) c.pacer = pacer;
  });
  struct Release {
    GatedPacer& p;
    ~Release() { p.allow(SIZE_MAX); }
  } release{*pacer};
  const auto big = pattern(8u << 20, 3), small = pattern(100, 4);
  m[0]->send(1, kData, 0, 1, big, Priority::low);
  auto calls = pacer->wait_for_calls(1);  // the writer holds low chunk 0 at the pacer
  REQUIRE(calls.size() == 1);
  CHECK(calls[0] == kHeaderBytes + (1u << 20));
  m[0]->send(1, kData + 1, 0, 1, small, Priority::high);
  pacer->allow(2);  // low chunk 0, then whatever the writer picks next
  CHECK(m[1]->recv(0, kData + 1, 0, 1, deadline_in(20)).payload == small);
  calls = pacer->wait_for_calls(3);
  REQUIRE(calls.size() == 3);
  CHECK(calls[1] == kHeaderBytes + small.size());  // the high message went second...
  CHECK(calls[2] == kHeaderBytes + (1u << 20));    // ...and low chunk 1 waits at the gate
  CHECK_THROWS_AS(m[1]->recv(0, kData, 0, 1, deadline_in(0.05)), TimeoutError);
  pacer->allow(SIZE_MAX);
  CHECK(m[1]->recv(0, kData, 0, 1, deadline_in(20)).payload == big);
}

TEST_CASE("unpaced 64 KiB chunks written several per write arrive intact, both priorities") {
  LogLines log;
  MeshList m = connected(2, log, [&](MeshConfig& c) { c.chunk_bytes = kMinChunkBytes; });
  // Sizes around the coalescing bound (4 chunks of 64 KiB per write): 1, 3, 4, 5 and 9 chunks
  // plus odd tails, alternating priorities so the writer switches between queues mid-message.
  const std::vector<std::size_t> sizes = {
      100, 3 << 16, (4 << 16) - 1, 4 << 16, (5 << 16) + 7, (9 << 16) + 12345, 0};
  uint64_t frames_bytes = 0;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const auto chunks = std::max<std::size_t>(1, (sizes[k] + (1u << 16) - 1) >> 16);
    frames_bytes += sizes[k] + chunks * kHeaderBytes;
    m[0]->send(1, kData, k, 7, pattern(sizes[k], static_cast<uint32_t>(k)),
               k % 2 ? Priority::low : Priority::high);
  }
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    CAPTURE(k);
    CHECK(m[1]->recv(0, kData, k, 7, deadline_in(20)).payload ==
          pattern(sizes[k], static_cast<uint32_t>(k)));
  }
  m[0]->flush(deadline_in(20));
  const LinkStats s = m[0]->stats(1);
  CHECK(s.messages_sent == sizes.size());
  CHECK(s.bytes_sent >= frames_bytes);  // plus the handshake's frames
  CHECK(s.bytes_sent < frames_bytes + 4096);
}

TEST_CASE("a pacer sees every application byte in slices of slice_bytes()") {
  LogLines log;
  auto pacer = std::make_shared<CountingPacer>();
  MeshList m = connected(2, log, [&](MeshConfig& c) {
    c.chunk_bytes = kMinChunkBytes;
    if (c.rank == 1) c.pacer = pacer;
  });
  const auto payload = pattern(100000);
  m[1]->send(0, kData, 0, 0, payload);
  CHECK(m[0]->recv(1, kData, 0, 0, deadline_in(20)).payload == payload);
  CHECK(pacer->total == payload.size() + 2 * kHeaderBytes);
  CHECK(pacer->largest == 10000);
}

TEST_CASE("a wrong cluster secret is refused on both sides with clear messages") {
  LogLines log;
  MeshList m = make_meshes(2, log, [](MeshConfig& c) {
    const std::string s =
        c.rank == 0 ? "cluster secret A 0123456789" : "cluster secret B 0123456789";
    for (char ch : s) c.secret.push_back(std::byte(ch));
    c.connect_timeout_s = 1;
  });
  const auto errors = start_all(m);
  check_mentions(errors[1], {"rank 0 (127.0.0.1:", "refused the handshake",
                             "the HMAC of rank 1 does not match the cluster secret of rank 0",
                             "MERCURY_SECRET_FILE"});
  check_mentions(errors[0], {"rendezvous timed out", "rank(s) 1 never connected",
                             "last refused connection", "claiming rank 1",
                             "does not match the cluster secret", "MERCURY_CONNECT_TIMEOUT"});
  check_mentions(log.all(), {"refused connection from 127.0.0.1:"});
}

TEST_CASE("a weak cluster secret is refused at construction, saying how to make a strong one") {
  LogLines log;
  for (const std::string weak : {std::string("k"), std::string(20, ' '), std::string(32, 'a')}) {
    CAPTURE(weak);
    MeshConfig c = base_config(0, 2, log);
    for (char ch : weak) c.secret.push_back(std::byte(ch));
    check_mentions(error_message<std::invalid_argument>([&] { Mesh m(std::move(c)); }),
                   {"MERCURY_SECRET_FILE", "strong", "head -c 32 /dev/urandom | base64"});
  }
}

TEST_CASE("a ShardPlan hash mismatch is refused naming both hashes") {
  LogLines log;
  MeshList m = make_meshes(2, log, [](MeshConfig& c) {
    if (c.rank == 1) c.plan_hash = 0x77;
    c.connect_timeout_s = 1;
  });
  const auto errors = start_all(m);
  check_mentions(errors[1], {"rank 0 (127.0.0.1:", "refused the handshake",
                             "ShardPlan hash 0x0000000000000077 of rank 1",
                             "differs from 0x00000000000000ab of rank 0",
                             "all ranks must run the same model and world size"});
  check_mentions(errors[0], {"rank(s) 1 never connected", "ShardPlan hash"});
}

TEST_CASE(
    "garbage, version skew, huge and silent connections to rank 0 are dropped while "
    "the rendezvous completes") {
  LogLines log;
  MeshList m = make_meshes(2, log, [](MeshConfig& c) { c.op_timeout_s = 1; });
  BackgroundStart rank0(*m[0]);
  const uint16_t port = m[0]->port();

  RawClient silent(port);
  RawClient garbage(port);
  garbage.write(pattern(kHeaderBytes, 99));  // exactly a header: nothing unread, no RST
  check_mentions(garbage.read_error(), {"bad magic"});

  FrameHeader hello;
  hello.type = uint8_t(FrameType::hello);
  auto skew = encode_header(hello);
  skew[4] = std::byte{kProtocolVersion + 1};
  RawClient future(port);
  future.write(skew);
  check_mentions(future.read_error(), {"peer speaks protocol version 3, this build speaks 2"});

  hello.payload_len = 0xFFFFFFFFu;  // announces 4 GiB: refused before any allocation
  hello.message_len = 0xFFFFFFFFu;
  RawClient huge(port);
  huge.write(encode_header(hello));
  check_mentions(huge.read_error(), {"4294967295-byte payload", "protocol frames"});

  rank1_joins(m, rank0);
  CHECK(silent.read_error().empty());  // dropped after op_timeout_s without a word from it
  check_mentions(log.once_mentioning("timed out"),
                 {"bad magic", "version 3", "4294967295", "handshake timed out after 1",
                  "without authenticating"});
}

namespace {

// The raw bytes of one frame: header + payload, as a peer would put them on the wire.
std::vector<std::byte> raw_frame(FrameType type, std::span<const std::byte> payload) {
  FrameHeader h;
  h.type = uint8_t(type);
  h.dst = 0;
  const auto header = encode_header(chunk_header(h, payload, 0, kMaxProtocolPayload));
  std::vector<std::byte> out(header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

struct RawFrame {
  FrameHeader header;
  std::vector<std::byte> payload;
};

// Reads one frame; {} with type 0 when the connection closed first.
RawFrame read_raw_frame(tcp::socket& socket) {
  std::array<std::byte, kHeaderBytes> raw{};
  std::error_code ec;
  asio::read(socket, asio::buffer(raw), ec);
  if (ec) return {};
  const HeaderDecode d = decode_header(raw, {});
  REQUIRE_MESSAGE(d.ok(), d.reason);
  RawFrame f{d.header, std::vector<std::byte>(d.header.payload_len)};
  asio::read(socket, asio::buffer(f.payload), ec);
  return f;
}

std::string text_of(const RawFrame& f) {
  return {reinterpret_cast<const char*>(f.payload.data()), f.payload.size()};
}

}  // namespace

TEST_CASE("an unauthenticated peer learns nothing about the run and cannot hold a rank's slot") {
  LogLines log;
  const std::string secret = "a strong cluster secret, 31 b.";
  MeshList m = make_meshes(2, log, [&](MeshConfig& c) {
    c.run_id = "hidden-run-7";
    for (char ch : secret) c.secret.push_back(std::byte(ch));
    c.op_timeout_s = 2;
    c.connect_timeout_s = 20;
  });
  BackgroundStart rank0(*m[0]);
  const uint16_t port = m[0]->port();
  const std::vector<std::string> secrets_of_the_run = {"hidden-run-7", "00000000000000ab",
                                                       "00000000000000cd", "0xab", "0xcd"};
  // A HELLO with everything wrong but the rank it wants: it gets a bare 32-byte nonce.
  Hello fake{"guess", 0, 1, 2, kDefaultChunkBytes, 1, 2, random_nonce()};
  const auto hello = encode_hello(fake);
  RawClient squatter(port);  // claims rank 1, then never answers the CHALLENGE
  squatter.write(raw_frame(FrameType::hello, hello));
  const RawFrame challenge = read_raw_frame(squatter.socket);
  CHECK(challenge.header.type == uint8_t(FrameType::challenge));
  CHECK(challenge.payload.size() == kNonceBytes);
  // Another answers with a made-up MAC: refused, naming no id and no hash.
  RawClient guesser(port);
  guesser.write(raw_frame(FrameType::hello, hello));
  const RawFrame c2 = read_raw_frame(guesser.socket);
  REQUIRE(c2.header.type == uint8_t(FrameType::challenge));
  Mac guess{};
  guesser.write(raw_frame(FrameType::auth, guess));
  const RawFrame refusal = read_raw_frame(guesser.socket);
  CHECK(refusal.header.type == uint8_t(FrameType::error));
  check_mentions(text_of(refusal), {"does not match the cluster secret"});
  for (const std::string& s : secrets_of_the_run) {
    CAPTURE(s);
    CHECK(text_of(refusal).find(s) == std::string::npos);
  }
  // The real rank 1 joins while the squatter still holds its connection open.
  rank1_joins(m, rank0);
  // The squatter is cut off after the authentication window (min(5 s, op timeout, ...) = 2 s).
  const auto began = Clock::now();
  CHECK(read_raw_frame(squatter.socket).header.type == 0);
  CHECK(Clock::now() - began < std::chrono::seconds(4));
  check_mentions(
      log.once_mentioning("without authenticating"),
      {"claiming rank 1", "without authenticating", "unauthenticated connections get 2 s"});
}

TEST_CASE("a flood of idle connections: the real rank retries and gets in; a timeout names it") {
  SUBCASE("the flood passes: rank 1 joins within the connect timeout") {
    LogLines log;
    MeshList m = make_meshes(2, log, [](MeshConfig& c) {
      c.op_timeout_s = 1;  // unauthenticated connections get 1 s
      c.connect_timeout_s = 20;
    });
    BackgroundStart rank0(*m[0]);
    std::vector<std::unique_ptr<RawClient>> flood;
    for (int i = 0; i < 70; ++i) flood.push_back(std::make_unique<RawClient>(m[0]->port()));
    check_mentions(log.once_mentioning("connection flood"),
                   {"64 handshakes already in progress", "connection flood"});
    // Dropped while the flood holds every slot, retried until it gets in.
    const std::string error1 = start_error(*m[1]);
    const std::string error0 = rank0.join();
    CHECK_MESSAGE(error0.empty(), error0);
    CHECK_MESSAGE(error1.empty(), error1);
  }
  SUBCASE("rank 0 alone under a flood names it when the rendezvous times out") {
    LogLines log;
    MeshList m = make_meshes(2, log, [](MeshConfig& c) {
      c.op_timeout_s = 10;
      c.connect_timeout_s = 6;  // unauthenticated connections get 1.5 s
    });
    BackgroundStart rank0(*m[0]);
    std::vector<std::unique_ptr<RawClient>> flood;
    for (int i = 0; i < 70; ++i) flood.push_back(std::make_unique<RawClient>(m[0]->port()));
    const std::string error0 = rank0.join();
    check_mentions(error0, {"rendezvous timed out", "rank(s) 1 never connected",
                            "connection(s) were dropped unanswered", "64 unauthenticated",
                            "a flood of connections to this port", "the last from 127.0.0.1:"});
  }
}

TEST_CASE("a corrupted payload fails the link with a CRC error naming rank, type and iteration") {
  LogLines log;
  MeshList m = connected(2, log);
  m[1]->send(0, kData + 4, 0, 2, pattern(1000));
  CHECK(m[0]->recv(1, kData + 4, 0, 2, deadline_in(20)).payload == pattern(1000));
  m[1]->corrupt_next_frame_for_testing();
  m[1]->send(0, kData + 4, 0, 3, pattern(1000));
  const std::string e0 =
      error_message<PeerError>([&] { m[0]->recv(1, kData + 4, 0, 3, deadline_in(20)); });
  check_mentions(e0, {"rank 1 (127.0.0.1:", "sent a corrupt frame during read at iteration 3",
                      "payload CRC32C mismatch", "frame type 20", "iteration 3"});
  // rank 1 learns the root cause from rank 0's ERROR frame, blamed on itself.
  try {
    m[1]->recv(0, kData, 0, 99, deadline_in(20));
    FAIL("expected a PeerError");
  } catch (const PeerError& e) {
    CHECK(e.peer() == 1);
    check_mentions(e.what(), {"rank 0 (127.0.0.1:", "aborted: rank 1", "corrupt frame"});
  }
  // The failure is sticky: sends and later receives rethrow it.
  CHECK(error_message<PeerError>([&] { m[0]->send(1, kData, 0, 0, pattern(1)); }) == e0);
}

TEST_CASE("a header announcing 2^40 bytes fails the link before anything is allocated") {
  LogLines log;
  MeshList m = connected(2, log, [](MeshConfig& c) {
    if (c.rank == 1)
      c.fault_hook = [](FrameHeader& h, std::vector<std::byte>&) {
        if (h.iteration == 5) h.message_len = uint64_t{1} << 40;
      };
  });
  m[1]->send(0, kData, 0, 5, pattern(10));
  try {
    m[0]->recv(1, kData, 0, 5, deadline_in(20));
    FAIL("expected a PeerError");
  } catch (const PeerError& e) {
    CHECK(e.peer() == 1);
    check_mentions(e.what(), {"rank 1", "malformed frame", "message of 1099511627776 bytes",
                              "MERCURY_MAX_FRAME"});
  }
}

TEST_CASE("a frozen peer fails with a heartbeat timeout naming it, and learns why afterwards") {
  LogLines log;
  MeshList m = connected(2, log, [](MeshConfig& c) {
    c.heartbeat_interval_s = 0.05;
    c.heartbeat_timeout_s = 0.5;
  });
  m[1]->stall_io_for_testing(1.5);
  const auto begin = Clock::now();
  try {
    m[0]->recv(1, kData, 0, 0, deadline_in(20));
    FAIL("expected a PeerError");
  } catch (const TimeoutError& e) {
    FAIL("a heartbeat failure is a PeerError, not a TimeoutError: " << e.what());
  } catch (const PeerError& e) {
    CHECK(e.peer() == 1);
    check_mentions(e.what(), {"heartbeat timeout: rank 1 (127.0.0.1:", "sent nothing for",
                              "MERCURY_HEARTBEAT_TIMEOUT (now 0.5 s)"});
  }
  CHECK(Clock::now() - begin < std::chrono::seconds(5));
  const std::string e1 =
      error_message<PeerError>([&] { m[1]->recv(0, kData, 0, 0, deadline_in(20)); });
  check_mentions(e1, {"rank 0 (127.0.0.1:", "aborted: heartbeat timeout: rank 1"});
}

TEST_CASE("a peer that dies is reported by every other rank as a PeerError naming it") {
  LogLines log;
  MeshList m = connected(4, log);
  m[2]->send(0, kData, 0, 6, pattern(5));
  CHECK(m[0]->recv(2, kData, 0, 6, deadline_in(20)).payload == pattern(5));
  m[2].reset();  // sockets closed without BYE, like a killed process
  for (int r : {0, 1, 3}) {
    CAPTURE(r);
    try {
      m[r]->recv(2, kData, 0, 7, deadline_in(20));
      FAIL("expected a PeerError");
    } catch (const TimeoutError& e) {
      FAIL("expected a PeerError, got a timeout: " << e.what());
    } catch (const PeerError& e) {
      CHECK(e.peer() == 2);
      check_mentions(e.what(), {"rank 2 (127.0.0.1:", "connection during read"});
    }
  }
}

TEST_CASE("dropped connections (fault injection) are reported by the peer") {
  LogLines log;
  MeshList m = connected(2, log);
  m[1]->drop_connections_for_testing();
  check_mentions(error_message<PeerError>([&] { m[1]->send(0, kData, 0, 0, pattern(1)); }),
                 {"rank 1 dropped its connections"});
  const std::string e0 =
      error_message<PeerError>([&] { m[0]->recv(1, kData, 0, 0, deadline_in(20)); });
  check_mentions(e0, {"rank 1 (127.0.0.1:", "during read"});
}

TEST_CASE("recv past its deadline throws TimeoutError naming what is missing; the mesh lives on") {
  LogLines log;
  MeshList m = connected(2, log);
  m[1]->send(0, kData, 1, 8, pattern(3));
  const auto text =
      error_message<TimeoutError>([&] { m[0]->recv(1, kData + 14, 2, 8, deadline_in(0.1)); });
  check_mentions(text, {"timed out after", "type 30 key 2 iteration 8", "from rank 1 (127.0.0.1:"});
  CHECK(m[0]->recv(1, kData, 1, 8, deadline_in(20)).payload == pattern(3));
  m[0]->send(0, kData, 0, 0, pattern(4));  // to itself: straight to the mailbox
  CHECK(m[0]->recv(0, kData, 0, 0, deadline_in(1)).payload == pattern(4));
}

TEST_CASE("close() exchanges BYE cleanly and later calls fail with a clear error") {
  LogLines log;
  MeshList m = connected(3, log);
  m[0]->send(2, kData, 0, 1, pattern(3 << 20));
  const auto errors = on_every_rank(3, [&](int r) {
    if (r == 2) m[2]->recv(0, kData, 0, 1, deadline_in(20));
    m[r]->close(deadline_in(20));
  });
  for (const auto& e : errors) CHECK_MESSAGE(e.empty(), e);
  CHECK(m[0]->stats(2).messages_sent == 1);
  check_mentions(error_message<PeerError>([&] { m[0]->send(1, kData, 0, 0, pattern(1)); }),
                 {"closed transport"});
  m[0]->close(deadline_in(1));  // idempotent
  CHECK(log.all().find("aborted") == std::string::npos);
}

TEST_CASE("a rank whose peer said BYE gets a clear error instead of waiting forever") {
  LogLines log;
  MeshList m = connected(2, log, [](MeshConfig& c) { c.op_timeout_s = 0.5; });
  std::thread closer([&] {
    try {
      m[1]->close(deadline_in(5));
    } catch (...) {  // rank 0 never says BYE back in time: a timeout is expected
    }
  });
  check_mentions(error_message<PeerError>([&] { m[0]->recv(1, kData, 0, 0, deadline_in(20)); }),
                 {"rank 1", "said BYE"});
  closer.join();
}

TEST_CASE("rendezvous deadlines name the missing rank and the knob") {
  LogLines log;
  SUBCASE("rank 0 alone") {
    MeshList m = make_meshes(2, log, [](MeshConfig& c) { c.connect_timeout_s = 0.3; });
    const auto text = error_message<TimeoutError>([&] { m[0]->start(); });
    check_mentions(text, {"rendezvous timed out after 0.3 s", "rank(s) 1 never connected",
                          "MERCURY_CONNECT_TIMEOUT (now 0.3 s)"});
  }
  SUBCASE("nobody at MASTER_PORT") {
    uint16_t port = 0;
    {
      asio::io_context io;
      tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
      port = a.local_endpoint().port();
    }
    MeshConfig c = base_config(1, 2, log);
    c.master_port = port;
    c.connect_timeout_s = 0.4;
    Mesh mesh(c);
    const auto text = error_message<TimeoutError>([&] { mesh.start(); });
    check_mentions(text, {"could not connect to rank 0 (127.0.0.1:" + std::to_string(port) + ")",
                          "attempts", "MERCURY_CONNECT_TIMEOUT (now 0.4 s)"});
  }
}

TEST_CASE("configuration errors name the field and the knob") {
  LogLines log;
  MeshConfig c = base_config(1, 2, log);
  c.chunk_bytes = 1000;
  check_mentions(error_message<std::invalid_argument>([&] { Mesh m(c); }),
                 {"chunk_bytes (MERCURY_CHUNK) = 1000", "65536..4194304"});
  c = base_config(1, 2, log);
  c.run_id = "has a/slash";  // run ids name /dev/shm files: the same rule as MERCURY_RUN_ID
  check_mentions(error_message<std::invalid_argument>([&] { Mesh m(c); }),
                 {"run_id (MERCURY_RUN_ID) 'has a/slash'", "[A-Za-z0-9._-]"});
  c.run_id = std::string(65, 'a');
  check_mentions(error_message<std::invalid_argument>([&] { Mesh m(c); }), {"1..64 characters"});
  c = base_config(1, 2, log);
  c.bind_addr = "0.0.0.0";
  check_mentions(error_message<std::invalid_argument>([&] { Mesh m(c); }),
                 {"without a cluster secret", "MERCURY_SECRET_FILE", "MERCURY_INSECURE"});
  c.insecure = true;
  Mesh allowed(c);
  CHECK(allowed.port() != 0);
  c = base_config(3, 2, log);
  check_mentions(error_message<std::invalid_argument>([&] { Mesh m(c); }), {"rank 3 (RANK)"});
  c = base_config(0, 1, log);
  Mesh single(c);
  single.start();
  single.send(0, kData, 0, 0, pattern(2));
  CHECK(single.recv(0, kData, 0, 0, deadline_in(1)).payload == pattern(2));
  single.close(deadline_in(1));
}
