// cachet/redis/detail/pending_invalidations.hpp — the keys whose DEL has not reached Redis yet.
//
// IMPLEMENTATION DETAILS
// When erase() (or a put over a key) fails, Redis may still hold the value the caller meant to
// remove or replace. The store records the key here; while it is here, reads of it from this
// process answer a miss, and the store retries its DEL when Redis answers again. Only a DEL that
// succeeds (or a SET of a new value that succeeds) takes a key out. The set is bounded: a key that
// does not fit is counted as a lost invalidation and may be read stale until its TTL.
//
// Concurrency: a mutex guards the set; an atomic count lets the read path skip the mutex while
// the set is empty, which is the steady state. The store changes a key's membership only while it
// holds that key's stripe lock, so a retry's DEL and a concurrent put of the same key are ordered.
// Keys are the full Redis keys (prefix included).
#pragma once

#include <absl/container/flat_hash_set.h>
#include <absl/hash/hash.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace cachet::detail {

class pending_invalidations {
 public:
  explicit pending_invalidations(std::size_t capacity) : capacity_(capacity) {}

  // Records `key`. False (and lost() grows) if the set is full and `key` is not in it. Throws
  // std::bad_alloc.
  bool add(std::string_view key) {
    std::lock_guard<std::mutex> g(mu_);
    if (keys_.contains(key)) return true;
    if (keys_.size() >= capacity_) {
      lost_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    keys_.emplace(key);
    size_.store(keys_.size(), std::memory_order_release);
    return true;
  }

  // Forgets `key` (its DEL or a newer SET reached Redis).
  void remove(std::string_view key) noexcept {
    if (size_.load(std::memory_order_acquire) == 0) return;
    std::lock_guard<std::mutex> g(mu_);
    auto it = keys_.find(key);
    if (it == keys_.end()) return;
    keys_.erase(it);
    size_.store(keys_.size(), std::memory_order_release);
  }

  bool contains(std::string_view key) const {
    if (size_.load(std::memory_order_acquire) == 0) return false;
    std::lock_guard<std::mutex> g(mu_);
    return keys_.contains(key);
  }

  // Up to `n` keys to retry, copied out. Throws std::bad_alloc.
  std::vector<std::string> sample(std::size_t n) const {
    std::vector<std::string> out;
    if (size_.load(std::memory_order_acquire) == 0) return out;
    std::lock_guard<std::mutex> g(mu_);
    for (const std::string& k : keys_) {
      if (out.size() == n) break;
      out.push_back(k);
    }
    return out;
  }

  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::uint64_t lost() const noexcept { return lost_.load(std::memory_order_relaxed); }

 private:
  // Transparent, so lookups by std::string_view need no temporary std::string (absl's own string
  // hash is transparent only for absl::string_view, which is not std::string_view in every build).
  struct key_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return absl::Hash<std::string_view>{}(s);
    }
  };
  struct key_eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };

  const std::size_t capacity_;
  mutable std::mutex mu_;
  absl::flat_hash_set<std::string, key_hash, key_eq> keys_;  // guarded by mu_
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> lost_{0};
};

}  // namespace cachet::detail
