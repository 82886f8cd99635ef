// mercury/train/config.hpp — every knob of training (one device or a BSP group), in one struct.
//
// Contract
// - TrainConfig is the one place a knob lives. Its JSON form (to_json/config_from_json) uses the
//   field names below; the CLI mirrors each key as a flag (`data_dir` ↔ `--data-dir`) from
//   train_config_help(), so the three can never drift apart.
// - config_from_json() rejects unknown keys and wrong types with a message naming the key, the
//   expected type and what was found; validate() checks ranges.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mercury::train {

struct TrainConfig {
  std::string model = "cnn";
  std::string data = "fashion-mnist";
  std::string data_dir;
  int64_t vocabulary = 20000;  // text datasets: vocabulary size cap
  int64_t image_size = 64;     // aid: images resized to image_size × image_size
  bool augment = true;         // standard training augmentation of the dataset
  bool log_mel = false;        // speech-commands: 40 log-mel bins instead of 161 linear
  int64_t epochs = 10;
  int64_t batch = 64;
  int64_t micro_batch = 0;  // 0: no accumulation
  double lr = 0.001;
  std::string optimizer = "adam";
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  std::string schedule = "constant";
  int64_t warmup_steps = 0;
  int64_t step_size = 1000;
  double gamma = 0.1;
  int64_t threads = 0;  // 0: MERCURY_THREADS or all cores
  int64_t seed = 1;
  std::string checkpoint;         // written at the end of every epoch (and at the end)
  int64_t checkpoint_every = 0;   // also every N steps (0: only per epoch)
  std::string resume;             // checkpoint to resume from
  bool resume_unchecked = false;  // accept a checkpoint without a CRC over header and data
  std::string metrics;            // JSON-lines file
  int64_t max_steps = 0;          // stop after N optimizer steps in total (0: no limit)
  int64_t train_limit = 0;        // use only the first N training samples (0: all)
  int64_t test_limit = 0;         // evaluate on the first N test samples (0: all)
  int64_t eval_batch = 128;
  bool progress = true;  // progress line with ETA on a terminal
  // Importance sampling (mercury/importance/).
  std::string sampler = "uniform";  // uniform | mercury | all-is | kf | selective-backprop |
                                    // infobatch
  int64_t group_size = 0;           // M; 0: 10 × batch
  int64_t groups_per_batch = 2;     // d
  double beta = -1;                 // β of the group choice; < 0: 4/D
  double lambda = 0.5;              // λ: q ∝ loss + λ·EMA(mean loss)
  std::string weighting = "paper";  // paper: 1/(M·q) | exact: 1/(N·π·q)
  double weight_power = 1.0;        // α: weights tempered to w^α (1: unbiased, 0: unweighted)
  std::string draw = "iid";         // in-group draw: iid (with replacement) | systematic
  std::string in_group = "loss";    // in-group q: loss (l + λ·m) | rank (percentile + λ)
  bool score_train_mode = false;    // score with batch statistics instead of eval-mode norm
  bool reuse_train_losses = true;   // mercury: training-forward losses also refresh the cache
  int64_t refresh_every = 1;        // mercury: score one group every N steps
  int64_t kf_presample = 3;
  double kf_tau_th = -1;  // kf: IS once the variance-reduction EMA exceeds it (-1 auto, 0 always)
  double sb_beta = 1.0;
  double ib_ratio = 0.5;    // infobatch: share of the below-mean samples pruned each pass
  double ib_delta = 0.875;  // infobatch: prune only in the first ib_delta of the epochs' steps
  int64_t eval_every = 0;   // also evaluate every N steps (0: per epoch only)
  double target_acc = 0;    // stop once test accuracy reaches this (0: never)
  int64_t importance_stats_every = 0;  // histogram + rank change every N steps (0: off)
  // Distributed training (BSP; used only when the trainer is given a DistContext).
  std::string partition = "iid";    // how the training set is split over ranks: iid | dirichlet |
                                    // shards (mercury/data/partition.hpp)
  double dirichlet_alpha = 0.5;     // dirichlet: concentration (smaller = more skewed)
  int64_t shards_per_device = 2;    // shards: label-sorted shards per rank
  double op_timeout = 300;          // seconds a rank waits for one phase of a step
  int64_t replica_check_every = 0;  // compare all ranks' weight checksums every N steps (0: off)
  std::string algorithm = "sync";   // sync (BSP: every step aggregates) | tictac (BSP layer by
                                    // layer, overlapped with compute) | adacomm (local SGD)
  int64_t adacomm_tau0 = 5;         // adacomm: tau0, the period scale (local steps; periods <= 16)
  double adacomm_t0 = 30;           // adacomm: seconds of training between period updates
  // The step pipeline (BACC: mercury/importance/worker.hpp).
  std::string pipeline = "auto";         // auto (bacc: distributed mercury) | sequential | bacc
  int64_t scorer_threads = 1;            // bacc: the scorer thread's own worker budget
  std::string scorer_priority = "idle";  // bacc: idle (SCHED_IDLE: only idle CPU) | normal
  int64_t bacc_chunk = 32;         // bacc: samples per scoring chunk (the stopping granularity)
  bool bacc_finish_chunk = false;  // bacc: an adaptive window waits for its running chunk
  int64_t bacc_max_group = 0;      // bacc: most samples scored in one window (0: 10 x local batch)
  std::string replay_group_sizes;  // bacc: a metrics file whose "bacc" events fix each step's group
  // Resharding (distributed; mercury/dist/reshard.hpp).
  std::string reshard = "off";        // off | random | importance
  double reshard_budget = 0.5;        // fraction of a full reshuffle moved per epoch
  std::string reshard_share = "all";  // this device: all | none | N (most samples sent per epoch)
};

