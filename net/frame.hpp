// net/frame.hpp — the wire format: a fixed 64-byte little-endian header, chunked payloads, and
// reassembly of chunked messages.
//
// Header layout (every field little-endian, written byte by byte; no struct is ever memcpy'd):
//   off  0 u32 magic 0x5943524D ("MRCY" on the wire)   off 28 u32 payload length (this chunk)
//   off  4 u16 protocol version                         off 32 u64 iteration
//   off  6 u8  frame type                               off 40 u64 key
//   off  7 u8  flags (reserved, ignored)                off 48 u64 message length (all chunks)
//   off  8 u32 source rank                              off 56 u32 CRC32C of this chunk's payload
//   off 12 u32 destination rank                         off 60 u32 CRC32C of header bytes [0, 60)
//   off 16 u32 run epoch
//   off 20 u32 chunk index
//   off 24 u32 chunk count
// Types below kFirstAppType (16) are the protocol's own (FrameType); they are single-chunk frames
// of at most kMaxProtocolPayload bytes. Application messages are cut into chunks of exactly
// `chunk_bytes` (the last one shorter; an empty message is one empty chunk).
//
// Contract
// - encode_header() computes the header CRC; the payload CRC is the caller's (chunk_header()
//   fills it). decode_header() never allocates on success and validates, in this order: magic,
//   version, header CRC, known type, chunk index < chunk count, payload length <= chunk limit,
//   message length <= FrameLimits::max_message_bytes (MERCURY_MAX_FRAME), and that the chunk
//   count and payload length are exactly what the message length implies. So a reader may
//   allocate `payload_len` bytes once decode_header() said ok(). check_payload() verifies the
//   payload CRC after the payload was read.
// - Reassembler rebuilds messages per stream (src, type, key, iteration): chunks must arrive in
//   order, starting with chunk 0, with the same counts and lengths; at most `max_partial`
//   messages may be incomplete at once. Violations throw FrameError naming the stream. Chunk 0
//   allocates the whole message's buffer once (from the PayloadPool when given one, never
//   zero-filled: every byte is written by a chunk before the message is returned).
// - Pure functions and value types; a Reassembler is used by one thread.
#pragma once

#include <algorithm>
#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mercury/io/crc32c.hpp"
#include "net/transport.hpp"

namespace mercury::net {

inline constexpr uint32_t kFrameMagic = 0x5943524D;  // bytes 4D 52 43 59: "MRCY"
inline constexpr uint16_t kProtocolVersion = 2;      // 2: CHALLENGE reveals nothing (net/auth.hpp)
inline constexpr std::size_t kHeaderBytes = 64;
inline constexpr uint32_t kMinChunkBytes = 64u << 10;
inline constexpr uint32_t kMaxChunkBytes = 4u << 20;
inline constexpr uint32_t kDefaultChunkBytes = 1u << 20;
inline constexpr uint64_t kDefaultMaxMessageBytes = uint64_t{256} << 20;  // MERCURY_MAX_FRAME
inline constexpr uint32_t kMaxProtocolPayload = 256u << 10;

enum class FrameType : uint8_t {
  hello = 1,      // client -> server: who I am + nonce          (net/auth.hpp)
  challenge = 2,  // server -> client: nonce
  auth = 3,       // client -> server: HMAC
  welcome = 4,    // server -> client: handshake accepted: who I am + HMAC
  error = 5,      // reason (UTF-8); key = blamed rank + 1 (0: none); then the sender closes
  heartbeat = 6,  // empty; keeps an idle link alive
  bye = 7,        // empty; the sender closes cleanly and sends nothing more
  address = 8,    // rank i -> rank 0 at rendezvous: its listening address (net/mesh.hpp)
  table = 9,      // rank 0 -> everyone at rendezvous: the address of every rank
};
inline constexpr uint8_t kLastProtocolType = 9;

inline bool is_protocol_type(uint8_t type) {
  return type >= 1 && type <= kLastProtocolType;
}
inline bool is_known_type(uint8_t type) {
  return is_protocol_type(type) || type >= kFirstAppType;
}

inline std::string frame_type_name(uint8_t type) {
  static constexpr const char* kNames[] = {"HELLO",     "CHALLENGE", "AUTH",    "WELCOME", "ERROR",
                                           "HEARTBEAT", "BYE",       "ADDRESS", "TABLE"};
  if (is_protocol_type(type)) return kNames[type - 1];
  return "type " + std::to_string(type);
}

// Malformed bytes from the wire (a frame, a reassembly stream or a protocol payload).
class FrameError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace frame_detail {

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

inline std::string hex(uint64_t value, int digits = 16) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text = "0x";
  for (int d = digits - 1; d >= 0; --d) text += kDigits[(value >> (4 * d)) & 0xF];
  return text;
}

inline void put_le(std::byte* out, uint64_t value, int bytes) {
  for (int b = 0; b < bytes; ++b) out[b] = static_cast<std::byte>(value >> (8 * b));
}

inline uint64_t get_le(const std::byte* in, int bytes) {
  uint64_t value = 0;
  for (int b = 0; b < bytes; ++b) value |= uint64_t(std::to_integer<uint8_t>(in[b])) << (8 * b);
  return value;
}

}  // namespace frame_detail

