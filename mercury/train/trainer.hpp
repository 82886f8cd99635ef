// mercury/train/trainer.hpp — training on one device or as one rank of a BSP data-parallel
// group: an epoch loop over step(), evaluation and exact resume. Reporting lives in report.hpp,
// the importance probe in probe.hpp, distributed set-up in dist_setup.hpp, the checkpoint file
// format in checkpoint.hpp.
//
// Contract
// - step() is one iteration of the algorithm: the batch policy chooses a batch (scoring first
//   when the sampler needs fresh importance), the engine computes its weighted gradient, the
//   per-sample losses go back to the policy, and the update is applied (the local optimizer, or
//   BSP aggregation with the sharded optimizer). Every sampler, uniform included, is an
//   importance::BatchPolicy.
// - Pipelines: sequential (score → compute → aggregate, on the training thread) or BACC
//   (--pipeline bacc; the default for a distributed mercury run under sync or adacomm): the
//   group-wise policy only draws, and a ScoringWorker thread scores the next candidates of the
//   cache's visiting order while the aggregation runs, with a copy of the weights and BN statistics
//   as they were before the update; after the aggregation the scored prefix refreshes the cache at
//   that iteration, so the next step's draw sees it. group_size 0 adapts the group to the
//   aggregation's length (the chunks finished when it ends; the running one is dropped); group_size
//   > 0 scores exactly that many (deterministic); --replay-group-sizes repeats an adaptive run's
//   logged sizes bit for bit. Each window logs a "bacc" event (group, busy, CPU, hidden, exposed,
//   aggregation seconds).
// - Deterministic: the model init, the per-epoch shuffle (a pure function of seed and epoch),
//   the samplers and dropout (RNGs saved in checkpoints) depend only on the config; with
//   threads = 1 two runs give bit-identical weights, and save → load → continue equals an
//   uninterrupted run.
// - The step loop allocates nothing after its first step: batch buffers are sized up front and
//   the Engine's arena is reused (the planned bytes are printed after step one).
// - Metrics (JSON lines): "start", one "epoch" line per epoch (epoch, train_loss, test_loss,
//   test_acc, wall_s, train_samples_per_s, steps, lr, sampler, time split), "eval" and
//   "target_reached" (with eval_every / target_acc), and "done" with peak RSS.
//
// Distributed mode (a DistContext is given; every rank constructs a Trainer with the same
// config and calls run()):
// - Data: the training set (its first train_limit samples) is split by cfg.partition and this
//   rank trains on its part (dist_setup.hpp). cfg.batch is the GLOBAL batch: each rank computes
//   batch / world samples per step (batch must be a multiple of world), so a config means the
//   same optimisation at any world size. An epoch is ceil(largest part / local batch) steps on
//   every rank; uniform sampling of a smaller part wraps around its own shuffle.
// - Every sampler runs on every rank over its own part: the policy (and its importance cache)
//   covers the local samples only, seeded with rank_seed(seed, rank). Importance samplers'
//   loss weights are scaled by W·N_k/N (rank_weight_scale), so the mean of the ranks' gradients
//   stays an unbiased estimate of the full-data gradient when the parts differ in size.
//   Uniform keeps DistributedSampler's semantics (the mean of per-rank means).
// - Steps: the local gradient goes through dist::BspSync (mean of per-rank gradients,
//   rank-order reduction, sharded optimizer); rank 0's initial weights are broadcast first.
//   With world = 1 the run equals the single-device run bit for bit.
// - BN running statistics (model buffers) are averaged over the ranks (rank order, bitwise the
//   same everywhere) before every evaluation and checkpoint.
// - Rank 0 alone evaluates, logs epoch lines and writes eval/epoch events. The epoch's
//   train_loss is the global one: the mean over every rank's steps. With target_acc, rank 0's
//   stop decision is broadcast at every evaluation point, so all ranks stop after the same step.
// - Checkpoints are collective: rank 0 writes one file holding the weights, the averaged
//   buffers, every shard's optimizer moments (gathered from the shard owners into the usual full
//   slabs) and each rank's RNGs and sampler state. Resume reads it on rank 0 only, which sends
//   every rank its shard's moments and its own state; the weights follow in the initial
//   broadcast. Resume is bit-exact for every sampler; the world size and the split must match.
// - Metrics: rank 0 writes cfg.metrics, rank r > 0 writes dist_metrics_path(cfg.metrics, r);
//   every rank adds a "dist" event per epoch with its compute_s (forward + backward), comm_s,
//   idle_s, update_s, BSP payload bytes (see dist/bsp.hpp) and the transport's cumulative link
//   bytes (link_bytes_sent/received).
// - Data a rank holds: a copy of its own part (data::LocalStore); once run() has restored a
//   resumed partition it calls DistContext::release_dataset so the caller can free the full set.
// - Resharding (--reshard random|importance, dist/reshard.hpp): at the start of each step the
//   rank sends its pair partner this step's share of samples (low priority, under the compute);
//   after the aggregation it puts the partner's samples into the slots it sent, and the policy
//   treats them as new (group-mean importance). Applied at step boundaries only: bitwise
//   reproducible, and the partition (every rank's sample ids) is part of the checkpoint.
// - AdaComm (--algorithm adacomm, the local-SGD baseline): each rank steps its own optimizer on
//   its own gradients; every tau steps BspSync::average_params makes the weights their mean
//   (rank order, through the shard servers); rank 0 re-evaluates tau every adacomm_t0 seconds
//   of training (the transport's clock: virtual in the simulator) and broadcasts it; each
//   re-evaluation is an "adacomm" event. Evaluations see the replicas' mean (EvalAverage).
//   With sampler mercury the default pipeline is BACC: the scorer runs during each averaging,
//   the one time local SGD holds the link, and the tau local steps after it draw from the
//   refreshed cache (importance-sampled local SGD). A checkpoint holds the replicas' mean as
//   its weights and, per rank, that rank's own weights, local optimizer and period state.
// - TicTac (--algorithm tictac, dist/tictac.hpp): sync SGD's update scheduled layer by layer.
//   The training forward is Engine::grad's hooks: it waits per layer for the last update's
//   parameters, and backward pushes each layer's gradient when it is final; the rest of the
//   aggregation runs after backward without waiting for the other shards. Everything else that
//   reads the weights (a sampler that scores, evaluation, checkpoints, the replica check, the
//   probe, the end of the run) settles the update first, so results and checkpoints are sync
//   SGD's, bit for bit. compute_s excludes the forward's waits (they count as comm/idle).
// - Time: every duration (wall_s, compute_s, the BSP split, BACC windows) is read from the
//   transport's clock when distributed, so in the simulator they are virtual seconds.
// - Ranks that share one process (net::LocalHub) should use threads = 1: the pool is
//   process-wide and serves one caller at a time (the others run their chunks inline).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/dist/bsp.hpp"
#include "mercury/dist/reshard.hpp"
#include "mercury/dist/shard_plan.hpp"
#include "mercury/dist/tictac.hpp"
#include "mercury/importance/policy.hpp"
#include "mercury/importance/stats.hpp"
#include "mercury/importance/worker.hpp"
#include "mercury/nn/engine.hpp"
#include "mercury/optim/optimizer.hpp"
#include "mercury/optim/schedule.hpp"
#include "mercury/tensor/thread_pool.hpp"
#include "mercury/train/checkpoint.hpp"
#include "mercury/train/config.hpp"
#include "mercury/train/dist_setup.hpp"
#include "mercury/train/probe.hpp"
#include "mercury/train/report.hpp"
#include "net/file_kind.hpp"

