// Warm upstream pools (`pool = { warm, max_idle }`) against the backends that break naive pools:
// one that closes idle connections on its own, one that speaks first, and a refusing backend next
// to one that is slow to accept. Every client exchange is byte-exact; every count comes from
// /metrics; every test ends with the proxy's fds back at the baseline taken once the pools had
// filled (pooled sockets are part of that baseline).

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr unsigned kWorkers = 2;

class UpstreamPoolTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

Labels backend_labels(const std::string& address) {
    return {{"cluster", "app"}, {"backend", address}};
}

const Labels kCluster{{"cluster", "app"}};

// One scrape; a failed scrape fails the test and reads as an empty exposition.
Metrics scrape(uint16_t admin_port) {
    std::string error;
    auto metrics = scrape_metrics(admin_port, &error);
    if (!metrics) {
        ADD_FAILURE() << "GET /metrics: " << error;
        return Metrics{};
    }
    return *metrics;
}

// Polls /metrics every 10 ms (finer than wait_for_metric's 50 ms: the backend-close test needs to
// see a round of pool deaths soon after it happens) until the sum of `name` over `labels`
// satisfies `predicate`; returns that sum, or nullopt after `timeout`.
std::optional<double> await_metric(uint16_t admin_port, std::string_view name, const Labels& labels,
                                   const std::function<bool(double)>& predicate, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto metrics = scrape_metrics(admin_port, nullptr, 2000ms);
        if (metrics) {
            double value = metrics->sum(name, labels);
            if (predicate(value)) return value;
        }
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(10ms);
    }
}

// Waits until `pool_idle` pooled sockets sit idle, then takes the fd baseline: the pools' sockets
// belong to it, so a pooled socket that is never closed, or never replaced, shows at the end.
::testing::AssertionResult baseline_after_pool_filled(const ProxyProcess& proxy,
                                                      uint16_t admin_port, double pool_idle,
                                                      FdCounts* baseline) {
    std::string last;
    if (!wait_for_metric(
            admin_port, "ringlb_backend_pool_idle", kCluster,
            [&](double v) { return v == pool_idle; }, 5000ms, &last))
        return ::testing::AssertionFailure()
               << "the pools did not fill to " << pool_idle << " idle sockets: " << last;
    *baseline = proxy.settled_fd_counts();
    return ::testing::AssertionSuccess();
}

// Every session closed, then the proxy's sockets and other fds back at `baseline`.
void expect_fds_back_to_baseline(const ProxyProcess& proxy, uint16_t admin_port,
                                 const FdCounts& baseline) {
    std::string last;
    EXPECT_TRUE(wait_for_metric(
        admin_port, "ringlb_active", {}, [](double v) { return v == 0; }, 5000ms, &last))
        << "sessions still open: " << last;
    FdCounts now = wait_for_fd_baseline(proxy, baseline, 3000ms);
    EXPECT_TRUE(fd_counts_match(now, baseline, false))
        << "fd leak: baseline " << to_string(baseline) << ", now " << to_string(now)
        << "\nproxy sockets:\n"
        << proxy.describe_sockets();
}

// The proxy's byte counters equal what the clients sent and received: nothing lost, nothing
// duplicated (a greeting forwarded twice would show here too).
void expect_bytes(uint16_t admin_port, uint64_t in, uint64_t out) {
    std::string last;
    EXPECT_TRUE(wait_for_metric(
        admin_port, "ringlb_bytes_in_total", {}, [&](double v) { return v == double(in); }, 3000ms,
        &last))
        << "client -> backend bytes: want " << in << ", " << last;
    EXPECT_TRUE(wait_for_metric(
        admin_port, "ringlb_bytes_out_total", {}, [&](double v) { return v == double(out); },
        3000ms, &last))
        << "backend -> client bytes: want " << out << ", " << last;
}

