// Safetensors checkpoints, CRC32C and crash-safe writes: round trips, the exact byte layout, and
// every kind of bad input, each error naming the file, the field and expected/found values.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "file_test_support.hpp"
#include "mercury/io/atomic_file.hpp"
#include "mercury/io/crc32c.hpp"
#include "mercury/io/safetensors.hpp"

namespace {

using mercury::io::CheckpointError;
using mercury::io::SafetensorsFile;
using mercury::io::TensorRef;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::read_bytes;
using mercury::testing::TempDir;
using mercury::testing::write_bytes;

template <typename T>
std::vector<T> values_of(const SafetensorsFile& file, const std::string& name) {
  const std::span<const uint8_t> bytes = file.bytes(file.at(name));
  std::vector<T> values(bytes.size() / sizeof(T));
  if (!bytes.empty()) std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// Builds a safetensors image from a raw header text (padded here) and data bytes.
std::vector<uint8_t> raw_file(std::string header, const std::vector<uint8_t>& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<uint8_t> bytes(8);
  for (int b = 0; b < 8; ++b) bytes[b] = uint8_t(uint64_t(header.size()) >> (8 * b));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

std::string parse_error(const std::string& header, const std::vector<uint8_t>& data) {
  return error_message<CheckpointError>(
      [&] { SafetensorsFile::from_bytes(raw_file(header, data), "bad.safetensors"); });
}

struct SampleTensors {
  std::vector<float> weights = {1.5f, -2.0f, 3.25f, 0.0f, -0.5f, 1e-3f};
  std::vector<double> moments = {1e-300, -7.0, 3.0, 42.0};
  int32_t step = 1234;
  std::vector<int64_t> empty;
  std::vector<uint8_t> rng_state = {0, 1, 254, 255, 7};

  std::vector<TensorRef> refs() const {
    return {{"layer.weight", "F32", {2, 3}, weights.data()},
            {"adam.m", "F64", {4}, moments.data()},
            {"step", "I32", {}, &step},
            {"nothing", "I64", {2, 0, 3}, empty.data()},
            {"rng", "U8", {5}, rng_state.data()}};
  }
};

}  // namespace

TEST_CASE("crc32c matches the standard check value and chains across pieces") {
  const char* text = "123456789";
  CHECK(mercury::io::crc32c(text, 9) == 0xE3069283u);
  CHECK(mercury::io::crc32c(nullptr, 0) == 0u);
  std::vector<uint8_t> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 31 + 7);
  const uint32_t whole = mercury::io::crc32c(bytes.data(), bytes.size());
  for (size_t split : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    CAPTURE(split);
    const uint32_t first = mercury::io::crc32c(bytes.data(), split);
    CHECK(mercury::io::crc32c(bytes.data() + split, bytes.size() - split, first) == whole);
  }
  // The CRC instruction path (when this CPU has one) equals the portable tables at every length
  // and alignment, and chains like it.
  std::vector<unsigned char> buf(300);
  for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = static_cast<unsigned char>(k * 131 + 7);
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t n = 0; n + offset <= buf.size(); n += 13) {
      CHECK(mercury::io::crc32c(buf.data() + offset, n) ==
            mercury::io::crc32c_portable(buf.data() + offset, n));
    }
  }
  CHECK(mercury::io::crc32c(buf.data() + 100, 200, mercury::io::crc32c(buf.data(), 100)) ==
        mercury::io::crc32c_portable(buf.data(), 300));
  MESSAGE("crc32c uses the CPU's CRC instruction: " << mercury::io::crc32c_hardware());
}

