// Image-folder loader (the AID layout: root/<class name>/<image>.jpg), decoded with stb_image,
// converted to RGB, resized (bilinear) to one configured size, split 80/20 per class by seed.
//
// Contract:
//   list_image_folder(root, options) -> ImageFolderListing: class names (the sub-folders of
//     root, sorted byte-wise; hidden ones skipped) with label = position in that order, and for
//     each image its path, label and split. Files are matched by extension, case-insensitively
//     (options.extensions: .jpg .jpeg .png); other files are ignored. Per class the file names
//     are sorted, shuffled with shuffle_portable seeded by (options.seed, class index), and the
//     first round(train_fraction * count) go to train, the rest to test: the split is a pure
//     function of (file names, seed, fraction), identical on every device and platform.
//     Errors (DataError): root missing or not a directory, no class folders, a class folder
//     with no image files (naming the folder and how many other files it holds).
//   load_image_folder(root, split, options) -> ImageDataset of the images of `split`
//     (3 x options.height x options.width, mean/stddev from options). Each file is read whole
//     (at most options.max_file_bytes), its header checked with stbi_info_from_memory (size at
//     most max_pixels, before decoding), decoded to RGB (grey and alpha are converted by stb),
//     and resized with half-pixel-centre bilinear interpolation (no antialiasing; identity when
//     the size already matches). An undecodable file throws DataError naming the file and
//     stb's reason. The pixel buffer is allocated once, from the file count, before decoding.
//   Decoding needs MERCURY_HAVE_STB (CMake option MERCURY_WITH_STB links Debian's libstb, which
//   contains the compiled stb_image). Header-only users without libstb define
//   MERCURY_STB_IMAGE_IMPLEMENTATION in exactly one translation unit before including this
//   header. Without MERCURY_HAVE_STB, listing works and loading throws DataError saying image
//   decoding was not compiled in.
//   resize_bilinear(source, sh, sw, channels, destination, dh, dw) is public (HWC uint8 ->
//   planar CHW uint8) so tests and other loaders use the same resampling.
//   Thread-safe (stb_image's failure reason is thread-local in v2.27).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/data/dataset.hpp"  // Split
#include "mercury/data/idx.hpp"
#include "mercury/io/input_file.hpp"

#ifdef MERCURY_HAVE_STB
#ifdef MERCURY_STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_IMPLEMENTATION
#endif
#if __has_include(<stb_image.h>)
#include <stb_image.h>
#else
#include <stb/stb_image.h>
#endif
#endif

namespace mercury::data {

// ImageNet statistics: the usual normalisation for ImageNet-style models (MobileNetV2 on AID).
inline constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd = {0.229f, 0.224f, 0.225f};

struct ImageFolderOptions {
  int64_t height = 224;  // every image is resized to height x width
  int64_t width = 224;
  double train_fraction = 0.8;                                      // per class
  uint64_t seed = 0;                                                // drives the split
  std::vector<std::string> extensions = {".jpg", ".jpeg", ".png"};  // lower case, with the dot
  std::vector<float> mean = {kImageNetMean.begin(), kImageNetMean.end()};
  std::vector<float> stddev = {kImageNetStd.begin(), kImageNetStd.end()};
  uint64_t max_file_bytes = uint64_t{64} << 20;  // refuse larger files before reading them
  uint64_t max_pixels = uint64_t{1} << 26;       // refuse larger images before decoding them
};

struct ImageFolderEntry {
  std::string path;
  int32_t label = 0;
  Split split = Split::kTrain;
};

struct ImageFolderListing {
  std::string root;
  std::vector<std::string> class_names;  // label = index
  std::vector<ImageFolderEntry> images;  // class by class, each class in its shuffled order
  int64_t count(Split split) const {
    return std::count_if(images.begin(), images.end(),
                         [&](const ImageFolderEntry& e) { return e.split == split; });
  }
};

inline ImageFolderListing list_image_folder(const std::string& root,
                                            const ImageFolderOptions& options = {}) {
  namespace fs = std::filesystem;
  const std::string prefix = "image folder '" + root + "': ";
  if (!(options.train_fraction >= 0.0 && options.train_fraction <= 1.0)) {
    throw std::invalid_argument(prefix + "train_fraction must be in [0, 1], found " +
                                std::to_string(options.train_fraction));
  }
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    throw DataError(prefix + "expected a directory with one sub-folder per class, found " +
                    (fs::exists(root, error) ? "a file" : "nothing (no such path)"));
  }
  ImageFolderListing listing;
  listing.root = root;
  try {
    for (const fs::directory_entry& entry : fs::directory_iterator(root)) {
      const std::string name = entry.path().filename().string();
      if (!name.empty() && name[0] != '.' && entry.is_directory()) {
        listing.class_names.push_back(name);
      }
    }
    std::sort(listing.class_names.begin(), listing.class_names.end());
    if (listing.class_names.empty()) {
      throw DataError(prefix + "expected one sub-folder per class, found no class folders");
    }
    for (size_t label = 0; label < listing.class_names.size(); ++label) {
      const fs::path folder = fs::path(root) / listing.class_names[label];
      std::vector<std::string> files;
      int64_t others = 0;
      for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
        if (!entry.is_regular_file()) continue;
        std::string extension = entry.path().extension().string();
        for (char& ch : extension)
          ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (std::find(options.extensions.begin(), options.extensions.end(), extension) !=
            options.extensions.end()) {
          files.push_back(entry.path().filename().string());
        } else {
          ++others;
        }
      }
      if (files.empty()) {
        std::string wanted;
        for (const std::string& e : options.extensions) wanted += (wanted.empty() ? "" : "/") + e;
        throw DataError(prefix + "empty class folder '" + folder.string() +
                        "': expected at least one " + wanted + " file, found none (" +
                        std::to_string(others) + " other files)");
      }
      std::sort(files.begin(), files.end());
      std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + label + 1);
      shuffle_portable(std::span<std::string>(files), rng);
      const size_t train =
          static_cast<size_t>(std::floor(options.train_fraction * double(files.size()) + 0.5));
      for (size_t i = 0; i < files.size(); ++i) {
        listing.images.push_back({(folder / files[i]).string(), static_cast<int32_t>(label),
                                  i < train ? Split::kTrain : Split::kTest});
      }
    }
  } catch (const fs::filesystem_error& failure) {
    throw DataError(prefix + "cannot list: " + failure.what());
  }
  return listing;
}

