// tools/mercury_main.cpp — the `mercury` command-line tool.
//
//   mercury train   [--config FILE] [--<key> VALUE ...]   single-device training
//   mercury inspect CHECKPOINT                            what a checkpoint holds
//
// Every train flag mirrors one TrainConfig key (mercury/train/config.hpp); --config FILE loads a
// JSON object of the same keys, and flags given on the command line override it.
// Exit codes: 0 success, 1 runtime failure, 2 bad usage / bad input.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "mercury/mercury.hpp"

namespace {

using nlohmann::json;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Converts a flag's text to the JSON type of the key's default value.
json typed_flag(const std::string& key, const std::string& text, const json& like) {
  const std::string flag = "--" + [&] {
    std::string s = key;
    for (char& c : s)
      if (c == '_') c = '-';
    return s;
  }();
  if (like.is_boolean()) {
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
    throw UsageError(flag + ": expected true or false, found '" + text + "'");
  }
  if (like.is_number_integer()) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end || errno) {
      throw UsageError(flag + ": expected an integer, found '" + text + "'");
    }
    return v;
  }
  if (like.is_number()) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end || errno) {
      throw UsageError(flag + ": expected a number, found '" + text + "'");
    }
    return v;
  }
  return text;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("--config: cannot open '" + path + "': " + std::strerror(errno));
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw UsageError("--config '" + path + "': malformed JSON: " + e.what());
  }
}

int run_train(const mercury::train::TrainConfig& cfg) {
  using namespace mercury;
  if (cfg.data != "fashion-mnist") {
    throw UsageError("--data: expected fashion-mnist, found '" + cfg.data + "'");
  }
  const data::ImageDataset train = data::load_fashion_mnist(cfg.data_dir, data::Split::kTrain);
  const data::ImageDataset test = data::load_fashion_mnist(cfg.data_dir, data::Split::kTest);
  auto model = models::make_model(cfg.model, Shape{train.channels, train.height, train.width},
                                  train.num_classes(), static_cast<uint64_t>(cfg.seed));
  train::Trainer trainer(cfg, *model, train, test, std::cout);
  trainer.run();
  return 0;
}

int run_inspect(const std::string& path) {
  const auto f = mercury::io::SafetensorsFile::load(path);
  std::cout << path << ": " << f.entries().size() << " tensors, " << f.data_size()
            << " data bytes\n";
  for (const auto& [k, v] : f.metadata()) {
    if (k == "mercury.config") continue;
    std::cout << "  meta " << k << " = " << v << "\n";
  }
  for (const auto& e : f.entries()) {
    std::cout << "  " << e.name << "  " << e.dtype << " [";
    for (std::size_t i = 0; i < e.shape.size(); ++i) std::cout << (i ? "," : "") << e.shape[i];
    std::cout << "]\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Mercury: on-device distributed DNN training with stochastic importance sampling"};
  app.require_subcommand(1);

  auto* train = app.add_subcommand("train", "train a model on this device");
  std::string config_path;
  train->add_option("--config", config_path, "JSON file with any of the keys below");
  const json defaults = mercury::train::to_json(mercury::train::TrainConfig{});
  std::map<std::string, std::string> flag_values;
  std::map<std::string, CLI::Option*> flag_options;
  for (const auto& [key, help] : mercury::train::train_config_help()) {
    std::string flag = "--" + key;
    for (char& c : flag)
      if (c == '_') c = '-';
    flag_options[key] =
        train->add_option(flag, flag_values[key], help + " (default: " + defaults[key].dump() + ")");
  }

  auto* inspect = app.add_subcommand("inspect", "print what a checkpoint holds");
  std::string inspect_path;
  inspect->add_option("checkpoint", inspect_path, "checkpoint file")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (*train) {
      json patch = json::object();
      if (!config_path.empty()) patch = read_json_file(config_path);
      if (!patch.is_object()) {
        throw UsageError("--config '" + config_path + "': expected a JSON object, found " +
                         std::string(patch.type_name()));
      }
      for (const auto& [key, opt] : flag_options)
        if (opt->count()) patch[key] = typed_flag(key, flag_values[key], defaults[key]);
      mercury::train::TrainConfig cfg;
      try {
        cfg = mercury::train::config_from_json(
            patch, {}, config_path.empty() ? "flags" : "--config '" + config_path + "'");
        mercury::train::validate(cfg);
      } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
      }
      return run_train(cfg);
    }
    if (*inspect) return run_inspect(inspect_path);
  } catch (const UsageError& e) {
    std::cerr << "mercury: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mercury: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
