// Crash-safe file replacement: write to a temp file, fsync, rename over the target.
//
// Contract:
//   AtomicFileWriter out(path);   // creates "<path>.tmp.<pid>" (truncating a stale one); first
//                                 // refuses a target that exists as anything but a regular file
//                                 // (a device like /dev/null, a FIFO, a directory: never renamed
//                                 // over) or whose directory is missing (net::FileKindError), and
//                                 // removes temp files of the same target left by dead processes
//   out.write(bytes, n); ...      // appends; short writes and EINTR are retried
//   out.commit();                 // fsync + close + rename(temp, path) + best-effort dir fsync
//   If commit() is never reached (exception, early return) the destructor removes the temp file,
//   so a failed or interrupted write leaves the previous target (if any) untouched and no temp
//   file behind. A crash (power loss, SIGKILL) can leave only a stale "<path>.tmp.<pid>", never
//   a torn target: readers either see the old file or the complete new one.
//   Errors (open/write/fsync/close/rename) throw std::system_error whose what() names the target,
//   the temp file, the byte offset for writes, and the errno text.
//   Not copyable or movable. One writer per target path at a time within a process (the temp
//   name is per process); different processes never collide.
//   POSIX only (open/fsync/rename), which covers Linux and Android targets.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "net/file_kind.hpp"

namespace mercury::io {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string target_path)
      : target_path_(std::move(target_path)),
        temp_path_(target_path_ + ".tmp." + std::to_string(::getpid())) {
    net::check_output_path(target_path_, "output");
    net::remove_stale_temps(target_path_);
    do {
      fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) fail("cannot create temporary file '" + temp_path_ + "'");
  }

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  ~AtomicFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }

  void write(const void* data, size_t size) {
    if (fd_ < 0)
      throw std::logic_error("AtomicFileWriter::write after commit for '" + target_path_ + "'");
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = ::write(fd_, bytes, size);
      if (written < 0) {
        if (errno == EINTR) continue;
        fail("cannot write temporary file '" + temp_path_ + "' at byte offset " +
             std::to_string(bytes_written_));
      }
      bytes += written;
      size -= static_cast<size_t>(written);
      bytes_written_ += static_cast<uint64_t>(written);
    }
  }

  void write(std::string_view text) { write(text.data(), text.size()); }

  // Makes the new contents durable and visible under the target name. Any failure leaves the
  // target untouched (the destructor removes the temp file).
  void commit() {
    if (fd_ < 0)
      throw std::logic_error("AtomicFileWriter::commit twice for '" + target_path_ + "'");
    if (::fsync(fd_) != 0) fail("cannot fsync temporary file '" + temp_path_ + "'");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close temporary file '" + temp_path_ + "'");
    if (::rename(temp_path_.c_str(), target_path_.c_str()) != 0) {
      fail("cannot rename temporary file '" + temp_path_ + "' over the target");
    }
    committed_ = true;
    sync_parent_directory();
  }

  const std::string& target_path() const { return target_path_; }
  const std::string& temp_path() const { return temp_path_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    const int error = errno;
    throw std::system_error(error, std::generic_category(),
                            "writing '" + target_path_ + "': " + what);
  }

  // Persists the rename itself. Best effort: some filesystems refuse fsync on directories, and
  // the new file is already complete and in place at this point.
  void sync_parent_directory() const {
    std::string directory = std::filesystem::path(target_path_).parent_path().string();
    if (directory.empty()) directory = ".";
    const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return;
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }

  std::string target_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t bytes_written_ = 0;
};

// One-shot convenience for small files (configs, reports): replaces `path` with `contents`.
inline void write_file_atomically(const std::string& path, std::string_view contents) {
  AtomicFileWriter out(path);
  out.write(contents);
  out.commit();
}

}  // namespace mercury::io
