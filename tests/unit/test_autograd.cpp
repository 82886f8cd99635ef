// Gradient checks for every op and layer, and the tape/arena invariants.
#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "mercury/autograd/gradcheck.hpp"
#include "mercury/autograd/ops_basic.hpp"
#include "mercury/autograd/ops_conv.hpp"
#include "mercury/autograd/ops_linear.hpp"
#include "mercury/autograd/ops_loss.hpp"
#include "mercury/autograd/ops_norm.hpp"
#include "mercury/autograd/ops_pool.hpp"

using namespace mercury;

namespace {

// Owns test inputs; values uniform in [lo, hi], optionally pushed away from 0 (ReLU kinks).
struct Inputs {
  std::vector<AlignedBuffer> bufs;
  std::vector<Tensor> tensors;
  std::mt19937_64 rng{42};
  Tensor add(Shape s, float lo = -1.0f, float hi = 1.0f, float avoid = 0.0f) {
    bufs.emplace_back(s.numel());
    Tensor t = bufs.back().tensor(s);
    std::uniform_real_distribution<float> u(lo, hi);
    for (int64_t j = 0; j < t.numel(); ++j) {
      float v = u(rng);
      if (avoid > 0 && std::abs(v) < avoid) v = v < 0 ? v - avoid : v + avoid;
      t.data[j] = v;
    }
    tensors.push_back(t);
    return t;
  }
};

void expect_ok(const GradcheckResult& r) {
  INFO(r.worst);
  CHECK(r.checked > 0);
  CHECK(r.ok);
}

// One conv2d forward and backward (dy given): the output and the gradients, which accumulate
// into non-zero starting values (so a path that overwrites instead of adding is caught).
struct ConvResult {
  std::vector<float> y, gx, gw, gb;
};
ConvResult conv_with_grads(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy,
                           const ops::Conv2dParams& p) {
  AlignedBuffer gx(x.numel()), gw(w.numel()), gb(b.numel());
  gx.tensor(x.shape).fill(0.5f);
  gw.tensor(w.shape).fill(0.25f);
  gb.tensor(b.shape).fill(0.0f);
  Tape t;
  Var y = ops::conv2d(t, t.leaf(x, gx.tensor(x.shape), true), t.leaf(w, gw.tensor(w.shape), true),
                      t.leaf(b, gb.tensor(b.shape), true), p);
  ConvResult r{{y->value.data, y->value.data + y->numel()}, {}, {}, {}};
  t.backward(y, dy);
  r.gx.assign(gx.data(), gx.data() + x.numel());
  r.gw.assign(gw.data(), gw.data() + w.numel());
  r.gb.assign(gb.data(), gb.data() + b.numel());
  return r;
}
// Two paths' results agree within 1e-4 (relative, or absolute near 0); reports the first few
// differences and the count.
void expect_same(const ConvResult& got, const ConvResult& want) {
  auto same = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    REQUIRE(a.size() == b.size());
    int bad = 0;
    for (size_t j = 0; j < a.size(); ++j)
      if (!(a[j] == doctest::Approx(b[j]).epsilon(1e-4)) && bad++ < 5) {
        INFO(std::string(what) << "[" << j << "]");
        CHECK(a[j] == doctest::Approx(b[j]).epsilon(1e-4));
      }
    CHECK_MESSAGE(bad == 0, std::string(what) << ": " << bad << " of " << a.size() << " differ");
  };
  same(got.y, want.y, "y");
  same(got.gx, want.gx, "dx");
  same(got.gw, want.gw, "dW");
  same(got.gb, want.gb, "db");
}

}  // namespace

TEST_CASE("gradcheck catches a wrong backward rule") {
  // A deliberately wrong op: y = 2x with backward claiming dy/dx = 1.
  Inputs in;
  in.add(Shape{5});
  auto r = gradcheck(
      [](Tape& t, const std::vector<Var>& v) {
        Var y = t.op(v[0]->shape(),
                     [](Node& n, Tape& tp) {
                       kernels::table().axpy(n.numel(), 1.0f, n.grad.data, tp.grad(n.in[0]).data);
                     },
                     {v[0]});
        kernels::table().scale(v[0]->numel(), 2.0f, v[0]->value.data, y->value.data);
        return y;
      },
      in.tensors);
  CHECK_FALSE(r.ok);
  CHECK(r.worst.find("analytic") != std::string::npos);
}

TEST_CASE("element-wise ops and activations pass gradcheck") {
  Inputs in;
  in.add(Shape{3, 7}, -2, 2, 0.05f);
  in.add(Shape{3, 7}, -2, 2, 0.05f);
  expect_ok(gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::add(t, v[0], v[1]); },
                      in.tensors));
  expect_ok(gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::mul(t, v[0], v[1]); },
                      in.tensors));
  const std::vector<Tensor> one{in.tensors[0]};
  expect_ok(gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::relu(t, v[0]); }, one));
  expect_ok(
      gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::sigmoid(t, v[0]); }, one));
  expect_ok(gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::tanh(t, v[0]); }, one));
  expect_ok(gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::gelu(t, v[0]); }, one));
  Inputs r6;  // keep away from both kinks of relu6 (0 and 6)
  Tensor x = r6.add(Shape{20}, -3, 9, 0.05f);
  for (int64_t j = 0; j < x.numel(); ++j)
    if (std::abs(x.data[j] - 6.0f) < 0.05f) x.data[j] += 0.1f;
  expect_ok(gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::relu6(t, v[0]); },
                      r6.tensors));
}

TEST_CASE("reshape, flatten, concat and dropout pass gradcheck") {
  Inputs in;
  in.add(Shape{2, 3, 2, 2});
  in.add(Shape{2, 5, 2, 2});
  expect_ok(gradcheck(
      [](Tape& t, const std::vector<Var>& v) {
        return ops::mul(t, ops::flatten(t, v[0]), ops::reshape(t, v[0], Shape{2, 12}));
      },
      {in.tensors[0]}));
  for (int dim : {0, 1, 3}) {
    Inputs c;
    Shape sb{2, 3, 2, 2};
    sb[dim] = 4;
    c.add(Shape{2, 3, 2, 2});
    c.add(sb);
    expect_ok(gradcheck(
        [dim](Tape& t, const std::vector<Var>& v) { return ops::concat(t, v[0], v[1], dim); },
        c.tensors));
  }
  expect_ok(gradcheck(
      [](Tape& t, const std::vector<Var>& v) {
        std::mt19937_64 rng(7);  // same mask on every evaluation
        return ops::dropout(t, v[0], 0.3f, true, rng);
      },
      {in.tensors[1]}));
}

