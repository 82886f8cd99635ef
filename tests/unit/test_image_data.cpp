// Image datasets beyond IDX: CIFAR-10/100 binaries, SVHN .mat (libmatio), JPEG/PNG image folders
// (stb_image), training augmentation (random crop + flip) and the IID / Dirichlet / shards
// partitioners. Every format is written here in its exact layout and read back value by value;
// every kind of bad input must fail with a message naming the file and the facts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "file_test_support.hpp"
#include "mercury/data/cifar.hpp"
#include "mercury/data/dataset.hpp"
#include "mercury/data/image_folder.hpp"
#include "mercury/data/partition.hpp"
#include "mercury/data/svhn.hpp"

#ifdef MERCURY_HAVE_MATIO
#include <matio.h>
#ifdef MERCURY_HAVE_ZLIB
#include <zlib.h>
#endif
#endif
#ifdef MERCURY_HAVE_STB
#if __has_include(<stb_image_write.h>)
#include <stb_image_write.h>
#else
#include <stb/stb_image_write.h>
#endif
#endif

namespace {

namespace fs = std::filesystem;
using mercury::data::DataError;
using mercury::data::ImageDataset;
using mercury::data::Split;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::TempDir;
using mercury::testing::write_bytes;

// ---- CIFAR helpers -------------------------------------------------------------------------

uint8_t cifar_pixel(int64_t image, int64_t offset) {
  return static_cast<uint8_t>(image * 31 + offset * 7 + offset / 1024);
}

// Records for images first..first+labels.size()-1; `labels` holds 1 or 2 bytes per record.
std::vector<uint8_t> cifar_records(int64_t first, const std::vector<std::vector<uint8_t>>& labels) {
  std::vector<uint8_t> bytes;
  for (size_t r = 0; r < labels.size(); ++r) {
    bytes.insert(bytes.end(), labels[r].begin(), labels[r].end());
    for (int64_t k = 0; k < 3072; ++k) bytes.push_back(cifar_pixel(first + int64_t(r), k));
  }
  return bytes;
}

void check_cifar_pixels(const ImageDataset& data) {
  for (int64_t i = 0; i < data.n; ++i) {
    for (int64_t k = 0; k < 3072; k += 37) {
      REQUIRE(data.pixels[i * 3072 + k] == cifar_pixel(i, k));
    }
  }
}

// ---- augmentation helpers --------------------------------------------------------------------

ImageDataset ramp_images(int64_t n, int64_t channels, int64_t side) {
  ImageDataset d;
  d.n = n;
  d.channels = channels;
  d.height = d.width = side;
  d.classes = 2;
  d.name = "ramp";
  d.pixels.resize(static_cast<size_t>(n * channels * side * side));
  for (size_t i = 0; i < d.pixels.size(); ++i) d.pixels[i] = static_cast<uint8_t>(1 + i % 250);
  d.labels.assign(static_cast<size_t>(n), 1);
  return d;
}

// The plain sample shifted by (dy, dx), optionally mirrored: what the contract promises.
std::vector<float> expected_augmented(const ImageDataset& d, int64_t index, int64_t dy, int64_t dx,
                                      bool flip) {
  std::vector<float> plain(static_cast<size_t>(d.image_size()));
  int32_t label = 0;
  d.gather(std::span<const int64_t>(&index, 1), plain.data(), &label, nullptr);
  std::vector<float> out(plain.size());
  const int64_t h = d.height, w = d.width;
  for (int64_t c = 0; c < d.channels; ++c) {
    const float zero = d.mean.empty() ? 0.0f : -d.mean[c] / d.stddev[c];
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sy = y + dy, sx = (flip ? w - 1 - x : x) + dx;
        out[(c * h + y) * w + x] =
            (sy < 0 || sy >= h || sx < 0 || sx >= w) ? zero : plain[(c * h + sy) * w + sx];
      }
    }
  }
  return out;
}

// ---- partition helpers -----------------------------------------------------------------------

std::vector<int32_t> balanced_labels(int64_t classes, int64_t per_class) {
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < classes * per_class; ++i) {
    labels.push_back(static_cast<int32_t>((i * 7) % classes));  // interleaved, not sorted
  }
  return labels;
}

void check_covers_once(const mercury::data::Partition& p, int64_t n) {
  std::vector<int> seen(static_cast<size_t>(n), 0);
  for (const auto& device : p.devices) {
    REQUIRE(std::is_sorted(device.begin(), device.end()));
    for (int64_t index : device) {
      REQUIRE(index >= 0);
      REQUIRE(index < n);
      ++seen[index];
    }
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
}

// Mean over devices of the share of the device's largest class.
double mean_top_class_share(const std::vector<std::vector<int64_t>>& counts) {
  double sum = 0;
  for (const auto& row : counts) {
    int64_t total = 0, top = 0;
    for (int64_t v : row) total += v, top = std::max(top, v);
    sum += total ? double(top) / double(total) : 0.0;
  }
  return sum / double(counts.size());
}

}  // namespace

