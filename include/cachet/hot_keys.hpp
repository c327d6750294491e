// cachet/hot_keys.hpp — which keys take the traffic: a sampled top-k over any store.
//
// Purpose: a hot key melts one shard, one Redis node, or the origin behind a miss. hot_key_tracker
// keeps an approximate top-k of the keys it is shown (Space-Saving: Metwally, Agrawal, El Abbadi,
// "Efficient computation of frequent and top-k elements in data streams", ICDT 2005), and
// tracked_store<Store> wraps any cachet::store so that its reads feed one, at a cost near zero
// on the read path: one thread-local countdown per read; one read in `sample_every` takes the
// tracker's mutex with try_lock (a busy tracker drops the sample) and updates the summary.
// Measured (bench/RESULTS.md, "Hot-key tracking cost"): over a sharded_store get of 251
// instructions, +4 for the countdown alone, +14 (5%) at the default 1 in 64, +43 at 1 in 16, with
// every sample a key new to the summary (the worst case).
//
//   cachet::tracked_store<store_t> users({.sample_every = 64, .capacity = 256},
//                                        store_t::options_type{.max_entries = 100'000});
//   users.get(42);
//   for (const auto& h : users.tracker().hot_keys(10))
//     log(h.key, h.share);  // share of the sampled reads, e.g. 0.31
//
// Accuracy: with `capacity` counters, Space-Saving over the sampled stream of N reads reports
// every key read more than N / capacity times, and a reported key's count overestimates its true
// sampled count by at most its `error` (also <= N / capacity). Sampling adds the usual binomial
// noise: a key with share p has a relative error of about 1 / sqrt(p x sampled reads). Dropped
// samples (a busy tracker) are counted.
//
// Thread safety: every member may be called from any thread. hot_keys() copies the summary under
// the mutex (blocking record() meanwhile, which then drops its samples). The sampling countdown is
// per thread and per key type: trackers of one key type read on one thread share it, so each sees
// its share of that thread's 1-in-sample_every samples.
// Exception safety: record() never throws (a std::bad_alloc while adding a key drops the sample and
// resets the summary);
// hot_keys() and the constructor throw std::bad_alloc; the constructor throws invalid_option.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cachet/detail/saturate.hpp"
#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/store.hpp"

namespace cachet {

struct hot_key_options {
  // Record one read in this many, in [1, 2^20] (per thread: a countdown, no shared state).
  std::uint32_t sample_every = 64;
  // Counters kept (keys monitored), in [1, 2^20].
  std::size_t capacity = 256;
};

template <class K, class Hash = cachet::hash<K>, class KeyEqual = std::equal_to<>>
class hot_key_tracker {
 public:
  struct entry {
    K key;
    std::uint64_t count = 0;  // sampled reads counted for the key (an overestimate by <= error)
    std::uint64_t error = 0;  // the count it inherited when it replaced another key
    double share = 0;         // count / every sampled read recorded
  };

  explicit hot_key_tracker(hot_key_options opts = {}) : opts_(validated(opts)) {
    counters_.reserve(opts_.capacity);
    heap_.reserve(opts_.capacity);
    index_.reserve(opts_.capacity);
  }
  hot_key_tracker(const hot_key_tracker&) = delete;
  hot_key_tracker& operator=(const hot_key_tracker&) = delete;

