// The wire format (net/frame.hpp) and handshake crypto (net/auth.hpp): exact byte layout, every
// header validation failure in order and with its message, chunking and reassembly, HMAC known
// answers and cluster-secret files.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "file_test_support.hpp"
#include "net/auth.hpp"
#include "net/frame.hpp"

namespace {

using namespace mercury::net;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::TempDir;
using mercury::testing::write_bytes;

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> out;
  for (char c : s) out.push_back(std::byte(c));
  return out;
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed = 1) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::byte((i * 131 + seed * 7 + (i >> 9)) & 0xFF);
  return out;
}

std::string hex_of(std::span<const std::byte> b) {
  std::string s;
  for (std::byte x : b) s += frame_detail::hex(std::to_integer<uint8_t>(x), 2).substr(2);
  return s;
}

FrameHeader app_header(uint64_t message_len, uint32_t chunk_bytes = kMinChunkBytes) {
  FrameHeader h;
  h.type = kFirstAppType;
  h.src = 1;
  h.dst = 2;
  h.iteration = 7;
  h.key = 3;
  const std::vector<std::byte> payload(message_len);
  return chunk_header(h, payload, 0, chunk_bytes);
}

// Encodes h, applies `edit` to the bytes, re-seals the header CRC unless told not to, decodes.
template <typename Edit>
HeaderDecode decode_edited(const FrameHeader& h, Edit edit, bool reseal = true,
                           FrameLimits limits = {kMinChunkBytes, 1u << 20}) {
  auto b = encode_header(h);
  edit(b);
  if (reseal) frame_detail::put_le(&b[60], mercury::io::crc32c(b.data(), 60), 4);
  return decode_header(b, limits);
}

}  // namespace

TEST_CASE("the frame header is 64 little-endian bytes at fixed offsets") {
  FrameHeader h;
  h.type = 17;
  h.flags = 1;
  h.src = 0x01020304;
  h.dst = 0x05060708;
  h.run_epoch = 9;
  h.chunk_index = 2;
  h.chunk_count = 5;
  h.payload_len = 0x10000;
  h.iteration = 0x1122334455667788ull;
  h.key = 0xA1A2A3A4A5A6A7A8ull;
  h.message_len = 0x48000;
  h.payload_crc = 0xDEADBEEF;
  const auto b = encode_header(h);
  CHECK(hex_of(std::span(b).first(8)) == "4d52435902001101");  // "MRCY", v2, type 17, flags 1
  CHECK(hex_of(std::span(b).subspan(8, 8)) == "0403020108070605");
  CHECK(hex_of(std::span(b).subspan(32, 8)) == "8877665544332211");
  CHECK(hex_of(std::span(b).subspan(56, 4)) == "efbeadde");
  CHECK(frame_detail::get_le(&b[60], 4) == mercury::io::crc32c(b.data(), 60));

  const HeaderDecode d = decode_header(b, {kMinChunkBytes, 1u << 20});
  REQUIRE_MESSAGE(d.ok(), d.reason);
  CHECK(d.header.type == 17);
  CHECK(d.header.flags == 1);
  CHECK(d.header.src == h.src);
  CHECK(d.header.dst == h.dst);
  CHECK(d.header.run_epoch == 9);
  CHECK(d.header.chunk_index == 2);
  CHECK(d.header.chunk_count == 5);
  CHECK(d.header.payload_len == 0x10000);
  CHECK(d.header.iteration == h.iteration);
  CHECK(d.header.key == h.key);
  CHECK(d.header.message_len == h.message_len);
  CHECK(d.header.payload_crc == 0xDEADBEEF);
  CHECK(encode_header(d.header) == b);
}

