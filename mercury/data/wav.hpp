// Strict RIFF/WAVE reader and a 16-bit mono WAV writer.
//
// Contract:
//   read_wav_info(path) / read_wav_info_from_bytes(bytes, name) walk the RIFF chunk list and
//   report the format (WavInfo) without reading samples. Accepted container: "RIFF" <size>
//   "WAVE", then chunks (4-byte id, little-endian uint32 size, body, one pad byte after an
//   odd-sized body). Unknown chunks (LIST, fact, cue, ...) are skipped; exactly one 'fmt ' and one
//   'data' chunk are required, in any order. Every chunk size is checked against the bytes left
//   in the RIFF container, and the RIFF size against the file length, BEFORE anything is
//   allocated; bytes after the RIFF container are ignored. The fmt fields must be self-consistent
//   (block_align = channels * bytes per sample, byte_rate = sample_rate * block_align, data size a
//   multiple of block_align). WAVE_FORMAT_EXTENSIBLE (0xFFFE) is decoded: `sample_format` is
//   the sub-format code from its GUID.
//   check_wav_format(info, requirements, name) rejects anything but the required layout; the
//   Speech Commands loader requires PCM (format 1), 16-bit, mono, 16 kHz. A requirement of 0
//   means "any" (the espeak-ng generator reads 22050 Hz output this way).
//   read_wav_pcm16(path, requirements) = info + check + samples (int16, host order).
//   Every error is a DataError: "WAV file '<name>': <what> at byte offset <k> (chunk '<id>'):
//   expected <x>, found <y>".
//   encode_wav_pcm16(samples, rate) returns a canonical 44-byte-header PCM file;
//   write_wav_pcm16(path, samples, rate) writes it via AtomicFileWriter (temp + rename).
//   Thread-safe (no shared state).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "mercury/data/idx.hpp"
#include "mercury/io/atomic_file.hpp"
#include "mercury/io/input_file.hpp"

namespace mercury::data {

inline constexpr uint16_t kWavFormatPcm = 1;
inline constexpr uint16_t kWavFormatFloat = 3;
inline constexpr uint16_t kWavFormatExtensible = 0xFFFE;

// Samples beyond this are refused before allocation (default: 1 hour of 16 kHz mono audio).
inline constexpr uint64_t kDefaultWavMaxSamples = uint64_t{16000} * 3600;

struct WavInfo {
  uint16_t format_tag = 0;     // as stored (1 PCM, 3 float, 0xFFFE extensible, ...)
  uint16_t sample_format = 0;  // format_tag, or the sub-format code of an extensible file
  uint16_t channels = 0;
  uint32_t sample_rate = 0;
  uint32_t byte_rate = 0;
  uint16_t block_align = 0;
  uint16_t bits_per_sample = 0;
  uint64_t fmt_offset = 0;   // byte offset of the 'fmt ' chunk header
  uint64_t data_offset = 0;  // byte offset of the first sample
  uint64_t data_bytes = 0;
  uint64_t frames() const { return block_align ? data_bytes / block_align : 0; }
};

// What a caller needs; 0 = any.
struct WavRequirements {
  uint16_t sample_format = kWavFormatPcm;
  uint16_t channels = 1;
  uint32_t sample_rate = 16000;
  uint16_t bits_per_sample = 16;
};

struct WavClip {
  WavInfo info;
  std::vector<int16_t> samples;  // interleaved if channels > 1
};

namespace wav_detail {

inline std::string format_name(uint16_t tag) {
  switch (tag) {
    case 1:
      return "PCM";
    case 2:
      return "Microsoft ADPCM";
    case 3:
      return "IEEE float";
    case 6:
      return "A-law";
    case 7:
      return "mu-law";
    case 0x11:
      return "IMA ADPCM";
    case 0x55:
      return "MPEG layer 3";
    case kWavFormatExtensible:
      return "extensible";
    default:
      return "unknown format";
  }
}

inline std::string chunk_id_text(const uint8_t* id) {
  std::string text;
  for (int i = 0; i < 4; ++i) {
    const char c = static_cast<char>(id[i]);
    if (c >= 0x20 && c < 0x7F) {
      text += c;
    } else {
      text += "\\x" + idx_detail::hex_byte(id[i]).substr(2);
    }
  }
  return text;
}

inline uint16_t le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}
inline uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Random-access bytes; read_at throws DataError when fewer than n bytes are available.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  virtual void read_at(uint64_t offset, void* destination, size_t n) = 0;
};

