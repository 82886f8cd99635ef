// net/auth.hpp — the connection handshake's messages and their authentication.
//
// Handshake (net/mesh.hpp drives it; protocol version 2):
//   client HELLO(hello_c) -> server CHALLENGE(nonce_s) -> client AUTH(mac_c)
//   -> server WELCOME(hello_s, mac_s)
//   mac_c = HMAC-SHA256(secret, "mercury/client" || HELLO payload || nonce_s)
//   mac_s = HMAC-SHA256(secret, "mercury/server" || HELLO payload || nonce_s ||
//   encode_hello(hello_s))
// The server reveals nothing about its run (run id, hashes) and claims no rank slot before mac_c
// checks out: an unauthenticated peer learns a random nonce and, at most, that it failed. Only
// then are the Hellos compared (hello_mismatch), on both sides. Both nonces are fresh, so a MAC
// proves knowledge of the secret in this very handshake; the role label stops a reflected MAC.
// An empty secret (allowed on loopback only) is a valid HMAC key: the handshake is the same, it
// just proves nothing. A secret that is set must be strong (check_secret_strength): a MAC over
// known bytes makes a short one fall to offline brute force.
//
// Contract
// - All crypto is OpenSSL libcrypto (HMAC, RAND_bytes, CRYPTO_memcmp); nothing is hand-rolled.
//   Failures of the library throw AuthError.
// - load_secret_file(path): the whole file, minus one trailing "\n" or "\r\n"; an unreadable,
//   empty, weak (check_secret_strength) or larger than kMaxSecretBytes file throws AuthError
//   naming the path and how to make a good one.
// - decode_hello/decode_challenge/decode_welcome are strict (truncation, trailing bytes,
//   over-long run id throw FrameError) and never allocate more than the input size.
// - Thread-safe free functions.
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net/file_kind.hpp"
#include "net/frame.hpp"

namespace mercury::net {

inline constexpr std::size_t kMacBytes = 32;
inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMaxSecretBytes = 4096;
inline constexpr std::size_t kMinSecretBytes = 16;
inline constexpr std::size_t kMinSecretDistinctBytes = 6;
inline constexpr char kMakeSecret[] = "head -c 32 /dev/urandom | base64";
inline constexpr std::size_t kMaxRunIdBytes = 255;
using Mac = std::array<std::byte, kMacBytes>;
using Nonce = std::array<std::byte, kNonceBytes>;

class AuthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline Mac hmac_sha256(std::span<const std::byte> key, std::span<const std::byte> data) {
  static const unsigned char kEmpty = 0;  // OpenSSL wants a non-null key pointer even for length 0
  Mac mac{};
  unsigned int len = 0;
  const auto* k = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  const auto* d = data.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(data.data());
  if (!HMAC(EVP_sha256(), k, static_cast<int>(key.size()), d, data.size(),
            reinterpret_cast<unsigned char*>(mac.data()), &len) ||
      len != kMacBytes)
    throw AuthError("HMAC-SHA256 failed in OpenSSL");
  return mac;
}

inline bool macs_equal(const Mac& a, const Mac& b) {
  return CRYPTO_memcmp(a.data(), b.data(), kMacBytes) == 0;
}

inline Nonce random_nonce() {
  Nonce nonce{};
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), kNonceBytes) != 1)
    throw AuthError("RAND_bytes failed: OpenSSL has no entropy source");
  return nonce;
}

