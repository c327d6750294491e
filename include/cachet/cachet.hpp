// cachet/cachet.hpp — the whole library in one include.
//
// Purpose: embeddable, header-only C++20 caching. Include this, or one header per feature:
//   cachet/sharded_store.hpp  the concurrent, bounded, expiring in-process store
//   cachet/eviction/*.hpp     eviction policies: lru, lfu, fifo, ttl, random, no_eviction, sieve,
//                             s3fifo, w_tinylfu
//   cachet/clock.hpp          coarse_steady_clock (default), steady_clock, manual_clock (tests)
//   cachet/hash.hpp           seeded xxh3 / integer mixing
//   cachet/options.hpp        store_options, invalid_option, put_result, removal_cause
//   cachet/stats.hpp          cache_stats
//   cachet/store.hpp          the Store concept every pattern is written against
//   cachet/single_flight.hpp  one load per key in flight (stampede guard)
//   cachet/cache_aside.hpp    the cache-aside pattern, with single-flight loads
//   cachet/source.hpp         Loader / Source concepts for the user's database
//   cachet/read_through.hpp   the read-through pattern: single-flight, XFetch, negative caching
//   cachet/xfetch.hpp         XFetch probabilistic early expiry
//   cachet/write_through.hpp  the write-through pattern (invalidate or update after the write)
//   cachet/write_back.hpp     the write-back pattern: batched, coalescing, bounded, retrying
//   cachet/tiered_store.hpp   a near cache: an in-process L1 in front of any store (Redis)
//   cachet/origin_limiter.hpp bounds the loads in flight to the origin (a cold cache)
//   cachet/miss_batcher.hpp   loads the misses of different keys with one load_all
//   cachet/codec.hpp          keys and values as bytes (for snapshots and redis_store)
//   cachet/snapshot.hpp       warm restart: save / load a store's live entries
//   cachet/namespaces.hpp     versioned namespaces: drop a group of keys in O(1)
//   cachet/tags.hpp           tags: drop every entry of a tag in O(entries carrying it)
//   cachet/tenants.hpp        tenant-scoped views over one store, with quotas and stats
//   cachet/recorder.hpp       a pluggable stats recorder (your metrics library)
//   cachet/shield.hpp         serve the hot keys of a remote store from short-lived local copies
//   cachet/split_keys.hpp     keep hot keys as N copies, to spread their reads over Redis nodes
//   cachet/hot_keys.hpp       a sampled top-k of the hottest keys, and a stampede detector
// Not included here: cachet/metrics.hpp (Prometheus export) and the Redis tier
// (cachet/redis/*.hpp, which needs hiredis).
// Thread safety and exception safety: see each header.
//
// Example:
//   #include <cachet/cachet.hpp>
//   cachet::sharded_store<std::string, int, cachet::lfu> s({.max_entries = 10'000});
//   s.put("answer", 42);
//   int v = s.get("answer").value_or(0);
#pragma once

#include "cachet/cache_aside.hpp"
#include "cachet/clock.hpp"
#include "cachet/codec.hpp"
#include "cachet/eviction.hpp"
#include "cachet/eviction/fifo.hpp"
#include "cachet/eviction/lfu.hpp"
#include "cachet/eviction/lru.hpp"
#include "cachet/eviction/no_eviction.hpp"
#include "cachet/eviction/random.hpp"
#include "cachet/eviction/s3fifo.hpp"
#include "cachet/eviction/sieve.hpp"
#include "cachet/eviction/ttl.hpp"
#include "cachet/eviction/w_tinylfu.hpp"
#include "cachet/executor.hpp"
#include "cachet/fwd.hpp"
#include "cachet/hash.hpp"
#include "cachet/hot_keys.hpp"
#include "cachet/miss_batcher.hpp"
#include "cachet/namespaces.hpp"
#include "cachet/options.hpp"
#include "cachet/origin_limiter.hpp"
#include "cachet/read_through.hpp"
#include "cachet/recorder.hpp"
#include "cachet/sharded_store.hpp"
#include "cachet/shield.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/snapshot.hpp"
#include "cachet/split_keys.hpp"
#include "cachet/source.hpp"
#include "cachet/stats.hpp"
#include "cachet/store.hpp"
#include "cachet/tags.hpp"
#include "cachet/tenants.hpp"
#include "cachet/tiered_store.hpp"
#include "cachet/write_back.hpp"
#include "cachet/write_through.hpp"
#include "cachet/xfetch.hpp"
