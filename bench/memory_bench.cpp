// Heap bytes per entry of cachet::sharded_store, per eviction backend.
//
// Global operator new/delete are replaced in this binary with versions that
// count the live heap bytes (as malloc_usable_size reports them, i.e. what the
// allocator actually handed out for each request, excluding malloc's own chunk
// header). For each backend, with K = V = uint64_t, max_entries = 1'000'000 and
// default_ttl = 1h (TTL on):
//   live bytes before construction -> construct -> put 1'000'000 distinct keys
//   -> live bytes after; bytes/entry = delta / size().
// size() is used as the divisor because max_entries is split over the shards
// (each holds at most ceil(max_entries / shards)), so a shard that received
// more than its share of the 1M keys evicts; the table shows both counts.
// "overhead" is bytes/entry minus sizeof(K) + sizeof(V) = 16.
// The hand-rolled mutex_lru (std::list + std::unordered_map) is the reference.
//
// Memory the library obtains without operator new (mmap, malloc) is not seen.
#include <cachet/cachet.hpp>

#define CACHET_BENCH_STD_BASELINES_ONLY 1
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "baselines.hpp"

// ---------------------------------------------------------------------------
// Counting allocator hooks.
// ---------------------------------------------------------------------------
namespace {

std::atomic<std::int64_t> g_live_bytes{0};
std::atomic<std::int64_t> g_live_allocs{0};
std::atomic<std::int64_t> g_total_allocs{0};

void note_alloc(void* p) noexcept {
  g_live_bytes.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)),
                         std::memory_order_relaxed);
  g_live_allocs.fetch_add(1, std::memory_order_relaxed);
  g_total_allocs.fetch_add(1, std::memory_order_relaxed);
}

void note_free(void* p) noexcept {
  g_live_bytes.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)),
                         std::memory_order_relaxed);
  g_live_allocs.fetch_sub(1, std::memory_order_relaxed);
}

void* counted_alloc(std::size_t size) noexcept {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p != nullptr) note_alloc(p);
  return p;
}

void* counted_aligned_alloc(std::size_t size, std::align_val_t al) noexcept {
  std::size_t align = static_cast<std::size_t>(al);
  if (align < sizeof(void*)) align = sizeof(void*);
  void* p = nullptr;
  if (posix_memalign(&p, align, size == 0 ? 1 : size) != 0) return nullptr;
  note_alloc(p);
  return p;
}

void* alloc_or_throw(std::size_t size) {
  for (;;) {
    if (void* p = counted_alloc(size)) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) throw std::bad_alloc();
    h();
  }
}

void* aligned_alloc_or_throw(std::size_t size, std::align_val_t al) {
  for (;;) {
    if (void* p = counted_aligned_alloc(size, al)) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) throw std::bad_alloc();
    h();
  }
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  note_free(p);
  std::free(p);
}

}  // namespace

void* operator new(std::size_t n) { return alloc_or_throw(n); }
void* operator new[](std::size_t n) { return alloc_or_throw(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t al) { return aligned_alloc_or_throw(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return aligned_alloc_or_throw(n, al); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, al);
}

void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}

