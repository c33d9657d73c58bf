#pragma once

// Integration-test kit: runs the real ringlb binary and ringlb-echo backends, and drives
// byte-exact client exchanges through them. Every wait here is bounded, so a broken proxy fails a
// test with a reason instead of hanging it.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/fd.hpp"

namespace ringlb::testkit {

using Millis = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Files and ports

// A loopback TCP port that nothing is bound to right now, picked at random below the ephemeral
// range so it cannot collide with the source port of some outgoing connection (tests run in
// parallel and open thousands of those). Never returns the same port twice in one process.
uint16_t free_port();

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

  private:
    std::string path_;
};

void write_file(const std::string& path, std::string_view text);
// "" if `log` holds no AddressSanitizer/LeakSanitizer/UBSan report, else the report's first line.
std::string sanitizer_report(const std::string& log);
std::string read_file(const std::string& path);

// The version in the top-level CMakeLists.txt's project() line, e.g. "0.1.0".
std::string project_version();

// ---------------------------------------------------------------------------------------------
// Processes

struct CommandResult {
    int exit_code = -1;       // exit status; 128+N if killed by signal N; -1 if it timed out
    std::string output;       // stdout and stderr, interleaved
    std::string config_path;  // run_check only: the file the config was written to
};

// Runs RINGLB_BINARY with `args` (e.g. {"check", path}) and waits for it to exit.
CommandResult run_ringlb(const std::vector<std::string>& args, Millis timeout = Millis(10000));
// Writes `config_text` to a temporary ringlb.toml and runs `ringlb check` on it.
CommandResult run_check(std::string_view config_text);

// One child process with stdout+stderr captured to a file; killed (SIGKILL) on destruction.
class Subprocess {
  public:
    Subprocess() = default;
    ~Subprocess();
    Subprocess(const Subprocess&) = delete;
    Subprocess& operator=(const Subprocess&) = delete;

    bool spawn(const std::vector<std::string>& argv, const std::string& log_path,
               std::string* error);
    pid_t pid() const { return pid_; }
    bool running();
    // Waits for exit; returns the exit code (128+N for signal N), or nullopt on timeout.
    std::optional<int> wait(Millis timeout);
    void kill_and_reap(int sig = SIGKILL);
    std::optional<int> exit_code() const { return exit_code_; }

  private:
    void reap_if_exited(int options);
    pid_t pid_ = -1;
    std::optional<int> exit_code_;
};

// Spawns `argv` (e.g. a launcher such as prlimit or ringlb-no-uring in front of ringlb) and waits
// until its log contains "ready:"; on failure the message carries the log.
::testing::AssertionResult spawn_until_ready(Subprocess& process,
                                             const std::vector<std::string>& argv,
                                             const std::string& log_path,
                                             Millis timeout = Millis(10000));

// Counters from one "shard N stats: key=value ..." log line.
struct ShardStats {
    int shard = -1;
    std::map<std::string, uint64_t> values;

    uint64_t get(const std::string& key) const;
};
uint64_t sum_stat(const std::vector<ShardStats>& shards, const std::string& key);

struct FdCounts {
    int total = 0;
    int sockets = 0;
    int pipes = 0;
    int other = 0;  // epoll, eventfd, io_uring, files, ...
};

struct StartResult {
    enum class Status { kReady, kExited, kTimeout, kSpawnFailed };
    Status status = Status::kSpawnFailed;
    std::optional<int> exit_code;
    std::string log;

    bool ready() const { return status == Status::kReady; }
    std::string describe() const;
};

// A running `ringlb run CONFIG`.
class ProxyProcess {
  public:
    ProxyProcess();
    ~ProxyProcess();

    // Writes `config_text` to a private directory and starts the proxy on it; returns once a log
    // line contains "ready:", the process exits, or `timeout` passes (then it is killed).
    StartResult start(std::string_view config_text, const std::vector<std::string>& extra_args = {},
                      Millis timeout = Millis(10000));
    StartResult start_file(const std::string& config_path,
                           const std::vector<std::string>& extra_args = {},
                           Millis timeout = Millis(10000));

    pid_t pid() const { return process_.pid(); }
    bool running() { return process_.running(); }
    const std::string& config_path() const { return config_path_; }

