// net::Payload and net::PayloadPool (net/payload.hpp): uninitialised buffers, value semantics,
// recycling (same buffer back, a larger one reused for a smaller message, limits, small sizes
// bypass the pool), concurrent use from many threads, pooled reassembly that never shows an
// earlier message's bytes, and the copy-and-hash pass send() uses (chunk_crcs).
#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "mercury/io/crc32c.hpp"
#include "net/frame.hpp"
#include "net/payload.hpp"

namespace {

using namespace mercury::net;

constexpr std::size_t kBig = PayloadPool::kMinPooledBytes * 4;  // 256 KiB: pooled

std::vector<std::byte> pattern(std::size_t n, unsigned seed = 1) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::byte((i * 131 + seed * 7 + (i >> 11)) & 0xFF);
  return out;
}

}  // namespace

TEST_CASE("payload: sizes, copies, moves and content comparison") {
  const Payload empty;
  CHECK(empty.empty());
  CHECK(empty.size() == 0);
  CHECK(empty.data() == nullptr);
  CHECK(empty == std::vector<std::byte>{});

  const auto bytes = pattern(1000);
  Payload a = Payload::copy_of(bytes);
  CHECK(a.size() == 1000);
  CHECK(!a.pooled());
  CHECK(a == bytes);
  CHECK(bytes == a);  // either order
  CHECK(a.to_vector() == bytes);
  CHECK(a != pattern(1000, 2));
  CHECK(a != pattern(999));

  Payload b = a;  // deep copy
  CHECK(b == a);
  CHECK(b.data() != a.data());
  b[0] ^= std::byte{1};
  CHECK(b != a);
  CHECK(a == bytes);

  const std::byte* buffer = a.data();
  Payload c = std::move(a);  // steals the buffer
  CHECK(c.data() == buffer);
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  CHECK(c == bytes);
  c = {};
  CHECK(c.empty());

  Payload d(16);  // unspecified content, exactly 16 bytes
  CHECK(d.size() == 16);
  CHECK(d.span().size() == 16);
  const std::span<const std::byte> view = d;  // a Payload is a contiguous range
  CHECK(view.data() == d.data());
}

TEST_CASE("payload pool: a returned buffer is handed out again, also for a smaller message") {
  auto pool = PayloadPool::create();
  const std::byte* first = nullptr;
  {
    Payload p = pool->allocate(kBig);
    CHECK(p.pooled());
    CHECK(p.size() == kBig);
    CHECK(p.capacity() >= kBig);
    first = p.data();
    std::memset(p.data(), 0xAB, p.size());
  }
  CHECK(pool->stats().retained_buffers == 1);
  CHECK(pool->stats().retained_bytes >= kBig);
  {
    Payload again = pool->allocate(kBig);
    CHECK(again.data() == first);
    CHECK(pool->stats().retained_buffers == 0);
  }
  {
    // More than half the capacity: the larger buffer is fine, size() is what was asked for.
    Payload smaller = pool->allocate(kBig * 3 / 4);
    CHECK(smaller.data() == first);
    CHECK(smaller.size() == kBig * 3 / 4);
    CHECK(smaller.capacity() >= kBig);
    const auto fresh = pattern(smaller.size(), 5);
    std::memcpy(smaller.data(), fresh.data(), fresh.size());
    CHECK(smaller == fresh);  // comparison covers size() bytes, not the stale tail
  }
  {
    // Less than half: a new buffer (a big one is not tied up by a small message).
    Payload small = pool->allocate(kBig / 4);
    CHECK(small.data() != first);
  }
  const PayloadPool::Stats s = pool->stats();
  CHECK(s.reused == 2);
  CHECK(s.allocated == 2);
  CHECK(s.retained_buffers == 2);
}

