// mercury/importance/stats.hpp — statistics of importance over training: effective sample size
// of the weights, the importance histogram (the paper's Fig. 3) and the rank-change
// distribution after a lag of some iterations (Fig. 6; the trainer logs lags 1, 10, 100 and
// the stats period).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

namespace mercury::importance {

// Kish's effective sample size of a weighted batch, as a fraction of its size: 1 for equal
// weights, 1/B when one weight dominates. Empty weights (unweighted batch) give 1.
inline double effective_sample_fraction(std::span<const float> w) {
  if (w.empty()) return 1.0;
  double s = 0, s2 = 0;
  for (float v : w) {
    s += v;
    s2 += static_cast<double>(v) * v;
  }
  return s2 > 0 ? s * s / (s2 * static_cast<double>(w.size())) : 1.0;
}

// Histogram of values over `bins` equal-width bins in [0, hi] (values above hi go to the last
// bin); hi = the largest value when hi <= 0.
struct Histogram {
  double hi = 0;
  std::vector<int64_t> counts;
};
inline Histogram histogram(std::span<const float> v, int bins, double hi = 0) {
  Histogram h;
  h.counts.assign(static_cast<std::size_t>(bins), 0);
  if (hi <= 0)
    for (float x : v) hi = std::max(hi, static_cast<double>(x));
  h.hi = hi > 0 ? hi : 1.0;
  for (float x : v) {
    if (!std::isfinite(x)) continue;
    int b = static_cast<int>(std::max(0.0, static_cast<double>(x)) / h.hi * bins);
    h.counts[static_cast<std::size_t>(std::min(b, bins - 1))]++;
  }
  return h;
}

// Ranks (0 = most important) of each entry.
inline std::vector<int64_t> ranks(std::span<const float> v) {
  std::vector<int64_t> order(v.size()), r(v.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  for (std::size_t k = 0; k < order.size(); ++k) r[static_cast<std::size_t>(order[k])] = int64_t(k);
  return r;
}

// Between two scorings of the same samples: the fractions whose rank moved by less than 5% /
// 10% of the population, and Spearman's rank correlation (1: same order, 0: unrelated, -1:
// reversed; ties are ranked in index order) — how well a loss measured `lag` steps ago still
// ranks the samples, i.e. how long a cached importance stays informative.
// top10_kept: of the samples in the top 10% by loss before (at least one), the fraction still
// in the top 10% after — the part of the ranking an importance sampler draws from most.
struct RankChange {
  double under5 = 0, under10 = 0, spearman = 1, top10_kept = 1;
};
inline RankChange rank_change(std::span<const float> before, std::span<const float> after) {
  const auto rb = ranks(before), ra = ranks(after);
  const double n = static_cast<double>(before.size());
  RankChange c;
  double d2 = 0;
  for (std::size_t k = 0; k < rb.size(); ++k) {
    const double d = static_cast<double>(rb[k] - ra[k]);
    c.under5 += std::abs(d) / n < 0.05;
    c.under10 += std::abs(d) / n < 0.10;
    d2 += d * d;
  }
  c.under5 /= n;
  c.under10 /= n;
  c.spearman = n > 1 ? 1.0 - 6.0 * d2 / (n * (n * n - 1.0)) : 1.0;
  const auto top = std::max<int64_t>(1, static_cast<int64_t>(rb.size()) / 10);
  int64_t kept = 0, was = 0;
  for (std::size_t k = 0; k < rb.size(); ++k)
    if (rb[k] < top) {
      ++was;
      kept += ra[k] < top;
    }
  c.top10_kept = was ? static_cast<double>(kept) / static_cast<double>(was) : 1.0;
  return c;
}

// The probe schedule of the trainer's importance statistics with period `every` at step t:
// 0 = score the probe set as the new base (t a multiple of every); 1, 10 or 100 = compare with
// the base scored that many steps before (only lags below every); -1 = nothing to do.
inline int64_t probe_lag(int64_t t, int64_t every) {
  if (every < 1 || t < every) return -1;
  const int64_t lag = t % every;
  if (lag == 0) return 0;
  return (lag == 1 || lag == 10 || lag == 100) && lag < every ? lag : -1;
}

}  // namespace mercury::importance