TEST_CASE("concat rejects mismatched shapes with both shapes named") {
  Tape t;
  AlignedBuffer a(6), b(8);
  Var va = t.leaf(a.tensor(Shape{2, 3})), vb = t.leaf(b.tensor(Shape{2, 4}));
  CHECK_THROWS_WITH(ops::concat(t, va, vb, 0), doctest::Contains("[2,3] and [2,4]"));
}

TEST_CASE("linear passes gradcheck with and without bias, 2-D and 3-D input") {
  for (bool bias : {true, false}) {
    Inputs in;
    in.add(Shape{4, 5});
    in.add(Shape{3, 5});
    if (bias) in.add(Shape{3});
    expect_ok(gradcheck(
        [bias](Tape& t, const std::vector<Var>& v) {
          return ops::linear(t, v[0], v[1], bias ? v[2] : nullptr);
        },
        in.tensors));
  }
  Inputs in3;
  in3.add(Shape{2, 3, 5});
  in3.add(Shape{4, 5});
  in3.add(Shape{4});
  expect_ok(
      gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::linear(t, v[0], v[1], v[2]); },
                in3.tensors));
}

TEST_CASE("conv2d passes gradcheck: stride, padding, dilation, groups, depthwise, pointwise") {
  struct Case {
    int64_t C, O, K, stride, pad, dil, groups, H;
    const char* what;
  };
  const Case cases[] = {
      {2, 3, 3, 1, 0, 1, 1, 5, "plain 3x3"},     {2, 4, 3, 2, 1, 1, 1, 6, "stride 2 pad 1"},
      {2, 2, 3, 1, 2, 2, 1, 6, "dilation 2"},    {4, 6, 3, 1, 1, 1, 2, 5, "groups 2"},
      {3, 3, 3, 1, 1, 1, 3, 5, "depthwise"},     {3, 3, 3, 2, 1, 1, 3, 6, "depthwise stride 2"},
      {3, 4, 1, 1, 0, 1, 1, 4, "pointwise 1x1"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    Inputs in;
    in.add(Shape{2, c.C, c.H, c.H});
    in.add(Shape{c.O, c.C / c.groups, c.K, c.K});
    in.add(Shape{c.O});
    ops::Conv2dParams p{c.stride, c.stride, c.pad, c.pad, c.dil, c.dil, c.groups};
    expect_ok(gradcheck(
        [&p](Tape& t, const std::vector<Var>& v) { return ops::conv2d(t, v[0], v[1], v[2], p); },
        in.tensors));
  }
}

TEST_CASE("linear split over 2 threads equals linear on one, output and every gradient") {
  // 64 × 200 × 100 = 1.28M multiply-adds: above detail::kLinearMinMacs, so every GEMM of the
  // op splits its columns (200 outputs, 100 inputs: uneven blocks of 32) over the pool.
  const int64_t rows = 64, in_f = 100, out_f = 200;
  REQUIRE(rows * in_f * out_f >= ops::detail::kLinearMinMacs);
  Inputs in;
  Tensor x = in.add(Shape{rows, in_f}), w = in.add(Shape{out_f, in_f}), b = in.add(Shape{out_f}),
         dy = in.add(Shape{rows, out_f});
  struct Result {
    std::vector<float> y, gx, gw, gb;
  };
  auto run = [&](int threads) {
    thread_pool().set_threads(threads);
    AlignedBuffer gx(x.numel()), gw(w.numel()), gb(b.numel());  // zeroed
    Tape t;
    Var y = ops::linear(t, t.leaf(x, gx.tensor(x.shape), true), t.leaf(w, gw.tensor(w.shape), true),
                        t.leaf(b, gb.tensor(b.shape), true));
    Result r{std::vector<float>(y->value.data, y->value.data + y->numel()), {}, {}, {}};
    t.backward(y, dy);
    r.gx.assign(gx.data(), gx.data() + x.numel());
    r.gw.assign(gw.data(), gw.data() + w.numel());
    r.gb.assign(gb.data(), gb.data() + b.numel());
    return r;
  };
  const int saved_threads = thread_pool().threads();
  const Result one = run(1), two = run(2);
  thread_pool().set_threads(saved_threads);
  const auto close = [](const std::vector<float>& a, const std::vector<float>& c) {
    REQUIRE(a.size() == c.size());
    for (size_t j = 0; j < a.size(); ++j) CHECK(a[j] == doctest::Approx(c[j]).epsilon(1e-5));
  };
  close(one.y, two.y);
  close(one.gx, two.gx);
  close(one.gw, two.gw);
  close(one.gb, two.gb);
  // And the forward is the product it claims to be (one entry per output column block).
  for (int64_t o : {int64_t{0}, int64_t{31}, int64_t{32}, int64_t{199}}) {
    double s = b.data[o];
    for (int64_t k = 0; k < in_f; ++k) s += double(x.data[5 * in_f + k]) * w.data[o * in_f + k];
    CHECK(two.y[5 * out_f + o] == doctest::Approx(s).epsilon(1e-5));
  }
}

TEST_CASE("conv2d over runs of several images equals the conv of each image alone") {
  // Small images put several of them into one GEMM (detail::images_per_gemm); each image alone
  // takes the one-image path. Both must agree for the output and every gradient, on 1 and 2
  // threads (2 threads: runs of 2 and 3 images).
  struct Case {
    int64_t C, O, K, stride, pad, groups, H;
    const char* what;
  };
  const Case cases[] = {{3, 5, 3, 1, 1, 1, 4, "3x3 pad 1"},
                        {4, 6, 3, 2, 1, 2, 5, "stride 2, groups 2"},
                        {6, 4, 1, 1, 0, 1, 3, "pointwise"},
                        {3, 2, 2, 1, 0, 1, 3, "2x2 no pad"}};
  const int saved_threads = thread_pool().threads();
  for (int threads : {1, 2}) {
    thread_pool().set_threads(threads);
    for (const Case& c : cases) {
      INFO(c.what << ", threads " << threads);
      const int64_t N = 5;
      Inputs in;
      Tensor x = in.add(Shape{N, c.C, c.H, c.H}), w = in.add(Shape{c.O, c.C / c.groups, c.K, c.K}),
             b = in.add(Shape{c.O});
      const ops::Conv2dParams p{c.stride, c.stride, c.pad, c.pad, 1, 1, c.groups};
      const int64_t OH = (c.H + 2 * c.pad - c.K) / c.stride + 1, out_image = c.O * OH * OH,
                    in_image = c.C * c.H * c.H;
      REQUIRE(ops::detail::images_per_gemm(OH * OH, c.C / c.groups * c.K * c.K, N,
                                           thread_pool().chunks_for(N)) > 1);
      Tensor dy = in.add(Shape{N, c.O, OH, OH});
      // The whole batch at once.
      AlignedBuffer gx(x.numel()), gw(w.numel()), gb(b.numel());
      gx.tensor(x.shape).fill(0.0f);
      gw.tensor(w.shape).fill(0.0f);
      gb.tensor(b.shape).fill(0.0f);
      Tape t;
      Var y =
          ops::conv2d(t, t.leaf(x, gx.tensor(x.shape), true), t.leaf(w, gw.tensor(w.shape), true),
                      t.leaf(b, gb.tensor(b.shape), true), p);
      const std::vector<float> y_all(y->value.data, y->value.data + y->numel());
      t.backward(y, dy);
      // Image by image; the weight and bias gradients accumulate over the images.
      AlignedBuffer gx1(in_image), gw1(w.numel()), gb1(b.numel());
      gw1.tensor(w.shape).fill(0.0f);
      gb1.tensor(b.shape).fill(0.0f);
      for (int64_t i = 0; i < N; ++i) {
        const Shape one{1, c.C, c.H, c.H};
        gx1.tensor(one).fill(0.0f);
        Tape t1;
        Var y1 = ops::conv2d(t1, t1.leaf(Tensor{x.data + i * in_image, one}, gx1.tensor(one), true),
                             t1.leaf(w, gw1.tensor(w.shape), true),
                             t1.leaf(b, gb1.tensor(b.shape), true), p);
        for (int64_t j = 0; j < out_image; ++j)
          CHECK(y1->value.data[j] == doctest::Approx(y_all[i * out_image + j]).epsilon(1e-5));
        t1.backward(y1, Tensor{dy.data + i * out_image, y1->shape()});
        for (int64_t j = 0; j < in_image; ++j)
          CHECK(gx1.data()[j] == doctest::Approx(gx.data()[i * in_image + j]).epsilon(1e-5));
      }
      for (int64_t j = 0; j < w.numel(); ++j)
        CHECK(gw1.data()[j] == doctest::Approx(gw.data()[j]).epsilon(1e-4));
      for (int64_t j = 0; j < b.numel(); ++j)
        CHECK(gb1.data()[j] == doctest::Approx(gb.data()[j]).epsilon(1e-4));
    }
  }
  thread_pool().set_threads(saved_threads);
}

TEST_CASE("conv2d's full-width window path (TextCNN's filters) equals a direct convolution") {
  // detail::is_window: one channel, kernel as wide as the input, stride 1, no padding. The
  // images of a run are one sequence (windows across boundaries dropped); dx adds window rows
  // back in place. Cases: several images per run, runs split over 2 threads, several runs per
  // chunk (H·KH·W·images above 2^21 floats), KH = H (one window per image), KH = W = 1.
  struct Case {
    int64_t N, O, H, W, KH;
  };
  const Case cases[] = {{5, 4, 7, 5, 3}, {30, 3, 100, 300, 5}, {3, 2, 6, 4, 6}, {4, 3, 5, 1, 1}};
  const int saved_threads = thread_pool().threads();
  for (int threads : {1, 2}) {
    thread_pool().set_threads(threads);
    for (const Case& c : cases) {
      INFO("N " << c.N << " O " << c.O << " H " << c.H << " W " << c.W << " KH " << c.KH
                << ", threads " << threads);
      const int64_t OH = c.H - c.KH + 1;
      Inputs in;
      Tensor x = in.add(Shape{c.N, 1, c.H, c.W}), w = in.add(Shape{c.O, 1, c.KH, c.W}),
             b = in.add(Shape{c.O}), dy = in.add(Shape{c.N, c.O, OH, 1});
      AlignedBuffer gx(x.numel()), gw(w.numel()), gb(b.numel());
      gx.tensor(x.shape).fill(0.5f);  // dx accumulates into what is there
      gw.tensor(w.shape).fill(0.0f);
      gb.tensor(b.shape).fill(0.0f);
      const ops::Conv2dParams params{};  // the op keeps a pointer to it for backward
      Tape t;
      Var y =
          ops::conv2d(t, t.leaf(x, gx.tensor(x.shape), true), t.leaf(w, gw.tensor(w.shape), true),
                      t.leaf(b, gb.tensor(b.shape), true), params);
      REQUIRE(y->shape() == Shape{c.N, c.O, OH, 1});
      // Wanted gradients and, for the tolerance, the sums of their terms' magnitudes.
      std::vector<double> want_gx(static_cast<size_t>(x.numel()), 0.5),
          want_gw(static_cast<size_t>(w.numel()), 0.0), want_gb(static_cast<size_t>(c.O), 0.0);
      std::vector<double> mag_gx(want_gx.size(), 0.5), mag_gw(want_gw.size(), 0.0),
          mag_gb(want_gb.size(), 0.0);
      int64_t bad_y = 0;
      for (int64_t i = 0; i < c.N; ++i)
        for (int64_t o = 0; o < c.O; ++o)
          for (int64_t oh = 0; oh < OH; ++oh) {
            double acc = b.data[o], mag = std::abs(b.data[o]);
            const float g = dy.data[(i * c.O + o) * OH + oh];
            want_gb[o] += g;
            mag_gb[o] += std::abs(g);
            for (int64_t k = 0; k < c.KH * c.W; ++k) {
              const float xv = x.data[(i * c.H + oh) * c.W + k], wv = w.data[o * c.KH * c.W + k];
              acc += static_cast<double>(wv) * xv;
              mag += std::abs(static_cast<double>(wv) * xv);
              want_gw[o * c.KH * c.W + k] += static_cast<double>(g) * xv;
              mag_gw[o * c.KH * c.W + k] += std::abs(static_cast<double>(g) * xv);
              want_gx[(i * c.H + oh) * c.W + k] += static_cast<double>(g) * wv;
              mag_gx[(i * c.H + oh) * c.W + k] += std::abs(static_cast<double>(g) * wv);
            }
            const float got = y->value.data[(i * c.O + o) * OH + oh];
            bad_y += std::abs(got - acc) > 1e-5 * (mag + 1.0);
          }
      CHECK(bad_y == 0);
      t.backward(y, dy);
      auto close = [](const float* got, const std::vector<double>& want,
                      const std::vector<double>& mag, const char* what) {
        int64_t bad = 0;
        for (size_t j = 0; j < want.size(); ++j)
          bad += std::abs(got[j] - want[j]) > 1e-5 * (mag[j] + 1.0);
        INFO(what);
        CHECK(bad == 0);
      };
      close(gx.data(), want_gx, mag_gx, "dx");
      close(gw.data(), want_gw, mag_gw, "dW");
      close(gb.data(), want_gb, mag_gb, "db");
    }
  }
  thread_pool().set_threads(saved_threads);
}

TEST_CASE("conv2d's shifted stride-1 path (no im2col) equals the im2col path") {
  // detail::ShiftGeom: the padded input's rows feed the GEMM directly, images stacked with
  // shared pad rows; dx is a stride-1 conv of padded dy with the flipped kernel, dW reads dy in
  // the stacked output layout. Forced on and off, both paths must agree for the output and
  // every gradient: "same" convs (dy's stacked copy doubles as dW's operand), valid convs,
  // asymmetric pads, dilation, groups, rectangular planes, and a pad so large that dx falls back
  // to col2im; on 1 and 2 threads (runs of several images and of one).
  struct Case {
    int64_t C, O, KH, KW, PH, PW, D, groups, H, W;
    const char* what;
  };
  const Case cases[] = {{3, 5, 3, 3, 1, 1, 1, 1, 6, 6, "3x3 same"},
                        {2, 4, 5, 5, 0, 0, 1, 1, 9, 9, "5x5 valid"},
                        {4, 6, 3, 3, 1, 1, 1, 2, 5, 7, "groups 2, 5x7"},
                        {3, 3, 3, 3, 2, 2, 2, 1, 7, 6, "dilation 2, same"},
                        {2, 3, 3, 5, 0, 2, 1, 1, 6, 8, "3x5, pad 0/2"},
                        {2, 2, 1, 3, 1, 0, 1, 1, 4, 5, "1x3, pad 1/0"},
                        {2, 3, 3, 3, 3, 3, 1, 1, 4, 4, "pad 3 > K-1: dx by col2im"}};
  const int saved_threads = thread_pool().threads();
  for (int threads : {1, 2}) {
    thread_pool().set_threads(threads);
    for (const Case& c : cases) {
      INFO(std::string(c.what) << ", threads " << threads);
      const int64_t N = 5;
      Inputs in;
      Tensor x = in.add(Shape{N, c.C, c.H, c.W}),
             w = in.add(Shape{c.O, c.C / c.groups, c.KH, c.KW}), b = in.add(Shape{c.O});
      const ops::Conv2dParams p{1, 1, c.PH, c.PW, c.D, c.D, c.groups};
      const int64_t OH = c.H + 2 * c.PH - c.D * (c.KH - 1), OW = c.W + 2 * c.PW - c.D * (c.KW - 1);
      Tensor dy = in.add(Shape{N, c.O, OH, OW});
      auto run = [&](ops::detail::ShiftGemm mode) {
        ops::detail::shift_gemm_mode() = mode;
        ConvResult r = conv_with_grads(x, w, b, dy, p);
        ops::detail::shift_gemm_mode() = ops::detail::ShiftGemm::automatic;
        return r;
      };
      expect_same(run(ops::detail::ShiftGemm::always), run(ops::detail::ShiftGemm::never));
    }
  }
  thread_pool().set_threads(saved_threads);
  // The automatic choice (bench_conv): shifted for ResNet's 3×3 convs down to 8×8 planes;
  // im2col where the wasted columns cost more (4×4 planes, the CNN's 12×12 → 8×8 valid conv) and
  // for a first layer's one input channel.
  using ops::detail::use_shift;
  CHECK(use_shift(16, 16, 32, 32, 32, 32, 1, 1));
  CHECK(use_shift(32, 32, 16, 16, 16, 16, 1, 1));
  CHECK(use_shift(64, 64, 8, 8, 8, 8, 1, 1));
  CHECK_FALSE(use_shift(512, 512, 4, 4, 4, 4, 1, 1));
  CHECK_FALSE(use_shift(32, 64, 12, 12, 8, 8, 0, 0));
  CHECK_FALSE(use_shift(1, 32, 28, 28, 24, 24, 0, 0));
}

TEST_CASE("Winograd transforms built from their points compute a correlation") {
  // y_i = Σ_k g_k · d_(i+k) for an α-tap input and an r-tap kernel, as Aᵀ[(G g) ⊙ (Bᵀ d)].
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int r : {3, 5}) {
    const ops::winograd::Transform& tf = *ops::winograd::transform_for(r);
    INFO("F(" << tf.m << ", " << tf.r << ")");
    REQUIRE(tf.a == tf.m + tf.r - 1);
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> g(static_cast<size_t>(tf.r)), d(static_cast<size_t>(tf.a));
      for (float& v : g) v = u(rng);
      for (float& v : d) v = u(rng);
      for (int i = 0; i < tf.m; ++i) {
        double want = 0, got = 0;
        for (int k = 0; k < tf.r; ++k) want += double(g[size_t(k)]) * d[size_t(i + k)];
        for (int j = 0; j < tf.a; ++j) {
          double gj = 0, dj = 0;
          for (int k = 0; k < tf.r; ++k) gj += double(tf.G[size_t(j * tf.r + k)]) * g[size_t(k)];
          for (int l = 0; l < tf.a; ++l) dj += double(tf.BT[size_t(j * tf.a + l)]) * d[size_t(l)];
          got += double(tf.AT[size_t(i * tf.a + j)]) * gj * dj;
        }
        CHECK(got == doctest::Approx(want).epsilon(1e-6));
      }
    }
  }
  CHECK(ops::winograd::transform_for(7) == nullptr);
  // The sparse forms the tile kernels multiply by hold exactly the dense matrices' nonzeros.
  for (int r : {3, 5}) {
    const ops::winograd::Transform& tf = *ops::winograd::transform_for(r);
    const int a = tf.a, m = tf.m;
    auto dense = [](const kernels::SparseRows& s) {
      std::vector<float> d(static_cast<size_t>(s.rows * s.cols), 0.0f);
      for (int i = 0; i < s.rows; ++i)
        for (int k = 0; k < s.n[i]; ++k) d[size_t(i * s.cols + s.col[i][k])] = s.val[i][k];
      return d;
    };
    std::vector<float> bt(tf.BT.begin(), tf.BT.begin() + a * a), b(size_t(a * a)),
        at(tf.AT.begin(), tf.AT.begin() + m * a), at_t(size_t(a * m));
    for (int i = 0; i < a; ++i)
      for (int k = 0; k < a; ++k) b[size_t(i * a + k)] = tf.BT[size_t(k * a + i)];
    for (int i = 0; i < a; ++i)
      for (int k = 0; k < m; ++k) at_t[size_t(i * m + k)] = tf.AT[size_t(k * a + i)];
    CHECK((tf.sBT.rows == a && tf.sBT.cols == a && dense(tf.sBT) == bt));
    CHECK((tf.sB.rows == a && tf.sB.cols == a && dense(tf.sB) == b));
    CHECK((tf.sAT.rows == m && tf.sAT.cols == a && dense(tf.sAT) == at));
    CHECK((tf.sA.rows == a && tf.sA.cols == m && dense(tf.sA) == at_t));
  }
}

