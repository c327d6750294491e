// cachet/fwd.hpp — forward declarations of cachet's public templates and policy tags.
//
// Purpose: name cachet types in headers without pulling in their definitions. The template defaults
// live in the defining headers (sharded_store.hpp); include that to instantiate.
// Thread safety / exception safety: declarations only.
// Example: #include <cachet/fwd.hpp>  void warm(cachet::sharded_store<int, int>& s);  (after
// including
//          sharded_store.hpp in the .cpp)
#pragma once

namespace cachet {

struct lru;
struct lfu;
struct fifo;
struct ttl;
struct random;
struct no_eviction;
struct sieve;
template <unsigned SmallPercent, unsigned MoveThreshold, unsigned FreqCap>
struct s3fifo_policy;
using s3fifo = s3fifo_policy<10, 2, 3>;
struct w_tinylfu_traits;
struct w_tinylfu_adaptive_traits;
template <class Traits>
struct basic_w_tinylfu;
using w_tinylfu = basic_w_tinylfu<w_tinylfu_traits>;
using w_tinylfu_adaptive = basic_w_tinylfu<w_tinylfu_adaptive_traits>;
struct steady_clock;
struct coarse_steady_clock;
class manual_clock;
struct string_hash;
template <class K>
struct hash;
template <class K, class V>
struct store_options;
struct cache_stats;
class invalid_option;
struct tiered_options;
struct tiered_stats;
template <class L1, class L2>
class tiered_store;

}  // namespace cachet
