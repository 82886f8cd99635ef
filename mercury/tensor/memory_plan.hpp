// mercury/tensor/memory_plan.hpp — offline placement of tensors with known lifetimes in one block.
//
// Contract
// - Input: one Interval per tensor (size in floats, first and last event of its life, both
//   inclusive). Two tensors may share memory only when their intervals are disjoint.
// - plan_offsets() gives every tensor an offset, 64-byte aligned, such that no two tensors whose
//   lifetimes overlap overlap in memory, and returns the block size the placement needs.
// - Strategy: greedy by size (largest first, each placed at the lowest offset that clears every
//   already-placed tensor alive at the same time; ties by first use), the heuristic TFLite and
//   MNN use for activation arenas. Deterministic: the same intervals give the same offsets.
// - O(n²) in the number of tensors; a training step of the zoo's largest model has ~2,000.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "mercury/tensor/tensor.hpp"

namespace mercury {

struct Interval {
  int64_t floats = 0;  // size
  int64_t first = 0;   // first event the tensor is alive at
  int64_t last = 0;    // last event (inclusive)
};

struct Placement {
  std::vector<int64_t> offsets;  // floats from the block's start, one per interval
  int64_t block_floats = 0;      // the block the placement needs
};

inline Placement plan_offsets(const std::vector<Interval>& iv) {
  const std::size_t n = iv.size();
  Placement p;
  p.offsets.assign(n, -1);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const int64_t sa = align_floats(iv[a].floats), sb = align_floats(iv[b].floats);
    return sa != sb ? sa > sb : iv[a].first < iv[b].first;
  });
  std::vector<std::size_t> placed;  // indices of placed intervals, sorted by offset
  placed.reserve(n);
  for (std::size_t a : order) {
    const int64_t size = align_floats(iv[a].floats);
    int64_t offset = 0;
    for (std::size_t b : placed) {  // walk placed tensors by offset, skipping over live ones
      if (iv[b].last < iv[a].first || iv[a].last < iv[b].first) continue;
      const int64_t ob = p.offsets[b], eb = ob + align_floats(iv[b].floats);
      if (offset + size <= ob) break;  // the gap before b holds a
      offset = std::max(offset, eb);
    }
    p.offsets[a] = offset;
    p.block_floats = std::max(p.block_floats, offset + size);
    const auto at = std::upper_bound(placed.begin(), placed.end(), offset,
                                     [&](int64_t o, std::size_t b) { return o < p.offsets[b]; });
    placed.insert(at, a);
  }
  return p;
}

// Peak of the sizes alive at one event: no placement can use a smaller block.
inline int64_t live_peak_floats(const std::vector<Interval>& iv) {
  std::vector<std::pair<int64_t, int64_t>> ev;  // (event, +size at first / -size after last)
  ev.reserve(iv.size() * 2);
  for (const Interval& i : iv) {
    ev.emplace_back(i.first, align_floats(i.floats));
    ev.emplace_back(i.last + 1, -align_floats(i.floats));
  }
  std::sort(ev.begin(), ev.end());  // at one event, frees (negative) come first
  int64_t live = 0, peak = 0;
  for (const auto& [t, d] : ev) {
    live += d;
    peak = std::max(peak, live);
  }
  return peak;
}

}  // namespace mercury
