// mercury/data/local_store.hpp — the samples one device holds: a compact copy of its partition
// that resharding edits in place.
//
// Contract
// - LocalStore(full, ids, what) copies samples `ids` of `full` (its global sample ids, each in
//   [0, full.size()), no duplicates — else std::invalid_argument naming the position) into a
//   dataset of the same kind (Dataset::copy_of): after construction it no longer refers to
//   `full`, which the caller may free ("load, partition, drop the rest", as a device would).
// - Slot k of the store is sample ids()[k]; the store is a Dataset (gather, labels, shape are
//   the copy's), safe to gather from concurrently like any Dataset.
// - replace(slot, id, label, raw) puts another sample into a slot (what resharding does when a
//   sample leaves and another arrives). It checks the id is in range and not held elsewhere in
//   the store, the raw size and the label; on an error nothing changes. Not thread-safe with
//   gather(): the owner calls it between scoring windows.
// - holds(id), sample_hash(slot) (CRC32C of label and raw bytes) and content_hashes() let
//   tests check the cluster's multiset of samples.
// - reload(full, ids) rebuilds the store from `full` (a resume that restores another partition).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/io/crc32c.hpp"

namespace mercury::data {

class LocalStore final : public Dataset {
 public:
  LocalStore(const Dataset& full, std::vector<int64_t> ids, std::string what)
      : what_(std::move(what)) {
    reload(full, std::move(ids));
  }

  void reload(const Dataset& full, std::vector<int64_t> ids) {
    if (full.raw_sample_bytes() < 1) {
      throw std::invalid_argument("local store: " + full.describe() +
                                  " has no stored form to copy samples from");
    }
    std::vector<uint8_t> held(static_cast<std::size_t>(full.size()), 0);
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const int64_t id = ids[k];
      if (id < 0 || id >= full.size() || held[static_cast<std::size_t>(id)]) {
        throw std::invalid_argument(
            "local store " + what_ + ": sample id at position " + std::to_string(k) +
            ": expected a distinct id in 0.." + std::to_string(full.size() - 1) + ", found " +
            std::to_string(id) + (id >= 0 && id < full.size() ? " (a duplicate)" : ""));
      }
      held[static_cast<std::size_t>(id)] = 1;
    }
    data_ = full.copy_of(ids);
    ids_ = std::move(ids);
    held_ = std::move(held);
    id_space_ = full.size();
    source_ = full.describe();
  }

  int64_t size() const override { return data_->size(); }
  Shape sample_shape() const override { return data_->sample_shape(); }
  int64_t num_classes() const override { return data_->num_classes(); }
  int32_t label(int64_t index) const override { return data_->label(index); }
  std::string describe() const override {
    return what_ + ": " + std::to_string(size()) + " samples held of " + source_;
  }
  void gather(std::span<const int64_t> indices, float* x, int32_t* y,
              std::mt19937_64* augment_rng) const override {
    data_->gather(indices, x, y, augment_rng);
  }
  int64_t raw_sample_bytes() const override { return data_->raw_sample_bytes(); }
  std::unique_ptr<Dataset> copy_of(std::span<const int64_t> indices) const override {
    return data_->copy_of(indices);
  }
  void read_raw(int64_t index, std::span<std::byte> out) const override {
    data_->read_raw(index, out);
  }
  // Slot-level writes go through replace() (which keeps the ids right).
  void write_raw(int64_t, std::span<const std::byte>, int32_t) override {
    throw std::logic_error("local store " + what_ + ": use replace() to change a slot");
  }

  // Global sample id of each slot.
  const std::vector<int64_t>& ids() const { return ids_; }
  // Number of global ids (the full dataset's size).
  int64_t id_space() const { return id_space_; }
  bool holds(int64_t id) const {
    return id >= 0 && id < id_space_ && held_[static_cast<std::size_t>(id)] != 0;
  }

  void replace(int64_t slot, int64_t id, int32_t label, std::span<const std::byte> raw) {
    if (slot < 0 || slot >= size()) {
      throw std::out_of_range("local store " + what_ + ": slot " + std::to_string(slot) +
                              ", expected 0.." + std::to_string(size() - 1));
    }
    const int64_t old = ids_[static_cast<std::size_t>(slot)];
    if (id < 0 || id >= id_space_ || (id != old && holds(id))) {
      throw std::invalid_argument("local store " + what_ + ": sample id " + std::to_string(id) +
                                  ": expected an id in 0.." + std::to_string(id_space_ - 1) +
                                  " not held yet");
    }
    data_->write_raw(slot, raw, label);  // validates size and label before writing
    held_[static_cast<std::size_t>(old)] = 0;
    held_[static_cast<std::size_t>(id)] = 1;
    ids_[static_cast<std::size_t>(slot)] = id;
  }

  // CRC32C over a slot's label and stored bytes.
  uint64_t sample_hash(int64_t slot) const {
    scratch_.resize(static_cast<std::size_t>(raw_sample_bytes()));
    read_raw(slot, scratch_);
    const int32_t l = label(slot);
    uint32_t crc = io::crc32c(&l, sizeof l);
    crc = io::crc32c(scratch_.data(), scratch_.size(), crc);
    return crc;
  }
  std::vector<uint64_t> content_hashes() const {
    std::vector<uint64_t> h(static_cast<std::size_t>(size()));
    for (int64_t k = 0; k < size(); ++k) h[static_cast<std::size_t>(k)] = sample_hash(k);
    return h;
  }

 private:
  std::string what_;
  std::string source_;
  std::unique_ptr<Dataset> data_;
  std::vector<int64_t> ids_;
  std::vector<uint8_t> held_;
  int64_t id_space_ = 0;
  mutable std::vector<std::byte> scratch_;
};

}  // namespace mercury::data
