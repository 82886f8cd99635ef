// Sequence layers: embedding, LSTM (one layer, both directions, stacked BiLSTM module),
// additive attention pooling — finite-difference gradients, an independent scalar LSTM
// reference, id validation, and score mode (no grad) recording nothing.
#include <doctest/doctest.h>

#include <cmath>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "mercury/autograd/gradcheck.hpp"
#include "mercury/nn/sequence.hpp"

using namespace mercury;

namespace {

// Owns the memory of the test tensors.
struct Tensors {
  std::deque<AlignedBuffer> bufs;
  std::mt19937_64 rng{42};
  Tensor uniform(Shape s, float lo, float hi) {
    bufs.emplace_back(s.numel());
    Tensor t = bufs.back().tensor(s);
    std::uniform_real_distribution<float> u(lo, hi);
    for (int64_t k = 0; k < t.numel(); ++k) t.data[k] = u(rng);
    return t;
  }
  Tensor zeros(Shape s) {
    bufs.emplace_back(s.numel());  // AlignedBuffer zero-initialises
    return bufs.back().tensor(s);
  }
};

Var input_ids(Tape& t, Shape s, const std::vector<float>& ids) {
  Var v = t.input(s);
  std::copy(ids.begin(), ids.end(), v->value.data);
  return v;
}

nn::ParamId param_id(const nn::ParamStore& ps, const std::string& name) {
  const auto& specs = ps.params();
  for (std::size_t k = 0; k < specs.size(); ++k)
    if (specs[k].name == name) return static_cast<nn::ParamId>(k);
  FAIL("no parameter named " << name);
  return -1;
}

// gradcheck() owns the leaves it differentiates, but a Module makes its own parameter leaves
// (Context::param) whose gradients land in the ParamStore's slab. To check a module w.r.t. its
// parameters, pass the slab views as gradcheck inputs (perturbing them perturbs the module) and
// put this identity op on the module's input: it is recorded before the module, so its backward
// runs after every module op and hands x's gradient on and copies the slab gradients of up to
// three parameters onto gradcheck's leaves.
struct SlabGradRoute {
  const nn::ParamStore* ps;
  std::vector<nn::ParamId> ids;
};

Var route_slab_grads(Tape& t, Var x, Var p0, Var p1, Var p2, const SlabGradRoute* route) {
  Var y = t.op(x->shape(),
               [](Node& n, Tape& tp) {
                 accumulate_grad(tp, n.in[0], n.grad.data);
                 const auto* r = static_cast<const SlabGradRoute*>(n.ctx);
                 for (std::size_t k = 0; k < r->ids.size(); ++k)
                   accumulate_grad(tp, n.in[1 + k], r->ps->grad(r->ids[k]).data);
               },
               {x, p0, p1, p2});
  y->ctx = route;
  y->value.copy_from(x->value);
  return y;
}

GradcheckOptions tolerance(double atol, double rtol) {
  GradcheckOptions o;
  o.atol = atol;
  o.rtol = rtol;
  return o;
}

double logistic(double v) {
  return 1.0 / (1.0 + std::exp(-v));
}

// Straightforward scalar LSTM in double (PyTorch's equations, gate order i f g o, h0 = c0 = 0).
std::vector<double> reference_lstm(const std::vector<double>& x, int B, int T, int I, int H,
                                   const Tensor& wih, const Tensor& whh, const Tensor& bih,
                                   const Tensor& bhh, bool reverse) {
  std::vector<double> out(static_cast<std::size_t>(B * T * H));
  for (int b = 0; b < B; ++b) {
    std::vector<double> h(H, 0.0), c(H, 0.0), pre(4 * H);
    for (int s = 0; s < T; ++s) {
      const int t = reverse ? T - 1 - s : s;
      for (int r = 0; r < 4 * H; ++r) {
        double acc = double(bih[r]) + double(bhh[r]);
        for (int k = 0; k < I; ++k) acc += double(wih[r * I + k]) * x[(b * T + t) * I + k];
        for (int k = 0; k < H; ++k) acc += double(whh[r * H + k]) * h[k];
        pre[r] = acc;
      }
      for (int j = 0; j < H; ++j) {
        const double i = logistic(pre[j]), f = logistic(pre[H + j]);
        const double g = std::tanh(pre[2 * H + j]), o = logistic(pre[3 * H + j]);
        c[j] = f * c[j] + i * g;
        h[j] = o * std::tanh(c[j]);
        out[(b * T + t) * H + j] = h[j];
      }
    }
  }
  return out;
}

struct LstmWeights {
  Tensor wih, whh, bih, bhh;
};
LstmWeights lstm_weights(Tensors& ts, int64_t I, int64_t H) {
  return {ts.uniform(Shape{4 * H, I}, -0.6f, 0.6f), ts.uniform(Shape{4 * H, H}, -0.6f, 0.6f),
          ts.uniform(Shape{4 * H}, -0.4f, 0.4f), ts.uniform(Shape{4 * H}, -0.4f, 0.4f)};
}

}  // namespace

