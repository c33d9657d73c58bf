// Self-tests of the integration-test kit: the /metrics parser and scraper, the ringlb-echo
// options the upstream tests rely on (greeting, idle close, accept delay, backlog, peer mode,
// connection log), and the socket inspection helpers (TIME_WAIT, options of another process's
// sockets, ss). Each helper is exercised for real, so a broken helper fails here rather than
// silently weakening the tests built on it.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

// Captured from build/dev/ringlb (engine epoll, 2 workers, [admin]) after one echo exchange.
constexpr std::string_view kRealMetrics = R"metrics(# HELP ringlb_build_info ringlb version.
# TYPE ringlb_build_info gauge
ringlb_build_info{version="0.1.0"} 1
# HELP ringlb_engine_info Event engine the shards run on.
# TYPE ringlb_engine_info gauge
ringlb_engine_info{engine="epoll"} 1
# HELP ringlb_accepted_total Client connections accepted.
# TYPE ringlb_accepted_total counter
ringlb_accepted_total{shard="0"} 1
ringlb_accepted_total{shard="1"} 0
# HELP ringlb_active Proxied sessions currently open.
# TYPE ringlb_active gauge
ringlb_active{shard="0"} 0
ringlb_active{shard="1"} 0
# HELP ringlb_closed_total Sessions finished.
# TYPE ringlb_closed_total counter
ringlb_closed_total{shard="0"} 1
ringlb_closed_total{shard="1"} 0
# HELP ringlb_bytes_in_total Bytes forwarded from clients to upstreams.
# TYPE ringlb_bytes_in_total counter
ringlb_bytes_in_total{shard="0"} 3
ringlb_bytes_in_total{shard="1"} 0
# HELP ringlb_bytes_out_total Bytes forwarded from upstreams to clients.
# TYPE ringlb_bytes_out_total counter
ringlb_bytes_out_total{shard="0"} 3
ringlb_bytes_out_total{shard="1"} 0
# HELP ringlb_connect_failures_total Upstream connect attempts that failed or timed out.
# TYPE ringlb_connect_failures_total counter
ringlb_connect_failures_total{shard="0"} 0
ringlb_connect_failures_total{shard="1"} 0
# HELP ringlb_connect_retries_total Connect attempts retried on another backend.
# TYPE ringlb_connect_retries_total counter
ringlb_connect_retries_total{shard="0"} 0
ringlb_connect_retries_total{shard="1"} 0
# HELP ringlb_no_backend_total Sessions closed because no backend could be connected.
# TYPE ringlb_no_backend_total counter
ringlb_no_backend_total{shard="0"} 0
ringlb_no_backend_total{shard="1"} 0
# HELP ringlb_emfile_pauses_total Times accepting paused because the process ran out of fds.
# TYPE ringlb_emfile_pauses_total counter
ringlb_emfile_pauses_total{shard="0"} 0
ringlb_emfile_pauses_total{shard="1"} 0
# HELP ringlb_accept_errors_total Accept errors other than running out of fds.
# TYPE ringlb_accept_errors_total counter
ringlb_accept_errors_total{shard="0"} 0
ringlb_accept_errors_total{shard="1"} 0
# HELP ringlb_forward_errors_total Sessions ended by a socket error (reset, broken pipe).
# TYPE ringlb_forward_errors_total counter
ringlb_forward_errors_total{shard="0"} 0
ringlb_forward_errors_total{shard="1"} 0
# HELP ringlb_splice_directions_total Session directions started with splice forwarding.
# TYPE ringlb_splice_directions_total counter
ringlb_splice_directions_total{shard="0"} 0
ringlb_splice_directions_total{shard="1"} 0
# HELP ringlb_buffered_directions_total Session directions started with buffered forwarding.
# TYPE ringlb_buffered_directions_total counter
ringlb_buffered_directions_total{shard="0"} 2
ringlb_buffered_directions_total{shard="1"} 0
# HELP ringlb_pipe_pool_exhausted_total Splice directions that fell back to buffered: pool empty.
# TYPE ringlb_pipe_pool_exhausted_total counter
ringlb_pipe_pool_exhausted_total{shard="0"} 0
ringlb_pipe_pool_exhausted_total{shard="1"} 0
# HELP ringlb_buffer_starved_total Receives that waited because every shard buffer was in use.
# TYPE ringlb_buffer_starved_total counter
ringlb_buffer_starved_total{shard="0"} 0
ringlb_buffer_starved_total{shard="1"} 0
)metrics";

std::string local_address_of(int fd) {
    return common::local_address(fd).to_string();
}

// ---------------------------------------------------------------------------------------------
// Metrics::parse

