// cachet/miss_batcher.hpp — misses of different keys, loaded together: one load_all() for the
// misses that arrive within a short window (a DataLoader for a cache's loader).
//
// Purpose: single-flight merges the misses of one key; a cold cache misses on thousands of
// different keys at once, and each miss is a query. miss_batcher wraps a BulkLoader (source.hpp:
// a loader with load_all) and is itself a Loader: a load(key) joins the batch being gathered, and
// when the batch holds max_batch keys, or max_delay has passed since its first key arrived, one
// thread loads the whole batch with one load_all() call and every caller gets its own key's
// answer. Keys that arrive while a batch is loading gather into the next one. The patterns still
// single-flight per key above it (a key is in at most one of their loads at a time), and a key
// asked for twice within one batch is loaded once.
//
//   struct user_db { std::optional<User> load(const int&);
//                    std::vector<std::pair<int, User>> load_all(std::span<const int>); };
//   cachet::miss_batcher<int, User, user_db> batched({.max_batch = 64,
//                                                     .max_delay = std::chrono::microseconds(200)},
//                                                    user_db{&db});
//   cachet::read_through<store_t, decltype(batched)&> users({.ttl = 5min}, batched);
//   // With an origin_limiter too, one permit per batch (a batch is one query):
//   //   cachet::miss_batcher<int, User, cachet::limited_loader<user_db>> b(opts, {limit, db});
//
// The price: a miss that arrives when no batch is gathering waits up to max_delay for company
// before its query starts. With max_delay = 0 a batch closes as soon as it opens, so nothing is
// batched (a way to switch batching off without unwrapping the loader). Nothing batches unless a
// loader is wrapped: off by default.
//
// Thread safety: every member may be called from any thread. The batch's load_all() runs on the
// thread whose key opened the batch, with no lock held; the others wait for it on a condition
// variable (a futex), without a deadline, as single_flight's followers do. Blocking: load() takes
// the batcher's mutex briefly, waits at most max_delay (real time, std::chrono::steady_clock) for
// its batch to fill if it opened it, then for the batch's load.
// Exception safety: the constructor throws cachet::invalid_option naming a bad option. If
// load_all() throws, every caller of that batch gets the same exception (std::exception_ptr) and
// the next batch is unaffected. load() may throw std::bad_alloc before it joins a batch (nothing
// changed then).
#pragma once

#include <absl/container/flat_hash_map.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/source.hpp"

namespace cachet {

struct miss_batcher_options {
  // Keys in one batch, in [1, 2^16]: a batch that reaches it is loaded at once.
  std::size_t max_batch = 64;
  // How long a batch gathers keys after its first one, in [0, 1 minute].
  std::chrono::nanoseconds max_delay = std::chrono::microseconds(200);
};

// Counters of a miss_batcher (exact; the snapshot is taken under its mutex).
struct miss_batcher_stats {
  std::uint64_t requests = 0;        // load() calls
  std::uint64_t batches = 0;         // load_all() calls made for batches
  std::uint64_t keys_loaded = 0;     // distinct keys in those calls
  std::uint64_t duplicates = 0;      // load() calls for a key already in their batch
  std::uint64_t full_batches = 0;    // batches closed by max_batch (the rest by max_delay)
  std::uint64_t failed_batches = 0;  // batches whose load_all() threw
  std::uint64_t largest_batch = 0;   // most distinct keys in one batch so far
};

template <class K, class V, class Loader, class Hash = cachet::hash<K>,
          class KeyEqual = std::equal_to<>>
requires bulk_loader<Loader, K, V>
class miss_batcher {
 public:
  using key_type = K;
  using mapped_type = V;

  // Validates `opts` (throws invalid_option naming the first bad one).
  miss_batcher(miss_batcher_options opts, Loader loader)
      : opts_(validated(opts)), loader_(std::move(loader)) {}
  miss_batcher(const miss_batcher&) = delete;
  miss_batcher& operator=(const miss_batcher&) = delete;

