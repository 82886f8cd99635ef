// tools/launch.hpp — `mercury launch`: N ranks of one command on this machine, torchrun-style.
//
// Contract
// - launch(options) first checks the options and the environment every rank will get, with the
//   parsers the ranks use themselves (net::cluster_env_from, net::shaper_config_from_env,
//   net::fault_from_env, net::load_secret_file), so a bad flag or MERCURY_* variable throws
//   LaunchUsageError (the CLI exits 2) before anything starts. A command that cannot be run throws
//   SpawnError before anything starts; the CLI then exits like a shell: 127 not found, 126 not
//   executable.
// - Rank r gets RANK=r WORLD_SIZE=N LOCAL_RANK=r MASTER_ADDR=127.0.0.1 MASTER_PORT=P
//   MERCURY_RUN_ID=<16 random hex digits>, plus MERCURY_BANDWIDTH, MERCURY_BANDWIDTH_TRACE,
//   MERCURY_BANDWIDTH_MODE, MERCURY_LATENCY_MS, MERCURY_SECRET_FILE, MERCURY_INSECURE=1 for the
//   flags given (paths made absolute); every other variable is inherited. P is --master-port, or
//   a free loopback port found by binding port 0 (then released: if another program takes it
//   first, rank 0 fails to listen and the run stops cleanly).
// - stdin is /dev/null. Each line a rank writes to stdout/stderr comes out on the launcher's
//   stdout/stderr prefixed "[rank r] " (a line longer than 64 KiB is cut into pieces, a last line
//   without '\n' gets one when the rank's pipe closes). Launcher messages go to stderr,
//   prefixed "[launch] ".
// - No orphans: each rank leads its own process group and has PR_SET_PDEATHSIG SIGKILL (so it
//   dies with the launcher, even a SIGKILLed one); the launcher is a child subreaper, so whatever
//   a rank leaves behind is reparented to it. Once every rank has exited, everything left in
//   the ranks' process groups or reparented to the launcher is SIGKILLed and reaped before
//   launch() returns (it waits at most 2 s for leftovers to close the output pipes).
// - The first rank to exit non-zero or by a signal stops the run: "[launch] rank r exited with
//   code c; stopping the other ranks" (or "was killed by signal s (SIGx)"), SIGTERM + SIGCONT
//   (so a stopped rank sees it) to every rank's process group, SIGKILL after grace_seconds;
//   launch() returns that rank's code (128 + signal for a signal). All ranks exit 0 → 0.
// - A rank that exits with kExitPeerFailed (4: `mercury train` failed because of another rank,
//   e.g. a peer dropped its connection) is a consequence, not a cause: the launcher waits up to
//   2 s for another rank to exit with an error of its own and blames that one (its code is
//   returned); if none does, it stops the run blaming the first consequence.
// - SIGINT, SIGTERM and SIGHUP to the launcher are forwarded to every rank's process group, then
//   the same teardown; launch() returns 128 + that signal. A second one sends SIGKILL at once.
// - Limits: if the launcher itself is SIGKILLed, the ranks die (PDEATHSIG) but their own
//   children are not reached. qemu-user refuses PR_SET_CHILD_SUBREAPER: there a rank's orphans
//   are reaped by init, and one that left its rank's process group (setsid) is not swept. One
//   launch() at a time per process: it installs process-wide signal handlers (restored on return),
//   reaps every child of the process, and makes the process a child subreaper for good.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "net/auth.hpp"
#include "net/env.hpp"
#include "net/fault.hpp"
#include "net/shaper.hpp"
#include "tools/process.hpp"

