// libFuzzer target for the training-config parser: bytes -> JSON -> config_from_json -> validate,
// the path of `mercury train --config FILE` and of a checkpoint's saved config. Anything but
// success or std::invalid_argument (a refusal naming the key) is a finding, e.g. a
// nlohmann::json type_error escaping the type checks, or a validated config whose counts overflow
// (epochs x batch is checked here as the trainer computes it).
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
//     -I/work/main tests/fuzz/fuzz_config.cpp -o fuzz_config
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "mercury/train/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  try {
    const mercury::train::TrainConfig c = mercury::train::config_from_json(j, {}, "fuzz");
    mercury::train::validate(c);
    int64_t product = 0;  // what the bounds promise: steps and samples never overflow
    if (__builtin_mul_overflow(c.epochs, c.batch, &product) ||
        __builtin_mul_overflow(c.batch, c.kf_presample, &product) ||
        __builtin_mul_overflow(c.max_steps, c.batch, &product))
      __builtin_trap();
    (void)mercury::train::to_json(c).dump();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}

#ifdef MERCURY_FUZZ_WRITE_SEEDS
#include "seed_corpus.hpp"

int main(int argc, char** argv) {
  const std::string dir = mercury::fuzzing::corpus_dir(argc, argv);
  if (dir.empty()) return 2;
  const std::string seeds[] = {
      mercury::train::to_json(mercury::train::TrainConfig{}).dump(),
      R"({"sampler": "mercury", "beta": 0.1, "group_size": 1024, "pipeline": "bacc"})",
      R"({"epochs": 3, "lr": 1e-3, "reshard": "importance", "reshard_share": "100"})"};
  for (std::size_t i = 0; i < std::size(seeds); ++i)
    if (!mercury::fuzzing::write_seed(dir, i, std::as_bytes(std::span(seeds[i])))) return 1;
  return 0;
}
#endif