// ============================================================================ CIFAR

TEST_CASE("CIFAR-10 train batches load in order with labels and NCHW pixels as written") {
  TempDir dir;
  const fs::path folder = dir.path() / "cifar-10-batches-bin";  // the archive's folder name
  fs::create_directories(folder);
  int64_t first = 0;
  std::vector<int32_t> expected_labels;
  for (int b = 1; b <= 5; ++b) {
    std::vector<std::vector<uint8_t>> labels;
    for (int r = 0; r < b; ++r) {  // batch b holds b records
      labels.push_back({static_cast<uint8_t>((first + r) % 10)});
      expected_labels.push_back(static_cast<int32_t>((first + r) % 10));
    }
    write_bytes((folder / ("data_batch_" + std::to_string(b) + ".bin")).string(),
                cifar_records(first, labels));
    first += b;
  }
  write_bytes((folder / "test_batch.bin").string(), cifar_records(0, {{9}, {0}}));

  const ImageDataset train = mercury::data::load_cifar10(dir.path().string(), Split::kTrain);
  CHECK(train.n == 15);
  CHECK(train.sample_shape() == mercury::Shape{3, 32, 32});
  CHECK(train.num_classes() == 10);
  CHECK(train.labels == expected_labels);
  CHECK(train.mean.size() == 3);
  CHECK(train.stddev.size() == 3);
  check_cifar_pixels(train);

  const ImageDataset test = mercury::data::load_cifar10(folder.string(), Split::kTest);
  CHECK(test.n == 2);
  CHECK(test.labels == std::vector<int32_t>{9, 0});
  check_cifar_pixels(test);
}

TEST_CASE("CIFAR-100 gives fine labels by default and coarse labels on request") {
  TempDir dir;
  write_bytes(dir.file("train.bin"), cifar_records(0, {{19, 99}, {0, 0}, {7, 42}}));
  write_bytes(dir.file("test.bin"), cifar_records(0, {{3, 5}}));
  const ImageDataset fine = mercury::data::load_cifar100(dir.path().string(), Split::kTrain);
  CHECK(fine.num_classes() == 100);
  CHECK(fine.labels == std::vector<int32_t>{99, 0, 42});
  check_cifar_pixels(fine);
  const ImageDataset coarse =
      mercury::data::load_cifar100(dir.path().string(), Split::kTrain, true);
  CHECK(coarse.num_classes() == 20);
  CHECK(coarse.labels == std::vector<int32_t>{19, 0, 7});
  CHECK(coarse.pixels == fine.pixels);
  CHECK(mercury::data::load_cifar100(dir.path().string(), Split::kTest).labels ==
        std::vector<int32_t>{5});
}

TEST_CASE("CIFAR truncated file names the record and byte offset where it breaks") {
  TempDir dir;
  std::vector<uint8_t> bytes = cifar_records(0, {{1}, {2}, {3}});
  bytes.resize(bytes.size() - 100);
  write_bytes(dir.file("test_batch.bin"), bytes);
  const std::string message = error_message<DataError>(
      [&] { mercury::data::load_cifar10(dir.path().string(), Split::kTest); });
  check_mentions(message, {"test_batch.bin", "truncated at record 2", "byte offset 6146",
                           "multiple of 3073", std::to_string(bytes.size())});

  write_bytes(dir.file("test_batch.bin"), {});
  check_mentions(error_message<DataError>(
                     [&] { mercury::data::load_cifar10(dir.path().string(), Split::kTest); }),
                 {"test_batch.bin", "empty file"});
}

TEST_CASE("CIFAR labels out of range name the file, record, offset and value") {
  TempDir dir;
  write_bytes(dir.file("test_batch.bin"), cifar_records(0, {{1}, {10}}));
  check_mentions(
      error_message<DataError>(
          [&] { mercury::data::load_cifar10(dir.path().string(), Split::kTest); }),
      {"test_batch.bin", "label of record 1", "byte offset 3073", "expected 0..9", "found 10"});

  // CIFAR-100: a bad fine label is caught even when coarse labels are requested.
  write_bytes(dir.file("test.bin"), cifar_records(0, {{0, 0}, {1, 1}, {2, 100}}));
  check_mentions(
      error_message<DataError>(
          [&] { mercury::data::load_cifar100(dir.path().string(), Split::kTest, true); }),
      {"test.bin", "fine label of record 2", "byte offset 6149", "expected 0..99", "found 100"});
  write_bytes(dir.file("test.bin"), cifar_records(0, {{20, 0}}));
  check_mentions(error_message<DataError>(
                     [&] { mercury::data::load_cifar100(dir.path().string(), Split::kTest); }),
                 {"coarse label of record 0", "byte offset 0", "expected 0..19", "found 20"});
}

