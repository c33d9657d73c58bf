// Upstream limits, through the real binary: per-backend max_connections with a bounded wait
// queue, every session timeout (idle, client idle, server idle, half-closed, max duration and its
// jitter) and the TCP keepalive / user-timeout options of both legs. Counters come from /metrics.

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/socket.hpp"
#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

// The tolerance for when a timeout closes a session.
constexpr Millis kSlack{500};

// A payload unique to `tag`, so a reply delivered to the wrong client cannot match.
std::string payload(uint64_t tag, size_t size) {
    std::string out(size, '\0');
    tools::pattern_fill(0x51756575ull + tag, 0, reinterpret_cast<uint8_t*>(out.data()), size);
    return out;
}

Labels backend_labels(const BackendProcess& backend) {
    return {{"cluster", "app"}, {"backend", backend.address()}};
}

Labels with_reason(Labels labels, const std::string& reason) {
    labels["reason"] = reason;
    return labels;
}

const Labels kCluster{{"cluster", "app"}};

// Counters are updated as the session is torn down, around the time its client sees the close:
// poll briefly for the exact value (which also catches a count that overshoots).
::testing::AssertionResult metric_is(uint16_t admin_port, std::string_view name,
                                     const Labels& labels, double expected,
                                     Millis timeout = 2000ms) {
    std::string last;
    if (wait_for_metric(
            admin_port, name, labels, [expected](double v) { return v == expected; }, timeout,
            &last))
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << " never became " << expected << " within "
                                         << timeout.count() << " ms; last: " << last;
}

void expect_fds_back_to_baseline(const ProxyProcess& proxy, const FdCounts& baseline) {
    FdCounts now = wait_for_fd_baseline(proxy, baseline, 3000ms, false);
    EXPECT_TRUE(fd_counts_match(now, baseline, false))
        << "fd leak: baseline " << to_string(baseline) << ", now " << to_string(now)
        << "\nproxy sockets:\n"
        << proxy.describe_sockets();
}

bool closed(const CloseResult& r) {
    return r.kind == CloseKind::kEof || r.kind == CloseKind::kReset;
}

// Whether `close` came `expected` after `from`, within the tolerance.
::testing::AssertionResult closed_after(Clock::time_point from, const CloseResult& close,
                                        Millis expected) {
    if (!closed(close))
        return ::testing::AssertionFailure() << "not closed (" << to_string(close.kind) << ")";
    auto after = std::chrono::duration_cast<Millis>(close.at - from);
    if (after < expected - kSlack || after > expected + kSlack)
        return ::testing::AssertionFailure()
               << "closed after " << after.count() << " ms, expected " << expected.count()
               << " ms ± " << kSlack.count() << " ms";
    return ::testing::AssertionSuccess() << "closed after " << after.count() << " ms";
}

// Keeps a connection busy from the client side: sends chunk(k) every `period` (k = 0, 1, ...)
// and reads whatever arrives, until the peer closes or `timeout` passes. The close (or kTimeout)
// is reported as wait_for_close() does; *sent and *received collect the bytes of each direction.
CloseResult send_periodically_until_close(int fd, Millis period, Millis timeout,
                                          const std::function<std::string(size_t)>& chunk,
                                          std::string* sent, std::string* received) {
    auto start = Clock::now();
    auto deadline = start + timeout;
    auto next_send = start;
    CloseResult result;
    char buffer[4096];
    for (size_t k = 0;;) {
        auto now = Clock::now();
        if (now >= deadline) {
            result.kind = CloseKind::kTimeout;
            break;
        }
        if (now >= next_send) {
            std::string bytes = chunk(k++);
            ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                result.kind = errno == ECONNRESET ? CloseKind::kReset : CloseKind::kEof;
                break;
            }
            // A short or refused send breaks the byte-exact bookkeeping: report it as an error.
            if (n != static_cast<ssize_t>(bytes.size())) {
                result.kind = CloseKind::kOtherError;
                break;
            }
            sent->append(bytes);
            next_send += period;
            continue;
        }
        auto wait = std::min(next_send, deadline) - now;
        pollfd pfd{fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, static_cast<int>(std::chrono::ceil<Millis>(wait).count()));
        if (ready <= 0) continue;
        ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            received->append(buffer, static_cast<size_t>(n));
            result.bytes_before += static_cast<uint64_t>(n);
            result.last_byte_at = Clock::now();
            continue;
        }
        if (n == 0) {
            result.kind = CloseKind::kEof;
            break;
        }
        if (errno == EAGAIN || errno == EINTR) continue;
        result.kind = errno == ECONNRESET ? CloseKind::kReset : CloseKind::kOtherError;
        break;
    }
    result.at = Clock::now();
    result.elapsed = std::chrono::duration_cast<Millis>(result.at - start);
    return result;
}

