// Synthetic training data shared by the tests: an in-memory Fashion-MNIST-shaped ImageDataset
// and tiny Fashion-MNIST IDX files on disk (each class lights a horizontal band of the image, so
// a model can learn it in a few steps); pure tones, a Speech Commands tree of them (a tone per
// word) and AG-News CSV (a keyword per class).
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/data/wav.hpp"

namespace mercury::testing {

// n images 1 x side x side, 10 classes: the label's band of rows (side/10 rounded up rows tall;
// at side 28, rows 3·label..3·label+2) at 160, plus uniform noise in [0, 90). Below side 20 the
// bands run out before label 9: those classes are noise only. The tests that train through
// whole runs use a small side: their checks are about the run (resume, replicas, samplers),
// and a 16×16 reference CNN costs 12× less than a 28×28 one (under qemu and the sanitizers).
inline data::ImageDataset synthetic_images(int64_t n, uint64_t seed, int64_t side = 28) {
  data::ImageDataset d;
  d.n = n;
  d.channels = 1;
  d.height = d.width = side;
  d.classes = 10;
  d.name = "synthetic";
  d.mean = {0.3f};
  d.stddev = {0.3f};
  const int64_t pixels = side * side, band = (side + 9) / 10;
  d.pixels.resize(static_cast<std::size_t>(n * pixels));
  d.labels.resize(static_cast<std::size_t>(n));
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t label = static_cast<int32_t>(rng() % 10);
    d.labels[i] = label;
    for (int64_t p = 0; p < pixels; ++p) {
      const bool lit = (p / side) / band == label;
      d.pixels[i * pixels + p] = static_cast<uint8_t>((lit ? 160 : 0) + rng() % 90);
    }
  }
  return d;
}

inline std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// Writes train/t10k images + labels (plain IDX) into dir; label i % 10. noisy = false: band 200 on
// 10; noisy = true: band 150 on 20 plus a deterministic noise in [0, 64).
inline void write_tiny_fashion_mnist(const std::filesystem::path& dir, int n_train, int n_test,
                                     bool noisy = false) {
  uint32_t state = 12345;
  for (auto [stem, n] : {std::pair{"train", n_train}, std::pair{"t10k", n_test}}) {
    std::string images = std::string("\0\0\x08\x03", 4) + be32(n) + be32(28) + be32(28);
    std::string labels = std::string("\0\0\x08\x01", 4) + be32(n);
    for (int i = 0; i < n; ++i) {
      const int label = i % 10;
      labels.push_back(static_cast<char>(label));
      for (int p = 0; p < 784; ++p) {
        const bool band = (p / 28) / 3 == label;
        int value = band ? 200 : 10;
        if (noisy) {
          state = state * 1664525u + 1013904223u;
          value = (band ? 150 : 20) + static_cast<int>(state >> 26);
        }
        images.push_back(static_cast<char>(value));
      }
    }
    std::ofstream(dir / (std::string(stem) + "-images-idx3-ubyte"), std::ios::binary) << images;
    std::ofstream(dir / (std::string(stem) + "-labels-idx1-ubyte"), std::ios::binary) << labels;
  }
}

// n samples of a sine at hz, 16-bit PCM at `rate` samples/s.
inline std::vector<int16_t> tone(double hz, std::size_t n, double amplitude = 0.5,
                                 double rate = 16000) {
  std::vector<int16_t> out(n);
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<int16_t>(std::lround(
        amplitude * 32767 * std::sin(2 * std::numbers::pi * hz * static_cast<double>(i) / rate)));
  return out;
}

// root/{yes,no,up}/sNN_nohash_0.wav, 1 s each: word w is a tone at 400 + 300 w Hz (+ 3 Hz per
// speaker); speakers 0..n-1, the last one held out for validation and the one before for test.
inline void write_tone_speech_commands(const std::filesystem::path& root, int speakers) {
  const char* words[] = {"yes", "no", "up"};
  std::filesystem::create_directories(root);
  std::ofstream val(root / "validation_list.txt"), test(root / "testing_list.txt");
  for (int w = 0; w < 3; ++w) {
    std::filesystem::create_directories(root / words[w]);
    for (int k = 0; k < speakers; ++k) {
      const std::string name = "s" + std::to_string(k) + "_nohash_0.wav";
      data::write_wav_pcm16((root / words[w] / name).string(), tone(400.0 + 300 * w + 3 * k, 16000),
                            16000);
      if (k == speakers - 1) val << words[w] << "/" << name << "\n";
      if (k == speakers - 2) test << words[w] << "/" << name << "\n";
    }
  }
}

// dir/train.csv and dir/test.csv in the AG News layout: "class","title","description", class
// 1..4 each with its keyword in the title.
inline void write_tiny_ag_news(const std::filesystem::path& dir, int n_train, int n_test) {
  const char* keys[] = {"world", "sports", "business", "science"};
  for (auto [stem, n] : {std::pair{"train", n_train}, std::pair{"test", n_test}}) {
    std::ofstream out(dir / (std::string(stem) + ".csv"));
    for (int i = 0; i < n; ++i)
      out << '"' << i % 4 + 1 << "\",\"" << keys[i % 4] << " news " << i << "\",\"a story about "
          << keys[i % 4] << " number " << i % 7 << "\"\n";
  }
}

}  // namespace mercury::testing
