// The model zoo: parameter counts against the standard definitions, a training step and a scoring
// pass of every model, finite-difference checks of every composite block and of the new ops.
//
// Heavy cases (every full model's forward + backward) are in the test suite "models-big": a
// sanitizer/Debug run can skip them with --test-suite-exclude=models-big.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "mercury/autograd/gradcheck.hpp"
#include "mercury/autograd/ops_pool.hpp"
#include "mercury/nn/check_module.hpp"
#include "mercury/nn/engine.hpp"
#include "models/blocks.hpp"
#include "models/registry.hpp"

using namespace mercury;
using models::ModelOptions;

namespace {

void expect_ok(const GradcheckResult& r) {
  INFO(r.worst);
  CHECK(r.checked > 0);
  CHECK(r.ok);
}

// Uniform values in [-1, 1].
struct Buffer {
  AlignedBuffer buf;
  Tensor t;
  Buffer(Shape s, uint64_t seed) : buf(s.numel()), t(buf.tensor(s)) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t j = 0; j < t.numel(); ++j) t.data[j] = u(rng);
  }
};

// ---- expected parameter counts, derived independently of the model code -----------------------
// BN contributes γ and β (2 per channel); convs have no bias unless stated.
int64_t basic_block(int64_t in, int64_t p, int64_t stride) {
  const bool proj = stride != 1 || in != p;
  return 9 * in * p + 2 * p + 9 * p * p + 2 * p + (proj ? in * p + 2 * p : 0);
}
int64_t bottleneck(int64_t in, int64_t p, int64_t stride) {
  const int64_t out = 4 * p;
  const bool proj = stride != 1 || in != out;
  return in * p + 2 * p + 9 * p * p + 2 * p + p * out + 2 * out + (proj ? in * out + 2 * out : 0);
}
// Stem conv3×3 + BN, stages (first block of stages > 0 has stride 2), Linear.
int64_t resnet_count(int64_t C, int64_t K, int64_t stem, std::vector<int64_t> blocks,
                     std::vector<int64_t> planes, bool bn) {
  int64_t n = 9 * C * stem + 2 * stem, in = stem;
  for (std::size_t s = 0; s < blocks.size(); ++s)
    for (int64_t b = 0; b < blocks[s]; ++b) {
      const int64_t stride = s > 0 && b == 0 ? 2 : 1;
      n += bn ? bottleneck(in, planes[s], stride) : basic_block(in, planes[s], stride);
      in = bn ? 4 * planes[s] : planes[s];
    }
  return n + in * K + K;
}
int64_t make_div8(double v) {
  int64_t r = std::max<int64_t>(8, static_cast<int64_t>(v + 4.0) / 8 * 8);
  return static_cast<double>(r) < 0.9 * v ? r + 8 : r;
}
// torchvision mobilenet_v2: stem conv3×3+BN, inverted residuals, conv1×1+BN, Linear.
int64_t mobilenetv2_count(int64_t C, int64_t K, double w) {
  const int64_t table[7][3] = {{1, 16, 1}, {6, 24, 2},  {6, 32, 3}, {6, 64, 4},
                               {6, 96, 3}, {6, 160, 3}, {6, 320, 1}};  // t, c, n
  int64_t in = make_div8(32 * w), n = 9 * C * in + 2 * in;
  for (const auto& row : table) {
    const int64_t out = make_div8(static_cast<double>(row[1]) * w);
    for (int64_t i = 0; i < row[2]; ++i, in = out) {
      const int64_t h = in * row[0];
      if (row[0] != 1) n += in * h + 2 * h;
      n += 9 * h + 2 * h + h * out + 2 * out;
    }
  }
  const int64_t last = make_div8(1280 * std::max(1.0, w));
  return n + in * last + 2 * last + last * K + K;
}
// VGG-13-BN features (convs WITH bias, as torchvision) for C input channels.
int64_t vgg13_features(int64_t C) {
  int64_t n = 0, in = C;
  for (int64_t c : {64, 64, 128, 128, 256, 256, 512, 512, 512, 512}) {
    n += in * c * 9 + c + 2 * c;
    in = c;
  }
  return n;
}