  // A read of `key`: counted once in sample_every calls on this thread. Never blocks, never
  // throws. The key is copied only when sampled and new to the summary.
  void record(const K& key) noexcept {
    thread_local std::uint32_t countdown = 0;
    if (countdown != 0) {
      --countdown;
      return;
    }
    countdown = opts_.sample_every - 1;
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    try {
      add(key);
    } catch (...) {
      // std::bad_alloc copying the key or growing the index: the summary may be inconsistent,
      // so it starts over (clear() does not throw).
      counters_.clear();
      heap_.clear();
      index_.clear();
      total_ = 0;
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // The `n` keys with the highest counts, highest first. Throws std::bad_alloc.
  std::vector<entry> hot_keys(std::size_t n) const {
    std::vector<entry> out;
    std::lock_guard<std::mutex> lock(mu_);
    out.reserve(counters_.size());
    for (const counter& c : counters_) {  // every counter in use (ids below counters_.size())
      out.push_back(
          {c.key, c.count, c.error,
           total_ == 0 ? 0.0 : static_cast<double>(c.count) / static_cast<double>(total_)});
    }
    std::sort(out.begin(), out.end(),
              [](const entry& a, const entry& b) { return a.count > b.count; });
    if (out.size() > n) out.resize(n);
    return out;
  }

  // Sampled reads recorded, and samples dropped because the tracker was busy.
  std::uint64_t sampled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

  // Forgets every count (e.g. at the start of a measurement window).
  void reset() {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.clear();
    heap_.clear();
    index_.clear();
    total_ = 0;
  }

  const hot_key_options& options() const noexcept { return opts_; }

 private:
  struct counter {
    K key;
    std::uint64_t count;
    std::uint64_t error;
    std::uint32_t at;  // its position in heap_
  };

  static hot_key_options validated(hot_key_options o) {
    if (o.sample_every < 1 || o.sample_every > (1u << 20)) {
      throw invalid_option("sample_every",
                           "= " + std::to_string(o.sample_every) + ": must be in [1, 2^20]");
    }
    if (o.capacity < 1 || o.capacity > (std::size_t{1} << 20)) {
      throw invalid_option("capacity",
                           "= " + std::to_string(o.capacity) + ": must be in [1, 2^20]");
    }
    return o;
  }

  // Space-Saving, under mu_: a monitored key's count grows by one; a new key takes a free counter,
  // or replaces the key with the smallest count and inherits that count as its error. Counters
  // stay where they are; heap_ orders their ids as a min-heap on count (each counter knows its
  // place in it), and index_ maps a key to its counter: a sift moves ids, never rehashes keys.
  void add(const K& key) {
    ++total_;
    if (auto it = index_.find(key); it != index_.end()) {
      counter& c = counters_[it->second];
      ++c.count;
      sift_down(c.at);
      return;
    }
    if (counters_.size() < opts_.capacity) {
      const auto id = static_cast<std::uint32_t>(counters_.size());
      counters_.push_back({key, 1, 0, static_cast<std::uint32_t>(heap_.size())});
      heap_.push_back(id);
      index_.emplace(key, id);
      sift_up(heap_.size() - 1);
      return;
    }
    K copy(key);                             // may throw: nothing changed yet
    const std::uint32_t id = heap_.front();  // the smallest count
    counter& min = counters_[id];
    index_.erase(min.key);
    min.key = std::move(copy);
    index_.emplace(min.key, id);
    min.error = min.count;
    ++min.count;
    sift_down(0);
  }

  void swap_at(std::size_t a, std::size_t b) noexcept {
    std::swap(heap_[a], heap_[b]);
    counters_[heap_[a]].at = static_cast<std::uint32_t>(a);
    counters_[heap_[b]].at = static_cast<std::uint32_t>(b);
  }
  std::uint64_t count_at(std::size_t i) const noexcept { return counters_[heap_[i]].count; }
  void sift_up(std::size_t i) noexcept {
    while (i > 0) {
      const std::size_t p = (i - 1) / 2;
      if (count_at(p) <= count_at(i)) break;
      swap_at(p, i);
      i = p;
    }
  }
  void sift_down(std::size_t i) noexcept {
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t smallest = i;
      const std::size_t l = 2 * i + 1, r = l + 1;
      if (l < n && count_at(l) < count_at(smallest)) smallest = l;
      if (r < n && count_at(r) < count_at(smallest)) smallest = r;
      if (smallest == i) return;
      swap_at(smallest, i);
      i = smallest;
    }
  }

  const hot_key_options opts_;
  mutable std::mutex mu_;
  std::vector<counter> counters_;                                // by id; by mu_
  std::vector<std::uint32_t> heap_;                              // ids, min-heap on count; by mu_
  absl::flat_hash_map<K, std::uint32_t, Hash, KeyEqual> index_;  // key -> id; by mu_
  std::uint64_t total_ = 0;                                      // by mu_
  std::atomic<std::uint64_t> dropped_{0};
};

// Any cachet::store whose get() calls feed a hot_key_tracker; every other member forwards. Meets
// cachet::store itself, so the patterns run over it (cache_aside<tracked_store<...>>).
// ---- stampede detection: keys missed too often within a window

struct stampede_options {
  // The window misses are counted over, > 0 (on the store's clock).
  std::chrono::nanoseconds window = std::chrono::seconds(1);
  // A key missed at least this many times within one window is reported, >= 1.
  std::uint64_t threshold = 100;
  // The sampling and the top-k behind it (misses are rarer than reads: every one by default).
  hot_key_options tracking{.sample_every = 1, .capacity = 64};
};

// Flags the keys behind a stampede: a key whose misses within one window reach a threshold (the
// origin is being asked for it again and again: an expiry under load, a key nobody can cache, a
// negative lookup flood). Misses go to a hot_key_tracker (sampled, try_lock, as hot_key_tracker
// says); when a window ends (checked by the next record_miss or last_window() on the clock), the
// keys whose guaranteed count (Space-Saving's count - error, times sample_every) reached the
// threshold become last_window()'s answer and are counted in stampedes(), and the tracker starts
// over. With sample_every > 1 the estimate is the sampled count scaled up: a key near the
// threshold may go either way. Thread-safe; record_miss() never blocks or throws.
template <class K, class Clock, class Hash = cachet::hash<K>, class KeyEqual = std::equal_to<>>
class stampede_detector {
 public:
  struct stampede {
    K key;
    std::uint64_t misses;  // estimated misses in the window (a lower bound without sampling)
  };

