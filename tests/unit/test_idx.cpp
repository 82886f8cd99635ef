// IDX reader, labelled image dataset and Fashion-MNIST discovery: round trips (plain and gzip,
// files and memory) and every kind of bad input, each error naming the file and the facts.
#include <doctest/doctest.h>
#include <zlib.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "file_test_support.hpp"
#include "mercury/data/dataset.hpp"
#include "mercury/data/fashion_mnist.hpp"
#include "mercury/data/idx.hpp"

namespace {

using mercury::data::DataError;
using mercury::data::read_idx;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::TempDir;
using mercury::testing::write_bytes;

std::vector<uint8_t> idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> bytes = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(uint8_t(d >> shift));
  }
  return bytes;
}

std::vector<uint8_t> idx_file(const std::vector<uint32_t>& dims,
                              const std::vector<uint8_t>& payload, uint8_t type = 0x08) {
  std::vector<uint8_t> bytes = idx_header(type, dims);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  return bytes;
}

std::vector<uint8_t> pattern(size_t size) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 3);
  return bytes;
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile out = gzopen(path.c_str(), "wb");
  REQUIRE(out != nullptr);
  REQUIRE(gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(out) == Z_OK);
}

std::vector<uint8_t> gzip_bytes(const TempDir& dir, const std::vector<uint8_t>& bytes) {
  const std::string path = dir.file("scratch.gz");
  write_gzip(path, bytes);
  return mercury::testing::read_bytes(path);
}

}  // namespace

TEST_CASE("IDX plain and gzip files round-trip dims and bytes") {
  TempDir dir;
  const std::vector<uint8_t> payload = pattern(3 * 4 * 5);
  const std::vector<uint8_t> file = idx_file({3, 4, 5}, payload);
  write_bytes(dir.file("plain.idx"), file);
  write_gzip(dir.file("packed.idx.gz"), file);
  for (const std::string name : {"plain.idx", "packed.idx.gz"}) {
    CAPTURE(name);
    const mercury::data::IdxArray array = read_idx(dir.file(name));
    CHECK(array.dims == std::vector<int64_t>{3, 4, 5});
    CHECK(array.data == payload);
  }
}

TEST_CASE("IDX compression is detected by magic bytes, not by file name") {
  TempDir dir;
  const std::vector<uint8_t> payload = pattern(10);
  write_bytes(dir.file("plain-but-named.gz"), idx_file({10}, payload));
  write_gzip(dir.file("gzip-but-named.idx"), idx_file({10}, payload));
  CHECK(read_idx(dir.file("plain-but-named.gz")).data == payload);
  CHECK(read_idx(dir.file("gzip-but-named.idx")).data == payload);
}

TEST_CASE("IDX gzip payload larger than one decode chunk round-trips") {
  TempDir dir;
  const std::vector<uint8_t> payload = pattern(300 * 1000);  // several growth steps
  write_gzip(dir.file("big.gz"), idx_file({300, 1000}, payload));
  CHECK(read_idx(dir.file("big.gz")).data == payload);
}

TEST_CASE("IDX in-memory reader accepts plain and gzip bytes") {
  TempDir dir;
  const std::vector<uint8_t> payload = pattern(2 * 3);
  const std::vector<uint8_t> plain = idx_file({2, 3}, payload);
  CHECK(mercury::data::read_idx_from_bytes(plain).data == payload);
  CHECK(mercury::data::read_idx_from_bytes(gzip_bytes(dir, plain)).data == payload);
}

TEST_CASE("IDX truncated plain payload names the file, the promise and what was found") {
  TempDir dir;
  std::vector<uint8_t> file = idx_file({3, 4, 5}, pattern(50));  // promises 60
  write_bytes(dir.file("short.idx"), file);
  const std::string message = error_message<DataError>([&] { read_idx(dir.file("short.idx")); });
  check_mentions(message, {"short.idx", "truncated", "byte offset 16", "60", "50"});
}