// ---- one batch for any model ------------------------------------------------------------------
struct Batch {
  std::vector<float> x;
  std::vector<int32_t> y;
};
Batch make_batch(const nn::Model& m, int64_t B, int64_t vocab, uint64_t seed) {
  Batch b;
  b.x.resize(static_cast<std::size_t>(B * m.sample_numel()));
  std::mt19937_64 rng(seed);
  if (vocab > 0) {  // token ids, 1..vocab-1 (0 is padding)
    std::uniform_int_distribution<int64_t> u(1, vocab - 1);
    for (float& v : b.x) v = static_cast<float>(u(rng));
  } else {
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : b.x) v = n(rng);
  }
  for (int64_t i = 0; i < B; ++i) b.y.push_back(static_cast<int32_t>((i * 7 + 3) % m.num_classes));
  return b;
}

struct ModelCase {
  const char* name;
  Shape test_sample;  // reduced where the model allows
  int64_t classes;
  int64_t vocab;  // > 0: token inputs
  ModelOptions options;
};

std::vector<ModelCase> model_cases() {
  ModelOptions small_text;
  small_text.lstm_attention.vocab = 500;
  small_text.textcnn.vocab = 500;
  small_text.textcnn.embed_dim = 32;
  return {
      {"resnet8", Shape{3, 32, 32}, 10, 0, {}},
      {"resnet20", Shape{3, 32, 32}, 10, 0, {}},
      {"resnet18", Shape{3, 32, 32}, 10, 0, {}},
      {"resnet50", Shape{3, 32, 32}, 100, 0, {}},
      {"mobilenetv2", Shape{3, 32, 32}, 30, 0, {}},
      {"vgg13", Shape{1, 40, 36}, 35, 0, {}},
      {"ds_cnn", Shape{1, 40, 32}, 35, 0, {}},
      {"lstm_attention", Shape{16}, 4, 500, small_text},
      {"textcnn", Shape{16}, 4, 500, small_text},
  };
}

}  // namespace

