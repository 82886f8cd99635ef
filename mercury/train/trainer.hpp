// mercury/train/trainer.hpp — training on one device or as one rank of a BSP data-parallel
// group: the step loop, evaluation, metrics, checkpoints and exact resume.
//
// Contract
// - Deterministic: the model init, the per-epoch shuffle (a pure function of seed and epoch),
//   and dropout (an RNG saved in checkpoints) depend only on the config; with threads = 1 two
//   runs give bit-identical weights, and save → load → continue equals an uninterrupted run.
// - The step loop allocates nothing after its first step: batch buffers are sized up front and
//   the Engine's arena is reused (the planned bytes are printed after step one).
// - Metrics (JSON lines): "start", one "epoch" line per epoch (epoch, train_loss, test_loss,
//   test_acc, wall_s, train_samples_per_s, steps, lr), and "done" with peak RSS.
//
// Distributed mode (a DistContext is given; every rank constructs a Trainer with the same
// config and calls run()):
// - Data: the training set (its first train_limit samples) is split by cfg.partition (iid |
//   dirichlet | shards, seeded by cfg.seed, so every rank computes the same split) and this rank
//   trains on its part through a data::Subset. cfg.batch is the GLOBAL batch: each rank computes
//   batch / world samples per step (batch must be a multiple of world), so a config means the
//   same optimisation at any world size. An epoch is ceil(largest part / local batch) steps on
//   every rank; a smaller part wraps around its own shuffle (DistributedSampler's padding).
//   Each rank's shuffle, dropout and augmentation streams use rank_seed(seed, rank).
// - Steps: the local gradient goes through dist::BspSync (mean of per-rank means, rank-order
//   reduction, sharded optimizer) instead of the local optimizer; rank 0's initial weights are
//   broadcast first. With world = 1 the run equals the single-device run bit for bit.
// - Rank 0 alone evaluates, logs epoch lines, writes eval/epoch events and checkpoints (weights,
//   buffers and cursor; the optimizer moments stay sharded and are not saved). train_loss is
//   rank 0's local loss; samples/s count all ranks. With target_acc, rank 0's stop decision is
//   broadcast at every evaluation point, so all ranks stop after the same step.
// - Metrics: rank 0 writes cfg.metrics, rank r > 0 writes dist_metrics_path(cfg.metrics, r)
//   ("run.jsonl" → "run.rank1.jsonl"); every rank adds a "dist" event per epoch with its
//   compute_s (forward + backward), comm_s, idle_s, update_s, BSP payload bytes (see
//   dist/bsp.hpp) and the transport's cumulative link bytes (link_bytes_sent/received).
// - Not supported yet (refused with a message): samplers other than uniform, resume. Ranks that
//   share one process (net::LocalHub) must use threads = 1: the thread pool is process-wide.
#pragma once

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/data/partition.hpp"
#include "mercury/data/subset.hpp"
#include "mercury/dist/bsp.hpp"
#include "mercury/dist/shard_plan.hpp"
#include "mercury/importance/policy.hpp"
#include "mercury/importance/stats.hpp"
#include "mercury/io/metrics.hpp"
#include "mercury/nn/engine.hpp"
#include "mercury/optim/optimizer.hpp"
#include "mercury/optim/schedule.hpp"
#include "mercury/tensor/thread_pool.hpp"
#include "mercury/train/checkpoint.hpp"
#include "mercury/train/config.hpp"
#include "net/transport.hpp"

