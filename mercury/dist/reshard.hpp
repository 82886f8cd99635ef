// mercury/dist/reshard.hpp — importance-aware resharding: ranks swap raw samples in balanced
// pairs, as low-priority traffic that the aggregation preempts (METHOD.md §2).
//
// Contract
// - Pairing: at global step t, reshard_partner(rank, world, t) pairs the ranks by the circle
//   method (every pair meets once per world-1 steps; with an odd world one rank sits out, -1).
//   Both ranks of a pair send each other the same number of samples, so every rank keeps its
//   dataset size, and each arriving sample takes the slot of one that left.
// - Budget: rank k's quota per epoch is Q_k = round(budget · N_k · (W−1)/W) samples (budget 1 =
//   as many as a full reshuffle moves), spread evenly over the epoch's S steps
//   (floor((s+1)Q/S) − floor(sQ/S) at step s). A pair swaps min(quota_a, quota_b, what is
//   left of either rank's share cap this epoch): a device that shares nothing (cap 0) trains
//   on, but swaps nothing. Every rank knows every rank's caps and sizes, so all compute the same
//   counts; ReshardSchedule keeps the per-epoch tallies (checkpointed).
// - Selection (importance/reshard_select.hpp): importance mode gives each cache group its share
//   ∝ size and picks ∝ cached importance; random mode picks uniformly. Arrivals get their
//   group's mean importance (BatchPolicy::samples_replaced).
// - Timing: send() at the start of a step hands the chosen samples to the transport as ONE
//   low-priority message (type kReshard), so it travels while the step computes, is preempted
//   by the aggregation at chunk boundaries and resumes after it; receive() at the end of the
//   step (after the aggregation, the scorer window closed) takes the partner's samples and puts
//   them into the slots this rank sent. Swaps are applied at step boundaries only: runs stay
//   bitwise reproducible and a checkpoint always holds a consistent partition.
// - Frame (little-endian): u32 magic "MRSH", u16 version 1, u16 0, i64 step, u32 count, u32 raw
//   bytes per sample, then count × (i64 global id, i32 label, raw bytes). decode_reshard()
//   checks every field against what the receiver expects (step, count, raw size, ids in range
//   and distinct, labels in range, exact length) and throws net::PeerError naming the sending
//   rank, the step, the field, what was expected and what was found. receive() also refuses an
//   id the receiver already holds. Nothing is applied unless the whole frame is valid: a bad
//   frame never corrupts the local dataset.
// - Not thread-safe: the training thread owns the Resharder (the scorer is idle at both calls).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/data/local_store.hpp"
#include "mercury/importance/cache.hpp"
#include "mercury/importance/reshard_select.hpp"
#include "mercury/io/state_blob.hpp"
#include "net/transport.hpp"

namespace mercury::dist {

inline constexpr uint8_t kReshard = net::kFirstAppType + 10;  // 26: samples for the partner

enum class ReshardMode { off, random, importance };

inline ReshardMode parse_reshard_mode(const std::string& s) {
  if (s == "off") return ReshardMode::off;
  if (s == "random") return ReshardMode::random;
  if (s == "importance") return ReshardMode::importance;
  throw std::invalid_argument("reshard: expected off, random or importance, found '" + s + "'");
}

// The partner of `rank` at `round` (circle method); -1 when it sits out (odd world, or world 1).
inline int reshard_partner(int rank, int world, int64_t round) {
  const int n = world + (world % 2);  // an odd world gets a phantom rank `world`
  const int m = n - 1;                // ranks 0..m-1 rotate, rank m is fixed
  if (m < 1) return -1;
  const int r = static_cast<int>(round % m);
  int partner;
  if (rank == m) {
    partner = r;
  } else {
    const int j = ((2 * r - rank) % m + m) % m;
    partner = j == rank ? m : j;
  }
  return partner >= world ? -1 : partner;
}

// Who swaps how many samples at which step; the per-epoch tallies of every rank.
class ReshardSchedule {
 public:
  static constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();

