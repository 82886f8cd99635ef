// mercury/base/hash.hpp — FNV-1a (64-bit), the one non-cryptographic hash the project uses for
// layout fingerprints, plan hashes, shared-medium names and seeded data decisions.
// - fnv1a64(data, size, hash): continues `hash` over the bytes (start from kFnv64Offset).
// - fnv1a64_u64(v, hash): continues it over v's 8 bytes, least significant first, on every host.
// Pure functions; no dependencies (net/ may include it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mercury::base {

inline constexpr uint64_t kFnv64Offset = 14695981039346656037ull;
inline constexpr uint64_t kFnv64Prime = 1099511628211ull;

inline uint64_t fnv1a64(const void* data, std::size_t size, uint64_t hash = kFnv64Offset) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * kFnv64Prime;
  return hash;
}

inline uint64_t fnv1a64(std::string_view text, uint64_t hash = kFnv64Offset) {
  return fnv1a64(text.data(), text.size(), hash);
}

inline uint64_t fnv1a64_u64(uint64_t v, uint64_t hash) {
  for (int k = 0; k < 8; ++k) hash = (hash ^ ((v >> (8 * k)) & 0xFFu)) * kFnv64Prime;
  return hash;
}

}  // namespace mercury::base