class FileSource final : public Source {
 public:
  FileSource(io::InputFile& file, uint64_t size) : file_(file), size_(size) {}
  uint64_t size() const override { return size_; }
  void read_at(uint64_t offset, void* destination, size_t n) override {
    file_.seek(offset);
    const size_t got = file_.read_fully(destination, n);
    if (got != n) {  // the file shrank while we read it
      throw DataError("WAV file '" + file_.path() + "': read at byte offset " +
                      std::to_string(offset) + ": expected " + std::to_string(n) +
                      " bytes, found " + std::to_string(got) + " (file changed while reading?)");
    }
  }

 private:
  io::InputFile& file_;
  uint64_t size_;
};

class MemorySource final : public Source {
 public:
  explicit MemorySource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  void read_at(uint64_t offset, void* destination, size_t n) override {
    if (offset > bytes_.size() || n > bytes_.size() - offset) {
      throw DataError("WAV bytes: read past the end at byte offset " + std::to_string(offset));
    }
    std::memcpy(destination, bytes_.data() + offset, n);
  }

 private:
  std::span<const uint8_t> bytes_;
};

inline void parse_fmt(Source& in, uint64_t header_offset, uint32_t size, const std::string& prefix,
                      WavInfo& info) {
  const uint64_t body = header_offset + 8;
  const std::string where = " (chunk 'fmt ' at byte offset " + std::to_string(header_offset) + ")";
  if (size < 16) {
    throw DataError(prefix + "fmt chunk size at byte offset " + std::to_string(header_offset + 4) +
                    where + ": expected at least 16 bytes, found " + std::to_string(size));
  }
  std::array<uint8_t, 40> b{};
  in.read_at(body, b.data(), std::min<size_t>(size, b.size()));
  info.fmt_offset = header_offset;
  info.format_tag = le16(&b[0]);
  info.channels = le16(&b[2]);
  info.sample_rate = le32(&b[4]);
  info.byte_rate = le32(&b[8]);
  info.block_align = le16(&b[12]);
  info.bits_per_sample = le16(&b[14]);
  info.sample_format = info.format_tag;
  if (info.format_tag == kWavFormatExtensible) {
    if (size < 40) {
      throw DataError(
          prefix + "fmt chunk size at byte offset " + std::to_string(header_offset + 4) + where +
          ": expected at least 40 bytes for WAVE_FORMAT_EXTENSIBLE, found " + std::to_string(size));
    }
    const uint16_t extension = le16(&b[16]);
    if (extension < 22) {
      throw DataError(
          prefix + "extension size (cbSize) at byte offset " + std::to_string(body + 16) + where +
          ": expected at least 22 for WAVE_FORMAT_EXTENSIBLE, found " + std::to_string(extension));
    }
    // SubFormat GUID: <format code, 2 bytes> 00 00 00 00 10 00 80 00 00 AA 00 38 9B 71.
    static constexpr std::array<uint8_t, 14> kGuidTail = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                                          0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    if (!std::equal(kGuidTail.begin(), kGuidTail.end(), b.begin() + 26)) {
      throw DataError(prefix + "SubFormat GUID at byte offset " + std::to_string(body + 24) +
                      where + ": expected a KSDATAFORMAT_SUBTYPE_* GUID (xxxx0000-0000-0010-8000-" +
                      "00aa00389b71), found another GUID");
    }
    info.sample_format = le16(&b[24]);
  }
  if (info.channels == 0) {
    throw DataError(prefix + "channel count at byte offset " + std::to_string(body + 2) + where +
                    ": expected at least 1, found 0");
  }
  if (info.sample_rate == 0) {
    throw DataError(prefix + "sample rate at byte offset " + std::to_string(body + 4) + where +
                    ": expected a positive rate, found 0");
  }
  const bool linear = info.sample_format == kWavFormatPcm || info.sample_format == kWavFormatFloat;
  if (linear) {
    if (info.bits_per_sample == 0 || info.bits_per_sample > 64) {
      throw DataError(prefix + "bits per sample at byte offset " + std::to_string(body + 14) +
                      where + ": expected 1..64, found " + std::to_string(info.bits_per_sample));
    }
    const uint32_t expected_align = info.channels * ((info.bits_per_sample + 7u) / 8u);
    if (info.block_align != expected_align) {
      throw DataError(prefix + "block align at byte offset " + std::to_string(body + 12) + where +
                      ": expected " + std::to_string(expected_align) + " (" +
                      std::to_string(info.channels) + " channels x " +
                      std::to_string(info.bits_per_sample) + " bits), found " +
                      std::to_string(info.block_align));
    }
    const uint64_t expected_rate = uint64_t{info.sample_rate} * info.block_align;
    if (info.byte_rate != expected_rate) {
      throw DataError(prefix + "byte rate at byte offset " + std::to_string(body + 8) + where +
                      ": expected " + std::to_string(expected_rate) +
                      " (sample rate x block align), found " + std::to_string(info.byte_rate));
    }
  }
}

