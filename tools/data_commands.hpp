// Offline data generators behind `mercury data ...`: datasets this machine can make without
// downloading anything (METHOD.md, "Data available on these machines without downloads").
//
// Contract:
//   speech_synth(options, progress)   spoken keywords synthesised with espeak-ng, written in the
//     Speech Commands v0.02 layout (mercury/data/speech_commands.hpp reads it back):
//       <out>/<word>/<speaker>_nohash_<k>.wav   16 kHz mono 16-bit, exactly 1 s
//       <out>/_background_noise_/{white,pink,brown}_noise.wav
//       <out>/validation_list.txt, testing_list.txt   whole SPEAKERS held out (a speaker is one
//         espeak-ng voice + variant), so test accuracy measures unseen voices
//       <out>/speakers.txt   "<speaker id> <voice+variant> <split>" per line
//     Each clip: espeak-ng -v <voice>+<variant> -s <rate> -p <pitch> -w <tmp> <word> (no shell,
//     tools/process.hpp; exit code checked, killed after process_timeout_seconds), 22050 Hz to
//     16 kHz with a Hann-windowed sinc (32 taps a side, cutoff 0.95 of the output Nyquist),
//     silence trimmed, peak-normalised to a random level, placed at a random offset in 1 s
//     (centre-cropped if longer), mixed with a random segment of one noise file at a random gain.
//     Every random choice comes from a per-file seed = hash(seed, file path): the output is a
//     pure function of the options and the espeak-ng version, whatever the order or resumption.
//     Files are written via temp name + rename (AtomicFileWriter): an interrupted run leaves no
//     half-written file. Markers make re-runs safe: "<out>/.mercury-speech-synth" holds the
//     option fingerprint and "partial" or "complete". Same options + complete -> nothing to do.
//     Same options + partial -> resume (existing clips are kept, missing ones synthesised).
//     Different options, or a non-empty directory without a marker -> ToolError saying what to do.
//   debian_text(options, progress)    short real texts labelled by Debian section, from
//     `apt-cache dumpavail` (or options.input_file), written as AG-News-style CSV:
//       <out>/train.csv, test.csv   "class","title","description" (class 1..K, RFC 4180 quoting;
//                                   title = short description, description = long description)
//       <out>/classes.txt          class names, line i = class i
//     Section prefixes "contrib/", "non-free/", "non-free-firmware/" are stripped; packages are
//     de-duplicated by name and by identical text; the K most common sections (ties by name) are
//     kept; the split is hash(seed, package name) < test_fraction. Deterministic for a given
//     package index. parse_dumpavail / build_debian_text / debian_text_from_stream make every
//     stage testable without apt-cache.
//   fashion_mnist_check(options, progress)   finds and loads both Fashion-MNIST splits and reports
//     counts and class balance; returns 0 if they match 60000/10000 x 10 classes, else 1.
//   All three return 0 on success and throw ToolError (or DataError) with a message naming the
//   file / program / option and what to do; the CLI prints what() and exits non-zero.
//   Not thread-safe with itself on the same output directory.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <map>
#include <numbers>
#include <numeric>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mercury/base/clock.hpp"
#include "mercury/base/hash.hpp"
#include "mercury/base/random.hpp"
#include "mercury/data/fashion_mnist.hpp"
#include "mercury/data/speech_commands.hpp"
#include "mercury/data/text.hpp"
#include "mercury/data/wav.hpp"
#include "mercury/io/atomic_file.hpp"
#include "net/file_kind.hpp"
#include "tools/process.hpp"

