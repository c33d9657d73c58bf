// The command line: `ringlb check`, `ringlb run` with a bad config, `ringlb version`.

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

// Every documented key, with valid values.
std::string good_config(uint16_t port) {
    return R"([runtime]
workers = 2
pin_cpus = false
engine = "auto"
drain_delay = "5s"
drain_timeout = "25s"
drain_spread = "5s"

[[listener]]
name = "web"
bind = "127.0.0.1:)" +
           std::to_string(port) + R"("
cluster = "app"
backlog = 4096
forward = "auto"
idle_timeout = "1h"
client_idle_timeout = "0s"
half_closed_timeout = "30s"
max_duration = "24h"
max_duration_jitter = "1h"
tcp_keepalive = { idle = "60s", interval = "10s", count = 3 }
tcp_user_timeout = "30s"

[[cluster]]
name = "app"
connect_timeout = "2s"
balance = "maglev"
hash_key = "source_ip"
maglev_table_size = 65537
retries = 2
pool = { warm = 4, max_idle = "5s" }
queue = { size = 100, timeout = "1s" }
server_idle_timeout = "0s"
tcp_keepalive = {}
tcp_user_timeout = "0s"
source_addresses = ["127.0.0.2", "127.0.0.3"]
source_port_range = "40000-49999"
close = "graceful"
backends = [ { address = "127.0.0.1:9001", weight = 1, max_connections = 100 },
             { address = "127.0.0.1:9002" } ]
)";
}

TEST(ConfigCliTest, CheckAcceptsAGoodConfig) {
    CommandResult result = run_check(good_config(free_port()));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("config OK"), std::string::npos) << result.output;
}

TEST(ConfigCliTest, CheckAcceptsEveryShippedExample) {
    std::filesystem::path dir = std::filesystem::path(RINGLB_SOURCE_DIR) / "examples";
    std::error_code ec;
    int checked = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (entry.path().extension() != ".toml") continue;
        ++checked;
        CommandResult result = run_ringlb({"check", entry.path().string()});
        EXPECT_EQ(result.exit_code, 0) << entry.path() << ":\n" << result.output;
    }
    if (checked == 0) GTEST_SKIP() << "no examples/*.toml yet";
}

// A config with one mistake, on the line marked "# BAD". The error must name the file, that
// line, and the offending key.
struct BadConfig {
    std::string name;
    std::string text;
    std::string key;  // empty: a syntax error has no key to name
};

void PrintTo(const BadConfig& config, std::ostream* out) {
    *out << config.name;
}

// check never binds, so the fixed port is harmless.
std::string base_config(const std::string& runtime_tail, const std::string& listener_tail,
                        const std::string& cluster_tail, const std::string& backends_line) {
    return "[runtime]\nworkers = 1\n" + runtime_tail +
           "\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:18080\"\n" + listener_tail +
           "\n\n[[cluster]]\nname = \"app\"\n" + cluster_tail + "\n" + backends_line + "\n";
}

const std::string kCluster = "cluster = \"app\"";
const std::string kBackends = "backends = [ { address = \"127.0.0.1:9001\" } ]";
const std::string kTimeout = "connect_timeout = \"1s\"";

std::vector<BadConfig> bad_configs() {
    return {
        {"SyntaxError", base_config("engine = = \"epoll\"  # BAD\n", kCluster, kTimeout, kBackends),
         ""},
        {"UnknownRuntimeKey", base_config("bogus_knob = 3  # BAD\n", kCluster, kTimeout, kBackends),
         "bogus_knob"},
        {"UnknownListenerKey",
         base_config("", kCluster + "\ncolour = \"red\"  # BAD", kTimeout, kBackends), "colour"},
        {"BadForwardValue",
         base_config("", kCluster + "\nforward = \"zerocopy\"  # BAD", kTimeout, kBackends),
         "forward"},
        {"BadEngineValue",
         base_config("engine = \"kqueue\"  # BAD\n", kCluster, kTimeout, kBackends), "engine"},
        {"UndefinedCluster", base_config("", "cluster = \"nowhere\"  # BAD", kTimeout, kBackends),
         "cluster"},
        {"BadBindAddress",
         "[runtime]\nworkers = 1\n\n[[listener]]\nname = \"web\"\n"
         "bind = \"127.0.0.1:99999\"  # BAD\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\n" +
             kBackends + "\n",
         "bind"},
        {"BadBackendAddress",
         base_config("", kCluster, kTimeout, "backends = [ { address = \"127.0.0.1\" } ]  # BAD"),
         "address"},
        {"BadDuration", base_config("", kCluster, "connect_timeout = \"soon\"  # BAD", kBackends),
         "connect_timeout"},
        {"UnknownPoolKey",
         base_config("", kCluster, kTimeout + "\npool = { wram = 4 }  # BAD", kBackends),
         "cluster[0].pool.wram"},
        {"HashKeyWithoutMaglev",
         base_config("", kCluster, kTimeout + "\nhash_key = \"source_ip\"  # BAD", kBackends),
         "cluster[0].hash_key"},
        {"BadPortRange",
         base_config("", kCluster, kTimeout + "\nsource_port_range = \"30000-20000\"  # BAD",
                     kBackends),
         "cluster[0].source_port_range"},
        {"SourceAddressFamilyMismatch",
         base_config("", kCluster, kTimeout + "\nsource_addresses = [\"::1\"]  # BAD", kBackends),
         "cluster[0].source_addresses"},
        {"JitterWithoutMaxDuration",
         base_config("", kCluster + "\nmax_duration_jitter = \"1m\"  # BAD", kTimeout, kBackends),
         "listener[0].max_duration_jitter"},
    };
}

