// libFuzzer target for the wire format (net/frame.hpp, net/auth.hpp, net/mesh.hpp codecs): a
// byte stream is cut into frames as a mesh reader would, each header decoded, protocol payloads
// parsed (HELLO, CHALLENGE, AUTH, ADDRESS, TABLE) and application chunks reassembled.
// Input byte 0 is a mode: bit 0 re-seals each header CRC and bit 1 ignores payload CRCs, so the
// fuzzer reaches the checks behind the checksums. Any outcome other than success or FrameError
// (crash, sanitizer report, other exception, broken invariant -> trap) is a finding.
//
// Built by tests/fuzz/CMakeLists.txt with clang only; by hand:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -DASIO_STANDALONE \
//     -I/work/main tests/fuzz/fuzz_frame.cpp -lcrypto -o fuzz_frame
//   ./fuzz_frame -max_total_time=60 corpus/
// Compiled with -DMERCURY_FUZZ_WRITE_SEEDS it is instead a program writing a small seed corpus
// into the directory given as its argument.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "net/auth.hpp"
#include "net/frame.hpp"
#include "net/mesh.hpp"

namespace {

using namespace mercury::net;

// Tiny chunks so multi-chunk messages fit in small inputs.
constexpr FrameLimits kLimits{64, 4096};

void parse_protocol_payload(uint8_t type, std::span<const std::byte> payload) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::hello: {
      const Hello h = decode_hello(payload);
      const auto again = encode_hello(h);  // strict parser: only canonical encodings pass
      if (!std::equal(again.begin(), again.end(), payload.begin(), payload.end())) __builtin_trap();
      (void)hello_mismatch(h, h);
      break;
    }
    case FrameType::challenge:
      (void)decode_challenge(payload);
      break;
    case FrameType::welcome: {
      const Welcome w = decode_welcome(payload);
      const auto again = encode_welcome(w);
      if (!std::equal(again.begin(), again.end(), payload.begin(), payload.end())) __builtin_trap();
      break;
    }
    case FrameType::auth: {
      ByteReader r(payload, "AUTH payload");
      (void)r.bytes(kMacBytes);
      r.finish();
      break;
    }
    case FrameType::address: {
      ByteReader r(payload, "ADDRESS payload");
      (void)read_address(r);
      r.finish();
      break;
    }
    case FrameType::table: {
      const auto world =
          payload.size() >= 4 ? uint32_t(frame_detail::get_le(payload.data(), 4)) : 0u;
      const auto table = decode_address_table(payload, world);
      const auto again = encode_address_table(table);
      if (!std::equal(again.begin(), again.end(), payload.begin(), payload.end())) __builtin_trap();
      break;
    }
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool reseal = data[0] & 1, ignore_payload_crc = data[0] & 2;
  std::vector<std::byte> in(reinterpret_cast<const std::byte*>(data) + 1,
                            reinterpret_cast<const std::byte*>(data) + size);
  Reassembler reassembler(4);
  std::size_t pos = 0;
  while (in.size() - pos >= kHeaderBytes) {
    std::byte* header = in.data() + pos;
    pos += kHeaderBytes;
    if (reseal) frame_detail::put_le(header + 60, mercury::io::crc32c(header, 60), 4);
    const std::span<const std::byte, kHeaderBytes> raw(header, kHeaderBytes);
    const HeaderDecode d = decode_header(raw, kLimits);
    if (!d.ok()) {
      if (d.reason.empty()) __builtin_trap();
      continue;  // a reader would drop the connection; keep going to cover more per input
    }
    const FrameHeader& h = d.header;
    const bool protocol = is_protocol_type(h.type);
    const auto again = encode_header(h);
    if (!std::equal(again.begin(), again.end(), raw.begin()) ||
        h.payload_len > (protocol ? kMaxProtocolPayload : kLimits.chunk_bytes) ||
        h.message_len > kLimits.max_message_bytes || h.chunk_index >= h.chunk_count)
      __builtin_trap();
    if (in.size() - pos < h.payload_len) break;
    const std::span<const std::byte> payload(in.data() + pos, h.payload_len);
    pos += h.payload_len;
    if (!ignore_payload_crc && !check_payload(h, payload).empty()) continue;
    try {
      if (protocol) {
        parse_protocol_payload(h.type, payload);
      } else if (const auto m = reassembler.add(h, payload)) {
        if (m->payload.size() != h.message_len || m->type != h.type) __builtin_trap();
      }
    } catch (const FrameError&) {
    }
  }
  return 0;
}

#ifdef MERCURY_FUZZ_WRITE_SEEDS
#include "seed_corpus.hpp"

int main(int argc, char** argv) {
  const std::string dir = mercury::fuzzing::corpus_dir(argc, argv);
  if (dir.empty()) return 2;
  std::vector<std::vector<std::byte>> seeds;
  const auto frame = [](FrameType type, std::span<const std::byte> payload) {
    FrameHeader h;
    h.type = static_cast<uint8_t>(type);
    auto frames = encode_message(h, payload, kMaxProtocolPayload);
    return frames.front();
  };
  const auto with_mode = [](uint8_t mode, const std::vector<std::vector<std::byte>>& frames) {
    std::vector<std::byte> seed{std::byte{mode}};
    for (const auto& f : frames) seed.insert(seed.end(), f.begin(), f.end());
    return seed;
  };
  const Hello hello{"seed-run", 1, 2, 4, kDefaultChunkBytes, 0xAB, 0xCD, Nonce{}};
  const Nonce challenge{};
  const auto welcome = encode_welcome({hello, Mac{}});
  ByteWriter address;
  write_address(address, {"127.0.0.1", 29500});
  const auto table =
      encode_address_table({{"10.0.0.1", 29500}, {"10.0.0.2", 40001}, {"::1", 40002}, {"", 40003}});
  std::vector<std::byte> message(200);
  for (std::size_t i = 0; i < message.size(); ++i) message[i] = std::byte(i);
  FrameHeader app;
  app.type = kFirstAppType;
  app.iteration = 3;
  seeds.push_back(with_mode(
      0, {frame(FrameType::hello, encode_hello(hello)), frame(FrameType::challenge, challenge),
          frame(FrameType::auth, Mac{}), frame(FrameType::welcome, welcome)}));
  seeds.push_back(with_mode(0, {frame(FrameType::address, address.take()),
                                frame(FrameType::table, table), frame(FrameType::heartbeat, {})}));
  seeds.push_back(with_mode(0, encode_message(app, message, kLimits.chunk_bytes)));
  seeds.push_back(with_mode(3, encode_message(app, std::span(message).first(1), 64)));
  const std::string error = "rank 2 (127.0.0.1:1) closed the connection during read";
  seeds.push_back(with_mode(1, {frame(FrameType::error, std::as_bytes(std::span(error)))}));
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seeds[i].data()), seeds[i].size());
    if (!mercury::fuzzing::write_seed(dir, i, seeds[i])) return 1;
  }
  return 0;
}
#endif
