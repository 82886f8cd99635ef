// tools/suite.hpp — `mercury suite paper`: the paper's evaluation as one resumable command.
//
// Contract
// - plan_suite(options) lists the suite's points: one `mercury sim` run each, with an id
//   (image/10mbps/sync-s1) that is also its path under OUT/points/. A group is a task, a link
//   (a constant rate such as 10mbps, or 10mbps-fluct: a trace fluctuating +-10% around it), a
//   training set (the task's, or a subset: image-n8000) and a seed. Its sync SGD point comes
//   first and trains for the whole budget; its plateau (the mean of its last three evaluations)
//   minus 0.5 point is the group's target (METHOD.md), and every other point of the group stops
//   at that target (--target-acc). A point several figures need (Mercury at 10 Mbps is in Figs.
//   11, 12, 15) runs once.
// - run_suite(options, log) runs the plan. A point is finished when its metrics file holds a
//   "done" event: it is never recomputed. Anything else of an unfinished point (a run that was
//   interrupted or failed) is deleted and the point restarts from scratch. Each point runs as a
//   child process (the suite's own binary: `mercury sim ...`, its output in OUT/points/ID.log)
//   that dies with the suite. A progress line per point gives the elapsed time and the time
//   left, from per-step cost estimates scaled by what the finished points actually took.
//   OUT/suite.json records the settings; a directory holding another suite's settings is
//   refused, so a resumed suite never mixes budgets. Fluctuating links read OUT/traces/*.csv,
//   written from net::generate_trace (a seed's trace is the same file every time).
// - write_suite_report(options) (after every run, also a partial one) writes OUT/index.md (one
//   section per figure: our table with the paper's numbers beside it, the plot, seeds and
//   spread), SVG plots and OUT/summary.json. A ratio (a speedup, or an iteration ratio) is taken
//   per seed on the seeds where both runs reached the target; a run that never reached it is
//   shown as "not reached", never as a number.
// - Tasks (task_spec): image (Fashion-MNIST, the reference CNN), image-resnet8, speech (DS-CNN
//   on log-mel keywords), text (TextCNN) and text-lstm (BiLSTM with attention); the data the
//   speech and text tasks need is made first (plan_data: `mercury data ...` into OUT/data/).
//   The quick mode runs image, speech and text; the full mode all five.
// - Figures: 11 (speedup over sync SGD of TicTac, AdaComm, Mercury and Mercury on local SGD per
//   bandwidth) and 12 (accuracy against time and communication rounds) on every task; on the
//   image task also 13 (group-wise against all-inclusive IS), 14 (resharding, ResNet-8 on
//   label-sorted shards), 15 (BACC against sequential), 16 (adaptive against fixed groups on a
//   fluctuating link), 17 (4-12 devices on a shared medium), 18 (Dirichlet non-IID), 3 and 6
//   (the importance probe) and, with --real-clock, 2 devices as real processes beside the
//   simulated ones.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
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

#include "mercury/base/clock.hpp"
#include "mercury/io/atomic_file.hpp"
#include "models/registry.hpp"
#include "net/file_kind.hpp"
#include "net/shaper.hpp"
#include "tools/process.hpp"
#include "tools/report.hpp"