// reshard_share as a per-epoch cap: -1 = all, else the count ("none" = 0). Throws
// std::invalid_argument on anything else.
inline int64_t parse_reshard_share(const std::string& s) {
  if (s == "all") return -1;
  if (s == "none") return 0;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end || errno || v < 0 || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
    throw std::invalid_argument(
        "reshard_share: expected all, none or a sample count >= 0 sent per epoch, found '" + s +
        "'");
  }
  return v;
}

// (key, help) for every field, in the order --help shows them.
// The closed value sets of the string keys, in the order the help lists them: validate() checks
// against them and the CLI shows them as each flag's type. (model and data come from the model
// registry and the data catalog.)
inline const std::vector<std::pair<std::string, std::vector<std::string>>>& train_config_choices() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> c = {
      {"optimizer", {"sgd", "adam", "adamw"}},
      {"schedule", {"constant", "step", "cosine"}},
      {"sampler", {"uniform", "mercury", "all-is", "kf", "selective-backprop", "infobatch"}},
      {"weighting", {"paper", "exact"}},
      {"draw", {"iid", "systematic"}},
      {"in_group", {"loss", "rank"}},
      {"partition", {"iid", "dirichlet", "shards"}},
      {"algorithm", {"sync", "tictac", "adacomm"}},
      {"pipeline", {"auto", "sequential", "bacc"}},
      {"scorer_priority", {"idle", "normal"}},
      {"reshard", {"off", "random", "importance"}},
  };
  return c;
}

// "a", "a or b", "a, b or c".
inline std::string one_of(const std::vector<std::string>& values) {
  std::string s;
  for (std::size_t i = 0; i < values.size(); ++i)
    s += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + values[i];
  return s;
}

