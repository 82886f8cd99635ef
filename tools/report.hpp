// tools/report.hpp — `mercury report`: turns metrics JSON-lines files into SVG plots and a
// summary JSON.
//
//   accuracy_vs_steps.svg, accuracy_vs_time.svg   one line per run ("eval"/"epoch" events)
//   importance_hist.svg                           loss histograms over training (Fig. 3)
//   rank_change.svg                               rank movement after a lag of steps (Fig. 6)
//   rank_correlation.svg                          Spearman correlation of probe losses vs lag
//   top10_kept.svg                                share of the top-10% losses still top-10%
//   summary.json                                  per run: steps and training seconds to the
//                                                 target, final accuracy, T_is/T_cp
//   groups.json (+ a table on the log)            runs named <group>-s<seed> pooled per group:
//                                                 means over seeds and ratios against "uniform"
// With a target accuracy (`--target`), "to target" is the first evaluation at or above it, so
// runs that trained to a fixed budget (no early stop) give both the time to the target and
// the accuracy at the budget. Near a plateau that first crossing is noisy (test accuracy moves
// ±0.5 point between evaluations), so "..._smoothed" also gives the first evaluation at which
// the mean of the last three evaluations reaches the target. Pooled over a group's seeds,
// "..._curve" is the first step at which the seed-averaged accuracy curve (at the steps every
// run evaluated) reaches the target, with the seed-averaged CPU seconds at that step: one
// crossing of the mean curve rather than the mean of noisy per-seed crossings, and
// accuracy_vs_steps_mean.svg draws those curves. "final_test_acc_last5" is the mean of a run's
// last five evaluations (the budget's accuracy without one evaluation's noise).
// Malformed lines fail with the file and line number; a file with no usable events is named.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/io/atomic_file.hpp"
#include "net/file_kind.hpp"

namespace mercury::tools {

struct Series {
  std::string label;
  std::vector<double> x, y;
};

// One run's evaluations: steps, test accuracy, training CPU seconds (NaN if not logged).
struct EvalCurve {
  std::vector<double> steps, acc, cpu;
};

// A minimal line/bar chart in SVG (no dependencies).
class SvgChart {
 public:
  SvgChart(std::string title, std::string xlabel, std::string ylabel)
      : title_(std::move(title)), xlabel_(std::move(xlabel)), ylabel_(std::move(ylabel)) {}
  void add(Series s) { series_.push_back(std::move(s)); }
  bool empty() const { return series_.empty(); }