// ---------------------------------------------------------------------------------------------
// The two backend modes these tests add to ringlb-echo, checked directly (no proxy), so that a
// broken backend fails here and not as a mysterious timeout below.

TEST(UpstreamLimitsBackendModes, DripSendsThePatternSlowlyAndSinkNeverAnswers) {
    BackendOptions drip_options;
    drip_options.mode = EchoMode::kDrip;
    drip_options.drip_interval = 50ms;
    BackendProcess drip;
    ASSERT_TRUE(drip.start(drip_options));
    ClientSession client;
    ASSERT_TRUE(client.connect(drip.port())) << client.error();
    ASSERT_TRUE(client.send("ignored")) << client.error();
    std::string data;
    EXPECT_TRUE(client.stays_open(600ms, &data)) << client.error();
    // About 12 bytes in 600 ms at one per 50 ms; the bounds leave room for a slow machine.
    EXPECT_GE(data.size(), 5u);
    EXPECT_LE(data.size(), 14u);
    EXPECT_EQ(tools::pattern_mismatch(tools::kBackendPatternSeed, 0,
                                      reinterpret_cast<const uint8_t*>(data.data()), data.size()),
              data.size());
    client.shutdown_write();
    EXPECT_EQ(client.wait_for_close(2s).kind, CloseKind::kEof);

    BackendProcess sink;
    ASSERT_TRUE(sink.start(EchoMode::kSink));
    ClientSession quiet;
    ASSERT_TRUE(quiet.connect(sink.port())) << quiet.error();
    ASSERT_TRUE(quiet.send(payload(1, 100000))) << quiet.error();
    quiet.shutdown_write();
    data.clear();
    // Half-closed and silent: no byte and no FIN comes back.
    EXPECT_TRUE(quiet.stays_open(500ms, &data)) << quiet.error();
    EXPECT_EQ(data.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// max_connections with a bounded queue

class UpstreamLimitsQueueTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }

    // One backend with max_connections = 2 and a queue of 4 waiting 1 s. The limit is divided
    // over the shards (each allows ceil(N / shards)); with one shard it is exactly 2.
    ProxyConfigSpec spec(const BackendProcess& backend) const {
        ProxyConfigSpec s;
        s.engine = engine();
        s.workers = 1;
        s.backends = {backend.address()};
        s.backend_extra = {"max_connections = 2"};
        s.cluster_extra = "queue = { size = 4, timeout = \"1s\" }";
        return s;
    }

    // Clients 0 and 1 forwarding (their echo checked), 2..5 queued in this order (each has sent
    // its payload, which must not be forwarded while it waits), 6 closed at once for queue_full.
    void fill(uint16_t port, uint16_t admin_port, std::vector<ClientSession>& clients) {
        clients.resize(7);
        for (size_t i = 0; i < 2; ++i) {
            ASSERT_TRUE(clients[i].connect(port)) << clients[i].error();
            ASSERT_TRUE(clients[i].send(payload(i, 1000))) << clients[i].error();
            ASSERT_TRUE(clients[i].expect(payload(i, 1000)))
                << "client " << i << ": " << clients[i].error();
        }
        for (size_t i = 2; i < 6; ++i) {
            ASSERT_TRUE(clients[i].connect(port)) << clients[i].error();
            ASSERT_TRUE(clients[i].send(payload(i, 1000))) << clients[i].error();
            // One at a time, so the queue's order is the order of the clients.
            std::string last;
            ASSERT_TRUE(wait_for_metric(admin_port, "ringlb_cluster_queued_total", kCluster,
                                        static_cast<double>(i - 1), 2000ms, &last))
                << "client " << i << " was not queued: " << last;
        }
        ASSERT_TRUE(clients[6].connect(port)) << clients[6].error();
        CloseResult rejected = clients[6].wait_for_close(2000ms);
        EXPECT_TRUE(closed(rejected)) << "client 6: " << to_string(rejected.kind);
        EXPECT_LT(ClientSession::between(clients[6].connected_at(), rejected), 300ms)
            << "the client that finds the queue full must be closed at once";
        EXPECT_EQ(rejected.bytes_before, 0u);
        EXPECT_TRUE(metric_is(admin_port, "ringlb_cluster_queue_full_total", kCluster, 1));
        EXPECT_TRUE(metric_is(admin_port, "ringlb_cluster_queue_length", kCluster, 4));
    }
};