namespace mercury::train {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

struct TrainResult {
  int64_t steps = 0;
  double final_test_acc = 0;  // distributed: rank 0 only (other ranks do not evaluate)
  double final_test_loss = 0;
  double train_samples_per_s = 0;
  int64_t peak_rss_bytes = 0;
};

// CPU seconds used by this process (all threads): unlike wall time, not inflated when other
// work shares the machine. Equals the training thread's CPU time when threads = 1.
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

inline int64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

// The sample order of one epoch: a pure function of (seed, epoch).
inline void epoch_permutation(uint64_t seed, int64_t epoch, std::vector<int64_t>& perm) {
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
  for (int64_t k = static_cast<int64_t>(perm.size()) - 1; k > 0; --k) {
    std::uniform_int_distribution<int64_t> pick(0, k);
    std::swap(perm[k], perm[pick(rng)]);
  }
}

// Per-rank seed of a rank's own random streams (shuffle, dropout, augmentation). Rank 0 keeps
// the run's seed, so a world-1 distributed run is the single-device run.
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

// What a trainer needs to run as one rank of a BSP group. The caller owns the transport: it has
// done the handshake (plan.hash(), the model's layout_hash()) and closes it after run(); the
// transport must outlive the Trainer, the DistContext need not.
struct DistContext {
  net::Transport& transport;
  dist::ShardPlan plan;
  // Called at the start of every step with its global iteration (fault injection in tests:
  // MERCURY_FAULT). Optional.
  std::function<void(int64_t iteration)> before_step;
};

class Trainer {
 public:
  Trainer(TrainConfig cfg, nn::Model& model, const data::Dataset& train, const data::Dataset& test,
          std::ostream& log, const DistContext* dist = nullptr)
      : cfg_(std::move(cfg)),
        rank_(dist ? dist->transport.rank() : 0),
        world_(dist ? dist->transport.world() : 1),
        model_(model),
        local_train_(dist ? local_partition(cfg_, train, rank_, world_, partition_sizes_)
                          : nullptr),
        train_(local_train_ ? *local_train_ : train),
        test_(test),
        log_(log),
        engine_(model, rank_seed(static_cast<uint64_t>(cfg_.seed), rank_)),
        augment_rng_(rank_seed(static_cast<uint64_t>(cfg_.seed), rank_) ^ 0xA5A5A5A5ull),
        opt_(optimizer_config(cfg_), dist ? 0 : model.params.size()),
        metrics_(dist ? dist_metrics_path(cfg_.metrics, rank_) : cfg_.metrics) {
    validate(cfg_);
    if (cfg_.threads == 0) cfg_.threads = default_thread_count();
    // A no-op when the count is unchanged (ranks sharing a process all ask for the same).
    thread_pool().set_threads(static_cast<int>(cfg_.threads));
    n_train_ = cfg_.train_limit ? std::min(cfg_.train_limit, train_.size()) : train_.size();
    n_test_ = cfg_.test_limit ? std::min(cfg_.test_limit, test_.size()) : test_.size();
    if (n_train_ < 1) throw std::invalid_argument("training set is empty");
    batch_ = cfg_.batch;
    n_epoch_ = n_train_;
    if (dist) setup_dist(*dist);
    for (const data::Dataset* d : {&train_, &test_}) {
      if (d->sample_shape() != model_.sample_shape || d->num_classes() != model_.num_classes) {
        throw std::invalid_argument("dataset " + d->describe() + " does not fit model " +
                                    model_.name + ": expected " + model_.sample_shape.str() +
                                    " samples with " + std::to_string(model_.num_classes) +
                                    " classes");
      }
    }
    schedule_.kind = optim::LrSchedule::parse(cfg_.schedule);
    schedule_.base_lr = static_cast<float>(cfg_.lr);
    schedule_.warmup_steps = cfg_.warmup_steps;
    schedule_.step_size = cfg_.step_size;
    schedule_.gamma = static_cast<float>(cfg_.gamma);
    schedule_.total_steps = cfg_.epochs * steps_per_epoch();
    if (cfg_.sampler != "uniform") {
      importance::PolicyConfig pc;
      pc.kind = importance::parse_sampler(cfg_.sampler);
      pc.batch = cfg_.batch;
      pc.group_size = cfg_.group_size;
      pc.sampler.groups_per_batch = cfg_.groups_per_batch;
      pc.sampler.beta = cfg_.beta;
      pc.sampler.lambda = cfg_.lambda;
      pc.sampler.weighting =
          cfg_.weighting == "exact" ? importance::Weighting::exact : importance::Weighting::paper;
      pc.sampler.weight_power = cfg_.weight_power;
      pc.sampler.systematic = cfg_.draw == "systematic";
      pc.sampler.rank = cfg_.in_group == "rank";
      pc.train_mode_norm = cfg_.score_train_mode;
      pc.kf_presample = cfg_.kf_presample;
      pc.kf_tau_th = cfg_.kf_tau_th;
      pc.sb_beta = cfg_.sb_beta;
      pc.reuse_train_losses = cfg_.reuse_train_losses;
      pc.refresh_every = cfg_.refresh_every;
      pc.seed = static_cast<uint64_t>(cfg_.seed);
      policy_ = importance::make_policy(pc, model_, train_, n_train_);
    }
    if (!cfg_.resume.empty()) {
      resume(cfg_.resume);
    }
  }

  static optim::OptimizerConfig optimizer_config(const TrainConfig& c) {
    optim::OptimizerConfig o;
    o.kind = optim::parse_kind(c.optimizer);
    o.momentum = static_cast<float>(c.momentum);
    o.nesterov = c.nesterov;
    o.weight_decay = static_cast<float>(c.weight_decay);
    return o;
  }

