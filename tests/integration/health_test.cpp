// Active health checks (proxy/health): a backend that stops leaves rotation within fall x
// interval + timeout and comes back within rise x interval; a wrong reply to send/expect takes a
// backend down with the reason in the log and the metrics; every shard hears every verdict; with
// every backend down the cluster tries anyway or refuses, as when_all_down says.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr unsigned kWorkers = 2;

// Which backend a new client reaches: each backend greets with its letter.
std::string landed(uint16_t port) {
    ClientSession c;
    if (!c.connect(port)) return "connect: " + c.error();
    std::string got;
    if (!c.receive(1, &got, 2000ms)) return "<closed>";
    return got;
}

std::string post(uint16_t port, const std::string& path) {
    ClientSession client;
    if (!client.connect(port)) return "connect: " + client.error();
    if (!client.send(
            "POST " + path +
            " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
        return "send: " + client.error();
    std::string data;
    client.wait_for_close(15000ms, &data);
    return data;
}

// Polls ringlb_backend_up{backend} until it equals `up`; the time it took, or nullopt.
std::optional<Millis> wait_backend_up(uint16_t admin_port, const std::string& backend, bool up,
                                      Millis timeout, std::string* last) {
    auto start = Clock::now();
    if (!wait_for_metric(
            admin_port, "ringlb_backend_up", {{"backend", backend}},
            [up](double v) { return v == (up ? 1 : 0); }, timeout, last))
        return std::nullopt;
    return std::chrono::duration_cast<Millis>(Clock::now() - start);
}

::testing::AssertionResult every_shard_holds_down(uint16_t admin_port, double down) {
    for (unsigned s = 0; s < kWorkers; ++s) {
        std::string last;
        if (!wait_for_metric(
                admin_port, "ringlb_backends_down", {{"shard", std::to_string(s)}},
                [down](double v) { return v == down; }, 3000ms, &last))
            return ::testing::AssertionFailure()
                   << "shard " << s << " does not hold " << down << " backends down: " << last;
    }
    return ::testing::AssertionSuccess();
}

class HealthTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HealthTest, StoppedBackendLeavesRotationAndComesBack) {
    BackendProcess a;
    auto b = std::make_unique<BackendProcess>();
    BackendOptions options;
    options.greeting = "A";
    ASSERT_TRUE(a.start(options));
    options.greeting = "B";
    ASSERT_TRUE(b->start(options));
    const std::string b_address = b->address();
    const uint16_t b_port = b->port();

    // retries = 0: a client sent to a dead backend would fail, so "every client lands on A"
    // proves that none was sent to B.
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.workers = kWorkers;
    spec.backends = {a.address(), b_address};
    spec.cluster_extra =
        "retries = 0\n"
        "health = { interval = \"200ms\", timeout = \"100ms\", rise = 2, fall = 2, "
        "jitter = \"0%\" }\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), GetParam());
    std::string last;
    ASSERT_TRUE(wait_for_metric(spec.admin_port, "ringlb_health_checks_total",
                                {{"backend", b_address}, {"result", "ok"}}, 1, 3000ms, &last))
        << last;
    ASSERT_TRUE(every_shard_holds_down(spec.admin_port, 0));

    b->kill();
    b.reset();
    // fall x interval + timeout = 500 ms; the scrape's polling and a loaded machine add some.
    auto down_after = wait_backend_up(spec.admin_port, b_address, false, 5000ms, &last);
    ASSERT_TRUE(down_after) << last << "\n" << proxy.log_tail();
    std::cout << "[ health ] " << GetParam() << ": B marked down " << down_after->count()
              << " ms after it stopped (fall x interval + timeout = 500 ms)\n";
    EXPECT_LE(down_after->count(), 1500) << proxy.log_tail();
    EXPECT_TRUE(every_shard_holds_down(spec.admin_port, 1));
    EXPECT_TRUE(
        proxy.wait_for_log("health: backend " + b_address + " of cluster app is down: ", 2000ms))
        << proxy.log_tail();

    for (int i = 0; i < 40; ++i) ASSERT_EQ(landed(spec.listen_port), "A") << "client " << i;
    auto json = http_request(spec.admin_port, "/backends");
    ASSERT_TRUE(json);
    EXPECT_NE(json->body.find("\"state\": \"down\""), std::string::npos) << json->body;
    EXPECT_NE(json->body.find("\"result\": \"refused\""), std::string::npos) << json->body;
    auto ready = http_request(spec.admin_port, "/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200) << ready->body;

    // Back on the same port: up after rise passes, and new clients reach it again.
    b = std::make_unique<BackendProcess>();
    options.port = b_port;
    ASSERT_TRUE(b->start(options));
    auto up_after = wait_backend_up(spec.admin_port, b_address, true, 5000ms, &last);
    ASSERT_TRUE(up_after) << last << "\n" << proxy.log_tail();
    std::cout << "[ health ] " << GetParam() << ": B up again " << up_after->count()
              << " ms after it restarted (rise x interval = 400 ms)\n";
    EXPECT_LE(up_after->count(), 1500) << proxy.log_tail();
    EXPECT_TRUE(every_shard_holds_down(spec.admin_port, 0));
    int on_b = 0;
    for (int i = 0; i < 20; ++i) {
        std::string got = landed(spec.listen_port);
        ASSERT_TRUE(got == "A" || got == "B") << got;
        on_b += got == "B" ? 1 : 0;
    }
    EXPECT_GE(on_b, 5);

    auto metrics = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->sum("ringlb_health_changes_total", {{"backend", b_address}, {"to", "down"}}),
              1);
    EXPECT_EQ(metrics->sum("ringlb_health_changes_total", {{"backend", b_address}, {"to", "up"}}),
              1);
    EXPECT_EQ(metrics->sum("ringlb_health_changes_total", {{"backend", a.address()}}), 0);
    EXPECT_GT(metrics->sum("ringlb_health_check_duration_seconds_count", {{"cluster", "app"}}), 4);
    auto text = http_request(spec.admin_port, "/metrics");
    ASSERT_TRUE(text);
    EXPECT_TRUE(promtool_check(text->body));
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(HealthTest, WrongReplyTakesTheBackendDownWithTheReason) {
    // Both echo what they receive; B greets first, so its reply to "ping" starts "NOPE".
    BackendProcess a;
    BackendProcess b;
    ASSERT_TRUE(a.start(BackendOptions{}));
    BackendOptions nope;
    nope.greeting = "NOPE";
    ASSERT_TRUE(b.start(nope));
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.workers = kWorkers;
    spec.backends = {a.address(), b.address()};
    spec.cluster_extra =
        "health = { interval = \"200ms\", timeout = \"200ms\", send_hex = \"70696e670a\", "
        "expect = \"ping\\n\" }\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), GetParam());
    std::string last;
    ASSERT_TRUE(wait_backend_up(spec.admin_port, b.address(), false, 3000ms, &last)) << last;
    EXPECT_TRUE(
        proxy.wait_for_log("health: backend " + b.address() +
                               " of cluster app is down: wrong_reply: got \"NOPEping\\x0a\","
                               " expected \"ping\\x0a\"",
                           2000ms))
        << proxy.log_tail();
    ASSERT_TRUE(wait_for_metric(spec.admin_port, "ringlb_health_checks_total",
                                {{"backend", a.address()}, {"result", "ok"}}, 3, 3000ms, &last))
        << last;
    auto metrics = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(metrics);
    EXPECT_GE(metrics->sum("ringlb_health_checks_total",
                           {{"backend", b.address()}, {"result", "wrong_reply"}}),
              1);
    EXPECT_EQ(metrics->sum("ringlb_health_checks_total",
                           {{"backend", a.address()}, {"result", "wrong_reply"}}),
              0);
    EXPECT_EQ(metrics->sum("ringlb_backend_up", {{"backend", a.address()}}), 1);
    // Only A takes clients, byte-exact.
    RunSummary summary = run_concurrent(spec.listen_port, 8,
                                        ExchangeSpec{ExchangeKind::kEcho, 65536, 65536, 3, false});
    EXPECT_TRUE(summary.ok()) << summary.describe();
    EXPECT_TRUE(every_shard_holds_down(spec.admin_port, 1));
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(HealthTest, EveryBackendDownTriesAnywayOrRefusesAsConfigured) {
    // The checks go to a port nobody listens on, so both backends are down while they serve.
    BackendProcess a;
    BackendProcess b;
    BackendOptions options;
    options.greeting = "A";
    ASSERT_TRUE(a.start(options));
    options.greeting = "B";
    ASSERT_TRUE(b.start(options));
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.workers = kWorkers;
    spec.backends = {a.address(), b.address()};
    const std::string health = "health = { interval = \"200ms\", timeout = \"100ms\", port = " +
                               std::to_string(free_port()) + " }\n";
    spec.cluster_extra = health;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), GetParam());
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_backend_up", {}, [](double v) { return v == 0; }, 3000ms, &last))
        << last;
    ASSERT_TRUE(every_shard_holds_down(spec.admin_port, 2));
    auto ready = http_request(spec.admin_port, "/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503);
    EXPECT_EQ(ready->body,
              "not ready: cluster app has no usable backend (2 down by health checks)\n");

    // try_anyway (the default): served.
    for (int i = 0; i < 10; ++i) {
        std::string got = landed(spec.listen_port);
        EXPECT_TRUE(got == "A" || got == "B") << got;
    }
    auto metrics = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->sum("ringlb_cluster_all_down_total", {{"cluster", "app"}}), 10);

    // fail: refused, counted as no_backend.
    spec.cluster_extra = health + "when_all_down = \"fail\"\n";
    write_file(proxy.config_path(), make_config(spec));
    std::string reply = post(spec.admin_port, "/reload");
    ASSERT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
    // The checks of unchanged backends keep their state across the reload.
    EXPECT_TRUE(every_shard_holds_down(spec.admin_port, 2));
    for (int i = 0; i < 5; ++i) EXPECT_EQ(landed(spec.listen_port), "<closed>");
    metrics = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->sum("ringlb_cluster_all_down_total", {{"cluster", "app"}}), 15);
    EXPECT_EQ(metrics->sum("ringlb_cluster_no_backend_total", {{"cluster", "app"}}), 5);
    EXPECT_EQ(proxy.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, HealthTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
