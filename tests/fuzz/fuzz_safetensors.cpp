// libFuzzer target for the safetensors checkpoint reader via SafetensorsFile::from_bytes.
// Any outcome other than success or mercury::io::CheckpointError is a finding; on success the
// entries must tile the data section exactly (the invariant the reader promises). The checksum
// is optional here so the fuzzer reaches the header parser (a required one stops almost every
// input at the missing key).
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
//     -I/work/main -I/usr/include/eigen3 tests/fuzz/fuzz_safetensors.cpp -o fuzz_safetensors
//   ./fuzz_safetensors -max_total_time=60 corpus/
#include <cstddef>
#include <cstdint>
#include <span>

#include "mercury/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const mercury::io::SafetensorsFile file = mercury::io::SafetensorsFile::from_bytes(
        std::span<const uint8_t>(data, size), "fuzz", mercury::io::Checksum::optional);
    uint64_t next = 0;
    for (const mercury::io::SafetensorsEntry& entry : file.entries()) {
      if (entry.begin != next || file.find(entry.name) != &entry) __builtin_trap();
      if (file.bytes(entry).size() != entry.byte_size()) __builtin_trap();
      next = entry.end;
    }
    if (next != file.data_size()) __builtin_trap();
  } catch (const mercury::io::CheckpointError&) {
  }
  return 0;
}
