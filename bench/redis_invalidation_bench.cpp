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

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A redis-server child in a temporary directory; killed and cleaned up by the destructor.
struct server {
  std::filesystem::path dir;
  int port = free_port();
  pid_t pid = -1;

  server() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cachet-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    std::vector<std::string> args{"redis-server",
                                  "--port",
                                  std::to_string(port),
                                  "--bind",
                                  "127.0.0.1",
                                  "--unixsocket",
                                  socket(),
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--logfile",
                                  (dir / "redis.log").string()};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 1000; ++i) {
      redisContext* c = redisConnectUnix(socket().c_str());
      const bool up = c != nullptr && c->err == 0;
      if (c != nullptr) redisFree(c);
      if (up) return;
      std::this_thread::sleep_for(10ms);
    }
    throw std::runtime_error("redis-server did not start (is it in PATH?)");
  }
  ~server() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string socket() const { return (dir / "redis.sock").string(); }
};

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
    const std::string key = "bench:" + std::to_string(i);
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
  tcp.port = s.port;
  cachet::redis_options unix_socket;
  unix_socket.unix_socket = s.socket();

  redisContext* tcp_writer = redisConnect("127.0.0.1", s.port);
  redisContext* unix_writer = redisConnectUnix(s.socket().c_str());
  bool ok = tcp_writer != nullptr && tcp_writer->err == 0 && unix_writer != nullptr &&
            unix_writer->err == 0;
  ok = ok && run("tcp 127.0.0.1", tcp, tcp_writer, writes);
  ok = ok && run("unix socket", unix_socket, unix_writer, writes);
  if (tcp_writer != nullptr) redisFree(tcp_writer);
  if (unix_writer != nullptr) redisFree(unix_writer);
  return ok ? 0 : 1;
}
