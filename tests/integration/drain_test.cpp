// Graceful drain on SIGTERM against the real binary: transfers in flight complete byte-exact
// while /ready answers 503, clients that come during drain_delay are served and later ones
// refused, sessions left at drain_timeout close spread over drain_spread (reason "drained" on
// /metrics), and the process exits 0. (Connections waiting in an accept queue when a listener
// closes: tests/unit/shard_drain_test.cpp, where the queue can be filled deterministically.)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1024 * 1024;

class DrainTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

// Waits until /ready answers `status`; the last status seen (0: no answer) otherwise.
int wait_for_ready_status(uint16_t admin_port, int status, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    int last = 0;
    while (Clock::now() < deadline) {
        auto response = http_request(admin_port, "/ready", 1000ms);
        last = response ? response->status : 0;
        if (last == status) return last;
        std::this_thread::sleep_for(20ms);
    }
    return last;
}

// The number in the log's "waiting up to drain_timeout ... for N sessions", or -1.
long sessions_at_listener_close(const std::string& log) {
    std::string marker = "drain_timeout";
    size_t at = log.find("drain: listeners closed");
    if (at == std::string::npos) return -1;
    size_t for_at = log.find(" for ", log.find(marker, at));
    if (for_at == std::string::npos) return -1;
    return std::strtol(log.c_str() + for_at + 5, nullptr, 10);
}

// 20 hash exchanges of about 12 MiB down and 256 KiB up, read at 2 MiB/s each, so every one is
// in flight when SIGTERM comes: each completes byte-exact (pattern checked byte by byte, the
// upload by SHA-256), /ready answers 503 meanwhile, and ringlb exits 0 once the last ends.
TEST_P(DrainTest, TransfersInFlightCompleteByteExact) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    spec.runtime_extra = "drain_timeout = \"30s\"\ndrain_spread = \"1s\"";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    ASSERT_EQ(wait_for_ready_status(spec.admin_port, 200, 5s), 200);

    constexpr size_t kTransfers = 20;
    ExchangeSpec exchange;
    exchange.kind = ExchangeKind::kHash;
    exchange.send_bytes = 256 * 1024;
    // The kernel holds up to tcp_wmem's maximum (4 MiB on Debian) in ringlb's send buffer to
    // each client, plus the client's receive buffer (bounded here; autotuning grew it to MiBs):
    // a session leaves ringlb that much before its client has read it all. With 6 MiB in all
    // they left about 1 s after the SIGTERM here, and before the listeners closed on a CI
    // machine; 8 MiB beyond the kernel's share keep them in ringlb for about 4 s.
    RunOptions options;
    options.recv_bytes_per_second = 2 * kMiB;
    options.recv_buffer_bytes = 64 * 1024;
    exchange.recv_bytes = kernel_buffering_to_client(options) + 8 * kMiB;
    options.deadline = 60s;
    auto run = std::async(std::launch::async, [&] {
        return run_concurrent(spec.listen_port, kTransfers, exchange, options);
    });
    // Every transfer has its session and bytes are moving.
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_listener_active_connections", {{"listener", "test"}},
        [](double v) { return v == kTransfers; }, 10s, &last))
        << last;
    ASSERT_TRUE(wait_for_metric(spec.admin_port, "ringlb_bytes_total",
                                {{"direction", "upstream_to_client"}}, 1.0 * kMiB, 10s, &last))
        << last;
    ASSERT_EQ(run.wait_for(0s), std::future_status::timeout) << "the transfers ended too early";

    size_t log_mark = proxy.log().size();
    ASSERT_TRUE(proxy.signal(SIGTERM));
    EXPECT_EQ(wait_for_ready_status(spec.admin_port, 503, 2s), 503);
    ASSERT_TRUE(proxy.wait_for_log("drain: listeners closed", 5s, log_mark)) << proxy.log_tail();
    EXPECT_EQ(run.wait_for(0s), std::future_status::timeout)
        << "the transfers ended before the listeners closed: nothing was in flight";
    EXPECT_EQ(sessions_at_listener_close(proxy.log().substr(log_mark)),
              static_cast<long>(kTransfers))
        << proxy.log_tail();
    // Still serving /ready (503) while the transfers run.
    EXPECT_EQ(wait_for_ready_status(spec.admin_port, 503, 1s), 503);

    RunSummary summary = run.get();
    EXPECT_TRUE(summary.ok()) << summary.describe() << "\n" << proxy.log_tail();
    std::optional<int> code = proxy.wait_exit(10s);
    ASSERT_TRUE(code) << "ringlb still runs after its sessions ended:\n" << proxy.log_tail();
    EXPECT_EQ(*code, 0) << proxy.log_tail();
    std::string drain_log = proxy.log().substr(log_mark);
    EXPECT_NE(drain_log.find("drain: done"), std::string::npos) << drain_log;
    EXPECT_NE(drain_log.find("every session has ended"), std::string::npos) << drain_log;
    EXPECT_EQ(drain_log.find("drain_timeout passed"), std::string::npos) << drain_log;
}

