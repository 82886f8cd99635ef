// Partitioners: how a dataset's sample indices are spread over K devices (IID or non-IID), and
// the per-device class histogram that shows the skew.
//
// Contract:
//   partition_iid(n, devices, seed)                      shuffle 0..n-1, cut into K parts whose
//                                                        sizes differ by at most one
//   partition_dirichlet(labels, classes, config)         per class c, proportions p_c ~
//       Dir(alpha, ..., alpha) over the K devices; class c's samples (shuffled) are cut at the
//       rounded cumulative proportions. Small alpha -> each class concentrated on few devices.
//       Minimum size: a draw in which some device gets fewer than config.min_samples samples
//       is rejected and the whole draw repeated (up to config.max_attempts); if every attempt
//       fails, the last draw is rebalanced: while a device is below the minimum, one random
//       sample of the currently largest device moves to it. Partition::attempts and
//       ::rebalanced report what happened. Requires min_samples * K <= n.
//   partition_shards(labels, classes, devices, shards_per_device, seed)   McMahan et al.'s
//       "pathological non-IID": indices sorted by label (random order within a class), cut
//       into K*s contiguous shards of near-equal size, shards dealt to devices at random, s
//       each. A shard can straddle a class boundary, so a device holds at most 2s classes in
//       general and at most s when every class size is a multiple of the shard size.
//   partition(dataset, config) dispatches on config.scheme (the one knob struct; a CLI mirrors
//       it field by field).
//   Every partitioner is a pure function of its arguments: the randomness comes only from
//   std::mt19937_64 seeded by `seed` through uniform_below and our own gamma sampler (no std::
//   distributions), so every device computes the same partition on any platform. Every index
//   in [0, n) appears in exactly one device's list; each list is sorted ascending.
//   Bad arguments (K < 1, n < K, alpha <= 0, label outside [0, classes), ...) throw
//   std::invalid_argument naming the argument and the value.
//   class_histogram(partition, labels, classes) -> counts[device][class];
//   format_class_histogram(counts) -> a fixed-width table, one row per device plus a total row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/base/random.hpp"
#include "mercury/data/dataset.hpp"

namespace mercury::data {

enum class PartitionScheme { kIid, kDirichlet, kShards };

inline const char* partition_scheme_name(PartitionScheme scheme) {
  switch (scheme) {
    case PartitionScheme::kIid:
      return "iid";
    case PartitionScheme::kDirichlet:
      return "dirichlet";
    case PartitionScheme::kShards:
      return "shards";
  }
  return "?";
}

inline PartitionScheme parse_partition_scheme(const std::string& text) {
  for (PartitionScheme s :
       {PartitionScheme::kIid, PartitionScheme::kDirichlet, PartitionScheme::kShards}) {
    if (text == partition_scheme_name(s)) return s;
  }
  throw std::invalid_argument("partition scheme: expected iid, dirichlet or shards, found '" +
                              text + "'");
}

struct PartitionConfig {
  PartitionScheme scheme = PartitionScheme::kIid;
  int64_t devices = 1;
  uint64_t seed = 0;
  double alpha = 0.5;             // Dirichlet concentration (paper: 10, 1, 0.5)
  int64_t min_samples = 1;        // Dirichlet: fewest samples a device may get
  int64_t max_attempts = 100;     // Dirichlet: redraws before rebalancing
  int64_t shards_per_device = 2;  // shards scheme: s
};

struct Partition {
  std::vector<std::vector<int64_t>> devices;  // sample indices per device, ascending
  int64_t attempts = 1;                       // Dirichlet draws made
  bool rebalanced = false;                    // Dirichlet: the minimum needed a rebalance
};

namespace partition_detail {

inline void check_devices(int64_t n, int64_t devices, const char* what) {
  if (devices < 1 || n < devices) {
    throw std::invalid_argument(std::string(what) + ": expected 1 <= devices <= samples (" +
                                std::to_string(n) +
                                "), found devices = " + std::to_string(devices));
  }
}

inline void check_labels(std::span<const int32_t> labels, int64_t classes, const char* what) {
  if (classes < 1) {
    throw std::invalid_argument(std::string(what) + ": expected classes >= 1, found " +
                                std::to_string(classes));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw std::invalid_argument(std::string(what) + ": label of sample " + std::to_string(i) +
                                  ": expected 0.." + std::to_string(classes - 1) + ", found " +
                                  std::to_string(labels[i]));
    }
  }
}

using base::standard_normal;
using base::uniform01;
using base::uniform_open0;

// log of a Gamma(alpha, 1) draw (Marsaglia-Tsang; alpha < 1 via the U^(1/alpha) boost, kept in
// log space so tiny alphas do not underflow to an all-zero proportion vector).
inline double log_gamma_draw(std::mt19937_64& rng, double alpha) {
  const double boost = alpha < 1.0 ? std::log(uniform_open0(rng)) / alpha : 0.0;
  const double a = alpha < 1.0 ? alpha + 1.0 : alpha;
  const double d = a - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = standard_normal(rng);
    const double t = 1.0 + c * x;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    const double u = uniform_open0(rng);
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) {
      return std::log(d * v) + boost;
    }
  }
}