  explicit stampede_detector(stampede_options opts = {}, Clock clock = Clock{})
      : opts_(validated(opts)),
        tracker_(opts_.tracking),
        clock_(clock),
        window_end_(detail::saturating_add(clock_.now().count(), opts_.window.count())) {}
  stampede_detector(const stampede_detector&) = delete;
  stampede_detector& operator=(const stampede_detector&) = delete;

  // A miss of `key`.
  void record_miss(const K& key) noexcept {
    roll(clock_.now().count());
    tracker_.record(key);
  }

  // The keys that reached the threshold in the last window that ended, most missed first.
  // Throws std::bad_alloc.
  std::vector<stampede> last_window() {
    roll(clock_.now().count());
    std::lock_guard<std::mutex> g(mu_);
    return last_;
  }
  // Keys flagged so far (a key counts once per window it was flagged in).
  std::uint64_t stampedes() const noexcept { return flagged_.load(std::memory_order_relaxed); }
  const stampede_options& options() const noexcept { return opts_; }

 private:
  static stampede_options validated(stampede_options o) {
    if (o.window <= std::chrono::nanoseconds::zero()) {
      throw invalid_option("window", "must be positive: the span misses are counted over");
    }
    if (o.threshold < 1) {
      throw invalid_option("threshold", "must be >= 1: misses of one key within a window");
    }
    return o;
  }

