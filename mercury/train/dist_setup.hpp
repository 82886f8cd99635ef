// mercury/train/dist_setup.hpp — what a trainer needs to run as one rank of a BSP group: the
// context the caller hands over, this rank's partition of the training set, its seeds and file
// names, and the config checks that only apply to distributed runs.
//
// Contract
// - Every rank computes the same split: data::partition of the first train_limit samples with
//   cfg.partition (iid | dirichlet | shards) seeded by cfg.seed; LocalData holds a copy of this
//   rank's part (a data::LocalStore: only its own samples, which resharding edits) and every
//   rank's part size.
// - rank_seed(seed, rank): the seed of a rank's own streams (shuffle, dropout, augmentation,
//   sampler); rank 0 keeps the run's seed, so a world-1 run equals the single-device run.
// - rank_weight_scale(sizes, rank): the factor W·N_k/N on rank k's loss weights that makes the
//   mean of the ranks' gradients (what the shard servers compute) the size-weighted
//   Σ_k (N_k/N)·ĝ_k: with unbiased local estimates ĝ_k of the local means, an unbiased estimate
//   of the full-data gradient whatever the partition sizes. Exactly 1 for equal parts.
// - check_dist_config throws std::invalid_argument naming the field, what was expected and what
//   was found.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/data/local_store.hpp"
#include "mercury/data/partition.hpp"
#include "mercury/data/subset.hpp"
#include "mercury/dist/shard_plan.hpp"
#include "mercury/importance/policy.hpp"
#include "mercury/train/config.hpp"
#include "net/transport.hpp"

