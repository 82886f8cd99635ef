// mercury/importance/cache.hpp — per-sample importance with group-wise, round-robin refresh.
//
// Contract
// - The cache covers N local samples (positions 0..N-1 of the local dataset). It keeps, per
//   sample, the last importance (forward loss) and the iteration of its last refresh, and a
//   cyclic visiting order (a seeded permutation). A refresh takes the next M positions of that
//   order (M may change from refresh to refresh — BACC adapts it to the bandwidth) and forms a
//   GROUP of them; the groups always tile the order, so older groups are trimmed as newer ones
//   overwrite their start. Before its first refresh a sample's importance is unknown.
// - The EMA (decay 0.9) of the mean refreshed loss is the prior for unknown samples and the
//   smoothing term of the sampling distribution (sampler.hpp).
// - Non-finite scores (NaN/±Inf) are not stored: the sample keeps the group's finite maximum
//   (or the EMA when the whole group is non-finite) and is counted in nonfinite_scores().
// - Not thread-safe; the owner serialises refresh() and reads (BACC hands results over rings).
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

#include "mercury/base/random.hpp"
#include "mercury/io/state_blob.hpp"

namespace mercury::importance {

struct Group {
  int64_t start = 0;  // into the visiting order
  int64_t size = 0;
  int64_t refreshed = -1;  // iteration of the refresh that formed it; -1 = never scored
};

class ImportanceCache {
 public:
  ImportanceCache(int64_t n, int64_t group_size, uint64_t seed, double ema_decay = 0.9)
      : loss_(static_cast<std::size_t>(n), 0.0f),
        refreshed_(static_cast<std::size_t>(n), -1),
        order_(static_cast<std::size_t>(n)),
        ema_decay_(ema_decay) {
    if (n < 1) throw std::invalid_argument("ImportanceCache: needs at least one sample");
    if (group_size < 1) {
      throw std::invalid_argument("ImportanceCache: group size must be >= 1, got " +
                                  std::to_string(group_size));
    }
    std::iota(order_.begin(), order_.end(), int64_t{0});
    std::mt19937_64 rng(seed);
    base::shuffle_portable(std::span<int64_t>(order_), rng);
    // Initial tiling: never-scored groups of the nominal size.
    for (int64_t s = 0; s < n; s += group_size) {
      groups_.push_back(Group{s, std::min(group_size, n - s), -1});
    }
  }

  int64_t size() const { return static_cast<int64_t>(order_.size()); }

  // The next `m` positions of the visiting order (fewer at the end of the cycle: groups never
  // wrap). The caller scores them and passes the scores to refresh().
  std::span<const int64_t> next_group(int64_t m) const {
    m = std::clamp<int64_t>(m, 1, size() - cursor_);
    return std::span<const int64_t>(order_.data() + cursor_, static_cast<std::size_t>(m));
  }

  // Stores the scores of the group returned by next_group(scores.size()) at `iteration` and
  // advances the cursor (wrapping to the start of the order after the last sample).
  void refresh(std::span<const float> scores, int64_t iteration) {
    const int64_t m = static_cast<int64_t>(scores.size());
    if (m < 1 || m > size() - cursor_) {
      throw std::invalid_argument("ImportanceCache::refresh: " + std::to_string(m) +
                                  " scores for a group of at most " +
                                  std::to_string(size() - cursor_));
    }
    float finite_max = -std::numeric_limits<float>::infinity();
    double sum = 0;
    int64_t finite = 0;
    for (float s : scores)
      if (std::isfinite(s)) {
        finite_max = std::max(finite_max, s);
        sum += s;
        ++finite;
      }
    const float fallback = finite ? finite_max : static_cast<float>(prior());
    for (int64_t k = 0; k < m; ++k) {
      const int64_t idx = order_[static_cast<std::size_t>(cursor_ + k)];
      float s = scores[static_cast<std::size_t>(k)];
      if (!std::isfinite(s)) {
        s = fallback;
        ++nonfinite_;
      }
      loss_[static_cast<std::size_t>(idx)] = std::max(s, 0.0f);
      refreshed_[static_cast<std::size_t>(idx)] = iteration;
    }
    if (finite) {
      const double mean = sum / static_cast<double>(finite);
      ema_ = has_ema_ ? ema_decay_ * ema_ + (1 - ema_decay_) * mean : mean;
      has_ema_ = true;
    }
    insert_group(Group{cursor_, m, iteration});
    cursor_ += m;
    if (cursor_ == size()) cursor_ = 0;
    ++refreshes_;
  }

