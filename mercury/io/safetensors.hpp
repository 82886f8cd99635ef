// Checkpoint files in the safetensors layout (readable by PyTorch's `safetensors` package).
//
// Layout: 8-byte little-endian uint64 N, N bytes of UTF-8 JSON header padded with spaces so that
// 8 + N is a multiple of 8, then the data section. The header is an object
//   {"__metadata__": {"key": "value", ...},                  (string values only)
//    "<tensor>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// with offsets relative to the data section; tensors are contiguous, in order, without gaps or
// overlaps, and the last one ends exactly at the end of the file. Data is little-endian,
// row-major. Supported dtypes: F32, F64, I32, I64, U8.
//
// Contract:
//   write_safetensors(path, tensors, metadata): validates the tensors (unique non-empty names,
//     known dtype, non-negative shape, data non-null unless empty), adds "mercury.crc32c.all"
//     (CRC32C of the length field, the header with this value as "00000000", and the data
//     section: 8 lowercase hex digits) to __metadata__, and writes via AtomicFileWriter: a
//     failure leaves any previous file intact and no temp file. Tensor data is read in place,
//     never copied. Throws CheckpointError.
//   SafetensorsFile::load(path, checksum)  header + data, checksum verified. With
//     Checksum::required (the default) a file without "mercury.crc32c.all" is refused; with
//     Checksum::optional it loads, and an older data-only "mercury.crc32c" is still verified.
//   SafetensorsFile::load_header(path, checksum) header only (validated against the file size),
//     so shapes can be checked before the data is read; load_data() then reads and verifies.
//   SafetensorsFile::from_bytes(bytes, name, checksum)  the same from memory (fuzzing, network).
//   Header parsing is linear in its size (a SAX pass for duplicate keys and depth, then the DOM).
//   Every size is validated before allocation (header length <= 100 MB and <= file size; data
//   section length = the last tensor's end offset = file size - 8 - N). Any violation, including
//   a checksum mismatch, throws CheckpointError: "checkpoint '<file>': <field/tensor>: expected
//   <x>, found <y>".
//   entries() are in data order; find(name) returns nullptr when absent, at(name) throws.
//   bytes(entry) is the entry's raw little-endian data (only after the data is loaded); it is not
//   aligned to the dtype - copy it out with memcpy. A loaded SafetensorsFile is immutable and
//   safe to read from several threads.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "mercury/io/atomic_file.hpp"
#include "mercury/io/crc32c.hpp"
#include "mercury/io/input_file.hpp"

namespace mercury::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts need byte swapping");

// Bad, corrupt or unwritable checkpoint. The message names the file, the field or tensor, what
// was expected and what was found.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TensorRef {
  std::string name;
  std::string dtype;           // F32, F64, I32, I64, U8
  std::vector<int64_t> shape;  // [] is a scalar (one element)
  const void* data = nullptr;  // product(shape) * dtype_size(dtype) bytes, row-major
};

struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section, [begin, end)
  uint64_t end = 0;

  uint64_t byte_size() const { return end - begin; }
  int64_t element_count() const {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    return count;
  }
};

// CRC32C of the 8-byte length field, the header (with this value as "00000000") and the data
// section: a flipped bit anywhere in the file fails it.
inline constexpr std::string_view kChecksumMetadataKey = "mercury.crc32c.all";
// What files written before the header was covered carry: CRC32C of the data section only.
inline constexpr std::string_view kDataChecksumMetadataKey = "mercury.crc32c";
// Whether a file must carry kChecksumMetadataKey (files of other writers carry none).
enum class Checksum { required, optional };
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t{100} << 20;  // as safetensors

// Bytes per element, or 0 for an unsupported dtype.
inline size_t safetensors_dtype_size(std::string_view dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "U8") return 1;
  return 0;
}

namespace safetensors_detail {

inline constexpr const char* kSupportedDtypes = "F32, F64, I32, I64, U8";
inline constexpr int kMaxHeaderDepth = 8;  // real headers nest 3 deep

inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

inline std::string offsets_text(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

inline std::string hex8(uint8_t value) {
  char text[4];
  std::snprintf(text, sizeof text, "%02x", value);
  return text;
}

inline std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "%08x", value);
  return text;
}

// product(shape) * element_size, or nullopt on a negative dimension or overflow.
inline std::optional<uint64_t> tensor_bytes(const std::vector<int64_t>& shape,
                                            size_t element_size) {
  uint64_t bytes = element_size;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
      return std::nullopt;
    }
  }
  return bytes;
}