  // sizes: every rank's dataset size; caps: every rank's share cap per epoch (kUnlimited: all).
  ReshardSchedule(double budget, int64_t steps_per_epoch, std::vector<int64_t> sizes,
                  std::vector<int64_t> caps)
      : steps_(steps_per_epoch), caps_(std::move(caps)), sent_(sizes.size(), 0) {
    if (!(budget >= 0 && budget <= 1)) {
      throw std::invalid_argument("reshard_budget: expected a fraction in [0, 1], found " +
                                  std::to_string(budget));
    }
    if (steps_ < 1) throw std::invalid_argument("reshard: steps per epoch must be >= 1");
    if (caps_.size() != sizes.size()) throw std::invalid_argument("reshard: one cap per rank");
    const double w = static_cast<double>(sizes.size());
    for (int64_t n : sizes)
      quota_.push_back(static_cast<int64_t>(
          std::llround(budget * static_cast<double>(n) * (w - 1) / std::max(w, 1.0))));
  }

  int world() const { return static_cast<int>(quota_.size()); }
  int64_t epoch_quota(int rank) const { return quota_.at(static_cast<std::size_t>(rank)); }

  // Samples ranks a and b swap at global step `it` (each sends this many to the other).
  int64_t count(int a, int b, int64_t it) const {
    if (a < 0 || b < 0) return 0;
    const int64_t s = it % steps_;
    const bool fresh = epoch_of(it) != epoch_;  // tallies not reset yet for this epoch
    auto left = [&](int k) {
      const int64_t cap = caps_[static_cast<std::size_t>(k)];
      if (cap == kUnlimited) return kUnlimited;
      return std::max<int64_t>(cap - (fresh ? 0 : sent_[static_cast<std::size_t>(k)]), 0);
    };
    return std::min({step_quota(a, s), step_quota(b, s), left(a), left(b)});
  }

  // Records step `it`'s swaps of every pair (call once per step, in step order).
  void advance(int64_t it) {
    if (epoch_of(it) != epoch_) {
      std::fill(sent_.begin(), sent_.end(), 0);
      epoch_ = epoch_of(it);
    }
    for (int a = 0; a < world(); ++a) {
      const int b = reshard_partner(a, world(), it);
      if (b > a) {
        const int64_t c = count(a, b, it);
        sent_[static_cast<std::size_t>(a)] += c;
        sent_[static_cast<std::size_t>(b)] += c;
      }
    }
  }

  void save(io::StateWriter& w) const {
    w.pod(epoch_);
    w.vec(sent_);
  }
  void load(io::StateReader& r) {
    epoch_ = r.pod<int64_t>("reshard epoch");
    sent_ = r.vec<int64_t>("reshard tallies", static_cast<int64_t>(sent_.size()));
  }

 private:
  int64_t epoch_of(int64_t it) const { return it / steps_; }
  int64_t step_quota(int k, int64_t s) const {
    const int64_t q = quota_[static_cast<std::size_t>(k)];
    return (s + 1) * q / steps_ - s * q / steps_;
  }

