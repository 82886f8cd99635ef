// Speech Commands (v0.02 layout) loader and SpeechDataset: raw int16 clips in memory, spectral
// features computed per batch.
//
// Layout read by load_speech_commands(root, options):
//   root/<word>/<clip>.wav        16 kHz mono 16-bit PCM (anything else is a DataError)
//   root/validation_list.txt      one "<word>/<clip>.wav" per line, relative to root
//   root/testing_list.txt         same; train = every clip in neither list
//   root/_background_noise_/*.wav long noise recordings (optional), mixed in by augmentation
//   Word folders are the directories of root not starting with '_' or '.', sorted byte-wise;
//   non-.wav files are ignored. options.words empty: every word folder is a class (35 for
//   v0.02). Non-empty: only those words, in the given order, plus - with unknown_bucket - a
//   last class "_unknown_" holding every other word's clips. A list entry naming a missing clip,
//   an absolute path or "..", or a clip in both lists is a DataError naming list file and line.
//   Clips are padded with zeros at the end / cropped to clip_samples (1 s).
//
// Features (SpeechFeatures), per clip of clip_samples float samples in [-1, 1):
//   frames centred every hop samples with n_fft/2 zeros of padding at both ends
//   (1 + clip_samples/hop = 101 frames), periodic Hann window, real FFT (Eigen's kissfft),
//   log-spectrogram: out[k][t] = log(|X_k(t)|^2 + eps), k < n_fft/2+1 = 161 -> shape [1,161,101];
//   log-mel: 40 triangular HTK-mel filters over 0..sample_rate/2 applied to |X|^2, then
//   log(. + eps) -> [1,40,101].
//   Normalisation: one global mean/std over all feature values of up to normalisation_clips
//   training clips (evenly spaced, no augmentation); the same constants are set on all three
//   splits and gather() writes (feature - mean) / std.
//
// SpeechDataset::gather(indices, x, y, rng): rng null -> the plain clip. rng non-null -> time
//   shift uniform in [-max_shift, max_shift] samples (zero fill), then with probability
//   noise_probability a uniformly chosen background file, a uniformly chosen segment (wrapping
//   for files shorter than a clip) added at gain uniform in [0, max_noise_gain]. Random numbers
//   come from rng() through portable conversions (uniform01 below, uniform_below), so a seed
//   gives the same batch with any standard library.
//   Allocation: none in steady state. Each thread owns a thread_local scratch (FFT object with
//   its cached plan, audio/frame/spectrum buffers) sized by its first gather and reused; a
//   different n_fft only grows the buffers once more. Concurrent gathers from different threads
//   into different buffers are safe (the dataset itself is read-only).
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numbers>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unsupported/Eigen/FFT>
#include <vector>

#include "mercury/base/random.hpp"
#include "mercury/data/dataset.hpp"
#include "mercury/data/idx.hpp"
#include "mercury/data/wav.hpp"
#include "net/file_kind.hpp"

namespace mercury::data {

using base::uniform01;  // portable, unlike std::uniform_real_distribution (base/random.hpp)

struct SpeechFeatureOptions {
  enum class Kind { kLogSpectrogram, kLogMel };
  Kind kind = Kind::kLogSpectrogram;
  int64_t sample_rate = 16000;
  int64_t clip_samples = 16000;  // 1 s
  int64_t n_fft = 320;           // 20 ms
  int64_t hop = 160;             // 10 ms
  int64_t mel_bins = 40;
  float eps = 1e-6f;
};

struct SpeechAugmentOptions {
  int64_t max_shift_samples = 1600;  // +-100 ms
  double noise_probability = 0.8;
  double max_noise_gain = 0.1;
};

// Window, mel filters and the per-clip feature computation.
class SpeechFeatures {
 public:
  SpeechFeatures() : SpeechFeatures(SpeechFeatureOptions{}) {}
  explicit SpeechFeatures(const SpeechFeatureOptions& options) : options_(options) {
    if (options.n_fft < 4 || options.n_fft % 2 != 0 || options.n_fft > (1 << 16)) {
      throw std::invalid_argument("SpeechFeatures: n_fft must be even and 4..65536, found " +
                                  std::to_string(options.n_fft));
    }
    if (options.hop < 1 || options.clip_samples < 1 || options.sample_rate < 1) {
      throw std::invalid_argument("SpeechFeatures: hop, clip_samples and sample_rate must be >= 1");
    }
    if (!(options.eps > 0.0f)) {
      throw std::invalid_argument("SpeechFeatures: eps must be > 0");
    }
    window_.resize(static_cast<size_t>(options.n_fft));
    for (size_t i = 0; i < window_.size(); ++i) {  // periodic Hann
      window_[i] = static_cast<float>(
          0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * double(i) / double(options.n_fft)));
    }
    if (options.kind == SpeechFeatureOptions::Kind::kLogMel) build_mel();
  }

