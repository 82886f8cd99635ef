// In-memory labelled image dataset (uint8 pixels, NCHW) and its IDX loader.
//
// Contract:
//   ImageDataset holds n images of channels x height x width uint8 pixels (NCHW, image i at
//   pixels[i * image_size()]) and n int32 labels in [0, num_classes).
//   gather_batch(indices, mean, stddev, out_pixels, out_labels) writes
//     out_pixels[b, c, y, x] = (pixels[indices[b], c, y, x] / 255 - mean[c]) / stddev[c]
//     out_labels[b]          = labels[indices[b]]
//   into caller-owned buffers: no allocation, so it can run every step. Sizes must match
//   exactly (out_pixels = indices.size() * image_size(), out_labels = indices.size(),
//   mean/stddev = channels); violations throw std::invalid_argument, an index outside [0, n)
//   throws std::out_of_range naming the batch position and the index. Read-only: concurrent
//   gathers into different buffers are safe.
//   Augmentation (ImageDataset::augment) applies only when gather()/gather_batch() get a non-null
//   augment_rng: per sample, one random crop from the image zero-padded by `pad` pixels on each
//   side (raw pixel 0, i.e. black before normalisation, as torchvision's RandomCrop(padding)
//   before Normalize) and, if `hflip`, a horizontal mirror with probability 1/2 (crop first, then
//   flip). The draws come only from augment_rng through uniform_below (no std:: distribution, so
//   the result is the same on every standard library): same RNG state, same batch. No
//   allocation. With a null RNG the output is the plain sample, bit for bit.
//   uniform_below(rng, bound) and shuffle_portable(values, rng) are the portable, unbiased
//   draw/shuffle every data module uses (partitions and splits must agree across devices).
//   load_idx_pair(images, labels, num_classes) reads an N x H x W ubyte image file and an N ubyte
//   label file (plain or gzip) and checks that the counts agree and every label is below
//   num_classes; failures throw DataError naming the file, the record index and the label.
//   Moving samples between devices (resharding; data/local_store.hpp): a dataset that supports
//   it stores each sample in raw_sample_bytes() > 0 bytes (its compact stored form: pixels,
//   token ids, PCM); copy_of(indices) returns a dataset of the same kind owning copies of those
//   samples only (sample k = indices[k]); read_raw/write_raw copy one sample's stored bytes out
//   and in (write_raw with its label). write_raw is the one mutating call: the owner must not
//   run it while another thread gathers. The defaults refuse (raw_sample_bytes() == 0).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/base/random.hpp"
#include "mercury/data/idx.hpp"
#include "mercury/tensor/tensor.hpp"

namespace mercury::data {

// Portable integer draws and shuffles (mercury/base/random.hpp): the same on every platform.
using base::shuffle_portable;
using base::uniform_below;

// Training-time image augmentation, applied by ImageDataset::gather only with an RNG.
struct ImageAugmentation {
  int64_t pad = 0;     // random crop after zero-padding each side by `pad` pixels (CIFAR: 4)
  bool hflip = false;  // horizontal mirror with probability 1/2
  bool enabled() const { return pad > 0 || hflip; }
};

// Which part of a dataset a loader returns.
enum class Split { kTrain, kTest };

inline const char* split_name(Split split) {
  return split == Split::kTrain ? "train" : "test";
}

// A labelled dataset as the trainer, the importance scorer and the partitioners see it.
// Implementations keep samples compact (uint8 pixels, quantised features, token ids) and convert
// per batch. gather() is const and allocation-free: concurrent gathers into different buffers
// are safe (a scoring thread and the training thread share one dataset).
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Shape sample_shape() const = 0;  // one sample, e.g. [1, 28, 28]
  virtual int64_t num_classes() const = 0;
  virtual int32_t label(int64_t index) const = 0;
  virtual std::string describe() const = 0;
  // Writes samples `indices` as normalised float32 (sample_shape() each, back to back) into x
  // and their labels into y. augment_rng non-null: apply the training-time augmentation drawn
  // from it (deterministic for a given RNG state); null: the plain sample (evaluation, scoring).
  virtual void gather(std::span<const int64_t> indices, float* x, int32_t* y,
                      std::mt19937_64* augment_rng) const = 0;
  int64_t sample_numel() const { return sample_shape().numel(); }