  // Steps per epoch (distributed: the same on every rank, set by the largest partition).
  int64_t steps_per_epoch() const { return (n_epoch_ + batch_ - 1) / batch_; }
  const Cursor& cursor() const { return cursor_; }
  // Single device: the optimizer. Distributed: empty (the moments of this rank's shard live in
  // bsp()->server()).
  optim::Optimizer& optimizer() { return opt_; }
  // Distributed mode: the BSP engine (null on a single device).
  const dist::BspSync* bsp() const { return bsp_.get(); }

  TrainResult run() {
    const int64_t B = batch_, S = model_.sample_numel();
    const int64_t micro = cfg_.micro_batch ? cfg_.micro_batch : B;
    std::vector<float> x(static_cast<std::size_t>(B * S));
    std::vector<int32_t> y(static_cast<std::size_t>(B));
    batch_losses_.resize(static_cast<std::size_t>(B));
    std::vector<int64_t> perm(static_cast<std::size_t>(n_train_));
    std::vector<int64_t> wrapped(static_cast<std::size_t>(n_epoch_ > n_train_ ? B : 0));
    TrainResult result;
    nlohmann::json start = {{"event", "start"},
                            {"model", model_.name},
                            {"params", model_.params.count()},
                            {"train_samples", n_train_},
                            {"test_samples", n_test_},
                            {"kernels", kernels::isa_name(kernels::table().isa)},
                            {"config", to_json(cfg_)}};
    if (bsp_) {
      const dist::ShardRange mine = bsp_->plan().range(rank_);
      start.update({{"rank", rank_},
                    {"world", world_},
                    {"partition_sizes", partition_sizes_},
                    {"local_batch", batch_},
                    {"shard_begin", mine.begin},
                    {"shard_end", mine.end},
                    {"plan_hash", bsp_->plan().hash()}});
    }
    metrics_.write(start);
    log_ << "model " << model_.name << ": " << model_.params.count() << " parameters; " << n_train_
         << " train / " << n_test_ << " test samples; kernels "
         << kernels::isa_name(kernels::table().isa) << "; threads " << cfg_.threads << "\n";
    if (bsp_) {
      const dist::ShardRange mine = bsp_->plan().range(rank_);
      log_ << "rank " << rank_ << " of " << world_ << ": " << cfg_.partition << " partition of "
           << n_train_ << " samples (largest " << n_epoch_ << "), local batch " << batch_
           << "; serves floats [" << mine.begin << ", " << mine.end << ") of "
           << bsp_->plan().total() << "\n";
      bsp_->broadcast_initial_params(cursor_.global_step);
    }
    const auto t0 = clock::now();
    double train_seconds = 0;
    int64_t samples_done = 0;
    bool stop = false;
    for (int64_t epoch = cursor_.epoch; epoch < cfg_.epochs && !stop; ++epoch) {
      epoch_permutation(rank_seed(static_cast<uint64_t>(cfg_.seed), rank_), epoch, perm);
      double loss_sum = 0;
      int64_t loss_count = 0;
      auto te = clock::now();
      int64_t epoch_samples = 0;
      for (int64_t s = cursor_.step_in_epoch; s < steps_per_epoch(); ++s) {
        // The batch: a slice of the epoch permutation (uniform) or the sampler's draw.
        const int64_t* idx = perm.data() + s * B;
        int64_t count = std::min(B, n_epoch_ - s * B);
        if (s * B + count > n_train_) {  // distributed: a smaller partition wraps around
          for (int64_t k = 0; k < count; ++k) wrapped[k] = perm[(s * B + k) % n_train_];
          idx = wrapped.data();
        }
        if (before_step_) before_step_(cursor_.global_step);
        const float* w = nullptr;
        const double cpu0 = process_cpu_seconds();
        if (policy_) {
          policy_->next(cursor_.global_step, plan_);
          timing_.score_cpu_s += process_cpu_seconds() - cpu0;
          idx = plan_.indices.data();
          count = static_cast<int64_t>(plan_.indices.size());
          w = plan_.weights.empty() ? nullptr : plan_.weights.data();
          timing_.score_s += plan_.score_seconds;
          timing_.scored += plan_.scored;
          timing_.ess_sum += importance::effective_sample_fraction(plan_.weights);
          timing_.is_steps += plan_.importance;
        } else {
          timing_.ess_sum += 1.0;  // unweighted
        }
        const auto tc = clock::now();
        model_.params.zero_grad();
        float loss = 0;
        const bool bounds = policy_ && policy_->wants_grad_bounds();
        if (bounds) batch_bounds_.resize(static_cast<std::size_t>(count));
        for (int64_t m0 = 0; m0 < count; m0 += micro) {
          const int64_t mc = std::min(micro, count - m0);
          train_.gather(std::span<const int64_t>(idx + m0, mc), x.data(), y.data(), &augment_rng_);
          loss += engine_.grad(x.data(), y.data(), w ? w + m0 : nullptr, mc,
                               policy_ ? batch_losses_.data() + m0 : nullptr, count,
                               bounds ? batch_bounds_.data() + m0 : nullptr);
        }
        if (bounds) policy_->observe_bounds(std::span<const float>(batch_bounds_.data(), count));
        if (policy_) {
          policy_->observe(std::span<const int64_t>(idx, count),
                           std::span<const float>(batch_losses_.data(), count),
                           cursor_.global_step);
        }
        if (bsp_) {
          // Compute ends with the local gradient; the exchange and the sharded update are timed
          // by BspSync (comm / idle / update).
          timing_.compute_s += seconds_since(tc);
          timing_.train_cpu_s += process_cpu_seconds() - cpu0;
          bsp_->step(schedule_.at(cursor_.global_step), cursor_.global_step);
        } else {
          opt_.step(model_.params.values(), model_.params.grads(),
                    schedule_.at(cursor_.global_step));
          timing_.compute_s += seconds_since(tc);
          timing_.train_cpu_s += process_cpu_seconds() - cpu0;
        }
        ++timing_.steps;
        ++cursor_.global_step;
        cursor_.step_in_epoch = s + 1;
        loss_sum += loss;
        ++loss_count;
        epoch_samples += count * world_;  // every rank ran a batch of `count`
        if (cursor_.global_step == 1 + start_step_) report_memory();
        if (cfg_.checkpoint_every && cursor_.global_step % cfg_.checkpoint_every == 0 &&
            !cfg_.checkpoint.empty() && s + 1 < steps_per_epoch() && rank_ == 0) {
          save(cfg_.checkpoint);
        }
        progress(epoch, s + 1, loss_sum / static_cast<double>(loss_count), te);
        if (rank_ == 0) importance_stats();
        if (bsp_ && cfg_.replica_check_every &&
            cursor_.global_step % cfg_.replica_check_every == 0) {
          bsp_->check_replicas(cursor_.global_step);
        }
        if (cfg_.eval_every && cursor_.global_step % cfg_.eval_every == 0) {
          if (rank_ == 0) {
            const auto pause = clock::now();
            clear_progress();
            const EvalResult ev = evaluate();
            write_eval(ev);
            te += clock::now() - pause;  // evaluation is not training time
            if (target_reached(ev)) stop = true;
          }
          stop = agree_on_stop(stop, kStopKeyEval);
        }
        if (stop || (cfg_.max_steps && cursor_.global_step >= cfg_.max_steps)) {
          stop = true;
          break;
        }
      }
      const double epoch_train_s = seconds_since(te);
      train_seconds += epoch_train_s;
      samples_done += epoch_samples;
      if (cursor_.step_in_epoch >= steps_per_epoch()) {
        cursor_.epoch = epoch + 1;
        cursor_.step_in_epoch = 0;
      }
      const double sps = epoch_train_s > 0 ? static_cast<double>(epoch_samples) / epoch_train_s : 0;
      const double train_loss = loss_count ? loss_sum / static_cast<double>(loss_count) : 0.0;
      if (bsp_) write_dist(epoch + 1);
      if (rank_ != 0) {  // distributed: rank 0 evaluates, logs and checkpoints
        stop = agree_on_stop(stop, kStopKeyEpoch);
        continue;
      }
      clear_progress();
      const EvalResult ev = evaluate();
      char line[256];
      std::snprintf(line, sizeof line,
                    "epoch %3lld  train_loss %.4f  test_loss %.4f  test_acc %6.2f%%  "
                    "%.0f samples/s  %.1fs\n",
                    static_cast<long long>(epoch + 1), train_loss, ev.loss, 100.0 * ev.accuracy,
                    sps, seconds_since(t0));
      log_ << line << std::flush;
      nlohmann::json epoch_event = {
          {"event", "epoch"},
          {"epoch", epoch + 1},
          {"train_loss", train_loss},
          {"test_loss", ev.loss},
          {"test_acc", ev.accuracy},
          {"wall_s", seconds_since(t0)},
          {"train_samples_per_s", sps},
          {"steps", cursor_.global_step},
          {"lr", schedule_.at(cursor_.global_step)},
          {"sampler", cfg_.sampler},
          {"compute_s", timing_.compute_s},
          {"score_s", timing_.score_s},
          {"scored_samples", timing_.scored},
          {"is_overhead", timing_.compute_s > 0 ? timing_.score_s / timing_.compute_s : 0.0},
          {"train_cpu_s", timing_.train_cpu_s},
          {"score_cpu_s", timing_.score_cpu_s},
          {"ess", timing_.steps ? timing_.ess_sum / timing_.steps : 1.0},
          {"is_steps", timing_.is_steps}};
      if (bsp_) epoch_event.update(dist_fields());
      metrics_.write(epoch_event);
      if (!cfg_.checkpoint.empty()) save(cfg_.checkpoint);
      if (target_reached(ev)) stop = true;
      stop = agree_on_stop(stop, kStopKeyEpoch);
      result.final_test_acc = ev.accuracy;
      result.final_test_loss = ev.loss;
    }
    result.steps = cursor_.global_step;
    result.train_samples_per_s =
        train_seconds > 0 ? static_cast<double>(samples_done) / train_seconds : 0;
    result.peak_rss_bytes = peak_rss_bytes();
    nlohmann::json done = {{"event", "done"},
                           {"steps", result.steps},
                           {"test_acc", result.final_test_acc},
                           {"train_samples_per_s", result.train_samples_per_s},
                           {"wall_s", seconds_since(t0)},
                           {"peak_rss_bytes", result.peak_rss_bytes}};
    if (bsp_) done.update(dist_fields());
    metrics_.write(done);
    if (bsp_) {
      const dist::SyncTiming& st = bsp_->timing();
      char line[256];
      std::snprintf(line, sizeof line,
                    "rank %d: compute %.2fs  comm %.2fs  idle %.2fs  update %.2fs  sent %.2f MiB  "
                    "received %.2f MiB\n",
                    rank_, timing_.compute_s, st.comm_s, st.idle_s, st.update_s,
                    static_cast<double>(st.bytes_sent) / (1 << 20),
                    static_cast<double>(st.bytes_received) / (1 << 20));
      log_ << line;
    }
    if (rank_ == 0) {
      log_ << "done: " << result.steps << " steps, test_acc " << 100.0 * result.final_test_acc
           << "%, peak RSS " << (result.peak_rss_bytes >> 20) << " MiB\n";
    } else {
      log_ << "rank " << rank_ << " done: " << result.steps << " steps, peak RSS "
           << (result.peak_rss_bytes >> 20) << " MiB\n";
    }
    return result;
  }