TEST(MetricsParseTest, ReadsRealRinglbOutput) {
    std::string error;
    auto metrics = Metrics::parse(kRealMetrics, &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(metrics->samples().size(), 32u);
    EXPECT_EQ(metrics->sum("ringlb_accepted_total"), 1);
    EXPECT_EQ(metrics->sum("ringlb_accepted_total", {{"shard", "0"}}), 1);
    EXPECT_EQ(metrics->sum("ringlb_accepted_total", {{"shard", "1"}}), 0);
    EXPECT_EQ(metrics->count("ringlb_accepted_total"), 2u);
    EXPECT_EQ(metrics->count("ringlb_accepted_total", {{"shard", "7"}}), 0u);
    EXPECT_EQ(metrics->sum("ringlb_bytes_in_total"), 3);
    EXPECT_EQ(metrics->sum("ringlb_buffered_directions_total"), 2);
    EXPECT_EQ(metrics->sum("ringlb_engine_info", {{"engine", "epoll"}}), 1);
    EXPECT_EQ(metrics->sum("ringlb_engine_info", {{"engine", "io_uring"}}), 0);
    EXPECT_EQ(metrics->sum("ringlb_build_info", {{"version", project_version()}}), 1);
    EXPECT_TRUE(metrics->has("ringlb_active"));
    // Names match exactly: no prefix matching, and an unknown name sums to 0.
    EXPECT_FALSE(metrics->has("ringlb_accepted"));
    EXPECT_FALSE(metrics->has("ringlb_no_such_metric"));
    EXPECT_EQ(metrics->sum("ringlb_no_such_metric"), 0);
    EXPECT_EQ(metrics->type("ringlb_accepted_total"), "counter");
    EXPECT_EQ(metrics->type("ringlb_active"), "gauge");
    EXPECT_EQ(metrics->help("ringlb_accepted_total"), "Client connections accepted.");
    EXPECT_EQ(metrics->describe("ringlb_accepted_total", {{"shard", "0"}}),
              "ringlb_accepted_total{shard=\"0\"} 1\n");
}

TEST(MetricsParseTest, LabelValuesWithEscapesAndOddSpacing) {
    std::string error;
    auto metrics = Metrics::parse(
        "# a plain comment, not HELP or TYPE\n"
        "\n"
        "requests_total{path=\"/a\\\"b\\\\c\\nd\",method=\"GET\"} 3\n"
        "requests_total{ method = \"POST\" , path=\"x,y}z\" , } 4 1700000000000\n"
        "requests_total{} 5\n"
        "requests_total\t6\n"
        "up 1\r\n"
        "# HELP escaped Help with a \\\\ backslash and\\na newline.\n",
        &error);
    ASSERT_TRUE(metrics) << error;
    ASSERT_EQ(metrics->samples().size(), 5u);
    const MetricSample& first = metrics->samples()[0];
    EXPECT_EQ(first.labels.at("path"), "/a\"b\\c\nd");
    EXPECT_EQ(first.labels.at("method"), "GET");
    EXPECT_EQ(metrics->samples()[1].labels.at("path"), "x,y}z");
    EXPECT_EQ(metrics->samples()[1].labels.at("method"), "POST");
    EXPECT_EQ(metrics->sum("requests_total"), 18);
    EXPECT_EQ(metrics->sum("requests_total", {{"method", "GET"}}), 3);
    EXPECT_EQ(metrics->sum("requests_total", {{"path", "/a\"b\\c\nd"}, {"method", "GET"}}), 3);
    EXPECT_EQ(metrics->sum("requests_total", {{"path", "/a\"b\\c\nd"}, {"method", "POST"}}), 0);
    EXPECT_EQ(metrics->sum("up"), 1);
    EXPECT_EQ(metrics->help("escaped"), "Help with a \\ backslash and\na newline.");
    // Printing escapes again, so a printed sample parses back to the same sample.
    std::string printed = to_string(first);
    EXPECT_EQ(printed, "requests_total{method=\"GET\",path=\"/a\\\"b\\\\c\\nd\"} 3");
    auto again = Metrics::parse(printed, &error);
    ASSERT_TRUE(again) << error;
    ASSERT_EQ(again->samples().size(), 1u);
    EXPECT_EQ(again->samples()[0].labels, first.labels);
}

TEST(MetricsParseTest, HistogramSeriesAndSpecialValues) {
    std::string error;
    auto metrics = Metrics::parse(
        "# HELP connect_seconds Upstream connect time.\n"
        "# TYPE connect_seconds histogram\n"
        "connect_seconds_bucket{shard=\"0\",le=\"0.001\"} 4\n"
        "connect_seconds_bucket{shard=\"0\",le=\"0.01\"} 9\n"
        "connect_seconds_bucket{shard=\"0\",le=\"+Inf\"} 10\n"
        "connect_seconds_sum{shard=\"0\"} 0.0375\n"
        "connect_seconds_count{shard=\"0\"} 10\n"
        "connect_seconds_bucket{shard=\"1\",le=\"+Inf\"} 2\n"
        "connect_seconds_count{shard=\"1\"} 2\n"
        "special{v=\"a\"} +Inf\n"
        "special{v=\"b\"} -Inf\n"
        "special{v=\"c\"} NaN\n"
        "special{v=\"d\"} 1.5e3\n"
        "special{v=\"e\"} -0.25\n",
        &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(metrics->type("connect_seconds"), "histogram");
    EXPECT_EQ(metrics->sum("connect_seconds_bucket", {{"le", "+Inf"}}), 12);
    EXPECT_EQ(metrics->sum("connect_seconds_count"), 12);
    EXPECT_DOUBLE_EQ(metrics->sum("connect_seconds_sum"), 0.0375);
    EXPECT_EQ(metrics->count("connect_seconds_bucket", {{"shard", "0"}}), 3u);
    EXPECT_FALSE(metrics->has("connect_seconds"));  // only its series are samples
    EXPECT_TRUE(std::isinf(metrics->sum("special", {{"v", "a"}})));
    EXPECT_GT(metrics->sum("special", {{"v", "a"}}), 0);
    EXPECT_LT(metrics->sum("special", {{"v", "b"}}), 0);
    EXPECT_TRUE(std::isnan(metrics->sum("special", {{"v", "c"}})));
    EXPECT_EQ(metrics->sum("special", {{"v", "d"}}), 1500);
    EXPECT_EQ(metrics->sum("special", {{"v", "e"}}), -0.25);
}

TEST(MetricsParseTest, MalformedLinesAreRejectedWithTheLineNumber) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"ok 1\nm{a=\"b} 1\n", "line 2: unterminated label value"},
        {"m{a=b} 1", "expected '\"'"},
        {"m{a=\"1\",a=\"2\"} 1", "duplicate label a"},
        {"m{a=\"\\q\"} 1", "invalid escape"},
        {"m{a=\"1\" b=\"2\"} 1", "expected ',' or '}'"},
        {"m abc", "invalid value"},
        {"m", "invalid value"},
        {"m 1 2 3", "unexpected text after the timestamp"},
        {"m 1 12x", "invalid timestamp"},
        {"9m 1", "expected a metric name"},
        {"m-x 1", "invalid metric name"},
        {"# TYPE m bogus", "unknown metric type"},
        {"# TYPE m counter\n# TYPE m gauge", "line 2: second # TYPE"},
    };
    for (const auto& [text, reason] : cases) {
        std::string error;
        EXPECT_FALSE(Metrics::parse(text, &error)) << text;
        EXPECT_NE(error.find(reason), std::string::npos) << text << " -> " << error;
    }
}