inline const std::vector<std::pair<std::string, std::string>>& train_config_help() {
  static const std::vector<std::pair<std::string, std::string>> h = {
      {"model",
       "model name: cnn | mlp | resnet8 | resnet20 | resnet18 | resnet50 | mobilenetv2 | vgg13 | "
       "ds_cnn | lstm_attention | textcnn"},
      {"data",
       "dataset: fashion-mnist | cifar10 | cifar100 | svhn | aid | speech-commands | ag-news | "
       "debian-text"},
      {"data_dir", "dataset directory (default: the Debian package location, Fashion-MNIST only)"},
      {"vocabulary", "text datasets: vocabulary size cap"},
      {"image_size", "aid: resize images to N x N"},
      {"augment", "standard training augmentation: crop/flip, time shift + noise (true/false)"},
      {"log_mel", "speech-commands: 40 log-mel bins instead of the 161-bin log-spectrogram"},
      {"epochs", "number of epochs"},
      {"batch", "batch size (samples per optimizer step)"},
      {"micro_batch", "accumulate gradients over micro-batches of this size (0: off)"},
      {"lr", "base learning rate"},
      {"optimizer", "sgd | adam | adamw"},
      {"momentum", "SGD momentum"},
      {"nesterov", "SGD Nesterov momentum (true/false)"},
      {"weight_decay", "weight decay (L2 for sgd/adam, decoupled for adamw)"},
      {"schedule", "learning-rate schedule: constant | step | cosine"},
      {"warmup_steps", "linear warm-up steps"},
      {"step_size", "step schedule: multiply lr by gamma every N steps"},
      {"gamma", "step schedule factor"},
      {"threads",
       "worker threads; 0 = MERCURY_THREADS or all cores (results are bit-reproducible for a fixed "
       "count)"},
      {"seed", "random seed (init, shuffling, dropout)"},
      {"checkpoint", "checkpoint file (safetensors layout) written every epoch"},
      {"checkpoint_every", "also checkpoint every N steps (0: per epoch only)"},
      {"resume", "checkpoint to resume from (exact continuation)"},
      {"resume_unchecked",
       "accept a --resume checkpoint that carries no CRC32C over its header and data (written "
       "by another tool or an older mercury; true/false)"},
      {"metrics", "JSON-lines metrics file"},
      {"max_steps", "stop after N optimizer steps in total (0: no limit)"},
      {"train_limit", "use only the first N training samples (0: all)"},
      {"test_limit", "evaluate on the first N test samples (0: all)"},
      {"eval_batch", "batch size for evaluation (forward only)"},
      {"progress", "show a progress line with ETA on a terminal (true/false)"},
      {"sampler",
       "batch sampler: uniform | mercury | all-is | kf | selective-backprop | infobatch"},
      {"group_size", "mercury: samples scored per iteration, M (0: 10 x batch)"},
      {"groups_per_batch", "mercury: groups a batch is drawn from, d"},
      {"beta",
       "mercury: recency temperature of the group choice, beta, per step; under adacomm per "
       "averaging (beta / tau0 per step) (< 0: 4/D)"},
      {"lambda", "mercury: smoothing, q ~ loss + lambda * EMA(mean loss)"},
      {"weighting", "mercury: paper (1/(M q)) | exact (1/(N pi q), unbiased)"},
      {"weight_power",
       "mercury: temper the weights to w^alpha, alpha in [0, 1] (1: unbiased, 0: unweighted)"},
      {"draw",
       "mercury: in-group draw: iid (with replacement) | systematic (fewer repeats, same "
       "expectation)"},
      {"in_group",
       "mercury: in-group distribution: loss (q ~ loss + lambda * EMA) | rank (q ~ rank "
       "percentile in the group + lambda)"},
      {"score_train_mode", "score with batch-statistics normalisation (true/false)"},
      {"reuse_train_losses",
       "mercury: the training pass's per-sample losses refresh the cache too (true/false)"},
      {"refresh_every", "mercury: score one group every N steps (1: every step)"},
      {"kf_presample", "kf: candidates scored per batch slot"},
      {"kf_tau_th",
       "kf: sample by importance once the EMA of the estimated variance reduction exceeds this, "
       "uniformly before (-1: (kf_presample + 3) / 3, Katharopoulos & Fleuret's eq. 29; 0: "
       "from the first step)"},
      {"sb_beta", "selective-backprop: keep probability = loss percentile ^ beta"},
      {"ib_ratio",
       "infobatch: each pass drops this share of the samples whose last loss is below the mean "
       "(the kept ones weigh 1 / (1 - ib_ratio))"},
      {"ib_delta",
       "infobatch: prune in passes that start within this fraction of the budget (epochs x "
       "steps per epoch; max_steps only stops a run), then train on all the data (annealing)"},
      {"eval_every", "also evaluate every N steps (0: once per epoch)"},
      {"target_acc", "stop when test accuracy reaches this fraction (0: never)"},
      {"importance_stats_every",
       "log importance histogram and rank changes every N steps (0: off)"},
      {"partition", "distributed: split of the training set over ranks: iid | dirichlet | shards"},
      {"dirichlet_alpha", "distributed, dirichlet partition: concentration (smaller = more skew)"},
      {"shards_per_device", "distributed, shards partition: label-sorted shards per rank"},
      {"op_timeout",
       "distributed: seconds a rank waits for one phase of a step (must cover the slowest "
       "rank's compute and rank 0's evaluation)"},
      {"replica_check_every",
       "distributed: check every N steps that all ranks hold identical weights (0: off)"},
      {"algorithm",
       "distributed: sync (every step's gradients aggregated: BSP) | tictac (the same BSP update "
       "scheduled layer by layer: gradients pushed as backward produces them, parameters pulled "
       "in forward order, the next forward starting on a layer once its parameters are in) | "
       "adacomm (local SGD: tau "
       "local steps, then the weights averaged through the shard servers; every adacomm_t0 "
       "seconds tau = ceil(sqrt(lr0 F / (lr F0)) tau0), clipped to 1..16, F the recent training "
       "loss and F0 the first period's)"},
      {"adacomm_tau0",
       "adacomm: tau0, the communication period's scale, in local steps (1..64; every period, "
       "the first included, is clipped to 1..16)"},
      {"adacomm_t0", "adacomm: seconds of training (the run's clock) between updates of tau"},
      {"pipeline",
       "step pipeline: auto (bacc for a distributed mercury run with algorithm sync or adacomm, "
       "else sequential) | sequential (score, then compute, then aggregate) | bacc (a scorer "
       "thread scores the next group while the aggregation holds the link -- every step, or "
       "with adacomm every averaging; group_size > 0 fixes the group, 0 adapts it)"},
      {"scorer_threads", "bacc: worker threads of the scorer thread's own pool"},
      {"scorer_priority",
       "bacc: idle (the scorer runs under SCHED_IDLE and takes only CPU time nothing else wants) "
       "| normal"},
      {"bacc_chunk",
       "bacc: samples per scoring chunk; an adaptive group is the chunks finished when the "
       "aggregation ends (the running one is dropped)"},
      {"bacc_finish_chunk",
       "bacc: when the aggregation ends, wait for the chunk being scored and count it (true), "
       "or drop it and never wait (false: smaller groups, nothing exposed)"},
      {"bacc_max_group",
       "bacc: most samples scored in one aggregation window (0, the default: 10 x the local "
       "batch, the paper's group size M, or --group-size if larger); under adacomm per local "
       "step: an averaging's window scores up to tau times it"},
      {"replay_group_sizes",
       "bacc: repeat the group sizes an earlier run logged (its metrics file; rank r reads its "
       "own .rank<r> file) bit for bit"},
      {"reshard",
       "distributed: swap raw samples between ranks during training: off | random | importance "
       "(picks high-importance samples; needs sampler mercury or all-is)"},
      {"reshard_budget",
       "distributed: samples moved per epoch as a fraction of a full reshuffle (N (W-1)/W), in "
       "[0, 1]"},
      {"reshard_share",
       "distributed, this device: all | none | N: the most samples this device gives away per "
       "epoch (it still trains; a pair swaps what both sides allow)"},
  };
  return h;
}

