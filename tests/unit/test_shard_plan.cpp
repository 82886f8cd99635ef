// ShardPlan properties: exact contiguous cover, 64-byte boundaries, byte balance within one
// alignment block, determinism, a platform-stable hash, and clear errors.
#include <doctest/doctest.h>

#include <set>

#include "mercury/dist/shard_plan.hpp"
#include "models/registry.hpp"

using mercury::dist::kShardAlignFloats;
using mercury::dist::ShardPlan;

namespace {

// Every property the contract promises, for one (n, world).
void check_properties(int64_t n, int world) {
  CAPTURE(n);
  CAPTURE(world);
  const ShardPlan p(n, world);
  REQUIRE(p.world() == world);
  REQUIRE(p.total() == n);
  REQUIRE(p.bounds().size() == static_cast<std::size_t>(world) + 1);
  CHECK(p.begin(0) == 0);
  CHECK(p.end(world - 1) == n);
  int64_t covered = 0, largest = 0, smallest = n;
  for (int r = 0; r < world; ++r) {
    CHECK(p.begin(r) <= p.end(r));                         // ordered, possibly empty
    if (r + 1 < world) CHECK(p.end(r) == p.begin(r + 1));  // contiguous, disjoint
    if (p.begin(r) != 0 && p.begin(r) != n) CHECK(p.begin(r) % kShardAlignFloats == 0);
    covered += p.size(r);
    largest = std::max(largest, p.size(r));
    smallest = std::min(smallest, p.size(r));
  }
  CHECK(covered == n);
  CHECK(largest == p.max_size());
  CHECK(smallest == p.min_size());
  CHECK(largest - smallest <= kShardAlignFloats);
  // The bottleneck is the least any 16-aligned cut can achieve: ceil(blocks / world) blocks.
  const int64_t blocks = (n + kShardAlignFloats - 1) / kShardAlignFloats;
  CHECK(largest <= (blocks + world - 1) / world * kShardAlignFloats);
  // owner() agrees with the ranges at every boundary and never names an empty range.
  for (int r = 0; r < world; ++r) {
    if (p.size(r) == 0) continue;
    CHECK(p.owner(p.begin(r)) == r);
    CHECK(p.owner(p.end(r) - 1) == r);
    CHECK(p.owner((p.begin(r) + p.end(r)) / 2) == r);
  }
}

}  // namespace

TEST_CASE("shard plan covers [0, n) exactly with contiguous, ordered, 64-byte aligned ranges") {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{100},
                    int64_t{1000}, int64_t{4096}, int64_t{65537}, int64_t{1234567}}) {
    for (int world : {1, 2, 3, 4, 5, 7, 8, 12, 16, 64, 100}) check_properties(n, world);
  }
}

TEST_CASE("shard plan balances real model slabs within one 16-float block") {
  using mercury::Shape;
  for (const char* name : {"mlp", "cnn"}) {
    auto m = mercury::models::make_model(name, Shape{1, 28, 28}, 10, 1);
    const int64_t n = m->params.size();
    CHECK(n % kShardAlignFloats == 0);  // ParamStore pads every tensor to 64 bytes
    for (int world : {2, 3, 4, 6, 8, 12}) {
      check_properties(n, world);
      const ShardPlan p(n, world);
      for (int r = 0; r < world; ++r) CHECK(p.begin(r) % kShardAlignFloats == 0);
    }
  }
}

TEST_CASE("world = 1 owns the whole slab; n = 0 gives empty ranges") {
  const ShardPlan one(1000, 1);
  CHECK(one.range(0) == mercury::dist::ShardRange{0, 1000});
  CHECK(one.owner(0) == 0);
  CHECK(one.owner(999) == 0);
  const ShardPlan none(0, 4);
  for (int r = 0; r < 4; ++r) CHECK(none.range(r).empty());
  CHECK(none.max_size() == 0);
}

TEST_CASE("world larger than the number of blocks leaves some ranges empty, spread out") {
  // 40 floats = 3 blocks (16, 16, 8) over 8 ranks: ranks with floor(r*3/8) == floor((r+1)*3/8)
  // serve nothing.
  const ShardPlan p(40, 8);
  int non_empty = 0;
  for (int r = 0; r < 8; ++r) non_empty += p.size(r) > 0;
  CHECK(non_empty == 3);
  CHECK(p.max_size() == 16);
  CHECK(p.min_size() == 0);
  std::set<int> owners;
  for (int64_t i = 0; i < 40; ++i) owners.insert(p.owner(i));
  CHECK(owners.size() == 3);
  check_properties(40, 8);
  check_properties(5, 64);
}

TEST_CASE("shard plan is deterministic and its hash pins (n, world) and the cut") {
  const ShardPlan a(100000, 4), b(100000, 4);
  CHECK(a.bounds() == b.bounds());
  CHECK(a.hash() == b.hash());
  std::set<uint64_t> hashes;
  for (int world = 1; world <= 64; ++world) hashes.insert(ShardPlan(100000, world).hash());
  CHECK(hashes.size() == 64);  // a different world size always hashes differently
  CHECK(ShardPlan(100000, 4).hash() != ShardPlan(100016, 4).hash());
  CHECK(ShardPlan(0, 1).hash() != ShardPlan(0, 2).hash());
  // Pinned values: FNV-1a over little-endian fields, identical on every platform. A change
  // here breaks the handshake with older builds.
  CHECK(ShardPlan(1000, 3).hash() == 0xf567203fc6591287ull);
}

TEST_CASE("shard plan refuses an invalid world, a negative size and bad ranks/indices") {
  CHECK_THROWS_WITH_AS(ShardPlan(100, 0), doctest::Contains("expected >= 1, found 0"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ShardPlan(100, -3), doctest::Contains("found -3"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ShardPlan(-1, 2), doctest::Contains("expected >= 0 floats, found -1"),
                       std::invalid_argument);
  const ShardPlan p(100, 4);
  CHECK_THROWS_WITH_AS(p.range(4), doctest::Contains("expected 0..3, found 4"), std::out_of_range);
  CHECK_THROWS_WITH_AS(p.owner(100), doctest::Contains("expected 0..99, found 100"),
                       std::out_of_range);
  CHECK_THROWS_AS(p.owner(-1), std::out_of_range);
}
