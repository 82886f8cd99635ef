// JSON-lines metrics log: one JSON object per line, each with an "event" key.
//
// Contract:
//   MetricsWriter writer(path);  // opens for append (a resumed run continues the same log);
//                                // empty path = disabled (write() still validates, writes
//                                // nothing). Open failure throws std::runtime_error naming the
//                                // path and the errno text.
//   writer.write(obj);           // obj must be a JSON object with an "event" key, otherwise
//                                // std::invalid_argument (also when disabled, so a bad call is
//                                // caught in tests). Appends obj.dump() + '\n' and flushes, so a
//                                // crash loses at most the line being written; invalid UTF-8 in
//                                // strings is replaced (U+FFFD) rather than failing the run.
//                                // Write errors (disk full) throw std::runtime_error.
//   writer.write_line(text);     // a pre-formatted JSON object (no newline) for per-step events
//                                // on the no-allocation path; the caller guarantees it is valid
//                                // JSON; only its shape ({...}) is checked.
//   Thread-safe: lines from concurrent writers never interleave. Move-only.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "net/file_kind.hpp"

namespace mercury::io {

class MetricsWriter {
 public:
  MetricsWriter() = default;  // disabled

  explicit MetricsWriter(std::string path) : path_(std::move(path)) {
    if (path_.empty()) return;
    const std::string kind = net::file_kind(path_);  // appending to a FIFO would block
    if (kind != "missing" && kind != "a regular file") {
      throw net::FileKindError(
          "metrics log '" + path_ + "'",
          "expected a regular file (or a new path) to append to, found " + kind);
    }
    file_.reset(std::fopen(path_.c_str(), "ae"));  // "e": O_CLOEXEC
    if (!file_) {
      throw std::runtime_error("metrics log '" + path_ +
                               "': cannot open for appending: " + std::strerror(errno));
    }
  }

  bool enabled() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }

  void write(const nlohmann::json& record) {
    if (!record.is_object() || !record.contains("event")) {
      throw std::invalid_argument(
          "metrics log '" + path_ + "': expected a JSON object with an \"event\" key, found " +
          record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 200));
    }
    if (!file_) return;
    std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += '\n';
    append(line);
  }

  void write_line(std::string_view line) {
    if (line.size() < 2 || line.front() != '{' || line.back() != '}') {
      throw std::invalid_argument("metrics log '" + path_ +
                                  "': expected a JSON object line, found '" +
                                  std::string(line.substr(0, 200)) + "'");
    }
    if (!file_) return;
    std::lock_guard<std::mutex> lock(*mutex_);
    if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() ||
        std::fputc('\n', file_.get()) == EOF || std::fflush(file_.get()) != 0) {
      throw std::runtime_error("metrics log '" + path_ +
                               "': cannot write: " + std::strerror(errno));
    }
  }

 private:
  void append(const std::string& line) {
    std::lock_guard<std::mutex> lock(*mutex_);
    if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() ||
        std::fflush(file_.get()) != 0) {
      throw std::runtime_error("metrics log '" + path_ +
                               "': cannot write: " + std::strerror(errno));
    }
  }

  struct FileCloser {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // keeps the class movable
};

}  // namespace mercury::io
