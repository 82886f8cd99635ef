// mercury/sim/simulator.hpp — N devices of a distributed run in one process, on virtual clocks.
//
// Contract
// - simulate(cfg, options, make_model, train, test, metadata, log) runs options.world ranks as
//   threads of this process over a LocalHub on a net::VirtualNetwork (net/virtual_net.hpp):
//   the same Trainer, BSP, BACC, samplers and resharding code as `mercury launch`, with every
//   rank's clock virtual. A rank's compute is its thread's CPU time × its device's factor; a
//   message takes wire bytes / the link's rate at that virtual time + latency; BACC's scorer
//   gets exactly the window the aggregation lasts on the virtual clock (worker.hpp, virtual
//   mode). Metrics are the real run's JSON lines with virtual seconds (wall_s, compute_s,
//   comm_s, ...), rank 0 in cfg.metrics and rank r in dist_metrics_path(cfg.metrics, r), so
//   `mercury report` reads both alike.
// - Each rank builds its own model with make_model (the same architecture and seed on every
//   rank; the initial broadcast makes them equal anyway). The ranks read one shared read-only
//   copy of the training and test sets; each keeps a copy of its own partition, as a device does.
// - One compute thread per device: cfg.threads must be 1 (0 is taken as 1), since a device's
//   time is its one training thread's CPU time; scorer_threads must be 1 with BACC.
// - Rank 0 logs to `log`; the others' logs are kept and the failing rank's is printed (its last
//   lines) when one fails.
// - Faults (options.fault, MERCURY_FAULT's syntax), at the start of that step:
//     kill / exit  end that device with DeviceFault ("device R was killed at step I (injected
//                  fault)"), which simulate() rethrows;
//     delay        holds the device `seconds` of virtual time (a straggler);
//     stall        freezes the whole device (SIGSTOP in a real run). A stall shorter than the
//                  heartbeat timeout (options.heartbeat_timeout_s, MERCURY_HEARTBEAT_TIMEOUT's
//                  10 s by default) is a delay; a longer or endless one ends the run at the stall
//                  start + the timeout on the device's clock, with the heartbeat timeout the
//                  mesh's peers report ("heartbeat timeout: rank R sent nothing for T s ...");
//     drop         ends the device with the mesh's error for dropped connections ("rank R
//                  dropped its connections ...");
//     corrupt      is refused: the simulator's links carry no bytes to corrupt (the CRC check
//                  is the real mesh's, tested there).
// - Failure: the first rank to throw fails the hub (every other rank's blocked call ends with
//   PeerError naming it); simulate() rethrows that first error (std::invalid_argument for
//   settings a rank refused), after every thread has been joined.
// - SimResult: every rank's final DeviceClock (virtual time, compute, wait), the real seconds
//   the simulation took and its speed (virtual seconds of the slowest rank per real second).
// - Device profiles (device_profiles()): named boards with a compute factor relative to this
//   project's reference host, each with the source of its factor. parse_device_mix() turns
//   "rpi4:2,host:2" into per-rank factors.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mercury/base/clock.hpp"
#include "mercury/data/dataset.hpp"
#include "mercury/dist/shard_plan.hpp"
#include "mercury/nn/model.hpp"
#include "mercury/train/config.hpp"
#include "mercury/train/dist_setup.hpp"
#include "mercury/train/trainer.hpp"
#include "net/fault.hpp"
#include "net/local.hpp"
#include "net/virtual_net.hpp"