TEST_CASE("header decoding names each violation, checked in the documented order") {
  const FrameHeader h = app_header(100);
  REQUIRE(decode_edited(h, [](auto&) {}).ok());

  SUBCASE("magic, with the bytes found") {
    const auto d = decode_edited(h, [](auto& b) {
      b[0] = std::byte('G'), b[1] = std::byte('E'), b[2] = std::byte('T'), b[3] = std::byte(' ');
      b[4] = std::byte(9);  // a version error too, but magic comes first
    });
    CHECK(d.fault == FrameFault::bad_magic);
    check_mentions(d.reason, {"bad magic", "4d 52 43 59", "found 47 45 54 20"});
  }
  SUBCASE("version skew, before the CRC") {
    const auto d = decode_edited(
        h, [](auto& b) { b[4] = std::byte(kProtocolVersion + 1); }, false);
    CHECK(d.fault == FrameFault::version_skew);
    check_mentions(d.reason, {"peer speaks protocol version 3, this build speaks 2"});
  }
  SUBCASE("header CRC") {
    const auto d = decode_edited(
        h, [](auto& b) { b[33] ^= std::byte(1); }, false);
    CHECK(d.fault == FrameFault::bad_header_crc);
    check_mentions(d.reason, {"header CRC32C mismatch", "header says 0x"});
  }
  SUBCASE("unknown type") {
    for (uint8_t type : {0, 10, 15}) {
      const auto d = decode_edited(h, [&](auto& b) { b[6] = std::byte(type); });
      CHECK(d.fault == FrameFault::unknown_type);
      check_mentions(d.reason, {"unknown frame type " + std::to_string(type)});
    }
  }
  SUBCASE("chunk index not below the chunk count") {
    const auto d = decode_edited(h, [](auto& b) { frame_detail::put_le(&b[20], 1, 4); });
    CHECK(d.fault == FrameFault::bad_chunk_index);
    check_mentions(d.reason, {"chunk index 1 is not below the chunk count 1"});
  }
  SUBCASE("payload longer than the chunk size") {
    const auto d =
        decode_edited(h, [](auto& b) { frame_detail::put_le(&b[28], kMinChunkBytes + 1, 4); });
    CHECK(d.fault == FrameFault::chunk_too_large);
    check_mentions(d.reason, {"65537-byte payload", "limit is 65536"});
  }
  SUBCASE("protocol frames are capped much lower than the 4 GiB a u32 allows") {
    FrameHeader p;
    p.type = uint8_t(FrameType::hello);
    const auto d = decode_edited(p, [](auto& b) {
      frame_detail::put_le(&b[28], 0xFFFFFFFFu, 4);
      frame_detail::put_le(&b[48], 0xFFFFFFFFu, 8);
    });
    CHECK(d.fault == FrameFault::chunk_too_large);
    check_mentions(d.reason, {"HELLO", "4294967295-byte payload", "protocol frames"});
  }
  SUBCASE("a message of 2^40 bytes is refused before anything is allocated") {
    const auto d =
        decode_edited(h, [](auto& b) { frame_detail::put_le(&b[48], uint64_t{1} << 40, 8); });
    CHECK(d.fault == FrameFault::message_too_large);
    check_mentions(d.reason, {"1099511627776 bytes", "limit is 1048576", "MERCURY_MAX_FRAME"});
  }
  SUBCASE("chunk count inconsistent with the message length") {
    const auto d = decode_edited(h, [](auto& b) {
      frame_detail::put_le(&b[24], 3, 4);
      frame_detail::put_le(&b[48], 100000, 8);  // needs 2 chunks of 64 KiB
    });
    CHECK(d.fault == FrameFault::inconsistent_length);
    check_mentions(d.reason, {"has 2 chunk(s)", "the header says 3"});
  }
  SUBCASE("payload length inconsistent with the chunk's place in the message") {
    const auto d = decode_edited(h, [](auto& b) { frame_detail::put_le(&b[28], 99, 4); });
    CHECK(d.fault == FrameFault::inconsistent_length);
    check_mentions(d.reason, {"must carry 100 bytes", "the header says 99"});
  }
  SUBCASE("a multi-chunk protocol frame") {
    FrameHeader p;
    p.type = uint8_t(FrameType::error);
    const auto d = decode_edited(p, [](auto& b) { frame_detail::put_le(&b[24], 2, 4); });
    CHECK(d.fault == FrameFault::inconsistent_length);
  }
}