TEST_CASE("CIFAR missing files are listed by path") {
  TempDir dir;
  for (int b = 1; b <= 3; ++b) {
    write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), cifar_records(0, {{1}}));
  }
  const std::string message = error_message<DataError>(
      [&] { mercury::data::load_cifar10(dir.path().string(), Split::kTrain); });
  check_mentions(message, {"CIFAR-10 train", dir.file("data_batch_4.bin"),
                           dir.file("data_batch_5.bin"), "cifar-10-batches-bin"});
  CHECK(message.find(dir.file("data_batch_1.bin") + " (missing)") == std::string::npos);
  check_mentions(error_message<DataError>(
                     [&] { mercury::data::load_cifar100(dir.path().string(), Split::kTrain); }),
                 {"CIFAR-100 train", "train.bin (missing)"});
}

// ============================================================================ SVHN

#ifdef MERCURY_HAVE_MATIO
namespace {

struct MatVariable {
  std::string name;
  matio_classes class_type;
  matio_types data_type;
  std::vector<size_t> dims;
  const void* data;
};

void write_mat(const std::string& path, const std::vector<MatVariable>& variables, bool compress) {
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  for (const MatVariable& v : variables) {
    std::vector<size_t> dims = v.dims;
    matvar_t* var =
        Mat_VarCreate(v.name.c_str(), v.class_type, v.data_type, static_cast<int>(dims.size()),
                      dims.data(), const_cast<void*>(v.data), 0);
    REQUIRE(var != nullptr);
    REQUIRE(Mat_VarWrite(mat, var, compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE) == 0);
    Mat_VarFree(var);
  }
  REQUIRE(Mat_Close(mat) == 0);
}

// X(row, col, ch, n) in MATLAB's column-major order: a distinct value per coordinate.
uint8_t svhn_value(size_t row, size_t col, size_t ch, size_t n) {
  return static_cast<uint8_t>(row + 3 * col + 100 * ch + 17 * n);
}

std::vector<uint8_t> svhn_pixels(size_t n) {
  std::vector<uint8_t> x(32 * 32 * 3 * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t ch = 0; ch < 3; ++ch)
      for (size_t col = 0; col < 32; ++col)
        for (size_t row = 0; row < 32; ++row)
          x[row + 32 * col + 1024 * ch + 3072 * i] = svhn_value(row, col, ch, i);
  return x;
}

}  // namespace