    int fd_count() const;
    FdCounts fd_counts() const;
    // One line per TCP socket the proxy holds ("local -> remote STATE tx=N rx=N"), to tell
    // which side of which session a leaked descriptor belongs to.
    std::string describe_sockets() const;
    // fd_counts() once two reads 100 ms apart agree (at most ~1 s): the baseline for leak checks.
    FdCounts settled_fd_counts() const;
    std::string log() const;
    std::string log_tail(size_t max_bytes = 4000) const;
    bool signal(int sig);
    // Waits until the log, from byte `from` on, contains `needle`.
    bool wait_for_log(std::string_view needle, Millis timeout, size_t from = 0) const;
    // Sends SIGUSR1 and parses the per-shard stats lines it produces; nullopt (with the log in
    // *why) if fewer than `shards` lines appear in time.
    std::optional<std::vector<ShardStats>> stats(size_t shards, Millis timeout = Millis(5000),
                                                 std::string* why = nullptr);
    // SIGTERM, then waits; returns the exit code. On timeout: SIGKILL, ADD_FAILURE, returns -1.
    int stop(Millis timeout = Millis(10000));

  private:
    TempDir dir_;
    std::string config_path_;
    std::string log_path_;
    Subprocess process_;
};

enum class EchoMode { kEcho, kHash, kHttp };

// A ringlb-echo backend on 127.0.0.1 and a kernel-chosen port.
class BackendProcess {
  public:
    BackendProcess();
    ~BackendProcess();

    ::testing::AssertionResult start(EchoMode mode, const std::string& name = "",
                                     Millis timeout = Millis(10000));
    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    pid_t pid() const { return process_.pid(); }
    std::string log() const;
    void kill(int sig = SIGKILL) { process_.kill_and_reap(sig); }

  private:
    TempDir dir_;
    std::string log_path_;
    Subprocess process_;
    uint16_t port_ = 0;
};

// A backend that never completes a handshake: a backlog-0 listener whose accept queue is full,
// so the kernel drops new SYNs and connect() hangs until the caller's timeout.
class BlackholeBackend {
  public:
    ::testing::AssertionResult start();
    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  private:
    common::Fd listener_;
    std::vector<common::Fd> fillers_;
    uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Proxy configuration and startup

struct ProxyConfigSpec {
    std::string engine = "auto";
    unsigned workers = 2;
    std::string forward = "auto";
    uint16_t listen_port = 0;  // 0: free_port()
    std::vector<std::string> backends;
    std::string connect_timeout = "2s";
};
// TOML text for one listener ("test") and one cluster ("app"). Fills spec.listen_port if 0.
std::string make_config(ProxyConfigSpec& spec);

// The parameter axes of the integration tests.
inline const std::vector<std::string> kEngines{"io_uring", "epoll"};
inline const std::vector<std::string> kForwardModes{"splice", "buffered", "auto"};
using EngineForward = std::tuple<std::string, std::string>;
// Test-name suffixes: "io_uring_splice", "epoll".
std::string engine_forward_name(const ::testing::TestParamInfo<EngineForward>& info);
std::string engine_name(const ::testing::TestParamInfo<std::string>& info);

// Whether this process may create an io_uring (seccomp, io_uring_disabled, ENOSYS); the reason
// when not.
bool io_uring_available(std::string* reason);

enum class StartVerdict { kReady, kSkip, kFail };
// Starts the proxy. kSkip when `engine` is "io_uring", the proxy exited before ready naming
// io_uring, and the host really cannot run it; kFail otherwise when it is not ready.
StartVerdict start_proxy(ProxyProcess& proxy, std::string_view config_text,
                         const std::string& engine, std::string* message);

// For test bodies: starts the proxy, skipping or failing the test when it does not come up.
#define RINGLB_START_PROXY(proxy, config_text, engine)                           \
    do {                                                                         \
        std::string ringlb_start_message_;                                       \
        switch (::ringlb::testkit::start_proxy((proxy), (config_text), (engine), \
                                               &ringlb_start_message_)) {        \
            case ::ringlb::testkit::StartVerdict::kSkip:                         \
                GTEST_SKIP() << ringlb_start_message_;                           \
            case ::ringlb::testkit::StartVerdict::kFail:                         \
                FAIL() << ringlb_start_message_;                                 \
            case ::ringlb::testkit::StartVerdict::kReady:                        \
                break;                                                           \
        }                                                                        \
    } while (0)

// ---------------------------------------------------------------------------------------------
// Clients

enum class ExchangeKind {
    kHash,  // ringlb-echo --mode hash: header, payload, EOF; pattern + trailer back
    kEcho,  // ringlb-echo --mode echo: payload, EOF; the same payload back, then EOF
};

struct ExchangeSpec {
    ExchangeKind kind = ExchangeKind::kHash;
    uint64_t send_bytes = 0;  // payload client -> backend
    uint64_t recv_bytes = 0;  // hash: pattern bytes backend -> client (echo: always send_bytes)
    uint64_t seed = 1;        // payload seed; run_concurrent varies it per connection
    // Half-close check: read nothing until the whole payload is sent and the write side shut.
    bool read_after_shutdown = false;
};

struct ExchangeResult {
    bool ok = false;
    std::string error;  // why it failed; empty when ok
    uint64_t sent = 0;
    uint64_t received = 0;
    Millis elapsed{0};
};

ExchangeResult exchange(uint16_t port, const ExchangeSpec& spec, Millis timeout = Millis(30000));
ExchangeResult hash_exchange(uint16_t port, uint64_t send_bytes, uint64_t recv_bytes,
                             Millis timeout = Millis(30000));
ExchangeResult echo_exchange(uint16_t port, uint64_t bytes, bool read_after_shutdown = false,
                             Millis timeout = Millis(30000));

struct RunOptions {
    Millis deadline{60000};    // for the whole run
    size_t max_in_flight = 0;  // 0: start every connection at once
};

struct RunSummary {
    size_t total = 0;
    size_t succeeded = 0;
    std::vector<std::string> failures;  // "#index: reason", the first few only
    size_t failed = 0;
    Millis elapsed{0};

