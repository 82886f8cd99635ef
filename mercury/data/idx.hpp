// IDX reader (the MNIST / Fashion-MNIST container format), plain or gzip-compressed.
//
// Format: bytes 00 00 <type> <rank>, then `rank` big-endian uint32 dimensions, then the
// row-major payload. Only type 0x08 (unsigned byte) is supported; rank must be 1..4.
//
// Contract:
//   read_idx(path, max_bytes)                    -> IdxArray {dims, data}
//   read_idx_from_bytes(bytes, name, max_bytes)  -> same, from memory (fuzzing, embedded data)
//   Compression is detected by the gzip magic 1f 8b, never by file name. gzip needs
//   MERCURY_HAVE_ZLIB (CMake defines it and links zlib); without it a gzip input fails with a
//   DataError saying gzip support was not compiled in.
//   Everything is validated before the payload is allocated: magic, type, rank, each dimension
//   non-zero, the element-count product (overflow-checked) <= max_bytes, and - for plain input of
//   known size - that the bytes after the header are exactly the promised payload. For gzip the
//   decompressed size is only known by decompressing, so the payload buffer grows with the data
//   actually produced (never to the header's promise up front) and decompression stops at the
//   promise + 1 byte, which detects trailing data and caps decompression bombs.
//   Errors throw mercury::data::DataError: "IDX file '<name>': <field> at byte offset <k>:
//   expected <x>, found <y>". Offsets for gzip input count decompressed bytes.
//   Thread-safe (no shared state).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mercury/io/input_file.hpp"

#ifdef MERCURY_HAVE_ZLIB
#include <zlib.h>
#endif

namespace mercury::data {

// Bad or unreadable input data (IDX files, datasets). The message names the file, the byte offset
// or field, what was expected and what was found.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct IdxArray {
  std::vector<int64_t> dims;  // outermost first, as stored
  std::vector<uint8_t> data;  // row-major, product(dims) bytes

  int64_t element_count() const { return static_cast<int64_t>(data.size()); }
};

// Default cap on the payload size: 2 GiB, far above any IDX dataset in use (Fashion-MNIST train
// images are 47 MB) but small enough that a lying header cannot ask for absurd memory.
inline constexpr size_t kDefaultIdxMaxBytes = size_t{1} << 31;

namespace idx_detail {

inline constexpr uint8_t kTypeUnsignedByte = 0x08;
inline constexpr int kMaxRank = 4;

inline std::string hex_byte(uint8_t byte) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", byte);
  return text;
}

inline std::string type_name(uint8_t type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "not an IDX type";
  }
}

inline std::string dims_text(const std::vector<int64_t>& dims) {
  std::string text;
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? " x " : "") + std::to_string(dims[i]);
  return text;
}

// Where the bytes come from. read_fully returns fewer than `count` bytes only at end of input.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read_fully(uint8_t* destination, size_t count) = 0;
};

class FileSource final : public ByteSource {
 public:
  explicit FileSource(io::InputFile& file) : file_(file) {}
  size_t read_fully(uint8_t* destination, size_t count) override {
    return file_.read_fully(destination, count);
  }

 private:
  io::InputFile& file_;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  size_t read_fully(uint8_t* destination, size_t count) override {
    const size_t n = std::min(count, bytes_.size() - position_);
    std::copy_n(bytes_.data() + position_, n, destination);
    position_ += n;
    return n;
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t position_ = 0;
};

#ifdef MERCURY_HAVE_ZLIB
// Streaming gzip decoder over another source (zlib inflate with gzip framing). Accepts
// concatenated gzip members; anything after the last member that is not a gzip member is an
// error, as is a stream that ends before its end-of-member marker and CRC.
class GzipSource final : public ByteSource {
 public:
  // `already_read` holds the bytes the caller consumed from `compressed` to sniff the magic.
  GzipSource(ByteSource& compressed, std::span<const uint8_t> already_read,
             std::string error_prefix)
      : compressed_(compressed), error_prefix_(std::move(error_prefix)) {
    input_.resize(kInputChunk);
    std::copy(already_read.begin(), already_read.end(), input_.begin());
    stream_.next_in = input_.data();
    stream_.avail_in = static_cast<uInt>(already_read.size());
    compressed_offset_ = already_read.size();
    if (inflateInit2(&stream_, 15 + 16) != Z_OK) {  // 15 = max window, +16 = gzip framing only
      throw DataError(error_prefix_ + "zlib inflateInit2 failed (out of memory?)");
    }
  }
  GzipSource(const GzipSource&) = delete;
  GzipSource& operator=(const GzipSource&) = delete;
  ~GzipSource() override { inflateEnd(&stream_); }

