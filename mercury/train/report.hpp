// mercury/train/report.hpp — what a training run tells the user: the log lines, the progress
// line, and the JSON-lines metrics events (start, eval, target_reached, epoch, dist, done).
//
// Contract
// - RunReport writes; it decides nothing. The trainer hands it the numbers (its Timing, the
//   cursor, an evaluation) and the report formats them, so every event's fields are named in
//   this one file.
// - Timing is cumulative over the steps of this run (evaluation excluded). Wall times are per
//   phase; CPU times are process CPU seconds (robust to a busy machine).
// - The progress line is drawn only on a terminal (stderr) and at most every 250 ms.
#pragma once

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mercury/io/metrics.hpp"

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

// Cumulative time split of the steps run so far (evaluation excluded).
struct Timing {
  double compute_s = 0;  // forward + backward + optimizer
  double score_s = 0;    // importance scoring (sequential pipeline)
  // BACC: the scorer thread's time hidden behind the aggregation, the training thread's time
  // waiting for it (plus the snapshot copy), its busy wall and CPU time.
  double score_hidden_s = 0;
  double score_exposed_s = 0;
  double scorer_busy_s = 0;
  double scorer_cpu_s = 0;
  double train_cpu_s = 0;  // CPU seconds of scoring + compute (robust to a busy machine)
  double score_cpu_s = 0;
  int64_t scored = 0;
  int64_t steps = 0;
  double ess_sum = 0;
  int64_t is_steps = 0;  // steps whose batch was drawn by importance (kf: after its switch)
  // Wall-clock seconds of training since the run started, evaluations excluded, as of the
  // latest evaluation (distributed: rank 0's, communication and waiting included).
  double wall_s = 0;
  // Distributed: communication rounds so far as of the latest evaluation (sync and tictac: one
  // per step; adacomm: one per averaging); -1 on one device (not logged).
  int64_t comm_rounds = -1;

  nlohmann::json fields() const {
    nlohmann::json j = {{"wall_s", wall_s},           {"train_s", compute_s + score_s},
                        {"compute_s", compute_s},     {"score_s", score_s},
                        {"train_cpu_s", train_cpu_s}, {"score_cpu_s", score_cpu_s}};
    if (comm_rounds >= 0) j["comm_rounds"] = comm_rounds;
    return j;
  }
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

// The group size of every step of a BACC run, from the "bacc" events of its metrics log
// (`--replay-group-sizes`). Throws std::invalid_argument naming the file, the line and what was
// expected on anything else than a regular file of JSON lines.
inline std::map<int64_t, int64_t> read_group_sizes(const std::string& path) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("replay_group_sizes '" + path + "': " + what);
  };
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) fail("cannot open: no such file");
  if (!std::filesystem::is_regular_file(st))
    fail("expected a regular file (a metrics log), found another kind of file");
  std::ifstream in(path);
  if (!in) fail("cannot open for reading");
  std::map<int64_t, int64_t> sizes;
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    const std::string at = "line " + std::to_string(line_no) + ": ";
    if (j.is_discarded() || !j.is_object())
      fail(at + "expected a JSON object, found '" + line.substr(0, 80) + "'");
    if (j.value("event", "") != "bacc") continue;
    if (!j.contains("steps") || !j["steps"].is_number_integer() || !j.contains("group") ||
        !j["group"].is_number_integer() || j["steps"].get<int64_t>() < 0 ||
        j["group"].get<int64_t>() < 0)
      fail(at + "expected a bacc event with integer steps >= 0 and group >= 0");
    sizes[j["steps"].get<int64_t>()] = j["group"].get<int64_t>();
  }
  if (sizes.empty()) fail("expected \"bacc\" events (a metrics log of a bacc run), found none");
  return sizes;
}

class RunReport {
 public:
  using Clock = std::chrono::steady_clock;

