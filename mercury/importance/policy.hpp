// mercury/importance/policy.hpp — where each training batch comes from: the samplers behind
// `mercury train --sampler uniform|mercury|all-is|kf|selective-backprop|infobatch`.
//
// Contract
// - next(iteration, plan) fills plan.indices (up to B local sample indices) and, for weighted
//   samplers, plan.weights (the per-sample loss weights that make the gradient unbiased; empty
//   means all ones). Scoring, when the sampler needs it, happens inside next() on the caller's
//   thread with the policy's own Scorer (sequential pipeline; BACC moves it to a second thread).
// - Deterministic for a given seed. Time spent scoring is reported in plan.score_seconds and
//   the number of forward passes in plan.scored, so T_is/T_cp can be measured.
// - uniform is a policy like the others: epoch by epoch without replacement, a pure function of
//   the iteration (no state to checkpoint).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/base/clock.hpp"
#include "mercury/base/random.hpp"
#include "mercury/importance/cache.hpp"
#include "mercury/importance/sampler.hpp"
#include "mercury/importance/scorer.hpp"
#include "mercury/io/state_blob.hpp"

namespace mercury::importance {

enum class SamplerKind { uniform, mercury, all_is, kf, selective_backprop, infobatch };

inline SamplerKind parse_sampler(const std::string& s) {
  if (s == "uniform") return SamplerKind::uniform;
  if (s == "mercury") return SamplerKind::mercury;
  if (s == "all-is") return SamplerKind::all_is;
  if (s == "kf") return SamplerKind::kf;
  if (s == "selective-backprop") return SamplerKind::selective_backprop;
  if (s == "infobatch") return SamplerKind::infobatch;
  throw std::invalid_argument(
      "sampler: expected uniform, mercury, all-is, kf, selective-backprop or infobatch, found '" +
      s + "'");
}

struct PolicyConfig {
  SamplerKind kind = SamplerKind::mercury;
  int64_t batch = 64;
  int64_t group_size = 0;        // M; 0: 10 × batch
  SamplerConfig sampler;         // d, β, λ, weighting
  int64_t score_chunk = 320;     // forward batch used for scoring
  bool train_mode_norm = false;  // score with batch statistics (METHOD: eval mode is ours)
  int64_t kf_presample = 3;      // kf: candidates per batch slot
  double kf_tau_th = -1;         // kf: IS once τ > this (< 0: (kf_presample + 3)/3; 0: always)
  double sb_beta = 1.0;          // selective-backprop: keep probability = percentile^β
  int64_t sb_history = 1024;     // selective-backprop: losses remembered for percentiles
  double ib_ratio = 0.5;         // infobatch: share of the below-mean samples pruned a pass
  int64_t ib_anneal_at = std::numeric_limits<int64_t>::max();  // infobatch: passes that start
                                                               // at or after it prune nothing
  bool reuse_train_losses = true;   // mercury: training-forward losses refresh the cache too
  int64_t refresh_every = 1;        // mercury: score one group every N iterations
  int64_t epoch_slots = 0;          // uniform: sample slots per epoch (0: n; more: wrap around)
  bool background_scoring = false;  // mercury: groups are scored elsewhere (BACC's scorer
                                    // thread) and handed in with refresh(); next() only draws
  uint64_t seed = 1;
};

struct BatchPlan {
  std::vector<int64_t> indices;
  std::vector<float> weights;  // empty: unweighted
  double score_seconds = 0;    // time spent scoring for this batch
  int64_t scored = 0;          // samples forwarded for scoring for this batch
  bool importance = true;      // false: this batch was drawn uniformly (kf before its switch)
};

class BatchPolicy {
 public:
  virtual ~BatchPolicy() = default;
  virtual void next(int64_t iteration, BatchPlan& plan) = 0;
  virtual const ImportanceCache* cache() const { return nullptr; }
  // Per-sample losses of the batch just trained (the training forward pass, before the update):
  // a free refresh for samplers that keep a cache. Default: ignored.
  virtual void observe(std::span<const int64_t> indices, std::span<const float> losses,
                       int64_t iteration) {
    (void)indices, (void)losses, (void)iteration;
  }
  // Resharding put other samples into these local slots (their sizes and positions unchanged):
  // a policy with per-sample state treats them as new. Default: nothing to update.
  virtual void samples_replaced(std::span<const int64_t> slots) { (void)slots; }
  // Whether the policy wants the last-layer gradient-norm bounds of the batch its last next()
  // drew (computed in the training forward: Engine::grad's `bounds`), passed to observe_bounds().
  virtual bool wants_grad_bounds() const { return false; }
  virtual void observe_bounds(std::span<const float> bounds) { (void)bounds; }
  // Whether observe() uses the per-sample losses (the trainer skips them otherwise).
  virtual bool wants_losses() const { return true; }
  // Whether next() reads the model's weights (scores candidates); a pipelined aggregation
  // (TicTac) must have landed the last update first.
  virtual bool reads_weights() const { return true; }
  // Samples the policy left out of its passes over the data so far (data pruning: InfoBatch).
  virtual int64_t pruned() const { return 0; }
  // Whether save_state() writes anything (a stateless policy needs no checkpoint tensor).
  virtual bool stateful() const { return true; }
  // Checkpointing: everything next() depends on (cache, RNG and stream states), so that a
  // resumed run draws exactly the batches the uninterrupted run would have drawn. load_state()
  // throws io::CheckpointError on a state that does not fit this policy (other dataset size,
  // damaged bytes); the policy may then be partly overwritten, so the caller must not use it
  // (the trainer refuses the resume).
  virtual void save_state(io::StateWriter& w) const = 0;
  virtual void load_state(io::StateReader& r) = 0;
};

// The sample order of one epoch: a pure function of (seed, epoch).
inline void epoch_permutation(uint64_t seed, int64_t epoch, std::vector<int64_t>& perm) {
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
  for (int64_t k = static_cast<int64_t>(perm.size()) - 1; k > 0; --k) {
    std::uniform_int_distribution<int64_t> pick(0, k);
    std::swap(perm[k], perm[pick(rng)]);
  }
}

// Uniform sampling without replacement: iteration t trains slice s = t mod S of the permutation
// of epoch e = t div S (epoch_permutation(seed, e)), S = ceil(slots / B) steps per epoch. With
// more slots than samples (a partition smaller than the largest one of a distributed run) the
// slice wraps around the permutation, as DistributedSampler pads. The last slice may be short.
class UniformPolicy final : public BatchPolicy {
 public:
  UniformPolicy(const PolicyConfig& cfg, int64_t n)
      : batch_(cfg.batch),
        slots_(cfg.epoch_slots > 0 ? cfg.epoch_slots : n),
        seed_(cfg.seed),
        perm_(static_cast<std::size_t>(n)) {
    if (n < 1 || batch_ < 1 || slots_ < n) {
      throw std::invalid_argument(
          "uniform sampler: expected n >= 1, batch >= 1 and slots >= n, "
          "found n = " +
          std::to_string(n) + ", batch = " + std::to_string(batch_) +
          ", slots = " + std::to_string(slots_));
    }
  }
  int64_t steps_per_epoch() const { return (slots_ + batch_ - 1) / batch_; }