TEST_CASE("payload pool: small sizes bypass it, limits are kept, clear and 0 free everything") {
  auto pool = PayloadPool::create(3 * kBig);
  {
    Payload tiny = pool->allocate(10);
    CHECK(!tiny.pooled());
    CHECK(tiny.size() == 10);
  }
  CHECK(pool->stats().retained_buffers == 0);
  {
    std::vector<Payload> held;
    for (int i = 0; i < 5; ++i) held.push_back(pool->allocate(kBig));
  }  // five come back, three fit under the limit
  CHECK(pool->stats().retained_buffers == 3);
  CHECK(pool->stats().retained_bytes <= pool->max_retained_bytes());
  pool->clear();
  CHECK(pool->stats().retained_buffers == 0);
  CHECK(pool->stats().retained_bytes == 0);

  Payload outliving = pool->allocate(kBig);
  Payload copy = outliving;  // a copy of a pooled payload comes from the same pool
  CHECK(copy.pooled());
  pool->set_max_retained_bytes(0);
  copy = {};
  CHECK(pool->stats().retained_buffers == 0);  // no longer kept
  std::weak_ptr<PayloadPool> weak = pool;
  pool.reset();
  CHECK(!weak.expired());  // the payload keeps its pool alive...
  outliving = {};
  CHECK(weak.expired());  // ...until it is gone
}

TEST_CASE("payload pool: threads allocate, fill, check and return buffers concurrently") {
  auto pool = PayloadPool::create(4 * kBig);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::size_t n =
            kBig / 2 + 1 + static_cast<std::size_t>((t * 7919 + i * 104729) % kBig);
        Payload p = pool->allocate(n);
        const auto fill = static_cast<unsigned char>(t * 31 + i);
        std::memset(p.data(), fill, p.size());
        std::this_thread::yield();
        for (std::size_t k = 0; k < p.size(); k += 4093)
          if (p[k] != std::byte{fill}) ++bad;
        if (i % 3 == 0) {
          Payload handed_over = std::move(p);  // destroyed on this thread a little later
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(bad == 0);
  const PayloadPool::Stats s = pool->stats();
  CHECK(s.reused > 0);
  CHECK(s.retained_bytes <= 4 * kBig);
}

TEST_CASE("pooled reassembly: a recycled buffer holds exactly the new message") {
  const uint32_t chunk = kMinChunkBytes;
  auto pool = PayloadPool::create();
  Reassembler r(8, pool);
  FrameHeader base;
  base.type = kFirstAppType;
  const auto deliver = [&](const std::vector<std::byte>& message, uint64_t iteration) {
    base.iteration = iteration;
    std::optional<Message> done;
    for (const auto& frame : encode_message(base, message, chunk)) {
      const auto d =
          decode_header(std::span(frame).first<kHeaderBytes>(), {chunk, uint64_t{1} << 24});
      REQUIRE_MESSAGE(d.ok(), d.reason);
      done = r.add(d.header, std::span(frame).subspan(kHeaderBytes));
    }
    REQUIRE(done);
    return std::move(done->payload);
  };
  const auto big = pattern(3 * chunk + 5, 1);
  Payload first = deliver(big, 1);
  CHECK(first == big);
  CHECK(first.pooled());
  const std::byte* buffer = first.data();
  first = {};  // back to the pool, still holding `big`'s bytes
  const auto smaller = pattern(2 * chunk + 9, 2);
  const Payload second = deliver(smaller, 2);
  CHECK(second.data() == buffer);  // recycled...
  CHECK(second.size() == smaller.size());
  CHECK(second == smaller);  // ...and every byte of it is the new message's
  CHECK(pool->stats().reused == 1);

  // Without a pool a Reassembler allocates per message (still never zero-filling).
  Reassembler plain;
  base.iteration = 3;
  std::optional<Message> done;
  for (const auto& frame : encode_message(base, smaller, chunk)) {
    const auto d = decode_header(std::span(frame).first<kHeaderBytes>(), {chunk, 1u << 24});
    done = plain.add(d.header, std::span(frame).subspan(kHeaderBytes));
  }
  REQUIRE(done);
  CHECK(!done->payload.pooled());
  CHECK(done->payload == smaller);
}

TEST_CASE("chunk_crcs: every chunk's CRC, with or without copying, equals chunk_header's") {
  const uint32_t chunk = kMinChunkBytes;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{24} << 10,
                           std::size_t{chunk}, std::size_t{3} * chunk + 12345}) {
    CAPTURE(size);
    const auto message = pattern(size, 3);
    const std::vector<uint32_t> crcs = chunk_crcs(message, chunk);
    REQUIRE(crcs.size() == chunk_count_for(size, chunk));
    std::vector<std::byte> copy(size);
    CHECK(chunk_crcs(message, chunk, copy.data()) == crcs);
    CHECK(copy == message);
    FrameHeader base;
    base.type = kFirstAppType;
    for (uint32_t i = 0; i < crcs.size(); ++i) {
      const FrameHeader computed = chunk_header(base, message, i, chunk);
      CHECK(computed.payload_crc == crcs[i]);
      const FrameHeader given = chunk_header(base, message.size(), i, chunk, crcs[i]);
      CHECK(given.payload_len == computed.payload_len);
      CHECK(given.chunk_count == computed.chunk_count);
      CHECK(given.message_len == computed.message_len);
      CHECK(encode_header(given) == encode_header(computed));
      CHECK(check_payload_crc(computed, crcs[i]).empty());
    }
  }
  FrameHeader h;
  h.type = kFirstAppType;
  h.payload_crc = 1;
  CHECK(check_payload_crc(h, 2).find("payload CRC32C mismatch") != std::string::npos);
}

