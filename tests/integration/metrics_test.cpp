// The /metrics exposition against known traffic: per-listener counters and the session-duration
// histogram count exactly what the clients sent and received, the process, build, engine, admin
// and configuration families are there and sane, promtool accepts a real scrape, and the SIGUSR1
// stats line agrees with /metrics.

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kKiB = 1024;

class MetricsTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Hash-mode traffic on the wire: the 8-byte header and the payload up, the reply and the
// 40-byte trailer down (tests/tools/pattern.hpp).
uint64_t wire_up(const ExchangeSpec& spec) {
    return tools::kHashHeaderSize + spec.send_bytes;
}
uint64_t wire_down(const ExchangeSpec& spec) {
    return spec.recv_bytes + tools::kHashTrailerSize;
}

struct ListenerTraffic {
    std::string name;
    uint16_t port = 0;
    std::vector<ExchangeSpec> sessions;
    uint64_t up = 0;    // bytes the clients sent, as the proxy sees them
    uint64_t down = 0;  // bytes the clients received
};

TEST_P(MetricsTest, ListenerCountersMatchTheTrafficExactly) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    std::string config = make_config(spec);
    // A second listener on the same cluster, with traffic of other sizes, so a byte counted on the
    // wrong listener shows.
    uint16_t api_port = free_port();
    config += "\n[[listener]]\nname = \"api\"\nbind = \"127.0.0.1:" + std::to_string(api_port) +
              "\"\ncluster = \"app\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, engine());

    std::vector<ListenerTraffic> listeners{{"test", spec.listen_port, {}, 0, 0},
                                           {"api", api_port, {}, 0, 0}};
    listeners[0].sessions = {{ExchangeKind::kHash, 0, 0, 1, false},
                             {ExchangeKind::kHash, 1, 100 * kKiB, 2, false},
                             {ExchangeKind::kHash, 300 * kKiB + 7, 3, 3, false},
                             {ExchangeKind::kHash, 64 * kKiB, 64 * kKiB, 4, true}};
    listeners[1].sessions = {{ExchangeKind::kHash, 5000, 1, 5, false},
                             {ExchangeKind::kHash, 17, 1 << 20, 6, false}};
    auto traffic_start = std::chrono::steady_clock::now();
    for (ListenerTraffic& l : listeners) {
        RunSummary summary = run_concurrent(l.port, l.sessions);
        ASSERT_TRUE(summary.ok()) << l.name << ": " << summary.describe();
        for (const ExchangeSpec& s : l.sessions) {
            l.up += wire_up(s);
            l.down += wire_down(s);
        }
    }
    double traffic_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - traffic_start).count();

    // A session's duration is observed when it is freed, after its last byte was counted.
    for (const ListenerTraffic& l : listeners) {
        std::string last;
        ASSERT_TRUE(wait_for_metric(
            spec.admin_port, "ringlb_session_duration_seconds_count", {{"listener", l.name}},
            [&](double v) { return v == static_cast<double>(l.sessions.size()); }, 5s, &last))
            << last;
    }

    std::string error;
    auto text = http_get(spec.admin_port, "/metrics", 5s, &error);
    ASSERT_TRUE(text) << error;
    auto metrics = Metrics::parse(*text, &error);
    ASSERT_TRUE(metrics) << error;

    EXPECT_EQ(metrics->type("ringlb_listener_connections_total"), "counter");
    EXPECT_EQ(metrics->type("ringlb_listener_active_connections"), "gauge");
    EXPECT_EQ(metrics->type("ringlb_bytes_total"), "counter");
    EXPECT_EQ(metrics->type("ringlb_session_duration_seconds"), "histogram");
    for (const char* family :
         {"ringlb_listener_connections_total", "ringlb_listener_active_connections",
          "ringlb_bytes_total", "ringlb_session_duration_seconds"})
        EXPECT_FALSE(metrics->help(family).empty()) << family;

    uint64_t all_up = 0, all_down = 0;
    for (const ListenerTraffic& l : listeners) {
        SCOPED_TRACE("listener " + l.name);
        Labels of{{"listener", l.name}};
        double sessions = static_cast<double>(l.sessions.size());
        EXPECT_EQ(metrics->count("ringlb_listener_connections_total", of), 1u);
        EXPECT_EQ(metrics->sum("ringlb_listener_connections_total", of), sessions);
        EXPECT_EQ(metrics->sum("ringlb_listener_active_connections", of), 0);
        EXPECT_EQ(metrics->count("ringlb_bytes_total", of), 2u)
            << metrics->describe("ringlb_bytes_total", of);
        EXPECT_EQ(metrics->sum("ringlb_bytes_total",
                               {{"listener", l.name}, {"direction", "client_to_upstream"}}),
                  static_cast<double>(l.up));
        EXPECT_EQ(metrics->sum("ringlb_bytes_total",
                               {{"listener", l.name}, {"direction", "upstream_to_client"}}),
                  static_cast<double>(l.down));
        all_up += l.up;
        all_down += l.down;

        EXPECT_EQ(metrics->sum("ringlb_session_duration_seconds_count", of), sessions);
        double sum = metrics->sum("ringlb_session_duration_seconds_sum", of);
        EXPECT_GT(sum, 0);
        // Every session ran inside the traffic window.
        EXPECT_LE(sum, sessions * traffic_seconds) << traffic_seconds << " s of traffic";
        std::vector<const MetricSample*> buckets =
            metrics->find("ringlb_session_duration_seconds_bucket", of);
        ASSERT_EQ(buckets.size(), 16u)
            << metrics->describe("ringlb_session_duration_seconds_bucket", of);
        double previous = 0;
        for (const MetricSample* b : buckets) {
            EXPECT_GE(b->value, previous) << to_string(*b) << ": buckets must be cumulative";
            previous = b->value;
        }
        EXPECT_EQ(buckets.front()->labels.at("le"), "0.001");
        EXPECT_EQ(buckets.back()->labels.at("le"), "+Inf");
        EXPECT_EQ(buckets.back()->value, sessions);
        // Each session lasted less than the whole traffic window, so it is counted at or below the
        // first bound past that window.
        for (const MetricSample* b : buckets) {
            if (b->labels.at("le") == "+Inf" || std::stod(b->labels.at("le")) >= traffic_seconds) {
                EXPECT_EQ(b->value, sessions) << to_string(*b);
                break;
            }
        }
    }
    // The per-shard byte counters count the same bytes.
    EXPECT_EQ(metrics->sum("ringlb_bytes_in_total"), static_cast<double>(all_up));
    EXPECT_EQ(metrics->sum("ringlb_bytes_out_total"), static_cast<double>(all_down));
    EXPECT_EQ(metrics->sum("ringlb_accepted_total"), 6);

    // The connect histogram of the issue: one per cluster, a sample per session.
    EXPECT_EQ(metrics->type("ringlb_connect_duration_seconds"), "histogram");
    EXPECT_EQ(metrics->sum("ringlb_connect_duration_seconds_count", {{"cluster", "app"}}), 6);

    EXPECT_TRUE(promtool_check(*text));
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(MetricsTest, ProcessBuildEngineAdminAndConfigFamilies) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    double before_start = unix_now();
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    double after_start = unix_now();
    ExchangeResult warm = hash_exchange(spec.listen_port, 4 * kKiB, 4 * kKiB);
    ASSERT_TRUE(warm.ok) << warm.error;

    int fds_outside = proxy.fd_count();
    std::string error;
    auto text = http_get(spec.admin_port, "/metrics", 5s, &error);
    ASSERT_TRUE(text) << error;
    auto metrics = Metrics::parse(*text, &error);
    ASSERT_TRUE(metrics) << error;

    EXPECT_EQ(metrics->type("ringlb_build_info"), "gauge");
    EXPECT_EQ(metrics->sum("ringlb_build_info", {{"version", project_version()}}), 1)
        << metrics->describe("ringlb_build_info");
    EXPECT_EQ(metrics->type("ringlb_engine_info"), "gauge");
    EXPECT_EQ(metrics->sum("ringlb_engine_info", {{"engine", engine()}}), 1)
        << metrics->describe("ringlb_engine_info");

    const std::vector<std::pair<std::string, std::string>> process_families{
        {"ringlb_process_open_fds", "gauge"},
        {"ringlb_process_max_fds", "gauge"},
        {"ringlb_process_resident_memory_bytes", "gauge"},
        {"ringlb_process_virtual_memory_bytes", "gauge"},
        {"ringlb_process_start_time_seconds", "gauge"},
        {"ringlb_process_cpu_seconds_total", "counter"},
    };
    for (const auto& [name, type] : process_families) {
        EXPECT_EQ(metrics->type(name), type) << name;
        EXPECT_EQ(metrics->count(name), 1u) << name;
    }
    // The admin connection of this scrape is one more fd than the count taken from outside.
    double open_fds = metrics->sum("ringlb_process_open_fds");
    EXPECT_GT(open_fds, 0);
    EXPECT_NEAR(open_fds, fds_outside, 3) << "fds seen from /proc/" << proxy.pid() << "/fd";
    EXPECT_GT(metrics->sum("ringlb_process_max_fds"), open_fds);
    EXPECT_GT(metrics->sum("ringlb_process_resident_memory_bytes"), 1 << 20);
    EXPECT_GE(metrics->sum("ringlb_process_virtual_memory_bytes"),
              metrics->sum("ringlb_process_resident_memory_bytes"));
    // /proc/stat's boot time has whole seconds.
    double start = metrics->sum("ringlb_process_start_time_seconds");
    EXPECT_GE(start, before_start - 2);
    EXPECT_LE(start, after_start + 2);
    EXPECT_GT(metrics->sum("ringlb_process_cpu_seconds_total"), 0);

    // No reload yet: the configuration loaded at start is the last success.
    EXPECT_EQ(metrics->type("ringlb_config_reloads_total"), "counter");
    EXPECT_EQ(metrics->count("ringlb_config_reloads_total"), 2u);
    EXPECT_EQ(metrics->count("ringlb_config_reloads_total", {{"result", "success"}}), 1u);
    EXPECT_EQ(metrics->count("ringlb_config_reloads_total", {{"result", "failure"}}), 1u);
    EXPECT_EQ(metrics->sum("ringlb_config_reloads_total"), 0);
    EXPECT_EQ(metrics->sum("ringlb_config_last_reload_successful"), 1);
    double loaded = metrics->sum("ringlb_config_last_reload_success_timestamp_seconds");
    EXPECT_GE(loaded, before_start);
    EXPECT_LE(loaded, after_start);

    const std::vector<std::pair<std::string, std::string>> admin_families{
        {"ringlb_admin_active_connections", "gauge"},
        {"ringlb_admin_rejected_connections_total", "counter"},
        {"ringlb_admin_accept_errors_total", "counter"},
        {"ringlb_admin_spare_fds_used_total", "counter"},
    };
    for (const auto& [name, type] : admin_families) {
        EXPECT_EQ(metrics->type(name), type) << name;
        EXPECT_EQ(metrics->count(name), 1u) << name;
    }
    EXPECT_GE(metrics->sum("ringlb_admin_active_connections"), 1);  // this scrape's
    EXPECT_EQ(metrics->sum("ringlb_admin_rejected_connections_total"), 0);
    EXPECT_EQ(metrics->sum("ringlb_admin_accept_errors_total"), 0);
    EXPECT_EQ(metrics->sum("ringlb_admin_spare_fds_used_total"), 0);

    EXPECT_TRUE(promtool_check(*text));
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// The README's metrics reference has one row per family, "| `NAME` | TYPE | ...": every family a
// scrape exports is there with its type, and every row names a family the scrape exports.
TEST_P(MetricsTest, ReadmeReferenceListsEveryFamily) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    std::string error;
    auto metrics = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();

    std::string readme = read_file(std::string(RINGLB_SOURCE_DIR) + "/README.md");
    size_t begin = readme.find("\n## Metrics reference\n");
    ASSERT_NE(begin, std::string::npos) << "no Metrics reference section in README.md";
    size_t end = readme.find("\n## ", begin + 1);
    std::string reference = readme.substr(begin, end - begin);
    std::vector<std::string> families = metrics->families();
    EXPECT_GT(families.size(), 40u);
    for (const std::string& family : families) {
        std::string row = "| `" + family + "` | " + metrics->type(family) + " |";
        EXPECT_NE(reference.find(row), std::string::npos) << "README.md lacks the row " << row;
    }
    size_t rows = 0;
    for (size_t pos = 0; (pos = reference.find("\n| `ringlb_", pos)) != std::string::npos; ++pos) {
        size_t name_end = reference.find('`', pos + 4);
        std::string name = reference.substr(pos + 4, name_end - pos - 4);
        EXPECT_NE(metrics->type(name), "")
            << "README.md lists " << name << ", which /metrics lacks";
        ++rows;
    }
    EXPECT_EQ(rows, families.size());
}

