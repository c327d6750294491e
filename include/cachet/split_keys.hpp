// cachet/split_keys.hpp — key splitting: a hot key kept as N copies, "key#0" .. "key#N-1", so that
// its reads spread over N Redis nodes (or shards) instead of melting one.
//
// Purpose: a key read by every request lives on one Redis node; a near cache (tiered_store) or a
// shield (shield.hpp) takes most of its reads off Redis, but the misses, refreshes and every
// instance without a near cache still land on that node. split_store<Store> wraps any store
// whose keys are strings and, for the keys `options.split` selects, writes every copy and reads
// one: each reading thread takes the copies in turn, so N copies take 1/N of the key's reads each.
// On a Redis Cluster the copies hash to different slots, hence usually to different primaries.
//
//   using remote_t = cachet::redis_store<std::string, std::string>;
//   cachet::split_store<remote_t> products(
//       {.copies = 8, .split = [](const std::string& k) { return k.starts_with("config:"); }},
//       redis_opts);
//   products.put("config:flags", flags);   // 8 SETs, one pipeline where the store has put_all
//   products.get("config:flags");          // one GET, of one copy
//
// Consistency: once put() returned, every copy holds the value (a read of any copy sees it); a
// read that overlaps a put may see the old or the new value, and two reads in a row may see them
// in either order until the put returns. A put that did not reach every copy (the store refused
// one, or threw) erases every copy before it returns or rethrows, so no copy is left older than the
// others: the key is then a miss (load it again); if that erase fails too (Redis down), the old
// copies stay until their TTL, so give split keys one. erase() erases every copy.
//
// Every instance must split the same keys with the same number of copies (the predicate is
// configuration, not a runtime decision): an instance that does not split a key reads the plain
// key, which the splitting instances never write. To move a key in or out of splitting, erase it
// (both forms) around the change.
//
// Invalidation: the bus reports the copies' names; key_from_redis(name) maps a copy back to its
// key (for a store that has key_from_redis), so wiring a tiered_store's L1 over a split L2 stays
// as in redis/invalidation_listener.hpp.
//
// Thread safety: as the store's. Exceptions: what the store throws; the constructor throws
// invalid_option for copies outside [2, 64].
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/options.hpp"
#include "cachet/store.hpp"

namespace cachet {

struct split_options {
  // Copies of each split key, in [2, 64].
  std::uint32_t copies = 4;
  // Which keys are split (the same in every instance). Empty: none.
  std::function<bool(const std::string&)> split{};
};

template <class Store>
class split_store {
  static_assert(check_store<Store>());
  static_assert(std::is_same_v<typename Store::key_type, std::string>,
                "cachet::split_store: the store's key_type must be std::string (copies are named "
                "key#i)");

 public:
  using key_type = std::string;
  using mapped_type = typename Store::mapped_type;
  using clock_type = typename Store::clock_type;
  using hasher = typename Store::hasher;
  using key_equal = typename Store::key_equal;
  template <class V2>
  using rebind_value = split_store<typename Store::template rebind_value<V2>>;

  // Validates `opts` and constructs the store from `args`.
  template <class... Args>
  explicit split_store(split_options opts, Args&&... args)
      : opts_(validated(std::move(opts))), store_(std::forward<Args>(args)...) {}
  split_store(const split_store&) = delete;
  split_store& operator=(const split_store&) = delete;

  // One copy of a split key (this thread's next, in turn), else the key.
  std::optional<mapped_type> get(const key_type& key) {
    return is_split(key) ? store_.get(copy_of(key, next_copy())) : store_.get(key);
  }
  std::optional<mapped_type> peek(const key_type& key) {
    return is_split(key) ? store_.peek(copy_of(key, next_copy())) : store_.peek(key);
  }
  bool contains(const key_type& key) {
    return static_cast<bool>(is_split(key) ? store_.contains(copy_of(key, next_copy()))
                                           : store_.contains(key));
  }

