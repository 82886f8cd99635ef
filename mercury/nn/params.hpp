// mercury/nn/params.hpp — the flat parameter, gradient and buffer slabs.
//
// Contract
// - Modules declare parameters (trainable) and buffers (e.g. BN running stats) while the model is
//   built; finalize(seed) then allocates ONE value slab and ONE gradient slab for all parameters
//   and one slab for buffers, each entry starting on a 64-byte boundary, and initialises them in
//   declaration order from the seed (deterministic).
// - Modules keep ids and ask for views; the optimizer, checkpoints, the ShardPlan and the
//   transport all work on the flat slabs (values(), grads(), size()).
// - The layout (names, shapes, offsets) is fixed after finalize(); layout_hash() fingerprints it.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/base/hash.hpp"
#include "mercury/tensor/tensor.hpp"

namespace mercury::nn {

enum class Init {
  zeros,
  ones,
  uniform_fan_in,          // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) — PyTorch's Linear/Conv default
  kaiming_normal_fan_out,  // N(0, sqrt(2/fan_out)) — ResNet convolutions
  normal_01,               // N(0, 1) — embeddings
};

struct ParamSpec {
  std::string name;
  Shape shape;
  Init init = Init::zeros;
  int64_t fan = 1;     // fan_in or fan_out, as the init needs
  int64_t offset = 0;  // in floats, into the slab
};

using ParamId = int32_t;

class ParamStore {
 public:
  ParamId declare(std::string name, Shape shape, Init init, int64_t fan = 1) {
    return add(params_, std::move(name), shape, init, fan);
  }
  ParamId declare_buffer(std::string name, Shape shape, Init init) {
    return add(buffers_, std::move(name), shape, init, 1);
  }

  void finalize(uint64_t seed) {
    if (finalized_) throw std::logic_error("ParamStore::finalize called twice");
    size_ = layout(params_);
    buffer_size_ = layout(buffers_);
    values_.resize(size_);
    grads_.resize(size_);
    buffer_slab_.resize(buffer_size_);
    std::mt19937_64 rng(seed);
    for (const auto& p : params_) initialise(p, values_.data(), rng);
    for (const auto& b : buffers_) initialise(b, buffer_slab_.data(), rng);
    finalized_ = true;
  }
  bool finalized() const { return finalized_; }

  Tensor value(ParamId id) const { return view(values_, params_, id); }
  Tensor grad(ParamId id) const { return view(grads_, params_, id); }
  Tensor buffer(ParamId id) const { return view(buffer_slab_, buffers_, id); }

  // Flat slabs (including alignment padding, which stays zero).
  float* values() const { return values_.data(); }
  float* grads() const { return grads_.data(); }
  float* buffers() const { return buffer_slab_.data(); }
  int64_t size() const { return size_; }
  int64_t buffer_size() const { return buffer_size_; }
  const std::vector<ParamSpec>& params() const { return params_; }
  const std::vector<ParamSpec>& buffer_specs() const { return buffers_; }
  // Number of trainable scalars (without padding).
  int64_t count() const {
    int64_t n = 0;
    for (const auto& p : params_) n += p.shape.numel();
    return n;
  }
  void zero_grad() const { Tensor(grads_.data(), Shape{size_}).zero(); }

  // FNV-1a over names, shapes and offsets, from kLayoutHashBasis: two processes with the same
  // model agree on it. The basis is not FNV's offset (14695981039346656037, of which it is the
  // first 19 digits); it stays, since checkpoints and the cluster handshake carry this hash.
  static constexpr uint64_t kLayoutHashBasis = 1469598103934665603ull;
  uint64_t layout_hash() const {
    uint64_t h = kLayoutHashBasis;
    auto mix = [&](const void* p, std::size_t n) { h = base::fnv1a64(p, n, h); };
    for (const auto* list : {&params_, &buffers_})
      for (const auto& p : *list) {
        mix(p.name.data(), p.name.size());
        mix(p.shape.dims, sizeof(int64_t) * p.shape.rank);
        mix(&p.offset, sizeof p.offset);
      }
    return h;
  }

 private:
  ParamId add(std::vector<ParamSpec>& list, std::string name, Shape shape, Init init, int64_t fan) {
    if (finalized_) {
      throw std::logic_error("ParamStore: cannot declare '" + name + "' after finalize()");
    }
    for (const auto* l : {&params_, &buffers_})
      for (const auto& p : *l)
        if (p.name == name) throw std::logic_error("ParamStore: duplicate name '" + name + "'");
    list.push_back(ParamSpec{std::move(name), shape, init, fan > 0 ? fan : 1, 0});
    return static_cast<ParamId>(list.size() - 1);
  }
  static int64_t layout(std::vector<ParamSpec>& list) {
    int64_t off = 0;
    for (auto& p : list) {
      p.offset = off;
      off += align_floats(p.shape.numel());
    }
    return off;
  }
  Tensor view(const AlignedBuffer& slab, const std::vector<ParamSpec>& list, ParamId id) const {
    if (!finalized_) throw std::logic_error("ParamStore: access before finalize()");
    const ParamSpec& p = list.at(static_cast<std::size_t>(id));
    return Tensor(slab.data() + p.offset, p.shape);
  }
  static void initialise(const ParamSpec& p, float* slab, std::mt19937_64& rng) {
    float* d = slab + p.offset;
    const int64_t n = p.shape.numel();
    switch (p.init) {
      case Init::zeros:
        std::fill(d, d + n, 0.0f);
        break;
      case Init::ones:
        std::fill(d, d + n, 1.0f);
        break;
      case Init::uniform_fan_in: {
        const float b = 1.0f / std::sqrt(static_cast<float>(p.fan));
        std::uniform_real_distribution<float> u(-b, b);
        for (int64_t k = 0; k < n; ++k) d[k] = u(rng);
        break;
      }
      case Init::kaiming_normal_fan_out: {
        std::normal_distribution<float> g(0.0f, std::sqrt(2.0f / static_cast<float>(p.fan)));
        for (int64_t k = 0; k < n; ++k) d[k] = g(rng);
        break;
      }
      case Init::normal_01: {
        std::normal_distribution<float> g(0.0f, 1.0f);
        for (int64_t k = 0; k < n; ++k) d[k] = g(rng);
        break;
      }
    }
  }

  std::vector<ParamSpec> params_, buffers_;
  AlignedBuffer values_, grads_, buffer_slab_;
  int64_t size_ = 0, buffer_size_ = 0;
  bool finalized_ = false;
};

}  // namespace mercury::nn
