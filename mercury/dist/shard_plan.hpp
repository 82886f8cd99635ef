// mercury/dist/shard_plan.hpp — which rank serves which part of the flat parameter slab.
//
// Contract
// - ShardPlan(n, world) cuts the slab [0, n) of n floats into `world` contiguous, ordered,
//   disjoint ranges that cover it exactly: rank r owns [begin(r), end(r)), begin(0) = 0,
//   end(r) = begin(r + 1), end(world - 1) = n.
// - Byte-balanced on 64-byte boundaries: the slab is seen as ceil(n / 16) blocks of 16 floats
//   (the last block may be short) and rank r gets blocks [floor(r·B/W), floor((r+1)·B/W)).
//   Every inner boundary is a multiple of 16 floats, block counts differ by at most one, and
//   max size − min size <= 16 floats (kShardAlignFloats). The largest range — the PS
//   bottleneck — is ceil(B/W) blocks, the least any 16-aligned cut can do.
// - When world > number of blocks some ranges are empty (begin == end); that is allowed: such a
//   rank serves nothing (BSP sends it no gradient and it broadcasts no parameters). n = 0 gives
//   world empty ranges. world < 1 or n < 0 throw std::invalid_argument.
// - A pure function of (n, world): tensor sizes do not matter, on purpose. Cutting only at
//   tensor boundaries would keep tensors whole, but one large tensor (a CNN's first Linear is
//   ~80% of its weights; an embedding table can be more) would then pin most bytes on one rank,
//   and in BSP the busiest server sets everyone's step time. Mercury's optimizers (SGD, Adam,
//   AdamW) are element-wise, so a tensor split between servers updates exactly as if whole.
//   ParamStore pads every tensor to 16 floats, so for real slabs n is a multiple of 16 and all
//   boundaries fall on tensor-aligned 64-byte lines too; the kernels' vector body / masked
//   tail then gives each element the same arithmetic as the single-device update.
// - hash() is FNV-1a (64-bit) over a version tag and the little-endian u64 encoding of the
//   alignment, n, world and every boundary: the same on every platform. Two plans hash equal
//   iff (barring FNV collisions) they cut identically; the handshake compares it.
// - owner(i) is the rank whose range holds float index i (never an empty range); i outside
//   [0, n) throws std::out_of_range.
// - Immutable after construction; const members are thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/base/hash.hpp"

namespace mercury::dist {

inline constexpr int64_t kShardAlignFloats = 16;  // 64 bytes: one cache line, one AVX-512 vector

struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool empty() const { return end == begin; }
  friend bool operator==(const ShardRange&, const ShardRange&) = default;
};

class ShardPlan {
 public:
  ShardPlan(int64_t n, int world) : n_(n), world_(world) {
    if (world < 1) {
      throw std::invalid_argument("ShardPlan: world size: expected >= 1, found " +
                                  std::to_string(world));
    }
    if (n < 0) {
      throw std::invalid_argument("ShardPlan: slab size: expected >= 0 floats, found " +
                                  std::to_string(n));
    }
    const int64_t blocks = (n + kShardAlignFloats - 1) / kShardAlignFloats;
    bounds_.resize(static_cast<std::size_t>(world) + 1);
    for (int r = 0; r <= world; ++r) {
      // r·blocks/world without overflow for any realistic n (blocks < 2^59, world < 2^31).
      const int64_t b = blocks / world * r + blocks % world * r / world;
      bounds_[r] = std::min(n, b * kShardAlignFloats);
    }
  }

  int world() const { return world_; }
  int64_t total() const { return n_; }  // floats in the slab
  int64_t begin(int rank) const { return bounds_[check(rank)]; }
  int64_t end(int rank) const { return bounds_[check(rank) + 1]; }
  int64_t size(int rank) const { return end(rank) - begin(rank); }
  ShardRange range(int rank) const { return {begin(rank), end(rank)}; }
  // world + 1 boundaries: rank r owns [bounds()[r], bounds()[r + 1]).
  const std::vector<int64_t>& bounds() const { return bounds_; }

  int64_t max_size() const {
    int64_t m = 0;
    for (int r = 0; r < world_; ++r) m = std::max(m, size(r));
    return m;
  }
  int64_t min_size() const {
    int64_t m = n_;
    for (int r = 0; r < world_; ++r) m = std::min(m, size(r));
    return m;
  }

  int owner(int64_t index) const {
    if (index < 0 || index >= n_) {
      throw std::out_of_range("ShardPlan::owner: float index: expected 0.." +
                              std::to_string(n_ - 1) + ", found " + std::to_string(index));
    }
    // The last boundary <= index belongs to the first rank of a (possibly empty) run of ranks
    // sharing it; the non-empty one is the last of the run.
    const auto it = std::upper_bound(bounds_.begin(), bounds_.end(), index);
    return static_cast<int>(it - bounds_.begin()) - 1;
  }

  uint64_t hash() const {
    uint64_t h = base::fnv1a64("mercury.shard_plan.v1");
    auto mix_u64 = [&](uint64_t v) { h = base::fnv1a64_u64(v, h); };
    mix_u64(static_cast<uint64_t>(kShardAlignFloats));
    mix_u64(static_cast<uint64_t>(n_));
    mix_u64(static_cast<uint64_t>(world_));
    for (const int64_t b : bounds_) mix_u64(static_cast<uint64_t>(b));
    return h;
  }

  std::string describe() const {
    return std::to_string(n_) + " floats over " + std::to_string(world_) + " ranks, " +
           std::to_string(min_size()) + ".." + std::to_string(max_size()) + " floats each";
  }

 private:
  int check(int rank) const {
    if (rank < 0 || rank >= world_) {
      throw std::out_of_range("ShardPlan: rank: expected 0.." + std::to_string(world_ - 1) +
                              ", found " + std::to_string(rank));
    }
    return rank;
  }

  int64_t n_;
  int world_;
  std::vector<int64_t> bounds_;
};

}  // namespace mercury::dist