namespace mercury::train {

using importance::epoch_permutation;

class Trainer {
 public:
  Trainer(TrainConfig cfg, nn::Model& model, const data::Dataset& train, const data::Dataset& test,
          std::ostream& log, const DistContext* dist = nullptr)
      : cfg_(std::move(cfg)),
        rank_(dist ? dist->transport.rank() : 0),
        world_(dist ? dist->transport.world() : 1),
        model_(model),
        local_(dist ? local_partition(cfg_, train, rank_, world_) : LocalData{}),
        full_train_(dist ? &train : nullptr),
        train_(local_.part ? *local_.part : train),
        test_(test),
        engine_(model, seed()),
        augment_rng_(seed() ^ 0xA5A5A5A5ull),
        // Distributed, the shard servers hold the moments; AdaComm's local steps need their own.
        opt_(optimizer_config(cfg_), dist && cfg_.algorithm != "adacomm" ? 0 : model.params.size()),
        report_(log, dist ? dist_metrics_path(cfg_.metrics, rank_) : cfg_.metrics, cfg_.progress) {
    validate(cfg_);
    if (cfg_.threads == 0) cfg_.threads = default_thread_count();
    // A no-op when the count is unchanged (ranks sharing a process all ask for the same).
    thread_pool().set_threads(static_cast<int>(cfg_.threads));
    n_train_ = cfg_.train_limit ? std::min(cfg_.train_limit, train_.size()) : train_.size();
    n_test_ = cfg_.test_limit ? std::min(cfg_.test_limit, test_.size()) : test_.size();
    if (n_train_ < 1) throw std::invalid_argument("training set is empty");
    if (n_test_ < 1)  // an accuracy over no samples would read 0.00%, as if training failed
      throw std::invalid_argument("test set " + test_.describe() +
                                  " has no samples: evaluation needs at least one (test_limit " +
                                  std::to_string(cfg_.test_limit) + ")");
    if (!dist && cfg_.batch > n_train_)
      throw std::invalid_argument("batch: expected at most the " + std::to_string(n_train_) +
                                  " training samples, found " + std::to_string(cfg_.batch));
    batch_ = cfg_.batch;
    n_epoch_ = n_train_;
    if (dist) {
      batch_ = check_dist_config(cfg_, world_);
      n_train_ = train_.size();  // the partition already honours train_limit
      n_epoch_ = *std::max_element(local_.sizes.begin(), local_.sizes.end());
      before_step_ = dist->before_step;
      release_dataset_ = dist->release_dataset;
      bsp_ = std::make_unique<dist::BspSync>(dist->transport, dist->plan, model_.params,
                                             optimizer_config(cfg_), cfg_.op_timeout);
      adacomm_ = cfg_.algorithm == "adacomm";
      if (cfg_.algorithm == "tictac")
        tictac_ = std::make_unique<dist::TicTac>(*bsp_, model_.params);
      tau_ = std::min<int64_t>(cfg_.adacomm_tau0, kAdacommMaxTau);  // tau0 20: periods of 16
      if (adacomm_ && cfg_.replica_check_every)
        throw std::invalid_argument(
            "replica_check_every: expected 0 with algorithm adacomm (the replicas differ "
            "between averagings by design), found " +
            std::to_string(cfg_.replica_check_every));
      if (cfg_.sampler != "uniform") weight_scale_ = rank_weight_scale(local_.sizes, rank_);
    }
    // Outputs are checked now, not at the first save hours later: a checkpoint path that is a
    // device, FIFO or directory (or in a missing directory) is refused before training.
    if (!cfg_.checkpoint.empty() && rank_ == 0) {
      net::check_output_path(cfg_.checkpoint, "checkpoint");
      net::remove_stale_temps(cfg_.checkpoint);
    }
    if (!dist && cfg_.algorithm != "sync")
      throw std::invalid_argument("algorithm: expected sync on a single device (" + cfg_.algorithm +
                                  " is a distributed algorithm), found '" + cfg_.algorithm + "'");
    if (!dist && cfg_.reshard != "off") {
      throw std::invalid_argument(
          "reshard: expected off on a single device (resharding swaps "
          "samples between ranks), found '" +
          cfg_.reshard + "'");
    }
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
    // epochs <= kMaxEpochs and steps per epoch <= the training set: no overflow, but say so.
    if (steps_per_epoch() > std::numeric_limits<int64_t>::max() / cfg_.epochs)
      throw std::invalid_argument("epochs: " + std::to_string(cfg_.epochs) + " epochs of " +
                                  std::to_string(steps_per_epoch()) +
                                  " steps overflow the step counter");
    schedule_.total_steps = cfg_.epochs * steps_per_epoch();
    bacc_ =
        cfg_.pipeline == "bacc" || (cfg_.pipeline == "auto" && bsp_ && cfg_.sampler == "mercury" &&
                                    (cfg_.algorithm == "sync" || cfg_.algorithm == "adacomm"));
    policy_ = importance::make_policy(policy_config(), model_, train_, n_train_);
    if (bacc_) setup_bacc();
    probe_ =
        std::make_unique<ImportanceProbe>(cfg_.importance_stats_every, model_, train_, n_train_,
                                          static_cast<uint64_t>(cfg_.seed), report_.metrics());
    const int64_t S = model_.sample_numel();
    x_.resize(static_cast<std::size_t>(batch_ * S));
    y_.resize(static_cast<std::size_t>(batch_));
    batch_losses_.resize(static_cast<std::size_t>(batch_));
    if (!cfg_.resume.empty() && !bsp_) resume(cfg_.resume);  // distributed: in run()
  }

  static optim::OptimizerConfig optimizer_config(const TrainConfig& c) {
    optim::OptimizerConfig o;
    o.kind = optim::parse_kind(c.optimizer);
    o.momentum = static_cast<float>(c.momentum);
    o.nesterov = c.nesterov;
    o.weight_decay = static_cast<float>(c.weight_decay);
    return o;
  }

  // The group-wise sampler's recency rate per step. Under adacomm the cache is refreshed once
  // per averaging, so beta counts averagings: beta / tau0 (tau0 clipped to 16) per step. With
  // beta 0.1 per step the latest window's group dominated the tau local steps after it; on fast
  // links, whose windows score few samples, the draws kept returning to them (4 devices, tau0 20,
  // seed 1: 100 Mbps 1,350 steps to 90%, 200 Mbps not in 1,500; beta / 16: 750 and ~750).
  static double sampler_beta(const TrainConfig& c) {
    if (c.algorithm != "adacomm" || c.beta < 0) return c.beta;  // < 0: the 4/D default
    return c.beta / static_cast<double>(std::min<int64_t>(c.adacomm_tau0, kAdacommMaxTau));
  }

  // Steps per epoch (distributed: the same on every rank, set by the largest partition).
  int64_t steps_per_epoch() const { return (n_epoch_ + batch_ - 1) / batch_; }
  const Cursor& cursor() const { return cursor_; }
  // Single device: the optimizer. Distributed: empty (the moments of this rank's shard live in
  // bsp()->server()).
  optim::Optimizer& optimizer() { return opt_; }
  // Distributed mode: the BSP engine (null on a single device).
  const dist::BspSync* bsp() const { return bsp_.get(); }
  // The factor on this rank's importance weights (1 on a single device and for uniform).
  double weight_scale() const { return weight_scale_; }
  const importance::BatchPolicy& policy() const { return *policy_; }
  // Distributed: the samples this rank holds (null on a single device).
  const data::LocalStore* local_store() const { return local_.part.get(); }
  // Distributed with reshard on (after run() started): the resharder.
  const dist::Resharder* resharder() const { return resharder_.get(); }

  struct StepResult {
    double loss = 0;    // the batch's (weighted) mean training loss
    int64_t count = 0;  // samples in this rank's batch
  };

  // One iteration: choose a batch, compute its weighted gradient, feed the losses back to the
  // sampler, aggregate and apply the update.
  StepResult step() {
    const int64_t it = cursor_.global_step;
    if (resharder_) resharder_->send(it, policy_->cache());  // travels while the step computes
    if (before_step_) before_step_(it);
    const double cpu0 = process_cpu_seconds();
    if (policy_->reads_weights()) settle();
    choose_batch(it);
    const double t0 = now_s();
    StepResult r{compute_gradient(it), static_cast<int64_t>(plan_.indices.size())};
    if (!std::isfinite(r.loss)) throw_not_finite(it, "the training loss", r.loss);
    const float lr = schedule_.at(it);
    if (bsp_) {  // compute ends with the local gradient; BspSync times comm / idle / update
      timing_.compute_s += seconds_since(t0) - (tictac_ ? tictac_->forward_wait_s() : 0);
      timing_.train_cpu_s += process_cpu_seconds() - cpu0;
      if (adacomm_) {
        adacomm_step(it, r.loss, lr);
      } else if (tictac_) {
        tictac_->finish(lr, it);
      } else {
        const bool window = worker_ && open_window(it);
        const double ta = now_s();
        bsp_->step(lr, it);
        if (window) close_window(it, seconds_since(ta));
      }
      if (resharder_) {  // the partner's samples into the slots this rank sent
        const auto slots = resharder_->receive(it);
        if (!slots.empty()) policy_->samples_replaced(slots);
      }
    } else {
      const bool window = worker_ && open_window(it);
      const double ta = now_s();
      opt_.step(model_.params.values(), model_.params.grads(), lr);
      const double aggregate_s = seconds_since(ta);
      timing_.compute_s += seconds_since(t0);
      timing_.train_cpu_s += process_cpu_seconds() - cpu0;
      if (window) close_window(it, aggregate_s);
    }
    ++timing_.steps;
    ++cursor_.global_step;
    return r;
  }

