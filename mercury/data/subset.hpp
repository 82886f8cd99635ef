// mercury/data/subset.hpp — a Dataset view of some samples of another dataset (a device's
// partition, a train-limit prefix).
//
// Contract
// - Subset(base, indices): sample k of the view is sample indices[k] of base. Every index must
//   be in [0, base.size()) (else std::out_of_range naming the position and the index);
//   duplicates are allowed. The view keeps a reference: base must outlive it.
// - Shape, classes and labels are the base's; describe() says which part it is.
// - gather() maps the indices and forwards to base.gather() in chunks of up to 256 samples in
//   order, with the same augmentation RNG: no allocation, the same result as gathering the
//   mapped indices from base directly (datasets gather sample by sample). Like every Dataset,
//   const and safe to call concurrently into different buffers.
// - Raw samples (resharding) are read from the base; copy_of maps the indices and copies from the
//   base; write_raw is refused (a view owns nothing).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mercury/data/dataset.hpp"

namespace mercury::data {

class Subset final : public Dataset {
 public:
  Subset(const Dataset& base, std::vector<int64_t> indices, std::string what = "subset")
      : base_(base), indices_(std::move(indices)), what_(std::move(what)) {
    const int64_t n = base_.size();
    for (std::size_t k = 0; k < indices_.size(); ++k) {
      if (indices_[k] < 0 || indices_[k] >= n) {
        throw std::out_of_range("Subset of " + base_.describe() + ": position " +
                                std::to_string(k) + " has index " + std::to_string(indices_[k]) +
                                ", expected 0.." + std::to_string(n - 1));
      }
    }
  }

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Shape sample_shape() const override { return base_.sample_shape(); }
  int64_t num_classes() const override { return base_.num_classes(); }
  int32_t label(int64_t index) const override { return base_.label(map(index, 0)); }
  std::string describe() const override {
    return what_ + " of " + std::to_string(size()) + " samples of " + base_.describe();
  }
  void gather(std::span<const int64_t> indices, float* x, int32_t* y,
              std::mt19937_64* augment_rng) const override {
    constexpr std::size_t kChunk = 256;
    int64_t mapped[kChunk];
    const int64_t per_sample = base_.sample_numel();
    for (std::size_t b = 0; b < indices.size(); b += kChunk) {
      const std::size_t c = std::min(kChunk, indices.size() - b);
      for (std::size_t k = 0; k < c; ++k) mapped[k] = map(indices[b + k], b + k);
      base_.gather(std::span<const int64_t>(mapped, c), x + static_cast<int64_t>(b) * per_sample,
                   y + b, augment_rng);
    }
  }

  // Raw samples come from the base (a view cannot be written).
  int64_t raw_sample_bytes() const override { return base_.raw_sample_bytes(); }
  std::unique_ptr<Dataset> copy_of(std::span<const int64_t> indices) const override {
    std::vector<int64_t> mapped(indices.size());
    for (std::size_t k = 0; k < indices.size(); ++k) mapped[k] = map(indices[k], k);
    return base_.copy_of(mapped);
  }
  void read_raw(int64_t index, std::span<std::byte> out) const override {
    base_.read_raw(map(index, 0), out);
  }

  const Dataset& base() const { return base_; }
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  int64_t map(int64_t index, std::size_t position) const {
    if (index < 0 || index >= size()) {
      throw std::out_of_range(what_ + " of " + base_.describe() + ": batch position " +
                              std::to_string(position) + " has index " + std::to_string(index) +
                              ", expected 0.." + std::to_string(size() - 1));
    }
    return indices_[static_cast<std::size_t>(index)];
  }

  const Dataset& base_;
  std::vector<int64_t> indices_;
  std::string what_;
};

}  // namespace mercury::data