TEST_CASE("payload CRC is checked against the header and names the frame") {
  const auto payload = pattern(100);
  FrameHeader base;
  base.type = 20;
  base.iteration = 3;
  FrameHeader h = chunk_header(base, payload, 0, kMinChunkBytes);
  CHECK(check_payload(h, payload).empty());
  auto bad = payload;
  bad[50] ^= std::byte(0x80);
  check_mentions(check_payload(h, bad),
                 {"payload CRC32C mismatch", "frame type 20", "iteration 3", "chunk 0 of 1"});
}

TEST_CASE("chunking and reassembly restore messages of every size class") {
  const uint32_t chunk = kMinChunkBytes;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{chunk},
                           std::size_t{chunk} + 1, std::size_t{5} * chunk + 17}) {
    CAPTURE(size);
    const auto message = pattern(size, static_cast<unsigned>(size));
    FrameHeader base;
    base.type = kFirstAppType + 1;
    base.src = 4;
    base.key = 99;
    base.iteration = 12;
    const auto frames = encode_message(base, message, chunk);
    CHECK(frames.size() == chunk_count_for(size, chunk));
    Reassembler r;
    std::optional<Message> done;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto d = decode_header(std::span(frames[i]).first<kHeaderBytes>(), {chunk, 1u << 24});
      REQUIRE_MESSAGE(d.ok(), d.reason);
      const auto payload = std::span(frames[i]).subspan(kHeaderBytes);
      CHECK(check_payload(d.header, payload).empty());
      CHECK(!done);
      done = r.add(d.header, payload);
    }
    REQUIRE(done);
    CHECK(done->src == 4);
    CHECK(done->type == kFirstAppType + 1);
    CHECK(done->key == 99);
    CHECK(done->iteration == 12);
    CHECK(done->payload == message);
    CHECK(r.partial_messages() == 0);
  }
}

TEST_CASE("interleaved streams reassemble independently") {
  const uint32_t chunk = kMinChunkBytes;
  const auto a = pattern(3 * chunk, 1), b = pattern(2 * chunk, 2);
  FrameHeader ha, hb;
  ha.type = hb.type = kFirstAppType;
  ha.key = 1;
  hb.key = 2;
  Reassembler r;
  CHECK(!r.add(chunk_header(ha, a, 0, chunk), chunk_of(a, 0, chunk)));
  CHECK(!r.add(chunk_header(hb, b, 0, chunk), chunk_of(b, 0, chunk)));
  CHECK(!r.add(chunk_header(ha, a, 1, chunk), chunk_of(a, 1, chunk)));
  const auto mb = r.add(chunk_header(hb, b, 1, chunk), chunk_of(b, 1, chunk));
  REQUIRE(mb);
  CHECK(mb->payload == b);
  const auto ma = r.add(chunk_header(ha, a, 2, chunk), chunk_of(a, 2, chunk));
  REQUIRE(ma);
  CHECK(ma->payload == a);
}