// ---------------------------------------------------------------------------------------------
// Config and scraping against a real ringlb

TEST(MakeConfigTest, DefaultsStillLoadAndExtrasLandInTheirTables) {
    ProxyConfigSpec plain;
    plain.backends = {"127.0.0.1:9"};
    std::string text = make_config(plain);
    EXPECT_NE(plain.admin_port, 0);
    EXPECT_NE(plain.admin_port, plain.listen_port);
    EXPECT_NE(text.find("[admin]\nbind = \"127.0.0.1:" + std::to_string(plain.admin_port) + "\""),
              std::string::npos)
        << text;
    // Tests stop the proxy with sessions open: no drain to wait out, unless a test sets its own.
    EXPECT_NE(text.find("\n" + std::string(kQuickStop)), std::string::npos) << text;
    CommandResult check = run_check(text);
    EXPECT_EQ(check.exit_code, 0) << check.output;

    ProxyConfigSpec drain;
    drain.backends = {"127.0.0.1:9"};
    drain.runtime_extra = "drain_timeout = \"3s\"";
    std::string drain_text = make_config(drain);
    EXPECT_EQ(drain_text.find("drain_timeout = \"0s\""), std::string::npos) << drain_text;
    EXPECT_NE(drain_text.find("drain_spread = \"0s\""), std::string::npos) << drain_text;
    check = run_check(drain_text);
    EXPECT_EQ(check.exit_code, 0) << drain_text << check.output;

    ProxyConfigSpec no_admin;
    no_admin.admin = false;
    no_admin.backends = {"127.0.0.1:9"};
    EXPECT_EQ(make_config(no_admin).find("[admin]"), std::string::npos);
    EXPECT_EQ(no_admin.admin_port, 0);

    ProxyConfigSpec extras;
    extras.backends = {"127.0.0.1:9", "127.0.0.1:10"};
    extras.runtime_extra = "pipe_pool = 4";
    extras.listener_extra = "backlog = 128\n";
    extras.backend_extra = {"", "weight = 3"};
    text = make_config(extras);
    EXPECT_NE(
        text.find("{ address = \"127.0.0.1:9\" }, { address = \"127.0.0.1:10\", weight = 3 }"),
        std::string::npos)
        << text;
    check = run_check(text);
    EXPECT_EQ(check.exit_code, 0) << text << check.output;

    // An unknown key is reported with its table's path, which shows where each extra landed.
    auto placed = [](void (*set)(ProxyConfigSpec&), const std::string& path) {
        ProxyConfigSpec spec;
        spec.backends = {"127.0.0.1:9"};
        set(spec);
        CommandResult result = run_check(make_config(spec));
        EXPECT_NE(result.exit_code, 0) << result.output;
        EXPECT_NE(result.output.find(path), std::string::npos) << path << ":\n" << result.output;
    };
    placed([](ProxyConfigSpec& s) { s.runtime_extra = "testkit_probe = 1"; },
           "runtime.testkit_probe");
    placed([](ProxyConfigSpec& s) { s.listener_extra = "testkit_probe = 1"; },
           "listener[0].testkit_probe");
    placed([](ProxyConfigSpec& s) { s.cluster_extra = "testkit_probe = 1"; },
           "cluster[0].testkit_probe");
    placed([](ProxyConfigSpec& s) { s.backend_extra = {"testkit_probe = 1"}; },
           "cluster[0].backends[0].testkit_probe");
}