TEST_CASE("safetensors round-trips several dtypes, a scalar and an empty tensor") {
  TempDir dir;
  const SampleTensors sample;
  const std::string path = dir.file("ckpt.safetensors");
  mercury::io::write_safetensors(path, sample.refs(), {{"step", "1234"}, {"note", "héllo"}});

  const SafetensorsFile file = SafetensorsFile::load(path);
  CHECK(file.metadata().at("step") == "1234");
  CHECK(file.metadata().at("note") == "héllo");
  CHECK(file.metadata().count("mercury.crc32c.all") == 1);
  REQUIRE(file.entries().size() == 5);
  CHECK(file.entries()[0].name == "layer.weight");  // data order = write order
  CHECK(file.entries()[4].name == "rng");

  CHECK(file.at("layer.weight").shape == std::vector<int64_t>{2, 3});
  CHECK(file.at("layer.weight").dtype == "F32");
  CHECK(values_of<float>(file, "layer.weight") == sample.weights);
  CHECK(values_of<double>(file, "adam.m") == sample.moments);
  CHECK(file.at("step").shape.empty());
  CHECK(file.at("step").element_count() == 1);
  CHECK(values_of<int32_t>(file, "step") == std::vector<int32_t>{1234});
  CHECK(file.at("nothing").byte_size() == 0);
  CHECK(file.at("nothing").shape == std::vector<int64_t>{2, 0, 3});
  CHECK(values_of<uint8_t>(file, "rng") == sample.rng_state);
  CHECK(file.find("absent") == nullptr);
  check_mentions(error_message<CheckpointError>([&] { file.at("absent"); }),
                 {"ckpt.safetensors", "'absent'", "no such entry"});

  const SafetensorsFile in_memory = SafetensorsFile::from_bytes(read_bytes(path));
  CHECK(values_of<double>(in_memory, "adam.m") == sample.moments);
}

TEST_CASE("safetensors header can be read and checked before the data") {
  TempDir dir;
  const SampleTensors sample;
  const std::string path = dir.file("ckpt.safetensors");
  mercury::io::write_safetensors(path, sample.refs(), {});
  SafetensorsFile file = SafetensorsFile::load_header(path);
  CHECK_FALSE(file.has_data());
  CHECK(file.at("adam.m").byte_size() == 32);
  CHECK_THROWS_AS(file.bytes(file.at("adam.m")), std::logic_error);
  file.load_data();
  CHECK(file.has_data());
  CHECK(values_of<float>(file, "layer.weight") == sample.weights);
}

TEST_CASE("safetensors layout is byte-exact: length field, padded JSON header, raw LE data") {
  TempDir dir;
  const std::vector<float> values = {1.0f, -2.0f};
  const std::string path = dir.file("tiny.safetensors");
  mercury::io::write_safetensors(path, {{"w", "F32", {2}, values.data()}}, {{"k", "v"}});

  const std::vector<uint8_t> data = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
  const auto json_with = [](const std::string& crc) {
    return "{\"__metadata__\":{\"k\":\"v\",\"mercury.crc32c.all\":\"" + crc +
           "\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  };
  const size_t padded = (json_with("00000000").size() + 7) / 8 * 8;
  // The CRC covers the length field, the header with the CRC as 00000000 (padded), the data.
  const std::vector<uint8_t> zeroed = raw_file(json_with("00000000"), data);
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", mercury::io::crc32c(zeroed.data(), zeroed.size()));
  const std::string json = json_with(crc);

  const std::vector<uint8_t> bytes = read_bytes(path);
  REQUIRE(bytes.size() == 8 + padded + 8);
  uint64_t header_length = 0;
  for (int b = 7; b >= 0; --b) header_length = header_length << 8 | bytes[size_t(b)];
  CHECK(header_length == padded);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + long(padded));
  CHECK(header.substr(0, json.size()) == json);
  CHECK(header.substr(json.size()) == std::string(padded - json.size(), ' '));
  CHECK(std::vector<uint8_t>(bytes.end() - 8, bytes.end()) == data);
}

