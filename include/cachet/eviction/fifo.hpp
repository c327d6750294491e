// cachet/eviction/fifo.hpp — first in, first out.
//
// Purpose: evicts the entry inserted longest ago. Hits and updates do not change the order (an
// update keeps the entry's place). Cheapest policy on the hit path — nothing is written — and a
// fine choice when entries have similar value or a TTL does the real work.
//
// Thread safety: used only under the shard lock (see eviction.hpp). Memory: 8 bytes per entry.
// Example: cachet::sharded_store<std::uint64_t, std::string, cachet::fifo> s({.max_entries =
// 1000});
#pragma once

#include "cachet/eviction.hpp"

namespace cachet {

struct fifo {
  struct hook {
    detail::link ln;
  };

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = true;
    shard_policy(Nodes* n, const policy_init&) noexcept : n_(n) {}
    void on_insert(detail::index_t i) noexcept { list_.push_front(*n_, i); }
    void on_access(detail::index_t) noexcept {}
    void on_update(detail::index_t) noexcept {}
    void on_remove(detail::index_t i) noexcept { list_.remove(*n_, i); }
    detail::index_t victim() noexcept { return list_.tail(); }
    void clear() noexcept { list_ = {}; }
    // The eviction order (coldest first: oldest insert first) or its reverse, for hottest() /
    // coldest(): f(i) per entry while it returns true.
    template <class F>
    void walk(bool coldest_first, F&& f) {
      list_.walk(*n_, coldest_first, f);
    }

   private:
    Nodes* n_;
    detail::index_list list_;
  };
};

static_assert(eviction_policy<fifo>);

}  // namespace cachet