TEST(ScrapeMetricsTest, CountersFromARealRinglbGoUpAfterAnExchange) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = "epoll";
    spec.workers = 2;
    spec.backends = {backend.address()};
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), spec.engine);

    std::string error;
    auto before = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(before) << error;
    EXPECT_EQ(before->sum("ringlb_accepted_total"), 0);
    EXPECT_EQ(before->count("ringlb_accepted_total"), 2u);  // one sample per shard
    EXPECT_EQ(before->sum("ringlb_engine_info", {{"engine", "epoll"}}), 1);

    ExchangeResult r = echo_exchange(spec.listen_port, 12345);
    ASSERT_TRUE(r.ok) << r.error;

    std::string last;
    EXPECT_TRUE(wait_for_metric(spec.admin_port, "ringlb_accepted_total", {}, 1, 5s, &last))
        << last;
    EXPECT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_closed_total", {}, [](double v) { return v == 1; }, 5s, &last))
        << last;
    auto after = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(after) << error;
    EXPECT_EQ(after->sum("ringlb_accepted_total"), 1);
    EXPECT_EQ(after->sum("ringlb_bytes_in_total"), 12345);
    EXPECT_EQ(after->sum("ringlb_bytes_out_total"), 12345);

    // A condition that never holds: false once the timeout passes, with the last value.
    auto start = Clock::now();
    EXPECT_FALSE(wait_for_metric(spec.admin_port, "ringlb_accepted_total", {}, 2, 300ms, &last));
    EXPECT_GE(Clock::now() - start, 300ms);
    EXPECT_NE(last.find("= 1 over:"), std::string::npos) << last;
    EXPECT_NE(last.find("ringlb_accepted_total{shard="), std::string::npos) << last;

    auto page = http_request(spec.admin_port, "/nowhere");
    ASSERT_TRUE(page);
    EXPECT_EQ(page->status, 404);
    EXPECT_FALSE(http_get(spec.admin_port, "/nowhere", 2s, &error));
    EXPECT_NE(error.find("404"), std::string::npos) << error;
    EXPECT_EQ(proxy.stop(), 0);
}

TEST(ScrapeMetricsTest, NothingListeningIsAnErrorNotAZero) {
    std::string error;
    EXPECT_FALSE(scrape_metrics(free_port(), &error, 1s));
    EXPECT_NE(error.find("connect"), std::string::npos) << error;
    std::string last;
    EXPECT_FALSE(wait_for_metric(free_port(), "x", {}, 0, 100ms, &last));
    EXPECT_NE(last.find("connect"), std::string::npos) << last;
}

// ---------------------------------------------------------------------------------------------
// ringlb-echo options

TEST(EchoBackendTest, GreetingComesFirstByteExact) {
    BackendOptions options;
    options.greeting = std::string("220 hi\r\n\x01\\x\0end", 15);
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    ClientSession client;
    ASSERT_TRUE(client.connect(backend.port())) << client.error();
    ASSERT_TRUE(client.expect(options.greeting)) << client.error();
    ASSERT_TRUE(client.send("ping")) << client.error();
    ASSERT_TRUE(client.expect("ping")) << client.error();
    client.shutdown_write();
    std::string rest;
    CloseResult closed = client.wait_for_close(5s, &rest);
    EXPECT_EQ(closed.kind, CloseKind::kEof);
    EXPECT_EQ(rest, "");
}

TEST(EchoBackendTest, GreetingThenHashProtocol) {
    BackendOptions options;
    options.mode = EchoMode::kHash;
    options.greeting = "READY\n";
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    ClientSession client;
    ASSERT_TRUE(client.connect(backend.port())) << client.error();
    // The greeting arrives before the client has sent anything.
    ASSERT_TRUE(client.expect("READY\n")) << client.error();
    uint8_t header[tools::kHashHeaderSize];
    tools::put_be64(header, 1000);
    std::string payload = "some payload";
    ASSERT_TRUE(client.send(std::string_view(reinterpret_cast<char*>(header), sizeof(header))));
    ASSERT_TRUE(client.send(payload));
    client.shutdown_write();
    std::string reply;
    CloseResult closed = client.wait_for_close(5s, &reply);
    EXPECT_EQ(closed.kind, CloseKind::kEof);
    ASSERT_EQ(reply.size(), 1000 + tools::kHashTrailerSize);
    const auto* bytes = reinterpret_cast<const uint8_t*>(reply.data());
    EXPECT_EQ(tools::pattern_mismatch(tools::kBackendPatternSeed, 0, bytes, 1000), 1000u);
    tools::Sha256 sha;
    sha.update(payload.data(), payload.size());
    auto digest = sha.finish();
    EXPECT_EQ(std::memcmp(bytes + 1000, digest.data(), tools::kSha256Size), 0);
    EXPECT_EQ(tools::get_be64(bytes + 1000 + tools::kSha256Size), payload.size());
}

TEST(EchoBackendTest, IdleCloseClosesSilentConnectionsOnTime) {
    BackendOptions options;
    options.idle_close = 200ms;
    options.log_connections = true;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));

    ClientSession client;
    ASSERT_TRUE(client.connect(backend.port())) << client.error();
    EXPECT_TRUE(client.stays_open(150ms)) << client.error();
    CloseResult closed = client.wait_for_close(2s);
    EXPECT_EQ(closed.kind, CloseKind::kEof);
    Millis after = ClientSession::between(client.connected_at(), closed);
    EXPECT_GE(after, 150ms);
    EXPECT_LE(after, 350ms);

    // Many at once: every one closes on time (one timer, not one per connection).
    std::vector<common::Fd> fds;
    std::vector<int> raw;
    auto start = Clock::now();
    for (int i = 0; i < 200; ++i) {
        std::string error;
        fds.push_back(connect_to(backend.port(), 2s, &error));
        ASSERT_TRUE(fds.back()) << error;
        raw.push_back(fds.back().get());
    }
    Millis connecting = std::chrono::duration_cast<Millis>(Clock::now() - start);
    std::vector<CloseResult> all = wait_for_close_all(raw, 3s);
    for (size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(all[i].kind, CloseKind::kEof) << i;
        Millis since_start = std::chrono::duration_cast<Millis>(all[i].at - start);
        EXPECT_GE(since_start, 150ms) << i;
        EXPECT_LE(since_start, 350ms + connecting) << i;
    }
    // With log_connections every idle close is logged too.
    for (int i = 0; i < 50 && backend.idle_closes() < 201; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(backend.idle_closes(), 201u) << backend.log();
}

