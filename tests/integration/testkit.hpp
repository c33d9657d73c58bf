#pragma once

// Integration-test kit: runs the real ringlb binary and ringlb-echo backends, and drives
// byte-exact client exchanges through them. Every wait here is bounded, so a broken proxy fails a
// test with a reason instead of hanging it.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
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

// Runs argv (stdin /dev/null) and waits up to `timeout` for it to exit (then kills it).
CommandResult run_command(const std::vector<std::string>& argv, Millis timeout = Millis(10000));
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

    // From the next start on, runs ringlb through `launcher`, e.g.
    // {"/usr/bin/prlimit", "--nofile=256:256", "--"} (it must exec ringlb in its own process).
    void set_launcher(std::vector<std::string> launcher) { launcher_ = std::move(launcher); }

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
    // Waits for the process to exit by itself (e.g. at the end of a drain); its exit code, or
    // nullopt when it still runs after `timeout`.
    std::optional<int> wait_exit(Millis timeout) { return process_.wait(timeout); }

  private:
    TempDir dir_;
    std::string config_path_;
    std::string log_path_;
    std::vector<std::string> launcher_;
    Subprocess process_;
};

// The ringlb-echo modes (see tests/tools/ringlb_echo.cpp). kPeer: writes "IP:PORT\n" of the
// connection's peer (the address the client connected from), then echoes. kDrip: writes the
// backend pattern (tests/tools/pattern.hpp) one byte every drip_interval, discards input. kSink:
// discards input, never writes, stays open after the client's EOF.
enum class EchoMode { kEcho, kHash, kHttp, kPeer, kDrip, kSink };

// Everything ringlb-echo can be started with; the defaults give the plain backend.
struct BackendOptions {
    EchoMode mode = EchoMode::kEcho;
    std::string name;                // --name; "" keeps ringlb-echo's default
    std::string host = "127.0.0.1";  // listen address, or "unix:/path" (then `port` is unused)
    uint16_t port = 0;               // 0: chosen by the kernel (a restarted backend reuses one)
    unsigned threads = 1;            // --threads
    std::string greeting;            // --greeting, raw bytes (escaped for the command line here)
    Millis idle_close{0};            // --idle-close; 0: off
    Millis accept_delay{0};          // --accept-delay; 0: off
    int backlog = 0;                 // --backlog; 0: ringlb-echo's default (4096)
    Millis drip_interval{0};         // --drip-ms (kDrip); 0: ringlb-echo's default (100 ms)
    bool log_connections = false;    // --log-connections
};

// A ringlb-echo backend on `host` (127.0.0.1 by default) and `port` (kernel-chosen by default).
class BackendProcess {
  public:
    BackendProcess();
    ~BackendProcess();

    ::testing::AssertionResult start(EchoMode mode, const std::string& name = "",
                                     Millis timeout = Millis(10000));
    ::testing::AssertionResult start(const BackendOptions& options, Millis timeout = Millis(10000));
    uint16_t port() const { return port_; }
    // "IP:PORT" ("[::1]:PORT"), or the "unix:/path" it listens on.
    std::string address() const;
    pid_t pid() const { return process_.pid(); }
    std::string log() const;
    void kill(int sig = SIGKILL) { process_.kill_and_reap(sig); }
    // With log_connections: the peer of every connection accepted so far ("IP:PORT"), in order.
    std::vector<std::string> accepted_peers() const;
    // With log_connections: how many connections it closed for --idle-close.
    size_t idle_closes() const;

