// The admin endpoints that show the running proxy, /backends and /config, against a real ringlb
// with two clusters and held connections; and `ringlb check`'s summary.

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::ordered_json;

// One backend line of /backends, in the order the README documents.
Json backend_entry(const std::string& cluster, const std::string& backend, unsigned weight,
                   unsigned max_connections, unsigned active, const char* state = "up") {
    return Json{{"cluster", cluster},
                {"backend", backend},
                {"weight", weight},
                {"max_connections", max_connections},
                {"active_connections", active},
                {"state", state},
                {"health", "unknown"}};
}

// GET /backends, checked as HTTP (200, application/json) and parsed.
::testing::AssertionResult get_backends(uint16_t admin_port, Json* out) {
    std::string error;
    std::optional<HttpResponse> response = http_request(admin_port, "/backends", 5000ms, &error);
    if (!response) return ::testing::AssertionFailure() << "GET /backends: " << error;
    if (response->status != 200)
        return ::testing::AssertionFailure() << "GET /backends: " << response->head;
    if (response->head.find("\r\nContent-Type: application/json\r\n") == std::string::npos)
        return ::testing::AssertionFailure() << "GET /backends: not JSON: " << response->head;
    try {
        *out = Json::parse(response->body);
    } catch (const Json::exception& e) {
        return ::testing::AssertionFailure() << "GET /backends: " << e.what() << " in:\n"
                                             << response->body;
    }
    return ::testing::AssertionSuccess();
}

// Polls /backends until it equals `expected` (counts settle after a close), at most `timeout`.
::testing::AssertionResult wait_for_backends(uint16_t admin_port, const Json& expected,
                                             Millis timeout = 5000ms) {
    auto deadline = Clock::now() + timeout;
    Json last;
    for (;;) {
        if (auto got = get_backends(admin_port, &last); !got) return got;
        if (last == expected) return ::testing::AssertionSuccess();
        if (Clock::now() >= deadline)
            return ::testing::AssertionFailure() << "expected:\n"
                                                 << expected.dump(2) << "\ngot:\n"
                                                 << last.dump(2);
        std::this_thread::sleep_for(50ms);
    }
}