  void next(int64_t iteration, BatchPlan& plan) override {
    const int64_t S = steps_per_epoch(), epoch = iteration / S, s = iteration % S;
    if (epoch != perm_epoch_) {
      epoch_permutation(seed_, epoch, perm_);
      perm_epoch_ = epoch;
    }
    const int64_t n = static_cast<int64_t>(perm_.size());
    const int64_t count = std::min(batch_, slots_ - s * batch_);
    plan.indices.resize(static_cast<std::size_t>(count));
    for (int64_t k = 0; k < count; ++k)
      plan.indices[static_cast<std::size_t>(k)] =
          perm_[static_cast<std::size_t>((s * batch_ + k) % n)];
    plan.weights.clear();
    plan.score_seconds = 0;
    plan.scored = 0;
    plan.importance = false;
  }
  bool wants_losses() const override { return false; }
  bool reads_weights() const override { return false; }
  bool stateful() const override { return false; }
  void save_state(io::StateWriter&) const override {}
  void load_state(io::StateReader&) override {}

 private:
  int64_t batch_, slots_;
  uint64_t seed_;
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

namespace detail {
using Clock = std::chrono::steady_clock;
using base::seconds_since;
// An endless stream of uniformly shuffled sample indices (epoch after epoch).
class ShuffledStream {
 public:
  ShuffledStream(int64_t n, uint64_t seed) : perm_(static_cast<std::size_t>(n)), rng_(seed) {
    reshuffle();
  }
  int64_t next() {
    if (pos_ == perm_.size()) reshuffle();
    return perm_[pos_++];
  }
  void save(io::StateWriter& w) const {
    w.vec(perm_);
    w.pod<uint64_t>(pos_);
    w.rng(rng_);
  }
  void load(io::StateReader& r) {
    auto perm = r.vec<int64_t>("stream permutation", static_cast<int64_t>(perm_.size()));
    const auto pos = r.pod<uint64_t>("stream position");
    if (pos > perm.size())
      r.fail("stream position", "<= " + std::to_string(perm.size()), std::to_string(pos));
    for (int64_t v : perm)
      if (v < 0 || v >= static_cast<int64_t>(perm.size()))
        r.fail("stream permutation", "sample indices below " + std::to_string(perm.size()),
               std::to_string(v));
    r.rng("stream rng", rng_);
    perm_ = std::move(perm);
    pos_ = static_cast<std::size_t>(pos);
  }