// Bilinear resize with half-pixel centres (as OpenCV INTER_LINEAR / PyTorch align_corners=False,
// no antialiasing), from interleaved HWC `source` to planar CHW `destination`. Rounds to nearest.
inline void resize_bilinear(const uint8_t* source, int64_t source_height, int64_t source_width,
                            int64_t channels, uint8_t* destination, int64_t height, int64_t width) {
  const double scale_y = double(source_height) / double(height);
  const double scale_x = double(source_width) / double(width);
  for (int64_t y = 0; y < height; ++y) {
    const double fy = std::clamp((double(y) + 0.5) * scale_y - 0.5, 0.0, double(source_height - 1));
    const int64_t y0 = static_cast<int64_t>(fy);
    const int64_t y1 = std::min(y0 + 1, source_height - 1);
    const double wy = fy - double(y0);
    for (int64_t x = 0; x < width; ++x) {
      const double fx =
          std::clamp((double(x) + 0.5) * scale_x - 0.5, 0.0, double(source_width - 1));
      const int64_t x0 = static_cast<int64_t>(fx);
      const int64_t x1 = std::min(x0 + 1, source_width - 1);
      const double wx = fx - double(x0);
      for (int64_t c = 0; c < channels; ++c) {
        const auto at = [&](int64_t yy, int64_t xx) {
          return double(source[(yy * source_width + xx) * channels + c]);
        };
        const double top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * wx;
        const double bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * wx;
        const double value = top + (bottom - top) * wy;
        destination[(c * height + y) * width + x] =
            static_cast<uint8_t>(std::clamp(std::lround(value), 0L, 255L));
      }
    }
  }
}

// What a file that stb_image cannot decode is, for the error: stb reports the failure of the
// last format it tried ("bad png sig" for a truncated JPEG), so the format is named from the
// file's own magic bytes, with stb's reason only for a JPEG or PNG that fails to decode.
inline std::string undecodable(std::span<const uint8_t> bytes, const char* stb_reason) {
  const auto starts = [&](std::initializer_list<uint8_t> magic) {
    return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
  };
  const std::string reason = stb_reason && *stb_reason ? stb_reason : "no reason given";
  if (starts({0xFF, 0xD8, 0xFF}))
    return "cannot decode the JPEG image (truncated or corrupt; stb_image: " + reason + ")";
  if (starts({0x89, 'P', 'N', 'G'}))
    return "cannot decode the PNG image (truncated or corrupt; stb_image: " + reason + ")";
  std::string found;
  if (starts({'G', 'I', 'F', '8'}))
    found = "a GIF image";
  else if (starts({'B', 'M'}))
    found = "a BMP image";
  else if (starts({'R', 'I', 'F', 'F'}))
    found = "a RIFF file (WebP?)";
  else if (starts({'I', 'I', 42, 0}) || starts({'M', 'M', 0, 42}))
    found = "a TIFF image";
  else {
    found = "data starting with bytes";
    char hex[8];
    for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 4); ++i) {
      std::snprintf(hex, sizeof hex, " %02x", bytes[i]);
      found += hex;
    }
  }
  return "expected a JPEG or PNG image, found " + found;
}