inline nlohmann::json to_json(const TrainConfig& c) {
  return nlohmann::json{{"model", c.model},
                        {"data", c.data},
                        {"data_dir", c.data_dir},
                        {"vocabulary", c.vocabulary},
                        {"image_size", c.image_size},
                        {"augment", c.augment},
                        {"log_mel", c.log_mel},
                        {"epochs", c.epochs},
                        {"batch", c.batch},
                        {"micro_batch", c.micro_batch},
                        {"lr", c.lr},
                        {"optimizer", c.optimizer},
                        {"momentum", c.momentum},
                        {"nesterov", c.nesterov},
                        {"weight_decay", c.weight_decay},
                        {"schedule", c.schedule},
                        {"warmup_steps", c.warmup_steps},
                        {"step_size", c.step_size},
                        {"gamma", c.gamma},
                        {"threads", c.threads},
                        {"seed", c.seed},
                        {"checkpoint", c.checkpoint},
                        {"checkpoint_every", c.checkpoint_every},
                        {"resume", c.resume},
                        {"resume_unchecked", c.resume_unchecked},
                        {"metrics", c.metrics},
                        {"max_steps", c.max_steps},
                        {"train_limit", c.train_limit},
                        {"test_limit", c.test_limit},
                        {"eval_batch", c.eval_batch},
                        {"progress", c.progress},
                        {"sampler", c.sampler},
                        {"group_size", c.group_size},
                        {"groups_per_batch", c.groups_per_batch},
                        {"beta", c.beta},
                        {"lambda", c.lambda},
                        {"weighting", c.weighting},
                        {"weight_power", c.weight_power},
                        {"draw", c.draw},
                        {"in_group", c.in_group},
                        {"score_train_mode", c.score_train_mode},
                        {"reuse_train_losses", c.reuse_train_losses},
                        {"refresh_every", c.refresh_every},
                        {"kf_presample", c.kf_presample},
                        {"kf_tau_th", c.kf_tau_th},
                        {"sb_beta", c.sb_beta},
                        {"ib_ratio", c.ib_ratio},
                        {"ib_delta", c.ib_delta},
                        {"eval_every", c.eval_every},
                        {"target_acc", c.target_acc},
                        {"importance_stats_every", c.importance_stats_every},
                        {"partition", c.partition},
                        {"dirichlet_alpha", c.dirichlet_alpha},
                        {"shards_per_device", c.shards_per_device},
                        {"op_timeout", c.op_timeout},
                        {"replica_check_every", c.replica_check_every},
                        {"algorithm", c.algorithm},
                        {"adacomm_tau0", c.adacomm_tau0},
                        {"adacomm_t0", c.adacomm_t0},
                        {"pipeline", c.pipeline},
                        {"scorer_threads", c.scorer_threads},
                        {"scorer_priority", c.scorer_priority},
                        {"bacc_chunk", c.bacc_chunk},
                        {"bacc_finish_chunk", c.bacc_finish_chunk},
                        {"bacc_max_group", c.bacc_max_group},
                        {"replay_group_sizes", c.replay_group_sizes},
                        {"reshard", c.reshard},
                        {"reshard_budget", c.reshard_budget},
                        {"reshard_share", c.reshard_share}};
}

