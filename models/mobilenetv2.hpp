// models/mobilenetv2.hpp — MobileNetV2 (Sandler et al. 2018) with a width multiplier, CIFAR-style
// strides by default (the AID model of the paper).
//
// Definition (torchvision.models.mobilenet_v2, input [C, H, W], any H, W)
// - Channels: every width c becomes make_divisible(c·width, 8) (torchvision's _make_divisible:
//   round to the nearest multiple of 8, never below 8 nor below 90% of c·width); the stem has
//   make_divisible(32·width) channels, the last 1×1 conv make_divisible(1280·max(1, width)).
// - features.0: conv3×3(C → stem, stride s0) + BN + ReLU6.
// - features.1..17: InvertedResidual blocks from the (t, c, n, s) table
//     (1,16,1,1) (6,24,2,s1) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)
//   (the first of each n blocks has stride s, the others 1; residual iff stride 1 and in == out).
// - features.18: conv1×1(320·w → last) + BN + ReLU6; GAP; classifier = Dropout(0.2), Linear.
// - Strides: ImageNet uses s0 = 2, s1 = 2 (total /32). With cifar_strides (default) s0 = 1 and
//   s1 = 1 — the first two stride-2 stages of the network are removed, as kuangliu/pytorch-cifar's
//   CIFAR MobileNetV2 does, so 32×32 inputs end at 4×4 (total /8) rather than 1×1. Strides do
//   not change the parameter count: for width 1 it is torchvision's 3,504,872 at 1000 classes,
//   i.e. 2,223,872 + 1281·classes. (kuangliu's version differs: it adds 1×1 conv projections on
//   the stride-1 blocks whose width changes; we keep the paper's "no residual" rule.)
// - Init: convs Kaiming normal fan-out, no bias; BN γ = 1, β = 0; Linear PyTorch default.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "models/blocks.hpp"

namespace mercury::models {

struct MobileNetV2Options {
  double width = 1.0;         // width multiplier (torchvision's width_mult)
  bool cifar_strides = true;  // stem and first stride-2 stage at stride 1 (see above)
  float dropout = 0.2f;
};

// torchvision's _make_divisible(v, 8).
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t r =
      std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(r) < 0.9 * v) r += divisor;
  return r;
}

inline std::unique_ptr<nn::Model> make_mobilenetv2(Shape sample, int64_t classes, uint64_t seed,
                                                   const MobileNetV2Options& o = {}) {
  using namespace nn;
  require_image("mobilenetv2", sample);
  if (!(o.width > 0.0)) throw std::invalid_argument("mobilenetv2: width must be > 0");
  auto m = new_model("mobilenetv2", sample, classes);
  ParamStore& ps = m->params;
  struct Stage {
    int64_t t, c, n, s;
  };
  const int64_t s_small = o.cifar_strides ? 1 : 2;
  const Stage table[] = {{1, 16, 1, 1}, {6, 24, 2, s_small}, {6, 32, 3, 2}, {6, 64, 4, 2},
                         {6, 96, 3, 1}, {6, 160, 3, 2},      {6, 320, 1, 1}};
  auto net = std::make_unique<Sequential>();
  int64_t in = make_divisible(32 * o.width);
  net->add<ConvBnAct>(ps, "features.0.0", "features.0.1", sample[0], in, conv_options(3, s_small),
                      Activation::relu6);
  int k = 1;
  for (const Stage& st : table) {
    const int64_t out = make_divisible(static_cast<double>(st.c) * o.width);
    for (int64_t i = 0; i < st.n; ++i, ++k) {
      net->add<InvertedResidual>(ps, "features." + std::to_string(k), in, out, i == 0 ? st.s : 1,
                                 st.t);
      in = out;
    }
  }
  const int64_t last = make_divisible(1280 * std::max(1.0, o.width));
  const std::string f = "features." + std::to_string(k);
  net->add<ConvBnAct>(ps, f + ".0", f + ".1", in, last, conv_options(1), Activation::relu6);
  net->add<GlobalAvgPool>();
  net->add<Dropout>(o.dropout);
  net->add<Linear>(ps, "classifier.1", last, classes);
  return finish_model(std::move(m), std::move(net), seed);
}

}  // namespace mercury::models