TEST_CASE("SVHN .mat: column-major X becomes row-major NCHW and label 10 becomes digit 0") {
  TempDir dir;
  const size_t n = 4;
  const std::vector<uint8_t> x = svhn_pixels(n);
  const std::vector<double> y_double = {10, 1, 9, 10};
  const std::vector<uint8_t> y_byte = {10, 1, 9, 10};
  for (const bool compress : {false, true}) {
    for (const bool labels_double : {true, false}) {
      CAPTURE(compress);
      CAPTURE(labels_double);
      const std::string path = dir.file("train_32x32.mat");
      const std::vector<uint8_t> extra = {1, 2, 3, 4, 5};  // odd sizes exercise the padding
      write_mat(
          path,
          {{"extra", MAT_C_UINT8, MAT_T_UINT8, {5, 1}, extra.data()},
           {"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, n}, x.data()},
           labels_double ? MatVariable{"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {n, 1}, y_double.data()}
                         : MatVariable{"y", MAT_C_UINT8, MAT_T_UINT8, {n, 1}, y_byte.data()}},
          compress);
      const ImageDataset data = mercury::data::load_svhn(dir.path().string(), Split::kTrain);
      REQUIRE(data.n == int64_t(n));
      CHECK(data.sample_shape() == mercury::Shape{3, 32, 32});
      CHECK(data.num_classes() == 10);
      CHECK(data.labels == std::vector<int32_t>{0, 1, 9, 0});
      CHECK(data.name == "svhn/train");
      bool all_equal = true;
      for (size_t i = 0; i < n; ++i)
        for (size_t ch = 0; ch < 3; ++ch)
          for (size_t row = 0; row < 32; ++row)
            for (size_t col = 0; col < 32; ++col)
              all_equal = all_equal && data.pixels[((i * 3 + ch) * 32 + row) * 32 + col] ==
                                           svhn_value(row, col, ch, i);
      CHECK(all_equal);
    }
  }
}

TEST_CASE("SVHN .mat with missing variables, wrong class, dims or labels is rejected") {
  TempDir dir;
  const std::string path = dir.file("test_32x32.mat");
  const size_t n = 3;
  const std::vector<uint8_t> x = svhn_pixels(n);
  const std::vector<double> x_double(x.begin(), x.end());
  const std::vector<double> y = {1, 2, 3};
  const auto load = [&] { mercury::data::read_svhn_mat(path); };
  const MatVariable good_x{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, n}, x.data()};
  const MatVariable good_y{"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {n, 1}, y.data()};

  write_mat(path, {good_x}, false);
  check_mentions(error_message<DataError>(load), {path, "'y'", "no 'y'"});

  write_mat(path, {{"X", MAT_C_DOUBLE, MAT_T_DOUBLE, {32, 32, 3, n}, x_double.data()}, good_y},
            false);
  check_mentions(error_message<DataError>(load),
                 {path, "variable 'X'", "expected class uint8", "found double"});

  write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 1, n}, x.data()}, good_y}, false);
  check_mentions(error_message<DataError>(load),
                 {path, "'X' dimensions", "32 x 32 x 3 x N", "found 32 x 32 x 1 x 3"});

  write_mat(path, {good_x, {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, y.data()}}, false);
  check_mentions(error_message<DataError>(load),
                 {path, "'y' dimensions", "expected 3 x 1", "found 2 x 1"});

  const std::vector<float> y_single = {1, 2, 3};
  write_mat(path, {good_x, {"y", MAT_C_SINGLE, MAT_T_SINGLE, {n, 1}, y_single.data()}}, false);
  check_mentions(error_message<DataError>(load), {"'y'", "double or uint8", "found single"});

  for (const double bad : {0.0, 11.0, 2.5}) {
    const std::vector<double> y_bad = {1, bad, 3};
    write_mat(path, {good_x, {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {n, 1}, y_bad.data()}}, true);
    check_mentions(error_message<DataError>(load),
                   {path, "'y' element 1", "1..10", std::to_string(bad)});
  }

  for (const bool compress : {false, true}) {  // a file cut short inside X's data
    CAPTURE(compress);
    write_mat(path, {good_y, good_x}, compress);
    std::vector<uint8_t> bytes = mercury::testing::read_bytes(path);
    bytes.resize(bytes.size() - (compress ? 40 : 2000));
    write_bytes(path, bytes);
    check_mentions(error_message<DataError>(load), {path, "truncated", "byte offset"});
  }

  {  // every byte of a compressed X flipped in turn (one in 5): corrupt, never zero-filled data
    write_mat(path, {good_y, good_x}, true);
    const std::vector<uint8_t> good = mercury::testing::read_bytes(path);
    std::vector<std::size_t> payload;  // offsets inside compressed elements' zlib streams
    for (std::size_t off = 128; off + 8 <= good.size();) {
      const uint32_t type = uint32_t(good[off]) | uint32_t(good[off + 1]) << 8 |
                            uint32_t(good[off + 2]) << 16 | uint32_t(good[off + 3]) << 24;
      const uint32_t bytes = uint32_t(good[off + 4]) | uint32_t(good[off + 5]) << 8 |
                             uint32_t(good[off + 6]) << 16 | uint32_t(good[off + 7]) << 24;
      REQUIRE(type == 15);  // libmatio compresses every variable
      // The last deflate byte may end in padding bits zlib ignores: every other byte counts.
      for (std::size_t k = off + 8; k < off + 8 + bytes; k += 5)
        if (k != off + 8 + bytes - 5) payload.push_back(k);
      off += 8 + bytes;
    }
    REQUIRE(payload.size() > 20);
    int refused = 0;
    for (const std::size_t k : payload) {
      std::vector<uint8_t> bytes = good;
      bytes[k] ^= uint8_t(1u << (k % 8));
      write_bytes(path, bytes);
      try {
        mercury::data::read_svhn_mat(path);
      } catch (const DataError& e) {
        ++refused;
        CHECK(std::string(e.what()).find("element") != std::string::npos);
      }
    }
    CHECK(refused == int(payload.size()));
    MESSAGE("SVHN compressed-stream bit flips: ", payload.size(), " tried, ", refused, " refused");
  }

  // A small file whose X header declares 699,050 images (2 GB): refused before allocating.
  for (const bool compress : {false, true}) {
    CAPTURE(compress);
    write_mat(path, {good_x, good_y}, false);
    std::vector<uint8_t> bytes = mercury::testing::read_bytes(path);
    const std::vector<uint8_t> dims = {32, 0, 0, 0, 32, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0};
    const auto at = std::search(bytes.begin(), bytes.end(), dims.begin(), dims.end());
    REQUIRE(at != bytes.end());
    const uint32_t huge = 699050;
    for (int b = 0; b < 4; ++b) at[12 + b] = uint8_t(huge >> (8 * b));
#ifdef MERCURY_HAVE_ZLIB
    if (compress) {                   // the same header inside a miCOMPRESSED element
      const std::size_t first = 128;  // X's element
      const uint32_t n = uint32_t(bytes[first + 4]) | uint32_t(bytes[first + 5]) << 8 |
                         uint32_t(bytes[first + 6]) << 16 | uint32_t(bytes[first + 7]) << 24;
      const std::vector<uint8_t> element(bytes.begin() + first, bytes.begin() + first + 8 + n);
      uLongf packed_size = compressBound(uLong(element.size()));
      std::vector<uint8_t> packed(packed_size);
      REQUIRE(compress2(packed.data(), &packed_size, element.data(), uLong(element.size()), 6) ==
              Z_OK);
      packed.resize(packed_size);
      std::vector<uint8_t> rebuilt(bytes.begin(), bytes.begin() + first);
      const uint32_t tag[2] = {15, uint32_t(packed.size())};
      for (uint32_t v : tag)
        for (int b = 0; b < 4; ++b) rebuilt.push_back(uint8_t(v >> (8 * b)));
      rebuilt.insert(rebuilt.end(), packed.begin(), packed.end());
      rebuilt.insert(rebuilt.end(), bytes.begin() + first + 8 + n, bytes.end());
      bytes = rebuilt;
    }
#else
    if (compress) continue;
#endif
    write_bytes(path, bytes);
    check_mentions(error_message<DataError>(load),
                   {path, "variable 'X' dimensions 32 x 32 x 3 x 699050", "found 699050"});
  }

  write_bytes(path, std::vector<uint8_t>(300, 0x5A));  // not a .mat file
  check_mentions(error_message<DataError>(load), {path, "MATLAB"});

  check_mentions(error_message<DataError>(
                     [&] { mercury::data::load_svhn(dir.file("nowhere"), Split::kTrain); }),
                 {"train_32x32.mat", "svhn/train_32x32.mat"});
}
#else
TEST_CASE("SVHN without libmatio says .mat support was not compiled in") {
  check_mentions(error_message<DataError>([] { mercury::data::read_svhn_mat("x.mat"); }),
                 {"x.mat", "not compiled in", "MERCURY_WITH_MATIO"});
}
#endif

