// bench_kernels — the element-wise, batch-norm and depthwise-conv micro-kernels, every ISA
// against ref in the same run, single thread.
//
// Each benchmark times one ISA's kernel (manual time: only the kernel calls) and, interleaved
// with it in every iteration, ref's kernel on the same data; the counter `vs_ref` is ref's time ÷
// the ISA's (> 1: faster than the scalar reference). Shapes are the reference CNN's for the
// 2×2 max pool and im2col (its two 5×5 convs, 8 images into one run's columns), otherwise
// MobileNetV2's / DS-CNN's: a 32×32 plane (3×3 depthwise, pad 1, stride 1 and 2), 64 channel planes
// of 1,024 floats for batch norm, 65,536 floats for ReLU6; wino_tile16 runs the input transforms
// of F(4×4, 3×3) and F(4×4, 5×5) (Bᵀ d B) on 64 groups of 16 tiles.
#include <benchmark/benchmark.h>

#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "mercury/autograd/winograd.hpp"

namespace mk = mercury::kernels;

namespace {

std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

// One kernel invocation on a given table.
using Call = std::function<void(const mk::KernelTable&)>;

void run_against_ref(benchmark::State& state, mk::Isa isa, const Call& call, int64_t bytes) {
  const mk::KernelTable& t = mk::table_for(isa);
  const mk::KernelTable& ref = mk::table_for(mk::Isa::ref);
  using Clock = std::chrono::steady_clock;
  double isa_s = 0, ref_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    call(ref);
    const auto t1 = Clock::now();
    call(t);
    const auto t2 = Clock::now();
    ref_s += std::chrono::duration<double>(t1 - t0).count();
    const double s = std::chrono::duration<double>(t2 - t1).count();
    isa_s += s;
    state.SetIterationTime(s);
  }
  state.counters["vs_ref"] = isa_s > 0 ? ref_s / isa_s : 0.0;
  state.SetBytesProcessed(state.iterations() * bytes);
}

struct Buffers {
  static constexpr int64_t kElems = 65536, kPlane = 1024, kPlanes = 64, kH = 32, kW = 32;
  std::vector<float> x = random_floats(kElems, 1, -8.0f, 8.0f), y = random_floats(kElems, 2),
                     dy = random_floats(kElems, 3), dx = random_floats(kElems, 4),
                     xhat = random_floats(kElems, 5), w = random_floats(9, 6),
                     dw = std::vector<float>(9, 0.0f);
};
Buffers& buffers() {
  static Buffers b;
  return b;
}

