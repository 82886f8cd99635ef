// Importance sampling core: unbiasedness by exact enumeration, sampler frequencies by a
// chi-square test, degenerate inputs, the group cache, scoring purity and determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "mercury/mercury.hpp"
#include "tiny_model.hpp"

using namespace mercury;
using mercury::testing::gradient;
using mercury::testing::max_rel_diff;
using mercury::testing::tiny_images;
using mercury::testing::tiny_model;
using namespace mercury::importance;

namespace {

// A cache over n samples with groups of m, every group refreshed once with distinct losses.
ImportanceCache refreshed_cache(int64_t n, int64_t m, uint64_t seed) {
  ImportanceCache c(n, m, seed);
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> u(0.05f, 3.0f);
  for (int64_t it = 0; it * m < n; ++it) {
    const auto g = c.next_group(m);
    std::vector<float> s(g.size());
    for (float& v : s) v = u(rng);
    c.refresh(s, it);
  }
  return c;
}

}  // namespace

TEST_CASE("weighted gradients are unbiased by exact enumeration, both weighting variants") {
  auto model = tiny_model(3);
  nn::Engine eng(*model);
  const auto data = tiny_images(12, 4);
  ImportanceCache cache = refreshed_cache(12, 4, 7);  // 3 groups of 4, refreshed at 0, 1, 2
  for (const bool rank : {false, true})
    for (Weighting wt : {Weighting::paper, Weighting::exact}) {
      INFO("rank q: " << rank);
      SamplerConfig cfg;
      cfg.beta = 0.7;  // recency matters: π is far from uniform
      cfg.weighting = wt;
      cfg.rank = rank;
      GroupSampler s(cfg);
      const auto pi = s.group_probabilities(cache);
      std::vector<double> expected(static_cast<std::size_t>(model->params.size()), 0.0);
      std::vector<double> paper_target(expected.size(), 0.0);
      for (std::size_t gi = 0; gi < cache.groups().size(); ++gi) {
        const Group& g = cache.groups()[gi];
        const auto q = s.in_group_probabilities(cache, g);
        const auto members = cache.members(g);
        std::vector<double> cond(expected.size(), 0.0);  // E[w·∇l | group gi]
        for (std::size_t j = 0; j < members.size(); ++j) {
          const float w = static_cast<float>(s.slot_weight(g.size, 12.0, pi[gi], q[j]));
          const auto gw = gradient(*model, eng, data, {members[j]}, &w);
          for (std::size_t k = 0; k < cond.size(); ++k) cond[k] += q[j] * gw[k];
        }
        if (wt == Weighting::paper) {  // conditionally: the uniform mean over the group
          const auto full = gradient(*model, eng, data,
                                     std::vector<int64_t>(members.begin(), members.end()), nullptr);
          CHECK(max_rel_diff(cond, full) < 1e-5);
          for (std::size_t k = 0; k < cond.size(); ++k) paper_target[k] += pi[gi] * full[k];
        }
        for (std::size_t k = 0; k < cond.size(); ++k) expected[k] += pi[gi] * cond[k];
      }
      std::vector<int64_t> all(12);
      std::iota(all.begin(), all.end(), int64_t{0});
      const auto uniform = gradient(*model, eng, data, all, nullptr);
      if (wt == Weighting::exact) {
        CHECK(max_rel_diff(expected, uniform) < 1e-5);  // the full-data mean gradient
      } else {
        CHECK(max_rel_diff(expected, paper_target) < 1e-5);
        CHECK(max_rel_diff(expected, uniform) > 1e-3);  // recency weighting is not the full mean
      }
    }
}

TEST_CASE("sampler slot frequencies match pi·q (chi-square, p > 0.001)") {
  ImportanceCache cache = refreshed_cache(30, 7, 11);  // groups of 7,7,7,7,2
  SamplerConfig cfg;
  cfg.beta = 0.3;
  GroupSampler s(cfg);
  std::map<int64_t, double> expected;
  const auto pi = s.group_probabilities(cache);
  for (std::size_t gi = 0; gi < cache.groups().size(); ++gi) {
    const auto q = s.in_group_probabilities(cache, cache.groups()[gi]);
    const auto members = cache.members(cache.groups()[gi]);
    for (std::size_t j = 0; j < members.size(); ++j) expected[members[j]] += pi[gi] * q[j];
  }
  std::mt19937_64 rng(5);
  BatchDraw draw;
  std::map<int64_t, int64_t> counts;
  const int64_t batches = 20000, B = 8;
  for (int64_t b = 0; b < batches; ++b) {
    s.draw(cache, B, rng, draw);
    for (int64_t i : draw.indices) counts[i]++;
  }
  double chi2 = 0;
  const double total = static_cast<double>(batches * B);
  for (const auto& [i, p] : expected) {
    const double e = p * total;
    const double o = static_cast<double>(counts[i]);
    chi2 += (o - e) * (o - e) / e;
  }
  // Critical value at p = 0.001 by the Wilson–Hilferty approximation (z = 3.0902).
  const double k = static_cast<double>(expected.size() - 1);
  const double crit = k * std::pow(1 - 2 / (9 * k) + 3.0902 * std::sqrt(2 / (9 * k)), 3);
  INFO("chi2 = " << chi2 << ", critical = " << crit);
  CHECK(chi2 < crit);
  CHECK(chi2 > 0);
}

