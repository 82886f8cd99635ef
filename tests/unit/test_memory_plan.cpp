// The activation memory planner: placement (memory_plan.hpp), planned tape steps (tape.hpp), and
// every zoo model trained and scored on a planned tape bit for bit like on a bump arena, with
// every tensor poisoned (NaN) the moment the planner considers it dead.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "mercury/autograd/ops_basic.hpp"
#include "mercury/autograd/ops_conv.hpp"
#include "mercury/autograd/ops_loss.hpp"
#include "mercury/autograd/ops_pool.hpp"
#include "mercury/nn/engine.hpp"
#include "mercury/tensor/memory_plan.hpp"
#include "models/registry.hpp"

using namespace mercury;

namespace {

bool overlaps(const Interval& a, const Interval& b) {
  return !(a.last < b.first || b.last < a.first);
}

// No two tensors alive at the same event share a float; every offset is 64-byte aligned.
void check_placement(const std::vector<Interval>& iv, const Placement& p) {
  REQUIRE(p.offsets.size() == iv.size());
  for (std::size_t a = 0; a < iv.size(); ++a) {
    CHECK(p.offsets[a] % 16 == 0);
    CHECK(p.offsets[a] + iv[a].floats <= p.block_floats);
    for (std::size_t b = a + 1; b < iv.size(); ++b) {
      if (!overlaps(iv[a], iv[b])) continue;
      const bool apart = p.offsets[a] + iv[a].floats <= p.offsets[b] ||
                         p.offsets[b] + iv[b].floats <= p.offsets[a];
      INFO("tensors " << a << " and " << b);
      CHECK(apart);
    }
  }
}

}  // namespace

TEST_CASE("placement: tensors alive together never overlap; a chain ping-pongs in two buffers") {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<Interval> iv;
    std::uniform_int_distribution<int64_t> size(1, 5000), start(0, 60), len(0, 12);
    for (int k = 0; k < 80; ++k) {
      const int64_t f = start(rng);
      iv.push_back({size(rng), f, f + len(rng)});
    }
    const Placement p = plan_offsets(iv);
    check_placement(iv, p);
    CHECK(p.block_floats >= live_peak_floats(iv));
    CHECK(plan_offsets(iv).offsets == p.offsets);  // deterministic
  }
  // y_k = f(y_{k-1}): each tensor lives from its creation to its consumer's.
  std::vector<Interval> chain;
  for (int k = 0; k < 10; ++k) chain.push_back({1024, k, k + 1});
  const Placement p = plan_offsets(chain);
  check_placement(chain, p);
  CHECK(p.block_floats == 2 * 1024);
  CHECK(live_peak_floats(chain) == 2 * 1024);
}

namespace {

// conv → relu → conv → relu → pool → loss on a planned tape; every layer's output released
// once the next layer has consumed it, as Sequential does.
struct ChainNet {
  AlignedBuffer x{2 * 3 * 12 * 12}, w1{8 * 3 * 3 * 3}, w2{8 * 8 * 3 * 3}, g1{8 * 3 * 3 * 3},
      g2{8 * 8 * 3 * 3};
  ops::Conv2dParams p{1, 1, 1, 1};
  int32_t labels[2] = {1, 5};
  ChainNet() {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> n(0.0f, 0.5f);
    for (auto* b : {&x, &w1, &w2})
      for (int64_t j = 0; j < b->size(); ++j) b->data()[j] = n(rng);
  }
  // Returns the per-sample losses' node.
  Var forward(Tape& t, bool release) {
    Var in = t.leaf(x.tensor(Shape{2, 3, 12, 12}));
    Var a =
        ops::conv2d(t, in, t.leaf(w1.tensor(Shape{8, 3, 3, 3}), g1.tensor(Shape{8, 3, 3, 3}), true),
                    nullptr, p);
    Var b = ops::relu(t, a);
    if (release) t.release(a);
    Var c = ops::conv2d(
        t, b, t.leaf(w2.tensor(Shape{8, 8, 3, 3}), g2.tensor(Shape{8, 8, 3, 3}), true), nullptr, p);
    if (release) t.release(b);
    Var d = ops::relu(t, c);
    if (release) t.release(c);
    Var e = ops::global_avg_pool(t, d);
    if (release) t.release(d);
    return ops::softmax_xent(t, e, labels);
  }
};

}  // namespace

