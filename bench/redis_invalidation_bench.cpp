// Cross-instance invalidation latency: from a SET by one connection to the listener's on_keys.
//
// Starts its own redis-server (from PATH) in a temporary directory, listening on a unix socket and
// on a free 127.0.0.1 port, then for each transport: one redis_invalidation_listener with the
// prefix "bench:" and a second, independent hiredis connection that writes `--writes` keys one at
// a time (default 1000), each after the previous one's invalidation arrived. t0 is taken before
// the SET is sent, t1 in on_keys; both are steady_clock readings of this process. Prints p50, p99
// and max in microseconds. A write whose invalidation does not arrive within 5 s ends the run.
//
//   cachet_bench_redis_invalidation [--writes N]
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cachet/redis/invalidation_listener.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis_bench_server.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

using server = cachet_bench::redis_child;

// t1 of every key index, filled by on_keys.
struct arrivals {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<steady::time_point>> at;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

bool run(const char* label, cachet::redis_options conn, redisContext* writer, int writes) {
  arrivals got;
  got.at.resize(static_cast<std::size_t>(writes));
  bool up = false;
  conn.key_prefix = "bench:";
  cachet::redis_invalidation_listener bus(conn, {},
                                          {
                                              .on_keys =
                                                  [&](std::span<const std::string> names) {
                                                    const auto t1 = steady::now();
                                                    std::lock_guard<std::mutex> lock(got.mu);
                                                    for (const std::string& n : names) {
                                                      const std::size_t i =
                                                          std::strtoul(n.c_str() + 6, nullptr, 10);
                                                      if (i < got.at.size() && !got.at[i])
                                                        got.at[i] = t1;
                                                    }
                                                    got.cv.notify_all();
                                                  },
                                              .on_flush = [] {},
                                              .on_state =
                                                  [&](bool state) {
                                                    std::lock_guard<std::mutex> lock(got.mu);
                                                    up = state;
                                                    got.cv.notify_all();
                                                  },
                                          });
  {
    std::unique_lock<std::mutex> lock(got.mu);
    if (!got.cv.wait_for(lock, 5s, [&] { return up; })) {
      std::fprintf(stderr, "%s: the listener did not connect\n", label);
      return false;
    }
  }
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(writes));
  for (int i = 0; i < writes; ++i) {
    std::string key = "bench:";
    key += std::to_string(i);
    const auto t0 = steady::now();
    auto* r = static_cast<redisReply*>(redisCommand(writer, "SET %s v", key.c_str()));
    if (r == nullptr) return false;
    freeReplyObject(r);
    std::unique_lock<std::mutex> lock(got.mu);
    const auto idx = static_cast<std::size_t>(i);
    if (!got.cv.wait_for(lock, 5s, [&] { return got.at[idx].has_value(); })) {
      std::fprintf(stderr, "%s: write %d was not heard within 5 s\n", label, i);
      return false;
    }
    us.push_back(std::chrono::duration<double, std::micro>(*got.at[idx] - t0).count());
  }
  std::printf("%-22s writes=%d p50=%.1f us p99=%.1f us max=%.1f us\n", label, writes,
              percentile(us, 0.50), percentile(us, 0.99), *std::max_element(us.begin(), us.end()));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int writes = 1000;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--writes") == 0) writes = std::max(1, std::atoi(argv[i + 1]));
  }
  server s;
  cachet::redis_options tcp;
  tcp.host = "127.0.0.1";
  tcp.port = s.port();
  cachet::redis_options unix_socket;
  unix_socket.unix_socket = s.socket();

  redisContext* tcp_writer = redisConnect("127.0.0.1", s.port());
  redisContext* unix_writer = redisConnectUnix(s.socket().c_str());
  bool ok = tcp_writer != nullptr && tcp_writer->err == 0 && unix_writer != nullptr &&
            unix_writer->err == 0;
  ok = ok && run("tcp 127.0.0.1", tcp, tcp_writer, writes);
  ok = ok && run("unix socket", unix_socket, unix_writer, writes);
  if (tcp_writer != nullptr) redisFree(tcp_writer);
  if (unix_writer != nullptr) redisFree(unix_writer);
  return ok ? 0 : 1;
}
