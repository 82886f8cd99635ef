// tools/process.hpp — starting, feeding and reaping child processes, without a shell.
//
// Contract
// - spawn(argv, options) starts argv[0] (looked up like execvp: as given if it contains '/',
//   else along PATH) with fork + execve and returns its pid once exec has succeeded; a program
//   that cannot start (not found, not executable, exec error) throws SpawnError carrying errno,
//   having reaped the failed child. The child can be put in its own process group and be tied
//   to this thread's life (PR_SET_PDEATHSIG SIGKILL, checked against the fork/prctl race).
//   Everything the child needs is built before fork; between fork and exec the child makes only
//   async-signal-safe calls, so spawn() is safe in a multi-threaded process. Signal handlers of
//   this process never run in the child; an ignored SIGPIPE is reset to the default.
// - Every descriptor this header creates is O_CLOEXEC: children see only stdin/stdout/stderr.
// - run_process(argv, timeout) runs a program to completion with stdout/stderr captured (for
//   helpers like espeak-ng and apt-cache); ExitStatus/wait_for decode and reap.
// - Not async-signal-safe itself; thread-safe apart from the usual fork caveats (a descriptor
//   opened without O_CLOEXEC by another thread at the moment of fork leaks into that child).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace mercury::tools {

class ToolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A program could not be started. shell_code() is what a shell exits with: 127 when it was not
// found, 126 when it was found but could not be executed.
class SpawnError : public ToolError {
 public:
  SpawnError(const std::string& program, int error, const std::string& detail = "")
      : ToolError("cannot run '" + program +
                  "': " + (detail.empty() ? std::string(std::strerror(error)) : detail) +
                  (error == ENOENT && program.find('/') == std::string::npos
                       ? " (not installed or not on PATH)"
                       : "")),
        error_(error) {}
  int error() const { return error_; }
  int shell_code() const { return error_ == ENOENT ? 127 : 126; }

 private:
  int error_;
};

// A file descriptor that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
  // flags: O_NONBLOCK to make both ends non-blocking (O_CLOEXEC is always added).
  explicit Pipe(int flags = 0) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | flags) != 0)
      throw ToolError("pipe2 failed: " + std::string(std::strerror(errno)));
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
};

// How a child ended.
struct ExitStatus {
  int code = -1;   // exit code, valid when signal == 0
  int signal = 0;  // terminating signal, 0 if it exited
  static ExitStatus from_wait_status(int status) {
    ExitStatus s;
    if (WIFEXITED(status)) s.code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) s.signal = WTERMSIG(status);
    return s;
  }
  bool ok() const { return signal == 0 && code == 0; }
  // What a shell reports: the exit code, or 128 + the signal.
  int shell_code() const { return signal != 0 ? 128 + signal : code; }
  // "exited with code 7" / "was killed by signal 9 (SIGKILL)".
  std::string describe() const {
    if (signal == 0) return "exited with code " + std::to_string(code);
    const char* abbrev = ::sigabbrev_np(signal);
    return "was killed by signal " + std::to_string(signal) +
           (abbrev ? " (SIG" + std::string(abbrev) + ")" : "");
  }
};

// Blocking waitpid on one child, retrying on EINTR.
inline ExitStatus wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return {};
  }
  return ExitStatus::from_wait_status(status);
}

// Where execvp would find `program` (see the contract). Throws SpawnError.
inline std::string find_program(const std::string& program) {
  // 0 if `path` can be executed; else the errno, and why in `detail`.
  const auto check = [](const std::string& path, std::string& detail) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno;
    if (S_ISDIR(st.st_mode)) {
      detail = "it is a directory";
      return EACCES;
    }
    if (::access(path.c_str(), X_OK) != 0) {
      detail = "not executable (check its permissions)";
      return EACCES;
    }
    return 0;
  };
  if (program.empty()) throw SpawnError(program, ENOENT, "empty program name");
  std::string detail;
  if (program.find('/') != std::string::npos) {
    if (const int error = check(program, detail)) throw SpawnError(program, error, detail);
    return program;
  }
  const char* path_env = std::getenv("PATH");
  const std::string path = path_env && *path_env ? path_env : "/bin:/usr/bin";
  bool denied = false;
  for (size_t start = 0; start <= path.size();) {
    const size_t colon = std::min(path.find(':', start), path.size());
    const std::string dir = colon == start ? "." : path.substr(start, colon - start);
    start = colon + 1;
    std::string candidate = dir + "/" + program;
    const int error = check(candidate, detail);
    if (error == 0) return candidate;
    denied |= error == EACCES;
  }
  throw SpawnError(program, denied ? EACCES : ENOENT,
                   denied ? "found on PATH but not executable" : "");
}

struct SpawnOptions {
  int stdout_fd = -1;              // -1: inherited
  int stderr_fd = -1;              // -1: inherited
  bool stdin_null = true;          // stdin from /dev/null (else inherited)
  std::vector<std::string> env;    // "NAME=value" set on top of this process's environment
  bool new_process_group = false;  // the child leads its own process group (pgid = pid)
  bool die_with_parent = false;    // SIGKILL the child when the calling thread exits
};

