// cachet/tenants.hpp — tenant isolation: scoped views over one store, with per-tenant quotas and
// stats.
//
// Purpose: a cache shared by tenants must make it impossible to read another tenant's entry, and
// one busy tenant must not evict the others. A tenant_store owns one store whose keys are
// tenant_key<K>{tenant id, key}; open(name, quota) hands out a view that builds every key from
// its own tenant id, so no call through a view can name, read, overwrite, erase or clear another
// tenant's entry (the view has no member that takes a tenant_key or a tenant id). Each tenant has
// a quota on entries and on weight: once a tenant is over it, its own oldest entries (in the order
// it inserted them) are erased until it is within it again. open() refuses quotas that do not fit
// in the store together, so a store with room for every quota never has to evict one tenant to
// make room for another (see "Guarantee" for what the store's shards add).
//
//   using store_t =
//       cachet::sharded_store<cachet::tenant_key<std::string>, Doc, cachet::no_eviction>;
//   cachet::tenant_store<store_t> docs(store_t::options_type{.max_entries = 100'000});
//   auto acme = docs.open("acme", {.max_entries = 40'000});
//   auto globex = docs.open("globex", {.max_entries = 40'000});
//   acme.put("doc:1", d);                      // globex.get("doc:1") is globex's own doc:1
//   acme.stats().hits; acme.size();            // per tenant
//
// Guarantee: through a view, only that tenant's entries are ever read, written, erased or
// counted. Quota eviction takes only the tenant's own entries. The store's own eviction is shared,
// and it is per shard: a shard fills before the store does (keys spread over shards unevenly, and
// each shard holds 1/shards of the bound), and an evicting policy then evicts whatever entry of
// that shard it picks, of any tenant. So for isolation that holds, give the store the
// no_eviction policy (as above): it refuses a put into a full shard instead of evicting anybody's
// entry, and the view makes room by erasing its own tenant's oldest entries and retries (up to 8
// times; then the put answers rejected_full, which only happens when the full shard holds none of
// the writer's entries: leave headroom, e.g. quotas adding up to 80% of max_entries). open()
// checks that the entry quotas add up to at most the store's max_entries, and the weight quotas
// to its max_weight. A tenant briefly exceeds its quota by the puts in flight on it.
//
// Quota eviction is FIFO within the tenant (the store's policy still orders the store as a
// whole): each view keeps its inserted keys in a queue (one key copy per insertion; keys that
// left the store some other way are skipped when reached, and the queue is compacted when it
// grows past twice the tenant's entries plus 64).
//
// Thread safety: every member of the store and of a view may be called from any thread; views
// are cheap copyable handles, valid while the tenant_store lives. open() takes a mutex (call it
// once per tenant). A view's get adds one relaxed increment on a per-thread stripe to the store's
// cost; a put that inserts takes the tenant's queue lock. Exceptions: what the store throws; open()
// throws invalid_option for a bad or oversubscribing quota, std::bad_alloc, and std::length_error
// past 2^20 tenants.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/eviction/no_eviction.hpp"
#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/stats.hpp"

namespace cachet {

// A key of a tenant_store's store: the tenant's id and the tenant's key.
template <class K>
struct tenant_key {
  using key_type = K;
  std::uint32_t tenant = 0;
  K key;
  friend bool operator==(const tenant_key&, const tenant_key&) = default;
};

template <class K>
struct hash<tenant_key<K>> {
  using is_avalanching = void;
  std::uint64_t operator()(const tenant_key<K>& k) const noexcept(noexcept(hash<K>{}(k.key))) {
    return detail::mix64(hash<K>{}(k.key) +
                         detail::mix64(std::uint64_t{k.tenant} + detail::process_seed()));
  }
};

// A tenant's bounds. 0 = no bound of that kind (at least one must be set).
struct tenant_quota {
  std::size_t max_entries = 0;
  std::uint64_t max_weight = 0;  // needs the store's weigher
};

template <class Store>
class tenant_store {
 public:
  using store_type = Store;
  using key_type = typename Store::key_type::key_type;
  using mapped_type = typename Store::mapped_type;
  static_assert(std::is_same_v<typename Store::key_type, tenant_key<key_type>>,
                "cachet::tenant_store: the store's key_type must be cachet::tenant_key<K>");