// Proportions ~ Dirichlet(alpha, ..., alpha) over `k` entries.
inline void dirichlet_draw(std::mt19937_64& rng, double alpha, std::vector<double>& p) {
  double top = -INFINITY;
  for (double& value : p) {
    value = log_gamma_draw(rng, alpha);
    top = std::max(top, value);
  }
  double sum = 0;
  for (double& value : p) sum += (value = std::exp(value - top));
  for (double& value : p) value /= sum;
}

inline void sort_devices(Partition& result) {
  for (auto& device : result.devices) std::sort(device.begin(), device.end());
}

}  // namespace partition_detail

inline Partition partition_iid(int64_t n, int64_t devices, uint64_t seed) {
  partition_detail::check_devices(n, devices, "partition_iid");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  shuffle_portable(std::span<int64_t>(order), rng);
  Partition result;
  result.devices.resize(static_cast<size_t>(devices));
  int64_t begin = 0;
  for (int64_t d = 0; d < devices; ++d) {
    const int64_t count = n / devices + (d < n % devices ? 1 : 0);
    result.devices[d].assign(order.begin() + begin, order.begin() + begin + count);
    begin += count;
  }
  partition_detail::sort_devices(result);
  return result;
}

inline Partition partition_dirichlet(std::span<const int32_t> labels, int64_t classes,
                                     const PartitionConfig& config) {
  using namespace partition_detail;
  const int64_t n = static_cast<int64_t>(labels.size());
  const int64_t k = config.devices;
  check_devices(n, k, "partition_dirichlet");
  check_labels(labels, classes, "partition_dirichlet");
  if (!(config.alpha > 0.0) || !std::isfinite(config.alpha)) {
    throw std::invalid_argument("partition_dirichlet: expected alpha > 0, found " +
                                std::to_string(config.alpha));
  }
  if (config.min_samples < 0 || config.min_samples > n / k || config.max_attempts < 1) {
    throw std::invalid_argument(
        "partition_dirichlet: expected 0 <= min_samples <= samples / devices (" +
        std::to_string(n / k) +
        ") and max_attempts >= 1, found min_samples = " + std::to_string(config.min_samples) +
        ", max_attempts = " + std::to_string(config.max_attempts));
  }
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(classes));
  for (int64_t i = 0; i < n; ++i) by_class[labels[i]].push_back(i);

  std::mt19937_64 rng(config.seed);
  Partition result;
  std::vector<double> p(static_cast<size_t>(k));
  for (result.attempts = 1;; ++result.attempts) {
    result.devices.assign(static_cast<size_t>(k), {});
    for (auto& members : by_class) {
      if (members.empty()) continue;
      shuffle_portable(std::span<int64_t>(members), rng);
      dirichlet_draw(rng, config.alpha, p);
      const double count = static_cast<double>(members.size());
      double cumulative = 0;
      size_t begin = 0;
      for (int64_t d = 0; d < k; ++d) {
        cumulative += p[d];
        const size_t end =
            d + 1 == k ? members.size()
                       : std::min(members.size(),
                                  static_cast<size_t>(std::floor(cumulative * count + 0.5)));
        result.devices[d].insert(result.devices[d].end(), members.begin() + begin,
                                 members.begin() + std::max(begin, end));
        begin = std::max(begin, end);
      }
    }
    const bool ok = std::all_of(result.devices.begin(), result.devices.end(), [&](const auto& v) {
      return static_cast<int64_t>(v.size()) >= config.min_samples;
    });
    if (ok) break;
    if (result.attempts == config.max_attempts) {
      result.rebalanced = true;
      for (;;) {
        auto smallest =
            std::min_element(result.devices.begin(), result.devices.end(),
                             [](const auto& a, const auto& b) { return a.size() < b.size(); });
        if (static_cast<int64_t>(smallest->size()) >= config.min_samples) break;
        auto largest =
            std::max_element(result.devices.begin(), result.devices.end(),
                             [](const auto& a, const auto& b) { return a.size() < b.size(); });
        const size_t pick = uniform_below(rng, largest->size());
        smallest->push_back((*largest)[pick]);
        (*largest)[pick] = largest->back();
        largest->pop_back();
      }
      break;
    }
  }
  sort_devices(result);
  return result;
}

