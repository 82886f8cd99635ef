// SVHN "cropped digits" loader (train_32x32.mat, test_32x32.mat; extra_32x32.mat via
// read_svhn_mat) as an ImageDataset of 3 x 32 x 32 uint8 images, 10 classes.
//
// Format: a MATLAB .mat file (v5, possibly compressed; v7.3/HDF5 if libmatio was built with it)
// holding
//   X  uint8, 32 x 32 x 3 x N, MATLAB column-major: X(row, col, channel, n) is at linear index
//      row + 32*col + 1024*channel + 3072*n, i.e. each 32 x 32 plane is stored transposed with
//      respect to our row-major NCHW; the loader transposes every plane.
//   y  double or uint8, N x 1 (1 x N accepted), labels 1..10 where 10 means the digit 0; the
//      dataset label is the digit (10 -> 0).
//
// Contract:
//   read_svhn_mat(path, name)  -> ImageDataset with the SVHN mean/stddev set
//   load_svhn(dir, split)      -> dir/<split>_32x32.mat or dir/svhn/<split>_32x32.mat
//   Everything is checked from the variables' headers before the pixel buffer is allocated:
//   both variables present, class (X uint8; y double or uint8), real and dense, X's rank and
//   dims, y's dims, N agreement; then every label (integral, 1..10). Errors throw DataError
//   naming the file, the variable, what was expected and what was found (for labels: the
//   element index and value). For v5 files the chain of top-level elements is walked first, so a
//   file cut short fails with the element and byte offset (libmatio alone would read short
//   uncompressed data silently), every compressed element is inflated once to check it (libmatio
//   zero-fills a corrupt or truncated stream), and X may not claim more images than the file's
//   elements can hold, so nothing is allocated on a header's word alone.
//   Needs MERCURY_HAVE_MATIO (CMake option MERCURY_WITH_MATIO links libmatio); without it both
//   functions throw DataError saying .mat support was not compiled in.
//   libmatio may print its own diagnostics to stderr for unreadable files. Thread-safe as far
//   as libmatio is (separate files, no shared state of ours).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "mercury/data/dataset.hpp"  // Split
#include "mercury/data/idx.hpp"
#include "mercury/io/input_file.hpp"
#include "net/file_kind.hpp"

#ifdef MERCURY_HAVE_MATIO
#include <matio.h>
#ifdef MERCURY_HAVE_ZLIB
#include <zlib.h>
#endif
#endif

namespace mercury::data {

inline constexpr std::array<float, 3> kSvhnMean = {0.4377f, 0.4438f, 0.4728f};
inline constexpr std::array<float, 3> kSvhnStd = {0.1980f, 0.2010f, 0.1970f};

#ifdef MERCURY_HAVE_MATIO
namespace svhn_detail {

struct MatCloser {
  void operator()(mat_t* mat) const { Mat_Close(mat); }
};
struct VarFreer {
  void operator()(matvar_t* var) const { Mat_VarFree(var); }
};
using MatFile = std::unique_ptr<mat_t, MatCloser>;
using MatVar = std::unique_ptr<matvar_t, VarFreer>;

inline std::string class_name(matio_classes type) {
  switch (type) {
    case MAT_C_DOUBLE:
      return "double";
    case MAT_C_SINGLE:
      return "single";
    case MAT_C_INT8:
      return "int8";
    case MAT_C_UINT8:
      return "uint8";
    case MAT_C_INT16:
      return "int16";
    case MAT_C_UINT16:
      return "uint16";
    case MAT_C_INT32:
      return "int32";
    case MAT_C_UINT32:
      return "uint32";
    case MAT_C_INT64:
      return "int64";
    case MAT_C_UINT64:
      return "uint64";
    case MAT_C_CHAR:
      return "char";
    case MAT_C_CELL:
      return "cell";
    case MAT_C_STRUCT:
      return "struct";
    case MAT_C_SPARSE:
      return "sparse";
    default:
      return "class " + std::to_string(static_cast<int>(type));
  }
}

inline std::string dims_text(const matvar_t& var) {
  std::string text;
  for (int d = 0; d < var.rank; ++d) text += (d ? " x " : "") + std::to_string(var.dims[d]);
  return text.empty() ? "no dimensions" : text;
}

// Inflates the zlib stream of one miCOMPRESSED element (`bytes` bytes at the file's current
// position) without keeping the output; returns the inflated size. A stream that is corrupt
// (zlib's Adler-32 or code checks), cut short, or not ending with the element throws DataError:
// libmatio would hand back zero-filled data for it.
#ifdef MERCURY_HAVE_ZLIB
inline uint64_t inflated_size(io::InputFile& file, uint64_t bytes, const std::string& where) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) throw DataError(where + "zlib inflateInit failed");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&z};
  std::vector<uint8_t> in(std::size_t{1} << 20), out(std::size_t{1} << 16);
  uint64_t left = bytes, produced = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (z.avail_in == 0) {
      if (left == 0) break;
      const std::size_t want = static_cast<std::size_t>(std::min<uint64_t>(left, in.size()));
      if (file.read_fully(in.data(), want) != want) break;
      left -= want;
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(want);
    }
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    produced += out.size() - z.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
      throw DataError(where + "compressed data is corrupt (zlib: " +
                      (z.msg ? std::string(z.msg) : "error " + std::to_string(rc)) + ")");
  }
  if (rc != Z_STREAM_END)
    throw DataError(where + "compressed data is truncated: the zlib stream does not end within " +
                    "the element's " + std::to_string(bytes) + " bytes");
  const uint64_t unused = left + z.avail_in;
  if (unused != 0)
    throw DataError(where + "expected the zlib stream to fill the element, found " +
                    std::to_string(unused) + " bytes after its end");
  return produced;
}
#endif