namespace mercury::tools {

// Exit code of a rank whose run failed because of another rank (mercury_main.cpp), and how long
// launch waits after one for the cause to exit on its own.
inline constexpr int kExitPeerFailed = 4;  // 3 is MERCURY_FAULT action=exit's default
inline constexpr std::chrono::seconds kCauseWait{2};

inline constexpr int kMaxLaunchRanks = 256;

struct LaunchOptions {
  int processes = 0;                 // -n: ranks, 1..256
  std::vector<std::string> command;  // what every rank runs (argv, no shell)
  int master_port = 0;               // 0: pick a free loopback port
  std::string bandwidth;             // MERCURY_BANDWIDTH       ("" = inherited)
  std::string bandwidth_trace;       // MERCURY_BANDWIDTH_TRACE
  std::string bandwidth_mode;        // MERCURY_BANDWIDTH_MODE
  std::string latency_ms;            // MERCURY_LATENCY_MS
  std::string secret_file;           // MERCURY_SECRET_FILE
  bool insecure = false;             // MERCURY_INSECURE=1
  double grace_seconds = 5;          // between SIGTERM and SIGKILL when stopping the ranks
};

class LaunchUsageError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace launch_detail {

// Which flag sets which variable (and for error messages, which flag a variable came from).
struct FlagVariable {
  const char* flag;
  const char* variable;
  std::string value;  // "" = not given
};

inline std::vector<FlagVariable> flag_variables(const LaunchOptions& o) {
  const auto absolute = [](const std::string& path) {
    return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
  };
  return {{"--bandwidth", "MERCURY_BANDWIDTH", o.bandwidth},
          {"--bandwidth-trace", "MERCURY_BANDWIDTH_TRACE", absolute(o.bandwidth_trace)},
          {"--bandwidth-mode", "MERCURY_BANDWIDTH_MODE", o.bandwidth_mode},
          {"--latency-ms", "MERCURY_LATENCY_MS", o.latency_ms},
          {"--secret-file", net::env_var::secret_file, absolute(o.secret_file)},
          {"--insecure", net::env_var::insecure, o.insecure ? "1" : ""}};
}

inline std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev ? "SIG" + std::string(abbrev) : "signal " + std::to_string(signo);
}

inline void say(const std::string& line) {
  write_all(2, "[launch] " + line + "\n");
}

// The launcher's signals arrive as bytes on a non-blocking pipe (the self-pipe trick), so the
// poll() loop sees them in order with child output and exits.
inline std::atomic<int> signal_pipe_fd{-1};

inline void on_signal(int signo) {
  const int saved = errno;
  const auto byte = static_cast<unsigned char>(signo);
  (void)!::write(signal_pipe_fd.load(std::memory_order_relaxed), &byte, 1);
  errno = saved;
}

class SignalPipe {
 public:
  static constexpr int kSignals[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGPIPE};

  SignalPipe() : pipe_(O_NONBLOCK) {
    signal_pipe_fd = pipe_.write.get();
    for (size_t i = 0; i < std::size(kSignals); ++i) {
      struct sigaction action {};
      // SIGPIPE: ignored, a closed stdout must not kill the launcher (writes just fail).
      action.sa_handler = kSignals[i] == SIGPIPE ? SIG_IGN : on_signal;
      sigemptyset(&action.sa_mask);
      action.sa_flags = SA_RESTART | (kSignals[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
      ::sigaction(kSignals[i], &action, &previous_[i]);
    }
  }
  ~SignalPipe() {
    for (size_t i = 0; i < std::size(kSignals); ++i)
      ::sigaction(kSignals[i], &previous_[i], nullptr);
    signal_pipe_fd = -1;
  }
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  int fd() const { return pipe_.read.get(); }
  std::vector<int> take() {
    std::string bytes;
    while (read_available(fd(), bytes) == ReadResult::data) {
    }
    return {bytes.begin(), bytes.end()};
  }

 private:
  Pipe pipe_;
  struct sigaction previous_[std::size(kSignals)];
};

// One output stream of one rank: its pipe, the unfinished line, where lines go.
struct RankStream {
  Fd fd;
  std::string pending;
  int sink = 1;
};

struct RankProcess {
  pid_t pid = -1;  // also its process group
  bool running = false;
  ExitStatus status;
  RankStream streams[2];  // stdout, stderr
};

inline constexpr size_t kMaxLine = size_t{64} << 10;

}  // namespace launch_detail

// Moves the complete lines of `pending` to the result, each prefixed; with `final` (or when
// pending exceeds 64 KiB) the rest too, ended with '\n'.
inline std::string prefix_lines(std::string& pending, std::string_view prefix, bool final) {
  std::string out;
  size_t start = 0;
  for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.append(prefix).append(pending, start, nl + 1 - start);
  }
  pending.erase(0, start);
  while (pending.size() > launch_detail::kMaxLine) {
    out.append(prefix).append(pending, 0, launch_detail::kMaxLine).push_back('\n');
    pending.erase(0, launch_detail::kMaxLine);
  }
  if (final && !pending.empty()) {
    out.append(prefix).append(pending).push_back('\n');
    pending.clear();
  }
  return out;
}

// A loopback TCP port nobody listens on right now.
inline uint16_t pick_free_port() {
  Fd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket) throw ToolError("launch: socket() failed: " + std::string(std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw ToolError("launch: cannot find a free loopback port: " +
                    std::string(std::strerror(errno)) + " (give one with --master-port)");
  }
  return ntohs(address.sin_port);
}

inline std::string random_run_id() {
  std::random_device device;
  const uint64_t bits = (uint64_t{device()} << 32) ^ device();
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(bits));
  return text;
}