  // Closes the window if `now` is past its end: the thread that moves window_end_ on judges it.
  void roll(std::int64_t now) noexcept {
    std::int64_t end = window_end_.load(std::memory_order_acquire);
    if (now < end) return;
    const std::int64_t w = opts_.window.count();
    const std::int64_t next = detail::saturating_add(end, ((now - end) / w + 1) * w);
    if (!window_end_.compare_exchange_strong(end, next, std::memory_order_acq_rel)) return;
    try {
      std::vector<stampede> found;
      for (auto& h : tracker_.hot_keys(opts_.tracking.capacity)) {
        const std::uint64_t misses = (h.count - h.error) * opts_.tracking.sample_every;
        if (misses >= opts_.threshold) found.push_back({std::move(h.key), misses});
      }
      tracker_.reset();
      std::sort(found.begin(), found.end(),
                [](const stampede& a, const stampede& b) { return a.misses > b.misses; });
      flagged_.fetch_add(found.size(), std::memory_order_relaxed);
      std::lock_guard<std::mutex> g(mu_);
      last_ = std::move(found);
    } catch (...) {  // std::bad_alloc: this window goes unjudged
      tracker_.reset();
    }
  }

  const stampede_options opts_;
  hot_key_tracker<K, Hash, KeyEqual> tracker_;
  Clock clock_;
  std::atomic<std::int64_t> window_end_;
  std::atomic<std::uint64_t> flagged_{0};
  std::mutex mu_;
  std::vector<stampede> last_;  // by mu_
};

template <class Store>
class tracked_store {
  static_assert(check_store<Store>());

 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using clock_type = typename Store::clock_type;
  using hasher = typename Store::hasher;
  using key_equal = typename Store::key_equal;
  using tracker_type = hot_key_tracker<key_type, hasher, key_equal>;
  template <class V2>
  using rebind_value = tracked_store<typename Store::template rebind_value<V2>>;

  using stampede_detector_type = stampede_detector<key_type, clock_type, hasher, key_equal>;

  // Constructs the tracker from `opts` and the store from `args`.
  template <class... Args>
  explicit tracked_store(hot_key_options opts, Args&&... args)
      : tracker_(opts), store_(std::forward<Args>(args)...) {}
  // The same, and a stampede detector fed every get() that misses, on the store's clock.
  template <class... Args>
  tracked_store(hot_key_options opts, stampede_options stampedes, Args&&... args)
      : tracker_(opts),
        store_(std::forward<Args>(args)...),
        stampedes_(std::make_unique<stampede_detector_type>(stampedes, store_.clock())) {}

  std::optional<mapped_type> get(const key_type& key) {
    tracker_.record(key);
    std::optional<mapped_type> v = store_.get(key);
    if (!v && stampedes_) stampedes_->record_miss(key);
    return v;
  }
  std::optional<mapped_type> peek(const key_type& key) { return store_.peek(key); }
  bool contains(const key_type& key) { return static_cast<bool>(store_.contains(key)); }
  put_result put(key_type key, mapped_type value) {
    return store_.put(std::move(key), std::move(value));
  }
  template <class Rep, class Period>
  put_result put(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) {
    return store_.put(std::move(key), std::move(value), ttl);
  }
  template <detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, Pred still_valid) {
    return store_.put_if(std::move(key), std::move(value), still_valid);
  }
  template <class Rep, class Period, detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl,
                    Pred still_valid) {
    return store_.put_if(std::move(key), std::move(value), ttl, still_valid);
  }
  bool erase(const key_type& key) { return static_cast<bool>(store_.erase(key)); }
  const clock_type& clock() const noexcept { return store_.clock(); }

  // The store's own stats(), where it has one.
  template <class S = Store>
  auto stats() const noexcept -> decltype(std::declval<const S&>().stats()) {
    return store_.stats();
  }

  tracker_type& tracker() noexcept { return tracker_; }
  const tracker_type& tracker() const noexcept { return tracker_; }
  // The stampede detector, or null when constructed without stampede_options.
  stampede_detector_type* stampedes() noexcept { return stampedes_.get(); }
  const stampede_detector_type* stampedes() const noexcept { return stampedes_.get(); }
  Store& inner() noexcept { return store_; }
  const Store& inner() const noexcept { return store_; }

 private:
  tracker_type tracker_;
  Store store_;
  std::unique_ptr<stampede_detector_type> stampedes_;  // after store_: it copies its clock
};

}  // namespace cachet
