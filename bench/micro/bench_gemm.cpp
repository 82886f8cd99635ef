// bench_gemm — our sgemm per ISA vs Eigen vs OpenBLAS, single thread, at the reference CNN's
// shapes (batch 64; convs as im2col GEMMs per image) and two squares.
//
// Every benchmark reports GFLOPS (2·M·N·K per call, best of 7 rounds of ≥ 20 ms thread CPU
// time) and, for ours, measured in the same interleaved rounds:
//   vs_eigen, vs_openblas  our GFLOP/s ÷ that library's GFLOP/s at the same shape (> 1: faster);
//   pct_peak               % of one core's FMA peak = clock × FLOP/cycle, where the clock is
//                          /proc/cpuinfo's "cpu MHz" and FLOP/cycle = 32 (two 256-bit FMA pipes
//                          × 8 floats × 2; Zen 4 runs 512-bit FMAs double-pumped, so AVX2 and
//                          AVX-512 share this peak). Override with MERCURY_PEAK_GFLOPS.
// What is compared: Eigen is compiled into this TU with the flags in MERCURY_BENCH_EIGEN_FLAGS
// (bench/CMakeLists.txt; AVX2+FMA by default — plain x86-64 flags would leave Eigen on SSE2 and
// flatter us), Eigen::setNbThreads(1); OpenBLAS is the system library via cblas_sgemm with
// openblas_set_num_threads(1). All calls use alpha = 1, beta = 0, row-major, packed strides.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"

#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace mk = mercury::kernels;

namespace {

struct Shape {
  const char* name;
  bool ta, tb;
  int64_t M, N, K;
};

// Reference CNN at batch 64: conv1 5×5×1→32 on 28×28 (24×24 out), conv2 5×5×32→64 on 12×12
// (8×8 out), fc1 1024→128, fc2 128→10. Backward shapes: dW = dY·Xᵀ / dX = Wᵀ·dY.
const Shape kShapes[] = {
    {"conv1_fwd", false, false, 32, 576, 25},
    {"conv1_dW", false, true, 32, 25, 576},
    {"conv2_fwd", false, false, 64, 64, 800},
    {"conv2_dW", false, true, 64, 800, 64},
    {"conv2_dcol", true, false, 800, 64, 64},
    {"fc1_fwd", false, true, 64, 128, 1024},
    {"fc1_dW", true, false, 128, 1024, 64},
    {"fc1_dX", false, false, 64, 1024, 128},
    {"fc2_fwd", false, true, 64, 10, 128},
    {"square256", false, false, 256, 256, 256},
    {"square512", false, false, 512, 512, 512},
    // ResNet-18's 512-channel 3x3 conv on 4x4 planes (batch 32): im2col GEMMs.
    {"r18_512_fwd", false, false, 512, 512, 4608},
    {"r18_512_dcol", true, false, 4608, 512, 512},
    {"r18_512_dW", false, true, 512, 4608, 512},
    // ResNet-50's last 1x1 convs (4x4 planes, batch 32): dx of 2048->512 and 512->2048.
    {"r50_1x1_dx2048", true, false, 2048, 512, 512},
    {"r50_1x1_dx512", true, false, 512, 512, 2048},
};

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Operands {
  std::vector<float> A, B, C;
  int64_t lda, ldb, ldc;
  explicit Operands(const Shape& s) : lda(s.ta ? s.M : s.K), ldb(s.tb ? s.K : s.N), ldc(s.N) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    A.resize(static_cast<size_t>(s.M * s.K));
    B.resize(static_cast<size_t>(s.K * s.N));
    C.resize(static_cast<size_t>(s.M * s.N));
    for (float& x : A) x = dist(rng);
    for (float& x : B) x = dist(rng);
  }
};

void run_ours(const mk::KernelTable& t, const Shape& s, Operands& o) {
  t.sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, o.A.data(), o.lda, o.B.data(), o.ldb, 0.0f, o.C.data(),
          o.ldc);
}

void run_eigen(const Shape& s, Operands& o) {
  Eigen::Map<const RowMajor> A(o.A.data(), s.ta ? s.K : s.M, s.ta ? s.M : s.K);
  Eigen::Map<const RowMajor> B(o.B.data(), s.tb ? s.N : s.K, s.tb ? s.K : s.N);
  Eigen::Map<RowMajor> C(o.C.data(), s.M, s.N);
  if (s.ta && s.tb)
    C.noalias() = A.transpose() * B.transpose();
  else if (s.ta)
    C.noalias() = A.transpose() * B;
  else if (s.tb)
    C.noalias() = A * B.transpose();
  else
    C.noalias() = A * B;
}