 private:
  void reshuffle() {
    std::iota(perm_.begin(), perm_.end(), int64_t{0});
    base::shuffle_portable(std::span<int64_t>(perm_), rng_);
    pos_ = 0;
  }
  std::vector<int64_t> perm_;
  std::size_t pos_ = 0;
  std::mt19937_64 rng_;
};
}  // namespace detail

// Mercury's group-wise sampler (and all-IS: one group holding every sample, refreshed each step).
class GroupwisePolicy final : public BatchPolicy {
 public:
  GroupwisePolicy(const PolicyConfig& cfg, nn::Model& model, const data::Dataset& data, int64_t n)
      : cfg_(cfg),
        all_(cfg.kind == SamplerKind::all_is),
        group_size_(all_ ? n : (cfg.group_size > 0 ? cfg.group_size : 10 * cfg.batch)),
        cache_(n, group_size_, cfg.seed),
        sampler_(all_ ? all_is_config(cfg.sampler) : cfg.sampler),
        scorer_(model, data, cfg.score_chunk),
        rng_(cfg.seed ^ 0x5DEECE66Dull) {
    scorer_.set_train_mode_norm(cfg.train_mode_norm);
  }

  void next(int64_t iteration, BatchPlan& plan) override {
    plan.score_seconds = 0;
    plan.scored = 0;
    // all-IS rescoring everything every step is its definition; mercury may skip iterations.
    if (cfg_.background_scoring) {
      // BACC: the scorer thread refreshes groups between draws.
    } else if (all_ || cfg_.refresh_every <= 1 || iteration % cfg_.refresh_every == 0 ||
               cache_.refreshes() == 0) {
      const auto t0 = detail::Clock::now();
      const auto group = cache_.next_group(group_size_);
      scores_.resize(group.size());
      scorer_.score(group, scores_.data());
      cache_.refresh(scores_, iteration);
      plan.score_seconds = detail::seconds_since(t0);
      plan.scored = static_cast<int64_t>(group.size());
    }
    sampler_.draw(cache_, cfg_.batch, rng_, draw_);
    plan.indices.assign(draw_.indices.begin(), draw_.indices.end());
    plan.weights.assign(draw_.weights.begin(), draw_.weights.end());
  }
  const ImportanceCache* cache() const override { return &cache_; }
  void samples_replaced(std::span<const int64_t> slots) override { cache_.arrived(slots); }
  // Background scoring (BACC): the next samples of the visiting order to score (at most m; fewer
  // at the end of a cycle), and their scores, a prefix of them, once computed.
  std::span<const int64_t> candidates(int64_t m) const { return cache_.next_group(m); }
  void refresh(std::span<const float> scores, int64_t iteration) {
    cache_.refresh(scores, iteration);
  }
  void observe(std::span<const int64_t> indices, std::span<const float> losses,
               int64_t iteration) override {
    if (!cfg_.reuse_train_losses) return;
    for (std::size_t k = 0; k < indices.size(); ++k)
      cache_.observe(indices[k], losses[k], iteration);
  }
  void save_state(io::StateWriter& w) const override {
    cache_.save(w);
    w.rng(rng_);
  }
  void load_state(io::StateReader& r) override {
    cache_.load(r);
    r.rng("sampler rng", rng_);
  }