namespace mercury::tools {

// ---- small deterministic helpers ----------------------------------------------------------------

// A seeded 64-bit hash of text: FNV-1a from a seed-dependent basis, then MurmurHash3's
// finaliser (FNV alone leaves the high bits poorly mixed for short keys).
inline uint64_t seeded_hash64(std::string_view text, uint64_t seed = 0) {
  uint64_t h = base::fnv1a64(text, base::kFnv64Offset ^ (seed * 0x9E3779B97F4A7C15ull));
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

inline double hash_unit(std::string_view text, uint64_t seed) {
  return static_cast<double>(seeded_hash64(text, seed) >> 11) * 0x1.0p-53;
}

inline std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

inline std::string duration_text(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 60 ? std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s"
                 : std::to_string(s) + "s";
}

// Hann-windowed sinc resampler (band-limited to 0.95 of the lower Nyquist). The rates are
// integers, so output sample j sits at input position j*q/p (p/q = to/from in lowest terms) and
// its tap weights depend only on j mod p: they are computed once per phase.
inline std::vector<float> resample(std::span<const float> in, uint32_t from_rate,
                                   uint32_t to_rate) {
  if (from_rate == 0 || to_rate == 0) throw std::invalid_argument("resample: rates must be > 0");
  const uint64_t g = std::gcd(uint64_t{from_rate}, uint64_t{to_rate});
  const uint64_t p = to_rate / g, q = from_rate / g;
  if (p > 4096)
    throw std::invalid_argument("resample: rate ratio too fine (more than 4096 phases)");
  const double ratio = double(to_rate) / double(from_rate);
  const double cutoff = 0.95 * std::min(1.0, ratio);  // fraction of the input Nyquist
  const double reach = 32.0 / std::min(1.0, ratio);   // taps a side, in input samples
  const auto half = static_cast<int64_t>(std::ceil(reach));
  const size_t taps = static_cast<size_t>(2 * half);
  std::vector<float> weights(p * taps);
  for (uint64_t phase = 0; phase < p; ++phase) {
    const double frac = double(phase * q % p) / double(p);
    for (size_t i = 0; i < taps; ++i) {
      const double x = frac + double(half - 1) - double(i);  // t - k
      if (std::abs(x) >= reach) continue;
      const double arg = std::numbers::pi * cutoff * x;
      const double sinc = x == 0.0 ? 1.0 : std::sin(arg) / arg;
      const double window = 0.5 + 0.5 * std::cos(std::numbers::pi * x / reach);
      weights[phase * taps + i] = static_cast<float>(cutoff * sinc * window);
    }
  }
  const auto n = static_cast<int64_t>(in.size());
  const size_t out_n = static_cast<size_t>(uint64_t(in.size()) * p / q);
  std::vector<float> out(out_n);
  for (size_t j = 0; j < out_n; ++j) {
    const auto base = static_cast<int64_t>(uint64_t(j) * q / p);
    const float* w = weights.data() + (uint64_t(j) % p) * taps;
    const int64_t first = base - half + 1;
    double acc = 0.0;
    for (size_t i = 0; i < taps; ++i) {
      const int64_t k = first + static_cast<int64_t>(i);
      if (k >= 0 && k < n) acc += double(in[static_cast<size_t>(k)]) * w[i];
    }
    out[j] = static_cast<float>(acc);
  }
  return out;
}

inline int16_t to_pcm16(float v) {
  const float scaled = std::round(v * 32767.0f);
  return static_cast<int16_t>(std::clamp(scaled, -32768.0f, 32767.0f));
}

// Background noise of a named colour, RMS 0.2 (full scale 1).
inline std::vector<float> make_noise(const std::string& colour, size_t samples, uint64_t seed) {
  std::mt19937_64 rng(seeded_hash64(colour, seed));
  std::vector<float> out(samples);
  double b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0, brown = 0;
  for (size_t i = 0; i < samples; ++i) {
    const double w = base::standard_normal(rng);
    double v = w;
    if (colour == "pink") {  // Paul Kellet's refined pink filter
      b0 = 0.99886 * b0 + w * 0.0555179;
      b1 = 0.99332 * b1 + w * 0.0750759;
      b2 = 0.96900 * b2 + w * 0.1538520;
      b3 = 0.86650 * b3 + w * 0.3104856;
      b4 = 0.55000 * b4 + w * 0.5329522;
      b5 = -0.7616 * b5 - w * 0.0168980;
      v = b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362;
      b6 = w * 0.115926;
    } else if (colour == "brown") {  // leaky integrator
      brown = 0.998 * brown + 0.05 * w;
      v = brown;
    }
    out[i] = static_cast<float>(v);
  }
  double sum_sq = 0;
  for (const float v : out) sum_sq += double(v) * v;
  const double rms = std::sqrt(sum_sq / std::max<size_t>(samples, 1));
  const float gain = rms > 0 ? static_cast<float>(0.2 / rms) : 0.0f;
  for (float& v : out) v = std::clamp(v * gain, -1.0f, 1.0f);
  return out;
}

// ---- speech-synth -------------------------------------------------------------------------------

struct SpeechSynthOptions {
  std::string output_dir;
  std::vector<std::string> words = {"yes",   "no", "up",  "down", "left",
                                    "right", "on", "off", "stop", "go"};
  std::vector<std::string> unknown_words = {"bed", "bird", "cat", "dog", "happy", "house", "tree"};
  std::vector<std::string> voices;  // empty: every English espeak-ng voice (MBROLA ones skipped)
  std::vector<std::string> variants = {"m1", "m2", "m3", "m4", "m5", "m6",
                                       "m7", "f1", "f2", "f3", "f4"};  // "" = the plain voice
  std::vector<int> rates = {140, 180};                                 // words per minute
  std::vector<int> pitches = {35, 65};                                 // 0..99
  double test_fraction = 0.15;                                         // of speakers
  double validation_fraction = 0.15;                                   // of speakers
  uint64_t seed = 1;
  double noise_seconds = 60.0;
  double max_noise_gain = 0.1;  // clip noise = gain * (RMS 0.2 noise), gain uniform in [0, max]
  double process_timeout_seconds = 30.0;
  std::string espeak = "espeak-ng";
};

struct SynthSpeaker {
  std::string spec;  // "en-us+f3"
  std::string id;    // 8 hex digits
  int split = 0;     // 0 train, 1 validation, 2 test
};

// English voices from `espeak-ng --voices=en` (Language column), skipping MBROLA voices.
inline std::vector<std::string> espeak_english_voices(const SpeechSynthOptions& o) {
  const ProcessResult r = run_process({o.espeak, "--voices=en"}, o.process_timeout_seconds);
  if (!r.ok()) {
    throw ToolError("'" + o.espeak + " --voices=en' failed (" + r.status() + "): " + r.err);
  }
  std::istringstream lines(r.out);
  std::string line;
  std::getline(lines, line);  // header
  std::vector<std::string> voices;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string priority, language, age_gender, name, file;
    if (!(fields >> priority >> language >> age_gender >> name >> file)) continue;
    if (language == "variant" || language.rfind("en", 0) != 0 || file.rfind("mb/", 0) == 0)
      continue;
    if (std::find(voices.begin(), voices.end(), language) == voices.end()) {
      voices.push_back(language);
    }
  }
  std::sort(voices.begin(), voices.end());
  return voices;
}

inline std::vector<SynthSpeaker> plan_speakers(const std::vector<std::string>& voices,
                                               const std::vector<std::string>& variants,
                                               const SpeechSynthOptions& o) {
  std::vector<SynthSpeaker> speakers;
  std::set<std::string> ids;
  for (const std::string& voice : voices) {
    for (const std::string& variant : variants) {
      SynthSpeaker s;
      s.spec = variant.empty() ? voice : voice + "+" + variant;
      char hex[16];
      std::snprintf(hex, sizeof hex, "%08x",
                    static_cast<unsigned>(seeded_hash64(s.spec) & 0xFFFFFFFFu));
      s.id = hex;
      if (!ids.insert(s.id).second) {
        throw ToolError("speech-synth: speaker id collision for '" + s.spec + "'; drop a variant");
      }
      speakers.push_back(s);
    }
  }
  // Held-out speakers: ordered by hash(seed, spec); the first go to test, the next to validation.
  std::vector<size_t> order(speakers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return seeded_hash64(speakers[a].spec, o.seed) < seeded_hash64(speakers[b].spec, o.seed);
  });
  const size_t n = speakers.size();
  size_t n_test = n >= 2 ? std::max<size_t>(1, std::llround(double(n) * o.test_fraction)) : 0;
  size_t n_val = n >= 3 ? std::max<size_t>(1, std::llround(double(n) * o.validation_fraction)) : 0;
  if (o.test_fraction <= 0) n_test = 0;
  if (o.validation_fraction <= 0) n_val = 0;
  while (n_test + n_val >= n && n_val > 0) --n_val;
  while (n_test + n_val >= n && n_test > 0) --n_test;
  for (size_t r = 0; r < n; ++r)
    speakers[order[r]].split = r < n_test ? 2 : r < n_test + n_val ? 1 : 0;
  return speakers;
}