TEST_CASE("reassembly rejects broken chunk streams") {
  const uint32_t chunk = kMinChunkBytes;
  const auto m = pattern(3 * chunk);
  FrameHeader base;
  base.type = kFirstAppType;
  base.iteration = 5;
  const auto add = [&](Reassembler& r, uint32_t i) {
    return r.add(chunk_header(base, m, i, chunk), chunk_of(m, i, chunk));
  };
  SUBCASE("a later chunk without chunk 0") {
    Reassembler r;
    check_mentions(error_message<FrameError>([&] { add(r, 1); }),
                   {"chunk 1 of 3", "iteration 5", "without chunk 0"});
  }
  SUBCASE("out of order") {
    Reassembler r;
    add(r, 0);
    check_mentions(error_message<FrameError>([&] { add(r, 2); }),
                   {"out of order", "expected chunk 1"});
  }
  SUBCASE("a restart while incomplete") {
    Reassembler r;
    add(r, 0);
    check_mentions(error_message<FrameError>([&] { add(r, 0); }),
                   {"previous one", "incomplete at chunk 1 of 3"});
  }
  SUBCASE("a changed shape") {
    Reassembler r;
    add(r, 0);
    FrameHeader h = chunk_header(base, m, 1, chunk);
    h.message_len += 1;
    check_mentions(error_message<FrameError>([&] { r.add(h, chunk_of(m, 1, chunk)); }),
                   {"changes the message shape"});
  }
  SUBCASE("an overrun") {
    Reassembler r;
    add(r, 0);
    add(r, 1);
    FrameHeader h = chunk_header(base, m, 2, chunk);
    h.payload_len = chunk + 1;
    const std::vector<std::byte> big(chunk + 1);
    check_mentions(error_message<FrameError>([&] { r.add(h, big); }), {"overruns its message"});
  }
  SUBCASE("too many incomplete messages") {
    Reassembler r(2);
    for (uint64_t k = 0; k < 2; ++k) {
      FrameHeader h = base;
      h.key = k;
      r.add(chunk_header(h, m, 0, chunk), chunk_of(m, 0, chunk));
    }
    FrameHeader h = base;
    h.key = 9;
    check_mentions(error_message<FrameError>(
                       [&] { r.add(chunk_header(h, m, 0, chunk), chunk_of(m, 0, chunk)); }),
                   {"at most 2 allowed"});
  }
}

