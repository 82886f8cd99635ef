// mercury/tensor/arena.hpp — bump allocator for activations, gradients of activations and scratch.
//
// Contract
// - alloc() hands out 64-byte-aligned float ranges that stay valid until reset().
// - The first step sizes the arena: when a request does not fit, a new block is added; on the
//   next reset() several blocks are coalesced into one block of the high-water size. From then on
//   a step of the same shape allocates nothing (blocks() stays 1, allocations() stops growing).
// - Not thread-safe: one arena per thread of work (the training thread and the scoring thread of
//   BACC each own one).
#pragma once

#include <cstdint>
#include <vector>

#include "mercury/tensor/tensor.hpp"

namespace mercury {

class Arena {
 public:
  explicit Arena(int64_t initial_floats = 0) {
    if (initial_floats > 0) add_block(initial_floats);
  }

  float* alloc(int64_t count) {
    const int64_t n = align_floats(count > 0 ? count : 1);
    if (blocks_.empty() || blocks_[current_].size() - offset_ < n) next_block(n);
    float* p = blocks_[current_].data() + offset_;
    offset_ += n;
    used_ += n;
    if (used_ > high_water_) high_water_ = used_;
    return p;
  }
  Tensor tensor(Shape s) { return Tensor(alloc(s.numel()), s); }
  Tensor zeros(Shape s) {
    Tensor t = tensor(s);
    t.zero();
    return t;
  }

  // Frees everything handed out. Coalesces blocks so the next identical step fits in one.
  void reset() {
    if (blocks_.size() > 1) {
      blocks_.clear();
      add_block(high_water_);
    }
    current_ = 0;
    offset_ = 0;
    used_ = 0;
  }

  int64_t high_water_bytes() const { return high_water_ * static_cast<int64_t>(sizeof(float)); }
  int64_t capacity_bytes() const {
    int64_t c = 0;
    for (const auto& b : blocks_) c += b.size();
    return c * static_cast<int64_t>(sizeof(float));
  }
  std::size_t blocks() const { return blocks_.size(); }
  // Number of block allocations made so far: constant once the arena has warmed up.
  int64_t allocations() const { return allocations_; }

 private:
  void add_block(int64_t n) {
    blocks_.emplace_back(n, /*zero=*/false);
    ++allocations_;
  }
  void next_block(int64_t n) {
    // Use a later block if one fits (after a reset with one block there is none).
    while (current_ + 1 < blocks_.size()) {
      ++current_;
      offset_ = 0;
      if (blocks_[current_].size() >= n) return;
    }
    const int64_t grow = blocks_.empty() ? 0 : blocks_.back().size();
    add_block(std::max<int64_t>(n, std::max<int64_t>(grow, int64_t{1} << 16)));
    current_ = blocks_.size() - 1;
    offset_ = 0;
  }

  std::vector<AlignedBuffer> blocks_;
  std::size_t current_ = 0;
  int64_t offset_ = 0;
  int64_t used_ = 0;
  int64_t high_water_ = 0;
  int64_t allocations_ = 0;
};

}  // namespace mercury