  std::string render(bool bars = false) const {
    const double W = 720, H = 440, L = 70, R = 180, T = 40, B = 50;
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    for (const auto& s : series_)
      for (std::size_t k = 0; k < s.x.size(); ++k) {
        x0 = std::min(x0, s.x[k]), x1 = std::max(x1, s.x[k]);
        y0 = std::min(y0, s.y[k]), y1 = std::max(y1, s.y[k]);
      }
    if (bars) y0 = std::min(y0, 0.0), y1 = std::max(y1, 0.0);  // bars start at 0
    if (!(x1 > x0)) x1 = x0 + 1;
    if (!(y1 > y0)) y1 = y0 + 1;
    const double pad = (y1 - y0) * 0.05;
    y1 += pad;
    if (!bars) y0 -= pad;
    // Bars are categorical along x (e.g. lags 1, 10, 100, 1000): one slot per distinct x value.
    std::vector<double> cats;
    if (bars) {
      for (const auto& s : series_) cats.insert(cats.end(), s.x.begin(), s.x.end());
      std::sort(cats.begin(), cats.end());
      cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
    }
    const double slot = (W - L - R) / std::max<double>(1.0, static_cast<double>(cats.size()));
    auto px = [&](double x) {
      if (bars) {
        const auto k = std::lower_bound(cats.begin(), cats.end(), x) - cats.begin();
        return L + slot * (static_cast<double>(k) + 0.5);
      }
      return L + (x - x0) / (x1 - x0) * (W - L - R);
    };
    auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
    static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    std::ostringstream o;
    o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
         "fill='white'/>\n<text x='"
      << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << escape(title_) << "</text>\n";
    for (int k = 0; k <= 5; ++k) {  // grid + ticks
      const double yv = y0 + (y1 - y0) * k / 5, xv = x0 + (x1 - x0) * k / 5;
      o << "<line x1='" << L << "' x2='" << W - R << "' y1='" << py(yv) << "' y2='" << py(yv)
        << "' stroke='#ddd'/>\n<text x='" << L - 6 << "' y='" << py(yv) + 4
        << "' text-anchor='end'>" << tick(yv) << "</text>\n";
      if (!bars)
        o << "<text x='" << px(xv) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << tick(xv)
          << "</text>\n";
    }
    for (double c : cats)
      o << "<text x='" << px(c) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << tick(c)
        << "</text>\n";
    o << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B
      << "' fill='none' stroke='black'/>\n<text x='" << (L + W - R) / 2 << "' y='" << H - 12
      << "' text-anchor='middle'>" << escape(xlabel_) << "</text>\n<text transform='translate(16,"
      << (T + H - B) / 2 << ") rotate(-90)' text-anchor='middle'>" << escape(ylabel_)
      << "</text>\n";
    for (std::size_t si = 0; si < series_.size(); ++si) {
      const auto& s = series_[si];
      const char* c = colours[si % 10];
      if (bars) {
        const double n = static_cast<double>(series_.size());
        for (std::size_t k = 0; k < s.x.size(); ++k) {  // from 0 up (or down) to the value
          const double bx = px(s.x[k]) - slot * 0.4 + slot * 0.8 * static_cast<double>(si) / n;
          const double top = std::min(py(0), py(s.y[k]));
          o << "<rect x='" << bx << "' y='" << top << "' width='" << slot * 0.8 / n << "' height='"
            << std::abs(py(0) - py(s.y[k])) << "' fill='" << c << "'/>\n";
        }
      } else {
        o << "<polyline fill='none' stroke='" << c << "' stroke-width='1.5' points='";
        for (std::size_t k = 0; k < s.x.size(); ++k) o << px(s.x[k]) << "," << py(s.y[k]) << " ";
        o << "'/>\n";
      }
      o << "<rect x='" << W - R + 10 << "' y='" << T + 16 * si << "' width='10' height='10' fill='"
        << c << "'/><text x='" << W - R + 25 << "' y='" << T + 16 * si + 9 << "'>"
        << escape(s.label) << "</text>\n";
    }
    o << "</svg>\n";
    return o.str();
  }

 private:
  static std::string tick(double v) {
    std::ostringstream o;
    o.precision(std::abs(v) >= 100 ? 0 : 3);
    o << std::fixed << v;
    return o.str();
  }
  static std::string escape(const std::string& s) {
    std::string r;
    for (char c : s) {
      if (c == '<')
        r += "&lt;";
      else if (c == '>')
        r += "&gt;";
      else if (c == '&')
        r += "&amp;";
      else if (c == '\'')
        r += "&apos;";
      else
        r += c;
    }
    return r;
  }
  std::string title_, xlabel_, ylabel_;
  std::vector<Series> series_;
};

inline std::vector<nlohmann::json> read_metrics(const std::string& path) {
  // 4 GiB, or half the address space on 32-bit boards (the file is read into memory).
  constexpr auto kMaxBytes = static_cast<std::size_t>(
      std::min<uint64_t>(uint64_t{1} << 32, std::numeric_limits<std::size_t>::max() / 2));
  std::istringstream in(net::read_regular_file(path, "report: metrics file", kMaxBytes));
  std::vector<nlohmann::json> events;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error("report: '" + path + "' line " + std::to_string(n) +
                               ": expected a JSON object, found malformed JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("event") || !j["event"].is_string()) {
      throw std::runtime_error("report: '" + path + "' line " + std::to_string(n) +
                               ": expected an object with an \"event\" string");
    }
    events.push_back(std::move(j));
  }
  return events;
}

