// tools/suite.hpp — `mercury suite paper`: the paper's evaluation as one resumable command.
//
// Contract
// - plan_suite(options) lists the suite's points: one `mercury sim` run each, with an id
//   (fig11/image/10mbps/sync-s1) that is also its path under OUT/points/. Within a group (figure,
//   task, bandwidth, seed) the sync SGD point comes first and trains for the whole budget; its
//   plateau (the mean of its last three evaluations) minus 0.5 point is the group's target
//   (METHOD.md), and every other point of the group stops at that target (--target-acc).
// - run_suite(options, log) runs the plan. A point is finished when its metrics file holds a
//   "done" event: it is never recomputed. Anything else of an unfinished point (a run that was
//   interrupted or failed) is deleted and the point restarts from scratch. Each point runs as a
//   child process (the suite's own binary: `mercury sim ...`, its output in OUT/points/ID.log)
//   that dies with the suite. A progress line per point gives the elapsed time and the time
//   left, from per-step cost estimates scaled by what the finished points actually took.
//   OUT/suite.json records the settings; a directory holding another suite's settings is
//   refused, so a resumed suite never mixes budgets.
// - write_suite_report(options) (after every run, also a partial one) writes OUT/index.md (one
//   section per figure: our table with the paper's numbers beside it, the plot, the command,
//   seeds and spread), SVG plots and OUT/summary.json. A speedup is sync SGD's time to the target
//   over the algorithm's, per seed, on the seeds both reached; a point that never reached the
//   target is shown as "not reached", never as a number.
// - Implemented so far (issue 15, first slice): Fig. 11 (speedup over sync SGD of TicTac,
//   AdaComm at its best tau0 of the grid, Mercury, and Mercury on local SGD, per bandwidth) on
//   the image task (Fashion-MNIST, reference CNN, 4 devices). The other figures and tasks are
//   named in the report as not yet run; asking for them is refused, saying so.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mercury/io/atomic_file.hpp"
#include "models/registry.hpp"
#include "tools/process.hpp"
#include "tools/report.hpp"

