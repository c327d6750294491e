// cachet/sharded_store.hpp — the concurrent in-process store: sharded, bounded, expiring.
//
// Purpose: the hot core under every caching pattern in cachet. A key is hashed once; the high 32
// bits of the hash pick one of a power-of-two number of shards and the low 32 bits place it in that
// shard's table. Each shard has its own lock, hash table, node slab, eviction-policy state and
// counters, on its own cache lines, so threads working on different shards never touch a shared
// line.
//
// Thread safety: every member function is thread-safe. Operations on one key are linearisable.
// A hit takes no lock: get() passes the shard's reader gate (detail/reader_gate.hpp), writing only
// the calling thread's own stripe, and reads the entry in place while writers to that shard wait;
// a writer holds the shard alone, and a get that meets one, misses or finds an expired entry takes
// the shard's lock (docs/store.md, "How a hit runs"). A shard's lock, and a reader's stay in the
// gate, last only for the table probe, the policy's bookkeeping and the copy of one value; no user
// code runs under them: the hash is computed and the weigher called before the lock is
// taken, and removal listeners and the destructors of removed keys and values run after it is
// released. (The key's equality and the value's copy constructor run under the lock; keep them
// cheap, and store std::shared_ptr<const T> for large values. So do the two callbacks that opt in
// to it: an options.expiry policy and the options.on_eviction listener, noexcept both.)
// Clock::now() may be read under the lock. size(), stats() and the iteration functions are weakly
// consistent (see each).
//
// Exception safety: get, peek, contains, erase and put give the strong guarantee against
// exceptions from the hash, the key's equality and the value's copy, except that when put() must
// evict and then fails to allocate (std::bad_alloc), the entries evicted stay evicted; likewise
// entries that cleanup() or erase_if() removed before such a failure stay removed. Whatever an
// operation removed is reported to the listener before its exception propagates. K and V must be
// nothrow move-constructible (checked). A removal listener that throws propagates out of the
// operation that triggered it, after the store's state is complete; later listener calls for that
// operation are skipped.
//
// Expiry: an entry with a deadline is never returned once Clock::now() >= deadline. Expired entries
// are reclaimed when an operation touches their key, by a sweep of 4 slots per put in a shard that
// holds entries with a deadline, when the policy picks them as victims, and all at once by
// cleanup().
//
// Example:
//   cachet::sharded_store<std::string, std::string, cachet::lru> users({.max_entries = 100'000});
//   users.put("u:42", "Ada", std::chrono::minutes(5));
//   if (auto name = users.get(std::string_view("u:42"))) use(*name);   // no temporary std::string
//   users.erase("u:42");
#pragma once

#include <absl/container/flat_hash_set.h>
#include <absl/container/inlined_vector.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/clock.hpp"
#include "cachet/detail/reader_gate.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/detail/slab.hpp"
#include "cachet/detail/spin_mutex.hpp"
#include "cachet/eviction.hpp"
#include "cachet/eviction/lru.hpp"
#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/stats.hpp"

namespace cachet {

namespace detail {

template <bool Transparent>
struct key_arg_impl {
  template <class Q, class K>
  using type = Q;
};
template <>
struct key_arg_impl<false> {
  template <class Q, class K>
  using type = K;
};

// The functions the atomic per-key operations of sharded_store take.
template <class F, class K, class V>
concept value_maker = std::is_invocable_r_v<V, F&, const K&>;  // get_or_insert_with
template <class F, class V>
concept value_updater = std::is_invocable_r_v<std::optional<V>, F&, std::optional<V>>;  // compute
template <class F, class V>
concept value_merger = std::is_invocable_r_v<V, F&, const V&, const V&>;  // merge

template <class T>
concept transparent = requires {
  typename T::is_transparent;
};

// A thread-local generator for TTL jitter: no lock, no shared line.
inline double jitter_uniform() noexcept {
  thread_local std::uint64_t state =
      mix64(process_seed() ^ reinterpret_cast<std::uintptr_t>(&state));
  state += 0x9E3779B97F4A7C15ULL;
  return static_cast<double>(mix64(state) >> 11) * 0x1.0p-53;
}

}  // namespace detail

template <class K, class V, class Eviction = lru, class Clock = coarse_steady_clock,
          class Hash = cachet::hash<K>, class KeyEqual = std::equal_to<>>
requires eviction_policy<Eviction> && clock<Clock>
class sharded_store {
  static_assert(std::is_nothrow_move_constructible_v<K>,
                "cachet::sharded_store: the key type K must be nothrow move-constructible");
  static_assert(std::is_nothrow_move_constructible_v<V>,
                "cachet::sharded_store: the value type V must be nothrow move-constructible");
  static_assert(std::is_nothrow_move_assignable_v<V>,
                "cachet::sharded_store: the value type V must be nothrow move-assignable");
  static constexpr bool k_transparent = detail::transparent<Hash> && detail::transparent<KeyEqual>;

 public:
  using key_type = K;
  using mapped_type = V;
  using size_type = std::size_t;
  using eviction_type = Eviction;
  using clock_type = Clock;
  using hasher = Hash;
  using key_equal = KeyEqual;
  using options_type = store_options<K, V>;

  // The same store with another value type (the patterns wrap values with their own metadata).
  template <class V2>
  using rebind_value = sharded_store<K, V2, Eviction, Clock, Hash, KeyEqual>;

  // The type a lookup takes: any Q when Hash and KeyEqual are both transparent, else K.
  template <class Q>
  using key_arg = typename detail::key_arg_impl<k_transparent>::template type<Q, K>;

  // Validates `opts` (throws invalid_option naming the first bad option) and allocates the shards:
  // under 1 KiB each (lfu: about 5 KiB, its frequency lists), plus what the policy sizes to an
  // entry bound up front: w_tinylfu's frequency sketch, 8 x bit_ceil(shard capacity) bytes, 8 to
  // 16 bytes per entry of max_entries (128 MiB for 16M entries), and for w_tinylfu_adaptive one
  // simulation for the store besides (about 30 KiB, at most about 230 KiB); random's and ttl's
  // index arrays, 4 bytes per entry of max_entries. The other policies, and every policy under a
  // weight bound alone, take nothing more until entries arrive; entries (slab nodes, table slots)
  // are allocated as they arrive (a shard with an entry bound reserves its node block at its first
  // insert and touches it as entries arrive: detail/slab.hpp). Throws std::bad_alloc.
  explicit sharded_store(options_type opts, Clock clock = Clock{}, Hash hash = Hash{},
                         KeyEqual eq = KeyEqual{})
      : opts_(std::move(opts)),
        clock_(std::move(clock)),
        hash_(std::move(hash)),
        eq_(std::move(eq)),
        hash_seed_(detail::process_seed()) {
    validate();
    const std::size_t n = opts_.shards != 0 ? opts_.shards : default_shards();
    shard_bits_ = std::countr_zero(n);
    // Secret unless the hash brings its own seed (hash.hpp): a predictable victim draw or admission
    // jitter would let an attacker time keys against them.
    std::uint64_t policy_seed = hash_seed_;
    if constexpr (detail::caller_seeded_hash<Hash>) {
      policy_seed = static_cast<std::uint64_t>(hash_.seed());
    }
    if constexpr (k_has_shared_state) {
      policy_shared_ = std::make_unique<shared_state_type>(opts_.max_entries, policy_seed);
    }
    shards_ =
        static_cast<shard*>(::operator new (sizeof(shard) * n, std::align_val_t{alignof(shard)}));
    std::size_t built = 0;
    try {
      for (; built < n; ++built) {
        new (&shards_[built])
            shard(this, share(opts_.max_entries, n, built), share(opts_.max_weight, n, built),
                  detail::mix64(policy_seed + built));
        if (custom_expiry_) shards_[built].hit_flags = k_hit_expiry;
        if (opts_.recorder) shards_[built].hit_flags |= k_hit_recorder;
      }
    } catch (...) {
      destroy_shards(built);
      throw;
    }
    shard_count_ = n;
  }

  sharded_store(const sharded_store&) = delete;
  sharded_store& operator=(const sharded_store&) = delete;

  ~sharded_store() {
    destroy_shards(shard_count_);
    delete insert_flights_.load(std::memory_order_relaxed);
  }

  // The value for `key`, or nullopt if absent or expired (an expired entry is reclaimed). A hit is
  // reported to the eviction policy and counted; so is a miss. A hit takes no lock, and neither
  // does a miss on an absent key (w_tinylfu's sketch hears of it through a try-lock:
  // docs/store.md); anything else takes the key's shard lock (and a lookup waits while a writer
  // holds the shard). Throws what V's copy constructor, Hash or KeyEqual throw (the store is
  // unchanged then).
  template <class Q = K>
  std::optional<V> get(const key_arg<Q>& key) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    bool absent = false;
    if (std::optional<V> hit = gated_get<Q>(s, key, h, absent)) [[likely]]
      return hit;
    if (absent) return std::nullopt;
    return get_locked<Q>(s, key, h);
  }

  // True if `key` maps to a live entry. Does not count as a hit or miss and does not touch the
  // policy's order; reclaims the entry if it has expired.
  template <class Q = K>
  bool contains(const key_arg<Q>& key) {
    bool found = false;
    with_live_entry<Q>(key, [&](shard&, detail::index_t) { found = true; });
    return found;
  }

  // The value for `key`, or nullopt if absent or expired, like get() but quietly: not counted as a
  // hit or miss and not reported to the eviction policy (a frequency-counting policy would
  // otherwise count the key twice for one use). For a second look inside a load (the loading
  // patterns re-check the store before they load). Reclaims the entry if it has expired. Throws
  // what V's copy constructor, Hash or KeyEqual throw (the store is unchanged then).
  template <class Q = K>
  std::optional<V> peek(const key_arg<Q>& key) {
    std::optional<V> result;
    with_live_entry<Q>(key, [&](shard& s, detail::index_t i) { result.emplace(s.nodes[i].value); });
    return result;
  }

  // Maps key to value with the default TTL (options.default_ttl; none if zero).
  put_result put(K key, V value) {
    return put_impl(std::move(key), std::move(value), effective_default_ttl());
  }