  TrainResult run() {
    write_start();
    if (bsp_) check_same_config();
    if (bsp_ && cfg_.reshard != "off") setup_resharder();
    if (bsp_ && !cfg_.resume.empty()) resume_distributed(cfg_.resume);
    if (bsp_) release_full_dataset();
    if (bsp_) bsp_->broadcast_initial_params(cursor_.global_step, startup_timeout());
    if (!resumed_weights_.empty()) {  // adacomm: each rank's own weights, not the file's mean
      std::copy(resumed_weights_.begin(), resumed_weights_.end(), model_.params.values());
      resumed_weights_ = {};
    }
    const double t0 = now_s();
    run_t0_ = t0;
    TrainResult result;
    double train_seconds = 0;
    int64_t samples_done = 0;
    bool stop = false;
    for (int64_t epoch = cursor_.epoch; epoch < cfg_.epochs && !stop; ++epoch) {
      Epoch e{epoch, now_s()};
      for (int64_t s = cursor_.step_in_epoch; s < steps_per_epoch() && !stop; ++s) {
        const StepResult r = step();
        cursor_.step_in_epoch = s + 1;
        e.loss_sum += r.loss;
        ++e.steps;
        e.samples += r.count * world_;  // every rank ran a batch of `count`
        stop = after_step(e);
      }
      const double epoch_train_s = seconds_since(e.start);
      train_seconds += epoch_train_s;
      samples_done += e.samples;
      if (cursor_.step_in_epoch >= steps_per_epoch()) {
        cursor_.epoch = epoch + 1;
        cursor_.step_in_epoch = 0;
      }
      stop = end_epoch(e, epoch_train_s, seconds_since(t0), stop, result);
    }
    settle();  // the caller gets the final weights
    if (start_epoch_ >= cfg_.epochs)
      evaluate_finished(result);  // resumed a finished run: report its accuracy, not 0%
    result.steps = cursor_.global_step;
    result.train_samples_per_s =
        train_seconds > 0 ? static_cast<double>(samples_done) / train_seconds : 0;
    result.peak_rss_bytes = peak_rss_bytes();
    write_done(result, seconds_since(t0));
    return result;
  }

  // A run resumed after its last epoch trains nothing; its result is still its accuracy.
  void evaluate_finished(TrainResult& result) {
    sync_buffers();
    if (rank_ != 0) return;
    const EvalResult ev = evaluate();
    result.final_test_acc = ev.accuracy;
    result.final_test_loss = ev.loss;
    char line[160];
    std::snprintf(line, sizeof line,
                  "nothing to train: the checkpoint finished all %lld epochs; test loss %.4f, "
                  "test accuracy %.2f%%\n",
                  static_cast<long long>(cfg_.epochs), ev.loss, 100 * ev.accuracy);
    report_.log() << line;
  }

  // Forward-only evaluation (score mode) on the test set.
  EvalResult evaluate() {
    settle();
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
    // A non-finite test loss means the weights diverged: never an accuracy figure.
    if (!std::isfinite(loss)) throw_not_finite(cursor_.global_step, "the test loss", loss);
    return {loss / static_cast<double>(n_test_),
            static_cast<double>(correct) / static_cast<double>(n_test_)};
  }

  using Timing = train::Timing;
  const Timing& timing() const { return timing_; }
  // Extra string metadata written into every checkpoint (e.g. the text vocabulary).
  void set_checkpoint_metadata(std::map<std::string, std::string> m) {
    extra_metadata_ = std::move(m);
    if (!resumed_metadata_.empty()) check_resumed_metadata(cfg_.resume);
  }

