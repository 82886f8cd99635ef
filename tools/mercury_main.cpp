// tools/mercury_main.cpp — the `mercury` command-line tool.
//
//   mercury train   [--config FILE] [--<key> VALUE ...]   single-device training
//   mercury inspect CHECKPOINT                            what a checkpoint holds
//   mercury data fashion-mnist|speech-synth|debian-text   produce/verify the offline datasets
//   mercury report --out DIR RUN.jsonl...                 SVG plots + summary of metrics files
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
#include "tools/data_commands.hpp"
#include "tools/report.hpp"

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
  data::DatasetOptions dopt;
  dopt.name = cfg.data;
  dopt.dir = cfg.data_dir;
  dopt.image_size = cfg.image_size;
  dopt.seed = static_cast<uint64_t>(cfg.seed);
  dopt.augment = cfg.augment;
  dopt.vocabulary = cfg.vocabulary;
  dopt.log_mel = cfg.log_mel;
  data::LoadedData d;
  try {
    d = data::load_dataset(dopt);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  models::ModelOptions mo;
  if (d.vocabulary > 0) mo.lstm_attention.vocab = mo.textcnn.vocab = d.vocabulary;
  auto model = models::make_model(cfg.model, d.train->sample_shape(), d.train->num_classes(),
                                  static_cast<uint64_t>(cfg.seed), mo);
  std::cout << "data " << d.train->describe() << " / test " << d.test->size() << "\n";
  train::Trainer trainer(cfg, *model, *d.train, *d.test, std::cout);
  trainer.set_checkpoint_metadata(d.metadata);
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
    flag_options[key] = train->add_option(flag, flag_values[key],
                                          help + " (default: " + defaults[key].dump() + ")");
  }

  auto* data = app.add_subcommand("data", "produce or verify the datasets usable offline");
  data->require_subcommand(1);
  auto* d_fm =
      data->add_subcommand("fashion-mnist", "verify the Debian dataset-fashion-mnist files");
  mercury::tools::FashionMnistCheckOptions fm_opt;
  d_fm->add_option("--data-dir", fm_opt.data_dir, "directory holding the IDX files");
  auto* d_speech = data->add_subcommand(
      "speech-synth", "synthesise spoken keywords with espeak-ng (Speech Commands layout)");
  mercury::tools::SpeechSynthOptions sp_opt;
  d_speech->add_option("--out", sp_opt.output_dir, "output directory")->required();
  d_speech->add_option("--seed", sp_opt.seed, "random seed (split, noise)");
  d_speech->add_option("--voices", sp_opt.voices, "espeak-ng voices (default: every English one)");
  d_speech->add_option("--words", sp_opt.words, "keywords");
  d_speech->add_option("--rates", sp_opt.rates, "speaking rates, words per minute");
  d_speech->add_option("--pitches", sp_opt.pitches, "pitches, 0..99");
  auto* d_text = data->add_subcommand(
      "debian-text", "package descriptions labelled by section, as AG-News-format CSV");
  mercury::tools::DebianTextOptions dt_opt;
  d_text->add_option("--out", dt_opt.output_dir, "output directory")->required();
  d_text->add_option("--classes", dt_opt.classes, "number of (most common) sections")
      ->check(CLI::Range(2, 100));
  d_text->add_option("--seed", dt_opt.seed, "random seed of the train/test split");
  d_text->add_option("--test-fraction", dt_opt.test_fraction, "fraction held out for testing")
      ->check(CLI::Range(0.01, 0.9));
  d_text->add_option("--input", dt_opt.input_file, "a saved `apt-cache dumpavail` output");

  auto* rep = app.add_subcommand("report", "plot metrics files (JSON lines) to SVG + summary.json");
  std::vector<std::string> report_files;
  std::string report_out = "report";
  rep->add_option("files", report_files, "metrics files written by --metrics")->required();
  rep->add_option("--out", report_out, "output directory");

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
    if (*rep) return mercury::tools::report(report_files, report_out, std::cout);
    if (*d_fm) return mercury::tools::fashion_mnist_check(fm_opt, std::cout);
    if (*d_speech) return mercury::tools::speech_synth(sp_opt, std::cout);
    if (*d_text) return mercury::tools::debian_text(dt_opt, std::cout);
  } catch (const UsageError& e) {
    std::cerr << "mercury: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mercury: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