TEST_CASE("embedding gathers rows, zeroes padding and scatter-adds the table gradient") {
  Tensors ts;
  const Tensor table = ts.uniform(Shape{5, 3}, -1.0f, 1.0f);
  const std::vector<float> ids = {1, 3, 3, 0, 4, 1, 2, 3};  // repeated ids accumulate
  for (int64_t pad : {int64_t{-1}, int64_t{3}}) {
    CAPTURE(pad);
    Tape t;
    Var y = ops::embedding(t, input_ids(t, Shape{2, 4}, ids), t.leaf(table), pad);
    REQUIRE(y->shape() == Shape{2, 4, 3});
    for (int p = 0; p < 8; ++p)
      for (int d = 0; d < 3; ++d) {
        const auto row = static_cast<int64_t>(ids[p]);
        CHECK(y->value[p * 3 + d] == (row == pad ? 0.0f : table[row * 3 + d]));
      }
    const GradcheckResult r = gradcheck(
        [&](Tape& tp, const std::vector<Var>& in) {
          return ops::embedding(tp, input_ids(tp, Shape{2, 4}, ids), in[0], pad);
        },
        {table}, tolerance(1e-4, 1e-3));
    CHECK_MESSAGE(r.ok, r.worst);
    CHECK(r.checked == 15);
  }
}