// MAT v5 files are a 128-byte header and a chain of top-level elements (4-byte type, 4-byte
// byte count, data). libmatio does not notice an uncompressed element cut short (it reads what
// is there), nor a corrupt compressed one (it zero-fills), so the chain is walked first: every
// element must end inside the file and every compressed one must inflate cleanly. Returns an
// upper bound on the bytes of variable data the file holds (the elements' sizes, inflated), so
// no variable is believed to be larger. v7.3 (HDF5) files are left to the HDF5 library; their
// bound is the file size at zlib's best ratio (1032:1).
inline uint64_t check_mat5_elements(const std::string& path, const std::string& prefix) {
  io::InputFile file(path);
  const uint64_t size = file.size().value_or(0);
  uint8_t header[128];
  if (file.read_fully(header, sizeof header) != sizeof header) {
    throw DataError(prefix + "truncated header at byte offset 0: expected a 128-byte MATLAB " +
                    "header, found " + std::to_string(size) + " bytes");
  }
  const bool little = header[126] == 'I' && header[127] == 'M';
  const bool big = header[126] == 'M' && header[127] == 'I';
  if (!little && !big) {
    throw DataError(prefix + "endian indicator at byte offset 126: expected 'IM' or 'MI' (a " +
                    "MATLAB .mat file), found bytes " + std::to_string(header[126]) + " " +
                    std::to_string(header[127]));
  }
  const auto u32 = [&](const uint8_t* p) {
    return little
               ? uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24
               : uint32_t{p[3]} | uint32_t{p[2]} << 8 | uint32_t{p[1]} << 16 | uint32_t{p[0]} << 24;
  };
  const uint32_t version = little ? uint32_t{header[124]} | uint32_t{header[125]} << 8
                                  : uint32_t{header[125]} | uint32_t{header[124]} << 8;
  if (version != 0x0100) return size * 1032;  // 0x0200: v7.3 / HDF5
  uint64_t offset = 128, capacity = 0;
  for (int64_t element = 0; offset + 8 <= size; ++element) {
    uint8_t tag[8];
    file.seek(offset);
    if (file.read_fully(tag, 8) != 8) break;
    const uint32_t type = u32(tag);
    const uint64_t bytes = (type >> 16) != 0 ? 0 : u32(tag + 4);  // small element: in the tag
    const std::string where =
        prefix + "element " + std::to_string(element) + " at byte offset " + std::to_string(offset);
    if (offset + 8 + bytes > size) {
      throw DataError(where + " promises " + std::to_string(bytes) + " bytes of data, found only " +
                      std::to_string(size - offset - 8) +
                      " before the end of the file (truncated)");
    }
    constexpr uint32_t kCompressed = 15;  // miCOMPRESSED: zlib data, not padded
    if (type == kCompressed) {
#ifdef MERCURY_HAVE_ZLIB
      capacity += inflated_size(file, bytes, where + ": ");
#else
      capacity += bytes * 1032;  // unverified: zlib's best ratio bounds it
#endif
    } else {
      capacity += bytes;
    }
    offset += 8 + (type == kCompressed ? bytes : (bytes + 7) / 8 * 8);
  }
  return capacity;
}

}  // namespace svhn_detail
#endif  // MERCURY_HAVE_MATIO

