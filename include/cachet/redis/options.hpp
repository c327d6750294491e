// cachet/redis/options.hpp — configuration of a redis_store, and the counters it reports.
//
// Purpose: `redis_options` is the plain struct a user fills in (designated initialisers work) and
// hands to redis_store's constructor, which validates it in full before doing anything and throws
// `cachet::invalid_option` naming the offending option and its allowed range. Nothing connects at
// construction: connections are made on first use. `redis_stats` is the snapshot stats() returns.
//
// Thread safety: plain values; copy freely.
// Exception safety: the structs never throw; detail::validate_connection() (used by redis_store and
// the invalidation listener) throws invalid_option, and allocates only for its message.
//
// Example:
//   cachet::redis_options opts{
//       .unix_socket = "/run/redis/redis.sock",
//       .command_timeout = std::chrono::milliseconds(50),
//       .key_prefix = "users:v3:",
//       .default_ttl = std::chrono::minutes(10),
//       .breaker = {.failures_to_open = 5, .open_for = std::chrono::seconds(2)},
//   };
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cachet/options.hpp"

namespace cachet {

// When the circuit breaker opens and for how long (redis/detail/circuit_breaker.hpp).
struct breaker_options {
  // Consecutive failed calls (timeout, connection error, refused AUTH/SELECT) that open the
  // breaker; any success resets the count. In [1, 2^31). Low values shed load sooner after an
  // outage begins; high values ride out isolated blips without a period of forced misses.
  std::uint32_t failures_to_open = 5;

  // How long the breaker stays open (every call fails at once) before it lets one probe through.
  // Positive. Measured on the store's Clock. Short: recovery is noticed sooner, at the price of a
  // probe (which may wait up to command_timeout) every open_for during an outage.
  std::chrono::nanoseconds open_for = std::chrono::seconds(1);
};

// One node of a Redis Cluster, as a seed: host (a name or address, not empty) and port.
struct redis_endpoint {
  std::string host;
  int port = 6379;
};

struct redis_options {
  // TCP endpoint, used when unix_socket is empty and cluster_seeds is. host must not be empty;
  // port in [1, 65535].
  std::string host = "127.0.0.1";
  int port = 6379;

  // Redis Cluster: when not empty, the store talks to a cluster, and these are the nodes it asks
  // for the slot map (CLUSTER SLOTS) first; host/port/unix_socket are then not used. Any reachable
  // subset of the nodes will do: the map names the rest. Keys are routed by hash slot ({hash tags}
  // honoured), MOVED and ASK are followed, and the map is fetched again when a node says it moved.
  // Cluster nodes are reached over TCP only, and have database 0 only (database must be 0).
  std::vector<redis_endpoint> cluster_seeds{};

  // The least time between two fetches of the cluster's slot map (a MOVED reply or a lost node
  // asks for one; between fetches, MOVED answers are still followed one by one). In [1 ms,
  // 1 hour]. Ignored without cluster_seeds.
  std::chrono::milliseconds cluster_refresh_interval{100};

  // Path of Redis's unix socket; when set, host and port are ignored. At most 107 bytes.
  std::string unix_socket{};

  // How long a connect may take, in [1 ms, 1 hour]. A connect happens on first use and after an
  // error, on the calling thread.
  std::chrono::milliseconds connect_timeout{500};

  // The longest any one read or write on a connection may block, and the longest a call waits for
  // a free pooled connection; in [1 ms, 1 hour]. A command that runs into it counts as a timeout,
  // its connection is closed, and the call answers as a failure (a miss for reads).
  std::chrono::milliseconds command_timeout{250};

  // The most connections open at once, in [1, 1024]. A call holds one for its command only.
  std::size_t pool_size = 8;

  // AUTH on every new connection when password is not empty: `AUTH password`, or
  // `AUTH username password` (Redis 6 ACL) when username is set too. username needs password.
  std::string username{};
  std::string password{};

  // SELECT on every new connection when not 0. In [0, 2^31).
  int database = 0;

  // Prepended to every encoded key: the namespace of this store on a shared server. Two stores
  // with different prefixes never see each other's keys (given that neither prefix is a prefix of
  // the other's keys).
  std::string key_prefix{};

  // TTL of put(key, value) and put_if(key, value, still_valid): positive, or cachet::no_expiry.
  // Sent as PX in milliseconds, rounded up. Across processes the TTL is the bound on how long a
  // row another process cached before an invalidation may outlive it (docs/redis.md), so set one.
  std::chrono::nanoseconds default_ttl = no_expiry;

  // The breaker that keeps a down or slow Redis from costing every call a timeout.
  breaker_options breaker{};

  // How many keys whose invalidation (a failed erase, or a failed put over the key) has not yet
  // reached Redis this store remembers, in [1, 2^24]. Until a DEL of such a key succeeds, reads of
  // it from this process answer a miss. A failure beyond the bound is counted in
  // redis_stats::lost_invalidations and that key may be served stale until its TTL.
  std::size_t max_pending_invalidations = 4096;

