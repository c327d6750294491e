// cachet/cache_aside.hpp — the cache-aside pattern: the application coordinates cache and database.
//
// Purpose: the default pattern. Reads try the cache, and on a miss the application loads from its
// database and fills the cache; writes go to the database, then invalidate (erase) the cache entry,
// so the next read repopulates it. Invalidating instead of setting is what keeps racing writers
// from leaving an old value in the cache. cache_aside adds the guards a hand-written version lacks:
//   - get_or_load() loads through single_flight: N threads missing one key cause one load;
//   - consistency: a read that starts after invalidate() or set() has returned never gets the value
//     that call replaced, neither from the cache (a load that read the old row cannot fill it back:
//     its fill is refused under the store's lock) nor by joining a load that began before the call
//     (the call detaches it). Reads that overlap the call may get the old or the new value. Other
//     processes are not covered: there the entry's TTL is the bound (docs/consistency.md;
//     detail/guarded_loader.hpp for how).
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

#include <chrono>
#include <optional>
#include <type_traits>
#include <utility>

#include "cachet/detail/guarded_loader.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/source.hpp"
#include "cachet/store.hpp"

namespace cachet {

template <class Store>
class cache_aside {
  static_assert(check_store<Store>());

 public:
  using store_type = Store;
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;

  // Constructs the store from `args` (e.g. its store_options).
  template <class... Args>
  explicit cache_aside(Args&&... args)
      : store_(std::forward<Args>(args)...), core_(core_type::options_for(store_)) {}

  // The cached value, or nullopt. Counts a hit or miss in the store's stats.
  std::optional<mapped_type> get(const key_type& key) { return store_.get(key); }

  // Puts a value the application already has, with the store's default TTL or `ttl` (any
  // std::chrono::duration; a duration too long for nanoseconds means no expiry). A load of `key`
  // in flight will not overwrite it, and reads that start after set() returns get it (or a later
  // write). Prefer invalidate() after a database write: two writers' set() calls can land in the
  // opposite order of their database writes.
  put_result set(key_type key, mapped_type value) {
    return core_.write(key, [&] { return store_.put(key, std::move(value)); });
  }
  template <class Rep, class Period>
  put_result set(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) {
    const std::chrono::nanoseconds t = detail::to_nanoseconds(ttl);
    return core_.write(key, [&] { return store_.put(key, std::move(value), t); });
  }

  // Call after writing `key` to the database: erases the cached entry, makes any load of `key`
  // already in flight drop its fill, and detaches that load so later reads load the new row.
  // Returns whether an entry was erased.
  bool invalidate(const key_type& key) {
    return core_.write(key, [&] { return store_.erase(key); });
  }

  // The cached value; on a miss, loads it with `loader` (one load per key across all threads, see
  // single_flight), caches it (unless an invalidate() or set() came after the load began) and
  // returns it. std::nullopt from the loader is returned and not cached.
  template <class Loader>
  std::optional<mapped_type> get_or_load(const key_type& key, Loader&& loader) {
    static_assert(check_loader<std::remove_cvref_t<Loader>, key_type, mapped_type>());
    return core_.get_or_load(store_, key,
                             [&] { return load_from<key_type, mapped_type>(loader, key); });
  }

  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }
  single_flight_stats load_stats() const noexcept { return core_.stats(); }

 private:
  using core_type = detail::guarded_loader<key_type, mapped_type, typename Store::hasher,
                                           typename Store::key_equal>;
  Store store_;
  core_type core_;
};

}  // namespace cachet