// Clients arriving in waves: before each wave `before_wave(i)` runs (a sleep, or a wait for the
// pool to reach some state); then `per_wave` echo exchanges of random sizes run at once.
struct WaveTotals {
    size_t clients = 0;
    size_t failed = 0;
    uint64_t bytes = 0;  // payload bytes, each way
    std::vector<std::string> failures;
    Millis longest_wave{0};
};

WaveTotals run_waves(uint16_t port, size_t waves, size_t per_wave, std::mt19937_64& rng,
                     const std::function<void(size_t)>& before_wave) {
    WaveTotals totals;
    std::uniform_int_distribution<uint64_t> size(1, 16 * 1024);
    for (size_t w = 0; w < waves; ++w) {
        before_wave(w);
        std::vector<ExchangeSpec> specs(per_wave);
        for (size_t i = 0; i < per_wave; ++i) {
            specs[i].kind = ExchangeKind::kEcho;
            specs[i].send_bytes = size(rng);
            specs[i].seed = totals.clients + i + 1;
            totals.bytes += specs[i].send_bytes;
        }
        RunSummary summary = run_concurrent(port, specs, RunOptions{Millis(30000), 0});
        totals.clients += summary.total;
        totals.failed += summary.total - summary.succeeded;
        totals.longest_wave = std::max(totals.longest_wave, summary.elapsed);
        if (!summary.ok() && totals.failures.size() < 5)
            totals.failures.push_back("wave " + std::to_string(w) + ": " + summary.describe());
    }
    return totals;
}

std::string describe(const WaveTotals& totals) {
    std::string text = std::to_string(totals.failed) + " of " + std::to_string(totals.clients) +
                       " clients failed; longest wave " +
                       std::to_string(totals.longest_wave.count()) + " ms";
    for (const auto& f : totals.failures) text += "\n" + f;
    return text;
}

// ---------------------------------------------------------------------------------------------
// 1. A backend that closes idle connections (ringlb-echo --idle-close 200).

constexpr Millis kBackendIdleClose{200};
constexpr unsigned kWarm = 4;
constexpr double kPoolSize = kWarm * kWorkers;  // one backend

// max_idle (100 ms) below the backend's idle timeout (200 ms): the pool retires every socket
// before the backend would close it, so a socket handed over is at most ~100 ms old and the
// client's first byte reaches the backend with ~100 ms to spare (half the backend's timeout; an
// odd 10-50 ms scheduling stall of the shard under ASan or load does not eat it). 150 ms would
// churn a little less but leave only 50 ms. Waves of clients then meet the pool in every state:
// full and fresh, full and about to be retired, half refilled.
TEST_P(UpstreamPoolTest, MaxIdleBelowBackendIdleTimeoutLosesNoClient) {
    BackendProcess backend;
    BackendOptions options;
    options.mode = EchoMode::kEcho;
    options.idle_close = kBackendIdleClose;
    options.log_connections = true;  // idle_closes(): which closes were the backend's own
    ASSERT_TRUE(backend.start(options));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = kWorkers;
    spec.backends = {backend.address()};
    spec.cluster_extra = "pool = { warm = " + std::to_string(kWarm) + ", max_idle = \"100ms\" }";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline;
    ASSERT_TRUE(baseline_after_pool_filled(proxy, spec.admin_port, kPoolSize, &baseline));

    // 40 waves of 25 with random 50-500 ms gaps: ~11 s, 1,000 clients.
    constexpr uint64_t kSeed = 20240611;
    std::mt19937_64 rng(kSeed);
    std::uniform_int_distribution<int> gap_ms(50, 500);
    WaveTotals totals = run_waves(spec.listen_port, 40, 25, rng, [&](size_t wave) {
        if (wave > 0) std::this_thread::sleep_for(Millis(gap_ms(rng)));
    });
    EXPECT_EQ(totals.failed, 0u) << "seed " << kSeed << ": " << describe(totals);
    EXPECT_EQ(totals.clients, 1000u);
    expect_bytes(spec.admin_port, totals.bytes, totals.bytes);

    Metrics m = scrape(spec.admin_port);
    Labels b = backend_labels(backend.address());
    double hits = m.sum("ringlb_backend_pool_hits_total", b);
    double discarded = m.sum("ringlb_backend_pool_discarded_total", b);
    EXPECT_GT(hits, 0) << m.describe("ringlb_backend_pool_hits_total");
    EXPECT_GT(discarded, 0) << "no pooled socket was retired after max_idle";
    EXPECT_EQ(m.sum("ringlb_backend_connections_total", b), 1000);
    EXPECT_EQ(m.sum("ringlb_cluster_no_backend_total", kCluster), 0);
    // Gaps up to 500 ms and max_idle 100 ms retire the pool again and again; if max_idle did not
    // work, every discard would be the backend's own idle close instead. The backend logs each
    // of its idle closes: only a socket whose retirement came ~100 ms late can be among them.
    size_t backend_closes = backend.idle_closes();
    EXPECT_LE(double(backend_closes) * 4, discarded)
        << "the backend, not max_idle, closed most pooled sockets: " << backend_closes
        << " backend idle closes, " << discarded << " discarded";

    expect_fds_back_to_baseline(proxy, spec.admin_port, baseline);
    EXPECT_EQ(proxy.stop(), 0);
}

