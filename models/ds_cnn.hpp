// models/ds_cnn.hpp — DS-CNN for keyword spotting (Zhang et al. 2017, "Hello Edge", the S and M
// variants of ARM's ML-KWS-for-MCU).
//
// Definition (input [C, F, T]: frequency on H, time on W — our spectrograms are [1, 161, 101]
// and 40-bin log-mels [1, 40, T]; any F, T >= 1)
// - conv1: N filters, kernel 10 (time) × 4 (frequency), i.e. kernel_h = 4, kernel_w = 10 in our
//   layout, padding (2, 5) = k/2, + BN + ReLU. S: N = 64, stride 2 × 2; M: N = 172, stride 2 on
//   time and 1 on frequency (the reference's [10,4,2,1] with its time-first axes).
// - 4 DepthwiseSeparable blocks N → N (3×3 depthwise + BN + ReLU, 1×1 pointwise + BN + ReLU),
//   strides 1 (S) / 2,1,1,1 (M); global average pool; Linear(N → classes).
// - Deviations: the reference (TensorFlow slim) uses 'SAME' padding, which pads even kernels
//   asymmetrically; symmetric k/2 padding gives the same output size for stride 2 (ceil(n/2)) and
//   one more row/column for the 4-wide stride-1 axis of M. The reference's convs carry biases in
//   front of BN (redundant with BN's β); ours have none, as usual in PyTorch ports. Count:
//     N·C·40 + 2N  +  4·(9N + 2N + N·N + 2N)  +  N·K + K
//   S, C = 1, K = 35: 24,675; M, C = 1, K = 35: 140,559 (+ activations; the paper reports memory,
//   not a parameter count).
#pragma once

#include <memory>
#include <string>

#include "models/blocks.hpp"

namespace mercury::models {

struct DsCnnOptions {
  enum class Size { s, m };
  Size size = Size::s;
};

inline std::unique_ptr<nn::Model> make_ds_cnn(Shape sample, int64_t classes, uint64_t seed,
                                              const DsCnnOptions& o = {}) {
  using namespace nn;
  require_image("ds_cnn", sample);
  auto m = new_model("ds_cnn", sample, classes);
  ParamStore& ps = m->params;
  const bool medium = o.size == DsCnnOptions::Size::m;
  const int64_t N = medium ? 172 : 64;
  const Conv2dOptions c1{.bias = false,
                         .init = Init::kaiming_normal_fan_out,
                         .kernel_h = 4,
                         .kernel_w = 10,
                         .stride_h = medium ? 1 : 2,
                         .stride_w = 2,
                         .pad_h = 2,
                         .pad_w = 5};
  auto net = std::make_unique<Sequential>();
  net->add<ConvBnAct>(ps, "conv1", "bn1", sample[0], N, c1, Activation::relu);
  for (int b = 0; b < 4; ++b) {
    net->add<DepthwiseSeparable>(ps, "blocks." + std::to_string(b), N, N, medium && b == 0 ? 2 : 1);
  }
  net->add<GlobalAvgPool>();
  net->add<Linear>(ps, "fc", N, classes);
  return finish_model(std::move(m), std::move(net), seed);
}

}  // namespace mercury::models