  private:
    TempDir dir_;
    std::string log_path_;
    Subprocess process_;
    std::string host_ = "127.0.0.1";
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
    // [admin] on 127.0.0.1:admin_port, for scrape_metrics(); admin_port 0: free_port().
    bool admin = true;
    uint16_t admin_port = 0;
    // Raw TOML lines appended at the end of the [runtime], [[listener]] and [[cluster]] tables
    // (after `backends`), e.g. "idle_timeout = \"1s\"". A missing final newline is added.
    std::string runtime_extra;
    std::string listener_extra;
    std::string cluster_extra;
    // Parallel to `backends`: more keys for backend i's inline table, e.g. "max_connections = 2"
    // or "weight = 3, max_connections = 2". Shorter than `backends` or "" at i: none.
    std::vector<std::string> backend_extra;
};
// [runtime] lines that make a SIGTERM stop at once instead of draining: drain_timeout and
// drain_spread default to 25 s and 5 s, which a test that stops with sessions open would wait
// out. Hand-written configs of tests that stop the proxy add them to their [runtime] table.
inline constexpr std::string_view kQuickStop = "drain_timeout = \"0s\"\ndrain_spread = \"0s\"\n";

// TOML text for one listener ("test"), one cluster ("app") and, when spec.admin, the [admin]
// table. Fills spec.listen_port and spec.admin_port when 0. [runtime] gets kQuickStop's keys,
// each unless runtime_extra sets it (a drain test sets its own).
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
    // A slow reader: each connection reads at most this many bytes per second from its start
    // (checked every 10 ms), so the proxy's sends to it back up. 0: read as fast as possible.
    uint64_t recv_bytes_per_second = 0;
    // SO_RCVBUF set on each client socket before it connects (0: the kernel's autotuning).
    // Autotuning on loopback lets a slow reader's receive buffer grow to MiBs, so the proxy
    // hands over the end of a transfer seconds before the client reads it; a test that needs
    // its sessions busy in the proxy until the client is nearly done bounds the buffer.
    int recv_buffer_bytes = 0;
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

// A stream of new connections: short echo exchanges of `bytes` to 127.0.0.1:port, one after the
// other with `pause` between them, on a thread of its own until stop() (or destruction, so a
// failed ASSERT never leaves the thread running). Every exchange is checked byte for byte.
class ConnectionStream {
  public:
    ConnectionStream(uint16_t port, uint64_t bytes, Millis pause = Millis(0));
    ~ConnectionStream() { stop(); }
    ConnectionStream(const ConnectionStream&) = delete;
    ConnectionStream& operator=(const ConnectionStream&) = delete;

    void stop();
    uint64_t succeeded() const { return succeeded_.load(); }
    uint64_t failed() const { return failed_.load(); }
    // Why the first failed exchange failed; read it after stop().
    const std::string& first_failure() const { return first_failure_; }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> succeeded_{0};
    std::atomic<uint64_t> failed_{0};
    std::string first_failure_;
    std::thread thread_;
};

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
    Clock::time_point at{};  // when the close (or the timeout) was seen, to measure from any start
    Clock::time_point last_byte_at{};  // when the last byte before it was read; {} if none
};
const char* to_string(CloseKind kind);
// Reads until EOF or an error; data is appended to *data if given, else discarded.
CloseResult wait_for_close(int fd, Millis timeout, std::string* data = nullptr);
// The same for several sockets at once; elapsed counts from the call for each.
std::vector<CloseResult> wait_for_close_all(const std::vector<int>& fds, Millis timeout);
// Closes with SO_LINGER 0, so the peer gets an RST.
void reset_close(common::Fd& fd);
// A blocking client socket bound to `source` (any 127.0.0.0/8 address), connected to
// 127.0.0.1:port with 10 s send and receive timeouts; *local_port is the port it connected from.
// Empty when bind or connect failed (errno says why).
common::Fd connect_from(const char* source, uint16_t port, uint16_t* local_port);
// n pseudo-random bytes, the same for the same seed.
std::string random_bytes(size_t n, uint64_t seed);
// Sends `payload` (from a thread), shuts the write side, and reads to EOF: what came back.
std::string echo_through(int fd, const std::string& payload);

// One HTTP/1.1 GET with "Connection: close"; returns the body, or nullopt (reason in *error).
std::optional<std::string> http_get(uint16_t port, Millis timeout = Millis(5000),
                                    std::string* error = nullptr);
// The same for `path` (e.g. "/metrics") instead of "/"; only a 200 response counts.
std::optional<std::string> http_get(uint16_t port, std::string_view path, Millis timeout,
                                    std::string* error = nullptr);