  const SpeechFeatureOptions& options() const { return options_; }
  int64_t fft_bins() const { return options_.n_fft / 2 + 1; }
  int64_t frames() const { return 1 + options_.clip_samples / options_.hop; }
  int64_t rows() const {
    return options_.kind == SpeechFeatureOptions::Kind::kLogMel ? options_.mel_bins : fft_bins();
  }
  Shape shape() const { return Shape{1, rows(), frames()}; }
  int64_t numel() const { return rows() * frames(); }
  std::string describe() const {
    return std::string(options_.kind == SpeechFeatureOptions::Kind::kLogMel ? "log-mel "
                                                                            : "log-spectrogram ") +
           std::to_string(rows()) + "x" + std::to_string(frames());
  }

  // Thread-local buffers reused by every call on a thread (see the contract).
  struct Scratch {
    Eigen::FFT<float> fft{Eigen::FFT<float>::impl_type(), Eigen::FFT<float>::HalfSpectrum};
    std::vector<float> audio, frame, power;
    std::vector<std::complex<float>> spectrum;
  };
  static Scratch& thread_scratch() {
    thread_local Scratch scratch;
    return scratch;
  }

  // audio: clip_samples floats; out: numel() floats laid out [row][frame].
  void compute(const float* audio, float* out) const {
    Scratch& s = thread_scratch();
    const int64_t n_fft = options_.n_fft;
    const int64_t bins = fft_bins();
    const int64_t n_frames = frames();
    const int64_t n = options_.clip_samples;
    s.frame.resize(static_cast<size_t>(n_fft));
    s.spectrum.resize(static_cast<size_t>(bins));
    s.power.resize(static_cast<size_t>(bins));
    const bool mel = options_.kind == SpeechFeatureOptions::Kind::kLogMel;
    for (int64_t t = 0; t < n_frames; ++t) {
      const int64_t start = t * options_.hop - n_fft / 2;
      for (int64_t i = 0; i < n_fft; ++i) {
        const int64_t j = start + i;
        s.frame[i] = (j >= 0 && j < n) ? audio[j] * window_[i] : 0.0f;
      }
      s.fft.fwd(s.spectrum.data(), s.frame.data(), n_fft);
      for (int64_t k = 0; k < bins; ++k) s.power[k] = std::norm(s.spectrum[k]);
      if (!mel) {
        for (int64_t k = 0; k < bins; ++k)
          out[k * n_frames + t] = std::log(s.power[k] + options_.eps);
        continue;
      }
      for (int64_t m = 0; m < options_.mel_bins; ++m) {
        const MelRange& r = mel_ranges_[m];
        const float* weights = mel_weights_.data() + m * bins;
        float energy = 0.0f;
        for (int64_t k = r.first; k < r.last; ++k) energy += weights[k] * s.power[k];
        out[m * n_frames + t] = std::log(energy + options_.eps);
      }
    }
  }

  // int16 clip -> floats in [-1, 1) into the thread scratch, then features.
  void compute_from_pcm(const int16_t* clip, float* out) const {
    Scratch& s = thread_scratch();
    s.audio.resize(static_cast<size_t>(options_.clip_samples));
    for (int64_t i = 0; i < options_.clip_samples; ++i) s.audio[i] = clip[i] * (1.0f / 32768.0f);
    compute(s.audio.data(), out);
  }