  // Maps key to value, expiring after `ttl` (jittered by options.ttl_jitter); cachet::no_expiry for
  // none. Takes any std::chrono::duration and converts it saturating: one at or beyond
  // nanoseconds::max() (std::chrono::hours::max(), say) means no expiry, where an implicit
  // conversion to nanoseconds would overflow; a positive ttl under a nanosecond counts as one.
  // Throws std::invalid_argument if ttl is not positive.
  //
  // When the shard is full, put evicts the policy's victims until the entry fits, after a sweep
  // step has reclaimed what expired entries it finds; with no_eviction it returns rejected_full
  // instead and evicts nothing (a refused replacement still removes the key's old entry: below). A
  // put over a present key replaces its value and deadline (the old value goes to the listener as
  // `replaced`). When a put over a present key is rejected (the new value does not fit by weight,
  // with any policy, no_eviction included), that key's old entry is removed (also as `replaced`),
  // so the store never serves a value older than a write it refused.
  // Calls the weigher before locking. Allocates when the shard's slab or table grows. Blocks on one
  // shard lock.
  template <class Rep, class Period>
  put_result put(K key, V value, std::chrono::duration<Rep, Period> ttl) {
    return put_impl(std::move(key), std::move(value), detail::checked_ttl(ttl, "put"));
  }

  // put(), but only if `still_valid()` returns true when called under the key's shard lock; if it
  // returns false nothing changes and the result is put_result::rejected_stale. The loading
  // patterns fill through this: `still_valid` checks that no write or invalidation of the key came
  // after the load began, and since writers erase under the same lock, a fill either lands before a
  // racing erase (which then removes it) or sees the invalidation and is dropped: there is no
  // moment at which a raced fill is visible. `still_valid` must be noexcept, cheap, and must not
  // call into the store. The ttl overload takes any duration and cachet::no_expiry as put() does.
  template <detail::nothrow_condition Pred>
  put_result put_if(K key, V value, Pred still_valid) {
    return put_impl(std::move(key), std::move(value), effective_default_ttl(), still_valid);
  }
  template <class Rep, class Period, detail::nothrow_condition Pred>
  put_result put_if(K key, V value, std::chrono::duration<Rep, Period> ttl, Pred still_valid) {
    return put_impl(std::move(key), std::move(value), detail::checked_ttl(ttl, "put_if"),
                    still_valid);
  }

  // ---- expiry control
  // ----------------------------------------------------------------------------

  // The time `key` has left to live: nullopt if it has no live entry, cachet::no_expiry if it
  // never expires. Counts nothing and tells the policy nothing (a quiet lookup, as peek()).
  template <class Q = K>
  std::optional<std::chrono::nanoseconds> expires_in(const key_arg<Q>& key) {
    std::optional<std::chrono::nanoseconds> left;
    with_live_entry<Q>(key, [&](shard& s, detail::index_t i) {
      const std::int64_t deadline = s.nodes[i].deadline;
      left = deadline == detail::k_never ? no_expiry : std::chrono::nanoseconds(deadline - now());
    });
    return left;
  }

  // How long ago `key`'s live entry was last written (put, or any write that replaced its value),
  // on the store's clock; nullopt if it has no live entry. A quiet lookup, as expires_in(). Throws
  // std::logic_error unless the store was built with track_age.
  template <class Q = K>
  std::optional<std::chrono::nanoseconds> age_of(const key_arg<Q>& key) {
    if (!opts_.track_age) {
      throw std::logic_error("cachet::sharded_store::age_of: build the store with track_age");
    }
    std::optional<std::chrono::nanoseconds> age;
    with_live_entry<Q>(key, [&](shard& s, detail::index_t i) {
      age = std::chrono::nanoseconds(now() - s.written_at[i]);
    });
    return age;
  }

  // Gives `key`'s live entry a new time to live, `ttl` from now (no jitter; cachet::no_expiry:
  // none), keeping its value. Returns whether there was a live entry. A write for the policy (an
  // earliest-deadline policy reorders it) and for compute(), which reruns its function if it
  // raced this. Blocks on one shard lock. Throws std::invalid_argument unless ttl > 0.
  template <class Q = K, class Rep, class Period>
  bool set_expires_after(const key_arg<Q>& key, std::chrono::duration<Rep, Period> ttl) {
    const std::chrono::nanoseconds d = detail::checked_ttl(ttl, "set_expires_after");
    const std::int64_t deadline = deadline_after(d, now());
    return with_live_entry<Q>(key, [&](shard& s, detail::index_t i) {
      set_deadline(s, s.nodes[i], deadline);
      ++s.nodes[i].stamp;
      if (!is_pinned(s, i)) s.policy.on_update(i);
    });
  }

  // ---- pinning
  // ---------------------------------------------------------------------------------

  // Pins `key`'s live entry: the policy forgets it, so it is never evicted, until unpin(), its
  // removal (erase, expiry, clear, a put that does not fit in its place) or a put that makes it
  // too heavy for the pin bound. It still counts against max_entries / max_weight, still expires,
  // and reads and writes still reach it; a put that replaces it in place keeps the pin. True if
  // the entry is pinned now (also if it already was); false if there is no live entry or its
  // shard already pins options.max_pinned_fraction of its bound. Unpinned, an entry rejoins the
  // policy as a new entry would (its recency or frequency history is gone). Pins are not saved
  // by cachet::save. Blocks on one shard lock; throws std::bad_alloc (nothing changed then).
  template <class Q = K>
  bool pin(const key_arg<Q>& key) {
    bool pinned = false;
    with_live_entry<Q>(key, [&](shard& s, detail::index_t i) {
      if (is_pinned(s, i)) {
        pinned = true;
        return;
      }
      const std::uint32_t w = s.nodes[i].weight;
      if (s.capacity != 0 && s.pinned.size() >= s.max_pinned) return;
      if (s.max_weight != 0 && s.pinned_weight + w > s.max_pinned_weight) return;
      s.pinned.insert(i);  // may throw: nothing has changed yet
      s.policy.on_remove(i);
      s.pinned_weight += w;
      note_pins(s);
      pinned = true;
    });
    return pinned;
  }

  // Returns `key`'s entry to the policy; true if it was pinned. Throws std::bad_alloc (nothing
  // changed then).
  template <class Q = K>
  bool unpin(const key_arg<Q>& key) {
    bool was = false;
    with_live_entry<Q>(key, [&](shard& s, detail::index_t i) {
      if (!is_pinned(s, i)) return;
      if constexpr (k_has_reserve) s.policy.reserve();
      release_pin(s, i);
      was = true;
    });
    return was;
  }

  // Whether `key` has a live, pinned entry. A quiet lookup.
  template <class Q = K>
  bool is_pinned(const key_arg<Q>& key) {
    bool pinned = false;
    with_live_entry<Q>(key, [&](shard& s, detail::index_t i) { pinned = is_pinned(s, i); });
    return pinned;
  }

