// mercury/train/trainer.hpp — single-device training: the step loop, evaluation, metrics,
// checkpoints and exact resume.
//
// Contract
// - Deterministic: the model init, the per-epoch shuffle (a pure function of seed and epoch),
//   and dropout (an RNG saved in checkpoints) depend only on the config; with threads = 1 two
//   runs give bit-identical weights, and save → load → continue equals an uninterrupted run.
// - The step loop allocates nothing after its first step: batch buffers are sized up front and
//   the Engine's arena is reused (the planned bytes are printed after step one).
// - Metrics (JSON lines): "start", one "epoch" line per epoch (epoch, train_loss, test_loss,
//   test_acc, wall_s, train_samples_per_s, steps, lr), and "done" with peak RSS.
#pragma once

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/importance/policy.hpp"
#include "mercury/importance/stats.hpp"
#include "mercury/io/metrics.hpp"
#include "mercury/nn/engine.hpp"
#include "mercury/optim/optimizer.hpp"
#include "mercury/optim/schedule.hpp"
#include "mercury/tensor/thread_pool.hpp"
#include "mercury/train/checkpoint.hpp"
#include "mercury/train/config.hpp"

namespace mercury::train {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

struct TrainResult {
  int64_t steps = 0;
  double final_test_acc = 0;
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

class Trainer {
 public:
  Trainer(TrainConfig cfg, nn::Model& model, const data::Dataset& train, const data::Dataset& test,
          std::ostream& log)
      : cfg_(std::move(cfg)),
        model_(model),
        train_(train),
        test_(test),
        log_(log),
        engine_(model, static_cast<uint64_t>(cfg_.seed)),
        augment_rng_(static_cast<uint64_t>(cfg_.seed) ^ 0xA5A5A5A5ull),
        opt_(optimizer_config(cfg_), model.params.size()),
        metrics_(cfg_.metrics) {
    validate(cfg_);
    if (cfg_.threads == 0) cfg_.threads = default_thread_count();
    thread_pool().set_threads(static_cast<int>(cfg_.threads));
    n_train_ = cfg_.train_limit ? std::min(cfg_.train_limit, train_.size()) : train_.size();
    n_test_ = cfg_.test_limit ? std::min(cfg_.test_limit, test_.size()) : test_.size();
    if (n_train_ < 1) throw std::invalid_argument("training set is empty");
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
      pc.train_mode_norm = cfg_.score_train_mode;
      pc.kf_presample = cfg_.kf_presample;
      pc.sb_beta = cfg_.sb_beta;
      pc.seed = static_cast<uint64_t>(cfg_.seed);
      policy_ = importance::make_policy(pc, model_, train_, n_train_);
    }
    if (!cfg_.resume.empty()) {
      if (policy_) {
        throw std::invalid_argument("resume with --sampler " + cfg_.sampler +
                                    " is not supported yet: the importance cache is not part of "
                                    "checkpoints (resume works with --sampler uniform)");
      }
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

  int64_t steps_per_epoch() const { return (n_train_ + cfg_.batch - 1) / cfg_.batch; }
  const Cursor& cursor() const { return cursor_; }
  optim::Optimizer& optimizer() { return opt_; }

  TrainResult run() {
    const int64_t B = cfg_.batch, S = model_.sample_numel();
    const int64_t micro = cfg_.micro_batch ? cfg_.micro_batch : B;
    std::vector<float> x(static_cast<std::size_t>(B * S));
    std::vector<int32_t> y(static_cast<std::size_t>(B));
    std::vector<int64_t> perm(static_cast<std::size_t>(n_train_));
    TrainResult result;
    metrics_.write({{"event", "start"},
                    {"model", model_.name},
                    {"params", model_.params.count()},
                    {"train_samples", n_train_},
                    {"test_samples", n_test_},
                    {"kernels", kernels::isa_name(kernels::table().isa)},
                    {"config", to_json(cfg_)}});
    log_ << "model " << model_.name << ": " << model_.params.count() << " parameters; " << n_train_
         << " train / " << n_test_ << " test samples; kernels "
         << kernels::isa_name(kernels::table().isa) << "; threads " << cfg_.threads << "\n";
    const auto t0 = clock::now();
    double train_seconds = 0;
    int64_t samples_done = 0;
    bool stop = false;
    for (int64_t epoch = cursor_.epoch; epoch < cfg_.epochs && !stop; ++epoch) {
      epoch_permutation(static_cast<uint64_t>(cfg_.seed), epoch, perm);
      double loss_sum = 0;
      int64_t loss_count = 0;
      auto te = clock::now();
      int64_t epoch_samples = 0;
      for (int64_t s = cursor_.step_in_epoch; s < steps_per_epoch(); ++s) {
        // The batch: a slice of the epoch permutation (uniform) or the sampler's draw.
        const int64_t* idx = perm.data() + s * B;
        int64_t count = std::min(B, n_train_ - s * B);
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
        } else {
          timing_.ess_sum += 1.0;  // unweighted
        }
        const auto tc = clock::now();
        model_.params.zero_grad();
        float loss = 0;
        for (int64_t m0 = 0; m0 < count; m0 += micro) {
          const int64_t mc = std::min(micro, count - m0);
          train_.gather(std::span<const int64_t>(idx + m0, mc), x.data(), y.data(), &augment_rng_);
          loss += engine_.grad(x.data(), y.data(), w ? w + m0 : nullptr, mc, nullptr, count);
        }
        opt_.step(model_.params.values(), model_.params.grads(), schedule_.at(cursor_.global_step));
        timing_.compute_s += seconds_since(tc);
        timing_.train_cpu_s += process_cpu_seconds() - cpu0;
        ++timing_.steps;
        ++cursor_.global_step;
        cursor_.step_in_epoch = s + 1;
        loss_sum += loss;
        ++loss_count;
        epoch_samples += count;
        if (cursor_.global_step == 1 + start_step_) report_memory();
        if (cfg_.checkpoint_every && cursor_.global_step % cfg_.checkpoint_every == 0 &&
            !cfg_.checkpoint.empty() && s + 1 < steps_per_epoch()) {
          save(cfg_.checkpoint);
        }
        progress(epoch, s + 1, loss_sum / static_cast<double>(loss_count), te);
        importance_stats();
        if (cfg_.eval_every && cursor_.global_step % cfg_.eval_every == 0) {
          const auto pause = clock::now();
          clear_progress();
          const EvalResult ev = evaluate();
          write_eval(ev);
          te += clock::now() - pause;  // evaluation is not training time
          if (target_reached(ev)) stop = true;
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
      clear_progress();
      const EvalResult ev = evaluate();
      const double sps = epoch_train_s > 0 ? static_cast<double>(epoch_samples) / epoch_train_s : 0;
      const double train_loss = loss_count ? loss_sum / static_cast<double>(loss_count) : 0.0;
      char line[256];
      std::snprintf(line, sizeof line,
                    "epoch %3lld  train_loss %.4f  test_loss %.4f  test_acc %6.2f%%  "
                    "%.0f samples/s  %.1fs\n",
                    static_cast<long long>(epoch + 1), train_loss, ev.loss, 100.0 * ev.accuracy,
                    sps, seconds_since(t0));
      log_ << line << std::flush;
      metrics_.write(
          {{"event", "epoch"},
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
           {"ess", timing_.steps ? timing_.ess_sum / timing_.steps : 1.0}});
      if (!cfg_.checkpoint.empty()) save(cfg_.checkpoint);
      if (target_reached(ev)) stop = true;
      result.final_test_acc = ev.accuracy;
      result.final_test_loss = ev.loss;
    }
    result.steps = cursor_.global_step;
    result.train_samples_per_s =
        train_seconds > 0 ? static_cast<double>(samples_done) / train_seconds : 0;
    result.peak_rss_bytes = peak_rss_bytes();
    metrics_.write({{"event", "done"},
                    {"steps", result.steps},
                    {"test_acc", result.final_test_acc},
                    {"train_samples_per_s", result.train_samples_per_s},
                    {"wall_s", seconds_since(t0)},
                    {"peak_rss_bytes", result.peak_rss_bytes}});
    log_ << "done: " << result.steps << " steps, test_acc " << 100.0 * result.final_test_acc
         << "%, peak RSS " << (result.peak_rss_bytes >> 20) << " MiB\n";
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
  };
  const Timing& timing() const { return timing_; }
  // Extra string metadata written into every checkpoint (e.g. the text vocabulary).
  void set_checkpoint_metadata(std::map<std::string, std::string> m) {
    extra_metadata_ = std::move(m);
  }

  void save(const std::string& path) {
    std::ostringstream rng;
    rng << engine_.rng() << ' ' << augment_rng_;
    save_checkpoint(path, model_, opt_, cursor_, rng.str(), to_json(cfg_).dump(), extra_metadata_);
  }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds_since(clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
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

  // Every importance_stats_every steps: score a fixed probe subset, log its loss histogram, and
  // 1 and 10 steps later the fraction of probes whose rank moved < 5% / < 10%.
  void importance_stats() {
    const int64_t every = cfg_.importance_stats_every;
    if (!every) return;
    const int64_t t = cursor_.global_step;
    const int64_t lag = t % every;
    if (lag != 0 && lag != 1 && lag != 10) return;
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
    if (lag == 0) {
      probe_scorer_->score(probe_, probe_base_.data());
      const auto h = importance::histogram(probe_base_, 30);
      metrics_.write(
          {{"event", "importance_hist"}, {"steps", t}, {"hi", h.hi}, {"counts", h.counts}});
      return;
    }
    if (t < every) return;
    probe_scorer_->score(probe_, probe_now_.data());
    const auto rc = importance::rank_change(probe_base_, probe_now_);
    metrics_.write({{"event", "rank_change"},
                    {"steps", t - lag},
                    {"lag", lag},
                    {"under5", rc.under5},
                    {"under10", rc.under10}});
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
    for (const auto& [name, t] : opt_.state()) opt_bytes += t.numel() * 4;
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
                 per > 0 ? static_cast<double>(cfg_.batch) / per : 0.0, static_cast<int>(eta));
    progress_shown_ = true;
  }
  void clear_progress() {
    if (progress_shown_) std::fprintf(stderr, "\r%100s\r", "");
    progress_shown_ = false;
  }
  int64_t resume_epoch() const { return start_epoch_; }
  int64_t resume_step() const { return start_step_in_epoch_; }

  TrainConfig cfg_;
  nn::Model& model_;
  const data::Dataset& train_;
  const data::Dataset& test_;
  std::ostream& log_;
  nn::Engine engine_;
  std::mt19937_64 augment_rng_;
  optim::Optimizer opt_;
  optim::LrSchedule schedule_;
  io::MetricsWriter metrics_;
  Cursor cursor_;
  int64_t n_train_ = 0, n_test_ = 0;
  int64_t start_step_ = 0, start_epoch_ = 0, start_step_in_epoch_ = 0;
  clock::time_point last_progress_{};
  bool progress_shown_ = false;
  std::vector<float> eval_x_, eval_loss_;
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
};

}  // namespace mercury::train
