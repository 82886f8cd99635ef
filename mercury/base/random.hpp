// mercury/base/random.hpp — portable draws from std::mt19937_64: the same values on every
// standard library (std::uniform_*_distribution, std::normal_distribution and std::shuffle are
// implementation-defined), so ranks on different boards and toolchains agree bit for bit.
// - uniform01: [0, 1) from the top 53 bits; uniform_open0: (0, 1], for logarithms;
//   uniform_open: (0, 1), centred on the 2^-53 grid.
// - box_muller(u1, u2): one standard normal from u1 in (0, 1] and u2 in [0, 1);
//   standard_normal(rng) draws u1 then u2.
// - uniform_below(rng, bound): an integer in [0, bound) by rejection (unbiased); bound > 0.
// - shuffle_portable(values, rng): Fisher-Yates driven by uniform_below.
// No dependencies (net/ may include it).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <utility>

namespace mercury::base {

inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}
inline double uniform_open0(std::mt19937_64& rng) {
  return 1.0 - uniform01(rng);
}
inline double uniform_open(std::mt19937_64& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
}

inline double box_muller(double u1, double u2) {
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
inline double standard_normal(std::mt19937_64& rng) {
  const double u1 = uniform_open0(rng);
  return box_muller(u1, uniform01(rng));
}

inline uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % bound + 1) % bound;  // last accepted draw
  uint64_t draw = rng();
  while (draw > limit) draw = rng();
  return draw % bound;
}

template <typename T>
void shuffle_portable(std::span<T> values, std::mt19937_64& rng) {
  for (std::size_t k = values.size(); k > 1; --k) {
    std::swap(values[k - 1], values[uniform_below(rng, k)]);
  }
}

}  // namespace mercury::base