struct Attempt {
    Clock::time_point started;
    bool ok = false;
    std::string error;
};

// drain_delay = "2s": clients that connect during the delay are all served; once the listeners
// have closed, new ones are refused.
TEST_P(DrainTest, ClientsDuringDrainDelayAreServedAndLaterOnesRefused) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    spec.runtime_extra = "drain_delay = \"2s\"";
    constexpr Millis kDelay = 2000ms;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());

    // One client after the other, each a full echo exchange, until told to stop.
    std::mutex mutex;
    std::vector<Attempt> attempts;
    std::atomic<bool> stop{false};
    std::thread clients([&] {
        while (!stop.load()) {
            Attempt a;
            a.started = Clock::now();
            ExchangeResult r = echo_exchange(spec.listen_port, 4096, false, 3000ms);
            a.ok = r.ok;
            a.error = r.error;
            {
                std::lock_guard lock(mutex);
                attempts.push_back(std::move(a));
            }
            std::this_thread::sleep_for(10ms);
        }
    });
    auto count_attempts = [&] {
        std::lock_guard lock(mutex);
        return attempts.size();
    };
    // A few served before the signal, to know the client loop works.
    auto until = Clock::now() + 5s;
    while (count_attempts() < 3 && Clock::now() < until) std::this_thread::sleep_for(10ms);
    size_t log_mark = proxy.log().size();
    Clock::time_point sigterm = Clock::now();
    ASSERT_TRUE(proxy.signal(SIGTERM));
    EXPECT_EQ(wait_for_ready_status(spec.admin_port, 503, 1s), 503);
    bool closed = proxy.wait_for_log("drain: listeners closed", kDelay + 5s, log_mark);
    Clock::time_point closed_seen = Clock::now();
    // Enough attempts started after the close to see them refused (the one in flight when the
    // close was seen started before it and does not count).
    auto started_after_close = [&] {
        std::lock_guard lock(mutex);
        return std::count_if(attempts.begin(), attempts.end(),
                             [&](const Attempt& a) { return a.started > closed_seen; });
    };
    until = Clock::now() + 5s;
    while (started_after_close() < 5 && Clock::now() < until) std::this_thread::sleep_for(10ms);
    stop.store(true);
    clients.join();
    ASSERT_TRUE(closed) << proxy.log_tail();
    EXPECT_GE(closed_seen - sigterm, kDelay - 50ms) << "the listeners closed before drain_delay";

    size_t during = 0, refused_after = 0, after = 0;
    for (const Attempt& a : attempts) {
        if (a.started < sigterm) {
            EXPECT_TRUE(a.ok) << "before SIGTERM: " << a.error;
        } else if (a.started < sigterm + kDelay - 100ms) {
            // Within the delay, with a margin for the client's own connect.
            ++during;
            EXPECT_TRUE(a.ok) << "refused during drain_delay, "
                              << std::chrono::duration_cast<Millis>(a.started - sigterm).count()
                              << " ms after SIGTERM: " << a.error;
        } else if (a.started > closed_seen) {
            ++after;
            if (!a.ok && a.error.find("refused") != std::string::npos) ++refused_after;
        }
    }
    EXPECT_GE(during, 20u) << "too few clients tried during drain_delay to show anything";
    EXPECT_GE(after, 5u);
    EXPECT_EQ(refused_after, after) << "clients were served after the listeners closed";

    std::optional<int> code = proxy.wait_exit(10s);
    ASSERT_TRUE(code) << proxy.log_tail();
    EXPECT_EQ(*code, 0) << proxy.log_tail();
}