// The 8-byte little-endian header length field.
inline std::array<uint8_t, 8> length_field(uint64_t header_length) {
  std::array<uint8_t, 8> field{};
  for (int b = 0; b < 8; ++b) field[size_t(b)] = static_cast<uint8_t>(header_length >> (8 * b));
  return field;
}

inline uint32_t crc_of(std::span<const uint8_t> data, uint32_t crc = 0) {
  return crc32c(data.data(), data.size(), crc);
}

// Offset of the 8 hex digits of "mercury.crc32c.all" in a header as this writer dumps it (no
// whitespace), or npos. Unique: a key's quotes are bare only where it is a key, and a key
// appears once per object (duplicates are refused); in a tensor name the ':' is followed by '{'.
inline std::size_t checksum_value_offset(std::string_view header) {
  const std::string needle = "\"" + std::string(kChecksumMetadataKey) + "\":\"";
  for (std::size_t at = header.find(needle); at != std::string_view::npos;
       at = header.find(needle, at + 1)) {
    // A key starts an object member: after '{' or ','. Inside another string the quote is
    // escaped (\"), so a user key ending in this text does not match.
    if (at == 0 || (header[at - 1] != '{' && header[at - 1] != ',')) continue;
    if (at + needle.size() + 9 > header.size() || header[at + needle.size() + 8] != '"')
      return std::string_view::npos;
    return at + needle.size();
  }
  return std::string_view::npos;
}

}  // namespace safetensors_detail

inline void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  namespace detail = safetensors_detail;
  const std::string prefix = "checkpoint '" + path + "': ";
  for (std::string_view reserved : {kChecksumMetadataKey, kDataChecksumMetadataKey}) {
    if (metadata.count(std::string(reserved)) != 0) {
      throw CheckpointError(prefix + "__metadata__ key '" + std::string(reserved) +
                            "' is reserved (written automatically), found it in the caller's "
                            "metadata");
    }
  }

  // Validate and lay out the tensors.
  std::vector<uint64_t> sizes;
  sizes.reserve(tensors.size());
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorRef& t = tensors[i];
    const std::string what = prefix + "tensor #" + std::to_string(i) + " '" + t.name + "': ";
    if (t.name.empty() || t.name == "__metadata__") {
      throw CheckpointError(what + "expected a non-empty name other than __metadata__");
    }
    if (!seen.emplace(t.name, i).second) {
      throw CheckpointError(what + "duplicate name: expected unique names, found it also at #" +
                            std::to_string(seen[t.name]));
    }
    const size_t element_size = safetensors_dtype_size(t.dtype);
    if (element_size == 0) {
      throw CheckpointError(what + "dtype: expected one of " + detail::kSupportedDtypes +
                            ", found \"" + t.dtype + "\"");
    }
    const std::optional<uint64_t> bytes = detail::tensor_bytes(t.shape, element_size);
    if (!bytes) {
      throw CheckpointError(what +
                            "shape: expected non-negative dimensions with a representable "
                            "byte size, found " +
                            detail::shape_text(t.shape));
    }
    if (*bytes > 0 && t.data == nullptr) {
      throw CheckpointError(what + "data: expected " + std::to_string(*bytes) +
                            " bytes, found a null pointer");
    }
    sizes.push_back(*bytes);
  }

  // The header text, built in one pass (nlohmann's ordered_json looks keys up linearly:
  // quadratic in the number of tensors). Strings are escaped by nlohmann, which also refuses
  // invalid UTF-8.
  std::string header_text;
  try {
    const auto quoted = [](const std::string& text) { return nlohmann::json(text).dump(); };
    header_text = "{\"__metadata__\":{";
    for (const auto& [key, value] : metadata)
      header_text += quoted(key) + ":" + quoted(value) + ",";
    header_text += quoted(std::string(kChecksumMetadataKey)) + ":\"00000000\"}";  // filled below
    uint64_t offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      header_text += "," + quoted(tensors[i].name) + ":{\"dtype\":" + quoted(tensors[i].dtype) +
                     ",\"shape\":[";
      for (size_t d = 0; d < tensors[i].shape.size(); ++d)
        header_text += (d ? "," : "") + std::to_string(tensors[i].shape[d]);
      header_text += "],\"data_offsets\":[" + std::to_string(offset) + "," +
                     std::to_string(offset + sizes[i]) + "]}";
      offset += sizes[i];
    }
    header_text += "}";
  } catch (const nlohmann::json::type_error& error) {  // invalid UTF-8 in a name or value
    throw CheckpointError(prefix +
                          "header: expected UTF-8 names and metadata, found invalid "
                          "bytes (" +
                          error.what() + ")");
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  const std::array<uint8_t, 8> length_field = detail::length_field(header_text.size());
  // The checksum covers the length field, the header with its own value zeroed, and the data,
  // read in place.
  const std::size_t crc_at = detail::checksum_value_offset(header_text);
  if (crc_at == std::string::npos) throw std::logic_error(prefix + "checksum field not dumped");
  uint32_t checksum = crc32c(length_field.data(), length_field.size());
  checksum = crc32c(header_text.data(), header_text.size(), checksum);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (sizes[i] > 0) checksum = crc32c(tensors[i].data, sizes[i], checksum);
  header_text.replace(crc_at, 8, detail::hex32(checksum));

  try {
    AtomicFileWriter out(path);
    out.write(length_field.data(), length_field.size());
    out.write(header_text);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (sizes[i] > 0) out.write(tensors[i].data, sizes[i]);
    }
    out.commit();
  } catch (const std::system_error& error) {
    throw CheckpointError(prefix + error.what());
  }
}

