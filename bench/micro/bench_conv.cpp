// bench_conv — one conv2d layer's training step (forward, then backward for dx, dW and db) at the
// zoo's shapes, single thread, two comparisons interleaved in every iteration on the same data:
// - conv_step/: the shifted stride-1 path (no im2col, ops::detail::ShiftGeom) against the
//   im2col + GEMM + col2im path (both with Winograd off). Manual time is the shifted path's;
//   `vs_im2col` is the im2col path's time ÷ the shifted path's (> 1: the shifted path is faster)
//   and `waste` the columns it computes per useful output (ops::detail::shift_waste). These set
//   ops::detail::kShiftMaxWaste.
// - wino_step/: Winograd (mercury/autograd/winograd.hpp, forced on) against the best of the other
//   two (the automatic choice with Winograd off). Manual time is Winograd's; `vs_direct` is the
//   other's time ÷ Winograd's and `chosen` whether conv2d picks Winograd there by itself. These
//   set ops::detail::kWinogradMinChannels and kWinogradMaxWaste.
// A first layer (C ≤ 3) computes no dx, as in a model.
#include <benchmark/benchmark.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "mercury/autograd/ops_conv.hpp"
#include "mercury/autograd/tape.hpp"
#include "mercury/tensor/thread_pool.hpp"

namespace ops = mercury::ops;
using mercury::AlignedBuffer;
using mercury::Shape;
using mercury::Tape;
using mercury::Tensor;