  // Every copy of a split key (see "Consistency"), else the key.
  put_result put(key_type key, mapped_type value) {
    if (!is_split(key)) return store_.put(std::move(key), std::move(value));
    if constexpr (requires(std::span<const std::pair<key_type, mapped_type>> items) {
                    store_.put_all(items);
                  }) {
      return fan_out_all(key, value, [&](const auto& items) { return store_.put_all(items); });
    } else {
      return fan_out(key, value, [&](key_type&& k, const mapped_type& v) {
        return store_.put(std::move(k), mapped_type(v));
      });
    }
  }
  template <class Rep, class Period>
  put_result put(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) {
    if (!is_split(key)) return store_.put(std::move(key), std::move(value), ttl);
    if constexpr (requires(std::span<const std::pair<key_type, mapped_type>> items) {
                    store_.put_all(items, ttl);
                  }) {
      return fan_out_all(key, value, [&](const auto& items) { return store_.put_all(items, ttl); });
    } else {
      return fan_out(key, value, [&](key_type&& k, const mapped_type& v) {
        return store_.put(std::move(k), mapped_type(v), ttl);
      });
    }
  }
  template <detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, Pred still_valid) {
    if (!is_split(key)) return store_.put_if(std::move(key), std::move(value), still_valid);
    return fan_out(key, value, [&](key_type&& k, const mapped_type& v) {
      return store_.put_if(std::move(k), mapped_type(v), still_valid);
    });
  }
  template <class Rep, class Period, detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl,
                    Pred still_valid) {
    if (!is_split(key)) return store_.put_if(std::move(key), std::move(value), ttl, still_valid);
    return fan_out(key, value, [&](key_type&& k, const mapped_type& v) {
      return store_.put_if(std::move(k), mapped_type(v), ttl, still_valid);
    });
  }

  // Erases every copy of a split key, else the key. True if any was there.
  bool erase(const key_type& key) {
    if (!is_split(key)) return static_cast<bool>(store_.erase(key));
    return erase_copies(key);
  }

  const clock_type& clock() const noexcept { return store_.clock(); }

  // The key a Redis name stands for, copies mapped back to their key (for the invalidation bus).
  template <class S = Store>
  auto key_from_redis(std::string_view redis_name) const
      -> decltype(std::declval<const S&>().key_from_redis(redis_name)) {
    auto k = store_.key_from_redis(redis_name);
    if (k) {
      if (std::optional<std::string> base = base_of(*k)) *k = std::move(*base);
    }
    return k;
  }

  // The key `name` is a copy of, if it is one ("<split key>#<i>", i below copies).
  std::optional<std::string> base_of(std::string_view name) const {
    const std::size_t hash_at = name.rfind('#');
    if (hash_at == std::string_view::npos || hash_at + 1 == name.size()) return std::nullopt;
    std::uint32_t i = 0;
    for (std::size_t p = hash_at + 1; p < name.size(); ++p) {
      const char c = name[p];
      if (c < '0' || c > '9' || i >= opts_.copies) return std::nullopt;
      i = i * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (i >= opts_.copies) return std::nullopt;
    std::string base(name.substr(0, hash_at));
    if (!is_split(base)) return std::nullopt;
    return base;
  }

  // The name of copy i of `key`.
  static std::string copy_of(const key_type& key, std::uint32_t i) {
    std::string k;
    k.reserve(key.size() + 3);
    k.append(key);
    k.push_back('#');
    k.append(std::to_string(i));
    return k;
  }

  bool is_split(const key_type& key) const { return opts_.split && opts_.split(key); }
  const split_options& options() const noexcept { return opts_; }
  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }
  template <class S = Store>
  auto stats() const noexcept -> decltype(std::declval<const S&>().stats()) {
    return store_.stats();
  }

 private:
  static split_options validated(split_options o) {
    if (o.copies < 2 || o.copies > 64) {
      throw invalid_option("copies", "= " + std::to_string(o.copies) + ": must be in [2, 64]");
    }
    return o;
  }

  // This thread's next copy: each thread walks the copies in turn, from a start of its own.
  std::uint32_t next_copy() const noexcept {
    thread_local std::uint32_t turn =
        static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&turn) >> 6);
    return turn++ % opts_.copies;
  }

  // Writes every copy with `write`; if one is refused or throws, erases all of them.
  template <class Write>
  put_result fan_out(const key_type& key, const mapped_type& value, Write write) {
    put_result first = put_result::inserted;
    try {
      for (std::uint32_t i = 0; i < opts_.copies; ++i) {
        const put_result r = write(copy_of(key, i), value);
        if (!stored(r)) {
          erase_copies_quietly(key);
          return r;
        }
        if (i == 0) first = r;
      }
    } catch (...) {
      erase_copies_quietly(key);
      throw;
    }
    return first;
  }

  // fan_out() through the store's put_all (one pipeline for redis_store).
  template <class WriteAll>
  put_result fan_out_all(const key_type& key, const mapped_type& value, WriteAll write_all) {
    std::vector<std::pair<key_type, mapped_type>> items;
    items.reserve(opts_.copies);
    for (std::uint32_t i = 0; i < opts_.copies; ++i) items.emplace_back(copy_of(key, i), value);
    std::vector<put_result> rs;
    try {
      rs = write_all(std::span<const std::pair<key_type, mapped_type>>(items));
    } catch (...) {
      erase_copies_quietly(key);
      throw;
    }
    for (const put_result r : rs) {
      if (!stored(r)) {
        erase_copies_quietly(key);
        return r;
      }
    }
    return rs.empty() ? put_result::rejected_unavailable : rs.front();
  }

  bool erase_copies(const key_type& key) {
    bool any = false;
    for (std::uint32_t i = 0; i < opts_.copies; ++i) {
      any = static_cast<bool>(store_.erase(copy_of(key, i))) || any;
    }
    return any;
  }
  void erase_copies_quietly(const key_type& key) noexcept {
    for (std::uint32_t i = 0; i < opts_.copies; ++i) {
      try {
        store_.erase(copy_of(key, i));
      } catch (...) {
      }
    }
  }

  split_options opts_;
  Store store_;
};

}  // namespace cachet