// One synthesised clip at 16 kHz, 1 s, noise mixed in.
inline std::vector<int16_t> synthesise_clip(const SpeechSynthOptions& o, const std::string& word,
                                            const SynthSpeaker& speaker, int rate, int pitch,
                                            const std::string& relative_path,
                                            const std::vector<std::vector<float>>& noises,
                                            const std::string& temp_wav) {
  const ProcessResult r = run_process({o.espeak, "-v", speaker.spec, "-s", std::to_string(rate),
                                       "-p", std::to_string(pitch), "-w", temp_wav, word},
                                      o.process_timeout_seconds);
  if (!r.ok()) {
    throw ToolError("speech-synth: '" + o.espeak + " -v " + speaker.spec + " -s " +
                    std::to_string(rate) + " -p " + std::to_string(pitch) + " -w " + temp_wav +
                    " " + word + "' failed (" + r.status() + "): " + r.err);
  }
  data::WavRequirements any_rate;
  any_rate.sample_rate = 0;
  const data::WavClip wav = data::read_wav_pcm16(temp_wav, any_rate);
  std::filesystem::remove(temp_wav);
  std::vector<float> raw(wav.samples.size());
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = wav.samples[i] / 32768.0f;
  std::vector<float> audio = resample(raw, wav.info.sample_rate, 16000);

  // Trim leading/trailing silence (below 5% of the peak), keeping a 10 ms margin.
  float peak = 0;
  for (const float v : audio) peak = std::max(peak, std::abs(v));
  if (peak <= 0)
    throw ToolError("speech-synth: espeak-ng produced silence for '" + relative_path + "'");
  size_t first = 0, last = audio.size();
  while (first < audio.size() && std::abs(audio[first]) < 0.05f * peak) ++first;
  while (last > first && std::abs(audio[last - 1]) < 0.05f * peak) --last;
  first = first > 160 ? first - 160 : 0;
  last = std::min(audio.size(), last + 160);

  std::mt19937_64 rng(seeded_hash64(relative_path, o.seed));
  constexpr size_t kClip = 16000;
  std::vector<float> clip(kClip, 0.0f);
  const size_t length = last - first;
  const float level = static_cast<float>(0.3 + 0.6 * base::uniform01(rng)) / peak;
  if (length >= kClip) {
    const size_t skip = first + (length - kClip) / 2;
    for (size_t i = 0; i < kClip; ++i) clip[i] = audio[skip + i] * level;
  } else {
    const size_t offset = data::uniform_below(rng, kClip - length + 1);
    for (size_t i = 0; i < length; ++i) clip[offset + i] = audio[first + i] * level;
  }
  if (!noises.empty()) {
    const std::vector<float>& noise = noises[data::uniform_below(rng, noises.size())];
    const size_t at = noise.size() > kClip ? data::uniform_below(rng, noise.size() - kClip + 1) : 0;
    const float gain = static_cast<float>(base::uniform01(rng) * o.max_noise_gain);
    for (size_t i = 0; i < kClip && at + i < noise.size(); ++i) clip[i] += gain * noise[at + i];
  }
  std::vector<int16_t> pcm(kClip);
  for (size_t i = 0; i < kClip; ++i) pcm[i] = to_pcm16(clip[i]);
  return pcm;
}

