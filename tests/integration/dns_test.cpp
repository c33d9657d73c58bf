// Backends given by name (proxy/discovery): a real DNS server (dnsmasq) serves records the test
// rewrites; under a steady stream of clients, 20 changes of the record set (adds, removals,
// swaps, an empty answer, the server stopped) lose no client, and traffic follows the records
// within dns_refresh + 1 s.

#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/dnsmasq.hpp"
#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr const char* kName = "web.ringlb.test";

// The backends of cluster app in the running configuration, from /metrics.
std::set<std::string> running_backends(uint16_t admin_port) {
    std::set<std::string> out;
    auto metrics = scrape_metrics(admin_port);
    if (!metrics) return out;
    for (const MetricSample* s : metrics->find("ringlb_backend_connections_total"))
        out.insert(s->labels.at("backend"));
    return out;
}

class DnsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        port_ = free_port();
        for (int i = 1; i <= 3; ++i) {
            BackendOptions options;
            options.host = "127.0.0." + std::to_string(i);
            options.port = port_;
            backends_.push_back(std::make_unique<BackendProcess>());
            ASSERT_TRUE(backends_.back()->start(options));
        }
    }

    std::string hosts(const std::set<int>& ips) const {
        std::string out;
        for (int i : ips) out += "127.0.0." + std::to_string(i) + " " + kName + "\n";
        return out;
    }
    std::set<std::string> addresses(const std::set<int>& ips) const {
        std::set<std::string> out;
        for (int i : ips) out.insert("127.0.0." + std::to_string(i) + ":" + std::to_string(port_));
        return out;
    }
    std::string config(uint16_t dns_port, ProxyConfigSpec& spec, const std::string& extra = "") {
        spec.engine = "auto";
        spec.backends = {std::string(kName) + ":" + std::to_string(port_)};
        spec.runtime_extra = "dns_servers = [\"127.0.0.1:" + std::to_string(dns_port) + "\"]\n";
        spec.cluster_extra = "dns_refresh = \"200ms\"\n" + extra;
        return make_config(spec);
    }

    uint16_t port_ = 0;
    std::vector<std::unique_ptr<BackendProcess>> backends_;
};

