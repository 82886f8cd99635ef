// models/resnet.hpp — CIFAR-style ResNets: resnet8, resnet20 (He et al. 2016, §4.2) and
// resnet18, resnet50 (the ImageNet depths with a CIFAR stem, as kuangliu/pytorch-cifar).
//
// Definitions (input [C, H, W], any H, W: the head is a global average pool)
// - resnet8 / resnet20: conv3×3(C→16) + BN + ReLU, then 3 stages of n = 1 / 3 BasicBlocks with
//   16 / 32 / 64 channels (strides 1, 2, 2), GAP, Linear(64 → classes). Deviation from the
//   paper's CIFAR nets: where the shape changes (two places) the shortcut is a 1×1 conv + BN
//   projection ("option B") rather than option A's zero-padded identity, so the count is that of
//   option A plus 16·32 + 2·32 + 32·64 + 2·64 = 2,752 parameters.
// - resnet18 / resnet50: conv3×3(C→64, stride 1) + BN + ReLU, no max-pool, then 4 stages of
//   [2,2,2,2] BasicBlocks / [3,4,6,3] Bottlenecks (expansion 4) with 64/128/256/512 planes,
//   strides 1/2/2/2, projection shortcuts where the shape changes, GAP, Linear → classes.
//   Same parameters as kuangliu/pytorch-cifar's ResNet18/ResNet50 (11,173,962 / 23,520,842 for
//   10 classes); its final avg_pool2d(4) equals our GAP on 32×32 inputs.
// - Convolutions: no bias, Kaiming normal (fan-out) init; BN γ = 1, β = 0; the Linear uses
//   PyTorch's default U(±1/sqrt(fan_in)). State-dict names follow torchvision (conv1, bn1,
//   layerK.J.{conv,bn}{1,2,3}, layerK.J.downsample.{0,1}, fc).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/blocks.hpp"

namespace mercury::models {

struct ResNetConfig {
  bool bottleneck = false;
  int64_t stem = 64;            // stem conv output channels
  std::vector<int64_t> blocks;  // blocks per stage
  std::vector<int64_t> planes;  // planes per stage (stage 0 stride 1, the others stride 2)
};

inline std::unique_ptr<nn::Model> make_resnet(const std::string& name, const ResNetConfig& cfg,
                                              Shape sample, int64_t classes, uint64_t seed) {
  using namespace nn;
  require_image(name, sample);
  auto m = new_model(name, sample, classes);
  ParamStore& ps = m->params;
  auto net = std::make_unique<Sequential>();
  net->add<ConvBnAct>(ps, "conv1", "bn1", sample[0], cfg.stem, conv_options(3), Activation::relu);
  int64_t in = cfg.stem;
  for (std::size_t s = 0; s < cfg.blocks.size(); ++s) {
    for (int64_t b = 0; b < cfg.blocks[s]; ++b) {
      const std::string block = "layer" + std::to_string(s + 1) + "." + std::to_string(b);
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      if (cfg.bottleneck) {
        net->add<Bottleneck>(ps, block, in, cfg.planes[s], stride);
        in = cfg.planes[s] * Bottleneck::kExpansion;
      } else {
        net->add<BasicBlock>(ps, block, in, cfg.planes[s], stride);
        in = cfg.planes[s] * BasicBlock::kExpansion;
      }
    }
  }
  net->add<GlobalAvgPool>();
  net->add<Linear>(ps, "fc", in, classes);
  return finish_model(std::move(m), std::move(net), seed);
}

inline std::unique_ptr<nn::Model> make_resnet8(Shape sample, int64_t classes, uint64_t seed) {
  return make_resnet("resnet8", {false, 16, {1, 1, 1}, {16, 32, 64}}, sample, classes, seed);
}
inline std::unique_ptr<nn::Model> make_resnet20(Shape sample, int64_t classes, uint64_t seed) {
  return make_resnet("resnet20", {false, 16, {3, 3, 3}, {16, 32, 64}}, sample, classes, seed);
}
inline std::unique_ptr<nn::Model> make_resnet18(Shape sample, int64_t classes, uint64_t seed) {
  return make_resnet("resnet18", {false, 64, {2, 2, 2, 2}, {64, 128, 256, 512}}, sample, classes,
                     seed);
}
inline std::unique_ptr<nn::Model> make_resnet50(Shape sample, int64_t classes, uint64_t seed) {
  return make_resnet("resnet50", {true, 64, {3, 4, 6, 3}, {64, 128, 256, 512}}, sample, classes,
                     seed);
}

}  // namespace mercury::models