  // Forward-only evaluation (score mode) on the test set.
  EvalResult evaluate() {
    const int64_t E = std::min(cfg_.eval_batch, std::max<int64_t>(n_test_, 1));
    const int64_t S = model_.sample_numel();
    eval_x_.resize(static_cast<std::size_t>(E * S));
    eval_y_.resize(static_cast<std::size_t>(E));
    eval_loss_.resize(static_cast<std::size_t>(E));
    eval_pred_.resize(static_cast<std::size_t>(E));
    eval_idx_.resize(static_cast<std::size_t>(E));
    double loss = 0;
    int64_t correct = 0;
    for (int64_t b = 0; b < n_test_; b += E) {
      const int64_t c = std::min(E, n_test_ - b);
      std::iota(eval_idx_.begin(), eval_idx_.begin() + c, b);
      test_.gather(std::span<const int64_t>(eval_idx_.data(), c), eval_x_.data(), eval_y_.data(),
                   nullptr);
      engine_.score(eval_x_.data(), eval_y_.data(), c, eval_loss_.data(), eval_pred_.data());
      for (int64_t r = 0; r < c; ++r) {
        loss += eval_loss_[r];
        correct += eval_pred_[r] == eval_y_[r];
      }
    }
    if (n_test_ == 0) return {};
    return {loss / static_cast<double>(n_test_),
            static_cast<double>(correct) / static_cast<double>(n_test_)};
  }