class SafetensorsFile {
 public:
  static SafetensorsFile load(const std::string& path, Checksum checksum = Checksum::required) {
    return read_file(path, /*with_data=*/true, checksum);
  }
  static SafetensorsFile load_header(const std::string& path,
                                     Checksum checksum = Checksum::required) {
    return read_file(path, false, checksum);
  }

  static SafetensorsFile from_bytes(std::span<const uint8_t> bytes, std::string name = "<memory>",
                                    Checksum checksum = Checksum::required) {
    SafetensorsFile file;
    file.source_ = std::move(name);
    file.checksum_ = checksum;
    const uint64_t header_length =
        file.check_length_field(bytes.data(), std::min<size_t>(bytes.size(), 8), bytes.size());
    file.parse_header(
        std::string_view(reinterpret_cast<const char*>(bytes.data()) + 8, header_length));
    const auto data = bytes.subspan(8 + header_length);
    file.data_.assign(data.begin(), data.end());
    file.verify_checksum();
    file.has_data_ = true;
    return file;
  }

  // Reads the data section of a file opened with load_header() and verifies its checksum.
  void load_data() {
    if (has_data_) return;
    if (path_.empty()) throw std::logic_error(prefix() + "load_data: no file to read from");
    try {
      InputFile input(path_);
      const uint64_t expected_size = 8 + header_length_ + data_size_;
      if (input.size() != expected_size) {
        throw CheckpointError(prefix() + "file size changed since the header was read: expected " +
                              std::to_string(expected_size) + " bytes, found " +
                              std::to_string(input.size().value_or(0)));
      }
      input.seek(8 + header_length_);
      read_data(input);
    } catch (const std::system_error& error) {
      throw CheckpointError(prefix() + error.what());
    }
  }