// ---------------------------------------------------------------------------
// Measurement.
// ---------------------------------------------------------------------------
namespace {

using key_type = std::uint64_t;
using value_type = std::uint64_t;

constexpr std::size_t kEntries = 1'000'000;
constexpr double kKV = static_cast<double>(sizeof(key_type) + sizeof(value_type));

struct result {
  std::string backend;
  std::size_t inserted = 0;
  std::size_t resident = 0;
  std::int64_t bytes = 0;         // live heap bytes attributable to the full store
  std::int64_t allocs = 0;        // live allocations attributable to the full store
  std::int64_t leaked_bytes = 0;  // live bytes left after destroying the store
};

// Distinct keys, spread over the 64-bit space (a bijection of 0..n-1).
key_type key_at(std::size_t i) {
  return cachet::detail::mix64(static_cast<std::uint64_t>(i) + 0x9e3779b97f4a7c15ULL);
}

// Puts `inserts` distinct keys (kEntries unless a policy's state keeps growing after the store is
// full, as s3fifo's ghost does) and counts the live bytes.
template <class MakeStore>
result measure(const std::string& name, MakeStore make, std::size_t inserts = kEntries) {
  result r;
  r.backend = name;
  const std::int64_t bytes_before = g_live_bytes.load();
  const std::int64_t allocs_before = g_live_allocs.load();
  {
    auto store = make();
    for (std::size_t i = 0; i < inserts; ++i) store->put(key_at(i), static_cast<value_type>(i));
    r.inserted = inserts;
    r.resident = store->size();
    r.bytes = g_live_bytes.load() - bytes_before;
    r.allocs = g_live_allocs.load() - allocs_before;
  }
  r.leaked_bytes = g_live_bytes.load() - bytes_before;
  return r;
}

template <class Policy>
result measure_cachet(const std::string& name, std::size_t inserts = kEntries) {
  return measure(
      name,
      [] {
        cachet::store_options<key_type, value_type> opts;
        opts.max_entries = kEntries;
        opts.default_ttl = std::chrono::hours(1);
        return std::make_unique<cachet::sharded_store<key_type, value_type, Policy>>(
            std::move(opts));
      },
      inserts);
}

}  // namespace

int main() {
  try {
    std::vector<result> results;
    results.push_back(measure_cachet<cachet::lru>("lru"));
    results.push_back(measure_cachet<cachet::lfu>("lfu"));
    results.push_back(measure_cachet<cachet::fifo>("fifo"));
    results.push_back(measure_cachet<cachet::ttl>("ttl"));
    results.push_back(measure_cachet<cachet::random>("random"));
    results.push_back(measure_cachet<cachet::sieve>("sieve"));
    results.push_back(measure_cachet<cachet::s3fifo>("s3fifo"));
    // The ghost fills only as small evicts: after 3 x capacity distinct puts it is at its size.
    results.push_back(measure_cachet<cachet::s3fifo>("s3fifo, ghost full", 3 * kEntries));
    results.push_back(measure_cachet<cachet::w_tinylfu>("w_tinylfu"));
    results.push_back(measure_cachet<cachet::w_tinylfu_adaptive>("w_tinylfu_adaptive"));
    results.push_back(measure_cachet<cachet::no_eviction>("no_eviction"));
    results.push_back(measure("mutex_lru (reference)", [] {
      return std::make_unique<cachet_bench::mutex_lru<key_type, value_type>>(kEntries);
    }));

    std::printf(
        "cachet memory per entry: K = V = uint64_t (K+V = %.0f bytes), max_entries = %zu, "
        "default_ttl = 1h\n",
        kKV, kEntries);
    std::printf(
        "bytes = live operator-new bytes (malloc_usable_size) after inserting %zu distinct "
        "keys\n\n",
        kEntries);
    std::printf("%-22s %16s %20s\n", "backend", "bytes/entry_total", "overhead_beyond_KV");
    for (const auto& r : results) {
      const double per =
          r.resident == 0 ? 0.0 : static_cast<double>(r.bytes) / static_cast<double>(r.resident);
      std::printf("%-22s %16.1f %20.1f\n", r.backend.c_str(), per, per - kKV);
    }
    std::printf("\n");
    for (const auto& r : results) {
      std::printf(
          "counts %-22s inserted=%zu resident=%zu live_bytes=%lld live_allocs=%lld "
          "bytes_left_after_destroy=%lld\n",
          r.backend.c_str(), r.inserted, r.resident, static_cast<long long>(r.bytes),
          static_cast<long long>(r.allocs), static_cast<long long>(r.leaked_bytes));
    }
    std::printf("total operator-new calls in this process: %lld\n",
                static_cast<long long>(g_total_allocs.load()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "memory_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
