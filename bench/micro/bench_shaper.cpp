// Bandwidth emulation accuracy over real loopback TCP (net/shaper.hpp), without the mesh: raw
// blocking Asio sockets, one writer thread per link honouring the pacer in 16 KiB slices
// (reserve → sleep_until → write), one reader thread per link counting bytes per interval.
// The baseline of every ratio is the configured rate (or trace) of the same run:
//   BM_shaped_loopback_fixed_rate/<mbps>   measured_over_target (goal: within ±5%)
//   BM_shaped_loopback_trace               pearson_r of per-0.5 s throughput vs the trace
//                                          (goal ≥ 0.9), measured_over_target over the run
//   BM_shaped_loopback_shared_medium       two links on one medium: sum_over_target, and
//                                          each link's share of the sum (goal: ~0.5 each)
//   BM_pacer_reserve/<mode>                cost of one reserve() call, and in parts per million
//                                          of a 16 KiB slice's time at 200 Mbps
// Runs in ~21 s: every loopback case is a single timed iteration.
#include <benchmark/benchmark.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "loopback_link.hpp"
#include "mercury/base/clock.hpp"
#include "net/shaper.hpp"

namespace {

using mercury::net::BandwidthTrace;
using mercury::net::PacerOptions;
using mercury::net::ShapingMode;
using mercury::net::TokenBucketPacer;
using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

using mercury::base::seconds_between;

using mercury::bench::LoopbackLink;

struct LinkTraffic {
  std::vector<uint64_t> bin_bytes;  // bytes received per interval since the epoch
  uint64_t total_bytes = 0;
  Clock::time_point last_byte;
};

// Drives `links` shaped by `pacer` (link i is peer i) for `duration_s` from the pacer's epoch:
// the writers stop at the first slice released after that.
std::vector<LinkTraffic> run_shaped_links(TokenBucketPacer& pacer, int links, double duration_s,
                                          double bin_s) {
  std::vector<std::unique_ptr<LoopbackLink>> sockets;
  for (int i = 0; i < links; ++i) sockets.push_back(std::make_unique<LoopbackLink>());
  const Clock::time_point epoch = pacer.epoch();
  const auto stop = epoch + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(duration_s));
  const auto bins = static_cast<std::size_t>(std::ceil(duration_s / bin_s)) + 2;
  std::vector<LinkTraffic> traffic(static_cast<std::size_t>(links));
  std::vector<std::thread> threads;
  for (int i = 0; i < links; ++i) {
    LoopbackLink& link = *sockets[static_cast<std::size_t>(i)];
    LinkTraffic& mine = traffic[static_cast<std::size_t>(i)];
    mine.bin_bytes.assign(bins, 0);
    threads.emplace_back([&pacer, &link, i, stop] {
      const std::vector<char> slice(pacer.slice_bytes(), 'x');
      for (;;) {
        const Clock::time_point when = pacer.reserve(i, slice.size());
        if (when > stop) break;
        std::this_thread::sleep_until(when);
        asio::write(link.out, asio::buffer(slice));
      }
      link.out.shutdown(tcp::socket::shutdown_send);
    });
    threads.emplace_back([&link, &mine, epoch, bin_s, bins] {
      std::vector<char> buffer(std::size_t{256} * 1024);
      asio::error_code error;
      for (;;) {
        const std::size_t n = link.in.read_some(asio::buffer(buffer), error);
        if (error) break;  // EOF once the writer is done
        const Clock::time_point now = Clock::now();
        const double t = seconds_between(epoch, now);
        const auto bin = static_cast<std::size_t>(std::max(0.0, std::floor(t / bin_s)));
        mine.bin_bytes[std::min(bin, bins - 1)] += n;
        mine.total_bytes += n;
        mine.last_byte = now;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return traffic;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

void BM_shaped_loopback_fixed_rate(benchmark::State& state) {
  const double target_bps = static_cast<double>(state.range(0)) * 1e6;
  constexpr double kSeconds = 2.0;
  double measured_bps = 0;
  for (auto _ : state) {
    TokenBucketPacer pacer(target_bps);
    const auto traffic = run_shaped_links(pacer, 1, kSeconds, 0.5);
    measured_bps = 8.0 * static_cast<double>(traffic[0].total_bytes) /
                   seconds_between(pacer.epoch(), traffic[0].last_byte);
  }
  state.counters["target_mbps"] = target_bps / 1e6;
  state.counters["measured_mbps"] = measured_bps / 1e6;
  state.counters["measured_over_target"] = measured_bps / target_bps;
}

void BM_shaped_loopback_trace(benchmark::State& state) {
  constexpr double kSeconds = 10.0, kStep = 0.5;
  const BandwidthTrace trace = mercury::net::generate_trace(50, 0.10, kSeconds, kStep, 11);
  double r = 0, ratio = 0, mean_abs_error = 0;
  for (auto _ : state) {
    TokenBucketPacer pacer(trace);
    const auto traffic = run_shaped_links(pacer, 1, kSeconds, kStep);
    std::vector<double> measured, expected;
    for (std::size_t i = 0; (i + 1) * kStep <= kSeconds; ++i) {
      const double t0 = static_cast<double>(i) * kStep;
      measured.push_back(8.0 * static_cast<double>(traffic[0].bin_bytes[i]) / kStep);
      expected.push_back(trace.bits_between(t0, t0 + kStep) / kStep);
    }
    r = pearson(measured, expected);
    mean_abs_error = 0;
    for (std::size_t i = 0; i < measured.size(); ++i) {
      mean_abs_error +=
          std::abs(measured[i] / expected[i] - 1) / static_cast<double>(measured.size());
    }
    const double elapsed = seconds_between(pacer.epoch(), traffic[0].last_byte);
    ratio = 8.0 * static_cast<double>(traffic[0].total_bytes) / trace.bits_between(0, elapsed);
  }
  state.counters["trace_mean_mbps"] = trace.bits_between(0, kSeconds) / kSeconds / 1e6;
  state.counters["pearson_r"] = r;
  state.counters["interval_mean_abs_rel_error"] = mean_abs_error;
  state.counters["measured_over_target"] = ratio;
}

void BM_shaped_loopback_shared_medium(benchmark::State& state) {
  constexpr double kTargetBps = 50e6, kSeconds = 2.0;
  double sum_ratio = 0, share0 = 0, share1 = 0;
  for (auto _ : state) {
    PacerOptions options;
    options.mode = ShapingMode::medium;
    TokenBucketPacer pacer(kTargetBps, options);
    const auto traffic = run_shaped_links(pacer, 2, kSeconds, 0.5);
    const double total = static_cast<double>(traffic[0].total_bytes + traffic[1].total_bytes);
    const double elapsed =
        seconds_between(pacer.epoch(), std::max(traffic[0].last_byte, traffic[1].last_byte));
    sum_ratio = 8.0 * total / elapsed / kTargetBps;
    share0 = static_cast<double>(traffic[0].total_bytes) / total;
    share1 = static_cast<double>(traffic[1].total_bytes) / total;
  }
  state.counters["target_mbps"] = kTargetBps / 1e6;
  state.counters["sum_over_target"] = sum_ratio;
  state.counters["link0_share"] = share0;
  state.counters["link1_share"] = share1;
}

// Reserve cost on the real clock (the bucket runs ahead; nothing waits). Arg: 0 link, 1 medium.
void BM_pacer_reserve(benchmark::State& state) {
  static TokenBucketPacer link(1e9, PacerOptions{});
  static TokenBucketPacer medium(1e9, [] {
    PacerOptions o;
    o.mode = ShapingMode::medium;
    return o;
  }());
  TokenBucketPacer& pacer = state.range(0) == 0 ? link : medium;
  const auto start = Clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(pacer.reserve(0, pacer.slice_bytes()));
  const double per_call_s =
      seconds_between(start, Clock::now()) / static_cast<double>(state.iterations());
  state.SetLabel(state.range(0) == 0 ? "link" : "medium");
  // A 16 KiB slice at 200 Mbps lasts 655 us: the pacer's cost in parts per million of that.
  state.counters["ppm_of_slice_time_at_200mbps"] = per_call_s / (16384 * 8 / 200e6) * 1e6;
}

}  // namespace

BENCHMARK(BM_shaped_loopback_fixed_rate)
    ->Arg(10)
    ->Arg(50)
    ->Arg(100)
    ->Arg(200)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shaped_loopback_trace)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shaped_loopback_shared_medium)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pacer_reserve)->Arg(0)->Arg(1)->MinTime(0.2)->UseRealTime();

BENCHMARK_MAIN();
