// cachet/redis/detail/cluster_slots.hpp — the arithmetic of Redis Cluster: a key's hash slot, and
// the redirections a node answers with.
//
// IMPLEMENTATION DETAILS
// Redis Cluster splits the key space into 16384 hash slots; a key's slot is CRC16(key) mod 16384,
// where CRC16 is the XMODEM variant (polynomial 0x1021, initial value 0, no reflection; the check
// value of "123456789" is 0x31C3). A hash tag makes keys share a slot: if the key holds a '{' and
// a '}' after it with at least one byte in between, only the bytes between the first '{' and the
// first '}' after it are hashed ("{user1000}.following" and "{user1000}.followers" share a slot;
// "foo{}{bar}" hashes in full, "foo{{bar}}" hashes "{bar"). These rules are the Redis Cluster
// specification's; the table below is computed from the polynomial at compile time.
//
// A node that does not serve a key's slot answers `-MOVED <slot> <host>:<port>` (the slot lives
// there now: update the map) or, while the slot migrates, `-ASK <slot> <host>:<port>` (this key
// already moved: ask there once, preceded by ASKING, and keep the map). parse_redirect() reads
// both; anything else is not a redirection.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cachet::detail {

inline constexpr std::size_t k_cluster_slots = 16384;

inline constexpr std::array<std::uint16_t, 256> k_crc16_table = [] {
  std::array<std::uint16_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i << 8;
    for (int bit = 0; bit < 8; ++bit) c = (c & 0x8000u) != 0 ? (c << 1) ^ 0x1021u : c << 1;
    t[i] = static_cast<std::uint16_t>(c);
  }
  return t;
}();

// CRC16/XMODEM of `bytes`.
constexpr std::uint16_t crc16(std::string_view bytes) noexcept {
  std::uint16_t crc = 0;
  for (char ch : bytes) {
    const auto b = static_cast<std::uint8_t>(ch);
    crc = static_cast<std::uint16_t>((crc << 8) ^ k_crc16_table[((crc >> 8) ^ b) & 0xffu]);
  }
  return crc;
}

// The bytes of `key` that decide its slot: the hash tag if it has one, else the whole key.
constexpr std::string_view hash_tag(std::string_view key) noexcept {
  const std::size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const std::size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

// The hash slot of the Redis key `key`, in [0, 16384).
constexpr std::uint16_t key_slot(std::string_view key) noexcept {
  return static_cast<std::uint16_t>(crc16(hash_tag(key)) & (k_cluster_slots - 1));
}

// A MOVED or ASK error reply, parsed.
struct cluster_redirect {
  enum class kind : std::uint8_t { none, moved, ask };
  kind type = kind::none;
  std::uint16_t slot = 0;
  std::string host;  // empty: the node that answered (Redis 7 may leave the endpoint unknown)
  int port = 0;
};

// Reads `error` (an error reply's text) as `MOVED <slot> <host>:<port>` or `ASK ...`; type none
// for anything else or anything malformed. The host may be an IPv6 address: the port follows the
// last ':'. Throws std::bad_alloc (the host string).
inline cluster_redirect parse_redirect(std::string_view error) {
  cluster_redirect r;
  cluster_redirect::kind k = cluster_redirect::kind::none;
  if (error.starts_with("MOVED ")) {
    k = cluster_redirect::kind::moved;
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    k = cluster_redirect::kind::ask;
    error.remove_prefix(4);
  } else {
    return r;
  }
  const std::size_t space = error.find(' ');
  if (space == std::string_view::npos) return r;
  unsigned slot = 0;
  const std::string_view slot_text = error.substr(0, space);
  auto [p, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
  if (ec != std::errc() || p != slot_text.data() + slot_text.size() || slot >= k_cluster_slots) {
    return r;
  }
  const std::string_view endpoint = error.substr(space + 1);
  const std::size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos) return r;
  int port = 0;
  const std::string_view port_text = endpoint.substr(colon + 1);
  auto [q, ec2] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec2 != std::errc() || q != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return r;
  }
  r.type = k;
  r.slot = static_cast<std::uint16_t>(slot);
  r.host.assign(endpoint.substr(0, colon));
  r.port = port;
  return r;
}

}  // namespace cachet::detail