inline pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {}) {
  if (argv.empty()) throw std::invalid_argument("spawn: empty argv");
  const std::string path = find_program(argv[0]);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const bool overridden = std::any_of(options.env.begin(), options.env.end(), [&](auto& o) {
      const size_t eq = o.find('=');
      return entry.substr(0, entry.find('=')) == std::string_view(o).substr(0, eq);
    });
    if (!overridden) envp.push_back(*e);
  }
  for (const std::string& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  Fd devnull;
  if (options.stdin_null) {
    devnull.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) throw ToolError("cannot open /dev/null: " + std::string(std::strerror(errno)));
  }
  Pipe exec_status;  // the child writes exec's errno here; a successful exec closes it
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);  // no handler runs in the child before exec
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) {
      struct sigaction current {};
      if (::sigaction(s, nullptr, &current) != 0) continue;
      if (current.sa_handler != SIG_DFL && (current.sa_handler != SIG_IGN || s == SIGPIPE))
        ::sigaction(s, &dfl, nullptr);
    }
    if (options.new_process_group) ::setpgid(0, 0);
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::raise(SIGKILL);  // the parent died before prctl
    }
    const auto redirect = [](int from, int to) {
      if (from < 0) return;
      if (from == to) {
        ::fcntl(to, F_SETFD, 0);  // keep it across exec
      } else {
        ::dup2(from, to);
      }
    };
    redirect(devnull.get(), 0);
    redirect(options.stdout_fd, 1);
    redirect(options.stderr_fd, 2);
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    ::execve(path.c_str(), args.data(), envp.data());
    const int error = errno;
    (void)!::write(exec_status.write.get(), &error, sizeof error);
    ::_exit(error == ENOENT ? 127 : 126);
  }
  const int fork_error = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) throw ToolError("fork failed: " + std::string(std::strerror(fork_error)));
  if (options.new_process_group) ::setpgid(pid, pid);  // whichever of the two runs first
  exec_status.write.reset();
  int error = 0;
  ssize_t got;
  while ((got = ::read(exec_status.read.get(), &error, sizeof error)) < 0 && errno == EINTR) {
  }
  if (got == static_cast<ssize_t>(sizeof error)) {
    wait_for(pid);
    throw SpawnError(argv[0], error);
  }
  return pid;
}

enum class ReadResult { data, nothing, end };

// Appends what fd has (one read of at most 64 KiB) to sink. `nothing`: a non-blocking fd had
// nothing yet (or the read was interrupted); `end`: end of file or a read error.
inline ReadResult read_available(int fd, std::string& sink) {
  char buffer[65536];
  const ssize_t got = ::read(fd, buffer, sizeof buffer);
  if (got > 0) {
    sink.append(buffer, static_cast<size_t>(got));
    return ReadResult::data;
  }
  if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
    return ReadResult::nothing;
  return ReadResult::end;
}

// Writes all of data, retrying short writes and EINTR; false on an error (e.g. EPIPE).
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t put = ::write(fd, data.data(), data.size());
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    data.remove_prefix(static_cast<size_t>(put));
  }
  return true;
}

struct ProcessResult {
  int exit_code = -1;  // valid when signal == 0 and !timed_out
  int signal = 0;
  bool timed_out = false;
  std::string out, err;
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  std::string status() const {
    if (timed_out) return "timed out (killed)";
    if (signal != 0) return "killed by signal " + std::to_string(signal);
    return "exit code " + std::to_string(exit_code);
  }
};

// Runs argv to completion, stdin from /dev/null, stdout and stderr captured (stdout capped at
// max_output bytes: more is an error; stderr keeps its first MiB); killed after
// timeout_seconds. Throws SpawnError if the program cannot start.
inline ProcessResult run_process(const std::vector<std::string>& argv, double timeout_seconds,
                                 size_t max_output = size_t{1} << 30) {
  if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
  Pipe out_pipe, err_pipe;
  SpawnOptions options;
  options.stdout_fd = out_pipe.write.get();
  options.stderr_fd = err_pipe.write.get();
  const pid_t pid = spawn(argv, options);
  out_pipe.write.reset();
  err_pipe.write.reset();
  ProcessResult result;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  pollfd fds[2] = {{out_pipe.read.get(), POLLIN, 0}, {err_pipe.read.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  bool too_much = false;
  int open_count = 2;
  while (open_count > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0 || too_much) {
      ::kill(pid, SIGKILL);
      result.timed_out = !too_much;
      break;
    }
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (int k = 0; k < 2; ++k) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (read_available(fds[k].fd, *sinks[k]) == ReadResult::end) {
        fds[k].fd = -1;
        --open_count;
      }
      if (k == 0 && result.out.size() > max_output) too_much = true;
      if (k == 1 && result.err.size() > (size_t{1} << 20)) result.err.resize(size_t{1} << 20);
    }
  }
  const ExitStatus status = wait_for(pid);
  result.exit_code = status.code;
  if (!result.timed_out) result.signal = status.signal;
  if (too_much) {
    throw ToolError("'" + argv[0] + "' wrote more than " + std::to_string(max_output) +
                    " bytes to stdout; refusing to buffer more");
  }
  return result;
}

}  // namespace mercury::tools