 private:
  struct MelRange {
    int64_t first = 0, last = 0;  // non-zero weights in [first, last)
  };
  static double hz_to_mel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
  static double mel_to_hz(double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); }

  void build_mel() {
    const int64_t bins = fft_bins();
    if (options_.mel_bins < 1 || options_.mel_bins > bins) {
      throw std::invalid_argument("SpeechFeatures: mel_bins must be 1.." + std::to_string(bins) +
                                  ", found " + std::to_string(options_.mel_bins));
    }
    const double top = hz_to_mel(0.5 * double(options_.sample_rate));
    std::vector<double> edges(static_cast<size_t>(options_.mel_bins + 2));
    for (size_t i = 0; i < edges.size(); ++i) {
      edges[i] = mel_to_hz(top * double(i) / double(options_.mel_bins + 1));
    }
    mel_weights_.assign(static_cast<size_t>(options_.mel_bins * bins), 0.0f);
    mel_ranges_.assign(static_cast<size_t>(options_.mel_bins), MelRange{});
    for (int64_t m = 0; m < options_.mel_bins; ++m) {
      const double lo = edges[m], mid = edges[m + 1], hi = edges[m + 2];
      MelRange& r = mel_ranges_[m];
      r.first = bins;
      for (int64_t k = 0; k < bins; ++k) {
        const double hz = double(k) * double(options_.sample_rate) / double(options_.n_fft);
        double w = 0.0;
        if (hz > lo && hz < hi) w = hz <= mid ? (hz - lo) / (mid - lo) : (hi - hz) / (hi - mid);
        if (w > 0.0) {
          mel_weights_[m * bins + k] = static_cast<float>(w);
          r.first = std::min(r.first, k);
          r.last = k + 1;
        }
      }
      if (r.first > r.last) r.first = r.last;  // a filter narrower than one bin stays silent
    }
  }

  SpeechFeatureOptions options_;
  std::vector<float> window_;
  std::vector<float> mel_weights_;  // mel_bins x fft_bins
  std::vector<MelRange> mel_ranges_;
};

// Background recordings shared by the splits (only the training split mixes them in).
struct NoiseBank {
  std::vector<std::vector<int16_t>> clips;
  std::vector<std::string> names;
};

struct SpeechDataset final : Dataset {
  int64_t n = 0;
  std::vector<int16_t> audio;      // n x clip_samples
  std::vector<int32_t> labels;     // n
  std::vector<std::string> paths;  // n, relative to the root ("yes/abc_nohash_0.wav")
  std::vector<std::string> class_names;
  std::shared_ptr<const SpeechFeatures> features = std::make_shared<SpeechFeatures>();
  std::shared_ptr<const NoiseBank> noise = std::make_shared<NoiseBank>();
  SpeechAugmentOptions augment;
  float feature_mean = 0.0f;
  float feature_std = 1.0f;
  std::string name = "speech";

  int64_t size() const override { return n; }
  Shape sample_shape() const override { return features->shape(); }
  int64_t num_classes() const override { return static_cast<int64_t>(class_names.size()); }
  int32_t label(int64_t index) const override { return labels.at(static_cast<size_t>(index)); }
  std::string describe() const override {
    return name + " (" + std::to_string(n) + " clips, " + std::to_string(num_classes()) +
           " classes, " + features->describe() + ")";
  }
  const int16_t* clip(int64_t index) const {
    return audio.data() + index * features->options().clip_samples;
  }

  std::size_t audio_count() const { return static_cast<std::size_t>(n); }
  int64_t raw_sample_bytes() const override {
    return features->options().clip_samples * int64_t(sizeof(int16_t));
  }
  std::unique_ptr<Dataset> copy_of(std::span<const int64_t> indices) const override {
    auto d = std::make_unique<SpeechDataset>();
    d->n = static_cast<int64_t>(indices.size());
    d->audio = pick_rows(audio, indices, features->options().clip_samples);
    d->labels = pick_rows(labels, indices, 1);
    if (paths.size() == audio_count()) d->paths = pick_rows(paths, indices, 1);
    d->class_names = class_names;
    d->features = features;
    d->noise = noise;
    d->augment = augment;
    d->feature_mean = feature_mean;
    d->feature_std = feature_std;
    d->name = name;
    return d;
  }
  void read_raw(int64_t index, std::span<std::byte> out) const override {
    raw_out(audio, index, out);
  }
  void write_raw(int64_t index, std::span<const std::byte> raw, int32_t label) override {
    raw_in(audio, index, raw, label);
    labels[static_cast<size_t>(index)] = label;
    if (paths.size() == audio_count()) paths[static_cast<size_t>(index)] = "(resharded)";
  }