TEST_CASE(
    "planned tape: score mode reuses each layer's input; training keeps what backward reads") {
  ChainNet net;
  const int64_t act = 2 * 8 * 12 * 12;  // one conv/relu output, floats
  Tape t;
  t.set_poison(true);
  std::vector<float> first;
  for (int step = 0; step < 3; ++step) {
    t.begin_step(1);
    NoGradGuard ng(t);
    Var l = net.forward(t, true);
    t.end_step();
    const std::vector<float> got(l->value.data, l->value.data + 2);
    if (step == 0) first = got;
    CHECK(got == first);  // recorded and replayed steps agree
    CHECK(std::isfinite(got[0]));
  }
  const StepPlan* score = t.plan(1);
  REQUIRE(score);
  // At most two activations (a layer's input and output) plus im2col scratch at once.
  CHECK(score->block_floats < 3 * act + 2 * 8 * 9 * 144 + 1024);
  CHECK(score->block_floats < score->total_floats - act);

  // Training: same losses and gradients as the unplanned tape, step after step.
  Tape ref;
  for (int step = 0; step < 3; ++step) {
    std::fill(net.g1.data(), net.g1.data() + net.g1.size(), 0.0f);
    std::fill(net.g2.data(), net.g2.data() + net.g2.size(), 0.0f);
    ref.reset();
    Var lr = ops::weighted_mean(ref, net.forward(ref, false), nullptr);
    ref.backward(lr);
    const std::vector<float> want1(net.g1.data(), net.g1.data() + net.g1.size());
    const std::vector<float> want2(net.g2.data(), net.g2.data() + net.g2.size());
    std::fill(net.g1.data(), net.g1.data() + net.g1.size(), 0.0f);
    std::fill(net.g2.data(), net.g2.data() + net.g2.size(), 0.0f);
    t.begin_step(2);
    Var lp = ops::weighted_mean(t, net.forward(t, true), nullptr);
    t.pin(lp);
    t.backward(lp);
    t.end_step();
    CHECK(lp->value.data[0] == lr->value.data[0]);
    CHECK(std::memcmp(want1.data(), net.g1.data(), want1.size() * 4) == 0);
    CHECK(std::memcmp(want2.data(), net.g2.data(), want2.size() * 4) == 0);
  }
  const StepPlan* train = t.plan(2);
  REQUIRE(train);
  CHECK(train->block_floats < train->total_floats);
  CHECK(train->block_floats >= train->live_floats);
  CHECK(t.planned_bytes() == 4 * std::max(train->block_floats, score->block_floats));
  // The recording step freed tensors as it found them dead, too.
  CHECK(train->record_floats < train->total_floats);
}

TEST_CASE("planned tape: misuse is refused, not silently corrupted") {
  ChainNet net;
  SUBCASE("consuming a released node throws") {
    Tape t;
    t.begin_step(1);
    Var in = t.leaf(net.x.tensor(Shape{2, 3, 12, 12}));
    Var a = ops::relu(t, in);
    t.release(a);
    CHECK_THROWS_AS(ops::relu(t, a), std::logic_error);
  }
  // A score step with key 7, recorded then replayed.
  const auto planned = [&](Tape& t) {
    for (int step = 0; step < 2; ++step) {
      t.begin_step(7);
      NoGradGuard ng(t);
      net.forward(t, true);
      t.end_step();
    }
  };
  SUBCASE("a step that leaves its key's plan throws") {
    Tape t;
    planned(t);
    t.begin_step(7);
    NoGradGuard ng(t);
    Var in = t.leaf(net.x.tensor(Shape{2, 3, 12, 12}));
    CHECK_THROWS_AS(ops::relu(t, ops::relu(t, ops::reshape(t, in, Shape{2, 432}))),
                    std::logic_error);
  }
  SUBCASE("a step that ends early throws at end_step") {
    Tape t;
    planned(t);
    t.begin_step(7);
    CHECK_THROWS_AS(t.end_step(), std::logic_error);
  }
}

namespace {

struct Case {
  const char* name;
  Shape sample;
  int64_t classes, vocab, batch;
};

std::vector<float> batch_for(const nn::Model& m, int64_t B, int64_t vocab, uint64_t seed) {
  std::vector<float> x(static_cast<std::size_t>(B * m.sample_numel()));
  std::mt19937_64 rng(seed);
  if (vocab > 0) {
    std::uniform_int_distribution<int64_t> u(1, vocab - 1);
    for (float& v : x) v = static_cast<float>(u(rng));
  } else {
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : x) v = n(rng);
  }
  return x;
}

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, sizeof(float) * static_cast<std::size_t>(n)) == 0;
}