  // The answer for `key` from the batch it joins (std::nullopt: the source has no such key).
  // Throws what that batch's load_all() threw, and std::bad_alloc.
  std::optional<V> load(const K& key) {
    std::unique_lock<std::mutex> lock(mu_);
    std::shared_ptr<batch> b = open_;
    const bool opens = b == nullptr;
    if (opens) b = std::make_shared<batch>();     // may throw: nothing changed
    const std::size_t pos = b->add(key, stats_);  // may throw: nothing changed
    if (opens) {
      open_ = b;
      b->deadline =
          std::chrono::steady_clock::now() +
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(opts_.max_delay);
    }
    ++stats_.requests;
    if (!b->closed && b->keys.size() >= opts_.max_batch) {
      close(*b);
      ++stats_.full_batches;
      cv_.notify_all();  // the thread that opened it may be waiting for it to fill
    }
    if (opens) {
      cv_.wait_until(lock, b->deadline, [&] { return b->closed; });
      if (!b->closed) close(*b);
      lock.unlock();
      run(*b);
      lock.lock();
      b->done = true;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return b->done; });
    }
    lock.unlock();  // a done batch no longer changes: copy the answer without the mutex
    if (b->error) std::rethrow_exception(b->error);
    return b->results[pos];
  }

  // Passed through to the inner loader's load_all, unbatched (the patterns' own bulk loads are
  // batches already).
  decltype(auto) load_all(std::span<const K> keys) { return loader_.load_all(keys); }

  miss_batcher_stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  const miss_batcher_options& options() const noexcept { return opts_; }
  Loader& inner() noexcept { return loader_; }

 private:
  struct batch {
    std::vector<K> keys;  // distinct, in arrival order
    absl::flat_hash_map<K, std::size_t, Hash, KeyEqual> index;
    std::vector<std::optional<V>> results;  // results[i] answers keys[i], once done
    std::exception_ptr error;
    std::chrono::steady_clock::time_point deadline;
    bool closed = false;  // no longer gathering keys
    bool done = false;    // results or error are set

    // The position of `key`, added if new. Strong guarantee against std::bad_alloc.
    std::size_t add(const K& key, miss_batcher_stats& st) {
      if (auto it = index.find(key); it != index.end()) {
        ++st.duplicates;
        return it->second;
      }
      keys.push_back(key);
      try {
        index.emplace(key, keys.size() - 1);
      } catch (...) {
        keys.pop_back();
        throw;
      }
      return keys.size() - 1;
    }
  };

  // Called with mu_ held.
  void close(batch& b) noexcept {
    b.closed = true;
    if (open_.get() == &b) open_.reset();
    ++stats_.batches;
    stats_.keys_loaded += b.keys.size();
    if (b.keys.size() > stats_.largest_batch) stats_.largest_batch = b.keys.size();
  }

  // The batch's load, with no lock held; its outcome goes into `b` (results or error).
  void run(batch& b) noexcept {
    try {
      b.results = load_all_from<K, V, Hash, KeyEqual>(loader_, std::span<const K>(b.keys));
    } catch (...) {
      b.error = std::current_exception();
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.failed_batches;
    }
  }

  static miss_batcher_options validated(miss_batcher_options o) {
    if (o.max_batch < 1 || o.max_batch > (std::size_t{1} << 16)) {
      throw invalid_option("max_batch",
                           "= " + std::to_string(o.max_batch) + ": must be in [1, 65536]");
    }
    if (o.max_delay < std::chrono::nanoseconds::zero() || o.max_delay > std::chrono::minutes(1)) {
      throw invalid_option("max_delay", "must be in [0, 1 minute]");
    }
    return o;
  }

  const miss_batcher_options opts_;
  Loader loader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<batch> open_;  // the batch gathering keys, if any; guarded by mu_
  miss_batcher_stats stats_{};   // guarded by mu_
};

}  // namespace cachet