TEST_CASE("conv2d's Winograd path equals the im2col path and passes gradcheck") {
  // Forced on and off, output and every gradient: 3×3 and 5×5, same and valid convs, tiles cut
  // at the image's edge, rectangular planes, pads up to K − 1, runs that end inside a lane group
  // (48×48: 12 rows of tiles per group), weights transformed 16 input channels at a time (whole
  // and partial blocks); 5 images (one partial lane group) or 40 (runs of several groups), on 1
  // and 2 threads.
  struct Case {
    int64_t C, O, K, PH, PW, H, W;
    const char* what;
    int64_t N = 5;
  };
  const Case cases[] = {{3, 5, 3, 1, 1, 8, 8, "3x3 same, whole tiles"},
                        {2, 4, 3, 0, 0, 9, 9, "3x3 valid, 7x7: cut tiles"},
                        {4, 6, 5, 0, 0, 12, 12, "5x5 valid, 12x12 (the CNN's conv2)"},
                        {3, 2, 5, 2, 1, 7, 10, "5x5, pad 2/1, 7x10"},
                        {2, 3, 3, 2, 2, 5, 6, "3x3, pad 2"},
                        {2, 3, 3, 1, 1, 48, 48, "3x3 same, 48x48: runs end inside images"},
                        {17, 6, 3, 1, 1, 6, 6, "17 channels: a whole and a partial lane block"},
                        {16, 3, 5, 0, 0, 9, 9, "5x5, 16 channels: whole lane blocks"},
                        {3, 4, 3, 1, 1, 8, 8, "40 images: runs span lane groups", 40}};
  const int saved_threads = thread_pool().threads();
  for (int threads : {1, 2}) {
    thread_pool().set_threads(threads);
    for (const Case& c : cases) {
      INFO(std::string(c.what) << ", threads " << threads);
      const int64_t N = c.N;
      Inputs in;
      Tensor x = in.add(Shape{N, c.C, c.H, c.W}), w = in.add(Shape{c.O, c.C, c.K, c.K}),
             b = in.add(Shape{c.O});
      const ops::Conv2dParams p{1, 1, c.PH, c.PW, 1, 1, 1};
      const int64_t OH = c.H + 2 * c.PH - c.K + 1, OW = c.W + 2 * c.PW - c.K + 1;
      Tensor dy = in.add(Shape{N, c.O, OH, OW});
      auto run = [&](ops::detail::Winograd mode) {
        ops::detail::winograd_mode() = mode;
        ConvResult r = conv_with_grads(x, w, b, dy, p);
        ops::detail::winograd_mode() = ops::detail::Winograd::automatic;
        return r;
      };
      expect_same(run(ops::detail::Winograd::always), run(ops::detail::Winograd::never));
    }
  }
  thread_pool().set_threads(saved_threads);

  ops::detail::winograd_mode() = ops::detail::Winograd::always;
  for (int64_t K : {3, 5}) {
    INFO("gradcheck, " << K << "x" << K);
    Inputs in;
    in.add(Shape{2, 2, 7, 6});
    in.add(Shape{3, 2, K, K});
    in.add(Shape{3});
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1, 1};
    expect_ok(gradcheck(
        [&p](Tape& t, const std::vector<Var>& v) { return ops::conv2d(t, v[0], v[1], v[2], p); },
        in.tensors));
  }
  ops::detail::winograd_mode() = ops::detail::Winograd::automatic;

  // The automatic choice: 3×3 and 5×5 stride-1 convs with 32+ channels each way whose tiles and
  // image lanes waste at most half the work (batch 64 here; 2 threads, 32 images per chunk).
  const int saved = thread_pool().threads();
  thread_pool().set_threads(2);
  auto chosen = [](int64_t C, int64_t O, int64_t K, int64_t H, int64_t pad, int64_t stride = 1,
                   int64_t groups = 1, int64_t N = 64) {
    const int64_t OH = (H + 2 * pad - K) / stride + 1;
    const ops::detail::ConvGeom g{N, C, H, H, O, K, K, OH, OH};
    return ops::detail::winograd_for(g, {stride, stride, pad, pad, 1, 1, groups}) != nullptr;
  };
  CHECK(chosen(32, 64, 5, 12, 0));                 // the reference CNN's conv2
  CHECK_FALSE(chosen(1, 32, 5, 28, 0));            // its conv1: one input channel
  CHECK(chosen(32, 32, 3, 16, 1));                 // ResNet-20's second stage
  CHECK_FALSE(chosen(16, 16, 3, 32, 1));           // its first: 16 channels
  CHECK(chosen(512, 512, 3, 4, 1));                // ResNet-18's last stage: one whole tile
  CHECK_FALSE(chosen(512, 512, 3, 2, 1));          // 2×2 in a 4×4 tile
  CHECK(chosen(64, 64, 3, 7, 1));                  // 7×7 in 8×8: 1.31 (ResNet-8 on 28×28)
  CHECK_FALSE(chosen(64, 64, 3, 32, 1, 2));        // stride 2
  CHECK_FALSE(chosen(64, 64, 3, 32, 1, 1, 2));     // groups
  CHECK_FALSE(chosen(64, 64, 7, 32, 3));           // 7×7
  CHECK(chosen(64, 64, 3, 32, 1, 1, 1, 24));       // 12 images per chunk: 16/12 = 1.33
  CHECK_FALSE(chosen(64, 64, 3, 32, 1, 1, 1, 8));  // 4 per chunk: 4× the lanes
  CHECK_FALSE(chosen(64, 64, 3, 7, 1, 1, 1, 24));  // 1.31 × 1.33 > 1.5
  thread_pool().set_threads(saved);
}