 private:
  static constexpr std::size_t k_read_stripes = 8;
  struct tenant_state {
    std::string name;
    std::uint32_t id = 0;
    tenant_quota quota;
    std::atomic<std::int64_t> entries{0};
    std::atomic<std::int64_t> weight{0};
    // Reads are counted on stripes picked per thread, so readers of one tenant on different
    // cores write different lines; the rest are write-path counters.
    struct alignas(64) read_stripe {
      std::atomic<std::uint64_t> hits{0}, misses{0};
    };
    std::array<read_stripe, k_read_stripes> reads;
    std::atomic<std::uint64_t> inserts{0}, updates{0}, rejections{0}, evictions{0}, expirations{0},
        explicit_removals{0}, cleared{0}, quota_evictions{0};
    std::mutex mu;               // guards `order`
    std::deque<key_type> order;  // inserted keys, oldest first (may hold keys already gone)
  };

 public:
  // One tenant's view: every key it takes is this tenant's.
  class view {
   public:
    view() = default;
    std::string_view name() const noexcept { return t_->name; }
    const tenant_quota& quota() const noexcept { return t_->quota; }

    std::optional<mapped_type> get(const key_type& key) const {
      std::optional<mapped_type> v = owner_->store_.get(full(key));
      auto& stripe = t_->reads[detail::thread_stripe(k_read_stripes)];
      (v ? stripe.hits : stripe.misses).fetch_add(1, std::memory_order_relaxed);
      return v;
    }
    std::optional<mapped_type> peek(const key_type& key) const {
      return owner_->store_.peek(full(key));
    }
    bool contains(const key_type& key) const {
      return static_cast<bool>(owner_->store_.contains(full(key)));
    }
    put_result put(key_type key, mapped_type value) const {
      return owner_->put(*t_, std::move(key), std::move(value), [](auto& s, auto&& k, auto&& v) {
        return s.put(std::move(k), std::move(v));
      });
    }
    template <class Rep, class Period>
    put_result put(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) const {
      return owner_->put(*t_, std::move(key), std::move(value), [ttl](auto& s, auto&& k, auto&& v) {
        return s.put(std::move(k), std::move(v), ttl);
      });
    }
    bool erase(const key_type& key) const {
      return static_cast<bool>(owner_->store_.erase(full(key)));
    }
    // Erases every entry of this tenant (a scan of the store: O(store entries)). Returns how many.
    std::size_t clear() const {
      const std::uint32_t id = t_->id;
      return owner_->store_.erase_if(
          [id](const tenant_key<key_type>& k, const mapped_type&) { return k.tenant == id; });
    }
    // This tenant's entries and weight now (counting puts in flight).
    std::size_t size() const noexcept {
      const std::int64_t n = t_->entries.load(std::memory_order_relaxed);
      return n < 0 ? 0 : static_cast<std::size_t>(n);
    }
    std::uint64_t weight() const noexcept {
      const std::int64_t w = t_->weight.load(std::memory_order_relaxed);
      return w < 0 ? 0 : static_cast<std::uint64_t>(w);
    }
    tenant_stats stats() const noexcept {
      tenant_stats s;
      for (const auto& r : t_->reads) {
        s.hits += r.hits.load(std::memory_order_relaxed);
        s.misses += r.misses.load(std::memory_order_relaxed);
      }
      s.inserts = t_->inserts.load(std::memory_order_relaxed);
      s.updates = t_->updates.load(std::memory_order_relaxed);
      s.rejections = t_->rejections.load(std::memory_order_relaxed);
      s.evictions = t_->evictions.load(std::memory_order_relaxed);
      s.expirations = t_->expirations.load(std::memory_order_relaxed);
      s.explicit_removals = t_->explicit_removals.load(std::memory_order_relaxed);
      s.cleared = t_->cleared.load(std::memory_order_relaxed);
      s.quota_evictions = t_->quota_evictions.load(std::memory_order_relaxed);
      s.size = size();
      s.weight = weight();
      return s;
    }

   private:
    friend class tenant_store;
    view(tenant_store* owner, tenant_state* t) noexcept : owner_(owner), t_(t) {}
    tenant_key<key_type> full(const key_type& key) const { return {t_->id, key}; }
    tenant_store* owner_ = nullptr;
    tenant_state* t_ = nullptr;
  };

  // Constructs the store from `opts` (its on_removal is wrapped: the tenants' counts hear of each
  // removal first) and `args` (e.g. a clock).
  template <class... Args>
  explicit tenant_store(typename Store::options_type opts, Args&&... args)
      : weigher_(opts.weigher), store_(wrapped(std::move(opts)), std::forward<Args>(args)...) {}
  tenant_store(const tenant_store&) = delete;
  tenant_store& operator=(const tenant_store&) = delete;