  const std::string& source() const { return source_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  uint64_t header_length() const { return header_length_; }
  uint64_t data_size() const { return data_size_; }
  bool has_data() const { return has_data_; }

  const SafetensorsEntry* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  const SafetensorsEntry& at(std::string_view name) const {
    const SafetensorsEntry* entry = find(name);
    if (entry == nullptr) {
      throw CheckpointError(prefix() + "tensor '" + std::string(name) +
                            "': expected it in the checkpoint, found no such entry");
    }
    return *entry;
  }

  std::span<const uint8_t> bytes(const SafetensorsEntry& entry) const {
    if (!has_data_) throw std::logic_error(prefix() + "bytes(): data not loaded (load_data())");
    if (entry.begin > entry.end || entry.end > data_.size()) {
      throw std::invalid_argument(prefix() + "bytes(): entry '" + entry.name +
                                  "' does not belong to this file");
    }
    return std::span<const uint8_t>(data_).subspan(entry.begin, entry.byte_size());
  }

 private:
  static SafetensorsFile read_file(const std::string& path, bool with_data, Checksum checksum) {
    SafetensorsFile file;
    file.source_ = path;
    file.path_ = path;
    file.checksum_ = checksum;
    try {
      InputFile input(path);
      if (!input.size()) {
        throw CheckpointError(file.prefix() + "expected a regular file, found a pipe or device");
      }
      uint8_t length_field[8];
      const size_t got = input.read_fully(length_field, 8);
      const uint64_t header_length = file.check_length_field(length_field, got, *input.size());
      std::string header_text(header_length, '\0');
      if (input.read_fully(header_text.data(), header_length) != header_length) {
        throw CheckpointError(file.prefix() + "header truncated while reading (file changed?)");
      }
      file.parse_header(header_text);
      if (with_data) file.read_data(input);
    } catch (const std::system_error& error) {
      throw CheckpointError(file.prefix() + error.what());
    }
    return file;
  }

  // Reads data_size_ bytes (already validated against the file size) and verifies the checksum.
  void read_data(InputFile& input) {
    data_.resize(data_size_);
    if (input.read_fully(data_.data(), data_size_) != data_size_) {
      data_.clear();
      throw CheckpointError(prefix() + "data section truncated while reading (file changed?)");
    }
    try {
      verify_checksum();
    } catch (...) {
      data_.clear();  // never expose data that failed verification
      throw;
    }
    has_data_ = true;
  }

  std::string prefix() const { return "checkpoint '" + source_ + "': "; }

  // Validates the 8-byte length field against the total size; returns the header length.
  uint64_t check_length_field(const uint8_t* field, size_t field_bytes, uint64_t total_size) {
    if (field_bytes < 8) {
      throw CheckpointError(prefix() + "truncated: expected at least 8 bytes (header length " +
                            "field), found a " + std::to_string(total_size) + "-byte file");
    }
    uint64_t length = 0;
    for (int b = 7; b >= 0; --b) length = (length << 8) | field[b];
    if (length > kMaxSafetensorsHeaderBytes) {
      throw CheckpointError(prefix() + "header length field at byte offset 0: expected at most " +
                            std::to_string(kMaxSafetensorsHeaderBytes) + " (100 MB cap), found " +
                            std::to_string(length));
    }
    if (length > total_size - 8) {
      throw CheckpointError(prefix() + "header length field at byte offset 0: expected at most " +
                            std::to_string(total_size - 8) + " (bytes after the field), found " +
                            std::to_string(length) + " (truncated file?)");
    }
    header_length_ = length;
    data_size_ = total_size - 8 - length;
    return length;
  }

  // SAX handler: throws CheckpointError on a duplicate key in any object or nesting deeper
  // than kMaxHeaderDepth; everything else is left to the DOM parse.
  struct HeaderShapeCheck {
    const std::string& where;
    std::vector<std::unordered_set<std::string>> keys;  // one set per open object/array
    bool open() {
      if (keys.size() >= std::size_t(safetensors_detail::kMaxHeaderDepth))
        throw CheckpointError(where + "expected JSON nesting of at most " +
                              std::to_string(safetensors_detail::kMaxHeaderDepth) +
                              " levels, found more");
      keys.emplace_back();
      return true;
    }
    bool close() {
      keys.pop_back();
      return true;
    }
    bool null() { return true; }
    bool boolean(bool) { return true; }
    bool number_integer(nlohmann::json::number_integer_t) { return true; }
    bool number_unsigned(nlohmann::json::number_unsigned_t) { return true; }
    bool number_float(nlohmann::json::number_float_t, const std::string&) { return true; }
    bool string(std::string&) { return true; }
    bool binary(nlohmann::json::binary_t&) { return true; }
    bool start_object(std::size_t) { return open(); }
    bool end_object() { return close(); }
    bool start_array(std::size_t) { return open(); }
    bool end_array() { return close(); }
    bool key(std::string& k) {
      if (!keys.back().insert(k).second)
        throw CheckpointError(where + "duplicate key \"" + k + "\"" +
                              (keys.size() == 1 ? " (tensor names must be unique)" : "") +
                              ": expected each key once, found it twice");
      return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
      throw CheckpointError(where + "expected valid JSON, found a syntax error: " + e.what());
    }
  };

  void parse_header(std::string_view text) {
    namespace detail = safetensors_detail;
    const std::string header_where =
        prefix() + "header (bytes 8.." + std::to_string(8 + text.size()) + "): ";
    if (text.empty() || text.front() != '{') {
      throw CheckpointError(header_where + "expected a JSON object starting with '{', found " +
                            (text.empty() ? std::string("an empty header")
                                          : "byte 0x" + detail::hex8(uint8_t(text.front()))));
    }
    // A SAX pass first rejects duplicate keys (the DOM would silently keep the last one) and
    // deep nesting (bounded memory whatever the input); then the DOM parse. Both are linear in
    // the header (nlohmann's callback parser is not: it rescans the parent object after every
    // member, quadratic in the number of tensors).
    {
      HeaderShapeCheck check{header_where, {}};
      try {
        nlohmann::json::sax_parse(text.begin(), text.end(), &check);
      } catch (const nlohmann::json::exception& error) {
        throw CheckpointError(header_where +
                              "expected valid JSON, found a syntax error: " + error.what());
      }
    }
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& error) {
      throw CheckpointError(header_where +
                            "expected valid JSON, found a syntax error: " + error.what());
    }
    if (!header.is_object()) {
      throw CheckpointError(header_where + "expected a JSON object, found " + header.type_name());
    }

    for (const auto& [key, value] : header.items()) {
      if (key == "__metadata__") {
        parse_metadata(value);
        continue;
      }
      entries_.push_back(parse_entry(key, value));
    }
    check_layout();
    checksum_header(text);
  }

