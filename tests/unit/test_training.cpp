// Training invariants: score mode is read-only, micro-batches accumulate exactly, runs are
// deterministic, and save → load → continue equals an uninterrupted run bit for bit.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "mercury/mercury.hpp"
#include "synthetic_data.hpp"

using namespace mercury;
using mercury::testing::synthetic_images;

namespace {

std::unique_ptr<nn::Model> small_bn_model(uint64_t seed) {
  using namespace nn;
  auto m = std::make_unique<Model>();
  m->name = "bn-test";
  m->sample_shape = Shape{1, 28, 28};
  m->num_classes = 10;
  auto net = std::make_unique<Sequential>();
  net->add<Conv2d>(m->params, "conv", 1, 4, Conv2dOptions{.kernel = 3, .stride = 2});
  net->add<BatchNorm>(m->params, "bn", 4);
  net->add<Act>(Activation::relu);
  net->add<MaxPool2d>(2);
  net->add<Flatten>();
  net->add<Linear>(m->params, "fc", 4 * 6 * 6, 10);
  m->net = std::move(net);
  m->params.finalize(seed);
  return m;
}

std::vector<float> batch_of(const data::ImageDataset& d, int64_t begin, int64_t count,
                            std::vector<int32_t>& labels) {
  std::vector<int64_t> idx(static_cast<std::size_t>(count));
  std::iota(idx.begin(), idx.end(), begin);
  std::vector<float> x(static_cast<std::size_t>(count * 784));
  labels.resize(static_cast<std::size_t>(count));
  const float mean[1] = {0.3f}, sd[1] = {0.3f};
  d.gather_batch(idx, mean, sd, x, labels);
  return x;
}

// The tests that train whole runs use 16×16 images: what they check (resume, repeatability,
// the plan, the statistics) does not depend on the size, and the reference CNN costs 12× less.
const Shape kRunShape{1, 16, 16};

data::ImageDataset run_images(int64_t n, uint64_t seed) {
  return synthetic_images(n, seed, kRunShape[1]);
}

std::vector<float> slab(const float* p, int64_t n) {
  return std::vector<float>(p, p + n);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("mercury_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

train::TrainConfig small_config() {
  train::TrainConfig c;
  c.model = "cnn";
  c.epochs = 2;
  c.batch = 16;
  c.threads = 1;
  c.seed = 3;
  c.progress = false;
  c.eval_batch = 32;
  return c;
}

}  // namespace

TEST_CASE("scoring leaves weights, BN running stats, gradients and optimizer state untouched") {
  auto m = small_bn_model(1);
  const auto d = synthetic_images(24, 5);
  std::vector<int32_t> y;
  const auto x = batch_of(d, 0, 24, y);
  nn::Engine eng(*m);
  optim::Optimizer opt(optim::OptimizerConfig{}, m->params.size());
  // Take one real step so moments and running stats are non-trivial.
  m->params.zero_grad();
  eng.grad(x.data(), y.data(), nullptr, 24);
  opt.step(m->params.values(), m->params.grads(), 1e-3f);
  const auto w0 = slab(m->params.values(), m->params.size());
  const auto g0 = slab(m->params.grads(), m->params.size());
  const auto b0 = slab(m->params.buffers(), m->params.buffer_size());
  const auto m0 = slab(opt.state()[0].second.data, m->params.size());
  std::vector<float> losses(24);
  for (bool train_norm : {false, true}) {
    nn::ScoreOptions so;
    so.train_mode_norm = train_norm;
    eng.score(x.data(), y.data(), 24, losses.data(), nullptr, so);
    CHECK(slab(m->params.values(), m->params.size()) == w0);
    CHECK(slab(m->params.grads(), m->params.size()) == g0);
    CHECK(slab(m->params.buffers(), m->params.buffer_size()) == b0);
    CHECK(slab(opt.state()[0].second.data, m->params.size()) == m0);
  }
}

TEST_CASE("per-sample scores average to the batch loss of the training pass") {
  auto m = models::make_cnn(Shape{1, 28, 28}, 10, 2);
  const auto d = synthetic_images(32, 6);
  std::vector<int32_t> y;
  const auto x = batch_of(d, 0, 32, y);
  nn::Engine eng(*m);
  std::vector<float> scores(32), train_losses(32);
  eng.score(x.data(), y.data(), 32, scores.data());
  m->params.zero_grad();
  const float batch_loss = eng.grad(x.data(), y.data(), nullptr, 32, train_losses.data());
  double mean = 0;
  for (float s : scores) mean += s / 32.0;
  CHECK(mean == doctest::Approx(batch_loss).epsilon(1e-5));
  for (int i = 0; i < 32; ++i) CHECK(scores[i] == doctest::Approx(train_losses[i]).epsilon(1e-5));
  // With BN, train-mode scoring reproduces the training pass's batch statistics.
  auto bn = small_bn_model(4);
  nn::Engine e2(*bn);
  nn::ScoreOptions so;
  so.train_mode_norm = true;
  e2.score(x.data(), y.data(), 32, scores.data(), nullptr, so);
  bn->params.zero_grad();
  const float bn_loss = e2.grad(x.data(), y.data(), nullptr, 32);
  mean = 0;
  for (float s : scores) mean += s / 32.0;
  CHECK(mean == doctest::Approx(bn_loss).epsilon(1e-5));
}

TEST_CASE("scores from a weight snapshot equal scores from the live weights") {
  auto m = models::make_cnn(Shape{1, 28, 28}, 10, 2);
  const auto d = synthetic_images(16, 7);
  std::vector<int32_t> y;
  const auto x = batch_of(d, 0, 16, y);
  nn::Engine eng(*m);
  std::vector<float> live(16), snap(16);
  eng.score(x.data(), y.data(), 16, live.data());
  const auto copy = slab(m->params.values(), m->params.size());
  nn::ScoreOptions so;
  so.weights = copy.data();
  eng.score(x.data(), y.data(), 16, snap.data(), nullptr, so);
  CHECK(live == snap);
}

TEST_CASE("k accumulated micro-batches equal one big batch") {
  const auto d = synthetic_images(64, 8);
  std::vector<int32_t> y;
  const auto x = batch_of(d, 0, 64, y);
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[i] = 0.5f + static_cast<float>(i % 5) * 0.25f;
  auto m = models::make_cnn(Shape{1, 28, 28}, 10, 9);
  nn::Engine eng(*m);
  m->params.zero_grad();
  const float big = eng.grad(x.data(), y.data(), w.data(), 64);
  const auto g_big = slab(m->params.grads(), m->params.size());
  m->params.zero_grad();
  float acc = 0;
  for (int k = 0; k < 4; ++k)
    acc += eng.grad(x.data() + k * 16 * 784, y.data() + k * 16, w.data() + k * 16, 16, nullptr, 64);
  CHECK(acc == doctest::Approx(big).epsilon(1e-5));
  const auto g_acc = slab(m->params.grads(), m->params.size());
  double max_rel = 0, norm = 0;
  for (std::size_t j = 0; j < g_big.size(); ++j) norm = std::max(norm, double(std::abs(g_big[j])));
  for (std::size_t j = 0; j < g_big.size(); ++j)
    max_rel = std::max(max_rel, std::abs(double(g_big[j]) - g_acc[j]) / norm);
  CHECK(max_rel < 1e-5);
}

TEST_CASE("same seed and one thread give identical weights") {
  const auto tr = run_images(96, 10), te = run_images(32, 11);
  std::vector<std::vector<float>> finals;
  for (int run = 0; run < 2; ++run) {
    auto m = models::make_model("cnn", kRunShape, 10, 3);
    std::ostringstream log;
    train::Trainer t(small_config(), *m, tr, te, log);
    t.run();
    finals.push_back(slab(m->params.values(), m->params.size()));
  }
  CHECK(finals[0] == finals[1]);
}

TEST_CASE("save, load and continue equals an uninterrupted run bit for bit") {
  const auto tr = run_images(100, 12), te = run_images(20, 13);
  std::ostringstream log;
  // Uninterrupted: 2 epochs of 7 steps (the last batch of each epoch is partial: 100 = 6·16 + 4).
  auto a = models::make_model("cnn", kRunShape, 10, 3);
  {
    train::Trainer t(small_config(), *a, tr, te, log);
    CHECK(t.run().steps == 14);
  }
  // Interrupted mid-epoch 2 (after 10 steps), then resumed in a fresh model and trainer.
  const std::string ck = temp_path("resume.safetensors");
  {
    auto b = models::make_model("cnn", kRunShape, 10, 3);
    auto cfg = small_config();
    cfg.max_steps = 10;
    cfg.checkpoint = ck;
    train::Trainer t(cfg, *b, tr, te, log);
    CHECK(t.run().steps == 10);
  }
  auto c = models::make_model("cnn", kRunShape, 10, 99);  // different init: all restored
  auto cfg = small_config();
  cfg.resume = ck;
  train::Trainer t(cfg, *c, tr, te, log);
  CHECK(t.cursor().global_step == 10);
  CHECK(t.run().steps == 14);
  CHECK(slab(c->params.values(), c->params.size()) == slab(a->params.values(), a->params.size()));
  std::filesystem::remove(ck);
}

TEST_CASE("resume with an importance sampler continues bit for bit") {
  const auto tr = run_images(100, 12), te = run_images(20, 13);
  std::ostringstream log;
  for (const char* sampler : {"mercury", "kf", "selective-backprop", "infobatch"}) {
    CAPTURE(sampler);
    auto cfg = small_config();
    cfg.sampler = sampler;
    cfg.group_size = 24;
    cfg.groups_per_batch = 2;
    auto a = models::make_model("cnn", kRunShape, 10, 3);
    train::Trainer(cfg, *a, tr, te, log).run();
    const std::string ck = temp_path("resume-is.safetensors");
    {
      auto b = models::make_model("cnn", kRunShape, 10, 3);
      auto c1 = cfg;
      c1.max_steps = 9;
      c1.checkpoint = ck;
      train::Trainer(c1, *b, tr, te, log).run();
    }
    auto c = models::make_model("cnn", kRunShape, 10, 99);
    auto c2 = cfg;
    c2.resume = ck;
    train::Trainer t(c2, *c, tr, te, log);
    CHECK(t.cursor().global_step == 9);
    t.run();
    CHECK(slab(c->params.values(), c->params.size()) == slab(a->params.values(), a->params.size()));
    // Another sampler would draw other batches: refused.
    c2.sampler = std::string(sampler) == "kf" ? "mercury" : "kf";
    auto m = models::make_model("cnn", kRunShape, 10, 3);
    const std::string want = std::string("sampler was ") + sampler;
    CHECK_THROWS_WITH(train::Trainer(c2, *m, tr, te, log), doctest::Contains(want.c_str()));
    std::filesystem::remove(ck);
  }
}

TEST_CASE("resume refuses a checkpoint whose data order or model differs") {
  const auto tr = run_images(40, 12), te = run_images(8, 13);
  std::ostringstream log;
  const std::string ck = temp_path("refuse.safetensors");
  {
    auto m = models::make_model("cnn", kRunShape, 10, 3);
    auto cfg = small_config();
    cfg.max_steps = 2;
    cfg.checkpoint = ck;
    train::Trainer(cfg, *m, tr, te, log).run();
  }
  auto cfg = small_config();
  cfg.resume = ck;
  cfg.batch = 8;
  auto m = models::make_model("cnn", kRunShape, 10, 3);
  CHECK_THROWS_WITH(train::Trainer(cfg, *m, tr, te, log),
                    doctest::Contains("batch was 16 in the checkpoint, now 8"));
  cfg.batch = 16;
  auto mlp = models::make_model("mlp", kRunShape, 10, 3);
  cfg.model = "mlp";
  CHECK_THROWS_WITH(train::Trainer(cfg, *mlp, tr, te, log),
                    doctest::Contains("model: expected 'mlp', found 'cnn'"));
  std::filesystem::remove(ck);
}

TEST_CASE("a corrupted or truncated checkpoint is refused with a clear error") {
  const auto tr = run_images(40, 12), te = run_images(8, 13);
  std::ostringstream log;
  const std::string ck = temp_path("corrupt.safetensors");
  auto m = models::make_model("cnn", kRunShape, 10, 3);
  auto cfg = small_config();
  cfg.max_steps = 1;
  cfg.checkpoint = ck;
  train::Trainer(cfg, *m, tr, te, log).run();
  const auto size = std::filesystem::file_size(ck);
  {  // flip one byte in the data section
    std::FILE* f = std::fopen(ck.c_str(), "r+b");
    REQUIRE(f);
    std::fseek(f, static_cast<long>(size - 100), SEEK_SET);
    const int c = std::fgetc(f);
    std::fseek(f, static_cast<long>(size - 100), SEEK_SET);
    std::fputc(c ^ 0x5a, f);
    std::fclose(f);
  }
  cfg = small_config();
  cfg.resume = ck;
  CHECK_THROWS_WITH(train::Trainer(cfg, *m, tr, te, log), doctest::Contains(ck.c_str()));
  std::filesystem::resize_file(ck, size / 2);
  CHECK_THROWS_WITH(train::Trainer(cfg, *m, tr, te, log), doctest::Contains(ck.c_str()));
  std::filesystem::remove(ck);
}

TEST_CASE("SGD with momentum and Nesterov follows PyTorch's update rule") {
  for (bool nesterov : {false, true}) {
    optim::OptimizerConfig c;
    c.kind = optim::Kind::sgd;
    c.momentum = 0.9f;
    c.nesterov = nesterov;
    c.weight_decay = 0.01f;
    optim::Optimizer o(c, 1);
    float p = 1.0f, buf = 0;
    double ref = 1.0;
    for (int step = 0; step < 3; ++step) {
      const float g = 0.5f * static_cast<float>(step + 1);
      const double d = g + 0.01 * ref;
      buf = step == 0 ? static_cast<float>(d) : static_cast<float>(0.9 * buf + d);
      ref -= 0.1 * (nesterov ? d + 0.9 * buf : buf);
      o.step(&p, &g, 0.1f);
      CHECK(p == doctest::Approx(ref).epsilon(1e-6));
    }
  }
}

TEST_CASE("Adam and AdamW follow their update rules") {
  for (auto kind : {optim::Kind::adam, optim::Kind::adamw}) {
    optim::OptimizerConfig c;
    c.kind = kind;
    c.weight_decay = 0.1f;
    optim::Optimizer o(c, 3);
    float p[3] = {1.0f, -2.0f, 0.5f};
    double ref[3] = {1.0, -2.0, 0.5}, m[3] = {}, v[3] = {};
    for (int t = 1; t <= 4; ++t) {
      const float g[3] = {0.1f * t, -0.3f, 0.7f / t};
      for (int j = 0; j < 3; ++j) {
        double gj = g[j];
        if (kind == optim::Kind::adam)
          gj += 0.1 * ref[j];
        else
          ref[j] -= 0.01 * 0.1 * ref[j];
        m[j] = 0.9 * m[j] + 0.1 * gj;
        v[j] = 0.999 * v[j] + 0.001 * gj * gj;
        const double mh = m[j] / (1 - std::pow(0.9, t)), vh = v[j] / (1 - std::pow(0.999, t));
        ref[j] -= 0.01 * mh / (std::sqrt(vh) + 1e-8);
      }
      o.step(p, g, 0.01f);
      for (int j = 0; j < 3; ++j) CHECK(p[j] == doctest::Approx(ref[j]).epsilon(1e-5));
    }
  }
}

TEST_CASE("learning-rate schedules: constant, step, cosine with warm-up") {
  optim::LrSchedule s;
  s.base_lr = 1.0f;
  CHECK(s.at(0) == 1.0f);
  s.kind = optim::LrSchedule::Kind::step;
  s.step_size = 10;
  s.gamma = 0.5f;
  CHECK(s.at(9) == 1.0f);
  CHECK(s.at(10) == 0.5f);
  CHECK(s.at(25) == 0.25f);
  s.kind = optim::LrSchedule::Kind::cosine;
  s.warmup_steps = 4;
  s.total_steps = 104;
  CHECK(s.at(0) == doctest::Approx(0.25));
  CHECK(s.at(3) == doctest::Approx(1.0));
  CHECK(s.at(54) == doctest::Approx(0.5));
  CHECK(s.at(104) == doctest::Approx(0.0));
  CHECK_THROWS_WITH(optim::LrSchedule::parse("linear"), doctest::Contains("found 'linear'"));
}

TEST_CASE("parameter slabs: aligned views, declaration-order init, layout hash") {
  nn::ParamStore a;
  a.declare("w", Shape{3, 5}, nn::Init::uniform_fan_in, 5);
  a.declare("b", Shape{3}, nn::Init::zeros);
  a.finalize(1);
  CHECK(reinterpret_cast<uintptr_t>(a.value(1).data) % 64 == 0);
  CHECK(a.count() == 18);
  nn::ParamStore b;
  b.declare("w", Shape{3, 5}, nn::Init::uniform_fan_in, 5);
  b.declare("b", Shape{4}, nn::Init::zeros);
  b.finalize(1);
  CHECK(a.layout_hash() != b.layout_hash());
  CHECK(slab(a.values(), 15) == slab(b.values(), 15));
  nn::ParamStore c;
  c.declare("w", Shape{1}, nn::Init::zeros);
  CHECK_THROWS_WITH(c.declare("w", Shape{2}, nn::Init::zeros), doctest::Contains("duplicate"));
}

TEST_CASE("thread pool covers the range in deterministic chunks") {
  ThreadPool pool(3);
  std::vector<int> hits(100, 0);
  std::vector<std::pair<int64_t, int64_t>> bounds(3);
  pool.parallel_for(100, [&](int64_t b, int64_t e, int c) {
    bounds[c] = {b, e};
    for (int64_t i = b; i < e; ++i) ++hits[i];
  });
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  CHECK(bounds[0] == std::make_pair<int64_t, int64_t>(0, 33));
  CHECK(bounds[2] == std::make_pair<int64_t, int64_t>(66, 100));
  CHECK_THROWS_WITH(ThreadPool(0), doctest::Contains("got 0"));
}

TEST_CASE("importance statistics: probe rank changes after lags 1, 10 and one period") {
  const auto tr = run_images(96, 14), te = run_images(16, 15);
  auto m = models::make_model("cnn", kRunShape, 10, 3);
  auto cfg = small_config();
  cfg.epochs = 10;
  cfg.max_steps = 45;
  cfg.importance_stats_every = 20;
  cfg.metrics = temp_path("stats.jsonl");
  std::ostringstream log;
  train::Trainer(cfg, *m, tr, te, log).run();
  std::ifstream in(cfg.metrics);
  std::vector<std::pair<int64_t, int64_t>> changes;  // (base step, lag)
  std::vector<int64_t> hists;
  for (std::string line; std::getline(in, line);) {
    const auto e = nlohmann::json::parse(line);
    if (e["event"] == "importance_hist") hists.push_back(e["steps"]);
    if (e["event"] != "rank_change") continue;
    changes.emplace_back(e["steps"].get<int64_t>(), e["lag"].get<int64_t>());
    const double rho = e["spearman"];
    CHECK(rho >= -1.0);
    CHECK(rho <= 1.0);
    CHECK(e["under5"].get<double>() <= e["under10"].get<double>());
    CHECK(e["top10_kept"].get<double>() >= 0.0);
    CHECK(e["top10_kept"].get<double>() <= 1.0);
  }
  CHECK(hists == std::vector<int64_t>{20, 40});
  // Lag 100 is not below the period of 20; the base at 20 is compared again at 40 (lag 20);
  // the base at 40 only reaches lag 1 before step 45.
  const std::vector<std::pair<int64_t, int64_t>> want{{20, 1}, {20, 10}, {20, 20}, {40, 1}};
  CHECK(changes == want);
  std::filesystem::remove(cfg.metrics);
}

TEST_CASE("the trainer prints its memory plan at step 1 and logs every tensor's offset") {
  const auto tr = run_images(64, 21), te = run_images(16, 22);
  auto m = models::make_model("cnn", kRunShape, 10, 3);
  auto cfg = small_config();
  cfg.max_steps = 3;
  cfg.metrics = temp_path("plan.jsonl");
  std::ostringstream log;
  train::Trainer(cfg, *m, tr, te, log).run();
  CHECK(log.str().find("activations+scratch") != std::string::npos);
  CHECK(log.str().find("tensors, at most") != std::string::npos);
  std::ifstream in(cfg.metrics);
  int plans = 0;
  for (std::string line; std::getline(in, line);) {
    const auto e = nlohmann::json::parse(line);
    if (e["event"] != "memory_plan") continue;
    ++plans;
    const int64_t block = e["block_bytes"];
    CHECK(e["batch"] == cfg.batch);
    CHECK(block >= e["live_peak_bytes"].get<int64_t>());
    CHECK(block < e["all_tensors_bytes"].get<int64_t>());  // tensors do share memory
    // The log's "planned" figure is this block (not the tape's, still unallocated at step 1).
    char planned[64];
    std::snprintf(planned, sizeof planned, "activations+scratch %.2f MiB planned",
                  static_cast<double>(block) / (1 << 20));
    CHECK(block > 0);
    CHECK_MESSAGE(log.str().find(planned) != std::string::npos, log.str());
    REQUIRE(e["tensors"].size() > 10);
    for (const auto& t : e["tensors"]) {  // [offset, bytes, use, node, first, last]
      CHECK(t[0].get<int64_t>() % 64 == 0);
      CHECK(t[0].get<int64_t>() + t[1].get<int64_t>() <= block);
      CHECK(t[4].get<int64_t>() <= t[5].get<int64_t>());
    }
  }
  CHECK(plans == 1);
  std::filesystem::remove(cfg.metrics);
}