  // Cumulative time split of the steps run so far (evaluation excluded).
  struct Timing {
    double compute_s = 0;    // forward + backward + optimizer
    double score_s = 0;      // importance scoring (sequential pipeline)
    double train_cpu_s = 0;  // CPU seconds of scoring + compute (robust to a busy machine)
    double score_cpu_s = 0;
    int64_t scored = 0;
    int64_t steps = 0;
    double ess_sum = 0;
    int64_t is_steps = 0;  // steps whose batch was drawn by importance (kf: after its switch)
  };
  const Timing& timing() const { return timing_; }
  // Extra string metadata written into every checkpoint (e.g. the text vocabulary).
  void set_checkpoint_metadata(std::map<std::string, std::string> m) {
    extra_metadata_ = std::move(m);
  }

  // Distributed mode: the weights, buffers and cursor (rank 0's replica); the optimizer moments
  // stay sharded over the ranks and are not included (resume is not supported yet).
  void save(const std::string& path) {
    std::ostringstream rng;
    rng << engine_.rng() << ' ' << augment_rng_;
    if (!bsp_) {
      std::vector<io::TensorRef> extra_tensors;
      io::StateWriter state;
      if (policy_) {
        policy_->save_state(state);
        extra_tensors.push_back({kSamplerStateTensor,
                                 "U8",
                                 {static_cast<int64_t>(state.bytes().size())},
                                 state.bytes().data()});
      }
      save_checkpoint(path, model_, opt_, cursor_, rng.str(), to_json(cfg_).dump(), extra_metadata_,
                      extra_tensors);
      return;
    }
    auto meta = extra_metadata_;
    meta["mercury.dist.world"] = std::to_string(world_);
    meta["mercury.dist.optimizer_state"] = "sharded over ranks, not saved";
    opt_.set_steps(bsp_->server().steps());
    save_checkpoint(path, model_, opt_, cursor_, rng.str(), to_json(cfg_).dump(), meta);
  }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds_since(clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  }
  // Keys of rank 0's stop decision (a mid-epoch evaluation and the epoch end can share a step).
  static constexpr uint64_t kStopKeyEval = 0, kStopKeyEpoch = 1;