 private:
  static SamplerConfig all_is_config(SamplerConfig s) {
    s.groups_per_batch = 1;
    return s;
  }
  PolicyConfig cfg_;
  bool all_;
  int64_t group_size_;
  ImportanceCache cache_;
  GroupSampler sampler_;
  Scorer scorer_;
  std::mt19937_64 rng_;
  std::vector<float> scores_;
  BatchDraw draw_;
};

// Katharopoulos & Fleuret's estimate of the variance reduction importance sampling by
// `scores` would give over uniform sampling of the same samples (their eq. 26, in batch-size
// units): 1/sqrt(1 − ‖g − u‖²/‖g‖²) with g = scores/Σscores, u = 1/n, which equals
// sqrt(n·Σg²) — 1 for equal scores, sqrt(n) when one score holds everything. Non-finite and
// negative scores count as 0; all-zero scores give 1.
inline double kf_variance_reduction(std::span<const float> scores) {
  double z = 0, z2 = 0;
  for (float v : scores) {
    const double s = std::isfinite(v) && v > 0 ? static_cast<double>(v) : 0.0;
    z += s;
    z2 += s * s;
  }
  if (!(z > 0)) return 1.0;
  return std::sqrt(static_cast<double>(scores.size()) * z2 / (z * z));
}

// Katharopoulos & Fleuret (2018) presampling: score kf_presample·B uniform candidates by the
// last-layer gradient-norm bound, draw B of them ∝ score, weight 1/(P·q) (unbiased).
// Their switch: τ, an EMA (momentum 0.9, from 0) of kf_variance_reduction of the latest
// scores, decides each step — τ > τ_th: presample as above (τ updated from the candidates);
// otherwise a uniform batch, unweighted and unscored, whose bounds from the training forward
// update τ for free. τ_th defaults to (P + 3B)/(3B) (their eq. 29: the reduction that pays for
// scoring P candidates at a third of a training step each); kf_tau_th = 0 samples by
// importance from the first step.
class PresamplePolicy final : public BatchPolicy {
 public:
  PresamplePolicy(const PolicyConfig& cfg, nn::Model& model, const data::Dataset& data, int64_t n)
      : cfg_(cfg),
        stream_(n, cfg.seed),
        scorer_(model, data, cfg.score_chunk, nn::ScoreKind::grad_norm_bound),
        rng_(cfg.seed ^ 0x9E3779B9ull),
        tau_th_(cfg.kf_tau_th < 0 ? (static_cast<double>(cfg.kf_presample) + 3.0) / 3.0
                                  : cfg.kf_tau_th),
        uniform_batch_(tau_th_ > 0) {
    if (cfg.kf_presample < 1) {
      throw std::invalid_argument("kf presample factor must be >= 1, got " +
                                  std::to_string(cfg.kf_presample));
    }
    if (!std::isfinite(cfg.kf_tau_th)) {
      throw std::invalid_argument("kf tau threshold must be finite, got " +
                                  std::to_string(cfg.kf_tau_th));
    }
  }
  double tau() const { return tau_; }
  double tau_threshold() const { return tau_th_; }
  // Only a uniform batch's bounds update τ: none are asked for while sampling by importance.
  bool wants_grad_bounds() const override { return uniform_batch_; }
  void observe_bounds(std::span<const float> bounds) override {
    if (uniform_batch_) update_tau(bounds);
  }