TEST_CASE("safetensors writer rejects bad tensors before creating any file") {
  TempDir dir;
  const float value = 1.0f;
  const std::string path = dir.file("bad.safetensors");
  const auto write = [&](std::vector<TensorRef> tensors, std::map<std::string, std::string> meta) {
    return error_message<CheckpointError>(
        [&] { mercury::io::write_safetensors(path, tensors, meta); });
  };
  check_mentions(write({{"w", "F16", {1}, &value}}, {}),
                 {"bad.safetensors", "'w'", "dtype", "F32, F64, I32, I64, U8", "\"F16\""});
  check_mentions(write({{"w", "F32", {1}, &value}, {"w", "F32", {1}, &value}}, {}),
                 {"'w'", "duplicate", "#0"});
  check_mentions(write({{"w", "F32", {3}, nullptr}}, {}), {"'w'", "12 bytes", "null"});
  check_mentions(write({{"w", "F32", {-1}, &value}}, {}), {"'w'", "shape", "[-1]"});
  check_mentions(write({{"w", "F32", {1}, &value}}, {{"mercury.crc32c", "0"}}), {"reserved"});
  check_mentions(write({{"w", "F32", {1}, &value}}, {{"mercury.crc32c.all", "0"}}), {"reserved"});
  CHECK(dir.listing().empty());
}

TEST_CASE("safetensors too-short file and lying header length are rejected") {
  TempDir dir;
  write_bytes(dir.file("five.safetensors"), {1, 2, 3, 4, 5});
  check_mentions(
      error_message<CheckpointError>([&] { SafetensorsFile::load(dir.file("five.safetensors")); }),
      {"five.safetensors", "truncated", "at least 8", "5-byte file"});

  std::vector<uint8_t> bytes = raw_file("{}", {});
  bytes[0] = 200;  // claims 200 header bytes, 8 follow
  write_bytes(dir.file("long.safetensors"), bytes);
  check_mentions(
      error_message<CheckpointError>([&] { SafetensorsFile::load(dir.file("long.safetensors")); }),
      {"long.safetensors", "header length", "at most 8", "found 200"});

  bytes[0] = 0;
  bytes[4] = 1;  // 2^32: over the 100 MB cap, rejected without allocating it
  check_mentions(
      error_message<CheckpointError>([&] { SafetensorsFile::from_bytes(bytes, "cap.st"); }),
      {"cap.st", "100 MB cap", "found 4294967296"});
}

TEST_CASE("safetensors truncated data section is rejected") {
  TempDir dir;
  const SampleTensors sample;
  const std::string path = dir.file("cut.safetensors");
  mercury::io::write_safetensors(path, sample.refs(), {});
  std::vector<uint8_t> bytes = read_bytes(path);
  bytes.resize(bytes.size() - 3);
  write_bytes(path, bytes);
  check_mentions(
      error_message<CheckpointError>([&] { SafetensorsFile::load(path); }),
      {"cut.safetensors", "tensor 'rng'", "out of range", "expected end <= 62", "found 65"});
}

TEST_CASE("safetensors malformed headers are rejected with the field at fault") {
  const std::vector<uint8_t> four(4);
  check_mentions(parse_error("{\"w\": {\"dtype\": ", four),
                 {"bad.safetensors", "header", "valid JSON", "syntax error"});
  check_mentions(parse_error("[1, 2]", {}), {"JSON object starting with '{'", "0x5b"});
  check_mentions(
      parse_error(R"({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}})", four),
      {"tensor 'w'", "dtype", "F32, F64, I32, I64, U8", "\"BF16\""});
  check_mentions(
      parse_error(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}})", four),
      {"tensor 'w'", "shape [3]", "span 12 bytes", "found [0, 4] = 4 bytes"});
  check_mentions(
      parse_error(R"({"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}})", four),
      {"tensor 'w'", "out of range", "expected end <= 4", "found 8"});
  check_mentions(
      parse_error(R"({"w": {"dtype": "U8", "shape": [-2], "data_offsets": [0, 4]}})", four),
      {"tensor 'w'", "shape", "non-negative", "-2"});
  check_mentions(parse_error(R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4],
                                       "extra": 1}})",
                             four),
                 {"tensor 'w'", "field 'extra'"});
  check_mentions(parse_error(R"({"__metadata__": {"a": 1}})", {}),
                 {"__metadata__ key 'a'", "string value", "number"});
  check_mentions(parse_error(std::string(40, '[') + std::string(40, ']'), {}),
                 {"starting with '{'"});
  check_mentions(parse_error("{\"a\":" + std::string(40, '[') + std::string(40, ']') + "}", {}),
                 {"nesting"});
}