  int64_t steps_;
  std::vector<int64_t> caps_, quota_, sent_;
  int64_t epoch_ = -1;
};

// What the receiver of a reshard frame expects.
struct ReshardExpect {
  int src = 0;
  int64_t step = 0;
  int64_t count = 0;
  int64_t raw_bytes = 0;
  int64_t id_space = 0;  // ids in [0, id_space)
  int64_t classes = 0;   // labels in [0, classes)
};

// A decoded frame; raw points into the payload (count × raw_bytes, sample k at its offset).
struct ReshardBatch {
  std::vector<int64_t> ids;
  std::vector<int32_t> labels;
  std::vector<const std::byte*> raw;
  std::vector<int64_t> sorted;  // scratch of the duplicate check
};

inline constexpr uint32_t kReshardMagic = 0x4853524Du;  // "MRSH"
inline constexpr uint16_t kReshardVersion = 1;
inline constexpr std::size_t kReshardHeader = 24;
inline constexpr std::size_t kReshardPerSample = 12;  // id + label

inline std::size_t reshard_frame_bytes(int64_t count, int64_t raw_bytes) {
  return kReshardHeader + static_cast<std::size_t>(count) *
                              (kReshardPerSample + static_cast<std::size_t>(raw_bytes));
}

namespace reshard_detail {
template <class T>
void put(std::byte*& p, T v) {
  std::memcpy(p, &v, sizeof v);
  p += sizeof v;
}
template <class T>
T get(const std::byte*& p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return v;
}
}  // namespace reshard_detail

// Writes a frame header (kReshardHeader bytes) at p; returns the position after it.
inline std::byte* put_reshard_header(std::byte* p, int64_t step, uint32_t count, uint32_t raw) {
  reshard_detail::put<uint32_t>(p, kReshardMagic);
  reshard_detail::put<uint16_t>(p, kReshardVersion);
  reshard_detail::put<uint16_t>(p, 0);
  reshard_detail::put<int64_t>(p, step);
  reshard_detail::put<uint32_t>(p, count);
  reshard_detail::put<uint32_t>(p, raw);
  return p;
}

// Throws net::PeerError naming the sending rank, the step and the problem.
inline void decode_reshard(std::span<const std::byte> frame, const ReshardExpect& e,
                           ReshardBatch& out) {
  auto fail = [&](const std::string& what) {
    throw net::PeerError(e.src, "reshard frame from rank " + std::to_string(e.src) + " at step " +
                                    std::to_string(e.step) + ": " + what +
                                    " (nothing of it was applied)");
  };
  if (frame.size() < kReshardHeader) {
    fail("length: expected at least the " + std::to_string(kReshardHeader) +
         "-byte header, found " + std::to_string(frame.size()) + " bytes");
  }
  const std::byte* p = frame.data();
  const auto magic = reshard_detail::get<uint32_t>(p);
  if (magic != kReshardMagic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", magic);
    fail(std::string("magic: expected 0x4853524d (MRSH), found ") + hex);
  }
  const auto version = reshard_detail::get<uint16_t>(p);
  const auto reserved = reshard_detail::get<uint16_t>(p);
  if (version != kReshardVersion || reserved != 0) {
    fail("version: expected 1 (reserved 0), found " + std::to_string(version) + " (reserved " +
         std::to_string(reserved) + ")");
  }
  const auto step = reshard_detail::get<int64_t>(p);
  if (step != e.step)
    fail("step: expected " + std::to_string(e.step) + ", found " + std::to_string(step));
  const auto count = reshard_detail::get<uint32_t>(p);
  if (count != e.count) {
    fail("sample count: expected " + std::to_string(e.count) + " (the pair's agreed swap), found " +
         std::to_string(count));
  }
  const auto raw = reshard_detail::get<uint32_t>(p);
  if (raw != e.raw_bytes) {
    fail("bytes per sample: expected " + std::to_string(e.raw_bytes) + ", found " +
         std::to_string(raw));
  }
  const std::size_t want = reshard_frame_bytes(count, raw);
  if (frame.size() != want) {
    fail("length: expected " + std::to_string(want) + " bytes for " + std::to_string(count) +
         " samples, found " + std::to_string(frame.size()));
  }
  out.ids.resize(count);
  out.labels.resize(count);
  out.raw.resize(count);
  for (uint32_t k = 0; k < count; ++k) {
    const auto id = reshard_detail::get<int64_t>(p);
    const auto label = reshard_detail::get<int32_t>(p);
    if (id < 0 || id >= e.id_space) {
      fail("sample " + std::to_string(k) + " id: expected 0.." + std::to_string(e.id_space - 1) +
           ", found " + std::to_string(id));
    }
    if (label < 0 || label >= e.classes) {
      fail("sample " + std::to_string(k) + " (id " + std::to_string(id) + ") label: expected 0.." +
           std::to_string(e.classes - 1) + ", found " + std::to_string(label));
    }
    out.ids[k] = id;
    out.labels[k] = label;
    out.raw[k] = p;
    p += raw;
  }
  // Distinct ids: a sorted copy (reused scratch: no allocation once warm).
  out.sorted.assign(out.ids.begin(), out.ids.end());
  std::sort(out.sorted.begin(), out.sorted.end());
  const auto dup = std::adjacent_find(out.sorted.begin(), out.sorted.end());
  if (dup != out.sorted.end()) fail("sample id " + std::to_string(*dup) + " appears twice");
}

struct ReshardConfig {
  ReshardMode mode = ReshardMode::off;
  double budget = 0.5;
  int64_t steps_per_epoch = 1;
  uint64_t seed = 0;
  double timeout_s = 300;
};

struct ReshardStats {
  int64_t sent = 0, received = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
  double select_s = 0;  // choosing and packing (training thread)
  double wait_s = 0;    // blocked in receive(): the transfer not hidden by the step
  double apply_s = 0;   // validating and writing arrivals
};

class Resharder {
 public:
  Resharder(net::Transport& t, data::LocalStore& store, const ReshardConfig& cfg,
            std::vector<int64_t> sizes, std::vector<int64_t> caps)
      : t_(t),
        store_(store),
        cfg_(cfg),
        schedule_(cfg.budget, cfg.steps_per_epoch, sizes, std::move(caps)),
        rng_(cfg.seed ^ 0x7E5A4D1Bull) {
    if (cfg_.mode == ReshardMode::off) throw std::invalid_argument("Resharder: mode off");
    if (static_cast<int>(sizes.size()) != t.world())
      throw std::invalid_argument("Resharder: one size per rank");
    if (sizes[static_cast<std::size_t>(t.rank())] != store.size())
      throw std::invalid_argument("Resharder: this rank's size differs from its store");
  }