namespace mercury::sim {

struct DeviceProfile {
  std::string name;
  double factor = 1;   // device compute seconds per reference-host CPU second
  std::string about;   // the board
  std::string source;  // where the factor comes from
};

// The reference host is the machine these factors were derived for: one core of an x86-64
// server (AMD EPYC, Zen 4 class, ~2.7 GHz, AVX-512: the project's benchmark machine); on
// another host, or to pin a board down by measuring one training step on it, --device-factor
// overrides. The boards' factors come from ncnn's single-thread fp32 CNN inference benchmark
// (github.com/Tencent/ncnn benchmark/README.md; issue 4175 for the Jetson Nano's A57 cores),
// which times the same networks on a Zen 2 core (Threadripper 3970X: resnet50 128.21 ms) and
// on the boards' cores; a Zen 2 core at ~4.3 GHz is taken as 1.25x this host's core (the same
// two 256-bit FMA pipes per clock, ~10% better IPC for Zen 4, the clock ratio), so
// factor = (board ms / 3970X ms) x 0.8. Training leans harder on memory bandwidth than
// inference, where the Raspberry Pis are weak: read these as lower bounds.
inline const std::vector<DeviceProfile>& device_profiles() {
  static const std::vector<DeviceProfile> profiles = {
      {"host", 1.0, "this machine (no scaling)", "by definition"},
      // Jetson Nano (A57 @ 1.43 GHz) resnet50 591.84 ms, scaled to 1.73 GHz: 489 ms; 489 / 128.2
      // = 3.8 (vgg16 4.3, googlenet 3.9, resnet18 2.7); x 0.8.
      {"jetson-tx1", 3.0, "NVIDIA Jetson TX1, 4x Cortex-A57 @ 1.73 GHz (CPU only)",
       "ncnn benchmark, Jetson Nano resnet50 clock-scaled (issue 4175)"},
      // No single-thread Pi 4 run is published there: Pi 3 B+ / 1.7 (the 4-thread Pi 4 vs Pi 3 B+
      // googlenet ratio, ncnn issues 3485 and 3451; XNNPACK's README gives 1.5-1.8x) and the
      // RK3399 A72 @ 1.8 GHz (686.59 ms, older build) bracket ~650 ms: 650 / 128.2 = 5.1; x 0.8.
      {"rpi4", 4.1, "Raspberry Pi 4 Model B, 4x Cortex-A72 @ 1.5 GHz",
       "ncnn benchmark, Pi 3 B+ / Pi 4 ratio and RK3399 A72 (issues 3485, 3451)"},
      // Snapdragon 410 (A53 @ 1.2 GHz, the Pi 3 B's cores and clock) resnet50 1212.06 ms:
      // 1212 / 128.2 = 9.5 (vgg16 10.2, googlenet 9.4); x 0.8.
      {"rpi3", 7.6, "Raspberry Pi 3 Model B, 4x Cortex-A53 @ 1.2 GHz",
       "ncnn benchmark, Snapdragon 410 (A53 @ 1.2 GHz) resnet50"},
  };
  return profiles;
}

inline const DeviceProfile& find_profile(const std::string& name) {
  std::string names;
  for (const DeviceProfile& p : device_profiles()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw std::invalid_argument("device: expected one of " + names + ", found '" + name + "'");
}

// "rpi4:2,host:2" → {f_rpi4, f_rpi4, 1, 1}: counts must add up to `world`.
inline std::vector<double> parse_device_mix(const std::string& text, int world) {
  std::vector<double> factors;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    const std::size_t colon = item.find(':');
    const std::string count_text = colon == std::string::npos ? "" : item.substr(colon + 1);
    int64_t count = 0;
    bool ok = !count_text.empty() && count_text.size() <= 6;
    for (char c : count_text) ok = ok && c >= '0' && c <= '9';
    if (ok) count = std::stoll(count_text);
    if (!ok || count < 1) {
      throw std::invalid_argument(
          "device mix: expected PROFILE:COUNT items separated by commas "
          "(e.g. rpi4:2,host:2) with COUNT >= 1, found '" +
          item + "' in '" + text + "'");
    }
    const double f = find_profile(item.substr(0, colon)).factor;
    if (static_cast<int64_t>(factors.size()) + count > world) {
      throw std::invalid_argument("device mix '" + text + "': expected counts adding up to -n " +
                                  std::to_string(world) + ", found more");
    }
    factors.insert(factors.end(), static_cast<std::size_t>(count), f);
    at = comma + 1;
  }
  if (static_cast<int>(factors.size()) != world) {
    throw std::invalid_argument("device mix '" + text + "': expected counts adding up to -n " +
                                std::to_string(world) + ", found " +
                                std::to_string(factors.size()));
  }
  return factors;
}

struct SimOptions {
  std::optional<net::BandwidthTrace> trace;  // every link's rate; none: unlimited
  bool shared_medium = false;  // one channel at that rate for all devices (net/virtual_net.hpp)
  double latency_s = 0;
  std::vector<double> factors;  // one per rank: its size is the world
  // A scheduled fault (net/fault.hpp syntax), at the start of that step: kill / exit / drop end
  // the device (DeviceFault on its thread; the others' next wait for it fails naming it), delay
  // holds it for `seconds` of virtual time (a straggler), stall freezes it (a delay if shorter
  // than heartbeat_timeout_s, else the peers' heartbeat timeout ends the run). corrupt is
  // refused.
  std::optional<net::FaultSpec> fault;
  double heartbeat_timeout_s = 10;  // MERCURY_HEARTBEAT_TIMEOUT: a stall this long is a death
  // Called on each rank's thread after its run, with its trainer and model (tests, tools).
  std::function<void(int rank, const train::Trainer&, const nn::Model&)> after_run;
};

// "10 Mbps per link", "10 Mbps shared medium", "unlimited".
inline std::string describe_links(const SimOptions& o) {
  if (!o.trace) return "unlimited";
  return o.trace->describe() + (o.shared_medium ? " shared medium" : " per link");
}

struct SimResult {
  std::vector<net::DeviceClock> clocks;
  double real_s = 0;
  double virtual_s = 0;  // the slowest rank's final virtual time
  double speed() const { return real_s > 0 ? virtual_s / real_s : 0; }
};

using ModelFactory = std::function<std::unique_ptr<nn::Model>()>;

// A simulated device ended by a scheduled fault (kill, exit, drop, or a stall past the
// heartbeat timeout) at the start of a step; the message is the one a real run reports.
class DeviceFault : public std::runtime_error {
 public:
  explicit DeviceFault(const net::FaultSpec& f, double heartbeat_timeout_s = 10)
      : std::runtime_error(message(f, heartbeat_timeout_s)),
        rank_(f.rank),
        exit_code_(f.action == net::FaultAction::kill   ? 128 + 9
                   : f.action == net::FaultAction::exit ? f.code
                                                        : 1) {}
  int rank() const { return rank_; }
  // What `mercury launch` returns: 128 + SIGKILL for a killed rank, the exit code of one that
  // exited, and 1 (a survivor's failure) for a dropped or stalled one.
  int exit_code() const { return exit_code_; }