TEST_P(UpstreamLimitsQueueTest, QueuedClientsAreClosedAfterTheQueueTimeout) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec s = spec(backend);
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(s), engine());
    FdCounts baseline = proxy.settled_fd_counts();
    Labels b = backend_labels(backend);

    std::vector<ClientSession> clients;
    fill(s.listen_port, s.admin_port, clients);
    if (HasFatalFailure()) return;

    // No slot frees up: each queued client is closed queue.timeout after it arrived, and nothing
    // it sent was forwarded (the echo backend would have answered).
    std::vector<int> queued;
    for (size_t i = 2; i < 6; ++i) queued.push_back(clients[i].fd());
    std::vector<CloseResult> closes = wait_for_close_all(queued, 3000ms);
    for (size_t k = 0; k < closes.size(); ++k) {
        EXPECT_TRUE(closed_after(clients[k + 2].connected_at(), closes[k], 1000ms))
            << "queued client " << k + 2;
        EXPECT_EQ(closes[k].bytes_before, 0u) << "queued client " << k + 2 << " was served";
    }
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_timeouts_total", kCluster, 4));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queued_total", kCluster, 4));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_full_total", kCluster, 1));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_length", kCluster, 0));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_connections_total", b, 2));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_active_connections", b, 2));

    // The two forwarding sessions were not disturbed.
    for (size_t i = 0; i < 2; ++i) {
        ASSERT_TRUE(clients[i].send(payload(10 + i, 5000))) << clients[i].error();
        EXPECT_TRUE(clients[i].expect(payload(10 + i, 5000))) << clients[i].error();
        clients[i].close();
    }
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_active_connections", b, 0));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_closes_total", with_reason(b, "done"), 2));
    clients.clear();
    expect_fds_back_to_baseline(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(UpstreamLimitsQueueTest, FreedSlotsServeTheOldestWaiterFirst) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec s = spec(backend);
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(s), engine());
    FdCounts baseline = proxy.settled_fd_counts();
    Labels b = backend_labels(backend);

    std::vector<ClientSession> clients;
    fill(s.listen_port, s.admin_port, clients);
    if (HasFatalFailure()) return;

    // Each active client that leaves frees one slot, which goes to the oldest waiter: its payload,
    // held back while it waited, is forwarded now and echoed byte-exactly, long before its queue
    // timeout.
    for (size_t k = 0; k < 2; ++k) {
        size_t waiter = 2 + k;
        auto freed_at = Clock::now();
        clients[k].close();
        ASSERT_TRUE(clients[waiter].expect(payload(waiter, 1000), 2000ms))
            << "waiter " << waiter << ": " << clients[waiter].error();
        auto served_after =
            std::chrono::duration_cast<Millis>(clients[waiter].last_receive_at() - freed_at);
        EXPECT_LT(served_after, 300ms) << "waiter " << waiter;
        EXPECT_LT(clients[waiter].last_receive_at() - clients[waiter].connected_at(), 1000ms)
            << "waiter " << waiter << " was served only at its queue timeout";
        ASSERT_TRUE(clients[waiter].send(payload(20 + waiter, 3000))) << clients[waiter].error();
        EXPECT_TRUE(clients[waiter].expect(payload(20 + waiter, 3000))) << clients[waiter].error();
    }

    // The two left in the queue were never served and time out.
    std::vector<CloseResult> closes =
        wait_for_close_all({clients[4].fd(), clients[5].fd()}, 3000ms);
    for (size_t k = 0; k < closes.size(); ++k) {
        EXPECT_TRUE(closed_after(clients[4 + k].connected_at(), closes[k], 1000ms))
            << "queued client " << 4 + k;
        EXPECT_EQ(closes[k].bytes_before, 0u) << "queued client " << 4 + k << " was served";
    }
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queued_total", kCluster, 4));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_timeouts_total", kCluster, 2));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_full_total", kCluster, 1));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_length", kCluster, 0));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_connections_total", b, 4));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_active_connections", b, 2));

    clients[2].close();
    clients[3].close();
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_active_connections", b, 0));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_closes_total", with_reason(b, "done"), 4));
    clients.clear();
    expect_fds_back_to_baseline(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// A queued client that resets leaves the queue at once (counted as queue_abandoned) instead of
// holding its place until queue.timeout, and never takes a backend slot: the slot that frees goes
// to the next live waiter. A queued client that only half-closes (its request sent) stays queued
// and is served.
TEST_P(UpstreamLimitsQueueTest, QueuedClientsThatResetLeaveTheQueueAtOnce) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec s = spec(backend);
    // Far longer than the test: a waiter that leaves before it can only have left on its reset.
    s.cluster_extra = "queue = { size = 4, timeout = \"30s\" }";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(s), engine());
    FdCounts baseline = proxy.settled_fd_counts();
    Labels b = backend_labels(backend);

    std::vector<ClientSession> clients(6);
    for (size_t i = 0; i < 2; ++i) {
        ASSERT_TRUE(clients[i].connect(s.listen_port)) << clients[i].error();
        ASSERT_TRUE(clients[i].send(payload(i, 1000))) << clients[i].error();
        ASSERT_TRUE(clients[i].expect(payload(i, 1000)))
            << "client " << i << ": " << clients[i].error();
    }
    // 2 and 3 will reset, 4 waits, 5 half-closes after its request.
    for (size_t i = 2; i < 6; ++i) {
        ASSERT_TRUE(clients[i].connect(s.listen_port)) << clients[i].error();
        ASSERT_TRUE(clients[i].send(payload(i, 1000))) << clients[i].error();
        std::string last;
        ASSERT_TRUE(wait_for_metric(s.admin_port, "ringlb_cluster_queued_total", kCluster,
                                    static_cast<double>(i - 1), 2000ms, &last))
            << "client " << i << " was not queued: " << last;
    }
    clients[5].shutdown_write();
    clients[2].reset();
    clients[3].reset();
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_abandoned_total", kCluster, 2));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_length", kCluster, 2));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_timeouts_total", kCluster, 0));

    // Each freed slot goes to a live waiter, oldest first, and its held-back request is echoed.
    clients[0].close();
    EXPECT_TRUE(clients[4].expect(payload(4, 1000), 5000ms)) << clients[4].error();
    clients[1].close();
    EXPECT_TRUE(clients[5].expect(payload(5, 1000), 5000ms)) << clients[5].error();
    // The echo backend answers client 5's FIN with its own.
    EXPECT_EQ(clients[5].wait_for_close(5000ms).kind, CloseKind::kEof);
    ASSERT_TRUE(clients[4].send(payload(40, 3000))) << clients[4].error();
    EXPECT_TRUE(clients[4].expect(payload(40, 3000))) << clients[4].error();
    clients[4].close();

    // The two that reset never reached the backend.
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_connections_total", b, 4));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_active_connections", b, 0));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_closes_total", with_reason(b, "done"), 4));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_length", kCluster, 0));
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_cluster_queue_abandoned_total", kCluster, 2));
    clients.clear();
    expect_fds_back_to_baseline(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, UpstreamLimitsQueueTest, ::testing::ValuesIn(kEngines),
                         engine_name);