// 200 idle sessions, drain_timeout short, drain_spread = "1s": ringlb resets them over about a
// second, not in one burst; /metrics shows reason="drained" during the spread; exit 0.
TEST_P(DrainTest, SessionsLeftAtDrainTimeoutCloseSpreadOverDrainSpread) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    spec.runtime_extra = "drain_timeout = \"200ms\"\ndrain_spread = \"1s\"";
    constexpr Millis kSpread = 1000ms;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());

    constexpr size_t kSessions = 200;
    std::vector<ClientSession> clients(kSessions);
    std::vector<int> fds;
    for (size_t i = 0; i < kSessions; ++i) {
        ASSERT_TRUE(clients[i].connect(spec.listen_port)) << i << ": " << clients[i].error();
        ASSERT_TRUE(clients[i].send("x"));
        ASSERT_TRUE(clients[i].expect("x")) << i << ": " << clients[i].error();
        fds.push_back(clients[i].fd());
    }
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_listener_active_connections", {{"listener", "test"}},
        [](double v) { return v == kSessions; }, 5s, &last))
        << last;

    size_t log_mark = proxy.log().size();
    Clock::time_point sigterm = Clock::now();
    ASSERT_TRUE(proxy.signal(SIGTERM));
    auto closes = std::async(std::launch::async, [&] { return wait_for_close_all(fds, 10s); });
    // Scraped during the spread: some closed as drained, not all yet.
    const Labels drained{{"reason", "drained"}};
    ASSERT_TRUE(
        wait_for_metric(spec.admin_port, "ringlb_backend_closes_total", drained, 1.0, 5s, &last))
        << last << "\n"
        << proxy.log_tail();
    std::string error;
    std::optional<Metrics> during = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(during) << error;
    double drained_during = during->sum("ringlb_backend_closes_total", drained);
    EXPECT_GT(drained_during, 0);
    EXPECT_LT(drained_during, kSessions) << "every session was closed by the first scrape";

    std::vector<CloseResult> results = closes.get();
    std::vector<Clock::time_point> at;
    for (size_t i = 0; i < results.size(); ++i) {
        EXPECT_EQ(results[i].kind, CloseKind::kReset)
            << "session " << i << ": " << to_string(results[i].kind);
        at.push_back(results[i].at);
    }
    std::sort(at.begin(), at.end());
    auto ms = [](Clock::duration d) { return std::chrono::duration_cast<Millis>(d).count(); };
    // None before drain_timeout; spread over about drain_spread.
    EXPECT_GE(ms(at.front() - sigterm), 200 - 20) << "closed before drain_timeout";
    EXPECT_GE(ms(at.back() - at.front()), ms(kSpread) * 7 / 10)
        << "first close " << ms(at.front() - sigterm) << " ms after SIGTERM, last "
        << ms(at.back() - sigterm);
    EXPECT_LE(ms(at.back() - at.front()), ms(kSpread) + 500);
    // No burst: an even spread puts 10 in any 50 ms; allow for scheduling noise.
    size_t burst = 0;
    for (size_t i = 0, j = 0; i < at.size(); ++i) {
        while (at[i] - at[j] > 50ms) ++j;
        burst = std::max(burst, i - j + 1);
    }
    EXPECT_LE(burst, kSessions / 5) << "up to " << burst << " sessions closed within 50 ms";

    std::optional<int> code = proxy.wait_exit(10s);
    ASSERT_TRUE(code) << proxy.log_tail();
    EXPECT_EQ(*code, 0) << proxy.log_tail();
    std::string drain_log = proxy.log().substr(log_mark);
    EXPECT_NE(drain_log.find("drain: drain_timeout passed with 200 sessions open"),
              std::string::npos)
        << drain_log;
    EXPECT_NE(drain_log.find("drain: done"), std::string::npos) << drain_log;
}

// A second SIGTERM during the drain stops at once: the sessions still open are reset, exit 0.
TEST_P(DrainTest, SecondSignalStopsAtOnce) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    spec.runtime_extra = "drain_timeout = \"30s\"";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    ClientSession client;
    ASSERT_TRUE(client.connect(spec.listen_port)) << client.error();
    ASSERT_TRUE(client.send("x"));
    ASSERT_TRUE(client.expect("x")) << client.error();

    size_t log_mark = proxy.log().size();
    ASSERT_TRUE(proxy.signal(SIGTERM));
    ASSERT_TRUE(proxy.wait_for_log("waiting up to drain_timeout 30s for 1 sessions", 5s, log_mark))
        << proxy.log_tail();
    EXPECT_TRUE(client.stays_open(200ms)) << client.error();
    Clock::time_point second = Clock::now();
    ASSERT_TRUE(proxy.signal(SIGINT));
    std::optional<int> code = proxy.wait_exit(5s);
    ASSERT_TRUE(code) << proxy.log_tail();
    EXPECT_EQ(*code, 0) << proxy.log_tail();
    EXPECT_LT(Clock::now() - second, 3s);
    CloseResult close = client.wait_for_close(2s);
    EXPECT_EQ(close.kind, CloseKind::kReset) << to_string(close.kind);
    EXPECT_TRUE(
        proxy.wait_for_log("during the drain: stopping now (1 sessions still open", 1s, log_mark))
        << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, DrainTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
