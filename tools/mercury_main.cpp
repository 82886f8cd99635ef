// tools/mercury_main.cpp — the `mercury` command-line tool.
//
//   mercury train   [--config FILE] [--<key> VALUE ...]   single-device training
//   mercury inspect CHECKPOINT                            what a checkpoint holds (CRC per tensor)
//   mercury data fashion-mnist|speech-synth|debian-text   produce/verify the offline datasets
//   mercury report --out DIR RUN.jsonl...                 SVG plots + summary of metrics files
//   mercury launch -n N [flags] -- COMMAND...             N ranks of COMMAND on this machine
//   mercury sim -n N [flags] -- TRAIN FLAGS...            N simulated devices on virtual clocks
//   mercury trace --set-point-mbps X --out FILE           a fluctuating bandwidth trace (CSV)
//
// Every train flag mirrors one TrainConfig key (mercury/train/config.hpp); --config FILE loads a
// JSON object of the same keys, and flags given on the command line override it.
// Exit codes: 0 success, 1 runtime failure, 2 bad usage / bad input, 4 (a rank of a cluster)
// failed because of another rank; `launch` returns the code of the rank that failed first of
// its own accord (128 + signal if it was killed), or 127/126 when the command cannot be run
// (not found / not executable), like a shell. Error messages are printed whole but printable:
// control bytes and invalid UTF-8 are escaped (\xNN) and a message is cut at 4 KiB.
#include <cxxabi.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <typeinfo>

#include "mercury/mercury.hpp"
#include "mercury/sim/simulator.hpp"
#include "net/auth.hpp"
#include "net/env.hpp"
#include "net/fault.hpp"
#include "net/file_kind.hpp"
#include "net/mesh.hpp"
#include "net/shaper.hpp"
#include "tools/data_commands.hpp"
#include "tools/launch.hpp"
#include "tools/report.hpp"
#include "tools/suite.hpp"

