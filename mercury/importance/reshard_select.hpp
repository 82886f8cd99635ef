// mercury/importance/reshard_select.hpp — which local samples a device gives away when it
// reshards (METHOD.md §2).
//
// Contract
// - ReshardSelector::by_importance(cache, count, rng, out): `count` distinct local slots
//   (clamped to [0, N]). Each importance group i of the cache gives its share count·M_i/N
//   (largest remainder; ties go to the earlier group); inside a group the slots are drawn
//   without replacement with probability ∝ cached importance (Efraimidis–Spirakis keys
//   u^(1/w)); a never-scored sample has the cache's prior, and every weight gets a floor of
//   1e-6 × the group's mean so that any sample can leave. Deterministic for a given RNG state.
// - ReshardSelector::uniform(n, count, rng, out): `count` distinct slots of [0, n), uniformly.
// - `out` is sorted ascending. No allocation once the scratch vectors have grown.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/importance/cache.hpp"

namespace mercury::importance {

class ReshardSelector {
 public:
  void by_importance(const ImportanceCache& cache, int64_t count, std::mt19937_64& rng,
                     std::vector<int64_t>& out) {
    out.clear();
    const int64_t n = cache.size();
    count = std::clamp<int64_t>(count, 0, n);
    if (count == 0) return;
    const auto& groups = cache.groups();
    // Largest-remainder shares ∝ group size.
    share_.assign(groups.size(), 0);
    rest_.resize(groups.size());
    int64_t given = 0;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      const int64_t exact_num = count * groups[g].size;  // share = exact_num / n
      share_[g] = exact_num / n;
      rest_[g] = {exact_num % n, static_cast<int64_t>(g)};
      given += share_[g];
    }
    std::sort(rest_.begin(), rest_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (std::size_t k = 0; given < count; ++k, ++given) ++share_[rest_[k].second];
    // Within each group: the `share` largest keys log(u)/w (= u^(1/w) ordered).
    for (std::size_t g = 0; g < groups.size(); ++g) {
      if (share_[g] == 0) continue;
      const auto members = cache.members(groups[g]);
      double mean = 0;
      for (int64_t slot : members) mean += cache.importance(slot);
      mean /= static_cast<double>(members.size());
      const double floor = std::max(1e-6 * mean, 1e-30);
      keys_.resize(members.size());
      for (std::size_t k = 0; k < members.size(); ++k) {
        const double w = std::max(static_cast<double>(cache.importance(members[k])), floor);
        keys_[k] = {std::log(unit(rng)) / w, members[k]};
      }
      const auto take = static_cast<std::ptrdiff_t>(share_[g]);
      std::nth_element(keys_.begin(), keys_.begin() + (take - 1), keys_.end(),
                       [](const auto& a, const auto& b) {
                         return a.first != b.first ? a.first > b.first : a.second < b.second;
                       });
      for (std::ptrdiff_t k = 0; k < take; ++k) out.push_back(keys_[k].second);
    }
    std::sort(out.begin(), out.end());
  }

  void uniform(int64_t n, int64_t count, std::mt19937_64& rng, std::vector<int64_t>& out) {
    out.clear();
    count = std::clamp<int64_t>(count, 0, n);
    pool_.resize(static_cast<std::size_t>(n));
    std::iota(pool_.begin(), pool_.end(), int64_t{0});
    for (int64_t k = 0; k < count; ++k) {  // partial Fisher-Yates
      const auto j = k + static_cast<int64_t>(data::uniform_below(rng, uint64_t(n - k)));
      std::swap(pool_[k], pool_[j]);
      out.push_back(pool_[k]);
    }
    std::sort(out.begin(), out.end());
  }

 private:
  // Uniform in (0, 1): 53 random bits, never 0.
  static double unit(std::mt19937_64& rng) {
    return (static_cast<double>(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  }
  std::vector<int64_t> share_, pool_;
  std::vector<std::pair<int64_t, int64_t>> rest_;
  std::vector<std::pair<double, int64_t>> keys_;
};

}  // namespace mercury::importance