// ============================================================================ image folders

TEST_CASE("bilinear resize uses half-pixel centres and writes planar CHW") {
  const uint8_t row[] = {0, 200, 100, 0};  // 1 x 2, two channels, interleaved
  uint8_t out[2 * 4];
  mercury::data::resize_bilinear(row, 1, 2, 2, out, 1, 4);
  CHECK(std::vector<uint8_t>(out, out + 4) == std::vector<uint8_t>{0, 25, 75, 100});
  CHECK(std::vector<uint8_t>(out + 4, out + 8) == std::vector<uint8_t>{200, 150, 50, 0});
  uint8_t same[2 * 2];
  mercury::data::resize_bilinear(row, 1, 2, 2, same, 1, 2);  // identity, de-interleaved
  CHECK(std::vector<uint8_t>(same, same + 4) == std::vector<uint8_t>{0, 100, 200, 0});
}

TEST_CASE("image folder: sorted class names, per-class 80/20 split deterministic by seed") {
  TempDir dir;
  const fs::path root = dir.path() / "AID";
  for (const std::string name : {"River", "Airport", "Beach"}) {
    fs::create_directories(root / name);
    for (int i = 0; i < 10; ++i) {
      write_bytes((root / name / ("img" + std::to_string(i) + (i % 2 ? ".JPG" : ".png"))).string(),
                  {1});
    }
    write_bytes((root / name / "notes.txt").string(), {1});
  }
  fs::create_directories(root / ".hidden");
  mercury::data::ImageFolderOptions options;
  options.seed = 7;
  const auto listing = mercury::data::list_image_folder(root.string(), options);
  CHECK(listing.class_names == std::vector<std::string>{"Airport", "Beach", "River"});
  CHECK(listing.images.size() == 30);
  CHECK(listing.count(Split::kTrain) == 24);
  CHECK(listing.count(Split::kTest) == 6);
  for (int32_t label = 0; label < 3; ++label) {
    int64_t train = 0;
    for (const auto& e : listing.images) {
      if (e.label == label) {
        CHECK(fs::path(e.path).parent_path().filename() == listing.class_names[label]);
        train += e.split == Split::kTrain;
      }
    }
    CHECK(train == 8);
  }
  const auto again = mercury::data::list_image_folder(root.string(), options);
  std::vector<std::string> a, b;
  for (const auto& e : listing.images) a.push_back(e.path + (e.split == Split::kTrain ? "T" : "t"));
  for (const auto& e : again.images) b.push_back(e.path + (e.split == Split::kTrain ? "T" : "t"));
  CHECK(a == b);
  options.seed = 8;
  std::vector<std::string> c;
  for (const auto& e : mercury::data::list_image_folder(root.string(), options).images) {
    c.push_back(e.path + (e.split == Split::kTrain ? "T" : "t"));
  }
  CHECK(a != c);
}