  void next(int64_t, BatchPlan& plan) override {
    plan.score_seconds = 0;
    plan.scored = 0;
    uniform_batch_ = !(tau_th_ == 0 || tau_ > tau_th_);
    plan.importance = !uniform_batch_;
    if (uniform_batch_) {
      plan.indices.resize(static_cast<std::size_t>(cfg_.batch));
      for (auto& i : plan.indices) i = stream_.next();
      plan.weights.clear();
      return;
    }
    const int64_t P = cfg_.kf_presample * cfg_.batch;
    cand_.resize(static_cast<std::size_t>(P));
    for (auto& c : cand_) c = stream_.next();
    score_.resize(cand_.size());
    const auto t0 = detail::Clock::now();
    scorer_.score(cand_, score_.data());
    plan.score_seconds = detail::seconds_since(t0);
    plan.scored = P;
    cdf_.resize(cand_.size());
    double z = 0;
    for (std::size_t k = 0; k < cand_.size(); ++k) {
      const double v = std::isfinite(score_[k]) && score_[k] > 0 ? score_[k] : 0.0;
      z += v;
      cdf_[k] = z;
    }
    const bool uniform = !(z > 0);
    plan.indices.resize(static_cast<std::size_t>(cfg_.batch));
    plan.weights.resize(static_cast<std::size_t>(cfg_.batch));
    for (int64_t s = 0; s < cfg_.batch; ++s) {
      std::size_t j;
      double q;
      if (uniform) {
        j = std::uniform_int_distribution<std::size_t>(0, cand_.size() - 1)(rng_);
        q = 1.0 / static_cast<double>(P);
      } else {
        const double u = std::uniform_real_distribution<double>(0.0, z)(rng_);
        j = std::min<std::size_t>(
            static_cast<std::size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin()),
            cand_.size() - 1);
        q = (cdf_[j] - (j ? cdf_[j - 1] : 0.0)) / z;
      }
      plan.indices[static_cast<std::size_t>(s)] = cand_[j];
      plan.weights[static_cast<std::size_t>(s)] =
          static_cast<float>(1.0 / (static_cast<double>(P) * q));
    }
    update_tau(score_);
  }

  void save_state(io::StateWriter& w) const override {
    stream_.save(w);
    w.rng(rng_);
    w.pod(tau_);
    w.pod<uint8_t>(uniform_batch_);
  }
  void load_state(io::StateReader& r) override {
    stream_.load(r);
    r.rng("sampler rng", rng_);
    const auto tau = r.pod<double>("kf tau");
    if (!(std::isfinite(tau) && tau >= 0))
      r.fail("kf tau", "a finite value >= 0", std::to_string(tau));
    tau_ = tau;
    uniform_batch_ = r.pod<uint8_t>("kf uniform flag") != 0;
  }