  // The tenant called `name`: created with `quota` if new (throws invalid_option naming the quota
  // field if it is unbounded, needs a weigher the store lacks, or would make the quotas add up to
  // more than the store's bound); an existing tenant keeps its quota (a different one throws).
  view open(std::string_view name, tenant_quota quota) {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = by_name_.find(name); it != by_name_.end()) {
      const tenant_quota& q = it->second->quota;
      if (q.max_entries != quota.max_entries || q.max_weight != quota.max_weight) {
        throw invalid_option("tenant_quota", "tenant \"" + std::string(name) +
                                                 "\" is already open with another quota");
      }
      return view(this, it->second);
    }
    validate(quota);
    if (tenants_.size() >= k_max_tenants) {
      throw std::length_error("cachet::tenant_store: more than 2^20 tenants");
    }
    tenant_state& t = tenants_.emplace_back();
    t.name = std::string(name);
    t.id = static_cast<std::uint32_t>(tenants_.size() - 1);
    t.quota = quota;
    try {
      by_name_.emplace(t.name, &t);
      publish(t);
    } catch (...) {
      by_name_.erase(t.name);
      tenants_.pop_back();
      throw;
    }
    entry_quota_sum_ += quota.max_entries;
    weight_quota_sum_ += quota.max_weight;
    return view(this, &t);
  }

  // A view of every tenant opened so far, in the order they were opened.
  std::vector<view> tenants() {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<view> out;
    out.reserve(tenants_.size());
    for (tenant_state& t : tenants_) out.push_back(view(this, &t));
    return out;
  }

