// cachet/cache_aside.hpp — the cache-aside pattern: the application coordinates cache and database.
//
// Purpose: the default pattern. Reads try the cache, and on a miss the application loads from its
// database and fills the cache; writes go to the database, then invalidate (erase) the cache entry,
// so the next read repopulates it. Invalidating instead of setting is what keeps racing writers
// from leaving an old value in the cache. cache_aside adds the two guards a hand-written version
// lacks:
//   - get_or_load() loads through single_flight: N threads missing one key cause one load;
//   - a fill never outlives an invalidation that raced with it. A load that read the old row, then
//     lost the race to a writer's invalidate(), would otherwise put the old value back and serve it
//     until its TTL (see detail/invalidation_guard.hpp for how this is prevented).
//
// Thread safety: all members are thread-safe; see the Store for what each may block on. The loader
// runs on the calling thread with no lock held.
//
// Exception safety: get_or_load() rethrows the loader's exception to every waiter of that load and
// caches nothing; the next call loads again. Other members throw what the Store throws.
//
// Example:
//   cachet::cache_aside<cachet::sharded_store<int, User>> users({.max_entries = 100'000});
//   auto u = users.get_or_load(42, [&](int id) { return db.find_user(id); });  // optional<User>
//   db.rename_user(42, "Ada");
//   users.invalidate(42);   // after the database write; the next read loads the new row
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "cachet/detail/invalidation_guard.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/source.hpp"

namespace cachet {

template <class Store>
class cache_aside {
 public:
  using store_type = Store;
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;

  // Constructs the store from `args` (e.g. its store_options).
  template <class... Args>
  explicit cache_aside(Args&&... args) : store_(std::forward<Args>(args)...) {}

  // The cached value, or nullopt. Counts a hit or miss in the store's stats.
  std::optional<mapped_type> get(const key_type& key) { return store_.get(key); }

  // Puts a value the application already has, with the store's default TTL or `ttl`. Prefer
  // invalidate() after a database write: set() after a write can race with another writer.
  put_result set(key_type key, mapped_type value) {
    return store_.put(std::move(key), std::move(value));
  }
  put_result set(key_type key, mapped_type value, std::chrono::nanoseconds ttl) {
    return store_.put(std::move(key), std::move(value), ttl);
  }

  // Call after writing `key` to the database: erases the cached entry and makes any load of `key`
  // already in flight drop its fill. Returns whether an entry was erased.
  bool invalidate(const key_type& key) {
    guard_.invalidate(key);
    return store_.erase(key);
  }

  // The cached value; on a miss, loads it with `loader` (one load per key across all threads, see
  // single_flight), caches it (unless an invalidate() raced with the load) and returns it.
  // std::nullopt from the loader is returned and not cached.
  template <class Loader>
  std::optional<mapped_type> get_or_load(const key_type& key, Loader&& loader) {
    static_assert(check_loader<std::remove_cvref_t<Loader>, key_type, mapped_type>());
    if (auto v = store_.get(key)) return v;
    // Inside the flight, a value cached since the miss above is served instead of a second load.
    const auto cached_now = [&]() -> std::optional<std::optional<mapped_type>> {
      if (auto v = store_.peek(key)) return v;
      return std::nullopt;
    };
    return flights_.load(key, cached_now, [&]() -> std::optional<mapped_type> {
      const std::uint64_t token = guard_.begin(key);
      std::optional<mapped_type> v = load_from<key_type, mapped_type>(loader, key);
      if (v) {
        store_.put(key, *v);
        if (guard_.raced(key, token)) store_.erase(key);  // a write landed meanwhile: drop the fill
      }
      return v;
    });
  }

  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }
  single_flight_stats load_stats() const noexcept { return flights_.stats(); }

 private:
  Store store_;
  single_flight<key_type, mapped_type, typename Store::hasher, typename Store::key_equal> flights_;
  detail::invalidation_guard<typename Store::hasher> guard_;
};

}  // namespace cachet
