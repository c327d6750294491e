// cachet/redis/lease_loader.hpp — one origin load per key across every process behind one Redis.
//
// Purpose: single_flight gives one load per key per *process*; N processes sharing a redis_store
// still send N loads to the origin when a hot key expires. lease_loader<Store, Loader> is a Loader
// (cachet/source.hpp) that wraps the user's loader with a per-key lease in Redis
// (redis_store::try_lease / release_lease), so cache_aside::get_or_load works with it unchanged.
// load(key):
//   1. try_lease(key, token, lease) with a fresh random token (128 bits from a
//      std::random_device-seeded generator, plus the process id, so a fork()ed child never reuses
//      its parent's tokens).
//   2. acquired: look in the store once more (another process may have filled the key just
//      before); if the value is there, release and return it. Else run the user's loader, write
//      the value into the store (so the other processes find it; see below) and only then
//      release; return it.
//      std::nullopt: nothing is written, the lease is released. If the loader throws, the lease
//      is released and the exception propagates.
//   3. held: poll the store (peek(), so the wait is not counted as misses) with jittered backoff
//      from poll_min doubling to poll_max, and return the value as soon as it appears. At each
//      poll that finds no value, try the lease again: it is free when the holder released it
//      without a value (its loader returned std::nullopt or threw) or crashed and the lease ran
//      out; then this call leads (step 2, counted in lease_takeovers). After max_wait, load from
//      the origin directly (lease_wait_timeouts).
//   4. unavailable (Redis down, breaker open): load from the origin directly (lease_unavailable).
// The lease never fails a read: every path ends in a value, std::nullopt, or the loader's own
// exception.
//
// Bounds. A holder that crashes costs the waiters at most one lease period (they take over when it
// runs out), so `lease` should exceed the origin's p99 load time, and max_wait should be at least
// the lease, or waiters give up before a crashed holder's lease ends. A load that outlives its
// lease lets another process lead too (two origin loads, both values valid); the late holder's
// release is a compare-and-delete on its own token, so it never deletes the newer holder's lease.
// The holder's write is redis_store::put_unless_written() with the store's default TTL: it is
// dropped if this process put or erased the key (cache_aside::invalidate(), set()) while the load
// ran, so the lease keeps the patterns' promise that a read after an invalidate() never sees the
// replaced row. (The waiters then find no value when the lease is released and take it over: one
// more origin load, of the new row.) A write or erase by another process is eventual, as for
// every redis_store fill: the TTL bounds it. cache_aside then fills the same value once more with
// put_if (a second SET, harmless). Use it with cache_aside over the same redis_store: read_through
// stores its values wrapped, in a store of its own, so it cannot share the lease's writes.
//
// Thread safety: load() may be called from any number of threads at once; stats() too. The Store
// and the Loader must outlive the lease_loader; the Loader must be thread-safe (as every Loader).
//
// Exception safety: the constructor throws cachet::invalid_option naming a bad option. load()
// throws what the user's loader throws (after releasing the lease), std::bad_alloc, and what the
// store's codecs throw; a Redis failure never throws.
//
// Example:
//   cachet::cache_aside<cachet::redis_store<std::string, User>> users(cachet::redis_options{
//       .unix_socket = "/run/redis/redis.sock", .default_ttl = std::chrono::minutes(5)});
//   auto find = [&](const std::string& id) { return db.find(id); };  // std::optional<User>
//   cachet::lease_loader lease(users.store(), find, {.lease = std::chrono::seconds(2)});
//   auto u = users.get_or_load("u:42", lease);  // one db.find per expiry across all processes
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "cachet/options.hpp"
#include "cachet/redis/options.hpp"
#include "cachet/redis/redis_store.hpp"
#include "cachet/source.hpp"