    bool ok() const { return total > 0 && succeeded == total; }
    std::string describe() const;
};

// Drives every exchange at once from this thread (one epoll, non-blocking sockets).
RunSummary run_concurrent(uint16_t port, const std::vector<ExchangeSpec>& specs,
                          const RunOptions& options = {});
// `count` copies of `spec`, each with its own payload seed.
RunSummary run_concurrent(uint16_t port, size_t count, const ExchangeSpec& spec,
                          const RunOptions& options = {});

// Low-level helpers for fault tests. All sockets are blocking with the given timeouts.
common::Fd connect_to(uint16_t port, Millis timeout, std::string* error = nullptr);
bool send_all(int fd, const void* data, size_t n, Millis timeout);
// Reads exactly n bytes (discarding them); false on EOF, error or timeout. *got: bytes read.
bool recv_exactly(int fd, size_t n, Millis timeout, size_t* got = nullptr);

enum class CloseKind { kEof, kReset, kTimeout, kOtherError };
struct CloseResult {
    CloseKind kind = CloseKind::kTimeout;
    uint64_t bytes_before = 0;  // bytes read (and discarded) before the close
    Millis elapsed{0};
};
const char* to_string(CloseKind kind);
// Reads until EOF or an error; data is appended to *data if given, else discarded.
CloseResult wait_for_close(int fd, Millis timeout, std::string* data = nullptr);
// The same for several sockets at once; elapsed counts from the call for each.
std::vector<CloseResult> wait_for_close_all(const std::vector<int>& fds, Millis timeout);
// Closes with SO_LINGER 0, so the peer gets an RST.
void reset_close(common::Fd& fd);

// One HTTP/1.1 GET with "Connection: close"; returns the body, or nullopt (reason in *error).
std::optional<std::string> http_get(uint16_t port, Millis timeout = Millis(5000),
                                    std::string* error = nullptr);

// Polls until the proxy's socket and non-pipe fd counts equal `baseline`'s (pipes may stay
// pooled), or the timeout passes. Returns the last counts seen.
FdCounts wait_for_fd_baseline(const ProxyProcess& proxy, const FdCounts& baseline,
                              Millis timeout = Millis(2000), bool pipes_exact = false);
bool fd_counts_match(const FdCounts& now, const FdCounts& baseline, bool pipes_exact);
std::string to_string(const FdCounts& counts);

}  // namespace ringlb::testkit
