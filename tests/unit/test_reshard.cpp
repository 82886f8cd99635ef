// Resharding: the local sample store, the pairing and budget schedule, importance-aware
// selection, the frame decoder under generated malformed frames, and the trainer's invariant —
// the cluster's multiset of samples never changes, also across a rank killed mid-swap and a
// resume. Ranks run as threads over net::LocalHub with threads = 1.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "mercury/mercury.hpp"
#include "net/local.hpp"
#include "ranks_as_threads.hpp"
#include "synthetic_data.hpp"

using namespace mercury;
using mercury::testing::error_message;
using mercury::testing::run_ranks;
using mercury::testing::synthetic_images;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("mercury_test_reshard_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::vector<std::byte> raw_of(const data::Dataset& d, int64_t i) {
  std::vector<std::byte> b(static_cast<std::size_t>(d.raw_sample_bytes()));
  d.read_raw(i, b);
  return b;
}

// A valid frame of `count` samples of `raw` bytes each (ids 100 + k, labels k % 10).
std::vector<std::byte> make_frame(int64_t step, uint32_t count, uint32_t raw) {
  std::vector<std::byte> f(dist::reshard_frame_bytes(count, raw));
  std::byte* p = dist::put_reshard_header(f.data(), step, count, raw);
  auto put = [&](auto v) {
    std::memcpy(p, &v, sizeof v);
    p += sizeof v;
  };
  for (uint32_t k = 0; k < count; ++k) {
    put(int64_t{100 + k});
    put(int32_t(k % 10));
    for (uint32_t b = 0; b < raw; ++b) put(static_cast<uint8_t>(k * 7 + b));
  }
  return f;
}

train::TrainConfig config() {
  train::TrainConfig c;
  c.model = "mlp";
  c.epochs = 2;
  c.batch = 16;
  c.lr = 0.01;
  c.threads = 1;
  c.seed = 5;
  c.progress = false;
  c.eval_batch = 32;
  c.op_timeout = 60;
  c.sampler = "mercury";
  c.group_size = 8;
  c.partition = "shards";  // non-IID: two label-sorted shards per rank
  c.reshard = "importance";
  c.reshard_budget = 1.0;
  return c;
}

struct RankOut {
  std::vector<int64_t> ids;
  std::vector<uint64_t> hashes;
  std::vector<float> weights;
  dist::ReshardStats stats;
  int64_t steps = 0;
};

// Trains `world` ranks as threads; each rank's held ids, content hashes and weights.
// `fault(rank, step)` runs at the start of each step (after the reshard send).
std::vector<RankOut> train_ranks(const train::TrainConfig& cfg, int world,
                                 const data::Dataset& train, const data::Dataset& test,
                                 std::vector<std::exception_ptr>* errors = nullptr,
                                 std::function<void(int, int64_t)> fault = {},
                                 std::vector<std::string> shares = {}) {
  net::LocalHub hub(world);
  std::vector<RankOut> out(static_cast<std::size_t>(world));
  thread_pool().set_threads(1);
  auto errs = run_ranks(world, [&](int r) {
    auto c = cfg;
    if (!shares.empty()) c.reshard_share = shares[static_cast<std::size_t>(r)];
    auto model = models::make_model(c.model, train.sample_shape(), train.num_classes(), 7);
    train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), world)};
    if (fault) {
      ctx.before_step = [&, r](int64_t it) {
        try {
          fault(r, it);
        } catch (const std::exception& e) {
          hub.fail(r, e.what());  // as a dead process: its peers fail at once
          throw;
        }
      };
    }
    std::ostringstream log;
    train::Trainer trainer(c, *model, train, test, log, &ctx);
    const auto result = trainer.run();
    RankOut& o = out[static_cast<std::size_t>(r)];
    o.ids = trainer.local_store()->ids();
    o.hashes = trainer.local_store()->content_hashes();
    o.weights.assign(model->params.values(), model->params.values() + model->params.size());
    if (trainer.resharder()) o.stats = trainer.resharder()->stats();
    o.steps = result.steps;
  });
  if (errors) {
    *errors = errs;
  } else {
    mercury::testing::require_no_errors(errs);
  }
  return out;
}