 private:
  void update_tau(std::span<const float> scores) {
    tau_ = kTauMomentum * tau_ + (1 - kTauMomentum) * kf_variance_reduction(scores);
  }
  static constexpr double kTauMomentum = 0.9;
  PolicyConfig cfg_;
  detail::ShuffledStream stream_;
  Scorer scorer_;
  std::mt19937_64 rng_;
  double tau_th_;
  double tau_ = 0;
  bool uniform_batch_;  // the last (before any: the first) next() draws uniformly
  std::vector<int64_t> cand_;
  std::vector<float> score_;
  std::vector<double> cdf_;
};

// Selective-Backprop (Jiang et al. 2019): forward uniform candidates, keep each with
// probability percentile(loss)^β over the last sb_history losses, until B are kept. The kept
// batch is trained unweighted (biased by design, as in the paper).
class SelectiveBackpropPolicy final : public BatchPolicy {
 public:
  SelectiveBackpropPolicy(const PolicyConfig& cfg, nn::Model& model, const data::Dataset& data,
                          int64_t n)
      : cfg_(cfg),
        stream_(n, cfg.seed),
        scorer_(model, data, cfg.score_chunk),
        rng_(cfg.seed ^ 0x2545F4914F6CDD1Dull) {
    if (!(cfg.sb_beta > 0)) {
      throw std::invalid_argument("selective-backprop beta must be > 0, got " +
                                  std::to_string(cfg.sb_beta));
    }
    history_.reserve(static_cast<std::size_t>(cfg.sb_history));
  }
  void next(int64_t, BatchPlan& plan) override {
    plan.indices.clear();
    plan.weights.clear();
    plan.scored = 0;
    plan.score_seconds = 0;
    const int64_t B = cfg_.batch;
    cand_.resize(static_cast<std::size_t>(B));
    loss_.resize(cand_.size());
    while (static_cast<int64_t>(plan.indices.size()) < B) {
      for (auto& c : cand_) c = stream_.next();
      const auto t0 = detail::Clock::now();
      scorer_.score(cand_, loss_.data());
      plan.score_seconds += detail::seconds_since(t0);
      plan.scored += B;
      for (std::size_t k = 0; k < cand_.size() && static_cast<int64_t>(plan.indices.size()) < B;
           ++k) {
        const float l = std::isfinite(loss_[k]) ? loss_[k] : 0.0f;
        const double pct = percentile(l);
        remember(l);
        if (std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < std::pow(pct, cfg_.sb_beta))
          plan.indices.push_back(cand_[k]);
      }
    }
  }

  void save_state(io::StateWriter& w) const override {
    stream_.save(w);
    w.rng(rng_);
    w.vec(history_);
    w.pod<uint64_t>(next_slot_);
  }
  void load_state(io::StateReader& r) override {
    stream_.load(r);
    r.rng("sampler rng", rng_);
    auto h = r.vec<float>("loss history");
    if (static_cast<int64_t>(h.size()) > cfg_.sb_history)
      r.fail("loss history", "at most " + std::to_string(cfg_.sb_history) + " losses",
             std::to_string(h.size()));
    const auto slot = r.pod<uint64_t>("loss history slot");
    if (slot >= std::max<std::size_t>(h.size(), 1))
      r.fail("loss history slot", "< " + std::to_string(h.size()), std::to_string(slot));
    history_ = std::move(h);
    history_.reserve(static_cast<std::size_t>(cfg_.sb_history));
    next_slot_ = static_cast<std::size_t>(slot);
  }

