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
//     loses no increment. A value re-cached from the dirty buffer keeps the deadline its put() gave.
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

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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
        source_(std::move(source)),
        store_(std::forward<StoreArgs>(store_args)...) {
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
      const std::size_t left = dirty_count_.load();
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
    const time_point deadline = detail::saturating_after(clock_now(), detail::to_nanoseconds(timeout));
    if (deadline == time_point::max()) return flush_until(std::nullopt);
    return flush_until(deadline);
  }

  // Keys with writes the Source has not accepted yet.
  std::size_t dirty() const noexcept { return dirty_count_.load(std::memory_order_relaxed); }

  write_back_stats stats() const noexcept {
    write_back_stats s;
    s.writes = writes_.load(std::memory_order_relaxed);
    s.coalesced = coalesced_.load(std::memory_order_relaxed);
    s.dirty = dirty_count_.load(std::memory_order_relaxed);
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

  // A key's unflushed write. `value` is nullopt for an erase. `ticket` names the key's live queue
  // item; 0 means the flusher has taken the write and no newer one is queued. Queue items whose
  // ticket does not match are stale and skipped.
  struct dirty_entry {
    std::optional<mapped_type> value;
    std::uint64_t ticket = 0;
    // When the value's cache entry expires, on the store's clock; k_no_deadline for the store's
    // default TTL. A re-cache from the buffer keeps it.
    std::int64_t deadline = k_no_deadline;
  };
  static constexpr std::int64_t k_no_deadline = std::numeric_limits<std::int64_t>::min();
  // A key waiting in a shard's queue, oldest first. `epoch` orders it against flush() calls.
  struct queued {
    key_type key;
    std::uint64_t ticket;
    std::uint64_t epoch;
    time_point since;
  };
  struct alignas(64) dirty_shard {
    std::mutex mu;
    absl::flat_hash_map<key_type, dirty_entry, typename Store::hasher, typename Store::key_equal>
        map;
    std::deque<queued> queue;
    std::uint64_t next_ticket = 1;
  };
  // One entry of a batch, copied out of the dirty buffer.
  struct item {
    key_type key;
    std::optional<mapped_type> value;
    std::size_t shard;
    std::uint64_t epoch;
    time_point since;
  };

  static constexpr std::size_t k_shards = 64;  // = 2^6, see shard_of()

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

  // The top bits pick the shard: the tables inside use the low ones.
  dirty_shard& shard_of(const key_type& key, std::size_t* index = nullptr) {
    const std::size_t i = static_cast<std::size_t>(static_cast<std::uint64_t>(hash_(key)) >> 58);
    if (index) *index = i;
    return shards_[i];
  }

  // --- the write path ---

  void write(key_type key, std::optional<mapped_type> value, const std::chrono::nanoseconds* ttl) {
    std::optional<mapped_type> for_cache = value;  // the one copy that may throw, taken first
    dirty_shard& d = shard_of(key);
    std::unique_lock<std::mutex> lk(d.mu);
    auto it = d.map.find(key);
    std::size_t count = 0;
    while (it == d.map.end() && !reserve_slot(count)) {  // a new dirty key, and no room
      lk.unlock();
      if (opts_.when_full == backlog_policy::write_through) {
        write_direct(key, value);
        return;
      }
      wait_for_room();
      lk.lock();
      it = d.map.find(key);
    }
    bool wake_flusher = false;
    if (it == d.map.end()) {  // a new dirty key, with its slot reserved
      try {
        it = d.map.try_emplace(key).first;
        d.queue.push_back(queued{key, d.next_ticket, epoch_.load(), clock_now()});
      } catch (...) {
        if (it != d.map.end()) d.map.erase(it);
        lk.unlock();
        release_slots(1);
        throw;
      }
      it->second.ticket = d.next_ticket++;
      wake_flusher = count == 1 || count == opts_.max_batch;
    } else if (it->second.ticket != 0) {
      coalesced_.fetch_add(1, std::memory_order_relaxed);  // replaces a value not yet taken
    } else {  // the flusher is writing an older value: queue this one after it
      d.queue.push_back(queued{key, d.next_ticket, epoch_.load(), clock_now()});
      it->second.ticket = d.next_ticket++;
    }
    // Recorded: from here on nothing throws and the write is acknowledged. The cache step runs
    // under the same lock, so racing writers of one key leave the cache and the buffer agreeing,
    // and through the core, so a load in flight neither fills over it nor answers later reads.
    it->second.value = std::move(value);
    it->second.deadline =
        ttl ? detail::saturating_add(store_.clock().now().count(), ttl->count()) : k_no_deadline;
    writes_.fetch_add(1, std::memory_order_relaxed);
    core_.write(key, [&]() noexcept { update_cache(key, std::move(for_cache), ttl); });
    lk.unlock();
    if (wake_flusher) poke();
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
    dirty_shard& d = shard_of(key);
    std::lock_guard<std::mutex> g(d.mu);
    core_.write(key, [&]() noexcept {
      try {
        store_.erase(key);
      } catch (...) {
      }
    });
  }

  // Counts one more dirty key unless that would pass max_dirty; `count` gets the new total.
  bool reserve_slot(std::size_t& count) noexcept {
    std::size_t n = dirty_count_.load();
    do {
      if (n >= opts_.max_dirty) return false;
    } while (!dirty_count_.compare_exchange_weak(n, n + 1));
    count = n + 1;
    return true;
  }

  void release_slots(std::size_t n) {
    if (n == 0) return;
    dirty_count_.fetch_sub(n);
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
    room_.wait(lk, [&] { return dirty_count_.load() < opts_.max_dirty || stopping_; });
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
    {
      dirty_shard& d = shard_of(key);
      std::lock_guard<std::mutex> g(d.mu);
      auto it = d.map.find(key);
      if (it != d.map.end()) {  // written, not flushed: the buffer is the truth
        dirty_hits_.fetch_add(1, std::memory_order_relaxed);
        std::optional<mapped_type> v = it->second.value;
        if (v) recache(key, *v, it->second.deadline);  // under the lock, like a write
        return v;
      }
    }
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
    const std::uint64_t target = epoch_.fetch_add(1);
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
      const bool pressure = dirty_count_.load() >= opts_.max_batch || room_waiting();
      std::optional<time_point> next_due;
      bool ok = true;
      try {
        collect(batch, target, pressure, clock_now(), next_due);
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
        if (target > flush_done_snapshot() && covered(target)) finish_flush(target);
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

  // True if no write with an epoch <= target is queued (nothing is in flight between batches).
  // Queues are sorted by epoch, so each shard's first live item decides.
  bool covered(std::uint64_t target) {
    for (dirty_shard& d : shards_) {
      std::lock_guard<std::mutex> g(d.mu);
      while (!d.queue.empty()) {
        const queued& q = d.queue.front();
        auto it = d.map.find(q.key);
        if (it != d.map.end() && it->second.ticket == q.ticket) break;
        d.queue.pop_front();  // stale
      }
      if (!d.queue.empty() && d.queue.front().epoch <= target) return false;
    }
    return true;
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

  // Takes up to max_batch queued writes that are due (or covered by a flush, or pushed out by a
  // full backlog), oldest first per shard, and marks them in flight. Sets `next_due` to when the
  // oldest write left behind becomes due.
  void collect(std::vector<item>& batch, std::uint64_t target, bool pressure, time_point now,
               std::optional<time_point>& next_due) {
    batch.clear();
    for (std::size_t k = 0; k < k_shards && batch.size() < opts_.max_batch; ++k) {
      const std::size_t si = (next_shard_ + k) % k_shards;
      dirty_shard& d = shards_[si];
      std::lock_guard<std::mutex> g(d.mu);
      while (!d.queue.empty()) {
        queued& q = d.queue.front();
        auto it = d.map.find(q.key);
        if (it == d.map.end() || it->second.ticket != q.ticket) {  // stale
          d.queue.pop_front();
          continue;
        }
        const time_point due = detail::saturating_after(q.since, opts_.max_delay);
        if (batch.size() >= opts_.max_batch || !(pressure || q.epoch <= target || due <= now)) {
          if (!next_due || due < *next_due) next_due = due;
          break;
        }
        batch.push_back(item{q.key, it->second.value, si, q.epoch, q.since});  // may throw
        it->second.ticket = 0;
        d.queue.pop_front();
      }
    }
    next_shard_ = (next_shard_ + 1) % k_shards;
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
    std::size_t freed = 0;
    for (item& i : batch) freed += complete(i) ? 1 : 0;
    flushed_.fetch_add(batch.size(), std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
    failure_run_ = 0;
    release_slots(freed);
    return true;
  }

  // The first `written` entries of `batch` are in the Source; the rest go back to the front of
  // their queues in their original order and with their original epochs, so a flush() waiting for
  // them still waits. Counts and reports the failure.
  void failed(std::vector<item>& batch, std::size_t written, std::exception_ptr error) {
    std::size_t freed = 0;
    for (std::size_t i = 0; i < written; ++i) freed += complete(batch[i]) ? 1 : 0;
    flushed_.fetch_add(written, std::memory_order_relaxed);
    for (std::size_t i = batch.size(); i-- > written;) requeue(batch[i]);
    release_slots(freed);
    flush_failures_.fetch_add(1, std::memory_order_relaxed);
    ++failure_run_;
    report(flush_error{std::move(error), batch.size() - written, failure_run_,
                       backoff_for(failure_run_)});
    batch.clear();
  }

  // The Source has `i`: drops the dirty entry unless a newer write is queued behind it. Returns
  // whether the entry was dropped.
  bool complete(const item& i) {
    dirty_shard& d = shards_[i.shard];
    std::lock_guard<std::mutex> g(d.mu);
    auto it = d.map.find(i.key);
    if (it->second.ticket != 0) return false;
    d.map.erase(it);
    return true;
  }

  void requeue(item& i) {
    dirty_shard& d = shards_[i.shard];
    std::lock_guard<std::mutex> g(d.mu);
    auto it = d.map.find(i.key);
    // A newer write may have queued the key at the back; this item takes its place at the front
    // with the older epoch (the newer value is what gets written), and the back one goes stale.
    // The failed write is then superseded without reaching the Source: it coalesced.
    if (it->second.ticket != 0) coalesced_.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t ticket = d.next_ticket++;
    d.queue.push_front(queued{std::move(i.key), ticket, i.epoch, i.since});
    it->second.ticket = ticket;
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
  Store store_;
  typename Store::hasher hash_{};
  std::array<dirty_shard, k_shards> shards_;
  detail::guarded_loader<key_type, mapped_type, typename Store::hasher, typename Store::key_equal>
      core_;

  std::atomic<std::size_t> dirty_count_{0};
  std::atomic<std::uint64_t> epoch_{1};

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
  std::size_t next_shard_ = 0;
  std::uint64_t failure_run_ = 0;  // batches failed in a row

  std::atomic<std::uint64_t> writes_{0}, coalesced_{0}, flushed_{0}, batches_{0},
      flush_failures_{0}, retries_{0}, fallbacks_{0}, blocked_{0}, abandoned_{0}, hits_{0},
      misses_{0}, dirty_hits_{0};

  std::thread flusher_;  // last: started after everything above exists, joined first
};

}  // namespace cachet