  // The store underneath (its stats and bounds, for the operator; its keys are tenant_key).
  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }

 private:
  static constexpr int k_full_retries = 8;

  static constexpr bool k_refuses_when_full = [] {
    if constexpr (requires { typename Store::eviction_type; }) {
      return std::is_same_v<typename Store::eviction_type, no_eviction>;
    } else {
      return false;
    }
  }();

  void validate(const tenant_quota& q) const {
    if (q.max_entries == 0 && q.max_weight == 0) {
      throw invalid_option("tenant_quota.max_entries",
                           "a tenant needs max_entries or max_weight (or both) above 0");
    }
    if (q.max_weight != 0 && !weigher_) {
      throw invalid_option("tenant_quota.max_weight", "needs the store's weigher");
    }
    const std::size_t room = store_.options().max_entries;
    if (q.max_entries != 0 && room != 0 && entry_quota_sum_ + q.max_entries > room) {
      throw invalid_option("tenant_quota.max_entries",
                           "the tenants' entry quotas would add up to " +
                               std::to_string(entry_quota_sum_ + q.max_entries) +
                               ", more than the store's max_entries " + std::to_string(room));
    }
    const std::uint64_t wroom = store_.options().max_weight;
    if (q.max_weight != 0 && wroom != 0 && weight_quota_sum_ + q.max_weight > wroom) {
      throw invalid_option("tenant_quota.max_weight",
                           "the tenants' weight quotas would add up to " +
                               std::to_string(weight_quota_sum_ + q.max_weight) +
                               ", more than the store's max_weight " + std::to_string(wroom));
    }
  }

  std::int64_t weigh(const tenant_key<key_type>& k, const mapped_type& v) const {
    return weigher_ ? static_cast<std::int64_t>(weigher_(k, v)) : 1;
  }

  template <class Write>
  put_result put(tenant_state& t, key_type&& key, mapped_type&& value, Write write) {
    const std::int64_t w = weigher_ ? weigh(tenant_key<key_type>{t.id, key}, value) : 1;
    put_result r{};
    if constexpr (k_refuses_when_full) {
      // The store refuses a put into a full shard: make room from this tenant's own entries and
      // retry (a refused put does not give the value back: each try but the last takes a copy).
      for (int attempt = 0;; ++attempt) {
        if (attempt < k_full_retries) {
          r = write(store_, tenant_key<key_type>{t.id, key}, mapped_type(value));
        } else {
          r = write(store_, tenant_key<key_type>{t.id, key}, std::move(value));
        }
        if (r != put_result::rejected_full || attempt >= k_full_retries || !evict_own(t)) break;
      }
    } else {
      r = write(store_, tenant_key<key_type>{t.id, key}, std::move(value));
    }
    if (!stored(r)) {
      t.rejections.fetch_add(1, std::memory_order_relaxed);
      return r;
    }
    // on_removal already took off what a replaced entry weighed.
    t.weight.fetch_add(w, std::memory_order_relaxed);
    if (r == put_result::inserted) {
      t.inserts.fetch_add(1, std::memory_order_relaxed);
      t.entries.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard<std::mutex> g(t.mu);
      t.order.push_back(std::move(key));
      compact(t);
    } else {
      t.updates.fetch_add(1, std::memory_order_relaxed);
    }
    while (over_quota(t) && evict_own(t)) {
    }
    return r;
  }

  bool over_quota(const tenant_state& t) const noexcept {
    return (t.quota.max_entries != 0 && t.entries.load(std::memory_order_relaxed) >
                                            static_cast<std::int64_t>(t.quota.max_entries)) ||
           (t.quota.max_weight != 0 && t.weight.load(std::memory_order_relaxed) >
                                           static_cast<std::int64_t>(t.quota.max_weight));
  }

  // Erases the tenant's oldest inserted key that is still in the store. False if none is left.
  bool evict_own(tenant_state& t) {
    for (;;) {
      key_type k;
      {
        std::lock_guard<std::mutex> g(t.mu);
        if (t.order.empty()) return false;
        k = std::move(t.order.front());
        t.order.pop_front();
      }
      quota_eviction_ = true;  // removed() counts this erase as a quota eviction
      bool erased = false;
      try {
        erased = static_cast<bool>(store_.erase(tenant_key<key_type>{t.id, k}));
      } catch (...) {
        quota_eviction_ = false;
        throw;
      }
      quota_eviction_ = false;
      if (erased) return true;
    }
  }

  // Drops queued keys that left the store, once the queue is past twice the entries plus 64.
  // Called with t.mu held.
  void compact(tenant_state& t) {
    const std::int64_t n = t.entries.load(std::memory_order_relaxed);
    if (static_cast<std::int64_t>(t.order.size()) <= 2 * (n < 0 ? 0 : n) + 64) return;
    std::deque<key_type> live;
    for (key_type& k : t.order) {
      if (store_.contains(tenant_key<key_type>{t.id, k})) live.push_back(std::move(k));
    }
    t.order.swap(live);
  }

  typename Store::options_type wrapped(typename Store::options_type opts) {
    opts.on_removal = [this, user = std::move(opts.on_removal)](
                          const tenant_key<key_type>& k, const mapped_type& v, removal_cause c) {
      removed(k, v, c);
      if (user) user(k, v, c);
    };
    return opts;
  }

  void removed(const tenant_key<key_type>& k, const mapped_type& v, removal_cause c) noexcept {
    tenant_state* t = state_of(k.tenant);
    if (t == nullptr) return;
    t->weight.fetch_sub(weigh(k, v), std::memory_order_relaxed);
    if (c == removal_cause::replaced) return;
    t->entries.fetch_sub(1, std::memory_order_relaxed);
    switch (c) {
      case removal_cause::explicit_erase:
        (quota_eviction_ ? t->quota_evictions : t->explicit_removals)
            .fetch_add(1, std::memory_order_relaxed);
        break;
      case removal_cause::expired:
        t->expirations.fetch_add(1, std::memory_order_relaxed);
        break;
      case removal_cause::evicted:
        t->evictions.fetch_add(1, std::memory_order_relaxed);
        break;
      case removal_cause::cleared:
        t->cleared.fetch_add(1, std::memory_order_relaxed);
        break;
      case removal_cause::replaced:
        break;
    }
  }

  // Tenant id -> state without a lock, for the removal listener: chunks of k_chunk pointers,
  // allocated by open() (under mu_) and published with release stores.
  tenant_state* state_of(std::uint32_t id) const noexcept {
    const std::atomic<tenant_state*>* chunk = chunks_[id / k_chunk].load(std::memory_order_acquire);
    return chunk == nullptr ? nullptr : chunk[id % k_chunk].load(std::memory_order_acquire);
  }
  void publish(tenant_state& t) {
    auto& slot = chunks_[t.id / k_chunk];
    if (slot.load(std::memory_order_relaxed) == nullptr) {
      owned_chunks_.push_back(std::make_unique<std::atomic<tenant_state*>[]>(k_chunk));
      slot.store(owned_chunks_.back().get(), std::memory_order_release);
    }
    slot.load(std::memory_order_relaxed)[t.id % k_chunk].store(&t, std::memory_order_release);
  }

  static constexpr std::size_t k_chunk = 1024;
  static constexpr std::size_t k_max_tenants = std::size_t{1} << 20;
  static inline thread_local bool quota_eviction_ = false;

  std::function<std::uint32_t(const tenant_key<key_type>&, const mapped_type&)> weigher_;
  std::mutex mu_;
  std::deque<tenant_state> tenants_;  // stable addresses for the views
  absl::flat_hash_map<std::string, tenant_state*, string_hash, std::equal_to<>> by_name_;
  std::array<std::atomic<std::atomic<tenant_state*>*>, k_max_tenants / k_chunk> chunks_{};
  std::vector<std::unique_ptr<std::atomic<tenant_state*>[]>> owned_chunks_;
  std::size_t entry_quota_sum_ = 0;
  std::uint64_t weight_quota_sum_ = 0;
  Store store_;  // last: destroyed first, while the tenants its listener counts still exist
};

}  // namespace cachet
