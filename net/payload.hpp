// net/payload.hpp — message payload buffers: uninitialised storage, recycled through a pool.
//
// Contract
// - Payload is a contiguous byte buffer of size() bytes (capacity() >= size()). It never
//   zero-fills: Payload(n) and PayloadPool::allocate(n) hand out n bytes of unspecified content
//   (a recycled buffer may still hold an earlier message's bytes), so whoever fills it writes all
//   n bytes. A default-constructed Payload is empty.
// - Copying deep-copies the bytes (into the same pool when the source is pooled); moving steals
//   the buffer and leaves the source empty. Comparison is by content, with another Payload or
//   any contiguous byte range (std::vector<std::byte>, std::span).
// - A Payload allocated from a pool gives its buffer back to that pool when it is destroyed or
//   assigned over, on whatever thread that happens; the pool stays alive as long as one of its
//   payloads does.
// - PayloadPool::allocate(n): below kMinPooledBytes a plain allocation. Otherwise the smallest
//   free buffer of capacity in [n, 2n] is reused, else a new one of n bytes rounded up to 4 KiB
//   is allocated. A returned buffer is kept while the pool holds at most max_retained_bytes of
//   free buffers, else freed; clear() frees every free buffer, set_max_retained_bytes(0) also
//   stops keeping any. Thread-safe: one mutex, held only
//   to pick or file a buffer (never while a buffer is allocated, copied or freed).
// - Recycling saves what a fresh large allocation costs on every message: the page faults (and
//   the kernel's zeroing of every page) of a new mmap, and the munmap when it is freed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

namespace mercury::net {

class PayloadPool;

class Payload {
 public:
  Payload() = default;
  // `size` bytes of unspecified content, not pooled.
  explicit Payload(std::size_t size)
      : Payload(std::unique_ptr<std::byte[]>(new std::byte[size]), size, size, nullptr) {}
  // A copy of `bytes`, not pooled.
  static Payload copy_of(std::span<const std::byte> bytes) {
    Payload p(bytes.size());
    if (!bytes.empty()) std::memcpy(p.data(), bytes.data(), bytes.size());
    return p;
  }

  Payload(const Payload& other);
  Payload& operator=(const Payload& other) {
    if (this != &other) *this = Payload(other);
    return *this;
  }
  Payload(Payload&& other) noexcept
      : storage_(std::move(other.storage_)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)),
        pool_(std::move(other.pool_)) {}
  Payload& operator=(Payload&& other) noexcept {
    if (this != &other) {
      release();
      storage_ = std::move(other.storage_);
      size_ = std::exchange(other.size_, 0);
      capacity_ = std::exchange(other.capacity_, 0);
      pool_ = std::move(other.pool_);
    }
    return *this;
  }
  ~Payload() { release(); }