TEST_CASE("systematic in-group draw: every count is floor or ceil of n·q, mean count is n·q") {
  // One group of 9 (d = 1), so every slot comes from it and each member's count in a batch of n
  // must be floor(n·q_j) or ceil(n·q_j). Unbiasedness needs only E[count_j] = n·q_j (the weights
  // are the i.i.d. ones): checked on the mean over many batches. A count varies by at most 1
  // between batches, so its mean over 20000 batches has a standard deviation below 0.0036;
  // the tolerance 0.02 is more than 5 of those.
  ImportanceCache c(9, 9, 3);
  c.refresh(std::vector<float>{0.01f, 0.3f, 2.5f, 0.7f, 0.05f, 1.2f, 4.0f, 0.2f, 0.9f}, 0);
  SamplerConfig cfg;
  cfg.groups_per_batch = 1;
  cfg.systematic = true;
  GroupSampler s(cfg);
  const auto q = s.in_group_probabilities(c, c.groups()[0]);
  const std::vector<double> qs(q.begin(), q.end());
  const auto members = c.members(c.groups()[0]);
  std::mt19937_64 rng(9);
  BatchDraw draw;
  for (int64_t n : {1, 5, 16, 37}) {
    std::map<int64_t, double> sum;
    const int batches = 20000;
    bool within = true;
    for (int b = 0; b < batches; ++b) {
      s.draw(c, n, rng, draw);
      std::map<int64_t, int64_t> count;
      for (int64_t i : draw.indices) count[i]++;
      for (std::size_t j = 0; j < members.size(); ++j) {
        const double e = static_cast<double>(n) * qs[j];
        const auto k = static_cast<double>(count[members[j]]);
        within = within && k >= std::floor(e) && k <= std::ceil(e);
        sum[members[j]] += k;
      }
    }
    INFO("n = " << n);
    CHECK(within);
    for (std::size_t j = 0; j < members.size(); ++j) {
      CHECK(std::abs(sum[members[j]] / batches - static_cast<double>(n) * qs[j]) < 0.02);
    }
  }
  // The weights are the i.i.d. draw's: 1/(M·q) of the drawn member.
  s.draw(c, 16, rng, draw);
  for (std::size_t k = 0; k < draw.indices.size(); ++k) {
    const auto j = static_cast<std::size_t>(
        std::find(members.begin(), members.end(), draw.indices[k]) - members.begin());
    CHECK(draw.weights[k] == doctest::Approx(1.0 / (9.0 * qs[j])));
  }
}

TEST_CASE(
    "rank in-group q: percentile + lambda, ties share a rank, bounded by (1 + lambda)/lambda") {
  ImportanceCache c(5, 5, 3);
  c.refresh(std::vector<float>{0.2f, 50.0f, 0.2f, 0.01f, 1.0f}, 0);
  SamplerConfig cfg;
  cfg.rank = true;
  cfg.lambda = 0.25;
  GroupSampler s(cfg);
  // refresh() gives the k-th score to the group's k-th member, and q follows the same order.
  const auto q = s.in_group_probabilities(c, c.groups()[0]);
  // Ranks 0.01 -> 0, the two 0.2s -> (1 + 2)/2 = 1.5, 1.0 -> 3, 50 -> 4; percentile r/4.
  const double z = (0 + 1.5 + 1.5 + 3 + 4) / 4.0 + 5 * 0.25;
  CHECK(q[3] == doctest::Approx((0 / 4.0 + 0.25) / z));
  CHECK(q[0] == doctest::Approx((1.5 / 4.0 + 0.25) / z));
  CHECK(q[2] == doctest::Approx(q[0]));
  CHECK(q[4] == doctest::Approx((3 / 4.0 + 0.25) / z));
  CHECK(q[1] == doctest::Approx((1.0 + 0.25) / z));  // a 50x outlier is worth one rank step
  CHECK(q[1] / q[3] == doctest::Approx(5.0));        // (1 + λ) / λ
  // Equal losses: uniform q, unit paper weights; a group of one: q = 1.
  ImportanceCache e(8, 4, 3);
  e.refresh(std::vector<float>(4, 0.7f), 0);
  e.refresh(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}, 1);
  for (double v : s.in_group_probabilities(e, e.groups()[0])) CHECK(v == doctest::Approx(0.25));
  ImportanceCache one(2, 1, 3);
  one.refresh(std::vector<float>{0.5f}, 0);
  CHECK(s.in_group_probabilities(one, one.groups()[0])[0] == doctest::Approx(1.0));
  // λ = 0 would never draw a group's lowest-ranked member: refused.
  cfg.lambda = 0;
  CHECK_THROWS_WITH(GroupSampler{cfg}, doctest::Contains("rank q needs lambda > 0"));
}