inline ImageDataset load_image_folder(const std::string& root, Split split,
                                      const ImageFolderOptions& options = {}) {
  const std::string prefix = "image folder '" + root + "': ";
  if (options.height < 1 || options.width < 1 || options.height > 4096 || options.width > 4096) {
    throw std::invalid_argument(prefix + "output size must be 1..4096 per side, found " +
                                std::to_string(options.height) + " x " +
                                std::to_string(options.width));
  }
  const ImageFolderListing listing = list_image_folder(root, options);
#ifndef MERCURY_HAVE_STB
  (void)split;
  throw DataError(prefix + "JPEG/PNG decoding was not compiled in (build with " +
                  "-DMERCURY_WITH_STB=ON and libstb-dev so MERCURY_HAVE_STB is defined)");
#else
  const int64_t image_bytes = 3 * options.height * options.width;
  const int64_t n = listing.count(split);
  if (n == 0) {
    throw DataError(prefix + "the " + split_name(split) + " split is empty: expected at least " +
                    "one image (train_fraction " + std::to_string(options.train_fraction) + ")");
  }
  if (static_cast<uint64_t>(n) > kDefaultIdxMaxBytes / static_cast<uint64_t>(image_bytes)) {
    throw DataError(prefix + "expected at most " + std::to_string(kDefaultIdxMaxBytes) +
                    " bytes of pixels, found " + std::to_string(n) + " images of " +
                    std::to_string(image_bytes) + " bytes");
  }
  ImageDataset dataset;
  dataset.n = n;
  dataset.channels = 3;
  dataset.height = options.height;
  dataset.width = options.width;
  dataset.classes = static_cast<int64_t>(listing.class_names.size());
  dataset.name = std::filesystem::path(root).filename().string() + "/" + split_name(split);
  dataset.mean = options.mean;
  dataset.stddev = options.stddev;
  dataset.pixels.resize(static_cast<size_t>(n * image_bytes));
  dataset.labels.reserve(static_cast<size_t>(n));

  std::vector<uint8_t> file_bytes;
  int64_t next = 0;
  for (const ImageFolderEntry& entry : listing.images) {
    if (entry.split != split) continue;
    const std::string where = "image file '" + entry.path + "': ";
    try {
      io::InputFile file(entry.path);
      const uint64_t size = file.size().value_or(0);
      if (size == 0 || size > options.max_file_bytes) {
        throw DataError(where + "expected 1.." + std::to_string(options.max_file_bytes) +
                        " bytes, found " + std::to_string(size));
      }
      file_bytes.resize(static_cast<size_t>(size));
      if (file.read_fully(file_bytes.data(), file_bytes.size()) != file_bytes.size()) {
        throw DataError(where + "truncated at byte offset " + std::to_string(file.offset()) +
                        ": the file shrank while being read");
      }
    } catch (const std::system_error& failure) {
      throw DataError(where + failure.what());
    }
    int w = 0, h = 0, c = 0;
    const int length = static_cast<int>(file_bytes.size());
    if (stbi_info_from_memory(file_bytes.data(), length, &w, &h, &c) == 0)
      throw DataError(where + undecodable(file_bytes, stbi_failure_reason()));
    if (w < 1 || h < 1 || uint64_t(w) * uint64_t(h) > options.max_pixels) {
      throw DataError(where + "image size: expected 1.." + std::to_string(options.max_pixels) +
                      " pixels, found " + std::to_string(w) + " x " + std::to_string(h));
    }
    stbi_uc* decoded = stbi_load_from_memory(file_bytes.data(), length, &w, &h, &c, 3);
    if (decoded == nullptr) throw DataError(where + undecodable(file_bytes, stbi_failure_reason()));
    resize_bilinear(decoded, h, w, 3, dataset.pixels.data() + next * image_bytes, options.height,
                    options.width);
    stbi_image_free(decoded);
    dataset.labels.push_back(entry.label);
    ++next;
  }
  return dataset;
#endif
}

}  // namespace mercury::data