 private:
  static std::string message(const net::FaultSpec& f, double timeout_s) {
    const std::string rank = std::to_string(f.rank), step = std::to_string(f.iteration);
    switch (f.action) {
      case net::FaultAction::kill:
        return "device " + rank + " was killed at step " + step + " (injected fault)";
      case net::FaultAction::exit:
        return "device " + rank + " exited with code " + std::to_string(f.code) + " at step " +
               step + " (injected fault)";
      case net::FaultAction::drop:
        return "rank " + rank + " dropped its connections at step " + step + " (injected fault)";
      case net::FaultAction::stall: {
        std::ostringstream m;
        m << "heartbeat timeout: rank " << rank << " sent nothing for " << timeout_s
          << " s (virtual; device " << rank << " stalled at step " << step
          << ", injected fault); raise MERCURY_HEARTBEAT_TIMEOUT (now " << timeout_s
          << " s) if it is only slow";
        return m.str();
      }
      default:
        return "device " + rank + ": fault '" + net::to_string(f.action) + "' at step " + step;
    }
  }
  int rank_;
  int exit_code_;
};

namespace detail {
// The last `bytes` of a log, from a line start.
inline std::string log_tail(const std::string& s, std::size_t bytes = 2048) {
  if (s.size() <= bytes) return s;
  const std::size_t nl = s.find('\n', s.size() - bytes);
  return "...\n" + s.substr(nl == std::string::npos ? s.size() - bytes : nl + 1);
}
}  // namespace detail

inline SimResult simulate(train::TrainConfig cfg, const SimOptions& options,
                          const ModelFactory& make_model, const data::Dataset& train_set,
                          const data::Dataset& test_set,
                          const std::map<std::string, std::string>& metadata, std::ostream& log) {
  const int world = static_cast<int>(options.factors.size());
  if (world < 1) throw std::invalid_argument("sim: expected at least 1 device, found 0");
  if (const auto& f = options.fault) {
    if (f->rank < 0 || f->rank >= world)
      throw std::invalid_argument("fault: rank: expected 0.." + std::to_string(world - 1) +
                                  ", found " + std::to_string(f->rank));
    if (f->action == net::FaultAction::corrupt)
      throw std::invalid_argument(
          "fault: action: expected kill, exit, delay, stall or drop in the simulator, found "
          "corrupt (simulated links carry no bytes to corrupt; the CRC check is the real "
          "mesh's)");
  }
  if (!(std::isfinite(options.heartbeat_timeout_s) && options.heartbeat_timeout_s > 0))
    throw std::invalid_argument("heartbeat timeout: expected a positive number of seconds, found " +
                                std::to_string(options.heartbeat_timeout_s));
  if (cfg.threads == 0) cfg.threads = 1;
  if (cfg.threads != 1) {
    throw std::invalid_argument(
        "threads: expected 1 in the simulator (a device's compute is its training thread's CPU "
        "time), found " +
        std::to_string(cfg.threads));
  }
  net::VirtualNetworkConfig vc;
  vc.factors = options.factors;
  vc.trace = options.trace;
  vc.latency_s = options.latency_s;
  vc.shared_medium = options.shared_medium;
  if (options.shared_medium && !options.trace)
    throw std::invalid_argument(
        "sim: a shared medium needs a rate (--bandwidth or --bandwidth-trace), found unlimited "
        "links");
  auto network = std::make_shared<net::VirtualNetwork>(vc);
  net::LocalHub hub(network);

  std::mutex mu;
  std::exception_ptr first_error;
  int first_rank = -1;
  bool first_is_root = false;  // not a PeerError caused by another rank's failure
  std::vector<std::ostringstream> logs(static_cast<std::size_t>(world));
  const auto t0 = std::chrono::steady_clock::now();
  auto rank_main = [&](int r) {
    try {
      std::unique_ptr<nn::Model> model = make_model();
      net::Transport& transport = hub.transport(r);
      auto before_step = [&, r](int64_t it) {
        const auto& f = options.fault;
        if (!f || !f->fires(r, static_cast<uint64_t>(it))) return;
        const double timeout = options.heartbeat_timeout_s;
        const bool stall = f->action == net::FaultAction::stall;
        if (f->action == net::FaultAction::delay ||
            (stall && f->seconds > 0 && f->seconds < timeout)) {
          transport.advance_to(transport.now() + f->seconds);  // a straggling step
          return;
        }
        if (stall) transport.advance_to(transport.now() + timeout);  // the peers give up
        throw DeviceFault(*f, timeout);
      };
      train::DistContext ctx{
          transport, dist::ShardPlan(model->params.size(), world), before_step, {}};
      std::ostream& out = r == 0 ? log : logs[static_cast<std::size_t>(r)];
      train::Trainer trainer(cfg, *model, train_set, test_set, out, &ctx);
      trainer.set_checkpoint_metadata(metadata);
      trainer.run();
      if (options.after_run) options.after_run(r, trainer, *model);
      hub.transport(r).close(net::deadline_in(cfg.op_timeout));
    } catch (const std::exception& e) {
      const auto* peer = dynamic_cast<const net::PeerError*>(&e);
      const bool root = peer == nullptr || peer->peer() == r || peer->peer() < 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first_error || (root && !first_is_root)) {
          first_error = std::current_exception();
          first_rank = r;
          first_is_root = root;
        }
      }
      hub.fail(r, e.what());
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) threads.emplace_back(rank_main, r);
  for (std::thread& t : threads) t.join();
  if (first_error) {
    if (first_rank > 0) {
      log << "[rank " << first_rank << "] "
          << detail::log_tail(logs[static_cast<std::size_t>(first_rank)].str());
    }
    std::rethrow_exception(first_error);
  }
  SimResult result;
  result.real_s = base::seconds_since(t0);
  for (int r = 0; r < world; ++r) {
    result.clocks.push_back(network->clock(r));
    result.virtual_s = std::max(result.virtual_s, result.clocks.back().now_s);
  }
  return result;
}

}  // namespace mercury::sim