// The cluster's samples as a multiset of (label + content) hashes, and every held id.
std::multiset<uint64_t> cluster_hashes(const std::vector<RankOut>& ranks) {
  std::multiset<uint64_t> all;
  for (const auto& r : ranks) all.insert(r.hashes.begin(), r.hashes.end());
  return all;
}

std::multiset<uint64_t> dataset_hashes(const data::Dataset& d, int64_t n) {
  std::vector<int64_t> ids(static_cast<std::size_t>(n));
  std::iota(ids.begin(), ids.end(), int64_t{0});
  const data::LocalStore whole(d, ids, "whole");
  const auto h = whole.content_hashes();
  return std::multiset<uint64_t>(h.begin(), h.end());
}

void check_invariant(const std::vector<RankOut>& ranks, const data::Dataset& train,
                     const std::vector<int64_t>& sizes) {
  std::vector<int64_t> all_ids;
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    CAPTURE(r);
    CHECK(static_cast<int64_t>(ranks[r].ids.size()) == sizes[r]);  // balanced swaps
    all_ids.insert(all_ids.end(), ranks[r].ids.begin(), ranks[r].ids.end());
  }
  std::sort(all_ids.begin(), all_ids.end());
  std::vector<int64_t> expect(static_cast<std::size_t>(train.size()));
  std::iota(expect.begin(), expect.end(), int64_t{0});
  CHECK(all_ids == expect);                                             // no id lost or duplicated
  CHECK(cluster_hashes(ranks) == dataset_hashes(train, train.size()));  // contents too
}

}  // namespace

TEST_CASE("local store: a copy of its samples, raw round trip, checked replace") {
  const auto full = synthetic_images(40, 1);
  data::LocalStore store(full, {3, 17, 5}, "test part");
  REQUIRE(store.size() == 3);
  CHECK(store.ids() == std::vector<int64_t>{3, 17, 5});
  CHECK(store.holds(17));
  CHECK_FALSE(store.holds(4));
  CHECK(raw_of(store, 1) == raw_of(full, 17));
  CHECK(store.label(2) == full.label(5));
  // gather equals gathering the ids from the full set
  std::vector<float> a(3 * 784), b(3 * 784);
  std::vector<int32_t> ya(3), yb(3);
  const std::vector<int64_t> local{0, 1, 2}, global{3, 17, 5};
  store.gather(local, a.data(), ya.data(), nullptr);
  full.gather(global, b.data(), yb.data(), nullptr);
  CHECK(a == b);
  CHECK(ya == yb);

  const auto before = store.content_hashes();
  const auto raw9 = raw_of(full, 9);
  CHECK_THROWS_WITH_AS(store.replace(0, 17, 1, raw9), doctest::Contains("not held yet"),
                       std::invalid_argument);  // already held elsewhere
  CHECK_THROWS_AS(store.replace(0, 40, 1, raw9), std::invalid_argument);
  CHECK_THROWS_AS(store.replace(0, 9, 10, raw9), std::invalid_argument);  // label
  CHECK_THROWS_AS(store.replace(0, 9, 1, std::span<const std::byte>(raw9).first(10)),
                  std::invalid_argument);
  CHECK_THROWS_AS(store.replace(3, 9, 1, raw9), std::out_of_range);
  CHECK(store.content_hashes() == before);  // a refused replace changes nothing
  CHECK(store.ids() == std::vector<int64_t>{3, 17, 5});
  store.replace(0, 9, full.label(9), raw9);
  CHECK(store.ids() == std::vector<int64_t>{9, 17, 5});
  CHECK(store.holds(9));
  CHECK_FALSE(store.holds(3));
  CHECK(raw_of(store, 0) == raw9);

  CHECK_THROWS_WITH_AS(data::LocalStore(full, {1, 2, 1}, "dup"), doctest::Contains("a duplicate"),
                       std::invalid_argument);
  CHECK_THROWS_AS(data::LocalStore(full, {40}, "range"), std::invalid_argument);
}