  // The header's share of kChecksumMetadataKey's CRC: length field, then the header with the
  // stored value as "00000000". A missing key is judged by verify_checksum (with the data).
  void checksum_header(std::string_view text) {
    const auto it = metadata_.find(std::string(kChecksumMetadataKey));
    if (it == metadata_.end()) return;
    check_hex32(kChecksumMetadataKey, it->second);
    const std::size_t at = safetensors_detail::checksum_value_offset(text);
    if (at == std::string_view::npos || text.substr(at, 8) != it->second) {
      throw CheckpointError(prefix() + "__metadata__ key '" + std::string(kChecksumMetadataKey) +
                            "': expected it written as \"" + std::string(kChecksumMetadataKey) +
                            "\":\"<8 hex digits>\" (no spaces), found another form");
    }
    const std::array<uint8_t, 8> length_field = safetensors_detail::length_field(text.size());
    header_crc_ = crc32c(length_field.data(), length_field.size());
    header_crc_ = crc32c(text.data(), at, header_crc_);  // the header around the zeroed value
    header_crc_ = crc32c("00000000", 8, header_crc_);
    header_crc_ = crc32c(text.data() + at + 8, text.size() - at - 8, header_crc_);
  }

  void check_hex32(std::string_view key, const std::string& stored) const {
    const bool well_formed =
        stored.size() == 8 && std::all_of(stored.begin(), stored.end(), [](char c) {
          return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        });
    if (!well_formed) {
      throw CheckpointError(prefix() + "__metadata__ key '" + std::string(key) +
                            "': expected 8 lowercase hex digits, found \"" + stored + "\"");
    }
  }