TEST(EchoBackendTest, IdleCloseCountsFromTheLastReceivedByte) {
    BackendOptions options;
    options.idle_close = 200ms;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    ClientSession active;
    ASSERT_TRUE(active.connect(backend.port())) << active.error();
    // Accepted after `active`, so a deadline kept in accept order would wrongly wait behind it.
    ClientSession silent;
    ASSERT_TRUE(silent.connect(backend.port())) << silent.error();
    std::optional<CloseResult> silent_closed;
    // A byte every 100 ms keeps `active` open well past 200 ms; `silent` closes meanwhile.
    for (int i = 0; i < 6; ++i) {
        if (!silent_closed) {
            CloseResult r = silent.wait_for_close(100ms);
            if (r.kind != CloseKind::kTimeout) silent_closed = r;
        } else {
            std::this_thread::sleep_for(100ms);
        }
        ASSERT_TRUE(active.send("x")) << "send " << i << ": " << active.error();
        ASSERT_TRUE(active.expect("x")) << "echo " << i << ": " << active.error();
    }
    ASSERT_TRUE(silent_closed) << "the silent connection was still open after 600 ms";
    EXPECT_EQ(silent_closed->kind, CloseKind::kEof);
    Millis silent_after = ClientSession::between(silent.connected_at(), *silent_closed);
    EXPECT_GE(silent_after, 150ms);
    EXPECT_LE(silent_after, 350ms);

    CloseResult closed = active.wait_for_close(2s);
    EXPECT_EQ(closed.kind, CloseKind::kEof);
    EXPECT_GE(ClientSession::between(active.connected_at(), closed), 500ms);
    Millis after_last = ClientSession::between(active.last_send_at(), closed);
    EXPECT_GE(after_last, 150ms);
    EXPECT_LE(after_last, 350ms);
}

TEST(EchoBackendTest, AcceptDelayHoldsEachConnectionInTheQueue) {
    BackendOptions options;
    options.accept_delay = 300ms;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));

    // The kernel completes the handshakes at once; the backend takes them one per delay.
    ClientSession first;
    ClientSession second;
    auto start = Clock::now();
    ASSERT_TRUE(first.connect(backend.port(), 1s)) << first.error();
    ASSERT_TRUE(second.connect(backend.port(), 1s)) << second.error();
    EXPECT_LT(Clock::now() - start, 200ms);
    ASSERT_TRUE(first.send("one"));
    ASSERT_TRUE(second.send("two"));
    ASSERT_TRUE(first.expect("one", 3s)) << first.error();
    Millis first_echo = std::chrono::duration_cast<Millis>(first.last_receive_at() - start);
    ASSERT_TRUE(second.expect("two", 3s)) << second.error();
    Millis second_echo = std::chrono::duration_cast<Millis>(second.last_receive_at() - start);
    EXPECT_GE(first_echo, 250ms);
    EXPECT_LE(first_echo, 600ms);
    EXPECT_GE(second_echo, 550ms);
    EXPECT_LE(second_echo, 1200ms);
}

TEST(EchoBackendTest, BacklogLimitsTheAcceptQueue) {
    BackendOptions options;
    options.accept_delay = 5000ms;  // nothing leaves the queue during the test
    options.backlog = 1;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    // A backlog of 1 queues two connections; then the kernel drops SYNs and connect() hangs.
    std::vector<common::Fd> held;
    int hung = 0;
    for (int i = 0; i < 5; ++i) {
        std::string error;
        common::Fd fd = connect_to(backend.port(), 300ms, &error);
        if (fd)
            held.push_back(std::move(fd));
        else
            ++hung;
    }
    EXPECT_LE(held.size(), 2u);
    EXPECT_GE(held.size(), 1u);
    EXPECT_GE(hung, 3);
}

TEST(EchoBackendTest, PeerModeReportsTheSourceAddress) {
    BackendOptions options;
    options.mode = EchoMode::kPeer;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    ClientSession client;
    ASSERT_TRUE(client.connect(backend.port())) << client.error();
    ASSERT_TRUE(client.expect(local_address_of(client.fd()) + "\n")) << client.error();
    ASSERT_TRUE(client.send("after the address, echo"));
    ASSERT_TRUE(client.expect("after the address, echo")) << client.error();
    client.shutdown_write();
    EXPECT_EQ(client.wait_for_close(5s).kind, CloseKind::kEof);

    // From another loopback address, as ringlb's source-address pools will connect.
    common::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x7f000002);  // 127.0.0.2
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof(from)), 0)
        << std::strerror(errno);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(backend.port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0)
        << std::strerror(errno);
    std::string expected = local_address_of(fd.get()) + "\n";
    EXPECT_TRUE(expected.starts_with("127.0.0.2:")) << expected;
    std::string reply;
    ::shutdown(fd.get(), SHUT_WR);
    EXPECT_EQ(wait_for_close(fd.get(), 5s, &reply).kind, CloseKind::kEof);
    EXPECT_EQ(reply, expected);
}