  // Resharding support (see the contract above). Defaults: not supported.
  virtual int64_t raw_sample_bytes() const { return 0; }
  virtual std::unique_ptr<Dataset> copy_of(std::span<const int64_t> indices) const {
    (void)indices;
    throw std::logic_error(describe() + " cannot copy samples out (no stored form)");
  }
  virtual void read_raw(int64_t index, std::span<std::byte> out) const {
    (void)index, (void)out;
    throw std::logic_error(describe() + " cannot read raw samples");
  }
  virtual void write_raw(int64_t index, std::span<const std::byte> raw, int32_t label) {
    (void)index, (void)raw, (void)label;
    throw std::logic_error(describe() + " cannot write raw samples");
  }

 protected:
  // Checks of the raw-sample calls, shared by the implementations.
  void check_raw(const char* what, int64_t index, std::size_t bytes) const {
    if (index < 0 || index >= size()) {
      throw std::out_of_range(describe() + ": " + what + " of sample " + std::to_string(index) +
                              ", expected 0.." + std::to_string(size() - 1));
    }
    if (bytes != static_cast<std::size_t>(raw_sample_bytes())) {
      throw std::invalid_argument(describe() + ": " + what + " of " + std::to_string(bytes) +
                                  " bytes, expected " + std::to_string(raw_sample_bytes()));
    }
  }
  void check_label(int32_t label) const {
    if (label < 0 || label >= num_classes()) {
      throw std::invalid_argument(describe() + ": label " + std::to_string(label) +
                                  ", expected 0.." + std::to_string(num_classes() - 1));
    }
  }
  // The same dataset kind's vector fields, restricted to `indices` (`per` values per sample).
  template <class T>
  std::vector<T> pick_rows(const std::vector<T>& all, std::span<const int64_t> indices,
                           int64_t per) const {
    std::vector<T> out;
    out.reserve(indices.size() * static_cast<std::size_t>(per));
    for (std::size_t k = 0; k < indices.size(); ++k) {
      const int64_t i = indices[k];
      if (i < 0 || i >= size()) {
        throw std::out_of_range(describe() + ": copy_of position " + std::to_string(k) +
                                " has index " + std::to_string(i) + ", expected 0.." +
                                std::to_string(size() - 1));
      }
      out.insert(out.end(), all.begin() + i * per, all.begin() + (i + 1) * per);
    }
    return out;
  }
  template <class T>
  void raw_out(const std::vector<T>& all, int64_t index, std::span<std::byte> out) const {
    check_raw("read_raw", index, out.size());
    std::memcpy(out.data(), all.data() + index * (raw_sample_bytes() / int64_t(sizeof(T))),
                out.size());
  }
  template <class T>
  void raw_in(std::vector<T>& all, int64_t index, std::span<const std::byte> raw, int32_t label) {
    check_raw("write_raw", index, raw.size());
    check_label(label);
    std::memcpy(all.data() + index * (raw_sample_bytes() / int64_t(sizeof(T))), raw.data(),
                raw.size());
  }
};

struct ImageDataset final : Dataset {
  int64_t n = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t classes = 0;
  std::vector<uint8_t> pixels;  // n * channels * height * width, NCHW
  std::vector<int32_t> labels;  // n, each in [0, num_classes)
  std::string name;
  // Per-channel normalisation applied by gather(): (pixel/255 − mean[c]) / stddev[c].
  // Empty: mean 0, stddev 1 (pixels scaled to [0, 1]).
  std::vector<float> mean, stddev;
  ImageAugmentation augment;  // used only when gather() is given an RNG (training batches)

  int64_t image_size() const { return channels * height * width; }

  int64_t size() const override { return n; }
  Shape sample_shape() const override { return Shape{channels, height, width}; }
  int64_t num_classes() const override { return classes; }
  int32_t label(int64_t index) const override { return labels.at(static_cast<size_t>(index)); }
  std::string describe() const override {
    std::string text = name + " (" + std::to_string(n) + " images " + std::to_string(channels) +
                       "x" + std::to_string(height) + "x" + std::to_string(width) + ", " +
                       std::to_string(classes) + " classes";
    if (augment.pad > 0) text += ", train crop pad " + std::to_string(augment.pad);
    if (augment.hflip) text += ", train hflip";
    return text + ")";
  }
  int64_t raw_sample_bytes() const override { return image_size(); }
  std::unique_ptr<Dataset> copy_of(std::span<const int64_t> indices) const override {
    auto d = std::make_unique<ImageDataset>();
    d->n = static_cast<int64_t>(indices.size());
    d->channels = channels;
    d->height = height;
    d->width = width;
    d->classes = classes;
    d->pixels = pick_rows(pixels, indices, image_size());
    d->labels = pick_rows(labels, indices, 1);
    d->name = name;
    d->mean = mean;
    d->stddev = stddev;
    d->augment = augment;
    return d;
  }
  void read_raw(int64_t index, std::span<std::byte> out) const override {
    raw_out(pixels, index, out);
  }
  void write_raw(int64_t index, std::span<const std::byte> raw, int32_t label) override {
    raw_in(pixels, index, raw, label);
    labels[static_cast<size_t>(index)] = label;
  }