// max_idle (10 s) above the backend's idle timeout: now the backend closes every pooled socket
// 200 ms after accepting it, the pool must notice (POLLRDHUP watch, and the poll() at hand-over)
// and never hand a closed socket to a client.
//
// The waves are timed on the pool's own cycle rather than at random: before each wave the test
// waits until every pooled socket of the previous round has been closed by the backend and
// replaced. A client handed a socket just before the backend's timer fires loses the race that
// every server-side idle timeout has (the backend closes after the proxy's last check, before
// the client's first byte arrives; no proxy can see that coming, hence the README's advice to keep
// max_idle below the backend's timeout). With random waves that race cost 1-4 clients in 1,000
// here (measured with max_idle disabled in the first test). Right after a round the pooled
// sockets are young, so that race is out of the picture and what remains is exactly the pool's
// job: every socket of the last round is dead, and none of them may reach a client.
TEST_P(UpstreamPoolTest, SocketsTheBackendClosedAreNeverHandedToClients) {
    BackendProcess backend;
    BackendOptions options;
    options.mode = EchoMode::kEcho;
    options.idle_close = kBackendIdleClose;
    options.log_connections = true;
    ASSERT_TRUE(backend.start(options));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = kWorkers;
    spec.backends = {backend.address()};
    spec.cluster_extra = "pool = { warm = " + std::to_string(kWarm) + ", max_idle = \"10s\" }";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline;
    ASSERT_TRUE(baseline_after_pool_filled(proxy, spec.admin_port, kPoolSize, &baseline));

    Labels b = backend_labels(backend.address());
    double round_start = scrape(spec.admin_port).sum("ringlb_backend_pool_discarded_total", b);
    std::mt19937_64 rng(7);
    std::string why;
    // 20 waves of 25, one per round of backend closes (~230 ms): ~5 s, 500 clients.
    WaveTotals totals = run_waves(spec.listen_port, 20, 25, rng, [&](size_t wave) {
        if (!why.empty()) {
            // The pool already failed to follow the backend: keep the clients coming, one round
            // of backend closes apart, without waiting for it again.
            std::this_thread::sleep_for(kBackendIdleClose + 50ms);
            return;
        }
        // Every pooled socket of the last round closed by the backend and dropped...
        auto discarded = await_metric(
            spec.admin_port, "ringlb_backend_pool_discarded_total", b,
            [&](double v) { return v >= round_start + kPoolSize; }, 3000ms);
        if (!discarded) {
            // Go on all the same: the clients then show whether dead sockets reach them.
            why = "wave " + std::to_string(wave) + ": the backend's closes of pooled sockets " +
                  "were not seen (pool_discarded stayed below " +
                  std::to_string(round_start + kPoolSize) + ")";
            return;
        }
        round_start = *discarded;
        // ...and replaced without any client asking.
        if (!await_metric(
                spec.admin_port, "ringlb_backend_pool_idle", b,
                [](double v) { return v == kPoolSize; }, 2000ms) &&
            why.empty())
            why = "wave " + std::to_string(wave) + ": the pool did not refill after the closes";
    });
    EXPECT_TRUE(why.empty()) << why;
    EXPECT_EQ(totals.failed, 0u) << describe(totals);
    EXPECT_EQ(totals.clients, 500u);
    expect_bytes(spec.admin_port, totals.bytes, totals.bytes);

    Metrics m = scrape(spec.admin_port);
    double hits = m.sum("ringlb_backend_pool_hits_total", b);
    double discarded = m.sum("ringlb_backend_pool_discarded_total", b);
    // Each wave meets a full pool of fresh replacements.
    EXPECT_GE(hits, 20) << m.describe("ringlb_backend_pool_hits_total");
    EXPECT_GE(discarded, 20 * kPoolSize);
    EXPECT_EQ(m.sum("ringlb_backend_connections_total", b), 500);
    EXPECT_EQ(m.sum("ringlb_cluster_no_backend_total", kCluster), 0);
    // No socket reached max_idle, so every discard was a socket the backend had closed: the
    // backend's own count (read after the scrape) covers them all.
    size_t backend_closes = backend.idle_closes();
    EXPECT_GE(double(backend_closes), discarded)
        << "pooled sockets were dropped that the backend had not closed";

    // The connect latency histogram counts every connect made, the pool's fills as well as the
    // clients' own (a cluster whose clients all find pooled sockets still shows its latency).
    // A fill may still be on its way: compare until both sides agree or 3 s pass.
    double connects = 0;
    double observed = -1;
    for (auto deadline = std::chrono::steady_clock::now() + 3s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(50ms)) {
        Metrics now = scrape(spec.admin_port);
        connects = now.sum("ringlb_backend_pool_connects_total", b) +
                   now.sum("ringlb_backend_connections_total", b) -
                   now.sum("ringlb_backend_pool_hits_total", b);
        observed = now.sum("ringlb_connect_duration_seconds_count", kCluster);
        if (observed == connects) break;
    }
    EXPECT_EQ(observed, connects) << "fills + direct connects";

    expect_fds_back_to_baseline(proxy, spec.admin_port, baseline);
    EXPECT_EQ(proxy.stop(), 0);
}

