// mercury/importance/sampler.hpp — group-wise importance sampling with unbiasing weights.
//
// The batch of B slots is drawn in two stages (METHOD.md, "Group-wise importance computation
// and sampling"):
//  1. d group draws, with replacement, from π_i ∝ M_i · exp(β·(t_i − t_max)) over the cache's
//     groups (t_i = iteration of the group's last refresh; fresher is likelier; the size factor
//     makes each group's expected share of the batch proportional to its size). The B slots
//     are split as evenly as possible over the d draws, so every slot lands in group i with
//     probability exactly π_i.
//  2. Inside a drawn group, samples are drawn with replacement from q_j ∝ l_j + λ·m (l_j the
//     cached importance, m the EMA of the mean loss): i.i.d. (the paper), or systematically —
//     the n slots a group gets take the CDF points (u + k)/n, k < n, for one u ~ U[0, 1). Then
//     member j is drawn floor(n·q_j) or ceil(n·q_j) times, never more: the batch repeats a
//     high-loss sample far less often, while E[count_j] = n·q_j still holds, so with the same
//     weights the weighted batch mean keeps its expectation (unbiasedness is unchanged).
// Weights (per slot):
//  - paper:  w = 1 / (M_i · q_j)       E[w·g | group i] = mean gradient of group i
//  - exact:  w = 1 / (N · π_i · q_j)   E[w·g] = mean gradient over all N samples (unbiased)
// With β = 0 the two coincide. Tempering (weight_power α, default 1): every weight is raised to α,
// trading bias for variance — α = 1 is unbiased, α = 0 trains the drawn batch unweighted (like
// Selective-Backprop), 0 < α < 1 in between (Katharopoulos & Fleuret's and others' "smoothed"
// importance weights). Degenerate cases: all-equal importances give q uniform and
// weight 1 (paper); if every l_j + λ·m in a group is 0 (or not finite) q falls back to uniform.
// Weights are always finite and positive.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/importance/cache.hpp"

namespace mercury::importance {

enum class Weighting { paper, exact };

struct SamplerConfig {
  int64_t groups_per_batch = 2;  // d
  double beta = -1;              // β; < 0: 4/D (D = current number of groups)
  double lambda = 0.5;           // λ
  Weighting weighting = Weighting::paper;
  double weight_power = 1.0;  // α: weights are w^α (1: unbiased; 0: unweighted)
  bool systematic = false;    // in-group draw: systematic (one uniform per group) vs i.i.d.
  bool rank = false;          // q_j ∝ rank percentile of l_j in its group + λ, not l_j + λ·m
};

struct BatchDraw {
  std::vector<int64_t> indices;  // local sample indices, one per slot
  std::vector<float> weights;    // one per slot
};

class GroupSampler {
 public:
  explicit GroupSampler(SamplerConfig cfg) : cfg_(cfg) {
    if (cfg_.groups_per_batch < 1) {
      throw std::invalid_argument("sampler: groups per batch (d) must be >= 1, got " +
                                  std::to_string(cfg_.groups_per_batch));
    }
    if (!(cfg_.lambda >= 0)) {
      throw std::invalid_argument("sampler: lambda must be >= 0, got " +
                                  std::to_string(cfg_.lambda));
    }
    if (cfg_.rank && !(cfg_.lambda > 0)) {
      throw std::invalid_argument(
          "sampler: rank q needs lambda > 0 (with 0 the lowest-ranked sample of every group is "
          "never drawn), got " +
          std::to_string(cfg_.lambda));
    }
    if (!(cfg_.weight_power >= 0 && cfg_.weight_power <= 1)) {
      throw std::invalid_argument("sampler: weight power must be in [0, 1], got " +
                                  std::to_string(cfg_.weight_power));
    }
  }

  // Group-choice probabilities π over cache.groups() (same order).
  const std::vector<double>& group_probabilities(const ImportanceCache& cache) {
    const auto& gs = cache.groups();
    const double beta = cfg_.beta >= 0 ? cfg_.beta : 4.0 / static_cast<double>(gs.size());
    int64_t tmax = -1;
    for (const Group& g : gs) tmax = std::max(tmax, g.refreshed);
    pi_.resize(gs.size());
    double z = 0;
    for (std::size_t k = 0; k < gs.size(); ++k) {
      pi_[k] = static_cast<double>(gs[k].size) *
               std::exp(beta * static_cast<double>(gs[k].refreshed - tmax));
      z += pi_[k];
    }
    for (double& p : pi_) p /= z;
    return pi_;
  }

  // In-group distribution q over members(g) (same order), into q_.
  const std::vector<double>& in_group_probabilities(const ImportanceCache& cache, const Group& g) {
    const auto members = cache.members(g);
    q_.resize(members.size());
    if (cfg_.rank) return rank_probabilities(cache, members);
    const double smooth = cfg_.lambda * cache.prior();
    double z = 0;
    for (std::size_t k = 0; k < members.size(); ++k) {
      const double v = static_cast<double>(cache.importance(members[k])) + smooth;
      q_[k] = std::isfinite(v) && v > 0 ? v : 0.0;
      z += q_[k];
    }
    if (!(z > 0) || !std::isfinite(z)) {
      std::fill(q_.begin(), q_.end(), 1.0 / static_cast<double>(members.size()));
    } else {
      for (double& v : q_) v /= z;
    }
    return q_;
  }