inline ImageDataset read_svhn_mat(const std::string& path, const std::string& name = "") {
#ifndef MERCURY_HAVE_MATIO
  (void)name;
  throw DataError("SVHN file '" + path + "': MATLAB .mat support was not compiled in (build " +
                  "with -DMERCURY_WITH_MATIO=ON and libmatio-dev so MERCURY_HAVE_MATIO is " +
                  "defined)");
#else
  using namespace svhn_detail;
  constexpr size_t kImage = 3 * 32 * 32;  // bytes per image
  const std::string prefix = "SVHN file '" + path + "': ";
  {
    std::error_code ignored;
    if (!std::filesystem::is_regular_file(path, ignored)) {
      throw DataError(prefix + "expected a MATLAB .mat file, found " +
                      (std::filesystem::exists(path, ignored) ? "something that is not a "
                                                                "regular file"
                                                              : "no such file"));
    }
  }
  uint64_t capacity = 0;  // bytes of variable data the file can hold
  try {
    capacity = check_mat5_elements(path, prefix);
  } catch (const std::system_error& error) {
    throw DataError(prefix + error.what());
  }
  const MatFile mat(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (!mat) {
    throw DataError(prefix + "header at byte offset 0: expected a MATLAB v5/v7.3 .mat file, " +
                    "found something libmatio cannot open");
  }
  const MatVar x(Mat_VarReadInfo(mat.get(), "X"));
  const MatVar y(Mat_VarReadInfo(mat.get(), "y"));
  if (!x || !y) {
    throw DataError(prefix + "expected variables 'X' (images) and 'y' (labels), found " +
                    (x   ? "no 'y'"
                     : y ? "no 'X'"
                         : "neither"));
  }
  // X: uint8 32 x 32 x 3 x N.
  if (x->class_type != MAT_C_UINT8 || x->isComplex || x->isLogical) {
    throw DataError(prefix + "variable 'X': expected class uint8 (real), found " +
                    class_name(x->class_type) + (x->isComplex ? " (complex)" : "") +
                    (x->isLogical ? " (logical)" : ""));
  }
  // MATLAB drops a trailing singleton dimension: a one-image file has rank 3.
  const bool x_shape_ok = (x->rank == 4 || x->rank == 3) && x->dims[0] == 32 && x->dims[1] == 32 &&
                          x->dims[2] == 3 && (x->rank == 3 || x->dims[3] > 0);
  if (!x_shape_ok) {
    throw DataError(prefix + "variable 'X' dimensions: expected 32 x 32 x 3 x N, found " +
                    dims_text(*x));
  }
  const size_t n = x->rank == 4 ? x->dims[3] : 1;
  if (n > kDefaultIdxMaxBytes / kImage) {
    throw DataError(prefix + "variable 'X' dimensions: expected at most " +
                    std::to_string(kDefaultIdxMaxBytes / kImage) + " images, found " +
                    std::to_string(n));
  }
  if (n * kImage > capacity) {  // a header declaring more images than the file holds
    throw DataError(prefix + "variable 'X' dimensions " + dims_text(*x) + ": expected at most " +
                    std::to_string(capacity / kImage) + " images (the file holds at most " +
                    std::to_string(capacity) + " bytes of data), found " + std::to_string(n));
  }
  // y: double or uint8, N x 1 (or 1 x N).
  if ((y->class_type != MAT_C_DOUBLE && y->class_type != MAT_C_UINT8) || y->isComplex) {
    throw DataError(prefix + "variable 'y': expected class double or uint8 (real), found " +
                    class_name(y->class_type) + (y->isComplex ? " (complex)" : ""));
  }
  const bool y_shape_ok = y->rank == 2 && ((y->dims[0] == n && y->dims[1] == 1) ||
                                           (y->dims[0] == 1 && y->dims[1] == n));
  if (!y_shape_ok) {
    throw DataError(prefix + "variable 'y' dimensions: expected " + std::to_string(n) +
                    " x 1 (one label per image of 'X', " + dims_text(*x) + "), found " +
                    dims_text(*y));
  }

  // Labels first (small), then the pixels straight into the dataset buffer.
  ImageDataset dataset;
  dataset.labels.resize(n);
  {
    const bool is_double = y->class_type == MAT_C_DOUBLE;
    std::vector<double> as_double(is_double ? n : 0);
    std::vector<uint8_t> as_byte(is_double ? 0 : n);
    void* buffer = is_double ? static_cast<void*>(as_double.data()) : as_byte.data();
    if (Mat_VarReadDataLinear(mat.get(), y.get(), buffer, 0, 1, static_cast<int>(n)) != 0) {
      throw DataError(prefix + "variable 'y': expected " + std::to_string(n) +
                      " readable labels, libmatio failed to read the data (truncated or corrupt)");
    }
    for (size_t i = 0; i < n; ++i) {
      const double value = is_double ? as_double[i] : as_byte[i];
      if (!(value >= 1 && value <= 10) || value != std::floor(value)) {
        throw DataError(prefix + "variable 'y' element " + std::to_string(i) +
                        ": expected an integer label 1..10 (10 means digit 0), found " +
                        std::to_string(value));
      }
      dataset.labels[i] = static_cast<int32_t>(value) % 10;
    }
  }
  dataset.pixels.resize(n * kImage);
  if (n * kImage > static_cast<size_t>(INT32_MAX) ||
      Mat_VarReadDataLinear(mat.get(), x.get(), dataset.pixels.data(), 0, 1,
                            static_cast<int>(n * kImage)) != 0) {
    throw DataError(prefix + "variable 'X': expected " + std::to_string(n * kImage) +
                    " readable bytes, libmatio failed to read the data (truncated or corrupt" +
                    (n * kImage > static_cast<size_t>(INT32_MAX) ? ", or over 2^31 bytes" : "") +
                    ")");
  }
  // Column-major planes -> row-major: transpose every 32 x 32 plane in place.
  for (size_t plane = 0; plane < 3 * n; ++plane) {
    uint8_t* p = dataset.pixels.data() + plane * 1024;
    for (size_t r = 0; r < 32; ++r) {
      for (size_t c = r + 1; c < 32; ++c) std::swap(p[r * 32 + c], p[c * 32 + r]);
    }
  }
  dataset.n = static_cast<int64_t>(n);
  dataset.channels = 3;
  dataset.height = 32;
  dataset.width = 32;
  dataset.classes = 10;
  dataset.name = name.empty() ? path : name;
  dataset.mean.assign(kSvhnMean.begin(), kSvhnMean.end());
  dataset.stddev.assign(kSvhnStd.begin(), kSvhnStd.end());
  return dataset;
#endif
}

inline ImageDataset load_svhn(const std::string& dir, Split split) {
  const std::string file = std::string(split_name(split)) + "_32x32.mat";
  const std::filesystem::path root(dir);
  std::string tried;
  for (const std::filesystem::path& candidate : {root / file, root / "svhn" / file}) {
    std::error_code ignored;
    if (std::filesystem::is_regular_file(candidate, ignored)) {
      return read_svhn_mat(candidate.string(), std::string("svhn/") + split_name(split));
    }
    tried +=
        "\n  " + candidate.string() + " (" + net::unusable_input_note(candidate.string()) + ")";
  }
  throw DataError("SVHN " + std::string(split_name(split)) + " split not found: expected " + file +
                  "; paths tried:" + tried);
}

}  // namespace mercury::data