TEST_CASE("local store over text and a subset view: the same stored form") {
  data::TextDataset text;
  text.n = 4;
  text.max_length = 3;
  text.ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  text.labels = {0, 1, 2, 3};
  data::LocalStore s(text, {2, 0}, "text part");
  CHECK(s.raw_sample_bytes() == 12);
  std::vector<float> x(6);
  std::vector<int32_t> y(2);
  const std::vector<int64_t> idx{0, 1};
  s.gather(idx, x.data(), y.data(), nullptr);
  CHECK(x == std::vector<float>{7, 8, 9, 1, 2, 3});
  CHECK(y == std::vector<int32_t>{2, 0});
  const auto full = synthetic_images(10, 2);
  const data::Subset view(full, {4, 6, 8});
  data::LocalStore via(view, {2}, "via view");
  CHECK(raw_of(via, 0) == raw_of(full, 8));
}

TEST_CASE("pairing: every round is a perfect matching; each pair meets once per W-1 rounds") {
  for (int w : {1, 2, 3, 4, 5, 8}) {
    CAPTURE(w);
    std::map<std::pair<int, int>, int> met;
    const int rounds = std::max(w - 1 + (w % 2), 1);
    for (int64_t t = 0; t < rounds; ++t) {
      int sitting = 0;
      for (int r = 0; r < w; ++r) {
        const int p = dist::reshard_partner(r, w, t);
        if (p < 0) {
          ++sitting;
          continue;
        }
        CHECK(p != r);
        CHECK(dist::reshard_partner(p, w, t) == r);  // symmetric
        if (r < p) ++met[{r, p}];
      }
      CHECK(sitting == (w % 2));  // odd worlds: exactly one rank sits out
    }
    for (int a = 0; a < w; ++a)
      for (int b = a + 1; b < w; ++b) CHECK(met[{a, b}] == 1);
  }
}

TEST_CASE("schedule: an epoch moves each rank's quota; caps and 'none' bound a pair's swap") {
  const std::vector<int64_t> sizes{100, 100, 100, 100};
  const auto unl = dist::ReshardSchedule::kUnlimited;
  dist::ReshardSchedule s(0.5, 7, sizes, {unl, unl, unl, unl});
  CHECK(s.epoch_quota(0) == 38);  // round(0.5 * 100 * 3/4) = 37.5 -> 38
  std::vector<int64_t> sent(4, 0);
  for (int64_t it = 0; it < 7; ++it) {
    for (int r = 0; r < 4; ++r) sent[r] += s.count(r, dist::reshard_partner(r, 4, it), it);
    s.advance(it);
  }
  CHECK(sent == std::vector<int64_t>(4, 38));
  // Rank 1 shares nothing, rank 2 at most 5 per epoch: their pairs swap only what both allow.
  dist::ReshardSchedule capped(0.5, 7, sizes, {unl, 0, 5, unl});
  std::vector<int64_t> got(4, 0);
  for (int64_t it = 0; it < 14; ++it) {  // two epochs: the caps renew
    for (int r = 0; r < 4; ++r) {
      const int p = dist::reshard_partner(r, 4, it);
      const int64_t c = capped.count(r, p, it);
      CHECK(c == capped.count(p, r, it));  // both sides agree
      got[r] += c;
    }
    capped.advance(it);
  }
  CHECK(got[1] == 0);
  CHECK(got[2] == 10);
  CHECK(got[0] > 0);
  CHECK_THROWS_AS(dist::ReshardSchedule(1.5, 7, sizes, {unl, unl, unl, unl}),
                  std::invalid_argument);
}

TEST_CASE("selection: shares follow group sizes, picks follow importance") {
  importance::ImportanceCache cache(200, 50, 3);
  // Refresh groups of 50 and 150: in each, the members with even slot numbers matter 100x.
  for (int64_t m : {50, 150}) {
    const auto g = cache.next_group(m);
    std::vector<float> scores(g.size());
    for (std::size_t k = 0; k < g.size(); ++k) scores[k] = g[k] % 2 == 0 ? 10.0f : 0.1f;
    cache.refresh(scores, 1);
  }
  importance::ReshardSelector sel;
  std::mt19937_64 rng(9);
  std::vector<int64_t> out;
  int64_t even = 0, total = 0;
  for (int rep = 0; rep < 200; ++rep) {
    sel.by_importance(cache, 20, rng, out);
    REQUIRE(out.size() == 20);
    CHECK(std::is_sorted(out.begin(), out.end()));
    CHECK(std::adjacent_find(out.begin(), out.end()) == out.end());  // distinct
    int64_t first_group = 0;
    for (int64_t s : out) {
      even += s % 2 == 0;
      ++total;
      first_group += std::count(cache.members(cache.groups()[0]).begin(),
                                cache.members(cache.groups()[0]).end(), s);
    }
    CHECK(first_group == 5);  // 20 * 50/200
  }
  CHECK(static_cast<double>(even) / static_cast<double>(total) > 0.9);
  sel.uniform(30, 30, rng, out);
  CHECK(out.size() == 30);
  CHECK(out.back() == 29);
  sel.by_importance(cache, 0, rng, out);
  CHECK(out.empty());
}