// ---------------------------------------------------------------------------------------------
// 2. A backend that speaks first.

constexpr std::string_view kGreeting = "220 ready\r\n";

std::string random_payload(std::mt19937_64& rng) {
    std::uniform_int_distribution<size_t> size(1, 8 * 1024);
    std::uniform_int_distribution<int> byte(0, 255);
    std::string payload(size(rng), '\0');
    for (char& c : payload) c = static_cast<char>(byte(rng));
    return payload;
}

// The greeting first (before the client sends anything), then the echo of `payload` and EOF:
// nothing more, nothing less. "" when all is well, else what went wrong.
std::string greeted_exchange(ClientSession& client, const std::string& payload) {
    if (!client.expect(kGreeting, 5000ms)) return "greeting: " + client.error();
    if (!client.send(payload, 5000ms)) return "send: " + client.error();
    client.shutdown_write();
    std::string echoed;
    CloseResult close = client.wait_for_close(5000ms, &echoed);
    if (close.kind != CloseKind::kEof)
        return std::string("ended by ") + to_string(close.kind) + " after " +
               std::to_string(echoed.size()) + " of " + std::to_string(payload.size()) +
               " echoed bytes";
    if (echoed != payload) {
        size_t at = 0;
        while (at < echoed.size() && at < payload.size() && echoed[at] == payload[at]) ++at;
        std::string text = "echo differs at byte " + std::to_string(at) + " (got " +
                           std::to_string(echoed.size()) + " bytes, sent " +
                           std::to_string(payload.size()) + ")";
        if (echoed.compare(0, kGreeting.size(), kGreeting) == 0)
            text += "; it starts with the greeting again";
        return text;
    }
    return "";
}