TEST_CASE("HMAC-SHA256 matches RFC 4231 test case 2 and compares in constant time") {
  const Mac mac = hmac_sha256(bytes_of("Jefe"), bytes_of("what do ya want for nothing?"));
  CHECK(hex_of(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const Mac empty_key = hmac_sha256({}, bytes_of("what do ya want for nothing?"));
  CHECK(!macs_equal(mac, empty_key));
  CHECK(macs_equal(mac, hmac_sha256(bytes_of("Jefe"), bytes_of("what do ya want for nothing?"))));
  CHECK(random_nonce() != random_nonce());
}

TEST_CASE("handshake messages round-trip, are parsed strictly and bind both roles") {
  Hello h{"run-a", 2, 1, 4, kDefaultChunkBytes, 0x1234, 0x5678, random_nonce()};
  const auto bytes = encode_hello(h);
  const Hello back = decode_hello(bytes);
  CHECK(back.run_id == "run-a");
  CHECK(back.rank == 1);
  CHECK(back.world == 4);
  CHECK(back.plan_hash == 0x1234);
  CHECK(back.nonce == h.nonce);
  check_mentions(
      error_message<FrameError>([&] { decode_hello(std::span(bytes).first(bytes.size() - 1)); }),
      {"HELLO payload", "truncated"});
  auto longer = bytes;
  longer.push_back(std::byte(0));
  check_mentions(error_message<FrameError>([&] { decode_hello(longer); }),
                 {"HELLO payload", "expected", "found"});

  Hello ours = h;
  ours.rank = 0;
  CHECK(hello_mismatch(h, ours).empty());
  Hello other = h;
  other.plan_hash = 0x9999;
  check_mentions(hello_mismatch(other, ours),
                 {"ShardPlan hash 0x0000000000009999 of rank 1",
                  "differs from 0x0000000000001234 of rank 0", "same model and world size"});
  other = h;
  other.world = 3;
  check_mentions(hello_mismatch(other, ours), {"world size 3", "WORLD_SIZE"});

  // CHALLENGE is a bare nonce; WELCOME carries the server's Hello and MAC.
  const Nonce nonce = random_nonce();
  CHECK(decode_challenge(nonce) == nonce);
  check_mentions(error_message<FrameError>([&] { decode_challenge(bytes); }),
                 {"CHALLENGE payload", "expected", "found"});
  const auto secret = bytes_of("a strong shared secret, 32 bytes");
  const Mac server = server_mac(secret, bytes, nonce, ours);
  const Mac client = client_mac(secret, bytes, nonce);
  CHECK(!macs_equal(server, client));
  CHECK(!macs_equal(server, server_mac(bytes_of("another strong secret!"), bytes, nonce, ours)));
  CHECK(!macs_equal(client, client_mac(secret, bytes, random_nonce())));  // bound to the nonce
  Hello changed = ours;
  changed.plan_hash ^= 1;
  CHECK(!macs_equal(server, server_mac(secret, bytes, nonce, changed)));  // and to the Hello
  const auto welcome = encode_welcome({ours, server});
  const Welcome back_w = decode_welcome(welcome);
  CHECK(back_w.hello.plan_hash == ours.plan_hash);
  CHECK(back_w.mac == server);
  check_mentions(error_message<FrameError>(
                     [&] { decode_welcome(std::span(welcome).first(welcome.size() - 1)); }),
                 {"WELCOME payload", "truncated"});
}

TEST_CASE("cluster secret files: one trailing newline stripped, bad files named") {
  TempDir dir;
  const auto write = [&](const std::string& name, const std::string& text) {
    write_bytes(dir.file(name), std::vector<uint8_t>(text.begin(), text.end()));
    return dir.file(name);
  };
  const std::string good = "q8Zr1cYh0Vn3XwKb5tLm";
  CHECK(load_secret_file(write("a", good + "\n")) == bytes_of(good));
  CHECK(load_secret_file(write("b", good + "\r\n")) == bytes_of(good));
  CHECK(load_secret_file(write("c", good + "\n\n")) == bytes_of(good + "\n"));
  CHECK(load_secret_file(write("d", good)) == bytes_of(good));
  check_mentions(error_message<AuthError>([&] { load_secret_file(write("e", "")); }),
                 {"'" + dir.file("e") + "'", "is empty", "head -c 32 /dev/urandom | base64"});
  check_mentions(error_message<AuthError>([&] { load_secret_file(write("f", "\n")); }),
                 {"is empty"});
  check_mentions(error_message<AuthError>([&] { load_secret_file(dir.file("missing")); }),
                 {"missing", "cannot open", "No such file"});
  check_mentions(error_message<AuthError>([&] { load_secret_file(dir.path().string()); }),
                 {"expected a readable regular file, found a directory"});
  check_mentions(
      error_message<AuthError>([&] { load_secret_file(write("g", std::string(5000, 'x'))); }),
      {"at most 4096 bytes"});
}

TEST_CASE("weak cluster secrets are refused: short, whitespace-only, one repeated character") {
  TempDir dir;
  const auto refused = [&](const std::string& text, std::initializer_list<std::string> words) {
    CAPTURE(text);
    write_bytes(dir.file("s"), std::vector<uint8_t>(text.begin(), text.end()));
    const std::string e = error_message<AuthError>([&] { load_secret_file(dir.file("s")); });
    check_mentions(e, words);
    check_mentions(e, {"head -c 32 /dev/urandom | base64"});
    if (text.size() > 2) CHECK(e.find(text) == std::string::npos);  // never echoed
  };
  refused("x", {"at least 16 bytes, found 1", "offline brute force"});
  refused("hunter2", {"at least 16 bytes, found 7"});
  refused(std::string(15, 'k') + "z", {"at least 6 distinct characters, found 2"});
  refused(std::string(40, 'a'), {"distinct characters, found 1"});
  refused("   \t  \r\n   ", {"only whitespace"});
  refused(std::string(64, ' '), {"only whitespace"});
  CHECK(check_secret_strength(bytes_of("correct horse battery staple")).empty());
  CHECK(check_secret_strength(bytes_of("abcdefghijklmnop")).empty());  // 16 bytes, 16 distinct
  CHECK(!check_secret_strength(bytes_of("abcdefghijklmno")).empty());  // 15
}