TEST_CASE("conv2d forward equals a direct convolution") {
  Inputs in;
  Tensor x = in.add(Shape{1, 2, 5, 5}), w = in.add(Shape{3, 2, 3, 3}), b = in.add(Shape{3});
  ops::Conv2dParams p{2, 2, 1, 1, 1, 1, 1};
  Tape t;
  Var y = ops::conv2d(t, t.leaf(x), t.leaf(w), t.leaf(b), p);
  REQUIRE(y->shape() == Shape{1, 3, 3, 3});
  for (int o = 0; o < 3; ++o)
    for (int oh = 0; oh < 3; ++oh)
      for (int ow = 0; ow < 3; ++ow) {
        double s = b.data[o];
        for (int c = 0; c < 2; ++c)
          for (int kh = 0; kh < 3; ++kh)
            for (int kw = 0; kw < 3; ++kw) {
              const int ih = oh * 2 - 1 + kh, iw = ow * 2 - 1 + kw;
              if (ih < 0 || ih >= 5 || iw < 0 || iw >= 5) continue;
              s += x.data[(c * 5 + ih) * 5 + iw] * w.data[((o * 2 + c) * 3 + kh) * 3 + kw];
            }
        CHECK(y->value.data[(o * 3 + oh) * 3 + ow] == doctest::Approx(s).epsilon(1e-5));
      }
}

