// net/shaper.hpp — bandwidth emulation: bandwidth traces, a token-bucket Pacer, its config.
//
// Contract
// - Units: rates in the API are bits per second unless a name says mbps (1 Mbps = 1e6 bit/s,
//   decimal, like link speeds); times in a trace are seconds from the trace's time 0.
// - BandwidthTrace: a piecewise rate r(t) > 0 from `t_seconds,mbps` points (times strictly
//   increasing, the first >= 0, every mbps finite and > 0, at least one point).
//     step:   r(t) = mbps_i on [t_i, t_i+1);    linear: interpolated between t_i and t_i+1.
//     Before the first point r(t) is the first value (also for t < 0).
//     End::hold (default): after the last point r(t) stays at the last value.
//     End::loop: the trace repeats with period P = t_last + (t_last - t_prev) (the last point
//       lasts as long as the interval before it), so a trace generated with step s and n points
//       loops every n·s seconds; for linear, the last point ramps back to the first value over
//       that interval. A one-point trace is constant (loop = hold).
//   rate_bps(t), bits_between(t0, t1) (∫ r) and time_to_send(t0, bits) (the t1 with
//   bits_between(t0, t1) = bits) are exact for both interpolations (closed forms per segment,
//   up to floating-point rounding), O(log n + segments crossed).
//   load(path) parses the CSV strictly: an optional header line `t_seconds,mbps`, `#` comment
//   lines, blank lines, CRLF tolerated, spaces around fields tolerated, nothing else. Every error
//   throws ShaperError naming file:line, what was expected and what was found, e.g.
//     trace.csv:7: expected 't_seconds,mbps' with finite mbps > 0, found '3.5,-2'
// - generate_trace(): a fluctuating trace around a set point — a mean-reverting AR(1) series
//   (lag-1 correlation 0.8 per step, Gaussian noise from our own Box-Muller over mt19937_64, not
//   the implementation-defined std::normal_distribution, so a seed means the same trace with any
//   standard library) rescaled so its mean is exactly the set point and its mean absolute
//   deviation exactly `mad_fraction` of it, then clipped at 5% of the set point and rounded to
//   0.001 Mbps (so write_csv → load round-trips bit for bit).
// - TokenBucketPacer (a net::Pacer, see net/pacing.hpp): a virtual-clock token bucket. Each
//   bucket keeps the time its emulated channel is next free (tat). reserve_at(peer, n, now):
//     start   = max(tat, now)
//     finish  = the time n bytes are done starting at `start` (trace.time_to_send, exact)
//     release = max(now, finish - burst)        tat := finish      (one CAS, lock-free)
//   reserve() returns `release`: when the writer may put the slice on the wire. Back to back,
//   slices go out at exactly the trace's rate, `burst` ahead of the virtual channel, so timer
//   jitter below `burst` costs no throughput; an idle bucket banks at most `burst` of credit.
//   Trace time 0 is PacerOptions::epoch (default: construction). Modes:
//     ShapingMode::link   — one bucket per peer: each link has the full rate.
//     ShapingMode::medium — one bucket for every link of this process: one Wi-Fi channel shared
//                           by all links (two busy links get half the rate each).
//   Cross-process medium: with PacerOptions::shared_medium_file set (make_pacer sets it to
//   /dev/shm/mercury-medium-<MERCURY_RUN_ID> in medium mode) the bucket lives in that file,
//   mmap'ed by every process of the run on this machine: tat is an int64 of nanoseconds on
//   CLOCK_MONOTONIC (steady_clock on Linux; system-wide, so comparable across processes),
//   updated by CAS through std::atomic_ref. The first process to attach (under flock) sets the
//   trace epoch and a fingerprint of the bandwidth; a later one with a different bandwidth is
//   rejected (ShaperError naming both). An attach count is kept; the last pacer to detach
//   unlinks the file. A run that crashes leaves the file behind: harmless for a fixed rate, but
//   a trace would continue from the old epoch — use a fresh run id or remove the file. A fork()ed
//   child must not destroy a pacer it inherited (exec or _exit), or it would detach twice.
//   Unlimited bandwidth (no trace) is allowed: reserve returns now; the pacer then only slices
//   writes and adds latency().
//   Thread-safe; per-link mode looks a peer's bucket up in a map under a small mutex (once per
//   slice, not per byte).
// - ShaperConfig / parse_bandwidth / shaper_config_from_env / make_pacer: the knobs, read in one
//   place. Environment (empty = unset):
//     MERCURY_BANDWIDTH              '10mbps' | '1.5gbps' | '800kbps' | 'off' (kbps/mbps/gbps,
//                                    any case; a plain decimal number > 0, no sign or exponent)
//     MERCURY_BANDWIDTH_TRACE        a `t_seconds,mbps` CSV (loaded at once; not with a rate)
//     MERCURY_BANDWIDTH_TRACE_INTERP step | linear (default step; only with a trace)
//     MERCURY_BANDWIDTH_TRACE_END    hold | loop (default hold; only with a trace)
//     MERCURY_BANDWIDTH_MODE         link | medium (default link)
//     MERCURY_LATENCY_MS             one-way delay in ms, a decimal in [0, 60000] (default 0)
//     MERCURY_RUN_ID                 1-64 of [A-Za-z0-9._-]; with medium mode the channel is
//                                    shared by every process of the run on this machine
//   Each bad value throws ShaperError naming the variable, what was expected and what was
//   found. make_pacer() returns nullptr when nothing is shaped (no rate, no trace, no latency).
//
// Committed traces (bench/traces/), made with write_csv(generate_trace(...)) and its comment:
//   wifi_10mbps_fluct.csv      generate_trace(10, 0.10, 60, 0.5, /*seed=*/1)
//   wifi_50mbps_fluct.csv      generate_trace(50, 0.10, 60, 0.5, /*seed=*/2)
//   step_drop_100_to_20.csv    BandwidthTrace({{0, 100}, {10, 20}}): 100 Mbps for 10 s, then 20
//   (tests/unit/test_shaper.cpp checks each file still equals its generator call).
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mercury/base/hash.hpp"
#include "mercury/base/random.hpp"
#include "net/address.hpp"
#include "net/file_kind.hpp"
#include "net/pacing.hpp"

