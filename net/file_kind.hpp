// net/file_kind.hpp — what a path is, and opening files without blocking or clobbering: the
// POSIX checks every input and output path of Mercury goes through (a leaf header: nothing of
// ML, so net/ and mercury/ both use it).
//
// Contract
// - file_kind(path) names what `path` is, following symbolic links: "missing", "a regular file",
//   "a directory", "a FIFO", "a character device", "a block device", "a socket", or "unreadable
//   (<errno text>)".
// - open_regular_for_reading(path, what) opens without blocking (O_NONBLOCK, so a FIFO without a
//   writer cannot hang the open), checks with fstat on the open descriptor (no race with a
//   rename in between) that it is a regular file, then clears O_NONBLOCK and returns the
//   descriptor. Anything else throws FileKindError: "<what> '<path>': expected a readable regular
//   file, found a FIFO" (a directory, a device, a socket), or "...: cannot open: <errno text>".
// - read_regular_file(path, what, max_bytes) reads a whole regular file through it; more than
//   max_bytes is a FileKindError naming the limit.
// - check_output_path(path, what): an output may only be created or replace a regular file. A
//   path that exists as anything else (a device such as /dev/null, a FIFO, a directory, a socket;
//   symbolic links are followed, so a link to /dev/null is refused too) throws FileKindError, as
//   does a parent that is missing, not a directory or not writable. Call it before the work that
//   produces the output, so a bad path is reported at once, not after hours of training.
// - remove_stale_temps(path) removes "<path>.tmp.<pid>" files (regular files only) whose pid is
//   not a live process — what a crashed writer of the same target left behind. Returns the count.
// FileKindError derives from std::invalid_argument: bad input (exit code 2 in the CLI).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mercury::net {

class FileKindError : public std::invalid_argument {
 public:
  // what() = "<where>: <reason>"; callers that name the path their own way use reason().
  FileKindError(const std::string& where, const std::string& reason)
      : std::invalid_argument(where + ": " + reason), reason_(reason) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

inline std::string file_kind_of(const struct stat& st) {
  if (S_ISREG(st.st_mode)) return "a regular file";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISCHR(st.st_mode)) return "a character device";
  if (S_ISBLK(st.st_mode)) return "a block device";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  return "a special file";
}

inline std::string file_kind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return "missing";
    return std::string("unreadable (") + std::strerror(errno) + ")";
  }
  return file_kind_of(st);
}

// For a list of paths tried: "missing", or what `path` is when it is not a regular file
// ("a directory, expected a regular file").
inline std::string unusable_input_note(const std::string& path) {
  const std::string kind = file_kind(path);
  return kind == "missing" ? kind : kind + ", expected a regular file";
}

inline int open_regular_for_reading(const std::string& path, const std::string& what) {
  const std::string where = what + " '" + path + "'";
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int e = errno;
    const std::string kind = file_kind(path);  // a socket fails with ENXIO: name it
    if (kind != "missing" && kind != "a regular file" && kind.rfind("unreadable", 0) != 0)
      throw FileKindError(where, "expected a readable regular file, found " + kind);
    throw FileKindError(where, std::string("cannot open: ") + std::strerror(e));
  }
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  if (!stat_ok || !S_ISREG(st.st_mode)) {
    const std::string kind = stat_ok ? file_kind_of(st) : std::strerror(errno);
    ::close(fd);
    throw FileKindError(where, "expected a readable regular file, found " + kind);
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

inline std::string read_regular_file(const std::string& path, const std::string& what,
                                     std::size_t max_bytes = std::size_t{64} << 20) {
  const int fd = open_regular_for_reading(path, what);
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw FileKindError(what + " '" + path + "'",
                          std::string("cannot read: ") + std::strerror(e));
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > max_bytes) {
      ::close(fd);
      throw FileKindError(what + " '" + path + "'",
                          "expected at most " + std::to_string(max_bytes) + " bytes, found more");
    }
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

inline void check_output_path(const std::string& path, const std::string& what) {
  const std::string where = what + " '" + path + "'";
  if (path.empty()) throw FileKindError(what, "expected a file path, found an empty one");
  const std::string kind = file_kind(path);
  if (kind != "missing" && kind != "a regular file") {
    throw FileKindError(where, "expected a regular file (or a new path) to write, found " + kind +
                                   "; refusing to replace it");
  }
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const std::string dir_kind = file_kind(dir);
  if (dir_kind != "a directory") {
    throw FileKindError(where, "expected its directory '" + dir + "' to exist, found " + dir_kind);
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw FileKindError(where, "cannot create files in '" + dir + "': " + std::strerror(errno));
  }
}

inline int remove_stale_temps(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  int removed = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno == EPERM) continue;  // alive (maybe another user's)
    const std::string full = dir + "/" + name;
    struct stat st {};
    if (::lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(full.c_str()) == 0)
      ++removed;
  }
  ::closedir(d);
  return removed;
}

}  // namespace mercury::net