inline constexpr const char* kSynthMarker = ".mercury-speech-synth";

inline int speech_synth(const SpeechSynthOptions& o, std::ostream& progress) {
  namespace fs = std::filesystem;
  if (o.output_dir.empty()) throw ToolError("speech-synth: an output directory is required");
  if (o.words.empty() || o.rates.empty() || o.pitches.empty() || o.variants.empty()) {
    throw ToolError(
        "speech-synth: words, rates, pitches and variants must be non-empty "
        "(use \"\" as the only variant for plain voices)");
  }
  const ProcessResult version = run_process({o.espeak, "--version"}, o.process_timeout_seconds);
  if (!version.ok()) {
    throw ToolError("speech-synth: '" + o.espeak + " --version' failed (" + version.status() +
                    "); install it with `apt-get install espeak-ng`");
  }
  std::string version_line = version.out.substr(0, version.out.find('\n'));

  std::vector<std::string> voices = o.voices.empty() ? espeak_english_voices(o) : o.voices;
  if (voices.empty()) throw ToolError("speech-synth: espeak-ng lists no English voices");
  const std::vector<SynthSpeaker> speakers = plan_speakers(voices, o.variants, o);
  std::vector<std::string> all_words = o.words;
  for (const auto& w : o.unknown_words) {
    if (std::find(all_words.begin(), all_words.end(), w) == all_words.end()) all_words.push_back(w);
  }
  for (const auto& w : all_words) {
    if (w.empty() || w[0] == '_' || w[0] == '-' || w.find_first_of("/. ") != std::string::npos) {
      throw ToolError("speech-synth: word '" + w + "' is not a valid folder name");
    }
  }

  // Fingerprint of everything that determines the output.
  std::ostringstream fp;
  fp << "speech-synth v1\nespeak=" << version_line << "\nwords=" << join(all_words, ",")
     << "\nvoices=" << join(voices, ",") << "\nvariants=" << join(o.variants, ",") << "\nrates=";
  for (int r : o.rates) fp << r << ",";
  fp << "\npitches=";
  for (int p : o.pitches) fp << p << ",";
  fp << "\nseed=" << o.seed << "\ntest_fraction=" << o.test_fraction
     << "\nvalidation_fraction=" << o.validation_fraction << "\nnoise_seconds=" << o.noise_seconds
     << "\nmax_noise_gain=" << o.max_noise_gain << "\n";
  const std::string fingerprint = fp.str();

  const fs::path root(o.output_dir);
  const fs::path marker = root / kSynthMarker;
  std::error_code ec;
  bool resuming = false;
  if (fs::exists(root, ec) && !fs::is_empty(root, ec)) {
    if (!fs::exists(marker, ec)) {
      throw ToolError("speech-synth: output directory '" + o.output_dir +
                      "' is not empty and was not written by speech-synth; choose a new or "
                      "empty directory");
    }
    const std::string previous = data::read_text_file(marker.string(), 1 << 20);
    const size_t cut = previous.find("status=");
    if (previous.substr(0, cut) != fingerprint) {
      throw ToolError("speech-synth: '" + o.output_dir +
                      "' holds a speech-synth output made with different options or espeak-ng "
                      "version (see " +
                      marker.string() + "); delete the directory or choose another one");
    }
    if (previous.find("status=complete") != std::string::npos) {
      progress << "speech-synth: '" << o.output_dir << "' is already complete; nothing to do\n";
      return 0;
    }
    resuming = true;
    progress << "speech-synth: '" << o.output_dir
             << "' holds a partial run with the same options; resuming (clips already present "
                "are complete and kept)\n";
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->path().filename().string().find(".tmp.") != std::string::npos) {
        fs::remove(it->path(), ec);
      }
    }
  }
  fs::create_directories(root / data::kSpeechBackgroundDir);
  if (!resuming) io::write_file_atomically(marker.string(), fingerprint + "status=partial\n");

  // Background noise: written to _background_noise_ and mixed into every clip.
  const std::vector<std::string> colours = {"white", "pink", "brown"};
  std::vector<std::vector<float>> noises;
  for (const std::string& colour : colours) {
    noises.push_back(make_noise(colour, static_cast<size_t>(o.noise_seconds * 16000), o.seed));
    std::vector<int16_t> pcm(noises.back().size());
    for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = to_pcm16(noises.back()[i]);
    const fs::path path = root / data::kSpeechBackgroundDir / (colour + "_noise.wav");
    if (!fs::exists(path, ec)) data::write_wav_pcm16(path.string(), pcm, 16000);
  }

  const size_t total = all_words.size() * speakers.size() * o.rates.size() * o.pitches.size();
  progress << "speech-synth: " << all_words.size() << " words x " << speakers.size()
           << " speakers (" << voices.size() << " voices x " << o.variants.size() << " variants) x "
           << o.rates.size() * o.pitches.size() << " rate/pitch = " << total << " clips -> "
           << o.output_dir << std::endl;
  const std::string temp_wav = (root / (".espeak-" + std::to_string(::getpid()) + ".wav")).string();
  std::vector<std::string> lists[3];
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  size_t done = 0, synthesised = 0;
  for (const std::string& word : all_words) {
    fs::create_directories(root / word);
    for (const SynthSpeaker& speaker : speakers) {
      for (size_t ri = 0; ri < o.rates.size(); ++ri) {
        for (size_t pi = 0; pi < o.pitches.size(); ++pi) {
          const std::string relative = word + "/" + speaker.id + "_nohash_" +
                                       std::to_string(ri * o.pitches.size() + pi) + ".wav";
          lists[speaker.split].push_back(relative);
          const fs::path path = root / relative;
          if (!resuming || !fs::exists(path, ec)) {
            const std::vector<int16_t> pcm = synthesise_clip(
                o, word, speaker, o.rates[ri], o.pitches[pi], relative, noises, temp_wav);
            data::write_wav_pcm16(path.string(), pcm, 16000);
            ++synthesised;
          }
          ++done;
          const auto now = std::chrono::steady_clock::now();
          if (now - last_report > std::chrono::seconds(5) || done == total) {
            last_report = now;
            const double elapsed = base::seconds_between(start, now);
            const double eta = synthesised > 0 ? elapsed / double(done) * double(total - done) : 0;
            progress << "speech-synth: " << done << "/" << total << " clips ("
                     << (100 * done / total) << "%), elapsed " << duration_text(elapsed) << ", ETA "
                     << duration_text(eta) << std::endl;
          }
        }
      }
    }
  }
  for (auto& list : lists) std::sort(list.begin(), list.end());
  io::write_file_atomically((root / "validation_list.txt").string(),
                            join(lists[1], "\n") + (lists[1].empty() ? "" : "\n"));
  io::write_file_atomically((root / "testing_list.txt").string(),
                            join(lists[2], "\n") + (lists[2].empty() ? "" : "\n"));
  std::string speaker_table;
  const char* split_names[3] = {"train", "validation", "test"};
  for (const SynthSpeaker& s : speakers) {
    speaker_table += s.id + " " + s.spec + " " + split_names[s.split] + "\n";
  }
  io::write_file_atomically((root / "speakers.txt").string(), speaker_table);
  io::write_file_atomically(marker.string(), fingerprint + "status=complete\n");
  progress << "speech-synth: done: " << lists[0].size() << " train, " << lists[1].size()
           << " validation, " << lists[2].size() << " test clips (" << synthesised
           << " synthesised this run)\n";
  return 0;
}

