// mercury/importance/ring.hpp — a bounded lock-free single-producer/single-consumer ring.
//
// Contract
// - SpscRing<T>(capacity): holds up to `capacity` items (rounded up to a power of two); the
//   storage is allocated once, here. T must be trivially copyable.
// - try_push(v) is called by exactly one producer thread, try_pop(v) by exactly one consumer
//   thread; neither blocks, allocates or takes a lock. try_push returns false when full,
//   try_pop false when empty.
// - Everything the producer wrote before a successful try_push (the item, and memory the item
//   points at) is visible to the consumer after the try_pop that returns it (release/acquire on
//   the indices).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace mercury::importance {

template <class T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T>, "SpscRing: items are copied as bytes");

 public:
  explicit SpscRing(std::size_t capacity) {
    if (capacity < 1) throw std::invalid_argument("SpscRing: capacity must be >= 1");
    std::size_t n = 1;
    while (n < capacity) n <<= 1;
    items_.resize(n);
    mask_ = n - 1;
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  std::size_t capacity() const { return items_.size(); }

  bool try_push(const T& v) {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) == items_.size()) return false;
    items_[head & mask_] = v;
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  bool try_pop(T& v) {
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) return false;
    v = items_[tail & mask_];
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

 private:
  std::vector<T> items_;
  std::size_t mask_ = 0;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
};

}  // namespace mercury::importance