TEST_CASE("degenerate importances: equal, zero, NaN/Inf, groups of one, tiny datasets") {
  std::mt19937_64 rng(1);
  BatchDraw draw;
  SUBCASE("equal losses give uniform q and unit weights") {
    ImportanceCache c(10, 5, 2);
    for (int it = 0; it < 2; ++it) c.refresh(std::vector<float>(5, 0.7f), it);
    GroupSampler s(SamplerConfig{});
    s.draw(c, 16, rng, draw);
    for (float w : draw.weights) CHECK(w == doctest::Approx(1.0f));
  }
  SUBCASE("all-zero losses fall back to uniform q") {
    ImportanceCache c(6, 3, 2);
    for (int it = 0; it < 2; ++it) c.refresh(std::vector<float>(3, 0.0f), it);
    GroupSampler s(SamplerConfig{});
    const auto q = s.in_group_probabilities(c, c.groups()[0]);
    for (double v : q) CHECK(v == doctest::Approx(1.0 / 3));
    s.draw(c, 9, rng, draw);
    for (float w : draw.weights) CHECK(w == doctest::Approx(1.0f));
  }
  SUBCASE("NaN and Inf scores never produce a non-finite weight") {
    ImportanceCache c(8, 4, 2);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    c.refresh(std::vector<float>{nan, 1.0f, inf, 2.0f}, 0);
    c.refresh(std::vector<float>{nan, nan, nan, nan}, 1);
    CHECK(c.nonfinite_scores() == 6);
    for (Weighting wt : {Weighting::paper, Weighting::exact}) {
      SamplerConfig cfg;
      cfg.weighting = wt;
      GroupSampler s(cfg);
      s.draw(c, 64, rng, draw);
      for (float w : draw.weights) CHECK((std::isfinite(w) && w > 0));
    }
    // A non-finite score takes the group's finite maximum.
    const auto first = c.members(c.groups()[0]);
    CHECK(c.importance(first[0]) == 2.0f);
    CHECK(c.importance(first[2]) == 2.0f);
  }
  SUBCASE("groups of size one and a dataset smaller than one batch") {
    ImportanceCache c(3, 1, 2);
    for (int it = 0; it < 3; ++it) c.refresh(std::vector<float>{0.5f + it}, it);
    CHECK(c.groups().size() == 3);
    GroupSampler s(SamplerConfig{});
    s.draw(c, 64, rng, draw);
    CHECK(draw.indices.size() == 64);
    for (int64_t i : draw.indices) CHECK((i >= 0 && i < 3));
    for (float w : draw.weights) CHECK(w == doctest::Approx(1.0f));  // q = 1 inside a group of one
  }
}

TEST_CASE("the cache refreshes round-robin and keeps groups tiling the order") {
  ImportanceCache c(10, 4, 9);
  CHECK(c.groups().size() == 3);                   // 4 + 4 + 2, never scored
  CHECK(c.importance(0) == doctest::Approx(1.0));  // prior before any score
  c.refresh(std::vector<float>(3, 2.0f), 0);       // variable M: a group of 3
  c.refresh(std::vector<float>(5, 4.0f), 1);       // then 5
  CHECK(c.ema_mean() == doctest::Approx(0.9 * 2.0 + 0.1 * 4.0));
  int64_t covered = 0, expect_start = 0;
  for (const Group& g : c.groups()) {
    CHECK(g.start == expect_start);
    expect_start += g.size;
    covered += g.size;
  }
  CHECK(covered == 10);
  CHECK(c.groups()[0].refreshed == 0);
  CHECK(c.groups()[1].refreshed == 1);
  CHECK(c.groups().back().refreshed == -1);  // the tail of the old third group survives
  CHECK(c.next_group(100).size() == 2);      // groups never wrap: 2 left in this cycle
  c.refresh(std::vector<float>(2, 1.0f), 2);
  CHECK(c.next_group(4).size() == 4);  // back at the start of the order
  CHECK_THROWS_WITH(c.refresh(std::vector<float>(11, 1.0f), 3),
                    doctest::Contains("11 scores for a group of at most 10"));
}

TEST_CASE("training-pass losses refresh single samples without touching group recency") {
  ImportanceCache c(6, 3, 4);
  c.refresh(std::vector<float>(3, 2.0f), 0);
  const int64_t member = c.members(c.groups()[0])[0];
  const int64_t unscored = c.members(c.groups()[1])[0];
  c.observe(unscored, 7.5f, 5);
  CHECK(c.importance(unscored) == doctest::Approx(7.5));
  CHECK(c.last_refresh(unscored) == 5);
  CHECK(c.groups()[1].refreshed == -1);  // the group's recency is the scorer's, not the trainer's
  c.observe(member, -3.0f, 6);           // losses are clamped at 0, like refresh()
  CHECK(c.importance(member) == 0.0f);
  const int64_t before = c.nonfinite_scores();
  c.observe(member, std::numeric_limits<float>::quiet_NaN(), 7);
  CHECK(c.importance(member) == 0.0f);  // a NaN never replaces a known importance
  CHECK(c.last_refresh(member) == 6);
  CHECK(c.nonfinite_scores() == before + 1);
}

TEST_CASE("the scorer leaves the model untouched and agrees with a snapshot") {
  auto model = tiny_model(3);
  const auto data = tiny_images(20, 5);
  Scorer sc(*model, data, 7);  // chunks of 7: exercises the tail chunk
  std::vector<int64_t> idx(20);
  std::iota(idx.begin(), idx.end(), int64_t{0});
  const std::vector<float> w0(model->params.values(),
                              model->params.values() + model->params.size());
  std::vector<float> live(20), snap(20);
  sc.score(idx, live.data());
  CHECK(std::vector<float>(model->params.values(), model->params.values() + model->params.size()) ==
        w0);
  sc.set_snapshot(w0.data());
  sc.score(idx, snap.data());
  CHECK(live == snap);
  nn::Engine e(*model);
  std::vector<float> x(20 * 16), one(20);
  std::vector<int32_t> y(20);
  data.gather(idx, x.data(), y.data(), nullptr);
  e.score(x.data(), y.data(), 20, one.data());
  CHECK(one == live);  // chunking does not change the scores
}