struct HttpResponse {
    int status = 0;
    std::string head;  // status line and headers, without the blank line
    std::string body;
};
// GET `path` on 127.0.0.1:port ("Connection: close", read to EOF); any status is returned.
std::optional<HttpResponse> http_request(uint16_t port, std::string_view path,
                                         Millis timeout = Millis(5000),
                                         std::string* error = nullptr);

// POST `path` on 127.0.0.1:port ("Connection: close", empty body): the whole response as
// received ("connect: ..." or "send: ..." on a transport error).
std::string http_post(uint16_t port, const std::string& path);

// Which backend a new client reaches when every backend greets first: the first byte a client
// on 127.0.0.1:port receives, or "<closed>" when the proxy closes it first.
std::string first_byte(uint16_t port);

// A client connection for timeout tests: it remembers when it connected, last sent and last
// received, so the time of the proxy's close can be measured from whichever the test needs.
class ClientSession {
  public:
    ClientSession() = default;
    // Connects to 127.0.0.1:port; false (reason in error()) on failure.
    bool connect(uint16_t port, Millis timeout = Millis(5000));

    bool connected() const { return static_cast<bool>(fd_); }
    int fd() const { return fd_.get(); }
    const std::string& error() const { return error_; }

    bool send(std::string_view bytes, Millis timeout = Millis(5000));
    // Reads exactly n bytes into *out (appended); false on EOF, error or timeout (error()).
    bool receive(size_t n, std::string* out, Millis timeout = Millis(5000));
    // Reads expected.size() bytes and compares them; false with the difference in error().
    bool expect(std::string_view expected, Millis timeout = Millis(5000));
    void shutdown_write();
    // Closes with an RST (SO_LINGER 0).
    void reset();
    void close() { fd_.reset(); }

    // Reads (data appended to *data, if given) until the peer closes or `timeout` passes; see
    // wait_for_close(). Bytes read count as received.
    CloseResult wait_for_close(Millis timeout, std::string* data = nullptr);
    // Checks that the peer does not close within `how_long`: true if still open (bytes that
    // arrive meanwhile are appended to *data), false with the close in error().
    bool stays_open(Millis how_long, std::string* data = nullptr);

    Clock::time_point connected_at() const { return connected_at_; }
    Clock::time_point last_send_at() const { return last_send_at_; }        // connect if none
    Clock::time_point last_receive_at() const { return last_receive_at_; }  // connect if none
    // From `from` (one of the above) to the close in `close`.
    static Millis between(Clock::time_point from, const CloseResult& close);

  private:
    common::Fd fd_;
    std::string error_;
    Clock::time_point connected_at_{};
    Clock::time_point last_send_at_{};
    Clock::time_point last_receive_at_{};
};

// Polls until the proxy's socket and non-pipe fd counts equal `baseline`'s (pipes may stay
// pooled), or the timeout passes. Returns the last counts seen.
FdCounts wait_for_fd_baseline(const ProxyProcess& proxy, const FdCounts& baseline,
                              Millis timeout = Millis(2000), bool pipes_exact = false);
bool fd_counts_match(const FdCounts& now, const FdCounts& baseline, bool pipes_exact);
std::string to_string(const FdCounts& counts);

// ---------------------------------------------------------------------------------------------
// Metrics (the admin endpoint's GET /metrics)

using Labels = std::map<std::string, std::string>;

struct MetricSample {
    std::string name;  // the sample's own name, e.g. "x_bucket" for a histogram bucket
    Labels labels;     // label values unescaped
    double value = 0;  // +Inf, -Inf and NaN included
};
std::string to_string(const MetricSample& sample);  // name{k="v",...} value

// A parsed Prometheus text exposition (format 0.0.4): # HELP / # TYPE lines, samples with
// optional labels (escapes \\ \" \n in values) and an optional timestamp (ignored). Histogram
// and summary series are plain samples under their own names (x_bucket{le="+Inf"}, x_sum,
// x_count).
class Metrics {
  public:
    // nullopt on a malformed line, with the line number and reason in *error.
    static std::optional<Metrics> parse(std::string_view text, std::string* error = nullptr);

