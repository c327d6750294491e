// cachet/detail/guarded_loader.hpp — the one guarded-loading core under every access pattern.
//
// IMPLEMENTATION DETAILS
// Every pattern that loads on a miss must keep one promise: a read that starts after a write or an
// invalidation of its key has returned never gets the row that write replaced. Three things can
// hand it that row, and this class closes each:
//
//   1. A fill that outlives the invalidation. A load reads the old row, a writer updates the row
//      and erases the cache entry, then the load puts the old row back, where it is served until
//      its TTL. Closed by tickets (invalidation_guard.hpp): begin() notes the key's stripe before
//      the load; a write bumps it before touching the store; the fill goes through the store's
//      put_if(), whose condition "the stripe has not moved" is evaluated under the store's own
//      lock. The writer's store change takes that lock too, so either the fill lands first and the
//      writer's erase (or put) replaces it, or the fill sees the bump and is refused. Writing first
//      and checking afterwards (the old put -> re-check -> erase) leaves a window in which readers
//      see the old row even after invalidate() returned; put_if has none.
//   2. A flight that began before the write. single_flight hands a load's result to every caller
//      that joins it, so a read that starts after the write could join a load that read the old row
//      before it, and return that row (not cached, but returned). Closed by write(): after the
//      store is changed, the key's flight is detached; later callers start or join a flight that
//      began after the write, whose load reads the new row.
//   3. The second look. A leader first looks in the store for an answer another thread cached
//      since its miss (so one miss loads once). Because write() changes the store before it
//      detaches, a flight that started after the detach looks at the store after the change.
//
// The order inside write() is therefore fixed: bump, change the store, detach. Swapping any two
// reopens a hole; tests/patterns/interleaving_test.cpp holds one test per hole.
//
// Flights are keyed by the store's hasher and key_equal. Tickets are striped (4096 stripes), so an
// unrelated key sharing a stripe costs at most a dropped fill (the next read loads again), never a
// stale read. Everything here is per process: other processes learn of writes through their own
// invalidations or TTLs.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/detail/invalidation_guard.hpp"
#include "cachet/options.hpp"
#include "cachet/single_flight.hpp"

namespace cachet::detail {

template <class K, class V, class Hash, class KeyEqual>
class guarded_loader {
 public:
  using flights_type = single_flight<K, V, Hash, KeyEqual>;
  using ticket = std::uint64_t;

  guarded_loader() = default;
  explicit guarded_loader(typename flights_type::options opts) : flights_(opts) {}

  // The flight options of a pattern over `store`: its options' recorder, if it has one.
  template <class Store>
  static typename flights_type::options options_for(
      const Store& store, std::chrono::nanoseconds follower_timeout = {}) {
    typename flights_type::options o{follower_timeout};
    if constexpr (requires { store.options().recorder; }) {
      if constexpr (std::is_convertible_v<decltype(store.options().recorder), recorder_ref>) {
        o.recorder = store.options().recorder;
      }
    }
    return o;
  }

  // A write of `key`: bumps its ticket, runs `change()` (which erases or replaces the store's
  // entry, and whatever else the pattern records under its own locks), then detaches the key's
  // flight. Returns what change() returns. If change() throws, the flight is still detached and
  // the exception propagates: the bump alone only costs a raced fill.
  template <class Change>
  std::invoke_result_t<Change&> write(const K& key, Change&& change) {
    guard_.invalidate(key);
    if constexpr (std::is_void_v<std::invoke_result_t<Change&>>) {
      try {
        change();
      } catch (...) {
        flights_.detach(key);
        throw;
      }
      flights_.detach(key);
    } else {
      auto result = [&] {
        try {
          return change();
        } catch (...) {
          flights_.detach(key);
          throw;
        }
      }();
      flights_.detach(key);
      return result;
    }
  }

  // Taken before a load reads the source; passed to fill().
  ticket begin(const K& key) const noexcept { return guard_.begin(key); }

  // Puts `value` for `key` into `store` (with `ttl...`: nothing for the store's default TTL, or one
  // std::chrono::nanoseconds) unless a write of `key` came after `t`, atomically with respect to
  // the store's other operations on `key`. Returns the store's put_result (rejected_stale if
  // raced).
  template <class Store, class SV, class... Ttl>
  put_result fill(Store& store, const K& key, SV&& value, ticket t, Ttl... ttl) {
    return store.put_if(key, std::forward<SV>(value), ttl...,
                        [this, &key, t]() noexcept { return !guard_.raced(key, t); });
  }

  // One load of `key` across threads (see single_flight::load with a `current`).
  template <class Current, class Load>
  std::optional<V> load(const K& key, Current&& current, Load&& load) {
    return flights_.load(key, std::forward<Current>(current), std::forward<Load>(load));
  }

  // A load that parks no thread (see single_flight::load_async).
  template <class Current, class Load, class Start, class Then>
  void load_async(const K& key, Current current, Load load, Start&& start, Then then) {
    flights_.load_async(key, std::move(current), std::move(load), std::forward<Start>(start),
                        std::move(then));
  }
  // A refresh nobody waits for (see single_flight::try_lead with a `current`).
  template <class Current, class Load>
  bool try_lead(const K& key, Current&& current, Load&& load) {
    return flights_.try_lead(key, std::forward<Current>(current), std::forward<Load>(load));
  }

  // A batch (see single_flight::load_all).
  template <class Bulk>
  std::vector<std::optional<V>> load_all(std::span<const K> keys, Bulk&& bulk) {
    return flights_.load_all(keys, std::forward<Bulk>(bulk));
  }

  // The cache-aside read over `store` with the store's default TTL: the cached value, else one
  // load per key across threads. Inside the flight the store is looked at again (a value cached
  // since the miss answers without a load); then the ticket is taken, `load()` reads the source,
  // and a value is filled unless a write came after the ticket. std::nullopt from load() is
  // returned and not cached. load() runs on the leader's thread with no lock held.
  template <class Store, class Load>
  std::optional<V> get_or_load(Store& store, const K& key, Load&& load) {
    if (auto v = store.get(key)) return v;
    return load_missing(store, key, std::forward<Load>(load));
  }

  // get_or_load() after the caller has already missed the store.
  template <class Store, class Load>
  std::optional<V> load_missing(Store& store, const K& key, Load&& load) {
    return flights_.load(
        key, [&] { return cached(store, key); },
        [&]() -> std::optional<V> {
          const ticket t = begin(key);
          std::optional<V> v = std::forward<Load>(load)();
          if (v) fill(store, key, *v, t);
          return v;
        });
  }

  single_flight_stats stats() const noexcept { return flights_.stats(); }

 private:
  // The second look inside a flight: the store's value now, as an answer, or no answer.
  template <class Store>
  static std::optional<std::optional<V>> cached(Store& store, const K& key) {
    if (auto v = store.peek(key)) return std::optional<std::optional<V>>(std::move(v));
    return std::nullopt;
  }

  flights_type flights_;
  invalidation_guard<Hash> guard_;
};

}  // namespace cachet::detail