void register_all() {
  Buffers& b = buffers();
  const int64_t n = Buffers::kElems, S = Buffers::kPlane, planes = Buffers::kPlanes;
  struct Kernel {
    std::string name;
    Call call;
    int64_t bytes;  // floats read + written per call × 4
  };
  const int64_t H = Buffers::kH, W = Buffers::kW;
  std::vector<Kernel> kernels = {
      // The reference CNN's first pool: 24×24 planes → 12×12, with the argmax (64 planes).
      {"max_pool_2x2/64x24x24",
       [&b](const mk::KernelTable& k) {
         static std::vector<int32_t> arg(64 * 144);
         for (int64_t p = 0; p < 64; ++p)
           k.max_pool_2x2(12, 12, b.x.data() + p * 576, 24, b.y.data() + p * 144,
                          arg.data() + p * 144);
       },
       64 * (576 + 2 * 144) * 4},
      // The reference CNN's im2col: conv1 (1×28×28 → 24×24) and conv2 (32×12×12 → 8×8), each
      // image's columns at its offset in a run of 8 images (ld = 8·OH·OW).
      {"im2col/cnn_conv1_1x28x28_5x5",
       [](const mk::KernelTable& k) {
         static const std::vector<float> x = random_floats(8 * 784, 7);
         static std::vector<float> col(25 * 8 * 576);
         for (int64_t j = 0; j < 8; ++j)
           k.im2col(x.data() + j * 784, 1, 28, 28, 5, 5, 1, 1, 0, 0, 1, 1, 24, 24,
                    col.data() + j * 576, 8 * 576);
       },
       8 * (784 + 25 * 576) * 4},
      {"im2col/cnn_conv2_32x12x12_5x5",
       [](const mk::KernelTable& k) {
         static const std::vector<float> x = random_floats(8 * 32 * 144, 8);
         static std::vector<float> col(800 * 8 * 64);
         for (int64_t j = 0; j < 8; ++j)
           k.im2col(x.data() + j * 32 * 144, 32, 12, 12, 5, 5, 1, 1, 0, 0, 1, 1, 8, 8,
                    col.data() + j * 64, 8 * 64);
       },
       8 * (32 * 144 + 800 * 64) * 4},
      {"relu6_fwd/65536",
       [&b, n](const mk::KernelTable& k) { k.relu6_fwd(n, b.x.data(), b.y.data()); }, 2 * n * 4},
      {"relu6_bwd/65536",
       [&b, n](const mk::KernelTable& k) {
         k.relu6_bwd(n, b.y.data(), b.dy.data(), b.dx.data(), true);
       },
       4 * n * 4},
      {"bn_stats/64x1024",
       [&b, S, planes](const mk::KernelTable& k) {
         float acc = 0;
         for (int64_t p = 0; p < planes; ++p) acc += k.sum(S, b.x.data() + p * S);
         for (int64_t p = 0; p < planes; ++p) acc += k.sum_sq_dev(S, b.x.data() + p * S, 0.1f);
         benchmark::DoNotOptimize(acc);
       },
       2 * planes * S * 4},
      {"bn_fwd/64x1024",
       [&b, S, planes](const mk::KernelTable& k) {
         for (int64_t p = 0; p < planes; ++p)
           k.bn_fwd(S, b.x.data() + p * S, 0.1f, 1.3f, 0.9f, 0.05f, b.xhat.data() + p * S,
                    b.y.data() + p * S);
       },
       3 * planes * S * 4},
      {"bn_bwd/64x1024",
       [&b, S, planes](const mk::KernelTable& k) {
         float acc = 0;
         for (int64_t p = 0; p < planes; ++p)
           acc +=
               k.sum(S, b.dy.data() + p * S) + k.dot(S, b.dy.data() + p * S, b.xhat.data() + p * S);
         for (int64_t p = 0; p < planes; ++p)
           k.bn_bwd(S, b.dy.data() + p * S, b.xhat.data() + p * S, 0.7f, 0.01f, 0.02f,
                    b.dx.data() + p * S, true);
         benchmark::DoNotOptimize(acc);
       },
       7 * planes * S * 4},
  };
  for (int r : {3, 5}) {
    const auto& tf = *mercury::ops::winograd::transform_for(r);
    const int64_t a = tf.a, group = a * a * 16;
    kernels.push_back({"wino_tile16/input_F4x" + std::to_string(r) + "_64x16_tiles",
                       [&b, &tf, a, group](const mk::KernelTable& k) {
                         for (int64_t g = 0; g < 64; ++g)
                           k.wino_tile16(tf.sBT, b.x.data() + g * group, a * 16, 16,
                                         b.y.data() + g * group, a * 16, 16, false);
                       },
                       2 * 64 * group * 4});
  }
  for (int64_t stride : {1, 2}) {
    const int64_t OH = (H + 2 - 3) / stride + 1, OW = (W + 2 - 3) / stride + 1;
    const std::string tag = "/32x32_3x3_s" + std::to_string(stride);
    kernels.push_back({"dwconv2d" + tag,
                       [&b, H, W, stride, OH, OW](const mk::KernelTable& k) {
                         for (int64_t p = 0; p < 64; ++p)
                           k.dwconv2d(b.x.data() + p * H * W, H, W, b.w.data(), 3, 3, stride,
                                      stride, 1, 1, 1, 1, 0.0f, OH, OW, b.y.data() + p * H * W);
                       },
                       64 * (H * W + OH * OW) * 4});
    kernels.push_back({"dwconv2d_bwd" + tag,
                       [&b, H, W, stride, OH, OW](const mk::KernelTable& k) {
                         for (int64_t p = 0; p < 64; ++p)
                           k.dwconv2d_bwd(b.x.data() + p * H * W, H, W, b.w.data(), 3, 3, stride,
                                          stride, 1, 1, 1, 1, OH, OW, b.dy.data() + p * H * W,
                                          b.dx.data() + p * H * W, b.dw.data());
                       },
                       64 * (3 * H * W + OH * OW) * 4});
  }
  for (const Kernel& kernel : kernels)
    for (mk::Isa isa : mk::available_isas()) {
      if (isa == mk::Isa::ref) continue;
      benchmark::RegisterBenchmark((kernel.name + "/" + mk::isa_name(isa)).c_str(),
                                   [kernel, isa](benchmark::State& state) {
                                     run_against_ref(state, isa, kernel.call, kernel.bytes);
                                   })
          ->UseManualTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
