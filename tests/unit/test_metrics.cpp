// JSON-lines metrics writer: one flushed line per record, "event" required, append on reopen,
// disabled with an empty path, clear errors for unopenable paths.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "file_test_support.hpp"
#include "mercury/io/metrics.hpp"
#include "mercury/train/report.hpp"

namespace {

using mercury::io::MetricsWriter;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::TempDir;

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace

TEST_CASE("metrics lines are flushed immediately and parse back as the records written") {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  MetricsWriter writer(path);
  CHECK(writer.enabled());
  writer.write({{"event", "step"}, {"step", 1}, {"loss", 2.5}});
  // Read while the writer is still open: the line must already be on disk.
  std::vector<nlohmann::json> lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["event"] == "step");
  CHECK(lines[0]["loss"] == 2.5);
  writer.write({{"event", "eval"}, {"accuracy", 0.875}});
  lines = read_lines(path);
  REQUIRE(lines.size() == 2);
  CHECK(lines[1]["accuracy"] == 0.875);
}

TEST_CASE("metrics writer appends to an existing log (resumed runs)") {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  MetricsWriter(path).write({{"event", "start"}});
  MetricsWriter(path).write({{"event", "resume"}});
  const std::vector<nlohmann::json> lines = read_lines(path);
  REQUIRE(lines.size() == 2);
  CHECK(lines[1]["event"] == "resume");
}

TEST_CASE("metrics records without an event key are refused, even when disabled") {
  TempDir dir;
  MetricsWriter writer(dir.file("metrics.jsonl"));
  check_mentions(error_message<std::invalid_argument>([&] {
                   writer.write({{"loss", 1.0}});
                 }),
                 {"metrics.jsonl", "\"event\"", "loss"});
  CHECK_THROWS_AS(writer.write(nlohmann::json::array({1, 2})), std::invalid_argument);
  MetricsWriter disabled("");
  CHECK_FALSE(disabled.enabled());
  CHECK_THROWS_AS(disabled.write({{"loss", 1.0}}), std::invalid_argument);
  disabled.write({{"event", "ignored"}});
  CHECK(dir.listing() == std::vector<std::string>{"metrics.jsonl"});
}

TEST_CASE("metrics writer open failure names the path and the OS reason") {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/metrics.jsonl");
  check_mentions(error_message<std::runtime_error>([&] { MetricsWriter writer(path); }),
                 {path, "No such file or directory"});
}

TEST_CASE("metrics lines from concurrent threads never interleave") {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    MetricsWriter writer(path);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&writer, t] {
        for (int i = 0; i < 200; ++i) {
          writer.write(
              {{"event", "step"}, {"thread", t}, {"i", i}, {"pad", std::string(300, 'x')}});
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  CHECK(read_lines(path).size() == 800);  // parse() throws on a torn line
}

TEST_CASE("metrics invalid UTF-8 in a string is replaced, not fatal") {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  MetricsWriter(path).write({{"event", "note"}, {"text", std::string("bad \xff byte")}});
  const std::vector<nlohmann::json> lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["text"] == "bad \xEF\xBF\xBD byte");
}

TEST_CASE("pre-formatted lines (the per-step path) are written verbatim; non-objects refused") {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  MetricsWriter writer(path);
  writer.write_line(R"({"event":"bacc","group":96,"busy_s":0.25})");
  writer.write({{"event", "eval"}});
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["group"] == 96);
  CHECK(lines[0]["busy_s"] == 0.25);
  CHECK(lines[1]["event"] == "eval");
  for (const char* bad : {"", "{", "}", "[1]", "x{}"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(writer.write_line(bad), std::invalid_argument);
    CHECK_THROWS_AS(MetricsWriter().write_line(bad), std::invalid_argument);  // disabled too
  }
  CHECK(read_lines(path).size() == 2);
}

TEST_CASE("a BACC step event parses back with every field, at full precision") {
  TempDir dir;
  const std::string path = dir.file("run.jsonl");
  std::ostringstream log;
  {
    mercury::train::RunReport report(log, path, false);
    report.bacc_step(41, 1536, 0.28125, 0.1 / 3, 0.3, 1e-5, 0.2890625);
  }
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  const auto& e = lines[0];
  CHECK(e["event"] == "bacc");
  CHECK(e["steps"] == 41);
  CHECK(e["group"] == 1536);
  CHECK(e["busy_s"].get<double>() == 0.28125);
  CHECK(e["cpu_s"].get<double>() == 0.1 / 3);  // round-trips exactly
  CHECK(e["hidden_s"].get<double>() == 0.3);
  CHECK(e["exposed_s"].get<double>() == 1e-5);
  CHECK(e["aggregate_s"].get<double>() == 0.2890625);
}
