// Bandwidth emulation (net/shaper.hpp): strict trace parsing, exact rate integration for step
// and linear traces (hold and loop), the trace generator, bandwidth/env parsing, and the token
// bucket's arithmetic — per link, shared medium, shared across processes through a file, and
// under concurrent callers. Pacer tests pass explicit `now` values and check the returned time
// points: nothing sleeps.
#include "net/shaper.hpp"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "file_test_support.hpp"

namespace {

using mercury::net::BandwidthTrace;
using mercury::net::generate_trace;
using mercury::net::make_pacer;
using mercury::net::PacerOptions;
using mercury::net::parse_bandwidth;
using mercury::net::ShaperConfig;
using mercury::net::ShaperError;
using mercury::net::ShapingMode;
using mercury::net::TokenBucketPacer;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::TempDir;
using Clock = std::chrono::steady_clock;
using Interp = BandwidthTrace::Interpolation;
using End = BandwidthTrace::End;
using namespace std::chrono_literals;

// bench/traces, next to tests/ (lexically: tests/data need not exist).
const std::string kTraceDir =
    (std::filesystem::path(MERCURY_TEST_DATA_DIR).parent_path().parent_path() / "bench" / "traces")
        .string();

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::string parse_error(const std::string& text) {
  return error_message<ShaperError>([&] { BandwidthTrace::parse(text, "trace.csv"); });
}

// Nanoseconds from `a` to `b`.
int64_t ns(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

// A fixed, arbitrary epoch so pacer arithmetic does not depend on the real clock.
const Clock::time_point kEpoch = Clock::time_point(1000s);

PacerOptions options(ShapingMode mode = ShapingMode::link) {
  PacerOptions o;
  o.mode = mode;
  o.epoch = kEpoch;
  return o;
}

// 10'000 bytes = 80'000 bits: exactly 1 ms at 80 Mbps.
constexpr std::size_t kMsAt80 = 10'000;

}  // namespace

TEST_SUITE("shaper") {
  TEST_CASE("trace parsing accepts a header, comments, blank lines, CRLF and spaced fields") {
    const auto trace = BandwidthTrace::parse(
        "# made by hand\n"
        "t_seconds,mbps\r\n"
        "\n"
        "0,10\n"
        "  # indented comment\n"
        "0.5 , 12.5\r\n"
        "2,\t1e1\n",
        "trace.csv");
    REQUIRE(trace.points().size() == 3);
    CHECK(trace.points()[1] == BandwidthTrace::Point{0.5, 12.5});
    CHECK(trace.points()[2] == BandwidthTrace::Point{2, 10});
    CHECK(trace.source() == "trace.csv");
    // No header and a first time after 0 are fine too.
    CHECK(BandwidthTrace::parse("1.5,3\n", "x").points().size() == 1);
    // A UTF-8 byte order mark (a spreadsheet's export) before the header is skipped.
    CHECK(BandwidthTrace::parse("\xEF\xBB\xBFt_seconds,mbps\n0,10\n", "bom.csv").points() ==
          std::vector<BandwidthTrace::Point>{{0, 10}});
  }

  TEST_CASE("trace parsing rejects each bad input naming file, line, expected and found") {
    SUBCASE("non-monotonic time") {
      check_mentions(
          parse_error("t_seconds,mbps\n0,10\n2.5,10\n1,10\n"),
          {"trace.csv:4:", "expected", "t_seconds > 2.5 (strictly increasing)", "found '1,10'"});
    }
    SUBCASE("repeated time") {
      check_mentions(parse_error("0,10\n0,11\n"), {"trace.csv:2:", "t_seconds > 0", "'0,11'"});
    }
    SUBCASE("negative first time") {
      check_mentions(parse_error("-1,10\n"), {"trace.csv:1:", "t_seconds >= 0", "'-1,10'"});
    }
    SUBCASE("negative mbps") {
      CHECK(parse_error("0,1\n\n# c\n\n\n\n3.5,-2\n") ==
            "trace.csv:7: expected 't_seconds,mbps' with finite mbps > 0, found '3.5,-2'");
    }
    SUBCASE("zero, NaN and infinite mbps") {
      check_mentions(parse_error("0,0\n"), {"trace.csv:1:", "mbps > 0", "'0,0'"});
      check_mentions(parse_error("0,nan\n"), {"trace.csv:1:", "mbps > 0", "'0,nan'"});
      check_mentions(parse_error("0,inf\n"), {"trace.csv:1:", "finite mbps", "'0,inf'"});
      check_mentions(parse_error("nan,1\n"), {"trace.csv:1:", "finite t_seconds", "'nan,1'"});
    }
    SUBCASE("missing column") {
      check_mentions(parse_error("0,10\n1\n"), {"trace.csv:2:", "(two numbers)", "found '1'"});
      check_mentions(parse_error("0,10\n1,\n"), {"trace.csv:2:", "found '1,'"});
    }
    SUBCASE("extra column") {
      check_mentions(parse_error("0,10,3\n"), {"trace.csv:1:", "(two numbers)", "'0,10,3'"});
    }
    SUBCASE("garbage") {
      check_mentions(parse_error("0,10\nhello world\n"),
                     {"trace.csv:2:", "expected 't_seconds,mbps'", "found 'hello world'"});
      check_mentions(parse_error("0,10mbps\n"), {"trace.csv:1:", "'0,10mbps'"});
      check_mentions(parse_error("+1,10\n"), {"trace.csv:1:", "'+1,10'"});
      check_mentions(parse_error("0,10 # trailing\n"), {"trace.csv:1:"});
    }
    SUBCASE("header after data") {
      check_mentions(parse_error("0,10\nt_seconds,mbps\n"),
                     {"trace.csv:2:", "found 't_seconds,mbps'"});
    }
    SUBCASE("empty file, or nothing but comments and a header") {
      CHECK(parse_error("") == "trace.csv: expected at least one 't_seconds,mbps' row, found none");
      check_mentions(parse_error("# only\n\nt_seconds,mbps\n"), {"trace.csv:", "found none"});
    }
    SUBCASE("missing file") {
      TempDir dir;
      const std::string path = dir.file("absent.csv");
      check_mentions(error_message<ShaperError>([&] { BandwidthTrace::load(path); }),
                     {path, "expected a readable", "No such file"});
    }
    SUBCASE("a directory") {
      TempDir dir;
      check_mentions(
          error_message<ShaperError>([&] { BandwidthTrace::load(dir.path().string()); }),
          {dir.path().string(), "expected a readable", "found a directory", "t_seconds,mbps"});
    }
    SUBCASE("a long garbage line is cut in the message") {
      const std::string message = parse_error(std::string(100'000, 'z'));
      check_mentions(message, {"trace.csv:1:", "found 'zzz", "...'"});
      CHECK(message.size() < 200);
    }
    SUBCASE("bad points given directly") {
      check_mentions(error_message<ShaperError>([] {
                       BandwidthTrace({{0, 1}, {1, -3}});
                     }),
                     {"trace: point 1:", "mbps > 0", "found '1,-3'"});
      check_mentions(error_message<ShaperError>([] { BandwidthTrace({}); }), {"found none"});
    }
  }

  TEST_CASE("load reads a file and names it in errors") {
    TempDir dir;
    const std::string path = dir.file("t.csv");
    write_text(path, "t_seconds,mbps\n0,10\n1,20\n");
    const auto trace = BandwidthTrace::load(path, Interp::linear, End::loop);
    CHECK(trace.points().size() == 2);
    CHECK(trace.interpolation() == Interp::linear);
    CHECK(trace.end() == End::loop);
    write_text(path, "t_seconds,mbps\n0,10\n1,x\n");
    check_mentions(error_message<ShaperError>([&] { BandwidthTrace::load(path); }),
                   {path + ":3:", "found '1,x'"});
  }

  TEST_CASE("step trace: rate, bits and time_to_send match hand-computed values") {
    // 10 Mbps on [0,1), 20 Mbps on [1,3), then 5 Mbps held.
    const BandwidthTrace trace({{0, 10}, {1, 20}, {3, 5}}, Interp::step, End::hold);
    CHECK(trace.rate_bps(-1) == 10e6);
    CHECK(trace.rate_bps(0.5) == 10e6);
    CHECK(trace.rate_bps(1) == 20e6);
    CHECK(trace.rate_bps(2.999) == 20e6);
    CHECK(trace.rate_bps(3) == 5e6);
    CHECK(trace.rate_bps(1e9) == 5e6);
    CHECK(std::isinf(trace.period()));
    CHECK(trace.bits_between(0.5, 2) == doctest::Approx(25e6).epsilon(1e-12));
    CHECK(trace.bits_between(-1, 0) == doctest::Approx(10e6).epsilon(1e-12));
    CHECK(trace.bits_between(2, 1) == 0);
    CHECK(trace.time_to_send(0.5, 1e6) == doctest::Approx(0.6).epsilon(1e-12));
    CHECK(trace.time_to_send(0.5, 25e6) == doctest::Approx(2.0).epsilon(1e-12));
    CHECK(trace.time_to_send(0, 10e6 + 40e6 + 5e6) == doctest::Approx(4.0).epsilon(1e-12));
    CHECK(trace.time_to_send(0, 50e6 + 5e6 * 1000) == doctest::Approx(1003).epsilon(1e-12));
    CHECK(trace.time_to_send(-1, 10e6) == doctest::Approx(0.0));
    CHECK(trace.time_to_send(-1, 20e6) == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(trace.time_to_send(7, 0) == 7);
    // A first point after 0: its value also covers [0, t0).
    const BandwidthTrace late({{2, 10}, {3, 20}});
    CHECK(late.rate_bps(1) == 10e6);
    CHECK(late.time_to_send(0, 30e6) == doctest::Approx(3.0).epsilon(1e-12));
  }

  TEST_CASE("linear trace: rate, bits and time_to_send match hand-computed values") {
    // 10 → 30 Mbps over [0,2], 30 Mbps on [2,4], then 30 held.
    const BandwidthTrace trace({{0, 10}, {2, 30}, {4, 30}}, Interp::linear, End::hold);
    CHECK(trace.rate_bps(1) == doctest::Approx(20e6).epsilon(1e-12));
    CHECK(trace.rate_bps(0.5) == doctest::Approx(15e6).epsilon(1e-12));
    CHECK(trace.bits_between(0, 2) == doctest::Approx(40e6).epsilon(1e-12));
    CHECK(trace.bits_between(1, 3) == doctest::Approx(25e6 + 30e6).epsilon(1e-12));
    // Slope 10 Mbps/s: 10t + 5t² = 10 (Mbit)  →  t = √3 − 1.
    CHECK(trace.time_to_send(0, 10e6) == doctest::Approx(std::sqrt(3.0) - 1).epsilon(1e-12));
    CHECK(trace.time_to_send(1, 25e6) == doctest::Approx(2.0).epsilon(1e-12));
    CHECK(trace.time_to_send(0, 100e6) == doctest::Approx(4.0).epsilon(1e-12));
    CHECK(trace.time_to_send(0, 130e6) == doctest::Approx(5.0).epsilon(1e-12));
    // Falling ramp: 30 → 10 over [0,2]; 30t − 5t² = 25e6/1e6 → t = 1.
    const BandwidthTrace falling({{0, 30}, {2, 10}}, Interp::linear);
    CHECK(falling.time_to_send(0, 25e6) == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(falling.time_to_send(0, 40e6) == doctest::Approx(2.0).epsilon(1e-12));
    CHECK(falling.time_to_send(0, 50e6) == doctest::Approx(3.0).epsilon(1e-12));
  }

  TEST_CASE("looping traces repeat with period t_last + the last interval") {
    SUBCASE("step") {
      const BandwidthTrace trace({{0, 10}, {1, 20}}, Interp::step, End::loop);
      CHECK(trace.period() == 2);
      CHECK(trace.rate_bps(2.5) == 10e6);
      CHECK(trace.rate_bps(3.5) == 20e6);
      CHECK(trace.rate_bps(1e6 + 0.5) == 10e6);
      CHECK(trace.time_to_send(0, 45e6) == doctest::Approx(3.25).epsilon(1e-12));
      CHECK(trace.time_to_send(0.5, 300e6) == doctest::Approx(20.5).epsilon(1e-12));
      CHECK(trace.bits_between(0.5, 20.5) == doctest::Approx(300e6).epsilon(1e-12));
      CHECK(trace.bits_between(1.5, 1001.5) == doctest::Approx(15000e6).epsilon(1e-12));
    }
    SUBCASE("linear ramps back to the first value") {
      const BandwidthTrace trace({{0, 10}, {1, 30}}, Interp::linear, End::loop);
      CHECK(trace.rate_bps(1.5) == doctest::Approx(20e6).epsilon(1e-12));
      CHECK(trace.rate_bps(2.5) == doctest::Approx(20e6).epsilon(1e-12));
      CHECK(trace.time_to_send(0, 120e6) == doctest::Approx(6.0).epsilon(1e-12));
      CHECK(trace.time_to_send(0.5, 40e6) == doctest::Approx(2.5).epsilon(1e-12));
    }
    SUBCASE("a one-point trace is constant") {
      const BandwidthTrace trace({{0, 8}}, Interp::step, End::loop);
      CHECK(std::isinf(trace.period()));
      CHECK(trace.time_to_send(3, 8e6) == doctest::Approx(4.0).epsilon(1e-12));
    }
  }

  TEST_CASE("non-finite times and sizes terminate with the obvious answer") {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    for (const End end : {End::hold, End::loop}) {
      const BandwidthTrace trace({{0, 10}, {1, 20}}, Interp::linear, end);
      CHECK(std::isinf(trace.time_to_send(0, inf)));
      CHECK(std::isinf(trace.time_to_send(inf, 1e6)));
      CHECK(std::isnan(trace.time_to_send(nan, 1e6)));
      CHECK(trace.time_to_send(3, nan) == 3);
      CHECK(std::isinf(trace.bits_between(0, inf)));
      CHECK(std::isinf(trace.bits_between(-inf, 0)));
      CHECK(trace.bits_between(nan, 1) == 0);
    }
  }

  TEST_CASE("time_to_send inverts bits_between on a long generated trace") {
    for (const Interp interp : {Interp::step, Interp::linear}) {
      for (const End end : {End::hold, End::loop}) {
        const auto trace = generate_trace(20, 0.3, 30, 0.25, 5, interp, end);
        for (int i = 0; i < 200; ++i) {
          const double t0 = -0.5 + 0.37 * i, bits = 1e5 * (1 + (i * 7919) % 9000);
          const double t1 = trace.time_to_send(t0, bits);
          CHECK(t1 > t0);
          CHECK(trace.bits_between(t0, t1) == doctest::Approx(bits).epsilon(1e-9));
        }
      }
    }
  }

  TEST_CASE("write_csv round-trips a trace bit for bit, with its comment") {
    TempDir dir;
    const auto trace = generate_trace(33.3, 0.1, 5, 0.1, 3);
    const std::string path = dir.file("gen.csv");
    trace.write_csv(path, "line one\nline two");
    const auto back = BandwidthTrace::load(path);
    CHECK(back.points() == trace.points());
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    CHECK(first == "# line one");
    CHECK(dir.listing().size() == 1);  // no temp file left behind
  }

  TEST_CASE("generate_trace is deterministic by seed and fluctuates ~10% around the set point") {
    const auto a = generate_trace(10, 0.10, 60, 0.5, 7);
    const auto b = generate_trace(10, 0.10, 60, 0.5, 7);
    const auto c = generate_trace(10, 0.10, 60, 0.5, 8);
    CHECK(a.points() == b.points());
    CHECK(a.points() != c.points());
    REQUIRE(a.points().size() == 120);
    CHECK(a.points()[1].t_seconds == 0.5);
    CHECK(a.points().back().t_seconds == 59.5);
    for (const double set_point : {10.0, 50.0, 200.0}) {
      for (uint64_t seed = 1; seed <= 5; ++seed) {
        const auto trace = generate_trace(set_point, 0.10, 60, 0.5, seed);
        double mean = 0;
        for (const auto& p : trace.points()) {
          CHECK(p.mbps > 0);
          mean += p.mbps;
        }
        mean /= static_cast<double>(trace.points().size());
        CHECK(mean == doctest::Approx(set_point).epsilon(0.01));
        const double mad = mercury::net::mean_abs_deviation_fraction(trace);
        CHECK(mad > 0.07);
        CHECK(mad < 0.13);
      }
    }
    check_mentions(error_message<ShaperError>([] { generate_trace(0); }),
                   {"generate_trace", "set point > 0", "found 0"});
    check_mentions(error_message<ShaperError>([] { generate_trace(10, 0.1, 1, 2); }),
                   {"step_s <= duration_s", "found step_s 2, duration_s 1"});
  }

  TEST_CASE("committed traces equal their documented generator calls") {
    CHECK(BandwidthTrace::load(kTraceDir + "/wifi_10mbps_fluct.csv").points() ==
          generate_trace(10, 0.10, 60, 0.5, 1).points());
    CHECK(BandwidthTrace::load(kTraceDir + "/wifi_50mbps_fluct.csv").points() ==
          generate_trace(50, 0.10, 60, 0.5, 2).points());
    CHECK(BandwidthTrace::load(kTraceDir + "/step_drop_100_to_20.csv").points() ==
          BandwidthTrace({{0, 100}, {10, 20}}).points());
  }

  TEST_CASE("parse_bandwidth accepts kbps, mbps, gbps and off; rejects everything else") {
    CHECK(*parse_bandwidth("10mbps") == 10e6);
    CHECK(*parse_bandwidth("1.5gbps") == 1.5e9);
    CHECK(*parse_bandwidth("800kbps") == 800e3);
    CHECK(*parse_bandwidth("100Mbps") == 100e6);
    CHECK(*parse_bandwidth("0.5MBPS") == 0.5e6);
    CHECK_FALSE(parse_bandwidth("off").has_value());
    CHECK_FALSE(parse_bandwidth("OFF").has_value());
    for (const char* bad :
         {"", "10", "mbps", "10 mbps", " 10mbps", "10mbps ", "-5mbps", "+5mbps", "0mbps", "0.0kbps",
          "1e3kbps", "infmbps", "nanmbps", "1.2.3mbps", "10mb", "10tbps", ".mbps", "on"}) {
      CAPTURE(bad);
      check_mentions(
          error_message<ShaperError>([&] { parse_bandwidth(bad, "MERCURY_BANDWIDTH"); }),
          {"MERCURY_BANDWIDTH: expected a rate like '10mbps'", "found '" + std::string(bad) + "'"});
    }
    check_mentions(error_message<ShaperError>([] { parse_bandwidth("10"); }),
                   {"unit kbps, mbps or gbps is required"});
    check_mentions(error_message<ShaperError>([] { parse_bandwidth("0mbps"); }), {"> 0", "'off'"});
    // Rates whose token arithmetic would overflow (1e-9 kbps once meant "unshaped") or that no
    // link has.
    for (const char* extreme : {"0.000000001kbps", "0.9kbps", "0.0000001mbps", "1000001mbps",
                                "99999999999gbps", "1000000000000000000000000000000kbps"}) {
      CAPTURE(extreme);
      check_mentions(error_message<ShaperError>([&] { parse_bandwidth(extreme); }),
                     {"between 1kbps and 1000000mbps", std::string("found '") + extreme + "'"});
    }
    CHECK(*parse_bandwidth("1kbps") == 1e3);
    CHECK(*parse_bandwidth("1000gbps") == 1e12);
    check_mentions(error_message<ShaperError>([] {
                     BandwidthTrace({{0, 1e-9}});
                   }),
                   {"point 0", "mbps in [0.001, 1e+06]"});
    check_mentions(error_message<ShaperError>([] { TokenBucketPacer(1e-6); }),
                   {"expected a rate in [1e3, 1e12] bit/s"});
  }

  TEST_CASE("shaper_config_from_env reads every variable") {
    TempDir dir;
    const std::string path = dir.file("t.csv");
    write_text(path, "0,10\n1,20\n");
    std::map<std::string, std::string> env;
    auto config = [&] {
      return mercury::net::shaper_config_from_env([&](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
      });
    };
    CHECK_FALSE(config().shaped());
    env["MERCURY_BANDWIDTH"] = "";  // empty = unset
    CHECK_FALSE(config().shaped());
    env["MERCURY_BANDWIDTH"] = "off";
    CHECK_FALSE(config().shaped());

    env["MERCURY_BANDWIDTH"] = "25mbps";
    env["MERCURY_BANDWIDTH_MODE"] = "medium";
    env["MERCURY_LATENCY_MS"] = "2.5";
    env["MERCURY_RUN_ID"] = "run-42_a.b";
    auto c = config();
    CHECK(c.shaped());
    CHECK(*c.rate_bps == 25e6);
    CHECK_FALSE(c.trace.has_value());
    CHECK(c.pacer.mode == ShapingMode::medium);
    CHECK(c.pacer.latency == 2500us);
    CHECK(c.run_id == "run-42_a.b");

    env["MERCURY_BANDWIDTH"] = "off";
    env["MERCURY_BANDWIDTH_TRACE"] = path;
    env["MERCURY_BANDWIDTH_TRACE_INTERP"] = "linear";
    env["MERCURY_BANDWIDTH_TRACE_END"] = "loop";
    env["MERCURY_BANDWIDTH_MODE"] = "link";
    c = config();
    CHECK_FALSE(c.rate_bps.has_value());
    REQUIRE(c.trace.has_value());
    CHECK(c.trace->points().size() == 2);
    CHECK(c.trace->interpolation() == Interp::linear);
    CHECK(c.trace->end() == End::loop);
    CHECK(c.pacer.mode == ShapingMode::link);

    env.clear();
    env["MERCURY_LATENCY_MS"] = "10";
    CHECK(config().shaped());  // latency alone shapes
  }

  TEST_CASE("shaper_config_from_env rejects each bad value naming the variable") {
    TempDir dir;
    const std::string good = dir.file("good.csv"), bad_trace = dir.file("bad.csv");
    write_text(good, "0,10\n");
    write_text(bad_trace, "0,10\n5,-1\n");
    struct Case {
      std::map<std::string, std::string> env;
      std::vector<std::string> fragments;
    };
    const std::vector<Case> cases = {
        {{{"MERCURY_BANDWIDTH", "fast"}}, {"MERCURY_BANDWIDTH: expected", "found 'fast'"}},
        {{{"MERCURY_BANDWIDTH", "10"}}, {"MERCURY_BANDWIDTH:", "unit", "found '10'"}},
        {{{"MERCURY_BANDWIDTH_MODE", "wifi"}},
         {"MERCURY_BANDWIDTH_MODE: expected 'link' or 'medium', found 'wifi'"}},
        {{{"MERCURY_LATENCY_MS", "-1"}}, {"MERCURY_LATENCY_MS: expected", "found '-1'"}},
        {{{"MERCURY_LATENCY_MS", "5ms"}}, {"MERCURY_LATENCY_MS:", "found '5ms'"}},
        {{{"MERCURY_LATENCY_MS", "70000"}}, {"MERCURY_LATENCY_MS:", "[0, 60000]", "'70000'"}},
        {{{"MERCURY_RUN_ID", "a/b"}}, {"MERCURY_RUN_ID: expected", "[A-Za-z0-9._-]", "'a/b'"}},
        {{{"MERCURY_RUN_ID", std::string(65, 'x')}}, {"MERCURY_RUN_ID:", "1-64"}},
        {{{"MERCURY_BANDWIDTH_TRACE", dir.file("absent.csv")}},
         {"MERCURY_BANDWIDTH_TRACE:", "absent.csv", "No such file"}},
        {{{"MERCURY_BANDWIDTH_TRACE", bad_trace}},
         {"MERCURY_BANDWIDTH_TRACE:", "bad.csv:2:", "found '5,-1'"}},
        {{{"MERCURY_BANDWIDTH_TRACE", good}, {"MERCURY_BANDWIDTH", "10mbps"}},
         {"MERCURY_BANDWIDTH_TRACE: expected no fixed rate", "'10mbps'", "good.csv"}},
        {{{"MERCURY_BANDWIDTH_TRACE", good}, {"MERCURY_BANDWIDTH_TRACE_INTERP", "cubic"}},
         {"MERCURY_BANDWIDTH_TRACE_INTERP: expected 'step' or 'linear', found 'cubic'"}},
        {{{"MERCURY_BANDWIDTH_TRACE", good}, {"MERCURY_BANDWIDTH_TRACE_END", "wrap"}},
         {"MERCURY_BANDWIDTH_TRACE_END: expected 'hold' or 'loop', found 'wrap'"}},
        {{{"MERCURY_BANDWIDTH_TRACE_END", "loop"}},
         {"MERCURY_BANDWIDTH_TRACE_END: expected only alongside MERCURY_BANDWIDTH_TRACE",
          "found 'loop'"}},
    };
    for (const Case& c : cases) {
      const std::string message = error_message<ShaperError>([&] {
        mercury::net::shaper_config_from_env([&](const char* name) -> const char* {
          const auto it = c.env.find(name);
          return it == c.env.end() ? nullptr : it->second.c_str();
        });
      });
      for (const std::string& fragment : c.fragments) check_mentions(message, {fragment});
    }
  }

  TEST_CASE("make_pacer returns nullptr unshaped, else a pacer with the configured knobs") {
    ShaperConfig config;
    CHECK(make_pacer(config) == nullptr);

    config.pacer.latency = 3ms;  // latency alone: unlimited rate, still sliced and delayed
    auto pacer = make_pacer(config);
    REQUIRE(pacer != nullptr);
    CHECK(pacer->latency() == 3ms);
    CHECK(pacer->slice_bytes() == 16 * 1024);
    const auto before = Clock::now();
    const auto when = pacer->reserve(0, 1 << 30);
    CHECK(when >= before);
    CHECK(when <= Clock::now());

    config.rate_bps = 10e6;
    config.pacer.slice_bytes = 4096;
    pacer = make_pacer(config);
    CHECK(pacer->slice_bytes() == 4096);
    const auto* bucket = dynamic_cast<TokenBucketPacer*>(pacer.get());
    REQUIRE(bucket != nullptr);
    CHECK(bucket->trace()->rate_bps(0) == 10e6);

    config.trace = BandwidthTrace::constant(5);
    check_mentions(error_message<ShaperError>([&] { make_pacer(config); }),
                   {"make_pacer: expected a fixed rate or a trace, found both"});
  }

  TEST_CASE("back-to-back slices at 80 Mbps finish at start + total_bits/rate, burst ahead") {
    TokenBucketPacer pacer(80e6, options());
    const std::size_t slice = pacer.slice_bytes();
    CHECK(slice == 16 * 1024);
    constexpr int kSlices = 100;
    TokenBucketPacer::Reservation last{};
    for (int i = 1; i <= kSlices; ++i) {
      const auto r = pacer.reserve_at(0, slice, kEpoch);
      // Each slice occupies the channel for exactly 16 KiB / 80 Mbps = 1.6384 ms.
      CHECK(std::llabs(ns(kEpoch, r.finish) - i * 1'638'400LL) <= i);
      // Released `burst` (5 ms) before it leaves the channel, never before `now`.
      CHECK(r.release == std::max(kEpoch, r.finish - 5ms));
      last = r;
    }
    const double total_bits = 8.0 * slice * kSlices;
    CHECK(ns(kEpoch, last.finish) == doctest::Approx(total_bits / 80e6 * 1e9).epsilon(1e-6));
    CHECK(ns(kEpoch, last.release) == doctest::Approx(total_bits / 80e6 * 1e9 - 5e6).epsilon(1e-6));
    // Later callers queue behind: a reservation at a later `now` still starts at the tail.
    const auto next = pacer.reserve_at(0, slice, kEpoch + 50ms);
    CHECK(next.start == last.finish);
  }

  TEST_CASE("an idle bucket banks at most `burst` of credit") {
    TokenBucketPacer pacer(80e6, options());
    pacer.reserve_at(0, kMsAt80, kEpoch);
    const auto later = kEpoch + 10s;
    int released_at_once = 0;
    for (int i = 1; i <= 20; ++i) {
      const auto r = pacer.reserve_at(0, kMsAt80, later);
      CHECK(ns(later, r.start) == (i - 1) * 1'000'000LL);  // the idle time is not credited
      released_at_once += r.release == later;
    }
    CHECK(released_at_once == 5);  // 5 ms burst = five 1 ms slices go at once
    TokenBucketPacer no_burst(80e6, [] {
      auto o = options();
      o.burst = 0ns;
      return o;
    }());
    CHECK(ns(kEpoch, no_burst.reserve_at(0, kMsAt80, kEpoch).release) == 1'000'000);
  }

  TEST_CASE("a trace-driven pacer follows the trace's rate change exactly") {
    // 80 Mbps for 100 ms, then 40 Mbps.
    TokenBucketPacer pacer(BandwidthTrace({{0, 80}, {0.1, 40}}), options());
    CHECK(pacer.epoch() == kEpoch);
    TokenBucketPacer::Reservation r{};
    for (int i = 1; i <= 150; ++i) {
      r = pacer.reserve_at(0, kMsAt80, kEpoch);
      const int64_t expected = i <= 100 ? i * 1'000'000LL : 100'000'000LL + (i - 100) * 2'000'000LL;
      CHECK(std::llabs(ns(kEpoch, r.finish) - expected) <= 2);
    }
    // A slice straddling the change: 0.5 ms at 80 then the rest at 40.
    TokenBucketPacer straddle(BandwidthTrace({{0, 80}, {0.1, 40}}), options());
    straddle.reserve_at(0, 995'000, kEpoch);  // 99.5 ms
    CHECK(std::llabs(ns(kEpoch, straddle.reserve_at(0, kMsAt80, kEpoch).finish) - 101'000'000) <=
          2);
  }

  TEST_CASE("per-link buckets are independent; a shared medium splits the rate between peers") {
    TokenBucketPacer link(80e6, options(ShapingMode::link));
    TokenBucketPacer medium(80e6, options(ShapingMode::medium));
    Clock::time_point link_last[2], medium_last[2];
    for (int i = 0; i < 50; ++i) {
      for (int peer = 0; peer < 2; ++peer) {
        link_last[peer] = link.reserve_at(peer, kMsAt80, kEpoch).finish;
        medium_last[peer] = medium.reserve_at(peer, kMsAt80, kEpoch).finish;
      }
    }
    // Per link: each peer sends 50 ms of data at the full 80 Mbps.
    CHECK(ns(kEpoch, link_last[0]) == 50'000'000);
    CHECK(ns(kEpoch, link_last[1]) == 50'000'000);
    // Medium: the two interleave on one channel, each at half the rate: 4 Mbit in ~100 ms.
    CHECK(ns(kEpoch, medium_last[0]) == 99'000'000);
    CHECK(ns(kEpoch, medium_last[1]) == 100'000'000);
    const double per_peer_bps = 50 * 80'000 / (ns(kEpoch, medium_last[1]) * 1e-9);
    CHECK(per_peer_bps == doctest::Approx(40e6).epsilon(1e-9));
  }

  TEST_CASE("two pacers mapping one medium file share one channel and its epoch") {
    TempDir dir;
    PacerOptions o = options(ShapingMode::medium);
    o.shared_medium_file = dir.file("medium");
    {
      TokenBucketPacer a(80e6, o);
      PacerOptions later = o;
      later.epoch = kEpoch + 7s;  // the file's epoch wins
      TokenBucketPacer b(80e6, later);
      CHECK(b.epoch() == kEpoch);
      CHECK(std::filesystem::exists(o.shared_medium_file));
      for (int i = 0; i < 10; ++i) {
        a.reserve_at(0, kMsAt80, kEpoch);
        b.reserve_at(1, kMsAt80, kEpoch);
      }
      CHECK(ns(kEpoch, a.reserve_at(0, kMsAt80, kEpoch).finish) == 21'000'000);
      // A process shaped differently cannot join the medium.
      check_mentions(error_message<ShaperError>([&] { TokenBucketPacer c(40e6, o); }),
                     {o.shared_medium_file, "expected the bandwidth of this process (40 Mbps)",
                      "found another process's (80 Mbps)"});
      // Trace-driven pacers join when their traces are the same.
      PacerOptions traced = o;
      traced.shared_medium_file = dir.file("traced");
      TokenBucketPacer t1(generate_trace(50, 0.1, 10, 0.5, 4, Interp::step, End::loop), traced);
      TokenBucketPacer t2(generate_trace(50, 0.1, 10, 0.5, 4, Interp::step, End::loop), traced);
      check_mentions(error_message<ShaperError>(
                         [&] { TokenBucketPacer t3(generate_trace(50, 0.1, 10, 0.5, 5), traced); }),
                     {"found another process's (trace 'generated' (20 points, step, loop))"});
    }
    CHECK_FALSE(std::filesystem::exists(o.shared_medium_file));  // the last one out unlinks
    CHECK(dir.listing().empty());
  }

  TEST_CASE("a medium file is rejected when it is not one, or in link mode") {
    TempDir dir;
    PacerOptions o = options(ShapingMode::medium);
    o.shared_medium_file = dir.file("junk");
    write_text(o.shared_medium_file, "0123456789");
    check_mentions(error_message<ShaperError>([&] { TokenBucketPacer p(80e6, o); }),
                   {"junk", "expected a file of 4096 bytes, found 10"});
    write_text(o.shared_medium_file, std::string(4096, '\xab'));
    check_mentions(error_message<ShaperError>([&] { TokenBucketPacer p(80e6, o); }),
                   {"junk", "expected magic 'MERCMED1', found 0xabababababababab"});
    o.mode = ShapingMode::link;
    check_mentions(error_message<ShaperError>([&] { TokenBucketPacer p(80e6, o); }),
                   {"expected medium mode, found link mode"});
    o.mode = ShapingMode::medium;
    o.shared_medium_file = dir.file("no-such-dir/medium");
    check_mentions(error_message<ShaperError>([&] { TokenBucketPacer p(80e6, o); }),
                   {"no-such-dir/medium", "cannot open", "No such file"});
  }

  TEST_CASE("make_pacer shares a medium across processes through /dev/shm by run id") {
    if (!std::filesystem::is_directory("/dev/shm")) {
      mercury::testing::missing_dependency("/dev/shm (POSIX shared memory)", "mount a tmpfs there");
      return;
    }
    ShaperConfig config;
    config.rate_bps = 80e6;
    config.pacer.mode = ShapingMode::medium;
    config.pacer.epoch = kEpoch;
    config.run_id = "test-shaper-" + std::to_string(::getpid());
    const std::string path = mercury::net::shared_medium_path(config.run_id);
    CHECK(path == "/dev/shm/mercury-medium-" + config.run_id);
    {
      auto parent = make_pacer(config);
      auto* bucket = dynamic_cast<TokenBucketPacer*>(parent.get());
      REQUIRE(bucket != nullptr);
      CHECK(std::filesystem::exists(path));
      // A forked process attaches to the same file and takes 10 ms of the channel.
      const pid_t child = ::fork();
      REQUIRE(child >= 0);
      if (child == 0) {
        int code = 1;
        try {
          auto pacer = make_pacer(config);
          auto* mine = dynamic_cast<TokenBucketPacer*>(pacer.get());
          for (int i = 0; i < 10; ++i) mine->reserve_at(0, kMsAt80, kEpoch);
          code = 0;
        } catch (...) {
        }
        ::_exit(code);
      }
      int status = 0;
      REQUIRE(::waitpid(child, &status, 0) == child);
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
      CHECK(std::filesystem::exists(path));  // the parent is still attached
      CHECK(ns(kEpoch, bucket->reserve_at(3, kMsAt80, kEpoch).start) == 10'000'000);
    }
    CHECK_FALSE(std::filesystem::exists(path));
  }

  TEST_CASE("4 threads reserving concurrently get contiguous, non-overlapping slots") {
    constexpr int kThreads = 4, kPerThread = 250;
    TempDir dir;
    auto run = [&](std::vector<TokenBucketPacer*> pacers, bool per_thread_peer) {
      std::vector<std::vector<TokenBucketPacer::Reservation>> got(kThreads);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          TokenBucketPacer& pacer = *pacers[t % pacers.size()];
          for (int i = 0; i < kPerThread; ++i) {
            got[t].push_back(pacer.reserve_at(per_thread_peer ? t : 0, kMsAt80, kEpoch));
          }
        });
      }
      for (auto& thread : threads) thread.join();
      return got;
    };
    auto check_chain = [](std::vector<TokenBucketPacer::Reservation> all, int64_t total_ns) {
      std::sort(all.begin(), all.end(),
                [](const auto& x, const auto& y) { return x.start < y.start; });
      CHECK(all.front().start == kEpoch);
      bool contiguous = true, one_ms = true;
      for (std::size_t i = 0; i < all.size(); ++i) {
        if (i > 0 && all[i].start != all[i - 1].finish) contiguous = false;
        if (std::llabs(ns(all[i].start, all[i].finish) - 1'000'000) > 1) one_ms = false;
      }
      CHECK(contiguous);
      CHECK(one_ms);
      CHECK(std::llabs(ns(kEpoch, all.back().finish) - total_ns) <= 2);
    };
    auto flatten = [](const std::vector<std::vector<TokenBucketPacer::Reservation>>& got) {
      std::vector<TokenBucketPacer::Reservation> all;
      for (const auto& v : got) all.insert(all.end(), v.begin(), v.end());
      return all;
    };
    SUBCASE("one in-process medium") {
      TokenBucketPacer pacer(80e6, options(ShapingMode::medium));
      check_chain(flatten(run({&pacer}, true)), 1'000'000LL * kThreads * kPerThread);
    }
    SUBCASE("two pacers on one medium file") {
      PacerOptions o = options(ShapingMode::medium);
      o.shared_medium_file = dir.file("medium");
      TokenBucketPacer a(80e6, o), b(80e6, o);
      check_chain(flatten(run({&a, &b}, true)), 1'000'000LL * kThreads * kPerThread);
    }
    SUBCASE("per link, one peer each: independent chains") {
      TokenBucketPacer pacer(80e6, options(ShapingMode::link));
      const auto got = run({&pacer}, true);
      for (const auto& chain : got) check_chain(chain, kPerThread * 1'000'000LL);
    }
    SUBCASE("per link, all on one peer: one chain") {
      TokenBucketPacer pacer(80e6, options(ShapingMode::link));
      check_chain(flatten(run({&pacer}, false)), 1'000'000LL * kThreads * kPerThread);
    }
  }

  TEST_CASE("reserve() on the real clock releases an idle link's first slice at once") {
    TokenBucketPacer pacer(10e6, PacerOptions{});
    const auto before = Clock::now();
    const auto when = pacer.reserve(0, 4096);  // 3.3 ms at 10 Mbps: inside the 5 ms burst
    CHECK(when >= before);
    CHECK(when <= Clock::now());
    const auto empty = pacer.reserve(0, 0);
    CHECK(empty <= Clock::now());
    check_mentions(error_message<ShaperError>([] { TokenBucketPacer p(-1.0); }),
                   {"expected a rate in [1e3, 1e12] bit/s", "found -1"});
    check_mentions(error_message<ShaperError>([] {
                     PacerOptions o;
                     o.slice_bytes = 0;
                     TokenBucketPacer p(1e6, o);
                   }),
                   {"expected slice_bytes > 0, found 0"});
  }
}