  // Pinned entries over all shards, read shard by shard under each lock.
  std::size_t pinned_count() const {
    std::size_t n = 0;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      std::lock_guard<detail::reader_gate> g(shards_[k].mu);
      n += shards_[k].pinned.size();
    }
    return n;
  }

  // The TTL a put without one gives its entry now: options.default_ttl until set_default_ttl()
  // changed it; 0 = none. (With expire_after_access or an expiry policy, those decide the lifetime
  // of each write from this TTL: see options.hpp.)
  std::chrono::nanoseconds default_ttl() const noexcept {
    return std::chrono::nanoseconds(default_ttl_ns_.load(std::memory_order_relaxed));
  }

  // Changes the TTL of later puts that take the default (put, put_if, put_if_absent, the atomic
  // operations); entries already stored keep theirs. 0 = no expiry. options() keeps returning
  // the options the store was built with. Lock-free. Throws invalid_option("default_ttl") if
  // negative, or nonzero on a store with expire_after_access.
  void set_default_ttl(std::chrono::nanoseconds ttl) {
    if (ttl < std::chrono::nanoseconds::zero()) {
      throw invalid_option("default_ttl", "is negative: must be >= 0 (0 = entries do not expire)");
    }
    if (ttl != std::chrono::nanoseconds::zero() && opts_.expire_after_access.count() != 0) {
      throw invalid_option("default_ttl", k_tti_and_ttl);
    }
    default_ttl_ns_.store(ttl.count(), std::memory_order_relaxed);
  }

  // Removes `key`. True if a live entry was removed (reported to the listener as explicit_erase);
  // false if absent or already expired.
  template <class Q = K>
  bool erase(const key_arg<Q>& key) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    removal_buffer out;
    bool erased = false;
    {
      std::lock_guard<detail::reader_gate> g(s.mu);
      auto it = s.table.find(probe_key<key_arg<Q>>{&key, low32(h)});
      if (it != s.table.end()) {
        const detail::index_t i = *it;
        erased = !expired(s.nodes[i]);
        remove_at(s, it, i, erased ? removal_cause::explicit_erase : removal_cause::expired, out);
      }
    }
    notify(out);
    return erased;
  }

  // ---- atomic per-key operations -------------------------------------------------------------
  // Each is atomic for its key: no other write of the key lands between what it reads and what it
  // writes. Where user code runs: V's copy, move and (replace) operator==, the hash, the key's
  // equality and the weigher run as in put(); the functions given to get_or_insert_with(),
  // compute() and merge() run with no lock of the store held, so they may be slow and may call
  // into the store, but compute() and merge() may run theirs more than once (below): keep them
  // free of side effects. Writes they make are put() writes: the default TTL, the weigher, the
  // policy's admission, the listener (`replaced`, `explicit_erase`) and the counters as put() and
  // erase(). A write the store refuses (full with no_eviction, too heavy) stores nothing and is
  // counted as a rejection; each function says what it then returns.

  // Puts (key, value) with the default TTL if `key` has no live entry, and returns nullopt; if it
  // has one, changes nothing and returns a copy of its value (not counted as a hit). nullopt also
  // when the store refused the new entry (see above): contains() tells the two apart. Blocks on
  // one shard lock.
  std::optional<V> put_if_absent(K key, V value) {
    std::optional<V> existing;
    insert_absent(std::move(key), std::move(value), effective_default_ttl(), existing);
    return existing;
  }
  template <class Rep, class Period>
  std::optional<V> put_if_absent(K key, V value, std::chrono::duration<Rep, Period> ttl) {
    std::optional<V> existing;
    insert_absent(std::move(key), std::move(value), detail::checked_ttl(ttl, "put_if_absent"),
                  existing);
    return existing;
  }

  // The value cached for `key` after this call: the live entry's (a copy; not counted as a hit),
  // or `value`, put with the default TTL when there was none. If the store refused it, `value` is
  // returned all the same and nothing is cached. Blocks on one shard lock.
  V get_or_insert(K key, V value) {
    std::optional<V> existing;
    V copy(value);
    insert_absent(std::move(key), std::move(value), effective_default_ttl(), existing);
    return existing ? std::move(*existing) : std::move(copy);
  }

  // get(key) if it hits; otherwise fn(key), called with no lock held, put if the key is still
  // absent, and the value cached then returned (fn's, or one another thread put meanwhile). At
  // most one fn(key) runs per key at a time: concurrent callers for the key wait for it and share
  // its outcome (a single_flight); a caller that arrives after it finished finds the value. If fn
  // throws, nothing is put and the exception reaches that call's waiters too; the next call runs
  // fn again. fn may call into the store, but not get_or_insert_with() of the same key (that
  // throws cachet::recursive_load_error). If the store refuses the value it is returned uncached.
  template <detail::value_maker<K, V> F>
  V get_or_insert_with(const K& key, F fn) {
    if (std::optional<V> hit = get(key)) return std::move(*hit);
    std::optional<V> r = insert_flights().load(
        key,
        [&]() -> std::optional<std::optional<V>> {
          std::optional<V> v = peek(key);
          if (!v) return std::nullopt;
          return std::optional<std::optional<V>>(std::move(v));
        },
        [&]() -> std::optional<V> {
          V made = fn(key);
          std::optional<V> existing;
          V copy(made);
          insert_absent(K(key), std::move(made), effective_default_ttl(), existing);
          return existing ? std::move(existing) : std::optional<V>(std::move(copy));
        });
    return std::move(*r);
  }

  // Loads of get_or_insert_with(): `loads` fn calls, `coalesced` callers that waited for another's
  // (counted when they start waiting). All zero until the first get_or_insert_with() miss.
  single_flight_stats insert_flight_stats() const noexcept {
    const auto* f = insert_flights_.load(std::memory_order_acquire);
    return f != nullptr ? f->stats() : single_flight_stats{};
  }

  // Replaces the entry of `key` by fn(current), where current is a copy of its live value or
  // nullopt: a value puts it (the default TTL), nullopt erases it. Returns what fn returned
  // (nullopt too when the store refused the value: then the old entry is gone, as with a refused
  // put()). fn runs with no lock held, on a copy; if the key was written meanwhile, fn runs again
  // on the newer value (so it may run more than once, each time on a newer value, and must have no
  // side effects), until no write came between its read and its write. Throws what fn throws (the
  // store is then unchanged by this call), and what put() and erase() throw.
  template <detail::value_updater<V> F>
  std::optional<V> compute(const K& key, F fn) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    for (;;) {
      const version seen = read_version(s, h, key);
      std::optional<V> next = fn(seen.value);
      if (std::optional<std::optional<V>> done = write_if_unchanged(s, h, key, seen, next)) {
        return std::move(*done);
      }
    }
  }

  // compute() that puts `value` when `key` is absent and fn(current, value) when it is present;
  // returns the value that resulted. fn(const V& old, const V& given) -> V runs as compute()'s
  // function does (no lock, possibly more than once).
  template <detail::value_merger<V> F>
  V merge(const K& key, V value, F fn) {
    std::optional<V> r = compute(key, [&](std::optional<V> old) -> std::optional<V> {
      if (!old) return value;
      return fn(std::as_const(*old), std::as_const(value));
    });
    return r ? std::move(*r) : std::move(value);
  }

  // If `key`'s live value equals `expected` (V's operator==, under the shard lock), puts `desired`
  // in its place with the default TTL and returns true; otherwise changes nothing and returns
  // false. False also when the store refused `desired` (then the old entry is gone, as with put()).
  bool replace(const K& key, const V& expected, V desired) requires std::equality_comparable<V> {
    K k(key);
    return stored(locked_write(k, desired, effective_default_ttl(),
                               [&](shard& s, std::uint64_t h, std::uint32_t w,
                                   std::int64_t deadline, removal_buffer& out) {
                                 auto it = s.table.find(probe_key<K>{&k, low32(h)});
                                 if (it == s.table.end() || expired(s.nodes[*it]) ||
                                     !(s.nodes[*it].value == expected)) {
                                   return put_result::rejected_stale;  // nothing written
                                 }
                                 return put_locked(s, h, w, deadline, k, desired, out);
                               }));
  }

  // get() of every key: result[i] answers keys[i] (each counted as a hit or a miss). Key by key:
  // atomic per key, not as a whole.
  std::vector<std::optional<V>> get_all(std::span<const K> keys) {
    std::vector<std::optional<V>> out;
    out.reserve(keys.size());
    for (const K& k : keys) out.push_back(get(k));
    return out;
  }

  // put() of every item with the default TTL: result[i] is items[i]'s outcome. Key by key; an
  // exception stops it, leaving the items before it put.
  std::vector<put_result> put_all(std::span<const std::pair<K, V>> items) {
    std::vector<put_result> out;
    out.reserve(items.size());
    for (const auto& [k, v] : items) out.push_back(put(k, v));
    return out;
  }

  // erase() of every key; returns how many live entries were removed. Key by key.
  std::size_t erase_all(std::span<const K> keys) {
    std::size_t n = 0;
    for (const K& k : keys) n += erase(k) ? 1 : 0;
    return n;
  }

  // Removes every entry; each is reported to the listener as `cleared` (after its shard's lock is
  // released). Shards are cleared one after another: entries put concurrently may survive. If the
  // listener throws, every shard is still cleared, later listener calls are skipped, and the first
  // exception is rethrown at the end.
  void clear() {
    deferred_error err;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      shard& s = shards_[k];
      slab_type old(0);
      {
        std::lock_guard<detail::reader_gate> g(s.mu);
        s.cleared.add(s.size.get());
        old = std::move(s.nodes);  // s.nodes is left empty, with its bound
        s.table.clear();
        s.policy.clear();
        s.pinned.clear();
        s.pinned_weight = 0;
        note_pins(s);
        s.size.sub(s.size.get());
        s.weight.sub(s.weight.get());
        s.ttl_entries = 0;
        s.sweep_hand = 0;
        ++s.epoch;
      }
      if (opts_.on_removal) {
        err.run([&] {
          for (detail::index_t i = 0; i < old.high_water(); ++i) {
            const auto& n = old[i];
            if (n.deadline != detail::k_free) {
              opts_.on_removal(n.key, n.value, removal_cause::cleared);
            }
          }
        });
      }
    }  // `old` destroys the keys and values here, outside the lock
    err.rethrow();
  }

  // Removes every live entry for which pred(key, value) is true; returns how many. The predicate
  // runs outside the shard locks on copies of the entries, taken 64 at a time; an entry whose value
  // was replaced after its copy was taken is left alone. Entries added concurrently may not be
  // visited. If pred throws, or std::bad_alloc stops it, the exception propagates and what was
  // erased stays erased (and is reported). If the listener throws, erasing goes on, later listener
  // calls are skipped, and the first exception is rethrown at the end.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    deferred_error err;
    std::size_t erased = 0;
    std::vector<snapshot_entry> batch;
    std::vector<const snapshot_entry*> doomed;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      shard& s = shards_[k];
      for (detail::index_t pos = 0;;) {
        const bool more = snapshot(s, pos, batch);
        doomed.clear();
        for (auto& e : batch) {
          if (pred(std::as_const(e.key), std::as_const(e.value))) doomed.push_back(&e);
        }
        if (!doomed.empty()) {
          removal_buffer out;
          try {
            std::lock_guard<detail::reader_gate> g(s.mu);
            for (const snapshot_entry* e : doomed) {
              const detail::index_t i = e->index;
              if (e->epoch != s.epoch || s.nodes[i].deadline == detail::k_free ||
                  s.nodes[i].stamp != e->stamp) {
                continue;  // cleared, erased or replaced since the copy was taken
              }
              remove_at(s, find_index(s, i), i, removal_cause::explicit_erase, out);
              ++erased;
            }
          } catch (...) {  // std::bad_alloc from `out`: what it holds was erased all the same
            err.run([&] { notify(out); });
            throw;
          }
          err.run([&] { notify(out); });
        }
        if (!more) break;
      }
    }
    err.rethrow();
    return erased;
  }

  // Calls f(key, value) for live entries, on copies taken 64 at a time under each shard's lock and
  // visited outside it. Weakly consistent: an entry present and unchanged for the whole call is
  // visited once; entries added, removed or replaced meanwhile may or may not be, and a key erased
  // and re-inserted meanwhile may be visited twice. f may call into the store.
  template <class F>
  void for_each(F&& f) {
    for_each_with_ttl(
        [&f](const K& key, const V& value, std::chrono::nanoseconds) { f(key, value); });
  }

  // for_each() that also passes each entry's remaining time to live: f(key, value, ttl) with ttl a
  // std::chrono::nanoseconds, positive, or cachet::no_expiry for an entry without a deadline
  // (remaining as of the moment its batch was copied). For a snapshot (snapshot.hpp). The same
  // consistency, locking and allocation as for_each().
  template <class F>
  void for_each_with_ttl(F&& f) {
    std::vector<snapshot_entry> batch;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      for (detail::index_t pos = 0;;) {
        const bool more = snapshot(shards_[k], pos, batch);
        const std::int64_t t = now();
        for (auto& e : batch) {
          const std::chrono::nanoseconds ttl =
              e.deadline == detail::k_never
                  ? no_expiry
                  : std::chrono::nanoseconds(std::max<std::int64_t>(1, e.deadline - t));
          f(std::as_const(e.key), std::as_const(e.value), ttl);
        }
        if (!more) break;
      }
    }
  }

  // Up to `n` live entries as (key, value) copies, in the policy's eviction order: coldest(n)
  // the ones it would evict first first, hottest(n) the ones it would keep longest first. For
  // lru, fifo, lfu, sieve, s3fifo, w_tinylfu and w_tinylfu_adaptive (each policy's walk() says
  // how exact its order is: s3fifo and w_tinylfu give their queues' order, which eviction
  // refines with second chances and frequency duels); random, ttl and no_eviction keep no such
  // order and do not compile with these. Each shard has its own order and no order spans shards:
  // the result interleaves the shards rank by rank (each shard's coldest, then each shard's
  // second coldest, ...), so with one shard it is the policy's order exactly. Pinned entries are
  // outside the order and not listed. Quiet: no hit is counted and no entry moves. Locks each
  // shard in turn (weakly consistent across shards), copying keys and values under its lock;
  // allocates the result. Throws std::bad_alloc and what K's or V's copy throws.
  std::vector<std::pair<K, V>> coldest(std::size_t n) { return in_order(n, true); }
  std::vector<std::pair<K, V>> hottest(std::size_t n) { return in_order(n, false); }

  // Reclaims every expired entry now (listener cause `expired`). Locks each shard in turn for a
  // pass over its slab. Returns how many entries it reclaimed. If the listener throws, every shard
  // is still swept, later listener calls are skipped, and the first exception is rethrown at the
  // end. Allocates to carry the removed entries out of the lock; on std::bad_alloc the entries
  // already reclaimed are reported and the exception propagates, leaving later shards unswept.
  std::size_t cleanup() {
    deferred_error err;
    std::size_t reclaimed = 0;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      shard& s = shards_[k];
      removal_buffer out;
      try {
        std::lock_guard<detail::reader_gate> g(s.mu);
        if (s.ttl_entries != 0) reclaimed += sweep(s, s.nodes.high_water(), now(), out);
      } catch (...) {  // std::bad_alloc from `out`: what it holds was reclaimed all the same
        err.run([&] { notify(out); });
        throw;
      }
      err.run([&] { notify(out); });
    }
    err.rethrow();
    return reclaimed;
  }

  // Number of entries, summed over shards without locking: exact when no write runs concurrently.
  // Includes expired entries not yet reclaimed.
  std::size_t size() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t k = 0; k < shard_count_; ++k) n += shards_[k].size.get();
    return static_cast<std::size_t>(n);
  }
  bool empty() const noexcept { return size() == 0; }

  // The entry bound (options.max_entries until set_max_entries(); 0 when bounded by weight only)
  // and the weight bound (likewise, set_max_weight()).
  std::size_t capacity() const noexcept { return max_entries_now_.load(std::memory_order_relaxed); }
  std::uint64_t max_weight() const noexcept {
    return max_weight_now_.load(std::memory_order_relaxed);
  }

  // ---- bounds at run time
  // -----------------------------------------------------------------------------

  // Sets the entry bound to `n`, split over the shards as at construction, while the store runs.
  // Growing takes effect at once. Shrinking evicts each shard down to its new share in turn (under
  // that shard's lock, reported to the listeners as `evicted` after it) and unpins what exceeds
  // its new pin bound first; a put racing it into a shard not yet shrunk lands under the old
  // share and is evicted when that shard's turn comes. The ceiling is the bound the store was
  // built with (its slabs and frequency sketches are sized to it); options() keeps that value.
  // Throws invalid_option("max_entries") for a store built without an entry bound, or n outside
  // [shard_count(), options().max_entries]; std::bad_alloc (shards done so far stay done); and
  // what a listener throws (after every shard is done).
  void set_max_entries(std::size_t n) {
    if (opts_.max_entries == 0) {
      throw invalid_option("max_entries",
                           "cannot be set at run time on a store built without an entry bound");
    }
    if (n < shard_count_ || n > opts_.max_entries) {
      std::string m("= ");
      m.append(std::to_string(n));
      m.append(": must be in [shard count, the max_entries the store was built with] = [");
      m.append(std::to_string(shard_count_));
      m.append(", ");
      m.append(std::to_string(opts_.max_entries));
      m.push_back(']');
      throw invalid_option("max_entries", m);
    }
    max_entries_now_.store(n, std::memory_order_relaxed);
    rebound([&](shard& sh, std::size_t k) {
      sh.capacity = share(n, shard_count_, k);
      sh.max_pinned =
          static_cast<std::size_t>(static_cast<double>(sh.capacity) * opts_.max_pinned_fraction);
      if constexpr (k_has_set_capacity) sh.policy.set_capacity(sh.capacity);
    });
  }

  // Sets the weight bound to `w` while the store runs, as set_max_entries() does the entry bound
  // (shrinking evicts; pins over the new share are released). No ceiling: a weight-bounded shard's
  // structures grow with its entries. Throws invalid_option("max_weight") for a store built
  // without a weight bound or w < shard_count(), and what set_max_entries() throws.
  void set_max_weight(std::uint64_t w) {
    if (opts_.max_weight == 0) {
      throw invalid_option("max_weight",
                           "cannot be set at run time on a store built without a weight bound");
    }
    if (w < shard_count_) {
      std::string m("= ");
      m.append(std::to_string(w));
      m.append(": must be at least the shard count (");
      m.append(std::to_string(shard_count_));
      m.push_back(')');
      throw invalid_option("max_weight", m);
    }
    max_weight_now_.store(w, std::memory_order_relaxed);
    rebound([&](shard& sh, std::size_t k) {
      sh.max_weight = share(w, shard_count_, k);
      sh.max_pinned_weight = static_cast<std::uint64_t>(static_cast<double>(sh.max_weight) *
                                                        opts_.max_pinned_fraction);
    });
  }
  std::size_t shard_count() const noexcept { return shard_count_; }
  const options_type& options() const noexcept { return opts_; }
  const Clock& clock() const noexcept { return clock_; }

  // Counters summed over shards; see stats.hpp. Lock-free, weakly consistent.
  cache_stats stats() const noexcept {
    cache_stats st;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      const shard& s = shards_[k];
      st.hits += s.hits.get() + s.mu.hits();
      st.misses += s.misses.get() + s.mu.misses();
      st.inserts += s.inserts.get();
      st.updates += s.updates.get();
      st.rejections += s.rejections.get();
      st.evictions += s.evictions.get();
      st.expirations += s.expirations.get();
      st.explicit_removals += s.removals.get();
      st.cleared += s.cleared.get();
      st.size += s.size.get();
      st.weight += s.weight.get();
    }
    return st;
  }

 private:
  using hook_type = typename Eviction::hook;
  using slab_type = detail::slab<K, V, hook_type>;
  using node_type = typename slab_type::node_type;
  using policy_type = typename Eviction::template shard_policy<slab_type>;

  // The policy's state shared by every shard (eviction.hpp), or an empty stand-in.
  struct no_shared_state {
    no_shared_state(std::size_t, std::uint64_t) noexcept {}
  };
  static constexpr bool k_has_shared_state =
      !std::is_void_v<typename detail::policy_shared_state<Eviction>::type>;
  using shared_state_type =
      std::conditional_t<k_has_shared_state, typename detail::policy_shared_state<Eviction>::type,
                         no_shared_state>;

  static constexpr bool k_has_on_miss = requires(policy_type & p, std::uint32_t h) {
    p.on_miss(h);
  };
  // Eviction::sampled_out_shift (eviction.hpp): how much sparser than usual the gate samples hits
  // while several threads record; 0 for a policy that does not declare it.
  static constexpr std::uint32_t k_sample_sparse = [] {
    if constexpr (requires { Eviction::sampled_out_shift; }) {
      static_assert(Eviction::sampled_out_shift <= detail::reader_gate::k_max_sparse,
                    "Eviction::sampled_out_shift is at most 16");
      static_assert(
          requires(policy_type & p, detail::index_t i) { p.on_access_sampled_out(i); },
          "Eviction::sampled_out_shift needs on_access_sampled_out: the hits the gate "
          "leaves out must reach the policy some other way");
      return static_cast<std::uint32_t>(Eviction::sampled_out_shift);
    } else {
      return std::uint32_t{0};
    }
  }();
  static constexpr bool k_has_admit =
      requires(policy_type & p, std::uint32_t h, detail::index_t v) {
    { p.admit(h, v) } -> std::convertible_to<bool>;
  };
  static constexpr bool k_has_reserve = requires(policy_type & p) { p.reserve(); };
  // The policy keeps an eviction order that hottest() / coldest() can walk.
  static constexpr bool k_has_order = requires(policy_type & p) {
    p.walk(true, [](detail::index_t) { return true; });
  };
  static constexpr bool k_has_set_capacity = requires(policy_type & p, std::size_t c) {
    p.set_capacity(c);
  };
  // A policy whose order follows the deadlines (ttl) is told when a read moves one.
  static constexpr bool k_orders_by_deadline = requires {
    requires policy_type::orders_by_deadline;
  };
  static constexpr int k_sweep_per_put = 4;
  static constexpr std::size_t k_snapshot_batch = 64;

  // Table lookups by key (user equality) and by node index (integer compare, no user code).
  template <class Q>
  struct probe_key {
    const Q* key;
    std::uint32_t hash;
  };
  struct probe_index {
    detail::index_t index;
    std::uint32_t hash;
  };

  struct slot_hash {
    using is_transparent = void;
    const slab_type* nodes;
    std::size_t operator()(detail::index_t i) const noexcept { return (*nodes)[i].hash; }
    std::size_t operator()(probe_index p) const noexcept { return p.hash; }
    template <class Q>
    std::size_t operator()(const probe_key<Q>& p) const noexcept {
      return p.hash;
    }
  };
  struct slot_eq {
    using is_transparent = void;
    const slab_type* nodes;
    const KeyEqual* eq;
    bool operator()(detail::index_t a, detail::index_t b) const noexcept { return a == b; }
    bool operator()(probe_index p, detail::index_t i) const noexcept { return p.index == i; }
    bool operator()(detail::index_t i, probe_index p) const noexcept { return p.index == i; }
    template <class Q>
    bool operator()(const probe_key<Q>& p, detail::index_t i) const {
      return (*eq)((*nodes)[i].key, *p.key);
    }
    template <class Q>
    bool operator()(detail::index_t i, const probe_key<Q>& p) const {
      return (*eq)((*nodes)[i].key, *p.key);
    }
  };
  using table_type = absl::flat_hash_set<detail::index_t, slot_hash, slot_eq>;

  struct alignas(64) shard {
    shard(const sharded_store* owner, std::size_t cap, std::uint64_t max_w, std::uint64_t seed)
        : mu(detail::reader_gate::default_stripes(), &shard::deliver_hits, this, k_sample_sparse),
          table(0, slot_hash{&nodes}, slot_eq{&nodes, &owner->eq_}),
          nodes(cap),
          policy(&nodes, policy_init{cap, seed, owner->policy_shared_.get()}),
          capacity(cap),
          max_weight(max_w),
          max_pinned(static_cast<std::size_t>(static_cast<double>(cap) *
                                              owner->opts_.max_pinned_fraction)),
          max_pinned_weight(static_cast<std::uint64_t>(static_cast<double>(max_w) *
                                                       owner->opts_.max_pinned_fraction)),
          written_at(owner->opts_.track_age ? std::make_unique<std::int64_t[]>(cap) : nullptr) {}

    // The gate's drain callback: hits recorded on the gate reach the policy (under the lock;
    // the entries are still in place, detail/reader_gate.hpp), as one batch where the policy
    // takes batches.
    static void deliver_hits(void* self, const std::uint32_t* idx, std::uint32_t n) noexcept {
      auto& p = static_cast<shard*>(self)->policy;
      if constexpr (requires { p.on_access_batch(idx, n); }) {
        p.on_access_batch(idx, n);
      } else if constexpr (!policy_type::access_is_noop) {
        for (std::uint32_t k = 0; k < n; ++k) p.on_access(idx[k]);
      }
    }

    // What a hit touches comes first, on as few cache lines as possible: the lock, the hit and
    // miss counters, the table header. (With many shards, these lines compete for L1.)
    detail::reader_gate mu;
    // k_hit_* bits: what a hit must do beyond telling the policy (under `mu`, on its line).
    std::uint8_t hit_flags = 0;
    detail::locked_counter hits, misses;
    table_type table;  // built before `nodes` but only stores its address until used
    slab_type nodes;
    policy_type policy;
    std::size_t capacity;         // 0 = no entry bound
    std::uint64_t max_weight;     // 0 = no weight bound
    std::size_t ttl_entries = 0;  // live entries with a deadline
    // pin(): entries the policy does not hold (never its victims); empty unless pin() is used.
    // Off the hit path's lines: a hit tests hit_flags instead.
    absl::flat_hash_set<detail::index_t> pinned;
    std::uint64_t pinned_weight = 0;
    std::size_t max_pinned;
    std::uint64_t max_pinned_weight;
    detail::index_t sweep_hand = 0;
    std::uint64_t epoch = 0;  // bumped by clear(): slot indices and stamps restart then
    detail::locked_counter size, weight, inserts, updates, rejections, evictions, expirations,
        removals, cleared;
    // track_age: when the entry in slot i was last written (slab indices stay below `capacity`
    // as built); null otherwise.
    std::unique_ptr<std::int64_t[]> written_at;
  };

  struct removed {
    removed(K&& k, V&& v, removal_cause c) noexcept
        : key(std::move(k)), value(std::move(v)), cause(c) {}
    K key;
    V value;
    removal_cause cause;
  };
  using removal_buffer = absl::InlinedVector<removed, 1>;

  struct snapshot_entry {
    std::uint64_t epoch;
    detail::index_t index;
    std::uint32_t stamp;
    std::int64_t deadline;
    K key;
    V value;
  };

  // Keeps the first exception of a multi-shard operation's listener calls and skips the calls after
  // it, so the operation can finish every shard before rethrowing.
  class deferred_error {
   public:
    template <class F>
    void run(F&& f) {
      if (first_) return;
      try {
        f();
      } catch (...) {
        first_ = std::current_exception();
      }
    }
    void rethrow() {
      if (first_) std::rethrow_exception(first_);
    }

   private:
    std::exception_ptr first_;
  };

  // ---- configuration
  // ------------------------------------------------------------------------------

  void validate() const {
    const auto& o = opts_;
    if (o.max_entries == 0 && o.max_weight == 0) {
      throw invalid_option(
          "max_entries",
          "is 0: set max_entries in [1, 2^32 x shards) or max_weight (with a weigher)");
    }
    if (o.shards != 0 && (!std::has_single_bit(o.shards) || o.shards > k_max_shards)) {
      throw invalid_option("shards", "= " + std::to_string(o.shards) +
                                         ": must be 0 (automatic) or a power of two in [1, 65536]");
    }
    if (o.shards != 0 && o.max_entries != 0 && o.shards > o.max_entries) {
      throw invalid_option("shards", "= " + std::to_string(o.shards) +
                                         ": must not exceed max_entries (" +
                                         std::to_string(o.max_entries) + ")");
    }
    const std::size_t n = o.shards != 0 ? o.shards : default_shards();
    if (o.max_entries / n >= detail::k_max_shard_entries) {
      throw invalid_option("max_entries",
                           "= " + std::to_string(o.max_entries) + ": must be below " +
                               std::to_string(detail::k_max_shard_entries) + " x shards");
    }
    if (o.max_weight != 0 && !o.weigher) {
      throw invalid_option("max_weight",
                           "is set but no weigher is: set weigher, or max_weight = 0");
    }
    if (o.weigher && o.max_weight == 0) {
      throw invalid_option("weigher",
                           "is set but max_weight is 0: set max_weight in [shards, 2^64)");
    }
    if (o.max_weight != 0 && o.max_weight < n) {
      throw invalid_option("max_weight", "= " + std::to_string(o.max_weight) +
                                             ": must be at least the shard count (" +
                                             std::to_string(n) + ")");
    }
    if (o.default_ttl < std::chrono::nanoseconds::zero()) {
      throw invalid_option("default_ttl", "is negative: must be >= 0 (0 = entries do not expire)");
    }
    if (!(o.ttl_jitter >= 0.0 && o.ttl_jitter < 1.0)) {
      throw invalid_option("ttl_jitter",
                           "= " + std::to_string(o.ttl_jitter) + ": must be in [0, 1)");
    }
    if (!(o.max_pinned_fraction >= 0.0 && o.max_pinned_fraction < 1.0)) {
      throw invalid_option("max_pinned_fraction", "= " + std::to_string(o.max_pinned_fraction) +
                                                      ": must be in [0, 1) (0 = no pinning)");
    }
    if (o.expire_after_access < std::chrono::nanoseconds::zero()) {
      throw invalid_option("expire_after_access",
                           "is negative: must be >= 0 (0 = no idle timeout)");
    }
    if (o.expire_after_access.count() != 0 && o.default_ttl.count() != 0) {
      throw invalid_option("expire_after_access", k_tti_and_ttl);
    }
    if (o.expire_after_access.count() != 0 && o.expiry != nullptr) {
      throw invalid_option("expire_after_access",
                           "cannot be combined with expiry: an entry has one deadline (let the "
                           "expiry_policy's after_read return the idle timeout)");
    }
    if (o.track_age && o.max_entries == 0) {
      throw invalid_option("track_age",
                           "needs max_entries: the write times are sized to the entry bound");
    }
  }

  std::size_t default_shards() const noexcept {
    const std::size_t hw = std::max(1u, std::thread::hardware_concurrency());
    std::size_t n = std::min<std::size_t>(std::bit_ceil(32 * hw), 1024);
    const std::uint64_t bound = opts_.max_entries != 0 ? opts_.max_entries : opts_.max_weight;
    while (n > 1 && bound / n < 256) n /= 2;
    return n;
  }

  // Shard k's part of `total` split over n shards; the parts sum to total exactly.
  static std::uint64_t share(std::uint64_t total, std::size_t n, std::size_t k) noexcept {
    return total / n + (k < total % n ? 1 : 0);
  }

  void destroy_shards(std::size_t n) noexcept {
    if (shards_ == nullptr) return;
    for (std::size_t k = 0; k < n; ++k) shards_[k].~shard();
    ::operator delete (shards_, std::align_val_t{alignof(shard)});
    shards_ = nullptr;
  }

  // ---- hashing and time
  // ---------------------------------------------------------------------------

  template <class Q>
  std::uint64_t hash_of(const Q& key) const {
    std::uint64_t h = static_cast<std::uint64_t>(hash_(key));
    // Keyed, so that keys chosen against a known user hash do not pile into one shard (hash.hpp).
    if constexpr (!detail::avalanching_hash<Hash>) h = detail::seeded_mix64(h, hash_seed_);
    return h;
  }
  static std::uint32_t low32(std::uint64_t h) noexcept { return static_cast<std::uint32_t>(h); }
  shard& shard_for(std::uint64_t h) const noexcept {
    return shards_[(h >> 32) >> (32 - shard_bits_)];
  }

  std::int64_t now() const noexcept { return clock_.now().count(); }
  bool expired(const node_type& n) const noexcept {
    return n.deadline != detail::k_never && n.deadline <= now();
  }

  // The TTL of a put without one: no_expiry when the default is 0.
  std::chrono::nanoseconds effective_default_ttl() const noexcept {
    const std::int64_t d = default_ttl_ns_.load(std::memory_order_relaxed);
    return d == 0 ? no_expiry : std::chrono::nanoseconds(d);
  }

  // Absolute deadline for a ttl starting now, shortened by the jitter. Outside any lock.
  std::int64_t deadline_for(std::chrono::nanoseconds ttl) const noexcept {
    if (ttl == no_expiry) return detail::k_never;
    std::int64_t d = ttl.count();
    if (opts_.ttl_jitter > 0.0) {
      d -= static_cast<std::int64_t>(static_cast<double>(d) * opts_.ttl_jitter *
                                     detail::jitter_uniform());
      d = std::max<std::int64_t>(d, 1);
    }
    return deadline_after(std::chrono::nanoseconds(d), now());
  }

  // ---- the write path
  // -----------------------------------------------------------------------------

  // The condition of a plain put(): always true.
  struct always {
    bool operator()() const noexcept { return true; }
  };

  template <class Pred = always>
  put_result put_impl(K key, V value, std::chrono::nanoseconds ttl, Pred&& still_valid = Pred{}) {
    return locked_write(key, value, ttl,
                        [&](shard& s, std::uint64_t h, std::uint32_t w, std::int64_t deadline,
                            removal_buffer& out) {
                          if (!still_valid()) return put_result::rejected_stale;
                          return put_locked(s, h, w, deadline, key, value, out);
                        });
  }

  // The frame of a single-key write: hashes the key, weighs the value and works out the deadline
  // before the lock (no user code under it but the key's equality and V's moves), then runs
  // body(shard, hash, weight, deadline, out) under the shard lock and reports what it removed to
  // the listener after (also when it throws, before the exception propagates).
  template <class Body>
  put_result locked_write(K& key, V& value, std::chrono::nanoseconds ttl, Body&& body) {
    const std::uint64_t h = hash_of(key);
    const std::uint32_t w =
        opts_.weigher ? opts_.weigher(std::as_const(key), std::as_const(value)) : 1;
    const std::int64_t deadline = deadline_for(ttl);
    shard& s = shard_for(h);
    removal_buffer out;
    put_result r;
    try {
      std::lock_guard<detail::reader_gate> g(s.mu);
      r = body(s, h, w, deadline, out);
    } catch (...) {
      notify_before_rethrow(out);
      throw;
    }
    notify(out);
    report_rejection(r, key, value);  // a refused write left key and value with the caller
    return r;
  }

  put_result put_locked(shard& s, std::uint64_t h, std::uint32_t w, std::int64_t deadline, K& key,
                        V& value, removal_buffer& out) {
    // The policy's bookkeeping cannot throw, so whatever room it needs for one more entry it takes
    // now, while a std::bad_alloc still leaves everything as it was.
    if constexpr (k_has_reserve) s.policy.reserve();
    const bool too_heavy = s.max_weight != 0 && w > s.max_weight;
    // Set when a present entry is dropped because the new value does not fit in its place.
    bool superseded = false;
    auto it = s.table.find(probe_key<K>{&key, low32(h)});
    if (it != s.table.end()) {
      const detail::index_t i = *it;
      auto& n = s.nodes[i];
      if (expired(n)) {
        remove_at(s, it, i, removal_cause::expired, out);
      } else if (too_heavy || (s.max_weight != 0 && s.weight.get() - n.weight + w > s.max_weight)) {
        // Does not fit in place: drop the old entry (never serve a value older than this write),
        // then insert anew below, evicting others if needed.
        remove_at(s, it, i, removal_cause::replaced, out);
        superseded = true;
      } else {
        if (keep_removed())
          out.emplace_back(std::move(key), std::move(n.value), removal_cause::replaced);
        const std::int64_t old_deadline = n.deadline;
        n.value = std::move(value);
        if (s.written_at) s.written_at[i] = now();
        set_deadline(s, n, custom_expiry_ ? written_deadline(n, deadline, old_deadline) : deadline);
        s.weight.sub(n.weight);
        s.weight.add(w);
        const std::uint32_t old_weight = n.weight;
        n.weight = w;
        ++n.stamp;
        if (!is_pinned(s, i)) {
          s.policy.on_update(i);
        } else {
          s.pinned_weight += w;
          s.pinned_weight -= old_weight;
          // Heavier than the pin bound allows now: back to the policy (room reserved above).
          if (s.max_weight != 0 && s.pinned_weight > s.max_pinned_weight) release_pin(s, i);
        }
        s.updates.add();
        return put_result::replaced;
      }
    }
    // A refused put over a present key still dropped that key's old entry: count it as removed.
    auto reject = [&](put_result r) {
      s.rejections.add();
      if (superseded) s.removals.add();
      return r;
    };
    if (too_heavy) return reject(put_result::rejected_too_heavy);
    if (s.ttl_entries != 0) sweep(s, k_sweep_per_put, now(), out);
    while (needs_room(s, w)) {
      const detail::index_t v = s.policy.victim();
      if (v == detail::npos) return reject(put_result::rejected_full);
      if constexpr (k_has_admit) {
        if (!s.policy.admit(low32(h), v)) return reject(put_result::rejected_by_policy);
      }
      remove_at(s, find_index(s, v), v,
                expired(s.nodes[v]) ? removal_cause::expired : removal_cause::evicted, out);
    }
    const detail::index_t i = s.nodes.allocate();  // may throw: nothing changed since the evictions
    auto& n = s.nodes[i];
    new (&n.key) K(std::move(key));
    new (&n.value) V(std::move(value));
    n.hash = low32(h);
    n.weight = w;
    n.deadline = detail::k_never;
    ++n.stamp;
    n.hook = hook_type{};
    try {
      s.table.insert(i);
    } catch (...) {
      n.key.~K();
      n.value.~V();
      s.nodes.release(i);
      throw;
    }
    if (s.written_at) s.written_at[i] = now();
    set_deadline(s, n, custom_expiry_ ? written_deadline(n, deadline, detail::k_free) : deadline);
    s.policy.on_insert(i);
    s.size.add();
    s.weight.add(w);
    if (superseded) {  // the key was present: to the caller and in the counts this is an update
      s.updates.add();
      return put_result::replaced;
    }
    s.inserts.add();
    return put_result::inserted;
  }

  // put_if_absent() and get_or_insert(): inserts unless `key` has a live entry, whose value is
  // then copied into `existing` (and nothing changes).
  put_result insert_absent(K key, V value, std::chrono::nanoseconds ttl,
                           std::optional<V>& existing) {
    return locked_write(key, value, ttl,
                        [&](shard& s, std::uint64_t h, std::uint32_t w, std::int64_t deadline,
                            removal_buffer& out) {
                          auto it = s.table.find(probe_key<K>{&key, low32(h)});
                          if (it != s.table.end() && !expired(s.nodes[*it])) {
                            existing.emplace(s.nodes[*it].value);
                            if (custom_expiry_) after_read(s, *it);
                            return put_result::rejected_stale;  // nothing written
                          }
                          // put_locked reclaims an expired entry first.
                          return put_locked(s, h, w, deadline, key, value, out);
                        });
  }

  // What compute() read: the live entry (its slot and stamp, in the shard's clear() epoch, and a
  // copy of its value) or its absence.
  struct version {
    std::uint64_t epoch = 0;
    detail::index_t index = 0;
    std::uint32_t stamp = 0;
    std::optional<V> value;
  };

  version read_version(shard& s, std::uint64_t h, const K& key) {
    version v;
    removal_buffer out;
    {
      std::lock_guard<detail::reader_gate> g(s.mu);
      v.epoch = s.epoch;
      auto it = s.table.find(probe_key<K>{&key, low32(h)});
      if (it != s.table.end()) {
        const detail::index_t i = *it;
        if (expired(s.nodes[i])) {
          remove_at(s, it, i, removal_cause::expired, out);
        } else {
          v.index = i;
          v.stamp = s.nodes[i].stamp;
          v.value.emplace(s.nodes[i].value);
        }
      }
    }
    notify(out);
    return v;
  }

  // compute()'s write: if `key` is still as `seen` found it, puts `next` (or erases the key when
  // next is empty) and returns what compute() returns; otherwise changes nothing and returns
  // nullopt (compute() reads again).
  std::optional<std::optional<V>> write_if_unchanged(shard& s, std::uint64_t h, const K& key,
                                                     const version& seen, std::optional<V>& next) {
    std::optional<K> k;
    std::optional<V> result;
    std::uint32_t w = 0;
    std::int64_t deadline = 0;
    if (next) {
      k.emplace(key);
      result.emplace(*next);
      w = opts_.weigher ? opts_.weigher(std::as_const(*k), std::as_const(*next)) : 1;
      deadline = deadline_for(effective_default_ttl());
    }
    removal_buffer out;
    bool unchanged = false;
    put_result written = put_result::rejected_stale;
    try {
      std::lock_guard<detail::reader_gate> g(s.mu);
      auto it = s.table.find(probe_key<K>{&key, low32(h)});
      const bool live = it != s.table.end() && !expired(s.nodes[*it]);
      if (s.epoch == seen.epoch) {
        unchanged =
            seen.value ? live && *it == seen.index && s.nodes[*it].stamp == seen.stamp : !live;
      }
      if (unchanged) {
        if (next) {
          written = put_locked(s, h, w, deadline, *k, *next, out);
          if (!stored(written)) result.reset();
        } else if (it != s.table.end()) {
          remove_at(s, it, *it, live ? removal_cause::explicit_erase : removal_cause::expired, out);
        }
      }
    } catch (...) {
      notify_before_rethrow(out);
      throw;
    }
    notify(out);
    if (!unchanged) return std::nullopt;
    if (next && !stored(written)) report_rejection(written, *k, *next);  // both left unmoved
    return std::optional<std::optional<V>>(std::move(result));
  }

  // get_or_insert_with()'s flights, made on first use (a store that never calls it pays one null
  // pointer; Hash and KeyEqual need only be default-constructible where it is called).
  using insert_flight_type = single_flight<K, V, Hash, KeyEqual>;
  insert_flight_type& insert_flights() {
    insert_flight_type* f = insert_flights_.load(std::memory_order_acquire);
    if (f != nullptr) return *f;
    auto made = std::make_unique<insert_flight_type>();
    if (insert_flights_.compare_exchange_strong(f, made.get(), std::memory_order_acq_rel)) {
      return *made.release();
    }
    return *f;  // another thread's won
  }

  bool needs_room(const shard& s, std::uint32_t w) const noexcept {
    return (s.capacity != 0 && s.size.get() >= s.capacity) ||
           (s.max_weight != 0 && s.weight.get() + w > s.max_weight);
  }

  void set_deadline(shard& s, node_type& n, std::int64_t deadline) noexcept {
    if (n.deadline != detail::k_never && n.deadline != detail::k_free) --s.ttl_entries;
    n.deadline = deadline;
    if (deadline != detail::k_never) ++s.ttl_entries;
  }

  // ---- expire_after_access and expiry policies (options.hpp); only when custom_expiry_
  // -----------------------------------------------------------------------------

  static constexpr const char* k_tti_and_ttl =
      "cannot be set together with the other of default_ttl / expire_after_access: an entry has "
      "one deadline (an expiry_policy can combine them, see options.hpp)";

  // What a deadline leaves from `t`: no_expiry for none.
  static std::chrono::nanoseconds remaining(std::int64_t deadline, std::int64_t t) noexcept {
    return deadline == detail::k_never ? no_expiry : std::chrono::nanoseconds(deadline - t);
  }
  // The deadline of a lifetime that starts at `t`: k_never for no_expiry, `t` (expired) for zero
  // or less, clamped below k_never.
  static std::int64_t deadline_after(std::chrono::nanoseconds life, std::int64_t t) noexcept {
    if (life == no_expiry) return detail::k_never;
    if (life.count() <= 0) return t;
    return t > detail::k_never - 1 - life.count() ? detail::k_never - 1 : t + life.count();
  }

  // The deadline a write gives node `n` (its new value in place): `deadline` is the one its own
  // TTL gave; `old_deadline` the replaced entry's, k_free for a new entry. Under the shard lock.
  std::int64_t written_deadline(const node_type& n, std::int64_t deadline,
                                std::int64_t old_deadline) const noexcept {
    const std::int64_t t = now();
    if (opts_.expiry == nullptr) {  // expire_after_access: a write without a TTL of its own
      return deadline == detail::k_never ? deadline_after(opts_.expire_after_access, t) : deadline;
    }
    const std::chrono::nanoseconds ttl =
        deadline == detail::k_never
            ? no_expiry
            : std::chrono::nanoseconds(std::max<std::int64_t>(1, deadline - t));
    const std::chrono::nanoseconds life =
        old_deadline == detail::k_free
            ? opts_.expiry->after_create(n.key, n.value, ttl)
            : opts_.expiry->after_update(n.key, n.value, ttl, remaining(old_deadline, t));
    return deadline_after(life, t);
  }

  // A read returned live node i: gives it the lifetime the idle timeout or the policy says. Out
  // of line, so the hit path of a store without either stays as small as it was.
  [[gnu::noinline]] void after_read(shard& s, detail::index_t i) noexcept {
    auto& n = s.nodes[i];
    const std::int64_t t = now();
    const std::int64_t deadline =
        opts_.expiry == nullptr
            ? deadline_after(opts_.expire_after_access, t)
            : deadline_after(opts_.expiry->after_read(n.key, n.value, remaining(n.deadline, t)), t);
    if (deadline == n.deadline) return;
    set_deadline(s, n, deadline);
    if constexpr (k_orders_by_deadline) {
      if (!is_pinned(s, i)) s.policy.on_update(i);
    }
  }

  // ---- bounds at run time (set_max_entries() above)
  // ---------------------------------------------------------------------------------

  // Shard by shard: set_bounds(shard, k) under its lock, then pins over the shard's new pin bound
  // are released and entries evicted until it fits; listeners hear after each lock.
  template <class SetBounds>
  void rebound(SetBounds&& set_bounds) {
    deferred_error err;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      shard& sh = shards_[k];
      removal_buffer out;
      try {
        std::lock_guard<detail::reader_gate> g(sh.mu);
        set_bounds(sh, k);
        while (!sh.pinned.empty() &&
               ((sh.capacity != 0 && sh.pinned.size() > sh.max_pinned) ||
                (sh.max_weight != 0 && sh.pinned_weight > sh.max_pinned_weight))) {
          if constexpr (k_has_reserve) sh.policy.reserve();
          release_pin(sh, *sh.pinned.begin());
        }
        while ((sh.capacity != 0 && sh.size.get() > sh.capacity) ||
               (sh.max_weight != 0 && sh.weight.get() > sh.max_weight)) {
          const detail::index_t v = sh.policy.victim();
          if (v == detail::npos) break;  // only pins left (within their bound)
          remove_at(sh, find_index(sh, v), v,
                    expired(sh.nodes[v]) ? removal_cause::expired : removal_cause::evicted, out);
        }
      } catch (...) {
        notify_before_rethrow(out);
        throw;
      }
      err.run([&] { notify(out); });
    }
    err.rethrow();
  }

  // ---- pinning (pin() above)
  // ------------------------------------------------------------------------------

  static bool is_pinned(const shard& s, detail::index_t i) noexcept {
    return !s.pinned.empty() && s.pinned.contains(i);
  }

  // shard::hit_flags: the store has an idle timeout or expiry policy; the shard pins entries; the
  // store has a recorder.
  static constexpr std::uint8_t k_hit_expiry = 1, k_hit_pins = 2, k_hit_recorder = 4;
  static void note_pins(shard& s) noexcept {
    s.hit_flags = static_cast<std::uint8_t>((s.hit_flags & ~k_hit_pins) |
                                            (s.pinned.empty() ? 0 : k_hit_pins));
  }

  // get() past the gate (a miss, an expired entry, hit_flags set, a writer in): under the lock.
  // Out of line, so the gated hit is all that get() inlines.
  template <class Q>
  [[gnu::noinline]] std::optional<V> get_locked(shard& s, const key_arg<Q>& key, std::uint64_t h) {
    std::unique_lock<detail::reader_gate> lock(s.mu);
    auto it = s.table.find(probe_key<key_arg<Q>>{&key, low32(h)});
    if (it == s.table.end()) {
      s.misses.add();
      if constexpr (k_has_on_miss) s.policy.on_miss(low32(h));
      if (opts_.recorder) [[unlikely]] {
        lock.unlock();
        opts_.recorder.misses(1);
      }
      return std::nullopt;
    }
    const detail::index_t i = *it;
    auto& n = s.nodes[i];
    if (n.deadline != detail::k_never && n.deadline <= now()) [[unlikely]] {
      s.misses.add();
      if constexpr (k_has_on_miss) s.policy.on_miss(low32(h));  // a miss for the sketch too
      expire_and_unlock(s, it, i, lock);
      if (opts_.recorder) opts_.recorder.misses(1);
      return std::nullopt;
    }
    std::optional<V> result(n.value);  // copy first: if it throws, nothing has changed
    if (s.hit_flags == 0) [[likely]] {
      if constexpr (!policy_type::access_is_noop) s.policy.on_access(i);
    } else if (flagged_hit(s, i)) {
      s.hits.add();
      lock.unlock();
      opts_.recorder.hits(1);
      return result;
    }
    s.hits.add();
    return result;
  }

  // The lookup through the shard's gate (detail/reader_gate.hpp): no lock taken, no line
  // written but the thread's own stripe. In a shard with no hit_flags, a hit on a live entry
  // returns its value, counted and recorded for the policy; a key found absent returns nullopt
  // with `absent` set, counted as a miss (and told to a policy with on_miss, sampled, if the lock
  // is free), unless the thread reads as a guest. Anything else (an expired entry, hit_flags set,
  // a writer holding the shard, a guest's miss) returns nullopt with `absent` false, and get()
  // takes the lock. If V's copy, Hash or KeyEqual throws, the reader leaves the gate and nothing
  // has changed.
  template <class Q>
  [[gnu::always_inline]] std::optional<V> gated_get(shard& s, const key_arg<Q>& key,
                                                    std::uint64_t h, bool& absent) {
    // A policy that takes hits from concurrent readers (sieve's bit, s3fifo's counter) gets them
    // at once; the others through the gate's rings.
    constexpr bool direct = requires(policy_type & p, detail::index_t i) {
      p.on_access_concurrent(i);
    };
    constexpr bool records = !policy_type::access_is_noop && !direct;
    detail::reader_gate::ticket t;
    if (!s.mu.enter(t)) return std::nullopt;
    struct leave_on_throw {
      detail::reader_gate& g;
      detail::reader_gate::ticket& t;
      bool armed = true;
      ~leave_on_throw() {
        if (armed) g.leave_miss(t);
      }
    } guard{s.mu, t};
    if (s.hit_flags != 0) return std::nullopt;  // read inside: no writer changes it meanwhile
    auto it = s.table.find(probe_key<key_arg<Q>>{&key, low32(h)});
    if (it == s.table.end()) {
      guard.armed = false;
      absent = s.mu.leave_absent(t);
      if constexpr (k_has_on_miss) {
        // The sketch hears of the miss as of a hit: every one with one thread; sampled as hits
        // are while several threads record, and only if the lock is free (a hint).
        if (absent && s.mu.sample()) {
          s.mu.drain_then(t, [&]() noexcept { s.policy.on_miss(low32(h)); });
        }
      }
      return std::nullopt;
    }
    const detail::index_t i = *it;
    const auto& n = s.nodes[i];
    if (n.deadline != detail::k_never && n.deadline <= now()) return std::nullopt;
    std::optional<V> result(n.value);
    guard.armed = false;
    if constexpr (direct) s.policy.on_access_concurrent(i);
    const bool record = records && s.mu.sample();
    if constexpr (requires { s.policy.on_access_sampled_out(i); }) {
      if (!record) s.policy.on_access_sampled_out(i);  // still inside: the entry is in place
    }
    if (s.mu.leave_hit(t, record ? i : detail::reader_gate::k_none)) [[unlikely]]
      s.mu.drain_if_free(t);
    return result;
  }

  // The rest of a hit when the shard's hit_flags are set: out of line, so a store that pins
  // nothing and has no expiry policy keeps the hit path it had (one byte tested on the lock's
  // cache line).
  // Returns whether the hit must be recorded (after the lock is released).
  [[gnu::noinline]] bool flagged_hit(shard& s, detail::index_t i) noexcept {
    if constexpr (!policy_type::access_is_noop) {
      if (!is_pinned(s, i)) s.policy.on_access(i);
    }
    if (custom_expiry_) after_read(s, i);
    return (s.hit_flags & k_hit_recorder) != 0;
  }

  // Unpins node i and gives it back to the policy as a new entry. The caller reserved the
  // policy's room (reserve()) where it has that hook.
  void release_pin(shard& s, detail::index_t i) noexcept {
    s.pinned.erase(i);
    s.pinned_weight -= s.nodes[i].weight;
    note_pins(s);
    s.nodes[i].hook = hook_type{};
    s.policy.on_insert(i);
  }

  // ---- removal
  // ------------------------------------------------------------------------------------

  // Whether removed keys and values must be carried out of the lock (for the listener, or to run
  // their destructors there); trivially destructible types without a listener are dropped in place.
  bool keep_removed() const noexcept {
    return opts_.on_removal ||
           !(std::is_trivially_destructible_v<K> && std::is_trivially_destructible_v<V>);
  }

  // Calls live(shard, index) under the shard lock if `key` maps to a live entry and returns true;
  // reclaims the entry if it has expired (and returns false). Counts nothing; what `live` does
  // is all that happens to the entry and the policy (contains, peek, expires_in read;
  // set_expires_after writes).
  template <class Q, class Live>
  bool with_live_entry(const key_arg<Q>& key, Live&& live) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    removal_buffer out;
    bool found = false;
    {
      std::lock_guard<detail::reader_gate> g(s.mu);
      auto it = s.table.find(probe_key<key_arg<Q>>{&key, low32(h)});
      if (it != s.table.end()) {
        const detail::index_t i = *it;
        if (expired(s.nodes[i])) {
          remove_at(s, it, i, removal_cause::expired, out);
        } else {
          live(s, i);
          found = true;
        }
      }
    }
    notify(out);
    return found;
  }

  typename table_type::iterator find_index(shard& s, detail::index_t i) {
    return s.table.find(probe_index{i, s.nodes[i].hash});
  }

  // Removes node i (whose table slot is `it`) for `cause`. The key and value move into `out` first;
  // the record is built in place once `out` has room, so a std::bad_alloc from `out` leaves the
  // entry untouched.
  void remove_at(shard& s, typename table_type::iterator it, detail::index_t i, removal_cause cause,
                 removal_buffer& out) {
    auto& n = s.nodes[i];
    if ((cause == removal_cause::evicted || cause == removal_cause::expired) && opts_.on_eviction)
        [[unlikely]] {
      call_eviction_listener(n, cause);
    }
    if ((cause == removal_cause::evicted || cause == removal_cause::expired) && opts_.recorder)
        [[unlikely]] {
      opts_.recorder.eviction(n.weight, cause);
    }
    if (keep_removed()) out.emplace_back(std::move(n.key), std::move(n.value), cause);
    s.table.erase(it);
    if (is_pinned(s, i)) {
      s.pinned.erase(i);
      s.pinned_weight -= n.weight;
      note_pins(s);
    } else {
      s.policy.on_remove(i);
    }
    switch (cause) {
      case removal_cause::explicit_erase:
        s.removals.add();
        break;
      case removal_cause::expired:
        s.expirations.add();
        break;
      case removal_cause::evicted:
        s.evictions.add();
        break;
      case removal_cause::replaced:
      case removal_cause::cleared:
        break;
    }
    destroy_node(s, i);
  }

  // The cold path of a lookup that found an expired entry: reclaims it, releases the lock,
  // notifies.
  [[gnu::noinline]] void expire_and_unlock(shard& s, typename table_type::iterator it,
                                           detail::index_t i,
                                           std::unique_lock<detail::reader_gate>& lock) {
    removal_buffer out;
    remove_at(s, it, i, removal_cause::expired, out);
    lock.unlock();
    notify(out);
  }

  // Frees node i after it left the table and the policy; adjusts size, weight and the TTL count.
  void destroy_node(shard& s, detail::index_t i) noexcept {
    auto& n = s.nodes[i];
    if (n.deadline != detail::k_never) --s.ttl_entries;
    s.size.sub(1);
    s.weight.sub(n.weight);
    n.key.~K();
    n.value.~V();
    s.nodes.release(i);
  }

  // Examines up to `budget` slots from the sweep hand and reclaims the expired ones.
  std::size_t sweep(shard& s, std::size_t budget, std::int64_t t, removal_buffer& out) {
    const detail::index_t hw = s.nodes.high_water();
    std::size_t reclaimed = 0;
    budget = std::min<std::size_t>(budget, hw);
    for (std::size_t k = 0; k < budget; ++k) {
      if (s.sweep_hand >= hw) s.sweep_hand = 0;
      const detail::index_t i = s.sweep_hand++;
      const auto& n = s.nodes[i];
      if (n.deadline != detail::k_free && n.deadline != detail::k_never && n.deadline <= t) {
        remove_at(s, find_index(s, i), i, removal_cause::expired, out);
        ++reclaimed;
      }
    }
    return reclaimed;
  }

  // Runs the listener for everything `out` holds; the buffer's destructor then destroys the keys
  // and values. Called with no lock held.
  // options.on_eviction, under the shard lock; noexcept: a listener that throws terminates.
  void call_eviction_listener(const node_type& n, removal_cause cause) const noexcept {
    opts_.on_eviction(n.key, n.value, cause);
  }

  // options.on_rejection for a refused write (no lock held).
  void report_rejection(put_result r, const K& key, const V& value) const {
    if ((r == put_result::rejected_full || r == put_result::rejected_by_policy ||
         r == put_result::rejected_too_heavy) &&
        opts_.on_rejection) {
      opts_.on_rejection(key, value, r);
    }
  }

  void notify(removal_buffer& out) {
    if (out.empty() || !opts_.on_removal) return;
    for (auto& r : out) opts_.on_removal(std::as_const(r.key), std::as_const(r.value), r.cause);
  }

  // notify() for an operation that failed part-way, from its catch block with no lock held: a
  // std::bad_alloc from the table or from `out` can come after removals, which stay done and
  // counted, so the listener must hear of them too. The caller then rethrows its exception; one
  // from the listener here is dropped in its favour (later listener calls skipped, as usual).
  void notify_before_rethrow(removal_buffer& out) noexcept {
    try {
      notify(out);
    } catch (...) {
    }
  }

  // Copies up to k_snapshot_batch live entries of shard s from slot `pos` on into `batch`; advances
  // pos. Returns false once the shard's slab is exhausted.
  // coldest() / hottest(): up to n entries of each shard in its order, interleaved rank by rank.
  std::vector<std::pair<K, V>> in_order(std::size_t n, bool coldest_first) {
    static_assert(k_has_order,
                  "cachet::sharded_store: hottest() and coldest() need a policy that keeps an "
                  "eviction order (lru, fifo, lfu, sieve, s3fifo, w_tinylfu, w_tinylfu_adaptive); "
                  "random, ttl and no_eviction do not");
    std::vector<std::pair<K, V>> out;
    if (n == 0) return out;
    std::vector<std::vector<std::pair<K, V>>> per(shard_count_);
    std::size_t total = 0;
    for (std::size_t k = 0; k < shard_count_; ++k) {
      shard& sh = shards_[k];
      std::vector<std::pair<K, V>>& mine = per[k];
      const std::int64_t t = now();
      std::lock_guard<detail::reader_gate> g(sh.mu);
      sh.policy.walk(coldest_first, [&](detail::index_t i) {
        const auto& nd = sh.nodes[i];
        if (nd.deadline != detail::k_never && nd.deadline <= t) return true;  // expired
        mine.emplace_back(nd.key, nd.value);
        return mine.size() < n;
      });
      total += mine.size();
    }
    out.reserve(std::min(n, total));
    for (std::size_t rank = 0; out.size() < n && out.size() < total; ++rank) {
      for (std::size_t k = 0; k < shard_count_ && out.size() < n; ++k) {
        if (rank < per[k].size()) out.push_back(std::move(per[k][rank]));
      }
    }
    return out;
  }

  bool snapshot(shard& s, detail::index_t& pos, std::vector<snapshot_entry>& batch) {
    batch.clear();
    const std::int64_t t = now();
    std::lock_guard<detail::reader_gate> g(s.mu);
    const detail::index_t hw = s.nodes.high_water();
    for (; pos < hw && batch.size() < k_snapshot_batch; ++pos) {
      const auto& n = s.nodes[pos];
      if (n.deadline == detail::k_free || (n.deadline != detail::k_never && n.deadline <= t))
        continue;
      batch.push_back(snapshot_entry{s.epoch, pos, n.stamp, n.deadline, n.key, n.value});
    }
    return pos < hw;
  }

  static constexpr std::size_t k_max_shards = 65536;

  options_type opts_;
  Clock clock_;
  Hash hash_;
  KeyEqual eq_;
  std::uint64_t hash_seed_;  // detail::process_seed(), read once rather than on every hash
  // The policy's shared state (w_tinylfu_adaptive: its simulation); built before the shards and
  // destroyed after them. Null when the policy has none.
  std::unique_ptr<shared_state_type> policy_shared_;
  shard* shards_ = nullptr;
  std::size_t shard_count_ = 0;
  int shard_bits_ = 0;
  // expire_after_access or an expiry policy is set: reads and writes ask them for lifetimes. A
  // store without either pays this one branch on a hit (beside shards_, which a hit reads too).
  bool custom_expiry_ = opts_.expire_after_access.count() != 0 || opts_.expiry != nullptr;
  std::atomic<single_flight<K, V, Hash, KeyEqual>*> insert_flights_{nullptr};
  // options.default_ttl, until set_default_ttl() changes it (0 = none).
  std::atomic<std::int64_t> default_ttl_ns_{opts_.default_ttl.count()};
  // The bounds now: options' until set_max_entries() / set_max_weight().
  std::atomic<std::size_t> max_entries_now_{opts_.max_entries};
  std::atomic<std::uint64_t> max_weight_now_{opts_.max_weight};
};

}  // namespace cachet