// One zoo model trained and scored for four steps on a planned, poisoned tape and on a bump
// arena: the same bits.
void check_planned_like_bump(const Case& c) {
  models::ModelOptions o;
  o.lstm_attention.vocab = 500;
  o.textcnn.vocab = 500;
  o.textcnn.embed_dim = 32;
  auto planned = models::make_model(c.name, c.sample, c.classes, 7, o);
  auto bump = models::make_model(c.name, c.sample, c.classes, 7, o);
  nn::Engine ep(*planned, 3), eb(*bump, 3);
  ep.tape().set_poison(true);
  eb.set_planned(false);
  nn::ParamStore& pp = planned->params;
  nn::ParamStore& pb = bump->params;
  const int64_t B = c.batch;
  std::vector<int32_t> y(static_cast<std::size_t>(B));
  for (int64_t i = 0; i < B; ++i) y[i] = static_cast<int32_t>((i * 7 + 3) % c.classes);
  std::vector<float> w(static_cast<std::size_t>(B));
  for (int64_t i = 0; i < B; ++i) w[i] = 0.5f + 0.25f * static_cast<float>(i);
  // Steps 0 and 1 record (no weights / weights: two keys), the rest replay.
  for (int step = 0; step < 4; ++step) {
    CAPTURE(step);
    const std::vector<float> x = batch_for(*planned, B, c.vocab, 100 + step);
    const float* weights = step % 2 ? w.data() : nullptr;
    pp.zero_grad();
    pb.zero_grad();
    std::vector<float> lp(B), lb(B), bp(B), bb(B);
    const float fp = ep.grad(x.data(), y.data(), weights, B, lp.data(), 0, bp.data());
    const float fb = eb.grad(x.data(), y.data(), weights, B, lb.data(), 0, bb.data());
    CHECK(std::isfinite(fp));
    CHECK(same_bits(&fp, &fb, 1));
    CHECK(same_bits(lp.data(), lb.data(), B));
    CHECK(same_bits(bp.data(), bb.data(), B));
    CHECK(same_bits(pp.grads(), pb.grads(), pp.size()));
    CHECK(same_bits(pp.buffers(), pb.buffers(), pp.buffer_size()));
    for (int64_t j = 0; j < pp.size(); ++j) {  // the same small SGD step on both
      pp.values()[j] -= 0.01f * pp.grads()[j];
      pb.values()[j] -= 0.01f * pb.grads()[j];
    }
    std::vector<int32_t> qp(B), qb(B);
    ep.score(x.data(), y.data(), B, lp.data(), qp.data());
    eb.score(x.data(), y.data(), B, lb.data(), qb.data());
    CHECK(same_bits(lp.data(), lb.data(), B));
    CHECK(qp == qb);
    const nn::ScoreOptions bn{.train_mode_norm = true, .kind = nn::ScoreKind::grad_norm_bound};
    ep.score(x.data(), y.data(), B, lp.data(), nullptr, bn);
    eb.score(x.data(), y.data(), B, lb.data(), nullptr, bn);
    CHECK(same_bits(lp.data(), lb.data(), B));
  }
  // The planned block never exceeds what the bump arena held for the same steps.
  CHECK(ep.tape().planned_bytes() <= eb.tape().arena().capacity_bytes());
  MESSAGE(std::string(c.name) << ": planned " << ep.tape().planned_bytes() / 1024
                              << " KiB, bump arena " << eb.tape().arena().capacity_bytes() / 1024
                              << " KiB");
}

}  // namespace

TEST_CASE("every zoo model trains and scores bit for bit on a planned, poisoned tape") {
  const Case cases[] = {
      {"cnn", Shape{1, 28, 28}, 10, 0, 4},        {"mlp", Shape{1, 28, 28}, 10, 0, 4},
      {"resnet8", Shape{3, 32, 32}, 10, 0, 3},    {"resnet20", Shape{3, 16, 16}, 10, 0, 2},
      {"mobilenetv2", Shape{3, 32, 32}, 7, 0, 2}, {"ds_cnn", Shape{1, 40, 32}, 35, 0, 3},
      {"lstm_attention", Shape{16}, 4, 500, 3},   {"textcnn", Shape{16}, 4, 500, 3},
  };
  for (const Case& c : cases) {
    SUBCASE(c.name) {
      check_planned_like_bump(c);
    }
  }
}

// The three heaviest models, most of the test's arithmetic. Builds that run 10-50x slower
// (sanitizers, qemu) run this suite on its own, labelled slow (tests/CMakeLists.txt); the
// release build runs it with the rest.
TEST_CASE("the big zoo models train and score bit for bit on a planned, poisoned tape" *
          doctest::test_suite("memory-plan-big")) {
  const Case cases[] = {
      {"resnet18", Shape{3, 32, 32}, 10, 0, 2},
      {"resnet50", Shape{3, 32, 32}, 10, 0, 2},
      {"vgg13", Shape{1, 40, 36}, 35, 0, 2},
  };
  for (const Case& c : cases) {
    SUBCASE(c.name) {
      check_planned_like_bump(c);
    }
  }
}

TEST_CASE("a plan per kind of step: batch sizes and thread counts each get their own") {
  auto m = models::make_model("cnn", Shape{1, 28, 28}, 10, 3);
  nn::Engine eng(*m, 1);
  eng.tape().set_poison(true);
  const int before = thread_pool().threads();
  float first = 0.0f;
  for (int round = 0; round < 2; ++round) {
    for (const int threads : {1, 2}) {
      thread_pool().set_threads(threads);
      for (const int64_t B : {3, 5}) {
        const std::vector<float> x = batch_for(*m, B, 0, 9);
        std::vector<int32_t> y(static_cast<std::size_t>(B), 4);
        m->params.zero_grad();
        const float loss = eng.grad(x.data(), y.data(), nullptr, B);
        CHECK(std::isfinite(loss));
        if (round == 0 && threads == 1 && B == 3) first = loss;
        if (B == 3) CHECK(loss == doctest::Approx(first).epsilon(1e-5));
      }
    }
  }
  thread_pool().set_threads(before);
  REQUIRE(eng.last_grad_plan());
  CHECK(eng.last_grad_plan()->tensors.size() > 10);
}