  // Where try_lease()/release_lease() keep a key's lease (redis/lease_loader.hpp): the lease of the
  // data key D (= key_prefix + KeyCodec(key)) is `lease_prefix + "{" + D + "}"`. The braces are a
  // Redis Cluster hash tag: the lease hashes to D's slot (when D itself holds no '{' or '}'), so a
  // later script may touch both. Not empty, no '{' or '}'. With a key_prefix set, neither prefix
  // may be a prefix of the other, so no data key can be a lease; with no key_prefix, a key that
  // encodes to something starting with lease_prefix would share the lease's name (pick a prefix).
  std::string lease_prefix = "cachet:lease:";
};

// What try_lease() found.
enum class lease_result : std::uint8_t {
  acquired,     // the lease is ours until released or its time runs out
  held,         // another token holds it
  unavailable,  // Redis failed, refused the command, or the breaker is open: nobody knows
};

constexpr std::string_view to_string(lease_result r) noexcept {
  switch (r) {
    case lease_result::acquired:
      return "acquired";
    case lease_result::held:
      return "held";
    case lease_result::unavailable:
      return "unavailable";
  }
  return "unknown";
}

// The state of the circuit breaker.
enum class breaker_state : std::uint8_t {
  closed,     // calls go to Redis
  open,       // calls fail at once, without touching the network
  half_open,  // one probe is in flight; other calls fail at once
};

// A snapshot of redis_store's counters; each is exact, the set is not atomic across counters.
struct redis_stats {
  std::uint64_t hits = 0;               // get()/get_all() keys found and decoded
  std::uint64_t misses = 0;             // get()/get_all() keys not found, or answered as a miss
  std::uint64_t timeouts = 0;           // commands or connection waits that ran into a timeout
  std::uint64_t connection_errors = 0;  // connects refused, connections lost, AUTH/SELECT refused
  std::uint64_t server_errors = 0;    // error replies: refused writes (OOM, READONLY...) and others
  std::uint64_t decode_failures = 0;  // values the codec (or Redis's type) refused
  std::uint64_t connect_attempts = 0;  // connections this store tried to open
  breaker_state breaker = breaker_state::closed;
  std::uint64_t breaker_opened = 0;  // transitions into `open` (from closed or a failed probe)
  std::uint64_t breaker_closed = 0;  // successful probes (half_open -> closed)
  std::uint64_t fast_failures = 0;   // calls refused by the open breaker, without network
  std::uint64_t pending_invalidations = 0;  // keys whose DEL has not reached Redis yet, now
  std::uint64_t lost_invalidations = 0;     // invalidations dropped: the pending set was full
  std::uint64_t leases_acquired = 0;        // try_lease() calls that took the lease
  std::uint64_t leases_contended = 0;       // try_lease() calls that found it held
  std::uint64_t leases_released = 0;        // release_lease() calls that deleted our lease
  std::uint64_t lease_release_lost = 0;     // release_lease() found another token, or none: expired
  // Redis Cluster only (all 0 otherwise):
  std::uint64_t moved_redirects = 0;     // MOVED replies followed (the slot map was updated)
  std::uint64_t ask_redirects = 0;       // ASK replies followed (a slot in migration)
  std::uint64_t slot_map_refreshes = 0;  // CLUSTER SLOTS fetches that succeeded
  std::uint64_t cluster_nodes = 0;       // primaries known now (1 for a single server)
};

constexpr std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half_open";
  }
  return "unknown";
}

namespace detail {

// A timeout or interval option of the Redis tier: in [1 ms, 1 hour], else invalid_option(name).
inline void check_redis_duration(std::chrono::milliseconds d, const char* name) {
  if (d < std::chrono::milliseconds(1) || d > std::chrono::hours(1)) {
    throw invalid_option(name, "= " + std::to_string(d.count()) + " ms: must be in [1 ms, 1 hour]");
  }
}

// The options every connection to Redis needs (endpoint, timeouts, AUTH, database), checked the
// same way for redis_store and the invalidation listener. Throws invalid_option naming the first
// bad one.
inline void validate_connection(const redis_options& o) {
  if (!o.cluster_seeds.empty()) {
    if (!o.unix_socket.empty()) {
      throw invalid_option("unix_socket",
                           "is set with cluster_seeds: cluster nodes are reached over TCP; leave "
                           "unix_socket empty");
    }
    if (o.database != 0) {
      throw invalid_option("database", "= " + std::to_string(o.database) +
                                           " with cluster_seeds: a Redis Cluster has database 0 "
                                           "only");
    }
    if (o.cluster_seeds.size() > 1024) {
      throw invalid_option("cluster_seeds", "holds " + std::to_string(o.cluster_seeds.size()) +
                                                " nodes: at most 1024");
    }
    for (const redis_endpoint& e : o.cluster_seeds) {
      if (e.host.empty()) throw invalid_option("cluster_seeds", "has a node with an empty host");
      if (e.port < 1 || e.port > 65535) {
        throw invalid_option("cluster_seeds",
                             "has port " + std::to_string(e.port) + ": must be in [1, 65535]");
      }
    }
    check_redis_duration(o.cluster_refresh_interval, "cluster_refresh_interval");
  } else if (o.unix_socket.empty()) {
    if (o.host.empty())
      throw invalid_option("host", "is empty: set host (and port) or unix_socket");
    if (o.port < 1 || o.port > 65535) {
      throw invalid_option("port", "= " + std::to_string(o.port) + ": must be in [1, 65535]");
    }
  } else if (o.unix_socket.size() > 107) {
    throw invalid_option("unix_socket", "is " + std::to_string(o.unix_socket.size()) +
                                            " bytes long: must be at most 107");
  }
  check_redis_duration(o.connect_timeout, "connect_timeout");
  check_redis_duration(o.command_timeout, "command_timeout");
  if (!o.username.empty() && o.password.empty()) {
    throw invalid_option("username", "is set but password is not: set both, or neither");
  }
  if (o.database < 0) {
    throw invalid_option("database", "= " + std::to_string(o.database) + ": must be in [0, 2^31)");
  }
}

}  // namespace detail

}  // namespace cachet