TEST_CASE("IDX truncated gzip stream is rejected") {
  TempDir dir;
  std::vector<uint8_t> compressed = gzip_bytes(dir, idx_file({400, 100}, pattern(40000)));
  compressed.resize(compressed.size() / 2);
  write_bytes(dir.file("cut.gz"), compressed);
  const std::string message = error_message<DataError>([&] { read_idx(dir.file("cut.gz")); });
  check_mentions(message, {"cut.gz", "truncated", "gzip"});

  // A gzip stream cut inside its 8-byte trailer still holds the whole payload: also rejected.
  std::vector<uint8_t> no_trailer = gzip_bytes(dir, idx_file({10}, pattern(10)));
  no_trailer.resize(no_trailer.size() - 4);
  write_bytes(dir.file("no-trailer.gz"), no_trailer);
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("no-trailer.gz")); }),
                 {"no-trailer.gz", "truncated"});
}

TEST_CASE("IDX header promising more than the file holds is truncated, less is extra bytes") {
  TempDir dir;
  // Complete gzip streams whose decompressed payload disagrees with the header.
  write_gzip(dir.file("more.gz"), idx_file({100}, pattern(90)));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("more.gz")); }),
                 {"more.gz", "payload truncated", "100", "90"});
  write_gzip(dir.file("less.gz"), idx_file({100}, pattern(101)));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("less.gz")); }),
                 {"less.gz", "extra bytes", "100"});
  write_bytes(dir.file("less.idx"), idx_file({100}, pattern(120)));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("less.idx")); }),
                 {"less.idx", "extra bytes", "100", "120"});
}

TEST_CASE("IDX wrong magic, unsupported type and bad rank are rejected with the found bytes") {
  TempDir dir;
  write_bytes(dir.file("zip.idx"), {'P', 'K', 3, 4, 0, 0, 0, 0});
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("zip.idx")); }),
                 {"zip.idx", "bad magic", "byte offset 0", "00 00", "0x50 0x4b"});

  write_bytes(dir.file("float.idx"), idx_file({2}, pattern(8), 0x0D));
  check_mentions(
      error_message<DataError>([&] { read_idx(dir.file("float.idx")); }),
      {"float.idx", "unsupported element type", "byte offset 2", "0x08", "0x0d", "float32"});

  write_bytes(dir.file("rank0.idx"), {0, 0, 8, 0});
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("rank0.idx")); }),
                 {"rank0.idx", "rank", "byte offset 3", "1..4", "found 0"});
  write_bytes(dir.file("rank9.idx"), {0, 0, 8, 9});
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("rank9.idx")); }),
                 {"rank9.idx", "found 9"});
}

TEST_CASE("IDX empty file, short header and zero dimension are rejected") {
  TempDir dir;
  write_bytes(dir.file("empty.idx"), {});
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("empty.idx")); }),
                 {"empty.idx", "truncated header", "found only 0 bytes"});
  write_bytes(dir.file("dims.idx"), {0, 0, 8, 2, 0, 0, 0, 5, 0, 0});
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("dims.idx")); }),
                 {"dims.idx", "truncated header", "8 bytes", "found only 6"});
  write_bytes(dir.file("zero.idx"), idx_file({4, 0}, {}));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("zero.idx")); }),
                 {"zero.idx", "dimension 1", "byte offset 8", "non-zero", "found 0"});
}

TEST_CASE("IDX huge dimensions are rejected before any allocation") {
  TempDir dir;
  // 0xFFFFFFFF x 0xFFFFFFFF fits in 64 bits but is far above the cap; a third such dimension
  // overflows 64 bits. Both files are 12-16 bytes long; allocation would abort the test.
  write_bytes(dir.file("huge.idx"), idx_header(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu}));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("huge.idx")); }),
                 {"huge.idx", "too large", "4294967295 x 4294967295", "18446744065119617025",
                  std::to_string(mercury::data::kDefaultIdxMaxBytes)});
  write_bytes(dir.file("overflow.idx"), idx_header(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 2}));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("overflow.idx")); }),
                 {"overflow.idx", "more than 2^64"});
  // The same for gzip input, where the real size is unknown until decompressed.
  write_gzip(dir.file("huge.gz"), idx_header(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu}));
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("huge.gz")); }),
                 {"huge.gz", "too large"});
}