    // Sum over every sample named exactly `name` whose labels include all of `labels`; 0 when
    // none does.
    double sum(std::string_view name, const Labels& labels = {}) const;
    // How many samples match as for sum().
    size_t count(std::string_view name, const Labels& labels = {}) const;
    // Whether any sample is named exactly `name`.
    bool has(std::string_view name) const;
    // The matching samples, in exposition order.
    std::vector<const MetricSample*> find(std::string_view name, const Labels& labels = {}) const;
    const std::vector<MetricSample>& samples() const { return samples_; }
    // From the # TYPE / # HELP lines of metric family `family`; "" when absent.
    std::string type(std::string_view family) const;
    std::string help(std::string_view family) const;
    // Every family with a # TYPE line, sorted.
    std::vector<std::string> families() const;
    // The matching samples one per line, for failure messages.
    std::string describe(std::string_view name, const Labels& labels = {}) const;

  private:
    std::vector<MetricSample> samples_;
    std::map<std::string, std::string, std::less<>> types_;
    std::map<std::string, std::string, std::less<>> helps_;
};

// GET /metrics from 127.0.0.1:admin_port and parse it; nullopt with the reason in *error.
std::optional<Metrics> scrape_metrics(uint16_t admin_port, std::string* error = nullptr,
                                      Millis timeout = Millis(5000));

// Polls /metrics about every 50 ms until the sum of `name` over the samples matching `labels`
// (as Metrics::sum) satisfies `predicate`, or `timeout` passes. On return *last (if given) holds
// the last sum seen and the matching samples, or the last scrape error.
bool wait_for_metric(uint16_t admin_port, std::string_view name, const Labels& labels,
                     const std::function<bool(double)>& predicate, Millis timeout,
                     std::string* last = nullptr);
// The same, waiting for the sum to reach at least `min_value`.
bool wait_for_metric(uint16_t admin_port, std::string_view name, const Labels& labels,
                     double min_value, Millis timeout, std::string* last = nullptr);

// Runs `promtool check metrics` (Debian package prometheus, which scripts/install-deps.sh
// installs for the tests) on an exposition: success, or promtool's complaints. A missing
// promtool fails too, so the check cannot silently stop running.
::testing::AssertionResult promtool_check(const std::string& exposition);

// ---------------------------------------------------------------------------------------------
// Sockets seen from outside: /proc/net/tcp, socket options of another process, ss

// One row of /proc/net/tcp or /proc/net/tcp6 (this network namespace).
struct TcpEntry {
    std::string local;  // "127.0.0.1:8080"; IPv6 rows keep the kernel's hex form
    std::string remote;
    uint16_t local_port = 0;
    uint16_t remote_port = 0;
    unsigned state = 0;  // kernel TCP state: 1 ESTABLISHED, 6 TIME_WAIT, 10 LISTEN, ...
    uint64_t tx_queue = 0;
    uint64_t rx_queue = 0;
    std::string inode;  // "0" for TIME_WAIT sockets, which belong to no process
};
inline constexpr unsigned kTcpTimeWait = 6;
const char* tcp_state_name(unsigned state);

// The most the kernel can hold between ringlb and one client of a run with `options`: ringlb's
// send buffer, which autotuning grows to net.ipv4.tcp_wmem's maximum (4 MiB on Debian; 4 MiB if
// it cannot be read), plus the client's receive buffer (recv_buffer_bytes, which the kernel
// doubles). A session leaves ringlb that much before its slow client has read it all, so a test
// that needs its sessions busy in ringlb makes each transfer this much longer.
uint64_t kernel_buffering_to_client(const RunOptions& options);

// Every TCP socket of this network namespace.
std::vector<TcpEntry> tcp_table();
// The TCP sockets process `pid` holds an fd for (matched by inode).
std::vector<TcpEntry> tcp_sockets_of(pid_t pid);
// "local -> remote STATE tx=N rx=N\n" per entry (ProxyProcess::describe_sockets' format).
std::string describe(const std::vector<TcpEntry>& entries);