namespace mercury::tools {

struct SuiteOptions {
  std::string out;                          // the suite's directory
  bool quick = false;                       // fewer bandwidths and seeds, a shorter budget
  std::vector<std::string> tasks{"image"};  // implemented: image
  std::vector<std::string> figures{"11"};   // implemented: 11
  std::vector<int> seeds;                   // empty: the mode's (quick 1; full 1 2 3)
  std::vector<std::string> bandwidths;      // empty: the mode's (quick 10/100; full 10..200)
  int64_t budget = 0;                       // sync's steps; 0: the mode's (quick 400, full 1500)
  int64_t eval_every = 0;                   // steps between evaluations; 0: min(50, budget)
  int64_t train_limit = 0, test_limit = 0;  // smaller data (smoke runs); 0: all
  std::string data_dir;                     // Fashion-MNIST's directory (empty: the default)
  std::string model = "cnn";                // the image task's model (mlp: a cheap smoke run)
  std::string bin;                          // the mercury binary the points run
  bool dry_run = false;                     // print the plan and its expected time only
};

struct SuitePoint {
  std::string id;  // figure/task/bandwidth/variant-sSEED, also its path under OUT/points
  std::string figure, task, bandwidth, variant;
  int seed = 0;
  std::vector<std::string> args;  // after the binary: sim ... -- <train flags>
  std::string baseline;           // the id whose plateau sets the target ("" for sync itself)
  double est_s = 0;               // expected real seconds on a 2-core machine
};

namespace suite_detail {

inline const std::vector<std::string> kFigures = {"11"};
inline const std::vector<std::string> kTasks = {"image"};

// Mercury's sampler settings, as in bench/suites/sim_baselines.sh (the adaptive group's
// default ceiling, 10 x the local batch, applies).
inline std::vector<std::string> mercury_flags() {
  return {"--sampler", "mercury",    "--groups-per-batch", "4",
          "--draw",    "systematic", "--weight-power",     "0.5",
          "--beta",    "0.1"};
}

// Fig. 11's algorithms: name, train flags, and real seconds per step of 4 simulated devices
// on 2 cores (measured in the session-12 runs; the runner rescales them as points finish).
struct Variant {
  std::string name;
  std::vector<std::string> flags;
  double step_s;
};

inline std::vector<Variant> fig11_variants(bool quick) {
  std::vector<Variant> v = {{"sync", {"--sampler", "uniform"}, 0.12},
                            {"tictac", {"--sampler", "uniform", "--algorithm", "tictac"}, 0.12}};
  for (const char* tau : quick ? std::vector<const char*>{"10", "20"}
                               : std::vector<const char*>{"2", "5", "10", "20"})
    v.push_back({std::string("adacomm-t") + tau,
                 {"--sampler", "uniform", "--algorithm", "adacomm", "--adacomm-tau0", tau},
                 0.10});
  v.push_back({"mercury", mercury_flags(), 0.45});
  auto local = mercury_flags();
  for (const char* f : {"--algorithm", "adacomm", "--adacomm-tau0", "20"}) local.push_back(f);
  v.push_back({"mercury-local-t20", local, 0.12});
  return v;
}

// The paper's Fig. 11: Mercury's speedup over sync SGD per bandwidth, lowest and highest of its
// six tasks (METHOD.md).
inline const std::map<std::string, std::string> kPaperMercury = {{"10mbps", "1.85–4.08x"},
                                                                 {"50mbps", "1.65–3.98x"},
                                                                 {"100mbps", "1.62–3.93x"},
                                                                 {"200mbps", "1.58–3.90x"}};

inline bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

inline std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// "10mbps" -> 10; anything else is refused by the caller's check.
inline double mbps_of(const std::string& bw) {
  return std::stod(bw.substr(0, bw.size() - 4));
}

inline std::string hms(double s) {
  const auto t = static_cast<int64_t>(std::max(0.0, s) + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t % 3600 / 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  return buf;
}

}  // namespace suite_detail

// Fills in the mode's defaults and refuses what the suite cannot do, naming it.
inline SuiteOptions resolve_suite_options(SuiteOptions o) {
  using suite_detail::contains;
  using suite_detail::join;
  if (o.out.empty()) throw std::invalid_argument("suite: --out: expected a directory, found none");
  for (const auto& f : o.figures)
    if (!contains(suite_detail::kFigures, f))
      throw std::invalid_argument("suite: figure '" + f + "': expected one of " +
                                  join(suite_detail::kFigures) +
                                  " (the others of the paper's evaluation are not in the suite "
                                  "yet: issue 15)");
  for (const auto& t : o.tasks)
    if (!contains(suite_detail::kTasks, t))
      throw std::invalid_argument("suite: task '" + t + "': expected one of " +
                                  join(suite_detail::kTasks) +
                                  " (speech and text are not in the suite yet: issue 15)");
  if (!contains(models::model_names(), o.model))
    throw std::invalid_argument("suite: --model '" + o.model + "': expected one of " +
                                join(models::model_names()));
  if (o.figures.empty() || o.tasks.empty())
    throw std::invalid_argument("suite: --figures and --tasks: expected at least one each");
  if (o.seeds.empty()) o.seeds = o.quick ? std::vector<int>{1} : std::vector<int>{1, 2, 3};
  if (o.bandwidths.empty())
    o.bandwidths = o.quick ? std::vector<std::string>{"10mbps", "100mbps"}
                           : std::vector<std::string>{"10mbps", "50mbps", "100mbps", "200mbps"};
  for (const auto& bw : o.bandwidths) {
    const bool ok = bw.size() > 4 && bw.compare(bw.size() - 4, 4, "mbps") == 0 &&
                    bw.find_first_not_of("0123456789") == bw.size() - 4 && bw[0] != '0';
    if (!ok)
      throw std::invalid_argument("suite: bandwidth '" + bw +
                                  "': expected a whole number of Mbps such as 10mbps");
  }
  for (int s : o.seeds)
    if (s < 0) throw std::invalid_argument("suite: seed " + std::to_string(s) + ": expected >= 0");
  if (o.budget == 0) o.budget = o.quick ? 400 : 1500;
  if (o.budget < 1 || o.budget > 1000000)
    throw std::invalid_argument("suite: --budget: expected 1..1000000 steps, found " +
                                std::to_string(o.budget));
  if (o.eval_every == 0) o.eval_every = std::min<int64_t>(50, o.budget);
  if (o.eval_every < 1 || o.eval_every > o.budget)
    throw std::invalid_argument("suite: --eval-every: expected 1..budget (" +
                                std::to_string(o.budget) + "), found " +
                                std::to_string(o.eval_every));
  if (o.train_limit < 0 || o.test_limit < 0)
    throw std::invalid_argument("suite: --train-limit/--test-limit: expected >= 0");
  return o;
}

// The points, in run order (every group's sync point before the points it sets the target of).
inline std::vector<SuitePoint> plan_suite(const SuiteOptions& o) {
  std::vector<SuitePoint> plan;
  for (const auto& task : o.tasks) {
    for (int seed : o.seeds) {
      for (const auto& bw : o.bandwidths) {
        const std::string group = "fig11/" + task + "/" + bw + "/";
        for (const auto& v : suite_detail::fig11_variants(o.quick)) {
          SuitePoint p;
          p.figure = "11";
          p.task = task;
          p.bandwidth = bw;
          p.variant = v.name;
          p.seed = seed;
          p.id = group + v.name + "-s" + std::to_string(seed);
          p.baseline = v.name == "sync" ? "" : group + "sync-s" + std::to_string(seed);
          p.args = {"sim",
                    "-n",
                    "4",
                    "--bandwidth",
                    bw,
                    "--",
                    "--model",
                    o.model,
                    "--data",
                    "fashion-mnist",
                    "--batch",
                    "256",
                    "--lr",
                    "0.002",
                    "--optimizer",
                    "adam",
                    "--threads",
                    "1",
                    "--epochs",
                    "1000",
                    "--max-steps",
                    std::to_string(o.budget),
                    "--eval-every",
                    std::to_string(o.eval_every),
                    "--progress",
                    "false",
                    "--seed",
                    std::to_string(seed)};
          if (o.train_limit)
            p.args.insert(p.args.end(), {"--train-limit", std::to_string(o.train_limit)});
          if (o.test_limit)
            p.args.insert(p.args.end(), {"--test-limit", std::to_string(o.test_limit)});
          if (!o.data_dir.empty()) p.args.insert(p.args.end(), {"--data-dir", o.data_dir});
          p.args.insert(p.args.end(), v.flags.begin(), v.flags.end());
          // Points that stop at the target take ~60% of the budget (session 12's runs).
          p.est_s = v.step_s * static_cast<double>(o.budget) * (p.baseline.empty() ? 1.0 : 0.6);
          plan.push_back(std::move(p));
        }
      }
    }
  }
  return plan;
}

// One run's evaluations in step order (eval, epoch and target_reached events; one per step).
struct RunCurve {
  std::vector<int64_t> steps;
  std::vector<double> acc, wall_s;
  bool done = false;
};

inline bool metrics_finished(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.find("\"event\":\"done\"") != std::string::npos) return true;
  return false;
}

inline RunCurve read_curve(const std::string& path) {
  RunCurve c;
  for (const auto& e : read_metrics(path)) {
    const std::string ev = e.value("event", "");
    if (ev == "done") c.done = true;
    if (ev != "eval" && ev != "epoch" && ev != "target_reached") continue;
    if (!e.contains("test_acc") || !e.contains("steps") || !e.contains("wall_s")) continue;
    const int64_t step = e["steps"].get<int64_t>();
    if (!c.steps.empty() && c.steps.back() == step) continue;  // the same evaluation again
    c.steps.push_back(step);
    c.acc.push_back(e["test_acc"].get<double>());
    c.wall_s.push_back(e["wall_s"].get<double>());
  }
  return c;
}

// Sync SGD's plateau: the mean of its last three evaluations (fewer if it has fewer).
inline std::optional<double> plateau(const RunCurve& c) {
  if (c.acc.empty()) return std::nullopt;
  const std::size_t k = std::min<std::size_t>(3, c.acc.size());
  double s = 0;
  for (std::size_t i = c.acc.size() - k; i < c.acc.size(); ++i) s += c.acc[i];
  return s / static_cast<double>(k);
}

// A group's target: sync SGD's plateau minus 0.5 point (METHOD.md).
inline std::optional<double> group_target(const RunCurve& sync) {
  const auto pl = plateau(sync);
  return pl ? std::optional<double>(*pl - 0.005) : std::nullopt;
}

// The first evaluation at or above the target: (steps, virtual seconds).
inline std::optional<std::pair<int64_t, double>> time_to(const RunCurve& c, double target) {
  for (std::size_t i = 0; i < c.acc.size(); ++i)
    if (c.acc[i] >= target) return std::pair{c.steps[i], c.wall_s[i]};
  return std::nullopt;
}

inline std::string point_path(const SuiteOptions& o, const std::string& id, const char* ext) {
  return (std::filesystem::path(o.out) / "points" / (id + ext)).string();
}

// The settings that must not change across a resumed suite.
inline nlohmann::json suite_settings(const SuiteOptions& o) {
  return {{"quick", o.quick},
          {"tasks", o.tasks},
          {"figures", o.figures},
          {"seeds", o.seeds},
          {"bandwidths", o.bandwidths},
          {"budget", o.budget},
          {"eval_every", o.eval_every},
          {"train_limit", o.train_limit},
          {"test_limit", o.test_limit},
          {"data_dir", o.data_dir},
          {"model", o.model}};
}

// The report of whatever has finished (a partial suite reports its finished points).
inline nlohmann::json write_suite_report(const SuiteOptions& o, const std::vector<SuitePoint>& plan,
                                         const std::string& command) {
  using suite_detail::mbps_of;
  namespace fs = std::filesystem;
  // Per (task, bandwidth, variant, seed): seconds and steps to the group's target.
  struct Hit {
    bool finished = false;
    std::optional<std::pair<int64_t, double>> at;
  };
  std::map<std::string, double> targets;  // sync point id -> target
  std::map<std::string, RunCurve> curves;
  for (const auto& p : plan) {
    const std::string path = point_path(o, p.id, ".jsonl");
    if (!metrics_finished(path)) continue;
    curves[p.id] = read_curve(path);
    if (p.baseline.empty())
      if (const auto t = group_target(curves[p.id])) targets[p.id] = *t;
  }
  nlohmann::json fig = nlohmann::json::object();
  std::vector<std::string> variants;
  for (const auto& v : suite_detail::fig11_variants(o.quick)) variants.push_back(v.name);
  std::ostringstream md;
  md << "# The paper's evaluation: `mercury suite paper`\n\n"
     << "Command: `" << command << "`\n\n"
     << "Mode: " << (o.quick ? "quick" : "full") << "; seeds " << nlohmann::json(o.seeds).dump()
     << "; sync SGD trains " << o.budget << " steps (evaluations every " << o.eval_every
     << "); every other run stops at the target, sync SGD's plateau (the mean of its last three "
        "evaluations) minus 0.5 point. Times are the simulator's virtual seconds (4 devices, "
        "one link per device pair). A speedup is sync SGD's time to the target over the "
        "algorithm's, on the seeds both reached it; a run that never reached it is shown as "
        "not reached.\n\n";
  for (const auto& task : o.tasks) {
    md << "## Fig. 11: speedup over sync SGD (" << task << ": Fashion-MNIST, model " << o.model
       << (o.model == "cnn" ? " (the reference CNN)" : "")
       << ", 4 devices, local batch 64, Adam 0.002)\n\n"
       << "| bandwidth | target (sync plateau - 0.5) | ";
    for (const auto& v : variants) md << v << " | ";
    md << "paper: Mercury (6 tasks) |\n|---|---|";
    for (std::size_t k = 0; k <= variants.size(); ++k) md << "---|";
    md << "\n";
    std::map<std::string, Series> bars;
    for (const auto& bw : o.bandwidths) {
      nlohmann::json row = nlohmann::json::object();
      std::ostringstream tg;
      for (int seed : o.seeds) {
        const std::string sid = "fig11/" + task + "/" + bw + "/sync-s" + std::to_string(seed);
        if (targets.count(sid)) {
          char b[32];
          std::snprintf(b, sizeof b, "%s%.2f%%", tg.str().empty() ? "" : ", ", 100 * targets[sid]);
          tg << b;
        }
      }
      md << "| " << bw << " | " << (tg.str().empty() ? "–" : tg.str()) << " | ";
      for (const auto& v : variants) {
        std::vector<double> ratios;
        nlohmann::json seeds = nlohmann::json::object();
        int finished = 0, reached = 0;
        for (int seed : o.seeds) {
          const std::string s = "-s" + std::to_string(seed);
          const std::string sid = "fig11/" + task + "/" + bw + "/sync" + s;
          const std::string id = "fig11/" + task + "/" + bw + "/" + v + s;
          if (!curves.count(id) || !targets.count(sid)) continue;
          ++finished;
          const auto mine = time_to(curves[id], targets[sid]);
          const auto base = time_to(curves[sid], targets[sid]);
          nlohmann::json js = {{"reached", mine.has_value()}};
          if (mine) {
            ++reached;
            js["steps"] = mine->first;
            js["seconds"] = mine->second;
          }
          if (mine && base && mine->second > 0) {
            js["speedup"] = base->second / mine->second;
            ratios.push_back(base->second / mine->second);
          }
          seeds[std::to_string(seed)] = js;
        }
        nlohmann::json cell = {{"finished", finished}, {"reached", reached}, {"seeds", seeds}};
        if (finished == 0) {
          md << "not run | ";
        } else if (ratios.empty()) {
          md << "not reached (" << reached << "/" << finished << ") | ";
        } else {
          const double mean = std::accumulate(ratios.begin(), ratios.end(), 0.0) /
                              static_cast<double>(ratios.size());
          const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
          char b[96];
          if (ratios.size() > 1)
            std::snprintf(b, sizeof b, "%.2fx (%.2f–%.2f)", mean, *lo, *hi);
          else
            std::snprintf(b, sizeof b, "%.2fx", mean);
          md << b;
          if (reached < finished) md << " (" << reached << "/" << finished << " reached)";
          md << " | ";
          cell["speedup_mean"] = mean;
          bars[v].label = v;
          bars[v].x.push_back(mbps_of(bw));
          bars[v].y.push_back(mean);
        }
        row[v] = cell;
      }
      const auto paper = suite_detail::kPaperMercury.find(bw);
      md << (paper == suite_detail::kPaperMercury.end() ? "–" : paper->second) << " |\n";
      fig[task][bw] = row;
    }
    md << "\nThe paper (its Fig. 11, its tasks and testbed): TicTac 1.01–1.21x, AdaComm "
          "1.21–1.88x, Mercury 1.85–4.08x over sync SGD (Mercury per bandwidth, over its six "
          "tasks: 10 Mbps 1.85–4.08, 50 Mbps 1.65–3.98, 100 Mbps 1.62–3.93, 200 Mbps "
          "1.58–3.90). AdaComm here is each tau0 of the grid; mercury is the paper's algorithm "
          "(sync SGD with importance sampling and BACC); mercury-local-t20 is ours: the same "
          "sampler on AdaComm's local SGD, scoring during each averaging.\n\n";
    SvgChart chart("Fig. 11 (" + task + "): speedup over sync SGD", "bandwidth (Mbps)",
                   "speedup (x)");
    for (const auto& v : variants)
      if (bars.count(v)) chart.add(bars[v]);
    if (!chart.empty()) {
      const std::string svg = "fig11_" + task + ".svg";
      io::write_file_atomically((fs::path(o.out) / svg).string(), chart.render(true));
      md << "![Fig. 11, " << task << "](" << svg << ")\n\n";
    }
  }
  md << "## Not in the suite yet\n\nFigs. 12–18, 3 and 6, and the speech and text tasks "
        "(issue 15).\n";
  nlohmann::json summary = {{"settings", suite_settings(o)}, {"fig11", fig}};
  io::write_file_atomically((fs::path(o.out) / "index.md").string(), md.str());
  io::write_file_atomically((fs::path(o.out) / "summary.json").string(), summary.dump(2) + "\n");
  return summary;
}

// Runs (or resumes) the suite; returns the process exit code.
inline int run_suite(SuiteOptions o, const std::string& command, std::ostream& log) {
  namespace fs = std::filesystem;
  o = resolve_suite_options(std::move(o));
  const auto plan = plan_suite(o);
  double expected = 0;
  for (const auto& p : plan) expected += p.est_s;
  log << "suite paper: " << plan.size() << " runs (" << (o.quick ? "quick" : "full")
      << "), expected " << suite_detail::hms(expected) << " on 2 cores; output " << o.out << "\n";
  if (o.dry_run) {
    for (const auto& p : plan) {
      log << "  " << p.id << " (~" << suite_detail::hms(p.est_s) << "): mercury";
      for (const auto& a : p.args) log << ' ' << a;
      log << (p.baseline.empty() ? "" : " --target-acc <plateau of " + p.baseline + " - 0.005>")
          << "\n";
    }
    return 0;
  }
  fs::create_directories(o.out);
  const std::string settings_path = (fs::path(o.out) / "suite.json").string();
  const nlohmann::json settings = suite_settings(o);
  if (fs::exists(settings_path)) {
    std::ifstream in(settings_path);
    const auto old = nlohmann::json::parse(in, nullptr, false);
    if (old.is_discarded() || old != settings)
      throw std::invalid_argument("suite: " + o.out + " holds a suite run with other settings (" +
                                  settings_path + ": " +
                                  (old.is_discarded() ? std::string("unreadable") : old.dump()) +
                                  "); resume it with those settings, or use another --out");
  } else {
    io::write_file_atomically(settings_path, settings.dump(2) + "\n");
  }
  const auto t0 = std::chrono::steady_clock::now();
  double spent_est = 0, spent_real = 0, left = expected;
  std::size_t k = 0;
  for (const auto& p : plan) {
    ++k;
    const std::string metrics = point_path(o, p.id, ".jsonl");
    left -= p.est_s;
    if (metrics_finished(metrics)) continue;
    fs::create_directories(fs::path(metrics).parent_path());
    const std::string stem = point_path(o, p.id, "");
    for (const auto& e : fs::directory_iterator(fs::path(metrics).parent_path())) {
      const std::string name = e.path().string();  // id.jsonl, id.rankR.jsonl, id.log
      if (name.rfind(stem + ".", 0) == 0) fs::remove(e.path());
    }
    std::vector<std::string> argv{o.bin};
    argv.insert(argv.end(), p.args.begin(), p.args.end());
    argv.insert(argv.end(), {"--metrics", metrics});
    if (!p.baseline.empty()) {
      const std::string base = point_path(o, p.baseline, ".jsonl");
      const auto target = group_target(read_curve(base));
      if (!target)
        throw ToolError("suite: " + p.baseline + " finished without an evaluation (" + base +
                        "): no target for " + p.id);
      char t[32];
      std::snprintf(t, sizeof t, "%.4f", *target);
      argv.insert(argv.end(), {"--target-acc", t});
    }
    const std::string log_path = point_path(o, p.id, ".log");
    Fd out(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out) throw ToolError("suite: cannot write " + log_path + ": " + std::strerror(errno));
    SpawnOptions so;
    so.stdout_fd = out.get();
    so.stderr_fd = out.get();
    so.die_with_parent = true;
    const auto p0 = std::chrono::steady_clock::now();
    const ExitStatus st = wait_for(spawn(argv, so));
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
    if (!st.ok() || !metrics_finished(metrics))
      throw ToolError("suite: " + p.id + " " +
                      (st.ok() ? "ended without a done event" : st.describe()) +
                      "; its output: " + log_path + " (run the suite again to retry it)");
    spent_est += p.est_s;
    spent_real += took;
    const double scale = spent_est > 0 ? spent_real / spent_est : 1.0;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const RunCurve c = read_curve(metrics);
    char line[256];
    std::snprintf(line, sizeof line,
                  "suite paper: [%zu/%zu] %s: %lld steps in %s; %s elapsed, about %s left\n", k,
                  plan.size(), p.id.c_str(),
                  static_cast<long long>(c.steps.empty() ? 0 : c.steps.back()),
                  suite_detail::hms(took).c_str(), suite_detail::hms(elapsed).c_str(),
                  suite_detail::hms(left * scale).c_str());
    log << line << std::flush;
    write_suite_report(o, plan, command);
  }
  write_suite_report(o, plan, command);
  log << "suite paper: done; report " << (fs::path(o.out) / "index.md").string() << "\n";
  return 0;
}

}  // namespace mercury::tools