TEST_CASE("every model's parameter count equals the standard definition's") {
  struct Expect {
    const char* name;
    Shape sample;
    int64_t classes;
    int64_t expected;
    ModelOptions options = {};
  };
  ModelOptions half_width, medium_ds;
  half_width.mobilenetv2.width = 0.5;
  medium_ds.ds_cnn.size = models::DsCnnOptions::Size::m;
  // Cross-checks of the formulas above against published figures:
  // - kuangliu/pytorch-cifar ResNet18() = 11,173,962 and ResNet50() = 23,520,842 (10 classes);
  // - akamaster/pytorch_resnet_cifar10 resnet20 (option A shortcuts) = 269,722: option B adds the
  //   two projections 16·32 + 2·32 + 32·64 + 2·64 = 2,752 → 272,474;
  // - torchvision mobilenet_v2() = 3,504,872 (3 channels, 1000 classes), width 0.5 = 1,968,680;
  // - torchvision vgg13_bn() = 133,053,736 = features(3) + 25088·4096+4096 + 4096·4096+4096 +
  //   4096·1000+1000 (the classifier we replace by one Linear, see models/vgg.hpp).
  CHECK(resnet_count(3, 10, 64, {2, 2, 2, 2}, {64, 128, 256, 512}, false) == 11'173'962);
  CHECK(resnet_count(3, 10, 64, {3, 4, 6, 3}, {64, 128, 256, 512}, true) == 23'520'842);
  CHECK(resnet_count(3, 10, 16, {3, 3, 3}, {16, 32, 64}, false) == 269'722 + 2'752);
  CHECK(mobilenetv2_count(3, 1000, 1.0) == 3'504'872);
  CHECK(mobilenetv2_count(3, 1000, 0.5) == 1'968'680);
  CHECK(vgg13_features(3) + 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000 ==
        133'053'736);

  const std::vector<Expect> cases = {
      // CIFAR-10 / SVHN: ResNet-18, 10 classes (kuangliu's figure).
      {"resnet18", Shape{3, 32, 32}, 10, 11'173'962},
      // CIFAR-100: ResNet-50, 100 classes = 23,520,842 + 90·2049.
      {"resnet50", Shape{3, 32, 32}, 100, 23'705'252},
      {"resnet50", Shape{3, 32, 32}, 10, 23'520'842},
      // resnet20: option B; resnet8: 1 block per stage, option B (formula: 78,042).
      {"resnet20", Shape{3, 32, 32}, 10, 272'474},
      {"resnet8", Shape{3, 32, 32}, 10, resnet_count(3, 10, 16, {1, 1, 1}, {16, 32, 64}, false)},
      // AID: MobileNetV2, 30 classes = 3,504,872 − 1281·970.
      {"mobilenetv2", Shape{3, 64, 64}, 30, 3'504'872 - 1281 * 970},
      {"mobilenetv2", Shape{3, 32, 32}, 10, mobilenetv2_count(3, 10, 0.5), half_width},
      // Speech Commands: VGG-13-BN on 1 channel, GAP + Linear(512 → 35).
      {"vgg13", Shape{1, 161, 101}, 35, vgg13_features(1) + 512 * 35 + 35},
      // DS-CNN S / M, 1 channel, 35 classes: N·40 + 2N + 4·(9N + 2N + N² + 2N) + N·K + K.
      {"ds_cnn", Shape{1, 161, 101}, 35,
       64 * 40 + 128 + 4 * (9 * 64 + 128 + 64 * 64 + 128) + 64 * 35 + 35},
      {"ds_cnn", Shape{1, 40, 101}, 35,
       172 * 40 + 344 + 4 * (9 * 172 + 344 + 172 * 172 + 344) + 172 * 35 + 35, medium_ds},
      // AG News, 4 classes (defaults vocab 20,000, E = H = A = 128):
      // embedding + 2 BiLSTM layers (4H·(in + H) + 8H per direction) + attention + fc.
      {"lstm_attention", Shape{100}, 4,
       20000 * 128 + 2 * (512 * (128 + 128) + 1024) + 2 * (512 * (256 + 128) + 1024) +
           (128 * 256 + 128 + 128) + 256 * 4 + 4},
      // Kim 2014 defaults (vocab 20,000, E = 300, 3 × 100 filters of 3/4/5 × 300, with bias).
      {"textcnn", Shape{100}, 4,
       20000 * 300 + 100 * (3 * 300 + 1) + 100 * (4 * 300 + 1) + 100 * (5 * 300 + 1) + 300 * 4 + 4},
      // The pre-existing models keep their counts.
      {"cnn", Shape{1, 28, 28}, 10, 32 * 25 + 32 + 64 * 32 * 25 + 64 + 1024 * 128 + 128 + 1290},
  };
  for (const auto& c : cases) {
    auto m = models::make_model(c.name, c.sample, c.classes, 1, c.options);
    INFO(std::string(c.name) << " " << c.sample.str() << " classes " << c.classes);
    MESSAGE(std::string(c.name) << " " << c.sample.str() << " -> " << c.classes << ": "
                                << m->params.count() << " parameters");
    CHECK(m->params.count() == c.expected);
  }
}

TEST_CASE(
    "every registered model trains a step: finite loss, a gradient in every tensor, "
    "and scoring leaves weights and BN stats untouched" *
    doctest::test_suite("models-big")) {
  for (const auto& c : model_cases()) {
    SUBCASE(c.name) {
      auto m = models::make_model(c.name, c.test_sample, c.classes, 7, c.options);
      constexpr int64_t B = 2;
      const Batch b = make_batch(*m, B, c.vocab, 11);
      nn::Engine eng(*m, 3);
      const nn::ParamStore& ps = m->params;

      // Score: forward only, no writes to weights, gradients or BN running statistics.
      const std::vector<float> w0(ps.values(), ps.values() + ps.size());
      const std::vector<float> s0(ps.buffers(), ps.buffers() + ps.buffer_size());
      ps.zero_grad();
      std::vector<float> losses(B);
      std::vector<int32_t> pred(B);
      eng.score(b.x.data(), b.y.data(), B, losses.data(), pred.data());
      for (float l : losses) CHECK(std::isfinite(l));
      eng.score(b.x.data(), b.y.data(), B, losses.data(), nullptr,
                nn::ScoreOptions{.train_mode_norm = true});
      CHECK(std::equal(w0.begin(), w0.end(), ps.values()));
      CHECK(std::equal(s0.begin(), s0.end(), ps.buffers()));
      CHECK(std::all_of(ps.grads(), ps.grads() + ps.size(), [](float g) { return g == 0.0f; }));

      // Train: finite loss; every parameter tensor receives a finite, non-zero gradient.
      const float loss = eng.grad(b.x.data(), b.y.data(), nullptr, B);
      CHECK(std::isfinite(loss));
      CHECK(loss > 0.0f);
      for (std::size_t k = 0; k < ps.params().size(); ++k) {
        const Tensor g = ps.grad(static_cast<nn::ParamId>(k));
        INFO(ps.params()[k].name);
        CHECK(std::all_of(g.data, g.data + g.numel(), [](float v) { return std::isfinite(v); }));
        CHECK(std::any_of(g.data, g.data + g.numel(), [](float v) { return v != 0.0f; }));
      }
      if (ps.buffer_size() > 0) {  // training does update the running statistics
        CHECK_FALSE(std::equal(s0.begin(), s0.end(), ps.buffers()));
      }
    }
  }
}

TEST_CASE("speech models score the paper's [1, 161, 101] spectrograms" *
          doctest::test_suite("models-big")) {
  for (const char* name : {"vgg13", "ds_cnn"}) {
    auto m = models::make_model(name, Shape{1, 161, 101}, 35, 1);
    const Batch b = make_batch(*m, 2, 0, 5);
    nn::Engine eng(*m);
    std::vector<float> losses(2);
    eng.score(b.x.data(), b.y.data(), 2, losses.data());
    INFO(std::string(name));
    CHECK(std::isfinite(losses[0]));
    CHECK(std::isfinite(losses[1]));
  }
}

TEST_CASE("registry knows every model and names the known ones for an unknown name") {
  for (const auto& n : models::model_names()) {
    const bool text = n == "lstm_attention" || n == "textcnn";
    ModelOptions o;
    o.lstm_attention.vocab = 50;
    o.textcnn.vocab = 50;
    const Shape s = text                         ? Shape{20}
                    : (n == "cnn" || n == "mlp") ? Shape{1, 28, 28}
                                                 : Shape{3, 32, 32};
    auto m = models::make_model(n, s, 5, 1, o);
    CHECK(m->name == n);
    CHECK(m->num_classes == 5);
    CHECK(m->params.count() > 0);
  }
  try {
    models::make_model("resnet99", Shape{3, 32, 32}, 10, 1);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("resnet99") != std::string::npos);
    CHECK(std::string(e.what()).find("mobilenetv2") != std::string::npos);
  }
  CHECK_THROWS_AS(models::make_model("textcnn", Shape{3, 32, 32}, 4, 1), std::invalid_argument);
  CHECK_THROWS_AS(models::make_model("vgg13", Shape{1, 16, 16}, 4, 1), std::invalid_argument);
  CHECK_THROWS_AS(models::make_model("resnet18", Shape{32, 32}, 4, 1), std::invalid_argument);
}

