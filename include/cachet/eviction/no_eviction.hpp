// cachet/eviction/no_eviction.hpp — never evict (Redis `noeviction`).
//
// Purpose: for a store that must never drop an entry silently. When a shard is full, put() of a new
// key returns put_result::rejected_full and changes nothing; replacing the value of a present key
// still works. Expired entries are still reclaimed, which frees room.
//
// Thread safety: stateless. Memory: 0 bytes per entry.
// Example:
//   cachet::sharded_store<int, int, cachet::no_eviction> s({.max_entries = 2, .shards = 1});
//   s.put(1, 1); s.put(2, 2);
//   assert(s.put(3, 3) == cachet::put_result::rejected_full);
#pragma once

#include "cachet/eviction.hpp"

namespace cachet {

struct no_eviction {
  struct hook {};

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = true;
    shard_policy(Nodes*, const policy_init&) noexcept {}
    void on_insert(detail::index_t) noexcept {}
    void on_access(detail::index_t) noexcept {}
    void on_update(detail::index_t) noexcept {}
    void on_remove(detail::index_t) noexcept {}
    detail::index_t victim() noexcept { return detail::npos; }
    void clear() noexcept {}
  };
};

static_assert(eviction_policy<no_eviction>);

}  // namespace cachet
