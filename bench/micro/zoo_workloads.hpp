// bench/micro/zoo_workloads.hpp — the paper's model zoo at its local batch sizes, shared by the
// throughput benchmark (bench_models) and the memory probe (memory_probe):
//   CIFAR-10 / SVHN  resnet8, resnet20, resnet18  [3, 32, 32], 10 classes, batch 32
//   CIFAR-100        resnet50                     [3, 32, 32], 100 classes, batch 32
//   AID              mobilenetv2 (width 1, CIFAR strides)  [3, 64, 64], 30 classes, batch 32 —
//                    AID's 600×600 aerial images downscaled to 64×64 (our choice for devices)
//   Speech Commands  vgg13, ds_cnn (S)            [1, 161, 101] log-spectrograms, 35 classes, 64
//   AG News          lstm_attention, textcnn      [100] token ids, vocab 20,000, 4 classes, 64
//   Fashion-MNIST    cnn (the reference CNN), mlp [1, 28, 28], 10 classes, batch 64
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "mercury/tensor/tensor.hpp"

namespace mercury::bench {

struct Workload {
  const char* model;
  Shape sample;
  int64_t classes;
  int64_t batch;
  int64_t vocab;  // > 0: token-id inputs
};

inline const std::vector<Workload>& zoo_workloads() {
  static const std::vector<Workload> w = {
      {"resnet8", Shape{3, 32, 32}, 10, 32, 0},     {"resnet20", Shape{3, 32, 32}, 10, 32, 0},
      {"resnet18", Shape{3, 32, 32}, 10, 32, 0},    {"resnet50", Shape{3, 32, 32}, 100, 32, 0},
      {"mobilenetv2", Shape{3, 64, 64}, 30, 32, 0}, {"vgg13", Shape{1, 161, 101}, 35, 64, 0},
      {"ds_cnn", Shape{1, 161, 101}, 35, 64, 0},    {"lstm_attention", Shape{100}, 4, 64, 20000},
      {"textcnn", Shape{100}, 4, 64, 20000},        {"cnn", Shape{1, 28, 28}, 10, 64, 0},
      {"mlp", Shape{1, 28, 28}, 10, 64, 0},
  };
  return w;
}

// `count` distinct batches of inputs (standard normal, or token ids in [1, vocab)) and labels, so
// a benchmark does not train on one repeated batch (which drives a model into denormals).
struct Batches {
  std::vector<std::vector<float>> x;
  std::vector<std::vector<int32_t>> y;
  Batches(const Workload& w, int64_t sample_numel, int count, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int b = 0; b < count; ++b) {
      std::vector<float> xs(static_cast<std::size_t>(w.batch * sample_numel));
      if (w.vocab > 0) {
        std::uniform_int_distribution<int64_t> u(1, w.vocab - 1);
        for (float& v : xs) v = static_cast<float>(u(rng));
      } else {
        std::normal_distribution<float> n(0.0f, 1.0f);
        for (float& v : xs) v = n(rng);
      }
      std::vector<int32_t> ys(static_cast<std::size_t>(w.batch));
      std::uniform_int_distribution<int32_t> c(0, static_cast<int32_t>(w.classes) - 1);
      for (int32_t& v : ys) v = c(rng);
      x.push_back(std::move(xs));
      y.push_back(std::move(ys));
    }
  }
};

}  // namespace mercury::bench