TEST_CASE("state-dict names follow torchvision") {
  auto has = [](const nn::Model& m, const std::string& name) {
    for (const auto& p : m.params.params())
      if (p.name == name) return true;
    for (const auto& p : m.params.buffer_specs())
      if (p.name == name) return true;
    return false;
  };
  auto r = models::make_model("resnet50", Shape{3, 32, 32}, 10, 1);
  CHECK(has(*r, "conv1.weight"));
  CHECK(has(*r, "layer1.0.downsample.0.weight"));
  CHECK(has(*r, "layer4.2.bn3.running_var"));
  CHECK(has(*r, "fc.weight"));
  CHECK_FALSE(has(*r, "layer1.1.downsample.0.weight"));
  auto mb = models::make_model("mobilenetv2", Shape{3, 32, 32}, 10, 1);
  CHECK(has(*mb, "features.0.0.weight"));
  CHECK(has(*mb, "features.1.conv.0.0.weight"));  // t = 1: depthwise first
  CHECK(has(*mb, "features.1.conv.2.weight"));    // ... and its projection BN
  CHECK(has(*mb, "features.2.conv.3.running_mean"));
  CHECK(has(*mb, "features.18.0.weight"));
  CHECK(has(*mb, "classifier.1.weight"));
  auto v = models::make_model("vgg13", Shape{1, 161, 101}, 35, 1);
  CHECK(has(*v, "features.0.bias"));
  CHECK(has(*v, "features.1.running_mean"));
  CHECK(has(*v, "features.31.weight"));  // last conv: 10 × (conv, bn, relu) + 4 pools before it
  CHECK(has(*v, "features.32.running_var"));
  CHECK(has(*v, "classifier.weight"));
}