  void parse_metadata(const nlohmann::json& value) {
    if (!value.is_object()) {
      throw CheckpointError(prefix() + "__metadata__: expected an object of strings, found " +
                            value.type_name());
    }
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) {
        throw CheckpointError(prefix() + "__metadata__ key '" + key +
                              "': expected a string value, found " + item.type_name());
      }
      metadata_[key] = item.get<std::string>();
    }
  }

  SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& value) const {
    namespace detail = safetensors_detail;
    const std::string where = prefix() + "tensor '" + name + "': ";
    if (!value.is_object()) {
      throw CheckpointError(where +
                            "expected an object with dtype, shape and data_offsets, "
                            "found " +
                            value.type_name());
    }
    for (const auto& [field, ignored] : value.items()) {
      if (field != "dtype" && field != "shape" && field != "data_offsets") {
        throw CheckpointError(where + "expected only dtype, shape and data_offsets, found field '" +
                              field + "'");
      }
    }
    SafetensorsEntry entry;
    entry.name = name;
    const auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) {
      throw CheckpointError(where + "dtype: expected a string, found " +
                            (dtype == value.end() ? "nothing" : dtype->type_name()));
    }
    entry.dtype = dtype->get<std::string>();
    const size_t element_size = safetensors_dtype_size(entry.dtype);
    if (element_size == 0) {
      throw CheckpointError(where + "dtype: expected one of " + detail::kSupportedDtypes +
                            ", found \"" + entry.dtype + "\"");
    }
    const auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) {
      throw CheckpointError(where + "shape: expected an array of non-negative integers, found " +
                            (shape == value.end() ? "nothing" : shape->type_name()));
    }
    for (const auto& dim : *shape) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > uint64_t(INT64_MAX)) {
        throw CheckpointError(where + "shape: expected non-negative integers, found " + dim.dump());
      }
      entry.shape.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
    }
    const auto offsets_json = value.find("data_offsets");
    if (offsets_json == value.end() || !offsets_json->is_array() || offsets_json->size() != 2 ||
        !(*offsets_json)[0].is_number_unsigned() || !(*offsets_json)[1].is_number_unsigned()) {
      throw CheckpointError(
          where + "data_offsets: expected [begin, end] non-negative integers, found " +
          (offsets_json == value.end() ? std::string("nothing") : offsets_json->dump()));
    }
    entry.begin = (*offsets_json)[0].get<uint64_t>();
    entry.end = (*offsets_json)[1].get<uint64_t>();
    const std::string offsets = detail::offsets_text(entry.begin, entry.end);
    if (entry.begin > entry.end) {
      throw CheckpointError(where + "data_offsets " + offsets + ": expected begin <= end");
    }
    if (entry.end > data_size_) {
      throw CheckpointError(where + "data_offsets " + offsets +
                            " out of range: expected end <= " + std::to_string(data_size_) +
                            " (the data section size; truncated file?), found " +
                            std::to_string(entry.end));
    }
    const std::optional<uint64_t> bytes = detail::tensor_bytes(entry.shape, element_size);
    if (!bytes || *bytes != entry.byte_size()) {
      throw CheckpointError(
          where + "shape " + detail::shape_text(entry.shape) + " of " + entry.dtype + " (" +
          std::to_string(element_size) + " bytes each): expected data_offsets to span " +
          (bytes ? std::to_string(*bytes) : std::string("an overflowing number of")) +
          " bytes, found " + offsets + " = " + std::to_string(entry.byte_size()) + " bytes");
    }
    return entry;
  }

  // Entries must tile the data section exactly: sorted by offset, no gaps, no overlaps.
  void check_layout() {
    namespace detail = safetensors_detail;
    std::stable_sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expected_begin = 0;
    const SafetensorsEntry* previous = nullptr;
    for (const SafetensorsEntry& entry : entries_) {
      if (entry.begin != expected_begin) {
        throw CheckpointError(
            prefix() + "tensor '" + entry.name + "': data_offsets " +
            detail::offsets_text(entry.begin, entry.end) + ": expected to begin at " +
            std::to_string(expected_begin) +
            (previous ? " right after tensor '" + previous->name + "'" : std::string()) +
            ", found " + (entry.begin < expected_begin ? "an overlap" : "a gap"));
      }
      expected_begin = entry.end;
      previous = &entry;
    }
    if (expected_begin != data_size_) {
      throw CheckpointError(prefix() + "data section: expected " + std::to_string(expected_begin) +
                            " bytes (the end of the last tensor), found " +
                            std::to_string(data_size_) + " bytes");
    }
    for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
  }

  void verify_checksum() const {
    namespace detail = safetensors_detail;
    const auto all = metadata_.find(std::string(kChecksumMetadataKey));
    if (all != metadata_.end()) {
      const std::string actual = detail::hex32(detail::crc_of(data_, header_crc_));
      if (actual != all->second) {
        throw CheckpointError(prefix() + "checksum mismatch (file corrupted): __metadata__ " +
                              std::string(kChecksumMetadataKey) + " expects " + all->second +
                              ", found CRC32C " + actual + " over the header and data");
      }
      return;
    }
    const auto data_only = metadata_.find(std::string(kDataChecksumMetadataKey));
    if (checksum_ == Checksum::required) {
      throw CheckpointError(
          prefix() + "__metadata__: expected key '" + std::string(kChecksumMetadataKey) +
          "' (CRC32C of header and data), found " +
          (data_only != metadata_.end()
               ? "only '" + std::string(kDataChecksumMetadataKey) +
                     "', which leaves the header unchecked (an older Mercury wrote it)"
               : std::string("no checksum (another tool wrote it, or it was removed)")) +
          "; load it with the checksum optional only if you trust it (mercury train "
          "--resume-unchecked true)");
    }
    if (data_only == metadata_.end()) return;  // optional, and absent
    check_hex32(kDataChecksumMetadataKey, data_only->second);
    const std::string actual = detail::hex32(detail::crc_of(data_));
    if (actual != data_only->second) {
      throw CheckpointError(prefix() + "checksum mismatch (file corrupted): __metadata__ " +
                            std::string(kDataChecksumMetadataKey) + " expects " +
                            data_only->second + ", found data section CRC32C " + actual);
    }
  }

  std::string source_;  // file path or caller-given name, for messages
  std::string path_;    // empty for from_bytes
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<uint8_t> data_;
  uint64_t header_length_ = 0;
  uint64_t data_size_ = 0;
  uint32_t header_crc_ = 0;  // kChecksumMetadataKey's CRC over the length field and header
  Checksum checksum_ = Checksum::required;
  bool has_data_ = false;
};

}  // namespace mercury::io