  // This rank's part of the training set (its first train_limit samples); every rank's part
  // size goes to `sizes`.
  static std::unique_ptr<data::Subset> local_partition(const TrainConfig& c,
                                                       const data::Dataset& full, int rank,
                                                       int world, std::vector<int64_t>& sizes) {
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
    sizes.clear();
    for (const auto& d : part.devices) sizes.push_back(static_cast<int64_t>(d.size()));
    return std::make_unique<data::Subset>(
        full, std::move(part.devices[static_cast<std::size_t>(rank)]),
        "rank " + std::to_string(rank) + "/" + std::to_string(world) + " " + c.partition +
            " partition");
  }

  void setup_dist(const DistContext& dist) {
    before_step_ = dist.before_step;
    auto refuse = [](const std::string& what) {
      throw std::invalid_argument("distributed training: " + what);
    };
    if (cfg_.sampler != "uniform") {
      refuse(
          "sampler: expected uniform (the importance samplers are not distributed yet), "
          "found '" +
          cfg_.sampler + "'");
    }
    if (!cfg_.resume.empty()) {
      refuse(
          "resume: not supported yet (the optimizer moments are sharded over the ranks and "
          "checkpoints hold the weights only), found resume = '" +
          cfg_.resume + "'");
    }
    if (cfg_.batch % world_ != 0) {
      refuse("batch: expected a multiple of the world size " + std::to_string(world_) +
             " (batch is the global batch; each rank computes batch / world samples), found " +
             std::to_string(cfg_.batch));
    }
    batch_ = cfg_.batch / world_;
    if (cfg_.micro_batch > batch_) {
      refuse("micro_batch: expected 0..local batch (batch / world = " + std::to_string(batch_) +
             "), found " + std::to_string(cfg_.micro_batch));
    }
    n_train_ = train_.size();  // the partition already honours train_limit
    n_epoch_ = *std::max_element(partition_sizes_.begin(), partition_sizes_.end());
    bsp_ = std::make_unique<dist::BspSync>(dist.transport, dist.plan, model_.params,
                                           optimizer_config(cfg_), cfg_.op_timeout);
  }

  // Rank 0's decision, on every rank (only when it can differ between ranks: a target accuracy).
  bool agree_on_stop(bool stop, uint64_t key) {
    if (!bsp_ || cfg_.target_acc <= 0) return stop;
    return bsp_->broadcast_flag(stop, key, cursor_.global_step);
  }

  nlohmann::json dist_fields() const {
    const dist::SyncTiming& st = bsp_->timing();
    const net::LinkStats link = bsp_->link_traffic();
    return {{"rank", rank_},
            {"world", world_},
            {"comm_s", st.comm_s},
            {"idle_s", st.idle_s},
            {"update_s", st.update_s},
            {"bytes_sent", st.bytes_sent},
            {"bytes_received", st.bytes_received},
            {"link_bytes_sent", link.bytes_sent},
            {"link_bytes_received", link.bytes_received}};
  }

  // Per-rank communication record (every rank, its own metrics file).
  void write_dist(int64_t epoch) {
    nlohmann::json e = {{"event", "dist"},
                        {"epoch", epoch},
                        {"steps", cursor_.global_step},
                        {"compute_s", timing_.compute_s},
                        {"local_train_samples", n_train_}};
    e.update(dist_fields());
    metrics_.write(e);
  }

  void write_eval(const EvalResult& ev) {
    metrics_.write({{"event", "eval"},
                    {"steps", cursor_.global_step},
                    {"test_acc", ev.accuracy},
                    {"test_loss", ev.loss},
                    {"train_s", timing_.compute_s + timing_.score_s},
                    {"compute_s", timing_.compute_s},
                    {"score_s", timing_.score_s},
                    {"train_cpu_s", timing_.train_cpu_s},
                    {"score_cpu_s", timing_.score_cpu_s}});
  }