// "mercury-s2" → "mercury"; a label without a -s<digits> suffix is its own group.
inline std::string run_group(const std::string& label) {
  const auto p = label.rfind("-s");
  if (p == std::string::npos || p + 2 == label.size()) return label;
  for (std::size_t k = p + 2; k < label.size(); ++k)
    if (label[k] < '0' || label[k] > '9') return label;
  return label.substr(0, p);
}

// Per group: means over its runs, and ratios against the "uniform" group when there is one.
// A mean is given only when every run of the group has the value (reached the target).
// The seed-averaged accuracy (and CPU seconds) per step, over the steps every run evaluated.
inline EvalCurve mean_curve(const std::vector<const EvalCurve*>& runs) {
  std::map<double, std::vector<double>> acc, cpu;
  for (const auto* c : runs) {
    for (std::size_t k = 0; k < c->steps.size(); ++k) {
      acc[c->steps[k]].push_back(c->acc[k]);
      cpu[c->steps[k]].push_back(c->cpu[k]);
    }
  }
  EvalCurve m;
  for (const auto& [step, a] : acc) {
    if (a.size() != runs.size()) continue;
    double sa = 0, sc = 0;
    for (std::size_t k = 0; k < a.size(); ++k) sa += a[k], sc += cpu[step][k];
    m.steps.push_back(step);
    m.acc.push_back(sa / static_cast<double>(a.size()));
    m.cpu.push_back(sc / static_cast<double>(a.size()));
  }
  return m;
}