inline WavInfo parse_info(Source& in, const std::string& name) {
  const std::string prefix = "WAV file '" + name + "': ";
  const uint64_t file_size = in.size();
  if (file_size < 12) {
    throw DataError(prefix + "truncated RIFF header at byte offset 0: expected 12 bytes, found " +
                    std::to_string(file_size));
  }
  std::array<uint8_t, 12> header{};
  in.read_at(0, header.data(), header.size());
  if (std::memcmp(header.data(), "RIFF", 4) != 0) {
    const std::string found = chunk_id_text(header.data());
    throw DataError(prefix + "container id at byte offset 0: expected 'RIFF', found '" + found +
                    "'" +
                    (found == "RIFX"   ? " (big-endian WAV is not supported)"
                     : found == "RF64" ? " (64-bit RF64 WAV is not supported)"
                                       : " (not a WAV file)"));
  }
  if (std::memcmp(header.data() + 8, "WAVE", 4) != 0) {
    throw DataError(prefix + "form type at byte offset 8: expected 'WAVE', found '" +
                    chunk_id_text(header.data() + 8) + "'");
  }
  const uint64_t riff_size = le32(header.data() + 4);
  if (riff_size < 4 || riff_size > file_size - 8) {
    throw DataError(prefix + "RIFF size at byte offset 4: expected 4.." +
                    std::to_string(file_size - 8) + " (the file has " + std::to_string(file_size) +
                    " bytes), found " + std::to_string(riff_size) +
                    (riff_size > file_size - 8 ? " (file truncated?)" : ""));
  }
  const uint64_t riff_end = 8 + riff_size;

  WavInfo info;
  bool have_fmt = false;
  bool have_data = false;
  std::string chunks_seen;
  uint64_t position = 12;
  while (position < riff_end) {
    if (riff_end - position < 8) {
      throw DataError(prefix + "truncated chunk header at byte offset " + std::to_string(position) +
                      ": expected 8 bytes (id + size), found " +
                      std::to_string(riff_end - position) + " before the end of the RIFF data");
    }
    std::array<uint8_t, 8> chunk{};
    in.read_at(position, chunk.data(), chunk.size());
    const std::string id = chunk_id_text(chunk.data());
    const uint32_t size = le32(chunk.data() + 4);
    const uint64_t body = position + 8;
    if (size > riff_end - body) {
      throw DataError(
          prefix + "size of chunk '" + id + "' at byte offset " + std::to_string(position + 4) +
          ": expected at most " + std::to_string(riff_end - body) +
          " (bytes left in the RIFF data), found " + std::to_string(size) +
          (id == "data" ? " (data chunk truncated)" : " (chunk extends past the file)"));
    }
    chunks_seen += (chunks_seen.empty() ? "'" : ", '") + id + "'";
    if (id == "fmt ") {
      if (have_fmt) {
        throw DataError(prefix + "second 'fmt ' chunk at byte offset " + std::to_string(position) +
                        ": expected exactly one, found another after byte offset " +
                        std::to_string(info.fmt_offset));
      }
      parse_fmt(in, position, size, prefix, info);
      have_fmt = true;
    } else if (id == "data") {
      if (have_data) {
        throw DataError(prefix + "second 'data' chunk at byte offset " + std::to_string(position) +
                        ": expected exactly one, found another");
      }
      info.data_offset = body;
      info.data_bytes = size;
      have_data = true;
    }
    position = body + size + (size & 1u);
  }
  if (!have_fmt) {
    throw DataError(prefix + "chunk list from byte offset 12: expected a 'fmt ' chunk, found " +
                    (chunks_seen.empty() ? "no chunks" : "only " + chunks_seen));
  }
  if (!have_data) {
    throw DataError(prefix + "chunk list from byte offset 12: expected a 'data' chunk, found " +
                    "only " + chunks_seen);
  }
  if (info.block_align != 0 && info.data_bytes % info.block_align != 0) {
    throw DataError(prefix + "size of chunk 'data' at byte offset " +
                    std::to_string(info.data_offset - 4) + ": expected a multiple of the block " +
                    "align (" + std::to_string(info.block_align) + " bytes), found " +
                    std::to_string(info.data_bytes));
  }
  return info;
}

