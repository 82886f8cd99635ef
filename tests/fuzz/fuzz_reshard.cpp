// libFuzzer target for the reshard frame decoder (mercury/dist/reshard.hpp): the bytes a peer
// sends when it swaps samples. Input: byte 0 a mode, bytes 1..5 the receiver's expectations
// (sample count 0..15, raw bytes per sample 0..31, id space 1..65536, classes 1..16), the rest
// the frame. Mode bit 0 rewrites the frame's header to what the receiver expects, so the fuzzer
// reaches the per-sample checks behind it. Any outcome other than success or net::PeerError
// (crash, sanitizer report, other exception, an accepted frame breaking the contract -> trap)
// is a finding.
//
// Built by tests/fuzz/CMakeLists.txt with clang only; by hand:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I/work/main \
//     -I/usr/include/eigen3 tests/fuzz/fuzz_reshard.cpp -o fuzz_reshard
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "mercury/dist/reshard.hpp"

using namespace mercury;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 6) return 0;
  const uint8_t mode = data[0];
  dist::ReshardExpect e;
  e.src = 1;
  e.step = 42;
  e.count = data[1] & 15;
  e.raw_bytes = data[2] & 31;
  e.id_space = 1 + (static_cast<int64_t>(data[3]) << 8 | data[4]);
  e.classes = 1 + (data[5] & 15);
  std::vector<std::byte> frame(reinterpret_cast<const std::byte*>(data + 6),
                               reinterpret_cast<const std::byte*>(data + size));
  if ((mode & 1) && frame.size() >= dist::kReshardHeader) {
    dist::put_reshard_header(frame.data(), e.step, static_cast<uint32_t>(e.count),
                             static_cast<uint32_t>(e.raw_bytes));
  }
  dist::ReshardBatch b;
  try {
    dist::decode_reshard(frame, e, b);
  } catch (const net::PeerError&) {
    return 0;
  }
  // Accepted: exactly the expected samples, ids in range and distinct, labels in range, raw
  // bytes inside the frame.
  if (frame.size() != dist::reshard_frame_bytes(e.count, e.raw_bytes)) __builtin_trap();
  if (b.ids.size() != static_cast<std::size_t>(e.count)) __builtin_trap();
  for (std::size_t k = 0; k < b.ids.size(); ++k) {
    if (b.ids[k] < 0 || b.ids[k] >= e.id_space) __builtin_trap();
    if (b.labels[k] < 0 || b.labels[k] >= e.classes) __builtin_trap();
    if (b.raw[k] < frame.data() || b.raw[k] + e.raw_bytes > frame.data() + frame.size())
      __builtin_trap();
  }
  std::vector<int64_t> ids(b.ids);
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) __builtin_trap();
  return 0;
}