  // Importance of one sample: its last score, or the prior if never scored.
  float importance(int64_t index) const {
    const auto i = static_cast<std::size_t>(index);
    return refreshed_[i] < 0 ? static_cast<float>(prior()) : loss_[i];
  }
  int64_t last_refresh(int64_t index) const { return refreshed_[static_cast<std::size_t>(index)]; }
  // EMA of the mean refreshed loss; 1 before any refresh (an uninformative, positive prior).
  double prior() const { return has_ema_ ? ema_ : 1.0; }
  double ema_mean() const { return prior(); }

  const std::vector<Group>& groups() const { return groups_; }
  // The local sample indices of one group.
  std::span<const int64_t> members(const Group& g) const {
    return std::span<const int64_t>(order_.data() + g.start, static_cast<std::size_t>(g.size));
  }
  int64_t refreshes() const { return refreshes_; }
  int64_t nonfinite_scores() const { return nonfinite_; }

  // A loss observed for free (the training forward pass of a batch that contained the sample):
  // updates the sample's importance and refresh iteration, not its group's recency. Non-finite
  // values are ignored (the old importance stays).
  void observe(int64_t index, float loss, int64_t iteration) {
    if (!std::isfinite(loss)) {
      ++nonfinite_;
      return;
    }
    const auto i = static_cast<std::size_t>(index);
    loss_[i] = std::max(loss, 0.0f);
    refreshed_[i] = iteration;
  }

  // Replaces a sample's importance as unknown.
  void forget(int64_t index) { refreshed_[static_cast<std::size_t>(index)] = -1; }

  // Samples that arrived by resharding into these slots: each takes its group's mean importance
  // (the mean over the group's members as they were before the arrivals) and the group's refresh
  // iteration, so it is "unknown" (the prior) in a never-scored group, until the group is
  // refreshed again.
  void arrived(std::span<const int64_t> slots) {
    if (position_.size() != order_.size()) {
      position_.resize(order_.size());
      for (std::size_t p = 0; p < order_.size(); ++p)
        position_[static_cast<std::size_t>(order_[p])] = static_cast<int64_t>(p);
    }
    group_mean_.assign(groups_.size(), std::numeric_limits<double>::quiet_NaN());
    arrived_group_.resize(slots.size());
    for (std::size_t k = 0; k < slots.size(); ++k) {  // every mean before any write
      const int64_t slot = slots[k];
      if (slot < 0 || slot >= size()) {
        throw std::out_of_range("ImportanceCache::arrived: slot " + std::to_string(slot) +
                                ", expected 0.." + std::to_string(size() - 1));
      }
      const int64_t p = position_[static_cast<std::size_t>(slot)];
      const auto it = std::upper_bound(groups_.begin(), groups_.end(), p,
                                       [](int64_t v, const Group& g) { return v < g.start; });
      const auto g = static_cast<std::size_t>(it - groups_.begin() - 1);
      arrived_group_[k] = g;
      if (std::isnan(group_mean_[g])) {
        double sum = 0;
        for (int64_t m : members(groups_[g])) sum += importance(m);
        group_mean_[g] = sum / static_cast<double>(groups_[g].size);
      }
    }
    for (std::size_t k = 0; k < slots.size(); ++k) {
      const auto i = static_cast<std::size_t>(slots[k]);
      const Group& g = groups_[arrived_group_[k]];
      loss_[i] = static_cast<float>(group_mean_[arrived_group_[k]]);
      refreshed_[i] = g.refreshed;
    }
  }