TEST_F(DnsTest, TwentyRecordChangesUnderLoadLoseNoClient) {
    Dnsmasq dns;
    if (std::string why = dns.start(hosts({1, 2}), 1); !why.empty())
        GTEST_SKIP() << "dnsmasq cannot run here: " << why;
    ProxyConfigSpec spec;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config(dns.port(), spec), "auto");
    ASSERT_EQ(running_backends(spec.admin_port), addresses({1, 2})) << proxy.log_tail();

    ConnectionStream stream(spec.listen_port, 1024, 2ms);
    struct Step {
        std::set<int> records;  // what DNS says ({}: an empty answer)
        bool stop_server = false;
    };
    // Each step's expected set: the records, or the last good set when DNS fails.
    const std::vector<Step> steps = {
        {{1, 2, 3}}, {{1, 3}},   {{2}},      {{1, 2}},    {{3}},    {{}},        {{1}},
        {{1, 2, 3}}, {{}, true}, {{2, 3}},   {{1}},       {{1, 2}}, {{}},        {{2}},
        {{3}},       {{1, 3}},   {{}, true}, {{1, 2, 3}}, {{2}},    {{1, 2, 3}},
    };
    ASSERT_EQ(steps.size(), 20u);
    std::set<int> last_good = {1, 2};
    Millis slowest{0};
    for (size_t i = 0; i < steps.size(); ++i) {
        const Step& step = steps[i];
        SCOPED_TRACE("step " + std::to_string(i));
        auto changed_at = Clock::now();
        if (step.stop_server) {
            ASSERT_EQ(::kill(dns.process().pid(), SIGSTOP), 0);
            // Lookups time out meanwhile (2 s): the name is stale, the backends stay.
            std::string last;
            EXPECT_TRUE(wait_for_metric(
                spec.admin_port, "ringlb_dns_stale", {{"name", spec.backends[0]}},
                [](double v) { return v == 1; }, 5000ms, &last))
                << last;
            EXPECT_EQ(running_backends(spec.admin_port), addresses(last_good));
            ASSERT_EQ(::kill(dns.process().pid(), SIGCONT), 0);
            continue;
        }
        ASSERT_TRUE(dns.replace_hosts(hosts(step.records)));
        if (step.records.empty()) {
            // NXDOMAIN: kept, and said so.
            std::string last;
            EXPECT_TRUE(wait_for_metric(
                spec.admin_port, "ringlb_dns_lookups_total",
                {{"name", spec.backends[0]}, {"result", "nxdomain"}},
                [](double v) { return v >= 1; }, 3000ms, &last))
                << last;
            std::this_thread::sleep_for(400ms);
            EXPECT_EQ(running_backends(spec.admin_port), addresses(last_good));
            continue;
        }
        std::set<std::string> want = addresses(step.records);
        std::set<std::string> got;
        while (Clock::now() < changed_at + 5s) {
            got = running_backends(spec.admin_port);
            if (got == want) break;
            std::this_thread::sleep_for(20ms);
        }
        ASSERT_EQ(got, want) << proxy.log_tail();
        slowest = std::max(slowest, std::chrono::duration_cast<Millis>(Clock::now() - changed_at));
        last_good = step.records;
        // Traffic follows: new connections go to the new set only.
        auto before = scrape_metrics(spec.admin_port);
        ASSERT_TRUE(before);
        std::this_thread::sleep_for(150ms);
        auto after = scrape_metrics(spec.admin_port);
        ASSERT_TRUE(after);
        double moved = after->sum("ringlb_backend_connections_total") -
                       before->sum("ringlb_backend_connections_total");
        EXPECT_GT(moved, 0);
    }
    stream.stop();
    std::cout << "[ dns ] 20 record changes: " << stream.succeeded()
              << " client exchanges byte-exact, " << stream.failed()
              << " failed; traffic followed within " << slowest.count()
              << " ms at worst (dns_refresh 200 ms)\n";
    EXPECT_EQ(stream.failed(), 0u) << stream.first_failure();
    EXPECT_GT(stream.succeeded(), 100u);
    // dns_refresh + 1 s.
    EXPECT_LE(slowest.count(), 1200);
    auto metrics = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(metrics);
    EXPECT_GE(metrics->sum("ringlb_dns_lookups_total", {{"result", "timeout"}}), 1);
    EXPECT_EQ(metrics->sum("ringlb_dns_stale"), 0);
    EXPECT_EQ(metrics->sum("ringlb_cluster_backends", {{"cluster", "app"}}), 3);
    // GET /config shows the name, not its addresses.
    auto config = http_request(spec.admin_port, "/config");
    ASSERT_TRUE(config);
    EXPECT_NE(config->body.find(spec.backends[0]), std::string::npos) << config->body;
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_F(DnsTest, AClusterWithoutAnyAddressDoesNotStartButAnUnresolvedNameBesideOthersDoes) {
    Dnsmasq dns;
    if (std::string why = dns.start(hosts({1}), 1); !why.empty())
        GTEST_SKIP() << "dnsmasq cannot run here: " << why;
    ProxyConfigSpec spec;
    spec.engine = "auto";
    spec.backends = {"nothing.ringlb.test:" + std::to_string(port_)};
    spec.runtime_extra = "dns_servers = [\"127.0.0.1:" + std::to_string(dns.port()) + "\"]\n";
    ProxyProcess proxy;
    StartResult result = proxy.start(make_config(spec));
    ASSERT_FALSE(result.ready());
    EXPECT_NE(result.log.find("cluster app has no backend: nothing.ringlb.test:" +
                              std::to_string(port_) + ": did not resolve"),
              std::string::npos)
        << result.log;

    // Beside a name that resolves, the unknown one is a warning and is looked up again.
    ProxyConfigSpec both;
    both.engine = "auto";
    both.backends = {"nothing.ringlb.test:" + std::to_string(port_),
                     std::string(kName) + ":" + std::to_string(port_)};
    both.runtime_extra = spec.runtime_extra;
    both.cluster_extra = "dns_refresh = \"200ms\"\n";
    ProxyProcess second;
    RINGLB_START_PROXY(second, make_config(both), "auto");
    EXPECT_NE(second.log().find("dns: cluster app: nothing.ringlb.test:" + std::to_string(port_) +
                                ": nxdomain"),
              std::string::npos)
        << second.log_tail();
    EXPECT_EQ(running_backends(both.admin_port), addresses({1}));
    // The name appears: it becomes backends too.
    ASSERT_TRUE(dns.replace_hosts(hosts({1}) + "127.0.0.2 nothing.ringlb.test\n"));
    std::set<std::string> got;
    for (auto until = Clock::now() + 3s; Clock::now() < until;) {
        got = running_backends(both.admin_port);
        if (got == addresses({1, 2})) break;
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(got, addresses({1, 2})) << second.log_tail();
    EXPECT_EQ(second.stop(), 0);
}

TEST(DnsCheckTest, CheckSaysNamesAreResolvedAtRunTime) {
    CommandResult r = run_check(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:18080\"\ncluster = \"app\"\n"
        "[[cluster]]\nname = \"app\"\nbackends = [ { address = \"web.example.com:80\" }, "
        "{ address = \"127.0.0.1:81\" } ]\n");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("2 backend(s), 1 by name, resolved at run time"), std::string::npos)
        << r.output;
}

}  // namespace
}  // namespace ringlb::testkit
