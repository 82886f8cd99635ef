// mercury/base/clock.hpp — seconds between steady-clock points, as a double (the unit every
// metric, plan and progress line uses).
#pragma once

#include <chrono>

namespace mercury::base {

inline double seconds_between(std::chrono::steady_clock::time_point from,
                              std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}
inline double seconds_since(std::chrono::steady_clock::time_point from) {
  return seconds_between(from, std::chrono::steady_clock::now());
}

}  // namespace mercury::base