 private:
  double percentile(float l) const {
    if (history_.empty()) return 1.0;
    int64_t below = 0;
    for (float h : history_) below += h <= l;
    return static_cast<double>(below) / static_cast<double>(history_.size());
  }
  void remember(float l) {
    if (static_cast<int64_t>(history_.size()) < cfg_.sb_history) {
      history_.push_back(l);
    } else {
      history_[next_slot_] = l;
      next_slot_ = (next_slot_ + 1) % history_.size();
    }
  }
  PolicyConfig cfg_;
  detail::ShuffledStream stream_;
  Scorer scorer_;
  std::mt19937_64 rng_;
  std::vector<int64_t> cand_;
  std::vector<float> loss_, history_;
  std::size_t next_slot_ = 0;
};

// InfoBatch (Qin et al., ICLR 2024): dynamic data pruning from the losses the training pass
// already computes — no extra forward pass. The batches come from passes over the data; at the
// start of each pass, every sample whose last training loss is below the mean of the known
// losses is dropped with probability r (independently), and the kept ones among them train with
// weight 1/(1 − r). So each sample's expected weight per pass is 1: a pass's weighted gradient
// sum is an unbiased estimate of the full pass's, at (1 − r·share below the mean) of its steps.
// A sample never trained yet (or just replaced by resharding) has no loss and is always kept.
// Passes starting at iteration ib_anneal_at or later prune nothing (the paper's annealing: the
// last 12.5% of the budget trains on the full data, unweighted). A pass may end inside a batch;
// the batch is then filled from the next pass. Deterministic for a seed; the pass, its position,
// the losses and the RNG are the state a resumed run needs.
class InfoBatchPolicy final : public BatchPolicy {
 public:
  InfoBatchPolicy(const PolicyConfig& cfg, int64_t n)
      : batch_(cfg.batch),
        ratio_(cfg.ib_ratio),
        anneal_at_(cfg.ib_anneal_at),
        loss_(static_cast<std::size_t>(n), kUnknown),
        scaled_(static_cast<std::size_t>(n), 0),
        rng_(cfg.seed ^ 0x1B873593ull) {
    if (n < 1 || batch_ < 1)
      throw std::invalid_argument("infobatch sampler: expected n >= 1 and batch >= 1, found n = " +
                                  std::to_string(n) + ", batch = " + std::to_string(batch_));
    if (!(ratio_ >= 0 && ratio_ < 1))
      throw std::invalid_argument("infobatch prune ratio: expected a value in [0, 1), found " +
                                  std::to_string(ratio_));
  }

  void next(int64_t iteration, BatchPlan& plan) override {
    plan.score_seconds = 0;
    plan.scored = 0;
    plan.indices.resize(static_cast<std::size_t>(batch_));
    plan.weights.resize(static_cast<std::size_t>(batch_));
    const float up = static_cast<float>(1.0 / (1.0 - ratio_));
    bool weighted = false, pruned_pass = false;
    for (std::size_t k = 0; k < plan.indices.size(); ++k) {
      if (pos_ == order_.size()) start_pass(iteration);  // the flags change with the pass
      const int64_t i = order_[pos_++];
      const bool scaled = scaled_[static_cast<std::size_t>(i)] != 0;
      plan.indices[k] = i;
      plan.weights[k] = scaled ? up : 1.0f;
      weighted |= scaled;
      pruned_pass |= pruning_;
    }
    if (!weighted) plan.weights.clear();
    // Importance-chosen if any of it comes from a pruned pass (a batch can straddle two passes).
    plan.importance = pruned_pass;
  }
  void observe(std::span<const int64_t> indices, std::span<const float> losses, int64_t) override {
    for (std::size_t k = 0; k < indices.size(); ++k)
      loss_[static_cast<std::size_t>(indices[k])] = std::isfinite(losses[k]) ? losses[k] : kUnknown;
  }
  void samples_replaced(std::span<const int64_t> slots) override {
    for (int64_t s : slots) loss_[static_cast<std::size_t>(s)] = kUnknown;
  }

  // Passes started so far, and samples dropped over all of them (pruned / (passes · n) is the
  // share of the work saved).
  int64_t passes() const { return passes_; }
  bool reads_weights() const override { return false; }
  int64_t pruned() const override { return pruned_; }
  // The samples of the current pass, in the order they are trained.
  std::span<const int64_t> pass() const { return order_; }
  bool scaled(int64_t i) const { return scaled_[static_cast<std::size_t>(i)] != 0; }