TEST_CASE("policies are deterministic for a seed") {
  auto model = tiny_model(3);
  const auto data = tiny_images(50, 6);
  for (SamplerKind kind : {SamplerKind::mercury, SamplerKind::all_is, SamplerKind::kf,
                           SamplerKind::selective_backprop, SamplerKind::infobatch}) {
    PolicyConfig pc;
    pc.kind = kind;
    pc.batch = 8;
    pc.group_size = 10;
    pc.seed = 42;
    auto a = make_policy(pc, *model, data, 50);
    auto b = make_policy(pc, *model, data, 50);
    BatchPlan pa, pb;
    for (int it = 0; it < 5; ++it) {
      a->next(it, pa);
      b->next(it, pb);
      CHECK(pa.indices == pb.indices);
      CHECK(pa.weights == pb.weights);
      CHECK(pa.indices.size() == 8);
    }
  }
  CHECK_THROWS_WITH(parse_sampler("magic"), doctest::Contains("found 'magic'"));
}

TEST_CASE("a policy restored from its saved state draws what the original draws") {
  auto model = tiny_model(3);
  const auto data = tiny_images(50, 6);
  for (SamplerKind kind : {SamplerKind::mercury, SamplerKind::all_is, SamplerKind::kf,
                           SamplerKind::selective_backprop, SamplerKind::infobatch}) {
    CAPTURE(static_cast<int>(kind));
    PolicyConfig pc;
    pc.kind = kind;
    pc.batch = 8;
    pc.group_size = 7;  // 50 = 7·7 + 1: the cycle ends in a short group
    pc.sb_history = 16;
    pc.seed = 42;
    pc.kf_tau_th = 1.5;  // kf: τ crosses it at step 8, then hovers: both phases get restored
    auto a = make_policy(pc, *model, data, 50);
    BatchPlan pa, pb;
    for (int it = 0; it < 9; ++it) {
      a->next(it, pa);
      a->observe_bounds(std::vector<float>{9, 0, 0, 0, 0, 0, 0, 0});
    }
    io::StateWriter w;
    a->save_state(w);
    pc.seed = 7;  // the state, not the seed, decides what comes next
    auto b = make_policy(pc, *model, data, 50);
    io::StateReader r(w.bytes(), "test state");
    b->load_state(r);
    r.finish();
    bool both_phases = false;
    for (int it = 9; it < 20; ++it) {
      a->next(it, pa);
      b->next(it, pb);
      CHECK(pa.indices == pb.indices);
      CHECK(pa.weights == pb.weights);
      CHECK(pa.importance == pb.importance);
      both_phases |= kind == SamplerKind::kf && pa.importance;
      const std::vector<float> bounds{9, 0, 0, 0, 0, 0, 0, 0};
      a->observe_bounds(bounds);
      b->observe_bounds(bounds);
    }
    if (kind == SamplerKind::kf) CHECK(both_phases);
    // The state belongs to 50 samples: a 40-sample policy refuses it.
    auto c = make_policy(pc, *model, data, 40);
    io::StateReader r40(w.bytes(), "test state");
    CHECK_THROWS_WITH(c->load_state(r40), doctest::Contains("expected 40 elements, found 50"));
    // Every truncation is refused with a message, never read past the end.
    for (std::size_t cut :
         {std::size_t{0}, std::size_t{5}, w.bytes().size() / 2, w.bytes().size() - 1}) {
      CAPTURE(cut);
      auto d = make_policy(pc, *model, data, 50);
      io::StateReader rc(std::span(w.bytes()).first(cut), "test state");
      CHECK_THROWS_WITH(d->load_state(rc), doctest::Contains("test state, field"));
    }
  }
}

TEST_CASE("a damaged cache state is refused, naming the field") {
  ImportanceCache c(6, 2, 1);
  c.refresh(std::vector<float>{1, 2}, 0);
  io::StateWriter w;
  c.save(w);
  auto bytes = w.bytes();
  // The visiting order follows two vectors of 6 (length prefix + data): make one entry repeat.
  const std::size_t order_at = 8 + 6 * 4 + 8 + 6 * 8 + 8;
  int64_t first;
  std::memcpy(&first, bytes.data() + order_at, 8);
  std::memcpy(bytes.data() + order_at + 8, &first, 8);
  ImportanceCache d(6, 2, 1);
  io::StateReader r(bytes, "cache");
  CHECK_THROWS_WITH(d.load(r), doctest::Contains("visiting order"));
  io::StateReader ok(w.bytes(), "cache");
  d.load(ok);
  ok.finish();
  for (int64_t i = 0; i < 6; ++i) CHECK(d.importance(i) == c.importance(i));
  io::StateWriter extra = w;
  extra.pod<uint8_t>(1);
  io::StateReader trailing(extra.bytes(), "cache");
  ImportanceCache e(6, 2, 1);
  e.load(trailing);
  CHECK_THROWS_WITH(trailing.finish(), doctest::Contains("1 trailing bytes"));
}