  void gather(std::span<const int64_t> indices, float* x, int32_t* y,
              std::mt19937_64* augment_rng) const override {
    // One value broadcasts to every channel; no allocation (this runs every step).
    constexpr size_t kMax = 16;
    const size_t c = static_cast<size_t>(channels);
    float m[kMax], sd[kMax];
    for (size_t k = 0; k < c && k < kMax; ++k) {
      m[k] = mean.empty() ? 0.0f : mean[mean.size() == 1 ? 0 : k];
      sd[k] = stddev.empty() ? 1.0f : stddev[stddev.size() == 1 ? 0 : k];
    }
    const bool sizes_ok =
        (mean.size() <= 1 || mean.size() == c) && (stddev.size() <= 1 || stddev.size() == c);
    const std::span<const float> ms(m, sizes_ok ? std::min(c, kMax) : mean.size());
    const std::span<const float> ss(sd, sizes_ok ? std::min(c, kMax) : stddev.size());
    gather_batch(indices, ms, ss, std::span<float>(x, indices.size() * image_size()),
                 std::span<int32_t>(y, indices.size()), augment_rng);
  }

  void gather_batch(std::span<const int64_t> indices, std::span<const float> mean,
                    std::span<const float> stddev, std::span<float> out_pixels,
                    std::span<int32_t> out_labels, std::mt19937_64* augment_rng = nullptr) const {
    const size_t batch = indices.size();
    const size_t per_image = static_cast<size_t>(image_size());
    const size_t per_channel = static_cast<size_t>(height * width);
    if (mean.size() != static_cast<size_t>(channels) ||
        stddev.size() != static_cast<size_t>(channels)) {
      throw std::invalid_argument("gather_batch on '" + name + "': expected " +
                                  std::to_string(channels) + " mean/stddev values, found " +
                                  std::to_string(mean.size()) + "/" +
                                  std::to_string(stddev.size()));
    }
    if (out_pixels.size() != batch * per_image || out_labels.size() != batch) {
      throw std::invalid_argument("gather_batch on '" + name + "': expected output buffers of " +
                                  std::to_string(batch * per_image) + " floats and " +
                                  std::to_string(batch) + " labels, found " +
                                  std::to_string(out_pixels.size()) + " and " +
                                  std::to_string(out_labels.size()));
    }
    // Per-channel affine map folded once: value * scale + shift.
    constexpr size_t kMaxChannels = 16;
    if (channels > static_cast<int64_t>(kMaxChannels)) {
      throw std::invalid_argument("gather_batch on '" + name + "': expected at most 16 channels" +
                                  ", found " + std::to_string(channels));
    }
    float scale[kMaxChannels];
    float shift[kMaxChannels];
    for (int64_t c = 0; c < channels; ++c) {
      if (!(stddev[c] > 0.0f)) {
        throw std::invalid_argument("gather_batch on '" + name + "': stddev[" + std::to_string(c) +
                                    "] must be > 0, found " + std::to_string(stddev[c]));
      }
      scale[c] = 1.0f / (255.0f * stddev[c]);
      shift[c] = -mean[c] / stddev[c];
    }
    for (size_t b = 0; b < batch; ++b) {
      const int64_t index = indices[b];
      if (index < 0 || index >= n) {
        throw std::out_of_range("gather_batch on '" + name + "': batch position " +
                                std::to_string(b) + " has index " + std::to_string(index) +
                                ", expected 0.." + std::to_string(n - 1));
      }
      const uint8_t* source = pixels.data() + static_cast<size_t>(index) * per_image;
      float* destination = out_pixels.data() + b * per_image;
      if (augment_rng != nullptr && augment.enabled()) {
        write_augmented(source, destination, scale, shift, *augment_rng);
      } else {
        for (int64_t c = 0; c < channels; ++c) {
          const float s = scale[c];
          const float t = shift[c];
          for (size_t i = 0; i < per_channel; ++i) {
            destination[c * per_channel + i] =
                static_cast<float>(source[c * per_channel + i]) * s + t;
          }
        }
      }
      out_labels[b] = labels[static_cast<size_t>(index)];
    }
  }