namespace {

struct Layer {
  const char* name;
  int64_t N, C, O, K, pad, H, W;
};

// The zoo's stride-1 convs (bench/micro/zoo_workloads.hpp batches). VGG-13 runs 16 images of its
// 161×101 spectrograms to keep an iteration short (one lane group: Winograd's transforms run on
// 16 images at once).
const Layer kLayers[] = {
    {"cnn.conv1 1-32 5x5 28x28", 64, 1, 32, 5, 0, 28, 28},
    {"cnn.conv2 32-64 5x5 12x12", 64, 32, 64, 5, 0, 12, 12},
    {"resnet stem 3-16 3x3 32x32", 32, 3, 16, 3, 1, 32, 32},
    {"resnet 16-16 3x3 32x32", 32, 16, 16, 3, 1, 32, 32},
    {"resnet 32-32 3x3 16x16", 32, 32, 32, 3, 1, 16, 16},
    {"resnet 64-64 3x3 8x8", 32, 64, 64, 3, 1, 8, 8},
    {"resnet8 16-16 3x3 28x28", 32, 16, 16, 3, 1, 28, 28},
    {"resnet8 32-32 3x3 14x14", 32, 32, 32, 3, 1, 14, 14},
    {"resnet8 64-64 3x3 7x7", 32, 64, 64, 3, 1, 7, 7},
    {"resnet18 64-64 3x3 32x32", 32, 64, 64, 3, 1, 32, 32},
    {"resnet18 128-128 3x3 16x16", 32, 128, 128, 3, 1, 16, 16},
    {"resnet18 256-256 3x3 8x8", 32, 256, 256, 3, 1, 8, 8},
    {"resnet18 512-512 3x3 4x4", 32, 512, 512, 3, 1, 4, 4},
    {"vgg13 1-64 3x3 161x101", 16, 1, 64, 3, 1, 161, 101},
    {"vgg13 64-64 3x3 161x101", 16, 64, 64, 3, 1, 161, 101},
    {"vgg13 128-128 3x3 40x25", 16, 128, 128, 3, 1, 40, 25},
};

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

void BM_conv_step(benchmark::State& state, Layer l, bool winograd) {
  mercury::thread_pool().set_threads(1);
  const int64_t OH = l.H + 2 * l.pad - l.K + 1, OW = l.W + 2 * l.pad - l.K + 1;
  std::vector<float> x = random_floats(l.N * l.C * l.H * l.W, 1),
                     w = random_floats(l.O * l.C * l.K * l.K, 2), b = random_floats(l.O, 3),
                     dy = random_floats(l.N * l.O * OH * OW, 4);
  const Shape xs{l.N, l.C, l.H, l.W}, ws{l.O, l.C, l.K, l.K}, bs{l.O}, ys{l.N, l.O, OH, OW};
  AlignedBuffer gx(xs.numel()), gw(ws.numel()), gb(bs.numel());
  const ops::Conv2dParams p{1, 1, l.pad, l.pad, 1, 1, 1};
  const bool input_grad = l.C > 3;  // a model's first conv needs no dx
  Tape t;
  // The paths compared: (shift mode, Winograd mode) for the baseline and the subject.
  using ops::detail::ShiftGemm;
  using ops::detail::Winograd;
  const ShiftGemm base_shift = winograd ? ShiftGemm::automatic : ShiftGemm::never;
  const ShiftGemm subject_shift = winograd ? ShiftGemm::automatic : ShiftGemm::always;
  const Winograd subject_wino = winograd ? Winograd::always : Winograd::never;
  auto step = [&](ShiftGemm mode, Winograd wino) {
    ops::detail::shift_gemm_mode() = mode;
    ops::detail::winograd_mode() = wino;
    gx.tensor(xs).fill(0.0f);
    gw.tensor(ws).fill(0.0f);
    gb.tensor(bs).fill(0.0f);
    t.reset();
    auto y = ops::conv2d(t, t.leaf(Tensor{x.data(), xs}, gx.tensor(xs), input_grad),
                         t.leaf(Tensor{w.data(), ws}, gw.tensor(ws), true),
                         t.leaf(Tensor{b.data(), bs}, gb.tensor(bs), true), p);
    t.backward(y, Tensor{dy.data(), ys});
    benchmark::DoNotOptimize(gx.data());
  };
  using Clock = std::chrono::steady_clock;
  double shift_s = 0, im2col_s = 0;  // subject, baseline
  for (auto _ : state) {
    const auto t0 = Clock::now();
    step(base_shift, Winograd::never);
    const auto t1 = Clock::now();
    step(subject_shift, subject_wino);
    const auto t2 = Clock::now();
    im2col_s += std::chrono::duration<double>(t1 - t0).count();
    const double s = std::chrono::duration<double>(t2 - t1).count();
    shift_s += s;
    state.SetIterationTime(s);
  }
  ops::detail::shift_gemm_mode() = ShiftGemm::automatic;
  ops::detail::winograd_mode() = Winograd::automatic;
  if (winograd) {
    state.counters["vs_direct"] = shift_s > 0 ? im2col_s / shift_s : 0.0;
    const ops::detail::ConvGeom g{l.N, l.C, l.H, l.W, l.O, l.K, l.K, OH, OW};
    state.counters["chosen"] = ops::detail::winograd_for(g, p) != nullptr;
  } else {
    state.counters["vs_im2col"] = shift_s > 0 ? im2col_s / shift_s : 0.0;
    state.counters["waste"] = ops::detail::shift_waste(l.H, l.W, OH, OW, l.pad, l.pad);
  }
  // Training FLOPs: forward, dx and dW, 2 per multiply-add.
  state.counters["GFLOP/s"] = benchmark::Counter(
      6.0 * static_cast<double>(l.N * l.O * OH * OW * l.C * l.K * l.K) *
          static_cast<double>(state.iterations()) / 1e9 / (shift_s > 0 ? shift_s : 1.0),
      benchmark::Counter::kDefaults);
}

const bool kRegistered = [] {
  for (bool winograd : {false, true})
    for (const Layer& l : kLayers)
      if (!winograd || l.K == 3 || l.K == 5)
        benchmark::RegisterBenchmark(
            (std::string(winograd ? "wino_step/" : "conv_step/") + l.name).c_str(), BM_conv_step, l,
            winograd)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