inline const char* json_type_name(const nlohmann::json& v) {
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  return v.type_name();
}

// Overlays `patch` onto the JSON form of `base`, checking keys and types.
inline TrainConfig config_from_json(const nlohmann::json& patch, const TrainConfig& base = {},
                                    const std::string& source = "config") {
  if (!patch.is_object()) {
    throw std::invalid_argument(source + ": expected a JSON object, found " +
                                std::string(json_type_name(patch)));
  }
  nlohmann::json j = to_json(base);
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (!j.contains(it.key())) {
      throw std::invalid_argument(source + ": unknown key '" + it.key() +
                                  "' (see `mercury train --help` for the keys)");
    }
    const nlohmann::json& want = j[it.key()];
    const nlohmann::json& got = it.value();
    const bool ok = (want.is_boolean() && got.is_boolean()) ||
                    (want.is_number_integer() && got.is_number_integer()) ||
                    (want.is_number_float() && got.is_number()) ||
                    (want.is_string() && got.is_string());
    if (!ok) {
      throw std::invalid_argument(source + ": key '" + it.key() + "' expects " +
                                  json_type_name(want) + ", found " + json_type_name(got) + " " +
                                  got.dump());
    }
    j[it.key()] = got;
  }
  TrainConfig c;
  c.model = j["model"];
  c.data = j["data"];
  c.data_dir = j["data_dir"];
  c.vocabulary = j["vocabulary"];
  c.image_size = j["image_size"];
  c.augment = j["augment"];
  c.log_mel = j["log_mel"];
  c.epochs = j["epochs"];
  c.batch = j["batch"];
  c.micro_batch = j["micro_batch"];
  c.lr = j["lr"];
  c.optimizer = j["optimizer"];
  c.momentum = j["momentum"];
  c.nesterov = j["nesterov"];
  c.weight_decay = j["weight_decay"];
  c.schedule = j["schedule"];
  c.warmup_steps = j["warmup_steps"];
  c.step_size = j["step_size"];
  c.gamma = j["gamma"];
  c.threads = j["threads"];
  c.seed = j["seed"];
  c.checkpoint = j["checkpoint"];
  c.checkpoint_every = j["checkpoint_every"];
  c.resume = j["resume"];
  c.resume_unchecked = j["resume_unchecked"];
  c.metrics = j["metrics"];
  c.max_steps = j["max_steps"];
  c.train_limit = j["train_limit"];
  c.test_limit = j["test_limit"];
  c.eval_batch = j["eval_batch"];
  c.progress = j["progress"];
  c.sampler = j["sampler"];
  c.group_size = j["group_size"];
  c.groups_per_batch = j["groups_per_batch"];
  c.beta = j["beta"];
  c.lambda = j["lambda"];
  c.weighting = j["weighting"];
  c.weight_power = j["weight_power"];
  c.draw = j["draw"];
  c.in_group = j["in_group"];
  c.score_train_mode = j["score_train_mode"];
  c.reuse_train_losses = j["reuse_train_losses"];
  c.refresh_every = j["refresh_every"];
  c.kf_presample = j["kf_presample"];
  c.kf_tau_th = j["kf_tau_th"];
  c.sb_beta = j["sb_beta"];
  c.ib_ratio = j["ib_ratio"];
  c.ib_delta = j["ib_delta"];
  c.eval_every = j["eval_every"];
  c.target_acc = j["target_acc"];
  c.importance_stats_every = j["importance_stats_every"];
  c.partition = j["partition"];
  c.dirichlet_alpha = j["dirichlet_alpha"];
  c.shards_per_device = j["shards_per_device"];
  c.op_timeout = j["op_timeout"];
  c.replica_check_every = j["replica_check_every"];
  c.algorithm = j["algorithm"];
  c.adacomm_tau0 = j["adacomm_tau0"];
  c.adacomm_t0 = j["adacomm_t0"];
  c.pipeline = j["pipeline"];
  c.scorer_threads = j["scorer_threads"];
  c.scorer_priority = j["scorer_priority"];
  c.bacc_chunk = j["bacc_chunk"];
  c.bacc_finish_chunk = j["bacc_finish_chunk"];
  c.bacc_max_group = j["bacc_max_group"];
  c.replay_group_sizes = j["replay_group_sizes"];
  c.reshard = j["reshard"];
  c.reshard_budget = j["reshard_budget"];
  c.reshard_share = j["reshard_share"];
  return c;
}