TEST_CASE("arrivals take their group's mean importance") {
  importance::ImportanceCache cache(8, 4, 1);
  const auto g = cache.next_group(4);
  const std::vector<int64_t> members(g.begin(), g.end());
  cache.refresh(std::vector<float>{1, 2, 3, 6}, 5);
  const int64_t slot = members[1];
  cache.arrived(std::vector<int64_t>{slot});
  CHECK(cache.importance(slot) == doctest::Approx(3.0));  // (1+2+3+6)/4
  CHECK(cache.last_refresh(slot) == 5);
  // A slot of a never-scored group stays unknown: it gets the prior.
  const int64_t cold = cache.next_group(4)[0];
  cache.arrived(std::vector<int64_t>{cold});
  CHECK(cache.last_refresh(cold) == -1);
  CHECK(cache.importance(cold) == doctest::Approx(cache.prior()));
}

TEST_CASE("reshard frame decoder: every generated malformed frame is refused, naming the rank") {
  const uint32_t raw = 5;
  const auto good = make_frame(17, 3, raw);
  const dist::ReshardExpect e{2, 17, 3, raw, 1000, 10};
  dist::ReshardBatch b;
  dist::decode_reshard(good, e, b);
  CHECK(b.ids == std::vector<int64_t>{100, 101, 102});
  CHECK(b.labels == std::vector<int32_t>{0, 1, 2});
  CHECK(static_cast<uint8_t>(*b.raw[1]) == 7);
  auto refused = [&](std::vector<std::byte> f, const char* field) {
    CAPTURE(field);
    try {
      dist::decode_reshard(f, e, b);
      FAIL("accepted a malformed frame: " << field);
    } catch (const net::PeerError& x) {
      const std::string m = x.what();
      CHECK(x.peer() == 2);
      CHECK(m.find("from rank 2 at step 17") != std::string::npos);
      CHECK(m.find(field) != std::string::npos);
    }
  };
  for (std::size_t len = 0; len < good.size(); ++len)  // every truncation
    refused(std::vector<std::byte>(good.begin(), good.begin() + len), "length");
  auto longer = good;
  longer.push_back(std::byte{0});
  refused(longer, "length");
  auto set = [&](std::size_t at, auto v) {
    auto f = good;
    std::memcpy(f.data() + at, &v, sizeof v);
    return f;
  };
  refused(set(0, uint32_t{0x12345678}), "magic");
  refused(set(4, uint16_t{2}), "version");
  refused(set(6, uint16_t{1}), "version");
  refused(set(8, int64_t{16}), "step");
  refused(set(16, uint32_t{4}), "sample count");
  refused(set(16, uint32_t{0xFFFFFFFF}), "sample count");
  refused(set(20, uint32_t{6}), "bytes per sample");
  const std::size_t s1 = dist::kReshardHeader + dist::kReshardPerSample + raw;  // sample 1
  for (int64_t bad : {int64_t{-1}, int64_t{1000}, int64_t{1} << 62})
    refused(set(s1, bad), "id: expected 0..999");
  refused(set(s1, int64_t{100}), "appears twice");  // sample 1 repeats sample 0's id
  for (int32_t bad : {-1, 10, 1 << 30}) refused(set(s1 + 8, bad), "label: expected 0..9");
  // Random byte flips: either refused with a PeerError or (a flip in raw bytes) accepted.
  std::mt19937_64 rng(4);
  for (int k = 0; k < 500; ++k) {
    auto f = good;
    f[rng() % f.size()] ^= static_cast<std::byte>(1 + rng() % 255);
    try {
      dist::decode_reshard(f, e, b);
    } catch (const net::PeerError&) {
    }
  }
}