namespace mercury::tools {

// The paper's figures the suite reproduces (all of them by default).
inline const std::vector<std::string> kSuiteFigures = {"11", "12", "13", "14", "15",
                                                       "16", "17", "18", "3",  "6"};

// The tasks: a data set and a model each (suite_detail::task_spec). The quick mode runs one per
// modality (image, speech, text), the full mode all of them.
inline const std::vector<std::string> kSuiteTasks = {"image", "image-resnet8", "speech", "text",
                                                     "text-lstm"};

struct SuiteOptions {
  std::string out;                 // the suite's directory
  bool quick = false;              // fewer bandwidths and seeds, a shorter budget
  std::vector<std::string> tasks;  // empty: the mode's (quick: one per modality; all)
  std::vector<std::string> figures = kSuiteFigures;
  std::vector<int> seeds;                   // empty: the mode's (quick 1; full 1 2 3)
  std::vector<std::string> bandwidths;      // empty: the mode's (quick 10/100; full 10..200)
  int64_t budget = 0;                       // sync's steps; 0: the mode's (quick 200, full 1500)
  int64_t eval_every = 0;                   // steps between evaluations; 0: quick 25, full 50
  int64_t train_limit = 0, test_limit = 0;  // smaller data (smoke runs); 0: all
  std::string data_dir;                     // Fashion-MNIST's directory (empty: the default)
  std::string speech_dir, text_dir;  // the speech/text tasks' data (empty: made in OUT/data/)
  std::string model;                 // every task's model instead of its own (mlp: a smoke run)
  std::vector<std::string> self;     // the command that runs this mercury binary (see main)
  bool dry_run = false;              // print the plan and its expected time only
  bool real_clock = false;           // also 2 devices as real processes beside the simulated ones
};

struct SuitePoint {
  std::string id;     // GROUP/VARIANT-sSEED (image/10mbps/sync-s1), also its path under OUT/points
  std::string group;  // DATA/LINK: image/10mbps, image/10mbps-fluct, image-n8000/10mbps
  std::string task, link, variant;  // link: 10mbps, or 10mbps-fluct (+-10% around it)
  int seed = 0;
  int64_t train_limit = 0;        // the group's training subset (0: the task's whole set)
  std::string trace;              // the trace file a fluctuating link follows ("" otherwise)
  std::vector<std::string> args;  // after the binary: sim ... -- <train flags>
  std::string baseline;           // the id whose plateau sets the target ("" for sync itself)
  double est_s = 0;               // expected real seconds on a 2-core machine
};

namespace suite_detail {

// A task's data, model, budget and cost. The image tasks read Fashion-MNIST (its Debian package,
// or --data-dir); speech reads spoken keywords in the Speech Commands layout and text
// AG-News-format CSV, which the suite makes under OUT/data/ with `mercury data speech-synth`
// and `mercury data debian-text` unless --speech-dir / --text-dir name a directory (the paper's
// Speech Commands v0.02 and AG News work there too). The image task runs every figure; the
// others run Figs. 11 and 12, on a budget of 3/10 of the image task's steps (a step of DS-CNN
// costs ~12 of the reference CNN's, ResNet-8's ~4, TextCNN's with scoring ~5).
struct TaskSpec {
  std::string model;
  std::vector<std::string> data;  // --data NAME [--data-dir DIR] [feature flags]
  std::string dataset;            // what the suite makes under OUT/data ("": nothing)
  int64_t budget = 0, eval_every = 0;
  std::string lr = "0.002";          // Adam's
  double sync_s = 0, mercury_s = 0;  // real s per step, 4 devices on 2 cores (0: the variant's)
  int64_t samples = 60000;           // training samples (the estimates of all-is)
  std::string describe;              // for the report
  std::string paper;                 // the paper's tasks it stands for
  std::map<std::string, std::string> paper_mercury;  // the paper's Mercury speedup per bandwidth
};

inline std::string dataset_dir(const SuiteOptions& o, const std::string& dataset) {
  const std::string& given = dataset == "speech" ? o.speech_dir : o.text_dir;
  return given.empty() ? (std::filesystem::path(o.out) / "data" / dataset).string() : given;
}

inline TaskSpec task_spec(const SuiteOptions& o, const std::string& task) {
  TaskSpec t;
  const auto image_data = [&] {
    std::vector<std::string> d = {"--data", "fashion-mnist"};
    if (!o.data_dir.empty()) d.insert(d.end(), {"--data-dir", o.data_dir});
    return d;
  };
  // The image tasks: CIFAR-10/100, SVHN (ResNets) and AID (MobileNetV2) in the paper.
  const std::map<std::string, std::string> image_paper = {{"10mbps", "2.21–4.08x"},
                                                          {"50mbps", "2.16–3.98x"},
                                                          {"100mbps", "2.13–3.93x"},
                                                          {"200mbps", "2.06–3.90x"}};
  const int64_t share = std::max<int64_t>(1, o.budget * 3 / 10);
  const int64_t share_eval = std::clamp<int64_t>((o.eval_every * 3 + 5) / 10, 1, share);
  if (task == "image" || task == "image-resnet8") {
    t.model = task == "image" ? "cnn" : "resnet8";
    t.data = image_data();
    t.budget = task == "image" ? o.budget : share;
    t.eval_every = task == "image" ? o.eval_every : share_eval;
    if (task == "image-resnet8") t.sync_s = 0.5, t.mercury_s = 0.65;
    t.describe = "Fashion-MNIST";
    t.paper = "CIFAR-10, CIFAR-100, SVHN (ResNets), AID (MobileNetV2)";
    t.paper_mercury = image_paper;
  } else if (task == "speech") {
    t.model = "ds_cnn";
    t.dataset = "speech";
    t.data = {"--data", "speech-commands", "--data-dir", dataset_dir(o, "speech"), "--log-mel",
              "true"};
    t.budget = share, t.eval_every = share_eval;
    // The paper's rate: at 0.002 DS-CNN was at 21% after 60 steps of 4 x 64, at 0.005 at 54%.
    t.lr = "0.004";
    t.sync_s = 1.8, t.mercury_s = 2.2;  // 4 x 0.65 s of training on 2 cores, and evaluations
    t.samples = 4216;
    t.describe = o.speech_dir.empty() ? "speech-synth (espeak-ng keywords), 40 log-mel bins"
                                      : o.speech_dir + " (Speech Commands layout), 40 log-mel bins";
    t.paper = "Speech Commands v0.02 (VGG-13 on 161x101 log-spectrograms)";
    t.paper_mercury = {
        {"10mbps", "2.74x"}, {"50mbps", "2.65x"}, {"100mbps", "2.62x"}, {"200mbps", "2.55x"}};
  } else if (task == "text" || task == "text-lstm") {
    t.model = task == "text" ? "textcnn" : "lstm_attention";
    t.dataset = "text";
    const std::string dir = dataset_dir(o, "text");
    // debian-text has a classes.txt; a directory without one is AG News (4 classes).
    const bool agnews =
        !o.text_dir.empty() && !std::filesystem::exists(std::filesystem::path(dir) / "classes.txt");
    t.data = {"--data", agnews ? "ag-news" : "debian-text", "--data-dir", dir};
    t.budget = share, t.eval_every = share_eval;
    t.sync_s = task == "text" ? 0.9 : 1.4, t.mercury_s = task == "text" ? 2.6 : 3.6;
    t.samples = 17850;
    t.describe = o.text_dir.empty() ? "debian-text (package descriptions by section)"
                                    : o.text_dir + (agnews ? " (AG News)" : " (debian-text)");
    t.paper = "AG News (2-layer BiLSTM with attention)";
    t.paper_mercury = {
        {"10mbps", "1.85x"}, {"50mbps", "1.65x"}, {"100mbps", "1.62x"}, {"200mbps", "1.58x"}};
  } else {
    throw std::logic_error("suite: no task '" + task + "'");
  }
  if (!o.model.empty()) t.model = o.model;
  return t;
}

// The figures a task runs: the image task every one, the others Figs. 11 and 12 (and the
// real-clock check only on the image task).
inline bool task_runs(const std::string& task, const std::string& fig) {
  return task == "image" || fig == "11" || fig == "12";
}

// Mercury's sampler settings, as in bench/suites/sim_baselines.sh (the adaptive group's
// default ceiling, 10 x the local batch, applies).
inline std::vector<std::string> mercury_flags() {
  return {"--sampler", "mercury",    "--groups-per-batch", "4",
          "--draw",    "systematic", "--weight-power",     "0.5",
          "--beta",    "0.1"};
}

inline std::vector<std::string> operator+(std::vector<std::string> a,
                                          const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A variant: its train flags and real seconds per step of 4 simulated devices on 2 cores, the
// run's start and evaluations included (the quick suite of session 15 on an idle machine; the
// runner rescales them as points finish). all-is scores every sample of its partition every
// step: its cost grows with the training set.
struct Variant {
  std::string name;
  std::vector<std::string> flags;
  double step_s;
};

// The importance probe's period (Figs. 3 and 6): a base every P steps, P = budget / 3 up to 100,
// and the lags 1, 10 and 100 below it.
inline int64_t probe_every(int64_t budget) {
  return std::clamp<int64_t>(budget / 3, 2, 100);
}

inline std::vector<std::string> adacomm_taus(bool quick) {
  return quick ? std::vector<std::string>{"10", "20"}
               : std::vector<std::string>{"2", "5", "10", "20"};
}

inline Variant variant(const std::string& name, int64_t train_samples, int64_t budget) {
  const auto uniform = std::vector<std::string>{"--sampler", "uniform"};
  if (name == "sync") return {name, uniform, 0.09};
  if (name == "tictac")
    return {name, uniform + std::vector<std::string>{"--algorithm", "tictac"}, 0.09};
  if (name.rfind("adacomm-t", 0) == 0)
    return {name,
            uniform + std::vector<std::string>{"--algorithm", "adacomm", "--adacomm-tau0",
                                               name.substr(9)},
            0.085};
  if (name == "mercury") return {name, mercury_flags(), 0.19};
  if (name == "mercury-local-t20")
    return {name,
            mercury_flags() +
                std::vector<std::string>{"--algorithm", "adacomm", "--adacomm-tau0", "20"},
            0.11};  // an averaging's window scores up to tau x 640 samples
  if (name == "mercury-seq")
    return {name, mercury_flags() + std::vector<std::string>{"--pipeline", "sequential"}, 0.23};
  if (name == "mercury-fixed640")
    return {name,
            mercury_flags() + std::vector<std::string>{"--pipeline", "bacc", "--group-size", "640"},
            0.2};
  if (name.rfind("mercury-reshard-", 0) == 0) {  // mercury-reshard-off | -KIND-BUDGET
    const std::string rest = name.substr(16);
    // Fig. 14 runs ResNet-8: ~0.65 s a step on 4 devices.
    if (rest == "off")
      return {name, mercury_flags() + std::vector<std::string>{"--reshard", "off"}, 0.65};
    const auto dash = rest.find('-');
    return {name,
            mercury_flags() + std::vector<std::string>{"--reshard", rest.substr(0, dash),
                                                       "--reshard-budget", rest.substr(dash + 1)},
            0.65};
  }
  if (name == "probe")  // one device (0.05 s a step), uniform sampling, the importance probe
    return {
        name,
        {"--sampler", "uniform", "--importance-stats-every", std::to_string(probe_every(budget))},
        0.28};
  if (name == "all-is")
    return {name,
            {"--sampler", "all-is", "--draw", "systematic", "--weight-power", "0.5"},
            0.12 + static_cast<double>(train_samples) / 17500.0};
  throw std::logic_error("suite: no variant '" + name + "'");
}

// The tasks other than image run Fig. 11 at fewer points: their steps cost 4-12 of the image
// task's (at every bandwidth the full mode's Fig. 11 would take ~30 h for them alone). They run
// at the first bandwidth (the image task shows the trend over bandwidths); quick: Mercury and
// Mercury on local SGD against sync SGD (speech without the latter: DS-CNN's 60-step runs cost
// ~2 min each, and the quick suite must fit 30 minutes); full: with TicTac and AdaComm (tau0 20).
inline std::vector<std::string> fig11_bandwidths(const SuiteOptions& o, const std::string& task) {
  return task == "image" ? o.bandwidths : std::vector<std::string>{o.bandwidths.front()};
}

// Figs. 15 and 16: the first bandwidth in the quick mode, the first and the last in the full one
// (the slowest and the fastest link).
inline std::vector<std::string> end_bandwidths(const SuiteOptions& o) {
  const auto& b = o.bandwidths;
  if (o.quick || b.size() == 1) return {b.front()};
  return {b.front(), b.back()};
}

inline std::vector<std::string> fig11_variants(const SuiteOptions& o, const std::string& task) {
  if (task != "image" && o.quick)
    return task == "speech" ? std::vector<std::string>{"sync", "mercury"}
                            : std::vector<std::string>{"sync", "mercury", "mercury-local-t20"};
  if (task != "image") return {"sync", "tictac", "adacomm-t20", "mercury", "mercury-local-t20"};
  std::vector<std::string> v = {"sync", "tictac"};
  for (const auto& tau : adacomm_taus(o.quick)) v.push_back("adacomm-t" + tau);
  v.push_back("mercury");
  v.push_back("mercury-local-t20");
  return v;
}

// Fig. 13's training subset: all-is scores every sample every step, so the whole set (15,000
// per device) would cost ~8 s of the 2 cores per step.
inline int64_t fig13_subset(const SuiteOptions& o) {
  const int64_t n = o.quick ? 8000 : 20000;
  return o.train_limit ? std::min(n, o.train_limit) : n;
}

// The groups a figure needs and the variants run in each. A group is a data set (the task's,
// a subset, a non-IID partition), a link and a number of devices; with to_target its sync SGD
// run sets the target the others stop at, without it every run trains the whole budget.
struct Need {
  std::string data;  // image, image-n8000 (the first 8000 samples), image-dir0.5 (Dirichlet),
                     // image-resnet8-shards (another model on label-sorted shards)
  std::string link;  // 10mbps, 10mbps-fluct (a +-10% trace), 100mbps-shared (one medium), local
  int devices = 4;   // local: one device, `mercury train`
  int64_t subset = 0;
  std::vector<std::string> data_flags;  // e.g. --partition dirichlet --dirichlet-alpha 0.5
  bool to_target = true;
  std::vector<std::string> variants;
  bool real = false;   // real processes (`mercury launch`, real links and clocks), not simulated
  std::string model;   // the group's model ("": its task's)
  std::string task;    // set by plan_suite
  int64_t budget = 0;  // steps (0: the task's)
  std::string group() const {
    return data + "/" + link +
           (devices == 4 && !real || link == "local" ? "" : "/n" + std::to_string(devices)) +
           (real ? "-real" : "");
  }
};

// Fig. 14: resharding pays where ranks keep state the split skews (batch norm: session 7's
// ResNet-8 on label-sorted shards gained 33 points; the reference CNN, without batch norm,
// nothing), so the figure runs ResNet-8 on two label-sorted shards per device (2-3 classes
// each) unless --model names a model other than the default.
inline std::string fig14_model(const SuiteOptions& o) {
  return o.model.empty() ? "resnet8" : o.model;
}
// Its budget: a ResNet-8 step costs ~7 of the reference CNN's, so half the budget in the quick
// mode (100 steps: its three runs at 200 took 6.4 of the quick suite's 30 minutes) and 3/10 in
// the full one, as the image-resnet8 task (1,500 steps x 7 runs x 3 seeds would take ~6 h).
inline int64_t fig14_budget(const SuiteOptions& o) {
  return std::max<int64_t>(1, o.quick ? o.budget / 2 : o.budget * 3 / 10);
}
inline std::string fig14_data(const SuiteOptions& o, const std::string& task) {
  return task + "-" + fig14_model(o) + "-shards";
}
inline std::vector<std::string> fig13_variants(bool quick) {  // the full mode adds BACC
  return quick ? std::vector<std::string>{"mercury-seq", "all-is"}
               : std::vector<std::string>{"mercury-seq", "all-is", "mercury"};
}
// Fig. 17's device counts (quick: 4 and 8; full: the paper's 4, 8, 12), Fig. 18's Dirichlet
// concentrations (quick: the most skewed of the paper's), Fig. 14's resharding budgets.
inline std::vector<int> fig17_devices(bool quick) {
  return quick ? std::vector<int>{4, 8} : std::vector<int>{4, 8, 12};
}
inline std::vector<std::string> fig18_alphas(bool quick) {
  return quick ? std::vector<std::string>{"0.5"} : std::vector<std::string>{"10", "1", "0.5"};
}
inline std::vector<std::string> fig14_variants(bool quick) {
  std::vector<std::string> v = {"mercury-reshard-off"};
  for (const char* kind : {"random", "importance"})
    for (const char* b :
         quick ? std::vector<const char*>{"0.5"} : std::vector<const char*>{"0.25", "0.5", "1"})
      v.push_back(std::string("mercury-reshard-") + kind + "-" + b);
  return v;
}

inline std::vector<Need> figure_needs(const std::string& fig, const std::string& task,
                                      const SuiteOptions& o) {
  const auto& bws = o.bandwidths;
  const std::vector<std::string> some = end_bandwidths(o);  // Figs. 15 and 16
  const auto dirichlet = [](const std::string& alpha) {
    return std::vector<std::string>{"--partition", "dirichlet", "--dirichlet-alpha", alpha};
  };
  std::vector<Need> n;
  if (fig == "11")
    for (const auto& bw : fig11_bandwidths(o, task))
      n.push_back({task, bw, 4, 0, {}, true, fig11_variants(o, task)});
  if (fig == "12") n.push_back({task, bws.front(), 4, 0, {}, true, fig11_variants(o, task)});
  if (fig == "13") {
    const int64_t sub = fig13_subset(o);
    n.push_back({task + "-n" + std::to_string(sub),
                 bws.front(),
                 4,
                 sub,
                 {},
                 true,
                 std::vector<std::string>{"sync"} + fig13_variants(o.quick)});
  }
  if (fig == "14") {
    n.push_back({fig14_data(o, task), bws.front(), 4, 0,
                 std::vector<std::string>{"--partition", "shards", "--shards-per-device", "2"},
                 false, fig14_variants(o.quick), false, fig14_model(o)});
    n.back().budget = fig14_budget(o);
  }
  if (fig == "15")
    for (const auto& bw : some)
      n.push_back({task, bw, 4, 0, {}, true, {"sync", "mercury", "mercury-seq"}});
  if (fig == "16")
    for (const auto& bw : some)
      n.push_back({task, bw + "-fluct", 4, 0, {}, true, {"sync", "mercury", "mercury-fixed640"}});
  if (fig == "17")
    for (int d : fig17_devices(o.quick))
      n.push_back({task,
                   "100mbps-shared",
                   d,
                   0,
                   {},
                   true,
                   o.quick ? std::vector<std::string>{"sync", "mercury"}
                           : std::vector<std::string>{"sync", "mercury", "mercury-local-t20"}});
  if (fig == "18")
    for (const auto& alpha : fig18_alphas(o.quick))
      n.push_back(
          {task + "-dir" + alpha, bws.front(), 12, 0, dirichlet(alpha), true, {"sync", "mercury"}});
  // --real-clock: 2 devices at the first bandwidth, simulated and as real processes (2 ranks on
  // 2 cores: one core each, as the simulator assumes).
  if (fig == "real")
    for (const bool real : {false, true})
      n.push_back({task, bws.front(), 2, 0, {}, true, {"sync", "mercury"}, real});
  if (fig == "3" || fig == "6") n.push_back({task, "local", 1, 0, {}, false, {"probe"}});
  return n;
}

inline bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

inline std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// "10mbps" or "10mbps-fluct" -> 10; anything else is refused by the caller's check.
inline double mbps_of(const std::string& link) {
  return std::stod(link.substr(0, link.find("mbps")));
}

inline bool fluctuating(const std::string& link) {
  return link.size() > 6 && link.compare(link.size() - 6, 6, "-fluct") == 0;
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
    if (!contains(kSuiteFigures, f))
      throw std::invalid_argument("suite: figure '" + f + "': expected one of " +
                                  join(kSuiteFigures));
  if (o.tasks.empty())
    o.tasks = o.quick ? std::vector<std::string>{"image", "speech", "text"} : kSuiteTasks;
  for (const auto& t : o.tasks)
    if (!contains(kSuiteTasks, t))
      throw std::invalid_argument("suite: task '" + t + "': expected one of " + join(kSuiteTasks));
  for (const auto& [flag, dir] :
       {std::pair{"--speech-dir", &o.speech_dir}, std::pair{"--text-dir", &o.text_dir}})
    if (!dir->empty())
      if (const std::string kind = net::file_kind(*dir); kind != "a directory")
        throw std::invalid_argument(std::string("suite: ") + flag + " '" + *dir +
                                    "': expected a directory, found " +
                                    (kind == "missing" ? "nothing there" : kind));
  if (!o.model.empty() && !contains(models::model_names(), o.model))
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
  for (std::size_t i = 0; i < o.seeds.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (o.seeds[i] == o.seeds[j])
        throw std::invalid_argument("suite: --seeds: expected distinct seeds, found " +
                                    std::to_string(o.seeds[i]) + " twice");
  for (std::size_t i = 0; i < o.bandwidths.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (o.bandwidths[i] == o.bandwidths[j])
        throw std::invalid_argument("suite: --bandwidths: expected distinct rates, found " +
                                    o.bandwidths[i] + " twice");
  for (std::size_t i = 0; i < o.tasks.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (o.tasks[i] == o.tasks[j])
        throw std::invalid_argument("suite: --tasks: expected distinct tasks, found " + o.tasks[i] +
                                    " twice");
  for (std::size_t i = 0; i < o.figures.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (o.figures[i] == o.figures[j])
        throw std::invalid_argument("suite: --figures: expected distinct figures, found " +
                                    o.figures[i] + " twice");
  if (o.budget == 0) o.budget = o.quick ? 200 : 1500;
  if (o.budget < 1 || o.budget > 1000000)
    throw std::invalid_argument("suite: --budget: expected 1..1000000 steps, found " +
                                std::to_string(o.budget));
  if (o.eval_every == 0) o.eval_every = std::min<int64_t>(o.quick ? 25 : 50, o.budget);
  if (o.eval_every < 1 || o.eval_every > o.budget)
    throw std::invalid_argument("suite: --eval-every: expected 1..budget (" +
                                std::to_string(o.budget) + "), found " +
                                std::to_string(o.eval_every));
  if (o.train_limit < 0 || o.test_limit < 0)
    throw std::invalid_argument("suite: --train-limit/--test-limit: expected >= 0");
  return o;
}

inline std::string trace_path(const SuiteOptions& o, const std::string& link, int seed) {
  return (std::filesystem::path(o.out) / "traces" / (link + "-s" + std::to_string(seed) + ".csv"))
      .string();
}

// The fluctuating link's trace: +-10% (mean absolute deviation) around the rate, a point every
// 0.5 s for 600 s, looped; seeded by the run's seed (the same file every time).
inline net::BandwidthTrace suite_trace(const std::string& link, int seed) {
  return net::generate_trace(suite_detail::mbps_of(link), 0.10, 600, 0.5,
                             static_cast<uint64_t>(seed));
}

// The points, in run order: per seed, the groups in the order the figures first need them, each
// group's sync point before the points it sets the target of; a point is listed once.
inline std::vector<SuitePoint> plan_suite(const SuiteOptions& o) {
  using suite_detail::Need;
  using suite_detail::operator+;
  std::vector<Need> groups;  // merged by group, variants in first-needed order
  for (const auto& task : o.tasks)
    for (const auto& fig : o.real_clock ? o.figures + std::vector<std::string>{"real"} : o.figures)
      for (auto need : suite_detail::task_runs(task, fig) ? suite_detail::figure_needs(fig, task, o)
                                                          : std::vector<suite_detail::Need>{}) {
        need.task = task;
        auto g = std::find_if(groups.begin(), groups.end(),
                              [&](const Need& x) { return x.group() == need.group(); });
        // Two figures sharing a group must mean the same runs: a group's name is its settings.
        if (g != groups.end() &&
            (g->data_flags != need.data_flags || g->subset != need.subset ||
             g->model != need.model || g->to_target != need.to_target || g->budget != need.budget))
          throw std::logic_error("suite: group " + need.group() +
                                 " is asked for with two different settings");
        if (g == groups.end()) {  // a new group: its sync run (if it has a target) first
          Need first = need;
          first.variants =
              need.to_target ? std::vector<std::string>{"sync"} : std::vector<std::string>{};
          groups.push_back(std::move(first));
          g = groups.end() - 1;
        }
        for (const auto& v : need.variants)
          if (!suite_detail::contains(g->variants, v)) g->variants.push_back(v);
      }
  std::vector<SuitePoint> plan;
  for (int seed : o.seeds) {
    for (const auto& g : groups) {
      // The importance probe (Figs. 3 and 6) is reported for the first seed: it runs once.
      if (g.link == "local" && seed != o.seeds.front()) continue;
      const std::string group = g.group();
      const suite_detail::TaskSpec task = suite_detail::task_spec(o, g.task);
      const int64_t limit = g.subset ? g.subset : o.train_limit;
      const int64_t budget = g.budget ? g.budget : task.budget;
      const int64_t eval_every = std::min(task.eval_every, budget);
      const int64_t samples = limit ? std::min(limit, task.samples) : task.samples;
      for (const auto& name : g.variants) {
        const auto v = suite_detail::variant(name, samples, budget);
        SuitePoint p;
        p.group = group;
        p.task = g.task;
        p.link = g.link;
        p.variant = name;
        p.seed = seed;
        p.train_limit = limit;
        p.id = group + "/" + name + "-s" + std::to_string(seed);
        p.baseline = name == "sync" || !g.to_target ? "" : group + "/sync-s" + std::to_string(seed);
        if (g.link == "local") {
          p.args = {"train"};
        } else if (g.real) {
          p.args = {"launch", "-n", std::to_string(g.devices), "--bandwidth", g.link, "--"};
          p.args.insert(p.args.end(), o.self.begin(), o.self.end());
          p.args.push_back("train");
        } else {
          p.args = {"sim", "-n", std::to_string(g.devices)};
          if (suite_detail::fluctuating(g.link)) {
            p.trace = trace_path(o, g.link, seed);
            p.args.insert(p.args.end(),
                          {"--bandwidth-trace", p.trace, "--bandwidth-trace-end", "loop"});
          } else if (g.link.size() > 7 && g.link.compare(g.link.size() - 7, 7, "-shared") == 0) {
            p.args.insert(p.args.end(),
                          {"--bandwidth", g.link.substr(0, g.link.size() - 7), "--medium"});
          } else {
            p.args.insert(p.args.end(), {"--bandwidth", g.link});
          }
          p.args.push_back("--");
        }
        p.args.insert(p.args.end(), {"--model", g.model.empty() ? task.model : g.model});
        p.args.insert(p.args.end(), task.data.begin(), task.data.end());
        p.args.insert(p.args.end(),
                      {"--batch", std::to_string(64 * g.devices), "--lr", task.lr, "--optimizer",
                       "adam", "--threads", "1", "--epochs", "1000", "--max-steps",
                       std::to_string(budget), "--eval-every", std::to_string(eval_every),
                       "--progress", "false", "--seed", std::to_string(seed)});
        if (limit) p.args.insert(p.args.end(), {"--train-limit", std::to_string(limit)});
        if (o.test_limit)
          p.args.insert(p.args.end(), {"--test-limit", std::to_string(o.test_limit)});
        p.args.insert(p.args.end(), g.data_flags.begin(), g.data_flags.end());
        p.args.insert(p.args.end(), v.flags.begin(), v.flags.end());
        // Per step: the variant's cost on 4 devices (the task's own, scoring or not, for the
        // tasks other than image), in proportion to the devices. Real processes take the link's
        // time: 2 ranks move ~0.75 MB each way per step.
        const bool scores = name.rfind("mercury", 0) == 0 || name == "all-is";
        const double own = scores ? task.mercury_s : task.sync_s;
        const double per4 = own > 0 ? own : v.step_s;
        const double step_s = g.real ? 0.06 + 6.0 / suite_detail::mbps_of(g.link)
                                     : per4 * static_cast<double>(g.devices) / 4.0;
        // A run with a target stops early: ~60% of the budget in the full mode (session 12's
        // runs), ~80% in the quick one (its targets are early ones).
        p.est_s = step_s * static_cast<double>(budget) *
                  (p.baseline.empty() ? 1.0
                   : o.quick          ? 0.8
                                      : 0.6);
        plan.push_back(std::move(p));
      }
    }
  }
  return plan;
}

// One run's evaluations in step order (eval, epoch and target_reached events; one per step).
struct RunCurve {
  std::vector<int64_t> steps;
  std::vector<double> acc, wall_s;
  std::vector<int64_t> rounds;  // communication rounds at each evaluation (-1: not logged)
  bool done = false;
  // Resharding: the samples rank 0 sent over its partition's size (-1: not logged).
  double moved = -1;
  // BACC: rank 0's importance group, samples scored per window, mean over its windows (-1: no
  // window logged).
  double group_mean = -1;
};

inline bool has_done_event(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.find("\"event\":\"done\"") != std::string::npos) return true;
  return false;
}

inline RunCurve read_curve(const std::string& path) {
  RunCurve c;
  double partition = 0, groups = 0, windows = 0;
  for (const auto& e : read_metrics(path)) {
    const std::string ev = e.value("event", "");
    if (ev == "done") c.done = true;
    if (ev == "bacc" && e.contains("group")) groups += e["group"].get<double>(), ++windows;
    if (ev == "start" && e.contains("partition_sizes") && !e["partition_sizes"].empty())
      partition = e["partition_sizes"][0].get<double>();
    if (e.contains("reshard_sent") && partition > 0)
      c.moved = e["reshard_sent"].get<double>() / partition;
    if (ev != "eval" && ev != "epoch" && ev != "target_reached") continue;
    if (!e.contains("test_acc") || !e.contains("steps") || !e.contains("wall_s")) continue;
    const int64_t step = e["steps"].get<int64_t>();
    if (!c.steps.empty() && c.steps.back() == step) {  // the same evaluation again
      if (c.rounds.back() < 0 && e.contains("comm_rounds"))
        c.rounds.back() = e["comm_rounds"].get<int64_t>();
      continue;
    }
    c.steps.push_back(step);
    c.acc.push_back(e["test_acc"].get<double>());
    c.wall_s.push_back(e["wall_s"].get<double>());
    c.rounds.push_back(e.contains("comm_rounds") ? e["comm_rounds"].get<int64_t>() : -1);
  }
  if (windows > 0) c.group_mean = groups / windows;
  return c;
}

// A point is finished when its metrics file holds a "done" event and every line parses: a file
// damaged after the fact (a torn line) counts as unfinished, so the run is redone instead of
// failing every report.
inline std::optional<RunCurve> finished_curve(const std::string& path) {
  if (!has_done_event(path)) return std::nullopt;  // cheap: no parsing
  try {
    RunCurve c = read_curve(path);
    return c.done ? std::optional<RunCurve>(std::move(c)) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

inline bool metrics_finished(const std::string& path) {
  return finished_curve(path).has_value();
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

// The first evaluation at or above the target.
struct Reach {
  int64_t steps = 0, rounds = -1;
  double seconds = 0;
};

inline std::optional<Reach> time_to(const RunCurve& c, double target) {
  for (std::size_t i = 0; i < c.acc.size(); ++i)
    if (c.acc[i] >= target) return Reach{c.steps[i], c.rounds[i], c.wall_s[i]};
  return std::nullopt;
}

inline std::string point_path(const SuiteOptions& o, const std::string& id, const char* ext) {
  return (std::filesystem::path(o.out) / "points" / (id + ext)).string();
}

// The settings that define what a point is (its runs' flags): they must not change across a
// resumed suite. Tasks, figures, seeds, bandwidths and --real-clock only choose which points run
// (a point's id names its group, variant and seed), so a suite can be run in pieces into one
// directory: --figures 11 first, the rest later.
inline nlohmann::json suite_settings(const SuiteOptions& o) {
  return {{"quick", o.quick},
          {"budget", o.budget},
          {"eval_every", o.eval_every},
          {"train_limit", o.train_limit},
          {"test_limit", o.test_limit},
          {"data_dir", o.data_dir},
          {"speech_dir", o.speech_dir},
          {"text_dir", o.text_dir},
          {"model", o.model}};
}

// What this invocation asked for (the report's settings, beside suite_settings).
inline nlohmann::json suite_request(const SuiteOptions& o) {
  nlohmann::json j = suite_settings(o);
  j.update({{"tasks", o.tasks},
            {"figures", o.figures},
            {"seeds", o.seeds},
            {"bandwidths", o.bandwidths},
            {"real_clock", o.real_clock}});
  return j;
}

// A data set the suite makes before its runs (a task's data when no directory was given):
// `mercury data ... --out OUT/data/NAME`, finished when OUT/data/NAME.done exists (written after
// the command succeeded; an interrupted one runs again).
struct SuiteDataStep {
  std::string name, dir;
  std::vector<std::string> args;  // after the binary
  double est_s = 0;
};

inline std::vector<SuiteDataStep> plan_data(const SuiteOptions& o) {
  std::vector<SuiteDataStep> steps;
  for (const std::string name : {"speech", "text"}) {
    const bool given = !(name == "speech" ? o.speech_dir : o.text_dir).empty();
    const bool needed = std::any_of(o.tasks.begin(), o.tasks.end(), [&](const std::string& t) {
      return suite_detail::task_spec(o, t).dataset == name;
    });
    if (given || !needed) continue;
    const std::string dir = suite_detail::dataset_dir(o, name);
    if (name == "speech")  // espeak-ng: 5,984 clips in ~50 s on 2 cores
      steps.push_back({name, dir, {"data", "speech-synth", "--out", dir}, 60});
    else  // apt-cache dumpavail: ~2 s
      steps.push_back({name, dir, {"data", "debian-text", "--out", dir}, 3});
  }
  return steps;
}

namespace suite_detail {

// The finished points' curves and their groups' targets.
class Results {
 public:
  Results(const SuiteOptions& o, const std::vector<SuitePoint>& plan) {
    for (const auto& p : plan) {
      auto curve = finished_curve(point_path(o, p.id, ".jsonl"));
      if (!curve) continue;
      curves_[p.id] = std::move(*curve);
      if (p.baseline.empty())
        if (const auto t = group_target(curves_[p.id])) targets_[p.id] = *t;
    }
  }
  static std::string id(const std::string& group, const std::string& variant, int seed) {
    return group + "/" + variant + "-s" + std::to_string(seed);
  }
  std::optional<double> target(const std::string& group, int seed) const {
    const auto t = targets_.find(id(group, "sync", seed));
    return t == targets_.end() ? std::nullopt : std::optional<double>(t->second);
  }
  const RunCurve* curve(const std::string& group, const std::string& variant, int seed) const {
    const auto c = curves_.find(id(group, variant, seed));
    return c == curves_.end() ? nullptr : &c->second;
  }
  // Finished with a known target: the run's reach (nullopt inside: never reached the target).
  std::optional<std::optional<Reach>> reach(const std::string& group, const std::string& variant,
                                            int seed) const {
    const RunCurve* c = curve(group, variant, seed);
    const auto t = target(group, seed);
    if (!c || !t) return std::nullopt;
    return time_to(*c, *t);
  }

 private:
  std::map<std::string, RunCurve> curves_;
  std::map<std::string, double> targets_;  // sync point id -> target
};

inline std::string spread(const std::vector<double>& v, const char* unit,
                          const char* fmt = "%.2f") {
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  char m[32], a[32], b[32];
  std::snprintf(m, sizeof m, fmt, mean);
  std::snprintf(a, sizeof a, fmt, *lo);
  std::snprintf(b, sizeof b, fmt, *hi);
  std::string s = std::string(m) + unit;
  if (v.size() > 1) s += std::string(" (") + a + "–" + b + ")";
  return s;
}

inline double mean_of(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// A comparison of `subject` with `reference` in one group, per seed: the reference's seconds to
// the target over the subject's (a speedup) and the subject's steps over the reference's.
struct Comparison {
  int finished = 0, reached = 0;  // the subject's runs (with a finished reference and target)
  std::vector<double> speedup, step_ratio;
  nlohmann::json json = nlohmann::json::object();

  std::string cell(const std::vector<double>& v) const {
    if (finished == 0) return "not run";
    if (v.empty())
      return "not reached (" + std::to_string(reached) + "/" + std::to_string(finished) + ")";
    std::string s = spread(v, "x");
    if (reached < finished)
      s += " (" + std::to_string(reached) + "/" + std::to_string(finished) + " reached)";
    return s;
  }
};

inline Comparison compare(const Results& r, const std::string& group, const std::string& subject,
                          const std::string& reference, const std::vector<int>& seeds) {
  Comparison c;
  nlohmann::json per = nlohmann::json::object();
  for (int seed : seeds) {
    const auto mine = r.reach(group, subject, seed);
    const auto base = r.reach(group, reference, seed);
    if (!mine || !base) continue;
    ++c.finished;
    nlohmann::json js = {{"reached", mine->has_value()}};
    if (*mine) {
      ++c.reached;
      js["steps"] = (*mine)->steps;
      js["seconds"] = (*mine)->seconds;
    }
    if (*mine && *base && (*mine)->seconds > 0 && (*base)->steps > 0) {
      const double sp = (*base)->seconds / (*mine)->seconds;
      const double st = static_cast<double>((*mine)->steps) / static_cast<double>((*base)->steps);
      js["speedup"] = sp;
      js["step_ratio"] = st;
      c.speedup.push_back(sp);
      c.step_ratio.push_back(st);
    }
    per[std::to_string(seed)] = js;
  }
  c.json = {{"finished", c.finished}, {"reached", c.reached}, {"seeds", per}};
  if (!c.speedup.empty()) {
    c.json["speedup_mean"] = mean_of(c.speedup);
    c.json["step_ratio_mean"] = mean_of(c.step_ratio);
  }
  return c;
}

// "steps, seconds" to the target, means over the seeds that reached it.
inline std::string reach_cell(const Results& r, const std::string& group,
                              const std::string& variant, const std::vector<int>& seeds) {
  std::vector<double> steps, secs;
  int finished = 0;
  for (int seed : seeds) {
    const auto m = r.reach(group, variant, seed);
    if (!m) continue;
    ++finished;
    if (*m) steps.push_back(static_cast<double>((*m)->steps)), secs.push_back((*m)->seconds);
  }
  if (finished == 0) return "not run";
  if (steps.empty()) return "not reached (0/" + std::to_string(finished) + ")";
  char b[64];
  std::snprintf(b, sizeof b, "%.0f steps, %.1f s", mean_of(steps), mean_of(secs));
  std::string s = b;
  if (static_cast<int>(steps.size()) < finished)
    s += " (" + std::to_string(steps.size()) + "/" + std::to_string(finished) + " reached)";
  return s;
}

inline std::string targets_cell(const Results& r, const std::string& group,
                                const std::vector<int>& seeds) {
  std::string s;
  for (int seed : seeds)
    if (const auto t = r.target(group, seed)) {
      char b[32];
      std::snprintf(b, sizeof b, "%s%.2f%%", s.empty() ? "" : ", ", 100 * *t);
      s += b;
    }
  return s.empty() ? "–" : s;
}

inline std::string svg_file(const SuiteOptions& o, const std::string& name, const SvgChart& chart,
                            bool bars) {
  io::write_file_atomically((std::filesystem::path(o.out) / name).string(), chart.render(bars));
  return name;
}

}  // namespace suite_detail

// The report of whatever has finished (a partial suite reports its finished points).
inline nlohmann::json write_suite_report(const SuiteOptions& o, const std::vector<SuitePoint>& plan,
                                         const std::string& command) {
  using namespace suite_detail;
  const Results r(o, plan);
  nlohmann::json summary = {{"settings", suite_request(o)}};
  std::ostringstream md;
  md << "# The paper's evaluation: `mercury suite paper`\n\n"
     << "Command: `" << command << "`\n\n"
     << "Mode: " << (o.quick ? "quick" : "full") << "; seeds " << nlohmann::json(o.seeds).dump()
     << "; every group's sync SGD run trains its task's budget (below); every other run stops "
        "at the target, sync SGD's plateau (the mean of its last three "
        "evaluations) minus 0.5 point, in its group (the same task, link, data and seed). Times "
        "are the simulator's virtual seconds; local batch 64, Adam (0.002; speech 0.004, the "
        "paper's rate). A ratio is taken per seed on the seeds where both runs "
        "reached the target, then averaged (range in brackets); a run that never reached it is "
        "shown as not reached. Unless a figure says otherwise: 4 devices, one link per device "
        "pair.\n\n"
     << (o.quick ? "**Quick mode**: one seed and a short budget, so sync SGD's \"plateau\" is "
                   "its accuracy early in training and every target is an early one; these "
                   "numbers show the machinery works and the direction of each effect. The full "
                   "suite (no --quick) is the evidence.\n\n"
                 : "");
  const auto has = [&](const char* f) { return contains(o.figures, f); };
  md << "| task | data | model | sync SGD's steps | evaluations every | figures | stands for "
        "(the paper's) |\n|---|---|---|---|---|---|---|\n";
  for (const auto& task : o.tasks) {
    const TaskSpec spec = task_spec(o, task);
    std::vector<std::string> figs;
    for (const auto& f : o.figures)
      if (task_runs(task, f)) figs.push_back(f);
    md << "| " << task << " | " << spec.describe << " | " << spec.model << " | " << spec.budget
       << " | " << spec.eval_every << " | " << (figs.empty() ? "–" : join(figs)) << " | "
       << spec.paper << " |\n";
  }
  md << "\n";
  for (const auto& task : o.tasks) {
    const TaskSpec spec = task_spec(o, task);
    const auto runs = [&](const char* f) { return has(f) && task_runs(task, f); };
    if (runs("11")) {
      const auto variants = fig11_variants(o, task);
      md << "## Fig. 11: speedup over sync SGD (" << task << ": " << spec.model << " on "
         << spec.describe << ")\n\n"
         << "| bandwidth | target (sync plateau - 0.5) | ";
      for (const auto& v : variants) md << v << " | ";
      md << "paper: Mercury (" << spec.paper << ") |\n|---|---|";
      for (std::size_t k = 0; k <= variants.size(); ++k) md << "---|";
      md << "\n";
      std::map<std::string, Series> bars;
      std::string groups;  // Mercury's mean group per bandwidth
      for (const Need& need : figure_needs("11", task, o)) {
        const std::string &bw = need.link, g = need.group();
        md << "| " << bw << " | " << targets_cell(r, g, o.seeds) << " | ";
        nlohmann::json row = nlohmann::json::object();
        for (const auto& v : variants) {
          const Comparison c = compare(r, g, v, "sync", o.seeds);
          md << c.cell(c.speedup) << " | ";
          row[v] = c.json;
          if (!c.speedup.empty()) {
            bars[v].label = v;
            bars[v].x.push_back(mbps_of(bw));
            bars[v].y.push_back(mean_of(c.speedup));
          }
        }
        const auto paper = spec.paper_mercury.find(bw);
        md << (paper == spec.paper_mercury.end() ? "–" : paper->second) << " |\n";
        summary["fig11"][task][bw] = row;
        if (const RunCurve* m = r.curve(g, "mercury", o.seeds.front()); m && m->group_mean >= 0) {
          char b[48];
          std::snprintf(b, sizeof b, "%s%s %.0f", groups.empty() ? "" : ", ", bw.c_str(),
                        m->group_mean);
          groups += b;
          summary["fig11"][task][bw]["mercury"]["group_mean"] = m->group_mean;
        }
      }
      if (!groups.empty())
        md << "\nMercury's importance group (rank 0's samples scored per step while the "
              "aggregation holds the link, mean over its steps, seed "
           << o.seeds.front() << "): " << groups
           << ". A group of 0 means the window is shorter than one scoring chunk (32 samples): "
              "the model's weights cross the link faster than it can score, so Mercury samples "
              "uniformly there.\n";
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
      if (!chart.empty())
        md << "![Fig. 11, " << task << "](" << svg_file(o, "fig11_" + task + ".svg", chart, true)
           << ")\n\n";
    }
    if (runs("12")) {
      const Need need = figure_needs("12", task, o).front();
      const std::string &bw = need.link, g = need.group();
      const int seed = o.seeds.front();
      md << "## Fig. 12: accuracy against time and against communication rounds (" << task << ", "
         << bw << ")\n\n"
         << "| run | rounds to the target | steps, virtual s to the target | final accuracy "
            "(seed "
         << seed << ") |\n|---|---|---|---|\n";
      SvgChart by_time("Fig. 12 (" + task + ", " + bw + ", seed " + std::to_string(seed) +
                           "): accuracy against time",
                       "virtual seconds", "test accuracy");
      SvgChart by_rounds("Fig. 12 (" + task + ", " + bw + ", seed " + std::to_string(seed) +
                             "): accuracy against communication rounds",
                         "communication rounds", "test accuracy");
      nlohmann::json fig = nlohmann::json::object();
      for (const auto& v : fig11_variants(o, task)) {
        std::vector<double> rounds;
        int finished = 0, reached = 0;
        for (int s : o.seeds) {
          const auto m = r.reach(g, v, s);
          if (!m) continue;
          ++finished;
          reached += m->has_value();
          if (*m && (*m)->rounds >= 0) rounds.push_back(static_cast<double>((*m)->rounds));
        }
        // Rounds need comm_rounds in the runs' evaluations (runs before session 14 lack it).
        std::string rcell = finished == 0    ? "not run"
                            : reached == 0   ? "not reached (0/" + std::to_string(finished) + ")"
                            : rounds.empty() ? "– (not logged)"
                                             : spread(rounds, "", "%.0f");
        const RunCurve* c = r.curve(g, v, seed);
        char fin[32] = "–";
        if (c && !c->acc.empty()) std::snprintf(fin, sizeof fin, "%.2f%%", 100 * c->acc.back());
        md << "| " << v << " | " << rcell << " | " << reach_cell(r, g, v, o.seeds) << " | " << fin
           << " |\n";
        nlohmann::json js = {{"finished", finished}};
        if (!rounds.empty()) js["rounds_mean"] = mean_of(rounds);
        if (c) {
          Series t{v, {}, {}}, q{v, {}, {}};
          for (std::size_t i = 0; i < c->acc.size(); ++i) {
            t.x.push_back(c->wall_s[i]), t.y.push_back(c->acc[i]);
            if (c->rounds[i] >= 0)
              q.x.push_back(static_cast<double>(c->rounds[i])), q.y.push_back(c->acc[i]);
          }
          js["curve"] = {
              {"steps", c->steps}, {"wall_s", c->wall_s}, {"rounds", c->rounds}, {"acc", c->acc}};
          if (!t.x.empty()) by_time.add(std::move(t));
          if (!q.x.empty()) by_rounds.add(std::move(q));
        }
        fig[v] = js;
      }
      summary["fig12"][task][bw] = fig;
      md << "\nA communication round is one aggregation: a step of sync SGD, TicTac and "
            "Mercury, an averaging of AdaComm. Runs other than sync SGD stop at the target, so "
            "their curves end there. The paper's Fig. 12 plots these curves for its tasks; "
            "METHOD.md records no numbers from it.\n\n";
      if (!by_time.empty())
        md << "![Fig. 12, time](" << svg_file(o, "fig12_" + task + "_time.svg", by_time, false)
           << ")\n";
      if (!by_rounds.empty())
        md << "![Fig. 12, rounds]("
           << svg_file(o, "fig12_" + task + "_rounds.svg", by_rounds, false) << ")\n";
      md << "\n";
    }
    if (runs("13")) {
      const Need need = figure_needs("13", task, o).front();
      const int64_t sub = need.subset;
      const std::string &bw = need.link, g = need.group();
      md << "## Fig. 13: group-wise against all-inclusive importance sampling (" << task << ", "
         << bw << ", the first " << sub << " training samples)\n\n"
         << "Target " << targets_cell(r, g, o.seeds) << ".\n\n"
         << "| run | steps, virtual s to the target | speedup over all-is | steps over "
            "all-is's | paper |\n|---|---|---|---|---|\n";
      nlohmann::json fig = nlohmann::json::object();
      for (const std::string& v : fig13_variants(o.quick)) {
        md << "| " << v << " | " << reach_cell(r, g, v, o.seeds) << " | ";
        if (v == "all-is") {
          md << "1x | 1x | scores every sample every step |\n";
          continue;
        }
        const Comparison c = compare(r, g, v, "all-is", o.seeds);
        md << c.cell(c.speedup) << " | " << c.cell(c.step_ratio) << " | "
           << (v == "mercury-seq" ? "4.2x faster, ~1.2x the iterations (CIFAR-10)" : "–") << " |\n";
        fig[v] = c.json;
      }
      summary["fig13"][task][bw] = fig;
      md << "\nall-is scores every sample of the device's partition every step (sequentially); "
            "mercury-seq scores one group of 10 x the local batch per step, sequentially (the "
            "paper's group-wise computation alone); mercury (full mode) adds BACC. The subset "
            "keeps "
            "all-is "
            "within the budget: scoring the whole set would cost ~8 s of the 2 cores per step.\n\n";
    }
    if (runs("15")) {
      md << "## Fig. 15: BACC against the sequential pipeline (" << task << ")\n\n"
         << "| bandwidth | target | sequential: steps, s | BACC: steps, s | BACC's speedup | "
            "BACC's steps over sequential's | paper |\n|---|---|---|---|---|---|---|\n";
      std::map<std::string, Series> bars;
      for (const Need& need : figure_needs("15", task, o)) {
        const std::string &bw = need.link, g = need.group();
        const Comparison c = compare(r, g, "mercury", "mercury-seq", o.seeds);
        md << "| " << bw << " | " << targets_cell(r, g, o.seeds) << " | "
           << reach_cell(r, g, "mercury-seq", o.seeds) << " | "
           << reach_cell(r, g, "mercury", o.seeds) << " | " << c.cell(c.speedup) << " | "
           << c.cell(c.step_ratio) << " | 2.2x faster, ~1.05x the iterations |\n";
        summary["fig15"][task][bw] = c.json;
        if (!c.speedup.empty()) {
          bars["BACC over sequential"].label = "BACC over sequential";
          bars["BACC over sequential"].x.push_back(mbps_of(bw));
          bars["BACC over sequential"].y.push_back(mean_of(c.speedup));
        }
      }
      md << "\nBoth run Mercury's sampler; sequential scores its group, then computes, then "
            "aggregates; BACC scores while the aggregation holds the link, its group adapted to "
            "the window.\n\n";
      SvgChart chart("Fig. 15 (" + task + "): BACC's speedup over the sequential pipeline",
                     "bandwidth (Mbps)", "speedup (x)");
      for (auto& [k, s] : bars) chart.add(s);
      if (!chart.empty())
        md << "![Fig. 15](" << svg_file(o, "fig15_" + task + ".svg", chart, true) << ")\n\n";
    }
    if (runs("16")) {
      md << "## Fig. 16: adaptive against fixed group size on a fluctuating link (" << task
         << ")\n\n"
         << "| link | target | adaptive: speedup over sync | fixed 640: speedup over sync | "
            "adaptive over fixed | paper (10 Mbps) |\n|---|---|---|---|---|---|\n";
      for (const Need& need : figure_needs("16", task, o)) {
        const std::string &link = need.link, g = need.group();
        const Comparison a = compare(r, g, "mercury", "sync", o.seeds);
        const Comparison f = compare(r, g, "mercury-fixed640", "sync", o.seeds);
        const Comparison af = compare(r, g, "mercury", "mercury-fixed640", o.seeds);
        md << "| " << link << " | " << targets_cell(r, g, o.seeds) << " | " << a.cell(a.speedup)
           << " | " << f.cell(f.speedup) << " | " << af.cell(af.speedup) << " | "
           << (link == "10mbps-fluct" ? "3.74x against 3.43x" : "–") << " |\n";
        summary["fig16"][task][link] = {
            {"adaptive", a.json}, {"fixed640", f.json}, {"adaptive_over_fixed", af.json}};
      }
      md << "\nThe links follow a trace fluctuating +-10% (mean absolute deviation) around the "
            "rate, a new rate every 0.5 s (OUT/traces/). Fixed 640 is the paper's M (10 x the "
            "local batch): BACC scores exactly 640 samples per step, and the step waits for "
            "the scorer when the aggregation ends first. The adaptive group is what fits in the "
            "aggregation window, at most 640: where the window holds 640 samples (the slow "
            "links) the two coincide.\n\n";
    }
    if (runs("14")) {
      const std::string g = figure_needs("14", task, o).front().group();
      md << "## Fig. 14: resharding (" << task << ", model " << fig14_model(o)
         << ", two label-sorted shards per device, " << o.bandwidths.front() << ", every run "
         << fig14_budget(o) << " steps)\n\n"
         << "| run | data moved (rank 0's samples sent / its partition) | final accuracy "
            "(last 3 evaluations) | against no resharding |\n|---|---|---|---|\n";
      std::map<std::string, Series> pts;
      nlohmann::json fig = nlohmann::json::object();
      std::vector<double> off_acc;
      for (const auto& v : fig14_variants(o.quick)) {
        std::vector<double> moved, acc;
        for (int seed : o.seeds)
          if (const RunCurve* c = r.curve(g, v, seed)) {
            if (const auto pl = plateau(*c)) acc.push_back(*pl);
            moved.push_back(std::max(0.0, c->moved));
          }
        if (v == "mercury-reshard-off") off_acc = acc;
        md << "| " << v << " | " << (moved.empty() ? "not run" : spread(moved, "", "%.3f")) << " | "
           << (acc.empty() ? "not run" : spread(acc, "", "%.4f")) << " | ";
        if (!acc.empty() && !off_acc.empty() && v != "mercury-reshard-off") {
          char b[48];
          std::snprintf(b, sizeof b, "%+.2f points", 100 * (mean_of(acc) - mean_of(off_acc)));
          md << b;
        } else {
          md << "–";
        }
        md << " |\n";
        if (!acc.empty()) {
          fig[v] = {{"moved_mean", mean_of(moved)}, {"final_acc_mean", mean_of(acc)}};
          const std::string kind = v.find("importance") != std::string::npos ? "importance"
                                   : v.find("random") != std::string::npos   ? "random"
                                                                             : "off";
          pts[kind].label = kind;
          pts[kind].x.push_back(mean_of(moved));
          pts[kind].y.push_back(mean_of(acc));
        }
      }
      summary["fig14"][task] = fig;
      md << "\nEvery run is Mercury (importance sampling and BACC) on a non-IID split (each of the "
            "4 devices holds two label-sorted shards: 2-3 classes) and trains the whole budget; "
            "the model has batch norm, whose per-device statistics the split skews (the "
            "reference CNN, without it, gains nothing from resharding: bench/README.md, session "
            "7); --reshard-budget is the "
            "fraction of a full reshuffle moved per epoch. The paper (CIFAR-10): importance-aware "
            "resharding +1.84 points over none, and random resharding's final accuracy with ~50% "
            "of its traffic.\n\n";
      SvgChart chart("Fig. 14 (" + task + "): final accuracy against data moved",
                     "fraction of rank 0's partition sent", "test accuracy");
      for (auto& [k, series] : pts) {
        std::vector<std::size_t> order(series.x.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::sort(order.begin(), order.end(),
                  [&](std::size_t a, std::size_t b) { return series.x[a] < series.x[b]; });
        Series sorted{series.label, {}, {}};
        for (auto i : order) sorted.x.push_back(series.x[i]), sorted.y.push_back(series.y[i]);
        chart.add(std::move(sorted));
      }
      if (!chart.empty())
        md << "![Fig. 14](" << svg_file(o, "fig14_" + task + ".svg", chart, false) << ")\n\n";
    }
    if (runs("17")) {
      md << "## Fig. 17: scaling on one shared 100 Mbps medium (" << task << ")\n\n"
         << "| devices | target | sync SGD: steps, s | Mercury: steps, s | Mercury's speedup | "
         << (o.quick ? "" : "Mercury on local SGD's speedup | ") << "paper |\n|---|---|---|---|---|"
         << (o.quick ? "" : "---|") << "---|\n";
      Series line{"mercury", {}, {}};
      for (const Need& need : figure_needs("17", task, o)) {
        const int d = need.devices;
        const std::string g = need.group();
        const Comparison c = compare(r, g, "mercury", "sync", o.seeds);
        md << "| " << d << " | " << targets_cell(r, g, o.seeds) << " | "
           << reach_cell(r, g, "sync", o.seeds) << " | " << reach_cell(r, g, "mercury", o.seeds)
           << " | " << c.cell(c.speedup) << " | ";
        nlohmann::json row = {{"mercury", c.json}};
        if (!o.quick) {
          const Comparison l = compare(r, g, "mercury-local-t20", "sync", o.seeds);
          md << l.cell(l.speedup) << " | ";
          row["mercury-local-t20"] = l.json;
        }
        md << "flat from 4 to 12 devices |\n";
        summary["fig17"][task][std::to_string(d)] = row;
        if (!c.speedup.empty()) line.x.push_back(d), line.y.push_back(mean_of(c.speedup));
      }
      md << "\nThe devices share one channel (--medium): a fleet of N sends N times the bytes "
            "through it, as on one Wi-Fi network; local batch 64 (global 64 x N). The "
            "simulator's scale beyond the paper (16 to 128 devices) is in bench/README.md.\n\n";
      SvgChart chart("Fig. 17 (" + task + "): Mercury's speedup against fleet size", "devices",
                     "speedup over sync SGD (x)");
      if (!line.x.empty()) chart.add(line);
      if (!chart.empty())
        md << "![Fig. 17](" << svg_file(o, "fig17_" + task + ".svg", chart, false) << ")\n\n";
    }
    if (runs("18")) {
      md << "## Fig. 18: non-IID data, importance sampling without resharding (" << task
         << ", 12 devices, " << o.bandwidths.front() << ")\n\n"
         << "| Dirichlet alpha | target | sync SGD: steps, s | Mercury: steps, s | Mercury's "
            "speedup | paper |\n|---|---|---|---|---|---|\n";
      const std::map<std::string, std::string> paper = {
          {"10", "2.75x"}, {"1", "2.5x"}, {"0.5", "2.41x"}};
      for (const Need& need : figure_needs("18", task, o)) {
        const std::string alpha = need.data.substr(task.size() + 4);  // TASK-dirALPHA
        const std::string g = need.group();
        const Comparison c = compare(r, g, "mercury", "sync", o.seeds);
        md << "| " << alpha << " | " << targets_cell(r, g, o.seeds) << " | "
           << reach_cell(r, g, "sync", o.seeds) << " | " << reach_cell(r, g, "mercury", o.seeds)
           << " | " << c.cell(c.speedup) << " | " << paper.at(alpha) << " |\n";
        summary["fig18"][task][alpha] = c.json;
      }
      md << "\nEach device's data is a Dirichlet(alpha) draw over the classes (smaller alpha: "
            "more skew); no sample leaves its device (--reshard off), as in the paper's "
            "federated mode.\n\n";
    }
    if (runs("3") || runs("6")) {
      const std::string id = Results::id(task + "/local", "probe", o.seeds.front());
      const std::string path = point_path(o, id, ".jsonl");
      md << "## Figs. 3 and 6: the importance distribution over training and how fast ranks "
            "move ("
         << task << ", one device, uniform sampling, seed " << o.seeds.front() << ")\n\n";
      if (!metrics_finished(path)) {
        md << "Not run yet.\n\n";
      } else {
        SvgChart hist("Fig. 3 (" + task + "): loss distribution of 2,000 probe samples", "loss",
                      "fraction of probe samples");
        std::map<int64_t, std::array<std::vector<double>, 4>> lags;
        nlohmann::json bases = nlohmann::json::array();
        const auto events = read_metrics(path);
        int64_t hists = 0;  // the plot draws at most 5 of them, evenly spaced
        for (const auto& e : events) hists += e.value("event", "") == "importance_hist";
        const int64_t stride = std::max<int64_t>(1, (hists + 4) / 5);
        for (const auto& e : events) {
          const std::string ev = e.value("event", "");
          if (ev == "importance_hist") {
            const auto counts = e["counts"].get<std::vector<double>>();
            const double hi = e["hi"].get<double>();
            double total = 0, low = 0;
            for (double c : counts) total += c;
            Series h{"step " + std::to_string(e["steps"].get<int64_t>()), {}, {}};
            for (std::size_t k = 0; k < counts.size(); ++k) {
              h.x.push_back(hi * (static_cast<double>(k) + 0.5) /
                            static_cast<double>(counts.size()));
              h.y.push_back(total > 0 ? counts[k] / total : 0);
              if (k < counts.size() / 10) low += counts[k];
            }
            bases.push_back({{"steps", e["steps"]},
                             {"max_loss", hi},
                             {"under_tenth_of_max", total > 0 ? low / total : 0}});
            if ((static_cast<int64_t>(bases.size()) - 1) % stride == 0) hist.add(std::move(h));
          }
          if (ev == "rank_change") {
            auto& l = lags[e["lag"].get<int64_t>()];
            l[0].push_back(e["under5"]), l[1].push_back(e["under10"]);
            l[2].push_back(e["spearman"]), l[3].push_back(e["top10_kept"]);
          }
        }
        md << "| probe step | largest loss | samples below a tenth of it |\n|---|---|---|\n";
        for (const auto& b : bases) {
          char row[96];
          std::snprintf(row, sizeof row, "| %lld | %.3f | %.1f%% |\n",
                        static_cast<long long>(b["steps"].get<int64_t>()),
                        b["max_loss"].get<double>(), 100 * b["under_tenth_of_max"].get<double>());
          md << row;
        }
        md << "\n| lag (steps) | rank moved < 5% | rank moved < 10% | Spearman | top 10% kept | "
              "paper |\n|---|---|---|---|---|---|\n";
        nlohmann::json lj = nlohmann::json::object();
        Series moved{"rank moved < 10%", {}, {}};
        for (const auto& [lag, v] : lags) {
          char row[160];
          std::snprintf(row, sizeof row, "| %lld | %.1f%% | %.1f%% | %.3f | %.1f%% | ",
                        static_cast<long long>(lag), 100 * mean_of(v[0]), 100 * mean_of(v[1]),
                        mean_of(v[2]), 100 * mean_of(v[3]));
          md << row
             << (lag == 1    ? "~50% < 5%, ~70% < 10%"
                 : lag == 10 ? "~65% < 10%"
                             : "–")
             << " |\n";
          lj[std::to_string(lag)] = {{"under5", mean_of(v[0])},
                                     {"under10", mean_of(v[1])},
                                     {"spearman", mean_of(v[2])},
                                     {"top10_kept", mean_of(v[3])},
                                     {"periods", v[0].size()}};
          moved.x.push_back(static_cast<double>(lag)), moved.y.push_back(mean_of(v[1]));
        }
        summary["fig3"][task] = bases;
        summary["fig6"][task] = lj;
        md << "\nA probe of 2,000 training samples is scored every " << probe_every(o.budget)
           << " steps (and 1 and 10 steps after, below that period); the rank rows are means over "
              "those periods. "
              "The paper (its Figs. 3 and 6): most samples have small losses, a few large ones; "
              "ranks change slowly, so a cached score stays useful for a few steps.\n\n";
        if (!hist.empty())
          md << "![Fig. 3](" << svg_file(o, "fig3_" + task + ".svg", hist, false) << ")\n";
        SvgChart ranks("Fig. 6 (" + task + "): samples whose rank moved < 10%", "lag (steps)",
                       "fraction of probe samples");
        if (!moved.x.empty()) {
          ranks.add(std::move(moved));
          md << "![Fig. 6](" << svg_file(o, "fig6_" + task + ".svg", ranks, true) << ")\n";
        }
        md << "\n";
      }
    }
    if (o.real_clock && task == "image") {
      const std::string bw = o.bandwidths.front();
      md << "## The simulator against real processes (" << task << ", 2 devices, " << bw << ")\n\n"
         << "| run | simulated: s per step | real: s per step | real / simulated | simulated: "
            "speedup over sync | real: speedup over sync | largest accuracy gap at the same "
            "step |\n|---|---|---|---|---|---|---|\n";
      const auto needs = figure_needs("real", task, o);  // simulated, then real
      const std::string gs = needs[0].group(), gr = needs[1].group();
      for (const char* v : {"sync", "mercury"}) {
        std::vector<double> sim_step, real_step, ratio, gap;
        for (int seed : o.seeds) {
          const RunCurve* a = r.curve(gs, v, seed);
          const RunCurve* b = r.curve(gr, v, seed);
          if (!a || !b || a->steps.empty() || b->steps.empty()) continue;
          const double sa = a->wall_s.back() / static_cast<double>(a->steps.back());
          const double sb = b->wall_s.back() / static_cast<double>(b->steps.back());
          sim_step.push_back(sa), real_step.push_back(sb), ratio.push_back(sb / sa);
          double worst = 0;
          for (std::size_t i = 0; i < a->steps.size(); ++i)
            for (std::size_t j = 0; j < b->steps.size(); ++j)
              if (a->steps[i] == b->steps[j])
                worst = std::max(worst, std::abs(a->acc[i] - b->acc[j]));
          gap.push_back(100 * worst);
        }
        const Comparison cs = compare(r, gs, v, "sync", o.seeds);
        const Comparison cr = compare(r, gr, v, "sync", o.seeds);
        const auto cell = [](const std::vector<double>& x, const char* unit, const char* fmt) {
          return x.empty() ? std::string("not run") : spread(x, unit, fmt);
        };
        md << "| " << v << " | " << cell(sim_step, " s", "%.3f") << " | "
           << cell(real_step, " s", "%.3f") << " | " << cell(ratio, "x", "%.2f") << " | "
           << cs.cell(cs.speedup) << " | " << cr.cell(cr.speedup) << " | "
           << cell(gap, " points", "%.2f") << " |\n";
        summary["real_clock"][task][v] = {{"sim", cs.json}, {"real", cr.json}};
        if (!ratio.empty()) summary["real_clock"][task][v]["real_over_sim_step"] = mean_of(ratio);
      }
      md << "\nThe same runs as `mercury sim -n 2` and as `mercury launch -n 2` (real ranks, real "
            "shaped links, real clocks; each group's own sync run sets its target). A step's time "
            "is the run's training seconds over its steps (evaluations excluded). On a machine "
            "with fewer than 3 free cores the real Mercury run's scorer competes with the "
            "training threads, which the simulator does not model.\n\n";
    }
  }
  std::vector<std::string> missing;
  for (const auto& f : kSuiteFigures)
    if (!has(f.c_str())) missing.push_back(f);
  md << "## Scope\n\nFigs. 13-18, 3 and 6 and the real-clock check run on the image task (the "
        "reference CNN; Fig. 14 on ResNet-8); the other tasks run Figs. 11 and 12 at the first "
        "bandwidth"
     << (o.quick ? ", Mercury (and, on text, Mercury on local SGD) against sync SGD only"
                 : ", with TicTac and AdaComm (tau0 20)")
     << ". The paper's own data sets: --data-dir (Fashion-MNIST's IDX files), --speech-dir "
        "(Speech Commands v0.02) and --text-dir (AG News CSV) point the tasks at them."
     << (missing.empty() ? std::string()
                         : " Not asked for in this run: Figs. " + join(missing) + ".")
     << "\n";
  io::write_file_atomically((std::filesystem::path(o.out) / "index.md").string(), md.str());
  io::write_file_atomically((std::filesystem::path(o.out) / "summary.json").string(),
                            summary.dump(2) + "\n");
  return summary;
}

namespace suite_detail {

// Runs argv as a child that dies with the suite, its output (both streams) in log_path.
inline ExitStatus run_logged(const std::vector<std::string>& argv, const std::string& log_path) {
  Fd out(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out) throw ToolError("suite: cannot write " + log_path + ": " + std::strerror(errno));
  SpawnOptions so;
  so.stdout_fd = out.get();
  so.stderr_fd = out.get();
  so.die_with_parent = true;
  return wait_for(spawn(argv, so));
}

}  // namespace suite_detail

// Runs (or resumes) the suite; returns the process exit code.
inline int run_suite(SuiteOptions o, const std::string& command, std::ostream& log) {
  namespace fs = std::filesystem;
  o = resolve_suite_options(std::move(o));
  const auto plan = plan_suite(o);
  const auto data = plan_data(o);
  double expected = 0;
  for (const auto& p : plan) expected += p.est_s;
  for (const auto& d : data) expected += d.est_s;
  log << "suite paper: " << plan.size() << " runs (" << (o.quick ? "quick" : "full")
      << "), expected " << suite_detail::hms(expected) << " on 2 cores; output " << o.out << "\n"
      << std::flush;
  if (o.dry_run) {
    for (const auto& d : data)
      log << "  data/" << d.name << " (~" << suite_detail::hms(d.est_s) << "): mercury "
          << suite_detail::join(d.args, " ") << "\n";
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
  for (const auto& d : data) {
    left -= d.est_s;
    const std::string done = (fs::path(o.out) / "data" / (d.name + ".done")).string();
    if (fs::exists(done)) continue;
    const std::string log_path = (fs::path(o.out) / "data" / (d.name + ".log")).string();
    fs::create_directories(fs::path(log_path).parent_path());
    std::vector<std::string> argv = o.self;
    argv.insert(argv.end(), d.args.begin(), d.args.end());
    const auto p0 = std::chrono::steady_clock::now();
    const ExitStatus st = suite_detail::run_logged(argv, log_path);
    if (!st.ok())
      throw ToolError("suite: making the " + d.name + " data (mercury " +
                      suite_detail::join(d.args, " ") + ") " + st.describe() +
                      "; its output: " + log_path +
                      " (run the suite again to retry it, or give --" + d.name + "-dir)");
    io::write_file_atomically(done, "mercury " + suite_detail::join(d.args, " ") + "\n");
    log << "suite paper: data " << d.name << " made in "
        << suite_detail::hms(base::seconds_since(p0)) << " (" << d.dir << ")\n"
        << std::flush;
  }
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
    if (!p.trace.empty() && !fs::exists(p.trace)) {
      fs::create_directories(fs::path(p.trace).parent_path());
      char what[160];
      std::snprintf(what, sizeof what,
                    "mercury suite paper: generate_trace(%g Mbps, 10%% mean absolute deviation, "
                    "600 s, a point every 0.5 s, seed %d), looped",
                    suite_detail::mbps_of(p.link), p.seed);
      suite_trace(p.link, p.seed).write_csv(p.trace, what);
    }
    std::vector<std::string> argv = o.self;
    argv.insert(argv.end(), p.args.begin(), p.args.end());
    argv.insert(argv.end(), {"--metrics", metrics});
    if (!p.baseline.empty()) {
      const std::string base = point_path(o, p.baseline, ".jsonl");
      const auto target = group_target(read_curve(base));
      if (!target)
        throw ToolError("suite: " + p.baseline + " finished without an evaluation (" + base +
                        "): no target for " + p.id);
      char t[32];  // every digit: the run stops where the report's target says it reached it
      std::snprintf(t, sizeof t, "%.17g", *target);
      argv.insert(argv.end(), {"--target-acc", t});
    }
    const std::string log_path = point_path(o, p.id, ".log");
    const auto p0 = std::chrono::steady_clock::now();
    const ExitStatus st = suite_detail::run_logged(argv, log_path);
    const double took = base::seconds_since(p0);
    const auto c = st.ok() ? finished_curve(metrics) : std::nullopt;
    if (!c)
      throw ToolError("suite: " + p.id + " " +
                      (st.ok() ? "ended without a done event" : st.describe()) +
                      "; its output: " + log_path + " (run the suite again to retry it)");
    spent_est += p.est_s;
    spent_real += took;
    const double scale = spent_est > 0 ? spent_real / spent_est : 1.0;
    const double elapsed = base::seconds_since(t0);
    char line[256];
    std::snprintf(line, sizeof line,
                  "suite paper: [%zu/%zu] %s: %lld steps in %s; %s elapsed, about %s left\n", k,
                  plan.size(), p.id.c_str(),
                  static_cast<long long>(c->steps.empty() ? 0 : c->steps.back()),
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