  RunReport(std::ostream& log, const std::string& metrics_path, bool progress)
      : log_(log), metrics_(metrics_path), progress_(progress) {}

  std::ostream& log() { return log_; }
  io::MetricsWriter& metrics() { return metrics_; }

  void eval(int64_t step, const EvalResult& ev, const Timing& t) {
    nlohmann::json e = {
        {"event", "eval"}, {"steps", step}, {"test_acc", ev.accuracy}, {"test_loss", ev.loss}};
    e.update(t.fields());
    metrics_.write(e);
  }

  // One BACC aggregation window: the group scored and where the scorer's time went.
  static double finite(double v) { return std::isfinite(v) ? v : 0.0; }
  void bacc_step(int64_t step, int64_t group, double busy_s, double cpu_s, double hidden_s,
                 double exposed_s, double aggregate_s) {
    // Formatted in place: this runs every step, which allocates nothing.
    char line[320];
    const int n = std::snprintf(
        line, sizeof line,
        "{\"aggregate_s\":%.17g,\"busy_s\":%.17g,\"cpu_s\":%.17g,\"event\":\"bacc\","
        "\"exposed_s\":%.17g,\"group\":%lld,\"hidden_s\":%.17g,\"steps\":%lld}",
        finite(aggregate_s), finite(busy_s), finite(cpu_s), finite(exposed_s),
        static_cast<long long>(group), finite(hidden_s), static_cast<long long>(step));
    metrics_.write_line(std::string_view(line, static_cast<std::size_t>(n)));
  }

  void target_reached(double target, int64_t step, const EvalResult& ev, const Timing& t) {
    nlohmann::json e = {{"event", "target_reached"},
                        {"target_acc", target},
                        {"test_acc", ev.accuracy},
                        {"steps", step}};
    e.update(t.fields());
    metrics_.write(e);
    log_ << "target accuracy " << target << " reached after " << step << " steps, "
         << t.compute_s + t.score_s << " s of training\n";
  }

  // The epoch line on the log; the event's own fields are the caller's.
  void epoch_line(int64_t epoch, double train_loss, const EvalResult& ev, double samples_per_s,
                  double wall_s) {
    clear_progress();
    char line[256];
    std::snprintf(line, sizeof line,
                  "epoch %3lld  train_loss %.4f  test_loss %.4f  test_acc %6.2f%%  "
                  "%.0f samples/s  %.1fs\n",
                  static_cast<long long>(epoch), train_loss, ev.loss, 100.0 * ev.accuracy,
                  samples_per_s, wall_s);
    log_ << line << std::flush;
  }

  // "epoch e/E  step s/S  loss  samples/s  ETA" on a terminal. `done` steps took `elapsed_s`.
  void progress(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, int64_t done,
                double elapsed_s, double loss, int64_t samples_per_step) {
    if (!progress_ || !isatty(2)) return;
    const auto now = Clock::now();
    if (now - last_progress_ < std::chrono::milliseconds(250) && step != steps) return;
    last_progress_ = now;
    const double per = done > 0 ? elapsed_s / static_cast<double>(done) : 0;
    const double eta = per * static_cast<double>(steps - step);
    std::fprintf(stderr, "\repoch %lld/%lld  step %lld/%lld  loss %.4f  %.0f samples/s  ETA %ds   ",
                 static_cast<long long>(epoch), static_cast<long long>(epochs),
                 static_cast<long long>(step), static_cast<long long>(steps), loss,
                 per > 0 ? static_cast<double>(samples_per_step) / per : 0.0,
                 static_cast<int>(eta));
    shown_ = true;
  }
  void clear_progress() {
    if (shown_) std::fprintf(stderr, "\r%100s\r", "");
    shown_ = false;
  }

 private:
  std::ostream& log_;
  io::MetricsWriter metrics_;
  bool progress_;
  Clock::time_point last_progress_{};
  bool shown_ = false;
};

}  // namespace mercury::train