TEST(EchoBackendTest, PeerModeWithAGreetingSendsTheGreetingFirst) {
    BackendOptions options;
    options.mode = EchoMode::kPeer;
    options.greeting = "hello\n";
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    ClientSession client;
    ASSERT_TRUE(client.connect(backend.port())) << client.error();
    ASSERT_TRUE(client.expect("hello\n" + local_address_of(client.fd()) + "\n")) << client.error();
}

TEST(EchoBackendTest, LogConnectionsNamesEveryPeer) {
    BackendOptions options;
    options.log_connections = true;
    options.threads = 2;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(options));
    std::set<std::string> expected;
    for (int i = 0; i < 5; ++i) {
        ClientSession client;
        ASSERT_TRUE(client.connect(backend.port())) << client.error();
        expected.insert(local_address_of(client.fd()));
        // Once the echo comes back the backend has accepted (and logged) the connection.
        ASSERT_TRUE(client.send("x"));
        ASSERT_TRUE(client.expect("x")) << client.error();
    }
    std::vector<std::string> peers = backend.accepted_peers();
    EXPECT_EQ(std::set<std::string>(peers.begin(), peers.end()), expected) << backend.log();
    EXPECT_EQ(peers.size(), 5u);
}

TEST(EchoBackendTest, PlainBackendLogsNoConnections) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    EXPECT_TRUE(echo_exchange(backend.port(), 100).ok);
    EXPECT_TRUE(backend.accepted_peers().empty()) << backend.log();
}

// The slow reader of run_concurrent() (drain tests keep transfers in flight with it): 1 MiB at
// 2 MiB/s takes about half a second, and the bytes still arrive exact.
TEST(RunConcurrentTest, SlowReaderReadsAtTheGivenRate) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ExchangeSpec spec;
    spec.send_bytes = 1024;
    spec.recv_bytes = 1024 * 1024;
    RunOptions options;
    options.recv_bytes_per_second = 2 * 1024 * 1024;
    RunSummary slow = run_concurrent(backend.port(), 2, spec, options);
    EXPECT_TRUE(slow.ok()) << slow.describe();
    EXPECT_GE(slow.elapsed, Millis(480)) << slow.describe();
    EXPECT_LT(slow.elapsed, Millis(3000)) << slow.describe();
    RunSummary fast = run_concurrent(backend.port(), 2, spec);
    EXPECT_TRUE(fast.ok()) << fast.describe();
    EXPECT_LT(fast.elapsed, Millis(400)) << fast.describe();
}

// ---------------------------------------------------------------------------------------------
// Sockets seen from outside

struct LoopbackPair {
    common::Fd listener;
    common::Fd client;
    common::Fd server;
    uint16_t port = 0;
};

LoopbackPair make_pair_on(common::Fd listener) {
    LoopbackPair pair;
    pair.port = common::local_address(listener.get()).port();
    std::string error;
    pair.client = connect_to(pair.port, 2s, &error);
    EXPECT_TRUE(pair.client) << error;
    pair.server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(pair.server) << std::strerror(errno);
    pair.listener = std::move(listener);
    return pair;
}