TEST_CASE("image folder errors: no class folders, empty class folder, missing root") {
  TempDir dir;
  check_mentions(
      error_message<DataError>([&] { mercury::data::list_image_folder(dir.path().string()); }),
      {dir.path().string(), "no class folders"});
  fs::create_directories(dir.path() / "cls" / "sub");
  write_bytes(dir.file("cls/readme.txt"), {1});
  check_mentions(
      error_message<DataError>([&] { mercury::data::list_image_folder(dir.path().string()); }),
      {"empty class folder", "cls", ".jpg", "1 other files"});
  check_mentions(
      error_message<DataError>([&] { mercury::data::list_image_folder(dir.file("absent")); }),
      {"absent", "no such path"});
}

#ifdef MERCURY_HAVE_STB
TEST_CASE("image folder decodes PNG and JPEG to RGB at the configured size") {
  TempDir dir;
  const fs::path root = dir.path() / "data";
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  // a/rgb.png: 4 x 3 RGB with distinct values; a/grey.png: 1 channel; b/flat.jpg: uniform.
  const int w = 4, h = 3;
  std::vector<uint8_t> rgb(static_cast<size_t>(w * h * 3));
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 9 + 5);
  REQUIRE(stbi_write_png((root / "a" / "rgb.png").string().c_str(), w, h, 3, rgb.data(), w * 3));
  std::vector<uint8_t> grey(static_cast<size_t>(w * h));
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 20);
  REQUIRE(stbi_write_png((root / "a" / "grey.png").string().c_str(), w, h, 1, grey.data(), w));
  std::vector<uint8_t> flat(static_cast<size_t>(w * h * 3));
  for (size_t i = 0; i < flat.size(); i += 3) flat[i] = 200, flat[i + 1] = 100, flat[i + 2] = 50;
  REQUIRE(stbi_write_jpg((root / "b" / "flat.jpg").string().c_str(), w, h, 3, flat.data(), 95));

  mercury::data::ImageFolderOptions options;
  options.height = h;
  options.width = w;
  options.train_fraction = 1.0;
  const ImageDataset data = mercury::data::load_image_folder(root.string(), Split::kTrain, options);
  REQUIRE(data.n == 3);
  CHECK(data.sample_shape() == mercury::Shape{3, h, w});
  CHECK(data.num_classes() == 2);
  CHECK(data.mean.size() == 3);
  const auto listing = mercury::data::list_image_folder(root.string(), options);
  for (int64_t i = 0; i < data.n; ++i) {
    const std::string file = fs::path(listing.images[i].path).filename().string();
    CAPTURE(file);
    CHECK(data.labels[i] == listing.images[i].label);
    const uint8_t* p = data.pixels.data() + i * 3 * h * w;
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < w * h; ++k) {
        const int got = p[c * w * h + k];
        if (file == "rgb.png") {
          REQUIRE(got == rgb[k * 3 + c]);
        } else if (file == "grey.png") {
          REQUIRE(got == grey[k]);
        } else {
          REQUIRE(std::abs(got - int(flat[c])) <= 3);  // JPEG is lossy
        }
      }
    }
  }

  // Resizing a 4 x 3 image to 8 x 6 matches resize_bilinear on the same pixels.
  options.height = 6;
  options.width = 8;
  const ImageDataset big = mercury::data::load_image_folder(root.string(), Split::kTrain, options);
  std::vector<uint8_t> expected(3 * 6 * 8);
  mercury::data::resize_bilinear(rgb.data(), h, w, 3, expected.data(), 6, 8);
  for (int64_t i = 0; i < big.n; ++i) {
    if (fs::path(listing.images[i].path).filename() == "rgb.png") {
      CHECK(std::equal(expected.begin(), expected.end(), big.pixels.begin() + i * 3 * 6 * 8));
    }
  }
}

