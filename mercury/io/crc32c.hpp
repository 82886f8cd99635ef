// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), portable software implementation.
//
// Contract:
//   crc32c(data, size, seed) returns the standard CRC32C of the bytes (check value:
//   crc32c("123456789", 9) == 0xE3069283). Passing a previous result as `seed` continues the
//   checksum, so crc32c(b, nb, crc32c(a, na)) == crc32c(a ++ b, na + nb): large or scattered
//   buffers can be hashed piece by piece without copying them together.
//   `data` may be null only when size == 0. Pure function, thread-safe, no allocation.
//   Slicing-by-8 tables are built at compile time; no SSE4.2/ARMv8 CRC instructions are used, so
//   results are identical on every platform (little- or big-endian).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace mercury::io {

namespace crc32c_detail {

inline constexpr uint32_t kReflectedPolynomial = 0x82F63B78u;

// kTables[0] is the classic byte-at-a-time table; kTables[k][b] is the CRC of byte b followed by
// k zero bytes, which lets the main loop consume 8 bytes per step.
inline constexpr std::array<std::array<uint32_t, 256>, 8> kTables = [] {
  std::array<std::array<uint32_t, 256>, 8> tables{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kReflectedPolynomial : 0u);
    tables[0][byte] = crc;
  }
  for (uint32_t byte = 0; byte < 256; ++byte) {
    for (size_t k = 1; k < 8; ++k) {
      const uint32_t previous = tables[k - 1][byte];
      tables[k][byte] = (previous >> 8) ^ tables[0][previous & 0xFFu];
    }
  }
  return tables;
}();

}  // namespace crc32c_detail

inline uint32_t crc32c(const void* data, size_t size, uint32_t seed = 0) {
  const auto& t = crc32c_detail::kTables;
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint32_t crc = ~seed;
  while (size >= 8) {
    // Assemble little-endian words byte by byte: no alignment or endianness assumptions.
    const uint32_t low = crc ^ (uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 |
                                uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24);
    crc = t[7][low & 0xFFu] ^ t[6][(low >> 8) & 0xFFu] ^ t[5][(low >> 16) & 0xFFu] ^
          t[4][low >> 24] ^ t[3][bytes[4]] ^ t[2][bytes[5]] ^ t[1][bytes[6]] ^ t[0][bytes[7]];
    bytes += 8;
    size -= 8;
  }
  while (size-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *bytes++) & 0xFFu];
  return ~crc;
}

}  // namespace mercury::io