  const ReshardSchedule& schedule() const { return schedule_; }
  const ReshardStats& stats() const { return stats_; }
  // The slots sent at the current step (valid between send() and receive()).
  std::span<const int64_t> outgoing() const { return slots_; }

  // Step start: chooses this step's samples and hands them to the transport (low priority).
  void send(int64_t it, const importance::ImportanceCache* cache) {
    const double t0 = t_.now();
    partner_ = reshard_partner(t_.rank(), t_.world(), it);
    count_ = schedule_.count(t_.rank(), partner_, it);
    slots_.clear();
    if (count_ > 0) {
      if (cfg_.mode == ReshardMode::importance && cache) {
        selector_.by_importance(*cache, count_, rng_, slots_);
      } else {
        selector_.uniform(store_.size(), count_, rng_, slots_);
      }
      const int64_t raw = store_.raw_sample_bytes();
      net::Payload payload = t_.allocate(reshard_frame_bytes(count_, raw));
      std::byte* p = put_reshard_header(payload.data(), it, static_cast<uint32_t>(count_),
                                        static_cast<uint32_t>(raw));
      for (int64_t slot : slots_) {
        reshard_detail::put<int64_t>(p, store_.ids()[static_cast<std::size_t>(slot)]);
        reshard_detail::put<int32_t>(p, store_.label(slot));
        store_.read_raw(slot, std::span<std::byte>(p, static_cast<std::size_t>(raw)));
        p += raw;
      }
      stats_.bytes_sent += payload.size();
      stats_.sent += count_;
      t_.send(partner_, kReshard, 0, static_cast<uint64_t>(it), std::move(payload),
              net::Priority::low);
    }
    stats_.select_s += t_.now() - t0;
  }

  // Step end: the partner's samples into the slots this rank sent. Returns those slots.
  std::span<const int64_t> receive(int64_t it) {
    schedule_.advance(it);
    if (count_ == 0) return {};
    const double t0 = t_.now();
    net::Message m =
        t_.recv(partner_, kReshard, 0, static_cast<uint64_t>(it), net::deadline_in(cfg_.timeout_s));
    const double t1 = t_.now();
    stats_.wait_s += t1 - t0;
    const ReshardExpect e{
        partner_, it, count_, store_.raw_sample_bytes(), store_.id_space(), store_.num_classes()};
    decode_reshard(std::span<const std::byte>(m.payload.data(), m.payload.size()), e, batch_);
    for (std::size_t k = 0; k < batch_.ids.size(); ++k) {
      if (store_.holds(batch_.ids[k])) {
        throw net::PeerError(partner_, "reshard frame from rank " + std::to_string(partner_) +
                                           " at step " + std::to_string(it) + ": sample " +
                                           std::to_string(k) + " id " +
                                           std::to_string(batch_.ids[k]) +
                                           " is already held by rank " + std::to_string(t_.rank()) +
                                           " (a duplicate; nothing of the frame was applied)");
      }
    }
    const auto raw = static_cast<std::size_t>(store_.raw_sample_bytes());
    for (std::size_t k = 0; k < slots_.size(); ++k) {
      store_.replace(slots_[k], batch_.ids[k], batch_.labels[k],
                     std::span<const std::byte>(batch_.raw[k], raw));
    }
    stats_.received += count_;
    stats_.bytes_received += m.payload.size();
    stats_.apply_s += t_.now() - t1;
    count_ = 0;
    return slots_;
  }

  void save(io::StateWriter& w) const {
    w.rng(rng_);
    schedule_.save(w);
  }
  void load(io::StateReader& r) {
    r.rng("reshard rng", rng_);
    schedule_.load(r);
  }

 private:
  net::Transport& t_;
  data::LocalStore& store_;
  ReshardConfig cfg_;
  ReshardSchedule schedule_;
  std::mt19937_64 rng_;
  importance::ReshardSelector selector_;
  std::vector<int64_t> slots_;
  ReshardBatch batch_;
  int partner_ = -1;
  int64_t count_ = 0;
  ReshardStats stats_;
};

}  // namespace mercury::dist