TEST_CASE("image folder names an undecodable image and stb's reason") {
  TempDir dir;
  fs::create_directories(dir.path() / "cls");
  write_bytes(dir.file("cls/broken.jpg"), {0xFF, 0xD8, 0xFF, 0x00, 0x12, 0x34, 0x56});
  mercury::data::ImageFolderOptions options;
  options.train_fraction = 1.0;
  const auto message_for = [&](const std::vector<uint8_t>& bytes) {
    write_bytes(dir.file("cls/broken.jpg"), bytes);
    return error_message<DataError>(
        [&] { mercury::data::load_image_folder(dir.path().string(), Split::kTrain, options); });
  };
  // A truncated JPEG is named as one (stb alone says "bad png sig": its last guess).
  const std::string message = message_for({0xFF, 0xD8, 0xFF, 0x00, 0x12, 0x34, 0x56});
  check_mentions(
      message, {"broken.jpg", "cannot decode the JPEG image (truncated or corrupt", "stb_image: "});
  CHECK(message.find("stb_image: )") == std::string::npos);  // a non-empty reason
  check_mentions(message_for({0x89, 'P', 'N', 'G', 0x0D, 0x0A}), {"cannot decode the PNG image"});
  check_mentions(message_for({'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0}),
                 {"expected a JPEG or PNG image, found a GIF image"});
  check_mentions(message_for({'B', 'M', 0, 0, 0, 0}), {"found a BMP image"});
  check_mentions(message_for({0x00, 0x01, 0xFE, 0x7F, 0x55}),
                 {"found data starting with bytes 00 01 fe 7f"});
}
#else
TEST_CASE("image folder without stb says decoding was not compiled in") {
  TempDir dir;
  fs::create_directories(dir.path() / "cls");
  write_bytes(dir.file("cls/a.png"), {1});
  check_mentions(error_message<DataError>(
                     [&] { mercury::data::load_image_folder(dir.path().string(), Split::kTrain); }),
                 {"not compiled in", "MERCURY_WITH_STB"});
}
#endif

// ============================================================================ augmentation

TEST_CASE("augmentation is skipped without an RNG and deterministic with one") {
  ImageDataset d = ramp_images(6, 3, 8);
  d.mean = {0.1f, 0.2f, 0.3f};
  d.stddev = {0.5f, 0.25f, 2.0f};
  const std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5};
  std::vector<float> plain(6 * 192), with_aug_no_rng(6 * 192), a(6 * 192), b(6 * 192);
  std::vector<int32_t> y(6);
  d.gather(idx, plain.data(), y.data(), nullptr);
  d.augment = {4, true};
  d.gather(idx, with_aug_no_rng.data(), y.data(), nullptr);
  CHECK(plain == with_aug_no_rng);
  std::mt19937_64 r1(42), r2(42);
  d.gather(idx, a.data(), y.data(), &r1);
  d.gather(idx, b.data(), y.data(), &r2);
  CHECK(a == b);
  CHECK(a != plain);
  CHECK(r1() == r2());
  std::mt19937_64 untouched(42);
  ImageDataset off = ramp_images(6, 3, 8);
  off.gather(idx, b.data(), y.data(), &untouched);  // augmentation disabled: RNG unused
  CHECK(untouched() == std::mt19937_64(42)());
}

TEST_CASE("random crop shifts pixels with zero padding and hflip mirrors them, as drawn") {
  ImageDataset d = ramp_images(40, 2, 6);
  d.mean = {0.5f, 0.25f};
  d.stddev = {0.5f, 0.5f};
  d.augment = {2, true};
  std::vector<int64_t> idx(40);
  for (int64_t i = 0; i < 40; ++i) idx[i] = i;
  std::vector<float> out(40 * 72);
  std::vector<int32_t> y(40);
  std::mt19937_64 rng(3);
  std::mt19937_64 replay = rng;  // the contract's draw order: dy, dx, flip per sample
  d.gather(idx, out.data(), y.data(), &rng);
  std::set<std::tuple<int64_t, int64_t, bool>> seen;
  for (int64_t i = 0; i < 40; ++i) {
    const int64_t dy = int64_t(mercury::data::uniform_below(replay, 5)) - 2;
    const int64_t dx = int64_t(mercury::data::uniform_below(replay, 5)) - 2;
    const bool flip = mercury::data::uniform_below(replay, 2) == 1;
    seen.insert({dy, dx, flip});
    const std::vector<float> expected = expected_augmented(d, i, dy, dx, flip);
    CHECK(std::equal(expected.begin(), expected.end(), out.begin() + i * 72));
  }
  CHECK(seen.size() > 15);  // the offsets and flips actually vary

  // A hand-checked case: 1 channel 3 x 3, shift right-down by one, no flip.
  ImageDataset tiny = ramp_images(1, 1, 3);  // pixels 1..9
  const std::vector<float> shifted = expected_augmented(tiny, 0, -1, -1, false);
  const float u = 1.0f / 255.0f;
  CHECK(shifted == std::vector<float>{0, 0, 0, 0, 1 * u, 2 * u, 0, 4 * u, 5 * u});
  const std::vector<float> mirrored = expected_augmented(tiny, 0, 0, 0, true);
  CHECK(mirrored[0] == doctest::Approx(3 * u));
  CHECK(mirrored[2] == doctest::Approx(1 * u));
}

// ============================================================================ partitions

TEST_CASE("IID partition covers every index once, balanced, deterministic by seed") {
  const auto p = mercury::data::partition_iid(103, 4, 1);
  check_covers_once(p, 103);
  for (const auto& device : p.devices) CHECK((device.size() == 25 || device.size() == 26));
  CHECK(mercury::data::partition_iid(103, 4, 1).devices == p.devices);
  CHECK(mercury::data::partition_iid(103, 4, 2).devices != p.devices);
  CHECK_THROWS_AS(mercury::data::partition_iid(3, 4, 1), std::invalid_argument);
  CHECK_THROWS_AS(mercury::data::partition_iid(3, 0, 1), std::invalid_argument);
}

TEST_CASE("Dirichlet partition: small alpha skews classes, respects the minimum, covers all") {
  const std::vector<int32_t> labels = balanced_labels(10, 120);
  mercury::data::PartitionConfig config;
  config.scheme = mercury::data::PartitionScheme::kDirichlet;
  config.devices = 12;
  config.seed = 5;
  config.min_samples = 20;

  config.alpha = 0.1;
  const auto skewed = mercury::data::partition_dirichlet(labels, 10, config);
  check_covers_once(skewed, 1200);
  for (const auto& device : skewed.devices) CHECK(device.size() >= 20);
  CHECK(mercury::data::partition_dirichlet(labels, 10, config).devices == skewed.devices);
  const auto skewed_counts = mercury::data::class_histogram(skewed, labels, 10);

  config.alpha = 100;
  const auto even = mercury::data::partition_dirichlet(labels, 10, config);
  check_covers_once(even, 1200);
  const auto even_counts = mercury::data::class_histogram(even, labels, 10);
  const auto iid_counts =
      mercury::data::class_histogram(mercury::data::partition_iid(1200, 12, 5), labels, 10);
  MESSAGE("alpha 0.1:\n" << mercury::data::format_class_histogram(skewed_counts));
  CHECK(mean_top_class_share(skewed_counts) > 0.5);
  CHECK(mean_top_class_share(even_counts) < 0.25);
  CHECK(mean_top_class_share(iid_counts) < 0.25);

  // Impossible to meet by chance in one draw: the rebalance guarantees the minimum.
  config.alpha = 0.05;
  config.min_samples = 100;  // = n / devices
  config.max_attempts = 1;
  const auto forced = mercury::data::partition_dirichlet(labels, 10, config);
  CHECK(forced.rebalanced);
  check_covers_once(forced, 1200);
  for (const auto& device : forced.devices) CHECK(device.size() == 100);

  config.min_samples = 101;
  CHECK_THROWS_AS(mercury::data::partition_dirichlet(labels, 10, config), std::invalid_argument);
  config.min_samples = 1;
  config.alpha = 0;
  CHECK_THROWS_AS(mercury::data::partition_dirichlet(labels, 10, config), std::invalid_argument);
  config.alpha = 1;
  std::vector<int32_t> bad = labels;
  bad[17] = 10;
  check_mentions(error_message<std::invalid_argument>(
                     [&] { mercury::data::partition_dirichlet(bad, 10, config); }),
                 {"sample 17", "expected 0..9", "found 10"});
}

TEST_CASE("shards-by-class partition gives each device at most s classes when shards align") {
  const std::vector<int32_t> labels = balanced_labels(10, 60);
  const auto p = mercury::data::partition_shards(labels, 10, 5, 2, 9);  // 10 shards of 60
  check_covers_once(p, 600);
  const auto counts = mercury::data::class_histogram(p, labels, 10);
  for (const auto& row : counts) {
    CHECK(std::count_if(row.begin(), row.end(), [](int64_t v) { return v > 0; }) <= 2);
  }
  CHECK(mercury::data::partition_shards(labels, 10, 5, 2, 9).devices == p.devices);
  CHECK(mercury::data::partition_shards(labels, 10, 5, 2, 10).devices != p.devices);

  // Unaligned shards straddle class boundaries: still at most 2s classes per device.
  const std::vector<int32_t> odd = balanced_labels(7, 53);
  const auto q = mercury::data::partition_shards(odd, 7, 4, 2, 1);
  check_covers_once(q, 371);
  for (const auto& row : mercury::data::class_histogram(q, odd, 7)) {
    CHECK(std::count_if(row.begin(), row.end(), [](int64_t v) { return v > 0; }) <= 4);
  }
}

TEST_CASE("class histogram table lists each device, totals and a total row") {
  ImageDataset d = ramp_images(12, 1, 2);
  d.classes = 3;
  for (int64_t i = 0; i < 12; ++i) d.labels[i] = static_cast<int32_t>(i % 3);
  mercury::data::PartitionConfig config;
  config.devices = 3;
  const auto p = mercury::data::partition(d, config);
  const auto counts = mercury::data::class_histogram(p, d);
  int64_t total = 0;
  for (const auto& row : counts)
    for (int64_t v : row) total += v;
  CHECK(total == 12);
  const std::string table = mercury::data::format_class_histogram(counts);
  CHECK(std::count(table.begin(), table.end(), '\n') == 5);  // header + 3 devices + all
  check_mentions(table, {"device", "total", "c0", "c2", "all", "12"});
  CHECK(mercury::data::parse_partition_scheme("dirichlet") ==
        mercury::data::PartitionScheme::kDirichlet);
  CHECK_THROWS_AS(mercury::data::parse_partition_scheme("zipf"), std::invalid_argument);
}