inline nlohmann::json pool_groups(const nlohmann::json& summary, std::ostream& log,
                                  const std::map<std::string, EvalCurve>& curves = {},  // by file
                                  double target = 0, SvgChart* mean_chart = nullptr) {
  std::map<std::string, std::vector<const nlohmann::json*>> by;
  std::vector<std::string> order;
  for (const auto& row : summary) {
    const std::string g = run_group(row["run"].get<std::string>());
    if (!by.count(g)) order.push_back(g);
    by[g].push_back(&row);
  }
  static const char* kTimed[] = {"steps_to_target",          "train_cpu_s_to_target",
                                 "steps_to_target_smoothed", "train_cpu_s_to_target_smoothed",
                                 "wall_s_to_target",         "wall_s_to_target_smoothed"};
  static const char* kRatio[] = {"steps_to_target",          "train_cpu_s_to_target",
                                 "steps_to_target_smoothed", "train_cpu_s_to_target_smoothed",
                                 "steps_to_target_curve",    "train_cpu_s_to_target_curve",
                                 "wall_s_to_target",         "wall_s_to_target_smoothed"};
  nlohmann::json out = nlohmann::json::array();
  for (const auto& g : order) {
    const auto& rows = by[g];
    nlohmann::json row = {{"group", g}, {"runs", rows.size()}};
    auto pool = [&](const char* key, bool all_required) {
      double sum = 0;
      int n = 0;
      for (const auto* r : rows)
        if (r->contains(key) && (*r)[key].is_number()) sum += (*r)[key].get<double>(), ++n;
      if (n && (!all_required || n == static_cast<int>(rows.size())))
        row[std::string("mean_") + key] = sum / n;
      return n;
    };
    row["reached_target"] = pool("steps_to_target", true);
    row["reached_target_smoothed"] = pool("steps_to_target_smoothed", true);
    for (const char* k : kTimed) pool(k, true);
    std::vector<const EvalCurve*> runs;
    for (const auto* r : rows) {
      const auto it = curves.find((*r)["file"].get<std::string>());
      if (it != curves.end()) runs.push_back(&it->second);
    }
    if (!runs.empty() && runs.size() == rows.size()) {
      const EvalCurve m = mean_curve(runs);
      for (std::size_t k = 0; target > 0 && k < m.steps.size(); ++k) {
        if (m.acc[k] >= target) {
          row["mean_steps_to_target_curve"] = m.steps[k];
          if (std::isfinite(m.cpu[k])) row["mean_train_cpu_s_to_target_curve"] = m.cpu[k];
          break;
        }
      }
      if (mean_chart && !m.steps.empty()) {
        mean_chart->add(Series{g + " (" + std::to_string(rows.size()) + ")", m.steps, m.acc});
      }
    }
    pool("final_test_acc", false);
    pool("final_test_acc_last5", false);
    pool("is_overhead", false);
    out.push_back(row);
  }
  const nlohmann::json* base = nullptr;
  for (const auto& r : out)
    if (r["group"] == "uniform") base = &r;
  if (base) {
    const nlohmann::json b = *base;
    for (auto& r : out) {
      for (const char* k : kRatio) {
        const std::string m = std::string("mean_") + k;
        if (r.contains(m) && b.contains(m))
          r[std::string("uniform_over_this_") + k] = b[m].get<double>() / r[m].get<double>();
      }
    }
  }
  auto num = [](const nlohmann::json& r, const std::string& k, const char* fmt) {
    char b[32] = "-";
    if (r.contains(k)) std::snprintf(b, sizeof b, fmt, r[k].get<double>());
    return std::string(b);
  };
  char line[400];
  std::snprintf(line, sizeof line,
                "%-24s %5s | %7s %6s %7s %6s | %7s %6s %7s %6s | %7s %6s %7s %6s | %7s %6s %7s "
                "%6s | %9s %7s %8s\n",
                "group", "runs", "steps", "x", "CPU s", "x", "steps~", "x", "CPU s~", "x",
                "steps=", "x", "CPU s=", "x", "wall s", "x", "wall s~", "x", "final acc", "last 5",
                "T_is/T_cp");
  log << "to target: first evaluation at or above it (mean over runs) | ~: first time the mean "
         "of the last 3 evaluations is | =: first step the seed-averaged curve is | wall: "
         "training wall clock (evaluations excluded); x = uniform / this\n"
      << line;
  for (const auto& r : out) {
    std::string cells;
    for (const char* k : kRatio) {
      const bool steps = std::string(k).rfind("steps", 0) == 0;
      char cell[40];
      std::snprintf(cell, sizeof cell, " %7s %6s",
                    num(r, std::string("mean_") + k, steps ? "%.0f" : "%.1f").c_str(),
                    num(r, std::string("uniform_over_this_") + k, "%.2f").c_str());
      cells += cell;
      if (k == kRatio[1] || k == kRatio[3] || k == kRatio[5]) cells += " |";
    }
    std::snprintf(line, sizeof line, "%-24s %2d/%-2d |%s | %9s %7s %8s\n",
                  r["group"].get<std::string>().c_str(), r["reached_target"].get<int>(),
                  r["runs"].get<int>(), cells.c_str(),
                  num(r, "mean_final_test_acc", "%.4f").c_str(),
                  num(r, "mean_final_test_acc_last5", "%.4f").c_str(),
                  num(r, "mean_is_overhead", "%.3f").c_str());
    log << line;
  }
  return out;
}