namespace {

using nlohmann::json;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "mercury: error: <what>" on stderr, with what made printable: valid UTF-8 and '\n'/'\t' pass,
// every other byte below 0x20, 0x7F and every byte of invalid UTF-8 become \xNN; at most 4 KiB
// of it (a message quoting a huge input says how much was cut). An empty message says so.
void print_error(std::string_view what, const char* type = nullptr) {
  constexpr std::size_t kMax = 4096;
  std::string out;
  std::size_t i = 0;
  const auto escape = [&](unsigned char c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", c);
    out += buf;
  };
  while (i < what.size() && out.size() < kMax) {
    const auto c = static_cast<unsigned char>(what[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F)
        escape(c);
      else
        out += char(c);
      ++i;
      continue;
    }
    // A UTF-8 sequence: lead byte, then 1..3 continuation bytes, no overlong/surrogate forms.
    const int len = c >= 0xC2 && c <= 0xDF   ? 2
                    : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4
                                             : 0;
    bool ok = len > 0 && i + std::size_t(len) <= what.size();
    for (int k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(what[i + k]) & 0xC0) == 0x80;
    if (ok && len == 3) {
      const auto c1 = static_cast<unsigned char>(what[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && len == 4) {
      const auto c1 = static_cast<unsigned char>(what[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(what.substr(i, std::size_t(len)));
      i += std::size_t(len);
    } else {
      escape(c);
      ++i;
    }
  }
  if (i < what.size())
    out += " ... (" + std::to_string(what.size() - i) + " more bytes of the message cut)";
  if (what.empty()) {
    std::string name = type ? type : "";
    int status = 0;
    if (char* readable = type ? abi::__cxa_demangle(type, nullptr, nullptr, &status) : nullptr) {
      name = readable;
      std::free(readable);
    }
    out = "(an error without a message" + (name.empty() ? "" : ": " + name) + ")";
  }
  std::cerr << "mercury: error: " << out << "\n";
}

// A command line CLI11 refused: --help and friends print and exit 0; anything else is a usage
// error (exit 2), printed like every other error (control bytes escaped, cut at 4 KiB: a flag's
// value is echoed).
int parse_failure(CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return app.exit(e);
  print_error(e.what());
  std::cerr << "Run with --help for more information.\n";
  return 2;
}

// 4 when `e` blames another rank of this cluster (RANK in the environment), else 1.
int runtime_failure_code(const std::exception& e) {
  const auto* peer = dynamic_cast<const mercury::net::PeerError*>(&e);
  const char* rank = std::getenv("RANK");
  if (peer == nullptr || rank == nullptr || peer->peer() < 0) return 1;
  return std::to_string(peer->peer()) != rank ? mercury::tools::kExitPeerFailed : 1;
}

// A flag's text as the JSON type of its key's default value (`like`), or nullopt with `error`
// saying what was expected and found.
std::optional<json> parse_flag_value(const std::string& text, const json& like,
                                     std::string& error) {
  if (like.is_boolean()) {
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
    error = "expected true or false, found '" + text + "'";
    return std::nullopt;
  }
  if (like.is_number_integer()) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end || errno) {
      error = "expected an integer, found '" + text + "'";
      return std::nullopt;
    }
    return v;
  }
  if (like.is_number()) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end || errno) {
      error = "expected a number, found '" + text + "'";
      return std::nullopt;
    }
    return v;
  }
  return text;
}

std::string flag_name(const std::string& key) {
  std::string flag = "--" + key;
  for (char& c : flag)
    if (c == '_') c = '-';
  return flag;
}

// Converts a flag's text to the JSON type of the key's default value.
json typed_flag(const std::string& key, const std::string& text, const json& like) {
  std::string error;
  auto v = parse_flag_value(text, like, error);
  if (!v) throw UsageError(flag_name(key) + ": " + error);
  return *v;
}

json read_json_file(const std::string& path) {
  std::string text;
  try {
    text = mercury::net::read_regular_file(path, "--config");
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw UsageError("--config '" + path + "': malformed JSON: " + e.what());
  }
}

// Runs `build` (constructing a trainer): what it throws for settings that do not fit the data
// (std::invalid_argument) or a checkpoint that cannot be resumed (io::CheckpointError) is bad
// input, a UsageError prefixed with `who`.
void as_bad_input(const std::string& who, const std::function<void()>& build) {
  try {
    build();
  } catch (const std::invalid_argument& e) {
    throw UsageError(who + e.what());
  } catch (const mercury::io::CheckpointError& e) {
    throw UsageError(who + e.what());
  }
}

// What a rank reads from its environment besides RANK/WORLD_SIZE: the cluster secret, the
// bandwidth shaping and MERCURY_FAULT. Read before any data is loaded: a bad value is bad usage
// (exit 2), found in a second, not after minutes of loading.
struct RankSetup {
  std::vector<std::byte> secret;
  std::shared_ptr<mercury::net::Pacer> pacer;
  std::optional<mercury::net::FaultSpec> fault;
};

RankSetup rank_setup(const mercury::net::ClusterEnv& env) {
  using namespace mercury;
  RankSetup r;
  try {
    if (!env.secret_file.empty()) r.secret = net::load_secret_file(env.secret_file);
    r.pacer = net::make_pacer(net::shaper_config_from_env());
    r.fault = net::fault_from_env([](const char* n) -> const char* { return std::getenv(n); },
                                  env.world_size);
  } catch (const std::exception& e) {  // a bad secret file, MERCURY_BANDWIDTH*/MERCURY_FAULT
    throw UsageError(e.what());
  }
  return r;
}

// One rank of a cluster (RANK/WORLD_SIZE set, normally by `mercury launch`): the Asio mesh with
// the handshake over this model's ShardPlan and layout, then the BSP trainer. The trainer is
// built (partition, config and output checks) before the rendezvous, so a rank that cannot run
// says why at once instead of after every rank has connected.
void train_distributed(const mercury::train::TrainConfig& cfg, const mercury::net::ClusterEnv& env,
                       RankSetup& setup, mercury::nn::Model& model, mercury::data::LoadedData& d) {
  using namespace mercury;
  const dist::ShardPlan plan(model.params.size(), env.world_size);
  net::MeshConfig mc;
  mc.rank = env.rank;
  mc.world = env.world_size;
  mc.master_addr = env.master_addr;
  mc.master_port = env.master_port;
  mc.bind_addr = env.bind_address;
  if (!env.run_id.empty()) mc.run_id = env.run_id;
  mc.plan_hash = plan.hash();
  mc.layout_hash = model.params.layout_hash();
  mc.secret = std::move(setup.secret);
  mc.insecure = env.insecure;
  mc.connect_timeout_s = env.connect_timeout_s;
  mc.op_timeout_s = env.op_timeout_s;
  mc.heartbeat_interval_s = env.heartbeat_interval_s;
  mc.heartbeat_timeout_s = env.heartbeat_timeout_s;
  mc.max_message_bytes = env.max_frame_bytes;
  mc.chunk_bytes = env.chunk_bytes;
  mc.pacer = setup.pacer;
  const std::optional<net::FaultSpec>& fault = setup.fault;
  net::Mesh mesh(mc);
  train::DistContext ctx{mesh, plan,
                         [&](int64_t iteration) {
                           if (!fault || !fault->fires(env.rank, static_cast<uint64_t>(iteration)))
                             return;
                           if (net::execute_process_fault(*fault)) return;
                           if (fault->action == net::FaultAction::drop) {
                             mesh.drop_connections_for_testing();
                           } else {  // corrupt this iteration's first frame, not a queued one
                             mesh.flush(net::deadline_in(env.op_timeout_s));
                             mesh.corrupt_next_frame_for_testing();
                           }
                         },
                         // The rank keeps its own partition's copy; the full set goes.
                         [&] { d.train.reset(); }};
  std::optional<train::Trainer> trainer;
  as_bad_input("rank " + std::to_string(env.rank) + ": ", [&] {
    trainer.emplace(cfg, model, *d.train, *d.test, std::cout, &ctx);
    trainer->set_checkpoint_metadata(d.metadata);
  });
  mesh.start();
  trainer->run();
  mesh.close(net::deadline_in(env.op_timeout_s));
}

// Where ranks [first_rank, end_rank) write is checked before any data is loaded (bad input:
// exit 2).
void check_outputs(const mercury::train::TrainConfig& cfg, int first_rank, int end_rank) {
  using namespace mercury;
  try {
    if (!cfg.checkpoint.empty() && first_rank == 0)
      net::check_output_path(cfg.checkpoint, "--checkpoint");
    for (int rank = first_rank; rank < end_rank; ++rank) {
      const std::string metrics = train::dist_metrics_path(cfg.metrics, rank);
      if (metrics.empty()) continue;
      const std::string kind = net::file_kind(metrics);
      if (kind != "missing" && kind != "a regular file")
        throw net::FileKindError("--metrics '" + metrics + "'",
                                 "expected a regular file (or a new path), found " + kind);
    }
  } catch (const net::FileKindError& e) {
    throw UsageError(e.what());
  }
}

mercury::data::LoadedData load_data(const mercury::train::TrainConfig& cfg) {
  using namespace mercury;
  data::DatasetOptions dopt;
  dopt.name = cfg.data;
  dopt.dir = cfg.data_dir;
  dopt.image_size = cfg.image_size;
  dopt.seed = static_cast<uint64_t>(cfg.seed);
  dopt.augment = cfg.augment;
  dopt.vocabulary = cfg.vocabulary;
  dopt.log_mel = cfg.log_mel;
  try {
    return data::load_dataset(dopt);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

std::unique_ptr<mercury::nn::Model> build_model(const mercury::train::TrainConfig& cfg,
                                                const mercury::data::LoadedData& d) {
  using namespace mercury;
  models::ModelOptions mo;
  if (d.vocabulary > 0) mo.lstm_attention.vocab = mo.textcnn.vocab = d.vocabulary;
  return models::make_model(cfg.model, d.train->sample_shape(), d.train->num_classes(),
                            static_cast<uint64_t>(cfg.seed), mo);
}

int run_train(const mercury::train::TrainConfig& cfg) {
  using namespace mercury;
  net::ClusterEnv env;
  try {
    env = net::cluster_env();
  } catch (const net::EnvError& e) {
    throw UsageError(e.what());
  }
  // Ranks write through `mercury launch`'s pipes: line-buffer so their lines interleave live.
  if (env.distributed) std::setvbuf(stdout, nullptr, _IOLBF, 0);
  check_outputs(cfg, env.rank, env.rank + 1);
  std::optional<RankSetup> setup;
  if (env.distributed) setup = rank_setup(env);
  data::LoadedData d = load_data(cfg);
  auto model = build_model(cfg, d);
  std::cout << "data " << d.train->describe() << " / test " << d.test->size() << std::endl;
  if (env.distributed) {
    std::cout << net::describe(env) << "\n";
    train_distributed(cfg, env, *setup, *model, d);
    return 0;
  }
  std::optional<train::Trainer> trainer;
  as_bad_input("", [&] {
    trainer.emplace(cfg, *model, *d.train, *d.test, std::cout);
    trainer->set_checkpoint_metadata(d.metadata);
  });
  trainer->run();
  return 0;
}

// `mercury sim`'s own flags.
struct SimFlags {
  int devices = 0;
  std::string bandwidth, bandwidth_trace, trace_interp, trace_end, latency_ms;
  std::string device, device_mix, fault;
  double device_factor = 0;
  bool medium = false;
  std::vector<std::string> train_args;  // after "--"
};

// The per-rank factors, the links and the latency from the flags (the link flags go through
// the parser `mercury launch`'s ranks use, so both accept and refuse the same values).
mercury::sim::SimOptions sim_options(const SimFlags& f) {
  using namespace mercury;
  sim::SimOptions o;
  if (f.devices < 1 || f.devices > 4096)
    throw UsageError("sim: -n: expected 1..4096 devices, found " + std::to_string(f.devices));
  if (!f.device.empty() && !f.device_mix.empty())
    throw UsageError("sim: expected --device or --device-mix, found both");
  try {
    if (!f.device_mix.empty()) {
      o.factors = sim::parse_device_mix(f.device_mix, f.devices);
    } else {
      o.factors.assign(static_cast<std::size_t>(f.devices),
                       sim::find_profile(f.device.empty() ? "host" : f.device).factor);
    }
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("sim: ") + e.what());
  }
  if (f.device_factor != 0) {
    if (!(std::isfinite(f.device_factor) && f.device_factor > 0 && f.device_factor <= 1e4))
      throw UsageError("sim: --device-factor: expected a number in (0, 10000], found " +
                       std::to_string(f.device_factor));
    if (!f.device.empty() || !f.device_mix.empty())
      throw UsageError("sim: expected --device-factor or a device profile, found both");
    o.factors.assign(o.factors.size(), f.device_factor);
  }
  const std::map<std::string, std::string> env = {
      {"MERCURY_BANDWIDTH", f.bandwidth},
      {"MERCURY_BANDWIDTH_TRACE", f.bandwidth_trace},
      {"MERCURY_BANDWIDTH_TRACE_INTERP", f.trace_interp},
      {"MERCURY_BANDWIDTH_TRACE_END", f.trace_end},
      {"MERCURY_LATENCY_MS", f.latency_ms}};
  try {
    const net::ShaperConfig sc = net::shaper_config_from_env([&](const char* name) -> const char* {
      const auto it = env.find(name);
      return it == env.end() || it->second.empty() ? nullptr : it->second.c_str();
    });
    if (sc.rate_bps) o.trace = net::BandwidthTrace::constant(*sc.rate_bps / 1e6);
    if (sc.trace) o.trace = sc.trace;
    o.latency_s = 1e-9 * static_cast<double>(sc.pacer.latency.count());
    o.shared_medium = f.medium;
  } catch (const net::ShaperError& e) {
    throw UsageError(std::string("sim: ") + e.what() +
                     " (MERCURY_BANDWIDTH* and MERCURY_LATENCY_MS are --bandwidth*, "
                     "--latency-ms here)");
  }
  if (o.shared_medium && !o.trace)
    throw UsageError(
        "sim: --medium: expected --bandwidth or --bandwidth-trace (the medium's "
        "rate), found unlimited links");
  if (const char* v = std::getenv(net::env_var::heartbeat_timeout); v && *v) {
    try {  // a stall this long ends the run, as the mesh's heartbeat check would
      o.heartbeat_timeout_s = net::detail::parse_seconds(net::env_var::heartbeat_timeout, v);
    } catch (const net::EnvError& e) {
      throw UsageError(std::string("sim: ") + e.what());
    }
  }
  if (!f.fault.empty()) {
    try {
      o.fault = net::parse_fault(f.fault, "--fault");
    } catch (const net::FaultSpecError& e) {
      throw UsageError(std::string("sim: ") + e.what());
    }
  }
  return o;
}

int run_sim(const SimFlags& flags, const mercury::train::TrainConfig& cfg) {
  using namespace mercury;
  const sim::SimOptions options = sim_options(flags);
  const int world = static_cast<int>(options.factors.size());
  check_outputs(cfg, 0, world);
  data::LoadedData d = load_data(cfg);
  std::cout << "data " << d.train->describe() << " / test " << d.test->size() << std::endl;
  std::cout << "sim: " << world << " devices on virtual clocks; links "
            << sim::describe_links(options) << ", latency " << 1e3 * options.latency_s
            << " ms; compute factors";
  for (std::size_t r = 0; r < options.factors.size() && r < 8; ++r)
    std::cout << (r ? "," : "") << " " << options.factors[r];
  std::cout << (options.factors.size() > 8 ? ", ..." : "") << "\n";
  sim::SimResult result;
  try {
    result = sim::simulate(
        cfg, options, [&] { return build_model(cfg, d); }, *d.train, *d.test, d.metadata,
        std::cout);
  } catch (const std::invalid_argument& e) {  // settings the ranks refused
    throw UsageError(e.what());
  } catch (const sim::DeviceFault& e) {  // as `mercury launch` reports a rank that died
    print_error(e.what());
    return e.exit_code();
  }
  nlohmann::json ranks = nlohmann::json::array();
  for (const net::DeviceClock& c : result.clocks)
    ranks.push_back({{"virtual_s", c.now_s}, {"compute_s", c.compute_s}, {"wait_s", c.wait_s}});
  io::MetricsWriter(cfg.metrics)
      .write({{"event", "sim"},
              {"devices", world},
              {"factors", options.factors},
              {"links", sim::describe_links(options)},
              {"latency_s", options.latency_s},
              {"real_s", result.real_s},
              {"virtual_s", result.virtual_s},
              {"speed", result.speed()},
              {"ranks", ranks}});
  char line[256];
  std::snprintf(line, sizeof line,
                "sim: %.2f virtual s in %.2f real s (%.2fx real time); per device: ",
                result.virtual_s, result.real_s, result.speed());
  std::cout << line;
  for (std::size_t r = 0; r < result.clocks.size() && r < 8; ++r) {
    std::snprintf(line, sizeof line, "%s[%zu] compute %.2f s wait %.2f s", r ? ", " : "", r,
                  result.clocks[r].compute_s, result.clocks[r].wait_s);
    std::cout << line;
  }
  std::cout << (result.clocks.size() > 8 ? ", ..." : "") << "\n";
  return 0;
}

int run_inspect(const std::string& path) {
  // Any safetensors file can be inspected; whether a checksum vouches for it is printed.
  const auto f = mercury::io::SafetensorsFile::load(path, mercury::io::Checksum::optional);
  std::cout << path << ": " << f.entries().size() << " tensors, " << f.data_size()
            << " data bytes\n";
  const auto& meta = f.metadata();
  std::cout << "  checksum: "
            << (meta.count(std::string(mercury::io::kChecksumMetadataKey))
                    ? "verified (header and data)"
                : meta.count(std::string(mercury::io::kDataChecksumMetadataKey))
                    ? "verified (data only; the header is unchecked)"
                    : "none (not written by mercury, or removed)")
            << "\n";
  for (const auto& [k, v] : f.metadata()) {
    if (k == "mercury.config") continue;
    std::cout << "  meta " << k << " = " << v << "\n";
  }
  for (const auto& e : f.entries()) {
    std::cout << "  " << e.name << "  " << e.dtype << " [";
    for (std::size_t i = 0; i < e.shape.size(); ++i) std::cout << (i ? "," : "") << e.shape[i];
    // The data's CRC32C: two checkpoints hold the same tensor iff these agree (up to collisions).
    const auto data = f.bytes(e);
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08x", mercury::io::crc32c(data.data(), data.size()));
    std::cout << "]  crc32c " << crc << "\n";
  }
  return 0;
}

int run_trace(double set_point_mbps, double deviation, double duration, double step, uint64_t seed,
              const std::string& out) {
  const auto trace = [&] {
    try {
      return mercury::net::generate_trace(set_point_mbps, deviation, duration, step, seed);
    } catch (const mercury::net::ShaperError& e) {
      throw UsageError(std::string("trace: ") + e.what());
    }
  }();
  char command[256];
  std::snprintf(command, sizeof command,
                "mercury trace --set-point-mbps %g --deviation %g --duration %g --step %g "
                "--seed %llu",
                set_point_mbps, deviation, duration, step, static_cast<unsigned long long>(seed));
  trace.write_csv(out, command);
  double mean = 0;
  for (const auto& p : trace.points()) mean += p.mbps;
  mean /= static_cast<double>(trace.points().size());
  std::cout << out << ": " << trace.points().size() << " points every " << step << " s, mean "
            << mean << " Mbps, mean absolute deviation "
            << 100 * mercury::net::mean_abs_deviation_fraction(trace) << "%\n";
  return 0;
}

// The train flags (one per TrainConfig key, and --config) on a CLI11 app: `mercury train`'s own,
// and the ones after `mercury sim ... --`.
struct TrainFlags {
  std::string config_path;
  json defaults = mercury::train::to_json(mercury::train::TrainConfig{});
  std::map<std::string, std::string> values;
  std::map<std::string, CLI::Option*> options;

  void add_to(CLI::App* app) {
    app->add_option("--config", config_path, "JSON file with any of the keys below")
        ->type_name("PATH");
    for (const auto& [key, help] : mercury::train::train_config_help()) {
      // A flag given twice takes its last value, so wrappers (tools/demo) can set defaults that
      // the user's own flags override.
      CLI::Option* opt = app->add_option(flag_name(key), values[key],
                                         help + " (default: " + defaults[key].dump() + ")")
                             ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      // The type in --help, and CLI11 checks each value as it parses (choices, numbers, booleans)
      // with the same message the config file's keys get.
      const json like = defaults[key];
      const std::vector<std::string> choices = flag_choices(key);
      opt->type_name(!choices.empty()              ? "{" + mercury::tools::join(choices, ",") + "}"
                     : like.is_boolean()           ? std::string("BOOL")
                     : like.is_number_integer()    ? std::string("INT")
                     : like.is_number()            ? std::string("FLOAT")
                     : key.find("dir") != key.npos ? std::string("DIR")
                     : is_path_key(key)            ? std::string("PATH")
                                                   : std::string("TEXT"));
      opt->check(CLI::Validator(
          [like, choices](std::string& text) -> std::string {
            std::string error;
            if (!parse_flag_value(text, like, error)) return error;
            if (!choices.empty() &&
                std::find(choices.begin(), choices.end(), text) == choices.end())
              return "expected " + mercury::train::one_of(choices) + ", found '" + text + "'";
            return "";
          },
          ""));
      options[key] = opt;
    }
  }

  // The closed value set of a string key: the config's own, the model registry's, the catalog's.
  static std::vector<std::string> flag_choices(const std::string& key) {
    if (key == "model") return mercury::models::model_names();
    if (key == "data") return mercury::data::dataset_names();
    for (const auto& [k, values] : mercury::train::train_config_choices())
      if (k == key) return values;
    return {};
  }
  static bool is_path_key(const std::string& key) {
    return key == "checkpoint" || key == "resume" || key == "metrics" ||
           key == "replay_group_sizes";
  }

  // The config: --config's JSON, then the flags given over it; validated.
  mercury::train::TrainConfig config() const {
    json patch = json::object();
    if (!config_path.empty()) patch = read_json_file(config_path);
    if (!patch.is_object()) {
      throw UsageError("--config '" + config_path + "': expected a JSON object, found " +
                       std::string(patch.type_name()));
    }
    for (const auto& [key, opt] : options)
      if (opt->count()) patch[key] = typed_flag(key, values.at(key), defaults[key]);
    try {
      mercury::train::TrainConfig cfg = mercury::train::config_from_json(
          patch, {}, config_path.empty() ? "flags" : "--config '" + config_path + "'");
      mercury::train::validate(cfg);
      return cfg;
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Mercury: on-device distributed DNN training with stochastic importance sampling"};
  app.require_subcommand(1);

  auto* train = app.add_subcommand("train", "train a model on this device");
  TrainFlags train_flags;
  train_flags.add_to(train);

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
  double report_target = 0;
  rep->add_option("--target", report_target,
                  "target test accuracy: steps/seconds to the first evaluation at or above it "
                  "(0: use the runs' own target_reached events)")
      ->check(CLI::Range(0.0, 1.0));

  auto* suite_cmd = app.add_subcommand("suite", "run a suite of experiments");
  suite_cmd->require_subcommand(1);
  auto* suite_paper = suite_cmd->add_subcommand(
      "paper", "the paper's evaluation in the simulator, resumable, with a report (issue 15)");
  mercury::tools::SuiteOptions suite_opt;
  std::string suite_tasks,
      suite_figures = mercury::tools::suite_detail::join(suite_opt.figures, ","), suite_seeds,
      suite_bandwidths;
  suite_paper->add_option("--out", suite_opt.out, "the suite's directory (resumes what is there)")
      ->required();
  suite_paper->add_flag(
      "--quick", suite_opt.quick,
      "fewer bandwidths (10, 100 Mbps), one seed, a 200-step budget, evaluations every 25 steps, "
      "one task per modality");
  suite_paper->add_option(
      "--tasks", suite_tasks,
      "comma-separated tasks of " +
          mercury::tools::suite_detail::join(mercury::tools::kSuiteTasks, ", ") +
          " (default quick image,speech,text; full all)");
  suite_paper->add_option(
      "--figures", suite_figures,
      "comma-separated figures of the paper (default all: " + suite_figures + ")");
  suite_paper->add_option("--seeds", suite_seeds,
                          "comma-separated seeds (default quick 1, full 1,2,3)");
  suite_paper->add_option("--bandwidths", suite_bandwidths,
                          "comma-separated rates such as 10mbps,100mbps (default quick 10/100, "
                          "full 10/50/100/200)");
  suite_paper->add_option("--budget", suite_opt.budget,
                          "the image task's sync SGD steps; the others stop at its plateau - 0.5 "
                          "point; speech and text get 3/10 of it (default quick 200, full 1500)");
  suite_paper->add_option(
      "--eval-every", suite_opt.eval_every,
      "steps between evaluations (default quick 25, full 50; at most the budget)");
  suite_paper->add_option("--train-limit", suite_opt.train_limit,
                          "train on the first N samples only (smoke runs; 0: all)");
  suite_paper->add_option("--test-limit", suite_opt.test_limit,
                          "evaluate on the first N test samples only (0: all)");
  suite_paper->add_option("--data-dir", suite_opt.data_dir, "Fashion-MNIST's directory");
  suite_paper->add_option("--speech-dir", suite_opt.speech_dir,
                          "the speech task's data, Speech Commands layout (default: made with "
                          "mercury data speech-synth in OUT/data/speech)");
  suite_paper->add_option("--text-dir", suite_opt.text_dir,
                          "the text tasks' data, AG News CSV or debian-text (default: made with "
                          "mercury data debian-text in OUT/data/text)");
  suite_paper->add_option("--model", suite_opt.model,
                          "run every task on this model instead of its own (image cnn, "
                          "image-resnet8 resnet8, speech ds_cnn, text textcnn, text-lstm "
                          "lstm_attention); mlp makes a cheap smoke run");
  suite_paper->add_flag("--dry-run", suite_opt.dry_run, "print the runs and the expected time");
  suite_paper->add_flag("--real-clock", suite_opt.real_clock,
                        "also run sync SGD and Mercury on 2 devices as real processes (mercury "
                        "launch, shaped loopback links) beside the same runs simulated");

  auto* inspect = app.add_subcommand("inspect", "print what a checkpoint holds");
  std::string inspect_path;
  inspect->add_option("checkpoint", inspect_path, "checkpoint file")->required();

  auto* launch = app.add_subcommand(
      "launch", "run N ranks of a command on this machine (torchrun's RANK, WORLD_SIZE, ...)");
  mercury::tools::LaunchOptions launch_opt;
  launch->add_option("-n,--nprocs", launch_opt.processes, "number of ranks, 1..256")->required();
  launch->add_option("--bandwidth", launch_opt.bandwidth,
                     "emulated link rate, e.g. 10mbps (MERCURY_BANDWIDTH)");
  launch->add_option("--bandwidth-trace", launch_opt.bandwidth_trace,
                     "t_seconds,mbps CSV the rate follows (MERCURY_BANDWIDTH_TRACE)");
  launch->add_option("--bandwidth-mode", launch_opt.bandwidth_mode,
                     "link: each link has the rate; medium: all share one channel "
                     "(MERCURY_BANDWIDTH_MODE)");
  launch->add_option("--latency-ms", launch_opt.latency_ms,
                     "one-way delay added to every write (MERCURY_LATENCY_MS)");
  launch->add_option("--master-port", launch_opt.master_port,
                     "rank 0's port (default 0: pick a free loopback port)");
  launch->add_option("--secret-file", launch_opt.secret_file,
                     "file holding the cluster secret (MERCURY_SECRET_FILE)");
  launch->add_flag("--insecure", launch_opt.insecure,
                   "allow a non-loopback MERCURY_BIND without a secret (MERCURY_INSECURE=1)");
  launch->add_option("--grace-seconds", launch_opt.grace_seconds,
                     "when stopping the ranks: seconds between SIGTERM and SIGKILL (default 5)");
  launch->footer(
      "The command follows '--': mercury launch -n 4 -- mercury train --config run.json\n"
      "Output lines are prefixed [rank r]; the first rank to fail stops the others and its exit "
      "code is returned.");
  launch->allow_extras();  // so a command given without '--' gets a clear message below

  auto* sim_cmd = app.add_subcommand(
      "sim", "simulate N devices of a distributed run in this process, on virtual clocks");
  SimFlags sim_flags;
  sim_cmd->add_option("-n,--devices", sim_flags.devices, "number of devices, 1..4096")->required();
  sim_cmd->add_option("--bandwidth", sim_flags.bandwidth,
                      "every link's rate, e.g. 10mbps ('off' or unset: unlimited); with --medium "
                      "the shared channel's");
  sim_cmd->add_option("--bandwidth-trace", sim_flags.bandwidth_trace,
                      "t_seconds,mbps CSV every link's rate follows over virtual time");
  sim_cmd->add_option("--bandwidth-trace-interp", sim_flags.trace_interp,
                      "step (default) or linear");
  sim_cmd->add_option("--bandwidth-trace-end", sim_flags.trace_end, "hold (default) or loop");
  sim_cmd->add_option("--latency-ms", sim_flags.latency_ms, "one-way delay of every message");
  sim_cmd->add_flag("--medium", sim_flags.medium,
                    "one shared channel at the bandwidth for all devices (one Wi-Fi channel: one "
                    "transmitter at a time), instead of a channel per directed link");
  sim_cmd->add_option("--device", sim_flags.device, "every device's profile (default host)");
  sim_cmd->add_option("--device-mix", sim_flags.device_mix,
                      "profiles and counts, e.g. rpi4:2,host:2 (counts add up to -n)");
  sim_cmd->add_option("--device-factor", sim_flags.device_factor,
                      "every device's compute factor (seconds per host CPU second), "
                      "instead of a profile");
  sim_cmd->add_option("--fault", sim_flags.fault,
                      "rank=R,iter=I,action=kill|exit|drop|delay|stall[,seconds=S][,code=C]: "
                      "device R dies, drops its links, straggles S virtual seconds, or freezes "
                      "(S seconds, or for good: the peers' heartbeat timeout, "
                      "MERCURY_HEARTBEAT_TIMEOUT, ends the run) at step I");
  sim_cmd->footer(
      "The train flags follow '--': mercury sim -n 4 --bandwidth 10mbps -- --sampler mercury "
      "--epochs 1 ...\nMetrics are a real run's, with virtual seconds; rank 0's file ends with a "
      "\"sim\" event (per-device virtual, compute and wait seconds, simulation speed).");
  sim_cmd->allow_extras();

  auto* trace_cmd = app.add_subcommand(
      "trace", "write a fluctuating bandwidth trace (t_seconds,mbps CSV) for --bandwidth-trace");
  double trace_set_point = 0, trace_deviation = 0.1, trace_duration = 60, trace_step = 0.5;
  uint64_t trace_seed = 1;
  std::string trace_out;
  trace_cmd->add_option("--set-point-mbps", trace_set_point, "mean rate, Mbps")->required();
  trace_cmd->add_option("--deviation", trace_deviation,
                        "mean absolute deviation as a fraction of the mean, 0..0.5 (default 0.1)");
  trace_cmd->add_option("--duration", trace_duration, "seconds covered (default 60)");
  trace_cmd->add_option("--step", trace_step, "seconds between points (default 0.5)");
  trace_cmd->add_option("--seed", trace_seed, "random seed (default 1)");
  trace_cmd->add_option("--out", trace_out, "output CSV file")->required();

  // `mercury launch ... -- COMMAND...`: everything after the first "--" is the ranks' command,
  // untouched by CLI11 (it may have flags of its own, even another "--").
  int parse_argc = argc;
  if (argc > 1 && (std::string(argv[1]) == "launch" || std::string(argv[1]) == "sim")) {
    for (int i = 2; i < argc; ++i) {
      if (std::string(argv[i]) == "--") {
        (std::string(argv[1]) == "launch" ? launch_opt.command : sim_flags.train_args)
            .assign(argv + i + 1, argv + argc);
        parse_argc = i;
        break;
      }
    }
  }
  try {
    app.parse(parse_argc, argv);
  } catch (const CLI::ParseError& e) {
    return parse_failure(app, e);
  }

  try {
    if (*train) return run_train(train_flags.config());
    if (*launch) {
      if (!launch->remaining().empty()) {
        std::string extra;
        for (const std::string& a : launch->remaining()) extra += (extra.empty() ? "" : " ") + a;
        throw UsageError("launch: unexpected '" + extra +
                         "' (unknown flag, or a command without '--' before it: mercury launch "
                         "-n 2 -- COMMAND...)");
      }
      try {
        return mercury::tools::launch(launch_opt);
      } catch (const mercury::tools::LaunchUsageError& e) {
        throw UsageError(std::string("launch: ") + e.what());
      } catch (const mercury::tools::SpawnError& e) {
        print_error(std::string("launch: ") + e.what());
        return e.shell_code();
      }
    }
    if (*sim_cmd) {
      if (!sim_cmd->remaining().empty()) {
        std::string extra;
        for (const std::string& a : sim_cmd->remaining()) extra += (extra.empty() ? "" : " ") + a;
        throw UsageError("sim: unexpected '" + extra +
                         "' (unknown flag, or train flags without '--' before them: mercury sim "
                         "-n 4 -- --epochs 1 ...)");
      }
      CLI::App sim_train{"the train flags of mercury sim (after '--')", "mercury sim -n N ... --"};
      TrainFlags sim_train_flags;
      sim_train_flags.add_to(&sim_train);
      std::vector<std::string> args(sim_flags.train_args.rbegin(), sim_flags.train_args.rend());
      try {
        sim_train.parse(args);
      } catch (const CLI::ParseError& e) {
        return parse_failure(sim_train, e);
      }
      return run_sim(sim_flags, sim_train_flags.config());
    }
    if (*trace_cmd) {
      return run_trace(trace_set_point, trace_deviation, trace_duration, trace_step, trace_seed,
                       trace_out);
    }
    if (*suite_paper) {
      auto split = [](const std::string& s) {
        std::vector<std::string> v;
        std::stringstream in(s);
        for (std::string x; std::getline(in, x, ',');) v.push_back(x);
        return v;
      };
      try {
        if (!suite_tasks.empty()) suite_opt.tasks = split(suite_tasks);
        suite_opt.figures = split(suite_figures);
        suite_opt.bandwidths = split(suite_bandwidths);
        for (const auto& s : split(suite_seeds)) {
          std::size_t used = 0;
          int v = -1;
          try {
            v = std::stoi(s, &used);
          } catch (const std::exception&) {
          }
          if (used != s.size() || v < 0)
            throw std::invalid_argument("suite: --seeds: expected non-negative integers, found '" +
                                        s + "'");
          suite_opt.seeds.push_back(v);
        }
        // The runs are this binary again, behind MERCURY_EXEC_WRAPPER's command if set (e.g.
        // qemu-arm: an ARM build run under user-mode emulation without binfmt_misc).
        if (const char* wrapper = std::getenv("MERCURY_EXEC_WRAPPER")) {
          std::istringstream words(wrapper);
          for (std::string w; words >> w;) suite_opt.self.push_back(w);
        }
        suite_opt.self.push_back(std::filesystem::read_symlink("/proc/self/exe").string());
        std::string command = "mercury";
        for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
        return mercury::tools::run_suite(suite_opt, command, std::cout);
      } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
      }
    }
    if (*inspect) return run_inspect(inspect_path);
    if (*rep) {
      try {
        return mercury::tools::report(report_files, report_out, std::cout, report_target);
      } catch (const std::invalid_argument& e) {  // bad files or --out: bad input
        throw UsageError(e.what());
      }
    }
    if (*d_fm) return mercury::tools::fashion_mnist_check(fm_opt, std::cout);
    if (*d_speech) return mercury::tools::speech_synth(sp_opt, std::cout);
    if (*d_text) return mercury::tools::debian_text(dt_opt, std::cout);
  } catch (const UsageError& e) {
    print_error(e.what());
    return 2;
  } catch (const std::exception& e) {
    print_error(e.what(), typeid(e).name());
    return runtime_failure_code(e);
  }
  return 0;
}