namespace cachet {

// How lease_loader leads and waits. Each is validated by the constructor.
struct lease_options {
  // How long a leader holds the lease (SET ... PX), > 0. It bounds what a crashed leader costs the
  // waiters; make it longer than the origin's p99 load time, or a slow load lets a second process
  // load too.
  std::chrono::milliseconds lease{5000};

  // How long a waiter polls before loading from the origin itself, >= 0 (0: never wait). At least
  // `lease`, so that a crashed leader's lease runs out (and a waiter takes over) before waiters
  // give up and all load at once.
  std::chrono::milliseconds max_wait{5000};

  // The first and the longest pause between polls, 0 < poll_min <= poll_max. The pause doubles
  // from poll_min up to poll_max; each is drawn uniformly from [poll_min, pause] so waiters in
  // many processes spread out. Short pauses answer sooner after the leader's write and cost two
  // Redis commands (GET, SET NX) per poll per waiting process.
  std::chrono::milliseconds poll_min{1};
  std::chrono::milliseconds poll_max{20};
};

// lease_loader's counters; each exact, the set not atomic across counters.
struct lease_loader_stats {
  std::uint64_t loads_led = 0;            // origin loads run while holding the lease
  std::uint64_t loads_waited = 0;         // answered by another process's load, no origin load
  std::uint64_t lease_takeovers = 0;      // leases taken after they vanished without a value
  std::uint64_t lease_wait_timeouts = 0;  // max_wait passed: loaded from the origin directly
  std::uint64_t lease_unavailable = 0;    // Redis could not be asked: loaded directly
};

template <class Store, class Loader>
requires loader<Loader, typename Store::key_type, typename Store::mapped_type>
class lease_loader {
 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;

  // Wraps `inner` over `store` (kept by reference). Throws invalid_option for a bad option, and
  // what reading std::random_device throws.
  lease_loader(Store& store, Loader inner, lease_options opts = {})
      : store_(store), inner_(std::move(inner)), opts_(validated(opts)), rng_(seeded()) {}

  lease_loader(const lease_loader&) = delete;
  lease_loader& operator=(const lease_loader&) = delete;

  // The value of `key`, loaded by whichever process holds its lease (see the file comment). Blocks
  // on Redis (a few commands), on the user's loader, and while waiting for another process up to
  // max_wait (+ one poll and one origin load).
  std::optional<mapped_type> load(const key_type& key) {
    const std::string token = new_token();
    switch (store_.try_lease(key, token, opts_.lease)) {
      case lease_result::acquired:
        return lead(key, token);
      case lease_result::unavailable:
        lease_unavailable_.fetch_add(1, std::memory_order_relaxed);
        return load_from<key_type, mapped_type>(inner_, key);
      case lease_result::held:
        break;
    }
    const auto deadline = std::chrono::steady_clock::now() + opts_.max_wait;
    std::chrono::milliseconds pause = opts_.poll_min;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto wake = std::min(std::chrono::steady_clock::now() + jittered(pause), deadline);
      std::this_thread::sleep_until(wake);
      pause = std::min(pause * 2, opts_.poll_max);
      if (auto v = store_.peek(key)) {
        loads_waited_.fetch_add(1, std::memory_order_relaxed);
        return v;
      }
      switch (store_.try_lease(key, token, opts_.lease)) {
        case lease_result::acquired:
          lease_takeovers_.fetch_add(1, std::memory_order_relaxed);
          return lead(key, token);
        case lease_result::unavailable:
          lease_unavailable_.fetch_add(1, std::memory_order_relaxed);
          return load_from<key_type, mapped_type>(inner_, key);
        case lease_result::held:
          break;
      }
    }
    lease_wait_timeouts_.fetch_add(1, std::memory_order_relaxed);
    return load_from<key_type, mapped_type>(inner_, key);
  }

