// CIFAR-10 and CIFAR-100 loaders for the "binary version" files (cifar-10-batches-bin,
// cifar-100-binary), as ImageDatasets of 3 x 32 x 32 uint8 images.
//
// Format: a file is a plain sequence of fixed-size records, no header.
//   CIFAR-10:  3073 bytes = 1 label byte (0..9), then 3072 pixel bytes.
//   CIFAR-100: 3074 bytes = 1 coarse label byte (0..19), 1 fine label byte (0..99), 3072 pixels.
//   Pixels are 1024 red, 1024 green, 1024 blue bytes, each plane row-major 32 x 32: already the
//   NCHW layout ImageDataset stores, so they are copied as is.
//
// Contract:
//   load_cifar10(dir, split)                 train: data_batch_1.bin .. data_batch_5.bin (in
//                                            that order), test: test_batch.bin
//   load_cifar100(dir, split, coarse=false)  train: train.bin, test: test.bin; labels are the fine
//                                            (100 classes) or the coarse (20 superclasses) ones
//   Each looks in `dir`, then in dir/cifar-10-batches-bin (resp. dir/cifar-100-binary), the
//   folder names of the official archives; the first folder holding every file of the split
//   wins. Otherwise DataError lists each missing file path.
//   read_cifar_files(paths, format, name) reads any list of record files (other subsets).
//   Validation happens before any allocation: every file's length must be a non-zero multiple of
//   the record size (else "truncated at record k, byte offset o"); the total is capped at
//   kDefaultIdxMaxBytes of pixels. Every label byte (both of them for CIFAR-100) must be in
//   range; the error names the file, the record, the byte offset and the value found.
//   The result carries the usual per-channel mean/stddev of the training set (kCifar10Mean...).
//   Training augmentation is not switched on here: set dataset.augment (e.g. pad 4 + hflip).
//   Thread-safe (no shared state).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/data/dataset.hpp"  // Split (shared by every loader)
#include "mercury/data/idx.hpp"
#include "mercury/io/input_file.hpp"
#include "net/file_kind.hpp"

namespace mercury::data {

// Per-channel statistics of the training sets (RGB), as used by the reference CIFAR recipes.
inline constexpr std::array<float, 3> kCifar10Mean = {0.4914f, 0.4822f, 0.4465f};
inline constexpr std::array<float, 3> kCifar10Std = {0.2470f, 0.2435f, 0.2616f};
inline constexpr std::array<float, 3> kCifar100Mean = {0.5071f, 0.4865f, 0.4409f};
inline constexpr std::array<float, 3> kCifar100Std = {0.2673f, 0.2564f, 0.2762f};

inline constexpr int64_t kCifarImageBytes = 3 * 32 * 32;

// Which bytes of a record are labels and which one the dataset uses.
struct CifarFormat {
  int64_t label_bytes = 1;                         // 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine)
  int64_t label_position = 0;                      // which label byte becomes the dataset label
  std::array<int64_t, 2> label_classes = {10, 0};  // class count of each label byte
  int64_t record_bytes() const { return label_bytes + kCifarImageBytes; }
};

inline constexpr CifarFormat kCifar10Format{1, 0, {10, 0}};
inline CifarFormat cifar100_format(bool coarse) {
  return CifarFormat{2, coarse ? 0 : 1, {20, 100}};
}

inline ImageDataset read_cifar_files(const std::vector<std::string>& paths,
                                     const CifarFormat& format, const std::string& name) {
  const int64_t record = format.record_bytes();
  const char* label_names[2] = {format.label_bytes == 2 ? "coarse label" : "label", "fine label"};

  // Pass 1: sizes only, so a bad file fails before the pixel buffer exists.
  std::vector<int64_t> records(paths.size());
  int64_t total = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    std::optional<uint64_t> size;
    try {
      size = io::InputFile(paths[f]).size();
    } catch (const std::system_error& error) {
      throw DataError("CIFAR file '" + paths[f] + "': " + error.what());
    }
    if (!size) {
      throw DataError("CIFAR file '" + paths[f] + "': expected a regular file of " +
                      std::to_string(record) + "-byte records, found a pipe or device");
    }
    const uint64_t bytes = *size;
    if (bytes == 0) {
      throw DataError("CIFAR file '" + paths[f] + "': expected " + std::to_string(record) +
                      "-byte records, found an empty file");
    }
    if (bytes % static_cast<uint64_t>(record) != 0) {
      const uint64_t whole = bytes / static_cast<uint64_t>(record);
      throw DataError("CIFAR file '" + paths[f] + "': truncated at record " +
                      std::to_string(whole) + ", byte offset " +
                      std::to_string(whole * static_cast<uint64_t>(record)) + ": expected a " +
                      "multiple of " + std::to_string(record) + " bytes (records of " +
                      std::to_string(format.label_bytes) + " label byte(s) + 3072 pixels), " +
                      "found " + std::to_string(bytes) + " bytes (the last record has only " +
                      std::to_string(bytes % static_cast<uint64_t>(record)) + ")");
    }
    if (bytes / static_cast<uint64_t>(record) >
        (kDefaultIdxMaxBytes / kCifarImageBytes) - static_cast<uint64_t>(total)) {
      throw DataError("CIFAR file '" + paths[f] + "': expected at most " +
                      std::to_string(kDefaultIdxMaxBytes / kCifarImageBytes) +
                      " records in total, found " + std::to_string(bytes / record) +
                      " more after " + std::to_string(total));
    }
    records[f] = static_cast<int64_t>(bytes / static_cast<uint64_t>(record));
    total += records[f];
  }

