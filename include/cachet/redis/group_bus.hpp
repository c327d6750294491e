// cachet/redis/group_bus.hpp — group invalidations (a tag, a namespace bump) for every instance,
// through the same Redis invalidation bus as single keys.
//
// Purpose: tagged_store::invalidate_tag() and versioned_namespaces::bump() act in one process;
// a service of several instances needs every instance to drop the group. redis_group_bus gives
// each group a marker key in Redis under the key prefix the instances' invalidation listeners
// broadcast-track: "<key_prefix>__cachet_group__:tag:<tag>" or "...:ns:<namespace>". Announcing a
// group SETs its marker; every listener on the prefix (redis_invalidation_listener, or the cluster
// one) then reports the marker's name in on_keys like any written key, and group_of() turns that
// name back into the group, for the handler to invalidate locally.
//
//   cachet::redis_group_bus groups(l2.options());        // the prefix the listeners track
//   cachet::redis_invalidation_listener bus(l2.options(), {}, {
//       .on_keys = [&](std::span<const std::string> names) {
//         for (const std::string& n : names) {
//           if (auto g = groups.group_of(n)) {
//             if (g->kind == cachet::group_kind::tag) pages.invalidate_tag(g->name);
//             else spaces.bump(spaces.open(g->name));
//           } else if (auto k = l2.key_from_redis(n)) {
//             tier.invalidate_local(*k);
//           }
//         }
//       },
//       .on_flush = [&] { pages.store().clear(); spaces.store().clear(); tier.clear_local(); },
//       .on_state = [&](bool up) { ... as for the tier; on a loss also clear the local stores ...
//       },
//   });
//   pages.invalidate_tag("product:42");       // here, at once
//   groups.announce_tag("product:42");        // and everywhere (this instance hears it too)
//
// Guarantee: once announce_*() returned true, an instance whose listener is up drops the group
// when its handler runs, one server event-loop round plus the network delay later, like a key
// write; a read on that instance that starts after the handler ran never sees the group's old
// entries. While an instance's bus is down it may miss announcements: the listener's contract
// (on_state(false)) is to drop local copies then, groups included (clear the local stores). The
// announcing instance hears its own announcement too (one more invalidation: a miss, never a stale
// read). Markers stay in Redis (one small key per group name ever announced, no TTL: an expiry
// would be reported as one more announcement).
//
// Thread safety: announce_*() and group_of() may be called from any thread. Exceptions:
// announce_*() returns false when Redis did not take the write (down, breaker open, refused; the
// reason is in markers().stats()) and throws std::bad_alloc; group_of() throws std::bad_alloc.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cachet/redis/redis_store.hpp"

namespace cachet {

enum class group_kind : std::uint8_t { tag, space };

struct group_event {
  group_kind kind;
  std::string name;  // the tag, or the namespace's name
};

class redis_group_bus {
 public:
  // `opts`: the connection and key_prefix of the instances' listeners (e.g. the L2's options()).
  // (Markers are written without a TTL, whatever opts.default_ttl says.)
  explicit redis_group_bus(redis_options opts) : markers_(without_ttl(std::move(opts))) {}
  redis_group_bus(const redis_group_bus&) = delete;
  redis_group_bus& operator=(const redis_group_bus&) = delete;

  // Tells every instance to invalidate `tag` / bump namespace `space`. True once Redis took the
  // marker's write.
  bool announce_tag(std::string_view tag) { return announce(k_tag, tag); }
  bool announce_bump(std::string_view space) { return announce(k_space, space); }

  // The group a Redis key name from on_keys stands for; nullopt for any other key.
  std::optional<group_event> group_of(std::string_view redis_name) const {
    if (!redis_name.starts_with(markers_.options().key_prefix)) return std::nullopt;
    std::optional<std::string> key = markers_.key_from_redis(redis_name);
    if (!key) return std::nullopt;
    std::string_view k = *key;
    if (!k.starts_with(k_marker)) return std::nullopt;
    k.remove_prefix(k_marker.size());
    if (k.starts_with(k_tag))
      return group_event{group_kind::tag, std::string(k.substr(k_tag.size()))};
    if (k.starts_with(k_space)) {
      return group_event{group_kind::space, std::string(k.substr(k_space.size()))};
    }
    return std::nullopt;
  }

  // The store that writes the markers (its stats() say why an announcement failed).
  redis_store<std::string, std::string>& markers() noexcept { return markers_; }

 private:
  static constexpr std::string_view k_marker = "__cachet_group__:";
  static constexpr std::string_view k_tag = "tag:";
  static constexpr std::string_view k_space = "ns:";

  static redis_options without_ttl(redis_options o) {
    o.default_ttl = no_expiry;
    return o;
  }

  bool announce(std::string_view kind, std::string_view name) {
    std::string key(k_marker);
    key.append(kind);
    key.append(name);
    // The value only has to be written: a SET is reported even when the value is unchanged.
    return stored(
        markers_.put(std::move(key), std::to_string(seq_.fetch_add(1, std::memory_order_relaxed))));
  }

  redis_store<std::string, std::string> markers_;
  std::atomic<std::uint64_t> seq_{0};
};

}  // namespace cachet