TEST_CASE("safetensors duplicate names, overlaps, gaps and trailing data are rejected") {
  const std::vector<uint8_t> eight(8);
  check_mentions(parse_error(R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                     "w": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})",
                             eight),
                 {"duplicate key \"w\"", "unique"});
  check_mentions(parse_error(R"({"a": {"dtype": "U8", "shape": [6], "data_offsets": [0, 6]},
                     "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})",
                             eight),
                 {"tensor 'b'", "[4, 8]", "begin at 6", "after tensor 'a'", "overlap"});
  check_mentions(parse_error(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                     "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})",
                             eight),
                 {"tensor 'b'", "begin at 2", "gap"});
  check_mentions(
      parse_error(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})", eight),
      {"data section", "expected 4 bytes", "found 8"});
}

TEST_CASE("safetensors flipped data byte fails the checksum") {
  TempDir dir;
  const SampleTensors sample;
  const std::string path = dir.file("flip.safetensors");
  mercury::io::write_safetensors(path, sample.refs(), {});
  std::vector<uint8_t> bytes = read_bytes(path);
  bytes[bytes.size() - 10] ^= 0x01;
  write_bytes(path, bytes);
  const SafetensorsFile header_only = SafetensorsFile::load_header(path);  // header is intact
  check_mentions(error_message<CheckpointError>([&] { SafetensorsFile::load(path); }),
                 {"flip.safetensors", "checksum mismatch",
                  "mercury.crc32c.all expects " + header_only.metadata().at("mercury.crc32c.all"),
                  "over the header and data"});
}

TEST_CASE("safetensors: a flipped bit anywhere in the header fails the checksum too") {
  TempDir dir;
  const SampleTensors sample;
  const std::string path = dir.file("meta.safetensors");
  mercury::io::write_safetensors(path, sample.refs(), {{"rng", "12345 67890"}, {"step", "41"}});
  const std::vector<uint8_t> good = read_bytes(path);
  const std::string text(good.begin(), good.end());
  int tried = 0, refused = 0;
  // Every digit of the metadata values and of the shapes/offsets, one at a time.
  for (std::size_t i = 8; i < text.size() && text[i] != '\0'; ++i) {
    if (!(text[i] >= '0' && text[i] <= '9')) continue;
    std::vector<uint8_t> bytes = good;
    bytes[i] = bytes[i] == '9' ? '8' : uint8_t(bytes[i] + 1);
    ++tried;
    try {
      (void)SafetensorsFile::from_bytes(bytes, "m.st");
    } catch (const CheckpointError&) {
      ++refused;
    }
  }
  CHECK(tried > 40);
  CHECK(refused == tried);
  // The CRC key itself renamed or removed: refused unless the checksum is explicitly optional.
  for (const std::string& replacement :
       {std::string("mercury.crc32c.alm"), std::string("mercury.crc32c.ALL")}) {
    std::string edited = text;
    edited.replace(edited.find("mercury.crc32c.all"), 18, replacement);
    const std::vector<uint8_t> bytes(edited.begin(), edited.end());
    check_mentions(
        error_message<CheckpointError>([&] { (void)SafetensorsFile::from_bytes(bytes, "m.st"); }),
        {"expected key 'mercury.crc32c.all'", "found no checksum", "--resume-unchecked"});
    CHECK_NOTHROW(SafetensorsFile::from_bytes(bytes, "m.st", mercury::io::Checksum::optional));
  }
}

