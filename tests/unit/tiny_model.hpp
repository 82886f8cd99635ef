// A tiny model and dataset whose gradients can be averaged exactly: the exact-enumeration
// tests of importance sampling (single device and distributed) share them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "mercury/mercury.hpp"

namespace mercury::testing {

// n images 1x4x4, 3 classes, random pixels.
inline data::ImageDataset tiny_images(int64_t n, uint64_t seed) {
  data::ImageDataset d;
  d.n = n;
  d.channels = 1;
  d.height = d.width = 4;
  d.classes = 3;
  d.name = "tiny";
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    d.labels.push_back(static_cast<int32_t>(rng() % 3));
    for (int p = 0; p < 16; ++p) d.pixels.push_back(static_cast<uint8_t>(rng() % 256));
  }
  return d;
}

inline std::unique_ptr<nn::Model> tiny_model(uint64_t seed) {
  auto m = std::make_unique<nn::Model>();
  m->name = "tiny";
  m->sample_shape = Shape{1, 4, 4};
  m->num_classes = 3;
  auto net = std::make_unique<nn::Sequential>();
  net->add<nn::Flatten>();
  net->add<nn::Linear>(m->params, "fc1", 16, 5);
  net->add<nn::Act>(nn::Activation::tanh);
  net->add<nn::Linear>(m->params, "fc2", 5, 3);
  m->net = std::move(net);
  m->params.finalize(seed);
  return m;
}

// Gradient slab after engine.grad on the given samples with the given weights.
inline std::vector<double> gradient(nn::Model& m, nn::Engine& e, const data::Dataset& d,
                                    std::vector<int64_t> idx, const float* w) {
  std::vector<float> x(idx.size() * 16);
  std::vector<int32_t> y(idx.size());
  d.gather(idx, x.data(), y.data(), nullptr);
  m.params.zero_grad();
  e.grad(x.data(), y.data(), w, static_cast<int64_t>(idx.size()));
  return std::vector<double>(m.params.grads(), m.params.grads() + m.params.size());
}

inline double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double scale = 0, diff = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    scale = std::max(scale, std::abs(b[k]));
    diff = std::max(diff, std::abs(a[k] - b[k]));
  }
  return diff / scale;
}

}  // namespace mercury::testing
