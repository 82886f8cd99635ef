// mercury/tensor/tensor.hpp — shapes, non-owning float32 tensor views and aligned buffers.
//
// Contract
// - A Tensor is a VIEW: {data, shape}, row-major, contiguous, float32. It never owns memory.
//   Memory is owned by slabs (parameters, gradients, optimizer moments) or by an Arena
//   (activations, scratch); see arena.hpp and mercury/nn/params.hpp.
// - AlignedBuffer owns one 64-byte-aligned float allocation (slabs are built from these).
// - Eigen maps (MatrixMap, Tensor::matrix()/vec()) exist but no layer uses them today (issue 16
//   weighs removing them); the hot loops use kernels/.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

namespace mercury {

inline constexpr int kMaxDims = 5;
inline constexpr std::size_t kAlignment = 64;

struct Shape {
  int64_t dims[kMaxDims] = {0, 0, 0, 0, 0};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    if (d.size() > static_cast<std::size_t>(kMaxDims)) {
      throw std::invalid_argument("Shape: at most 5 dimensions, got " + std::to_string(d.size()));
    }
    for (int64_t v : d) dims[rank++] = v;
  }
  int64_t operator[](int i) const { return dims[i < 0 ? i + rank : i]; }
  int64_t& operator[](int i) { return dims[i < 0 ? i + rank : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
  }
};

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix, Eigen::Aligned16>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using VectorMap = Eigen::Map<Eigen::VectorXf>;

struct Tensor {
  float* data = nullptr;
  Shape shape;

  Tensor() = default;
  Tensor(float* d, Shape s) : data(d), shape(s) {}
  int64_t numel() const { return shape.numel(); }
  int rank() const { return shape.rank; }
  int64_t dim(int i) const { return shape[i]; }
  bool defined() const { return data != nullptr; }
  float& operator[](int64_t i) const { return data[i]; }
  // Same memory, another shape with the same element count.
  Tensor view(Shape s) const {
    if (s.numel() != numel()) {
      throw std::invalid_argument("Tensor::view: " + shape.str() + " has " +
                                  std::to_string(numel()) + " elements, " + s.str() + " needs " +
                                  std::to_string(s.numel()));
    }
    return Tensor(data, s);
  }
  // Row-major matrix view: first dim × the rest (rank ≥ 1).
  Eigen::Map<RowMatrix> matrix() const {
    const int64_t rows = shape.rank ? shape[0] : 1;
    return Eigen::Map<RowMatrix>(data, rows, rows ? numel() / rows : 0);
  }
  Eigen::Map<RowMatrix> matrix(int64_t rows, int64_t cols) const {
    return Eigen::Map<RowMatrix>(data, rows, cols);
  }
  VectorMap vec() const { return VectorMap(data, numel()); }
  void zero() const {
    if (data) std::memset(data, 0, sizeof(float) * static_cast<std::size_t>(numel()));
  }
  void fill(float v) const { std::fill(data, data + numel(), v); }
  void copy_from(const Tensor& src) const {
    if (src.numel() != numel()) {
      throw std::invalid_argument("Tensor::copy_from: size mismatch " + src.shape.str() + " -> " +
                                  shape.str());
    }
    std::memcpy(data, src.data, sizeof(float) * static_cast<std::size_t>(numel()));
  }
};

// One 64-byte-aligned float allocation, zero-initialised unless asked not to be (an arena block
// is written before it is read; zeroing it would touch every page up front).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t count, bool zero = true) { resize(count, zero); }
  void resize(int64_t count, bool zero = true) {
    if (count < 0) throw std::invalid_argument("AlignedBuffer: negative size");
    const std::size_t bytes = (static_cast<std::size_t>(count) * sizeof(float) + kAlignment - 1) /
                              kAlignment * kAlignment;
    float* p = nullptr;
    if (bytes) {
      p = static_cast<float*>(std::aligned_alloc(kAlignment, bytes));
      if (!p) throw std::bad_alloc();
      if (zero) std::memset(p, 0, bytes);
    }
    ptr_.reset(p);
    size_ = count;
  }
  float* data() const { return ptr_.get(); }
  int64_t size() const { return size_; }
  Tensor tensor(Shape s) const { return Tensor(ptr_.get(), s); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> ptr_;
  int64_t size_ = 0;
};

// Rounds a float count up so the next view starts on a 64-byte boundary.
inline int64_t align_floats(int64_t n) {
  constexpr int64_t k = static_cast<int64_t>(kAlignment / sizeof(float));
  return (n + k - 1) / k * k;
}

}  // namespace mercury