// TIME_WAIT sockets with `port` as their local or their remote port.
int count_time_wait(uint16_t port_any_side);
// TIME_WAIT sockets whose local port is `local_port` and whose remote port is `remote_port`;
// 0 matches any port on that side. TIME_WAIT stays with the side that closed first, and on
// loopback both ends of a connection are rows of the same table, seen from their own side:
//   count_time_wait_between(0, backend_port): connections TO the backend port whose
//     connecting side (ringlb's upstream leg, local = its ephemeral source port) closed first;
//     the backend's own TIME_WAIT rows have local = backend_port and are not counted.
//   count_time_wait_between(listen_port, 0): ringlb's client legs that ringlb closed first.
// Use a backend port no other test connects to directly (each BackendProcess has its own).
int count_time_wait_between(uint16_t local_port, uint16_t remote_port);

// The options a test checks on a proxy's sockets. Times in seconds, as the kernel keeps them.
struct SockOpts {
    bool keepalive = false;        // SO_KEEPALIVE
    int keepidle = 0;              // TCP_KEEPIDLE
    int keepintvl = 0;             // TCP_KEEPINTVL
    int keepcnt = 0;               // TCP_KEEPCNT
    unsigned user_timeout_ms = 0;  // TCP_USER_TIMEOUT
};

struct ProcessSocket {
    int fd = -1;        // the fd number in the other process
    std::string local;  // "127.0.0.1:8080" / "[::1]:8080"
    std::string peer;   // "" when not connected (listening, connecting)
    bool listening = false;
    SockOpts opts;
};

// getsockopt() only works on one's own fds, so these duplicate the other process's fd with
// pidfd_getfd(2) (Linux 5.6+; needs ptrace access to `pid`: our own children qualify, and so
// does getpid()) and read the options from the duplicate. nullopt with the reason in *error.
std::optional<SockOpts> sockopts_of(pid_t pid, int fd, std::string* error = nullptr);
// Every TCP socket of `pid` with its addresses and options.
std::optional<std::vector<ProcessSocket>> process_tcp_sockets(pid_t pid,
                                                              std::string* error = nullptr);

// One socket from `ss -tiepona` (iproute2): what the kernel reports, independent of ptrace.
struct SsSocket {
    std::string state;  // "ESTAB", "LISTEN", "TIME-WAIT", ...
    std::string local;  // as ss prints it: "127.0.0.1:8080", "[::1]:8080"
    std::string peer;
    std::vector<std::pair<pid_t, int>> owners;  // (pid, fd) from users:((...))
    // timer:(NAME,EXPIRES,RETRANSMITS): "keepalive" when SO_KEEPALIVE is armed on an idle
    // established socket, "on" while retransmitting, "timewait", "persist"; "" if no timer.
    std::string timer;
    std::string timer_expires;       // as printed, e.g. "29sec", "1min29sec", "29.512ms", "200ms"
    std::optional<Millis> timer_ms;  // timer_expires parsed, when it parses
    int timer_retransmits = 0;
    std::string line;  // the whole record (first line and the -i detail line)

    bool owned_by(pid_t pid) const;
};
// Parses ss output with -o, -p (users), -e and -i as printed by iproute2 6.x; header lines and
// anything that is not a socket record are skipped.
std::vector<SsSocket> parse_ss(std::string_view text);
// "5min" "29sec" "29.512ms" "200ms" "1min005ms" as ss prints timer expiries; nullopt otherwise.
std::optional<Millis> parse_ss_duration(std::string_view text);
// Runs `ss -tiepona` and returns its whole output; "" with the reason in *error on failure.
std::string run_ss(std::string* error = nullptr);
// The records of `ss -tiepona` owned by `pid`, as text (for failure messages).
std::string ss_info(pid_t pid, std::string* error = nullptr);
// The sockets of `pid` from `ss -tiepona`.
std::vector<SsSocket> ss_sockets(pid_t pid, std::string* error = nullptr);

}  // namespace ringlb::testkit
