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
// void;` (every output bit depends on every input bit) the store passes its result through
// detail::seeded_mix64 below, keyed by the process seed, so identity hashes such as std::hash<int>
// still spread keys over shards, and keys chosen offline cannot be aimed at one shard: with a
// public mixer, an attacker who knows the user hash (the identity, say) would pick keys whose mixed
// top bits agree and fill one shard while the others stay empty. Declaring is_avalanching vouches
// for both properties: the store then uses the hash as it is, so a hash that is not seeded per
// process (XXH3 without a seed, say) must not declare it where keys come from untrusted input.
//
// The same process seed seeds the store's eviction policies (the victim draw of `random`, the
// random admission and shadow caches of `w_tinylfu`), so their choices cannot be predicted either.
// A hash seeded by its caller may expose that seed as `std::uint64_t seed() const`; the store then
// seeds its policies from it instead, so a store whose hash is fixed behaves the same in every
// process (bench/sim's seeded_hash does this to make simulations reproducible).
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
#include <cstddef>
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

// This thread's stripe of `n` (fixed per thread, spread by the address of a thread-local): which
// line of a striped counter the thread writes, so that threads on different cores write different
// lines.
inline std::size_t thread_stripe(std::size_t n) noexcept {
  thread_local const std::uint64_t h = [] {
    thread_local char tag;
    return mix64(reinterpret_cast<std::uintptr_t>(&tag));
  }();
  return static_cast<std::size_t>(h % n);
}

// The store's mix of a user hash that does not avalanche, keyed by `seed` (the process seed). An
// unknown seed added to the input hides where a key lands, but not how two keys relate: the
// attacker still picks the difference between two mixer inputs, and one round of mix64 (three
// xor-shifts, two multiplications) is short enough that a well-chosen difference could carry
// through to equal top bits more often than chance. Two rounds, the seed added before each, make
// such a shortcut far harder to find, for two more multiplications. Like absl::Hash and the seeded
// XXH3 above, this stops keys chosen in advance, not an attacker who watches where keys land and
// adapts; it is not a cryptographic function.
constexpr std::uint64_t seeded_mix64(std::uint64_t h, std::uint64_t seed) noexcept {
  return mix64(mix64(h + seed) + seed);
}

template <class H>
concept avalanching_hash = requires {
  typename H::is_avalanching;
};

// A hash whose caller chose its seed, and that says so (see the top of this file).
template <class H>
concept caller_seeded_hash = requires(const H& h) {
  { h.seed() } -> std::convertible_to<std::uint64_t>;
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