  size_t read_fully(uint8_t* destination, size_t count) override {
    size_t produced = 0;
    while (produced < count && !finished_) {
      if (stream_.avail_in == 0 && !input_exhausted_) refill();
      if (stream_.avail_in == 0) {
        if (member_ended_) {
          finished_ = true;
          break;
        }
        throw DataError(error_prefix_ + "gzip stream truncated: compressed data ends at byte " +
                        std::to_string(compressed_offset_) +
                        " before the end-of-stream marker (expected more compressed data, "
                        "found end of file after " +
                        std::to_string(decompressed_total_) + " decompressed bytes)");
      }
      if (member_ended_) {  // more input after a complete member: it must be another member
        inflateReset(&stream_);
        member_ended_ = false;
      }
      const size_t want = std::min<size_t>(count - produced, kMaxStep);
      stream_.next_out = destination + produced;
      stream_.avail_out = static_cast<uInt>(want);
      const int status = inflate(&stream_, Z_NO_FLUSH);
      const size_t got = want - stream_.avail_out;
      produced += got;
      decompressed_total_ += got;
      if (status == Z_STREAM_END) {
        member_ended_ = true;
      } else if (status == Z_BUF_ERROR && got == 0 && stream_.avail_in > 0) {
        throw DataError(error_prefix_ + "gzip decoder made no progress (zlib Z_BUF_ERROR)");
      } else if (status != Z_OK && status != Z_BUF_ERROR) {
        const uint64_t bad_offset = compressed_offset_ - stream_.avail_in;
        throw DataError(error_prefix_ + "invalid gzip data near compressed byte offset " +
                        std::to_string(bad_offset) + ": " +
                        (stream_.msg ? stream_.msg : "zlib error " + std::to_string(status)) +
                        (members_completed_ > 0 ? " (bytes after the end of the gzip stream "
                                                  "are not another gzip member)"
                                                : ""));
      }
      if (status == Z_STREAM_END) ++members_completed_;
    }
    return produced;
  }

 private:
  static constexpr size_t kInputChunk = size_t{64} << 10;
  static constexpr size_t kMaxStep = size_t{1} << 30;  // keeps avail_out within uInt

  void refill() {
    const size_t got = compressed_.read_fully(input_.data(), input_.size());
    if (got == 0) input_exhausted_ = true;
    stream_.next_in = input_.data();
    stream_.avail_in = static_cast<uInt>(got);
    compressed_offset_ += got;
  }