TEST_CASE("Conv2dOptions: square kernels unchanged, per-axis kernel/stride/padding override") {
  nn::ParamStore ps;
  nn::Conv2d sq(ps, "sq", 2, 4, nn::Conv2dOptions{.kernel = 3, .stride = 2, .padding = 1});
  nn::Conv2d rect(
      ps, "rect", 2, 3,
      nn::Conv2dOptions{
          .kernel_h = 3, .kernel_w = 5, .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 2});
  ps.finalize(1);
  CHECK(ps.params()[0].shape == Shape{4, 2, 3, 3});
  CHECK(ps.params()[2].shape == Shape{3, 2, 3, 5});
  CHECK(rect.describe() == "Conv2d(2->3, k3x5, s2x1, p1x2)");
  CHECK(sq.describe() == "Conv2d(2->4, k3, s2, p1)");
  Buffer x(Shape{2, 2, 7, 9}, 3);
  Tape t;
  nn::Context ctx{t, ps, false};
  CHECK(rect.forward(ctx, t.leaf(x.t))->shape() == Shape{2, 3, 4, 9});
  expect_ok(nn::check_module(rect, ps, x.t));
}

TEST_CASE("global max pool: first maximum wins, NaN propagates, gradient goes to the argmax") {
  AlignedBuffer xb(2 * 3 * 4);
  Tensor x = xb.tensor(Shape{2, 1, 3, 4});
  const float v[24] = {
      1,  5,  2,  5,  0,  4,  3,  1,  -1, 2,  0,  0,    // plane 0: max 5 at 1 (tie at 3)
      -3, -2, -9, -4, -1, -7, -5, -8, -6, -2, -1, -3};  // plane 1: -1 at 16
  std::copy(v, v + 24, x.data);
  Tape t;
  AlignedBuffer gx(x.numel());
  gx.tensor(x.shape).zero();
  Var y = ops::global_max_pool(t, t.leaf(x, gx.tensor(x.shape), true));
  CHECK(y->shape() == Shape{2, 1});
  CHECK(y->value.data[0] == 5.0f);
  CHECK(y->value.data[1] == -1.0f);
  AlignedBuffer seed(2);
  seed.data()[0] = 2.0f;
  seed.data()[1] = 3.0f;
  t.backward(y, seed.tensor(Shape{2, 1}));
  for (int64_t j = 0; j < 24; ++j) {
    INFO("element " << j);
    CHECK(gx.data()[j] == (j == 1 ? 2.0f : j == 16 ? 3.0f : 0.0f));
  }
  x.data[6] = std::numeric_limits<float>::quiet_NaN();
  Tape t2;
  Var y2 = ops::global_max_pool(t2, t2.leaf(x));
  CHECK(std::isnan(y2->value.data[0]));
  CHECK_THROWS_AS(ops::global_max_pool(t2, t2.leaf(Tensor(x.data, Shape{2, 12}))),
                  std::invalid_argument);
}

TEST_CASE("global max pool passes gradcheck") {
  // Distinct values spaced > 2·eps apart: no near-ties.
  AlignedBuffer xb(2 * 3 * 5 * 4);
  Tensor x = xb.tensor(Shape{2, 3, 5, 4});
  std::vector<int> order(static_cast<std::size_t>(x.numel()));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(9));
  for (int64_t j = 0; j < x.numel(); ++j) x.data[j] = 0.05f * static_cast<float>(order[j]) - 3.0f;
  expect_ok(gradcheck(
      [](Tape& t, const std::vector<Var>& v) { return ops::global_max_pool(t, v[0]); }, {x}));
}