TEST_CASE("pooling passes gradcheck") {
  Inputs in;
  // Distinct values spaced > 2·eps apart so max-pool has no near-ties.
  Tensor x = in.add(Shape{2, 2, 6, 6});
  std::vector<int> order(static_cast<std::size_t>(x.numel()));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), in.rng);
  for (int64_t j = 0; j < x.numel(); ++j) x.data[j] = 0.05f * static_cast<float>(order[j]);
  ops::Pool2dParams mp{2, 2, 2, 2, 0, 0}, mp_pad{3, 3, 2, 2, 1, 1};
  ops::Pool2dParams ap{3, 3, 1, 1, 1, 1};
  expect_ok(
      gradcheck([&](Tape& t, const std::vector<Var>& v) { return ops::max_pool2d(t, v[0], mp); },
                in.tensors));
  expect_ok(gradcheck(
      [&](Tape& t, const std::vector<Var>& v) { return ops::max_pool2d(t, v[0], mp_pad); },
      in.tensors));
  expect_ok(
      gradcheck([&](Tape& t, const std::vector<Var>& v) { return ops::avg_pool2d(t, v[0], ap); },
                in.tensors));
  expect_ok(
      gradcheck([](Tape& t, const std::vector<Var>& v) { return ops::global_avg_pool(t, v[0]); },
                in.tensors));
}

