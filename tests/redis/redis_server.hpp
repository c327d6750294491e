// Test fixture: a private redis-server per test, started and always killed by RAII.
//
// redis_server starts `redis-server` (found in PATH; the test FAILS with a message if it is not)
// in a fresh temporary directory, on a unix socket there (`--port 0`), or with redis_server::tcp()
// on a free 127.0.0.1 port, optionally with --requirepass. No persistence (--save '', --appendonly
// no), not daemonized. The child asks the kernel to SIGKILL it when the thread that started it
// dies (PR_SET_PDEATHSIG), so it never outlives a crashed test; the destructor SIGKILLs and reaps
// it and removes the directory, also when a test fails. pause()/resume() send SIGSTOP/SIGCONT,
// kill() SIGKILLs it, restart() starts it again on the same socket/port (empty). raw() runs one
// command on a connection of its own (hiredis, 2 s timeout), for checks behind the store's back.
#pragma once

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cachet/redis/options.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace cachet_test {

// One reply of raw(), flattened.
struct raw_reply {
  int type = 0;  // REDIS_REPLY_*; 0 = the command failed (no reply)
  long long integer = 0;
  std::string str;  // string, status or error text
  std::vector<raw_reply> elements;
  bool nil() const { return type == REDIS_REPLY_NIL; }

  static raw_reply from(const redisReply* r) {
    raw_reply out;
    out.type = r->type;
    out.integer = r->integer;
    if (r->str != nullptr) out.str.assign(r->str, r->len);
    for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(from(r->element[i]));
    return out;
  }
};

class redis_server {
 public:
  // On a unix socket in a fresh temporary directory.
  redis_server() { start_or_clean_up(); }

  // On a free 127.0.0.1 TCP port, with `requirepass` when `password` is not empty.
  static std::unique_ptr<redis_server> tcp(std::string password = {}) {
    auto s = std::unique_ptr<redis_server>(new redis_server(tcp_tag{}, std::move(password)));
    s->start();  // on failure, `s` is destroyed: the child is killed, the directory removed
    return s;
  }

  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  ~redis_server() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // On a free 127.0.0.1 TCP port with --cluster-enabled yes (its nodes.conf in its directory, so a
  // restart() keeps its node id), not yet part of a cluster (redis_cluster.hpp joins them). A
  // cluster keeps serving the slots of live nodes when one is down (require-full-coverage no).
  static std::unique_ptr<redis_server> cluster_node() {
    auto s = std::unique_ptr<redis_server>(new redis_server(tcp_tag{}, {}, cluster_port()));
    s->extra_args_ = {
        "--cluster-enabled",      "yes",  "--cluster-config-file",           "nodes.conf",
        "--cluster-node-timeout", "3000", "--cluster-require-full-coverage", "no"};
    s->start();
    return s;
  }

  // Options that reach this server (unix socket, or host/port and the password).
  cachet::redis_options options() const {
    cachet::redis_options o;
    if (port_ == 0) {
      o.unix_socket = socket_path();
    } else {
      o.host = "127.0.0.1";
      o.port = port_;
      o.password = password_;
    }
    return o;
  }

  // The commands the server ran since the last call, oldest first, each as its arguments (from
  // the slowlog, with the threshold at 0; the raw() connection's own commands are left out).
  // Call once before the commands of interest to start the log.
  std::vector<std::vector<std::string>> take_commands() const {
    raw({"CONFIG", "SET", "slowlog-log-slower-than", "0"});
    const raw_reply log = raw({"SLOWLOG", "GET", "-1"});
    raw({"SLOWLOG", "RESET"});
    std::vector<std::vector<std::string>> out;
    for (auto it = log.elements.rbegin(); it != log.elements.rend(); ++it) {
      if (it->elements.size() < 4) continue;
      std::vector<std::string> args;
      for (const raw_reply& a : it->elements[3].elements) args.push_back(a.str);
      if (args.empty() || args[0] == "SLOWLOG" || args[0] == "CONFIG" || args[0] == "AUTH") {
        continue;
      }
      out.push_back(std::move(args));
    }
    return out;
  }

  std::string socket_path() const { return (dir_ / "redis.sock").string(); }
  int port() const { return port_; }

  void pause() { REQUIRE(::kill(pid_, SIGSTOP) == 0); }
  void resume() { REQUIRE(::kill(pid_, SIGCONT) == 0); }
  // SIGKILL and reap (no-op if not running).
  void kill() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) == -1 && errno == EINTR) {
    }
    pid_ = -1;
  }
  // kill(), then start an empty server on the same socket or port.
  void restart() {
    kill();
    start();
  }

  // One command on a fresh connection of its own. type 0 if the server could not be reached.
  raw_reply raw(const std::vector<std::string>& args) const {
    raw_reply out;
    const timeval tv{2, 0};
    redisContext* c = port_ == 0 ? redisConnectUnixWithTimeout(socket_path().c_str(), tv)
                                 : redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c == nullptr) return out;
    std::unique_ptr<redisContext, void (*)(redisContext*)> guard(c, redisFree);
    if (c->err != 0 || redisSetTimeout(c, tv) != REDIS_OK) return out;
    if (!password_.empty()) {
      auto* a = static_cast<redisReply*>(redisCommand(c, "AUTH %s", password_.c_str()));
      if (a == nullptr) return out;
      freeReplyObject(a);
    }
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (r == nullptr) return out;
    out = raw_reply::from(r);
    freeReplyObject(r);
    return out;
  }

 private:
  struct tcp_tag {};
  redis_server(tcp_tag, std::string password, int port = free_port())
      : password_(std::move(password)), port_(port) {}

  static std::string find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
    std::string d;
    while (std::getline(dirs, d, ':')) {
      const std::string candidate = (d.empty() ? std::string(".") : d) + std::string("/") + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
  }

  static std::filesystem::path make_temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cachet-redis-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    return tmpl;
  }

  // A port the kernel just handed out on 127.0.0.1 (free now; the server binds it a moment later).
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    ::close(fd);
    REQUIRE(ok);
    return ntohs(addr.sin_port);
  }

  // Whether 127.0.0.1:`port` can be bound now.
  static bool bindable(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  // A port for a cluster node: at most 55535 (the cluster bus listens on port + 10000), below the
  // kernel's ephemeral range, with both it and its bus port free now. At most 1000 random tries.
  static int cluster_port() {
    std::random_device rd;
    std::uniform_int_distribution<int> pick(20000, 22767);
    for (int i = 0; i < 1000; ++i) {
      const int p = pick(rd);
      if (bindable(p) && bindable(p + 10000)) return p;
    }
    FAIL("no free port pair (p, p + 10000) for a cluster node");
    return 0;
  }

  std::string log_text() const {
    std::ifstream in(dir_ / "redis.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // start() from a constructor, whose failure does not run the destructor.
  void start_or_clean_up() {
    try {
      start();
    } catch (...) {
      kill();
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      throw;
    }
  }

  void start() {
    const std::string exe = find_in_path("redis-server");
    if (exe.empty()) {
      FAIL("redis-server is not in PATH: the [redis] tests need it (apt-get install redis-server)");
    }
    std::vector<std::string> args{exe, "--port", std::to_string(port_), "--dir", dir_.string()};
    args.insert(args.end(), {"--save", "", "--appendonly", "no", "--daemonize", "no"});
    args.insert(args.end(), {"--logfile", (dir_ / "redis.log").string()});
    if (port_ == 0) {
      args.insert(args.end(), {"--unixsocket", socket_path(), "--unixsocketperm", "700"});
    } else {
      args.insert(args.end(), {"--bind", "127.0.0.1"});
    }
    if (!password_.empty()) args.insert(args.end(), {"--requirepass", password_});
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the child: async-signal-safe calls only
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    wait_until_ready();
  }

  // PING until PONG: at most 10 s, polling every 10 ms; fails with the server's log otherwise.
  void wait_until_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int i = 0; i < 1000 && std::chrono::steady_clock::now() < deadline; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("redis-server exited at start-up; its log:\n" << log_text());
      }
      if (const raw_reply r = raw({"PING"}); r.type == REDIS_REPLY_STATUS && r.str == "PONG") {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("redis-server did not answer PING within 10 s; its log:\n" << log_text());
  }

  std::string password_;
  std::vector<std::string> extra_args_;
  int port_ = 0;  // 0: unix socket
  std::filesystem::path dir_ = make_temp_dir();
  pid_t pid_ = -1;
};

}  // namespace cachet_test