  void save_state(io::StateWriter& w) const override {
    w.vec(loss_);
    w.vec(order_);
    w.pod<uint64_t>(pos_);
    w.vec(scaled_);
    w.pod<uint8_t>(pruning_);
    w.pod(passes_);
    w.pod(pruned_);
    w.rng(rng_);
  }
  void load_state(io::StateReader& r) override {
    const auto n = static_cast<int64_t>(loss_.size());
    auto loss = r.vec<float>("infobatch losses", n);
    for (float v : loss)
      if (!(std::isnan(v) || (std::isfinite(v) && v >= 0)))
        r.fail("infobatch losses", "finite losses >= 0 (or NaN: not seen yet)", std::to_string(v));
    auto order = r.vec<int64_t>("infobatch pass");
    if (static_cast<int64_t>(order.size()) > n)
      r.fail("infobatch pass", "at most " + std::to_string(n) + " samples",
             std::to_string(order.size()));
    for (int64_t v : order)
      if (v < 0 || v >= n)
        r.fail("infobatch pass", "sample indices below " + std::to_string(n), std::to_string(v));
    const auto pos = r.pod<uint64_t>("infobatch pass position");
    if (pos > order.size())
      r.fail("infobatch pass position", "<= " + std::to_string(order.size()), std::to_string(pos));
    auto scaled = r.vec<uint8_t>("infobatch scaled flags", n);
    for (uint8_t v : scaled)
      if (v > 1) r.fail("infobatch scaled flags", "0 or 1", std::to_string(v));
    const bool pruning = r.pod<uint8_t>("infobatch pruning flag") != 0;
    const auto passes = r.pod<int64_t>("infobatch passes");
    const auto pruned = r.pod<int64_t>("infobatch pruned");
    if (passes < 0 || pruned < 0)
      r.fail("infobatch counters", "counts >= 0",
             std::to_string(passes) + ", " + std::to_string(pruned));
    r.rng("infobatch rng", rng_);
    loss_ = std::move(loss);
    order_ = std::move(order);
    pos_ = static_cast<std::size_t>(pos);
    scaled_ = std::move(scaled);
    pruning_ = pruning;
    passes_ = passes;
    pruned_ = pruned;
  }

 private:
  static constexpr float kUnknown = std::numeric_limits<float>::quiet_NaN();

  void start_pass(int64_t iteration) {
    const auto n = loss_.size();
    double sum = 0;
    int64_t known = 0;
    for (float v : loss_)
      if (!std::isnan(v)) sum += v, ++known;
    pruning_ = iteration < anneal_at_ && ratio_ > 0 && known > 0;
    const double mean = known ? sum / static_cast<double>(known) : 0.0;
    std::bernoulli_distribution drop(ratio_);
    order_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const bool low = pruning_ && !std::isnan(loss_[i]) && loss_[i] < mean;
      if (low && drop(rng_)) {
        ++pruned_;
        scaled_[i] = 0;
        continue;
      }
      scaled_[i] = low;
      order_.push_back(static_cast<int64_t>(i));
    }
    base::shuffle_portable(std::span<int64_t>(order_), rng_);
    pos_ = 0;
    ++passes_;
  }

  int64_t batch_;
  double ratio_;
  int64_t anneal_at_;
  std::vector<float> loss_;      // each sample's last training loss; NaN: none yet
  std::vector<uint8_t> scaled_;  // kept below-mean samples of the current pass (weight 1/(1−r))
  std::vector<int64_t> order_;   // the current pass
  std::size_t pos_ = 0;
  bool pruning_ = false;
  int64_t passes_ = 0, pruned_ = 0;
  std::mt19937_64 rng_;
};

// The policy for a sampler kind.
inline std::unique_ptr<BatchPolicy> make_policy(const PolicyConfig& cfg, nn::Model& model,
                                                const data::Dataset& data, int64_t n) {
  switch (cfg.kind) {
    case SamplerKind::uniform:
      return std::make_unique<UniformPolicy>(cfg, n);
    case SamplerKind::mercury:
    case SamplerKind::all_is:
      return std::make_unique<GroupwisePolicy>(cfg, model, data, n);
    case SamplerKind::kf:
      return std::make_unique<PresamplePolicy>(cfg, model, data, n);
    case SamplerKind::selective_backprop:
      return std::make_unique<SelectiveBackpropPolicy>(cfg, model, data, n);
    case SamplerKind::infobatch:
      return std::make_unique<InfoBatchPolicy>(cfg, n);
  }
  return nullptr;
}

}  // namespace mercury::importance