// A raw request on a fresh connection with "Connection: close"; everything the server sent until
// it closed.
std::string raw_exchange(uint16_t port, const std::string& method, const std::string& path) {
    ClientSession client;
    if (!client.connect(port)) return "connect: " + client.error();
    if (!client.send(method + " " + path +
                     " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
        return "send: " + client.error();
    std::string data;
    client.wait_for_close(5000ms, &data);
    return data;
}

class AdminApiTest : public ::testing::TestWithParam<std::string> {
  protected:
    void TearDown() override {
        if (proxy_.running()) {
            EXPECT_EQ(proxy_.stop(), 0);
        }
        EXPECT_EQ(sanitizer_report(proxy_.log()), "") << proxy_.log_tail();
    }

    // Backends that greet each client with their letter, so a client knows where it landed.
    ::testing::AssertionResult start_backends(const std::vector<std::string>& letters) {
        for (const std::string& letter : letters) {
            BackendOptions options;
            options.greeting = letter;
            auto backend = std::make_unique<BackendProcess>();
            if (auto started = backend->start(options); !started) return started;
            by_letter_[letter] = backend.get();
            backends_.push_back(std::move(backend));
        }
        return ::testing::AssertionSuccess();
    }

    std::string address(const std::string& letter) { return by_letter_.at(letter)->address(); }

    // Opens `count` sessions through `port` and reads each one's greeting: the count per letter.
    ::testing::AssertionResult hold(uint16_t port, size_t count,
                                    std::map<std::string, unsigned>* landed) {
        for (size_t i = 0; i < count; ++i) {
            auto client = std::make_unique<ClientSession>();
            std::string greeting;
            if (!client->connect(port) || !client->receive(1, &greeting))
                return ::testing::AssertionFailure()
                       << "session " << i << " on port " << port << ": " << client->error();
            if (!by_letter_.count(greeting))
                return ::testing::AssertionFailure() << "unknown greeting \"" << greeting << "\"";
            ++(*landed)[greeting];
            clients_.push_back(std::move(client));
        }
        return ::testing::AssertionSuccess();
    }

    std::vector<std::unique_ptr<BackendProcess>> backends_;
    std::map<std::string, BackendProcess*> by_letter_;
    std::vector<std::unique_ptr<ClientSession>> clients_;
    ProxyProcess proxy_;
};

// Two clusters with known weights over two shards: every backend is listed with its weight and
// limit, and its active connections are exactly the sessions held to it, summed over the shards,
// then 0 again once they close.
TEST_P(AdminApiTest, BackendsCountHeldSessionsExactlyOverShards) {
    ASSERT_TRUE(start_backends({"A", "B", "C"}));
    uint16_t web_port = free_port(), api_port = free_port(), admin_port = free_port();
    std::string config =
        "[runtime]\nworkers = 2\nengine = \"" + GetParam() + "\"\n" + std::string(kQuickStop) +
        "\n[admin]\nbind = \"127.0.0.1:" + std::to_string(admin_port) +
        "\"\n\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:" + std::to_string(web_port) +
        "\"\ncluster = \"web\"\n\n[[listener]]\nname = \"api\"\nbind = "
        "\"127.0.0.1:" +
        std::to_string(api_port) +
        "\"\ncluster = \"api\"\n\n[[cluster]]\nname = \"web\"\nbackends = [ { "
        "address = \"" +
        address("A") + "\", weight = 3 }, { address = \"" + address("B") +
        "\" } ]\n\n[[cluster]]\nname = \"api\"\nbalance = \"least_conn\"\n"
        "backends = [ { address = \"" +
        address("C") + "\", weight = 2, max_connections = 50 } ]\n";
    RINGLB_START_PROXY(proxy_, config, GetParam());

    auto expected = [&](const std::map<std::string, unsigned>& active) {
        auto count = [&](const char* letter) {
            auto it = active.find(letter);
            return it == active.end() ? 0u : it->second;
        };
        return Json{{"backends",
                     {backend_entry("web", address("A"), 3, 0, count("A")),
                      backend_entry("web", address("B"), 1, 0, count("B")),
                      backend_entry("api", address("C"), 2, 50, count("C"))}}};
    };
    Json got;
    std::string error;
    ASSERT_TRUE(get_backends(admin_port, &got));
    EXPECT_EQ(got, expected({})) << got.dump(2);

    // The sum over the shards is under test, so sessions are held until both shards have some
    // (SO_REUSEPORT spreads clients by a hash: 8 all on one shard happen 1 time in 128).
    std::map<std::string, unsigned> landed;
    unsigned web_sessions = 0;
    for (int round = 0; round < 4; ++round) {
        ASSERT_TRUE(hold(web_port, 8, &landed));
        web_sessions += 8;
        std::optional<Metrics> metrics = scrape_metrics(admin_port, &error);
        ASSERT_TRUE(metrics) << error;
        if (metrics->sum("ringlb_active", {{"shard", "0"}}) > 0 &&
            metrics->sum("ringlb_active", {{"shard", "1"}}) > 0)
            break;
    }
    ASSERT_TRUE(hold(api_port, 3, &landed));
    EXPECT_EQ(landed["A"] + landed["B"], web_sessions);
    EXPECT_EQ(landed["C"], 3u);
    // Each session has its backend before its greeting arrives: no waiting here.
    ASSERT_TRUE(get_backends(admin_port, &got));
    EXPECT_EQ(got, expected(landed)) << got.dump(2);

    // HEAD: the head GET sends, Content-Length included, and no body.
    std::string get = raw_exchange(admin_port, "GET", "/backends");
    std::string head = raw_exchange(admin_port, "HEAD", "/backends");
    size_t get_end = get.find("\r\n\r\n");
    ASSERT_NE(get_end, std::string::npos) << get;
    EXPECT_EQ(head, get.substr(0, get_end + 4));
    EXPECT_NE(head.find("\r\nContent-Length: " + std::to_string(get.size() - get_end - 4) + "\r\n"),
              std::string::npos)
        << head;

    clients_.clear();
    EXPECT_TRUE(wait_for_backends(admin_port, expected({})));
}

// A backend whose every shard has used its share of max_connections is "full"; one session less
// and it is "up" again. One shard, so its share is the whole limit.
TEST_P(AdminApiTest, BackendAtMaxConnectionsIsFull) {
    ASSERT_TRUE(start_backends({"A"}));
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.workers = 1;
    spec.backends = {address("A")};
    spec.backend_extra = {"max_connections = 2"};
    RINGLB_START_PROXY(proxy_, make_config(spec), GetParam());
    auto expected = [&](unsigned active, const char* state) {
        return Json{{"backends", {backend_entry("app", address("A"), 1, 2, active, state)}}};
    };
    std::map<std::string, unsigned> landed;
    ASSERT_TRUE(hold(spec.listen_port, 1, &landed));
    EXPECT_TRUE(wait_for_backends(spec.admin_port, expected(1, "up"), 0ms));
    ASSERT_TRUE(hold(spec.listen_port, 1, &landed));
    EXPECT_TRUE(wait_for_backends(spec.admin_port, expected(2, "full"), 0ms));
    clients_.pop_back();
    EXPECT_TRUE(wait_for_backends(spec.admin_port, expected(1, "up")));
}

INSTANTIATE_TEST_SUITE_P(Engines, AdminApiTest, ::testing::ValuesIn(kEngines), engine_name);

// Two listeners on two clusters; `engine` and `workers` fixed so `check`'s output is exact.
std::string two_listener_config(uint16_t admin_port, uint16_t web_port, uint16_t api_port) {
    return "[runtime]\nworkers = 1\nengine = \"epoll\"\n" + std::string(kQuickStop) +
           "\n[admin]\nbind = \"127.0.0.1:" + std::to_string(admin_port) +
           "\"\n\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:" + std::to_string(web_port) +
           "\"\ncluster = \"web\"\n\n[[listener]]\nname = \"api-v2\"\nbind = \"[::1]:" +
           std::to_string(api_port) +
           "\"\ncluster = \"api\"\nidle_timeout = \"90s\"\n\n[[cluster]]\nname = \"web\"\n"
           "backends = [ { address = \"127.0.0.1:9001\", weight = 3 }, { address = "
           "\"127.0.0.1:9002\" } ]\n\n[[cluster]]\nname = \"api\"\nbalance = \"maglev\"\n"
           "backends = [ { address = \"[::1]:9003\" } ]\n";
}

// What `ringlb check` prints for two_listener_config(), after "config OK: PATH: ".
std::string expected_summary(uint16_t web_port, uint16_t api_port) {
    std::string web_bind = "127.0.0.1:" + std::to_string(web_port);
    std::string api_bind = "[::1]:" + std::to_string(api_port);
    size_t width = std::max(web_bind.size(), api_bind.size());
    return "2 listener(s), 2 cluster(s), 3 backend(s); engine on this host: epoll (configured)\n"
           "  listener web     " +
           web_bind + std::string(width - web_bind.size(), ' ') +
           "  -> cluster web\n"
           "  listener api-v2  " +
           api_bind + std::string(width - api_bind.size(), ' ') +
           "  -> cluster api\n"
           "  cluster web  round_robin  2 backend(s)\n"
           "  cluster api  maglev       1 backend(s)\n";
}

TEST(AdminCheckTest, CheckPrintsListenersClustersBackendsAndEngine) {
    uint16_t web_port = free_port(), api_port = free_port();
    CommandResult result = run_check(two_listener_config(free_port(), web_port, api_port));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(result.output,
              "config OK: " + result.config_path + ": " + expected_summary(web_port, api_port));
}

TEST(AdminCheckTest, CheckStillReportsErrorsWithFileAndLine) {
    CommandResult result = run_check(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:18080\"\ncluster = \"ap\"\n\n"
        "[[cluster]]\nname = \"app\"\nbackends = [ { address = \"127.0.0.1:9001\" } ]\n");
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_EQ(result.output, result.config_path +
                                 ":4:11: listener[0].cluster: cluster \"ap\" is not defined (did "
                                 "you mean \"app\"?)\n");
}

// /config is TOML that `ringlb check` accepts, with the same summary as the file it came from,
// and it writes out the defaults the file left unsaid.
TEST(AdminConfigTest, ConfigIsTheEffectiveTomlThatCheckAccepts) {
    uint16_t admin_port = free_port(), web_port = free_port(), api_port = free_port();
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, two_listener_config(admin_port, web_port, api_port), "epoll");
    std::string error;
    std::optional<HttpResponse> response = http_request(admin_port, "/config", 5000ms, &error);
    ASSERT_TRUE(response) << error;
    EXPECT_EQ(response->status, 200) << response->head;
    EXPECT_NE(response->head.find("\r\nContent-Type: application/toml\r\n"), std::string::npos)
        << response->head;
    const std::string& toml = response->body;
    EXPECT_TRUE(toml.starts_with("# effective configuration loaded from " + proxy.config_path() +
                                 ", defaults included\n"))
        << toml;
    // Defaults the file does not write, and values it does.
    for (const char* line :
         {"\n[runtime]\n", "\nworkers = 1\n", "\nengine = \"epoll\"\n", "\nbuffer_size = 65536\n",
          "\npipe_pool = 256\n", "\n[admin]\n", "\nbacklog = 4096\n", "\nidle_timeout = \"1h\"\n",
          "\nidle_timeout = \"90s\"\n", "\nforward = \"auto\"\n", "\nconnect_timeout = \"2s\"\n",
          "\nretries = 2\n", "\npool = { max_idle = \"30s\", warm = 0 }\n",
          "\nqueue = { size = 0, timeout = \"1s\" }\n", "\nclose = \"graceful\"\n",
          "\nhash_key = \"source_ip\"\n", "\nmaglev_table_size = 65537\n"})
        EXPECT_NE(toml.find(line), std::string::npos) << line << " in:\n" << toml;

    // HEAD: the same head, no body.
    std::string get = raw_exchange(admin_port, "GET", "/config");
    std::string head = raw_exchange(admin_port, "HEAD", "/config");
    size_t get_end = get.find("\r\n\r\n");
    ASSERT_NE(get_end, std::string::npos) << get;
    EXPECT_EQ(head, get.substr(0, get_end + 4));
    EXPECT_EQ(get.substr(get_end + 4), toml);

    EXPECT_EQ(proxy.stop(), 0);
    CommandResult check = run_check(toml);
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << toml;
    EXPECT_EQ(check.output,
              "config OK: " + check.config_path + ": " + expected_summary(web_port, api_port))
        << toml;
    EXPECT_EQ(sanitizer_report(proxy.log()), "") << proxy.log_tail();
}

// The new endpoints are listed with the built-in ones, and other methods get 405.
TEST(AdminConfigTest, UnknownPathListsBackendsAndConfig) {
    uint16_t admin_port = free_port();
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, two_listener_config(admin_port, free_port(), free_port()), "epoll");
    std::string error;
    std::optional<HttpResponse> response = http_request(admin_port, "/nope", 5000ms, &error);
    ASSERT_TRUE(response) << error;
    EXPECT_EQ(response->status, 404);
    EXPECT_EQ(response->body,
              "not found: /nope\nendpoints:\n"
              "GET, HEAD /metrics  Prometheus text format: every counter, summed over the shards "
              "at scrape time\n"
              "GET, HEAD /healthz  200 while the process runs\n"
              "GET, HEAD /ready  200 once every shard serves, 503 while starting, draining or "
              "stopping\n"
              "GET, HEAD /backends  JSON: every backend with its weight, active connections "
              "(summed over the shards), state and health\n"
              "GET, HEAD /config  the running configuration as TOML, every key with its "
              "effective value\n"
              "POST /reload  reads the configuration file again and applies it (as SIGHUP "
              "does)\n"
              "POST /backends/  CLUSTER/BACKEND/drain, /enable or /weight?value=N: takes a "
              "backend out of rotation, back in, or changes its weight until the next reload\n");
    for (const char* path : {"/backends", "/config"}) {
        std::string reply = raw_exchange(admin_port, "POST", path);
        EXPECT_TRUE(reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << reply;
        EXPECT_NE(reply.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << reply;
    }
    EXPECT_TRUE(proxy.wait_for_log(
        "admin: serving /metrics /healthz /ready /backends /config /reload /backends/ on", 0ms));
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_EQ(sanitizer_report(proxy.log()), "") << proxy.log_tail();
}

}  // namespace
}  // namespace ringlb::testkit
