// A hot key in front of a remote store: find it (tracked_store), absorb it in this process
// (hot_key_shield), or spread it over copies (split_store), and watch it all through your own
// stats recorder. The "remote" here is a sharded_store standing in for Redis (the Redis versions
// are in docs/redis.md), so the example runs anywhere. Checks what it prints; exits 1 if wrong.
#include <atomic>
#include <cachet/hot_keys.hpp>
#include <cachet/recorder.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/shield.hpp>
#include <cachet/split_keys.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
std::string key(int i) {
  std::string k = "user:";
  k.append(std::to_string(i));
  return k;
}

// Your metrics library's side: here, two counters.
struct my_recorder {
  std::atomic<std::uint64_t> hits{0}, misses{0};
  void record_hits(std::uint64_t n) noexcept { hits += n; }
  void record_misses(std::uint64_t n) noexcept { misses += n; }
  void record_eviction(std::uint32_t, cachet::removal_cause) noexcept {}
  void record_load_success(std::chrono::nanoseconds) noexcept {}
  void record_load_failure(std::chrono::nanoseconds) noexcept {}
};

using remote_t = cachet::sharded_store<std::string, std::string, cachet::lru, cachet::manual_clock>;
}  // namespace

int main() {
  cachet::manual_clock clock;
  auto rec = std::make_shared<my_recorder>();
  const remote_t::options_type remote_opts{.max_entries = 10'000,
                                           .recorder = cachet::recorder_ref(rec)};

  // 1. Find it: one read in 16 sampled into a top-k.
  cachet::tracked_store<remote_t> tracked({.sample_every = 16}, remote_opts, clock);
  for (int i = 0; i < 1000; ++i) tracked.put(key(i), "profile");
  for (int r = 0; r < 20'000; ++r) tracked.get(r % 3 == 0 ? "user:42" : key(r % 1000));
  const auto top = tracked.tracker().hot_keys(1);
  std::printf("hottest key: %s, %.0f%% of the sampled reads\n", top.at(0).key.c_str(),
              100 * top.at(0).share);
  expect(top.at(0).key == "user:42", "user:42 is the hot key");
  expect(rec->hits == 20'000, "the recorder heard every hit");

  // 2. Absorb it: keys above 5% of the reads served locally for 100 ms.
  cachet::hot_key_shield<remote_t> shielded(
      {.min_share = 0.05, .ttl = std::chrono::milliseconds(100), .window = std::chrono::seconds(1)},
      remote_t::options_type{.max_entries = 10'000}, clock);
  for (int i = 0; i < 1000; ++i) shielded.store().put(key(i), "profile");
  for (int r = 0; r < 20'000; ++r) shielded.get(r % 3 == 0 ? "user:42" : key(r % 1000));
  clock.advance(std::chrono::seconds(1));  // the window ends: user:42 is shielded from now on
  const std::uint64_t remote_before = shielded.store().stats().hits;
  for (int r = 0; r < 10'000; ++r) shielded.get("user:42");
  const std::uint64_t remote_reads = shielded.store().stats().hits - remote_before;
  std::printf("10,000 reads of user:42 through the shield: %llu reached the remote store\n",
              static_cast<unsigned long long>(remote_reads));
  expect(remote_reads == 1, "one remote read per TTL");

  // 3. Spread it: user:42 kept as 4 copies; each copy takes a quarter of its reads.
  cachet::split_store<remote_t> split(
      {.copies = 4, .split = [](const std::string& k) { return k == "user:42"; }},
      remote_t::options_type{.max_entries = 10'000}, clock);
  split.put("user:42", "profile");
  for (int r = 0; r < 4000; ++r) split.get("user:42");
  expect(split.store().stats().hits == 4000, "every read went to one copy");
  expect(split.store().size() == 4, "four copies, no plain key");
  std::printf("user:42 as copies user:42#0..#3 (a copy's name maps back: %s)\n",
              split.base_of("user:42#3").value_or("?").c_str());
  return failures == 0 ? 0 : 1;
}