TEST_CASE("kf variance-reduction estimate: 1/sqrt(1 - |g-u|^2/|g|^2) = sqrt(n sum g^2)") {
  CHECK(kf_variance_reduction(std::vector<float>(8, 0.3f)) == doctest::Approx(1.0));
  CHECK(kf_variance_reduction(std::vector<float>{0, 0, 5, 0}) == doctest::Approx(2.0));
  CHECK(kf_variance_reduction(std::vector<float>(4, 0.0f)) == 1.0);  // nothing to prefer
  const std::vector<float> bad{1.0f, std::numeric_limits<float>::quiet_NaN(), -2.0f, 1.0f};
  CHECK(kf_variance_reduction(bad) == doctest::Approx(std::sqrt(4.0 * 0.5)));
  std::mt19937_64 rng(5);
  std::vector<float> v(37);
  for (auto& x : v) x = std::uniform_real_distribution<float>(0.0f, 3.0f)(rng);
  double z = 0;
  for (float x : v) z += x;
  double dev = 0, norm = 0;
  const double u = 1.0 / 37;
  for (float x : v) {
    dev += (x / z - u) * (x / z - u);
    norm += (x / z) * (x / z);
  }
  CHECK(kf_variance_reduction(v) == doctest::Approx(1.0 / std::sqrt(1.0 - dev / norm)));
}

TEST_CASE("kf samples uniformly until its variance-reduction EMA passes the threshold") {
  auto model = tiny_model(3);
  const auto data = tiny_images(50, 6);
  PolicyConfig pc;
  pc.kind = SamplerKind::kf;
  pc.batch = 8;
  pc.kf_presample = 3;  // threshold (3 + 3)/3 = 2
  auto p = make_policy(pc, *model, data, 50);
  auto& kf = dynamic_cast<PresamplePolicy&>(*p);
  CHECK(kf.tau_threshold() == doctest::Approx(2.0));
  CHECK(kf.wants_grad_bounds());
  BatchPlan plan;
  std::vector<int64_t> seen;
  // Equal bounds: τ → 1 < 2, uniform batches forever (unweighted, nothing scored).
  for (int it = 0; it < 30; ++it) {
    p->next(it, plan);
    CHECK(!plan.importance);
    CHECK(plan.scored == 0);
    CHECK(plan.weights.empty());
    CHECK(plan.indices.size() == 8);
    seen.insert(seen.end(), plan.indices.begin(), plan.indices.end());
    p->observe_bounds(std::vector<float>(8, 0.5f));
  }
  CHECK(kf.tau() == doctest::Approx(1.0 - std::pow(0.9, 30)));
  // The uniform batches walk shuffled epochs: the first 48 indices hold 48 distinct samples.
  std::sort(seen.begin(), seen.begin() + 48);
  CHECK(std::unique(seen.begin(), seen.begin() + 48) == seen.begin() + 48);
  // One sample holding every bound: reduction sqrt(8) ≈ 2.83 per batch pushes τ over 2.
  int uniform_steps = 0;
  for (int it = 30; it < 60; ++it) {
    p->next(it, plan);
    if (plan.importance) break;
    ++uniform_steps;
    p->observe_bounds(std::vector<float>{4, 0, 0, 0, 0, 0, 0, 0});
  }
  CHECK(plan.importance);
  CHECK(plan.scored == 24);  // presampled 3·8 candidates
  CHECK(plan.weights.size() == 8);
  CHECK(uniform_steps > 1);
  CHECK(kf.tau() > 0);
  // While importance sampling, the training-forward bounds do not move τ (the candidates do).
  const double tau = kf.tau();
  p->observe_bounds(std::vector<float>(8, 1.0f));
  CHECK(kf.tau() == tau);
  // Threshold 0: importance sampling from the first step; no training-forward bounds needed.
  pc.kf_tau_th = 0;
  auto q = make_policy(pc, *model, data, 50);
  CHECK(!q->wants_grad_bounds());
  q->next(0, plan);
  CHECK(plan.importance);
  CHECK(plan.scored == 24);
  pc.kf_tau_th = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(make_policy(pc, *model, data, 50), doctest::Contains("must be finite"));
}

TEST_CASE("refresh_every scores a group every N iterations only") {
  auto model = tiny_model(3);
  const auto data = tiny_images(50, 6);
  PolicyConfig pc;
  pc.kind = SamplerKind::mercury;
  pc.batch = 8;
  pc.group_size = 10;
  pc.refresh_every = 3;
  auto p = make_policy(pc, *model, data, 50);
  BatchPlan plan;
  for (int it = 1; it <= 9; ++it) {  // starts off-cycle: the first call scores anyway
    p->next(it, plan);
    CHECK(plan.indices.size() == 8);
    CHECK(plan.scored == (it == 1 || it % 3 == 0 ? 10 : 0));
  }
  CHECK(p->cache()->refreshes() == 4);
}

