// Sequential read-only file access for loaders that must validate sizes before allocating.
//
// Contract:
//   InputFile file(path);          // throws std::system_error ("cannot open '<path>': <errno>")
//                                  // Opened non-blocking and checked on the descriptor: a FIFO,
//                                  // device or socket is refused (net::FileKindError, "expected a
//                                  // regular file, found a FIFO") instead of hanging or reading
//                                  // forever; a directory is EISDIR.
//   file.size()                    // byte size (fstat)
//   file.read_fully(dst, n)        // reads up to n bytes, fewer only at end of file; returns
//                                  // the count. EINTR and short reads are retried.
//   file.seek(offset)              // next read starts at `offset` (regular files)
//   file.offset()                  // current position (for error messages)
//   Read errors throw std::system_error naming the path, the byte offset and the errno text.
//   Move-only; closes the descriptor on destruction. Not thread-safe (one reader per object).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "net/file_kind.hpp"

namespace mercury::io {

class InputFile {
 public:
  explicit InputFile(std::string path) : path_(std::move(path)) {
    do {
      fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) {
      const int error = errno;
      const std::string kind = net::file_kind(path_);  // a socket fails with ENXIO: name it
      if (kind == "a socket" || kind == "a special file")
        throw net::FileKindError("cannot read '" + path_ + "'",
                                 "expected a regular file, found " + kind);
      errno = error;
      fail("cannot open '" + path_ + "'");
    }
    struct stat info {};
    const bool stat_ok = ::fstat(fd_, &info) == 0;
    if (!stat_ok || S_ISDIR(info.st_mode)) {
      const int error = stat_ok ? EISDIR : errno;
      close();  // the destructor does not run for a throwing constructor
      errno = error;
      fail("cannot read '" + path_ + "'");
    }
    if (!S_ISREG(info.st_mode)) {
      close();
      throw net::FileKindError("cannot read '" + path_ + "'",
                               "expected a regular file, found " + net::file_kind_of(info));
    }
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);  // reads block as usual
    size_ = static_cast<uint64_t>(info.st_size);
  }

  InputFile(InputFile&& other) noexcept
      : path_(std::move(other.path_)),
        fd_(std::exchange(other.fd_, -1)),
        size_(other.size_),
        offset_(other.offset_) {}
  InputFile& operator=(InputFile&& other) noexcept {
    if (this != &other) {
      close();
      path_ = std::move(other.path_);
      fd_ = std::exchange(other.fd_, -1);
      size_ = other.size_;
      offset_ = other.offset_;
    }
    return *this;
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { close(); }

  const std::string& path() const { return path_; }
  std::optional<uint64_t> size() const { return size_; }
  uint64_t offset() const { return offset_; }

  // Positions the next read at `offset` bytes from the start (regular files).
  void seek(uint64_t offset) {
    if (::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0) {
      fail("cannot seek '" + path_ + "' to byte offset " + std::to_string(offset));
    }
    offset_ = offset;
  }

  size_t read_fully(void* destination, size_t count) {
    auto* bytes = static_cast<char*>(destination);
    size_t total = 0;
    while (total < count) {
      const ssize_t got = ::read(fd_, bytes + total, count - total);
      if (got < 0) {
        if (errno == EINTR) continue;
        fail("cannot read '" + path_ + "' at byte offset " + std::to_string(offset_));
      }
      if (got == 0) break;
      total += static_cast<size_t>(got);
      offset_ += static_cast<uint64_t>(got);
    }
    return total;
  }

 private:
  [[noreturn]] static void fail(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string path_;
  int fd_ = -1;
  std::optional<uint64_t> size_;
  uint64_t offset_ = 0;
};

}  // namespace mercury::io