  bool target_reached(const EvalResult& ev) {
    if (cfg_.target_acc <= 0 || ev.accuracy < cfg_.target_acc || target_logged_) return false;
    target_logged_ = true;
    metrics_.write({{"event", "target_reached"},
                    {"target_acc", cfg_.target_acc},
                    {"test_acc", ev.accuracy},
                    {"steps", cursor_.global_step},
                    {"train_s", timing_.compute_s + timing_.score_s},
                    {"compute_s", timing_.compute_s},
                    {"score_s", timing_.score_s},
                    {"train_cpu_s", timing_.train_cpu_s},
                    {"score_cpu_s", timing_.score_cpu_s}});
    log_ << "target accuracy " << cfg_.target_acc << " reached after " << cursor_.global_step
         << " steps, " << timing_.compute_s + timing_.score_s << " s of training\n";
    return true;
  }

  // Every importance_stats_every steps (the period P): score a fixed probe subset and log its
  // loss histogram; 1, 10 and 100 steps later (lags below P), and P steps later (the next
  // period's scoring, at no extra cost), log how far the probes' ranks moved since.
  void importance_stats() {
    const int64_t every = cfg_.importance_stats_every;
    if (!every) return;
    const int64_t t = cursor_.global_step;
    const int64_t lag = importance::probe_lag(t, every);
    if (lag < 0) return;
    if (!probe_scorer_) {
      const int64_t n = std::min<int64_t>(2000, n_train_);
      probe_.resize(static_cast<std::size_t>(n_train_));
      std::iota(probe_.begin(), probe_.end(), int64_t{0});
      std::mt19937_64 rng(static_cast<uint64_t>(cfg_.seed) + 17);
      std::shuffle(probe_.begin(), probe_.end(), rng);
      probe_.resize(static_cast<std::size_t>(n));
      probe_scorer_ = std::make_unique<importance::Scorer>(model_, train_, 500);
      probe_base_.resize(probe_.size());
      probe_now_.resize(probe_.size());
    }
    auto log_change = [&](int64_t base_step, int64_t l) {
      const auto rc = importance::rank_change(probe_base_, probe_now_);
      metrics_.write({{"event", "rank_change"},
                      {"steps", base_step},
                      {"lag", l},
                      {"under5", rc.under5},
                      {"under10", rc.under10},
                      {"spearman", rc.spearman},
                      {"top10_kept", rc.top10_kept}});
    };
    // A lag needs its base scoring in this run (not before a resume).
    if (lag != 0 && probe_base_step_ != t - lag) return;
    probe_scorer_->score(probe_, probe_now_.data());
    if (lag != 0) {
      log_change(t - lag, lag);
      return;
    }
    if (probe_base_step_ == t - every) log_change(t - every, every);
    std::swap(probe_base_, probe_now_);
    probe_base_step_ = t;
    const auto h = importance::histogram(probe_base_, 30);
    metrics_.write(
        {{"event", "importance_hist"}, {"steps", t}, {"hi", h.hi}, {"counts", h.counts}});
  }

  void resume(const std::string& path) {
    LoadedState s = load_checkpoint(path, model_, opt_);
    // The data order depends on these; resuming with other values would not continue the run.
    const TrainConfig saved = config_from_json(nlohmann::json::parse(s.config_json), {},
                                               "checkpoint '" + path + "' config");
    auto same = [&](const char* key, int64_t a, int64_t b) {
      if (a != b) {
        throw std::invalid_argument("resume from '" + path + "': " + key + " was " +
                                    std::to_string(b) + " in the checkpoint, now " +
                                    std::to_string(a) + " (it fixes the data order)");
      }
    };
    same("seed", cfg_.seed, saved.seed);
    same("batch", cfg_.batch, saved.batch);
    same("train_limit", cfg_.train_limit, saved.train_limit);
    if (saved.sampler != cfg_.sampler) {
      throw std::invalid_argument("resume from '" + path + "': sampler was " + saved.sampler +
                                  " in the checkpoint, now " + cfg_.sampler +
                                  " (it fixes the data order)");
    }
    if (policy_) {
      if (!s.has_sampler_state) {
        throw std::invalid_argument("resume from '" + path + "': the checkpoint has no '" +
                                    kSamplerStateTensor + "' tensor, which --sampler " +
                                    cfg_.sampler + " needs (written by an older mercury?)");
      }
      io::StateReader r(s.sampler_state,
                        "resume from '" + path + "': " + cfg_.sampler + " sampler state");
      policy_->load_state(r);
      r.finish();
    }
    std::istringstream rng(s.rng_state);
    rng >> engine_.rng() >> augment_rng_;
    if (rng.fail()) {
      throw std::invalid_argument("resume from '" + path + "': RNG state in metadata is corrupt");
    }
    if (s.cursor.step_in_epoch > steps_per_epoch()) {
      throw std::invalid_argument("resume from '" + path + "': cursor step " +
                                  std::to_string(s.cursor.step_in_epoch) + " exceeds " +
                                  std::to_string(steps_per_epoch()) + " steps per epoch");
    }
    cursor_ = s.cursor;
    start_step_ = cursor_.global_step;
    start_epoch_ = cursor_.epoch;
    start_step_in_epoch_ = cursor_.step_in_epoch;
    log_ << "resumed from " << path << " at epoch " << cursor_.epoch + 1 << ", step "
         << cursor_.global_step << "\n";
  }