  // Checkpointing: the complete state (losses, refresh iterations, visiting order, groups,
  // cursor, EMA, counters). load() requires the same number of samples and validates the
  // groups (a sorted tiling of the order) and the order (a permutation), so a damaged state is
  // refused instead of indexing out of bounds.
  void save(io::StateWriter& w) const {
    w.vec(loss_);
    w.vec(refreshed_);
    w.vec(order_);
    w.pod<uint64_t>(groups_.size());
    for (const Group& g : groups_) {
      w.pod(g.start);
      w.pod(g.size);
      w.pod(g.refreshed);
    }
    w.pod(cursor_);
    w.pod(refreshes_);
    w.pod(nonfinite_);
    w.pod(ema_);
    w.pod<uint8_t>(has_ema_);
  }
  void load(io::StateReader& r) {
    const int64_t n = size();
    auto loss = r.vec<float>("cache losses", n);
    auto refreshed = r.vec<int64_t>("cache refresh iterations", n);
    auto order = r.vec<int64_t>("cache visiting order", n);
    std::vector<uint8_t> seen(static_cast<std::size_t>(n), 0);
    for (int64_t v : order) {
      if (v < 0 || v >= n || seen[static_cast<std::size_t>(v)]++)
        r.fail("cache visiting order", "a permutation of 0.." + std::to_string(n - 1),
               "entry " + std::to_string(v));
    }
    const auto ng = r.pod<uint64_t>("cache group count");
    if (ng < 1 || ng > static_cast<uint64_t>(n))
      r.fail("cache group count", "1.." + std::to_string(n), std::to_string(ng));
    std::vector<Group> groups(static_cast<std::size_t>(ng));
    int64_t next = 0;
    for (Group& g : groups) {
      g.start = r.pod<int64_t>("cache group start");
      g.size = r.pod<int64_t>("cache group size");
      g.refreshed = r.pod<int64_t>("cache group refresh");
      if (g.start != next || g.size < 1 || g.size > n - g.start)
        r.fail("cache groups", "a tiling continuing at " + std::to_string(next),
               "group [" + std::to_string(g.start) + ", +" + std::to_string(g.size) + ")");
      next = g.start + g.size;
    }
    if (next != n)
      r.fail("cache groups", "a tiling of " + std::to_string(n) + " samples",
             "one ending at " + std::to_string(next));
    const auto cursor = r.pod<int64_t>("cache cursor");
    if (cursor < 0 || cursor >= n)
      r.fail("cache cursor", "0.." + std::to_string(n - 1), std::to_string(cursor));
    refreshes_ = r.pod<int64_t>("cache refreshes");
    nonfinite_ = r.pod<int64_t>("cache nonfinite count");
    ema_ = r.pod<double>("cache ema");
    has_ema_ = r.pod<uint8_t>("cache ema flag") != 0;
    loss_ = std::move(loss);
    refreshed_ = std::move(refreshed);
    order_ = std::move(order);
    position_.clear();  // rebuilt on demand
    groups_ = std::move(groups);
    cursor_ = cursor;
  }

 private:
  // Keeps groups_ a sorted tiling of [0, N): the new group replaces whatever it overlaps.
  void insert_group(const Group& g) {
    std::vector<Group>& out = scratch_;  // reused: no allocation once warmed up
    out.clear();
    const int64_t a = g.start, b = g.start + g.size;
    bool placed = false;
    for (const Group& old : groups_) {
      const int64_t oa = old.start, ob = old.start + old.size;
      if (ob <= a || oa >= b) {  // no overlap
        if (!placed && oa >= b) {
          out.push_back(g);
          placed = true;
        }
        out.push_back(old);
        continue;
      }
      if (oa < a) out.push_back(Group{oa, a - oa, old.refreshed});  // head survives
      if (!placed) {
        out.push_back(g);
        placed = true;
      }
      if (ob > b) out.push_back(Group{b, ob - b, old.refreshed});  // tail survives
    }
    if (!placed) out.push_back(g);
    groups_.swap(out);
  }

  std::vector<float> loss_;
  std::vector<int64_t> refreshed_;
  std::vector<int64_t> order_;
  std::vector<int64_t> position_;  // inverse of order_ (built by arrived())
  std::vector<Group> groups_, scratch_;
  std::vector<double> group_mean_;
  std::vector<std::size_t> arrived_group_;
  int64_t cursor_ = 0;
  int64_t refreshes_ = 0;
  int64_t nonfinite_ = 0;
  double ema_ = 0;
  bool has_ema_ = false;
  double ema_decay_;
};

}  // namespace mercury::importance