 private:
  // One augmented sample: out(c, y, x) = src(c, y + dy, x' + dx) with dy, dx uniform in
  // [-pad, pad], x' = flip ? width-1-x : x, and raw pixel 0 outside the image. Draw order per
  // sample: dy, dx (only if pad > 0), then the flip bit (only if hflip).
  void write_augmented(const uint8_t* source, float* destination, const float* scale,
                       const float* shift, std::mt19937_64& rng) const {
    const int64_t pad = std::max<int64_t>(augment.pad, 0);
    const int64_t dy = pad > 0 ? static_cast<int64_t>(uniform_below(rng, 2 * pad + 1)) - pad : 0;
    const int64_t dx = pad > 0 ? static_cast<int64_t>(uniform_below(rng, 2 * pad + 1)) - pad : 0;
    const bool flip = augment.hflip && uniform_below(rng, 2) == 1;
    for (int64_t c = 0; c < channels; ++c) {
      const float s = scale[c];
      const float t = shift[c];  // the normalised value of raw pixel 0 (the padding)
      const uint8_t* plane = source + c * height * width;
      float* out = destination + c * height * width;
      for (int64_t y = 0; y < height; ++y) {
        float* row = out + y * width;
        const int64_t sy = y + dy;
        if (sy < 0 || sy >= height) {
          std::fill(row, row + width, t);
          continue;
        }
        const uint8_t* source_row = plane + sy * width;
        for (int64_t x = 0; x < width; ++x) {
          const int64_t sx = (flip ? width - 1 - x : x) + dx;
          row[x] = (sx < 0 || sx >= width) ? t : static_cast<float>(source_row[sx]) * s + t;
        }
      }
    }
  }
};

// Reads an IDX image file (rank 3: N x H x W, one channel) and an IDX label file (rank 1: N).
inline ImageDataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                                  int64_t num_classes = 10,
                                  size_t max_bytes = kDefaultIdxMaxBytes) {
  if (num_classes < 1 || num_classes > 256) {
    throw std::invalid_argument(
        "load_idx_pair: num_classes must be 1..256 for ubyte labels, "
        "found " +
        std::to_string(num_classes));
  }
  IdxArray images = read_idx(images_path, max_bytes);
  if (images.dims.size() != 3) {
    throw DataError("IDX file '" + images_path + "': rank at byte offset 3: expected 3 for " +
                    "images (N x H x W), found " + std::to_string(images.dims.size()));
  }
  IdxArray labels = read_idx(labels_path, max_bytes);
  if (labels.dims.size() != 1) {
    throw DataError("IDX file '" + labels_path + "': rank at byte offset 3: expected 1 for " +
                    "labels (N), found " + std::to_string(labels.dims.size()));
  }
  if (labels.dims[0] != images.dims[0]) {
    throw DataError("IDX files '" + images_path + "' and '" + labels_path +
                    "': record count (dimension 0 at byte offset 4): expected the same number "
                    "of labels as images (" +
                    std::to_string(images.dims[0]) + "), found " + std::to_string(labels.dims[0]) +
                    " labels");
  }
  constexpr int64_t kLabelHeaderBytes = 8;  // magic + one dimension
  ImageDataset dataset;
  dataset.n = images.dims[0];
  dataset.channels = 1;
  dataset.height = images.dims[1];
  dataset.width = images.dims[2];
  dataset.classes = num_classes;
  dataset.name = images_path;
  dataset.labels.resize(labels.data.size());
  for (size_t i = 0; i < labels.data.size(); ++i) {
    const int32_t label = labels.data[i];
    if (label >= num_classes) {
      throw DataError("IDX file '" + labels_path + "': label of record " + std::to_string(i) +
                      " at byte offset " + std::to_string(kLabelHeaderBytes + int64_t(i)) +
                      ": expected 0.." + std::to_string(num_classes - 1) + ", found " +
                      std::to_string(label));
    }
    dataset.labels[i] = label;
  }
  dataset.pixels = std::move(images.data);
  return dataset;
}

}  // namespace mercury::data