TEST_CASE("tempered weights: w^alpha, alpha = 0 is unweighted, alpha = 1 unchanged") {
  ImportanceCache c(12, 6, 3);
  c.refresh(std::vector<float>{0.1f, 0.5f, 2.0f, 0.0f, 1.0f, 3.0f}, 0);
  c.refresh(std::vector<float>{0.2f, 0.2f, 4.0f, 0.3f, 0.9f, 0.1f}, 1);
  BatchDraw d1, dh, d0;
  std::mt19937_64 r1(5), rh(5), r0(5);
  SamplerConfig cfg;
  GroupSampler s1(cfg);
  cfg.weight_power = 0.5;
  GroupSampler sh(cfg);
  cfg.weight_power = 0;
  GroupSampler s0(cfg);
  s1.draw(c, 32, r1, d1);
  sh.draw(c, 32, rh, dh);
  s0.draw(c, 32, r0, d0);
  CHECK(d1.indices == dh.indices);  // tempering changes the weights, not the draw
  CHECK(d1.indices == d0.indices);
  for (std::size_t k = 0; k < d1.weights.size(); ++k) {
    CHECK(dh.weights[k] == doctest::Approx(std::sqrt(d1.weights[k])));
    CHECK(d0.weights[k] == 1.0f);
  }
  cfg.weight_power = 1.5;
  CHECK_THROWS_WITH(GroupSampler{cfg}, doctest::Contains("weight power must be in [0, 1]"));
}