  // Rank variant: q_j ∝ r_j/(n−1) + λ, r_j the rank of l_j among the group's n importances
  // (0 = lowest; ties share the mean rank; non-finite scores rank lowest). The largest/smallest
  // q ratio is (1 + λ)/λ whatever the loss scale, so one outlier cannot take a group's slots.
  const std::vector<double>& rank_probabilities(const ImportanceCache& cache,
                                                std::span<const int64_t> members) {
    const std::size_t n = members.size();
    order_.resize(n);
    keys_.resize(n);
    for (std::size_t k = 0; k < n; ++k) {
      const float v = cache.importance(members[k]);
      keys_[k] = std::isfinite(v) ? v : -std::numeric_limits<float>::infinity();
    }
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    auto key = [&](std::size_t k) { return keys_[k]; };
    std::sort(order_.begin(), order_.end(),
              [&](std::size_t a, std::size_t b) { return keys_[a] < keys_[b]; });
    const double span = n > 1 ? static_cast<double>(n - 1) : 1.0;
    double z = 0;
    for (std::size_t lo = 0; lo < n;) {
      std::size_t hi = lo + 1;
      while (hi < n && key(order_[hi]) == key(order_[lo])) ++hi;
      const double r = n > 1 ? 0.5 * static_cast<double>(lo + hi - 1) / span : 1.0;
      for (std::size_t k = lo; k < hi; ++k) q_[order_[k]] = r + cfg_.lambda;
      z += static_cast<double>(hi - lo) * (r + cfg_.lambda);
      lo = hi;
    }
    if (!(z > 0)) {
      std::fill(q_.begin(), q_.end(), 1.0 / static_cast<double>(n));
    } else {
      for (double& v : q_) v /= z;
    }
    return q_;
  }

  // Draws B slots. Allocation-free once `out` has held B slots.
  void draw(const ImportanceCache& cache, int64_t B, std::mt19937_64& rng, BatchDraw& out) {
    if (B < 1) throw std::invalid_argument("sampler: batch size must be >= 1");
    const auto& pi = group_probabilities(cache);
    out.indices.resize(static_cast<std::size_t>(B));
    out.weights.resize(static_cast<std::size_t>(B));
    const int64_t d = std::min<int64_t>(cfg_.groups_per_batch, B);
    const double N = static_cast<double>(cache.size());
    int64_t slot = 0;
    for (int64_t k = 0; k < d; ++k) {
      const int64_t slots = B / d + (k < B % d ? 1 : 0);
      const std::size_t gi = pick(pi, rng);
      const Group& g = cache.groups()[gi];
      const auto& q = in_group_probabilities(cache, g);
      const auto members = cache.members(g);
      cdf_.resize(q.size());
      std::partial_sum(q.begin(), q.end(), cdf_.begin());
      // Systematic: the k-th of n slots takes the point (u + k)/n of the CDF, one u ~ U[0,1)
      // per group. Each member's expected count is n·q_j as with i.i.d. draws, so the weighted
      // batch mean keeps its expectation, but a member is drawn floor or ceil of n·q_j times.
      const double u0 =
          cfg_.systematic ? std::uniform_real_distribution<double>(0.0, 1.0)(rng) : 0.0;
      for (int64_t s = 0; s < slots; ++s, ++slot) {
        const std::size_t j =
            cfg_.systematic
                ? locate_cdf(cdf_, (u0 + static_cast<double>(s)) / static_cast<double>(slots))
                : pick_cdf(cdf_, rng);
        out.indices[static_cast<std::size_t>(slot)] = members[j];
        out.weights[static_cast<std::size_t>(slot)] =
            static_cast<float>(slot_weight(g.size, N, pi[gi], q[j]));
      }
    }
  }

  // The loss weight of a slot that drew a member with in-group probability q from a group of
  // `group_size` samples chosen with probability pi, out of n local samples.
  double slot_weight(int64_t group_size, double n, double pi, double q) const {
    const double w = cfg_.weighting == Weighting::paper
                         ? 1.0 / (static_cast<double>(group_size) * q)
                         : 1.0 / (n * pi * q);
    return cfg_.weight_power == 1.0 ? w : std::pow(w, cfg_.weight_power);
  }

  const SamplerConfig& config() const { return cfg_; }

  // Index drawn from a discrete distribution p (sums to 1).
  static std::size_t pick(const std::vector<double>& p, std::mt19937_64& rng) {
    double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    for (std::size_t k = 0; k + 1 < p.size(); ++k) {
      if (u < p[k]) return k;
      u -= p[k];
    }
    return p.size() - 1;
  }

 private:
  static std::size_t pick_cdf(const std::vector<double>& cdf, std::mt19937_64& rng) {
    return locate_cdf(cdf, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
  }
  // The member whose CDF interval holds the fraction f ∈ [0, 1) of the total.
  static std::size_t locate_cdf(const std::vector<double>& cdf, double f) {
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), f * cdf.back());
    return std::min<std::size_t>(static_cast<std::size_t>(it - cdf.begin()), cdf.size() - 1);
  }

  SamplerConfig cfg_;
  std::vector<double> pi_, q_, cdf_;
  std::vector<std::size_t> order_;
  std::vector<float> keys_;  // rank variant: the group's importances
};

}  // namespace mercury::importance