TEST_CASE("an intermediate's gradient is written by the first rule that reaches it, then added") {
  // h = tanh(x) feeds a rule K and a product; backward reaches K first when K's node is newer
  // (K writes h's fresh, unzeroed gradient, then the product adds), else K adds to it.
  using Rule = Var (*)(Tape&, Var, const std::vector<Var>&);
  const std::pair<const char*, Rule> rules[] = {
      {"relu", [](Tape& t, Var h, const std::vector<Var>&) { return ops::relu(t, h); }},
      {"relu6", [](Tape& t, Var h, const std::vector<Var>&) { return ops::relu6(t, h); }},
      {"sigmoid", [](Tape& t, Var h, const std::vector<Var>&) { return ops::sigmoid(t, h); }},
      {"tanh", [](Tape& t, Var h, const std::vector<Var>&) { return ops::tanh(t, h); }},
      {"reshape",
       [](Tape& t, Var h, const std::vector<Var>&) {
         return ops::reshape(t, ops::reshape(t, h, Shape{4, 12}), h->shape());
       }},
      {"add", [](Tape& t, Var h, const std::vector<Var>& v) { return ops::add(t, h, v[0]); }},
      {"dropout",
       [](Tape& t, Var h, const std::vector<Var>&) {
         std::mt19937_64 rng(7);  // same mask on every evaluation
         return ops::dropout(t, h, 0.3f, true, rng);
       }},
      {"batch_norm",
       [](Tape& t, Var h, const std::vector<Var>& v) {
         return ops::batch_norm(t, h, v[1], v[2], ops::BatchNormState{}, true);
       }},
  };
  for (const auto& [name, rule] : rules)
    for (bool rule_first : {true, false}) {
      INFO(name << (rule_first ? ": the rule writes h's gradient" : ": the rule adds to it"));
      Inputs in;
      in.add(Shape{4, 3, 2, 2}, -2, 2, 0.05f);
      in.add(Shape{3}, 0.5f, 1.5f);
      in.add(Shape{3});
      expect_ok(gradcheck(
          [&](Tape& t, const std::vector<Var>& v) {
            Var h = ops::tanh(t, v[0]);
            if (rule_first) {
              Var sq = ops::mul(t, h, h);
              return ops::add(t, sq, rule(t, h, v));
            }
            Var k = rule(t, h, v);
            return ops::add(t, k, ops::mul(t, h, h));
          },
          in.tensors));
    }
}

TEST_CASE("batch norm passes gradcheck in train and eval mode") {
  for (bool training : {true, false}) {
    INFO("training = " << training);
    Inputs in;
    in.add(Shape{4, 3, 2, 2}, -2, 2);
    in.add(Shape{3}, 0.5f, 1.5f);
    in.add(Shape{3});
    std::vector<float> rm{0.1f, -0.2f, 0.3f}, rv{0.9f, 1.2f, 0.7f};
    ops::BatchNormState st{training ? nullptr : rm.data(), training ? nullptr : rv.data(), 0.1f,
                           1e-5f};
    expect_ok(gradcheck(
        [&](Tape& t, const std::vector<Var>& v) {
          return ops::batch_norm(t, v[0], v[1], v[2], st, training);
        },
        in.tensors));
  }
  Inputs in2;  // 2-D input [N, C]
  in2.add(Shape{6, 3}, -2, 2);
  in2.add(Shape{3}, 0.5f, 1.5f);
  in2.add(Shape{3});
  ops::BatchNormState st{};
  expect_ok(gradcheck(
      [&](Tape& t, const std::vector<Var>& v) {
        return ops::batch_norm(t, v[0], v[1], v[2], st, true);
      },
      in2.tensors));
}

