// net_probe — one-way goodput of a two-rank net::Mesh, one rank per process, on any address.
// Used by bench/suites/netns_tbf.sh to compare a kernel-shaped link (ranks in network
// namespaces joined by a veth pair under `tc tbf`) with Mercury's own token-bucket emulation
// (net/shaper.hpp) at the same rate. A plain program, not a Google Benchmark.
//
//   net_probe --rank R --world 2 --master-addr A --master-port P [--bind IP] [--secret-file F]
//             [--bandwidth off|10mbps|...] [--seconds S] [--message-bytes N] [--window W]
//             [--connect-timeout S]
//
// Rank 0 sends --message-bytes messages (one immutable SharedPayload, queued again and again:
// no copies) to rank 1 for --seconds, keeping at most --window of them queued in the mesh
// (polling Transport::stats(1).messages_sent), then one last message marked as the end. Rank 1
// timestamps each message as its recv() returns and measures the steady-state goodput
//     (messages - 1) * message_bytes * 8 / (t_last - t_first)
// i.e. application payload bits per second between the first and the last arrival, so neither
// the rendezvous, the initial burst of an empty token bucket nor the sender's socket buffer
// filling up counts. Rank 1 sends its figures back to rank 0; both print the same JSON line:
//   {"probe":"net_probe","rank":0,"bandwidth":"off","target_mbps":null,"message_bytes":65536,
//    "messages":..., "window_s":..., "goodput_mbps":..., "goodput_over_target":null, ...}
// --bandwidth applies the mesh's token-bucket pacer (link mode, 16 KiB slices, 5 ms burst) on
// both ranks' writers, exactly as MERCURY_BANDWIDTH does for `mercury train`. Note that the
// emulation paces mesh frame bytes (payload + frame headers) while a qdisc such as tbf counts
// every byte of every packet (TCP/IP and Ethernet headers too).
//
// Exit status: 0 on success, 2 on a bad flag (the message names the flag, what was expected
// and what was found), 1 when the transport fails.
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mercury/base/clock.hpp"
#include "net/address.hpp"
#include "net/auth.hpp"
#include "net/env.hpp"
#include "net/mesh.hpp"
#include "net/shaper.hpp"

namespace {

using namespace mercury;
using Clock = std::chrono::steady_clock;

constexpr uint8_t kData = net::kFirstAppType;  // iteration = message index
constexpr uint8_t kResult = net::kFirstAppType + 1;

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  int rank = -1;
  int world = 2;
  std::string master_addr;
  int master_port = 0;
  std::string bind;  // "" = the loopback address when master_addr is loopback, else required
  std::string secret_file;
  std::string bandwidth_text = "off";
  std::optional<double> rate_bps;
  double seconds = 3;
  uint64_t message_bytes = 64 * 1024;
  int window = 16;
  double connect_timeout_s = 30;
};

// Figures rank 1 measures and sends back to rank 0 (raw bytes of this struct).
struct Result {
  uint64_t messages = 0;        // messages received, the end marker included
  double window_s = 0;          // t_last - t_first
  double wall_s = 0;            // first recv() call to the end marker
  uint64_t bytes_received = 0;  // LinkStats::bytes_received (frame headers included)
};

const char* const kUsage =
    "usage: net_probe --rank 0|1 --world 2 --master-addr ADDR --master-port PORT\n"
    "                 [--bind IP] [--secret-file FILE] [--bandwidth off|<rate>mbps]\n"
    "                 [--seconds S] [--message-bytes N[KiB|MiB]] [--window W]\n"
    "                 [--connect-timeout S]\n"
    "  --bind defaults to 127.0.0.1 when --master-addr is loopback; a non-loopback address\n"
    "  needs --secret-file (the same file on both ranks).\n";

double parse_number(const std::string& flag, const std::string& text, double lo, double hi,
                    const char* expected) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < lo || v > hi)
    throw UsageError(flag + ": expected " + expected + ", found '" + text + "'");
  return v;
}

