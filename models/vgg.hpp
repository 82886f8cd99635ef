// models/vgg.hpp — VGG-13 with batch norm for spectrograms (the paper's Speech Commands model:
// [1, 161, 101] log-spectrograms, 35 classes).
//
// Definition (input [C, H, W] with H, W >= 32: five 2×2 max-pools)
// - features: torchvision's vgg13_bn config 64,64,M,128,128,M,256,256,M,512,512,M,512,512,M,
//   each number a conv3×3 (pad 1, WITH bias as torchvision) + BN + ReLU, each M a 2×2 max-pool.
//   [1, 161, 101] → [512, 5, 3].
// - head: global average pool → Linear(512 → classes).
// - Deviation from torchvision: torchvision ends with AdaptiveAvgPool(7×7) and a 25088→4096→
//   4096→classes classifier (ReLU, dropout 0.5), ~129M parameters for a spectrogram task that has
//   ~100k training clips. We pool globally (input-size agnostic; the feature map is only 5×3 here)
//   and keep one Linear, as the common Speech-Commands VGG ports do. Counts for 1 input channel:
//     features  F(C) = Σ_conv (in·out·9 + out) + Σ_bn 2·out = 9,409,728 + 576·(C−1)
//     ours      F + 512·K + K                               (K = 35: 9,427,683)
//     torchvision-style F + 25088·4096+4096 + 4096·4096+4096 + 4096·K+K (K = 35: 129,098,979;
//               C = 3, K = 1000: 133,053,736, torchvision's published vgg13_bn figure)
// - Init: convs Kaiming normal fan-out (torchvision's VGG init); biases, BN, Linear as nn/.
#pragma once

#include <memory>

#include "models/blocks.hpp"

namespace mercury::models {

inline std::unique_ptr<nn::Model> make_vgg13(Shape sample, int64_t classes, uint64_t seed) {
  using namespace nn;
  require_image("vgg13", sample, 32);
  auto m = new_model("vgg13", sample, classes);
  ParamStore& ps = m->params;
  constexpr int64_t kPool = 0;
  const int64_t cfg[] = {64,    64,  kPool, 128,   128, kPool, 256,  256,
                         kPool, 512, 512,   kPool, 512, 512,   kPool};
  auto net = std::make_unique<Sequential>();
  int64_t in = sample[0];
  int idx = 0;  // torchvision's index inside `features` (conv, bn, relu, [pool])
  for (int64_t c : cfg) {
    if (c == kPool) {
      net->add<MaxPool2d>(2);
      ++idx;
      continue;
    }
    Conv2dOptions o = conv_options(3);
    o.bias = true;
    net->add<ConvBnAct>(ps, "features." + std::to_string(idx),
                        "features." + std::to_string(idx + 1), in, c, o, Activation::relu);
    idx += 3;
    in = c;
  }
  net->add<GlobalAvgPool>();
  net->add<Linear>(ps, "classifier", in, classes);
  return finish_model(std::move(m), std::move(net), seed);
}

}  // namespace mercury::models
