// Hardening (issue 13, item 6): bad numbers are generated for every numeric training knob and
// each must be refused naming the key, never accepted into a run that then overflows, divides by
// zero or trains on NaN. Also the trainer's own checks: a non-finite loss stops training naming
// the step and the knob, a batch larger than the training set and an empty test split are
// refused.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "file_test_support.hpp"
#include "mercury/mercury.hpp"
#include "synthetic_data.hpp"
#include "tiny_model.hpp"

using namespace mercury;
using mercury::testing::check_mentions;

namespace {

// What validate() says about `config` with `key` set to `value` ("" = accepted).
std::string verdict(const std::string& key, const nlohmann::json& value,
                    const train::TrainConfig& base = {}) {
  try {
    train::validate(train::config_from_json(nlohmann::json{{key, value}}, base));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("every real-valued knob refuses NaN, infinities and absurd magnitudes, naming the key") {
  const nlohmann::json defaults = train::to_json(train::TrainConfig{});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  int tried = 0, keys = 0;
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    if (!it.value().is_number_float()) continue;
    ++keys;
    const std::string key = it.key();
    for (double bad : {nan, -nan, inf, -inf, -1e300}) {
      CAPTURE(key);
      CAPTURE(bad);
      ++tried;
      const std::string e = verdict(key, bad);
      REQUIRE_MESSAGE(!e.empty(), key << " = " << bad << " was accepted");
      CHECK(e.rfind(key, 0) == 0);  // the message starts with the key
    }
    // Far too large: refused everywhere but kf_tau_th, where a huge threshold means "never".
    ++tried;
    const std::string huge = verdict(key, 1e300);
    if (key == "kf_tau_th")
      CHECK(huge.empty());
    else
      CHECK_MESSAGE(huge.rfind(key, 0) == 0, key << " = 1e300: " << huge);
  }
  CHECK(keys == 16);
  MESSAGE("real-valued knobs: ", keys, " keys, ", tried, " bad values, all refused");
}

TEST_CASE("every integer knob refuses values whose products would overflow, naming the key") {
  const nlohmann::json defaults = train::to_json(train::TrainConfig{});
  // Keys where any non-negative value is meaningful: a seed, "use at most N samples".
  const std::vector<std::string> unbounded = {"seed", "train_limit", "test_limit"};
  int tried = 0, keys = 0;
  for (auto it = defaults.begin(); it != defaults.end(); ++it) {
    if (!it.value().is_number_integer()) continue;
    ++keys;
    const std::string key = it.key();
    CAPTURE(key);
    for (int64_t bad : {std::numeric_limits<int64_t>::min(), int64_t{-1}}) {
      ++tried;
      const std::string e = verdict(key, bad);
      CHECK_MESSAGE(e.rfind(key, 0) == 0, key << " = " << bad << ": '" << e << "'");
    }
    ++tried;
    const std::string e = verdict(key, std::numeric_limits<int64_t>::max());
    if (std::find(unbounded.begin(), unbounded.end(), key) != unbounded.end())
      CHECK(e.empty());
    else
      CHECK_MESSAGE(e.rfind(key, 0) == 0, key << " = INT64_MAX: '" << e << "'");
  }
  CHECK(keys >= 25);
  MESSAGE("integer knobs: ", keys, " keys, ", tried, " bad values");
}

TEST_CASE("a learning rate that is 0 in float, and the bounds themselves") {
  check_mentions(verdict("lr", 1e-50), {"lr: expected a rate representable in float", "1e-50"});
  check_mentions(verdict("lr", 1e-39), {"representable in float"});  // a float denormal
  CHECK(verdict("lr", 1e-30).empty());
  CHECK(verdict("momentum", 0.0).empty());
  check_mentions(verdict("momentum", 1.0),
                 {"momentum: expected a finite value in [0, 1), found 1"});
  check_mentions(verdict("beta", std::numeric_limits<double>::quiet_NaN()),
                 {"beta: expected a finite value", "found nan"});
  CHECK(verdict("beta", -1.0).empty());  // automatic
  check_mentions(verdict("epochs", int64_t{1} << 40), {"epochs: expected 1..1000000"});
  check_mentions(verdict("kf_presample", 1000000), {"kf_presample: expected 1..64"});
  CHECK(verdict("ib_ratio", 0.0).empty());  // InfoBatch that prunes nothing: uniform passes
  check_mentions(verdict("ib_ratio", 1.0), {"ib_ratio: expected a finite value in [0, 1)"});
  check_mentions(verdict("ib_delta", 1.5), {"ib_delta: expected a finite value in [0, 1]"});
}

namespace {

train::TrainConfig tiny_config() {
  train::TrainConfig c;
  c.epochs = 1;
  c.batch = 8;
  c.threads = 1;
  c.progress = false;
  return c;
}

std::string trainer_error(const train::TrainConfig& c, nn::Model& m, const data::Dataset& tr,
                          const data::Dataset& te, bool run) {
  std::ostringstream log;
  try {
    train::Trainer t(c, m, tr, te, log);
    if (run) t.run();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("a non-finite loss stops training naming the step and the knob; no NaN checkpoint") {
  mercury::testing::TempDir dir;
  const auto tr = mercury::testing::tiny_images(32, 1);
  const auto te = mercury::testing::tiny_images(16, 2);
  for (const std::string sampler : {"uniform", "mercury"}) {
    CAPTURE(sampler);
    auto m = mercury::testing::tiny_model(3);
    m->params.values()[1] = std::numeric_limits<float>::quiet_NaN();  // as if it had diverged
    train::TrainConfig c = tiny_config();
    c.sampler = sampler;
    c.lr = 0.5;
    c.checkpoint = dir.file("c.safetensors");
    const std::string e = trainer_error(c, *m, tr, te, true);
    check_mentions(e, {"step 0: the training loss is nan", "training diverged",
                       "lower --lr (now 0.5)", "--warmup-steps"});
    if (sampler == "mercury") check_mentions(e, {"--weight-power"});
    CHECK(!std::filesystem::exists(c.checkpoint));
  }
  // A weight that turned NaN between steps never reaches a checkpoint.
  auto m = mercury::testing::tiny_model(3);
  train::TrainConfig c = tiny_config();
  std::ostringstream log;
  train::Trainer t(c, *m, tr, te, log);
  m->params.values()[2] = std::numeric_limits<float>::infinity();
  const std::string path = dir.file("never.safetensors");
  const std::string e = [&] {
    try {
      t.save(path);
    } catch (const std::runtime_error& ex) {
      return std::string(ex.what());
    }
    return std::string();
  }();
  check_mentions(
      e, {"step 0: a weight before the checkpoint was written is inf", "training diverged"});
  CHECK(!std::filesystem::exists(path));
}

TEST_CASE("a batch larger than the training set and an empty test split are refused") {
  const auto tr = mercury::testing::tiny_images(20, 1);
  const auto te = mercury::testing::tiny_images(10, 2);
  const auto none = mercury::testing::tiny_images(0, 2);
  auto m = mercury::testing::tiny_model(3);
  train::TrainConfig c = tiny_config();
  c.batch = 21;
  check_mentions(trainer_error(c, *m, tr, te, false),
                 {"batch: expected at most the 20 training samples, found 21"});
  c.batch = 20;
  CHECK(trainer_error(c, *m, tr, te, false).empty());
  check_mentions(trainer_error(c, *m, tr, none, false),
                 {"test set", "has no samples", "evaluation needs at least one"});
}

// ---- checkpoints (issue 13, item 5) ------------------------------------------------------------

namespace {

// Rewrites checkpoint `from` to `to` with metadata edited by `edit` and a fresh, valid CRC: the
// cursor checks must catch what the checksum cannot (a file written wrong, not damaged).
void rewrite_checkpoint(const std::string& from, const std::string& to,
                        const std::function<void(std::map<std::string, std::string>&)>& edit) {
  const io::SafetensorsFile f = io::SafetensorsFile::load(from);
  std::vector<io::TensorRef> refs;
  for (const io::SafetensorsEntry& e : f.entries())
    refs.push_back({e.name, e.dtype, e.shape, f.bytes(e).data()});
  std::map<std::string, std::string> meta = f.metadata();
  meta.erase(std::string(io::kChecksumMetadataKey));
  edit(meta);
  io::write_safetensors(to, refs, meta);
}

}  // namespace

TEST_CASE("checkpoints: damaged headers, inconsistent cursors and finished runs") {
  mercury::testing::TempDir dir;
  const auto tr = mercury::testing::tiny_images(32, 1);
  const auto te = mercury::testing::tiny_images(16, 2);
  train::TrainConfig c = tiny_config();
  c.epochs = 2;
  c.checkpoint = dir.file("run.safetensors");
  std::ostringstream log;
  auto m = mercury::testing::tiny_model(3);
  const train::TrainResult first = train::Trainer(c, *m, tr, te, log).run();
  const std::vector<uint8_t> good = mercury::testing::read_bytes(c.checkpoint);

  const auto resume_error = [&](const std::string& path, bool unchecked = false) {
    train::TrainConfig r = c;
    r.checkpoint.clear();
    r.resume = path;
    r.resume_unchecked = unchecked;
    auto model = mercury::testing::tiny_model(3);
    return trainer_error(r, *model, tr, te, false);
  };

  SUBCASE("every single-digit change in the header is refused by the checksum") {
    const std::string text(good.begin(), good.end());
    uint64_t header_length = 0;
    for (int b = 7; b >= 0; --b) header_length = header_length << 8 | good[std::size_t(b)];
    // The header holds ~12,000 digits. CRC-32C catches every single-byte change, so what this
    // checks is that the checksum covers the whole header: 400 digits spread evenly over it (the
    // first and the last among them) show that for a thirtieth of the cost of trying each one.
    std::vector<std::size_t> digits;
    for (std::size_t i = 8; i < 8 + header_length; ++i) {
      if (text[i] >= '0' && text[i] <= '9') digits.push_back(i);
    }
    constexpr std::size_t kTried = 400;
    REQUIRE(digits.size() > kTried);
    std::size_t refused = 0;
    for (std::size_t k = 0; k < kTried; ++k) {
      const std::size_t i = digits[k * (digits.size() - 1) / (kTried - 1)];
      std::vector<uint8_t> bytes = good;
      bytes[i] = bytes[i] == '9' ? '0' : uint8_t(bytes[i] + 1);
      mercury::testing::write_bytes(dir.file("flip.safetensors"), bytes);
      const std::string e = resume_error(dir.file("flip.safetensors"));
      refused += e.find("checkpoint '" + dir.file("flip.safetensors") + "': ") != std::string::npos;
    }
    // The digits tried span the cursor, the RNG state, the config, shapes and offsets.
    CHECK(refused == kTried);
    MESSAGE("checkpoint header digits: ", kTried, " mutations, ", refused, " refused");
  }

  SUBCASE("a missing checksum is refused unless --resume-unchecked") {
    rewrite_checkpoint(c.checkpoint, dir.file("ok.safetensors"), [](auto&) {});
    CHECK(resume_error(dir.file("ok.safetensors")).empty());  // the rewrite itself is sound
    std::string text(good.begin(), good.end());
    text.replace(text.find("mercury.crc32c.all"), 18, "mercury.crc32c.xyz");
    mercury::testing::write_bytes(dir.file("nocrc.safetensors"),
                                  std::vector<uint8_t>(text.begin(), text.end()));
    check_mentions(resume_error(dir.file("nocrc.safetensors")),
                   {"expected key 'mercury.crc32c.all'", "--resume-unchecked"});
    CHECK(resume_error(dir.file("nocrc.safetensors"), true).empty());
  }

  SUBCASE("cursor fields that disagree with each other or with the run are refused") {
    // 32 samples, batch 8: 4 steps per epoch; the finished run is at epoch 2, step 0, global 8.
    const std::vector<std::tuple<const char*, const char*, const char*, std::string>> cases = {
        {"mercury.global_step", "9223372036854775807", "", "expected global step = epoch x 4"},
        {"mercury.global_step", "7", "", "expected global step"},
        {"mercury.epoch", "1000000", "", "expected an epoch within --epochs 2"},
        {"mercury.epoch", "3", "", "expected an epoch within --epochs 2"},
        {"mercury.step_in_epoch", "4", "", "expected a step in epoch below the 4 steps"},
        {"mercury.step_in_epoch", "-1", "", "expected a non-negative integer, found '-1'"},
        {"mercury.epoch", "1e3", "", "expected a non-negative integer, found '1e3'"},
        {"mercury.rng", "garbage", "", "RNG state in metadata is corrupt"},
        {"mercury.config", "{not json", "", "expected the JSON config of the run"},
        {"mercury.epoch", "1", "mercury.step_in_epoch", "expected global step"},
    };
    int n = 0;
    for (const auto& [key, value, also, expect] : cases) {
      CAPTURE(key);
      CAPTURE(value);
      const std::string path = dir.file("cursor" + std::to_string(n++) + ".safetensors");
      rewrite_checkpoint(c.checkpoint, path, [&](auto& meta) {
        meta[key] = value;
        if (*also) meta[also] = "1";
      });
      check_mentions(resume_error(path), {path, expect});
    }
  }

  SUBCASE("resuming a finished run reports its real accuracy, not 0%") {
    train::TrainConfig r = c;
    r.checkpoint.clear();
    r.resume = c.checkpoint;
    auto model = mercury::testing::tiny_model(9);  // weights come from the checkpoint
    std::ostringstream again_log;
    const train::TrainResult again = train::Trainer(r, *model, tr, te, again_log).run();
    CHECK(again.steps == first.steps);
    CHECK(again.final_test_acc == first.final_test_acc);
    CHECK(again.final_test_loss == first.final_test_loss);
    check_mentions(again_log.str(), {"nothing to train", "finished all 2 epochs"});
  }

  SUBCASE("data-defined metadata (the text vocabulary) must match the run's") {
    train::TrainConfig v = c;
    v.checkpoint = dir.file("vocab.safetensors");
    auto model = mercury::testing::tiny_model(3);
    {
      std::ostringstream l;
      train::Trainer t(v, *model, tr, te, l);
      t.set_checkpoint_metadata({{"mercury.vocabulary", "<pad> <unk> the cat sat"}});
      t.run();
    }
    train::TrainConfig r = v;
    r.checkpoint.clear();
    r.resume = v.checkpoint;
    auto m2 = mercury::testing::tiny_model(3);
    std::ostringstream l;
    train::Trainer t(r, *m2, tr, te, l);
    CHECK_NOTHROW(t.set_checkpoint_metadata({{"mercury.vocabulary", "<pad> <unk> the cat sat"}}));
    const std::string e = [&] {
      try {
        t.set_checkpoint_metadata({{"mercury.vocabulary", "<pad> <unk> a dog ran"}});
      } catch (const std::invalid_argument& ex) {
        return std::string(ex.what());
      }
      return std::string();
    }();
    check_mentions(e, {"metadata mercury.vocabulary differs", "another --vocabulary"});
  }
}