inline std::vector<int16_t> read_samples(Source& in, const WavInfo& info, const std::string& name,
                                         uint64_t max_samples) {
  const uint64_t count = info.data_bytes / 2;
  if (count > max_samples) {
    throw DataError("WAV file '" + name + "': size of chunk 'data' at byte offset " +
                    std::to_string(info.data_offset - 4) + ": expected at most " +
                    std::to_string(max_samples) + " samples, found " + std::to_string(count));
  }
  std::vector<int16_t> samples(count);
  // Read in bounded chunks, converting little-endian bytes to host int16.
  std::array<uint8_t, 8192> buffer{};
  uint64_t done = 0;
  while (done < count) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(count - done, buffer.size() / 2));
    in.read_at(info.data_offset + 2 * done, buffer.data(), 2 * n);
    for (size_t i = 0; i < n; ++i) samples[done + i] = static_cast<int16_t>(le16(&buffer[2 * i]));
    done += n;
  }
  return samples;
}

template <typename Body>
auto with_file(const std::string& path, Body&& body) {
  try {
    io::InputFile file(path);
    if (!file.size()) {
      throw DataError("WAV file '" + path + "': expected a regular file of known size");
    }
    FileSource source(file, *file.size());
    return body(source);
  } catch (const std::system_error& error) {
    throw DataError("WAV file '" + path + "': " + error.what());
  }
}

}  // namespace wav_detail

inline void check_wav_format(const WavInfo& info, const WavRequirements& required,
                             const std::string& name) {
  const std::string prefix = "WAV file '" + name + "': ";
  const uint64_t body = info.fmt_offset + 8;
  const std::string where =
      " (chunk 'fmt ' at byte offset " + std::to_string(info.fmt_offset) + ")";
  if (required.sample_format != 0 && info.sample_format != required.sample_format) {
    const bool extensible = info.format_tag == kWavFormatExtensible;
    throw DataError(prefix +
                    (extensible
                         ? "extensible sub-format at byte offset " + std::to_string(body + 24)
                         : "format tag at byte offset " + std::to_string(body)) +
                    where + ": expected " + std::to_string(required.sample_format) + " (" +
                    wav_detail::format_name(required.sample_format) + "), found " +
                    std::to_string(info.sample_format) + " (" +
                    wav_detail::format_name(info.sample_format) + ")");
  }
  if (required.channels != 0 && info.channels != required.channels) {
    throw DataError(prefix + "channel count at byte offset " + std::to_string(body + 2) + where +
                    ": expected " + std::to_string(required.channels) +
                    (required.channels == 1 ? " (mono)" : "") + ", found " +
                    std::to_string(info.channels) + (info.channels == 2 ? " (stereo)" : ""));
  }
  if (required.sample_rate != 0 && info.sample_rate != required.sample_rate) {
    throw DataError(prefix + "sample rate at byte offset " + std::to_string(body + 4) + where +
                    ": expected " + std::to_string(required.sample_rate) + " Hz, found " +
                    std::to_string(info.sample_rate) + " Hz (resample the file first)");
  }
  if (required.bits_per_sample != 0 && info.bits_per_sample != required.bits_per_sample) {
    throw DataError(prefix + "bits per sample at byte offset " + std::to_string(body + 14) + where +
                    ": expected " + std::to_string(required.bits_per_sample) + ", found " +
                    std::to_string(info.bits_per_sample));
  }
}

