// mercury/io/state_blob.hpp — a flat byte blob for small pieces of run state (sampler caches,
// RNG states) that ride inside a checkpoint as one U8 tensor.
//
// Contract
// - StateWriter appends fixed-size values (native byte order: checkpoints move between machines
//   of the same endianness; every target we build for is little-endian), length-prefixed
//   vectors and strings, and RNG engines in their standard textual form.
// - StateReader reads them back in the same order and throws io::CheckpointError naming `what`,
//   the offset, and what was expected vs found on truncation, an implausible length, or (in
//   finish()) trailing bytes. It never reads out of bounds and never allocates more than the
//   blob could hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "mercury/io/safetensors.hpp"

namespace mercury::io {

class StateWriter {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    pod<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const std::byte*>(v.data());
    bytes_.insert(bytes_.end(), p, p + v.size() * sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    bytes_.insert(bytes_.end(), p, p + s.size());
  }
  template <class Engine>
  void rng(const Engine& e) {
    std::ostringstream os;
    os << e;
    str(os.str());
  }
  const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

class StateReader {
 public:
  StateReader(std::span<const std::byte> bytes, std::string what)
      : bytes_(bytes), what_(std::move(what)) {}

  template <class T>
  T pod(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // A vector; `expect_len` >= 0 also requires that exact length.
  template <class T>
  std::vector<T> vec(const char* field, int64_t expect_len = -1) {
    const auto n = pod<uint64_t>(field);
    if (expect_len >= 0 && n != static_cast<uint64_t>(expect_len)) {
      fail(field, std::to_string(expect_len) + " elements", std::to_string(n));
    }
    if (n > (bytes_.size() - pos_) / sizeof(T)) {
      fail(field, "at most " + std::to_string((bytes_.size() - pos_) / sizeof(T)) + " elements",
           std::to_string(n));
    }
    std::vector<T> v(static_cast<std::size_t>(n));
    if (n) std::memcpy(v.data(), bytes_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  std::string str(const char* field) {
    const auto n = pod<uint64_t>(field);
    need(n, field);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<std::size_t>(n));
    pos_ += n;
    return s;
  }
  template <class Engine>
  void rng(const char* field, Engine& e) {
    std::istringstream is(str(field));
    Engine tmp;
    is >> tmp;
    if (is.fail()) fail(field, "a random engine state", "unparsable text");
    e = tmp;
  }
  // Whether every byte has been consumed (an optional trailing field is absent).
  bool at_end() const { return pos_ == bytes_.size(); }
  // Every byte must have been consumed.
  void finish() const {
    if (pos_ != bytes_.size()) {
      fail("end", "end of state at byte " + std::to_string(pos_),
           std::to_string(bytes_.size() - pos_) + " trailing bytes");
    }
  }
  [[noreturn]] void fail(const char* field, const std::string& expected,
                         const std::string& found) const {
    throw CheckpointError(what_ + ", field '" + field + "' at byte " + std::to_string(pos_) +
                          ": expected " + expected + ", found " + found);
  }

 private:
  void need(uint64_t n, const char* field) const {
    if (n > bytes_.size() - pos_) {
      fail(field, std::to_string(n) + " more bytes",
           "only " + std::to_string(bytes_.size() - pos_) + " (truncated state)");
    }
  }
  std::span<const std::byte> bytes_;
  std::string what_;
  std::size_t pos_ = 0;
};

}  // namespace mercury::io