namespace mercury::net {

// Bad trace, bad bandwidth setting, or a shared medium that cannot be attached.
class ShaperError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace shaper_detail {

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// A whole-string decimal (from_chars: no leading '+', no spaces); nullopt when not a number.
inline std::optional<double> parse_double(std::string_view s) {
  double value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// Digits with at most one '.', at least one digit: no sign, exponent, inf or nan.
inline std::optional<double> parse_plain_decimal(std::string_view s) {
  int digits = 0, dots = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c == '.') {
      ++dots;
    } else {
      return std::nullopt;
    }
  }
  if (digits == 0 || dots > 1) return std::nullopt;
  return parse_double(s);
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// Shortest representation that reads back to the same double.
inline std::string format_double(double v) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string(buffer, ec == std::errc() ? end : buffer);
}

// What is wrong with point (t, mbps) after a point at prev_t (nullopt: first point), as the
// "with ..." phrase of an error; nullopt when the point is fine.
// Shapeable rates: 1 kbit/s .. 1 Tbit/s. A slower link would take years per frame (and turns
// nanosecond arithmetic into overflow); a faster one is not a link this shaper can emulate.
inline constexpr double kMinMbps = 1e-3;
inline constexpr double kMaxMbps = 1e6;

inline std::optional<std::string> point_problem(std::optional<double> prev_t, double t,
                                                double mbps) {
  if (!std::isfinite(t)) return std::string("with finite t_seconds");
  if (!prev_t && t < 0) return std::string("with t_seconds >= 0");
  if (prev_t && !(t > *prev_t)) {
    return "with t_seconds > " + format_double(*prev_t) + " (strictly increasing)";
  }
  if (!(mbps > 0) || !std::isfinite(mbps)) return std::string("with finite mbps > 0");
  if (mbps < kMinMbps || mbps > kMaxMbps)  // beyond, the bucket's time arithmetic overflows
    return "with mbps in [" + format_double(kMinMbps) + ", " + format_double(kMaxMbps) + "]";
  return std::nullopt;
}

// A found text for an error message, cut at 80 characters (a binary file has long "lines").
inline std::string excerpt(std::string_view s) {
  return s.size() <= 80 ? std::string(s) : std::string(s.substr(0, 77)) + "...";
}

// flock, retried on EINTR.
inline int lock_file(int fd, int operation) {
  int rc = 0;
  do {
    rc = ::flock(fd, operation);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

}  // namespace shaper_detail

// ---- BandwidthTrace -----------------------------------------------------------------------------

class BandwidthTrace {
 public:
  enum class Interpolation { step, linear };
  enum class End { hold, loop };
  struct Point {
    double t_seconds = 0;
    double mbps = 0;
    bool operator==(const Point&) const = default;
  };

  // Validates the points (ShaperError "<source>: point <i>: expected ..., found ...").
  explicit BandwidthTrace(std::vector<Point> points, Interpolation interpolation = {}, End end = {},
                          std::string source = "trace")
      : points_(std::move(points)),
        interpolation_(interpolation),
        end_(end),
        source_(std::move(source)) {
    if (points_.empty()) {
      throw ShaperError(source_ + ": expected at least one 't_seconds,mbps' point, found none");
    }
    for (std::size_t i = 0; i < points_.size(); ++i) {
      const std::optional<double> prev =
          i ? std::optional<double>(points_[i - 1].t_seconds) : std::nullopt;
      if (auto problem =
              shaper_detail::point_problem(prev, points_[i].t_seconds, points_[i].mbps)) {
        throw ShaperError(source_ + ": point " + std::to_string(i) +
                          ": expected 't_seconds,mbps' " + *problem + ", found '" +
                          row_text(points_[i]) + "'");
      }
    }
    build_segments();
  }

  static BandwidthTrace constant(double mbps) { return BandwidthTrace({{0, mbps}}); }

  // Parses CSV text; `source` names it in errors (the file name for load()).
  static BandwidthTrace parse(std::string_view text, const std::string& source,
                              Interpolation interpolation = {}, End end = {}) {
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // a UTF-8 byte order mark
    std::vector<Point> points;
    bool seen_row = false;
    std::size_t line_no = 0;
    while (!text.empty()) {
      const std::size_t nl = text.find('\n');
      const std::string_view raw = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      ++line_no;
      const std::string_view line = shaper_detail::trim(raw);
      if (line.empty() || line.front() == '#') continue;
      const std::string where = source + ":" + std::to_string(line_no) + ": ";
      const std::size_t comma = line.find(',');
      const std::string_view first = shaper_detail::trim(
          line.substr(0, comma == std::string_view::npos ? line.size() : comma));
      const std::string_view second = comma == std::string_view::npos
                                          ? std::string_view()
                                          : shaper_detail::trim(line.substr(comma + 1));
      if (!seen_row && first == "t_seconds" && second == "mbps" &&
          line.find(',', comma + 1) == std::string_view::npos) {
        seen_row = true;  // the header, allowed only as the first row
        continue;
      }
      seen_row = true;
      const auto t = shaper_detail::parse_double(first);
      const auto mbps =
          comma == std::string_view::npos || second.find(',') != std::string_view::npos
              ? std::nullopt
              : shaper_detail::parse_double(second);
      if (!t || !mbps) {
        throw ShaperError(where + "expected 't_seconds,mbps' (two numbers), found '" +
                          shaper_detail::excerpt(line) + "'");
      }
      const std::optional<double> prev =
          points.empty() ? std::nullopt : std::optional<double>(points.back().t_seconds);
      if (auto problem = shaper_detail::point_problem(prev, *t, *mbps)) {
        throw ShaperError(where + "expected 't_seconds,mbps' " + *problem + ", found '" +
                          shaper_detail::excerpt(line) + "'");
      }
      points.push_back({*t, *mbps});
    }
    if (points.empty()) {
      throw ShaperError(source + ": expected at least one 't_seconds,mbps' row, found none");
    }
    return BandwidthTrace(std::move(points), interpolation, end, source);
  }

  static BandwidthTrace load(const std::string& path, Interpolation interpolation = {},
                             End end = {}) {
    std::string text;
    try {  // a FIFO or device is refused, not waited on
      text = read_regular_file(path, "bandwidth trace");
    } catch (const FileKindError& e) {
      throw ShaperError(path + ": expected a readable 't_seconds,mbps' trace file; " + e.reason());
    }
    return parse(text, path, interpolation, end);
  }

  // Writes `# <comment line>`s, the header and the points (shortest round-trip form) to a temp
  // file, then renames it over `path`.
  void write_csv(const std::string& path, const std::string& comment = "") const {
    std::string text;
    std::string_view rest = comment;
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      text += "# " + std::string(rest.substr(0, nl)) + "\n";
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
    text += "t_seconds,mbps\n";
    for (const Point& p : points_) text += row_text(p) + "\n";
    try {  // never rename over a device, FIFO or directory
      check_output_path(path, "trace output");
    } catch (const FileKindError& e) {
      throw ShaperError(e.what());
    }
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.flush();
      if (!out) throw ShaperError(tmp + ": cannot write: " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      const std::string reason = std::strerror(errno);
      std::remove(tmp.c_str());
      throw ShaperError(path + ": cannot rename " + tmp + " over it: " + reason);
    }
  }

  const std::vector<Point>& points() const { return points_; }
  Interpolation interpolation() const { return interpolation_; }
  End end() const { return end_; }
  const std::string& source() const { return source_; }
  // Loop period in seconds (End::loop with >= 2 points), else +infinity.
  double period() const { return period_; }

  double rate_bps(double t) const {
    if (t < 0) return segments_.front().r0;
    double base = 0;
    const std::size_t i = locate(t, base);
    return segments_[i].rate_at(t - base);
  }

  // ∫ r over [t0, t1] in bits (0 when t1 <= t0 or either is NaN; infinite when either is).
  double bits_between(double t0, double t1) const {
    if (!(t1 > t0)) return 0;
    if (!std::isfinite(t0) || !std::isfinite(t1)) return std::numeric_limits<double>::infinity();
    double bits = 0;
    if (t0 < 0) {
      const double until = std::min(t1, 0.0);
      bits += segments_.front().r0 * (until - t0);
      t0 = until;
      if (t0 >= t1) return bits;
    }
    double base = 0;
    std::size_t i = locate(t0, base);
    double tau = t0 - base;
    for (;;) {
      const Segment& s = segments_[i];
      const double stop = t1 - base;
      if (stop <= s.end) return bits + s.integral(tau, stop);
      bits += s.integral(tau, s.end);
      if (++i < segments_.size()) {
        tau = segments_[i].start;
        continue;
      }
      i = 0, tau = 0, base += period_;  // only End::loop reaches past the last segment
      const double periods = std::floor((t1 - base) / period_);
      if (periods >= 1) bits += periods * period_bits_, base += periods * period_;
    }
  }

  // The time at which `bits` are done when sending from t0 (t0 when bits <= 0 or NaN, or t0 is
  // not finite).
  double time_to_send(double t0, double bits) const {
    if (!(bits > 0) || !std::isfinite(t0)) return t0;
    if (t0 < 0) {
      const double before_zero = segments_.front().r0 * -t0;
      if (bits <= before_zero) return t0 + bits / segments_.front().r0;
      bits -= before_zero;
      t0 = 0;
    }
    double base = 0;
    std::size_t i = locate(t0, base);
    double tau = t0 - base;
    for (;;) {
      const Segment& s = segments_[i];
      const double available = std::isinf(s.end) ? s.end : s.integral(tau, s.end);
      if (bits <= available) return base + tau + s.solve(tau, bits);
      bits -= available;
      if (++i < segments_.size()) {
        tau = segments_[i].start;
        continue;
      }
      i = 0, tau = 0, base += period_;  // only End::loop reaches past the last segment
      if (bits >= period_bits_) {
        const double periods = std::floor(bits / period_bits_);
        bits = std::max(0.0, bits - periods * period_bits_);
        base += periods * period_;
      }
    }
  }

  // A one-line human description (errors, shared-medium mismatch messages).
  std::string describe() const {
    if (points_.size() == 1) return shaper_detail::format_double(points_[0].mbps) + " Mbps";
    return "trace '" + source_ + "' (" + std::to_string(points_.size()) + " points, " +
           (interpolation_ == Interpolation::step ? "step" : "linear") + ", " +
           (end_ == End::hold ? "hold" : "loop") + ")";
  }

  // Hash of what defines r(t) (not the source name).
  uint64_t fingerprint() const {
    uint64_t h = base::kFnv64Offset;
    const int kinds[2] = {static_cast<int>(interpolation_), static_cast<int>(end_)};
    h = base::fnv1a64(kinds, sizeof kinds, h);
    for (const Point& p : points_) h = base::fnv1a64(&p, sizeof p, h);
    return h;
  }

 private:
  // Rate r0 at `start` going linearly to r1 at `end` (r0 == r1: constant; end may be +inf).
  struct Segment {
    double start, end, r0, r1;
    double slope() const { return r1 == r0 ? 0.0 : (r1 - r0) / (end - start); }
    double rate_at(double t) const { return r1 == r0 ? r0 : r0 + slope() * (t - start); }
    double integral(double a, double b) const { return 0.5 * (rate_at(a) + rate_at(b)) * (b - a); }
    // dt with ∫_a^{a+dt} r = bits: r_a·dt + k·dt²/2 = bits, in the cancellation-free form.
    double solve(double a, double bits) const {
      const double ra = rate_at(a), k = slope();
      const double disc = std::max(0.0, ra * ra + 2 * k * bits);
      return 2 * bits / (ra + std::sqrt(disc));
    }
  };

  static std::string row_text(const Point& p) {
    return shaper_detail::format_double(p.t_seconds) + "," + shaper_detail::format_double(p.mbps);
  }

  void build_segments() {
    const bool step = interpolation_ == Interpolation::step;
    const std::size_t n = points_.size();
    auto bps = [&](std::size_t i) { return points_[i].mbps * 1e6; };
    if (points_[0].t_seconds > 0) segments_.push_back({0, points_[0].t_seconds, bps(0), bps(0)});
    for (std::size_t i = 0; i + 1 < n; ++i) {
      segments_.push_back(
          {points_[i].t_seconds, points_[i + 1].t_seconds, bps(i), step ? bps(i) : bps(i + 1)});
    }
    const double last_t = points_[n - 1].t_seconds;
    if (end_ == End::loop && n >= 2) {
      period_ = last_t + (last_t - points_[n - 2].t_seconds);
      segments_.push_back({last_t, period_, bps(n - 1), step ? bps(n - 1) : bps(0)});
      period_bits_ = 0;
      for (const Segment& s : segments_) period_bits_ += s.integral(s.start, s.end);
    } else {
      segments_.push_back(
          {last_t, std::numeric_limits<double>::infinity(), bps(n - 1), bps(n - 1)});
    }
  }

  // The segment holding t >= 0; `base` receives the start of t's period (0 unless looping).
  std::size_t locate(double t, double& base) const {
    base = 0;
    if (!std::isinf(period_)) {
      base = std::floor(t / period_) * period_;
      if (t - base >= period_) base += period_;
      if (t - base < 0) base -= period_;
    }
    const double tau = t - base;
    const auto it = std::upper_bound(segments_.begin(), segments_.end(), tau,
                                     [](double v, const Segment& s) { return v < s.start; });
    return it == segments_.begin() ? 0 : static_cast<std::size_t>(it - segments_.begin() - 1);
  }

  std::vector<Point> points_;
  Interpolation interpolation_;
  End end_;
  std::string source_;
  std::vector<Segment> segments_;
  double period_ = std::numeric_limits<double>::infinity();
  double period_bits_ = 0;
};

// Mean absolute deviation of a trace's point values from their mean, relative to the mean
// (the generator's fluctuation statistic).
inline double mean_abs_deviation_fraction(const BandwidthTrace& trace) {
  const auto& points = trace.points();
  double mean = 0;
  for (const auto& p : points) mean += p.mbps;
  mean /= static_cast<double>(points.size());
  double mad = 0;
  for (const auto& p : points) mad += std::abs(p.mbps - mean);
  return mad / static_cast<double>(points.size()) / mean;
}

// A fluctuating trace: points every `step_s` over [0, duration_s), mean `set_point_mbps`, mean
// absolute deviation `mad_fraction` of the mean (see the contract at the top). Deterministic by
// seed. Throws ShaperError on a bad argument.
inline BandwidthTrace generate_trace(
    double set_point_mbps, double mad_fraction = 0.10, double duration_s = 60, double step_s = 0.5,
    uint64_t seed = 1,
    BandwidthTrace::Interpolation interpolation = BandwidthTrace::Interpolation::step,
    BandwidthTrace::End end = BandwidthTrace::End::hold) {
  using shaper_detail::format_double;
  if (!(set_point_mbps > 0) || !std::isfinite(set_point_mbps)) {
    throw ShaperError("generate_trace: expected a finite set point > 0 Mbps, found " +
                      format_double(set_point_mbps));
  }
  if (!(mad_fraction >= 0 && mad_fraction <= 0.5)) {
    throw ShaperError(
        "generate_trace: expected a mean absolute deviation fraction in [0, 0.5], "
        "found " +
        format_double(mad_fraction));
  }
  if (!(step_s > 0) || !(duration_s >= step_s) || !(duration_s / step_s <= 1e6)) {
    throw ShaperError(
        "generate_trace: expected 0 < step_s <= duration_s and at most 1e6 steps, "
        "found step_s " +
        format_double(step_s) + ", duration_s " + format_double(duration_s));
  }
  const auto n = static_cast<std::size_t>(std::ceil(duration_s / step_s - 1e-9));
  std::mt19937_64 rng(seed);
  auto gaussian = [&] {
    const double u1 = base::uniform_open(rng);
    return base::box_muller(u1, base::uniform_open(rng));
  };
  constexpr double kPhi = 0.8;
  std::vector<double> x(n);
  x[0] = gaussian();
  for (std::size_t i = 1; i < n; ++i)
    x[i] = kPhi * x[i - 1] + std::sqrt(1 - kPhi * kPhi) * gaussian();
  double mean = 0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(n);
  double mad = 0;
  for (double v : x) mad += std::abs(v - mean);
  mad /= static_cast<double>(n);
  const double scale = mad > 0 ? mad_fraction * set_point_mbps / mad : 0.0;
  std::vector<BandwidthTrace::Point> points(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double mbps = std::max(0.05 * set_point_mbps, set_point_mbps + scale * (x[i] - mean));
    points[i].t_seconds = std::round(static_cast<double>(i) * step_s * 1e6) / 1e6;
    points[i].mbps = std::max(0.001, std::round(mbps * 1000) / 1000);
  }
  return BandwidthTrace(std::move(points), interpolation, end, "generated");
}

// ---- TokenBucketPacer ---------------------------------------------------------------------------

enum class ShapingMode { link, medium };

inline constexpr std::size_t kDefaultSliceBytes = std::size_t{16} * 1024;
inline constexpr std::chrono::nanoseconds kDefaultBurst = std::chrono::milliseconds(5);

struct PacerOptions {
  ShapingMode mode = ShapingMode::link;
  std::size_t slice_bytes = kDefaultSliceBytes;    // largest write per reserve(); > 0
  std::chrono::nanoseconds burst = kDefaultBurst;  // how far writes may run ahead; >= 0
  std::chrono::nanoseconds latency{0};             // one-way delay the writer adds; >= 0
  // Trace time 0 (default: construction). A shared medium file's epoch, once set, wins.
  std::optional<std::chrono::steady_clock::time_point> epoch;
  // Medium mode only: keep the bucket in this file (mmap'ed) to share it across processes.
  std::string shared_medium_file;
};

// The cross-process medium file of a run: /dev/shm/mercury-medium-<run_id>.
inline std::string shared_medium_path(const std::string& run_id) {
  return "/dev/shm/mercury-medium-" + run_id;
}

class TokenBucketPacer : public Pacer {
 public:
  using Clock = std::chrono::steady_clock;

  struct Reservation {
    Clock::time_point start;    // the slice starts occupying the emulated channel
    Clock::time_point finish;   // ... and has fully left it
    Clock::time_point release;  // when the writer may write it: max(now, finish - burst)
  };

  // `trace` nullopt: unlimited rate (slicing and latency only).
  explicit TokenBucketPacer(std::optional<BandwidthTrace> trace, PacerOptions options = {})
      : trace_(std::move(trace)), options_(std::move(options)) {
    if (options_.slice_bytes == 0) {
      throw ShaperError("TokenBucketPacer: expected slice_bytes > 0, found 0");
    }
    if (options_.burst.count() < 0 || options_.latency.count() < 0) {
      throw ShaperError("TokenBucketPacer: expected burst >= 0 and latency >= 0, found burst " +
                        std::to_string(options_.burst.count()) + " ns, latency " +
                        std::to_string(options_.latency.count()) + " ns");
    }
    epoch_ns_ = to_ns(options_.epoch.value_or(Clock::now()));
    if (!options_.shared_medium_file.empty()) {
      if (options_.mode != ShapingMode::medium) {
        throw ShaperError("TokenBucketPacer: shared_medium_file '" + options_.shared_medium_file +
                          "': expected medium mode, found link mode");
      }
      attach_shared_medium();
    }
  }
  explicit TokenBucketPacer(double rate_bps, PacerOptions options = {})
      : TokenBucketPacer(BandwidthTrace::constant(checked_rate(rate_bps) / 1e6),
                         std::move(options)) {}

  TokenBucketPacer(const TokenBucketPacer&) = delete;
  TokenBucketPacer& operator=(const TokenBucketPacer&) = delete;
  ~TokenBucketPacer() override { detach_shared_medium(); }

  Clock::time_point reserve(int peer, std::size_t bytes) override {
    return reserve_at(peer, bytes, Clock::now()).release;
  }

  // reserve() with an explicit `now`: deterministic for tests and the simulator.
  Reservation reserve_at(int peer, std::size_t bytes, Clock::time_point now) {
    const int64_t now_ns = to_ns(now);
    if (!trace_ || bytes == 0) return {now, now, now};
    std::atomic_ref<int64_t> tat(bucket(peer));
    const double bits = 8.0 * static_cast<double>(bytes);
    int64_t prev = tat.load(std::memory_order_relaxed);
    int64_t start = 0, finish = 0;
    do {
      start = std::max(prev, now_ns);
      const double t1 = trace_->time_to_send(1e-9 * static_cast<double>(start - epoch_ns_), bits);
      finish = std::max(start, epoch_ns_ + static_cast<int64_t>(std::llround(t1 * 1e9)));
    } while (!tat.compare_exchange_weak(prev, finish, std::memory_order_acq_rel,
                                        std::memory_order_relaxed));
    const int64_t release = std::max(now_ns, finish - options_.burst.count());
    return {from_ns(start), from_ns(finish), from_ns(release)};
  }

  std::size_t slice_bytes() const override { return options_.slice_bytes; }
  std::chrono::nanoseconds latency() const override { return options_.latency; }

  // nullptr when unlimited.
  const BandwidthTrace* trace() const { return trace_ ? &*trace_ : nullptr; }
  const PacerOptions& options() const { return options_; }
  // Trace time 0 (a shared medium's epoch when attached to one).
  Clock::time_point epoch() const { return from_ns(epoch_ns_); }

 private:
  // The mapped medium file's layout; every field accessed through std::atomic_ref.
  struct SharedMedium {
    uint64_t magic;
    uint64_t fingerprint;
    int64_t epoch_ns;
    int64_t tat_ns;
    int64_t attached;
    char description[216];
  };
  static constexpr uint64_t kMediumMagic = 0x3144454d4352454dull;  // "MERCMED1"
  static constexpr std::size_t kMediumFileBytes = 4096;
  static_assert(sizeof(SharedMedium) <= kMediumFileBytes);
  static_assert(std::atomic_ref<int64_t>::is_always_lock_free &&
                    std::atomic_ref<uint64_t>::is_always_lock_free,
                "the shared medium needs address-free (lock-free) 64-bit atomics");

  struct Bucket {
    alignas(std::atomic_ref<int64_t>::required_alignment) int64_t tat_ns =
        std::numeric_limits<int64_t>::min();
  };

  static double checked_rate(double rate_bps) {
    if (!(rate_bps >= shaper_detail::kMinMbps * 1e6 && rate_bps <= shaper_detail::kMaxMbps * 1e6)) {
      throw ShaperError("TokenBucketPacer: expected a rate in [1e3, 1e12] bit/s, found " +
                        shaper_detail::format_double(rate_bps));
    }
    return rate_bps;
  }
  static int64_t to_ns(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  static Clock::time_point from_ns(int64_t ns) {
    return Clock::time_point(
        std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
  }

  int64_t& bucket(int peer) {
    if (medium_ != nullptr) return medium_->tat_ns;
    if (options_.mode == ShapingMode::medium) return shared_.tat_ns;
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = links_[peer];
    if (!slot) slot = std::make_unique<Bucket>();
    return slot->tat_ns;
  }

  std::string description() const { return trace_ ? trace_->describe() : std::string("unlimited"); }
  uint64_t fingerprint() const { return trace_ ? trace_->fingerprint() : 0; }

  [[noreturn]] void fail_medium(const std::string& what) {
    const std::string reason = std::strerror(errno);
    if (fd_ >= 0) ::close(fd_), fd_ = -1;
    throw ShaperError("shared medium '" + options_.shared_medium_file + "': " + what + ": " +
                      reason);
  }

  // Opens (creating if needed) and maps the file; under flock: initialise or check it, count us.
  void attach_shared_medium() {
    const std::string& path = options_.shared_medium_file;
    for (int attempt = 0;; ++attempt) {
      const std::string kind = file_kind(path);  // a FIFO or device is never opened
      if (kind != "missing" && kind != "a regular file") {
        throw ShaperError("shared-medium file '" + path + "': expected a regular file, found " +
                          kind);
      }
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
      if (fd_ < 0) fail_medium("cannot open");
      if (shaper_detail::lock_file(fd_, LOCK_EX) != 0) fail_medium("cannot lock");
      struct stat info {};
      if (::fstat(fd_, &info) != 0) fail_medium("cannot stat");
      if (info.st_nlink == 0 && attempt < 100) {  // the last user unlinked it meanwhile: retry
        ::close(fd_);
        continue;
      }
      if (info.st_size == 0 && ::ftruncate(fd_, kMediumFileBytes) != 0) fail_medium("cannot size");
      if (info.st_size != 0 && info.st_size != static_cast<off_t>(kMediumFileBytes)) {
        ::close(fd_), fd_ = -1;
        throw ShaperError("shared medium '" + path + "': expected a file of " +
                          std::to_string(kMediumFileBytes) + " bytes, found " +
                          std::to_string(info.st_size) + " (not a medium file? remove it)");
      }
      break;
    }
    void* map = ::mmap(nullptr, kMediumFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) fail_medium("cannot mmap");
    medium_ = static_cast<SharedMedium*>(map);
    std::atomic_ref<uint64_t> magic(medium_->magic);
    const uint64_t found_magic = magic.load(std::memory_order_acquire);
    if (found_magic == 0) {
      const std::string mine = description();
      std::memset(medium_->description, 0, sizeof medium_->description);
      std::memcpy(medium_->description, mine.data(),
                  std::min(mine.size(), sizeof medium_->description - 1));
      std::atomic_ref<uint64_t>(medium_->fingerprint).store(fingerprint());
      std::atomic_ref<int64_t>(medium_->epoch_ns).store(epoch_ns_);
      std::atomic_ref<int64_t>(medium_->tat_ns).store(std::numeric_limits<int64_t>::min());
      std::atomic_ref<int64_t>(medium_->attached).store(0);
      magic.store(kMediumMagic, std::memory_order_release);
    } else if (found_magic != kMediumMagic) {
      release_medium(false);
      throw ShaperError("shared medium '" + path + "': expected magic 'MERCMED1', found 0x" +
                        hex(found_magic) + " (not a medium file? remove it)");
    } else if (std::atomic_ref<uint64_t>(medium_->fingerprint).load() != fingerprint()) {
      const std::string theirs(medium_->description,
                               strnlen(medium_->description, sizeof medium_->description));
      release_medium(false);
      throw ShaperError("shared medium '" + path + "': expected the bandwidth of this process (" +
                        description() + "), found another process's (" + theirs +
                        "); every process of a run must shape alike (or remove a stale file)");
    }
    epoch_ns_ = std::atomic_ref<int64_t>(medium_->epoch_ns).load();
    std::atomic_ref<int64_t>(medium_->attached).fetch_add(1);
    shaper_detail::lock_file(fd_, LOCK_UN);
  }

  void detach_shared_medium() {
    if (medium_ == nullptr) return;
    shaper_detail::lock_file(fd_, LOCK_EX);
    const bool last = std::atomic_ref<int64_t>(medium_->attached).fetch_sub(1) == 1;
    release_medium(last);
  }

  // Unmaps and closes (the lock goes with the descriptor); unlinks first when `unlink_file`.
  void release_medium(bool unlink_file) {
    if (unlink_file) ::unlink(options_.shared_medium_file.c_str());
    ::munmap(medium_, kMediumFileBytes);
    medium_ = nullptr;
    ::close(fd_);
    fd_ = -1;
  }

  static std::string hex(uint64_t v) {
    char buffer[17];
    std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(v));
    return buffer;
  }

  std::optional<BandwidthTrace> trace_;
  PacerOptions options_;
  int64_t epoch_ns_ = 0;
  Bucket shared_;                                           // medium mode, in-process
  std::mutex mu_;                                           // guards links_ (the map, not tat)
  std::unordered_map<int, std::unique_ptr<Bucket>> links_;  // link mode
  SharedMedium* medium_ = nullptr;                          // medium mode, cross-process
  int fd_ = -1;
};

// ---- ShaperConfig -------------------------------------------------------------------------------

// The bandwidth-emulation knobs (read in one place: shaper_config_from_env or the CLI).
struct ShaperConfig {
  std::optional<double> rate_bps;       // fixed rate in bit/s
  std::optional<BandwidthTrace> trace;  // or a trace (exclusive with rate_bps)
  std::string run_id;                   // medium mode: share the channel across processes
  PacerOptions pacer;                   // mode, slice, burst, latency, epoch
  bool shaped() const { return rate_bps || trace || pacer.latency.count() > 0; }
};

// "10mbps" | "1.5gbps" | "800kbps" (unit any case) → bit/s; "off" → nullopt. `what` names the
// setting in errors.
inline std::optional<double> parse_bandwidth(std::string_view text,
                                             std::string_view what = "bandwidth") {
  const std::string found(text);
  auto fail = [&](const std::string& detail) -> std::optional<double> {
    throw ShaperError(std::string(what) +
                      ": expected a rate like '10mbps', '1.5gbps', '800kbps' or 'off'" + detail +
                      ", found '" + found + "'");
  };
  const std::string lowered = shaper_detail::lower(text);
  if (lowered == "off") return std::nullopt;
  const std::pair<std::string_view, double> units[] = {{"kbps", 1e3}, {"mbps", 1e6}, {"gbps", 1e9}};
  for (const auto& [unit, scale] : units) {
    if (lowered.size() <= unit.size() || !lowered.ends_with(unit)) continue;
    const auto number = shaper_detail::parse_plain_decimal(
        std::string_view(lowered).substr(0, lowered.size() - unit.size()));
    if (!number) return fail(" (a plain decimal number, then the unit)");
    if (!(*number > 0)) return fail(" (> 0; 'off' disables shaping)");
    const double bps = *number * scale;
    if (!(bps >= shaper_detail::kMinMbps * 1e6 && bps <= shaper_detail::kMaxMbps * 1e6))
      return fail(" (between 1kbps and 1000000mbps)");
    return bps;
  }
  return fail(" (the unit kbps, mbps or gbps is required)");
}

// Reads the MERCURY_* shaping variables through `lookup` (nullptr or "" = unset).
inline ShaperConfig shaper_config_from_env(const std::function<const char*(const char*)>& lookup) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    const char* value = lookup(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
  auto bad = [](const char* name, const std::string& expected, const std::string& found) {
    return ShaperError(std::string(name) + ": expected " + expected + ", found '" + found + "'");
  };
  auto without_trace = [](const char* name, const std::string& found) {
    return ShaperError(std::string(name) +
                       ": expected only alongside MERCURY_BANDWIDTH_TRACE, found '" + found +
                       "' with no trace set");
  };
  ShaperConfig config;
  const auto bandwidth = get("MERCURY_BANDWIDTH");
  if (bandwidth) config.rate_bps = parse_bandwidth(*bandwidth, "MERCURY_BANDWIDTH");

  using Trace = BandwidthTrace;
  Trace::Interpolation interpolation = Trace::Interpolation::step;
  Trace::End end = Trace::End::hold;
  const auto trace_path = get("MERCURY_BANDWIDTH_TRACE");
  if (const auto v = get("MERCURY_BANDWIDTH_TRACE_INTERP")) {
    if (*v != "step" && *v != "linear") {
      throw bad("MERCURY_BANDWIDTH_TRACE_INTERP", "'step' or 'linear'", *v);
    }
    if (!trace_path) throw without_trace("MERCURY_BANDWIDTH_TRACE_INTERP", *v);
    interpolation = *v == "step" ? Trace::Interpolation::step : Trace::Interpolation::linear;
  }
  if (const auto v = get("MERCURY_BANDWIDTH_TRACE_END")) {
    if (*v != "hold" && *v != "loop")
      throw bad("MERCURY_BANDWIDTH_TRACE_END", "'hold' or 'loop'", *v);
    if (!trace_path) throw without_trace("MERCURY_BANDWIDTH_TRACE_END", *v);
    end = *v == "hold" ? Trace::End::hold : Trace::End::loop;
  }
  if (trace_path) {
    if (config.rate_bps) {
      throw bad("MERCURY_BANDWIDTH_TRACE",
                "no fixed rate alongside it (MERCURY_BANDWIDTH is '" + *bandwidth +
                    "'; set it to 'off' or unset it)",
                *trace_path);
    }
    try {
      config.trace = Trace::load(*trace_path, interpolation, end);
    } catch (const ShaperError& error) {
      throw ShaperError(std::string("MERCURY_BANDWIDTH_TRACE: ") + error.what());
    }
  }
  if (const auto v = get("MERCURY_BANDWIDTH_MODE")) {
    if (*v != "link" && *v != "medium")
      throw bad("MERCURY_BANDWIDTH_MODE", "'link' or 'medium'", *v);
    config.pacer.mode = *v == "link" ? ShapingMode::link : ShapingMode::medium;
  }
  if (const auto v = get("MERCURY_LATENCY_MS")) {
    const auto ms = shaper_detail::parse_plain_decimal(*v);
    if (!ms || *ms > 60000) {
      throw bad("MERCURY_LATENCY_MS", "milliseconds as a decimal in [0, 60000] (e.g. '20', '0.5')",
                *v);
    }
    config.pacer.latency = std::chrono::nanoseconds(std::llround(*ms * 1e6));
  }
  if (const auto v = get("MERCURY_RUN_ID")) {
    if (!valid_run_id(*v)) {
      throw bad("MERCURY_RUN_ID",
                "1-64 characters of [A-Za-z0-9._-] (it names " + shared_medium_path("<id>") + ")",
                *v);
    }
    config.run_id = *v;
  }
  return config;
}

inline ShaperConfig shaper_config_from_env() {
  return shaper_config_from_env([](const char* name) -> const char* { return std::getenv(name); });
}

// The pacer for `config`, or nullptr when nothing is shaped. Medium mode with a run id (and no
// explicit shared_medium_file) shares the channel through shared_medium_path(run_id).
inline std::unique_ptr<Pacer> make_pacer(const ShaperConfig& config) {
  if (!config.shaped()) return nullptr;
  if (config.rate_bps && config.trace) {
    throw ShaperError("make_pacer: expected a fixed rate or a trace, found both (" +
                      shaper_detail::format_double(*config.rate_bps) + " bit/s and " +
                      config.trace->describe() + ")");
  }
  PacerOptions options = config.pacer;
  if (options.mode == ShapingMode::medium && options.shared_medium_file.empty() &&
      !config.run_id.empty()) {
    if (!valid_run_id(config.run_id)) {
      throw ShaperError(
          "make_pacer: expected a run id of 1-64 characters of [A-Za-z0-9._-], "
          "found '" +
          config.run_id + "'");
    }
    options.shared_medium_file = shared_medium_path(config.run_id);
  }
  if (config.rate_bps) return std::make_unique<TokenBucketPacer>(*config.rate_bps, options);
  return std::make_unique<TokenBucketPacer>(config.trace, options);
}

}  // namespace mercury::net