int parse_int(const std::string& flag, const std::string& text, int lo, int hi) {
  const auto v = net::detail::to_integer(text);
  if (!v || *v < lo || *v > hi)
    throw UsageError(flag + ": expected an integer in " + std::to_string(lo) + ".." +
                     std::to_string(hi) + ", found '" + text + "'");
  return static_cast<int>(*v);
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool have_rank = false, have_addr = false, have_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (arg.starts_with("--")) {
      if (i + 1 >= argc) throw UsageError(arg + ": expected a value, found the end of the line");
      value = argv[++i];
    } else {
      throw UsageError("expected a flag such as --rank, found '" + arg + "'");
    }
    if (arg == "--rank") {
      o.rank = parse_int(arg, value, 0, 1);
      have_rank = true;
    } else if (arg == "--world") {
      if (value != "2")
        throw UsageError("--world: expected 2 (one sender, one receiver), found '" + value + "'");
      o.world = 2;
    } else if (arg == "--master-addr") {
      if (value.empty() || value.size() > 255 || value.find_first_of(" \t") != std::string::npos)
        throw UsageError("--master-addr: expected a host name or IP address, found '" + value +
                         "'");
      o.master_addr = value;
      have_addr = true;
    } else if (arg == "--master-port") {
      o.master_port = parse_int(arg, value, 1, 65535);
      have_port = true;
    } else if (arg == "--bind" || arg == "--listen") {
      if (!net::is_ip_address(value))
        throw UsageError(arg + ": expected an IPv4 or IPv6 address to listen on, found '" + value +
                         "'");
      o.bind = value;
    } else if (arg == "--secret-file") {
      if (value.empty()) throw UsageError("--secret-file: expected a path, found ''");
      o.secret_file = value;
    } else if (arg == "--bandwidth") {
      try {
        o.rate_bps = net::parse_bandwidth(value, "--bandwidth");
      } catch (const net::ShaperError& e) {
        throw UsageError(e.what());
      }
      o.bandwidth_text = value;
    } else if (arg == "--seconds") {
      o.seconds = parse_number(arg, value, 0.1, 3600, "a number of seconds in [0.1, 3600]");
    } else if (arg == "--message-bytes") {
      try {
        o.message_bytes = net::detail::parse_bytes(arg, value, 1, 256 * net::kMiB);
      } catch (const net::EnvError& e) {
        throw UsageError(e.what());
      }
    } else if (arg == "--window") {
      o.window = parse_int(arg, value, 1, 4096);
    } else if (arg == "--connect-timeout") {
      o.connect_timeout_s =
          parse_number(arg, value, 0.1, 3600, "a number of seconds in [0.1, 3600]");
    } else {
      throw UsageError("unknown flag '" + arg +
                       "' (expected --rank, --world, --master-addr, --master-port, --bind, "
                       "--secret-file, --bandwidth, --seconds, --message-bytes, --window or "
                       "--connect-timeout)");
    }
  }
  std::string missing;
  for (const auto& [have, name] : {std::pair{have_rank, "--rank"},
                                   {have_addr, "--master-addr"},
                                   {have_port, "--master-port"}}) {
    if (!have) missing += std::string(missing.empty() ? "" : ", ") + name;
  }
  if (!missing.empty()) throw UsageError("missing " + missing + "\n" + kUsage);
  if (o.bind.empty()) {
    if (!net::is_loopback_address(o.master_addr))
      throw UsageError(
          "--bind: expected the address this rank listens on (required when "
          "--master-addr is not loopback), found none");
    o.bind = "127.0.0.1";
  }
  if (o.secret_file.empty() &&
      !(net::is_loopback_address(o.bind) && net::is_loopback_address(o.master_addr)))
    throw UsageError("--secret-file: expected a file holding a shared secret when --bind (" +
                     o.bind + ") or --master-addr (" + o.master_addr +
                     ") is not loopback, found none (e.g. `head -c 32 /dev/urandom | base64 > "
                     "secret`)");
  return o;
}

using mercury::base::seconds_between;

std::string json_number(std::optional<double> v) {
  if (!v || !std::isfinite(*v)) return "null";
  char text[64];
  std::snprintf(text, sizeof text, "%.6g", *v);
  return text;
}

