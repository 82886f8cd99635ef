// mercury/optim/schedule.hpp — learning-rate schedules: constant, step, cosine; all with an
// optional linear warm-up. at(step) is a pure function of the step index (exact resume).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace mercury::optim {

struct LrSchedule {
  enum class Kind { constant, step, cosine } kind = Kind::constant;
  float base_lr = 0.004f;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;  // cosine: the step at which lr reaches min_lr
  int64_t step_size = 1;    // step: multiply by gamma every step_size steps
  float gamma = 0.1f;
  float min_lr = 0.0f;

  float at(int64_t step) const {
    if (warmup_steps > 0 && step < warmup_steps) {
      return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
    }
    const int64_t s = step - warmup_steps;
    switch (kind) {
      case Kind::constant:
        return base_lr;
      case Kind::step:
        return base_lr * std::pow(gamma, static_cast<float>(s / std::max<int64_t>(1, step_size)));
      case Kind::cosine: {
        const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
        const double frac = std::min(1.0, static_cast<double>(s) / static_cast<double>(span));
        return min_lr + (base_lr - min_lr) * 0.5f *
                            static_cast<float>(1.0 + std::cos(3.14159265358979323846 * frac));
      }
    }
    return base_lr;
  }

  static Kind parse(const std::string& s) {
    if (s == "constant") return Kind::constant;
    if (s == "step") return Kind::step;
    if (s == "cosine") return Kind::cosine;
    throw std::invalid_argument("schedule: expected constant, step or cosine, found '" + s + "'");
  }
};

}  // namespace mercury::optim