int marked_line(const std::string& text) {
    int line = 1;
    size_t at = text.find("# BAD");
    for (size_t i = 0; i < at && i < text.size(); ++i)
        if (text[i] == '\n') ++line;
    return line;
}

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, CheckNamesFileLineAndKey) {
    const BadConfig& bad = GetParam();
    CommandResult result = run_check(bad.text);
    EXPECT_NE(result.exit_code, 0) << result.output;
    EXPECT_NE(result.exit_code, -1) << "ringlb check hung";
    // Whether the file is named as given or by its base name, "ringlb.toml:LINE:" appears.
    std::string where = "ringlb.toml:" + std::to_string(marked_line(bad.text)) + ":";
    EXPECT_NE(result.output.find(where), std::string::npos) << "expected \"" << where << "\" in:\n"
                                                            << result.output << "\nconfig:\n"
                                                            << bad.text;
    if (!bad.key.empty()) {
        EXPECT_NE(result.output.find(bad.key), std::string::npos)
            << "expected the key \"" << bad.key << "\" in:\n"
            << result.output;
    }
}

INSTANTIATE_TEST_SUITE_P(All, BadConfigTest, ::testing::ValuesIn(bad_configs()),
                         [](const ::testing::TestParamInfo<BadConfig>& info) {
                             return info.param.name;
                         });

TEST(ConfigCliTest, CheckReportsAMissingFile) {
    TempDir dir;
    std::string path = dir.file("absent.toml");
    CommandResult result = run_ringlb({"check", path});
    EXPECT_NE(result.exit_code, 0) << result.output;
    EXPECT_NE(result.exit_code, -1) << "ringlb check hung";
    EXPECT_NE(result.output.find("absent.toml"), std::string::npos) << result.output;
}

TEST(ConfigCliTest, RunWithABadConfigExitsWithoutListening) {
    // Valid syntax and a free port, but a broken reference: a proxy that binds before it
    // validates would listen here.
    uint16_t port = free_port();
    std::string text =
        "[runtime]\nworkers = 1\n\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:" +
        std::to_string(port) + "\"\ncluster = \"nowhere\"\n\n[[cluster]]\nname = " + "\"app\"\n" +
        kBackends + "\n";
    TempDir dir;
    std::string path = dir.file("ringlb.toml");
    write_file(path, text);
    CommandResult result = run_ringlb({"run", path}, 10s);
    EXPECT_NE(result.exit_code, -1) << "ringlb run kept running with a bad config:\n"
                                    << result.output;
    EXPECT_NE(result.exit_code, 0) << result.output;
    EXPECT_EQ(result.output.find("ready:"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("ringlb.toml:7:"), std::string::npos) << result.output;
    std::string error;
    EXPECT_FALSE(connect_to(port, 1s, &error)) << "something listens on " << port;
}

TEST(ConfigCliTest, VersionPrintsTheProjectVersion) {
    CommandResult result = run_ringlb({"version"});
    EXPECT_EQ(result.exit_code, 0) << result.output;
    std::string version = project_version();
    ASSERT_FALSE(version.empty());
    EXPECT_NE(result.output.find(version), std::string::npos)
        << "expected " << version << " in: " << result.output;
}

TEST(ConfigCliTest, UnknownCommandFails) {
    CommandResult result = run_ringlb({"frobnicate"});
    EXPECT_NE(result.exit_code, 0) << result.output;
    EXPECT_NE(result.exit_code, -1) << "ringlb hung";
    EXPECT_FALSE(result.output.empty()) << "no usage message";
}

}  // namespace
}  // namespace ringlb::testkit
