// cachet/hash.hpp — the default key hash: seeded xxh3 for byte strings, a seeded mixer for
// integers, absl::Hash for everything else.
//
// Purpose: a store hashes each key once; the high 32 bits pick the shard and the low 32 bits place
// the key in that shard's table, so the hash must be good in every bit. String-like keys
// (std::string, std::string_view, const char*) hash their bytes with XXH3 under a per-process
// random seed, so an attacker who picks keys cannot aim them at one shard or one bucket. The hash
// is transparent: a std::string_view hashes like the std::string holding the same bytes, so lookups
// need no temporary key.
//
// A user hash plugs in as the store's `Hash` parameter. Unless it declares `using is_avalanching =
// void;` (every output bit depends on every input bit) the store passes its result through a 64-bit
// mixer, so identity hashes such as std::hash<int> still spread keys over shards.
//
// Thread safety: stateless after the process seed is drawn (thread-safe static initialisation).
// Exception safety: never throws for the built-in types; absl::Hash for user types as that type's
// hash.
//
// Example:
//   cachet::hash<std::string> h;
//   assert(h(std::string("k")) == h(std::string_view("k")));
#pragma once

#include <absl/hash/hash.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace cachet {
namespace detail {

// A per-process random seed, drawn once. Mixes std::random_device with the time and an address so a
// platform whose random_device is deterministic still gets a different seed per run.
inline std::uint64_t process_seed() noexcept {
  static const std::uint64_t seed = [] {
    std::uint64_t s = 0;
    try {
      std::random_device rd;
      s = (std::uint64_t{rd()} << 32) ^ rd();
    } catch (...) {
    }
    s ^= static_cast<std::uint64_t>(
        std::chrono::high_resolution_clock::now().time_since_epoch().count());
    s ^= reinterpret_cast<std::uintptr_t>(&s);
    return s | 1;
  }();
  return seed;
}

// splitmix64's finaliser: a bijection on 64 bits with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

template <class H>
concept avalanching_hash = requires {
  typename H::is_avalanching;
};

}  // namespace detail

// Hash for byte strings. Transparent over std::string, std::string_view and const char*.
struct string_hash {
  using is_transparent = void;
  using is_avalanching = void;
  std::uint64_t operator()(std::string_view s) const noexcept {
    return XXH3_64bits_withSeed(s.data(), s.size(), detail::process_seed());
  }
};

// The default hash for K. Integers, enums and pointers: seeded mix64. Strings: string_hash.
// Other types: absl::Hash<K> (also seeded per process), then mixed by the store.
template <class K>
struct hash {
  std::uint64_t operator()(const K& k) const noexcept(noexcept(absl::Hash<K>{}(k))) {
    return absl::Hash<K>{}(k);
  }
};

template <class K>
requires(std::is_integral_v<K> || std::is_enum_v<K> || std::is_pointer_v<K>) struct hash<K> {
  using is_avalanching = void;
  std::uint64_t operator()(K k) const noexcept {
    std::uint64_t x;
    if constexpr (std::is_pointer_v<K>) {
      x = reinterpret_cast<std::uintptr_t>(k);
    } else if constexpr (std::is_enum_v<K>) {
      x = static_cast<std::uint64_t>(static_cast<std::underlying_type_t<K>>(k));
    } else {
      x = static_cast<std::uint64_t>(k);
    }
    return detail::mix64(x + detail::process_seed());
  }
};

template <>
struct hash<std::string> : string_hash {};
template <>
struct hash<std::string_view> : string_hash {};

}  // namespace cachet