#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
void run_openblas(const Shape& s, Operands& o) {
  cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(s.M), static_cast<blasint>(s.N), static_cast<blasint>(s.K), 1.0f,
              o.A.data(), static_cast<blasint>(o.lda), o.B.data(), static_cast<blasint>(o.ldb),
              0.0f, o.C.data(), static_cast<blasint>(o.ldc));
}
#endif

double flops(const Shape& s) {
  return 2.0 * static_cast<double>(s.M * s.N * s.K);
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// GFLOP/s of `run` over at least 20 ms of this thread's CPU time (the machine is shared, so
// wall time would count other processes' slices).
double gflops_once(const Shape& s, const std::function<void()>& run) {
  int64_t calls = 0;
  const double start = thread_cpu_seconds();
  double seconds = 0.0;
  while (seconds < 0.02) {
    for (int i = 0; i < 4; ++i) run();
    calls += 4;
    seconds = thread_cpu_seconds() - start;
  }
  return flops(s) * static_cast<double>(calls) / seconds * 1e-9;
}

double peak_gflops() {
  if (const char* env = std::getenv("MERCURY_PEAK_GFLOPS")) return std::atof(env);
  constexpr double kFlopPerCycle = 32.0;  // 2 FMA pipes × 8 fp32 lanes × 2 FLOP
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("cpu MHz", 0) == 0) {
      return std::atof(line.substr(line.find(':') + 1).c_str()) * 1e-3 * kFlopPerCycle;
    }
  }
  return 0.0;
}

// Runs the Google Benchmark loop (Time/CPU columns), then measures `run` and the baselines in
// kRounds interleaved rounds and keeps each one's best GFLOP/s: ratios taken that way are
// robust to the load other processes put on the shared cores.
void time_and_report(benchmark::State& state, const Shape& s, const std::function<void()>& run,
                     bool with_ratios) {
  constexpr int kRounds = 7;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  Operands baseline_operands(s);
  const std::function<void()> eigen = [&] { run_eigen(s, baseline_operands); };
#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
  const std::function<void()> openblas = [&] { run_openblas(s, baseline_operands); };
#endif
  double best = 0.0, best_eigen = 0.0, best_openblas = 0.0;
  for (int round = 0; round < kRounds; ++round) {
    best = std::max(best, gflops_once(s, run));
    if (!with_ratios) continue;
    best_eigen = std::max(best_eigen, gflops_once(s, eigen));
#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
    best_openblas = std::max(best_openblas, gflops_once(s, openblas));
#endif
  }
  state.counters["GFLOPS"] = best;
  if (with_ratios) {
    state.counters["vs_eigen"] = best / best_eigen;
#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
    state.counters["vs_openblas"] = best / best_openblas;
#endif
  }
  if (const double peak = peak_gflops(); peak > 0.0)
    state.counters["pct_peak"] = 100.0 * best / peak;
}

void register_benchmarks() {
  for (const Shape& s : kShapes) {
    for (mk::Isa isa : mk::available_isas()) {
      const std::string name = std::string("sgemm/") + s.name + "/ours_" + mk::isa_name(isa);
      benchmark::RegisterBenchmark(name.c_str(), [s, isa](benchmark::State& state) {
        Operands o(s);
        const mk::KernelTable& t = mk::table_for(isa);
        time_and_report(
            state, s, [&] { run_ours(t, s, o); }, true);
      });
    }
    benchmark::RegisterBenchmark((std::string("sgemm/") + s.name + "/eigen").c_str(),
                                 [s](benchmark::State& state) {
                                   Operands o(s);
                                   time_and_report(
                                       state, s, [&] { run_eigen(s, o); }, false);
                                 });
#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
    benchmark::RegisterBenchmark((std::string("sgemm/") + s.name + "/openblas").c_str(),
                                 [s](benchmark::State& state) {
                                   Operands o(s);
                                   time_and_report(
                                       state, s, [&] { run_openblas(s, o); }, false);
                                 });
#endif
  }
}

}  // namespace

int main(int argc, char** argv) {
  Eigen::setNbThreads(1);
#if defined(MERCURY_BENCH_HAVE_OPENBLAS)
  openblas_set_num_threads(1);
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
#endif
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::AddCustomContext("peak_gflops_assumed", std::to_string(peak_gflops()));
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