  std::byte* data() { return storage_.get(); }
  const std::byte* data() const { return storage_.get(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::size_t capacity() const { return capacity_; }
  bool pooled() const { return pool_ != nullptr; }
  std::byte* begin() { return data(); }
  std::byte* end() { return data() + size_; }
  const std::byte* begin() const { return data(); }
  const std::byte* end() const { return data() + size_; }
  std::byte& operator[](std::size_t i) { return storage_[i]; }
  const std::byte& operator[](std::size_t i) const { return storage_[i]; }
  std::span<std::byte> span() { return {data(), size_}; }
  std::span<const std::byte> span() const { return {data(), size_}; }
  std::vector<std::byte> to_vector() const { return {begin(), end()}; }

  friend bool operator==(const Payload& a, std::span<const std::byte> b) {
    return a.size() == b.size() && (b.empty() || std::memcmp(a.data(), b.data(), b.size()) == 0);
  }
  friend bool operator==(const Payload& a, const Payload& b) { return a == b.span(); }

 private:
  friend class PayloadPool;
  Payload(std::unique_ptr<std::byte[]> storage, std::size_t size, std::size_t capacity,
          std::shared_ptr<PayloadPool> pool)
      : storage_(std::move(storage)), size_(size), capacity_(capacity), pool_(std::move(pool)) {}
  void release();

  std::unique_ptr<std::byte[]> storage_;
  std::size_t size_ = 0, capacity_ = 0;
  std::shared_ptr<PayloadPool> pool_;  // where the buffer goes back to (nullptr: freed)
};

class PayloadPool : public std::enable_shared_from_this<PayloadPool> {
 public:
  static constexpr std::size_t kMinPooledBytes = std::size_t{64} << 10;
  static constexpr std::size_t kDefaultRetainedBytes = std::size_t{64} << 20;

  static std::shared_ptr<PayloadPool> create(
      std::size_t max_retained_bytes = kDefaultRetainedBytes) {
    return std::shared_ptr<PayloadPool>(new PayloadPool(max_retained_bytes));
  }
  PayloadPool(const PayloadPool&) = delete;
  PayloadPool& operator=(const PayloadPool&) = delete;

  // `size` bytes of unspecified content (see the contract above).
  Payload allocate(std::size_t size) {
    if (size < kMinPooledBytes) return Payload(size);
    {
      std::lock_guard lock(mu_);
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first / 2 <= size) {
        const std::size_t capacity = it->first;
        std::unique_ptr<std::byte[]> storage = std::move(it->second);
        free_.erase(it);
        retained_ -= capacity;
        ++reused_;
        return Payload(std::move(storage), size, capacity, shared_from_this());
      }
      ++allocated_;
    }
    const std::size_t capacity = size <= SIZE_MAX - 4095 ? (size + 4095) / 4096 * 4096 : size;
    return Payload(std::unique_ptr<std::byte[]>(new std::byte[capacity]), size, capacity,
                   shared_from_this());
  }

  // Frees every free buffer (payloads in use come back later as usual).
  void clear() {
    std::multimap<std::size_t, std::unique_ptr<std::byte[]>> dropped;  // freed after unlocking
    std::lock_guard lock(mu_);
    dropped.swap(free_);
    retained_ = 0;
  }
  // Changes the limit and frees every free buffer; 0 stops recycling (the owner of a pool whose
  // payloads may outlive it calls this when it goes away, so they are freed, not kept).
  void set_max_retained_bytes(std::size_t bytes) {
    std::multimap<std::size_t, std::unique_ptr<std::byte[]>> dropped;  // freed after unlocking
    std::lock_guard lock(mu_);
    dropped.swap(free_);
    retained_ = 0;
    max_retained_ = bytes;
  }

  struct Stats {
    std::size_t retained_bytes = 0;  // free buffers held now
    std::size_t retained_buffers = 0;
    uint64_t allocated = 0;  // pooled-size requests served by a new buffer
    uint64_t reused = 0;     // pooled-size requests served by a recycled buffer
  };
  Stats stats() const {
    std::lock_guard lock(mu_);
    return {retained_, free_.size(), allocated_, reused_};
  }
  std::size_t max_retained_bytes() const {
    std::lock_guard lock(mu_);
    return max_retained_;
  }

 private:
  friend class Payload;
  explicit PayloadPool(std::size_t max_retained_bytes) : max_retained_(max_retained_bytes) {}

  // A buffer not kept is freed when `storage` dies, after the lock is released.
  void give_back(std::unique_ptr<std::byte[]> storage, std::size_t capacity) {
    std::lock_guard lock(mu_);
    if (retained_ + capacity > max_retained_) return;
    free_.emplace(capacity, std::move(storage));
    retained_ += capacity;
  }

  mutable std::mutex mu_;
  std::size_t max_retained_;
  std::multimap<std::size_t, std::unique_ptr<std::byte[]>> free_;  // by capacity
  std::size_t retained_ = 0;
  uint64_t allocated_ = 0, reused_ = 0;
};

inline Payload::Payload(const Payload& other)
    : Payload(other.pool_ ? other.pool_->allocate(other.size_) : Payload(other.size_)) {
  if (size_ != 0) std::memcpy(data(), other.data(), size_);
}

inline void Payload::release() {
  if (pool_ && storage_) pool_->give_back(std::move(storage_), capacity_);
  storage_.reset();
  pool_.reset();
  size_ = capacity_ = 0;
}

}  // namespace mercury::net