void print_json(const Options& o, const Result& r, double setup_s) {
  const std::optional<double> target =
      o.rate_bps ? std::optional<double>(*o.rate_bps / 1e6) : std::nullopt;
  const double goodput =
      r.messages >= 2 && r.window_s > 0
          ? 8.0 * static_cast<double>((r.messages - 1) * o.message_bytes) / r.window_s / 1e6
          : NAN;
  std::printf(
      "{\"probe\":\"net_probe\",\"rank\":%d,\"bind\":\"%s\",\"master\":\"%s:%d\","
      "\"bandwidth\":\"%s\",\"target_mbps\":%s,\"message_bytes\":%llu,\"window\":%d,"
      "\"messages\":%llu,\"window_s\":%s,\"wall_s\":%s,\"setup_s\":%s,"
      "\"receiver_bytes\":%llu,\"goodput_mbps\":%s,\"goodput_over_target\":%s}\n",
      o.rank, o.bind.c_str(), o.master_addr.c_str(), o.master_port, o.bandwidth_text.c_str(),
      json_number(target).c_str(), static_cast<unsigned long long>(o.message_bytes), o.window,
      static_cast<unsigned long long>(r.messages), json_number(r.window_s).c_str(),
      json_number(r.wall_s).c_str(), json_number(setup_s).c_str(),
      static_cast<unsigned long long>(r.bytes_received), json_number(goodput).c_str(),
      json_number(target ? std::optional<double>(goodput / *target) : std::nullopt).c_str());
  std::fflush(stdout);
}

int run(const Options& o) {
  net::MeshConfig mc;
  mc.rank = o.rank;
  mc.world = o.world;
  mc.master_addr = o.master_addr;
  mc.master_port = static_cast<uint16_t>(o.master_port);
  mc.bind_addr = o.bind;
  mc.run_id = "net_probe";
  if (!o.secret_file.empty()) mc.secret = net::load_secret_file(o.secret_file);
  mc.connect_timeout_s = o.connect_timeout_s;
  if (o.rate_bps) {
    net::ShaperConfig shaper;
    shaper.rate_bps = o.rate_bps;
    mc.pacer = net::make_pacer(shaper);
  }
  const auto begin = Clock::now();
  net::Mesh mesh(mc);
  mesh.start();
  const double setup_s = seconds_between(begin, Clock::now());
  // Generous: the sender's socket buffer may hold seconds of data at low rates.
  const double wait_s = o.seconds + 120;
  Result result;
  if (o.rank == 0) {
    auto make = [&](std::byte marker) {
      net::Payload p = mesh.allocate(o.message_bytes);
      for (std::size_t i = 0; i < p.size(); ++i) p.data()[i] = std::byte((i * 131 + 7) & 0xFF);
      p.data()[0] = marker;  // 1 = the last message
      return std::make_shared<const net::Payload>(std::move(p));
    };
    const net::SharedPayload more = make(std::byte{0}), last = make(std::byte{1});
    const auto stop = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(o.seconds));
    uint64_t sent = 0;
    for (bool done = false; !done; ++sent) {
      while (sent - mesh.stats(1).messages_sent >= static_cast<uint64_t>(o.window))
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      done = Clock::now() >= stop;
      mesh.send(1, kData, 0, sent, done ? last : more);
    }
    net::Message m = mesh.recv(1, kResult, 0, 0, net::deadline_in(wait_s));
    if (m.payload.size() != sizeof(Result))
      throw net::PeerError(1, "rank 1 sent a result of " + std::to_string(m.payload.size()) +
                                  " bytes, expected " + std::to_string(sizeof(Result)));
    std::memcpy(&result, m.payload.data(), sizeof result);
  } else {
    Clock::time_point first{}, last{};
    const auto start = Clock::now();
    for (uint64_t i = 0;; ++i) {
      net::Message m = mesh.recv(0, kData, 0, i, net::deadline_in(wait_s));
      last = Clock::now();
      if (i == 0) first = last;
      if (m.payload.size() != o.message_bytes)
        throw net::PeerError(0, "rank 0 sent a message of " + std::to_string(m.payload.size()) +
                                    " bytes, expected --message-bytes " +
                                    std::to_string(o.message_bytes) +
                                    " (run both ranks with the same flags)");
      if (m.payload.data()[0] == std::byte{1}) {
        result.messages = i + 1;
        break;
      }
    }
    result.window_s = seconds_between(first, last);
    result.wall_s = seconds_between(start, last);
    result.bytes_received = mesh.stats(0).bytes_received;
    mesh.send(
        0, kResult, 0, 0,
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(&result), sizeof result));
  }
  mesh.close(net::deadline_in(30));
  print_json(o, result, setup_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse_options(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "net_probe: %s\n", e.what());
    return 2;
  }
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "net_probe rank %d: %s\n", options.rank, e.what());
    return 1;
  }
}