TEST_CASE("IDX size cap is configurable") {
  TempDir dir;
  write_bytes(dir.file("cap.idx"), idx_file({100}, pattern(100)));
  CHECK(read_idx(dir.file("cap.idx"), 100).data.size() == 100);
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("cap.idx"), 99); }),
                 {"cap.idx", "at most 99 bytes", "found 100 = 100 bytes"});
}

TEST_CASE("IDX gzip stream followed by garbage is rejected") {
  TempDir dir;
  std::vector<uint8_t> bytes = gzip_bytes(dir, idx_file({10}, pattern(10)));
  bytes.insert(bytes.end(), {'j', 'u', 'n', 'k'});
  write_bytes(dir.file("junk.gz"), bytes);
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("junk.gz")); }),
                 {"junk.gz", "invalid gzip data", "not another gzip member"});
}

TEST_CASE("IDX missing file error names the path and the OS reason") {
  TempDir dir;
  check_mentions(error_message<DataError>([&] { read_idx(dir.file("absent.idx")); }),
                 {"absent.idx", "No such file"});
}

TEST_CASE("load_idx_pair pairs images with labels and gathers a normalised NCHW batch") {
  TempDir dir;
  // Three 2x2 images with pixel values 0, 51, 102, 255 in known places; labels 2, 0, 1.
  const std::vector<uint8_t> pixels = {0, 51, 102, 255, 255, 255, 255, 255, 0, 0, 0, 0};
  write_bytes(dir.file("images"), idx_file({3, 2, 2}, pixels));
  write_gzip(dir.file("labels.gz"), idx_file({3}, {2, 0, 1}));
  const mercury::data::ImageDataset data =
      mercury::data::load_idx_pair(dir.file("images"), dir.file("labels.gz"), 3);
  CHECK(data.n == 3);
  CHECK(data.channels == 1);
  CHECK(data.height == 2);
  CHECK(data.width == 2);
  CHECK(data.num_classes() == 3);
  CHECK(data.labels == std::vector<int32_t>{2, 0, 1});

  const std::array<int64_t, 2> indices = {2, 0};
  const std::array<float, 1> mean = {0.5f};
  const std::array<float, 1> stddev = {0.25f};
  std::array<float, 8> batch{};
  std::array<int32_t, 2> labels{};
  data.gather_batch(indices, mean, stddev, batch, labels);
  const std::array<float, 8> expected = {
      -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, (0.2f - 0.5f) / 0.25f, (0.4f - 0.5f) / 0.25f, 2.0f};
  for (size_t i = 0; i < expected.size(); ++i) CHECK(batch[i] == doctest::Approx(expected[i]));
  CHECK(labels == std::array<int32_t, 2>{1, 2});

  const std::array<int64_t, 1> bad_index = {3};
  std::array<float, 4> one_image{};
  std::array<int32_t, 1> one_label{};
  check_mentions(error_message<std::out_of_range>(
                     [&] { data.gather_batch(bad_index, mean, stddev, one_image, one_label); }),
                 {"batch position 0", "index 3", "0..2"});
  check_mentions(error_message<std::invalid_argument>(
                     [&] { data.gather_batch(indices, mean, stddev, one_image, labels); }),
                 {"8 floats", "found 4"});
}

TEST_CASE("load_idx_pair rejects mismatched counts and out-of-range labels") {
  TempDir dir;
  write_bytes(dir.file("images"), idx_file({3, 2, 2}, pattern(12)));
  write_bytes(dir.file("two-labels"), idx_file({2}, {0, 1}));
  check_mentions(error_message<DataError>([&] {
                   mercury::data::load_idx_pair(dir.file("images"), dir.file("two-labels"));
                 }),
                 {"images", "two-labels", "same number", "(3)", "found 2"});

  write_bytes(dir.file("bad-labels"), idx_file({3}, {0, 9, 10}));
  check_mentions(error_message<DataError>([&] {
                   mercury::data::load_idx_pair(dir.file("images"), dir.file("bad-labels"));
                 }),
                 {"bad-labels", "record 2", "byte offset 10", "0..9", "found 10"});

  write_bytes(dir.file("flat-images"), idx_file({12}, pattern(12)));
  check_mentions(error_message<DataError>([&] {
                   mercury::data::load_idx_pair(dir.file("flat-images"), dir.file("bad-labels"));
                 }),
                 {"flat-images", "expected 3", "found 1"});
}

