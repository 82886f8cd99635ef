// Locating and loading Fashion-MNIST (60000 train / 10000 test, 1 x 28 x 28, 10 classes).
//
// Contract:
//   find_fashion_mnist(data_dir) picks ONE directory, first match wins:
//     data_dir (or data_dir/fashion-mnist) if data_dir is non-empty,
//     else $MERCURY_DATA_DIR/fashion-mnist if that variable is set and non-empty,
//     else /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
//   In it, each of the four files is accepted as "<stem>.gz" or "<stem>" (either may actually be
//   compressed; the IDX reader sniffs the content). If a file is missing, DataError lists every
//   path tried and how to get the data (apt-get install dataset-fashion-mnist).
//   load_fashion_mnist(data_dir, split) returns the split as an ImageDataset and checks the
//   expected geometry (N x 28 x 28, labels < 10). kFashionMnistMean/Std are the usual per-channel
//   normalisation constants for gather_batch.
//   Reads the environment; otherwise no shared state.
#pragma once

#include <array>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/data/idx.hpp"
#include "net/file_kind.hpp"

namespace mercury::data {

inline constexpr std::array<float, 1> kFashionMnistMean = {0.2860f};
inline constexpr std::array<float, 1> kFashionMnistStd = {0.3530f};
inline constexpr int64_t kFashionMnistClasses = 10;
inline constexpr const char* kFashionMnistSystemDir = "/usr/share/datasets/fashion-mnist";

struct FashionMnistFiles {
  std::string directory;
  std::string train_images, train_labels, test_images, test_labels;
};

inline FashionMnistFiles find_fashion_mnist(const std::string& data_dir = "") {
  namespace fs = std::filesystem;
  std::vector<fs::path> directories;
  std::string how_chosen;
  if (!data_dir.empty()) {
    directories = {fs::path(data_dir), fs::path(data_dir) / "fashion-mnist"};
    how_chosen = "the given data directory";
  } else if (const char* env = std::getenv("MERCURY_DATA_DIR"); env != nullptr && *env != '\0') {
    directories = {fs::path(env) / "fashion-mnist"};
    how_chosen = "$MERCURY_DATA_DIR";
  } else {
    directories = {fs::path(kFashionMnistSystemDir)};
    how_chosen = "the system default";
  }

  constexpr std::array<const char*, 4> kStems = {
      "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte"};
  std::vector<std::string> tried;
  for (const fs::path& directory : directories) {
    std::array<std::string, 4> found;
    bool complete = true;
    for (size_t i = 0; i < kStems.size(); ++i) {
      for (const std::string& candidate :
           {std::string(kStems[i]) + ".gz", std::string(kStems[i])}) {
        const fs::path path = directory / candidate;
        std::error_code ignored;
        const bool exists = fs::is_regular_file(path, ignored);
        tried.push_back(path.string() + " (" +
                        (exists ? "found" : net::unusable_input_note(path.string())) + ")");
        if (exists) {
          found[i] = path.string();
          break;
        }
      }
      complete = complete && !found[i].empty();
    }
    if (complete) return {directory.string(), found[0], found[1], found[2], found[3]};
  }

  std::string message = "Fashion-MNIST not found via " + how_chosen +
                        ": expected all four IDX files (.gz or uncompressed); paths tried:";
  for (const std::string& path : tried) message += "\n  " + path;
  message +=
      "\nInstall it with `apt-get install dataset-fashion-mnist` (Debian), set MERCURY_DATA_DIR "
      "to a directory containing fashion-mnist/, or pass the directory explicitly.";
  throw DataError(message);
}

inline ImageDataset load_fashion_mnist(const std::string& data_dir, Split split) {
  const FashionMnistFiles files = find_fashion_mnist(data_dir);
  const bool train = split == Split::kTrain;
  ImageDataset dataset =
      load_idx_pair(train ? files.train_images : files.test_images,
                    train ? files.train_labels : files.test_labels, kFashionMnistClasses);
  if (dataset.height != 28 || dataset.width != 28) {
    throw DataError("IDX file '" + dataset.name + "': image dimensions at byte offset 8: " +
                    "expected 28 x 28 for Fashion-MNIST, found " + std::to_string(dataset.height) +
                    " x " + std::to_string(dataset.width));
  }
  dataset.name = std::string("fashion-mnist/") + split_name(split);
  dataset.mean.assign(kFashionMnistMean.begin(), kFashionMnistMean.end());
  dataset.stddev.assign(kFashionMnistStd.begin(), kFashionMnistStd.end());
  return dataset;
}

}  // namespace mercury::data