TEST_CASE("crc32c: every hardware path equals the portable tables on long input") {
  // Lengths around the folding step (256 bytes), the three-way block sizes (3 x 256 and
  // 3 x 8192 bytes) and every tail size, odd alignments, and chaining through a seed. The
  // three-way CRC-instruction path and the carry-less folding path are each checked directly
  // when this CPU has them (crc32c() picks one by length and CPU).
  namespace detail = mercury::io::crc32c_detail;
  const auto data = pattern((std::size_t{3} << 16) + 64, 7);
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const auto portable = [&](std::size_t offset, std::size_t n, uint32_t seed) {
    return mercury::io::crc32c_portable(bytes + offset, n, seed);
  };
  for (std::size_t n : {std::size_t{512}, std::size_t{513}, std::size_t{527}, std::size_t{575},
                        std::size_t{767}, std::size_t{768}, std::size_t{769}, std::size_t{1000},
                        std::size_t{24575}, std::size_t{24576}, std::size_t{24577},
                        std::size_t{2 * 24576 + 768 + 13}, std::size_t{3} << 16}) {
    for (std::size_t offset : {0, 1, 5}) {
      CAPTURE(n);
      CAPTURE(offset);
      for (uint32_t seed : {0u, 0x12345678u}) {
        const uint32_t want = portable(offset, n, seed);
        CHECK(mercury::io::crc32c(bytes + offset, n, seed) == want);
#if defined(MERCURY_CRC32C_X86) || defined(MERCURY_CRC32C_ARM)
        if (detail::hardware_available())
          CHECK(~detail::hardware(bytes + offset, n, ~seed) == want);
#endif
#if defined(MERCURY_CRC32C_X86)
        if (detail::folding_available()) CHECK(~detail::folded(bytes + offset, n, ~seed) == want);
#endif
      }
    }
  }
  const std::size_t total = std::size_t{3} << 16;
  const uint32_t whole = mercury::io::crc32c_portable(bytes, total);
  for (std::size_t split :
       {std::size_t{1}, std::size_t{600}, std::size_t{24577}, std::size_t{100000}}) {
    CAPTURE(split);
    CHECK(mercury::io::crc32c(bytes + split, total - split, mercury::io::crc32c(bytes, split)) ==
          whole);
  }
#if defined(MERCURY_CRC32C_X86)
  MESSAGE("carry-less folding: " << detail::folding_available());
#endif
}
