// mercury/train/probe.hpp — the importance probe: how a fixed set of samples' losses are
// distributed and how fast their ranks move (`--importance-stats-every P`).
//
// Contract
// - at(step) is called after every optimizer step (on rank 0 in a distributed run). At every
//   multiple of P it scores a fixed probe subset (2000 samples, seeded) with its own Scorer and
//   logs an "importance_hist" event; 1, 10 and 100 steps later (lags below P), and P steps later
//   (the next base, at no extra scoring), it logs a "rank_change" event: the share of probes
//   whose rank moved < 5% / < 10%, Spearman's rho and the share of the top-10% still top-10%.
// - A lag whose base scoring happened before a resume is skipped (nothing to compare with).
// - Scoring never touches weights, BN statistics or optimizer state (importance/scorer.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "mercury/base/random.hpp"
#include "mercury/importance/scorer.hpp"
#include "mercury/importance/stats.hpp"
#include "mercury/io/metrics.hpp"

namespace mercury::train {

class ImportanceProbe {
 public:
  ImportanceProbe(int64_t every, nn::Model& model, const data::Dataset& data, int64_t n,
                  uint64_t seed, io::MetricsWriter& metrics)
      : every_(every), model_(model), data_(data), n_(n), seed_(seed), metrics_(metrics) {}

  void at(int64_t step) {
    if (!every_) return;
    const int64_t lag = importance::probe_lag(step, every_);
    if (lag < 0) return;
    if (lag != 0 && base_step_ != step - lag) return;  // its base is from before a resume
    if (!scorer_) init();
    scorer_->score(probe_, now_.data());
    if (lag != 0) {
      log_change(step - lag, lag);
      return;
    }
    if (base_step_ == step - every_) log_change(step - every_, every_);
    std::swap(base_, now_);
    base_step_ = step;
    const auto h = importance::histogram(base_, 30);
    metrics_.write(
        {{"event", "importance_hist"}, {"steps", step}, {"hi", h.hi}, {"counts", h.counts}});
  }

 private:
  void init() {
    probe_.resize(static_cast<std::size_t>(n_));
    std::iota(probe_.begin(), probe_.end(), int64_t{0});
    std::mt19937_64 rng(seed_ + 17);
    base::shuffle_portable(std::span<int64_t>(probe_), rng);
    probe_.resize(static_cast<std::size_t>(std::min<int64_t>(2000, n_)));
    scorer_ = std::make_unique<importance::Scorer>(model_, data_, 500);
    base_.resize(probe_.size());
    now_.resize(probe_.size());
  }
  void log_change(int64_t base_step, int64_t lag) {
    const auto rc = importance::rank_change(base_, now_);
    metrics_.write({{"event", "rank_change"},
                    {"steps", base_step},
                    {"lag", lag},
                    {"under5", rc.under5},
                    {"under10", rc.under10},
                    {"spearman", rc.spearman},
                    {"top10_kept", rc.top10_kept}});
  }

  int64_t every_;
  nn::Model& model_;
  const data::Dataset& data_;
  int64_t n_;
  uint64_t seed_;
  io::MetricsWriter& metrics_;
  std::unique_ptr<importance::Scorer> scorer_;
  std::vector<int64_t> probe_;
  std::vector<float> base_, now_;
  int64_t base_step_ = -1;  // step of the probe scoring in base_ (-1: none yet)
};

}  // namespace mercury::train