// ---- debian-text --------------------------------------------------------------------------------

struct DebianPackage {
  std::string name, section, short_description, long_description;
};

struct DebianTextOptions {
  std::string output_dir;
  int64_t classes = 4;  // K most common sections
  double test_fraction = 0.1;
  uint64_t seed = 1;
  int64_t max_per_class = 0;  // 0: all
  std::string input_file;     // a saved `apt-cache dumpavail`; empty: run apt_cache
  std::string apt_cache = "apt-cache";
  double process_timeout_seconds = 600.0;
};

// Stanzas of a Packages-style file (`apt-cache dumpavail`). Packages without Section or
// Description are kept with empty fields (build_debian_text drops them).
inline std::vector<DebianPackage> parse_dumpavail(std::istream& in, const std::string& name) {
  std::vector<DebianPackage> packages;
  DebianPackage current;
  bool in_stanza = false;
  std::string field;  // the field continuation lines belong to
  std::string line;
  int64_t number = 0;
  auto flush = [&] {
    if (in_stanza) packages.push_back(std::move(current));
    current = DebianPackage{};
    in_stanza = false;
    field.clear();
  };
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      flush();
      continue;
    }
    if (line[0] == ' ' || line[0] == '\t') {
      if (!in_stanza) {
        throw ToolError("package index '" + name + "' line " + std::to_string(number) +
                        ": expected a 'Field: value' line, found a continuation line outside a "
                        "stanza");
      }
      if (field == "Description") {
        const std::string text = line.substr(1);
        if (text == ".") {
          if (!current.long_description.empty()) current.long_description += "\n";
        } else {
          if (!current.long_description.empty() && current.long_description.back() != '\n') {
            current.long_description += ' ';
          }
          current.long_description += text.substr(text.find_first_not_of(' ') == std::string::npos
                                                      ? text.size()
                                                      : text.find_first_not_of(' '));
        }
      }
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      throw ToolError("package index '" + name + "' line " + std::to_string(number) +
                      ": expected 'Field: value', found '" + line.substr(0, 80) + "'");
    }
    in_stanza = true;
    field = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    const size_t begin = value.find_first_not_of(' ');
    value = begin == std::string::npos ? "" : value.substr(begin);
    if (field == "Package")
      current.name = value;
    else if (field == "Section")
      current.section = value;
    else if (field == "Description")
      current.short_description = value;
  }
  flush();
  return packages;
}