// The blocks run with GELU (smooth) for the finite-difference checks: ReLU/ReLU6 kinks make
// central differences meaningless at eps = 1e-2 (see gradcheck.hpp); those rules are gradchecked
// in test_autograd. Both BN modes: batch statistics (training) and running statistics (eval).
TEST_CASE("composite blocks pass check_module (identity and projection shortcuts)") {
  const auto gelu = nn::Activation::gelu;
  struct Case {
    const char* what;
    Shape input;
    std::function<nn::ModulePtr(nn::ParamStore&)> make;
  };
  const std::vector<Case> cases = {
      {"BasicBlock identity", Shape{2, 3, 4, 4},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::BasicBlock>(ps, "b", 3, 3, 1, gelu);
       }},
      {"BasicBlock projection, stride 2", Shape{2, 2, 5, 5},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::BasicBlock>(ps, "b", 2, 4, 2, gelu);
       }},
      {"Bottleneck identity", Shape{2, 8, 3, 3},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::Bottleneck>(ps, "b", 8, 2, 1, gelu);
       }},
      {"Bottleneck projection, stride 2", Shape{2, 3, 4, 4},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::Bottleneck>(ps, "b", 3, 2, 2, gelu);
       }},
      {"InvertedResidual t=1 (no expansion), width change", Shape{2, 3, 4, 4},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::InvertedResidual>(ps, "b", 3, 2, 1, 1, gelu);
       }},
      {"InvertedResidual t=2, residual", Shape{2, 3, 4, 4},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::InvertedResidual>(ps, "b", 3, 3, 1, 2, gelu);
       }},
      {"InvertedResidual t=3, stride 2", Shape{2, 2, 5, 5},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::InvertedResidual>(ps, "b", 2, 3, 2, 3, gelu);
       }},
      {"DepthwiseSeparable stride 2", Shape{2, 3, 5, 4},
       [&](nn::ParamStore& ps) {
         return std::make_unique<models::DepthwiseSeparable>(ps, "b", 3, 4, 2, gelu);
       }},
  };
  for (const auto& c : cases) {
    // A fresh block per mode: the training-mode check runs hundreds of forward passes that move
    // the running statistics, and eval mode then amplifies curvature through 1/sqrt(var).
    for (bool training : {true, false}) {
      nn::ParamStore ps;
      nn::ModulePtr m = c.make(ps);
      ps.finalize(17);
      Buffer x(c.input, 23);
      INFO(std::string(c.what) << " (" << m->describe() << "), training = " << training);
      expect_ok(nn::check_module(*m, ps, x.t, training));
    }
  }
}

TEST_CASE("blocks: residual iff stride 1 and same width; output shapes") {
  nn::ParamStore ps;
  models::InvertedResidual res(ps, "a", 4, 4, 1, 6), nores(ps, "b", 4, 8, 1, 6),
      down(ps, "c", 4, 4, 2, 6);
  models::BasicBlock bb(ps, "d", 4, 8, 2);
  models::Bottleneck bt(ps, "e", 4, 2, 2);
  ps.finalize(1);
  CHECK(res.describe().find("res") != std::string::npos);
  CHECK(nores.describe().find("res") == std::string::npos);
  CHECK(down.describe().find("res") == std::string::npos);
  Buffer x(Shape{2, 4, 7, 7}, 1);
  Tape t;
  nn::Context ctx{t, ps, false};
  Var in = t.leaf(x.t);
  CHECK(res.forward(ctx, in)->shape() == Shape{2, 4, 7, 7});
  CHECK(nores.forward(ctx, in)->shape() == Shape{2, 8, 7, 7});
  CHECK(down.forward(ctx, in)->shape() == Shape{2, 4, 4, 4});
  CHECK(bb.forward(ctx, in)->shape() == Shape{2, 8, 4, 4});
  CHECK(bt.forward(ctx, in)->shape() == Shape{2, 8, 4, 4});
}
