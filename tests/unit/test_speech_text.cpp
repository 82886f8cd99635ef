// Speech and text data: the strict WAV reader/writer, spectral features, the Speech Commands
// loader and SpeechDataset, the AG-News CSV reader, tokenizer, vocabulary and TextDataset, and
// the offline generators (speech-synth via espeak-ng, debian-text from a dumpavail stream).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "file_test_support.hpp"
#include "mercury/data/speech_commands.hpp"
#include "mercury/data/text.hpp"
#include "mercury/data/wav.hpp"
#include "synthetic_data.hpp"
#include "tools/data_commands.hpp"

namespace {

namespace fs = std::filesystem;
using mercury::data::DataError;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using mercury::testing::TempDir;
using mercury::testing::tone;
using mercury::testing::write_bytes;

void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v));
  b.push_back(uint8_t(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put_id(std::vector<uint8_t>& b, const char* id) {
  b.insert(b.end(), id, id + 4);
}

struct WavSpec {
  uint16_t format = 1;
  uint16_t channels = 1;
  uint32_t rate = 16000;
  uint16_t bits = 16;
  uint16_t subformat = 0;  // non-zero: write WAVE_FORMAT_EXTENSIBLE with this sub-format
  uint32_t data_bytes = 8;
  int64_t data_size_field = -1;      // override the data chunk's size field
  std::vector<uint8_t> before_data;  // extra chunks between fmt and data
  bool with_data = true;
};

std::vector<uint8_t> make_wav(const WavSpec& s) {
  std::vector<uint8_t> body;
  put_id(body, "WAVE");
  put_id(body, "fmt ");
  const bool ext = s.subformat != 0;
  put32(body, ext ? 40 : 16);
  put16(body, ext ? 0xFFFE : s.format);
  put16(body, s.channels);
  put32(body, s.rate);
  const uint16_t align = uint16_t(s.channels * ((s.bits + 7) / 8));
  put32(body, s.rate * align);
  put16(body, align);
  put16(body, s.bits);
  if (ext) {
    put16(body, 22);
    put16(body, s.bits);
    put32(body, 4);
    put16(body, s.subformat);
    const uint8_t tail[14] = {0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71};
    body.insert(body.end(), tail, tail + 14);
  }
  body.insert(body.end(), s.before_data.begin(), s.before_data.end());
  if (s.with_data) {
    put_id(body, "data");
    put32(body, s.data_size_field >= 0 ? uint32_t(s.data_size_field) : s.data_bytes);
    for (uint32_t i = 0; i < s.data_bytes; ++i) body.push_back(uint8_t(i * 7));
  }
  std::vector<uint8_t> file;
  put_id(file, "RIFF");
  put32(file, uint32_t(body.size()));
  file.insert(file.end(), body.begin(), body.end());
  return file;
}

}  // namespace

// ---- WAV ----------------------------------------------------------------------------------------

TEST_CASE("WAV files written by the writer read back sample-exact") {
  TempDir dir;
  std::vector<int16_t> samples = {0, 1, -1, 32767, -32768, 1234, -4321};
  const std::string path = dir.file("a.wav");
  mercury::data::write_wav_pcm16(path, samples, 16000);
  const mercury::data::WavClip clip = mercury::data::read_wav_pcm16(path);
  CHECK(clip.samples == samples);
  CHECK(clip.info.sample_rate == 16000);
  CHECK(clip.info.channels == 1);
  CHECK(clip.info.bits_per_sample == 16);
  CHECK(clip.info.data_offset == 44);
  CHECK(clip.info.frames() == samples.size());
  CHECK(dir.listing().size() == 1);  // no temp file left behind
}

TEST_CASE("WAV reader skips unknown chunks, honours odd-size padding, accepts extensible PCM") {
  WavSpec spec;
  // An odd-sized LIST chunk (3 bytes + 1 pad byte) before data.
  put_id(spec.before_data, "LIST");
  put32(spec.before_data, 3);
  spec.before_data.insert(spec.before_data.end(), {'a', 'b', 'c', 0});
  const auto bytes = make_wav(spec);
  const auto clip = mercury::data::read_wav_pcm16_from_bytes(bytes, "padded.wav");
  CHECK(clip.samples.size() == 4);
  CHECK(clip.samples[0] == int16_t(0 | (7 << 8)));

  WavSpec ext;
  ext.subformat = 1;  // PCM inside WAVE_FORMAT_EXTENSIBLE
  const auto info = mercury::data::read_wav_info_from_bytes(make_wav(ext), "ext.wav");
  CHECK(info.format_tag == 0xFFFE);
  CHECK(info.sample_format == 1);
  CHECK_NOTHROW(mercury::data::read_wav_pcm16_from_bytes(make_wav(ext), "ext.wav"));
}

TEST_CASE("WAV reader rejects every unsupported layout with file, offset, expected and found") {
  auto error_for = [](const WavSpec& spec) {
    const auto bytes = make_wav(spec);
    return error_message<DataError>(
        [&] { mercury::data::read_wav_pcm16_from_bytes(bytes, "bad.wav"); });
  };
  WavSpec stereo;
  stereo.channels = 2;
  check_mentions(error_for(stereo),
                 {"bad.wav", "channel count", "byte offset 22", "expected 1", "found 2 (stereo)"});
  WavSpec slow;
  slow.rate = 8000;
  check_mentions(error_for(slow),
                 {"bad.wav", "sample rate", "byte offset 24", "expected 16000", "found 8000"});
  WavSpec floating;
  floating.format = 3;
  floating.bits = 32;
  check_mentions(error_for(floating),
                 {"format tag", "byte offset 20", "expected 1 (PCM)", "found 3 (IEEE float)"});
  WavSpec mulaw;
  mulaw.format = 7;
  mulaw.bits = 8;
  check_mentions(error_for(mulaw), {"expected 1 (PCM)", "found 7 (mu-law)"});
  WavSpec ext_float;
  ext_float.subformat = 3;
  ext_float.bits = 32;
  check_mentions(error_for(ext_float),
                 {"extensible sub-format", "byte offset 44", "found 3 (IEEE float)"});
  WavSpec eight_bit;
  eight_bit.bits = 8;
  check_mentions(error_for(eight_bit),
                 {"bits per sample", "byte offset 34", "expected 16", "found 8"});
  WavSpec truncated;
  truncated.data_size_field = 1000;
  check_mentions(error_for(truncated),
                 {"size of chunk 'data'", "byte offset 40", "expected at most 8", "found 1000"});
  WavSpec beyond;
  put_id(beyond.before_data, "LIST");
  put32(beyond.before_data, 0x7FFFFFFF);
  check_mentions(error_for(beyond), {"size of chunk 'LIST'", "byte offset 40", "found 2147483647"});
  WavSpec no_data;
  no_data.with_data = false;
  check_mentions(error_for(no_data), {"expected a 'data' chunk", "'fmt '"});

  // Container-level damage.
  auto bytes = make_wav(WavSpec{});
  bytes[4] = 0xFF;  // RIFF size beyond the file
  check_mentions(
      error_message<DataError>([&] { mercury::data::read_wav_info_from_bytes(bytes, "x.wav"); }),
      {"RIFF size", "byte offset 4", "file truncated"});
  const std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!'};
  check_mentions(
      error_message<DataError>([&] { mercury::data::read_wav_info_from_bytes(text, "t.wav"); }),
      {"expected 'RIFF'", "found 'hell'"});

  // A file on disk: the path is named; a missing file is a DataError too.
  TempDir dir;
  write_bytes(dir.file("stereo.wav"), make_wav(stereo));
  check_mentions(
      error_message<DataError>([&] { mercury::data::read_wav_pcm16(dir.file("stereo.wav")); }),
      {dir.file("stereo.wav"), "stereo"});
  check_mentions(
      error_message<DataError>([&] { mercury::data::read_wav_pcm16(dir.file("none.wav")); }),
      {"none.wav", "cannot open"});
}

// ---- features -----------------------------------------------------------------------------------

TEST_CASE("log-spectrogram of a pure tone has shape 161x101 and peaks at the tone's bin") {
  const mercury::data::SpeechFeatures features;
  CHECK(features.shape() == mercury::Shape{1, 161, 101});
  const std::vector<int16_t> clip = tone(1000.0, 16000);  // 1000 Hz / (16000/320) = bin 20
  std::vector<float> out(size_t(features.numel()));
  features.compute_from_pcm(clip.data(), out.data());
  for (int64_t t : {10, 50, 90}) {
    int64_t best = 0;
    for (int64_t k = 0; k < 161; ++k) {
      if (out[k * 101 + t] > out[best * 101 + t]) best = k;
    }
    CHECK(best == 20);
  }
  // |X_20| for a Hann-windowed sine of amplitude a: a * n_fft / 4.
  const double expected = std::log(std::pow(0.5 * 320 / 4, 2));
  CHECK(out[20 * 101 + 50] == doctest::Approx(expected).epsilon(0.02));

  mercury::data::SpeechFeatureOptions mel_options;
  mel_options.kind = mercury::data::SpeechFeatureOptions::Kind::kLogMel;
  const mercury::data::SpeechFeatures mel(mel_options);
  CHECK(mel.shape() == mercury::Shape{1, 40, 101});
  std::vector<float> mel_out(size_t(mel.numel()));
  mel.compute_from_pcm(clip.data(), mel_out.data());
  int64_t best = 0;
  for (int64_t m = 0; m < 40; ++m) {
    if (mel_out[m * 101 + 50] > mel_out[best * 101 + 50]) best = m;
  }
  // Filter m is centred at mel (m+1) * mel(8000)/41; 1000 Hz (= 1000 mel) lies at m = 13.4.
  CHECK((best == 13 || best == 14));
}

// ---- Speech Commands ----------------------------------------------------------------------------

namespace {

// root/{yes,no,up}/<speaker>_nohash_<k>.wav: 4 clips each; the "c" speaker is validation, "d" test.
void write_tiny_speech_tree(const fs::path& root) {
  const std::vector<std::string> words = {"yes", "no", "up"};
  for (size_t w = 0; w < words.size(); ++w) {
    fs::create_directories(root / words[w]);
    for (const char* speaker : {"a", "b", "c", "d"}) {
      // Shorter and longer than 1 s, different tones per word.
      const size_t n = speaker[0] == 'b' ? 17000 : 12000;
      mercury::data::write_wav_pcm16(
          (root / words[w] / (std::string(speaker) + "_nohash_0.wav")).string(),
          tone(400.0 + 300.0 * double(w), n), 16000);
    }
  }
  fs::create_directories(root / "_background_noise_");
  std::vector<int16_t> noise(20000);
  std::mt19937_64 rng(3);
  for (auto& v : noise) v = int16_t(int64_t(rng() % 2001) - 1000);
  mercury::data::write_wav_pcm16((root / "_background_noise_" / "white_noise.wav").string(), noise,
                                 16000);
  std::ofstream((root / "_background_noise_" / "README.md").string()) << "not audio\n";
  std::ofstream((root / "validation_list.txt").string())
      << "yes/c_nohash_0.wav\nno/c_nohash_0.wav\r\nup/c_nohash_0.wav\n";
  std::ofstream((root / "testing_list.txt").string())
      << "yes/d_nohash_0.wav\nno/d_nohash_0.wav\n\nup/d_nohash_0.wav\n";
  std::ofstream((root / "LICENSE").string()) << "x\n";
}

}  // namespace

TEST_CASE("a tiny Speech Commands tree loads with the listed splits, sorted labels and 1 s clips") {
  TempDir dir;
  write_tiny_speech_tree(dir.path());
  const auto sc = mercury::data::load_speech_commands(dir.path().string());
  CHECK(sc.train.class_names == std::vector<std::string>{"no", "up", "yes"});
  CHECK(sc.train.size() == 6);
  CHECK(sc.validation.size() == 3);
  CHECK(sc.test.size() == 3);
  CHECK(sc.train.paths[0] == "no/a_nohash_0.wav");
  CHECK(sc.train.label(0) == 0);
  CHECK(sc.validation.paths ==
        std::vector<std::string>{"no/c_nohash_0.wav", "up/c_nohash_0.wav", "yes/c_nohash_0.wav"});
  CHECK(sc.test.labels == std::vector<int32_t>{0, 1, 2});
  CHECK(sc.train.sample_shape() == mercury::Shape{1, 161, 101});
  CHECK(sc.train.noise->clips.size() == 1);
  CHECK(sc.train.audio.size() == 6u * 16000u);
  // Short clips are zero-padded at the end; long ones cropped to 16000 samples.
  CHECK(sc.train.clip(0)[12000] == 0);
  CHECK(sc.train.clip(1)[15999] != 0);
  CHECK(sc.validation.feature_mean == sc.train.feature_mean);
  CHECK(sc.train.feature_std > 0.0f);

  // gather: plain is deterministic; augmentation is a function of the RNG state.
  const std::vector<int64_t> idx = {0, 5, 3};
  const size_t per = size_t(sc.train.sample_numel());
  std::vector<float> a(per * 3), b(per * 3), c(per * 3);
  std::vector<int32_t> ya(3), yb(3);
  sc.train.gather(idx, a.data(), ya.data(), nullptr);
  sc.train.gather(idx, b.data(), yb.data(), nullptr);
  CHECK(a == b);
  CHECK(ya == std::vector<int32_t>{sc.train.label(0), sc.train.label(5), sc.train.label(3)});
  std::mt19937_64 r1(7), r2(7);
  sc.train.gather(idx, b.data(), yb.data(), &r1);
  sc.train.gather(idx, c.data(), yb.data(), &r2);
  CHECK(b == c);
  CHECK(b != a);
  CHECK(std::all_of(b.begin(), b.end(), [](float v) { return std::isfinite(v); }));
  CHECK_THROWS_AS(sc.train.gather(std::vector<int64_t>{6}, a.data(), ya.data(), nullptr),
                  std::out_of_range);

  // Keyword subset with an unknown bucket.
  mercury::data::SpeechCommandsOptions options;
  options.words = {"yes", "no"};
  options.unknown_bucket = true;
  const auto subset = mercury::data::load_speech_commands(dir.path().string(), options);
  CHECK(subset.train.class_names == std::vector<std::string>{"yes", "no", "_unknown_"});
  CHECK(subset.train.size() == 6);
  CHECK(subset.test.labels == std::vector<int32_t>{1, 2, 0});  // no, up, yes (path order)
  options.unknown_bucket = false;
  CHECK(mercury::data::load_speech_commands(dir.path().string(), options).train.size() == 4);
  options.features.kind = mercury::data::SpeechFeatureOptions::Kind::kLogMel;
  CHECK(mercury::data::load_speech_commands(dir.path().string(), options).train.sample_shape() ==
        mercury::Shape{1, 40, 101});
}

TEST_CASE("Speech Commands errors name the list line or the offending clip") {
  TempDir dir;
  write_tiny_speech_tree(dir.path());
  std::ofstream(dir.file("testing_list.txt"), std::ios::app) << "yes/zzz_nohash_0.wav\n";
  check_mentions(
      error_message<DataError>([&] { mercury::data::load_speech_commands(dir.path().string()); }),
      {"testing_list.txt", "line 5", "yes/zzz_nohash_0.wav", "missing"});
  std::ofstream(dir.file("testing_list.txt")) << "../etc/passwd\n";
  check_mentions(
      error_message<DataError>([&] { mercury::data::load_speech_commands(dir.path().string()); }),
      {"line 1", "relative path"});
  std::ofstream(dir.file("testing_list.txt")) << "yes/c_nohash_0.wav\n";
  check_mentions(
      error_message<DataError>([&] { mercury::data::load_speech_commands(dir.path().string()); }),
      {"one split only", "yes/c_nohash_0.wav"});
  std::ofstream(dir.file("testing_list.txt")) << "";
  mercury::data::write_wav_pcm16(dir.file("up/e_nohash_0.wav"), tone(300, 8000, 0.5, 8000), 8000);
  check_mentions(
      error_message<DataError>([&] { mercury::data::load_speech_commands(dir.path().string()); }),
      {"up/e_nohash_0.wav", "expected 16000 Hz", "found 8000 Hz"});
  mercury::data::SpeechCommandsOptions options;
  options.words = {"yes", "maybe"};
  check_mentions(error_message<DataError>(
                     [&] { mercury::data::load_speech_commands(dir.path().string(), options); }),
                 {"'maybe'", "no up yes"});
  check_mentions(
      error_message<DataError>([&] { mercury::data::load_speech_commands(dir.file("nothing")); }),
      {"nothing", "expected a directory"});
}

// ---- text ---------------------------------------------------------------------------------------

TEST_CASE("RFC 4180 CSV: quoted fields with doubled quotes, commas and newlines parse exactly") {
  const std::string csv =
      "\"3\",\"Wall St. \"\"Bears\"\", again\",\"Line one,\nline two\"\r\n"
      "1,plain title,plain text\n"
      "\n"
      "\"4\",\"\",\"\"";  // no final newline, empty fields
  const auto records = mercury::data::parse_text_csv(csv, "mem.csv");
  REQUIRE(records.size() == 3);
  CHECK(records[0].label == 2);
  CHECK(records[0].title == "Wall St. \"Bears\", again");
  CHECK(records[0].description == "Line one,\nline two");
  CHECK(records[1].label == 0);
  CHECK(records[1].title == "plain title");
  CHECK(records[2].label == 3);
  CHECK(records[2].title.empty());
  const auto rows = mercury::data::parse_csv(csv, "mem.csv");
  CHECK(rows[1].line == 3);  // the first record spans lines 1-2
  CHECK(rows[2].line == 5);
  // A UTF-8 byte order mark is not part of the first field.
  const auto bom = mercury::data::parse_text_csv("\xEF\xBB\xBF\"3\",\"t\",\"d\"\n", "bom.csv");
  REQUIRE(bom.size() == 1);
  CHECK(bom[0].label == 2);
}

TEST_CASE("CSV errors name file, line and column") {
  check_mentions(error_message<DataError>([] {
                   mercury::data::parse_text_csv("\"1\",\"a\",\"b\"\n\"2\",\"x\"\n", "f.csv");
                 }),
                 {"f.csv", "line 2", "column 3", "expected 3 columns", "found 2"});
  check_mentions(error_message<DataError>([] {
                   mercury::data::parse_text_csv("1,a,b\n2,\"never closed,\nmore\n", "f.csv");
                 }),
                 {"f.csv", "line 2", "column 3", "unterminated quoted field"});
  check_mentions(
      error_message<DataError>([] { mercury::data::parse_text_csv("5,a,b\n", "f.csv"); }),
      {"line 1", "column 1", "expected an integer 1..4", "found '5'"});
  check_mentions(
      error_message<DataError>([] { mercury::data::parse_text_csv("x,a,b\n", "f.csv"); }),
      {"found 'x'"});
  check_mentions(
      error_message<DataError>([] { mercury::data::parse_text_csv("1,a\"b,c\n", "f.csv"); }),
      {"line 1", "column 4", "unquoted field"});
  check_mentions(
      error_message<DataError>([] { mercury::data::parse_text_csv("1,\"a\"b,c\n", "f.csv"); }),
      {"column 6", "after a closing quote"});
  check_mentions(error_message<DataError>([] { mercury::data::read_text_csv("/nonexistent.csv"); }),
                 {"/nonexistent.csv", "cannot open"});
}

TEST_CASE("tokenizer lower-cases, splits on non-alphanumerics and keeps inner apostrophes") {
  CHECK(mercury::data::tokenize("Don't STOP--it's 'quoted' U.S. rock'n'roll 3.5% caf\xc3\xa9!") ==
        std::vector<std::string>{"don't", "stop", "it's", "quoted", "u", "s", "rock'n'roll", "3",
                                 "5", "caf\xc3\xa9"});
  CHECK(mercury::data::tokenize("  ,,, ").empty());
}

TEST_CASE("vocabulary is deterministic (count, then token order), capped, and round-trips") {
  const std::vector<std::string> texts = {"b a c a", "c b d", "zeta a"};
  const auto v = mercury::data::Vocabulary::build(texts, 5);
  // counts: a 3, b 2, c 2, d 1, zeta 1 -> a, b, c (b/c tie broken by byte order), cap 5.
  REQUIRE(v.size() == 5);
  CHECK(v.token(0) == "<pad>");
  CHECK(v.token(1) == "<oov>");
  CHECK(v.token(2) == "a");
  CHECK(v.token(3) == "b");
  CHECK(v.token(4) == "c");
  CHECK(v.id("d") == mercury::data::kTextOovId);
  std::vector<std::string> reversed(texts.rbegin(), texts.rend());
  CHECK(mercury::data::Vocabulary::build(reversed, 5) == v);
  const std::string text = v.serialize();
  CHECK(text.rfind("mercury-vocab 1 5\n<pad>\n<oov>\na\n", 0) == 0);
  CHECK(mercury::data::Vocabulary::deserialize(text) == v);
  check_mentions(error_message<DataError>([] {
                   mercury::data::Vocabulary::deserialize("mercury-vocab 1 4\n<pad>\n<oov>\na\n");
                 }),
                 {"line 1", "found '4'"});
  check_mentions(
      error_message<DataError>([] {
        mercury::data::Vocabulary::deserialize("mercury-vocab 1 4\n<pad>\n<oov>\na\na\n");
      }),
      {"line 5", "unique", "'a'"});
  check_mentions(error_message<DataError>([] {
                   mercury::data::Vocabulary::deserialize("mercury-vocab 1 3\n<pad>\n<oov>\nA b\n");
                 }),
                 {"line 4", "lower-case token"});
  check_mentions(
      error_message<DataError>([] { mercury::data::Vocabulary::deserialize("vocab\n"); }),
      {"line 1", "header"});
}

TEST_CASE("TextDataset stores padded token ids and gathers them as exact floats") {
  std::vector<mercury::data::TextRecord> records = {{1, "Hello world", "hello again"},
                                                    {0, "Unseen", ""}};
  std::vector<std::string> texts;
  for (const auto& r : records) texts.push_back(mercury::data::record_text(r));
  const auto v = mercury::data::Vocabulary::build(texts, 100);
  const auto d = mercury::data::make_text_dataset(records, v, 4, 100, "tiny");
  CHECK(d.sample_shape() == mercury::Shape{100});
  std::vector<float> x(200);
  std::vector<int32_t> y(2);
  const std::vector<int64_t> idx = {0, 1};
  d.gather(idx, x.data(), y.data(), nullptr);
  CHECK(y == std::vector<int32_t>{1, 0});
  CHECK(x[0] == float(v.id("hello")));
  CHECK(x[1] == float(v.id("world")));
  CHECK(x[2] == float(v.id("hello")));
  CHECK(x[4] == 0.0f);
  CHECK(x[100] == float(v.id("unseen")));
  CHECK(x[101] == 0.0f);
  // Truncation at max_length.
  const auto short_d = mercury::data::make_text_dataset(records, v, 4, 2);
  CHECK(short_d.ids == std::vector<int32_t>{v.id("hello"), v.id("world"), v.id("unseen"), 0});
}

// ---- generators ---------------------------------------------------------------------------------

TEST_CASE("debian-text turns a dumpavail stream into AG-News CSV the text loader reads") {
  std::ostringstream dump;
  const char* sections[] = {"libs",          "libs",  "libs",         "devel", "devel",
                            "contrib/games", "games", "non-free/net", "net",   "libs"};
  for (int i = 0; i < 10; ++i) {
    dump << "Package: pkg" << i << "\nVersion: 1.0\nSection: " << sections[i]
         << "\nDescription: Tool number " << i << ", with \"quotes\"\n"
         << (i == 0 ? " Long text line one.\n .\n Second paragraph.\n" : "")
         << "Tag: role::program,\n interface::cli\n\n";
  }
  dump << "Package: pkg0\nSection: devel\nDescription: duplicate name is dropped\n\n";
  dump << "Package: nodesc\nSection: libs\n\n";
  std::istringstream in(dump.str());
  const auto packages = mercury::tools::parse_dumpavail(in, "fake");
  REQUIRE(packages.size() == 12);
  CHECK(packages[0].short_description == "Tool number 0, with \"quotes\"");
  CHECK(packages[0].long_description == "Long text line one.\nSecond paragraph.");

  TempDir dir;
  mercury::tools::DebianTextOptions options;
  options.output_dir = dir.path().string();
  options.classes = 3;
  options.test_fraction = 0.3;
  std::istringstream in2(dump.str());
  std::ostringstream progress;
  CHECK(mercury::tools::debian_text_from_stream(in2, "fake", options, progress) == 0);
  std::ifstream classes(dir.file("classes.txt"));
  std::string c1, c2, c3;
  classes >> c1 >> c2 >> c3;
  CHECK(c1 == "libs");   // 4 packages
  CHECK(c2 == "devel");  // 2, ties with games (2) and net (2), broken by name
  CHECK(c3 == "games");
  const auto train = mercury::data::read_text_csv(dir.file("train.csv"), 3);
  const auto test = mercury::data::read_text_csv(dir.file("test.csv"), 3);
  CHECK(train.size() + test.size() == 8);  // 4 libs + 2 devel + 2 games
  bool found_long = false;
  for (const auto& r : train)
    found_long |= r.description == "Long text line one.\nSecond paragraph.";
  for (const auto& r : test)
    found_long |= r.description == "Long text line one.\nSecond paragraph.";
  CHECK(found_long);
  // Deterministic: a second run writes identical files.
  const auto before = mercury::testing::read_bytes(dir.file("train.csv"));
  std::istringstream in3(dump.str());
  mercury::tools::debian_text_from_stream(in3, "fake", options, progress);
  CHECK(mercury::testing::read_bytes(dir.file("train.csv")) == before);

  options.classes = 9;
  std::istringstream in4(dump.str());
  check_mentions(error_message<mercury::tools::ToolError>([&] {
                   mercury::tools::debian_text_from_stream(in4, "fake", options, progress);
                 }),
                 {"4 sections", "at least 9"});
  std::istringstream empty("");
  check_mentions(error_message<mercury::tools::ToolError>([&] {
                   mercury::tools::debian_text_from_stream(empty, "fake", options, progress);
                 }),
                 {"no packages", "apt-get update"});
  mercury::tools::DebianTextOptions missing = options;
  missing.apt_cache = "/nonexistent/apt-cache";
  check_mentions(error_message<mercury::tools::ToolError>(
                     [&] { mercury::tools::debian_text(missing, progress); }),
                 {"cannot run", "/nonexistent/apt-cache"});
}

TEST_CASE("resampling 22050 -> 16000 Hz keeps a tone's frequency and level") {
  std::vector<float> in(22050);
  for (size_t i = 0; i < in.size(); ++i)
    in[i] = 0.5f * std::sin(2 * std::numbers::pi * 1000 * i / 22050.0);
  const auto out = mercury::tools::resample(in, 22050, 16000);
  REQUIRE(out.size() == 16000);
  double max_error = 0;
  for (size_t i = 1000; i < 15000; ++i) {
    max_error = std::max(
        max_error, std::abs(out[i] - 0.5 * std::sin(2 * std::numbers::pi * 1000 * i / 16000.0)));
  }
  CHECK(max_error < 0.01);
}

TEST_CASE("speech-synth writes a Speech Commands tree that the loader reads, and re-runs safely") {
  bool have_espeak = false;
  try {
    have_espeak = mercury::tools::run_process({"espeak-ng", "--version"}, 10).ok();
  } catch (const mercury::tools::ToolError&) {
  }
  if (!have_espeak) {
    mercury::testing::missing_dependency("the espeak-ng program", "apt-get install espeak-ng");
    return;
  }
  TempDir dir;
  const std::string out = (dir.path() / "synth").string();
  mercury::tools::SpeechSynthOptions o;
  o.output_dir = out;
  o.words = {"yes", "no"};
  o.unknown_words = {};
  o.voices = {"en-us", "en-gb"};
  o.variants = {"m3", "f2"};
  o.rates = {160};
  o.pitches = {50};
  o.noise_seconds = 2;
  std::ostringstream progress;
  CHECK(mercury::tools::speech_synth(o, progress) == 0);
  INFO(progress.str());
  const auto sc = mercury::data::load_speech_commands(out);
  CHECK(sc.train.class_names == std::vector<std::string>{"no", "yes"});
  // 4 speakers: 1 test, 1 validation, 2 train; 2 words each.
  CHECK(sc.test.size() == 2);
  CHECK(sc.validation.size() == 2);
  CHECK(sc.train.size() == 4);
  CHECK(sc.train.noise->clips.size() == 3);
  // Test speakers never appear in training.
  for (const auto& p : sc.test.paths) {
    const std::string speaker = p.substr(p.find('/') + 1, 8);
    for (const auto& q : sc.train.paths) CHECK(q.find(speaker) == std::string::npos);
  }
  // Not silent: a clip's peak is well above the noise floor.
  int peak = 0;
  for (int64_t i = 0; i < 16000; ++i) peak = std::max(peak, std::abs(int(sc.train.clip(0)[i])));
  CHECK(peak > 5000);

  const auto clip_bytes = mercury::testing::read_bytes(out + "/" + sc.train.paths[0]);
  std::ostringstream again;
  CHECK(mercury::tools::speech_synth(o, again) == 0);
  CHECK(again.str().find("already complete") != std::string::npos);

  // An interrupted run (marker says partial, a clip missing) resumes and rewrites identically.
  const std::string marker = out + "/" + mercury::tools::kSynthMarker;
  std::string text = mercury::data::read_text_file(marker, 1 << 20);
  text.replace(text.find("status=complete"), 15, "status=partial");
  mercury::io::write_file_atomically(marker, text);
  fs::remove(out + "/" + sc.train.paths[0]);
  std::ostringstream resumed;
  CHECK(mercury::tools::speech_synth(o, resumed) == 0);
  CHECK(resumed.str().find("resuming") != std::string::npos);
  CHECK(mercury::testing::read_bytes(out + "/" + sc.train.paths[0]) == clip_bytes);

  o.seed = 2;
  check_mentions(
      error_message<mercury::tools::ToolError>([&] { mercury::tools::speech_synth(o, progress); }),
      {"different options", "delete the directory"});
  o.output_dir = dir.path().string();  // non-empty, not ours
  check_mentions(
      error_message<mercury::tools::ToolError>([&] { mercury::tools::speech_synth(o, progress); }),
      {"not empty", "not written by speech-synth"});
}