// The variables rank `rank` gets on top of the launcher's environment ("NAME=value").
inline std::vector<std::string> rank_environment(const LaunchOptions& o, int rank, uint16_t port,
                                                 const std::string& run_id) {
  namespace var = net::env_var;
  std::vector<std::string> env = {std::string(var::rank) + "=" + std::to_string(rank),
                                  std::string(var::world_size) + "=" + std::to_string(o.processes),
                                  std::string(var::local_rank) + "=" + std::to_string(rank),
                                  std::string(var::master_addr) + "=127.0.0.1",
                                  std::string(var::master_port) + "=" + std::to_string(port),
                                  std::string(var::run_id) + "=" + run_id};
  for (const auto& f : launch_detail::flag_variables(o))
    if (!f.value.empty()) env.push_back(std::string(f.variable) + "=" + f.value);
  return env;
}

// Throws LaunchUsageError unless the options are in range.
inline void check_launch_options(const LaunchOptions& o) {
  if (o.processes < 1 || o.processes > kMaxLaunchRanks) {
    throw LaunchUsageError("-n: expected 1.." + std::to_string(kMaxLaunchRanks) + " ranks, found " +
                           std::to_string(o.processes));
  }
  if (o.command.empty()) {
    throw LaunchUsageError(
        "expected the command every rank runs after '--' (e.g. mercury launch -n 2 -- mercury "
        "train --config run.json)");
  }
  if (o.master_port < 0 || o.master_port > 65535) {
    throw LaunchUsageError("--master-port: expected 0 (pick a free port) or 1..65535, found " +
                           std::to_string(o.master_port));
  }
  if (!(o.grace_seconds >= 0 && o.grace_seconds <= 3600)) {
    char found[32];
    std::snprintf(found, sizeof found, "%g", o.grace_seconds);
    throw LaunchUsageError(std::string("--grace-seconds: expected 0..3600 seconds, found ") +
                           found);
  }
}

// Throws LaunchUsageError unless the ranks will accept `env` (rank_environment on top of this
// process's environment): the cluster variables, the shaping knobs, MERCURY_FAULT, and a
// readable secret file.
inline void check_rank_environment(const LaunchOptions& o, const std::vector<std::string>& env) {
  const auto lookup = [&](const char* name) -> const char* {
    const std::string key = std::string(name) + "=";
    for (auto it = env.rbegin(); it != env.rend(); ++it)
      if (it->starts_with(key)) return it->c_str() + key.size();
    return std::getenv(name);
  };
  try {
    const net::ClusterEnv cluster = net::cluster_env_from(lookup);
    net::shaper_config_from_env(lookup);
    net::fault_from_env(lookup, o.processes);
    if (!cluster.secret_file.empty()) net::load_secret_file(cluster.secret_file);
  } catch (const std::exception& e) {
    std::string message = e.what();
    for (const auto& f : launch_detail::flag_variables(o)) {
      if (!f.value.empty() && message.find(f.variable) != std::string::npos)
        message += std::string(" (") + f.variable + " is set by " + f.flag + ")";
    }
    throw LaunchUsageError(message);
  }
}

