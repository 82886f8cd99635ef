// net/mailbox.hpp — the receive side every Transport shares: messages waiting to be received,
// matched exactly by (src, type, key, iteration).
//
// Contract
// - put(m) files m under its (src, type, key, iteration); take(k) returns the oldest message
//   filed under k (messages with one key come out in the order they were put) or nothing.
// - waiting_from(src, limit) describes up to `limit` keys with messages from `src` (for a
//   timeout's message: what did arrive from that peer instead), and count_from(src) how many
//   keys hold one.
// - Not thread-safe: the owning transport's mutex guards it (net::Mesh, net::LocalHub and the
//   simulator's hub all wait on their own condition variable around it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "net/transport.hpp"

namespace mercury::net {

struct MailKey {
  int src = -1;
  uint8_t type = 0;
  uint64_t key = 0;
  uint64_t iteration = 0;
  auto operator<=>(const MailKey&) const = default;
};

inline std::string describe_message(uint8_t type, uint64_t key, uint64_t iteration) {
  return "type " + std::to_string(type) + " key " + std::to_string(key) + " iteration " +
         std::to_string(iteration);
}

class Mailbox {
 public:
  void put(Message&& m) {
    boxes_[MailKey{m.src, m.type, m.key, m.iteration}].push_back(std::move(m));
  }

  std::optional<Message> take(const MailKey& k) {
    const auto it = boxes_.find(k);
    if (it == boxes_.end()) return std::nullopt;
    Message m = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) boxes_.erase(it);
    return m;
  }

  std::size_t count_from(int src) const {
    std::size_t n = 0;
    for (const auto& entry : boxes_) n += entry.first.src == src;
    return n;
  }

  // "type 17 key 2 iteration 5, type 17 key 2 iteration 6, ..." (at most `limit` keys).
  std::string waiting_from(int src, std::size_t limit) const {
    std::string out;
    std::size_t n = 0;
    for (const auto& entry : boxes_) {
      if (entry.first.src != src) continue;
      if (n++ == limit) return out + ", ...";
      if (!out.empty()) out += ", ";
      out += describe_message(entry.first.type, entry.first.key, entry.first.iteration);
    }
    return out;
  }

  bool empty() const { return boxes_.empty(); }

 private:
  std::map<MailKey, std::deque<Message>> boxes_;
};

}  // namespace mercury::net
