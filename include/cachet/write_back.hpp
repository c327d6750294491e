// cachet/write_back.hpp — the write-back (write-behind) pattern: writes are acknowledged by the
// cache and reach the source later, in batches.
//
// Purpose: for write-heavy data where many updates of one key can be merged (view counters, last
// seen times, session state) and a bounded loss window on a crash is acceptable. put() and erase()
// record the write in a dirty buffer and in the cache and return at once; a flusher thread writes
// the dirty entries to the Source in batches of up to max_batch, at the latest max_delay after a
// key became dirty (sooner when a batch is full). Many writes of one key before it is flushed
// coalesce into one source write.
//
// Guarantees (each has a test):
//   - Every acknowledged write reaches the Source once flush() returns, and once the destructor
//     returns. Writes to one key reach the Source in the order they were acknowledged, and only
//     the last of those that coalesced is written.
//   - Reads see acknowledged writes (read-your-writes) whether or not they are flushed: the dirty
//     buffer holds every unflushed write, apart from the cache, so evicting or expiring a dirty
//     entry from the cache never loses its write; a read that misses the cache is served from the
//     dirty buffer before the Source is asked. A read that starts after put() or erase() returned
//     gets that write (or a later one): it never joins a load that began before the write, and a
//     load that read the Source before the write cannot fill the cache over it
//     (detail/guarded_loader.hpp). So `put(k, get(k).value_or(0) + 1)` from one thread at a time
//     loses no increment. A value re-cached from the dirty buffer keeps the deadline its put()
//     gave.
//   - A failing Source is retried with exponential backoff (retry_initial doubling up to
//     retry_max) for as long as it fails; its entries stay dirty and later writes keep coalescing
//     into them. Each failure is counted (flush_failures, retries) and passed to on_error.
//   - The dirty buffer is bounded by max_dirty entries. A write of a new key at the bound either
//     blocks until the flusher makes room (backlog_policy::block, the default) or writes the Source
//     itself, synchronously, like write_through (backlog_policy::write_through). Nothing is
//     dropped.
//   - Loss window: the dirty buffer lives in this process. If the process dies (a crash, SIGKILL,
//     power loss) the writes not yet flushed are lost: at most max_dirty keys, each at most
//     max_delay old plus the time the Source has been failing. Call flush() where a write must be
//     durable before you go on.
//
// Source writes: with store_all(std::span<const std::pair<K, V>>) in the Source, a batch's
// values go in one call (one transaction, say), and the batch is retried whole if it throws; if
// not, store(key, value) and erase(key) are called per entry and only the entries not yet written
// are retried. Either way a write may be repeated after a failure, so the Source's writes must be
// idempotent (an upsert, a delete). Erases are always per key.
//
// Thread safety: all members are thread-safe. One flusher thread, started by the constructor,
// makes every Source write except write_through fallbacks; on_error runs on it. No lock of this
// object is held while the Source or on_error runs. The store's removal listener (if one is set
// in the store options) runs while a dirty-buffer lock is held: it must not call this object.
// max_delay and the backoff are measured on std::chrono::steady_clock; the store's own clock
// (which may be a manual_clock) governs only the cache's TTLs.
//
// Blocking: put()/erase() take a dirty-buffer shard's mutex; at the backlog bound under
// backlog_policy::block they wait for the flusher. flush() waits until the writes acknowledged
// before it are in the Source, however long the Source keeps failing (flush_for() gives up after
// a timeout). The destructor flushes like flush(); give shutdown_timeout a value to bound it.
//
// Exception safety: put()/erase() have no effect if they throw before the write is recorded
// (std::bad_alloc, an exception from the key's hash or equality, or, under write_through
// fallback, from the Source); once recorded, the write is acknowledged, and a failure of the cache
// step only drops the cache entry. get() rethrows a failed load to every waiter and caches
// nothing.
//
// Example:
//   struct view_counts {   // a Source; store_all writes a batch in one transaction
//     std::optional<long> load(const std::string& page);
//     void store(const std::string& page, const long& views);
//     void store_all(std::span<const std::pair<std::string, long>> batch);
//     void erase(const std::string& page);
//   };
//   cachet::write_back<cachet::sharded_store<std::string, long>, view_counts> views(
//       view_counts{db}, {.max_batch = 500, .max_delay = std::chrono::milliseconds(200)},
//       cachet::store_options<std::string, long>{.max_entries = 100'000});
//   views.put("/home", views.get("/home").value_or(0) + 1);   // acknowledged at once
//   views.flush();                                              // now in the database
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cachet/detail/dirty_buffer.hpp"
#include "cachet/detail/guarded_loader.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/options.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/source.hpp"
#include "cachet/store.hpp"