// SIGUSR1 still logs one "shard N stats:" line per shard, with the values /metrics shows: the
// shard counters under their own names, the upstream totals summed over clusters and backends.
TEST_P(MetricsTest, Sigusr1StatsLineAgreesWithMetrics) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = engine();
    // A refused backend next to the live one: connect failures and retries to compare.
    spec.backends = {"127.0.0.1:" + std::to_string(free_port()), backend.address()};
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    constexpr int kSessions = 40;
    RunSummary summary =
        run_concurrent(spec.listen_port, kSessions,
                       ExchangeSpec{ExchangeKind::kHash, 2 * kKiB, 3 * kKiB, 1, false});
    ASSERT_TRUE(summary.ok()) << summary.describe();
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_closed_total", {}, [](double v) { return v == kSessions; }, 5s,
        &last))
        << last;

    std::string why;
    auto stats = proxy.stats(2, 5s, &why);
    ASSERT_TRUE(stats) << why;
    ASSERT_EQ(stats->size(), 2u);
    std::string error;
    auto metrics = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(metrics) << error;

    const std::vector<std::string> upstream_keys{"connect_failures", "connect_retries",
                                                 "no_backend"};
    for (const ShardStats& shard : *stats) {
        SCOPED_TRACE("shard " + std::to_string(shard.shard));
        Labels of{{"shard", std::to_string(shard.shard)}};
        size_t compared = 0;
        for (const auto& [key, value] : shard.values) {
            if (std::find(upstream_keys.begin(), upstream_keys.end(), key) != upstream_keys.end())
                continue;
            std::string name = "ringlb_" + key + "_total";
            if (!metrics->has(name)) name = "ringlb_" + key;
            ASSERT_EQ(metrics->count(name, of), 1u) << key << ": no " << name << " in /metrics";
            EXPECT_EQ(metrics->sum(name, of), static_cast<double>(value)) << name;
            ++compared;
        }
        EXPECT_GE(compared, 13u) << "shard counters in the line";
    }
    EXPECT_EQ(sum_stat(*stats, "accepted"), static_cast<uint64_t>(kSessions));
    EXPECT_EQ(static_cast<double>(sum_stat(*stats, "connect_failures")),
              metrics->sum("ringlb_backend_connect_failures_total"));
    EXPECT_EQ(static_cast<double>(sum_stat(*stats, "connect_retries")),
              metrics->sum("ringlb_cluster_retries_total"));
    EXPECT_EQ(static_cast<double>(sum_stat(*stats, "no_backend")),
              metrics->sum("ringlb_cluster_no_backend_total"));
    EXPECT_GT(sum_stat(*stats, "connect_retries"), 0u);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, MetricsTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