TEST_CASE("a malformed or duplicating frame leaves the receiver's samples untouched") {
  const auto full = synthetic_images(40, 6);
  net::LocalHub hub(2);
  data::LocalStore mine(full, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "rank 0");
  dist::ReshardConfig rc;
  rc.mode = dist::ReshardMode::random;
  rc.budget = 1.0;
  rc.steps_per_epoch = 1;
  rc.timeout_s = 5;
  const auto unl = dist::ReshardSchedule::kUnlimited;
  dist::Resharder r0(hub.transport(0), mine, rc, {10, 10}, {unl, unl});
  const int64_t count = r0.schedule().count(0, 1, 0);
  REQUIRE(count == 5);  // round(1.0 * 10 * 1/2)
  const auto before = mine.content_hashes();
  r0.send(0, nullptr);
  // Rank 1 answers with ids rank 0 already holds (0..4 are in its store).
  auto f = make_frame(0, static_cast<uint32_t>(count), 784);
  for (int k = 0; k < count; ++k) {
    const int64_t id = k;
    std::memcpy(f.data() + dist::kReshardHeader + k * (dist::kReshardPerSample + 784), &id, 8);
  }
  hub.transport(1).send(0, dist::kReshard, 0, 0, std::span<const std::byte>(f));
  try {
    (void)r0.receive(0);
    FAIL("a duplicating frame was applied");
  } catch (const net::PeerError& e) {
    CHECK(std::string(e.what()).find("already held by rank 0") != std::string::npos);
    CHECK(std::string(e.what()).find("from rank 1") != std::string::npos);
  }
  CHECK(mine.content_hashes() == before);
  CHECK(mine.ids() == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("trainer: samples move, the cluster's multiset never changes, runs repeat bit for bit") {
  const auto train = synthetic_images(120, 11), test = synthetic_images(16, 12);
  for (const char* mode : {"importance", "random"}) {
    CAPTURE(mode);
    auto cfg = config();
    cfg.reshard = mode;
    auto off = cfg;
    off.reshard = "off";
    const auto still = train_ranks(off, 4, train, test);  // the initial partition
    std::vector<int64_t> sizes;
    for (const auto& r : still) {
      sizes.push_back(static_cast<int64_t>(r.ids.size()));
      CHECK(r.stats.sent == 0);
    }
    const auto a = train_ranks(cfg, 4, train, test);
    int64_t moved = 0;
    for (const auto& r : a) {
      CHECK(r.stats.sent == r.stats.received);
      CHECK(r.stats.sent > 0);
      moved += r.stats.sent;
    }
    // 2 epochs of llround(1.0 * 30 * 3/4) = 23 per rank (4 parts of 30)
    CHECK(sizes == std::vector<int64_t>(4, 30));
    CHECK(moved == 4 * 2 * 23);
    check_invariant(a, train, sizes);
    for (int r = 0; r < 4; ++r) CHECK(a[r].ids != still[r].ids);  // samples really moved
    const auto b = train_ranks(cfg, 4, train, test);
    for (int r = 0; r < 4; ++r) {
      CAPTURE(r);
      CHECK(a[r].ids == b[r].ids);
      CHECK(a[r].weights == b[r].weights);
    }
  }
}

TEST_CASE("trainer: a device that shares nothing trains on and swaps nothing") {
  const auto train = synthetic_images(120, 13), test = synthetic_images(16, 14);
  auto cfg = config();
  cfg.epochs = 1;
  const auto out = train_ranks(cfg, 4, train, test, nullptr, {}, {"all", "none", "3", "all"});
  CHECK(out[1].stats.sent == 0);
  CHECK(out[1].stats.received == 0);
  CHECK(out[2].stats.sent == 3);
  CHECK(out[0].stats.sent > 3);
  CHECK(out[1].steps == out[0].steps);
  std::vector<int64_t> sizes;
  for (const auto& r : out) sizes.push_back(static_cast<int64_t>(r.ids.size()));
  check_invariant(out, train, sizes);
}

TEST_CASE("trainer: a rank killed mid-swap, then resumed: nothing lost, bit-exact continuation") {
  const auto train = synthetic_images(120, 15), test = synthetic_images(16, 16);
  auto cfg = config();
  cfg.optimizer = "adam";
  cfg.checkpoint = temp_path("killed.safetensors");
  cfg.checkpoint_every = 3;
  const auto whole = train_ranks(cfg, 4, train, test);
  // Rank 2 dies at step 10, right after handing its samples to the transport.
  std::vector<std::exception_ptr> errors;
  (void)train_ranks(cfg, 4, train, test, &errors, [](int r, int64_t it) {
    if (r == 2 && it == 10) throw std::runtime_error("killed mid-swap");
  });
  CHECK(error_message(errors[2]) == "killed mid-swap");
  for (int r : {0, 1, 3}) CHECK(errors[r] != nullptr);  // the others fail too
  auto again = cfg;
  again.resume = cfg.checkpoint;  // written at step 9
  const auto resumed = train_ranks(again, 4, train, test);
  std::vector<int64_t> sizes;
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    CHECK(resumed[r].steps == whole[r].steps);
    CHECK(resumed[r].ids == whole[r].ids);
    CHECK(resumed[r].weights == whole[r].weights);
    sizes.push_back(static_cast<int64_t>(resumed[r].ids.size()));
  }
  check_invariant(resumed, train, sizes);
  std::filesystem::remove(cfg.checkpoint);
}

TEST_CASE("trainer: the full training set may be freed once a rank holds its own part") {
  auto train = std::make_unique<data::ImageDataset>(synthetic_images(60, 17));
  const auto test = synthetic_images(16, 18);
  auto cfg = config();
  cfg.epochs = 1;
  net::LocalHub hub(2);
  thread_pool().set_threads(1);
  std::vector<std::unique_ptr<data::ImageDataset>> copies(2);
  copies[0] = std::make_unique<data::ImageDataset>(*train);
  copies[1] = std::make_unique<data::ImageDataset>(*train);
  std::vector<int> released(2, 0);
  mercury::testing::require_no_errors(run_ranks(2, [&](int r) {
    auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 7);
    train::DistContext ctx{hub.transport(r), dist::ShardPlan(model->params.size(), 2)};
    ctx.release_dataset = [&, r] {
      ++released[r];
      copies[r].reset();  // any later read of it is a use-after-free (ASan)
    };
    std::ostringstream log;
    train::Trainer trainer(cfg, *model, *copies[r], test, log, &ctx);
    trainer.run();
    CHECK(trainer.local_store()->size() == 30);
  }));
  CHECK(released == std::vector<int>{1, 1});
}