  // A snapshot of the counters. Never blocks.
  lease_loader_stats stats() const noexcept {
    lease_loader_stats s;
    s.loads_led = loads_led_.load(std::memory_order_relaxed);
    s.loads_waited = loads_waited_.load(std::memory_order_relaxed);
    s.lease_takeovers = lease_takeovers_.load(std::memory_order_relaxed);
    s.lease_wait_timeouts = lease_wait_timeouts_.load(std::memory_order_relaxed);
    s.lease_unavailable = lease_unavailable_.load(std::memory_order_relaxed);
    return s;
  }

  const lease_options& options() const noexcept { return opts_; }

 private:
  // Holding the lease: look again, else load, write, release (the write comes first, so a waiter
  // that sees the lease gone finds the value; it is refused if this process wrote or erased the
  // key while the load ran, so a row read before an invalidate() never lands after it).
  std::optional<mapped_type> lead(const key_type& key, const std::string& token) {
    if (auto v = store_.peek(key)) {
      store_.release_lease(key, token);
      loads_waited_.fetch_add(1, std::memory_order_relaxed);
      return v;
    }
    std::optional<mapped_type> v;
    try {
      const std::uint64_t mark = store_.write_mark(key);
      v = load_from<key_type, mapped_type>(inner_, key);
      if (v) store_.put_unless_written(key, *v, mark);
    } catch (...) {
      store_.release_lease(key, token);
      throw;
    }
    store_.release_lease(key, token);
    loads_led_.fetch_add(1, std::memory_order_relaxed);
    return v;
  }

  static lease_options validated(lease_options o) {
    using std::chrono::milliseconds;
    if (o.lease <= milliseconds::zero()) {
      throw invalid_option("lease", "= " + std::to_string(o.lease.count()) + " ms: must be > 0");
    }
    if (o.max_wait < milliseconds::zero()) {
      throw invalid_option("max_wait",
                           "= " + std::to_string(o.max_wait.count()) + " ms: must be >= 0");
    }
    if (o.poll_min <= milliseconds::zero()) {
      throw invalid_option("poll_min",
                           "= " + std::to_string(o.poll_min.count()) + " ms: must be > 0");
    }
    if (o.poll_max < o.poll_min) {
      throw invalid_option("poll_max", "= " + std::to_string(o.poll_max.count()) +
                                           " ms: must be >= poll_min (" +
                                           std::to_string(o.poll_min.count()) + " ms)");
    }
    return o;
  }

  // 256 bits from std::random_device through a seed_seq.
  static std::mt19937_64 seeded() {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }

  // 128 random bits and the process id, in hex: unique per call across threads and processes.
  std::string new_token() {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    {
      std::lock_guard<std::mutex> g(rng_mu_);
      a = rng_();
      b = rng_();
    }
    static constexpr char k_hex[] = "0123456789abcdef";
    std::string t;
    t.reserve(48);
    for (std::uint64_t w : {a, b}) {
      for (int i = 60; i >= 0; i -= 4) t.push_back(k_hex[(w >> i) & 0xf]);
    }
    t.push_back('-');
    t.append(std::to_string(static_cast<long>(::getpid())));
    return t;
  }

  // Uniform in [poll_min, pause].
  std::chrono::milliseconds jittered(std::chrono::milliseconds pause) {
    std::lock_guard<std::mutex> g(rng_mu_);
    std::uniform_int_distribution<std::int64_t> d(opts_.poll_min.count(), pause.count());
    return std::chrono::milliseconds(d(rng_));
  }

  Store& store_;
  Loader inner_;
  const lease_options opts_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // guarded by rng_mu_
  std::atomic<std::uint64_t> loads_led_{0};
  std::atomic<std::uint64_t> loads_waited_{0};
  std::atomic<std::uint64_t> lease_takeovers_{0};
  std::atomic<std::uint64_t> lease_wait_timeouts_{0};
  std::atomic<std::uint64_t> lease_unavailable_{0};
};

template <class Store, class Loader>
lease_loader(Store&, Loader, lease_options = {}) -> lease_loader<Store, Loader>;

}  // namespace cachet