common::Fd loopback_listener() {
    std::error_code ec;
    auto address = common::parse_address("127.0.0.1:0");
    common::Fd fd = common::listen_tcp(*address, 16, ec);
    EXPECT_FALSE(ec) << ec.message();
    // Blocking accepts keep the test simple.
    int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

// Polls until count() == want (TIME_WAIT appears once both FINs are through).
int settle(const std::function<int()>& count, int want) {
    int now = count();
    for (int i = 0; i < 100 && now != want; ++i) {
        std::this_thread::sleep_for(10ms);
        now = count();
    }
    return now;
}

TEST(SocketInspectionTest, TimeWaitIsCountedOnTheSideThatClosedFirst) {
    common::Fd listener = loopback_listener();
    uint16_t port = common::local_address(listener.get()).port();
    auto connecting_side = [port] { return count_time_wait_between(0, port); };
    auto listening_side = [port] { return count_time_wait_between(port, 0); };
    int connecting_before = connecting_side();
    int listening_before = listening_side();

    // The connecting side closes first: its row (remote = port) goes to TIME_WAIT.
    LoopbackPair a = make_pair_on(std::move(listener));
    std::string client_side = local_address_of(a.client.get());
    a.client.reset();
    EXPECT_EQ(wait_for_close(a.server.get(), 2s).kind, CloseKind::kEof);
    a.server.reset();
    EXPECT_EQ(settle(connecting_side, connecting_before + 1), connecting_before + 1)
        << describe(tcp_table());
    EXPECT_EQ(listening_side(), listening_before);
    EXPECT_EQ(count_time_wait(port), connecting_before + listening_before + 1);
    uint16_t client_port =
        static_cast<uint16_t>(std::atoi(client_side.substr(client_side.rfind(':') + 1).c_str()));
    EXPECT_EQ(count_time_wait_between(client_port, port), 1);

    // The listening side closes first: its row (local = port) goes to TIME_WAIT.
    LoopbackPair b = make_pair_on(std::move(a.listener));
    b.server.reset();
    EXPECT_EQ(wait_for_close(b.client.get(), 2s).kind, CloseKind::kEof);
    b.client.reset();
    EXPECT_EQ(settle(listening_side, listening_before + 1), listening_before + 1)
        << describe(tcp_table());
    EXPECT_EQ(connecting_side(), connecting_before + 1);

    // An RST close (SO_LINGER 0) leaves no TIME_WAIT on either side.
    LoopbackPair c = make_pair_on(std::move(b.listener));
    reset_close(c.client);
    EXPECT_EQ(wait_for_close(c.server.get(), 2s).kind, CloseKind::kReset);
    c.server.reset();
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(connecting_side(), connecting_before + 1);
    EXPECT_EQ(listening_side(), listening_before + 1);
}

TEST(SocketInspectionTest, TcpSocketsOfAProcessMatchItsFds) {
    common::Fd listener = loopback_listener();
    LoopbackPair pair = make_pair_on(std::move(listener));
    std::string client = local_address_of(pair.client.get());
    std::string server = "127.0.0.1:" + std::to_string(pair.port);
    std::vector<TcpEntry> mine = tcp_sockets_of(::getpid());
    auto has = [&](const std::string& local, const std::string& remote, unsigned state) {
        return std::any_of(mine.begin(), mine.end(), [&](const TcpEntry& e) {
            return e.local == local && e.remote == remote && e.state == state;
        });
    };
    EXPECT_TRUE(has(server, "0.0.0.0:0", 10)) << describe(mine);
    EXPECT_TRUE(has(client, server, 1)) << describe(mine);
    EXPECT_TRUE(has(server, client, 1)) << describe(mine);
}

TEST(SocketInspectionTest, SockoptsOfOwnSocketsThroughPidfd) {
    common::Fd listener = loopback_listener();
    LoopbackPair pair = make_pair_on(std::move(listener));
    int one = 1;
    int idle = 17;
    int interval = 3;
    int count = 4;
    unsigned user_timeout = 4321;
    ASSERT_EQ(::setsockopt(pair.client.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)), 0);
    ASSERT_EQ(::setsockopt(pair.client.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)), 0);
    ASSERT_EQ(
        ::setsockopt(pair.client.get(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval)),
        0);
    ASSERT_EQ(::setsockopt(pair.client.get(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)), 0);
    ASSERT_EQ(::setsockopt(pair.client.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
                           sizeof(user_timeout)),
              0);

    std::string error;
    auto opts = sockopts_of(::getpid(), pair.client.get(), &error);
    ASSERT_TRUE(opts) << error;
    EXPECT_TRUE(opts->keepalive);
    EXPECT_EQ(opts->keepidle, 17);
    EXPECT_EQ(opts->keepintvl, 3);
    EXPECT_EQ(opts->keepcnt, 4);
    EXPECT_EQ(opts->user_timeout_ms, 4321u);
    auto plain = sockopts_of(::getpid(), pair.server.get(), &error);
    ASSERT_TRUE(plain) << error;
    EXPECT_FALSE(plain->keepalive);
    EXPECT_EQ(plain->user_timeout_ms, 0u);

    auto sockets = process_tcp_sockets(::getpid(), &error);
    ASSERT_TRUE(sockets) << error;
    std::string client = local_address_of(pair.client.get());
    std::string server = "127.0.0.1:" + std::to_string(pair.port);
    int found = 0;
    for (const ProcessSocket& s : *sockets) {
        if (s.fd == pair.client.get()) {
            ++found;
            EXPECT_EQ(s.local, client);
            EXPECT_EQ(s.peer, server);
            EXPECT_FALSE(s.listening);
            EXPECT_TRUE(s.opts.keepalive);
            EXPECT_EQ(s.opts.keepidle, 17);
        } else if (s.fd == pair.server.get()) {
            ++found;
            EXPECT_EQ(s.local, server);
            EXPECT_EQ(s.peer, client);
            EXPECT_FALSE(s.opts.keepalive);
        } else if (s.fd == pair.listener.get()) {
            ++found;
            EXPECT_TRUE(s.listening);
            EXPECT_EQ(s.peer, "");
        }
    }
    EXPECT_EQ(found, 3);
    EXPECT_FALSE(sockopts_of(::getpid(), 999999, &error));
    EXPECT_NE(error.find("pidfd_getfd"), std::string::npos) << error;
}

TEST(SocketInspectionTest, SocketsOfARunningRinglbWithBothLegs) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = "epoll";
    spec.workers = 1;
    spec.backends = {backend.address()};
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), spec.engine);
    ClientSession client;
    ASSERT_TRUE(client.connect(spec.listen_port)) << client.error();
    ASSERT_TRUE(client.send("hold"));
    ASSERT_TRUE(client.expect("hold")) << client.error();  // both legs are up now

    std::string error;
    auto sockets = process_tcp_sockets(proxy.pid(), &error);
    ASSERT_TRUE(sockets) << error;
    std::string listen = "127.0.0.1:" + std::to_string(spec.listen_port);
    std::string client_address = local_address_of(client.fd());
    bool listener = false;
    bool admin = false;
    bool client_leg = false;
    bool upstream_leg = false;
    std::string seen;
    for (const ProcessSocket& s : *sockets) {
        seen += std::to_string(s.fd) + ": " + s.local + " -> " + s.peer + "\n";
        if (s.listening && s.local == listen) listener = true;
        if (s.listening && s.local == "127.0.0.1:" + std::to_string(spec.admin_port)) admin = true;
        if (s.local == listen && s.peer == client_address) client_leg = true;
        if (s.peer == backend.address()) {
            upstream_leg = true;
            // ringlb sets no keepalive today; this reads the real value either way.
            EXPECT_EQ(s.opts.keepalive, sockopts_of(proxy.pid(), s.fd)->keepalive);
        }
    }
    EXPECT_TRUE(listener) << seen;
    EXPECT_TRUE(admin) << seen;
    EXPECT_TRUE(client_leg) << seen;
    EXPECT_TRUE(upstream_leg) << seen;
    client.shutdown_write();
    EXPECT_EQ(client.wait_for_close(5s).kind, CloseKind::kEof);
    EXPECT_EQ(proxy.stop(), 0);
}

