// libFuzzer target for the IDX reader (plain and gzip) via the in-memory overload.
// Any outcome other than success or mercury::data::DataError (crash, sanitizer report, other
// exception, hang, allocation beyond the cap) is a finding.
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -DMERCURY_HAVE_ZLIB=1 \
//     -I/work/main -I/usr/include/eigen3 tests/fuzz/fuzz_idx.cpp -lz -o fuzz_idx
//   ./fuzz_idx -max_total_time=60 corpus/
#include <cstddef>
#include <cstdint>
#include <span>

#include "mercury/data/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kMaxBytes = size_t{1} << 24;  // keeps gzip-bomb inputs cheap to reject
  try {
    const mercury::data::IdxArray array =
        mercury::data::read_idx_from_bytes(std::span<const uint8_t>(data, size), "fuzz", kMaxBytes);
    size_t expected = 1;
    for (int64_t d : array.dims) expected *= static_cast<size_t>(d);
    if (array.dims.empty() || array.dims.size() > 4 || expected != array.data.size())
      __builtin_trap();
  } catch (const mercury::data::DataError&) {
  }
  return 0;
}
