// tools/report.hpp — `mercury report`: turns metrics JSON-lines files into SVG plots and a
// summary JSON.
//
//   accuracy_vs_steps.svg, accuracy_vs_time.svg   one line per run ("eval"/"epoch" events)
//   importance_hist.svg                           loss histograms over training (Fig. 3)
//   rank_change.svg                               rank movement after 1 and 10 steps (Fig. 6)
//   summary.json                                  per run: steps and training seconds to the
//                                                 target, final accuracy, T_is/T_cp
// Malformed lines fail with the file and line number; a file with no usable events is named.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/io/atomic_file.hpp"

namespace mercury::tools {

struct Series {
  std::string label;
  std::vector<double> x, y;
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
    if (bars) y0 = std::min(y0, 0.0);
    if (!(x1 > x0)) x1 = x0 + 1;
    if (!(y1 > y0)) y1 = y0 + 1;
    const double pad = (y1 - y0) * 0.05;
    y1 += pad;
    if (!bars) y0 -= pad;
    auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
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
        << "' text-anchor='end'>" << tick(yv) << "</text>\n<text x='" << px(xv) << "' y='"
        << H - B + 16 << "' text-anchor='middle'>" << tick(xv) << "</text>\n";
    }
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
        const double slot = (W - L - R) / std::max<double>(1.0, static_cast<double>(s.x.size()));
        for (std::size_t k = 0; k < s.x.size(); ++k) {
          const double bx = px(s.x[k]) - slot * 0.4 + slot * 0.8 * static_cast<double>(si) / n;
          o << "<rect x='" << bx << "' y='" << py(s.y[k]) << "' width='" << slot * 0.8 / n
            << "' height='" << py(y0) - py(s.y[k]) << "' fill='" << c << "'/>\n";
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
  std::ifstream in(path);
  if (!in) throw std::runtime_error("report: cannot open '" + path + "'");
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

inline int report(const std::vector<std::string>& files, const std::string& out_dir,
                  std::ostream& log) {
  if (files.empty()) throw std::invalid_argument("report: expected at least one metrics file");
  std::filesystem::create_directories(out_dir);
  SvgChart by_steps("Test accuracy", "optimizer steps", "test accuracy");
  SvgChart by_time("Test accuracy", "training CPU seconds (scoring included, evaluation excluded)",
                   "test accuracy");
  SvgChart hist("Importance (loss) histogram", "loss", "fraction of probe samples");
  SvgChart ranks("Rank change", "lag (steps)", "fraction moved < 10% of ranks");
  nlohmann::json summary = nlohmann::json::array();
  for (const auto& f : files) {
    const auto ev = read_metrics(f);
    std::string label = std::filesystem::path(f).stem().string();
    Series s1{label, {}, {}}, s2{label, {}, {}};
    nlohmann::json row = {{"run", label}, {"file", f}};
    std::map<int64_t, std::vector<double>> lag_under10;
    for (const auto& e : ev) {
      const std::string kind = e["event"];
      if (kind == "start" && e.contains("config"))
        row["sampler"] = e["config"].value("sampler", "");
      if (kind == "eval" || (kind == "epoch" && !e.contains("train_s"))) {
        if (!e.contains("test_acc") || !e.contains("steps")) continue;
        s1.x.push_back(e["steps"].get<double>());
        s1.y.push_back(e["test_acc"].get<double>());
        if (e.contains("train_cpu_s") || e.contains("train_s")) {
          s2.x.push_back(e.value("train_cpu_s", e.value("train_s", 0.0)));
          s2.y.push_back(e["test_acc"].get<double>());
        }
        row["final_test_acc"] = e["test_acc"];
      }
      if (kind == "target_reached") {
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
      if (kind == "rank_change") lag_under10[e["lag"].get<int64_t>()].push_back(e["under10"]);
    }
    if (s1.x.empty()) {
      throw std::runtime_error("report: '" + f + "' has no eval or epoch events with test_acc");
    }
    if (!lag_under10.empty()) {
      Series r{label, {}, {}};
      for (const auto& [lag, v] : lag_under10) {
        double m = 0;
        for (double x : v) m += x / static_cast<double>(v.size());
        r.x.push_back(static_cast<double>(lag));
        r.y.push_back(m);
        row["rank_moved_under10_lag" + std::to_string(lag)] = m;
      }
      ranks.add(std::move(r));
    }
    by_steps.add(std::move(s1));
    if (!s2.x.empty()) by_time.add(std::move(s2));
    summary.push_back(row);
  }
  auto write = [&](const std::string& name, const std::string& text) {
    io::write_file_atomically((std::filesystem::path(out_dir) / name).string(), text);
    log << "wrote " << (std::filesystem::path(out_dir) / name).string() << "\n";
  };
  write("accuracy_vs_steps.svg", by_steps.render());
  if (!by_time.empty()) write("accuracy_vs_time.svg", by_time.render());
  if (!hist.empty()) write("importance_hist.svg", hist.render());
  if (!ranks.empty()) write("rank_change.svg", ranks.render(true));
  write("summary.json", summary.dump(2) + "\n");
  return 0;
}

}  // namespace mercury::tools
