// libFuzzer target for a checkpoint's header and metadata as `mercury train --resume` reads them:
// SafetensorsFile::from_bytes (checksum optional, so inputs reach the parser), then
// load_checkpoint into a small model (names, dtypes, shapes, cursor, RNG and config metadata),
// then the saved config through config_from_json + validate. Outcomes other than success,
// io::CheckpointError or std::invalid_argument (the documented refusals) are findings; so is a
// loaded checkpoint whose parameters differ from the file's bytes.
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
//     -I/work/main -I/usr/include/eigen3 tests/fuzz/fuzz_checkpoint.cpp -o fuzz_checkpoint
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "mercury/io/safetensors.hpp"
#include "mercury/nn/layers.hpp"
#include "mercury/nn/model.hpp"
#include "mercury/optim/optimizer.hpp"
#include "mercury/train/checkpoint.hpp"
#include "mercury/train/config.hpp"

namespace {

struct Target {
  mercury::nn::Model model;
  std::unique_ptr<mercury::optim::Optimizer> opt;
  Target() {
    using namespace mercury;
    model.name = "tiny";
    model.sample_shape = Shape{1, 2, 2};
    model.num_classes = 2;
    auto net = std::make_unique<nn::Sequential>();
    net->add<nn::Flatten>();
    net->add<nn::Linear>(model.params, "fc", 4, 2);
    model.net = std::move(net);
    model.params.finalize(1);
    opt = std::make_unique<optim::Optimizer>(optim::OptimizerConfig{}, model.params.size());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Target t;
  try {
    const auto f = mercury::io::SafetensorsFile::from_bytes(
        std::span<const uint8_t>(data, size), "fuzz", mercury::io::Checksum::optional);
    const mercury::train::LoadedState s = mercury::train::load_checkpoint(f, t.model, *t.opt);
    // Loaded means every parameter now holds exactly the file's bytes.
    for (const auto& p : t.model.params.params()) {
      const auto bytes = f.bytes(f.at(p.name));
      if (bytes.size() != std::size_t(p.shape.numel()) * 4 ||
          std::memcmp(bytes.data(), t.model.params.values() + p.offset, bytes.size()) != 0)
        __builtin_trap();
    }
    const auto j = nlohmann::json::parse(s.config_json, nullptr, false);
    if (!j.is_discarded())
      mercury::train::validate(mercury::train::config_from_json(j, {}, "fuzz config"));
  } catch (const mercury::io::CheckpointError&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}

#ifdef MERCURY_FUZZ_WRITE_SEEDS
#include "seed_corpus.hpp"

// A valid checkpoint of the target's model as the seed.
int main(int argc, char** argv) {
  const std::string dir = mercury::fuzzing::corpus_dir(argc, argv);
  if (dir.empty()) return 2;
  Target t;
  mercury::train::save_checkpoint(mercury::fuzzing::seed_path(dir, 0), t.model, *t.opt, {1, 2, 3},
                                  "1 2",
                                  mercury::train::to_json(mercury::train::TrainConfig{}).dump());
  return 0;
}
#endif