// A number as the user wrote it would read it: %g, so 1e-50 is not "0.000000" and inf/nan say
// so.
inline std::string config_number(double v) {
  if (std::isnan(v)) return "nan";  // printf shows a NaN's (meaningless) sign bit as "-nan"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// Upper bounds on counts: far above any real run, low enough that products of two of them (steps
// = epochs x steps per epoch, samples = batch x presample, ...) cannot overflow int64.
inline constexpr int64_t kMaxEpochs = 1'000'000;
inline constexpr int64_t kMaxBatch = int64_t{1} << 24;
inline constexpr int64_t kMaxSteps = int64_t{1} << 38;  // x kMaxBatch < 2^63
inline constexpr int64_t kMaxKfPresample = 64;

inline void validate(const TrainConfig& c) {
  auto need = [](bool ok, const std::string& what, const std::string& found) {
    if (!ok) throw std::invalid_argument(what + ", found " + found);
  };
  const auto count = [&](int64_t v, int64_t lo, int64_t hi, const char* key) {
    need(v >= lo && v <= hi,
         std::string(key) + ": expected " + std::to_string(lo) + ".." + std::to_string(hi),
         std::to_string(v));
  };
  // A real number in [lo, hi] (bounds open when asked); NaN and infinities never pass.
  const auto real = [&](double v, double lo, double hi, const char* key, bool lo_open = false,
                        bool hi_open = false) {
    const bool ok =
        std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    need(ok,
         std::string(key) + ": expected a finite value in " + (lo_open ? "(" : "[") +
             config_number(lo) + ", " + config_number(hi) + (hi_open ? ")" : "]"),
         config_number(v));
  };
  const nlohmann::json as_json = to_json(c);
  for (const auto& [key, values] : train_config_choices()) {
    const std::string value = as_json.at(key).get<std::string>();
    need(std::find(values.begin(), values.end(), value) != values.end(),
         key + ": expected " + one_of(values), "'" + value + "'");
  }
  count(c.epochs, 1, kMaxEpochs, "epochs");
  count(c.vocabulary, 3, 10'000'000, "vocabulary");
  count(c.image_size, 8, 1024, "image_size");
  count(c.batch, 1, kMaxBatch, "batch");
  need(c.micro_batch >= 0 && c.micro_batch <= c.batch,
       "micro_batch: expected 0..batch (" + std::to_string(c.batch) + ")",
       std::to_string(c.micro_batch));
  real(c.lr, 0, 100, "lr", true, true);
  // The schedule runs in float: a rate that rounds to 0 (or a denormal) would train nothing.
  need(static_cast<float>(c.lr) >= std::numeric_limits<float>::min(),
       "lr: expected a rate representable in float (>= " +
           config_number(std::numeric_limits<float>::min()) + ")",
       config_number(c.lr));
  real(c.momentum, 0, 1, "momentum", false, true);
  real(c.weight_decay, 0, 100, "weight_decay");
  count(c.threads, 0, 1024, "threads");
  need(c.seed >= 0, "seed: expected >= 0", std::to_string(c.seed));
  count(c.checkpoint_every, 0, kMaxSteps, "checkpoint_every");
  count(c.max_steps, 0, kMaxSteps, "max_steps");
  need(c.train_limit >= 0, "train_limit: expected >= 0", std::to_string(c.train_limit));
  need(c.test_limit >= 0, "test_limit: expected >= 0", std::to_string(c.test_limit));
  count(c.eval_batch, 1, kMaxBatch, "eval_batch");
  count(c.warmup_steps, 0, kMaxSteps, "warmup_steps");
  count(c.step_size, 1, kMaxSteps, "step_size");
  real(c.gamma, 0, 1000, "gamma", true);
  count(c.group_size, 0, kMaxBatch, "group_size");
  count(c.groups_per_batch, 1, 65536, "groups_per_batch");
  need(std::isfinite(c.beta) && std::abs(c.beta) <= 1e6,
       "beta: expected a finite value in [-1e+06, 1e+06] (< 0: automatic, 4/D)",
       config_number(c.beta));
  real(c.lambda, 0, 1e6, "lambda");
  real(c.weight_power, 0, 1, "weight_power");
  need(c.in_group != "rank" || c.lambda > 0,
       "lambda: expected > 0 with in_group rank (0 never draws a group's lowest-ranked sample)",
       config_number(c.lambda));
  count(c.refresh_every, 1, kMaxSteps, "refresh_every");
  count(c.kf_presample, 1, kMaxKfPresample, "kf_presample");
  need(c.kf_tau_th == -1 || (std::isfinite(c.kf_tau_th) && c.kf_tau_th >= 0),
       "kf_tau_th: expected -1 (automatic) or a finite value >= 0", config_number(c.kf_tau_th));
  real(c.sb_beta, 0, 1000, "sb_beta", true);
  real(c.ib_ratio, 0, 1, "ib_ratio", false, true);  // 1 would weigh the kept ones infinitely
  real(c.ib_delta, 0, 1, "ib_delta");
  count(c.eval_every, 0, kMaxSteps, "eval_every");
  real(c.target_acc, 0, 1, "target_acc");
  count(c.importance_stats_every, 0, kMaxSteps, "importance_stats_every");
  real(c.dirichlet_alpha, 0, 1e6, "dirichlet_alpha", true);
  count(c.shards_per_device, 1, 1 << 20, "shards_per_device");
  real(c.op_timeout, 0, 86400, "op_timeout (seconds)", true);
  count(c.replica_check_every, 0, kMaxSteps, "replica_check_every");
  count(c.adacomm_tau0, 1, 64, "adacomm_tau0");
  real(c.adacomm_t0, 0, 1e6, "adacomm_t0 (seconds)", true);
  need(c.algorithm != "tictac" || c.pipeline != "bacc",
       "pipeline bacc: expected algorithm sync or adacomm (BACC scores while the aggregation "
       "holds the link; tictac overlaps the aggregation with compute instead)",
       "algorithm " + c.algorithm);
  need(c.pipeline != "bacc" || c.sampler == "mercury",
       "pipeline bacc: expected sampler mercury (the group-wise sampler; the others score inside "
       "their draw)",
       "sampler '" + c.sampler + "'");
  need(c.scorer_threads >= 1 && c.scorer_threads <= 1024, "scorer_threads: expected 1..1024",
       std::to_string(c.scorer_threads));
  need(c.bacc_chunk >= 1 && c.bacc_chunk <= 65536, "bacc_chunk: expected 1..65536",
       std::to_string(c.bacc_chunk));
  need(c.bacc_max_group == 0 ||
           (c.bacc_max_group >= c.bacc_chunk && c.bacc_max_group <= (int64_t{1} << 24)),
       "bacc_max_group: expected 0 (10 x the local batch) or bacc_chunk.." +
           std::to_string(int64_t{1} << 24),
       std::to_string(c.bacc_max_group));
  need(c.reshard != "importance" || c.sampler == "mercury" || c.sampler == "all-is",
       "reshard importance: expected sampler mercury or all-is (it picks by their importance "
       "cache; use reshard random with other samplers)",
       "sampler '" + c.sampler + "'");
  real(c.reshard_budget, 0, 1, "reshard_budget");
  (void)parse_reshard_share(c.reshard_share);
}

}  // namespace mercury::train