  ImageDataset dataset;
  dataset.n = total;
  dataset.channels = 3;
  dataset.height = 32;
  dataset.width = 32;
  dataset.classes = format.label_classes[static_cast<size_t>(format.label_position)];
  dataset.name = name;
  dataset.pixels.resize(static_cast<size_t>(total * kCifarImageBytes));
  dataset.labels.resize(static_cast<size_t>(total));

  // Pass 2: read in chunks of records, check labels, split labels from pixels.
  constexpr int64_t kChunkRecords = 512;
  std::vector<uint8_t> chunk(static_cast<size_t>(kChunkRecords * record));
  int64_t next = 0;  // dataset index of the next record
  for (size_t f = 0; f < paths.size(); ++f) {
    try {
      io::InputFile file(paths[f]);
      for (int64_t done = 0; done < records[f];) {
        const int64_t count = std::min(kChunkRecords, records[f] - done);
        const size_t want = static_cast<size_t>(count * record);
        const size_t got = file.read_fully(chunk.data(), want);
        if (got != want) {  // the file shrank since pass 1
          throw DataError("CIFAR file '" + paths[f] + "': truncated at record " +
                          std::to_string(done + int64_t(got) / record) + ", byte offset " +
                          std::to_string(file.offset()) + ": expected " +
                          std::to_string(records[f] * record) + " bytes, the file shrank");
        }
        for (int64_t r = 0; r < count; ++r) {
          const uint8_t* bytes = chunk.data() + r * record;
          const int64_t record_index = done + r;
          for (int64_t k = 0; k < format.label_bytes; ++k) {
            const int64_t limit = format.label_classes[static_cast<size_t>(k)];
            if (bytes[k] >= limit) {
              throw DataError("CIFAR file '" + paths[f] + "': " + label_names[k] + " of record " +
                              std::to_string(record_index) + " at byte offset " +
                              std::to_string(record_index * record + k) + ": expected 0.." +
                              std::to_string(limit - 1) + ", found " + std::to_string(bytes[k]));
            }
          }
          dataset.labels[static_cast<size_t>(next)] = bytes[format.label_position];
          std::copy_n(bytes + format.label_bytes, kCifarImageBytes,
                      dataset.pixels.data() + next * kCifarImageBytes);
          ++next;
        }
        done += count;
      }
    } catch (const std::system_error& error) {
      throw DataError("CIFAR file '" + paths[f] + "': " + error.what());
    }
  }
  return dataset;
}

namespace cifar_detail {

// The first of `directories` holding every file; otherwise DataError listing what is missing.
inline std::vector<std::string> find_files(const std::string& what,
                                           const std::vector<std::filesystem::path>& directories,
                                           const std::vector<std::string>& files) {
  std::string missing;
  for (const std::filesystem::path& directory : directories) {
    std::vector<std::string> found;
    for (const std::string& file : files) {
      const std::filesystem::path path = directory / file;
      std::error_code ignored;
      if (std::filesystem::is_regular_file(path, ignored)) {
        found.push_back(path.string());
      } else {
        missing += "\n  " + path.string() + " (" + net::unusable_input_note(path.string()) + ")";
      }
    }
    if (found.size() == files.size()) return found;
  }
  throw DataError(what + " not found: expected every file of the split in one directory; " +
                  "missing:" + missing);
}

}  // namespace cifar_detail

inline ImageDataset load_cifar10(const std::string& dir, Split split) {
  const std::vector<std::string> files =
      split == Split::kTrain
          ? std::vector<std::string>{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin"}
          : std::vector<std::string>{"test_batch.bin"};
  const std::filesystem::path root(dir);
  ImageDataset dataset = read_cifar_files(
      cifar_detail::find_files(std::string("CIFAR-10 ") + split_name(split) + " split",
                               {root, root / "cifar-10-batches-bin"}, files),
      kCifar10Format, std::string("cifar10/") + split_name(split));
  dataset.mean.assign(kCifar10Mean.begin(), kCifar10Mean.end());
  dataset.stddev.assign(kCifar10Std.begin(), kCifar10Std.end());
  return dataset;
}

inline ImageDataset load_cifar100(const std::string& dir, Split split, bool coarse = false) {
  const std::filesystem::path root(dir);
  ImageDataset dataset = read_cifar_files(
      cifar_detail::find_files(std::string("CIFAR-100 ") + split_name(split) + " split",
                               {root, root / "cifar-100-binary"},
                               {split == Split::kTrain ? "train.bin" : "test.bin"}),
      cifar100_format(coarse),
      std::string("cifar100") + (coarse ? "-coarse/" : "/") + split_name(split));
  dataset.mean.assign(kCifar100Mean.begin(), kCifar100Mean.end());
  dataset.stddev.assign(kCifar100Std.begin(), kCifar100Std.end());
  return dataset;
}

}  // namespace mercury::data