inline WavInfo read_wav_info(const std::string& path) {
  return wav_detail::with_file(
      path, [&](wav_detail::Source& in) { return wav_detail::parse_info(in, path); });
}

inline WavInfo read_wav_info_from_bytes(std::span<const uint8_t> bytes,
                                        const std::string& name = "<memory>") {
  wav_detail::MemorySource source(bytes);
  return wav_detail::parse_info(source, name);
}

// Reads a 16-bit PCM file that meets `required` (bits_per_sample is forced to 16).
inline WavClip read_wav_pcm16(const std::string& path, WavRequirements required = {},
                              uint64_t max_samples = kDefaultWavMaxSamples) {
  required.bits_per_sample = 16;
  required.sample_format = kWavFormatPcm;
  return wav_detail::with_file(path, [&](wav_detail::Source& in) {
    WavClip clip;
    clip.info = wav_detail::parse_info(in, path);
    check_wav_format(clip.info, required, path);
    clip.samples = wav_detail::read_samples(in, clip.info, path, max_samples);
    return clip;
  });
}

inline WavClip read_wav_pcm16_from_bytes(std::span<const uint8_t> bytes,
                                         const std::string& name = "<memory>",
                                         WavRequirements required = {},
                                         uint64_t max_samples = kDefaultWavMaxSamples) {
  required.bits_per_sample = 16;
  required.sample_format = kWavFormatPcm;
  wav_detail::MemorySource source(bytes);
  WavClip clip;
  clip.info = wav_detail::parse_info(source, name);
  check_wav_format(clip.info, required, name);
  clip.samples = wav_detail::read_samples(source, clip.info, name, max_samples);
  return clip;
}

// Canonical mono 16-bit PCM file: RIFF header, 16-byte 'fmt ' chunk, 'data' chunk.
inline std::string encode_wav_pcm16(std::span<const int16_t> samples, uint32_t sample_rate) {
  const uint64_t data_bytes = uint64_t{2} * samples.size();
  if (data_bytes > 0xFFFFFFFFull - 36) {
    throw std::invalid_argument("encode_wav_pcm16: expected at most 2^31 samples, found " +
                                std::to_string(samples.size()));
  }
  std::string out;
  out.reserve(44 + data_bytes);
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  auto put16 = [&](uint16_t v) {
    out += static_cast<char>(v & 0xFF);
    out += static_cast<char>(v >> 8);
  };
  out += "RIFF";
  put32(static_cast<uint32_t>(36 + data_bytes));
  out += "WAVEfmt ";
  put32(16);
  put16(kWavFormatPcm);
  put16(1);
  put32(sample_rate);
  put32(sample_rate * 2);
  put16(2);
  put16(16);
  out += "data";
  put32(static_cast<uint32_t>(data_bytes));
  for (const int16_t s : samples) put16(static_cast<uint16_t>(s));
  return out;
}

inline void write_wav_pcm16(const std::string& path, std::span<const int16_t> samples,
                            uint32_t sample_rate) {
  io::write_file_atomically(path, encode_wav_pcm16(samples, sample_rate));
}

}  // namespace mercury::data
