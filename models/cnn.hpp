// models/cnn.hpp — the reference CNN (LeNet-style) and a small MLP, for 1×28×28 inputs.
//
// cnn: conv5×5(C→32)+ReLU+maxpool2, conv5×5(32→64)+ReLU+maxpool2, Linear(64·4·4→128)+ReLU,
//      Linear(128→classes).   For 28×28: 24→12→8→4, so the first Linear sees 1024 features.
//      Each ReLU runs after its pool: max and ReLU commute (ReLU is monotone), so values and
//      gradients are the same, and the ReLU touches a quarter of the floats (and its backward
//      too: 2,669 → 2,909 samples/s training, bench/README session 21).
// mlp: Flatten, Linear(in→256)+ReLU, Linear(256→128)+ReLU, Linear(128→classes).
#pragma once

#include <memory>

#include "mercury/nn/layers.hpp"
#include "mercury/nn/model.hpp"

namespace mercury::models {

inline std::unique_ptr<nn::Model> make_cnn(Shape sample, int64_t classes, uint64_t seed) {
  using namespace nn;
  auto m = std::make_unique<Model>();
  m->name = "cnn";
  m->sample_shape = sample;
  m->num_classes = classes;
  const int64_t C = sample[0], H = sample[1], W = sample[2];
  const int64_t h = ((H - 4) / 2 - 4) / 2, w = ((W - 4) / 2 - 4) / 2;
  if (sample.rank != 3 || h < 1 || w < 1) {
    throw std::invalid_argument("cnn: expects [C, H, W] inputs of at least 16×16, got " +
                                sample.str());
  }
  auto net = std::make_unique<Sequential>();
  net->add<Conv2d>(m->params, "conv1", C, 32, Conv2dOptions{.kernel = 5});
  net->add<MaxPool2d>(2);
  net->add<Act>(Activation::relu);
  net->add<Conv2d>(m->params, "conv2", 32, 64, Conv2dOptions{.kernel = 5});
  net->add<MaxPool2d>(2);
  net->add<Act>(Activation::relu);
  net->add<Flatten>();
  net->add<Linear>(m->params, "fc1", 64 * h * w, 128);
  net->add<Act>(Activation::relu);
  net->add<Linear>(m->params, "fc2", 128, classes);
  m->net = std::move(net);
  m->params.finalize(seed);
  return m;
}

inline std::unique_ptr<nn::Model> make_mlp(Shape sample, int64_t classes, uint64_t seed) {
  using namespace nn;
  auto m = std::make_unique<Model>();
  m->name = "mlp";
  m->sample_shape = sample;
  m->num_classes = classes;
  auto net = std::make_unique<Sequential>();
  net->add<Flatten>();
  net->add<Linear>(m->params, "fc1", sample.numel(), 256);
  net->add<Act>(Activation::relu);
  net->add<Linear>(m->params, "fc2", 256, 128);
  net->add<Act>(Activation::relu);
  net->add<Linear>(m->params, "fc3", 128, classes);
  m->net = std::move(net);
  m->params.finalize(seed);
  return m;
}

}  // namespace mercury::models