// A greeting received while the socket sat in the pool reaches the client first and exactly once.
TEST_P(UpstreamPoolTest, GreetingOfPooledSocketReachesClientFirstAndOnce) {
    BackendProcess backend;
    BackendOptions options;
    options.mode = EchoMode::kEcho;
    options.greeting = std::string(kGreeting);
    ASSERT_TRUE(backend.start(options));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = kWorkers;
    spec.backends = {backend.address()};
    spec.cluster_extra = "pool = { warm = 2 }";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    constexpr double kIdle = 2 * kWorkers;
    FdCounts baseline;
    ASSERT_TRUE(baseline_after_pool_filled(proxy, spec.admin_port, kIdle, &baseline));
    Labels b = backend_labels(backend.address());

    // 5 rounds of 10 clients connected at once: the first few per shard take pooled sockets
    // (greeting already waiting in them), the others wait for refills or connect themselves
    // (greeting arriving after the session started).
    std::mt19937_64 rng(42);
    uint64_t sent = 0;
    size_t clients = 0;
    for (int round = 0; round < 5; ++round) {
        ASSERT_TRUE(await_metric(
            spec.admin_port, "ringlb_backend_pool_idle", b, [&](double v) { return v == kIdle; },
            3000ms))
            << "round " << round << ": the pool did not refill";
        std::vector<ClientSession> sessions(10);
        for (auto& s : sessions) ASSERT_TRUE(s.connect(spec.listen_port)) << s.error();
        for (size_t i = 0; i < sessions.size(); ++i) {
            std::string payload = random_payload(rng);
            sent += payload.size();
            ++clients;
            EXPECT_EQ(greeted_exchange(sessions[i], payload), "")
                << "round " << round << ", client " << i;
        }
    }
    double hits = scrape(spec.admin_port).sum("ringlb_backend_pool_hits_total", b);
    EXPECT_GT(hits, 0);

    // A pooled socket whose greeting has sat in it for 300 ms.
    ASSERT_TRUE(await_metric(
        spec.admin_port, "ringlb_backend_pool_idle", b, [&](double v) { return v == kIdle; },
        3000ms));
    std::this_thread::sleep_for(300ms);
    {
        ClientSession late;
        ASSERT_TRUE(late.connect(spec.listen_port)) << late.error();
        std::string payload = random_payload(rng);
        sent += payload.size();
        ++clients;
        EXPECT_EQ(greeted_exchange(late, payload), "") << "the client after 300 ms";
    }
    Metrics m = scrape(spec.admin_port);
    EXPECT_EQ(m.sum("ringlb_backend_pool_hits_total", b), hits + 1)
        << "the late client did not get a pooled socket";
    EXPECT_EQ(m.sum("ringlb_backend_connections_total", b), double(clients));
    expect_bytes(spec.admin_port, sent, sent + clients * kGreeting.size());

    expect_fds_back_to_baseline(proxy, spec.admin_port, baseline);
    EXPECT_EQ(proxy.stop(), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. One backend refuses, the other is slow to accept.

// A port nothing listens on (every connect refused) and a backend that accepts one connection
// per 5 ms per thread (2 threads: ~400 accepts/s). Its backlog stays at the default 4096, so the
// kernel completes every handshake at once and a connection just waits, connected, in the accept
// queue (at most ~100 clients plus the pool at a time); connect_timeout never comes into play.
// `pool` is "" (no pool) or the pool table.
void run_refusing_and_slow(const std::string& engine, const std::string& pool) {
    BackendProcess slow;
    BackendOptions options;
    options.mode = EchoMode::kEcho;
    options.threads = 2;
    options.accept_delay = 5ms;
    ASSERT_TRUE(slow.start(options));
    std::string refusing = "127.0.0.1:" + std::to_string(free_port());
    ProxyConfigSpec spec;
    spec.engine = engine;
    spec.workers = kWorkers;
    spec.backends = {refusing, slow.address()};  // round-robin: half the first picks refused
    if (!pool.empty()) spec.cluster_extra = "pool = " + pool;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine);
    FdCounts baseline;
    if (pool.empty()) {
        baseline = proxy.settled_fd_counts();
    } else {
        // Only the slow backend's pool can fill; the refusing one's backs off.
        ASSERT_TRUE(baseline_after_pool_filled(proxy, spec.admin_port, 2 * kWorkers, &baseline));
    }
    auto started = Clock::now();

    RunSummary summary =
        run_concurrent(spec.listen_port, 1000, ExchangeSpec{ExchangeKind::kEcho, 2048, 0, 1, false},
                       RunOptions{Millis(40000), 100});
    EXPECT_TRUE(summary.ok()) << summary.describe();
    expect_bytes(spec.admin_port, 1000 * 2048, 1000 * 2048);

    Metrics m = scrape(spec.admin_port);
    Labels r = backend_labels(refusing);
    Labels s = backend_labels(slow.address());
    Labels refused = r;
    refused["reason"] = "refused";
    double refusals = m.sum("ringlb_backend_connect_failures_total", refused);
    double retries = m.sum("ringlb_cluster_retries_total", kCluster);
    double pool_connects = m.sum("ringlb_backend_pool_connects_total", r);
    // Round-robin sends about half the clients to the refusing backend first.
    EXPECT_GE(refusals, 250) << m.describe("ringlb_backend_connect_failures_total", r);
    EXPECT_GT(retries, 0);
    // Every refusal of a client's connect is retried on the slow backend exactly once; the
    // pool's own fill connects are refused too but retry nothing.
    EXPECT_EQ(retries, refusals - pool_connects)
        << "refused " << refusals << ", of which pool fills " << pool_connects;
    EXPECT_EQ(m.sum("ringlb_backend_connect_failures_total", r), refusals)
        << "failures other than refused: "
        << m.describe("ringlb_backend_connect_failures_total", r);
    EXPECT_EQ(m.sum("ringlb_backend_connect_failures_total", s), 0)
        << m.describe("ringlb_backend_connect_failures_total", s);
    EXPECT_EQ(m.sum("ringlb_backend_connections_total", s), 1000);
    EXPECT_EQ(m.sum("ringlb_backend_connections_total", r), 0);
    EXPECT_EQ(m.sum("ringlb_cluster_no_backend_total", kCluster), 0);

    if (pool.empty()) {
        EXPECT_EQ(pool_connects, 0);
    } else {
        double seconds = std::chrono::duration<double>(Clock::now() - started).count();
        // Backoff 100 ms doubling to 10 s: a handful of fill rounds per shard in these few
        // seconds, a few hundred per shard without it.
        EXPECT_GE(pool_connects, kWorkers) << "the pool never tried the refusing backend";
        EXPECT_LT(pool_connects, 30.0 * kWorkers)
            << "no backoff against the refusing backend: " << pool_connects << " fill connects in "
            << seconds << " s";
        EXPECT_EQ(m.sum("ringlb_backend_pool_idle", r), 0);
        EXPECT_GT(m.sum("ringlb_backend_pool_hits_total", s), 0)
            << m.describe("ringlb_backend_pool_hits_total");
    }

    expect_fds_back_to_baseline(proxy, spec.admin_port, baseline);
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(UpstreamPoolTest, RefusingAndSlowBackendsWithoutPool) {
    run_refusing_and_slow(engine(), "");
}

TEST_P(UpstreamPoolTest, RefusingAndSlowBackendsWithPool) {
    run_refusing_and_slow(engine(), "{ warm = 2 }");
}

INSTANTIATE_TEST_SUITE_P(Engines, UpstreamPoolTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