inline int report(const std::vector<std::string>& files, const std::string& out_dir,
                  std::ostream& log, double target = 0) {
  if (files.empty()) throw std::invalid_argument("report: expected at least one metrics file");
  if (!(target >= 0 && target <= 1)) {
    throw std::invalid_argument("report: target accuracy: expected a fraction in [0, 1], found " +
                                std::to_string(target));
  }
  if (const std::string kind = net::file_kind(out_dir); kind != "missing" && kind != "a directory")
    throw std::invalid_argument("report: --out '" + out_dir +
                                "': expected a directory (or a new path), found " + kind);
  std::filesystem::create_directories(out_dir);
  SvgChart by_steps("Test accuracy", "optimizer steps", "test accuracy");
  SvgChart by_time("Test accuracy", "training CPU seconds (scoring included, evaluation excluded)",
                   "test accuracy");
  SvgChart hist("Importance (loss) histogram", "loss", "fraction of probe samples");
  SvgChart ranks("Rank change", "lag (steps)", "fraction moved < 10% of ranks");
  SvgChart rho("Rank correlation of probe losses", "lag (steps)", "Spearman rank correlation");
  SvgChart top10("Top-10% losses still top-10%", "lag (steps)", "fraction of the top 10% kept");
  nlohmann::json summary = nlohmann::json::array();
  std::map<std::string, EvalCurve> curves;
  // A metrics file whose events have fields of the wrong type: name the file, not just the
  // JSON library's complaint.
  std::string current;
  try {
    for (const auto& f : files) {
      current = f;
      const auto ev = read_metrics(f);
      std::string label = std::filesystem::path(f).stem().string();
      Series s1{label, {}, {}}, s2{label, {}, {}};
      nlohmann::json row = {{"run", label}, {"file", f}};
      std::map<int64_t, std::vector<double>> lag_under10, lag_spearman, lag_top10;
      std::vector<double> last3;  // the last three evaluations' accuracies
      std::vector<double> cpu;    // training CPU seconds at each evaluation of s1 (NaN: unknown)
      for (const auto& e : ev) {
        const std::string kind = e["event"];
        if (kind == "start" && e.contains("config"))
          row["sampler"] = e["config"].value("sampler", "");
        if (kind == "eval" || (kind == "epoch" && !e.contains("train_s"))) {
          if (!e.contains("test_acc") || !e.contains("steps")) continue;
          s1.x.push_back(e["steps"].get<double>());
          s1.y.push_back(e["test_acc"].get<double>());
          cpu.push_back(e.contains("train_cpu_s") ? e["train_cpu_s"].get<double>()
                                                  : std::numeric_limits<double>::quiet_NaN());
          if (e.contains("train_cpu_s") || e.contains("train_s")) {
            s2.x.push_back(e.value("train_cpu_s", e.value("train_s", 0.0)));
            s2.y.push_back(e["test_acc"].get<double>());
          }
          row["final_test_acc"] = e["test_acc"];
          row["final_steps"] = e["steps"];
          last3.push_back(e["test_acc"].get<double>());
          if (last3.size() > 3) last3.erase(last3.begin());
          const double mean3 = last3.size() == 3 ? (last3[0] + last3[1] + last3[2]) / 3 : 0;
          for (const bool smoothed : {false, true}) {
            const std::string sfx = smoothed ? "_smoothed" : "";
            const double acc = smoothed ? mean3 : e["test_acc"].get<double>();
            if (target > 0 && !row.contains("steps_to_target" + sfx) && acc >= target) {
              row["target_acc"] = target;
              row["steps_to_target" + sfx] = e["steps"];
              for (const char* k :
                   {"wall_s", "train_s", "score_s", "compute_s", "train_cpu_s", "score_cpu_s"})
                if (e.contains(k)) row[std::string(k) + "_to_target" + sfx] = e[k];
            }
          }
        }
        if (kind == "target_reached" && target == 0) {
          row["target_acc"] = e["target_acc"];
          row["steps_to_target"] = e["steps"];
          row["train_s_to_target"] = e["train_s"];
          row["score_s_to_target"] = e["score_s"];
          row["compute_s_to_target"] = e["compute_s"];
          if (e.contains("train_cpu_s")) {
            row["train_cpu_s_to_target"] = e["train_cpu_s"];
            row["score_cpu_s_to_target"] = e["score_cpu_s"];
          }
        }
        if (kind == "epoch" && e.contains("is_overhead")) {
          row["is_overhead"] = e["is_overhead"];
          row["ess"] = e["ess"];
        }
        if (kind == "importance_hist") {
          const auto counts = e["counts"].get<std::vector<double>>();
          double total = 0;
          for (double c : counts) total += c;
          Series h{label + " @" + std::to_string(e["steps"].get<int64_t>()), {}, {}};
          const double hi = e["hi"].get<double>();
          for (std::size_t k = 0; k < counts.size(); ++k) {
            h.x.push_back(hi * (static_cast<double>(k) + 0.5) / static_cast<double>(counts.size()));
            h.y.push_back(total > 0 ? counts[k] / total : 0);
          }
          hist.add(std::move(h));
        }
        if (kind == "rank_change") {
          lag_under10[e["lag"].get<int64_t>()].push_back(e["under10"]);
          if (e.contains("spearman"))
            lag_spearman[e["lag"].get<int64_t>()].push_back(e["spearman"]);
          if (e.contains("top10_kept"))
            lag_top10[e["lag"].get<int64_t>()].push_back(e["top10_kept"]);
        }
      }
      if (s1.x.empty()) {
        throw std::runtime_error("report: '" + f + "' has no eval or epoch events with test_acc");
      }
      curves[f] = EvalCurve{s1.x, s1.y, std::move(cpu)};
      {  // the final accuracy without one evaluation's noise: the mean of the last five
        const auto& a = s1.y;
        const std::size_t n = std::min<std::size_t>(5, a.size());
        double sum = 0;
        for (std::size_t k = a.size() - n; k < a.size(); ++k) sum += a[k];
        row["final_test_acc_last5"] = sum / static_cast<double>(n);
      }
      // Per lag, the mean over the run's periods: one bar series per run and a summary field.
      auto per_lag = [&](const std::map<int64_t, std::vector<double>>& by_lag, const char* field,
                         SvgChart& chart) {
        if (by_lag.empty()) return;
        Series r{label, {}, {}};
        for (const auto& [lag, v] : by_lag) {
          double m = 0;
          for (double x : v) m += x / static_cast<double>(v.size());
          r.x.push_back(static_cast<double>(lag));
          r.y.push_back(m);
          row[field + std::to_string(lag)] = m;
        }
        chart.add(std::move(r));
      };
      per_lag(lag_under10, "rank_moved_under10_lag", ranks);
      per_lag(lag_spearman, "rank_spearman_lag", rho);
      per_lag(lag_top10, "top10_kept_lag", top10);
      by_steps.add(std::move(s1));
      if (!s2.x.empty()) by_time.add(std::move(s2));
      summary.push_back(row);
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("report: '" + current +
                             "': an event lacks a field or has one of the wrong type (" + e.what() +
                             ")");
  }
  auto write = [&](const std::string& name, const std::string& text) {
    io::write_file_atomically((std::filesystem::path(out_dir) / name).string(), text);
    log << "wrote " << (std::filesystem::path(out_dir) / name).string() << "\n";
  };
  write("accuracy_vs_steps.svg", by_steps.render());
  if (!by_time.empty()) write("accuracy_vs_time.svg", by_time.render());
  if (!hist.empty()) write("importance_hist.svg", hist.render());
  if (!ranks.empty()) write("rank_change.svg", ranks.render(true));
  if (!rho.empty()) write("rank_correlation.svg", rho.render(true));
  if (!top10.empty()) write("top10_kept.svg", top10.render(true));
  write("summary.json", summary.dump(2) + "\n");
  SvgChart by_group("Test accuracy, mean over seeds", "optimizer steps", "test accuracy");
  const auto groups = pool_groups(summary, log, curves, target, &by_group);
  write("groups.json", groups.dump(2) + "\n");
  if (!by_group.empty()) write("accuracy_vs_steps_mean.svg", by_group.render());
  return 0;
}

}  // namespace mercury::tools