struct DebianTextCorpus {
  std::vector<std::string> classes;  // class i+1 in the CSV
  std::vector<data::TextRecord> train, test;
  int64_t packages = 0;  // stanzas read
  int64_t unique = 0;    // after de-duplication by name and text
  int64_t kept = 0;      // in the K most common sections
};

inline DebianTextCorpus build_debian_text(std::vector<DebianPackage> packages,
                                          const DebianTextOptions& o) {
  if (o.classes < 1) throw ToolError("debian-text: classes must be >= 1");
  DebianTextCorpus corpus;
  corpus.packages = static_cast<int64_t>(packages.size());
  for (DebianPackage& p : packages) {
    const size_t slash = p.section.rfind('/');
    if (slash != std::string::npos) p.section = p.section.substr(slash + 1);  // contrib/, non-free/
  }
  // By name; among stanzas of one package (several versions or architectures) the first wins.
  std::stable_sort(packages.begin(), packages.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<DebianPackage> unique;
  std::set<std::string> names, texts;
  for (DebianPackage& p : packages) {
    if (p.name.empty() || p.section.empty() || p.short_description.empty()) continue;
    if (!names.insert(p.name).second) continue;
    if (!texts.insert(p.short_description + "\n" + p.long_description).second) continue;
    unique.push_back(std::move(p));
  }
  corpus.unique = static_cast<int64_t>(unique.size());
  std::map<std::string, int64_t> counts;
  for (const DebianPackage& p : unique) ++counts[p.section];
  std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (static_cast<int64_t>(ranked.size()) < o.classes) {
    throw ToolError("debian-text: the package index has " + std::to_string(ranked.size()) +
                    " sections with usable descriptions, expected at least " +
                    std::to_string(o.classes) + " (lower --classes or run apt-get update)");
  }
  std::map<std::string, int32_t> label_of;
  for (int64_t k = 0; k < o.classes; ++k) {
    corpus.classes.push_back(ranked[k].first);
    label_of[ranked[k].first] = static_cast<int32_t>(k);
  }
  // Hash order: the split and the per-class cap do not depend on the index's order.
  std::sort(unique.begin(), unique.end(), [&](const auto& a, const auto& b) {
    return seeded_hash64(a.name, o.seed) < seeded_hash64(b.name, o.seed);
  });
  std::vector<int64_t> taken(static_cast<size_t>(o.classes), 0);
  std::vector<std::pair<std::string, data::TextRecord>> train, test;
  for (DebianPackage& p : unique) {
    const auto it = label_of.find(p.section);
    if (it == label_of.end()) continue;
    if (o.max_per_class > 0 && taken[it->second] >= o.max_per_class) continue;
    ++taken[it->second];
    data::TextRecord r{it->second, std::move(p.short_description), std::move(p.long_description)};
    (hash_unit(p.name, o.seed ^ 0x5EEDull) < o.test_fraction ? test : train)
        .emplace_back(p.name, std::move(r));
  }
  for (auto* split : {&train, &test}) {
    std::sort(split->begin(), split->end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  for (auto& [n, r] : train) corpus.train.push_back(std::move(r));
  for (auto& [n, r] : test) corpus.test.push_back(std::move(r));
  corpus.kept = static_cast<int64_t>(corpus.train.size() + corpus.test.size());
  return corpus;
}

inline std::string csv_quote(const std::string& field) {
  std::string out = "\"";
  for (const char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

inline std::string to_text_csv(const std::vector<data::TextRecord>& records) {
  std::string out;
  for (const data::TextRecord& r : records) {
    out += csv_quote(std::to_string(r.label + 1)) + "," + csv_quote(r.title) + "," +
           csv_quote(r.description) + "\n";
  }
  return out;
}

inline int debian_text_from_stream(std::istream& dump, const std::string& dump_name,
                                   const DebianTextOptions& o, std::ostream& progress) {
  namespace fs = std::filesystem;
  if (o.output_dir.empty()) throw ToolError("debian-text: an output directory is required");
  const std::vector<DebianPackage> packages = parse_dumpavail(dump, dump_name);
  if (packages.empty()) {
    throw ToolError("debian-text: '" + dump_name +
                    "' lists no packages (run `apt-get update` so apt knows the archive)");
  }
  const DebianTextCorpus corpus = build_debian_text(packages, o);
  fs::create_directories(o.output_dir);
  const fs::path root(o.output_dir);
  io::write_file_atomically((root / "train.csv").string(), to_text_csv(corpus.train));
  io::write_file_atomically((root / "test.csv").string(), to_text_csv(corpus.test));
  io::write_file_atomically((root / "classes.txt").string(), join(corpus.classes, "\n") + "\n");
  progress << "debian-text: " << corpus.packages << " stanzas, " << corpus.unique
           << " unique packages/texts, " << corpus.kept << " in the " << corpus.classes.size()
           << " most common sections (" << join(corpus.classes, ", ")
           << "): " << corpus.train.size() << " train, " << corpus.test.size() << " test -> "
           << o.output_dir << "\n";
  return 0;
}

inline int debian_text(const DebianTextOptions& o, std::ostream& progress) {
  if (!o.input_file.empty()) {
    std::istringstream in(
        net::read_regular_file(o.input_file, "debian-text: input file", std::size_t{4} << 30));
    return debian_text_from_stream(in, o.input_file, o, progress);
  }
  progress << "debian-text: running '" << o.apt_cache << " dumpavail'\n";
  ProcessResult r;
  try {
    r = run_process({o.apt_cache, "dumpavail"}, o.process_timeout_seconds);
  } catch (const ToolError& e) {
    throw ToolError(std::string("debian-text: ") + e.what() +
                    "; on Debian/Ubuntu apt-cache comes with apt, or pass a saved dump as input");
  }
  if (!r.ok()) {
    throw ToolError("debian-text: '" + o.apt_cache + " dumpavail' failed (" + r.status() +
                    "): " + r.err.substr(0, 2000));
  }
  if (r.out.empty()) {
    throw ToolError("debian-text: '" + o.apt_cache +
                    " dumpavail' printed nothing (run `apt-get update` first)");
  }
  std::istringstream in(std::move(r.out));
  return debian_text_from_stream(in, o.apt_cache + " dumpavail", o, progress);
}

// ---- fashion-mnist-check ------------------------------------------------------------------------

struct FashionMnistCheckOptions {
  std::string data_dir;  // empty: $MERCURY_DATA_DIR or the Debian package location
};

inline int fashion_mnist_check(const FashionMnistCheckOptions& o, std::ostream& progress) {
  const data::FashionMnistFiles files = data::find_fashion_mnist(o.data_dir);
  progress << "fashion-mnist: found in " << files.directory << "\n";
  bool ok = true;
  for (const data::Split split : {data::Split::kTrain, data::Split::kTest}) {
    const data::ImageDataset d = data::load_fashion_mnist(o.data_dir, split);
    std::vector<int64_t> per_class(10, 0);
    for (const int32_t l : d.labels) ++per_class[static_cast<size_t>(l)];
    const int64_t expected = split == data::Split::kTrain ? 60000 : 10000;
    progress << "fashion-mnist/" << data::split_name(split) << ": " << d.n << " images " << d.height
             << "x" << d.width << ", per class:";
    for (const int64_t c : per_class) progress << " " << c;
    progress << "\n";
    if (d.n != expected) {
      progress << "fashion-mnist/" << data::split_name(split) << ": expected " << expected
               << " images, found " << d.n << "\n";
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

}  // namespace mercury::tools