  ByteSource& compressed_;
  std::string error_prefix_;
  std::vector<uint8_t> input_;
  z_stream stream_{};
  uint64_t compressed_offset_ = 0;  // compressed bytes pulled from the source so far
  uint64_t decompressed_total_ = 0;
  bool input_exhausted_ = false;
  bool member_ended_ = false;
  int members_completed_ = 0;
  bool finished_ = false;
};
#endif  // MERCURY_HAVE_ZLIB

// Parses an IDX stream. `raw_size` is the total input size when known and the input is not
// compressed; it allows the exact-length check before any payload allocation.
inline IdxArray parse_idx(ByteSource& raw, std::optional<uint64_t> raw_size,
                          const std::string& name, size_t max_bytes) {
  const std::string prefix = "IDX file '" + name + "': ";
  std::array<uint8_t, 4> magic{};
  const size_t magic_got = raw.read_fully(magic.data(), 2);

  ByteSource* source = &raw;
  bool compressed = false;
  const std::optional<uint64_t> input_size = raw_size;
#ifdef MERCURY_HAVE_ZLIB
  std::unique_ptr<GzipSource> gzip;
#endif
  if (magic_got == 2 && magic[0] == 0x1F && magic[1] == 0x8B) {
#ifdef MERCURY_HAVE_ZLIB
    gzip = std::make_unique<GzipSource>(raw, std::span<const uint8_t>(magic.data(), 2), prefix);
    source = gzip.get();
    compressed = true;
    raw_size.reset();
#else
    throw DataError(prefix +
                    "input is gzip-compressed (magic 1f 8b at byte offset 0) but gzip support "
                    "was not compiled in (build with zlib so MERCURY_HAVE_ZLIB is defined, or "
                    "gunzip the file first)");
#endif
  }
  const std::string where = compressed ? "decompressed byte offset " : "byte offset ";

  // Magic: 00 00 <type> <rank>.
  size_t header_got = 0;
  if (compressed) {
    header_got = source->read_fully(magic.data(), 4);
  } else {
    header_got = magic_got + (magic_got == 2 ? source->read_fully(magic.data() + 2, 2) : 0);
  }
  if (header_got < 4) {
    throw DataError(prefix + "truncated header at " + where +
                    "0: expected 4 magic bytes (00 00 type rank), found only " +
                    std::to_string(header_got) + " bytes");
  }
  if (magic[0] != 0 || magic[1] != 0) {
    throw DataError(prefix + "bad magic at " + where + "0: expected 00 00 <type> <rank>, found " +
                    hex_byte(magic[0]) + " " + hex_byte(magic[1]) + " (not an IDX file)");
  }
  const uint8_t type = magic[2];
  if (type != kTypeUnsignedByte) {
    throw DataError(prefix + "unsupported element type at " + where + "2: expected 0x08 " +
                    "(unsigned byte), found " + hex_byte(type) + " (" + type_name(type) + ")");
  }
  const int rank = magic[3];
  if (rank < 1 || rank > kMaxRank) {
    throw DataError(prefix + "bad rank at " + where + "3: expected 1.." + std::to_string(kMaxRank) +
                    ", found " + std::to_string(rank));
  }

  // Dimensions: big-endian uint32 each.
  std::array<uint8_t, size_t{4} * kMaxRank> dim_bytes{};
  const size_t dims_size = 4 * static_cast<size_t>(rank);
  const size_t dims_got = source->read_fully(dim_bytes.data(), dims_size);
  if (dims_got < dims_size) {
    throw DataError(prefix + "truncated header at " + where + "4: expected " +
                    std::to_string(rank) + " dimensions (" + std::to_string(dims_size) +
                    " bytes), found only " + std::to_string(dims_got) + " bytes");
  }
  IdxArray result;
  uint64_t element_count = 1;
  bool overflowed = false;
  for (size_t d = 0; d < size_t(rank); ++d) {
    const uint8_t* p = dim_bytes.data() + 4 * d;
    const uint32_t dim = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
    if (dim == 0) {
      throw DataError(prefix + "dimension " + std::to_string(d) + " at " + where +
                      std::to_string(4 + 4 * d) + ": expected a non-zero size, found 0");
    }
    result.dims.push_back(dim);
    overflowed = overflowed || __builtin_mul_overflow(element_count, uint64_t{dim}, &element_count);
  }
  if (overflowed || element_count > max_bytes) {
    throw DataError(prefix + "dimensions at " + where + "4 are too large: expected a payload of " +
                    "at most " + std::to_string(max_bytes) + " bytes, found " +
                    dims_text(result.dims) + " = " +
                    (overflowed ? "more than 2^64" : std::to_string(element_count)) + " bytes");
  }
  const uint64_t header_size = 4 + dims_size;
  const std::string payload_where = where + std::to_string(header_size);

  // Plain input of known size: check the exact length before allocating.
  if (raw_size) {
    const uint64_t available = *raw_size - std::min<uint64_t>(*raw_size, header_size);
    if (available != element_count) {
      throw DataError(prefix + (available < element_count ? "payload truncated" : "extra bytes") +
                      " at " + payload_where + ": header promises " + dims_text(result.dims) +
                      " = " + std::to_string(element_count) + " bytes, found " +
                      std::to_string(available) + " bytes after the header");
    }
    result.data.resize(element_count);
    const size_t got = source->read_fully(result.data.data(), element_count);
    if (got != element_count) {  // the file shrank while we read it
      throw DataError(prefix + "payload truncated at " + payload_where + ": expected " +
                      std::to_string(element_count) + " bytes, read only " + std::to_string(got));
    }
    return result;
  }

  // Unknown size (gzip, pipes): grow the buffer with the data actually produced. For gzip of a
  // known compressed size, deflate cannot expand more than ~1032:1, so the promised size is
  // reserved up front when that bound allows it: one allocation, no doubling (which would hold
  // old and new buffers at once and double the peak memory of loading a dataset).
  constexpr uint64_t kMaxDeflateRatio = 1032;
  if (compressed && input_size && element_count <= *input_size * kMaxDeflateRatio) {
    result.data.reserve(element_count);
  }
  constexpr size_t kFirstChunk = size_t{1} << 16;
  size_t filled = 0;
  while (filled < element_count) {
    const size_t target = std::min<uint64_t>(element_count, std::max(kFirstChunk, 2 * filled));
    result.data.resize(target);
    const size_t got = source->read_fully(result.data.data() + filled, target - filled);
    filled += got;
    if (filled < target) break;
  }
  if (filled < element_count) {
    throw DataError(prefix + "payload truncated at " + payload_where + ": header promises " +
                    dims_text(result.dims) + " = " + std::to_string(element_count) +
                    " bytes, found only " + std::to_string(filled) + " bytes" +
                    (compressed ? " after decompression" : ""));
  }
  uint8_t extra = 0;
  if (source->read_fully(&extra, 1) != 0) {
    throw DataError(prefix + "extra bytes at " + where +
                    std::to_string(header_size + element_count) + ": header promises " +
                    dims_text(result.dims) + " = " + std::to_string(element_count) +
                    " payload bytes, found more data after them" +
                    (compressed ? " (in the decompressed stream)" : ""));
  }
  return result;
}

}  // namespace idx_detail

inline IdxArray read_idx_from_bytes(std::span<const uint8_t> bytes,
                                    const std::string& name = "<memory>",
                                    size_t max_bytes = kDefaultIdxMaxBytes) {
  idx_detail::MemorySource source(bytes);
  return idx_detail::parse_idx(source, bytes.size(), name, max_bytes);
}

inline IdxArray read_idx(const std::string& path, size_t max_bytes = kDefaultIdxMaxBytes) {
  std::optional<io::InputFile> file;
  try {
    file.emplace(path);
  } catch (const std::system_error& error) {
    throw DataError("IDX file '" + path + "': " + error.what());
  }
  idx_detail::FileSource source(*file);
  try {
    return idx_detail::parse_idx(source, file->size(), path, max_bytes);
  } catch (const std::system_error& error) {  // read(2) failures
    throw DataError("IDX file '" + path + "': " + error.what());
  }
}

}  // namespace mercury::data