  // The complete state, for an exact resume. Distributed: collective (every rank calls it at the
  // same step); rank 0 writes one file with the weights and buffers (averaged BN statistics),
  // every shard's optimizer moments gathered from its owner into the usual full slabs, and each
  // rank's own RNGs and sampler state as a U8 tensor per rank (rank_state_tensor).
  void save(const std::string& path) {
    settle();
    check_finite_weights(cursor_.global_step, "before the checkpoint was written");
    std::ostringstream rng;
    rng << engine_.rng() << ' ' << augment_rng_;
    std::vector<io::TensorRef> extra_tensors;
    if (!bsp_) {
      io::StateWriter state;
      if (policy_->stateful()) {
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
    sync_buffers();
    const dist::ShardServer& server = bsp_->server();
    io::StateWriter mine;
    mine.vec(own_state());  // adacomm: with this rank's own weights, before the average below
    mine.pod<int64_t>(server.steps());
    for (const auto& [name, t] : server.state())
      mine.vec(std::vector<float>(t.data, t.data + t.numel()));
    const auto all = bsp_->gather_blobs(mine.bytes(), 0, cursor_.global_step);
    // AdaComm: the file's weights are the replicas' mean (what `mercury eval` should see); every
    // rank gets its own back when the scope ends.
    const EvalAverage mean(*this);
    if (rank_ != 0) return;
    optim::Optimizer& full = full_optimizer();
    std::vector<std::vector<std::byte>> own(static_cast<std::size_t>(world_));
    for (int r = 0; r < world_; ++r) {
      io::StateReader in(all[r], "checkpoint state from rank " + std::to_string(r));
      own[r] = in.vec<std::byte>("rank state");
      full.set_steps(in.pod<int64_t>("optimizer steps"));
      const dist::ShardRange range = bsp_->plan().range(r);
      for (const auto& [name, t] : full.state()) {
        const auto part = in.vec<float>("optimizer moments", range.size());
        std::copy(part.begin(), part.end(), t.data + range.begin);
      }
      in.finish();
      extra_tensors.push_back(
          {rank_state_tensor(r), "U8", {static_cast<int64_t>(own[r].size())}, own[r].data()});
    }
    auto meta = extra_metadata_;
    meta["mercury.dist.world"] = std::to_string(world_);
    save_checkpoint(path, model_, full, cursor_, rng.str(), to_json(cfg_).dump(), meta,
                    extra_tensors);
  }

 private:
  // The clock of the run: steady_clock, or distributed the transport's (the simulator's
  // virtual time on a simulated one).
  double now_s() { return bsp_ ? bsp_->transport().now() : net::steady_seconds(); }
  double seconds_since(double t) { return now_s() - t; }
  // Keys of rank 0's stop decision (a mid-epoch evaluation and the epoch end can share a step).
  static constexpr uint64_t kStopKeyEval = 0, kStopKeyEpoch = 1;
  static constexpr uint64_t kTauKey = 2;  // AdaComm: rank 0's communication period
  static constexpr int64_t kAdacommMaxTau = 16;

  struct Epoch {
    int64_t index = 0;
    double start = 0;  // moved forward by evaluation pauses: they are not training time
    double loss_sum = 0;
    int64_t steps = 0;
    int64_t samples = 0;
  };

  uint64_t seed() const { return rank_seed(static_cast<uint64_t>(cfg_.seed), rank_); }

  importance::PolicyConfig policy_config() const {
    importance::PolicyConfig pc;
    pc.kind = importance::parse_sampler(cfg_.sampler);
    pc.batch = batch_;
    pc.group_size = cfg_.group_size;
    pc.sampler.groups_per_batch = cfg_.groups_per_batch;
    pc.sampler.beta = sampler_beta(cfg_);
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
    pc.ib_ratio = cfg_.ib_ratio;
    pc.ib_anneal_at = infobatch_anneal_at();
    pc.reuse_train_losses = cfg_.reuse_train_losses;
    pc.refresh_every = cfg_.refresh_every;
    pc.epoch_slots = n_epoch_;
    pc.background_scoring = bacc_;
    pc.seed = seed();
    return pc;
  }

  // InfoBatch's annealing point: passes starting in the first ib_delta of the budget prune. The
  // budget is the epochs' steps, as for the learning-rate schedule: max_steps stops a run but
  // does not reshape it, so a run cut short and resumed draws what the whole run draws.
  int64_t infobatch_anneal_at() const {
    return static_cast<int64_t>(
        std::floor(cfg_.ib_delta * static_cast<double>(cfg_.epochs * steps_per_epoch())));
  }

  // The policy's batch for iteration `it` (scoring it first if the sampler needs to), with this
  // rank's weight scale applied.
  void choose_batch(int64_t it) {
    const double cpu0 = process_cpu_seconds();
    policy_->next(it, plan_);
    if (cfg_.sampler != "uniform") timing_.score_cpu_s += process_cpu_seconds() - cpu0;
    timing_.score_s += plan_.score_seconds;
    timing_.scored += plan_.scored;
    timing_.is_steps += plan_.importance;
    scale_weights(plan_, weight_scale_);
    timing_.ess_sum += importance::effective_sample_fraction(plan_.weights);
  }

  // BACC: the group-wise policy draws only; a ScoringWorker scores the next group while the
  // aggregation runs.
  void setup_bacc() {
    if (cfg_.sampler != "mercury") {
      throw std::invalid_argument("pipeline bacc: expected sampler mercury, found '" +
                                  cfg_.sampler + "'");
    }
    if (cfg_.bacc_max_group > 0 && cfg_.group_size > cfg_.bacc_max_group) {
      throw std::invalid_argument(
          "group_size: expected at most bacc_max_group (" + std::to_string(cfg_.bacc_max_group) +
          ") with the bacc pipeline, found " + std::to_string(cfg_.group_size));
    }
    if (!cfg_.replay_group_sizes.empty()) {
      replay_path_ =
          bsp_ ? dist_metrics_path(cfg_.replay_group_sizes, rank_) : cfg_.replay_group_sizes;
      replay_ = read_group_sizes(replay_path_);
    }
    // The adaptive group's ceiling. By default the paper's M = 10 x the local batch: a window
    // longer than that needs idles the scorer rather than grow the group, because bigger groups
    // cost steps (4 devices at 10 Mbps in the simulator, seeds 1/2: groups of ~3,264 took 900 /
    // 1,100 steps to 90%, capped at 1,536 600 / 705, at 640 500 / 550; sync SGD 700 / 940 --
    // bench/README.md). A fixed or replayed group above it raises it.
    max_group_ = cfg_.bacc_max_group;
    if (max_group_ == 0) {
      max_group_ = std::max({10 * batch_, cfg_.group_size, cfg_.bacc_chunk});
      for (const auto& [step, size] : replay_) max_group_ = std::max(max_group_, size);
    }
    groupwise_ = dynamic_cast<importance::GroupwisePolicy*>(policy_.get());
    if (!groupwise_) throw std::logic_error("pipeline bacc: the mercury policy is not group-wise");
    importance::WorkerConfig wc;
    wc.chunk = cfg_.bacc_chunk;
    wc.finish_late_chunk = cfg_.bacc_finish_chunk;
    // AdaComm: a window feeds the tau local steps until the next averaging, so its ceiling is
    // tau x the per-step one (window_cap()); the buffers take the longest period.
    wc.max_group = adacomm_ ? max_group_ * kAdacommMaxTau : max_group_;
    wc.threads = static_cast<int>(cfg_.scorer_threads);
    wc.idle_priority = cfg_.scorer_priority == "idle";
    wc.train_mode_norm = cfg_.score_train_mode;
    if (bsp_) {  // the simulator: the scorer's chunks cost the device's virtual time
      if (const auto factor = bsp_->transport().device_factor()) {
        if (cfg_.scorer_threads != 1)
          throw std::invalid_argument(
              "scorer_threads: expected 1 in the simulator (one scorer thread's CPU time is "
              "what a window costs the device), found " +
              std::to_string(cfg_.scorer_threads));
        wc.virtual_factor = *factor;
        // Virtual time counts the scorer's CPU seconds, whatever its priority: SCHED_IDLE would
        // only starve it, and slow the simulation, on a loaded machine.
        wc.idle_priority = false;
      }
    }
    worker_ = std::make_unique<importance::ScoringWorker>(model_, train_, wc);
  }

  // Hands the scorer the weights and buffers as they are before the update and the next
  // candidates of the cache's visiting order. Returns false when the step scores nothing (a
  // replayed group of 0).
  bool open_window(int64_t it) {
    int64_t target = cfg_.group_size;  // 0: adaptive
    if (!replay_path_.empty()) {
      const auto found = replay_.find(it);
      if (found == replay_.end()) {
        throw std::invalid_argument("replay_group_sizes '" + replay_path_ +
                                    "': expected a bacc event for step " + std::to_string(it) +
                                    ", found none (a log of another run?)");
      }
      target = found->second;
      if (target == 0) {
        report_.bacc_step(it, 0, 0, 0, 0, 0, 0);
        return false;
      }
    }
    const double t0 = now_s();
    worker_->set_snapshot(model_.params.values(), model_.params.buffers());
    worker_->open(groupwise_->candidates(std::max(window_cap(), target)), target);
    window_open_s_ = now_s();
    window_setup_s_ = window_open_s_ - t0;
    return true;
  }

  // The most samples this window may score: the per-step ceiling, times tau under AdaComm (the
  // window refreshes the cache for tau steps: 4 devices at 10 Mbps, tau0 10, seed 1, reached 90%
  // in 800 steps with a 640-sample window and 650 with ~3,000, against AdaComm's 850).
  int64_t window_cap() const { return adacomm_ ? max_group_ * tau_ : max_group_; }

  // Ends the window (an adaptive one at once, its running chunk dropped; a fixed group once done),
  // refreshes the cache with the scored prefix at iteration `it`, and logs the window.
  void close_window(int64_t it, double aggregate_s) {
    if (worker_->config().virtual_factor > 0) {  // the simulator: the window on the virtual clock
      const double budget = std::max(0.0, now_s() - window_open_s_);
      const importance::WindowStats st = worker_->close(budget);
      if (st.virtual_s > budget) bsp_->transport().advance_to(window_open_s_ + st.virtual_s);
      return closed_window(it, st, aggregate_s);
    }
    closed_window(it, worker_->close(), aggregate_s);
  }
  void closed_window(int64_t it, const importance::WindowStats& st, double aggregate_s) {
    if (st.scored > 0)
      groupwise_->refresh(worker_->scores().first(static_cast<std::size_t>(st.scored)), it);
    const double exposed = st.exposed_s + window_setup_s_;
    timing_.scored += st.scored;
    timing_.score_hidden_s += st.hidden_s;
    timing_.score_exposed_s += exposed;
    timing_.scorer_busy_s += st.busy_s;
    timing_.scorer_cpu_s += st.cpu_s;
    report_.bacc_step(it, st.scored, st.busy_s, st.cpu_s, st.hidden_s, exposed, aggregate_s);
  }

  // AdaComm (local SGD): a local optimizer step; every tau_ steps the weights are averaged
  // through the shard servers, then rank 0 re-evaluates tau once adacomm_t0 seconds of training
  // have passed since the last time, tau = ceil(sqrt(lr0 F / (lr F0)) tau0) clipped to 1..16
  // (F: its mean training loss since then; F0: over the first period; lr0 the base rate, so a
  // decaying schedule lengthens the period: AdaComm's learning-rate-decay variant), and sends
  // it to every rank.
  void adacomm_step(int64_t it, double loss, float lr) {
    const double tu = now_s();
    opt_.step(model_.params.values(), model_.params.grads(), lr);
    timing_.compute_s += seconds_since(tu);
    period_loss_ += loss;
    ++period_steps_;
    if (++local_steps_ < tau_) return;
    local_steps_ = 0;
    // BACC under local SGD: the scorer works while the averaging holds the link, on this rank's
    // weights before the average; the next tau steps draw from the refreshed cache.
    const bool window = worker_ && open_window(it);
    const double ta = now_s();
    bsp_->average_params(it);
    if (window) close_window(it, seconds_since(ta));
    ++averagings_;
    int64_t tau = tau_;
    if (rank_ == 0) {
      const double f = period_loss_ / static_cast<double>(period_steps_);
      const double train_s = seconds_since(run_t0_) - eval_pause_s_;
      bool update = false;
      if (!have_f0_) {
        have_f0_ = true;
        f0_ = f;
        update = true;
      } else if (train_s - tau_clock_s_ >= cfg_.adacomm_t0) {
        const double ratio = (cfg_.lr * f) / (static_cast<double>(lr) * f0_);
        const double t =
            std::ceil(std::sqrt(std::max(ratio, 0.0)) * static_cast<double>(cfg_.adacomm_tau0));
        tau = std::isfinite(t)
                  ? std::clamp<int64_t>(static_cast<int64_t>(std::min(t, 64.0)), 1, kAdacommMaxTau)
                  : kAdacommMaxTau;
        update = true;
        report_.metrics().write({{"event", "adacomm"},
                                 {"steps", it + 1},
                                 {"tau", tau},
                                 {"train_loss", f},
                                 {"f0", f0_},
                                 {"lr", lr},
                                 {"wall_s", train_s}});
      }
      if (update) {
        tau_clock_s_ = train_s;
        period_loss_ = 0;
        period_steps_ = 0;
      }
    }
    tau_ = bsp_->broadcast_value(tau, kTauKey, it);
  }

  // Forward + backward of the chosen batch (in micro-batches), its mean weighted loss returned;
  // the per-sample losses (and gradient-norm bounds) go back to the policy.
  float compute_gradient(int64_t it) {
    const int64_t count = static_cast<int64_t>(plan_.indices.size());
    const int64_t micro = cfg_.micro_batch ? cfg_.micro_batch : batch_;
    const int64_t* idx = plan_.indices.data();
    const float* w = plan_.weights.empty() ? nullptr : plan_.weights.data();
    const bool losses = policy_->wants_losses();
    const bool bounds = policy_->wants_grad_bounds();
    if (bounds) batch_bounds_.resize(static_cast<std::size_t>(count));
    model_.params.zero_grad();
    float loss = 0;
    for (int64_t m0 = 0; m0 < count; m0 += micro) {
      const int64_t mc = std::min(micro, count - m0);
      train_.gather(std::span<const int64_t>(idx + m0, mc), x_.data(), y_.data(), &augment_rng_);
      if (tictac_) tictac_->micro_batch(it, m0 + mc >= count);
      loss += engine_.grad(x_.data(), y_.data(), w ? w + m0 : nullptr, mc,
                           losses ? batch_losses_.data() + m0 : nullptr, count,
                           bounds ? batch_bounds_.data() + m0 : nullptr, tictac_.get());
    }
    if (bounds) policy_->observe_bounds(std::span<const float>(batch_bounds_.data(), count));
    if (losses) {
      policy_->observe(std::span<const int64_t>(idx, count),
                       std::span<const float>(batch_losses_.data(), count), it);
    }
    return loss;
  }

  // Training diverged (or the data hold NaN/inf): stop with the step and the knobs to turn,
  // before the non-finite value reaches a checkpoint or an accuracy figure.
  [[noreturn]] void throw_not_finite(int64_t step, const char* what, double value) const {
    throw std::runtime_error(
        "step " + std::to_string(step) + ": " + what + " is " + config_number(value) +
        (rank_ || world_ > 1 ? " on rank " + std::to_string(rank_) : std::string()) +
        ": training diverged; lower --lr (now " + config_number(cfg_.lr) +
        "), add --warmup-steps, or check the data for non-finite values" +
        (cfg_.sampler != "uniform" ? "; importance weights can amplify a step: try --weight-power "
                                     "below 1"
                                   : ""));
  }

  // Throws (throw_not_finite) unless every weight and buffer is finite.
  void check_finite_weights(int64_t step, const char* when) const {
    const nn::ParamStore& p = model_.params;
    for (const auto& [slab, n, what] : {std::tuple{p.values(), p.size(), "a weight"},
                                        std::tuple{p.buffers(), p.buffer_size(), "a buffer"}}) {
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(slab[i]))
          throw_not_finite(step, (std::string(what) + " " + when).c_str(), slab[i]);
    }
  }

  // Everything between two steps: memory plan, checkpoints, progress, probe, replica check,
  // evaluation. Returns whether to stop.
  bool after_step(Epoch& e) {
    const int64_t step = cursor_.global_step;
    bool stop = false;
    if (step == 1 + start_step_) report_memory();
    if (cfg_.checkpoint_every && step % cfg_.checkpoint_every == 0 && !cfg_.checkpoint.empty() &&
        cursor_.step_in_epoch < steps_per_epoch()) {
      save(cfg_.checkpoint);  // distributed: every rank takes part
    }
    const int64_t done =
        cursor_.step_in_epoch - (e.index == start_epoch_ ? start_step_in_epoch_ : 0);
    report_.progress(e.index + 1, cfg_.epochs, cursor_.step_in_epoch, steps_per_epoch(), done,
                     seconds_since(e.start), e.loss_sum / static_cast<double>(e.steps),
                     batch_ * world_);
    if (rank_ == 0 && cfg_.importance_stats_every) {
      settle();
      probe_->at(step);
    }
    if (bsp_ && cfg_.replica_check_every && step % cfg_.replica_check_every == 0) {
      settle();
      bsp_->check_replicas(step);
    }
    if (cfg_.eval_every && step % cfg_.eval_every == 0) {
      sync_buffers();
      const double pause = now_s();
      if (rank_ == 0) timing_.wall_s = seconds_since(run_t0_) - eval_pause_s_;
      if (bsp_) timing_.comm_rounds = comm_rounds();
      const EvalAverage mean(*this);
      if (rank_ == 0) {
        report_.clear_progress();
        const EvalResult ev = evaluate();
        report_.eval(step, ev, timing_);
        e.start += now_s() - pause;  // evaluation is not training time
        eval_pause_s_ += seconds_since(pause);
        stop = target_reached(ev);
      }
      stop = agree_on_stop(stop, kStopKeyEval);
    }
    return stop || (cfg_.max_steps && step >= cfg_.max_steps);
  }

  // AdaComm: an evaluation sees the replicas' mean (the model local SGD outputs), not rank 0's
  // local weights. Every rank takes part in the averaging and gets its own weights back when the
  // scope ends, so training goes on bitwise as without the evaluation; the exchange is left out
  // of the timing and byte totals, and its time is inside the evaluation's pause. Nothing to do
  // when the replicas are equal (the step just averaged) or for other algorithms.
  class EvalAverage {
   public:
    explicit EvalAverage(Trainer& t) : t_(t) {
      if (!t_.adacomm_ || t_.local_steps_ == 0) return;
      const float* w = t_.model_.params.values();
      t_.eval_saved_.assign(w, w + t_.model_.params.size());
      // The key of the last iteration, which did not average (its local step count is not 0).
      t_.bsp_->average_params_unrecorded(t_.cursor_.global_step - 1);
      active_ = true;
    }
    ~EvalAverage() {
      if (active_)
        std::copy(t_.eval_saved_.begin(), t_.eval_saved_.end(), t_.model_.params.values());
    }
    EvalAverage(const EvalAverage&) = delete;
    EvalAverage& operator=(const EvalAverage&) = delete;

   private:
    Trainer& t_;
    bool active_ = false;
  };

  // The epoch's report, evaluation and checkpoint (rank 0), the global train loss and the stop
  // decision (every rank).
  bool end_epoch(const Epoch& e, double train_s, double wall_s, bool stop, TrainResult& result) {
    settle();  // the epoch's figures include its last update
    const double sps = train_s > 0 ? static_cast<double>(e.samples) / train_s : 0;
    const double train_loss = global_train_loss(e);
    if (bsp_) write_dist(e.index + 1);
    sync_buffers();
    const double pause = now_s();
    if (rank_ == 0) timing_.wall_s = seconds_since(run_t0_) - eval_pause_s_;
    std::optional<EvalAverage> mean(std::in_place, *this);
    if (rank_ != 0) {  // rank 0 evaluates and writes; the others hand it their state
      mean.reset();    // their own weights back before anything else reads them
      if (!cfg_.checkpoint.empty()) save(cfg_.checkpoint);
      return agree_on_stop(stop, kStopKeyEpoch);
    }
    const EvalResult ev = evaluate();
    mean.reset();
    eval_pause_s_ += seconds_since(pause);
    report_.epoch_line(e.index + 1, train_loss, ev, sps, wall_s);
    nlohmann::json event = {
        {"event", "epoch"},
        {"epoch", e.index + 1},
        {"train_loss", train_loss},
        {"test_loss", ev.loss},
        {"test_acc", ev.accuracy},
        // As in eval events: training seconds since the start, evaluations excluded;
        // elapsed_s counts them too.
        {"wall_s", timing_.wall_s},
        {"elapsed_s", wall_s},
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
        {"is_steps", timing_.is_steps},
        {"pruned_samples", policy_->pruned()},
        {"pipeline", bacc_ ? "bacc" : "sequential"},
        {"score_hidden_s", timing_.score_hidden_s},
        {"score_exposed_s", timing_.score_exposed_s},
        {"scorer_busy_s", timing_.scorer_busy_s},
        {"scorer_cpu_s", timing_.scorer_cpu_s}};
    if (bsp_) event.update(dist_fields());
    report_.metrics().write(event);
    if (!cfg_.checkpoint.empty()) save(cfg_.checkpoint);
    if (target_reached(ev)) stop = true;
    result.final_test_acc = ev.accuracy;
    result.final_test_loss = ev.loss;
    return agree_on_stop(stop, kStopKeyEpoch);
  }

  // The mean training loss of the epoch's steps over every rank (rank 0's value; the others
  // return their own).
  double global_train_loss(const Epoch& e) {
    double tally[2] = {e.loss_sum, static_cast<double>(e.steps)};
    if (bsp_) {
      const std::vector<double> all = bsp_->gather_to_root(tally, 0, cursor_.global_step);
      if (rank_ == 0) {
        tally[0] = tally[1] = 0;
        for (std::size_t r = 0; r < all.size(); r += 2) {
          tally[0] += all[r];
          tally[1] += all[r + 1];
        }
      }
    }
    return tally[1] > 0 ? tally[0] / tally[1] : 0.0;
  }

  // TicTac: the last update's parameters still on the wire are received (a no-op otherwise).
  void settle() {
    if (tictac_) tictac_->settle();
  }

  // Distributed: every rank's BN running statistics become their mean (once per step).
  void sync_buffers() {
    if (!bsp_ || buffers_synced_at_ == cursor_.global_step) return;
    bsp_->average_buffers(0, cursor_.global_step);
    buffers_synced_at_ = cursor_.global_step;
  }

  // Rank 0's decision, on every rank (only when it can differ between ranks: a target accuracy).
  bool agree_on_stop(bool stop, uint64_t key) {
    if (!bsp_ || cfg_.target_acc <= 0) return stop;
    return bsp_->broadcast_flag(stop, key, cursor_.global_step);
  }

  bool target_reached(const EvalResult& ev) {
    if (cfg_.target_acc <= 0 || ev.accuracy < cfg_.target_acc || target_logged_) return false;
    target_logged_ = true;
    report_.target_reached(cfg_.target_acc, cursor_.global_step, ev, timing_);
    return true;
  }

  void write_start() {
    nlohmann::json start = {{"event", "start"},
                            {"model", model_.name},
                            {"params", model_.params.count()},
                            {"train_samples", n_train_},
                            {"test_samples", n_test_},
                            {"kernels", kernels::isa_name(kernels::table().isa)},
                            {"pipeline", bacc_ ? "bacc" : "sequential"},
                            {"config", to_json(cfg_)}};
    std::ostream& log = report_.log();
    log << "model " << model_.name << ": " << model_.params.count() << " parameters; " << n_train_
        << " train / " << n_test_ << " test samples; kernels "
        << kernels::isa_name(kernels::table().isa) << "; threads " << cfg_.threads;
    if (bacc_) {
      log << "; bacc pipeline (scorer thread: " << cfg_.scorer_threads << " thread(s), "
          << (cfg_.group_size > 0 ? "group of " + std::to_string(cfg_.group_size)
                                  : "adaptive group of at most " + std::to_string(max_group_) +
                                        (adacomm_ ? " per local step (x tau per averaging)" : ""))
          << ", chunks of " << cfg_.bacc_chunk << ")";
    }
    log << std::endl;
    if (bsp_) {
      const dist::ShardRange mine = bsp_->plan().range(rank_);
      start.update({{"rank", rank_},
                    {"world", world_},
                    {"partition_sizes", local_.sizes},
                    {"local_batch", batch_},
                    {"weight_scale", weight_scale_},
                    {"shard_begin", mine.begin},
                    {"shard_end", mine.end},
                    {"plan_hash", bsp_->plan().hash()}});
      log << "rank " << rank_ << " of " << world_ << ": " << cfg_.partition << " partition of "
          << n_train_ << " samples (largest " << n_epoch_ << "), local batch " << batch_
          << ", sampler " << cfg_.sampler << "; serves floats [" << mine.begin << ", " << mine.end
          << ") of " << bsp_->plan().total() << "\n";
    }
    report_.metrics().write(start);
  }

  void write_done(const TrainResult& result, double wall_s) {
    nlohmann::json done = {{"event", "done"},
                           {"steps", result.steps},
                           {"test_acc", result.final_test_acc},
                           {"train_samples_per_s", result.train_samples_per_s},
                           {"wall_s", wall_s},
                           {"peak_rss_bytes", result.peak_rss_bytes}};
    if (bsp_) done.update(dist_fields());
    report_.metrics().write(done);
    std::ostream& log = report_.log();
    if (bsp_) {
      const dist::SyncTiming& st = bsp_->timing();
      char line[256];
      std::snprintf(line, sizeof line,
                    "rank %d: compute %.2fs  comm %.2fs  idle %.2fs  update %.2fs  sent %.2f MiB  "
                    "received %.2f MiB\n",
                    rank_, timing_.compute_s, st.comm_s, st.idle_s, st.update_s,
                    static_cast<double>(st.bytes_sent) / (1 << 20),
                    static_cast<double>(st.bytes_received) / (1 << 20));
      log << line;
      if (resharder_) {
        const dist::ReshardStats& rs = resharder_->stats();
        std::snprintf(line, sizeof line,
                      "rank %d: resharded %lld samples out, %lld in (%.2f MiB sent), waited %.3fs "
                      "for arrivals\n",
                      rank_, static_cast<long long>(rs.sent), static_cast<long long>(rs.received),
                      static_cast<double>(rs.bytes_sent) / (1 << 20), rs.wait_s);
        log << line;
      }
    }
    if (rank_ == 0) {
      log << "done: " << result.steps << " steps, test_acc " << 100.0 * result.final_test_acc
          << "%, peak RSS " << (result.peak_rss_bytes >> 20) << " MiB\n";
    } else {
      log << "rank " << rank_ << " done: " << result.steps << " steps, peak RSS "
          << (result.peak_rss_bytes >> 20) << " MiB\n";
    }
  }

  // Aggregations so far: one per step under sync and tictac, one per averaging under adacomm.
  int64_t comm_rounds() const { return adacomm_ ? averagings_ : cursor_.global_step; }

  nlohmann::json dist_fields() const {
    const dist::SyncTiming& st = bsp_->timing();
    const net::LinkStats link = bsp_->link_traffic();
    return {{"rank", rank_},
            {"world", world_},
            {"algorithm", cfg_.algorithm},
            {"averagings", averagings_},
            {"comm_rounds", comm_rounds()},
            {"tau", adacomm_ ? tau_ : 1},
            {"comm_s", st.comm_s},
            {"idle_s", st.idle_s},
            {"update_s", st.update_s},
            {"bytes_sent", st.bytes_sent},
            {"bytes_received", st.bytes_received},
            {"link_bytes_sent", link.bytes_sent},
            {"link_bytes_received", link.bytes_received},
            {"reshard", cfg_.reshard},
            {"reshard_sent", resharder_ ? resharder_->stats().sent : 0},
            {"reshard_received", resharder_ ? resharder_->stats().received : 0},
            {"reshard_bytes_sent", resharder_ ? resharder_->stats().bytes_sent : 0},
            {"reshard_wait_s", resharder_ ? resharder_->stats().wait_s : 0.0},
            {"reshard_cpu_s",
             resharder_ ? resharder_->stats().select_s + resharder_->stats().apply_s : 0.0}};
  }

  // Per-rank communication record (every rank, its own metrics file).
  void write_dist(int64_t epoch) {
    nlohmann::json e = {{"event", "dist"},
                        {"epoch", epoch},
                        {"steps", cursor_.global_step},
                        {"compute_s", timing_.compute_s},
                        {"score_hidden_s", timing_.score_hidden_s},
                        {"score_exposed_s", timing_.score_exposed_s},
                        {"scored_samples", timing_.scored},
                        {"local_train_samples", n_train_}};
    e.update(dist_fields());
    report_.metrics().write(e);
  }

  // Loads `path` into the model (weights, buffers) and `opt` (moments, steps) after checking that
  // it continues this run: the fields that fix the data order (and, distributed, the split)
  // must match, the cursor must fit the epoch.
  LoadedState load_and_check(const std::string& path, optim::Optimizer& opt) {
    LoadedState s = load_checkpoint(
        path, model_, opt, cfg_.resume_unchecked ? io::Checksum::optional : io::Checksum::required);
    const nlohmann::json saved_json = nlohmann::json::parse(s.config_json, nullptr, false);
    if (saved_json.is_discarded())
      throw std::invalid_argument("resume from '" + path +
                                  "': metadata mercury.config: expected the JSON config of the "
                                  "run, found malformed JSON");
    const TrainConfig saved = config_from_json(saved_json, {}, "checkpoint '" + path + "' config");
    auto differs = [&](const char* key, const std::string& was, const std::string& now) {
      throw std::invalid_argument("resume from '" + path + "': " + key + " was " + was +
                                  " in the checkpoint, now " + now + " (it fixes the data order)");
    };
    auto same = [&](const char* key, auto a, auto b) {
      if (a != b) differs(key, nlohmann::json(b).dump(), nlohmann::json(a).dump());
    };
    same("seed", cfg_.seed, saved.seed);
    same("batch", cfg_.batch, saved.batch);
    same("train_limit", cfg_.train_limit, saved.train_limit);
    if (saved.sampler != cfg_.sampler) differs("sampler", saved.sampler, cfg_.sampler);
    if (bsp_) {
      if (s.dist_world != world_) {
        differs("world size",
                s.dist_world ? std::to_string(s.dist_world) : "1 (a single-device run)",
                std::to_string(world_));
      }
      if (saved.partition != cfg_.partition) differs("partition", saved.partition, cfg_.partition);
      same("dirichlet_alpha", cfg_.dirichlet_alpha, saved.dirichlet_alpha);
      same("shards_per_device", cfg_.shards_per_device, saved.shards_per_device);
      if (s.rank_states.size() != static_cast<std::size_t>(world_)) {
        throw std::invalid_argument(
            "resume from '" + path + "': expected the state of " + std::to_string(world_) +
            " ranks (tensors mercury.rank<r>.state), found " +
            std::to_string(s.rank_states.size()) +
            " (a checkpoint written by a single device or an older mercury)");
      }
    }
    check_cursor(path, s.cursor);
    resumed_metadata_ = s.metadata;
    check_resumed_metadata(path);
    return s;
  }

  // The cursor must describe a point of this run: its fields agree with each other (global step
  // = epoch x steps per epoch + step in epoch, none past its bound) and with --epochs.
  void check_cursor(const std::string& path, const Cursor& c) const {
    const int64_t spe = steps_per_epoch();
    const std::string where = "resume from '" + path + "': cursor (epoch " +
                              std::to_string(c.epoch) + ", step in epoch " +
                              std::to_string(c.step_in_epoch) + ", global step " +
                              std::to_string(c.global_step) + "): ";
    if (c.step_in_epoch >= spe)
      throw std::invalid_argument(where + "expected a step in epoch below the " +
                                  std::to_string(spe) + " steps per epoch of this run");
    if (c.epoch > cfg_.epochs)
      throw std::invalid_argument(where + "expected an epoch within --epochs " +
                                  std::to_string(cfg_.epochs) +
                                  " (raise --epochs to train on, or resume the same run)");
    int64_t expected = 0;
    if (__builtin_mul_overflow(c.epoch, spe, &expected) ||
        __builtin_add_overflow(expected, c.step_in_epoch, &expected) || expected != c.global_step)
      throw std::invalid_argument(
          where + "expected global step = epoch x " + std::to_string(spe) +
          " steps per epoch + step in epoch (a corrupt checkpoint, or one from a run with "
          "another training set or batch)");
  }

  // Data-defined metadata (the text vocabulary) must be what this run uses: token ids mean
  // nothing under another vocabulary. Called on resume and when the metadata is set.
  void check_resumed_metadata(const std::string& path) const {
    for (const auto& [key, value] : extra_metadata_) {
      const auto it = resumed_metadata_.find(key);
      if (it == resumed_metadata_.end())
        throw std::invalid_argument("resume from '" + path + "': metadata " + key +
                                    ": expected it in the checkpoint (this run's data defines "
                                    "it), found none");
      if (it->second != value)
        throw std::invalid_argument(
            "resume from '" + path + "': metadata " + key + " differs from this run's (" +
            std::to_string(it->second.size()) + " vs " + std::to_string(value.size()) +
            " bytes): the checkpoint was trained on other data or another --vocabulary");
    }
  }

  void resume(const std::string& path) {
    LoadedState s = load_and_check(path, opt_);
    if (policy_->stateful()) {
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
    resumed_at(path, s.cursor);
  }

  // The deadline of the start-up collectives: ranks arrive at different times (process start,
  // partitioning, rank 0 reading a checkpoint), so at least a minute, or op_timeout if longer.
  double startup_timeout() const { return std::max(cfg_.op_timeout, 60.0); }

  // Collective, before anything else of a distributed run: rank 0 compares every rank's shared
  // config (shared_config) with its own; on a difference every rank throws, naming the field.
  void check_same_config() {
    const nlohmann::json ours = shared_config(cfg_);
    const std::string mine = ours.dump();
    const auto all = bsp_->gather_blobs(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(mine.data()), mine.size()), 2,
        cursor_.global_step, startup_timeout());
    std::vector<std::vector<std::byte>> verdicts;
    if (rank_ == 0) {
      std::string verdict;
      for (int r = 1; r < world_ && verdict.empty(); ++r) {
        const auto theirs = nlohmann::json::parse(
            std::string(reinterpret_cast<const char*>(all[r].data()), all[r].size()), nullptr,
            false);
        verdict = theirs.is_discarded()
                      ? "rank " + std::to_string(r) + " sent a malformed training config"
                      : config_mismatch(ours, theirs, r);
      }
      const auto* v = reinterpret_cast<const std::byte*>(verdict.data());
      verdicts.assign(static_cast<std::size_t>(world_),
                      std::vector<std::byte>(v, v + verdict.size()));
    }
    const auto verdict = bsp_->scatter_blobs(verdicts, 2, cursor_.global_step, startup_timeout());
    if (!verdict.empty()) {
      throw std::invalid_argument(
          "rank " + std::to_string(rank_) + ": distributed training refused: " +
          std::string(reinterpret_cast<const char*>(verdict.data()), verdict.size()));
    }
  }

  // Distributed resume (collective, before the initial broadcast): rank 0 alone reads the file
  // (the others need not have it), keeps the weights and buffers for the broadcast, and sends
  // every rank its cursor, the moments of the shard it serves, and its own RNG and sampler
  // state. A checkpoint rank 0 refuses is refused on every rank, with rank 0's reason.
  void resume_distributed(const std::string& path) {
    std::vector<std::vector<std::byte>> blobs;
    std::exception_ptr refused;
    if (rank_ == 0) {
      try {
        const LoadedState s = load_and_check(path, full_optimizer());
        for (int r = 0; r < world_; ++r) {
          io::StateWriter w;
          w.pod<uint8_t>(1);
          w.pod(s.cursor.epoch);
          w.pod(s.cursor.step_in_epoch);
          w.pod(s.cursor.global_step);
          w.pod<int64_t>(full_optimizer().steps());
          const dist::ShardRange range = bsp_->plan().range(r);
          for (const auto& [name, t] : full_optimizer().state())
            w.vec(std::vector<float>(t.data + range.begin, t.data + range.end));
          w.vec(s.rank_states[r]);
          blobs.push_back(w.bytes());
        }
      } catch (const std::exception& e) {
        refused = std::current_exception();
        io::StateWriter w;
        w.pod<uint8_t>(0);
        w.str(e.what());
        blobs.assign(static_cast<std::size_t>(world_), w.bytes());
      }
    }
    const std::vector<std::byte> mine =
        bsp_->scatter_blobs(blobs, 1, cursor_.global_step, startup_timeout());
    if (refused) std::rethrow_exception(refused);
    const std::string what = "rank " + std::to_string(rank_) + ": resume state from rank 0";
    io::StateReader in(mine, what);
    if (in.pod<uint8_t>("status") == 0) {
      throw std::invalid_argument("rank " + std::to_string(rank_) +
                                  ": rank 0 refused the resume: " + in.str("reason"));
    }
    Cursor c;
    c.epoch = in.pod<int64_t>("epoch");
    c.step_in_epoch = in.pod<int64_t>("step in epoch");
    c.global_step = in.pod<int64_t>("global step");
    dist::ShardServer& server = bsp_->server();
    server.set_steps(in.pod<int64_t>("optimizer steps"));
    for (const auto& [name, t] : server.state()) {
      const auto part = in.vec<float>("optimizer moments", t.numel());
      std::copy(part.begin(), part.end(), t.data);
    }
    const auto own = in.vec<std::byte>("rank state");
    in.finish();
    restore_own_state(own, what);
    resumed_at(path, c);
  }

  // This rank's RNGs and sampler state (a distributed checkpoint keeps one per rank).
  std::vector<std::byte> own_state() {
    io::StateWriter w;
    w.rng(engine_.rng());
    w.rng(augment_rng_);
    io::StateWriter policy;
    policy_->save_state(policy);
    w.vec(policy.bytes());
    w.vec(local_.part->ids());  // the current partition (resharding changes it)
    io::StateWriter reshard;
    if (resharder_) resharder_->save(reshard);
    w.vec(reshard.bytes());
    if (adacomm_) w.vec(adacomm_state());  // a trailing field: older checkpoints lack it
    return w.bytes();
  }

  // AdaComm: this rank's own weights (they differ between averagings), its local optimizer and
  // the period's bookkeeping; the time since tau's last update is kept as an age, because the
  // resumed run's clock starts again at 0.
  std::vector<std::byte> adacomm_state() {
    io::StateWriter w;
    const float* v = model_.params.values();
    w.vec(std::vector<float>(v, v + model_.params.size()));
    w.pod<int64_t>(opt_.steps());
    for (const auto& [name, t] : opt_.state())
      w.vec(std::vector<float>(t.data, t.data + t.numel()));
    w.pod(tau_);
    w.pod(local_steps_);
    w.pod(averagings_);
    w.pod(period_steps_);
    w.pod(period_loss_);
    w.pod(f0_);
    w.pod<uint8_t>(have_f0_);
    w.pod<double>(std::max(0.0, seconds_since(run_t0_) - eval_pause_s_ - tau_clock_s_));
    return w.bytes();
  }
  void restore_adacomm_state(std::span<const std::byte> bytes, const std::string& what) {
    io::StateReader r(bytes, what + ": adacomm state");
    resumed_weights_ = r.vec<float>("local weights", model_.params.size());
    opt_.set_steps(r.pod<int64_t>("local optimizer steps"));
    for (const auto& [name, t] : opt_.state()) {
      const auto m = r.vec<float>("local optimizer moments", t.numel());
      std::copy(m.begin(), m.end(), t.data);
    }
    tau_ = r.pod<int64_t>("tau");
    local_steps_ = r.pod<int64_t>("local steps");
    averagings_ = r.pod<int64_t>("averagings");
    period_steps_ = r.pod<int64_t>("period steps");
    period_loss_ = r.pod<double>("period loss");
    f0_ = r.pod<double>("f0");
    have_f0_ = r.pod<uint8_t>("have f0") != 0;
    const double age = r.pod<double>("seconds since tau's update");
    r.finish();
    if (tau_ < 1 || tau_ > kAdacommMaxTau || local_steps_ < 0 || local_steps_ >= tau_ ||
        period_steps_ < 0 || averagings_ < 0 || !std::isfinite(period_loss_) ||
        !std::isfinite(f0_) || !std::isfinite(age) || age < 0)
      r.fail("period", "tau in 1..16, 0 <= local steps < tau, finite losses and age",
             "tau " + std::to_string(tau_) + ", local steps " + std::to_string(local_steps_));
    tau_clock_s_ = -age;
  }
  void restore_own_state(std::span<const std::byte> bytes, const std::string& what) {
    io::StateReader r(bytes, what);
    r.rng("dropout rng", engine_.rng());
    r.rng("augmentation rng", augment_rng_);
    const auto policy = r.vec<std::byte>("sampler state");
    auto ids = r.vec<int64_t>("partition sample ids", n_train_);
    const auto reshard = r.vec<std::byte>("reshard state");
    const bool has_adacomm = !r.at_end();
    const auto adacomm = has_adacomm ? r.vec<std::byte>("adacomm state") : std::vector<std::byte>{};
    r.finish();
    if (has_adacomm != adacomm_) {
      throw std::invalid_argument(
          what + ": the checkpoint was written by " +
          (has_adacomm ? std::string("an adacomm run (each rank's own weights and local optimizer)")
                       : std::string("a sync or tictac run (no local weights or periods)")) +
          ", this run is algorithm " + cfg_.algorithm + ": resume it with --algorithm " +
          (has_adacomm ? "adacomm" : "sync or tictac"));
    }
    if (adacomm_) restore_adacomm_state(adacomm, what);
    if (ids != local_.part->ids()) {  // resharding had moved samples: hold what was held
      if (!full_train_) {
        throw std::logic_error(what +
                               ": the partition differs, but the full training set "
                               "was already released");
      }
      local_.part->reload(*full_train_, std::move(ids));
    }
    io::StateReader p(policy, what + ": " + cfg_.sampler + " sampler state");
    policy_->load_state(p);
    p.finish();
    if (resharder_ && !reshard.empty()) {
      io::StateReader q(reshard, what + ": reshard state");
      resharder_->load(q);
      q.finish();
    }
  }

  // Distributed: the trainer holds its own partition now; the caller may free the full set.
  void release_full_dataset() {
    full_train_ = nullptr;
    if (release_dataset_) release_dataset_();
    release_dataset_ = nullptr;
  }

  // Collective (reshard on): every rank learns every rank's share cap, then builds its
  // Resharder over its local store.
  void setup_resharder() {
    const int64_t mine = parse_reshard_share(cfg_.reshard_share);
    const auto* b = reinterpret_cast<const std::byte*>(&mine);
    const auto all = bsp_->gather_blobs(std::span<const std::byte>(b, sizeof mine), 3,
                                        cursor_.global_step, startup_timeout());
    std::vector<std::vector<std::byte>> out;
    if (rank_ == 0) {
      std::vector<std::byte> caps;
      for (const auto& blob : all) {
        if (blob.size() != sizeof(int64_t))
          throw std::runtime_error("reshard: a rank sent a malformed share cap");
        caps.insert(caps.end(), blob.begin(), blob.end());
      }
      out.assign(static_cast<std::size_t>(world_), caps);
    }
    const auto got = bsp_->scatter_blobs(out, 3, cursor_.global_step, startup_timeout());
    if (got.size() != sizeof(int64_t) * static_cast<std::size_t>(world_))
      throw std::runtime_error("reshard: malformed share caps from rank 0");
    std::vector<int64_t> caps(static_cast<std::size_t>(world_));
    std::memcpy(caps.data(), got.data(), got.size());
    for (int64_t& c : caps)
      if (c < 0) c = dist::ReshardSchedule::kUnlimited;
    dist::ReshardConfig rc;
    rc.mode = dist::parse_reshard_mode(cfg_.reshard);
    rc.budget = cfg_.reshard_budget;
    rc.steps_per_epoch = steps_per_epoch();
    rc.seed = seed();
    rc.timeout_s = cfg_.op_timeout;
    resharder_ =
        std::make_unique<dist::Resharder>(bsp_->transport(), *local_.part, rc, local_.sizes, caps);
    const dist::ReshardSchedule& sc = resharder_->schedule();
    report_.log() << "rank " << rank_ << ": reshard " << cfg_.reshard << ", budget "
                  << cfg_.reshard_budget << " (" << sc.epoch_quota(rank_)
                  << " samples per epoch), shares "
                  << (caps[rank_] == dist::ReshardSchedule::kUnlimited
                          ? std::string("all")
                          : std::to_string(caps[rank_]) + " per epoch")
                  << "\n";
  }

  void resumed_at(const std::string& path, const Cursor& c) {
    cursor_ = c;
    start_step_ = cursor_.global_step;
    start_epoch_ = cursor_.epoch;
    start_step_in_epoch_ = cursor_.step_in_epoch;
    report_.log() << "resumed from " << path << " at epoch " << cursor_.epoch + 1 << ", step "
                  << cursor_.global_step << "\n";
  }

  // Rank 0 of a distributed run: an optimizer over the whole slab, to assemble the shards'
  // moments for a checkpoint and to split them on resume.
  optim::Optimizer& full_optimizer() {
    if (!full_opt_)
      full_opt_ = std::make_unique<optim::Optimizer>(optimizer_config(cfg_), model_.params.size());
    return *full_opt_;
  }

  void report_memory() {
    const auto& ps = model_.params;
    const double mib = 1.0 / (1 << 20);
    int64_t opt_bytes = 0;
    for (const auto& [name, t] : bsp_ ? bsp_->server().state() : opt_.state())
      opt_bytes += t.numel() * 4;
    const Tape& tape = engine_.tape();
    const StepPlan* plan = engine_.last_grad_plan();  // recorded by step 1
    // Step 1 recorded the plan; its block is allocated when step 2 replays it, so the plan's
    // block is what the steps will use (the tape's own figure is still 0 here).
    const double planned_bytes = plan ? static_cast<double>(plan->block_floats) * 4
                                      : static_cast<double>(tape.planned_bytes());
    char line[512];
    std::snprintf(line, sizeof line,
                  "memory plan: params %.2f MiB, grads %.2f MiB, optimizer %.2f MiB, "
                  "activations+scratch %.2f MiB planned",
                  ps.size() * 4 * mib, ps.size() * 4 * mib, opt_bytes * mib, planned_bytes * mib);
    report_.log() << line;
    if (plan) {
      std::snprintf(line, sizeof line,
                    " (training step, batch %lld: %zu tensors, at most %.2f MiB alive at once; "
                    "%.2f MiB side by side)",
                    static_cast<long long>(cfg_.batch), plan->tensors.size(),
                    plan->live_floats * 4 * mib, plan->total_floats * 4 * mib);
      report_.log() << line;
      // Every tensor's offset and lifetime, for whoever tunes a model to a board's memory.
      nlohmann::json tensors = nlohmann::json::array();
      for (const auto& t : plan->tensors)
        tensors.push_back({t.offset * 4, t.floats * 4, use_name(t.use), t.owner, t.first, t.last});
      report_.metrics().write({{"event", "memory_plan"},
                               {"step", "train"},
                               {"batch", cfg_.batch},
                               {"block_bytes", plan->block_floats * 4},
                               {"live_peak_bytes", plan->live_floats * 4},
                               {"all_tensors_bytes", plan->total_floats * 4},
                               {"columns", {"offset", "bytes", "use", "node", "first", "last"}},
                               {"tensors", std::move(tensors)}});
    }
    // Flushed: this line marks the end of the first step (time to first step, as seen in a
    // pipe or a board's serial log).
    report_.log() << std::endl;
  }

  TrainConfig cfg_;
  int rank_ = 0, world_ = 1;
  nn::Model& model_;
  LocalData local_;             // distributed: this rank's partition and every rank's size
  const data::Dataset& train_;  // the samples this trainer draws from
  const data::Dataset& test_;
  nn::Engine engine_;
  std::mt19937_64 augment_rng_;
  optim::Optimizer opt_;
  optim::LrSchedule schedule_;
  RunReport report_;
  Cursor cursor_;
  int64_t n_train_ = 0, n_test_ = 0;
  int64_t batch_ = 0;    // samples per step on this device (distributed: batch / world)
  int64_t n_epoch_ = 0;  // sample slots per epoch (distributed: the largest partition)
  double weight_scale_ = 1.0;
  std::unique_ptr<dist::BspSync> bsp_;
  std::unique_ptr<optim::Optimizer> full_opt_;  // distributed, rank 0: see full_optimizer()
  int64_t buffers_synced_at_ = -1;
  int64_t start_step_ = 0, start_epoch_ = 0, start_step_in_epoch_ = 0;
  std::vector<float> x_, batch_losses_, batch_bounds_;
  std::vector<int32_t> y_;
  std::vector<float> eval_x_, eval_loss_;
  std::vector<int32_t> eval_y_, eval_pred_;
  std::vector<int64_t> eval_idx_;
  std::function<void(int64_t)> before_step_;
  std::function<void()> release_dataset_;
  const data::Dataset* full_train_ = nullptr;   // distributed: until release_full_dataset()
  std::unique_ptr<dist::Resharder> resharder_;  // distributed, reshard on
  std::unique_ptr<importance::BatchPolicy> policy_;
  importance::BatchPlan plan_;
  bool bacc_ = false;
  importance::GroupwisePolicy* groupwise_ = nullptr;   // bacc: policy_ as the group-wise policy
  std::unique_ptr<importance::ScoringWorker> worker_;  // bacc: the scorer thread
  std::string replay_path_;                            // bacc: --replay-group-sizes (this rank's)
  int64_t max_group_ = 0;                              // bacc: most samples one window scores
  std::map<int64_t, int64_t> replay_;                  // step → group size to score
  double window_setup_s_ = 0;
  double window_open_s_ = 0;  // bacc: now_s() when the window opened
  double run_t0_ = 0;
  double eval_pause_s_ = 0;  // rank 0: evaluation time, excluded from Timing::wall_s
  std::unique_ptr<ImportanceProbe> probe_;
  Timing timing_;
  std::map<std::string, std::string> extra_metadata_;
  std::map<std::string, std::string> resumed_metadata_;  // of the checkpoint resumed from
  bool target_logged_ = false;
  std::unique_ptr<dist::TicTac> tictac_;  // distributed, algorithm tictac
  // AdaComm (distributed, algorithm adacomm).
  bool adacomm_ = false;
  int64_t tau_ = 1, local_steps_ = 0, averagings_ = 0, period_steps_ = 0;
  std::vector<float> eval_saved_;  // adacomm: the local weights while an evaluation sees the mean
  std::vector<float> resumed_weights_;  // adacomm resume: this rank's weights, set after broadcast
  double period_loss_ = 0, f0_ = 0, tau_clock_s_ = 0;
  bool have_f0_ = false;
};

}  // namespace mercury::train