TEST_CASE("find_fashion_mnist lists every path tried and how to install the data") {
  TempDir dir;
  const std::string message =
      error_message<DataError>([&] { mercury::data::find_fashion_mnist(dir.path().string()); });
  check_mentions(message,
                 {dir.file("train-images-idx3-ubyte.gz"), dir.file("t10k-labels-idx1-ubyte"),
                  dir.file("fashion-mnist/train-images-idx3-ubyte.gz"),
                  "apt-get install dataset-fashion-mnist"});
}

TEST_CASE("find_fashion_mnist honours MERCURY_DATA_DIR and uncompressed file names") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "fashion-mnist");
  const auto file = [&](const char* name) {
    return dir.file(std::string("fashion-mnist/") + name);
  };
  write_bytes(file("train-images-idx3-ubyte"), idx_file({2, 28, 28}, pattern(2 * 28 * 28)));
  write_bytes(file("train-labels-idx1-ubyte"), idx_file({2}, {9, 0}));
  write_gzip(file("t10k-images-idx3-ubyte.gz"), idx_file({1, 28, 28}, pattern(28 * 28)));
  write_gzip(file("t10k-labels-idx1-ubyte.gz"), idx_file({1}, {5}));

  const char* previous = std::getenv("MERCURY_DATA_DIR");
  const std::string saved = previous ? previous : "";
  ::setenv("MERCURY_DATA_DIR", dir.path().c_str(), 1);
  const mercury::data::FashionMnistFiles files = mercury::data::find_fashion_mnist("");
  const mercury::data::ImageDataset train =
      mercury::data::load_fashion_mnist("", mercury::data::Split::kTrain);
  const mercury::data::ImageDataset test =
      mercury::data::load_fashion_mnist("", mercury::data::Split::kTest);
  if (previous) {
    ::setenv("MERCURY_DATA_DIR", saved.c_str(), 1);
  } else {
    ::unsetenv("MERCURY_DATA_DIR");
  }

  CHECK(files.train_images == file("train-images-idx3-ubyte"));
  CHECK(files.test_labels == file("t10k-labels-idx1-ubyte.gz"));
  CHECK(train.n == 2);
  CHECK(train.labels == std::vector<int32_t>{9, 0});
  CHECK(test.n == 1);
  CHECK(test.labels == std::vector<int32_t>{5});
  CHECK(test.name == "fashion-mnist/test");
}

TEST_CASE("real Fashion-MNIST test split loads as 10000 balanced 28x28 images") {
  const std::string system_dir = mercury::data::kFashionMnistSystemDir;
  if (!std::filesystem::exists(system_dir)) {
    mercury::testing::missing_dependency("Fashion-MNIST in " + system_dir,
                                         "apt-get install dataset-fashion-mnist");
    return;
  }
  const mercury::data::ImageDataset test =
      mercury::data::load_fashion_mnist(system_dir, mercury::data::Split::kTest);
  CHECK(test.n == 10000);
  CHECK(test.channels == 1);
  CHECK(test.height == 28);
  CHECK(test.width == 28);
  CHECK(test.pixels.size() == size_t{10000 * 28 * 28});
  std::array<int, 10> per_class{};
  int out_of_range = 0;
  for (int32_t label : test.labels) {
    if (label < 0 || label >= 10) {
      ++out_of_range;
    } else {
      ++per_class[static_cast<size_t>(label)];
    }
  }
  CHECK(out_of_range == 0);
  CHECK(per_class ==
        std::array<int, 10>{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000});
  // The published normalisation constants match this data to about a percent.
  double sum = 0;
  for (uint8_t p : test.pixels) sum += p / 255.0;
  CHECK(sum / static_cast<double>(test.pixels.size()) ==
        doctest::Approx(mercury::data::kFashionMnistMean[0]).epsilon(0.02));
}