// Little-endian serialisation of protocol payloads.
class ByteWriter {
 public:
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void bytes(std::span<const std::byte> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str(std::string_view s) {  // u16 length + bytes
    if (s.size() > 0xFFFF) throw FrameError(frame_detail::cat("string of ", s.size(), " bytes"));
    u16(static_cast<uint16_t>(s.size()));
    bytes(std::as_bytes(std::span(s.data(), s.size())));
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  void put(uint64_t v, int n) {
    out_.resize(out_.size() + n);
    frame_detail::put_le(out_.data() + out_.size() - n, v, n);
  }
  std::vector<std::byte> out_;
};

// Strict reader: running out of bytes, or leftovers at finish(), throw FrameError naming `what`.
class ByteReader {
 public:
  ByteReader(std::span<const std::byte> in, std::string_view what) : in_(in), what_(what) {}
  uint16_t u16() { return static_cast<uint16_t>(get(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get(4)); }
  uint64_t u64() { return get(8); }
  std::span<const std::byte> bytes(std::size_t n) {
    need(n);
    pos_ += n;
    return in_.subspan(pos_ - n, n);
  }
  std::string str(std::size_t max_len) {
    const std::size_t len = u16();
    if (len > max_len)
      throw FrameError(frame_detail::cat(what_, ": string at byte ", pos_ - 2, " is ", len,
                                         " bytes long, expected at most ", max_len));
    auto b = bytes(len);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  void finish() const {
    if (pos_ != in_.size())
      throw FrameError(frame_detail::cat(what_, ": expected ", pos_, " bytes, found ", in_.size()));
  }

 private:
  void need(std::size_t n) const {
    if (in_.size() - pos_ < n)
      throw FrameError(frame_detail::cat(what_, ": truncated at byte ", pos_, ": expected ", n,
                                         " more bytes, found ", in_.size() - pos_));
  }
  uint64_t get(int n) {
    need(n);
    pos_ += n;
    return frame_detail::get_le(in_.data() + pos_ - n, n);
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  std::string_view what_;
};

struct FrameHeader {
  uint16_t version = kProtocolVersion;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t src = 0;
  uint32_t dst = 0;
  uint32_t run_epoch = 0;
  uint32_t chunk_index = 0;
  uint32_t chunk_count = 1;
  uint32_t payload_len = 0;
  uint64_t iteration = 0;
  uint64_t key = 0;
  uint64_t message_len = 0;
  uint32_t payload_crc = 0;
};

struct FrameLimits {
  uint32_t chunk_bytes = kDefaultChunkBytes;  // must be the same on both ends of a link
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;
};

inline uint64_t chunk_count_for(uint64_t message_len, uint32_t chunk_bytes) {
  return message_len == 0 ? 1 : (message_len - 1) / chunk_bytes + 1;
}

// Bytes [offset, offset + size) of `message` carried by chunk `index`.
inline std::span<const std::byte> chunk_of(std::span<const std::byte> message, uint32_t index,
                                           uint32_t chunk_bytes) {
  const uint64_t begin = uint64_t{index} * chunk_bytes;
  return message.subspan(begin, std::min<uint64_t>(chunk_bytes, message.size() - begin));
}

// The header of chunk `index` of a `message_len`-byte message whose payload CRC32C is already
// known, from a template carrying type/src/dst/epoch/key/...
inline FrameHeader chunk_header(FrameHeader h, uint64_t message_len, uint32_t index,
                                uint32_t chunk_bytes, uint32_t payload_crc) {
  const uint64_t begin = uint64_t{index} * chunk_bytes;
  h.chunk_index = index;
  h.chunk_count = static_cast<uint32_t>(chunk_count_for(message_len, chunk_bytes));
  h.payload_len = static_cast<uint32_t>(std::min<uint64_t>(chunk_bytes, message_len - begin));
  h.message_len = message_len;
  h.payload_crc = payload_crc;
  return h;
}

// The header of chunk `index` of `message` (its payload CRC32C computed here).
inline FrameHeader chunk_header(FrameHeader h, std::span<const std::byte> message, uint32_t index,
                                uint32_t chunk_bytes) {
  const auto payload = chunk_of(message, index, chunk_bytes);
  return chunk_header(h, message.size(), index, chunk_bytes,
                      io::crc32c(payload.data(), payload.size()));
}

// The payload CRC32C of every chunk of `message`; with `copy_to`, also copies the message there,
// hashing each piece right after copying it, while it is still in L1 (one pass over memory).
inline std::vector<uint32_t> chunk_crcs(std::span<const std::byte> message, uint32_t chunk_bytes,
                                        std::byte* copy_to = nullptr) {
  constexpr std::size_t kPiece = std::size_t{24} << 10;  // fits L1 beside the source's lines
  std::vector<uint32_t> crcs(
      static_cast<std::size_t>(chunk_count_for(message.size(), chunk_bytes)));
  for (std::size_t i = 0; i < crcs.size(); ++i) {
    const auto chunk = chunk_of(message, static_cast<uint32_t>(i), chunk_bytes);
    const std::size_t offset = i * std::size_t{chunk_bytes};
    uint32_t crc = 0;
    for (std::size_t at = 0; at < chunk.size(); at += kPiece) {
      const std::size_t n = std::min(kPiece, chunk.size() - at);
      const std::byte* piece = chunk.data() + at;
      if (copy_to) {
        std::memcpy(copy_to + offset + at, piece, n);
        piece = copy_to + offset + at;
      }
      crc = io::crc32c(piece, n, crc);
    }
    crcs[i] = crc;
  }
  return crcs;
}

inline std::array<std::byte, kHeaderBytes> encode_header(const FrameHeader& h) {
  using frame_detail::put_le;
  std::array<std::byte, kHeaderBytes> b{};
  put_le(&b[0], kFrameMagic, 4);
  put_le(&b[4], h.version, 2);
  put_le(&b[6], h.type, 1);
  put_le(&b[7], h.flags, 1);
  put_le(&b[8], h.src, 4);
  put_le(&b[12], h.dst, 4);
  put_le(&b[16], h.run_epoch, 4);
  put_le(&b[20], h.chunk_index, 4);
  put_le(&b[24], h.chunk_count, 4);
  put_le(&b[28], h.payload_len, 4);
  put_le(&b[32], h.iteration, 8);
  put_le(&b[40], h.key, 8);
  put_le(&b[48], h.message_len, 8);
  put_le(&b[56], h.payload_crc, 4);
  put_le(&b[60], io::crc32c(b.data(), 60), 4);
  return b;
}

enum class FrameFault : uint8_t {
  none,
  bad_magic,
  version_skew,
  bad_header_crc,
  unknown_type,
  bad_chunk_index,
  chunk_too_large,
  message_too_large,
  inconsistent_length,
};

struct HeaderDecode {
  FrameHeader header;
  FrameFault fault = FrameFault::none;
  std::string reason;  // empty when ok
  bool ok() const { return fault == FrameFault::none; }
};

inline HeaderDecode decode_header(std::span<const std::byte, kHeaderBytes> b,
                                  const FrameLimits& limits) {
  using frame_detail::cat;
  using frame_detail::get_le;
  HeaderDecode d;
  FrameHeader& h = d.header;
  auto fail = [&](FrameFault fault, std::string reason) {
    d.fault = fault;
    d.reason = std::move(reason);
    return d;
  };
  const uint32_t magic = static_cast<uint32_t>(get_le(&b[0], 4));
  if (magic != kFrameMagic) {
    std::string found;
    for (int i = 0; i < 4; ++i)
      found += frame_detail::hex(std::to_integer<uint8_t>(b[i]), 2).substr(2) + " ";
    return fail(FrameFault::bad_magic, cat("bad magic: expected 4d 52 43 59 (\"MRCY\"), found ",
                                           found, "(not a Mercury peer?)"));
  }
  h.version = static_cast<uint16_t>(get_le(&b[4], 2));
  if (h.version != kProtocolVersion)
    return fail(FrameFault::version_skew,
                cat("peer speaks protocol version ", h.version, ", this build speaks ",
                    kProtocolVersion, "; run the same Mercury build on every rank"));
  const uint32_t stored_crc = static_cast<uint32_t>(get_le(&b[60], 4));
  const uint32_t actual_crc = io::crc32c(b.data(), 60);
  if (stored_crc != actual_crc)
    return fail(FrameFault::bad_header_crc,
                cat("header CRC32C mismatch: header says ", frame_detail::hex(stored_crc, 8),
                    ", bytes [0,60) hash to ", frame_detail::hex(actual_crc, 8)));
  h.type = std::to_integer<uint8_t>(b[6]);
  h.flags = std::to_integer<uint8_t>(b[7]);
  h.src = static_cast<uint32_t>(get_le(&b[8], 4));
  h.dst = static_cast<uint32_t>(get_le(&b[12], 4));
  h.run_epoch = static_cast<uint32_t>(get_le(&b[16], 4));
  h.chunk_index = static_cast<uint32_t>(get_le(&b[20], 4));
  h.chunk_count = static_cast<uint32_t>(get_le(&b[24], 4));
  h.payload_len = static_cast<uint32_t>(get_le(&b[28], 4));
  h.iteration = get_le(&b[32], 8);
  h.key = get_le(&b[40], 8);
  h.message_len = get_le(&b[48], 8);
  h.payload_crc = static_cast<uint32_t>(get_le(&b[56], 4));
  if (!is_known_type(h.type))
    return fail(
        FrameFault::unknown_type,
        cat("unknown frame type ", int(h.type), " (protocol types are 1..", int(kLastProtocolType),
            ", application types are >= ", int(kFirstAppType), ")"));
  if (h.chunk_index >= h.chunk_count)
    return fail(FrameFault::bad_chunk_index, cat("chunk index ", h.chunk_index,
                                                 " is not below the chunk count ", h.chunk_count));
  const bool protocol = is_protocol_type(h.type);
  const uint32_t max_payload = protocol ? kMaxProtocolPayload : limits.chunk_bytes;
  if (h.payload_len > max_payload)
    return fail(FrameFault::chunk_too_large,
                cat(frame_type_name(h.type), " frame announces a ", h.payload_len,
                    "-byte payload, the limit is ", max_payload, " bytes",
                    protocol ? " for protocol frames" : " (the chunk size)"));
  if (h.message_len > limits.max_message_bytes)
    return fail(FrameFault::message_too_large,
                cat(frame_type_name(h.type), " frame announces a message of ", h.message_len,
                    " bytes, the limit is ", limits.max_message_bytes,
                    " bytes (raise MERCURY_MAX_FRAME if this is legitimate)"));
  const uint64_t chunk = protocol ? kMaxProtocolPayload : limits.chunk_bytes;
  const uint64_t count = chunk_count_for(h.message_len, static_cast<uint32_t>(chunk));
  if (h.chunk_count != count)
    return fail(FrameFault::inconsistent_length,
                cat("a ", h.message_len, "-byte ", frame_type_name(h.type), " message has ", count,
                    " chunk(s) of at most ", chunk, " bytes, the header says ", h.chunk_count));
  const uint64_t expected = std::min<uint64_t>(chunk, h.message_len - h.chunk_index * chunk);
  if (h.payload_len != expected)
    return fail(
        FrameFault::inconsistent_length,
        cat("chunk ", h.chunk_index, " of ", h.chunk_count, " of a ", h.message_len,
            "-byte message must carry ", expected, " bytes, the header says ", h.payload_len));
  return d;
}

inline std::string describe_frame(const FrameHeader& h) {
  return frame_detail::cat("frame ", frame_type_name(h.type), " (key ", h.key, ", iteration ",
                           h.iteration, ", chunk ", h.chunk_index, " of ", h.chunk_count, ")");
}

// "" when a payload whose CRC32C is `actual` matches the header's, else the reason.
inline std::string check_payload_crc(const FrameHeader& h, uint32_t actual) {
  if (actual == h.payload_crc) return {};
  return frame_detail::cat("payload CRC32C mismatch in ", describe_frame(h), ": header says ",
                           frame_detail::hex(h.payload_crc, 8), ", payload hashes to ",
                           frame_detail::hex(actual, 8));
}

// "" when the payload matches the header's CRC32C, else the reason.
inline std::string check_payload(const FrameHeader& h, std::span<const std::byte> payload) {
  return check_payload_crc(h, io::crc32c(payload.data(), payload.size()));
}

// Rebuilds chunked messages. prepare() returns where chunk h's payload goes (read it there, check
// it), commit() then accounts for it and returns the message once its last chunk is in.
class Reassembler {
 public:
  explicit Reassembler(std::size_t max_partial = 8, std::shared_ptr<PayloadPool> pool = nullptr)
      : max_partial_(max_partial), pool_(std::move(pool)) {}

  std::span<std::byte> prepare(const FrameHeader& h) {
    const Key k = key_of(h);
    auto it = partial_.find(k);
    if (h.chunk_index == 0) {
      if (it != partial_.end())
        throw FrameError(frame_detail::cat(describe_frame(h),
                                           " starts a message while the previous one "
                                           "of that stream is incomplete at chunk ",
                                           it->second.next_chunk, " of ", it->second.chunk_count));
      if (partial_.size() >= max_partial_)
        throw FrameError(frame_detail::cat(describe_frame(h), " would be the ", max_partial_ + 1,
                                           "th incomplete message; at most ", max_partial_,
                                           " allowed"));
      const auto bytes = static_cast<std::size_t>(h.message_len);
      Partial p{Message{int(h.src), h.type, h.key, h.iteration,
                        pool_ ? pool_->allocate(bytes) : Payload(bytes)},
                0, h.chunk_count, 0, h.message_len};
      it = partial_.emplace(k, std::move(p)).first;
    } else if (it == partial_.end()) {
      throw FrameError(describe_frame(h) + " arrived without chunk 0 of its message");
    }
    Partial& p = it->second;
    if (h.chunk_index != p.next_chunk)
      throw FrameError(
          frame_detail::cat(describe_frame(h), " is out of order: expected chunk ", p.next_chunk));
    if (h.chunk_count != p.chunk_count || h.message_len != p.message_len)
      throw FrameError(frame_detail::cat(describe_frame(h),
                                         " changes the message shape: chunk 0 said ", p.chunk_count,
                                         " chunks and ", p.message_len, " bytes, this says ",
                                         h.chunk_count, " and ", h.message_len));
    if (h.payload_len > p.message_len - p.filled ||
        (h.chunk_index + 1 == h.chunk_count && p.filled + h.payload_len != p.message_len))
      throw FrameError(frame_detail::cat(describe_frame(h), " overruns its message: ", p.filled,
                                         " + ", h.payload_len, " bytes of ", p.message_len));
    return p.message.payload.span().subspan(static_cast<std::size_t>(p.filled), h.payload_len);
  }

  std::optional<Message> commit(const FrameHeader& h) {
    auto it = partial_.find(key_of(h));
    if (it == partial_.end() || it->second.next_chunk != h.chunk_index)
      throw FrameError(describe_frame(h) + " committed without prepare()");
    Partial& p = it->second;
    p.filled += h.payload_len;
    if (++p.next_chunk < p.chunk_count) return std::nullopt;
    Message done = std::move(p.message);
    partial_.erase(it);
    return done;
  }

  // prepare + copy + commit, for callers that already hold the payload.
  std::optional<Message> add(const FrameHeader& h, std::span<const std::byte> payload) {
    if (payload.size() != h.payload_len)
      throw FrameError(frame_detail::cat(describe_frame(h), " carries ", payload.size(),
                                         " bytes, its header says ", h.payload_len));
    std::span<std::byte> dst = prepare(h);
    if (!payload.empty()) std::memcpy(dst.data(), payload.data(), payload.size());
    return commit(h);
  }

  std::size_t partial_messages() const { return partial_.size(); }

 private:
  struct Key {
    uint32_t src;
    uint8_t type;
    uint64_t key, iteration;
    auto operator<=>(const Key&) const = default;
  };
  struct Partial {
    Message message;
    uint32_t next_chunk, chunk_count;
    uint64_t filled, message_len;
  };
  static Key key_of(const FrameHeader& h) { return {h.src, h.type, h.key, h.iteration}; }

  std::size_t max_partial_;
  std::shared_ptr<PayloadPool> pool_;
  std::map<Key, Partial> partial_;
};

// Every frame (header + payload) of one message, for tests, seeds and simple writers.
inline std::vector<std::vector<std::byte>> encode_message(const FrameHeader& base,
                                                          std::span<const std::byte> message,
                                                          uint32_t chunk_bytes) {
  std::vector<std::vector<std::byte>> frames;
  const auto count = static_cast<uint32_t>(chunk_count_for(message.size(), chunk_bytes));
  for (uint32_t i = 0; i < count; ++i) {
    const auto header = encode_header(chunk_header(base, message, i, chunk_bytes));
    const auto payload = chunk_of(message, i, chunk_bytes);
    std::vector<std::byte>& frame = frames.emplace_back(header.begin(), header.end());
    frame.insert(frame.end(), payload.begin(), payload.end());
  }
  return frames;
}

}  // namespace mercury::net