// ---------------------------------------------------------------------------------------------
// Session timeouts

class UpstreamLimitsTimeoutTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }

    // Starts the backend with `options` and a proxy in front of it with the extra TOML lines; a
    // fatal failure (or a skip, without io_uring) when either does not come up.
    void start(const BackendOptions& options, const std::string& listener_extra,
               const std::string& cluster_extra = "") {
        ASSERT_TRUE(backend_.start(options));
        spec_.engine = engine();
        spec_.backends = {backend_.address()};
        spec_.listener_extra = listener_extra;
        spec_.cluster_extra = cluster_extra;
        RINGLB_START_PROXY(proxy_, make_config(spec_), engine());
        baseline_ = proxy_.settled_fd_counts();
    }
    void start(EchoMode mode, const std::string& listener_extra,
               const std::string& cluster_extra = "") {
        BackendOptions options;
        options.mode = mode;
        start(options, listener_extra, cluster_extra);
    }

    uint16_t port() const { return spec_.listen_port; }
    uint16_t admin() const { return spec_.admin_port; }

    // `count` sessions closed for `reason`, as the backend's close counter and the shards'
    // timeout counter both say; and nothing else timed out.
    void expect_counted(const std::string& reason, double count) {
        Labels b = backend_labels(backend_);
        EXPECT_TRUE(
            metric_is(admin(), "ringlb_backend_closes_total", with_reason(b, reason), count))
            << reason;
        EXPECT_TRUE(metric_is(admin(), "ringlb_timeouts_total", {}, count));
        EXPECT_TRUE(metric_is(admin(), "ringlb_backend_active_connections", b, 0));
        auto metrics = scrape_metrics(admin());
        ASSERT_TRUE(metrics);
        double all_closes = metrics->sum("ringlb_backend_closes_total", b);
        EXPECT_EQ(all_closes, count) << metrics->describe("ringlb_backend_closes_total", b);
    }

    void finish() {
        expect_fds_back_to_baseline(proxy_, baseline_);
        EXPECT_EQ(proxy_.stop(), 0) << proxy_.log_tail();
    }

    BackendProcess backend_;
    ProxyConfigSpec spec_;
    ProxyProcess proxy_;
    FdCounts baseline_;
};

