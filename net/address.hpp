// net/address.hpp — the rules for how a rank is reached and a run is named, in one place for
// every layer that checks them (net/env.hpp, net/mesh.hpp, net/shaper.hpp).
//
// Contract
// - is_ip_address(a): a numeric IPv4 or IPv6 address (inet_pton), no host names.
// - is_loopback_address(a): "localhost", any IPv4 127.0.0.0/8 address, ::1, or an IPv4-mapped
//   ::ffff:127.x.y.z. This decides whether a cluster may run without a secret.
// - valid_run_id(id): 1..64 characters of [A-Za-z0-9._-] (a run id names files such as
//   /dev/shm/mercury-medium-<id>, so no separators or spaces). Callers word their own errors.
// - Pure functions, thread-safe, no allocation beyond a std::string for inet_pton.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace mercury::net {

inline bool is_ip_address(std::string_view address) {
  const std::string a(address);
  unsigned char bytes[16];
  return ::inet_pton(AF_INET, a.c_str(), bytes) == 1 ||
         ::inet_pton(AF_INET6, a.c_str(), bytes) == 1;
}

inline bool is_loopback_address(std::string_view address) {
  const std::string a(address);
  if (a == "localhost") return true;
  unsigned char bytes[16];
  if (::inet_pton(AF_INET, a.c_str(), bytes) == 1) return bytes[0] == 127;
  if (::inet_pton(AF_INET6, a.c_str(), bytes) == 1) {
    static constexpr unsigned char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                                      0, 0, 0, 0, 0, 0, 0, 1};
    static constexpr unsigned char kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::equal(bytes, bytes + 16, kV6Loopback) ||
           (std::equal(bytes, bytes + 12, kV4Mapped) && bytes[12] == 127);
  }
  return false;
}

inline constexpr std::size_t kMaxRunIdChars = 64;

inline bool valid_run_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxRunIdChars) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

}  // namespace mercury::net