// "" when `secret` is strong enough to key the handshake MACs, else what is wrong with it: at
// least kMinSecretBytes bytes, not only whitespace, at least kMinSecretDistinctBytes distinct
// byte values (a repeated character is as weak as one). Judged on length and variety only; the
// bytes are never echoed.
inline std::string check_secret_strength(std::span<const std::byte> secret) {
  if (secret.empty()) return "is empty; expected a shared secret";
  bool seen[256] = {};
  std::size_t distinct = 0, blank = 0;
  for (std::byte b : secret) {
    const auto c = std::to_integer<unsigned char>(b);
    if (!seen[c]) ++distinct;
    seen[c] = true;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') ++blank;
  }
  if (blank == secret.size()) return "is only whitespace; expected a strong shared secret";
  if (secret.size() < kMinSecretBytes)
    return frame_detail::cat("expected a strong secret of at least ", kMinSecretBytes,
                             " bytes, found ", secret.size(),
                             " (a short secret falls to offline brute force from one handshake)");
  if (distinct < kMinSecretDistinctBytes)
    return frame_detail::cat("expected a strong secret of at least ", kMinSecretDistinctBytes,
                             " distinct characters, found ", distinct);
  return {};
}

inline std::vector<std::byte> load_secret_file(const std::string& path) {
  const std::string where = "cluster secret file '" + path + "' (MERCURY_SECRET_FILE)";
  std::string text;
  try {  // a FIFO or device is refused, not waited on
    text = read_regular_file(path, "cluster secret file", std::size_t{1} << 20);
  } catch (const FileKindError& e) {
    throw AuthError(where + ": " + e.reason());
  }
  const std::size_t n = text.size();
  std::vector<std::byte> secret(n);
  std::memcpy(secret.data(), text.data(), n);
  if (!secret.empty() && secret.back() == std::byte{'\n'}) secret.pop_back();
  if (!secret.empty() && secret.back() == std::byte{'\r'} && n > secret.size()) secret.pop_back();
  if (secret.size() > kMaxSecretBytes)
    throw AuthError(frame_detail::cat(where, ": expected at most ", kMaxSecretBytes,
                                      " bytes of secret, found more"));
  if (const std::string weak = check_secret_strength(secret); !weak.empty())
    throw AuthError(frame_detail::cat(where, ": ", weak, "; make one with `", kMakeSecret, " > ",
                                      path, "` and give every rank the same file"));
  return secret;
}

// What each side of a connection says about itself. All fields but the nonce must agree.
struct Hello {
  std::string run_id;
  uint32_t run_epoch = 0;
  uint32_t rank = 0;
  uint32_t world = 0;
  uint32_t chunk_bytes = 0;
  uint64_t plan_hash = 0;
  uint64_t layout_hash = 0;
  Nonce nonce{};
};

inline std::vector<std::byte> encode_hello(const Hello& h) {
  ByteWriter w;
  w.str(h.run_id.substr(0, kMaxRunIdBytes));
  w.u32(h.run_epoch);
  w.u32(h.rank);
  w.u32(h.world);
  w.u32(h.chunk_bytes);
  w.u64(h.plan_hash);
  w.u64(h.layout_hash);
  w.bytes(h.nonce);
  return w.take();
}

inline Hello read_hello(ByteReader& r) {
  Hello h;
  h.run_id = r.str(kMaxRunIdBytes);
  h.run_epoch = r.u32();
  h.rank = r.u32();
  h.world = r.u32();
  h.chunk_bytes = r.u32();
  h.plan_hash = r.u64();
  h.layout_hash = r.u64();
  const auto nonce = r.bytes(kNonceBytes);
  std::copy(nonce.begin(), nonce.end(), h.nonce.begin());
  return h;
}

inline Hello decode_hello(std::span<const std::byte> payload) {
  ByteReader r(payload, "HELLO payload");
  Hello h = read_hello(r);
  r.finish();
  return h;
}

// CHALLENGE: the server's nonce, nothing else.
inline Nonce decode_challenge(std::span<const std::byte> payload) {
  ByteReader r(payload, "CHALLENGE payload");
  Nonce nonce{};
  const auto got = r.bytes(kNonceBytes);
  std::copy(got.begin(), got.end(), nonce.begin());
  r.finish();
  return nonce;
}

// WELCOME: the server's Hello and its MAC, sent once the client has authenticated.
struct Welcome {
  Hello hello;
  Mac mac{};
};