namespace cachet {

// What a write of a new key does when the dirty buffer holds max_dirty entries.
enum class backlog_policy : unsigned char {
  block,          // wait until the flusher has made room (default)
  write_through,  // write the Source on the caller's thread, then invalidate the cache entry
};

// Passed to write_back_options::on_error after a batch failed.
struct flush_error {
  std::exception_ptr error;             // what the Source threw
  std::size_t batch_size = 0;           // entries in the failed batch (all still dirty)
  std::uint64_t attempt = 0;            // 1 for the first failure of this run of failures
  std::chrono::nanoseconds retry_in{};  // backoff before the next attempt
};

struct write_back_options {
  // Most entries per batch written to the Source, >= 1.
  std::size_t max_batch = 256;
  // The longest a write waits to be flushed while the Source is healthy, > 0.
  std::chrono::nanoseconds max_delay = std::chrono::milliseconds(100);
  // Bound of the dirty buffer (unflushed keys), >= max_batch.
  std::size_t max_dirty = 1 << 16;
  // What a write of a new key does at the bound.
  backlog_policy when_full = backlog_policy::block;
  // Backoff after a failed batch: retry_initial, doubling up to retry_max; both > 0.
  std::chrono::nanoseconds retry_initial = std::chrono::milliseconds(10);
  std::chrono::nanoseconds retry_max = std::chrono::seconds(5);
  // How long the destructor keeps trying to flush; 0 = until everything is written. Writes still
  // dirty when it expires are reported to on_error (as abandoned_writes_error) and counted in
  // stats().abandoned.
  std::chrono::nanoseconds shutdown_timeout{0};
  // Called on the flusher thread after each failed batch, with no lock held. Exceptions it
  // throws are ignored.
  std::function<void(const flush_error&)> on_error{};
};

// Reported to on_error when the destructor gave up after shutdown_timeout.
class abandoned_writes_error : public std::runtime_error {
 public:
  explicit abandoned_writes_error(std::size_t n)
      : std::runtime_error("cachet: write_back destroyed with " + std::to_string(n) +
                           " writes the Source did not accept before shutdown_timeout"),
        count(n) {}
  std::size_t count;
};

struct write_back_stats {
  std::uint64_t writes = 0;          // put() and erase() calls acknowledged
  std::uint64_t coalesced = 0;       // writes that replaced a dirty value before it was written
  std::uint64_t dirty = 0;           // keys waiting to be written now (including a batch in flight)
  std::uint64_t flushed = 0;         // entries written to the Source by the flusher
  std::uint64_t batches = 0;         // batches the Source accepted
  std::uint64_t flush_failures = 0;  // batch attempts that threw
  std::uint64_t retries = 0;         // batch attempts that followed a failure
  std::uint64_t write_through_fallbacks = 0;  // writes made synchronously at the backlog bound
  std::uint64_t blocked_writes = 0;           // writes that waited for room at the bound
  std::uint64_t abandoned = 0;                // writes left unwritten when shutdown_timeout expired
  std::uint64_t hits = 0;                     // get() found the key in the cache
  std::uint64_t misses = 0;      // get() did not (served by the dirty buffer or a load)
  std::uint64_t dirty_hits = 0;  // misses served from the dirty buffer
  single_flight_stats loads;     // loads from the Source
};

template <class Store, class Source>
class write_back {
 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using store_type = Store;
  static_assert(check_store<Store>());
  static_assert(check_source<Source, key_type, mapped_type>());

  // Takes the Source and the write-back options, then constructs the store from `store_args`
  // (e.g. its store_options). Throws invalid_option naming a bad option. Starts the flusher.
  template <class... StoreArgs>
  write_back(Source source, write_back_options opts, StoreArgs&&... store_args)
      : opts_(validated(std::move(opts))),
        source_(std::forward<Source>(source)),
        store_(std::forward<StoreArgs>(store_args)...),
        dirty_(opts_.max_dirty, opts_.max_delay),
        core_(core_type::options_for(store_)) {
    flusher_ = std::thread([this] { run(); });
  }

  write_back(const write_back&) = delete;
  write_back& operator=(const write_back&) = delete;