  void gather(std::span<const int64_t> indices, float* x, int32_t* y,
              std::mt19937_64* augment_rng) const override {
    const int64_t per_sample = features->numel();
    const int64_t samples = features->options().clip_samples;
    if (!(feature_std > 0.0f)) {
      throw std::invalid_argument("SpeechDataset '" + name + "': feature_std must be > 0");
    }
    const float scale = 1.0f / feature_std;
    SpeechFeatures::Scratch& s = SpeechFeatures::thread_scratch();
    for (size_t b = 0; b < indices.size(); ++b) {
      const int64_t index = indices[b];
      if (index < 0 || index >= n) {
        throw std::out_of_range("SpeechDataset '" + name + "': batch position " +
                                std::to_string(b) + " has index " + std::to_string(index) +
                                ", expected 0.." + std::to_string(n - 1));
      }
      s.audio.resize(static_cast<size_t>(samples));
      render(clip(index), s.audio.data(), augment_rng);
      float* out = x + static_cast<int64_t>(b) * per_sample;
      features->compute(s.audio.data(), out);
      for (int64_t i = 0; i < per_sample; ++i) out[i] = (out[i] - feature_mean) * scale;
      y[b] = labels[static_cast<size_t>(index)];
    }
  }

  // The clip as floats, with the training augmentation when rng is non-null.
  void render(const int16_t* pcm, float* out, std::mt19937_64* rng) const {
    const int64_t samples = features->options().clip_samples;
    constexpr float kScale = 1.0f / 32768.0f;
    int64_t shift = 0;
    if (rng != nullptr && augment.max_shift_samples > 0) {
      shift = static_cast<int64_t>(uniform_below(*rng, 2 * augment.max_shift_samples + 1)) -
              augment.max_shift_samples;
    }
    for (int64_t i = 0; i < samples; ++i) {
      const int64_t j = i - shift;
      out[i] = (j >= 0 && j < samples) ? pcm[j] * kScale : 0.0f;
    }
    if (rng == nullptr || noise->clips.empty()) return;
    if (uniform01(*rng) >= augment.noise_probability) return;
    const std::vector<int16_t>& bg = noise->clips[uniform_below(*rng, noise->clips.size())];
    if (bg.empty()) return;
    const uint64_t length = bg.size();
    const uint64_t span = length > uint64_t(samples) ? length - uint64_t(samples) + 1 : length;
    uint64_t at = uniform_below(*rng, span);
    const float gain = static_cast<float>(uniform01(*rng) * augment.max_noise_gain) * kScale;
    for (int64_t i = 0; i < samples; ++i) {
      out[i] += gain * bg[at];
      if (++at == length) at = 0;
    }
  }

  // Global mean/std over the features of up to `clips` evenly spaced clips (no augmentation).
  std::pair<float, float> feature_statistics(int64_t clips) const {
    if (n == 0 || clips <= 0) return {0.0f, 1.0f};
    const int64_t count = std::min(clips, n);
    std::vector<float> buffer(static_cast<size_t>(features->numel()));
    double sum = 0.0, sum_sq = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t index = i * n / count;
      SpeechFeatures::Scratch& s = SpeechFeatures::thread_scratch();
      s.audio.resize(static_cast<size_t>(features->options().clip_samples));
      render(clip(index), s.audio.data(), nullptr);
      features->compute(s.audio.data(), buffer.data());
      for (const float v : buffer) {
        sum += v;
        sum_sq += double(v) * v;
      }
    }
    const double total = double(count) * double(buffer.size());
    const double mean = sum / total;
    const double variance = std::max(0.0, sum_sq / total - mean * mean);
    return {static_cast<float>(mean), static_cast<float>(std::max(std::sqrt(variance), 1e-6))};
  }
};