  void report_memory() {
    const auto& ps = model_.params;
    const double mib = 1.0 / (1 << 20);
    int64_t opt_bytes = 0;
    for (const auto& [name, t] : bsp_ ? bsp_->server().state() : opt_.state())
      opt_bytes += t.numel() * 4;
    char line[256];
    std::snprintf(line, sizeof line,
                  "memory plan: params %.2f MiB, grads %.2f MiB, optimizer %.2f MiB, "
                  "activations+scratch %.2f MiB (arena, %zu block)\n",
                  ps.size() * 4 * mib, ps.size() * 4 * mib, opt_bytes * mib,
                  engine_.tape().arena().capacity_bytes() * mib, engine_.tape().arena().blocks());
    log_ << line;
  }

  void progress(int64_t epoch, int64_t step, double loss, clock::time_point te) {
    if (!cfg_.progress || !isatty(2)) return;
    const auto now = clock::now();
    if (now - last_progress_ < std::chrono::milliseconds(250) && step != steps_per_epoch()) return;
    last_progress_ = now;
    const double el = seconds_since(te);
    const int64_t done = step - (epoch == resume_epoch() ? resume_step() : 0);
    const double per = done > 0 ? el / static_cast<double>(done) : 0;
    const double eta = per * static_cast<double>(steps_per_epoch() - step);
    std::fprintf(stderr, "\repoch %lld/%lld  step %lld/%lld  loss %.4f  %.0f samples/s  ETA %ds   ",
                 static_cast<long long>(epoch + 1), static_cast<long long>(cfg_.epochs),
                 static_cast<long long>(step), static_cast<long long>(steps_per_epoch()), loss,
                 per > 0 ? static_cast<double>(batch_ * world_) / per : 0.0, static_cast<int>(eta));
    progress_shown_ = true;
  }
  void clear_progress() {
    if (progress_shown_) std::fprintf(stderr, "\r%100s\r", "");
    progress_shown_ = false;
  }
  int64_t resume_epoch() const { return start_epoch_; }
  int64_t resume_step() const { return start_step_in_epoch_; }

  TrainConfig cfg_;
  int rank_ = 0, world_ = 1;
  nn::Model& model_;
  std::vector<int64_t> partition_sizes_;       // distributed: every rank's training samples
  std::unique_ptr<data::Subset> local_train_;  // distributed: this rank's partition
  const data::Dataset& train_;                 // the samples this trainer draws from
  const data::Dataset& test_;
  std::ostream& log_;
  nn::Engine engine_;
  std::mt19937_64 augment_rng_;
  optim::Optimizer opt_;
  optim::LrSchedule schedule_;
  io::MetricsWriter metrics_;
  Cursor cursor_;
  int64_t n_train_ = 0, n_test_ = 0;
  int64_t batch_ = 0;    // samples per step on this device (distributed: batch / world)
  int64_t n_epoch_ = 0;  // sample slots per epoch (distributed: the largest partition)
  std::unique_ptr<dist::BspSync> bsp_;
  int64_t start_step_ = 0, start_epoch_ = 0, start_step_in_epoch_ = 0;
  clock::time_point last_progress_{};
  bool progress_shown_ = false;
  std::vector<float> eval_x_, eval_loss_, batch_losses_, batch_bounds_;
  std::function<void(int64_t)> before_step_;
  std::vector<int32_t> eval_y_, eval_pred_;
  std::vector<int64_t> eval_idx_;
  std::unique_ptr<importance::BatchPolicy> policy_;
  importance::BatchPlan plan_;
  Timing timing_;
  std::map<std::string, std::string> extra_metadata_;
  bool target_logged_ = false;
  std::unique_ptr<importance::Scorer> probe_scorer_;
  std::vector<int64_t> probe_;
  std::vector<float> probe_base_, probe_now_;
  int64_t probe_base_step_ = -1;  // step of the probe scoring in probe_base_ (-1: none yet)
};

}  // namespace mercury::train