  // Flushes every write (see shutdown_timeout), then stops the flusher.
  ~write_back() {
    bool done = true;
    if (opts_.shutdown_timeout.count() > 0) {
      done = flush_for(opts_.shutdown_timeout);
    } else {
      flush();
    }
    {
      std::lock_guard<std::mutex> g(ctl_mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    room_.notify_all();
    flusher_.join();
    if (!done) {
      const std::size_t left = dirty_.size();
      abandoned_.fetch_add(left, std::memory_order_relaxed);
      report(flush_error{std::make_exception_ptr(abandoned_writes_error(left)), left, 0, {}});
    }
  }

  // Records `value` for `key` (cache and dirty buffer) and returns; the flusher writes it later.
  // With `ttl` (any std::chrono::duration; too long for nanoseconds means no expiry), the cache
  // entry expires after it, also when re-cached from the dirty buffer after an eviction (the write
  // is kept until flushed regardless).
  void put(key_type key, mapped_type value) { write(std::move(key), std::move(value), nullptr); }
  template <class Rep, class Period>
  void put(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) {
    const std::chrono::nanoseconds t = detail::to_nanoseconds(ttl);
    write(std::move(key), std::move(value), &t);
  }

  // Records the removal of `key`: get() returns std::nullopt from now on; the flusher calls the
  // Source's erase(key) later.
  void erase(key_type key) { write(std::move(key), std::nullopt, nullptr); }

  // The value for `key`: the cached value, else the unflushed write, else loaded from the Source
  // (one load per key across threads) and cached. std::nullopt if erased or absent.
  std::optional<mapped_type> get(const key_type& key) {
    if (auto v = store_.get(key)) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      return v;
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    // Inside the flight, a value cached since the miss above (another thread's fill, or a write)
    // is served instead of a second load.
    const auto cached_now = [&]() -> std::optional<std::optional<mapped_type>> {
      if (auto v = store_.peek(key)) return v;
      return std::nullopt;
    };
    return core_.load(key, cached_now, [&] { return fill(key); });
  }

  // Blocks until every write acknowledged before the call is in the Source (retrying it while
  // the Source fails). Must not be called from the Source or on_error.
  void flush() { (void)flush_until(std::nullopt); }

  // flush() that gives up after `timeout` (any std::chrono::duration; one too long to represent
  // waits like flush()): returns whether everything was written.
  template <class Rep, class Period>
  bool flush_for(std::chrono::duration<Rep, Period> timeout) {
    const time_point deadline =
        detail::saturating_after(clock_now(), detail::to_nanoseconds(timeout));
    if (deadline == time_point::max()) return flush_until(std::nullopt);
    return flush_until(deadline);
  }

  // Keys with writes the Source has not accepted yet.
  std::size_t dirty() const noexcept { return dirty_.size(); }

  write_back_stats stats() const noexcept {
    write_back_stats s;
    s.writes = writes_.load(std::memory_order_relaxed);
    s.coalesced = coalesced_.load(std::memory_order_relaxed);
    s.dirty = dirty_.size();
    s.flushed = flushed_.load(std::memory_order_relaxed);
    s.batches = batches_.load(std::memory_order_relaxed);
    s.flush_failures = flush_failures_.load(std::memory_order_relaxed);
    s.retries = retries_.load(std::memory_order_relaxed);
    s.write_through_fallbacks = fallbacks_.load(std::memory_order_relaxed);
    s.blocked_writes = blocked_.load(std::memory_order_relaxed);
    s.abandoned = abandoned_.load(std::memory_order_relaxed);
    s.hits = hits_.load(std::memory_order_relaxed);
    s.misses = misses_.load(std::memory_order_relaxed);
    s.dirty_hits = dirty_hits_.load(std::memory_order_relaxed);
    s.loads = core_.stats();
    return s;
  }

  const write_back_options& options() const noexcept { return opts_; }
  Source& source() noexcept { return source_; }
  // The cache. Writing to it directly bypasses the dirty buffer: read from it, do not write.
  Store& store() noexcept { return store_; }

 private:
  using time_point = std::chrono::steady_clock::time_point;

  // The unflushed writes, their queues and the rules of a batch (detail/dirty_buffer.hpp). A
  // buffered write's deadline is when its cache entry expires, on the store's clock
  // (k_no_deadline: the store's default TTL); a re-cache from the buffer keeps it.
  using buffer_type = detail::dirty_buffer<key_type, mapped_type, typename Store::hasher,
                                           typename Store::key_equal>;
  using item = typename buffer_type::item;
  using record_status = typename buffer_type::record_status;
  static constexpr std::int64_t k_no_deadline = buffer_type::k_no_deadline;

  static write_back_options validated(write_back_options o) {
    if (o.max_batch == 0) throw invalid_option("max_batch", "is 0: must be >= 1");
    if (o.max_delay <= std::chrono::nanoseconds::zero()) {
      throw invalid_option("max_delay", "must be positive: the longest a write waits");
    }
    if (o.max_dirty < o.max_batch) {
      throw invalid_option("max_dirty", "= " + std::to_string(o.max_dirty) +
                                            ": must be >= max_batch (" +
                                            std::to_string(o.max_batch) + ")");
    }
    if (o.retry_initial <= std::chrono::nanoseconds::zero()) {
      throw invalid_option("retry_initial", "must be positive");
    }
    if (o.retry_max < o.retry_initial) {
      throw invalid_option("retry_max", "must be >= retry_initial");
    }
    if (o.shutdown_timeout < std::chrono::nanoseconds::zero()) {
      throw invalid_option("shutdown_timeout", "is negative: must be >= 0 (0 = no limit)");
    }
    return o;
  }

  // --- the write path ---

  void write(key_type key, std::optional<mapped_type> value, const std::chrono::nanoseconds* ttl) {
    std::optional<mapped_type> for_cache = value;  // the one copy that may throw, taken first
    // Runs under the shard lock once the write is recorded: from there on the write is
    // acknowledged and nothing throws. Under the same lock, racing writers of one key leave the
    // cache and the buffer agreeing; through the core, a load in flight neither fills over the
    // write nor answers later reads.
    const auto cache_step = [&] {
      writes_.fetch_add(1, std::memory_order_relaxed);
      core_.write(key, [&]() noexcept { update_cache(key, std::move(for_cache), ttl); });
    };
    for (;;) {
      const std::int64_t deadline =
          ttl ? detail::saturating_add(store_.clock().now().count(), ttl->count()) : k_no_deadline;
      typename buffer_type::record_result r{};
      try {
        r = dirty_.record(key, std::move(value), deadline, clock_now, cache_step);
      } catch (...) {  // a slot the buffer took and gave back may be what a blocked writer needs
        room_freed(1);
        throw;
      }
      switch (r.status) {
        case record_status::added:
          if (r.size == 1 || r.size == opts_.max_batch) poke();
          return;
        case record_status::coalesced:
          coalesced_.fetch_add(1, std::memory_order_relaxed);
          return;
        case record_status::queued_behind:
          return;
        case record_status::full:  // a new dirty key, and no room: `value` is untouched
          break;
      }
      if (opts_.when_full == backlog_policy::write_through) {
        write_direct(key, value);
        return;
      }
      wait_for_room();
    }
  }

  // Puts or erases the cache entry. A failure here (a throwing copy, bad_alloc) drops the entry
  // instead: the dirty buffer still serves the value.
  void update_cache(const key_type& key, std::optional<mapped_type> value,
                    const std::chrono::nanoseconds* ttl) noexcept {
    try {
      if (!value) {
        store_.erase(key);
      } else if (ttl) {
        store_.put(key, std::move(*value), *ttl);
      } else {
        store_.put(key, std::move(*value));
      }
    } catch (...) {
      try {
        store_.erase(key);
      } catch (...) {
      }
    }
  }

  // At the backlog bound under backlog_policy::write_through: the Source first (an exception
  // propagates and nothing changed), then the cache entry is dropped so the next read loads it.
  void write_direct(const key_type& key, const std::optional<mapped_type>& value) {
    if (value) {
      source_.store(key, *value);
    } else {
      source_.erase(key);
    }
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    writes_.fetch_add(1, std::memory_order_relaxed);
    dirty_.with_lock(key, [&] {  // ordered with recorded writes of `key`, like their cache steps
      core_.write(key, [&]() noexcept {
        try {
          store_.erase(key);
        } catch (...) {
        }
      });
    });
  }

  // After the buffer freed `n` slots: wakes the writers waiting for room, if any.
  void room_freed(std::size_t n) {
    if (n == 0) return;
    bool waiters;
    {
      std::lock_guard<std::mutex> g(ctl_mu_);  // orders the decrement before a waiter's check
      waiters = room_waiters_ > 0;
    }
    if (waiters) room_.notify_all();
  }

  void wait_for_room() {
    blocked_.fetch_add(1, std::memory_order_relaxed);
    std::unique_lock<std::mutex> lk(ctl_mu_);
    ++room_waiters_;
    ++wake_seq_;
    wake_.notify_one();  // the flusher flushes at once while writers wait
    room_.wait(lk, [&] { return dirty_.size() < opts_.max_dirty || stopping_; });
    --room_waiters_;
  }

  void poke() {
    {
      std::lock_guard<std::mutex> g(ctl_mu_);
      ++wake_seq_;
    }
    wake_.notify_one();
  }

  // --- the read path ---

  // The ticket is taken before the dirty buffer is looked at: a write that lands after the look
  // has bumped it, and the fill from the Source below is refused.
  std::optional<mapped_type> fill(const key_type& key) {
    const auto ticket = core_.begin(key);
    std::optional<mapped_type> dirty_value;
    const bool dirty =
        dirty_.lookup(key, [&](const std::optional<mapped_type>& v, std::int64_t deadline) {
          // Written, not flushed: the buffer is the truth.
          dirty_hits_.fetch_add(1, std::memory_order_relaxed);
          dirty_value = v;
          if (dirty_value) recache(key, *dirty_value, deadline);  // under the lock, like a write
        });
    if (dirty) return dirty_value;
    // Not dirty now: the Source holds every acknowledged write of `key`.
    std::optional<mapped_type> v = load_from<key_type, mapped_type>(source_, key);
    if (v) core_.fill(store_, key, *v, ticket);
    return v;
  }

  // Puts a dirty value back into the cache with what is left of its put()'s TTL (nothing, if that
  // has run out: the buffer still answers reads).
  void recache(const key_type& key, const mapped_type& v, std::int64_t deadline) noexcept {
    if (deadline == k_no_deadline) {
      update_cache(key, v, nullptr);
      return;
    }
    const std::int64_t left = deadline - store_.clock().now().count();
    if (left <= 0) return;
    const std::chrono::nanoseconds ttl(left);
    update_cache(key, v, &ttl);
  }

  // --- flush() ---

  bool flush_until(std::optional<time_point> deadline) {
    std::unique_lock<std::mutex> lk(ctl_mu_);
    // Every write acknowledged before this call read an epoch <= target.
    const std::uint64_t target = dirty_.next_epoch();
    flush_target_ = std::max(flush_target_, target);
    ++wake_seq_;
    wake_.notify_one();
    const auto done = [&] { return flush_done_ >= target; };
    if (!deadline) {
      done_.wait(lk, done);
      return true;
    }
    return done_.wait_until(lk, *deadline, done);
  }

  // --- the flusher thread ---

  static time_point clock_now() noexcept { return std::chrono::steady_clock::now(); }

  void run() {
    std::vector<item> batch;
    batch.reserve(opts_.max_batch);
    for (;;) {
      std::uint64_t target;
      std::uint64_t seen;
      {
        std::lock_guard<std::mutex> g(ctl_mu_);
        if (stopping_) return;
        target = flush_target_;
        seen = wake_seq_;
      }
      const bool pressure = dirty_.size() >= opts_.max_batch || room_waiting();
      std::optional<time_point> next_due;
      bool ok = true;
      try {
        dirty_.collect(batch, opts_.max_batch, target, pressure, clock_now(), next_due);
        if (!batch.empty()) ok = write_batch(batch);
      } catch (...) {  // copying a key or value out of the buffer threw: retry like a failure
        failed(batch, 0, std::current_exception());
        ok = false;
      }
      if (!ok) {
        std::unique_lock<std::mutex> lk(ctl_mu_);
        wake_.wait_until(lk, detail::saturating_after(clock_now(), backoff_for(failure_run_)),
                         [&] { return stopping_; });
        continue;
      }
      if (!batch.empty()) {
        batch.clear();
        // Under sustained writes a batch is always ready, so check whether the flush() waiting is
        // satisfied already rather than waiting for an empty round.
        if (target > flush_done_snapshot() && dirty_.covered(target)) finish_flush(target);
        continue;
      }
      // Nothing eligible is left: every write up to `target` is in the Source.
      finish_flush(target);
      std::unique_lock<std::mutex> lk(ctl_mu_);
      const auto woken = [&] {
        return stopping_ || wake_seq_ != seen || flush_target_ > flush_done_;
      };
      if (next_due) {
        wake_.wait_until(lk, *next_due, woken);
      } else {
        wake_.wait(lk, woken);
      }
    }
  }

  std::uint64_t flush_done_snapshot() {
    std::lock_guard<std::mutex> g(ctl_mu_);
    return flush_done_;
  }

  void finish_flush(std::uint64_t target) {
    std::lock_guard<std::mutex> g(ctl_mu_);
    if (target > flush_done_) {
      flush_done_ = target;
      done_.notify_all();
    }
  }

  bool room_waiting() {
    std::lock_guard<std::mutex> g(ctl_mu_);
    return room_waiters_ > 0;
  }

  std::chrono::nanoseconds backoff_for(std::uint64_t attempt) const noexcept {
    auto b = opts_.retry_initial;
    for (std::uint64_t i = 1; i < attempt && b < opts_.retry_max; ++i) {
      b = std::chrono::nanoseconds(detail::saturating_add(b.count(), b.count()));
    }
    return std::min(b, opts_.retry_max);
  }

  // Writes a batch. Returns false if the Source threw; the entries not written are dirty again.
  bool write_batch(std::vector<item>& batch) {
    if (failure_run_ > 0) retries_.fetch_add(1, std::memory_order_relaxed);
    std::size_t written = 0;
    try {
      if constexpr (has_store_all) {
        std::vector<std::pair<key_type, mapped_type>> values;
        values.reserve(batch.size());
        for (const item& i : batch) {
          if (i.value) values.emplace_back(i.key, *i.value);
        }
        if (!values.empty()) {
          source_.store_all(
              std::span<const std::pair<key_type, mapped_type>>(values.data(), values.size()));
        }
        for (const item& i : batch) {
          if (!i.value) source_.erase(i.key);
        }
        written = batch.size();
      } else {
        for (const item& i : batch) {
          if (i.value) {
            source_.store(i.key, *i.value);
          } else {
            source_.erase(i.key);
          }
          ++written;
        }
      }
    } catch (...) {
      if constexpr (has_store_all) written = 0;  // a batch call is all or nothing to us
      failed(batch, written, std::current_exception());
      return false;
    }
    const std::size_t freed = dirty_.complete(std::span<const item>(batch));
    flushed_.fetch_add(batch.size(), std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
    failure_run_ = 0;
    room_freed(freed);
    return true;
  }

  // The first `written` entries of `batch` are in the Source; the rest go back to the front of
  // their queues in their original order and with their original epochs, so a flush() waiting for
  // them still waits. Counts and reports the failure.
  void failed(std::vector<item>& batch, std::size_t written, std::exception_ptr error) {
    const std::size_t freed = dirty_.complete(std::span<const item>(batch.data(), written));
    flushed_.fetch_add(written, std::memory_order_relaxed);
    for (std::size_t i = batch.size(); i-- > written;) {
      // A write of the key queued while the batch was out supersedes the failed one: coalesced.
      if (dirty_.requeue(batch[i])) coalesced_.fetch_add(1, std::memory_order_relaxed);
    }
    room_freed(freed);
    flush_failures_.fetch_add(1, std::memory_order_relaxed);
    ++failure_run_;
    report(flush_error{std::move(error), batch.size() - written, failure_run_,
                       backoff_for(failure_run_)});
    batch.clear();
  }

  void report(const flush_error& e) noexcept {
    if (!opts_.on_error) return;
    try {
      opts_.on_error(e);
    } catch (...) {
    }
  }

  static constexpr bool has_store_all =
      requires(Source & s, std::span<const std::pair<key_type, mapped_type>> b) {
    s.store_all(b);
  };

  write_back_options opts_;
  Source source_;
  using core_type = detail::guarded_loader<key_type, mapped_type, typename Store::hasher,
                                           typename Store::key_equal>;
  Store store_;
  buffer_type dirty_;
  core_type core_;

  // Flusher control, under ctl_mu_.
  std::mutex ctl_mu_;
  std::condition_variable wake_;  // the flusher waits here
  std::condition_variable room_;  // writers at the backlog bound wait here
  std::condition_variable done_;  // flush() waits here
  std::uint64_t wake_seq_ = 0;
  std::uint64_t flush_target_ = 0;
  std::uint64_t flush_done_ = 0;
  std::size_t room_waiters_ = 0;
  bool stopping_ = false;

  // Flusher-thread state.
  std::uint64_t failure_run_ = 0;  // batches failed in a row

  std::atomic<std::uint64_t> writes_{0}, coalesced_{0}, flushed_{0}, batches_{0},
      flush_failures_{0}, retries_{0}, fallbacks_{0}, blocked_{0}, abandoned_{0}, hits_{0},
      misses_{0}, dirty_hits_{0};

  std::thread flusher_;  // last: started after everything above exists, joined first
};

}  // namespace cachet