TEST_CASE("batch norm eval never writes running stats; train updates them like PyTorch") {
  Inputs in;
  Tensor x = in.add(Shape{4, 2}), g = in.add(Shape{2}), b = in.add(Shape{2});
  std::vector<float> rm{0, 0}, rv{1, 1};
  Tape t;
  ops::BatchNormState st{rm.data(), rv.data(), 0.1f, 1e-5f};
  ops::batch_norm(t, t.leaf(x), t.leaf(g), t.leaf(b), st, false);
  CHECK(rm == std::vector<float>{0, 0});
  CHECK(rv == std::vector<float>{1, 1});
  ops::batch_norm(t, t.leaf(x), t.leaf(g), t.leaf(b), st, true);
  double mean0 = 0, var0 = 0;
  for (int i = 0; i < 4; ++i) mean0 += x.data[i * 2] / 4.0;
  for (int i = 0; i < 4; ++i) var0 += (x.data[i * 2] - mean0) * (x.data[i * 2] - mean0) / 3.0;
  CHECK(rm[0] == doctest::Approx(0.1 * mean0).epsilon(1e-5));
  CHECK(rv[0] == doctest::Approx(0.9 + 0.1 * var0).epsilon(1e-5));
}

TEST_CASE("batch_norm_act equals the activation of batch_norm bit for bit, fused or not") {
  // Planes of 35 floats (not a vector multiple), values that ReLU6 clamps at both ends.
  Inputs in;
  Tensor x = in.add(Shape{3, 4, 5, 7}, -8, 8), g = in.add(Shape{4}, 0.5f, 3.0f),
         b = in.add(Shape{4}, -1.0f, 2.5f);
  for (const ops::NormAct act : {ops::NormAct::relu, ops::NormAct::relu6})
    for (const bool training : {true, false})
      for (const bool grad : {false, true}) {
        CAPTURE(static_cast<int>(act));
        CAPTURE(training);
        CAPTURE(grad);
        std::vector<float> rm1{0.1f, -0.2f, 0.3f, 0.0f}, rv1{0.9f, 1.2f, 0.7f, 2.0f};
        std::vector<float> rm2 = rm1, rv2 = rv1;
        Tape t1, t2;
        t1.set_grad_enabled(grad);
        t2.set_grad_enabled(grad);
        const ops::BatchNormState s1{rm1.data(), rv1.data(), 0.1f, 1e-5f},
            s2{rm2.data(), rv2.data(), 0.1f, 1e-5f};
        Var x1 = t1.leaf(x, {}, true), g1 = t1.leaf(g, {}, true), b1 = t1.leaf(b, {}, true);
        Var x2 = t2.leaf(x, {}, true), g2 = t2.leaf(g, {}, true), b2 = t2.leaf(b, {}, true);
        Var fused = ops::batch_norm_act(t1, x1, g1, b1, s1, training, act);
        Var y = ops::batch_norm(t2, x2, g2, b2, s2, training);
        Var two = act == ops::NormAct::relu ? ops::relu(t2, y) : ops::relu6(t2, y);
        REQUIRE(fused->numel() == two->numel());
        CHECK(std::memcmp(fused->value.data, two->value.data, sizeof(float) * two->numel()) == 0);
        CHECK(rm1 == rm2);
        CHECK(rv1 == rv2);
        CHECK(fused->requires_grad == grad);
        int64_t clamped_low = 0, clamped_high = 0;
        for (int64_t j = 0; j < two->numel(); ++j) {
          clamped_low += two->value.data[j] == 0.0f;
          clamped_high += two->value.data[j] == 6.0f;
        }
        CHECK(clamped_low > 0);
        if (act == ops::NormAct::relu6) CHECK(clamped_high > 0);
        if (!grad) continue;
        // The gradients too: the fused rule masks dy in place before the BN rule.
        Inputs seed;
        const Tensor dy = seed.add(x.shape, -1.0f, 1.0f);
        t1.backward(fused, dy);
        t2.backward(two, dy);
        for (auto [a, b2v] : {std::pair{x1, x2}, std::pair{g1, g2}, std::pair{b1, b2}}) {
          REQUIRE(a->grad.defined());
          REQUIRE(b2v->grad.defined());
          CHECK(std::memcmp(a->grad.data, b2v->grad.data, sizeof(float) * a->numel()) == 0);
        }
        float max_dx = 0.0f;
        for (int64_t j = 0; j < x.numel(); ++j)
          max_dx = std::max(max_dx, std::abs(x1->grad.data[j]));
        CHECK(max_dx > 0.0f);
      }
}

TEST_CASE("softmax cross-entropy gives per-sample losses and passes gradcheck") {
  Inputs in;
  in.add(Shape{4, 5}, -3, 3);
  const int32_t labels[4] = {0, 3, 4, 1};
  expect_ok(gradcheck(
      [&](Tape& t, const std::vector<Var>& v) { return ops::softmax_xent(t, v[0], labels); },
      in.tensors));
  const float w[4] = {0.5f, 2.0f, 1.0f, 0.25f};
  expect_ok(gradcheck(
      [&](Tape& t, const std::vector<Var>& v) {
        return ops::weighted_mean(t, ops::softmax_xent(t, v[0], labels), w);
      },
      in.tensors));
  // Values: loss_r = logsumexp - logit[label].
  Tape t;
  Var l = ops::softmax_xent(t, t.leaf(in.tensors[0]), labels);
  for (int r = 0; r < 4; ++r) {
    double m = 0;
    for (int k = 0; k < 5; ++k) m += std::exp(static_cast<double>(in.tensors[0].data[r * 5 + k]));
    CHECK(l->value.data[r] ==
          doctest::Approx(std::log(m) - in.tensors[0].data[r * 5 + labels[r]]).epsilon(1e-5));
  }
  const int32_t bad[4] = {0, 5, 1, 1};
  CHECK_THROWS_WITH(ops::softmax_xent(t, t.leaf(in.tensors[0]), bad),
                    doctest::Contains("label 5 of sample 1 is outside [0, 5)"));
}

TEST_CASE("no-grad mode records no backward and computes the same values") {
  Inputs in;
  Tensor x = in.add(Shape{2, 4}), w = in.add(Shape{3, 4});
  AlignedBuffer gw(12);
  Tape t;
  Var y1 = ops::relu(t, ops::linear(t, t.leaf(x), t.leaf(w, gw.tensor(w.shape), true), nullptr));
  CHECK(y1->requires_grad);
  std::vector<float> with_grad(y1->value.data, y1->value.data + 6);
  NoGradGuard ng(t);
  Var y2 = ops::relu(t, ops::linear(t, t.leaf(x), t.leaf(w, gw.tensor(w.shape), true), nullptr));
  CHECK_FALSE(y2->requires_grad);
  CHECK(!y2->backward);
  CHECK(std::vector<float>(y2->value.data, y2->value.data + 6) == with_grad);
}