struct SpeechCommandsOptions {
  std::vector<std::string> words;  // empty: every word folder is a class
  bool unknown_bucket = false;     // with words: all other words -> "_unknown_" (last class)
  SpeechFeatureOptions features;
  SpeechAugmentOptions augment;
  int64_t normalisation_clips = 512;  // 0: no normalisation (mean 0, std 1)
};

struct SpeechCommands {
  SpeechDataset train, validation, test;
};

inline constexpr const char* kSpeechUnknownClass = "_unknown_";
inline constexpr const char* kSpeechBackgroundDir = "_background_noise_";

namespace speech_detail {

inline std::vector<std::string> sorted_entries(const std::filesystem::path& directory,
                                               bool directories) {
  std::vector<std::string> names;
  std::error_code error;
  for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end;
       it.increment(error)) {
    std::error_code ignored;
    const bool is_dir = it->is_directory(ignored);
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (directories
            ? is_dir
            : (!is_dir && name.size() > 4 && name.compare(name.size() - 4, 4, ".wav") == 0)) {
      names.push_back(name);
    }
  }
  if (error) {
    throw DataError("Speech Commands: cannot list '" + directory.string() +
                    "': " + error.message());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Reads a split list; returns path -> line number.
inline std::map<std::string, int64_t> read_list(const std::filesystem::path& file) {
  std::map<std::string, int64_t> entries;
  std::error_code ignored;
  if (!std::filesystem::exists(file, ignored)) {
    throw DataError("Speech Commands list '" + file.string() +
                    "': expected the file (one <word>/<clip>.wav per line), found nothing; an "
                    "empty split needs an empty file");
  }
  std::istringstream in(net::read_regular_file(file.string(), "Speech Commands list"));
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.pop_back();
    }
    if (line.empty()) continue;
    const size_t slash = line.find('/');
    const bool shape_ok = slash != std::string::npos && slash > 0 &&
                          line.find('/', slash + 1) == std::string::npos && slash + 1 < line.size();
    if (!shape_ok || line.find("..") != std::string::npos || line[0] == '/') {
      throw DataError("Speech Commands list '" + file.string() + "' line " +
                      std::to_string(number) + ": expected a relative path <word>/<clip>.wav, " +
                      "found '" + line + "'");
    }
    if (!entries.emplace(line, number).second) {
      throw DataError("Speech Commands list '" + file.string() + "' line " +
                      std::to_string(number) + ": expected each clip once, found '" + line +
                      "' again (first on line " + std::to_string(entries[line]) + ")");
    }
  }
  return entries;
}

}  // namespace speech_detail

