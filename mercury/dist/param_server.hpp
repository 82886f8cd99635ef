// mercury/dist/param_server.hpp — the parameter-server half of a rank: one shard's reduction
// and optimizer.
//
// Contract
// - ShardServer(range, world, cfg) serves the floats [range.begin, range.end) of the flat
//   parameter slab for `world` workers. It owns an optim::Optimizer over range.size() floats —
//   that shard's moments and step count, nobody else's — and a gradient buffer of the same size.
//   Both are allocated here; reduce() and step() allocate nothing.
// - reduce(contributions): contributions[r] is worker r's gradient for this range (range.size()
//   floats), r = 0..world-1. The result is
//       g[i] = ((c_0[i] + c_1[i]) + ... + c_{W-1}[i]) / W      (float arithmetic, this order)
//   — a sum in rank order, never in arrival order, so it is bitwise reproducible whatever order
//   the messages came in. Each worker's contribution is the mean gradient of its own batch, so
//   g is the mean of per-rank means; with equal per-rank batches that is exactly the gradient
//   of the global batch (up to float rounding). With W = 1, g = c_0 bit for bit.
// - step(params_range, lr) applies the optimizer to params_range[0, size) with g (the result of
//   the last reduce()). params_range is the caller's slab at range.begin; it must not alias the
//   contributions.
// - state()/steps()/set_steps() expose the moments and the step count for checkpoints.
// - Not thread-safe: one owner thread (the rank's training thread).
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mercury/dist/shard_plan.hpp"
#include "mercury/optim/optimizer.hpp"
#include "mercury/tensor/tensor.hpp"

namespace mercury::dist {

class ShardServer {
 public:
  ShardServer(ShardRange range, int world, const optim::OptimizerConfig& cfg)
      : range_(range), world_(world), opt_(cfg, range.size()) {
    if (world < 1) {
      throw std::invalid_argument("ShardServer: world size: expected >= 1, found " +
                                  std::to_string(world));
    }
    if (range.begin < 0 || range.end < range.begin) {
      throw std::invalid_argument("ShardServer: range: expected 0 <= begin <= end, found [" +
                                  std::to_string(range.begin) + ", " + std::to_string(range.end) +
                                  ")");
    }
    grad_.resize(range.size());
  }

  ShardRange range() const { return range_; }
  int64_t size() const { return range_.size(); }
  int world() const { return world_; }

  void reduce(std::span<const float* const> contributions) { reduce(contributions, 0, size()); }

  // The same reduction over [offset, offset + count) of the range only: contributions[r] points
  // at worker r's floats for that part. Parts reduced one by one give bitwise the gradient a
  // whole reduce() would (the arithmetic is per element), so a schedule may reduce each layer
  // as its contributions arrive (TicTac).
  void reduce(std::span<const float* const> contributions, int64_t offset, int64_t count) {
    if (static_cast<int>(contributions.size()) != world_) {
      throw std::invalid_argument("ShardServer::reduce: expected one contribution per rank (" +
                                  std::to_string(world_) + "), found " +
                                  std::to_string(contributions.size()));
    }
    if (offset < 0 || count < 0 || offset + count > size()) {
      throw std::invalid_argument("ShardServer::reduce: part [" + std::to_string(offset) + ", " +
                                  std::to_string(offset + count) + "): expected inside [0, " +
                                  std::to_string(size()) + ")");
    }
    const int64_t n = count;
    float* g = grad_.data() + offset;
    if (n == 0) return;
    for (int r = 0; r < world_; ++r) {
      if (contributions[r] == nullptr) {
        throw std::invalid_argument("ShardServer::reduce: contribution of rank " +
                                    std::to_string(r) + " is null");
      }
    }
    const float* c0 = contributions[0];
    for (int64_t i = 0; i < n; ++i) g[i] = c0[i];
    for (int r = 1; r < world_; ++r) {
      const float* c = contributions[r];
      for (int64_t i = 0; i < n; ++i) g[i] += c[i];
    }
    const float w = static_cast<float>(world_);
    for (int64_t i = 0; i < n; ++i) g[i] /= w;
  }

  // The mean gradient of the last reduce().
  const float* gradient() const { return grad_.data(); }

  void step(float* params_range, float lr) { opt_.step(params_range, grad_.data(), lr); }

  const optim::Optimizer& optimizer() const { return opt_; }
  std::vector<std::pair<std::string, Tensor>> state() const { return opt_.state(); }
  int64_t steps() const { return opt_.steps(); }
  void set_steps(int64_t t) { opt_.set_steps(t); }

 private:
  ShardRange range_;
  int world_;
  optim::Optimizer opt_;
  AlignedBuffer grad_;
};

}  // namespace mercury::dist