inline int launch(const LaunchOptions& o) {
  using namespace launch_detail;
  using Clock = std::chrono::steady_clock;
  check_launch_options(o);
  find_program(o.command[0]);  // SpawnError before anything starts
  const uint16_t port =
      o.master_port != 0 ? static_cast<uint16_t>(o.master_port) : pick_free_port();
  const std::string run_id = random_run_id();
  check_rank_environment(o, rank_environment(o, 0, port, run_id));

  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  SignalPipe signals;
  std::string shown;
  for (const std::string& a : o.command) shown += (shown.empty() ? "" : " ") + a;
  say(std::to_string(o.processes) + " ranks of '" + shown +
      "': MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " MERCURY_RUN_ID=" + run_id);

  std::vector<RankProcess> ranks(static_cast<size_t>(o.processes));
  int result = 0;
  bool stopping = false, killed = false;
  std::optional<size_t> first_consequence;  // first rank to exit kExitPeerFailed
  std::optional<Clock::time_point> consequence_deadline;
  Clock::time_point kill_at{};
  std::optional<Clock::time_point> sweep_until;

  const auto signal_groups = [&](int signo) {
    for (const RankProcess& r : ranks) {
      if (r.pid <= 0) continue;
      ::kill(-r.pid, signo);
      if (signo != SIGKILL) ::kill(-r.pid, SIGCONT);
    }
  };
  const auto stop = [&](int code, const std::string& why, int signo) {
    stopping = true;
    result = code;
    say(why);
    signal_groups(signo);
    kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(o.grace_seconds));
  };
  const auto pump = [&](size_t rank, RankStream& s, int max_reads) {
    const std::string prefix = "[rank " + std::to_string(rank) + "] ";
    for (int i = 0; i < max_reads && s.fd; ++i) {
      const ReadResult got = read_available(s.fd.get(), s.pending);
      const bool end = got == ReadResult::end;
      const std::string lines = prefix_lines(s.pending, prefix, end);
      if (!lines.empty()) write_all(s.sink, lines);
      if (end) s.fd.reset();
      if (got != ReadResult::data) break;
    }
  };

  for (size_t r = 0; r < ranks.size() && !stopping; ++r) {
    Pipe out, err;
    for (const Pipe* p : {&out, &err}) ::fcntl(p->read.get(), F_SETFL, O_NONBLOCK);
    SpawnOptions spawn_options;
    spawn_options.stdout_fd = out.write.get();
    spawn_options.stderr_fd = err.write.get();
    spawn_options.env = rank_environment(o, static_cast<int>(r), port, run_id);
    spawn_options.new_process_group = true;
    spawn_options.die_with_parent = true;
    try {
      ranks[r].pid = spawn(o.command, spawn_options);
    } catch (const ToolError& e) {  // cannot run it (SpawnError), or fork failed
      const auto* spawn_error = dynamic_cast<const SpawnError*>(&e);
      stop(spawn_error ? spawn_error->shell_code() : 1,
           "rank " + std::to_string(r) + ": " + e.what() + "; stopping the other ranks", SIGTERM);
      break;
    }
    ranks[r].running = true;
    ranks[r].streams[0] = {std::move(out.read), "", 1};
    ranks[r].streams[1] = {std::move(err.read), "", 2};
  }

  for (;;) {
    // Reap: ranks, and whatever was reparented to us.
    bool no_children = false;
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno == EINTR) continue;
      no_children = pid < 0 && errno == ECHILD;
      if (pid <= 0) break;
      for (size_t r = 0; r < ranks.size(); ++r) {
        if (ranks[r].pid != pid || !ranks[r].running) continue;
        ranks[r].running = false;
        ranks[r].status = ExitStatus::from_wait_status(status);
        for (RankStream& s : ranks[r].streams) pump(r, s, 16);  // its last words come first
        if (!ranks[r].status.ok() && !stopping) {
          const bool consequence = ranks[r].status.shell_code() == kExitPeerFailed;
          if (!consequence) {
            stop(ranks[r].status.shell_code(),
                 "rank " + std::to_string(r) + " " + ranks[r].status.describe() +
                     (first_consequence ? " (the root cause of rank " +
                                              std::to_string(*first_consequence) + "'s failure)"
                                        : std::string()) +
                     "; stopping the other ranks",
                 SIGTERM);
          } else if (!first_consequence) {
            // It failed because of another rank: give that one a moment to exit with its own
            // error, so the run is blamed on the cause, not on the first rank to notice.
            first_consequence = r;
            consequence_deadline = Clock::now() + kCauseWait;
            say("rank " + std::to_string(r) + " " + ranks[r].status.describe() +
                " (a failure of another rank); waiting up to " +
                std::to_string(kCauseWait.count()) + " s for that rank's own error");
          }
        }
      }
    }
    const auto now = Clock::now();
    const bool any_running =
        std::any_of(ranks.begin(), ranks.end(), [](const RankProcess& r) { return r.running; });
    bool streams_open = false;
    for (const RankProcess& r : ranks)
      for (const RankStream& s : r.streams) streams_open |= static_cast<bool>(s.fd);

    if (!stopping && first_consequence && (!any_running || now >= *consequence_deadline)) {
      stop(kExitPeerFailed,
           "rank " + std::to_string(*first_consequence) +
               " failed because of another rank, and no rank reported a cause of its own; "
               "stopping the other ranks",
           SIGTERM);
    }
    if (!any_running) {
      if (no_children && !streams_open) break;
      if (!sweep_until) sweep_until = now + std::chrono::seconds(2);
      if (now >= *sweep_until) break;
      // Leftovers: the ranks' process groups, and orphans reparented to us.
      signal_groups(SIGKILL);
      std::ifstream children("/proc/self/task/" + std::to_string(::getpid()) + "/children");
      for (pid_t child; children >> child;) ::kill(child, SIGKILL);
    } else if (stopping && !killed && now >= kill_at) {
      std::string left;
      for (size_t r = 0; r < ranks.size(); ++r)
        if (ranks[r].running) left += (left.empty() ? "" : ", ") + std::to_string(r);
      char grace[32];
      std::snprintf(grace, sizeof grace, "%g", o.grace_seconds);
      say("rank(s) " + left + " still running after the " + grace +
          " s grace period; sending SIGKILL");
      signal_groups(SIGKILL);
      killed = true;
    }

    std::vector<pollfd> fds = {{signals.fd(), POLLIN, 0}};
    std::vector<std::pair<size_t, RankStream*>> polled;  // fds[i + 1] is polled[i]
    for (size_t r = 0; r < ranks.size(); ++r) {
      for (RankStream& s : ranks[r].streams) {
        if (!s.fd) continue;
        fds.push_back({s.fd.get(), POLLIN, 0});
        polled.emplace_back(r, &s);
      }
    }
    std::optional<Clock::time_point> wake;
    if (any_running && stopping && !killed) wake = kill_at;
    if (any_running && !stopping && first_consequence) wake = consequence_deadline;
    if (!any_running) wake = std::min(*sweep_until, now + std::chrono::milliseconds(50));
    const int timeout =
        wake ? static_cast<int>(std::max<int64_t>(
                   0, std::chrono::ceil<std::chrono::milliseconds>(*wake - now).count()))
             : -1;
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      throw ToolError("launch: poll failed: " + std::string(std::strerror(errno)));
    }
    if (fds[0].revents & POLLIN) {
      for (const int signo : signals.take()) {
        if (signo == SIGCHLD) continue;
        if (!stopping) {
          stop(128 + signo, "received " + signal_name(signo) + "; stopping the ranks", signo);
        } else if (!killed) {
          say("received " + signal_name(signo) + " again; killing the ranks");
          signal_groups(SIGKILL);
          killed = true;
        }
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
        pump(polled[i - 1].first, *polled[i - 1].second, 4);
    }
  }
  // Whatever is still open after the sweep deadline belongs to an escaped descendant: cut it off.
  for (size_t r = 0; r < ranks.size(); ++r) {
    for (RankStream& s : ranks[r].streams) {
      if (!s.fd) continue;
      const std::string lines = prefix_lines(s.pending, "[rank " + std::to_string(r) + "] ", true);
      if (!lines.empty()) write_all(s.sink, lines);
      s.fd.reset();
    }
  }
  if (result != 0) {
    std::string summary;
    for (size_t r = 0; r < ranks.size(); ++r) {
      if (ranks[r].pid <= 0) continue;
      summary += (summary.empty() ? "" : ", ") + ("rank " + std::to_string(r) + " ") +
                 ranks[r].status.describe();
    }
    say("exit status: " + summary + "; returning " + std::to_string(result));
  }
  return result;
}

}  // namespace mercury::tools
