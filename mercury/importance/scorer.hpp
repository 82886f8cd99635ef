// mercury/importance/scorer.hpp — forward-only per-sample importance for a set of samples.
//
// Contract
// - score(indices, out) fills out[k] with the importance of dataset sample indices[k]: its
//   forward loss (default) or the last-layer gradient-norm bound, computed in the engine's score
//   mode (no tape, eval-mode normalisation unless train_mode_norm): weights, gradients, BN
//   running statistics and optimizer state are never written.
// - A Scorer owns its Engine (tape, arena) and batch buffers: one Scorer per thread. With a
//   weight snapshot (set_snapshot) it reads that copy instead of the live parameter slab (and a
//   buffer snapshot instead of the live BN statistics), so a scoring thread can run while the
//   training thread updates the weights.
// - Allocation-free after the first call with the largest chunk.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/nn/engine.hpp"

namespace mercury::importance {

class Scorer {
 public:
  Scorer(nn::Model& model, const data::Dataset& data, int64_t chunk = 320,
         nn::ScoreKind kind = nn::ScoreKind::loss)
      : engine_(model), data_(data), chunk_(std::max<int64_t>(1, chunk)) {
    opts_.kind = kind;
  }

  void set_train_mode_norm(bool on) { opts_.train_mode_norm = on; }
  // Parameter (and buffer) snapshots with the model's slab layouts (null: the live slabs).
  void set_snapshot(const float* weights, const float* buffers = nullptr) {
    opts_.weights = weights;
    opts_.buffers = buffers;
  }

  void score(std::span<const int64_t> indices, float* out) {
    const int64_t S = data_.sample_numel();
    x_.resize(static_cast<std::size_t>(chunk_ * S));
    y_.resize(static_cast<std::size_t>(chunk_));
    for (std::size_t b = 0; b < indices.size(); b += static_cast<std::size_t>(chunk_)) {
      const std::size_t c =
          std::min<std::size_t>(static_cast<std::size_t>(chunk_), indices.size() - b);
      data_.gather(indices.subspan(b, c), x_.data(), y_.data(), nullptr);
      engine_.score(x_.data(), y_.data(), static_cast<int64_t>(c), out + b, nullptr, opts_);
    }
  }

  nn::Engine& engine() { return engine_; }

 private:
  nn::Engine engine_;
  const data::Dataset& data_;
  int64_t chunk_;
  nn::ScoreOptions opts_;
  std::vector<float> x_;
  std::vector<int32_t> y_;
};

}  // namespace mercury::importance