TEST_CASE("a step of the same shapes allocates nothing after warm-up") {
  Inputs in;
  Tensor x = in.add(Shape{8, 2, 6, 6}), w = in.add(Shape{4, 2, 3, 3});
  AlignedBuffer gw(w.numel());
  ops::Conv2dParams p{};
  Tape t;
  int64_t allocs_after_two = 0;
  for (int step = 0; step < 5; ++step) {
    t.reset();
    Var y =
        ops::relu(t, ops::conv2d(t, t.leaf(x), t.leaf(w, gw.tensor(w.shape), true), nullptr, p));
    Var l = ops::global_avg_pool(t, y);
    Tensor seed = t.scratch(l->shape());
    seed.fill(1.0f);
    t.backward(l, seed);
    if (step == 1) allocs_after_two = t.arena().allocations();
  }
  CHECK(t.arena().blocks() == 1);
  CHECK(t.arena().allocations() == allocs_after_two);
}

#include "mercury/nn/check_module.hpp"
#include "mercury/nn/layers.hpp"

TEST_CASE("check_module verifies whole layers with respect to input and parameters") {
  nn::ParamStore ps;
  nn::Sequential net;
  net.add<nn::Conv2d>(ps, "conv", 2, 4, nn::Conv2dOptions{.kernel = 3, .padding = 1});
  net.add<nn::BatchNorm>(ps, "bn", 4);
  net.add<nn::Act>(nn::Activation::tanh);
  net.add<nn::AvgPool2d>(2);
  net.add<nn::Flatten>();
  net.add<nn::Dropout>(0.25f);
  net.add<nn::Linear>(ps, "fc", 16, 3);
  ps.finalize(5);
  Inputs in;
  Tensor x = in.add(Shape{3, 2, 4, 4});
  for (bool training : {true, false}) {
    INFO("training = " << training);
    expect_ok(nn::check_module(net, ps, x, training));
  }
}

TEST_CASE("2x2 max-pool: first maximum wins ties, NaN propagates, gradient goes to the argmax") {
  AlignedBuffer xb(2 * 4 * 4);
  Tensor x = xb.tensor(Shape{1, 2, 4, 4});
  for (int64_t j = 0; j < x.numel(); ++j) x.data[j] = static_cast<float>(j % 3);  // many ties
  x.data[5] = std::numeric_limits<float>::quiet_NaN();  // plane 0, window (0,0)... row 1 col 1
  ops::Pool2dParams p{2, 2, 2, 2, 0, 0};
  Tape t;
  AlignedBuffer gx(x.numel());
  Var y = ops::max_pool2d(t, t.leaf(x, gx.tensor(x.shape), true), p);
  for (int64_t pl = 0; pl < 2; ++pl)
    for (int64_t oh = 0; oh < 2; ++oh)
      for (int64_t ow = 0; ow < 2; ++ow) {
        float best = 0;
        bool any = false;
        for (int64_t k = 0; k < 4; ++k) {  // scan order: row-major inside the window
          const int64_t j = pl * 16 + (2 * oh + k / 2) * 4 + 2 * ow + k % 2;
          const float v = x.data[j];
          if (!any || v > best || (v != v && best == best)) {
            best = v;
            any = true;
          }
        }
        const float got = y->value.data[(pl * 2 + oh) * 2 + ow];
        if (best != best) {
          CHECK(got != got);
        } else {
          CHECK(got == best);
        }
      }
  Tensor seed = t.scratch(y->shape());
  for (int64_t j = 0; j < seed.numel(); ++j) seed.data[j] = static_cast<float>(j + 1);
  t.backward(y, seed);
  // Each window's gradient lands on exactly one input: the first maximum (or the NaN).
  double total = 0;
  for (int64_t j = 0; j < gx.size(); ++j) total += gx.data()[j];
  CHECK(total == doctest::Approx(36.0));  // 1 + 2 + ... + 8
  CHECK(gx.data()[5] == 1.0f);            // the NaN window (plane 0, window 0) holds seed 1
  CHECK(gx.data()[11] == 4.0f);           // window (1,1) holds 1,2,2,0: the first 2 wins...
  CHECK(gx.data()[14] == 0.0f);           // ...and its tie partner gets nothing
}

TEST_CASE("ReLU after a 2x2 max-pool equals the max-pool after ReLU, value and gradient") {
  // The reference CNN pools before its ReLUs (a quarter of the floats); this is why it may.
  // Windows all negative, mixed, with exact zeros and ties; planes of 6×10.
  AlignedBuffer xb(2 * 3 * 6 * 10);
  Tensor x = xb.tensor(Shape{2, 3, 6, 10});
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> q(-4, 3);
  for (int64_t j = 0; j < x.numel(); ++j) x.data[j] = 0.5f * static_cast<float>(q(rng));
  for (int64_t j = 0; j < 4; ++j) x.data[j] = -1.0f;  // a window of negatives only
  ops::Pool2dParams p{2, 2, 2, 2, 0, 0};
  AlignedBuffer g1(x.numel()), g2(x.numel());
  Tape t1, t2;
  Var a = ops::relu(t1, ops::max_pool2d(t1, t1.leaf(x, g1.tensor(x.shape), true), p));
  Var b = ops::max_pool2d(t2, ops::relu(t2, t2.leaf(x, g2.tensor(x.shape), true)), p);
  REQUIRE(a->numel() == b->numel());
  CHECK(std::memcmp(a->value.data, b->value.data, sizeof(float) * a->numel()) == 0);
  Tensor seed = t1.scratch(a->shape());
  for (int64_t j = 0; j < seed.numel(); ++j) seed.data[j] = static_cast<float>(j % 7) - 2.5f;
  t1.backward(a, seed);
  t2.backward(b, seed);
  CHECK(std::memcmp(g1.data(), g2.data(), sizeof(float) * x.numel()) == 0);
  int64_t zeros = 0, live = 0;
  for (int64_t j = 0; j < x.numel(); ++j) (g1.data()[j] == 0.0f ? zeros : live) += 1;
  CHECK(live > 0);  // some gradient flows, and most inputs get none
  CHECK(zeros > live);
}