inline std::vector<std::byte> encode_welcome(const Welcome& w) {
  ByteWriter out;
  out.bytes(encode_hello(w.hello));
  out.bytes(w.mac);
  return out.take();
}

inline Welcome decode_welcome(std::span<const std::byte> payload) {
  ByteReader r(payload, "WELCOME payload");
  Welcome w;
  w.hello = read_hello(r);
  const auto mac = r.bytes(kMacBytes);
  std::copy(mac.begin(), mac.end(), w.mac.begin());
  r.finish();
  return w;
}

// "mercury/<role>" || HELLO payload || the server's nonce: what both MACs cover.
inline std::vector<std::byte> handshake_transcript(std::string_view role,
                                                   std::span<const std::byte> hello_payload,
                                                   const Nonce& server_nonce) {
  std::vector<std::byte> transcript;
  for (char c : std::string_view("mercury/")) transcript.push_back(std::byte(c));
  for (char c : role) transcript.push_back(std::byte(c));
  transcript.insert(transcript.end(), hello_payload.begin(), hello_payload.end());
  transcript.insert(transcript.end(), server_nonce.begin(), server_nonce.end());
  return transcript;
}

// mac_c: proves the client knows the secret, bound to its HELLO and the server's nonce.
inline Mac client_mac(std::span<const std::byte> secret, std::span<const std::byte> hello_payload,
                      const Nonce& server_nonce) {
  return hmac_sha256(secret, handshake_transcript("client", hello_payload, server_nonce));
}

// mac_s: proves the server knows the secret, bound to the same transcript and its own Hello.
inline Mac server_mac(std::span<const std::byte> secret, std::span<const std::byte> hello_payload,
                      const Nonce& server_nonce, const Hello& server) {
  std::vector<std::byte> transcript = handshake_transcript("server", hello_payload, server_nonce);
  const auto fields = encode_hello(server);
  transcript.insert(transcript.end(), fields.begin(), fields.end());
  return hmac_sha256(secret, transcript);
}

// "" when `theirs` (rank theirs.rank) may join a run with `ours`, else the reason.
inline std::string hello_mismatch(const Hello& theirs, const Hello& ours) {
  using frame_detail::cat;
  using frame_detail::hex;
  const auto differs = [&](const std::string& what, const std::string& t, const std::string& o,
                           const char* advice) {
    return cat(what, " ", t, " of rank ", theirs.rank, " differs from ", o, " of rank ", ours.rank,
               "; ", advice);
  };
  if (theirs.run_id != ours.run_id)
    return differs("run id", "'" + theirs.run_id + "'", "'" + ours.run_id + "'",
                   "all ranks must belong to the same launch (MERCURY_RUN_ID)");
  if (theirs.run_epoch != ours.run_epoch)
    return differs("run epoch", std::to_string(theirs.run_epoch), std::to_string(ours.run_epoch),
                   "is a rank left over from an earlier attempt of this run?");
  if (theirs.world != ours.world)
    return differs("world size", std::to_string(theirs.world), std::to_string(ours.world),
                   "all ranks must use the same WORLD_SIZE");
  if (theirs.plan_hash != ours.plan_hash)
    return differs("ShardPlan hash", hex(theirs.plan_hash), hex(ours.plan_hash),
                   "all ranks must run the same model and world size");
  if (theirs.layout_hash != ours.layout_hash)
    return differs("model layout hash", hex(theirs.layout_hash), hex(ours.layout_hash),
                   "all ranks must build the same model");
  if (theirs.chunk_bytes != ours.chunk_bytes)
    return differs("chunk size", std::to_string(theirs.chunk_bytes),
                   std::to_string(ours.chunk_bytes), "set the same MERCURY_CHUNK everywhere");
  if (theirs.rank >= ours.world)
    return cat("rank ", theirs.rank, " is out of range for a world of ", ours.world);
  return {};
}

}  // namespace mercury::net