inline SpeechCommands load_speech_commands(const std::string& root_path,
                                           const SpeechCommandsOptions& options = {}) {
  namespace fs = std::filesystem;
  const fs::path root(root_path);
  std::error_code ignored;
  if (!fs::is_directory(root, ignored)) {
    throw DataError("Speech Commands: root '" + root_path +
                    "': expected a directory of word folders, found " +
                    (fs::exists(root, ignored) ? "a file" : "nothing"));
  }
  auto features = std::make_shared<const SpeechFeatures>(options.features);
  const int64_t clip_samples = options.features.clip_samples;

  // Word folders and their clips.
  std::vector<std::string> folders;
  for (const std::string& name : speech_detail::sorted_entries(root, true)) {
    if (name[0] != '_') folders.push_back(name);
  }
  if (folders.empty()) {
    throw DataError("Speech Commands: root '" + root_path +
                    "': expected word folders (yes/, no/, ...), found none");
  }
  std::map<std::string, int32_t> class_of;  // folder -> class
  std::vector<std::string> class_names;
  if (options.words.empty()) {
    class_names = folders;
    for (size_t i = 0; i < folders.size(); ++i) class_of[folders[i]] = int32_t(i);
  } else {
    for (const std::string& word : options.words) {
      if (!std::binary_search(folders.begin(), folders.end(), word)) {
        std::string available;
        for (const std::string& f : folders) available += (available.empty() ? "" : " ") + f;
        throw DataError("Speech Commands: root '" + root_path + "': expected a folder for word '" +
                        word + "', found only: " + available);
      }
      if (!class_of.emplace(word, int32_t(class_names.size())).second) {
        throw std::invalid_argument("load_speech_commands: word '" + word + "' listed twice");
      }
      class_names.push_back(word);
    }
    if (options.unknown_bucket) {
      const int32_t unknown = int32_t(class_names.size());
      class_names.push_back(kSpeechUnknownClass);
      for (const std::string& f : folders) class_of.emplace(f, unknown);
    }
  }

  const auto validation = speech_detail::read_list(root / "validation_list.txt");
  const auto testing = speech_detail::read_list(root / "testing_list.txt");
  for (const auto& [path, line] : testing) {
    if (validation.count(path)) {
      throw DataError("Speech Commands list '" + (root / "testing_list.txt").string() + "' line " +
                      std::to_string(line) + ": expected a clip in one split only, found '" + path +
                      "' also on line " + std::to_string(validation.at(path)) +
                      " of validation_list.txt");
    }
  }

  struct Entry {
    std::string path;
    int32_t label;
  };
  std::vector<Entry> splits[3];  // train, validation, test
  std::set<std::string> present;
  for (const std::string& folder : folders) {
    for (const std::string& file : speech_detail::sorted_entries(root / folder, false)) {
      const std::string relative = folder + "/" + file;
      present.insert(relative);
      const auto it = class_of.find(folder);
      if (it == class_of.end()) continue;
      const int which = validation.count(relative) ? 1 : testing.count(relative) ? 2 : 0;
      splits[which].push_back({relative, it->second});
    }
  }
  for (const auto* list : {&validation, &testing}) {
    for (const auto& [path, line] : *list) {
      if (!present.count(path)) {
        throw DataError(
            "Speech Commands list '" +
            (root / (list == &validation ? "validation_list.txt" : "testing_list.txt")).string() +
            "' line " + std::to_string(line) + ": expected an existing clip, found '" + path +
            "' missing under " + root_path);
      }
    }
  }

  WavRequirements required;
  required.sample_rate = static_cast<uint32_t>(options.features.sample_rate);
  auto noise = std::make_shared<NoiseBank>();
  if (fs::is_directory(root / kSpeechBackgroundDir, ignored)) {
    for (const std::string& file :
         speech_detail::sorted_entries(root / kSpeechBackgroundDir, false)) {
      WavClip wav = read_wav_pcm16((root / kSpeechBackgroundDir / file).string(), required);
      noise->names.push_back(file);
      noise->clips.push_back(std::move(wav.samples));
    }
  }

  SpeechCommands result;
  const char* split_names[3] = {"train", "validation", "test"};
  SpeechDataset* targets[3] = {&result.train, &result.validation, &result.test};
  for (int s = 0; s < 3; ++s) {
    SpeechDataset& d = *targets[s];
    d.name = "speech-commands/" + std::string(split_names[s]);
    d.features = features;
    d.noise = noise;
    d.augment = options.augment;
    d.class_names = class_names;
    d.n = static_cast<int64_t>(splits[s].size());
    d.audio.assign(static_cast<size_t>(d.n * clip_samples), 0);
    d.labels.resize(splits[s].size());
    d.paths.resize(splits[s].size());
    for (size_t i = 0; i < splits[s].size(); ++i) {
      const WavClip wav = read_wav_pcm16((root / splits[s][i].path).string(), required);
      const size_t keep = std::min(wav.samples.size(), static_cast<size_t>(clip_samples));
      std::copy_n(wav.samples.begin(), keep, d.audio.begin() + int64_t(i) * clip_samples);
      d.labels[i] = splits[s][i].label;
      d.paths[i] = splits[s][i].path;
    }
  }
  const auto [mean, stddev] = result.train.feature_statistics(options.normalisation_clips);
  for (SpeechDataset* d : targets) {
    d->feature_mean = mean;
    d->feature_std = stddev;
  }
  return result;
}

}  // namespace mercury::data