inline Partition partition_shards(std::span<const int32_t> labels, int64_t classes, int64_t devices,
                                  int64_t shards_per_device, uint64_t seed) {
  using namespace partition_detail;
  const int64_t n = static_cast<int64_t>(labels.size());
  check_devices(n, devices, "partition_shards");
  check_labels(labels, classes, "partition_shards");
  if (shards_per_device < 1 || devices * shards_per_device > n) {
    throw std::invalid_argument(
        "partition_shards: expected 1 <= shards_per_device and devices * "
        "shards_per_device <= samples (" +
        std::to_string(n) + "), found shards_per_device = " + std::to_string(shards_per_device));
  }
  std::mt19937_64 rng(seed);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  shuffle_portable(std::span<int64_t>(order), rng);  // random order within each class
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return labels[a] < labels[b]; });
  const int64_t shards = devices * shards_per_device;
  std::vector<int64_t> shard_ids(static_cast<size_t>(shards));
  std::iota(shard_ids.begin(), shard_ids.end(), int64_t{0});
  shuffle_portable(std::span<int64_t>(shard_ids), rng);
  Partition result;
  result.devices.resize(static_cast<size_t>(devices));
  for (int64_t slot = 0; slot < shards; ++slot) {
    const int64_t shard = shard_ids[slot];
    // Shard j covers [j*n/S, (j+1)*n/S): sizes differ by at most one.
    const int64_t begin = shard * n / shards, end = (shard + 1) * n / shards;
    auto& device = result.devices[slot / shards_per_device];
    device.insert(device.end(), order.begin() + begin, order.begin() + end);
  }
  sort_devices(result);
  return result;
}

// Labels of every sample of a dataset, in index order.
inline std::vector<int32_t> dataset_labels(const Dataset& dataset) {
  std::vector<int32_t> labels(static_cast<size_t>(dataset.size()));
  for (int64_t i = 0; i < dataset.size(); ++i) labels[i] = dataset.label(i);
  return labels;
}

inline Partition partition(const Dataset& dataset, const PartitionConfig& config) {
  switch (config.scheme) {
    case PartitionScheme::kIid:
      return partition_iid(dataset.size(), config.devices, config.seed);
    case PartitionScheme::kDirichlet:
      return partition_dirichlet(dataset_labels(dataset), dataset.num_classes(), config);
    case PartitionScheme::kShards:
      return partition_shards(dataset_labels(dataset), dataset.num_classes(), config.devices,
                              config.shards_per_device, config.seed);
  }
  throw std::invalid_argument("partition: unknown scheme");
}

// counts[device][class] = how many samples of `class` the device holds.
inline std::vector<std::vector<int64_t>> class_histogram(const Partition& partition,
                                                         std::span<const int32_t> labels,
                                                         int64_t classes) {
  partition_detail::check_labels(labels, classes, "class_histogram");
  std::vector<std::vector<int64_t>> counts(partition.devices.size(),
                                           std::vector<int64_t>(static_cast<size_t>(classes)));
  for (size_t d = 0; d < partition.devices.size(); ++d) {
    for (int64_t index : partition.devices[d]) {
      if (index < 0 || index >= static_cast<int64_t>(labels.size())) {
        throw std::invalid_argument("class_histogram: device " + std::to_string(d) +
                                    " holds index " + std::to_string(index) + ", expected 0.." +
                                    std::to_string(labels.size() - 1));
      }
      ++counts[d][labels[index]];
    }
  }
  return counts;
}

inline std::vector<std::vector<int64_t>> class_histogram(const Partition& partition,
                                                         const Dataset& dataset) {
  return class_histogram(partition, dataset_labels(dataset), dataset.num_classes());
}

// A fixed-width table: header "device total c0 c1 ...", one row per device, then "all".
inline std::string format_class_histogram(const std::vector<std::vector<int64_t>>& counts) {
  const size_t classes = counts.empty() ? 0 : counts[0].size();
  std::vector<int64_t> column_total(classes, 0);
  int64_t grand_total = 0;
  for (const auto& row : counts) {
    for (size_t c = 0; c < classes && c < row.size(); ++c) {
      column_total[c] += row[c];
      grand_total += row[c];
    }
  }
  const int width = std::max<int>(4, static_cast<int>(std::to_string(grand_total).size()) + 1);
  char cell[32];
  std::string text = "device  total";
  for (size_t c = 0; c < classes; ++c) {
    std::snprintf(cell, sizeof cell, "%*s", width, ("c" + std::to_string(c)).c_str());
    text += cell;
  }
  text += '\n';
  const auto add_row = [&](const std::string& label, const std::vector<int64_t>& row) {
    int64_t total = 0;
    for (int64_t v : row) total += v;
    std::snprintf(cell, sizeof cell, "%-6s %6lld", label.c_str(), static_cast<long long>(total));
    text += cell;
    for (size_t c = 0; c < classes; ++c) {
      std::snprintf(cell, sizeof cell, "%*lld", width,
                    static_cast<long long>(c < row.size() ? row[c] : 0));
      text += cell;
    }
    text += '\n';
  };
  for (size_t d = 0; d < counts.size(); ++d) add_row(std::to_string(d), counts[d]);
  add_row("all", column_total);
  return text;
}

}  // namespace mercury::data