TEST_CASE("effective sample size, histogram and rank change") {
  const std::vector<float> equal(10, 2.0f), skew{10, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  CHECK(effective_sample_fraction(equal) == doctest::Approx(1.0));
  CHECK(effective_sample_fraction(skew) == doctest::Approx(0.1));
  const auto h = histogram(std::vector<float>{0.1f, 0.2f, 0.9f, 1.0f}, 2, 1.0);
  CHECK(h.counts == std::vector<int64_t>{2, 2});
  std::vector<float> a(100), b(100);
  for (int i = 0; i < 100; ++i) a[i] = b[i] = static_cast<float>(i);
  std::swap(b[0], b[99]);  // two samples jump across the whole ranking
  const auto rc = rank_change(a, b);
  CHECK(rc.under5 == doctest::Approx(0.98));
  CHECK(rc.under10 == doctest::Approx(0.98));
  // Spearman: 1 - 6·Σd²/(n(n²-1)) with d = ±99 for the two swapped samples.
  CHECK(rc.spearman == doctest::Approx(1.0 - 6.0 * 2 * 99 * 99 / (100.0 * 9999.0)));
  CHECK(rank_change(a, a).spearman == doctest::Approx(1.0));
  std::vector<float> rev(a.rbegin(), a.rend());
  CHECK(rank_change(a, rev).spearman == doctest::Approx(-1.0));
  CHECK(rank_change(std::vector<float>{1.0f}, std::vector<float>{2.0f}).spearman == 1.0);
  // Top 10% = the 10 largest (90..99): after the swap 99 dropped to the bottom, 0 rose to the top.
  CHECK(rc.top10_kept == doctest::Approx(0.9));
  CHECK(rank_change(a, rev).top10_kept == 0.0);
  CHECK(rank_change(a, a).top10_kept == 1.0);
}

TEST_CASE("probe schedule: a base every period, then lags 1, 10 and 100 below the period") {
  CHECK(probe_lag(5, 0) == -1);     // statistics off
  CHECK(probe_lag(1, 1000) == -1);  // before the first base
  CHECK(probe_lag(1000, 1000) == 0);
  CHECK(probe_lag(3000, 1000) == 0);
  CHECK(probe_lag(1001, 1000) == 1);
  CHECK(probe_lag(1010, 1000) == 10);
  CHECK(probe_lag(1100, 1000) == 100);
  CHECK(probe_lag(1002, 1000) == -1);
  CHECK(probe_lag(1999, 1000) == -1);
  CHECK(probe_lag(60, 50) == 10);
  CHECK(probe_lag(150, 100) == -1);  // lag 50: not logged; lag 100 would be the next base
  CHECK(probe_lag(200, 100) == 0);
  CHECK(probe_lag(11, 10) == 1);
  CHECK(probe_lag(20, 10) == 0);  // lag 10 = the period: the next base compares with it
}

namespace {

PolicyConfig infobatch_config(int64_t batch, double ratio, uint64_t seed) {
  PolicyConfig pc;
  pc.kind = SamplerKind::infobatch;
  pc.batch = batch;
  pc.ib_ratio = ratio;
  pc.seed = seed;
  return pc;
}

// Drives an InfoBatch policy as the trainer does: next(), then the trained batch's losses back
// through observe(). Sample i's loss is loss[i] (NaN: the sample is never given a loss).
struct InfoBatchDriver {
  InfoBatchPolicy& p;
  const std::vector<float>& loss;
  int64_t it = 0;
  BatchPlan plan;
  std::vector<float> batch_loss;
  void step() {
    p.next(it, plan);
    batch_loss.clear();
    for (int64_t i : plan.indices) batch_loss.push_back(loss[static_cast<std::size_t>(i)]);
    p.observe(plan.indices, batch_loss, it);
    ++it;
  }
};

}  // namespace

TEST_CASE("infobatch: every pass drops below-mean samples with probability r, weighs the rest") {
  const int64_t n = 40;
  PolicyConfig pc = infobatch_config(7, 0.3, 5);
  InfoBatchPolicy p(pc, n);
  // Losses 0.0, 0.1, ..., 3.5; samples 36–39 never get one. The mean of the known ones is 1.75,
  // so samples 0–17 are below it (prunable) and 18–39 always train.
  std::vector<float> loss(n, std::numeric_limits<float>::quiet_NaN());
  for (int64_t i = 0; i < 36; ++i) loss[static_cast<std::size_t>(i)] = 0.1f * static_cast<float>(i);
  InfoBatchDriver d{p, loss};
  const float up = static_cast<float>(1.0 / 0.7);
  std::vector<int64_t> kept(n, 0);
  int64_t passes = 0, all_samples = 0, checked_weights = 0;
  while (p.passes() < 2002) {
    const int64_t before = p.passes();
    d.step();
    if (p.passes() != before) all_samples += static_cast<int64_t>(p.pass().size());
    // A new pass from the third on: the first knows no losses, and the second starts before the
    // first pass's last batch has reported its losses.
    if (p.passes() != before && p.passes() >= 3) {
      const auto pass = p.pass();
      std::vector<int64_t> seen(n, 0);
      for (int64_t i : pass) ++seen[static_cast<std::size_t>(i)];
      for (int64_t i = 0; i < n; ++i) {
        CAPTURE(i);
        const auto k = static_cast<std::size_t>(i);
        REQUIRE(seen[k] <= 1);               // a pass is a set
        if (i >= 18) REQUIRE(seen[k] == 1);  // at or above the mean, or unknown: always trained
        CHECK(p.scaled(i) == (i < 18 && seen[k] == 1));
        kept[k] += seen[k];
      }
      ++passes;
    }
    // The batch's weights: 1/(1 − r) exactly for the kept below-mean samples, 1 for the others
    // (checked once every sample of the batch comes from a pass that knew all the losses).
    if (before >= 3) {
      for (std::size_t k = 0; k < d.plan.indices.size(); ++k) {
        const int64_t i = d.plan.indices[k];
        const float w = d.plan.weights.empty() ? 1.0f : d.plan.weights[k];
        CHECK(w == (i < 18 ? up : 1.0f));
        ++checked_weights;
      }
    }
  }
  CHECK(checked_weights > 1000);
  // Each below-mean sample is kept in a fraction 0.7 of the passes (binomial, 5 sigma).
  const double sigma = std::sqrt(passes * 0.7 * 0.3);
  for (int64_t i = 0; i < 18; ++i) {
    CAPTURE(i);
    CHECK(std::abs(static_cast<double>(kept[static_cast<std::size_t>(i)]) - 0.7 * passes) <
          5 * sigma);
  }
  // The pruned count is what the passes left out.
  CHECK(p.pruned() == p.passes() * n - all_samples);
  CHECK(static_cast<double>(p.pruned()) / passes == doctest::Approx(0.3 * 18).epsilon(0.05));
}

TEST_CASE("infobatch's pass gradient is unbiased by exact enumeration of the prune patterns") {
  auto model = tiny_model(3);
  nn::Engine eng(*model);
  const int64_t n = 6;
  const auto data = tiny_images(n, 4);
  const double r = 0.4;
  PolicyConfig pc = infobatch_config(3, r, 9);
  InfoBatchPolicy p(pc, n);
  const std::vector<float> loss{0.2f, 2.0f, 0.1f, 1.5f, 0.3f, 3.0f};  // mean 1.18: 0, 2, 4 low
  InfoBatchDriver d{p, loss};
  // The policy's own weight for a kept below-mean sample (the only weight that is not 1).
  float w_low = 0;
  for (int k = 0; k < 400 && w_low == 0; ++k) {
    d.step();
    for (std::size_t j = 0; j < d.plan.weights.size(); ++j)
      if (d.plan.weights[j] != 1.0f) {
        CHECK(d.plan.indices[j] % 2 == 0);  // only 0, 2 and 4 are below the mean
        w_low = d.plan.weights[j];
      }
  }
  REQUIRE(w_low == doctest::Approx(1.0 / (1.0 - r)));
  // Every pattern of the three low samples' Bernoulli(r) drops, with its probability: the
  // expected weighted gradient sum of the pass equals the full pass's gradient sum.
  const std::vector<int64_t> low{0, 2, 4};
  std::vector<double> expected(static_cast<std::size_t>(model->params.size()), 0.0);
  for (int mask = 0; mask < 8; ++mask) {
    std::vector<int64_t> idx{1, 3, 5};
    std::vector<float> w{1, 1, 1};
    double prob = 1;
    for (int b = 0; b < 3; ++b) {
      if (mask & (1 << b)) {
        prob *= r;  // dropped
      } else {
        prob *= 1 - r;
        idx.push_back(low[static_cast<std::size_t>(b)]);
        w.push_back(w_low);
      }
    }
    const auto g = gradient(*model, eng, data, idx, w.data());  // a mean over idx
    for (std::size_t k = 0; k < expected.size(); ++k)
      expected[k] += prob * g[k] * static_cast<double>(idx.size());
  }
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), int64_t{0});
  auto full = gradient(*model, eng, data, all, nullptr);
  for (double& v : full) v *= static_cast<double>(n);
  CHECK(max_rel_diff(expected, full) < 1e-5);
  // Without the 1/(1 − r) weights the estimate under-weights the easy samples.
  std::vector<double> unweighted(expected.size(), 0.0);
  for (int mask = 0; mask < 8; ++mask) {
    std::vector<int64_t> idx{1, 3, 5};
    double prob = 1;
    for (int b = 0; b < 3; ++b) {
      prob *= (mask & (1 << b)) ? r : 1 - r;
      if (!(mask & (1 << b))) idx.push_back(low[static_cast<std::size_t>(b)]);
    }
    const auto g = gradient(*model, eng, data, idx, nullptr);
    for (std::size_t k = 0; k < unweighted.size(); ++k)
      unweighted[k] += prob * g[k] * static_cast<double>(idx.size());
  }
  CHECK(max_rel_diff(unweighted, full) > 1e-3);
}