TEST_CASE("embedding rejects ids that are not integers in [0, vocab) and names them") {
  Tensors ts;
  const Tensor table = ts.uniform(Shape{5, 3}, -1.0f, 1.0f);
  const auto run = [&](float bad) {
    Tape t;
    ops::embedding(t, input_ids(t, Shape{2, 2}, {0, 4, bad, 1}), t.leaf(table));
  };
  CHECK_THROWS_WITH_AS(run(1.5f), doctest::Contains("position 2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(run(1.5f), doctest::Contains("is 1.5; expected an integer in [0, 5)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(run(5.0f), doctest::Contains("is 5;"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(run(-1.0f), doctest::Contains("is -1;"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(run(std::nanf("")), doctest::Contains("position 2"), std::invalid_argument);
  Tape t;
  CHECK_THROWS_WITH_AS(ops::embedding(t, input_ids(t, Shape{1}, {0}), t.leaf(table), 5),
                       doctest::Contains("padding_idx 5"), std::invalid_argument);
  nn::ParamStore ps;
  CHECK_THROWS_WITH_AS(nn::Embedding(ps, "emb", 5, 3, 7), doctest::Contains("emb: padding_idx 7"),
                       std::invalid_argument);
}

TEST_CASE("one LSTM layer matches a scalar reference in both directions") {
  Tensors ts;
  const int B = 2, T = 3, I = 3, H = 4;
  const Tensor x = ts.uniform(Shape{B, T, I}, -1.0f, 1.0f);
  const LstmWeights w = lstm_weights(ts, I, H);
  std::vector<double> xd(x.data, x.data + x.numel());
  for (bool reverse : {false, true}) {
    CAPTURE(reverse);
    const std::vector<double> want =
        reference_lstm(xd, B, T, I, H, w.wih, w.whh, w.bih, w.bhh, reverse);
    for (bool grad : {true, false}) {
      CAPTURE(grad);
      Tape t;
      t.set_grad_enabled(grad);
      Var y = ops::lstm(t, t.leaf(x, {}, true), t.leaf(w.wih), t.leaf(w.whh), t.leaf(w.bih),
                        t.leaf(w.bhh), reverse);
      REQUIRE(y->shape() == Shape{B, T, H});
      for (int k = 0; k < B * T * H; ++k)
        CHECK(y->value[k] == doctest::Approx(want[k]).epsilon(1e-5));
    }
  }
}

TEST_CASE("one LSTM layer: gradients w.r.t. x and all four weights, both directions") {
  Tensors ts;
  const int64_t B = 2, T = 3, I = 3, H = 4;
  const Tensor x = ts.uniform(Shape{B, T, I}, -1.0f, 1.0f);
  const LstmWeights w = lstm_weights(ts, I, H);
  for (bool reverse : {false, true}) {
    CAPTURE(reverse);
    const GradcheckResult r = gradcheck(
        [&](Tape& t, const std::vector<Var>& in) {
          return ops::lstm(t, in[0], in[1], in[2], in[3], in[4], reverse);
        },
        {x, w.wih, w.whh, w.bih, w.bhh}, tolerance(3e-4, 3e-3));
    CHECK_MESSAGE(r.ok, r.worst);
    CHECK(r.checked == x.numel() + 4 * H * (I + H + 2));
  }
}

TEST_CASE("LSTM backward with only some inputs requiring grad matches the full backward") {
  Tensors ts;
  const int64_t B = 2, T = 4, I = 3, H = 5;
  const Tensor x = ts.uniform(Shape{B, T, I}, -1.0f, 1.0f);
  const LstmWeights w = lstm_weights(ts, I, H);
  const Tensor seed = ts.uniform(Shape{B, T, H}, -1.0f, 1.0f);
  const Tensor inputs[5] = {x, w.wih, w.whh, w.bih, w.bhh};
  // grads[k] of input k with every input requiring grad.
  std::vector<Tensor> full;
  for (const Tensor& in : inputs) full.push_back(ts.zeros(in.shape));
  {
    Tape t;
    Var v[5];
    for (int k = 0; k < 5; ++k) v[k] = t.leaf(inputs[k], full[k], true);
    t.backward(ops::lstm(t, v[0], v[1], v[2], v[3], v[4], true), seed);
  }
  for (int only = 0; only < 5; ++only) {
    CAPTURE(only);
    Tensor g = ts.zeros(inputs[only].shape);
    Tape t;
    Var v[5];
    for (int k = 0; k < 5; ++k) v[k] = t.leaf(inputs[k], k == only ? g : Tensor{}, k == only);
    t.backward(ops::lstm(t, v[0], v[1], v[2], v[3], v[4], true), seed);
    for (int64_t j = 0; j < g.numel(); ++j)
      CHECK(g[j] == doctest::Approx(full[only][j]).epsilon(1e-6));
  }
}

TEST_CASE("LSTM module: PyTorch parameter names, shapes and describe()") {
  nn::ParamStore ps;
  nn::LSTM lstm(ps, "rnn", 3, 4, 2, true);
  const std::vector<std::pair<std::string, Shape>> want = {
      {"rnn.weight_ih_l0", Shape{16, 3}},
      {"rnn.weight_hh_l0", Shape{16, 4}},
      {"rnn.bias_ih_l0", Shape{16}},
      {"rnn.bias_hh_l0", Shape{16}},
      {"rnn.weight_ih_l0_reverse", Shape{16, 3}},
      {"rnn.weight_hh_l0_reverse", Shape{16, 4}},
      {"rnn.bias_ih_l0_reverse", Shape{16}},
      {"rnn.bias_hh_l0_reverse", Shape{16}},
      {"rnn.weight_ih_l1", Shape{16, 8}},
      {"rnn.weight_hh_l1", Shape{16, 4}},
      {"rnn.bias_ih_l1", Shape{16}},
      {"rnn.bias_hh_l1", Shape{16}},
      {"rnn.weight_ih_l1_reverse", Shape{16, 8}},
      {"rnn.weight_hh_l1_reverse", Shape{16, 4}},
      {"rnn.bias_ih_l1_reverse", Shape{16}},
      {"rnn.bias_hh_l1_reverse", Shape{16}}};
  REQUIRE(ps.params().size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    CHECK(ps.params()[k].name == want[k].first);
    CHECK(ps.params()[k].shape == want[k].second);
  }
  ps.finalize(3);
  for (std::size_t k = 0; k < want.size(); ++k) {  // U(-1/sqrt(H), 1/sqrt(H))
    const Tensor v = ps.value(static_cast<nn::ParamId>(k));
    for (int64_t j = 0; j < v.numel(); ++j) CHECK(std::abs(v[j]) <= 0.5f);
  }
  CHECK(lstm.describe() == "LSTM(3->4, layers=2, bidirectional)");
  CHECK(lstm.output_size() == 8);
  Tape t;
  nn::Context ctx{t, ps};
  CHECK_THROWS_WITH_AS(lstm.forward(ctx, t.input(Shape{2, 5, 4})),
                       doctest::Contains("rnn: expected input [B, T, 3], got [2,5,4]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(nn::LSTM(ps, "bad", 3, 0), doctest::Contains("bad: hidden size"),
                       std::invalid_argument);
  Tensors ts;
  const Tensor x = ts.uniform(Shape{2, 5, 3}, -1, 1), wrong = ts.uniform(Shape{16, 5}, -1, 1);
  CHECK_THROWS_WITH_AS(
      ops::lstm(t, t.leaf(x), t.leaf(wrong), t.leaf(ps.value(1)), nullptr, nullptr),
      doctest::Contains("lstm: x [2,5,3], W_ih [16,5], W_hh [16,4]"), std::invalid_argument);
}

TEST_CASE("2-layer BiLSTM module matches stacked reference layers") {
  nn::ParamStore ps;
  nn::LSTM lstm(ps, "rnn", 3, 4, 2, true);
  ps.finalize(11);
  Tensors ts;
  const int B = 2, T = 3, H = 4;
  const Tensor x = ts.uniform(Shape{B, T, 3}, -1.0f, 1.0f);
  const auto p = [&](const std::string& n) { return ps.value(param_id(ps, n)); };
  std::vector<double> in(x.data, x.data + x.numel());
  int I = 3;
  for (int l = 0; l < 2; ++l) {
    std::vector<double> next(static_cast<std::size_t>(B * T * 2 * H));
    for (int d = 0; d < 2; ++d) {
      const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      const auto h =
          reference_lstm(in, B, T, I, H, p("rnn.weight_ih" + sfx), p("rnn.weight_hh" + sfx),
                         p("rnn.bias_ih" + sfx), p("rnn.bias_hh" + sfx), d == 1);
      for (int r = 0; r < B * T; ++r)
        for (int j = 0; j < H; ++j) next[r * 2 * H + d * H + j] = h[r * H + j];
    }
    in = next;
    I = 2 * H;
  }
  Tape t;
  nn::Context ctx{t, ps};
  Var y = lstm.forward(ctx, t.leaf(x));
  REQUIRE(y->shape() == Shape{B, T, 2 * H});
  for (int k = 0; k < B * T * 2 * H; ++k)
    CHECK(y->value[k] == doctest::Approx(in[k]).epsilon(1e-5));
}

TEST_CASE("2-layer BiLSTM module: gradients w.r.t. the input and a sample of parameters") {
  nn::ParamStore ps;
  nn::LSTM lstm(ps, "rnn", 3, 4, 2, true);
  ps.finalize(7);
  Tensors ts;
  const Tensor x = ts.uniform(Shape{2, 3, 3}, -1.0f, 1.0f);
  const SlabGradRoute first{
      &ps,
      {param_id(ps, "rnn.weight_ih_l0"), param_id(ps, "rnn.weight_hh_l0_reverse"),
       param_id(ps, "rnn.bias_ih_l1")}};
  const SlabGradRoute second{
      &ps,
      {param_id(ps, "rnn.weight_hh_l1"), param_id(ps, "rnn.weight_ih_l1_reverse"),
       param_id(ps, "rnn.bias_hh_l0")}};
  std::vector<Tensor> inputs = {x};
  for (const auto* r : {&first, &second})
    for (nn::ParamId id : r->ids) inputs.push_back(ps.value(id));
  const GradcheckResult r = gradcheck(
      [&](Tape& t, const std::vector<Var>& in) {
        ps.zero_grad();
        Var h = route_slab_grads(t, in[0], in[1], in[2], in[3], &first);
        h = route_slab_grads(t, h, in[4], in[5], in[6], &second);
        nn::Context ctx{t, ps};
        return lstm.forward(ctx, h);
      },
      inputs, tolerance(2e-4, 2e-3));
  CHECK_MESSAGE(r.ok, r.worst);
  CHECK(r.checked == 18 + 48 + 64 + 16 + 64 + 128 + 16);
}

TEST_CASE("attention pooling: softmax weights sum to one; gradients w.r.t. x, W, b, v") {
  Tensors ts;
  const int64_t B = 2, T = 4, D = 3, A = 5;
  const Tensor x = ts.uniform(Shape{B, T, D}, -1.0f, 1.0f);
  const Tensor w = ts.uniform(Shape{A, D}, -0.8f, 0.8f);
  const Tensor b = ts.uniform(Shape{A}, -0.5f, 0.5f);
  const Tensor v = ts.uniform(Shape{A}, -1.0f, 1.0f);
  {  // Forward against the formula, in double.
    Tape t;
    Var y = ops::attention_pool(t, t.leaf(x), t.leaf(w), t.leaf(b), t.leaf(v));
    REQUIRE(y->shape() == Shape{B, D});
    for (int64_t bi = 0; bi < B; ++bi) {
      std::vector<double> s(T);
      double z = 0;
      for (int64_t tt = 0; tt < T; ++tt) {
        for (int64_t a = 0; a < A; ++a) {
          double pre = b[a];
          for (int64_t d = 0; d < D; ++d) pre += double(w[a * D + d]) * x[(bi * T + tt) * D + d];
          s[tt] += double(v[a]) * std::tanh(pre);
        }
      }
      for (double& e : s) z += (e = std::exp(e));
      for (int64_t d = 0; d < D; ++d) {
        double want = 0;
        for (int64_t tt = 0; tt < T; ++tt) want += s[tt] / z * x[(bi * T + tt) * D + d];
        CHECK(y->value[bi * D + d] == doctest::Approx(want).epsilon(1e-5));
      }
    }
  }
  const GradcheckResult r = gradcheck(
      [](Tape& t, const std::vector<Var>& in) {
        return ops::attention_pool(t, in[0], in[1], in[2], in[3]);
      },
      {x, w, b, v}, tolerance(1e-4, 1e-3));
  CHECK_MESSAGE(r.ok, r.worst);
  CHECK(r.checked == x.numel() + w.numel() + b.numel() + v.numel());

  Tape t;
  const Tensor bad_v = ts.uniform(Shape{A + 1}, -1, 1);
  CHECK_THROWS_WITH_AS(ops::attention_pool(t, t.leaf(x), t.leaf(w), t.leaf(b), t.leaf(bad_v)),
                       doctest::Contains("v [6]"), std::invalid_argument);
  nn::ParamStore ps;
  nn::AttentionPool pool(ps, "attn", D, A);
  ps.finalize(1);
  CHECK(ps.params()[0].name == "attn.proj.weight");
  CHECK(ps.params()[2].shape == Shape{1, A});
  CHECK(pool.describe() == "AttentionPool(3, attn=5)");
  nn::Context ctx{t, ps};
  CHECK_THROWS_WITH_AS(pool.forward(ctx, t.input(Shape{B, T, D + 1})),
                       doctest::Contains("attn: expected input [B, T, 3], got [2,4,4]"),
                       std::invalid_argument);
}

TEST_CASE("score mode: the text stack records no backward and computes the same values") {
  nn::ParamStore ps;
  nn::Embedding emb(ps, "emb", 7, 3, 0);
  nn::LSTM lstm(ps, "rnn", 3, 4, 2, true);
  nn::AttentionPool pool(ps, "attn", 8, 5);
  ps.finalize(5);
  CHECK(emb.describe() == "Embedding(7, 3, padding_idx=0)");
  const std::vector<float> ids = {3, 1, 6, 0, 0, 2, 5, 4, 1, 0};
  const auto run = [&](Tape& t) {
    nn::Context ctx{t, ps, false};
    return pool.forward(ctx, lstm.forward(ctx, emb.forward(ctx, input_ids(t, Shape{2, 5}, ids))));
  };
  Tape grad_tape, score_tape;
  Var g = run(grad_tape);
  Var s;
  {
    NoGradGuard guard(score_tape);
    s = run(score_tape);
  }
  CHECK(g->requires_grad);
  CHECK(!s->requires_grad);
  CHECK(!s->backward);
  REQUIRE(s->shape() == Shape{2, 8});
  for (int64_t k = 0; k < s->numel(); ++k) CHECK(s->value[k] == g->value[k]);
  // Score mode keeps no per-step gates or cells: it needs less arena than grad mode.
  CHECK(score_tape.arena().high_water_bytes() < grad_tape.arena().high_water_bytes());

  // Backward through the whole stack reaches every parameter but the padding row.
  ps.zero_grad();
  const Tensor seed(grad_tape.scratch(g->shape()));
  seed.fill(1.0f);
  grad_tape.backward(g, seed);
  const Tensor emb_grad = ps.grad(param_id(ps, "emb.weight"));
  for (int64_t d = 0; d < 3; ++d) CHECK(emb_grad[d] == 0.0f);  // row 0 = padding_idx
  double norm = 0;
  for (int64_t j = 3; j < emb_grad.numel(); ++j) norm += std::abs(emb_grad[j]);
  CHECK(norm > 0);
}
