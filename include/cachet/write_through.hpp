// cachet/write_through.hpp — the write-through pattern: writes go to the source, then the cache.
//
// Purpose: for data that is read soon after it is written. Every write goes to the source of truth
// first; only when that succeeded is the cache touched, so a failed write never leaves the cache
// ahead of the database. Two modes for the cache step:
//   - write_mode::invalidate (default): erase the key; the next read loads the new row. Safe under
//     racing writers: whatever order two writers' cache steps land in, the cache ends up empty for
//     the key, never holding the loser's value.
//   - write_mode::update: put the new value, saving the next read a load. It accepts a race: if two
//     writers write the same key, their database writes and cache puts can land in opposite orders
//     (W1 db, W2 db, W2 cache, W1 cache), leaving the cache holding W1's value while the database
//     holds W2's, until the entry's TTL ends. Use it only when one writer owns each key.
// Reads are cache-aside reads with the Source as the loader: single-flight loads, and a fill that
// races with a write's invalidation is dropped (see cache_aside.hpp). Consistency: a read that
// starts after put() or erase() has returned gets that write's value (or a later one), never the
// one it replaced, in either mode (docs/consistency.md).
//
// Thread safety: all members are thread-safe; the Source must be too. No lock is held while the
// Source runs. Exception safety: if Source::store or Source::erase throws, the cache is unchanged
// and the exception propagates. A failed load caches nothing (see cache_aside).
//
// Example:
//   struct users_table {                       // a Source: load, store, erase
//     std::optional<User> load(const int& id);
//     void store(const int& id, const User& u);
//     void erase(const int& id);
//   };
//   cachet::write_through<cachet::sharded_store<int, User>, users_table> users(
//       users_table{db}, cachet::store_options<int, User>{.max_entries = 100'000});
//   users.put(42, User{"Ada"});   // database first, then the cache entry is invalidated
//   auto u = users.get(42);        // loads the row once
#pragma once

#include <optional>
#include <utility>

#include "cachet/cache_aside.hpp"
#include "cachet/source.hpp"
#include "cachet/store.hpp"

namespace cachet {

enum class write_mode : unsigned char {
  invalidate,  // erase the cached entry after a write (default: safe under racing writers)
  update,      // put the written value (saves a load; see the race in the header comment)
};

template <class Store, class Source>
class write_through {
  static_assert(check_store<Store>());

 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  static_assert(check_source<Source, key_type, mapped_type>());

  // Takes the Source, then constructs the store from `store_args` (e.g. its store_options).
  template <class... StoreArgs>
  explicit write_through(Source source, StoreArgs&&... store_args)
      : source_(std::forward<Source>(source)), cache_(std::forward<StoreArgs>(store_args)...) {}

  // The value for `key`: cached, or loaded from the Source (once across all threads) and cached.
  std::optional<mapped_type> get(const key_type& key) {
    return cache_.get_or_load(
        key, [this](const key_type& k) { return load_from<key_type, mapped_type>(source_, k); });
  }

  // Writes the Source, then invalidates or updates the cache (`mode`). If the Source throws, the
  // cache is unchanged.
  void put(const key_type& key, const mapped_type& value,
           write_mode mode = write_mode::invalidate) {
    source_.store(key, value);
    if (mode == write_mode::update) {
      cache_.set(key, value);  // loads in flight drop their (older) fill, as with invalidate()
    } else {
      cache_.invalidate(key);
    }
  }

  // Erases from the Source, then from the cache. If the Source throws, the cache is unchanged.
  void erase(const key_type& key) {
    source_.erase(key);
    cache_.invalidate(key);
  }

  Source& source() noexcept { return source_; }
  cache_aside<Store>& cache() noexcept { return cache_; }

 private:
  Source source_;
  cache_aside<Store> cache_;
};

}  // namespace cachet