TEST_P(UpstreamLimitsTimeoutTest, IdleTimeoutClosesAQuietPair) {
    start(EchoMode::kEcho, "idle_timeout = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    // Quiet for 600 ms, then one exchange: the timeout counts from the last byte, not from the
    // connect (which would close 400 ms after the exchange).
    std::this_thread::sleep_for(600ms);
    ASSERT_TRUE(client.send("ping")) << client.error();
    ASSERT_TRUE(client.expect("ping")) << client.error();
    CloseResult close = client.wait_for_close(3000ms);
    EXPECT_TRUE(closed_after(client.last_receive_at(), close, 1000ms));
    EXPECT_EQ(close.bytes_before, 0u);
    expect_counted("idle_timeout", 1);
    finish();
}

TEST_P(UpstreamLimitsTimeoutTest, ActivityEvery200msKeepsTheSessionOpen) {
    start(EchoMode::kEcho, "idle_timeout = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    auto until = Clock::now() + 3000ms;
    for (uint64_t k = 0; Clock::now() < until; ++k) {
        auto next = Clock::now() + 200ms;
        ASSERT_TRUE(client.send(payload(k, 64))) << client.error();
        ASSERT_TRUE(client.expect(payload(k, 64), 900ms))
            << "closed or silent after " << (Clock::now() - client.connected_at()) / 1ms
            << " ms: " << client.error();
        std::this_thread::sleep_until(next);
    }
    EXPECT_TRUE(metric_is(admin(), "ringlb_timeouts_total", {}, 0, 0ms));
    // Once the activity stops, the timer still runs.
    CloseResult close = client.wait_for_close(3000ms);
    EXPECT_TRUE(closed_after(client.last_receive_at(), close, 1000ms));
    expect_counted("idle_timeout", 1);
    finish();
}

TEST_P(UpstreamLimitsTimeoutTest, ClientIdleTimeoutWhileTheBackendKeepsTalking) {
    BackendOptions options;
    options.mode = EchoMode::kDrip;
    options.drip_interval = 100ms;
    start(options, "client_idle_timeout = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    // The client only reads: the backend's bytes keep idle_timeout (1 h) away, but not this one.
    std::string data;
    CloseResult close = client.wait_for_close(3000ms, &data);
    EXPECT_TRUE(closed_after(client.connected_at(), close, 1000ms));
    EXPECT_GE(data.size(), 4u) << "the backend did not keep talking";
    EXPECT_EQ(tools::pattern_mismatch(tools::kBackendPatternSeed, 0,
                                      reinterpret_cast<const uint8_t*>(data.data()), data.size()),
              data.size());
    // Still talking when the session was closed.
    EXPECT_GT(close.bytes_before, 0u);
    EXPECT_LT(close.at - close.last_byte_at, 400ms);
    expect_counted("client_idle_timeout", 1);
    finish();
}

TEST_P(UpstreamLimitsTimeoutTest, ServerIdleTimeoutWhileTheClientKeepsSending) {
    // The sink backend reads everything and never answers.
    start(EchoMode::kSink, "", "server_idle_timeout = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    std::string sent;
    std::string received;
    CloseResult close = send_periodically_until_close(
        client.fd(), 200ms, 3000ms, [](size_t k) { return payload(k, 32); }, &sent, &received);
    EXPECT_TRUE(closed_after(client.connected_at(), close, 1000ms));
    EXPECT_GE(sent.size(), 4u * 32u) << "the client did not keep sending";
    EXPECT_EQ(received.size(), 0u);
    expect_counted("server_idle_timeout", 1);
    finish();
}

TEST_P(UpstreamLimitsTimeoutTest, HalfClosedTimeoutAfterTheClientsFin) {
    // The sink backend stays silent and open after the client's FIN; idle_timeout is far away.
    start(EchoMode::kSink, "idle_timeout = \"10s\"\nhalf_closed_timeout = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    ASSERT_TRUE(client.send(payload(1, 4096))) << client.error();
    client.shutdown_write();
    CloseResult close = client.wait_for_close(4000ms);
    EXPECT_TRUE(closed_after(client.last_send_at(), close, 1000ms));
    EXPECT_EQ(close.bytes_before, 0u);
    expect_counted("half_closed_timeout", 1);
    finish();
}

// half_closed_timeout counts from the FIN, not from the last byte before it: a pair quiet for
// longer than the timeout before the FIN still gives the other direction the full timeout.
TEST_P(UpstreamLimitsTimeoutTest, HalfClosedTimeoutCountsFromTheFin) {
    // Quiet for 1.5 s (idle_timeout is 10 s), then the client's FIN: the half-closed pair must
    // get its full second from the FIN, in which the other direction may still answer.
    start(EchoMode::kSink, "idle_timeout = \"10s\"\nhalf_closed_timeout = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    ASSERT_TRUE(client.send(payload(2, 100))) << client.error();
    std::this_thread::sleep_for(1500ms);
    auto fin_at = Clock::now();
    client.shutdown_write();
    CloseResult close = client.wait_for_close(4000ms);
    EXPECT_TRUE(closed_after(fin_at, close, 1000ms));
    expect_counted("half_closed_timeout", 1);
    finish();
}

TEST_P(UpstreamLimitsTimeoutTest, MaxDurationEndsABusySession) {
    start(EchoMode::kEcho, "max_duration = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    ClientSession client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    // Bytes both ways every 100 ms until the close.
    std::string sent;
    std::string received;
    CloseResult close = send_periodically_until_close(
        client.fd(), 100ms, 3000ms, [](size_t k) { return payload(100 + k, 24); }, &sent,
        &received);
    EXPECT_TRUE(closed_after(client.connected_at(), close, 1000ms));
    EXPECT_GE(received.size(), 5u * 24u) << "the session was not busy";
    EXPECT_EQ(received, sent.substr(0, received.size())) << "the echo is not byte-exact";
    EXPECT_LT(close.at - close.last_byte_at, 300ms) << "the echo stopped before the close";
    expect_counted("max_duration", 1);
    finish();
}

TEST_P(UpstreamLimitsTimeoutTest, MaxDurationJitterSpreadsTheCloses) {
    start(EchoMode::kEcho, "max_duration = \"1s\"\nmax_duration_jitter = \"1s\"");
    if (HasFatalFailure() || IsSkipped()) return;
    constexpr size_t kSessions = 10;
    std::vector<ClientSession> clients(kSessions);
    std::vector<int> fds;
    for (auto& client : clients) {
        ASSERT_TRUE(client.connect(port())) << client.error();
        fds.push_back(client.fd());
    }
    std::vector<CloseResult> closes = wait_for_close_all(fds, 4000ms);
    Millis first = Millis::max();
    Millis last = Millis::zero();
    std::string times;
    for (size_t i = 0; i < kSessions; ++i) {
        Millis after = ClientSession::between(clients[i].connected_at(), closes[i]);
        times += std::to_string(after.count()) + " ";
        EXPECT_TRUE(closed(closes[i])) << "session " << i << ": " << to_string(closes[i].kind);
        // Each between max_duration and max_duration + jitter, within the tolerance.
        EXPECT_GE(after, 1000ms - kSlack) << "session " << i;
        EXPECT_LE(after, 2000ms + kSlack) << "session " << i;
        first = std::min(first, after);
        last = std::max(last, after);
    }
    // Ten uniform draws over 1 s all within 200 ms of each other: probability about 1e-5.
    EXPECT_GE(last - first, 200ms) << "closes not spread: " << times;
    expect_counted("max_duration", kSessions);
    finish();
}

INSTANTIATE_TEST_SUITE_P(Engines, UpstreamLimitsTimeoutTest, ::testing::ValuesIn(kEngines),
                         engine_name);

// ---------------------------------------------------------------------------------------------
// TCP keepalive and TCP_USER_TIMEOUT on both legs

struct Legs {
    std::vector<ProcessSocket> client;    // ringlb's accepted sockets (local = the listener)
    std::vector<ProcessSocket> upstream;  // ringlb's sockets to the backend
};

// ringlb's sockets, sorted by leg; the listener, admin and scrape sockets are left out.
std::optional<Legs> legs_of(const ProxyProcess& proxy, uint16_t listen_port,
                            const BackendProcess& backend, std::string* error) {
    auto sockets = process_tcp_sockets(proxy.pid(), error);
    if (!sockets) return std::nullopt;
    Legs legs;
    std::string listener = "127.0.0.1:" + std::to_string(listen_port);
    for (const auto& socket : *sockets) {
        if (socket.listening || socket.peer.empty()) continue;
        if (socket.local == listener)
            legs.client.push_back(socket);
        else if (socket.peer == backend.address())
            legs.upstream.push_back(socket);
    }
    return legs;
}

std::string describe(const ProcessSocket& s) {
    char text[256];
    std::snprintf(text, sizeof(text),
                  "fd %d %s -> %s: keepalive=%d idle=%d interval=%d count=%d user_timeout=%u ms",
                  s.fd, s.local.c_str(), s.peer.c_str(), s.opts.keepalive ? 1 : 0, s.opts.keepidle,
                  s.opts.keepintvl, s.opts.keepcnt, s.opts.user_timeout_ms);
    return text;
}

::testing::AssertionResult has_options(const ProcessSocket& s, int idle, int interval, int count,
                                       unsigned user_timeout_ms) {
    const SockOpts& o = s.opts;
    if (o.keepalive && o.keepidle == idle && o.keepintvl == interval && o.keepcnt == count &&
        o.user_timeout_ms == user_timeout_ms)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << describe(s) << "; expected keepalive=1 idle=" << idle << " interval=" << interval
           << " count=" << count << " user_timeout=" << user_timeout_ms << " ms";
}

::testing::AssertionResult has_no_options(const ProcessSocket& s) {
    if (!s.opts.keepalive && s.opts.user_timeout_ms == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << describe(s) << "; expected keepalive off and no user timeout";
}

// Different values on each side, so a leg that got the other side's options shows.
constexpr const char* kListenerOptions =
    "tcp_keepalive = { idle = \"30s\", interval = \"5s\", count = 4 }\n"
    "tcp_user_timeout = \"10s\"";
constexpr const char* kClusterOptions =
    "tcp_keepalive = { idle = \"40s\", interval = \"6s\", count = 5 }\n"
    "tcp_user_timeout = \"12s\"";

class UpstreamLimitsSockoptTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }

    ProxyConfigSpec spec(const BackendProcess& backend, const std::string& listener_extra,
                         const std::string& cluster_extra) const {
        ProxyConfigSpec s;
        s.engine = engine();
        s.workers = 1;
        s.backends = {backend.address()};
        s.listener_extra = listener_extra;
        s.cluster_extra = cluster_extra;
        return s;
    }
};

// One forwarding session; returns its two legs as ringlb holds them.
void open_session(const ProxyProcess& proxy, uint16_t port, const BackendProcess& backend,
                  ClientSession& client, ProcessSocket& client_leg,
                  std::vector<ProcessSocket>& upstream_legs) {
    ASSERT_TRUE(client.connect(port)) << client.error();
    ASSERT_TRUE(client.send("ping")) << client.error();
    ASSERT_TRUE(client.expect("ping")) << client.error();
    std::string error;
    auto legs = legs_of(proxy, port, backend, &error);
    ASSERT_TRUE(legs) << error;
    // The client leg is the accepted socket whose peer is this client.
    std::string me = common::local_address(client.fd()).to_string();
    auto it = std::find_if(legs->client.begin(), legs->client.end(),
                           [&](const ProcessSocket& s) { return s.peer == me; });
    ASSERT_TRUE(it != legs->client.end()) << "no socket of ringlb has the peer " << me << "\n"
                                          << proxy.describe_sockets();
    ASSERT_EQ(legs->client.size(), 1u) << proxy.describe_sockets();
    client_leg = *it;
    upstream_legs = legs->upstream;
}

TEST_P(UpstreamLimitsSockoptTest, EachLegCarriesItsOwnOptions) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec s = spec(backend, kListenerOptions, kClusterOptions);
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(s), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    ClientSession client;
    ProcessSocket client_leg;
    std::vector<ProcessSocket> upstream;
    open_session(proxy, s.listen_port, backend, client, client_leg, upstream);
    if (HasFatalFailure()) return;
    EXPECT_TRUE(has_options(client_leg, 30, 5, 4, 10000)) << "client leg";
    ASSERT_EQ(upstream.size(), 1u) << proxy.describe_sockets();
    EXPECT_TRUE(has_options(upstream[0], 40, 6, 5, 12000)) << "upstream leg";
    // The same through sockopts_of(), by fd.
    std::string error;
    auto opts = sockopts_of(proxy.pid(), upstream[0].fd, &error);
    ASSERT_TRUE(opts) << error;
    EXPECT_EQ(opts->keepidle, 40);
    EXPECT_EQ(opts->user_timeout_ms, 12000u);

    client.close();
    EXPECT_TRUE(
        metric_is(s.admin_port, "ringlb_backend_active_connections", backend_labels(backend), 0));
    expect_fds_back_to_baseline(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(UpstreamLimitsSockoptTest, WithoutTheKeysTheOptionsAreOff) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec s = spec(backend, "", "");
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(s), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    ClientSession client;
    ProcessSocket client_leg;
    std::vector<ProcessSocket> upstream;
    open_session(proxy, s.listen_port, backend, client, client_leg, upstream);
    if (HasFatalFailure()) return;
    EXPECT_TRUE(has_no_options(client_leg)) << "client leg";
    ASSERT_EQ(upstream.size(), 1u) << proxy.describe_sockets();
    EXPECT_TRUE(has_no_options(upstream[0])) << "upstream leg";

    client.close();
    EXPECT_TRUE(
        metric_is(s.admin_port, "ringlb_backend_active_connections", backend_labels(backend), 0));
    expect_fds_back_to_baseline(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(UpstreamLimitsSockoptTest, PooledSocketsCarryTheClusterOptions) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec s =
        spec(backend, kListenerOptions,
             std::string(kClusterOptions) + "\npool = { warm = 2, max_idle = \"30s\" }");
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(s), engine());
    Labels b = backend_labels(backend);
    ASSERT_TRUE(metric_is(s.admin_port, "ringlb_backend_pool_idle", b, 2, 5000ms));
    FdCounts baseline = proxy.settled_fd_counts();

    // Before any client: the pooled sockets alone.
    std::string error;
    auto legs = legs_of(proxy, s.listen_port, backend, &error);
    ASSERT_TRUE(legs) << error;
    ASSERT_EQ(legs->upstream.size(), 2u) << proxy.describe_sockets();
    for (const auto& socket : legs->upstream)
        EXPECT_TRUE(has_options(socket, 40, 6, 5, 12000)) << "pooled socket";

    // A client served from the pool, and the socket that refills it.
    ClientSession client;
    ProcessSocket client_leg;
    std::vector<ProcessSocket> upstream;
    open_session(proxy, s.listen_port, backend, client, client_leg, upstream);
    if (HasFatalFailure()) return;
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_pool_hits_total", b, 1));
    ASSERT_TRUE(metric_is(s.admin_port, "ringlb_backend_pool_idle", b, 2, 5000ms));
    legs = legs_of(proxy, s.listen_port, backend, &error);
    ASSERT_TRUE(legs) << error;
    EXPECT_TRUE(has_options(client_leg, 30, 5, 4, 10000)) << "client leg";
    ASSERT_EQ(legs->upstream.size(), 3u) << proxy.describe_sockets();
    for (const auto& socket : legs->upstream)
        EXPECT_TRUE(has_options(socket, 40, 6, 5, 12000)) << "upstream socket";

    client.close();
    EXPECT_TRUE(metric_is(s.admin_port, "ringlb_backend_active_connections", b, 0));
    expect_fds_back_to_baseline(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, UpstreamLimitsSockoptTest, ::testing::ValuesIn(kEngines),
                         engine_name);

}  // namespace
}  // namespace ringlb::testkit