TEST_CASE("safetensors files without a checksum (other writers) load only when allowed") {
  const std::vector<uint8_t> data = {1, 2, 3, 4};
  const auto bytes =
      raw_file(R"({"b": {"dtype": "U8", "shape": [2, 2], "data_offsets": [0, 4]}})", data);
  check_mentions(
      error_message<CheckpointError>([&] { SafetensorsFile::from_bytes(bytes, "o.st"); }),
      {"o.st", "expected key 'mercury.crc32c.all'", "no checksum"});
  const SafetensorsFile file =
      SafetensorsFile::from_bytes(bytes, "o.st", mercury::io::Checksum::optional);
  CHECK(file.metadata().empty());
  CHECK(std::vector<uint8_t>(file.bytes(file.at("b")).begin(), file.bytes(file.at("b")).end()) ==
        data);
  // An older Mercury's data-only CRC: verified when the checksum is optional, named otherwise.
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", mercury::io::crc32c(data.data(), data.size()));
  const std::string old_header =
      std::string(R"({"__metadata__": {"mercury.crc32c": ")") + crc +
      R"("}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})";
  check_mentions(error_message<CheckpointError>(
                     [&] { SafetensorsFile::from_bytes(raw_file(old_header, data), "old.st"); }),
                 {"found only 'mercury.crc32c'", "header unchecked"});
  CHECK_NOTHROW(SafetensorsFile::from_bytes(raw_file(old_header, data), "old.st",
                                            mercury::io::Checksum::optional));
  std::vector<uint8_t> flipped = data;
  flipped[2] ^= 4;
  check_mentions(error_message<CheckpointError>([&] {
                   SafetensorsFile::from_bytes(raw_file(old_header, flipped), "old.st",
                                               mercury::io::Checksum::optional);
                 }),
                 {"checksum mismatch", "data section CRC32C"});
}

TEST_CASE("safetensors header parsing is linear: 100,000 tensors load in well under a second") {
  // Was quadratic (65 s for 100k entries): nlohmann's callback parser rescans the parent object
  // after every member. Timed loosely; a quadratic parser takes minutes here, not a second.
  TempDir dir;
  const int n = 100000;
  std::vector<uint8_t> one(n);
  std::vector<TensorRef> refs;
  std::vector<std::string> names;
  names.reserve(n);
  for (int i = 0; i < n; ++i) names.push_back("t" + std::to_string(i));
  for (int i = 0; i < n; ++i) refs.push_back({names[i], "U8", {1}, &one[i]});
  const std::string path = dir.file("many.safetensors");
  mercury::io::write_safetensors(path, refs, {});
  const auto t0 = std::chrono::steady_clock::now();
  const SafetensorsFile f = SafetensorsFile::load(path);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(f.entries().size() == std::size_t(n));
  CHECK(f.find("t99999") != nullptr);
  CHECK_MESSAGE(seconds < 20, "100k-entry header took ", seconds, " s");
}

TEST_CASE("interrupted atomic write leaves neither the target nor a temp file") {
  TempDir dir;
  const std::string path = dir.file("out.bin");
  CHECK_THROWS_AS(
      [&] {
        mercury::io::AtomicFileWriter out(path);
        out.write("partial", 7);
        throw std::runtime_error("simulated crash before commit");
      }(),
      std::runtime_error);
  CHECK(dir.listing().empty());
}

TEST_CASE("failed checkpoint write (disk full) keeps the previous checkpoint and no temp file") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  const SampleTensors sample;
  mercury::io::write_safetensors(path, sample.refs(), {{"version", "old"}});
  const std::vector<uint8_t> old_bytes = read_bytes(path);

  // RLIMIT_FSIZE makes write(2) fail with EFBIG past 4 KiB, like a full disk.
  const std::vector<float> big(64 * 1024, 1.0f);
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
  const std::string message = error_message<CheckpointError>([&] {
    mercury::io::write_safetensors(path, {{"big", "F32", {64, 1024}, big.data()}},
                                   {{"version", "new"}});
  });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);

  check_mentions(message, {"ckpt.safetensors", ".tmp.", "File too large"});
  CHECK(read_bytes(path) == old_bytes);
  CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
  CHECK(SafetensorsFile::load(path).metadata().at("version") == "old");
}

TEST_CASE("a checkpoint aimed at a directory is refused before any temp file is written") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "taken" / "child");
  const float value = 2.0f;
  check_mentions(
      error_message<std::invalid_argument>([&] {
        mercury::io::write_safetensors(dir.file("taken"), {{"w", "F32", {}, &value}}, {});
      }),
      {"taken", "found a directory", "refusing to replace it"});
  CHECK(dir.listing() == std::vector<std::string>{"taken"});
}