TEST(SsTest, ParsesRecordsOwnersAndTimers) {
    // Shapes printed by iproute2 6.1 `ss -tiepona` (first records) and `ss -tieon state
    // time-wait` (no State column, no owner).
    const std::string text =
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
        "LISTEN 0      4096       127.0.0.1:8080       0.0.0.0:*     "
        "users:((\"ringlb\",pid=41,fd=7),"
        "(\"ringlb\",pid=41,fd=9)) ino:1 sk:a cgroup:/ <->\n"
        "\t cubic cwnd:10\n"
        "ESTAB  0      0          127.0.0.1:55216   127.0.0.1:34217 users:((\"tmux: server\","
        "pid=5817,fd=4)) timer:(keepalive,1min29sec,0) ino:14400 sk:2 cgroup:/ <->\n"
        "\t ts sack bbr wscale:10,10 rto:200\n"
        "ESTAB  0      5      [::ffff:127.0.0.1]:443 [::1]:5000 users:((\"x\",pid=7,fd=12)) "
        "timer:(on,29.512ms,2) ino:3 sk:3\n"
        "0      0          127.0.0.1:50934    127.0.0.1:33137 timer:(timewait,53sec,0) ino:0 sk:4\n"
        "\t\n";
    std::vector<SsSocket> sockets = parse_ss(text);
    ASSERT_EQ(sockets.size(), 4u);
    EXPECT_EQ(sockets[0].state, "LISTEN");
    EXPECT_EQ(sockets[0].local, "127.0.0.1:8080");
    EXPECT_EQ(sockets[0].peer, "0.0.0.0:*");
    ASSERT_EQ(sockets[0].owners.size(), 2u);
    EXPECT_EQ(sockets[0].owners[1], std::make_pair(pid_t{41}, 9));
    EXPECT_EQ(sockets[0].timer, "");
    EXPECT_NE(sockets[0].line.find("cubic"), std::string::npos);

    EXPECT_EQ(sockets[1].state, "ESTAB");
    EXPECT_TRUE(sockets[1].owned_by(5817));
    EXPECT_FALSE(sockets[1].owned_by(41));
    EXPECT_EQ(sockets[1].timer, "keepalive");
    EXPECT_EQ(sockets[1].timer_expires, "1min29sec");
    EXPECT_EQ(sockets[1].timer_ms, Millis(89000));

    EXPECT_EQ(sockets[2].local, "[::ffff:127.0.0.1]:443");
    EXPECT_EQ(sockets[2].peer, "[::1]:5000");
    EXPECT_EQ(sockets[2].timer, "on");
    EXPECT_EQ(sockets[2].timer_ms, Millis(29512));
    EXPECT_EQ(sockets[2].timer_retransmits, 2);

    EXPECT_EQ(sockets[3].state, "");
    EXPECT_EQ(sockets[3].timer, "timewait");
    EXPECT_TRUE(sockets[3].owners.empty());

    EXPECT_EQ(parse_ss_duration("200ms"), Millis(200));
    EXPECT_EQ(parse_ss_duration("2min"), Millis(120000));
    EXPECT_EQ(parse_ss_duration("1min005ms"), Millis(60005));
    EXPECT_EQ(parse_ss_duration("7sec"), Millis(7000));
    EXPECT_EQ(parse_ss_duration("soon"), std::nullopt);
    EXPECT_EQ(parse_ss_duration("5h"), std::nullopt);
}

TEST(SsTest, FindsTheKeepaliveTimerOnOwnSocket) {
    common::Fd listener = loopback_listener();
    LoopbackPair pair = make_pair_on(std::move(listener));
    int one = 1;
    int idle = 30;
    ASSERT_EQ(::setsockopt(pair.client.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)), 0);
    ASSERT_EQ(::setsockopt(pair.client.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)), 0);
    std::string client = local_address_of(pair.client.get());
    std::string server = "127.0.0.1:" + std::to_string(pair.port);

    std::string error;
    std::vector<SsSocket> sockets = ss_sockets(::getpid(), &error);
    ASSERT_TRUE(error.empty()) << error;
    const SsSocket* with_keepalive = nullptr;
    const SsSocket* without = nullptr;
    bool listening = false;
    for (const SsSocket& s : sockets) {
        if (s.local == client && s.peer == server) with_keepalive = &s;
        if (s.local == server && s.peer == client) without = &s;
        if (s.local == server && s.state == "LISTEN") listening = true;
    }
    std::string info = ss_info(::getpid());
    ASSERT_TRUE(with_keepalive) << info;
    ASSERT_TRUE(without) << info;
    EXPECT_TRUE(listening) << info;
    EXPECT_EQ(with_keepalive->state, "ESTAB");
    EXPECT_EQ(with_keepalive->timer, "keepalive") << with_keepalive->line;
    ASSERT_TRUE(with_keepalive->timer_ms) << with_keepalive->line;
    EXPECT_LE(*with_keepalive->timer_ms, 30000ms);
    EXPECT_GT(*with_keepalive->timer_ms, 20000ms);
    EXPECT_TRUE(with_keepalive->owned_by(::getpid()));
    EXPECT_EQ(without->timer, "") << without->line;
    EXPECT_NE(info.find(client), std::string::npos);
}

}  // namespace
}  // namespace ringlb::testkit