namespace mercury::train {

// What a trainer needs to run as one rank of a BSP group. The caller owns the transport: it has
// done the handshake (plan.hash(), the model's layout_hash()) and closes it after run(); the
// transport must outlive the Trainer, the DistContext need not.
struct DistContext {
  net::Transport& transport;
  dist::ShardPlan plan;
  // Called at the start of every step with its global iteration, after the step's reshard
  // samples (if any) were handed to the transport (fault injection: MERCURY_FAULT). Optional.
  std::function<void(int64_t iteration)> before_step;
  // Called once the trainer no longer reads the full training set it was given (it holds its own
  // partition; after a distributed resume restored it): the caller may free the dataset, as a
  // device keeps only its own samples. Optional.
  std::function<void()> release_dataset;
};

inline uint64_t rank_seed(uint64_t seed, int rank) {
  return seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(rank);
}

// Rank r's metrics file in distributed mode: rank 0 keeps `path`, others insert ".rank<r>"
// before the extension ("run.jsonl" → "run.rank2.jsonl"; "log" → "log.rank2"). Empty stays empty.
inline std::string dist_metrics_path(const std::string& path, int rank) {
  if (path.empty() || rank == 0) return path;
  const std::size_t slash = path.find_last_of('/');
  const std::size_t dot = path.find_last_of('.');
  const bool has_ext = dot != std::string::npos && (slash == std::string::npos || dot > slash + 1);
  const std::string tag = ".rank" + std::to_string(rank);
  return has_ext ? path.substr(0, dot) + tag + path.substr(dot) : path + tag;
}

inline double rank_weight_scale(const std::vector<int64_t>& sizes, int rank) {
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  const auto w = static_cast<int64_t>(sizes.size());
  const int64_t mine = sizes.at(static_cast<std::size_t>(rank));
  if (mine * w == total) return 1.0;  // equal parts: exactly 1, the weights stay untouched
  return static_cast<double>(w) * static_cast<double>(mine) / static_cast<double>(total);
}

// Multiplies a batch's loss weights by `scale` (an unweighted batch gets weights = scale).
inline void scale_weights(importance::BatchPlan& plan, double scale) {
  if (scale == 1.0) return;
  if (plan.weights.empty()) plan.weights.assign(plan.indices.size(), 1.0f);
  for (float& w : plan.weights) w = static_cast<float>(static_cast<double>(w) * scale);
}

struct LocalData {
  std::unique_ptr<data::LocalStore> part;  // this rank's samples (its own copy)
  std::vector<int64_t> sizes;              // every rank's part size
};

inline LocalData local_partition(const TrainConfig& c, const data::Dataset& full, int rank,
                                 int world) {
  const int64_t n = c.train_limit ? std::min(c.train_limit, full.size()) : full.size();
  data::PartitionConfig pc;
  pc.scheme = data::parse_partition_scheme(c.partition);
  pc.devices = world;
  pc.seed = static_cast<uint64_t>(c.seed);
  pc.alpha = c.dirichlet_alpha;
  pc.shards_per_device = c.shards_per_device;
  data::Partition part;
  if (n == full.size()) {
    part = data::partition(full, pc);
  } else {
    std::vector<int64_t> head(static_cast<std::size_t>(std::max<int64_t>(n, 0)));
    std::iota(head.begin(), head.end(), int64_t{0});
    part = data::partition(data::Subset(full, std::move(head), "first samples"), pc);
  }
  LocalData out;
  for (const auto& d : part.devices) out.sizes.push_back(static_cast<int64_t>(d.size()));
  // Indices into the first n samples are indices into `full` (the head is the identity prefix).
  out.part = std::make_unique<data::LocalStore>(
      full, std::move(part.devices[static_cast<std::size_t>(rank)]),
      "rank " + std::to_string(rank) + "/" + std::to_string(world) + " " + c.partition +
          " partition");
  return out;
}

// The part of a config every rank of a run must share: everything but the per-device knobs
// (paths, thread budgets, progress, evaluation-only settings of rank 0, timeouts), and of those
// paths only whether they are set where that changes the protocol (resume, replay).
inline nlohmann::json shared_config(const TrainConfig& c) {
  nlohmann::json j = to_json(c);
  for (const char* local :
       {"data_dir", "threads", "checkpoint", "resume", "resume_unchecked", "metrics", "progress",
        "eval_batch", "test_limit", "op_timeout", "scorer_threads", "scorer_priority", "bacc_chunk",
        "bacc_finish_chunk", "replay_group_sizes", "reshard_share"})
    j.erase(local);
  j["resume (set)"] = !c.resume.empty();
  j["replay_group_sizes (set)"] = !c.replay_group_sizes.empty();
  return j;
}

// "" when rank `theirs_rank`'s shared config equals ours, else the first differing field named.
inline std::string config_mismatch(const nlohmann::json& ours, const nlohmann::json& theirs,
                                   int theirs_rank) {
  for (const auto& [key, value] : ours.items()) {
    const auto it = theirs.find(key);
    const std::string found = it == theirs.end() ? "nothing" : it->dump();
    if (it == theirs.end() || *it != value) {
      return "training config field '" + key + "': rank 0 has " + value.dump() + ", rank " +
             std::to_string(theirs_rank) + " has " + found +
             " (every rank must run the same training settings; only paths, thread budgets, "
             "timeouts and rank 0's evaluation settings may differ)";
    }
  }
  for (const auto& [key, value] : theirs.items())
    if (!ours.contains(key))
      return "training config field '" + key + "': rank " + std::to_string(theirs_rank) + " has " +
             value.dump() + ", rank 0 has nothing (another mercury version?)";
  return {};
}

// The local batch (batch / world) after checking what only distributed runs require.
inline int64_t check_dist_config(const TrainConfig& c, int world) {
  auto refuse = [](const std::string& what) {
    throw std::invalid_argument("distributed training: " + what);
  };
  if (c.batch % world != 0) {
    refuse("batch: expected a multiple of the world size " + std::to_string(world) +
           " (batch is the global batch; each rank computes batch / world samples), found " +
           std::to_string(c.batch));
  }
  const int64_t local = c.batch / world;
  if (c.micro_batch > local) {
    refuse("micro_batch: expected 0..local batch (batch / world = " + std::to_string(local) +
           "), found " + std::to_string(c.micro_batch));
  }
  return local;
}

}  // namespace mercury::train