TEST_CASE("reshard settings are checked, and must agree across ranks") {
  auto c = config();
  c.reshard = "sometimes";
  CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("reshard: expected off, random"),
                       std::invalid_argument);
  c = config();
  c.sampler = "uniform";
  CHECK_THROWS_WITH_AS(train::validate(c),
                       doctest::Contains("reshard importance: expected "
                                         "sampler mercury or all-is"),
                       std::invalid_argument);
  c.reshard = "random";
  CHECK_NOTHROW(train::validate(c));
  c.reshard_budget = -0.1;
  CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("reshard_budget"),
                       std::invalid_argument);
  c = config();
  for (const char* bad : {"", "some", "-3", "+3", "3x", " 3"}) {
    c.reshard_share = bad;
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("reshard_share: expected all"),
                         std::invalid_argument);
  }
  CHECK(train::parse_reshard_share("none") == 0);
  CHECK(train::parse_reshard_share("all") == -1);
  CHECK(train::parse_reshard_share("12") == 12);
  // Single device: refused.
  const auto train = synthetic_images(40, 19), test = synthetic_images(8, 20);
  c = config();
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 7);
  std::ostringstream log;
  CHECK_THROWS_WITH_AS(train::Trainer(c, *model, train, test, log),
                       doctest::Contains("reshard: expected off on a single device"),
                       std::invalid_argument);
  // Ranks that disagree on the mode are refused naming the field; the share may differ.
  net::LocalHub hub(2);
  auto errors = run_ranks(2, [&](int r) {
    auto cr = config();
    cr.epochs = 1;
    if (r == 1) cr.reshard = "random";
    auto m = models::make_model("mlp", Shape{1, 28, 28}, 10, 7);
    const train::DistContext ctx{hub.transport(r), dist::ShardPlan(m->params.size(), 2)};
    std::ostringstream l;
    train::Trainer(cr, *m, train, test, l, &ctx).run();
  });
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK(error_message(errors[r]).find("training config field 'reshard'") != std::string::npos);
  }
}