TEST_CASE("infobatch anneals: passes from ib_anneal_at on train everything, unweighted") {
  const int64_t n = 30;
  PolicyConfig pc = infobatch_config(8, 0.5, 3);
  pc.ib_anneal_at = 40;
  InfoBatchPolicy p(pc, n);
  std::vector<float> loss(n);
  for (int64_t i = 0; i < n; ++i) loss[static_cast<std::size_t>(i)] = static_cast<float>(i);
  InfoBatchDriver d{p, loss};
  int64_t pruned_before = -1, importance_steps = 0;
  for (int k = 0; k < 120; ++k) {
    const int64_t before = p.passes();
    d.step();
    const int64_t started_at = d.it - 1;  // the iteration whose next() started any new pass
    if (p.passes() != before && p.passes() >= 2) {
      if (started_at < 40) {
        CHECK(p.pass().size() < static_cast<std::size_t>(n));  // 15 below the mean, ~7 dropped
      } else {
        CHECK(p.pass().size() == static_cast<std::size_t>(n));
        if (pruned_before < 0) pruned_before = p.pruned();
      }
    }
    importance_steps += d.plan.importance;
    if (pruned_before >= 0 && p.pass().size() == static_cast<std::size_t>(n) &&
        d.plan.importance == false)
      CHECK(d.plan.weights.empty());
  }
  REQUIRE(pruned_before >= 0);
  CHECK(p.pruned() == pruned_before);  // nothing dropped after the annealing point
  CHECK(importance_steps > 0);
}

TEST_CASE("infobatch: resumed from its state it draws the same; damage and resharding") {
  const int64_t n = 25;
  PolicyConfig pc = infobatch_config(6, 0.5, 11);
  std::vector<float> loss(n);
  for (int64_t i = 0; i < n; ++i)
    loss[static_cast<std::size_t>(i)] = static_cast<float>((i * 7) % 11) * 0.25f;
  InfoBatchPolicy a(pc, n);
  InfoBatchDriver da{a, loss};
  for (int k = 0; k < 13; ++k) da.step();  // mid-pass, after pruning passes
  REQUIRE(a.passes() >= 3);
  REQUIRE(a.pruned() > 0);
  io::StateWriter w;
  a.save_state(w);
  pc.seed = 12;  // the state, not the seed, decides what comes next
  InfoBatchPolicy b(pc, n);
  io::StateReader r(w.bytes(), "test state");
  b.load_state(r);
  r.finish();
  InfoBatchDriver db{b, loss};
  db.it = da.it;
  for (int k = 0; k < 30; ++k) {
    da.step();
    db.step();
    CHECK(da.plan.indices == db.plan.indices);
    CHECK(da.plan.weights == db.plan.weights);
  }
  CHECK(a.pruned() == b.pruned());
  // Damaged states are refused, naming the field. Layout: losses (8 + 4n), pass (8 + 8k), ...
  const auto bytes = w.bytes();
  const auto damaged = [&](std::size_t at, const void* v, std::size_t len) {
    auto x = bytes;
    std::memcpy(x.data() + at, v, len);
    InfoBatchPolicy c(pc, n);
    io::StateReader rc(x, "test state");
    c.load_state(rc);
  };
  const float negative = -1;
  CHECK_THROWS_WITH(damaged(8, &negative, 4), doctest::Contains("infobatch losses"));
  const int64_t out_of_range = n;
  CHECK_THROWS_WITH(damaged(8 + 4 * n + 8, &out_of_range, 8), doctest::Contains("infobatch pass"));
  uint64_t pass_len;
  std::memcpy(&pass_len, bytes.data() + 8 + 4 * n, 8);
  const std::size_t pos_at = 8 + 4 * n + 8 + 8 * pass_len;
  const uint64_t far = pass_len + 1;
  CHECK_THROWS_WITH(damaged(pos_at, &far, 8), doctest::Contains("infobatch pass position"));
  const uint8_t two = 2;
  CHECK_THROWS_WITH(damaged(pos_at + 8 + 8, &two, 1), doctest::Contains("infobatch scaled flags"));
  // Resharding replaced two slots: they have no loss any more, so no later pass drops them.
  std::vector<float> low_loss(n, 0.0f);  // every sample equal: nothing is below the mean ...
  low_loss[3] = 9;                       // ... but 3, which lifts the mean above all the others
  InfoBatchPolicy e(pc, n);
  InfoBatchDriver de{e, low_loss};
  for (int k = 0; k < 10; ++k) de.step();
  const std::vector<int64_t> slots{0, 1};
  e.samples_replaced(slots);
  std::vector<float> unseen = low_loss;  // the new samples' losses are not seen again
  unseen[0] = unseen[1] = std::numeric_limits<float>::quiet_NaN();
  InfoBatchDriver de2{e, unseen};
  de2.it = de.it;
  for (int k = 0; k < 60; ++k) {
    const int64_t before = e.passes();
    de2.step();
    if (e.passes() != before) {
      const auto pass = e.pass();
      CHECK(std::find(pass.begin(), pass.end(), 0) != pass.end());
      CHECK(std::find(pass.begin(), pass.end(), 1) != pass.end());
      CHECK(pass.size() < static_cast<std::size_t>(n));  // the others are still pruned
    }
  }
}
