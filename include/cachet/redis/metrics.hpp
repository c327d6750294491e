// cachet/redis/metrics.hpp — the Redis tier's counters for cachet::metrics_registry.
//
// Purpose: include this besides cachet/metrics.hpp to register a redis_store, a
// redis_invalidation_listener, a redis_cluster_invalidation_listener or a lease_loader with a
// metrics_registry (docs/stats.md, "Prometheus export", lists the families). The overloads are
// found by argument-dependent lookup on the stats types.
//
// Thread safety and exceptions: as cachet/metrics.hpp (each function only formats a snapshot;
// throws std::bad_alloc).
#pragma once

#include <string_view>

#include "cachet/metrics.hpp"
#include "cachet/redis/invalidation_listener.hpp"
#include "cachet/redis/lease_loader.hpp"
#include "cachet/redis/options.hpp"

namespace cachet {

inline void write_metrics(metrics_sink& m, std::string_view cache, const redis_stats& s) {
  constexpr std::string_view req = "cachet_redis_requests_total";
  constexpr std::string_view req_help = "Redis reads (get, get_all keys) by result.";
  m.counter(req, req_help, cache, {{"result", "hit"}}, s.hits);
  m.counter(req, req_help, cache, {{"result", "miss"}}, s.misses);
  constexpr std::string_view err = "cachet_redis_errors_total";
  constexpr std::string_view err_help =
      "Redis failures by kind: timeouts, connection errors, error replies (refused writes), "
      "values that did not decode.";
  m.counter(err, err_help, cache, {{"kind", "timeout"}}, s.timeouts);
  m.counter(err, err_help, cache, {{"kind", "connection"}}, s.connection_errors);
  m.counter(err, err_help, cache, {{"kind", "server"}}, s.server_errors);
  m.counter(err, err_help, cache, {{"kind", "decode"}}, s.decode_failures);
  m.counter("cachet_redis_connects_total", "Connections the store tried to open.", cache, {},
            s.connect_attempts);
  constexpr std::string_view state = "cachet_redis_breaker_state";
  constexpr std::string_view state_help =
      "1 for the circuit breaker's state now (the worst node's, in a cluster), 0 for the others.";
  m.gauge(state, state_help, cache, {{"state", "closed"}},
          s.breaker == breaker_state::closed ? 1 : 0);
  m.gauge(state, state_help, cache, {{"state", "open"}}, s.breaker == breaker_state::open ? 1 : 0);
  m.gauge(state, state_help, cache, {{"state", "half_open"}},
          s.breaker == breaker_state::half_open ? 1 : 0);
  constexpr std::string_view tr = "cachet_redis_breaker_transitions_total";
  constexpr std::string_view tr_help = "Circuit breaker transitions into open, and closings.";
  m.counter(tr, tr_help, cache, {{"to", "open"}}, s.breaker_opened);
  m.counter(tr, tr_help, cache, {{"to", "closed"}}, s.breaker_closed);
  m.counter("cachet_redis_fast_failures_total",
            "Calls refused by the open breaker, without network.", cache, {}, s.fast_failures);
  m.gauge("cachet_redis_pending_invalidations",
          "Keys whose DEL has not reached Redis yet (reads of them miss).", cache, {},
          static_cast<double>(s.pending_invalidations));
  m.counter("cachet_redis_lost_invalidations_total",
            "Invalidations dropped because the pending set was full.", cache, {},
            s.lost_invalidations);
  constexpr std::string_view lease = "cachet_redis_leases_total";
  constexpr std::string_view lease_help = "try_lease and release_lease calls by outcome.";
  m.counter(lease, lease_help, cache, {{"result", "acquired"}}, s.leases_acquired);
  m.counter(lease, lease_help, cache, {{"result", "contended"}}, s.leases_contended);
  m.counter(lease, lease_help, cache, {{"result", "released"}}, s.leases_released);
  m.counter(lease, lease_help, cache, {{"result", "release_lost"}}, s.lease_release_lost);
  constexpr std::string_view redir = "cachet_redis_cluster_redirects_total";
  constexpr std::string_view redir_help = "Redis Cluster redirections followed, by kind.";
  m.counter(redir, redir_help, cache, {{"kind", "moved"}}, s.moved_redirects);
  m.counter(redir, redir_help, cache, {{"kind", "ask"}}, s.ask_redirects);
  m.counter("cachet_redis_cluster_slot_map_refreshes_total",
            "CLUSTER SLOTS fetches that succeeded.", cache, {}, s.slot_map_refreshes);
  m.gauge("cachet_redis_cluster_nodes", "Primaries the slot map names now (1 for one server).",
          cache, {}, static_cast<double>(s.cluster_nodes));
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const invalidation_stats& s) {
  m.counter("cachet_invalidation_messages_total", "Invalidation messages received.", cache, {},
            s.messages);
  m.counter("cachet_invalidation_keys_total", "Key names passed to on_keys.", cache, {},
            s.keys_invalidated);
  m.counter("cachet_invalidation_flushes_total", "Null invalidations passed on as on_flush.", cache,
            {}, s.flushes);
  m.counter("cachet_invalidation_disconnects_total", "Established buses lost.", cache, {},
            s.disconnects);
  m.counter("cachet_invalidation_reconnects_total", "Buses established again after a loss.", cache,
            {}, s.reconnects);
  m.counter("cachet_invalidation_failed_connects_total", "Attempts that did not establish a bus.",
            cache, {}, s.failed_connects);
  m.counter("cachet_invalidation_heartbeats_missed_total",
            "PINGs not answered within heartbeat_timeout.", cache, {}, s.heartbeats_missed);
  m.gauge("cachet_invalidation_connected", "1 while the bus is up.", cache, {},
          s.connected ? 1 : 0);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const lease_loader_stats& s) {
  constexpr std::string_view name = "cachet_lease_loads_total";
  constexpr std::string_view help =
      "Loads through the cross-process lease by outcome: led (an origin load under the lease), "
      "waited (another process's value), takeover, wait timeout and Redis unavailable (origin "
      "loads without the lease).";
  m.counter(name, help, cache, {{"result", "led"}}, s.loads_led);
  m.counter(name, help, cache, {{"result", "waited"}}, s.loads_waited);
  m.counter(name, help, cache, {{"result", "takeover"}}, s.lease_takeovers);
  m.counter(name, help, cache, {{"result", "wait_timeout"}}, s.lease_wait_timeouts);
  m.counter(name, help, cache, {{"result", "unavailable"}}, s.lease_unavailable);
}

}  // namespace cachet
