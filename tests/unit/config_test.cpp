#include "config/config.hpp"
#include "config/prescan.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

using ringlb::config::Balance;
using ringlb::config::ClosePolicy;
using ringlb::config::Config;
using ringlb::config::ConfigError;
using ringlb::config::EngineKind;
using ringlb::config::ForwardMode;
using ringlb::config::HashKey;
using ringlb::config::kMaxConfigBytes;
using ringlb::config::kMaxKeyParts;
using ringlb::config::kMaxNesting;
using ringlb::config::load_file;
using ringlb::config::load_string;
using ringlb::config::measure_shape;
using ringlb::config::Millis;
using ringlb::config::parse_duration;
using ringlb::config::TextShape;

namespace {

// The message of the ConfigError that loading `text` throws, or a marker if it loads.
std::string error_of(std::string_view text) {
    try {
        load_string(text, "t.toml");
    } catch (const ConfigError& error) {
        return error.what();
    }
    return "<loaded without error>";
}

// A valid config to which tests append one broken piece. Lines 1-7.
constexpr std::string_view kListenerAndCluster = R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)";

std::string with(std::string_view prefix) {
    return std::string(prefix) + std::string(kListenerAndCluster);
}

// kListenerAndCluster with `lines` added to its listener: they start at line 5.
std::string listener_with(std::string_view lines) {
    return R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
)" + std::string(lines) +
           R"([[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)";
}

// kListenerAndCluster with `lines` added to its cluster: they start at line 8.
std::string cluster_with(std::string_view lines) {
    return std::string(kListenerAndCluster) + std::string(lines);
}

// A cluster with the given backends line (line 7) and further lines from line 8.
std::string backends_with(std::string_view backends, std::string_view lines = "") {
    return R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
)" + std::string(backends) +
           "\n" + std::string(lines);
}

}  // namespace

TEST(ConfigTest, LoadsFullConfig) {
    Config config = load_string(R"(
[runtime]
workers = 2
pin_cpus = true
engine = "epoll"
buffer_size = 16384
buffer_count = 1024
pipe_size = 131072
pipe_pool = 0
drain_delay = "10s"
drain_timeout = "1m"
drain_spread = "0s"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
backlog = 128
forward = "splice"

[[listener]]
name = "api.v2"
bind = "[::1]:8443"
cluster = "api"
forward = "buffered"

[[cluster]]
name = "app"
connect_timeout = "250ms"
backends = [ { address = "127.0.0.1:9001", weight = 3 }, { address = "127.0.0.1:9002" } ]

[[cluster]]
name = "api"
connect_timeout = "1m"
backends = [ { address = "[::1]:9443", weight = 1000 } ]
)",
                                "full.toml");
    EXPECT_EQ(config.source, "full.toml");
    EXPECT_EQ(config.runtime.workers, 2u);
    EXPECT_TRUE(config.runtime.pin_cpus);
    EXPECT_EQ(config.runtime.engine, EngineKind::kEpoll);
    EXPECT_EQ(config.runtime.buffer_size, 16384u);
    EXPECT_EQ(config.runtime.buffer_count, 1024u);
    EXPECT_EQ(config.runtime.pipe_size, 131072u);
    EXPECT_EQ(config.runtime.pipe_pool, 0u);
    EXPECT_EQ(config.runtime.drain_delay, Millis(10000));
    EXPECT_EQ(config.runtime.drain_timeout, Millis(60000));
    EXPECT_EQ(config.runtime.drain_spread, Millis(0));

    ASSERT_EQ(config.listeners.size(), 2u);
    EXPECT_EQ(config.listeners[0].name, "web");
    EXPECT_EQ(config.listeners[0].bind_text, "127.0.0.1:8080");
    EXPECT_EQ(config.listeners[0].bind.to_string(), "127.0.0.1:8080");
    EXPECT_EQ(config.listeners[0].cluster, "app");
    EXPECT_EQ(config.listeners[0].cluster_index, 0u);
    EXPECT_EQ(config.listeners[0].backlog, 128);
    EXPECT_EQ(config.listeners[0].forward, ForwardMode::kSplice);
    EXPECT_EQ(config.listeners[1].name, "api.v2");
    EXPECT_EQ(config.listeners[1].bind.to_string(), "[::1]:8443");
    EXPECT_EQ(config.listeners[1].cluster_index, 1u);
    EXPECT_EQ(config.listeners[1].forward, ForwardMode::kBuffered);

    ASSERT_EQ(config.clusters.size(), 2u);
    EXPECT_EQ(config.clusters[0].name, "app");
    EXPECT_EQ(config.clusters[0].connect_timeout, Millis(250));
    ASSERT_EQ(config.clusters[0].backends.size(), 2u);
    EXPECT_EQ(config.clusters[0].backends[0].address_text, "127.0.0.1:9001");
    EXPECT_EQ(config.clusters[0].backends[0].address.port(), 9001);
    EXPECT_EQ(config.clusters[0].backends[0].weight, 3u);
    EXPECT_EQ(config.clusters[0].backends[1].weight, 1u);
    EXPECT_EQ(config.clusters[1].connect_timeout, Millis(60000));
    EXPECT_EQ(config.clusters[1].backends[0].address.to_string(), "[::1]:9443");
    EXPECT_EQ(config.clusters[1].backends[0].weight, 1000u);
}

TEST(ConfigTest, AppliesDefaults) {
    Config config = load_string(kListenerAndCluster, "min.toml");
    EXPECT_EQ(config.runtime.workers, 0u);
    EXPECT_FALSE(config.runtime.pin_cpus);
    EXPECT_EQ(config.runtime.engine, EngineKind::kAuto);
    EXPECT_EQ(config.runtime.buffer_size, 65536u);
    EXPECT_EQ(config.runtime.buffer_count, 256u);
    EXPECT_EQ(config.runtime.pipe_size, 65536u);
    EXPECT_EQ(config.runtime.pipe_pool, 256u);
    EXPECT_EQ(config.runtime.drain_delay, Millis(0));
    EXPECT_EQ(config.runtime.drain_timeout, Millis(25000));
    EXPECT_EQ(config.runtime.drain_spread, Millis(5000));
    EXPECT_EQ(config.listeners[0].backlog, 4096);
    EXPECT_EQ(config.listeners[0].forward, ForwardMode::kAuto);
    EXPECT_EQ(config.clusters[0].connect_timeout, Millis(2000));
    EXPECT_EQ(config.clusters[0].backends[0].weight, 1u);
}

TEST(ConfigTest, WorkersAutoMeansZero) {
    Config config = load_string(with("[runtime]\nworkers = \"auto\"\n"), "t.toml");
    EXPECT_EQ(config.runtime.workers, 0u);
}

TEST(ConfigTest, BackendsAsArrayOfTablesAreAccepted) {
    Config config = load_string(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
[[cluster.backends]]
address = "127.0.0.1:9001"
[[cluster.backends]]
address = "127.0.0.1:9002"
weight = 5
)",
                                "t.toml");
    ASSERT_EQ(config.clusters[0].backends.size(), 2u);
    EXPECT_EQ(config.clusters[0].backends[1].weight, 5u);
}

TEST(ConfigTest, SyntaxErrorHasPosition) {
    EXPECT_EQ(error_of("[runtime]\nworkers = = 2\n"),
              "t.toml:2:11: syntax: Error while parsing value: could not determine value type");
    EXPECT_EQ(error_of("[runtime\nworkers = 2\n"),
              "t.toml:1:9: syntax: Error while parsing table header: expected ']', saw '\\n'");
}

TEST(ConfigTest, SyntaxErrorStaysOnOneLine) {
    // toml++ quotes the raw newline it saw; the message must still be a single log line.
    EXPECT_EQ(error_of("[runtime]\npin_cpus = t\n"),
              "t.toml:2:13: syntax: Error while parsing boolean: expected 'true', saw 't\\n'");
}

TEST(ConfigTest, DuplicateTomlKeyIsSyntaxError) {
    EXPECT_EQ(error_of("[runtime]\nworkers = 2\nworkers = 3\n"),
              "t.toml:3:11: syntax: Error while parsing key-value pair: cannot redefine existing "
              "integer 'workers'");
}

TEST(ConfigTest, OddKeysAreQuotedInPath) {
    EXPECT_EQ(error_of(with("[runtime]\n\"work ers\" = 2\n")),
              "t.toml:2:1: runtime.\"work ers\": unknown key \"work ers\" (did you mean "
              "\"workers\"?)");
}

TEST(ConfigTest, EmbeddedNulIsRejected) {
    using namespace std::string_literals;
    std::string message =
        error_of("[runtime]\nworkers = 2\0\n"s + std::string(kListenerAndCluster));
    EXPECT_EQ(message.rfind("t.toml:2:", 0), 0u) << message;
    EXPECT_NE(message.find(": syntax: "), std::string::npos) << message;
}

TEST(ConfigTest, UnknownTopLevelKeySuggests) {
    EXPECT_EQ(error_of(with("[[listeners]]\nname = \"x\"\n")),
              "t.toml:1:3: listeners: unknown key \"listeners\" (did you mean \"listener\"?)");
}

TEST(ConfigTest, RuntimeKeyAtTopLevelGetsHint) {
    EXPECT_EQ(error_of(with("workers = 2\n")),
              "t.toml:1:1: workers: unknown key \"workers\" (it belongs in the [runtime] table)");
}

TEST(ConfigTest, UnknownRuntimeKeySuggests) {
    EXPECT_EQ(error_of(with("[runtime]\nworker = 2\n")),
              "t.toml:2:1: runtime.worker: unknown key \"worker\" (did you mean \"workers\"?)");
}

TEST(ConfigTest, LogLevelInRuntimePointsAtTheLogTable) {
    EXPECT_EQ(error_of(with("[runtime]\nlog_level = \"debug\"\n")),
              "t.toml:2:1: runtime.log_level: unknown key \"log_level\" (the log level is set as "
              "level in the [log] table)");
}

TEST(ConfigTest, LogDefaults) {
    Config config = load_string(with(""), "t.toml");
    EXPECT_EQ(config.log.format, ringlb::common::LogFormat::kText);
    EXPECT_EQ(config.log.level, ringlb::common::LogLevel::kInfo);
    EXPECT_EQ(config.log.access, "");
    EXPECT_FALSE(config.log.access_enabled());
}

TEST(ConfigTest, LogSection) {
    Config config = load_string(
        with("[log]\nformat = \"json\"\nlevel = \"warn\"\naccess = \"/var/log/ringlb/a.log\"\n"),
        "t.toml");
    EXPECT_EQ(config.log.format, ringlb::common::LogFormat::kJson);
    EXPECT_EQ(config.log.level, ringlb::common::LogLevel::kWarn);
    EXPECT_EQ(config.log.access, "/var/log/ringlb/a.log");
    EXPECT_TRUE(config.log.access_enabled());
    config = load_string(with("[log]\nformat = \"logfmt\"\naccess = \"stderr\"\n"), "t.toml");
    EXPECT_EQ(config.log.format, ringlb::common::LogFormat::kLogfmt);
    EXPECT_EQ(config.log.level, ringlb::common::LogLevel::kInfo);
    EXPECT_EQ(config.log.access, "stderr");
}

TEST(ConfigTest, LogErrors) {
    EXPECT_EQ(error_of(with("[log]\nformat = \"JSON\"\n")),
              "t.toml:2:10: log.format: expected one of \"text\", \"logfmt\", \"json\", got "
              "\"JSON\" (did you mean \"json\"?)");
    EXPECT_EQ(error_of(with("[log]\nlevel = \"warning\"\n")),
              "t.toml:2:9: log.level: expected one of \"debug\", \"info\", \"warn\", \"error\", "
              "got \"warning\"");
    EXPECT_EQ(error_of(with("[log]\nlevel = 2\n")),
              "t.toml:2:9: log.level: expected one of \"debug\", \"info\", \"warn\", \"error\", "
              "got integer 2");
    EXPECT_EQ(error_of(with("[log]\nformt = \"json\"\n")),
              "t.toml:2:1: log.formt: unknown key \"formt\" (did you mean \"format\"?)");
    EXPECT_EQ(error_of(with("[log]\nworkers = 2\n")),
              "t.toml:2:1: log.workers: unknown key \"workers\" (it belongs in the [runtime] "
              "table)");
    EXPECT_EQ(error_of(with("[runtime]\nformat = \"json\"\n")),
              "t.toml:2:1: runtime.format: unknown key \"format\" (it belongs in the [log] table)");
    EXPECT_EQ(error_of(with("access = \"stderr\"\n")),
              "t.toml:1:1: access: unknown key \"access\" (it belongs in the [log] table)");
    EXPECT_EQ(error_of(with("log = 1\n")), "t.toml:1:7: log: expected a table [log], got integer");
    const char* kExpected =
        "log.access: expected \"stderr\" or an absolute file path such as "
        "\"/var/log/ringlb/access.log\", got ";
    EXPECT_EQ(error_of(with("[log]\naccess = \"access.log\"\n")),
              std::string("t.toml:2:10: ") + kExpected + "\"access.log\"");
    EXPECT_EQ(error_of(with("[log]\naccess = \"\"\n")),
              std::string("t.toml:2:10: ") + kExpected + "\"\"");
    EXPECT_EQ(error_of(with("[log]\naccess = \"/var/log/\"\n")),
              std::string("t.toml:2:10: ") + kExpected + "\"/var/log/\"");
    EXPECT_EQ(error_of(with("[log]\naccess = \"/tmp/a\\nb\"\n")),
              "t.toml:2:10: log.access: a control character in the path \"/tmp/a\\u000ab\"");
    EXPECT_EQ(error_of(with("[log]\naccess = true\n")),
              "t.toml:2:10: log.access: expected a string, got boolean true");
    std::string long_path = "/" + std::string(4095, 'a');
    EXPECT_EQ(error_of(with("[log]\naccess = \"" + long_path + "\"\n")),
              "t.toml:2:10: log.access: a path of at most 4095 bytes, got 4096");
}

TEST(ConfigTest, UnknownClusterKeySuggests) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
bakends = [ { address = "127.0.0.1:9001" } ]
)"),
              "t.toml:7:1: cluster[0].bakends: unknown key \"bakends\" (did you mean "
              "\"backends\"?)");
}

TEST(ConfigTest, UnknownBackendKeyReportsFirstInFile) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" }, { zzz = 1, adress = "127.0.0.1:9002" } ]
)"),
              "t.toml:7:48: cluster[0].backends[1].zzz: unknown key \"zzz\"");
}

TEST(ConfigTest, WorkersWrongType) {
    EXPECT_EQ(error_of(with("[runtime]\nworkers = true\n")),
              "t.toml:2:11: runtime.workers: expected \"auto\" or an integer 1..1024, got "
              "boolean true");
}

TEST(ConfigTest, WorkersOutOfRange) {
    EXPECT_EQ(error_of(with("[runtime]\nworkers = 0\n")),
              "t.toml:2:11: runtime.workers: expected \"auto\" or an integer 1..1024, got "
              "integer 0");
    EXPECT_EQ(error_of(with("[runtime]\nworkers = 1025\n")),
              "t.toml:2:11: runtime.workers: expected \"auto\" or an integer 1..1024, got "
              "integer 1025");
    EXPECT_EQ(error_of(with("[runtime]\nworkers = \"all\"\n")),
              "t.toml:2:11: runtime.workers: expected \"auto\" or an integer 1..1024, got "
              "\"all\"");
}

TEST(ConfigTest, UpgradeSocketIsAnAbsolutePath) {
    EXPECT_EQ(load_string(with("[runtime]\nupgrade_socket = \"/run/ringlb/up.sock\"\n"), "t.toml")
                  .runtime.upgrade_socket,
              "/run/ringlb/up.sock");
    EXPECT_EQ(error_of(with("[runtime]\nupgrade_socket = \"up.sock\"\n")),
              "t.toml:2:18: runtime.upgrade_socket: expected an absolute path of at most 107 "
              "bytes such as \"/run/ringlb/upgrade.sock\", got \"up.sock\"");
    EXPECT_NE(error_of(with("[runtime]\nupgrade_socket = \"/" + std::string(120, 'a') + "\"\n"))
                  .find("at most 107 bytes"),
              std::string::npos);
}

TEST(ConfigTest, DrainDurationsAreCheckedWithTheirPosition) {
    EXPECT_EQ(error_of(with("[runtime]\ndrain_delay = 5\n")),
              "t.toml:2:15: runtime.drain_delay: expected a duration string like \"2s\" or "
              "\"250ms\", got integer 5");
    EXPECT_EQ(error_of(with("[runtime]\nworkers = 1\ndrain_timeout = \"2h\"\n")),
              "t.toml:3:17: runtime.drain_timeout: must be at most 1h (\"0s\" waits for no "
              "session), got \"2h\"");
    EXPECT_EQ(error_of(with("[runtime]\ndrain_spread = \"1.5s\"\n")).substr(0, 52),
              "t.toml:2:16: runtime.drain_spread: invalid duration ");
    // A drain key outside [runtime] says where it belongs.
    EXPECT_NE(error_of(with("drain_delay = \"1s\"\n")).find("(it belongs in the [runtime] table)"),
              std::string::npos);
}

TEST(ConfigTest, PinCpusMustBeBoolean) {
    EXPECT_EQ(error_of(with("[runtime]\npin_cpus = \"yes\"\n")),
              "t.toml:2:12: runtime.pin_cpus: expected true or false, got \"yes\"");
}

TEST(ConfigTest, EngineMustBeKnown) {
    EXPECT_EQ(error_of(with("[runtime]\nengine = \"iouring\"\n")),
              "t.toml:2:10: runtime.engine: expected one of \"auto\", \"io_uring\", \"epoll\", "
              "got \"iouring\" (did you mean \"io_uring\"?)");
    EXPECT_EQ(error_of(with("[runtime]\nengine = 1\n")),
              "t.toml:2:10: runtime.engine: expected one of \"auto\", \"io_uring\", \"epoll\", "
              "got integer 1");
    EXPECT_EQ(error_of(with("[runtime]\nengine = \"EPOLL\"\n")),
              "t.toml:2:10: runtime.engine: expected one of \"auto\", \"io_uring\", \"epoll\", "
              "got \"EPOLL\" (did you mean \"epoll\"?)");
}

TEST(ConfigTest, BufferSizeRange) {
    EXPECT_EQ(error_of(with("[runtime]\nbuffer_size = 1024\n")),
              "t.toml:2:15: runtime.buffer_size: must be between 4096 and 1048576, got 1024");
    EXPECT_EQ(error_of(with("[runtime]\nbuffer_size = \"64k\"\n")),
              "t.toml:2:15: runtime.buffer_size: expected an integer, got \"64k\"");
    EXPECT_EQ(error_of(with("[runtime]\nbuffer_size = 65536.0\n")),
              "t.toml:2:15: runtime.buffer_size: expected an integer, got float 65536");
}

TEST(ConfigTest, BufferCountMustBePowerOfTwo) {
    EXPECT_EQ(error_of(with("[runtime]\nbuffer_count = 100\n")),
              "t.toml:2:16: runtime.buffer_count: must be a power of two, got 100");
    EXPECT_EQ(error_of(with("[runtime]\nbuffer_count = 65536\n")),
              "t.toml:2:16: runtime.buffer_count: must be between 16 and 32768, got 65536");
    EXPECT_EQ(load_string(with("[runtime]\nbuffer_count = 16\n"), "t").runtime.buffer_count, 16u);
}

TEST(ConfigTest, PipeSizeAndPoolRanges) {
    EXPECT_EQ(error_of(with("[runtime]\npipe_size = 2097152\n")),
              "t.toml:2:13: runtime.pipe_size: must be between 4096 and 1048576, got 2097152");
    EXPECT_EQ(error_of(with("[runtime]\npipe_pool = -1\n")),
              "t.toml:2:13: runtime.pipe_pool: must be between 0 and 65536, got -1");
    EXPECT_EQ(load_string(with("[runtime]\npipe_pool = 65536\n"), "t").runtime.pipe_pool, 65536u);
}

TEST(ConfigTest, RuntimeMustBeATable) {
    EXPECT_EQ(error_of(with("runtime = 4\n")),
              "t.toml:1:11: runtime: expected a table [runtime], got integer");
}

TEST(ConfigTest, ForwardMustBeKnown) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[listener]]
name = "alt"
bind = "127.0.0.1:8081"
cluster = "app"
forward = "zerocopy"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)"),
              "t.toml:9:11: listener[1].forward: expected one of \"auto\", \"splice\", "
              "\"buffered\", got \"zerocopy\"");
}

TEST(ConfigTest, BacklogRange) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
backlog = 0
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)"),
              "t.toml:5:11: listener[0].backlog: must be between 1 and 65535, got 0");
}

TEST(ConfigTest, ListenerIsRequired) {
    EXPECT_EQ(error_of("[runtime]\n[[cluster]]\nname = \"app\"\n"
                       "backends = [ { address = \"127.0.0.1:9001\" } ]\n"),
              "t.toml:1:1: listener: at least one [[listener]] section is required");
    EXPECT_EQ(error_of("listener = []\n"),
              "t.toml:1:12: listener: at least one [[listener]] section is required");
}

TEST(ConfigTest, ListenerWrittenAsSingleTable) {
    EXPECT_EQ(error_of("[listener]\nname = \"web\"\n"),
              "t.toml:1:1: listener: expected [[listener]] sections (an array of tables), got "
              "table");
}

TEST(ConfigTest, MissingRequiredKeyPointsAtHeader) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"

  [[listener]]
  name = "alt"
  cluster = "app"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)"),
              "t.toml:6:3: listener[1].bind: missing required key \"bind\"");
    EXPECT_EQ(error_of("[[listener]]\nbind = \"127.0.0.1:1\"\n"),
              "t.toml:1:1: listener[0].name: missing required key \"name\"");
}

TEST(ConfigTest, InvalidName) {
    EXPECT_EQ(error_of("[[listener]]\nname = \"my web\"\n"),
              "t.toml:2:8: listener[0].name: invalid name \"my web\" (use letters, digits, '_', "
              "'.' and '-'; at least one character)");
    EXPECT_EQ(error_of("[[listener]]\nname = \"\"\n"),
              "t.toml:2:8: listener[0].name: invalid name \"\" (use letters, digits, '_', '.' "
              "and '-'; at least one character)");
}

TEST(ConfigTest, DuplicateListenerNameAndBind) {
    // kListenerAndCluster's listener "web" on 127.0.0.1:8080 becomes listener[1], lines 5-8.
    EXPECT_EQ(error_of(with("[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8081\"\n"
                            "cluster = \"app\"\n")),
              "t.toml:6:8: listener[1].name: duplicate listener name \"web\" (also used by "
              "listener[0])");
    EXPECT_EQ(error_of(with("[[listener]]\nname = \"web2\"\nbind = \"127.0.0.1:8080\"\n"
                            "cluster = \"app\"\n")),
              "t.toml:7:8: listener[1].bind: address \"127.0.0.1:8080\" is already bound by "
              "listener[0] (\"web2\", \"127.0.0.1:8080\" at line 3)");
}

TEST(ConfigTest, BadAddresses) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "localhost:8080"
)"),
              "t.toml:3:8: listener[0].bind: invalid address \"localhost:8080\": invalid IP "
              "address \"localhost\" (host names are not resolved)");
    EXPECT_EQ(error_of("[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n"),
              "t.toml:3:8: listener[0].bind: port 0 is not allowed in \"127.0.0.1:0\"");
    EXPECT_EQ(error_of("[[listener]]\nname = \"web\"\nbind = 8080\n"),
              "t.toml:3:8: listener[0].bind: expected a string, got integer 8080");
}

TEST(ConfigTest, UndefinedClusterSuggestsNearest) {
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "api"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)"),
              "t.toml:4:11: listener[0].cluster: cluster \"api\" is not defined (did you mean "
              "\"app\"?)");
    EXPECT_EQ(error_of(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "payments"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)"),
              "t.toml:4:11: listener[0].cluster: cluster \"payments\" is not defined");
}

TEST(ConfigTest, ClusterIsRequired) {
    EXPECT_EQ(error_of("[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n"
                       "cluster = \"app\"\n"),
              "t.toml:1:1: cluster: at least one [[cluster]] section is required");
}

TEST(ConfigTest, DuplicateClusterName) {
    EXPECT_EQ(
        error_of(with("")  // cluster[0] = "app" at line 5
                 + "[[cluster]]\nname = \"app\"\nbackends = [ { address = \"127.0.0.1:1\" } ]\n"),
        "t.toml:9:8: cluster[1].name: duplicate cluster name \"app\" (also used by "
        "cluster[0])");
}

TEST(ConfigTest, BackendsMustBeNonEmptyArrayOfTables) {
    constexpr std::string_view kHead = R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
)";
    EXPECT_EQ(error_of(std::string(kHead) + "backends = []\n"),
              "t.toml:7:12: cluster[0].backends: at least one backend is required");
    EXPECT_EQ(error_of(std::string(kHead)),
              "t.toml:5:1: cluster[0].backends: missing required key \"backends\"");
    EXPECT_EQ(error_of(std::string(kHead) + "backends = \"127.0.0.1:9001\"\n"),
              "t.toml:7:12: cluster[0].backends: expected an array of backends like [ { address "
              "= \"127.0.0.1:9001\" } ], got \"127.0.0.1:9001\"");
    EXPECT_EQ(error_of(std::string(kHead) +
                       "backends = [ { address = \"127.0.0.1:9001\" }, \"127.0.0.1:9002\" ]\n"),
              "t.toml:7:46: cluster[0].backends[1]: expected a table like { address = "
              "\"127.0.0.1:9001\" }, got \"127.0.0.1:9002\"");
}

TEST(ConfigTest, BackendAddressAndWeight) {
    constexpr std::string_view kHead = R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
)";
    EXPECT_EQ(error_of(std::string(kHead) +
                       "backends = [ { address = \"127.0.0.1:9001\" }, { weight = 2 } ]\n"),
              "t.toml:7:46: cluster[0].backends[1].address: missing required key \"address\"");
    EXPECT_EQ(error_of(std::string(kHead) + "backends = [ { address = \"127.0.0.1:9001\" },\n"
                                            "  { address = \"127.0.0.1:9002\" },\n"
                                            "  { address = \"10.0.0.1\" } ]\n"),
              "t.toml:9:15: cluster[0].backends[2].address: invalid address \"10.0.0.1\": "
              "expected \"ip:port\" (a backend is IP:PORT or NAME:PORT)");
    EXPECT_EQ(error_of(std::string(kHead) +
                       "backends = [ { address = \"127.0.0.1:9001\", weight = 0 } ]\n"),
              "t.toml:7:53: cluster[0].backends[0].weight: must be between 1 and 1000, got 0");
}

TEST(ConfigTest, ConnectTimeoutValidation) {
    auto config_with_timeout = [](std::string_view value) {
        return std::string(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
connect_timeout = )") +
               std::string(value) + "\nbackends = [ { address = \"127.0.0.1:9001\" } ]\n";
    };
    EXPECT_EQ(load_string(config_with_timeout("\"1h\""), "t").clusters[0].connect_timeout,
              Millis(3600000));
    EXPECT_EQ(error_of(config_with_timeout("2")),
              "t.toml:7:19: cluster[0].connect_timeout: expected a duration string like \"2s\" "
              "or \"250ms\", got integer 2");
    EXPECT_EQ(error_of(config_with_timeout("\"2\"")),
              "t.toml:7:19: cluster[0].connect_timeout: invalid duration \"2\": missing unit "
              "(ms, s, m or h), e.g. \"2s\"");
    EXPECT_EQ(error_of(config_with_timeout("\"0s\"")),
              "t.toml:7:19: cluster[0].connect_timeout: must be greater than 0, got \"0s\"");
    EXPECT_EQ(error_of(config_with_timeout("\"61m\"")),
              "t.toml:7:19: cluster[0].connect_timeout: must be at most 1h, got \"61m\"");
}

TEST(ConfigTest, ParseDurationAcceptsUnits) {
    EXPECT_EQ(parse_duration("250ms"), Millis(250));
    EXPECT_EQ(parse_duration("5s"), Millis(5000));
    EXPECT_EQ(parse_duration("1m"), Millis(60000));
    EXPECT_EQ(parse_duration("1h"), Millis(3600000));
    EXPECT_EQ(parse_duration("0ms"), Millis(0));
}

TEST(ConfigTest, ParseDurationRejectsBadInput) {
    auto reason = [](std::string_view text) -> std::string {
        try {
            parse_duration(text);
        } catch (const std::invalid_argument& error) {
            return error.what();
        }
        return "<accepted>";
    };
    EXPECT_EQ(reason(""), "empty duration");
    EXPECT_EQ(reason("5"), "missing unit (ms, s, m or h), e.g. \"5s\"");
    EXPECT_EQ(reason("1.5s"),
              "fractional values are not supported; use a smaller unit, e.g. \"1500ms\"");
    EXPECT_EQ(reason("5sec"), "unknown unit \"sec\" (expected ms, s, m or h)");
    EXPECT_EQ(reason("5 s"), "unknown unit \" s\" (expected ms, s, m or h)");
    EXPECT_EQ(reason("-1s"), "negative durations are not allowed");
    EXPECT_EQ(reason("s"), "expected an integer followed by a unit (ms, s, m or h), e.g. \"2s\"");
    EXPECT_EQ(reason("99999999999999999999ms"), "value is too large");
    EXPECT_EQ(reason("9223372036854775807h"), "value is too large");
}

TEST(ConfigTest, EnumNames) {
    EXPECT_STREQ(to_string(EngineKind::kAuto), "auto");
    EXPECT_STREQ(to_string(EngineKind::kIoUring), "io_uring");
    EXPECT_STREQ(to_string(EngineKind::kEpoll), "epoll");
    EXPECT_STREQ(to_string(ForwardMode::kAuto), "auto");
    EXPECT_STREQ(to_string(ForwardMode::kSplice), "splice");
    EXPECT_STREQ(to_string(ForwardMode::kBuffered), "buffered");
    EXPECT_STREQ(to_string(Balance::kRoundRobin), "round_robin");
    EXPECT_STREQ(to_string(Balance::kLeastConn), "least_conn");
    EXPECT_STREQ(to_string(Balance::kRandomTwo), "random_two");
    EXPECT_STREQ(to_string(Balance::kLeastTime), "least_time");
    EXPECT_STREQ(to_string(Balance::kMaglev), "maglev");
    EXPECT_STREQ(to_string(HashKey::kSourceIp), "source_ip");
    EXPECT_STREQ(to_string(HashKey::kSourceIpPort), "source_ip_port");
    EXPECT_STREQ(to_string(ClosePolicy::kGraceful), "graceful");
    EXPECT_STREQ(to_string(ClosePolicy::kReset), "reset");
}

TEST(ConfigTest, LoadFileReadsTempFile) {
    char path[] = "/tmp/ringlb_config_test_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string text = "[runtime]\nworkers = 3\n" + std::string(kListenerAndCluster);
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
    Config config = load_file(path);
    EXPECT_EQ(config.source, path);
    EXPECT_EQ(config.runtime.workers, 3u);

    // Errors name the file itself.
    std::ofstream(path) << "[runtime]\nworkers = -1\n";
    try {
        load_file(path);
        ADD_FAILURE() << "expected a ConfigError";
    } catch (const ConfigError& error) {
        EXPECT_EQ(std::string(error.what()),
                  std::string(path) +
                      ":2:11: runtime.workers: expected \"auto\" or an integer "
                      "1..1024, got integer -1");
    }
    unlink(path);
}

TEST(ConfigTest, LoadFileMissingOrUnreadable) {
    try {
        load_file("/nonexistent/ringlb.toml");
        ADD_FAILURE() << "expected a ConfigError";
    } catch (const ConfigError& error) {
        EXPECT_STREQ(error.what(),
                     "/nonexistent/ringlb.toml: cannot read: No such file or directory");
    }
    try {
        load_file("/tmp");
        ADD_FAILURE() << "expected a ConfigError";
    } catch (const ConfigError& error) {
        EXPECT_STREQ(error.what(),
                     "/tmp: not a regular file (it is a directory); give the path of a TOML file");
    }
}

// The message of the ConfigError that load_file(path) throws, or a marker if it loads.
std::string file_error_of(const std::string& path) {
    try {
        load_file(path);
    } catch (const ConfigError& error) {
        return error.what();
    }
    return "<loaded without error>";
}

TEST(ConfigTest, LoadFileRefusesWhatIsNotARegularFile) {
    EXPECT_EQ(file_error_of("/dev/zero"),
              "/dev/zero: not a regular file (it is a character device); give the path of a "
              "TOML file");
    char dir[] = "/tmp/ringlb_config_test_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    // Opening a FIFO without a writer would block a reader that did not ask for O_NONBLOCK.
    std::string fifo = std::string(dir) + "/fifo.toml";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_EQ(file_error_of(fifo),
              fifo + ": not a regular file (it is a FIFO); give the path of a TOML file");
    unlink(fifo.c_str());
    rmdir(dir);
}

TEST(ConfigTest, LoadFileRefusesAFileAboveTheSizeLimit) {
    char path[] = "/tmp/ringlb_config_test_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    // Sparse: no disk space used. At the limit the file is read and parsed (NUL bytes are a
    // syntax error); one byte more is refused before reading.
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(kMaxConfigBytes)), 0);
    std::string at_limit = file_error_of(path);
    EXPECT_EQ(at_limit.rfind(std::string(path) + ":1:1: syntax: ", 0), 0u) << at_limit;
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(kMaxConfigBytes) + 1), 0);
    EXPECT_EQ(file_error_of(path), std::string(path) +
                                       ": 16777217 bytes is above the limit of 16 MiB "
                                       "(16777216 bytes) for a configuration file");
    close(fd);
    unlink(path);
}

TEST(ConfigTest, LoadStringRefusesTextAboveTheSizeLimit) {
    std::string text = std::string(kListenerAndCluster) + "#";
    text.resize(kMaxConfigBytes + 1, 'x');
    EXPECT_EQ(error_of(text),
              "t.toml: 16777217 bytes is above the limit of 16 MiB (16777216 bytes) for a "
              "configuration file");
    text.resize(kMaxConfigBytes);  // one long comment
    EXPECT_EQ(error_of(text), "<loaded without error>");
}

// "a.a. ... .a" with `parts` parts.
std::string dotted(size_t parts) {
    std::string key = "a";
    for (size_t i = 1; i < parts; ++i) key += ".a";
    return key;
}

constexpr std::string_view kTooDeepKey =
    "syntax: a dotted key or table name with more than 32 parts; ringlb's configuration never "
    "nests that deep";

TEST(ConfigTest, DeepDottedKeysAreRefusedBeforeParsing) {
    // The reproduction of issue 17: toml++ itself overflows the stack on these.
    EXPECT_EQ(error_of("[" + dotted(40001) + "]\n"), "t.toml:1:2: " + std::string(kTooDeepKey));
    EXPECT_EQ(error_of(dotted(40001) + " = 1\n"), "t.toml:1:1: " + std::string(kTooDeepKey));
    // The limit itself passes the scan; the loader then names the unknown key.
    EXPECT_EQ(error_of(with("[" + dotted(kMaxKeyParts) + "]\n")),
              "t.toml:1:2: a: unknown key \"a\"");
    // Quoted parts, spaces and tabs around the dots.
    EXPECT_EQ(error_of(with("x = 1\n[\"a\" . 'b'.\tc." + dotted(kMaxKeyParts - 2) + "]\n")),
              "t.toml:2:2: " + std::string(kTooDeepKey));
    EXPECT_EQ(error_of(cluster_with("pool = { " + dotted(33) + " = 1 }\n")),
              "t.toml:8:10: " + std::string(kTooDeepKey));
}

TEST(ConfigTest, DeepArraysAndInlineTablesAreRefusedBeforeParsing) {
    auto nested = [](size_t depth, std::string_view open, std::string_view close) {
        std::string value;
        for (size_t i = 0; i < depth; ++i) value += open;
        for (size_t i = 0; i < depth; ++i) value += close;
        return "x = " + value + "\n";
    };
    constexpr std::string_view kTooDeep =
        "syntax: arrays or inline tables nested more than 64 deep; ringlb's configuration never "
        "nests that deep";
    EXPECT_EQ(error_of(with(nested(kMaxNesting + 1, "[", "]"))),
              "t.toml:1:69: " + std::string(kTooDeep));
    // Reported where the nesting is deepest.
    EXPECT_EQ(error_of(with(nested(200, "{a=", "}"))), "t.toml:1:602: " + std::string(kTooDeep));
    EXPECT_EQ(error_of(with(nested(kMaxNesting, "[", "]"))), "t.toml:1:1: x: unknown key \"x\"");
}

// Dots inside strings and comments are no key parts: a config full of them loads.
TEST(ConfigTest, DotsInStringsAndCommentsAreNotKeyParts) {
    std::string name = dotted(100);
    std::string text = "# " + name + "\n[[listener]]\nname = \"" + name +
                       "1\"\nbind = \"127.0.0.1:1\"\ncluster = \"app\"  # " + name +
                       "\n[[listener]]\nname = '''" + name +
                       "2'''\nbind = \"127.0.0.1:2\"\ncluster = \"app\"\n[[listener]]\nname = "
                       "\"\"\"\n" +
                       name + "3\"\"\"\nbind = \"127.0.0.1:3\"\ncluster = \"app\"\n";
    Config config = load_string(with(text), "t.toml");
    ASSERT_EQ(config.listeners.size(), 4u);
    EXPECT_EQ(config.listeners[0].name, name + "1");
    EXPECT_EQ(config.listeners[1].name, name + "2");
    EXPECT_EQ(config.listeners[2].name, name + "3");  // the newline after """ is not content
}

TEST(ConfigTest, MeasureShapeCountsKeyPartsOutsideStringsAndComments) {
    auto parts = [](std::string_view text) { return measure_shape(text).key_parts; };
    EXPECT_EQ(parts(""), 0u);
    EXPECT_EQ(parts("a = 1"), 1u);
    EXPECT_EQ(parts("a.b.c = 1"), 3u);
    EXPECT_EQ(parts("[ a . \"b.c\" .\t'd.e' ]"), 3u);
    EXPECT_EQ(parts("a = 1.5"), 2u);  // a float is a run of two, harmlessly
    EXPECT_EQ(parts("a = \"x.y.z.w\""), 1u);
    EXPECT_EQ(parts("a = 'x.y.z.w'"), 1u);
    EXPECT_EQ(parts("# x.y.z.w\na = 1"), 1u);
    EXPECT_EQ(parts("a = 1 # x.y.z.w"), 1u);
    EXPECT_EQ(parts("a = \"# x\" \nb.c.d = 1"), 3u);  // '#' in a string opens no comment
    EXPECT_EQ(parts("a = \"x\\\".y.z.w\""), 1u);      // an escaped quote does not end it
    EXPECT_EQ(parts("a = 'x\\' b.c.d"), 3u);          // a literal string has no escapes
    EXPECT_EQ(parts("a = \"\"\"\nx.y.z\n\"\"\""), 1u);
    EXPECT_EQ(parts("a = '''\nx.y.z\n'''"), 1u);
    EXPECT_EQ(parts("a = \"\"\"x\\\"\"\"y.z.w\"\"\""), 1u);  // \""" does not close
    EXPECT_EQ(parts("a = \"\"\"x\"\"\"\"\" b.c"), 2u);       // """x""""" is x"" and closes
    EXPECT_EQ(parts("a = '''x''''' b.c"), 2u);
    EXPECT_EQ(parts("a = \"x.y\nb.c.d = 1"), 3u);  // an unterminated string ends at the line
    EXPECT_EQ(parts("a.b\n.c"), 2u);               // keys never span lines
    EXPECT_EQ(parts("a..b.c"), 2u);
    EXPECT_EQ(parts("a b.c"), 2u);
}

TEST(ConfigTest, MeasureShapeReportsWhereTheLongestRunStarts) {
    TextShape shape = measure_shape("x = 1\n  \"é\" = 2, b.c.d = 3 # e.f.g.h\n");
    EXPECT_EQ(shape.key_parts, 3u);
    EXPECT_EQ(shape.key_at.line, 2u);
    EXPECT_EQ(shape.key_at.column, 12u);  // columns count code points: "é" is one
}

TEST(ConfigTest, MeasureShapeCountsNestingOutsideStringsAndComments) {
    auto nesting = [](std::string_view text) { return measure_shape(text).nesting; };
    EXPECT_EQ(nesting("a = 1"), 0u);
    EXPECT_EQ(nesting("[[a]]\n[b]"), 2u);
    EXPECT_EQ(nesting("a = [[[1]], [2]]"), 3u);
    EXPECT_EQ(nesting("a = [{ b = [1] }]"), 3u);
    EXPECT_EQ(nesting("a = \"[[[[\" # {{{{\nb = '[[[['"), 0u);
    EXPECT_EQ(nesting("a = [\"]]]\", [ ] ]"), 2u);
    EXPECT_EQ(nesting("]]]] a = [[1]]"), 2u);  // stray closers do not count below zero
    TextShape shape = measure_shape("a = [1]\nb = [[\n  [3]]]");
    EXPECT_EQ(shape.nesting, 3u);
    EXPECT_EQ(shape.nesting_at.line, 3u);
    EXPECT_EQ(shape.nesting_at.column, 3u);
}

TEST(ConfigTest, MeasureShapeFindsNonAsciiWhereTomlppMustNotSeeIt) {
    using NonAscii = TextShape::NonAscii;
    auto non_ascii = [](std::string_view text) { return measure_shape(text).non_ascii; };
    // Comments and a byte order mark may hold any UTF-8; escapes are ASCII.
    for (std::string_view fine : {"# é", "a = 1 # é", "a = \"\\u00e9\"", "a = '''x'''  # é",
                                  "\xEF\xBB\xBF"
                                  "a = 1"})
        EXPECT_EQ(non_ascii(fine), NonAscii::kNone) << fine;
    TextShape outside = measure_shape("a = 1\nb = 1é");
    EXPECT_EQ(outside.non_ascii, NonAscii::kOutsideStrings);
    EXPECT_EQ(outside.non_ascii_at.line, 2u);
    EXPECT_EQ(outside.non_ascii_at.column, 6u);
    EXPECT_EQ(non_ascii("é = 1"), NonAscii::kOutsideStrings);
    EXPECT_EQ(non_ascii("\xcc\xaa"), NonAscii::kOutsideStrings);  // found by the fuzzer
    // In strings of every kind, and in what looks like a string after a bad value (the last one,
    // found by the fuzzer: toml++ collects `"é` as the bad value's text).
    for (std::string_view text :
         {"a = \"é\"", "a = 'é'", "\"é\" = 1", "[a.'é']", "a = \"\"\"é\"\"\"", "a = '''\\\né'''",
          "a = \"\"\"\\\\é\"\"\"", "a = \"\\é\"", "a = \"\"\"\\é\"\"\"", "[a.\"\"]\nd=1\"é"})
        EXPECT_EQ(non_ascii(text), NonAscii::kInString) << text;
    TextShape after = measure_shape("a = \"\"\"x\\  \n\n\t§\"\"\"");
    EXPECT_EQ(after.non_ascii, NonAscii::kInString);
    EXPECT_EQ(after.non_ascii_at.line, 3u);
    EXPECT_EQ(after.non_ascii_at.column, 2u);
}

TEST(ConfigTest, NonAsciiOutsideCommentsIsRefusedBeforeParsing) {
    EXPECT_EQ(error_of(with("x = 1\u00a0\n")),
              "t.toml:1:6: syntax: a non-ASCII character outside a string or comment (TOML keys "
              "and values other than strings are ASCII)");
    EXPECT_EQ(error_of(with("x = \"\"\"\\\n  é\"\"\"\n")),
              "t.toml:2:3: syntax: a non-ASCII character in a string: outside comments ringlb's "
              "configuration is ASCII (the TOML parser, toml++ 3.3, misbehaves on some non-ASCII "
              "input); write it as a \\u escape");
    // In comments it is fine, and so is a byte order mark.
    Config config =
        load_string("\xEF\xBB\xBF# é\n" + std::string(kListenerAndCluster) + "# é\n", "t.toml");
    EXPECT_EQ(config.listeners.size(), 1u);
}

// Two listeners, `first` bound at line 3 and `second` at line 7: the error, or "" if it loads.
std::string bind_error(std::string_view first, std::string_view second) {
    std::string text = "[[listener]]\nname = \"one\"\nbind = \"" + std::string(first) +
                       "\"\ncluster = \"app\"\n[[listener]]\nname = \"two\"\nbind = \"" +
                       std::string(second) +
                       "\"\ncluster = \"app\"\n[[cluster]]\nname = \"app\"\nbackends = [ { "
                       "address = \"127.0.0.1:9001\" } ]\n";
    std::string error = error_of(text);
    return error == "<loaded without error>" ? "" : error;
}

TEST(ConfigTest, SameBindSpelledTwoWaysIsRefused) {
    EXPECT_EQ(bind_error("127.0.0.1:80", "[::ffff:127.0.0.1]:80"),
              "t.toml:7:8: listener[1].bind: address \"[::ffff:127.0.0.1]:80\" is already bound "
              "by listener[0] (\"one\", \"127.0.0.1:80\" at line 3)");
    EXPECT_EQ(bind_error("[::1]:80", "[0:0::1]:80"),
              "t.toml:7:8: listener[1].bind: address \"[0:0::1]:80\" is already bound by "
              "listener[0] (\"one\", \"[::1]:80\" at line 3)");
    EXPECT_EQ(bind_error("[::ffff:0.0.0.0]:80", "0.0.0.0:80"),
              "t.toml:7:8: listener[1].bind: address \"0.0.0.0:80\" is already bound by "
              "listener[0] (\"one\", \"[::ffff:0.0.0.0]:80\" at line 3)");
}

TEST(ConfigTest, OverlappingBindsAreRefused) {
    constexpr std::string_view kAllIpv4 =
        ": 0.0.0.0 takes connections for every IPv4 address of its port; both would bind, and "
        "the kernel would hand each connection to only one of them";
    constexpr std::string_view kAllIp =
        ": [::] takes connections for every IPv6 address and, as ringlb leaves IPV6_V6ONLY off, "
        "for every IPv4 address of its port; both would bind, and the kernel would hand each "
        "connection to only one of them";
    auto overlap = [](std::string_view second, std::string_view first, std::string_view why) {
        return "t.toml:7:8: listener[1].bind: address \"" + std::string(second) +
               "\" overlaps listener[0] (\"one\", \"" + std::string(first) + "\" at line 3)" +
               std::string(why);
    };
    for (auto [first, second] : {std::pair{"0.0.0.0:80", "127.0.0.1:80"},
                                 {"127.0.0.1:80", "0.0.0.0:80"},
                                 {"0.0.0.0:80", "[::ffff:127.0.0.2]:80"},
                                 {"[::ffff:0.0.0.0]:80", "127.0.0.1:80"}})
        EXPECT_EQ(bind_error(first, second), overlap(second, first, kAllIpv4));
    for (auto [first, second] : {std::pair{"[::]:80", "0.0.0.0:80"},
                                 {"0.0.0.0:80", "[::]:80"},
                                 {"[::]:80", "127.0.0.1:80"},
                                 {"[::1]:80", "[::]:80"},
                                 {"[::]:80", "[::ffff:127.0.0.1]:80"},
                                 {"[::]:80", "[::ffff:0.0.0.0]:80"}})
        EXPECT_EQ(bind_error(first, second), overlap(second, first, kAllIp));
}

TEST(ConfigTest, BindsThatDoNotOverlapLoad) {
    for (auto [first, second] : {std::pair{"127.0.0.1:80", "127.0.0.2:80"},
                                 {"0.0.0.0:80", "0.0.0.0:81"},
                                 {"0.0.0.0:80", "[::1]:80"},  // 0.0.0.0 takes no IPv6
                                 {"[::ffff:0.0.0.0]:80", "[::1]:80"},
                                 {"[::]:80", "[::]:81"},
                                 {"[::1]:80", "127.0.0.1:80"}})
        EXPECT_EQ(bind_error(first, second), "") << first << " and " << second;
}

// Of several earlier listeners a bind collides with, the first in the file is named.
TEST(ConfigTest, OverlapNamesTheEarliestListener) {
    std::string text;
    const char* binds[] = {"[::1]:80", "0.0.0.0:81", "127.0.0.1:80", "[::]:80"};
    for (int i = 0; i < 4; ++i)
        text += "[[listener]]\nname = \"l" + std::to_string(i) + "\"\nbind = \"" + binds[i] +
                "\"\ncluster = \"app\"\n";
    text += "[[cluster]]\nname = \"app\"\nbackends = [ { address = \"127.0.0.1:9001\" } ]\n";
    std::string error = error_of(text);
    EXPECT_EQ(error.rfind("t.toml:15:8: listener[3].bind: address \"[::]:80\" overlaps "
                          "listener[0] (\"l0\", \"[::1]:80\" at line 3): [::] ",
                          0),
              0u)
        << error;
}

// Hints compare short words only; a megabyte-long name must not ask for terabytes.
TEST(ConfigTest, HugeNamesAndKeysGetNoHint) {
    std::string huge(1 << 16, 'x');
    std::string text = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\ncluster = \"" + huge +
                       "\"\n[[cluster]]\nname = \"" + huge +
                       "y\"\nbackends = [ { address = \"127.0.0.1:9001\" } ]\n";
    EXPECT_EQ(error_of(text),
              "t.toml:4:11: listener[0].cluster: cluster \"" + huge + "\" is not defined");
    EXPECT_EQ(error_of(with("[runtime]\n" + huge + " = 1\n")),
              "t.toml:2:1: runtime." + huge + ": unknown key \"" + huge + "\"");
    EXPECT_EQ(error_of(with("[runtime]\nengine = \"" + huge + "\"\n")),
              "t.toml:2:10: runtime.engine: expected one of \"auto\", \"io_uring\", \"epoll\", "
              "got \"" +
                  huge + "\"");
}

TEST(ConfigTest, AdminIsOptionalAndOffByDefault) {
    Config config = load_string(kListenerAndCluster, "t.toml");
    EXPECT_FALSE(config.admin.enabled);
}

TEST(ConfigTest, AdminBindIsParsed) {
    std::string text = std::string(kListenerAndCluster) + "[admin]\nbind = \"127.0.0.1:9901\"\n";
    Config config = load_string(text, "t.toml");
    EXPECT_TRUE(config.admin.enabled);
    EXPECT_EQ(config.admin.bind.port(), 9901);
    EXPECT_EQ(config.admin.bind_text, "127.0.0.1:9901");
}

TEST(ConfigTest, AdminErrorsNameTheKey) {
    std::string missing = std::string(kListenerAndCluster) + "[admin]\n";
    EXPECT_NE(error_of(missing).find("t.toml:8:1: admin.bind: missing required key"),
              std::string::npos)
        << error_of(missing);
    std::string bad = std::string(kListenerAndCluster) + "[admin]\nbind = \"localhost:1\"\n";
    EXPECT_NE(error_of(bad).find("t.toml:9:8: admin.bind: invalid address"), std::string::npos)
        << error_of(bad);
    std::string unknown = std::string(kListenerAndCluster) + "[admin]\nbnd = \"127.0.0.1:1\"\n";
    EXPECT_NE(error_of(unknown).find("t.toml:9:1: admin.bnd: unknown key \"bnd\""),
              std::string::npos)
        << error_of(unknown);
}

// ---- Session timeouts, keepalive and the upstream connector's keys ----

TEST(ConfigTest, NewKeysHaveTheirDefaults) {
    Config config = load_string(kListenerAndCluster, "min.toml");
    const auto& listener = config.listeners[0];
    EXPECT_EQ(listener.idle_timeout, Millis(3600000));
    EXPECT_EQ(listener.client_idle_timeout, Millis(0));
    EXPECT_EQ(listener.half_closed_timeout, Millis(0));
    EXPECT_EQ(listener.max_duration, Millis(0));
    EXPECT_EQ(listener.max_duration_jitter, Millis(0));
    EXPECT_FALSE(listener.tcp_keepalive.enabled);
    EXPECT_EQ(listener.tcp_user_timeout, Millis(0));

    const auto& cluster = config.clusters[0];
    EXPECT_EQ(cluster.balance, Balance::kRoundRobin);
    EXPECT_EQ(cluster.hash_key, HashKey::kSourceIp);
    EXPECT_EQ(cluster.maglev_table_size, 65537u);
    EXPECT_EQ(cluster.retries, 2u);
    EXPECT_EQ(cluster.pool.warm, 0u);
    EXPECT_EQ(cluster.pool.max_idle, Millis(30000));
    EXPECT_EQ(cluster.queue.size, 0u);
    EXPECT_EQ(cluster.queue.timeout, Millis(1000));
    EXPECT_EQ(cluster.server_idle_timeout, Millis(0));
    EXPECT_FALSE(cluster.tcp_keepalive.enabled);
    EXPECT_EQ(cluster.tcp_user_timeout, Millis(0));
    EXPECT_TRUE(cluster.source_addresses.empty());
    EXPECT_TRUE(cluster.source_address_texts.empty());
    EXPECT_EQ(cluster.source_port_min, 0);
    EXPECT_EQ(cluster.source_port_max, 0);
    EXPECT_EQ(cluster.close, ClosePolicy::kGraceful);
    EXPECT_EQ(cluster.backends[0].max_connections, 0u);
}

TEST(ConfigTest, LoadsEveryNewKey) {
    Config config = load_string(R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
idle_timeout = "10m"
client_idle_timeout = "30s"
half_closed_timeout = "5s"
max_duration = "1h"
max_duration_jitter = "5m"
tcp_keepalive = { idle = "60s", interval = "10s", count = 3 }
tcp_user_timeout = "30s"
[[cluster]]
name = "app"
balance = "maglev"
hash_key = "source_ip_port"
maglev_table_size = 101
retries = 5
pool = { warm = 8, max_idle = "20s" }
queue = { size = 100, timeout = "250ms" }
server_idle_timeout = "2m"
tcp_keepalive = { idle = "30s" }
tcp_user_timeout = "15s"
source_addresses = ["127.0.0.2", "127.0.0.3", "::1"]
source_port_range = "20000-29999"
close = "reset"
backends = [ { address = "127.0.0.1:9001", weight = 2, max_connections = 500 },
             { address = "[::1]:9002", max_connections = 1000000 } ]
)",
                                "t.toml");
    const auto& listener = config.listeners[0];
    EXPECT_EQ(listener.idle_timeout, Millis(600000));
    EXPECT_EQ(listener.client_idle_timeout, Millis(30000));
    EXPECT_EQ(listener.half_closed_timeout, Millis(5000));
    EXPECT_EQ(listener.max_duration, Millis(3600000));
    EXPECT_EQ(listener.max_duration_jitter, Millis(300000));
    EXPECT_TRUE(listener.tcp_keepalive.enabled);
    EXPECT_EQ(listener.tcp_keepalive.idle, Millis(60000));
    EXPECT_EQ(listener.tcp_keepalive.interval, Millis(10000));
    EXPECT_EQ(listener.tcp_keepalive.count, 3u);
    EXPECT_EQ(listener.tcp_user_timeout, Millis(30000));

    const auto& cluster = config.clusters[0];
    EXPECT_EQ(cluster.balance, Balance::kMaglev);
    EXPECT_EQ(cluster.hash_key, HashKey::kSourceIpPort);
    EXPECT_EQ(cluster.maglev_table_size, 101u);
    EXPECT_EQ(cluster.retries, 5u);
    EXPECT_EQ(cluster.pool.warm, 8u);
    EXPECT_EQ(cluster.pool.max_idle, Millis(20000));
    EXPECT_EQ(cluster.queue.size, 100u);
    EXPECT_EQ(cluster.queue.timeout, Millis(250));
    EXPECT_EQ(cluster.server_idle_timeout, Millis(120000));
    EXPECT_TRUE(cluster.tcp_keepalive.enabled);
    EXPECT_EQ(cluster.tcp_keepalive.idle, Millis(30000));
    EXPECT_EQ(cluster.tcp_keepalive.interval, Millis(0));  // left to the kernel
    EXPECT_EQ(cluster.tcp_keepalive.count, 0u);
    EXPECT_EQ(cluster.tcp_user_timeout, Millis(15000));
    ASSERT_EQ(cluster.source_addresses.size(), 3u);
    EXPECT_EQ(cluster.source_addresses[0].to_string(), "127.0.0.2:0");
    EXPECT_EQ(cluster.source_addresses[2].family(), AF_INET6);
    EXPECT_EQ(cluster.source_address_texts,
              (std::vector<std::string>{"127.0.0.2", "127.0.0.3", "::1"}));
    EXPECT_EQ(cluster.source_port_min, 20000);
    EXPECT_EQ(cluster.source_port_max, 29999);
    EXPECT_EQ(cluster.close, ClosePolicy::kReset);
    EXPECT_EQ(cluster.backends[0].weight, 2u);
    EXPECT_EQ(cluster.backends[0].max_connections, 500u);
    EXPECT_EQ(cluster.backends[1].max_connections, 1000000u);
}

TEST(ConfigTest, SessionTimeoutsAcceptZeroAndUpToAWeek) {
    Config off = load_string(listener_with("idle_timeout = \"0s\"\nclient_idle_timeout = \"0ms\"\n"
                                           "half_closed_timeout = \"0s\"\nmax_duration = \"0s\"\n"
                                           "max_duration_jitter = \"0s\"\n"),
                             "t.toml");
    EXPECT_EQ(off.listeners[0].idle_timeout, Millis(0));
    EXPECT_EQ(off.listeners[0].client_idle_timeout, Millis(0));
    EXPECT_EQ(off.listeners[0].half_closed_timeout, Millis(0));
    EXPECT_EQ(off.listeners[0].max_duration, Millis(0));
    Config week = load_string(listener_with("idle_timeout = \"168h\"\nmax_duration = \"10080m\"\n"),
                              "t.toml");
    EXPECT_EQ(week.listeners[0].idle_timeout, Millis(168LL * 3600 * 1000));
    EXPECT_EQ(week.listeners[0].max_duration, Millis(168LL * 3600 * 1000));
    Config server = load_string(cluster_with("server_idle_timeout = \"0s\"\n"), "t.toml");
    EXPECT_EQ(server.clusters[0].server_idle_timeout, Millis(0));
}

TEST(ConfigTest, SessionTimeoutErrors) {
    EXPECT_EQ(error_of(listener_with("idle_timeout = 60\n")),
              "t.toml:5:16: listener[0].idle_timeout: expected a duration string like \"2s\" or "
              "\"250ms\", got integer 60");
    EXPECT_EQ(error_of(listener_with("client_idle_timeout = \"30 s\"\n")),
              "t.toml:5:23: listener[0].client_idle_timeout: invalid duration \"30 s\": unknown "
              "unit \" s\" (expected ms, s, m or h)");
    EXPECT_EQ(error_of(listener_with("half_closed_timeout = \"1d\"\n")),
              "t.toml:5:23: listener[0].half_closed_timeout: invalid duration \"1d\": unknown "
              "unit \"d\" (expected ms, s, m or h)");
    EXPECT_EQ(error_of(listener_with("max_duration = \"169h\"\n")),
              "t.toml:5:16: listener[0].max_duration: must be at most 168h (\"0s\" turns it "
              "off), got \"169h\"");
    EXPECT_EQ(error_of(listener_with("idle_timeout = \"-1s\"\n")),
              "t.toml:5:16: listener[0].idle_timeout: invalid duration \"-1s\": negative "
              "durations are not allowed");
    EXPECT_EQ(error_of(cluster_with("server_idle_timeout = \"604801s\"\n")),
              "t.toml:8:23: cluster[0].server_idle_timeout: must be at most 168h (\"0s\" turns "
              "it off), got \"604801s\"");
    EXPECT_EQ(error_of(cluster_with("server_idle_timeout = true\n")),
              "t.toml:8:23: cluster[0].server_idle_timeout: expected a duration string like "
              "\"2s\" or \"250ms\", got boolean true");
}

TEST(ConfigTest, MaxDurationJitterNeedsMaxDurationAndStaysBelowIt) {
    Config equal =
        load_string(listener_with("max_duration = \"10m\"\nmax_duration_jitter = \"600s\"\n"), "t");
    EXPECT_EQ(equal.listeners[0].max_duration_jitter, Millis(600000));
    EXPECT_EQ(error_of(listener_with("max_duration_jitter = \"5m\"\n")),
              "t.toml:5:23: listener[0].max_duration_jitter: has no effect without max_duration "
              "(set max_duration, or remove max_duration_jitter)");
    EXPECT_EQ(error_of(listener_with("max_duration = \"0s\"\nmax_duration_jitter = \"1s\"\n")),
              "t.toml:6:23: listener[0].max_duration_jitter: has no effect without max_duration "
              "(set max_duration, or remove max_duration_jitter)");
    EXPECT_EQ(error_of(listener_with("max_duration_jitter = \"11m\"\nmax_duration = \"10m\"\n")),
              "t.toml:5:23: listener[0].max_duration_jitter: must not exceed max_duration "
              "(\"10m\"), got \"11m\"");
    EXPECT_EQ(error_of(listener_with("max_duration = \"1h\"\nmax_duration_jitter = \"2s5\"\n")),
              "t.toml:6:23: listener[0].max_duration_jitter: invalid duration \"2s5\": unknown "
              "unit \"s5\" (expected ms, s, m or h)");
}

TEST(ConfigTest, TcpKeepaliveForms) {
    Config empty = load_string(listener_with("tcp_keepalive = {}\n"), "t.toml");
    EXPECT_TRUE(empty.listeners[0].tcp_keepalive.enabled);
    EXPECT_EQ(empty.listeners[0].tcp_keepalive.idle, Millis(0));
    EXPECT_EQ(empty.listeners[0].tcp_keepalive.interval, Millis(0));
    EXPECT_EQ(empty.listeners[0].tcp_keepalive.count, 0u);

    // The same as a sub-table, at the limits.
    Config table = load_string(cluster_with("[cluster.tcp_keepalive]\nidle = \"32767s\"\n"
                                            "interval = \"1s\"\ncount = 127\n"),
                               "t.toml");
    EXPECT_TRUE(table.clusters[0].tcp_keepalive.enabled);
    EXPECT_EQ(table.clusters[0].tcp_keepalive.idle, Millis(32767000));
    EXPECT_EQ(table.clusters[0].tcp_keepalive.interval, Millis(1000));
    EXPECT_EQ(table.clusters[0].tcp_keepalive.count, 127u);

    Config minutes = load_string(listener_with("tcp_keepalive = { idle = \"2m\" }\n"), "t.toml");
    EXPECT_EQ(minutes.listeners[0].tcp_keepalive.idle, Millis(120000));
}

TEST(ConfigTest, TcpKeepaliveErrors) {
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = true\n")),
              "t.toml:5:17: listener[0].tcp_keepalive: expected a table like { idle = \"60s\", "
              "interval = \"10s\", count = 3 }, got boolean true");
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = { idle = \"60s\", intrval = \"10s\" }\n")),
              "t.toml:5:33: listener[0].tcp_keepalive.intrval: unknown key \"intrval\" (did you "
              "mean \"interval\"?)");
    EXPECT_EQ(error_of(cluster_with("tcp_keepalive = { probes = 3 }\n")),
              "t.toml:8:19: cluster[0].tcp_keepalive.probes: unknown key \"probes\"");
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = { idle = \"1500ms\" }\n")),
              "t.toml:5:26: listener[0].tcp_keepalive.idle: must be a whole number of seconds, "
              "got \"1500ms\"");
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = { idle = \"0s\" }\n")),
              "t.toml:5:26: listener[0].tcp_keepalive.idle: must be between 1s and 32767s, got "
              "\"0s\"");
    EXPECT_EQ(error_of(cluster_with("tcp_keepalive = { interval = \"32768s\" }\n")),
              "t.toml:8:30: cluster[0].tcp_keepalive.interval: must be between 1s and 32767s, "
              "got \"32768s\"");
    EXPECT_EQ(error_of(cluster_with("tcp_keepalive = { interval = 10 }\n")),
              "t.toml:8:30: cluster[0].tcp_keepalive.interval: expected a duration string like "
              "\"2s\" or \"250ms\", got integer 10");
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = { count = 0 }\n")),
              "t.toml:5:27: listener[0].tcp_keepalive.count: must be between 1 and 127, got 0");
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = { count = 128 }\n")),
              "t.toml:5:27: listener[0].tcp_keepalive.count: must be between 1 and 127, got 128");
    EXPECT_EQ(error_of(listener_with("tcp_keepalive = { count = \"3\" }\n")),
              "t.toml:5:27: listener[0].tcp_keepalive.count: expected an integer, got \"3\"");
}

TEST(ConfigTest, TcpUserTimeout) {
    EXPECT_EQ(load_string(listener_with("tcp_user_timeout = \"24h\"\n"), "t")
                  .listeners[0]
                  .tcp_user_timeout,
              Millis(86400000));
    EXPECT_EQ(
        load_string(cluster_with("tcp_user_timeout = \"0s\"\n"), "t").clusters[0].tcp_user_timeout,
        Millis(0));
    EXPECT_EQ(error_of(listener_with("tcp_user_timeout = \"25h\"\n")),
              "t.toml:5:20: listener[0].tcp_user_timeout: must be at most 24h (\"0s\" keeps the "
              "kernel default), got \"25h\"");
    EXPECT_EQ(error_of(cluster_with("tcp_user_timeout = \"1441m\"\n")),
              "t.toml:8:20: cluster[0].tcp_user_timeout: must be at most 24h (\"0s\" keeps the "
              "kernel default), got \"1441m\"");
    EXPECT_EQ(error_of(cluster_with("tcp_user_timeout = \"30\"\n")),
              "t.toml:8:20: cluster[0].tcp_user_timeout: invalid duration \"30\": missing unit "
              "(ms, s, m or h), e.g. \"30s\"");
}

TEST(ConfigTest, BalanceValues) {
    std::pair<const char*, Balance> cases[] = {{"round_robin", Balance::kRoundRobin},
                                               {"least_conn", Balance::kLeastConn},
                                               {"random_two", Balance::kRandomTwo},
                                               {"least_time", Balance::kLeastTime},
                                               {"maglev", Balance::kMaglev}};
    for (auto [name, value] : cases)
        EXPECT_EQ(load_string(cluster_with("balance = \"" + std::string(name) + "\"\n"), "t")
                      .clusters[0]
                      .balance,
                  value)
            << name;
    EXPECT_EQ(error_of(cluster_with("balance = \"round-robin\"\n")),
              "t.toml:8:11: cluster[0].balance: expected one of \"round_robin\", \"least_conn\", "
              "\"random_two\", \"least_time\", \"maglev\", got \"round-robin\" (did you mean "
              "\"round_robin\"?)");
    EXPECT_EQ(error_of(cluster_with("balance = 1\n")),
              "t.toml:8:11: cluster[0].balance: expected one of \"round_robin\", \"least_conn\", "
              "\"random_two\", \"least_time\", \"maglev\", got integer 1");
}

TEST(ConfigTest, HashKeyOnlyWithMaglev) {
    EXPECT_EQ(load_string(cluster_with("balance = \"maglev\"\nhash_key = \"source_ip\"\n"), "t")
                  .clusters[0]
                  .hash_key,
              HashKey::kSourceIp);
    EXPECT_EQ(error_of(cluster_with("hash_key = \"source_ip\"\n")),
              "t.toml:8:12: cluster[0].hash_key: applies only with balance = \"maglev\" (this "
              "cluster uses the default \"round_robin\")");
    EXPECT_EQ(error_of(cluster_with("balance = \"least_conn\"\nhash_key = \"source_ip\"\n")),
              "t.toml:9:12: cluster[0].hash_key: applies only with balance = \"maglev\" (this "
              "cluster uses \"least_conn\")");
    EXPECT_EQ(error_of(cluster_with("balance = \"maglev\"\nhash_key = \"source_port\"\n")),
              "t.toml:9:12: cluster[0].hash_key: expected one of \"source_ip\", "
              "\"source_ip_port\", got \"source_port\"");
}

TEST(ConfigTest, MaglevTableSizeMustBeAPrimeInRange) {
    EXPECT_EQ(load_string(cluster_with("balance = \"maglev\"\nmaglev_table_size = 1000003\n"), "t")
                  .clusters[0]
                  .maglev_table_size,
              1000003u);
    EXPECT_EQ(error_of(cluster_with("balance = \"maglev\"\nmaglev_table_size = 65536\n")),
              "t.toml:9:21: cluster[0].maglev_table_size: must be a prime, got 65536 (nearest "
              "primes: 65521 and 65537)");
    EXPECT_EQ(error_of(cluster_with("balance = \"maglev\"\nmaglev_table_size = 102\n")),
              "t.toml:9:21: cluster[0].maglev_table_size: must be a prime, got 102 (nearest "
              "primes: 101 and 103)");
    EXPECT_EQ(error_of(cluster_with("balance = \"maglev\"\nmaglev_table_size = 97\n")),
              "t.toml:9:21: cluster[0].maglev_table_size: must be between 101 and 1000003, got "
              "97");
    EXPECT_EQ(error_of(cluster_with("balance = \"maglev\"\nmaglev_table_size = 1000004\n")),
              "t.toml:9:21: cluster[0].maglev_table_size: must be between 101 and 1000003, got "
              "1000004");
    EXPECT_EQ(error_of(cluster_with("balance = \"maglev\"\nmaglev_table_size = \"65537\"\n")),
              "t.toml:9:21: cluster[0].maglev_table_size: expected an integer, got \"65537\"");
    EXPECT_EQ(error_of(cluster_with("maglev_table_size = 65537\n")),
              "t.toml:8:21: cluster[0].maglev_table_size: applies only with balance = "
              "\"maglev\" (this cluster uses the default \"round_robin\")");
}

TEST(ConfigTest, MaglevTableMustOutnumberBackends) {
    auto backends = [](int count) {
        std::string line = "backends = [";
        for (int i = 0; i < count; ++i)
            line += (i ? ", " : " ") + std::string("{ address = \"127.0.0.1:") +
                    std::to_string(10000 + i) + "\" }";
        return line + " ]";
    };
    std::string table = "balance = \"maglev\"\nmaglev_table_size = 101\n";
    EXPECT_EQ(load_string(backends_with(backends(100), table), "t").clusters[0].backends.size(),
              100u);
    EXPECT_EQ(error_of(backends_with(backends(101), table)),
              "t.toml:9:21: cluster[0].maglev_table_size: 101 must be greater than the number of "
              "backends (101); use a larger prime");
}

TEST(ConfigTest, Retries) {
    EXPECT_EQ(load_string(cluster_with("retries = 0\n"), "t").clusters[0].retries, 0u);
    EXPECT_EQ(load_string(cluster_with("retries = 16\n"), "t").clusters[0].retries, 16u);
    EXPECT_EQ(error_of(cluster_with("retries = 17\n")),
              "t.toml:8:11: cluster[0].retries: must be between 0 and 16, got 17");
    EXPECT_EQ(error_of(cluster_with("retries = -1\n")),
              "t.toml:8:11: cluster[0].retries: must be between 0 and 16, got -1");
    EXPECT_EQ(error_of(cluster_with("retries = \"2\"\n")),
              "t.toml:8:11: cluster[0].retries: expected an integer, got \"2\"");
}

TEST(ConfigTest, PoolForms) {
    Config only_warm = load_string(cluster_with("pool = { warm = 1024 }\n"), "t");
    EXPECT_EQ(only_warm.clusters[0].pool.warm, 1024u);
    EXPECT_EQ(only_warm.clusters[0].pool.max_idle, Millis(30000));
    Config table = load_string(cluster_with("[cluster.pool]\nwarm = 0\nmax_idle = \"1h\"\n"), "t");
    EXPECT_EQ(table.clusters[0].pool.warm, 0u);
    EXPECT_EQ(table.clusters[0].pool.max_idle, Millis(3600000));
}

TEST(ConfigTest, PoolErrors) {
    EXPECT_EQ(error_of(cluster_with("pool = { wram = 4 }\n")),
              "t.toml:8:10: cluster[0].pool.wram: unknown key \"wram\" (did you mean "
              "\"warm\"?)");
    EXPECT_EQ(error_of(cluster_with("pool = 4\n")),
              "t.toml:8:8: cluster[0].pool: expected a table like { warm = 4, max_idle = "
              "\"30s\" }, got integer 4");
    EXPECT_EQ(error_of(cluster_with("pool = { warm = 1025 }\n")),
              "t.toml:8:17: cluster[0].pool.warm: must be between 0 and 1024, got 1025");
    EXPECT_EQ(error_of(cluster_with("pool = { warm = 2, max_idle = \"0s\" }\n")),
              "t.toml:8:31: cluster[0].pool.max_idle: must be greater than 0, got \"0s\"");
    EXPECT_EQ(error_of(cluster_with("pool = { warm = 2, max_idle = \"2h\" }\n")),
              "t.toml:8:31: cluster[0].pool.max_idle: must be at most 1h, got \"2h\"");
    EXPECT_EQ(error_of(cluster_with("[cluster.pool]\nwarm = 2\nmax_idel = \"5s\"\n")),
              "t.toml:10:1: cluster[0].pool.max_idel: unknown key \"max_idel\" (did you mean "
              "\"max_idle\"?)");
}

TEST(ConfigTest, QueueFormsAndErrors) {
    Config config =
        load_string(cluster_with("queue = { size = 65536, timeout = \"100ms\" }\n"), "t");
    EXPECT_EQ(config.clusters[0].queue.size, 65536u);
    EXPECT_EQ(config.clusters[0].queue.timeout, Millis(100));
    EXPECT_EQ(error_of(cluster_with("queue = { size = 10, timout = \"1s\" }\n")),
              "t.toml:8:22: cluster[0].queue.timout: unknown key \"timout\" (did you mean "
              "\"timeout\"?)");
    EXPECT_EQ(error_of(cluster_with("queue = { size = 65537 }\n")),
              "t.toml:8:18: cluster[0].queue.size: must be between 0 and 65536, got 65537");
    EXPECT_EQ(error_of(cluster_with("queue = { timeout = \"0ms\" }\n")),
              "t.toml:8:21: cluster[0].queue.timeout: must be greater than 0, got \"0ms\"");
    EXPECT_EQ(error_of(cluster_with("queue = { timeout = \"1.5s\" }\n")),
              "t.toml:8:21: cluster[0].queue.timeout: invalid duration \"1.5s\": fractional "
              "values are not supported; use a smaller unit, e.g. \"1500ms\"");
    EXPECT_EQ(error_of(cluster_with("queue = [ 10 ]\n")),
              "t.toml:8:9: cluster[0].queue: expected a table like { size = 100, timeout = "
              "\"1s\" }, got array");
}

TEST(ConfigTest, SourceAddressErrors) {
    EXPECT_EQ(error_of(cluster_with("source_addresses = \"127.0.0.2\"\n")),
              "t.toml:8:20: cluster[0].source_addresses: expected an array of IP addresses like "
              "[\"127.0.0.2\", \"::1\"], got \"127.0.0.2\"");
    EXPECT_EQ(error_of(cluster_with("source_addresses = [\"127.0.0.2\", 3]\n")),
              "t.toml:8:34: cluster[0].source_addresses[1]: expected a string, got integer 3");
    EXPECT_EQ(error_of(cluster_with("source_addresses = [\"127.0.0.2:4000\"]\n")),
              "t.toml:8:21: cluster[0].source_addresses[0]: invalid source address "
              "\"127.0.0.2:4000\": expected an IP address without a port");
    EXPECT_EQ(error_of(cluster_with("source_addresses = [\"127.0.0.2\", \"eth0\"]\n")),
              "t.toml:8:34: cluster[0].source_addresses[1]: invalid source address \"eth0\": "
              "invalid IP address \"eth0\" (host names are not resolved)");
    EXPECT_EQ(error_of(cluster_with("source_addresses = [\"0.0.0.0\"]\n")),
              "t.toml:8:21: cluster[0].source_addresses[0]: \"0.0.0.0\" is the unspecified "
              "address; leave source_addresses out to let the kernel choose");
}

TEST(ConfigTest, SourceAddressDuplicatesAreFoundAfterNormalising) {
    EXPECT_EQ(error_of(cluster_with("source_addresses = [\"127.0.0.2\", \"127.0.0.3\", "
                                    "\"127.0.0.2\"]\n")),
              "t.toml:8:47: cluster[0].source_addresses[2]: duplicate source address "
              "\"127.0.0.2\" (same as cluster[0].source_addresses[0], \"127.0.0.2\")");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"[::1]:9001\" } ]",
                                     "source_addresses = [\"::1\", \"0:0::1\"]\n")),
              "t.toml:8:28: cluster[0].source_addresses[1]: duplicate source address \"0:0::1\" "
              "(same as cluster[0].source_addresses[0], \"::1\")");
}

TEST(ConfigTest, SourceAddressesMustCoverEveryBackendFamily) {
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"127.0.0.1:9001\" },\n"
                                     "  { address = \"[::1]:9002\" } ]",
                                     "source_addresses = [\"127.0.0.2\"]\n")),
              "t.toml:9:20: cluster[0].source_addresses: no IPv6 address for backend "
              "cluster[0].backends[1] (\"[::1]:9002\"); each backend needs a source address of "
              "its own family");
    EXPECT_EQ(error_of(cluster_with("source_addresses = [\"::1\"]\n")),
              "t.toml:8:20: cluster[0].source_addresses: no IPv4 address for backend "
              "cluster[0].backends[0] (\"127.0.0.1:9001\"); each backend needs a source address "
              "of its own family");
    // An empty list leaves the choice to the kernel.
    EXPECT_TRUE(load_string(cluster_with("source_addresses = []\n"), "t")
                    .clusters[0]
                    .source_addresses.empty());
}

TEST(ConfigTest, SourcePortRange) {
    Config wide = load_string(cluster_with("source_port_range = \"1-65535\"\n"), "t");
    EXPECT_EQ(wide.clusters[0].source_port_min, 1);
    EXPECT_EQ(wide.clusters[0].source_port_max, 65535);
    Config one = load_string(cluster_with("source_port_range = \"40000-40000\"\n"), "t");
    EXPECT_EQ(one.clusters[0].source_port_min, 40000);
    EXPECT_EQ(one.clusters[0].source_port_max, 40000);

    const std::string expected =
        "expected \"LOW-HIGH\" with ports 1..65535, e.g. \"20000-29999\", got ";
    EXPECT_EQ(error_of(cluster_with("source_port_range = \"30000-20000\"\n")),
              "t.toml:8:21: cluster[0].source_port_range: the low port 30000 is above the high "
              "port 20000 in \"30000-20000\"");
    EXPECT_EQ(error_of(cluster_with("source_port_range = \"0-10\"\n")),
              "t.toml:8:21: cluster[0].source_port_range: ports must be between 1 and 65535, got "
              "0 in \"0-10\"");
    EXPECT_EQ(error_of(cluster_with("source_port_range = \"20000-70000\"\n")),
              "t.toml:8:21: cluster[0].source_port_range: ports must be between 1 and 65535, got "
              "70000 in \"20000-70000\"");
    EXPECT_EQ(error_of(cluster_with("source_port_range = \"99999999999999999999999-1\"\n")),
              "t.toml:8:21: cluster[0].source_port_range: ports must be between 1 and 65535, got "
              "65536 in \"99999999999999999999999-1\"");
    for (const char* bad :
         {"abc", "20000", "20000-", "-29999", "20000 - 29999", "2e4-3e4", "20000-29999-1", "+1-5"})
        EXPECT_EQ(error_of(cluster_with("source_port_range = \"" + std::string(bad) + "\"\n")),
                  "t.toml:8:21: cluster[0].source_port_range: " + expected + "\"" + bad + "\"")
            << bad;
    EXPECT_EQ(error_of(cluster_with("source_port_range = [20000, 29999]\n")),
              "t.toml:8:21: cluster[0].source_port_range: " + expected + "array");
}

TEST(ConfigTest, ClosePolicy) {
    EXPECT_EQ(load_string(cluster_with("close = \"graceful\"\n"), "t").clusters[0].close,
              ClosePolicy::kGraceful);
    EXPECT_EQ(load_string(cluster_with("close = \"reset\"\n"), "t").clusters[0].close,
              ClosePolicy::kReset);
    EXPECT_EQ(error_of(cluster_with("close = \"rst\"\n")),
              "t.toml:8:9: cluster[0].close: expected one of \"graceful\", \"reset\", got \"rst\" "
              "(did you mean \"reset\"?)");
    EXPECT_EQ(error_of(cluster_with("close = false\n")),
              "t.toml:8:9: cluster[0].close: expected one of \"graceful\", \"reset\", got boolean "
              "false");
}

TEST(ConfigTest, BackendMaxConnections) {
    EXPECT_EQ(load_string(backends_with("backends = [ { address = \"127.0.0.1:9001\", "
                                        "max_connections = 0 } ]"),
                          "t")
                  .clusters[0]
                  .backends[0]
                  .max_connections,
              0u);
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"127.0.0.1:9001\", "
                                     "max_connections = 1000001 } ]")),
              "t.toml:7:62: cluster[0].backends[0].max_connections: must be between 0 and "
              "1000000, got 1000001");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"127.0.0.1:9001\" },\n"
                                     "  { address = \"127.0.0.1:9002\", max_connections = -5 } ]")),
              "t.toml:8:51: cluster[0].backends[1].max_connections: must be between 0 and "
              "1000000, got -5");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"127.0.0.1:9001\", "
                                     "max_conections = 10 } ]")),
              "t.toml:7:44: cluster[0].backends[0].max_conections: unknown key "
              "\"max_conections\" (did you mean \"max_connections\"?)");
}

TEST(ConfigTest, MisplacedKeysSayWhereTheyBelong) {
    EXPECT_EQ(error_of(listener_with("server_idle_timeout = \"1m\"\n")),
              "t.toml:5:1: listener[0].server_idle_timeout: unknown key \"server_idle_timeout\" "
              "(it belongs in a [[cluster]] section)");
    EXPECT_EQ(error_of(listener_with("weight = 10\n")),
              "t.toml:5:1: listener[0].weight: unknown key \"weight\" (it is set on each entry "
              "of a cluster's backends)");
    EXPECT_EQ(error_of(cluster_with("idle_timeout = \"1m\"\n")),
              "t.toml:8:1: cluster[0].idle_timeout: unknown key \"idle_timeout\" (it belongs in "
              "a [[listener]] section)");
    EXPECT_EQ(error_of(cluster_with("max_connections = 10\n")),
              "t.toml:8:1: cluster[0].max_connections: unknown key \"max_connections\" (it is "
              "set on each entry of backends)");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"127.0.0.1:9001\", balance = "
                                     "\"maglev\" } ]")),
              "t.toml:7:44: cluster[0].backends[0].balance: unknown key \"balance\" (it is set on "
              "the cluster, not on one backend)");
    // A near miss still gets the spelling suggestion first.
    EXPECT_EQ(error_of(listener_with("idle_timout = \"1m\"\n")),
              "t.toml:5:1: listener[0].idle_timout: unknown key \"idle_timout\" (did you mean "
              "\"idle_timeout\"?)");
}

namespace ringlb::config {
namespace {

TEST(ConfigHealthTest, DefaultsAndForms) {
    Config none = load_string(cluster_with(""), "t");
    EXPECT_FALSE(none.clusters[0].health.enabled);
    EXPECT_EQ(none.clusters[0].when_all_down, WhenAllDown::kTryAnyway);

    Config plain = load_string(cluster_with("health = {}\n"), "t");
    const HealthCheckConfig& h = plain.clusters[0].health;
    EXPECT_TRUE(h.enabled);
    EXPECT_EQ(h.interval, Millis(2000));
    EXPECT_EQ(h.timeout, Millis(1000));
    EXPECT_EQ(h.rise, 2u);
    EXPECT_EQ(h.fall, 3u);
    EXPECT_EQ(h.jitter_percent, 10u);
    EXPECT_EQ(h.port, 0);
    EXPECT_TRUE(h.send.empty());
    EXPECT_TRUE(h.expect.empty());

    Config full = load_string(
        cluster_with("when_all_down = \"fail\"\n[cluster.health]\ninterval = \"100ms\"\ntimeout = "
                     "\"100ms\"\nrise = 1\nfall = 100\njitter = \"50%\"\nport = 9100\nsend_hex = "
                     "\"00FF0a\"\nexpect = \"+PONG\"\n"),
        "t");
    const HealthCheckConfig& f = full.clusters[0].health;
    EXPECT_EQ(full.clusters[0].when_all_down, WhenAllDown::kFail);
    EXPECT_EQ(f.interval, Millis(100));
    EXPECT_EQ(f.rise, 1u);
    EXPECT_EQ(f.fall, 100u);
    EXPECT_EQ(f.jitter_percent, 50u);
    EXPECT_EQ(f.port, 9100);
    EXPECT_EQ(f.send, std::string("\x00\xff\x0a", 3));
    EXPECT_TRUE(f.send_hex);
    EXPECT_EQ(f.expect, "+PONG");
    EXPECT_FALSE(f.expect_hex);
}

TEST(ConfigHealthTest, Errors) {
    EXPECT_EQ(error_of(cluster_with("health = { intervall = \"1s\" }\n")),
              "t.toml:8:12: cluster[0].health.intervall: unknown key \"intervall\" (did you mean "
              "\"interval\"?)");
    EXPECT_EQ(error_of(cluster_with("health = true\n")),
              "t.toml:8:10: cluster[0].health: expected a table like { interval = \"2s\", timeout "
              "= \"1s\", rise = 2, fall = 3 }, got boolean true");
    EXPECT_EQ(error_of(cluster_with("health = { interval = \"50ms\" }\n")),
              "t.toml:8:23: cluster[0].health.interval: must be between 100ms and 1h, got "
              "\"50ms\"");
    EXPECT_EQ(error_of(cluster_with("health = { interval = \"1s\", timeout = \"2s\" }\n")),
              "t.toml:8:39: cluster[0].health.timeout: the timeout (2s) must not exceed the "
              "interval (1s)");
    EXPECT_EQ(error_of(cluster_with("health = { interval = \"500ms\" }\n")),
              "t.toml:8:23: cluster[0].health.interval: the timeout (1s) must not exceed the "
              "interval (500ms)");
    EXPECT_EQ(error_of(cluster_with("health = { rise = 0 }\n")),
              "t.toml:8:19: cluster[0].health.rise: must be between 1 and 100, got 0");
    EXPECT_EQ(error_of(cluster_with("health = { jitter = \"60%\" }\n")),
              "t.toml:8:21: cluster[0].health.jitter: must be between 0% and 50%, got \"60%\"");
    EXPECT_EQ(error_of(cluster_with("health = { jitter = 10 }\n")),
              "t.toml:8:21: cluster[0].health.jitter: expected a percentage like \"10%\", got "
              "integer 10");
    EXPECT_EQ(error_of(cluster_with("health = { port = 0 }\n")),
              "t.toml:8:19: cluster[0].health.port: must be between 1 and 65535, got 0");
    EXPECT_EQ(error_of(cluster_with("health = { send = \"a\", send_hex = \"61\" }\n")),
              "t.toml:8:35: cluster[0].health.send_hex: give either send or send_hex, not both");
    EXPECT_EQ(error_of(cluster_with("health = { expect_hex = \"6\" }\n")),
              "t.toml:8:25: cluster[0].health.expect_hex: expected an even number of hex digits, "
              "got \"6\"");
    EXPECT_EQ(error_of(cluster_with("health = { expect_hex = \"zz\" }\n")),
              "t.toml:8:25: cluster[0].health.expect_hex: expected hex digits (0-9, a-f), got "
              "\"zz\"");
    EXPECT_EQ(error_of(cluster_with("health = { send = \"\" }\n")),
              "t.toml:8:19: cluster[0].health.send: must not be empty (leave the key out "
              "instead)");
    EXPECT_EQ(error_of(cluster_with("when_all_down = \"panic\"\n")),
              "t.toml:8:17: cluster[0].when_all_down: expected one of \"try_anyway\", \"fail\", "
              "got \"panic\"");
}

TEST(ConfigHealthTest, PassiveAndSlowStart) {
    Config none = load_string(cluster_with(""), "t");
    EXPECT_EQ(none.clusters[0].eject_after, 0u);
    EXPECT_EQ(none.clusters[0].eject_time, Millis(30000));
    EXPECT_EQ(none.clusters[0].eject_time_max, Millis(300000));
    EXPECT_EQ(none.clusters[0].max_ejected_percent, 50u);
    EXPECT_EQ(none.clusters[0].slow_start, Millis(0));
    Config set = load_string(cluster_with("eject_after = 5\neject_time = \"1s\"\neject_time_max = "
                                          "\"1s\"\nmax_ejected_percent = 0\nslow_start = \"1h\"\n"),
                             "t");
    EXPECT_EQ(set.clusters[0].eject_after, 5u);
    EXPECT_EQ(set.clusters[0].eject_time, Millis(1000));
    EXPECT_EQ(set.clusters[0].eject_time_max, Millis(1000));
    EXPECT_EQ(set.clusters[0].max_ejected_percent, 0u);
    EXPECT_EQ(set.clusters[0].slow_start, Millis(3600000));

    EXPECT_EQ(error_of(cluster_with("eject_time = \"10s\"\n")),
              "t.toml:8:14: cluster[0].eject_time: has no effect without eject_after (set "
              "eject_after = N to eject a backend after N failures in a row)");
    EXPECT_EQ(
        error_of(cluster_with("eject_after = 3\neject_time = \"2m\"\neject_time_max = \"1m\"\n")),
        "t.toml:10:18: cluster[0].eject_time_max: eject_time_max (1m) must not be below "
        "eject_time (2m)");
    EXPECT_EQ(error_of(cluster_with("eject_after = 3\neject_time = \"10m\"\n")),
              "t.toml:9:14: cluster[0].eject_time: eject_time_max (5m) must not be below "
              "eject_time (10m)");
    EXPECT_EQ(error_of(cluster_with("eject_after = 101\n")),
              "t.toml:8:15: cluster[0].eject_after: must be between 0 and 100, got 101");
    EXPECT_EQ(error_of(cluster_with("eject_after = 1\nmax_ejected_percent = 101\n")),
              "t.toml:9:23: cluster[0].max_ejected_percent: must be between 0 and 100, got 101");
    EXPECT_EQ(error_of(cluster_with("eject_after = 1\neject_time = \"0s\"\n")),
              "t.toml:9:14: cluster[0].eject_time: must be greater than 0, got \"0s\"");
    EXPECT_EQ(error_of(cluster_with("slow_start = \"2h\"\n")),
              "t.toml:8:14: cluster[0].slow_start: must be at most 1h (\"0s\" turns it off), got "
              "\"2h\"");
}

TEST(ConfigDnsTest, BackendsByNameAndTheirKeys) {
    Config config = load_string(
        backends_with("backends = [ { address = \"web.default.svc.cluster.local:8080\", weight = "
                      "3 }, { address = \"127.0.0.1:9\" } ]",
                      "dns_refresh = \"1s\"\ndns_failure_grace = \"0s\"\n"),
        "t");
    const ClusterConfig& c = config.clusters[0];
    ASSERT_EQ(c.backends.size(), 2u);
    EXPECT_TRUE(c.backends[0].is_name());
    EXPECT_EQ(c.backends[0].host, "web.default.svc.cluster.local");
    EXPECT_EQ(c.backends[0].port, 8080);
    EXPECT_EQ(c.backends[0].address_text, "web.default.svc.cluster.local:8080");
    EXPECT_EQ(c.backends[0].weight, 3u);
    EXPECT_FALSE(c.backends[1].is_name());
    EXPECT_EQ(c.dns_refresh, Millis(1000));
    EXPECT_EQ(c.dns_failure_grace, Millis(0));
    Config servers = load_string(with("[runtime]\ndns_servers = [\"127.0.0.1:5353\"]\n"), "t");
    ASSERT_EQ(servers.runtime.dns_servers.size(), 1u);
    EXPECT_EQ(servers.runtime.dns_server_texts[0], "127.0.0.1:5353");
}

TEST(ConfigDnsTest, Errors) {
    EXPECT_EQ(error_of(cluster_with("dns_refresh = \"1s\"\n")),
              "t.toml:8:15: cluster[0].dns_refresh: has no effect: no backend of this cluster is "
              "given by name (address = \"NAME:PORT\")");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"web.test:80\" } ]",
                                     "dns_refresh = \"50ms\"\n")),
              "t.toml:8:15: cluster[0].dns_refresh: must be between 100ms and 1h, got \"50ms\"");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"web.test\" } ]")),
              "t.toml:7:26: cluster[0].backends[0].address: invalid address \"web.test\": "
              "expected \"host:port\" (a backend is IP:PORT or NAME:PORT)");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"web_1.test:80\" } ]")),
              "t.toml:7:26: cluster[0].backends[0].address: invalid address \"web_1.test:80\": "
              "invalid character '_' in host name (letters, digits, '-' and '.' only) (a backend "
              "is IP:PORT or NAME:PORT)");
    EXPECT_EQ(error_of(backends_with("backends = [ { address = \"10.0.0.300:80\" } ]")),
              "t.toml:7:26: cluster[0].backends[0].address: invalid address \"10.0.0.300:80\": "
              "invalid IP address \"10.0.0.300\" (a backend is IP:PORT or NAME:PORT)");
    // DNS servers themselves are addresses, never names.
    EXPECT_EQ(error_of(with("[runtime]\ndns_servers = [\"dns.local:53\"]\n")),
              "t.toml:2:16: runtime.dns_servers[0]: invalid address \"dns.local:53\": invalid IP "
              "address \"dns.local\" (host names are not resolved)");
    EXPECT_EQ(error_of(with("[runtime]\ndns_servers = \"127.0.0.1:53\"\n")),
              "t.toml:2:15: runtime.dns_servers: expected an array of server addresses like "
              "[\"127.0.0.1:53\"], got \"127.0.0.1:53\"");
}

}  // namespace
}  // namespace ringlb::config

// ---------------------------------------------------------------------------------------------
// Access control and limits: allow, deny, max_connections, max_connections_per_source,
// rate_per_source, burst, reject.

TEST(ConfigTest, AdmissionDefaults) {
    Config c = load_string(kListenerAndCluster, "t.toml");
    const auto& l = c.listeners[0];
    EXPECT_TRUE(l.allow.empty());
    EXPECT_TRUE(l.deny.empty());
    EXPECT_EQ(l.max_connections, 0u);
    EXPECT_EQ(l.max_connections_per_source, 0u);
    EXPECT_EQ(l.rate_count, 0u);
    EXPECT_EQ(l.burst, 0u);
    EXPECT_EQ(l.reject, ClosePolicy::kGraceful);
    EXPECT_FALSE(l.has_acl());
    EXPECT_FALSE(l.limits_sources());
}

TEST(ConfigTest, AdmissionKeys) {
    Config c = load_string(listener_with("allow = [\"10.0.0.0/8\", \"::1\"]\n"
                                         "deny = [\"10.9.0.0/16\"]\n"
                                         "max_connections = 1000\n"
                                         "max_connections_per_source = 20\n"
                                         "rate_per_source = \"50/s\"\n"
                                         "burst = 75\n"
                                         "reject = \"reset\"\n"),
                           "t.toml");
    const auto& l = c.listeners[0];
    ASSERT_EQ(l.allow.size(), 2u);
    EXPECT_EQ(l.allow[0].to_string(), "10.0.0.0/8");
    EXPECT_EQ(l.allow[1].to_string(), "::1/128");
    ASSERT_EQ(l.deny.size(), 1u);
    EXPECT_EQ(l.deny[0].to_string(), "10.9.0.0/16");
    EXPECT_EQ(l.max_connections, 1000u);
    EXPECT_EQ(l.max_connections_per_source, 20u);
    EXPECT_EQ(l.rate_count, 50u);
    EXPECT_EQ(l.rate_period, Millis(1000));
    EXPECT_EQ(l.burst, 75u);
    EXPECT_EQ(l.reject, ClosePolicy::kReset);
    EXPECT_TRUE(l.has_acl());
    EXPECT_TRUE(l.limits_sources());
    // burst defaults to the rate's count; "/m" is per minute.
    Config per_minute = load_string(listener_with("rate_per_source = \"6/m\"\n"), "t.toml");
    const auto& m = per_minute.listeners[0];
    EXPECT_EQ(m.rate_count, 6u);
    EXPECT_EQ(m.rate_period, Millis(60000));
    EXPECT_EQ(m.burst, 6u);
    EXPECT_FALSE(m.has_acl());
    EXPECT_TRUE(m.limits_sources());
}

TEST(ConfigTest, AdmissionErrors) {
    EXPECT_EQ(error_of(listener_with("allow = []\n")),
              "t.toml:5:9: listener[0].allow: an empty list would refuse every client; leave "
              "allow out to accept every client that deny does not refuse");
    EXPECT_EQ(error_of(listener_with("deny = \"10.0.0.0/8\"\n")),
              "t.toml:5:8: listener[0].deny: expected an array of address ranges like "
              "[\"10.0.0.0/8\", \"::1\"], got \"10.0.0.0/8\"");
    std::string bad = error_of(listener_with("deny = [\"10.0.0.1\", \"10.0.0.0/40\"]\n"));
    EXPECT_EQ(bad.rfind("t.toml:5:21: listener[0].deny[1]: invalid address range "
                        "\"10.0.0.0/40\": ",
                        0),
              0u)
        << bad;
    EXPECT_EQ(error_of(listener_with("max_connections = -1\n")),
              "t.toml:5:19: listener[0].max_connections: must be between 0 and 1000000, got -1");
    EXPECT_EQ(error_of(listener_with("max_connections_per_source = 1000001\n")),
              "t.toml:5:30: listener[0].max_connections_per_source: must be between 0 and "
              "1000000, got 1000001");
    for (const char* text : {"10", "10/h", "0/s", "010/s", "-1/s", "1000001/s", "/s", "1.5/s"}) {
        SCOPED_TRACE(text);
        EXPECT_EQ(error_of(listener_with(std::string("rate_per_source = \"") + text + "\"\n")),
                  std::string("t.toml:5:19: listener[0].rate_per_source: expected new "
                              "connections per second or per minute like \"20/s\" or \"100/m\" "
                              "(1 to 1000000), got \"") +
                      text + "\"");
    }
    EXPECT_EQ(error_of(listener_with("burst = 5\n")),
              "t.toml:5:9: listener[0].burst: has no effect without rate_per_source (set "
              "rate_per_source, or remove burst)");
    EXPECT_EQ(error_of(listener_with("rate_per_source = \"5/s\"\nburst = 0\n")),
              "t.toml:6:9: listener[0].burst: must be between 1 and 1000000, got 0");
    EXPECT_EQ(error_of(listener_with("reject = \"close\"\n")),
              "t.toml:5:10: listener[0].reject: expected one of \"graceful\", \"reset\", got "
              "\"close\"");
    EXPECT_EQ(error_of(listener_with("max_conections = 5\n")),
              "t.toml:5:1: listener[0].max_conections: unknown key \"max_conections\" (did you "
              "mean \"max_connections\"?)");
}

// ---------------------------------------------------------------------------------------------
// The prelude: proxy_protocol, proxy_protocol_from, prelude_timeout, routes; send_proxy.

TEST(ConfigTest, PreludeDefaults) {
    Config c = load_string(kListenerAndCluster, "t.toml");
    EXPECT_EQ(c.listeners[0].proxy_protocol, ringlb::config::ProxyProtocol::kNone);
    EXPECT_TRUE(c.listeners[0].proxy_protocol_from.empty());
    EXPECT_EQ(c.listeners[0].prelude_timeout, Millis(5000));
    EXPECT_TRUE(c.listeners[0].routes.empty());
    EXPECT_FALSE(c.listeners[0].has_prelude());
    EXPECT_EQ(c.clusters[0].send_proxy, ringlb::config::SendProxy::kNone);
}

TEST(ConfigTest, PreludeKeys) {
    Config c = load_string(
        R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
proxy_protocol = "any"
proxy_protocol_from = ["10.1.2.3/8", "::1", "192.0.2.7"]
prelude_timeout = "250ms"
routes = [{ sni = "API.example.com", cluster = "api" }, { sni = "*.example.com", cluster = "app" }]
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
send_proxy = "v2"
[[cluster]]
name = "api"
backends = [ { address = "127.0.0.1:9002" } ]
)",
        "t.toml");
    const auto& l = c.listeners[0];
    EXPECT_EQ(l.proxy_protocol, ringlb::config::ProxyProtocol::kAny);
    ASSERT_EQ(l.proxy_protocol_from.size(), 3u);
    EXPECT_EQ(l.proxy_protocol_from[0].to_string(), "10.0.0.0/8");
    EXPECT_EQ(l.proxy_protocol_from[1].to_string(), "::1/128");
    EXPECT_EQ(l.proxy_protocol_from[2].to_string(), "192.0.2.7/32");
    EXPECT_EQ(l.prelude_timeout, Millis(250));
    ASSERT_EQ(l.routes.size(), 2u);
    EXPECT_EQ(l.routes[0].sni, "api.example.com");
    EXPECT_EQ(l.routes[0].cluster_index, 1u);
    EXPECT_EQ(l.routes[1].sni, "*.example.com");
    EXPECT_EQ(l.routes[1].cluster_index, 0u);
    EXPECT_TRUE(l.has_prelude());
    EXPECT_EQ(c.clusters[0].send_proxy, ringlb::config::SendProxy::kV2);
    EXPECT_EQ(c.clusters[1].send_proxy, ringlb::config::SendProxy::kNone);
}

TEST(ConfigTest, PreludeErrors) {
    EXPECT_EQ(error_of(listener_with("proxy_protocol = \"v3\"\n")),
              "t.toml:5:18: listener[0].proxy_protocol: expected one of \"none\", \"v1\", "
              "\"v2\", \"any\", got \"v3\" (did you mean \"v1\"?)");
    EXPECT_EQ(error_of(listener_with("proxy_protocol_from = [\"10.0.0.0/8\"]\n")),
              "t.toml:5:23: listener[0].proxy_protocol_from: has no effect without "
              "proxy_protocol (set proxy_protocol, or remove proxy_protocol_from)");
    EXPECT_EQ(error_of(listener_with("proxy_protocol = \"v1\"\nproxy_protocol_from = []\n")),
              "t.toml:6:23: listener[0].proxy_protocol_from: an empty list would refuse every "
              "client; leave proxy_protocol_from out to accept a header from any peer");
    std::string bad_cidr = error_of(
        listener_with("proxy_protocol = \"v1\"\nproxy_protocol_from = [\"10.0.0.0/33\"]\n"));
    EXPECT_EQ(bad_cidr.rfind("t.toml:6:24: listener[0].proxy_protocol_from[0]: invalid address "
                             "range \"10.0.0.0/33\": ",
                             0),
              0u)
        << bad_cidr;
    EXPECT_EQ(error_of(listener_with("prelude_timeout = \"0s\"\n")),
              "t.toml:5:19: listener[0].prelude_timeout: must be greater than 0, got \"0s\"");
    EXPECT_EQ(
        error_of(listener_with("routes = [{ sni = \"a.example.com\", cluster = \"apq\" }]\n")),
        "t.toml:5:46: listener[0].routes[0].cluster: cluster \"apq\" is not defined (did "
        "you mean \"app\"?)");
    EXPECT_EQ(error_of(listener_with("routes = [{ sni = \"a.example.com\" }]\n")),
              "t.toml:5:11: listener[0].routes[0].cluster: missing required key \"cluster\"");
    EXPECT_EQ(error_of(listener_with("routes = [{ sni = \"a.example.com\", cluster = \"app\", x = "
                                     "1 }]\n")),
              "t.toml:5:53: listener[0].routes[0].x: unknown key \"x\"");
    for (const char* bad : {"a.*.com", "*", "*.", "a..com", "a b.com", "", "a.com."}) {
        SCOPED_TRACE(bad);
        std::string e = error_of(listener_with(std::string("routes = [{ sni = \"") + bad +
                                               "\", cluster = \"app\" }]\n"));
        EXPECT_NE(e.find("listener[0].routes[0].sni: invalid server name"), std::string::npos) << e;
    }
    EXPECT_EQ(error_of(listener_with("routes = [{ sni = \"a.com\", cluster = \"app\" }, { sni = "
                                     "\"A.com\", cluster = \"app\" }]\n")),
              "t.toml:5:55: listener[0].routes[1].sni: duplicate route for \"a.com\" (also "
              "listener[0].routes[0])");
    EXPECT_EQ(error_of(cluster_with("send_proxy = \"v3\"\n")),
              "t.toml:8:14: cluster[0].send_proxy: expected one of \"none\", \"v1\", \"v2\", got "
              "\"v3\" (did you mean \"v1\"?)");
    EXPECT_EQ(error_of(cluster_with("routes = []\n")),
              "t.toml:8:1: cluster[0].routes: unknown key \"routes\" (it belongs in a "
              "[[listener]] section)");
}

TEST(ConfigTest, UnixListenersAndBackends) {
    Config config = load_string(
        "[[listener]]\nname = \"u\"\nbind = \"unix:/run/x.sock\"\ncluster = \"app\"\n"
        "mode = \"0660\"\nowner = \"root:0\"\ntcp_keepalive = {}\n"
        "[[cluster]]\nname = \"app\"\nsource_addresses = [\"127.0.0.2\"]\n"
        "backends = [ { address = \"unix:/run/app.sock\" }, { address = \"127.0.0.1:1\" } ]\n",
        "t.toml");
    const ringlb::config::ListenerConfig& l = config.listeners[0];
    EXPECT_EQ(l.bind.family(), AF_UNIX);
    EXPECT_EQ(l.bind.to_string(), "unix:/run/x.sock");
    EXPECT_EQ(l.mode, 0660);
    EXPECT_EQ(l.uid, 0u);
    EXPECT_EQ(l.gid, 0u);
    EXPECT_EQ(config.clusters[0].backends[0].address.to_string(), "unix:/run/app.sock");
    EXPECT_EQ(bind_error("unix:/run/x.sock", "unix:/run/x.sock"),
              "t.toml:7:8: listener[1].bind: address \"unix:/run/x.sock\" is already bound by "
              "listener[0] (\"one\", \"unix:/run/x.sock\" at line 3)");
    EXPECT_EQ(bind_error("unix:/run/x.sock", "unix:/run/y.sock"), "");
    EXPECT_EQ(bind_error("unix:/run/x.sock", "127.0.0.1:80"), "");
    EXPECT_EQ(bind_error("unix:run/x.sock", "127.0.0.1:80"),
              "t.toml:3:8: listener[0].bind: invalid address \"unix:run/x.sock\": expected an "
              "absolute path after \"unix:\", like \"unix:/run/x.sock\"");
    EXPECT_EQ(bind_error("unix:/" + std::string(107, 'a'), "127.0.0.1:80").substr(0, 90),
              "t.toml:3:8: listener[0].bind: invalid address \"unix:/" + std::string(37, 'a'));
    EXPECT_NE(bind_error("unix:/" + std::string(107, 'a'), "127.0.0.1:80")
                  .find("a unix socket path must be shorter than 108 bytes"),
              std::string::npos);
    EXPECT_EQ(error_of(listener_with("mode = \"0660\"\n")),
              "t.toml:5:8: listener[0].mode: only a unix listener (bind = \"unix:/path\") has a "
              "socket file");
    EXPECT_EQ(error_of(listener_with("owner = \"root\"\n")),
              "t.toml:5:9: listener[0].owner: only a unix listener (bind = \"unix:/path\") has a "
              "socket file");
    std::string unix_listener =
        "[[listener]]\nname = \"u\"\nbind = \"unix:/run/x.sock\"\ncluster = \"app\"\n";
    std::string cluster =
        "[[cluster]]\nname = \"app\"\nbackends = [ { address = \"127.0.0.1:1\" } ]\n";
    EXPECT_EQ(error_of(unix_listener + "mptcp = true\n" + cluster),
              "t.toml:5:9: listener[0].mptcp: a unix listener (bind = \"unix:/run/x.sock\") is no "
              "TCP");
    EXPECT_EQ(error_of(unix_listener + "mode = \"0680\"\n" + cluster),
              "t.toml:5:8: listener[0].mode: expected octal permission bits like \"0660\", got "
              "\"0680\"");
    EXPECT_EQ(error_of(unix_listener + "mode = \"17777\"\n" + cluster),
              "t.toml:5:8: listener[0].mode: expected octal permission bits like \"0660\", got "
              "\"17777\"");
    EXPECT_EQ(error_of(unix_listener + "owner = \"no-such-user-here:0\"\n" + cluster),
              "t.toml:5:9: listener[0].owner: invalid owner \"no-such-user-here:0\": no user "
              "\"no-such-user-here\" on this host");
    EXPECT_EQ(error_of(unix_listener + "owner = \":no-such-group-here\"\n" + cluster),
              "t.toml:5:9: listener[0].owner: invalid owner \":no-such-group-here\": no group "
              "\"no-such-group-here\" on this host");
    EXPECT_EQ(error_of(unix_listener + "owner = \":\"\n" + cluster),
              "t.toml:5:9: listener[0].owner: invalid owner \":\": expected \"user:group\", "
              "\"user\" or \":group\"");
    Config groups = load_string(unix_listener + "owner = \":0\"\n" + cluster, "t.toml");
    EXPECT_EQ(groups.listeners[0].uid, static_cast<uid_t>(-1));
    EXPECT_EQ(groups.listeners[0].gid, 0u);
    // The admin endpoint and DNS servers stay IP only.
    EXPECT_NE(error_of(with("[admin]\nbind = \"unix:/run/admin.sock\"\n")).find("invalid address"),
              std::string::npos);
    EXPECT_EQ(error_of(cluster_with("mptcp = 1\n")).substr(0, 30),
              "t.toml:8:1: cluster[0].mptcp: ");
    EXPECT_TRUE(load_string(listener_with("mptcp = true\n"), "t.toml").listeners[0].mptcp);
}

namespace {

using ringlb::config::ClusterTls;
using ringlb::config::ListenerTls;
using ringlb::config::TlsVersion;
using ringlb::config::VerifyClient;

// One certificate entry, as the tests below write it inline.
constexpr std::string_view kCertificates =
    R"(certificates = [{ cert = "/etc/ringlb/a.pem", key = "/etc/ringlb/a.key" }])";

// kListenerAndCluster whose listener has a [listener.tls] table with one certificate (lines 5
// and 6), and `lines` added to it from line 7.
std::string tls_with(std::string_view lines) {
    return listener_with("[listener.tls]\n" + std::string(kCertificates) + "\n" +
                         std::string(lines));
}

}  // namespace

TEST(ConfigTlsTest, ListenerDefaults) {
    Config none = load_string(kListenerAndCluster, "t.toml");
    EXPECT_FALSE(none.listeners[0].tls.enabled);
    EXPECT_FALSE(none.clusters[0].tls.enabled);

    Config c =
        load_string(listener_with("tls = { " + std::string(kCertificates) + " }\n"), "t.toml");
    const ListenerTls& tls = c.listeners[0].tls;
    EXPECT_TRUE(tls.enabled);
    EXPECT_EQ(tls.line, 5);
    ASSERT_EQ(tls.certificates.size(), 1u);
    EXPECT_EQ(tls.certificates[0].cert, "/etc/ringlb/a.pem");
    EXPECT_EQ(tls.certificates[0].key, "/etc/ringlb/a.key");
    EXPECT_EQ(tls.certificates[0].line, 5);
    EXPECT_EQ(tls.min_version, TlsVersion::k1_2);
    EXPECT_EQ(tls.ciphers, "");
    EXPECT_EQ(tls.ciphersuites, "");
    EXPECT_TRUE(tls.alpn.empty());
    EXPECT_EQ(tls.client_ca, "");
    EXPECT_EQ(tls.verify_client, VerifyClient::kNone);
    EXPECT_TRUE(tls.session_tickets);
    EXPECT_EQ(tls.handshake_timeout, Millis(10000));
    // The handshake is read before a cluster is picked.
    EXPECT_TRUE(c.listeners[0].has_prelude());
    EXPECT_EQ(c.listeners[0].forward, ForwardMode::kAuto);
}

TEST(ConfigTlsTest, ListenerEveryKeyAsSubTables) {
    Config c = load_string(R"([[listener]]
name = "web"
bind = "127.0.0.1:8443"
cluster = "app"
[listener.tls]
min_version = "1.3"
ciphers = "ECDHE+AESGCM"
ciphersuites = "TLS_AES_256_GCM_SHA384"
alpn = ["h2", "http/1.1"]
client_ca = "/etc/ringlb/clients.pem"
verify_client = "optional"
session_tickets = false
handshake_timeout = "3s"
[[listener.tls.certificates]]
cert = "/etc/ringlb/a.pem"
key = "/etc/ringlb/a.key"
[[listener.tls.certificates]]
cert = "/etc/ringlb/b.pem"
key = "/etc/ringlb/b.key"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)",
                           "t.toml");
    const ListenerTls& tls = c.listeners[0].tls;
    EXPECT_TRUE(tls.enabled);
    EXPECT_EQ(tls.line, 5);
    ASSERT_EQ(tls.certificates.size(), 2u);
    EXPECT_EQ(tls.certificates[0].cert, "/etc/ringlb/a.pem");
    EXPECT_EQ(tls.certificates[0].key, "/etc/ringlb/a.key");
    EXPECT_EQ(tls.certificates[0].line, 14);
    EXPECT_EQ(tls.certificates[1].cert, "/etc/ringlb/b.pem");
    EXPECT_EQ(tls.certificates[1].key, "/etc/ringlb/b.key");
    EXPECT_EQ(tls.certificates[1].line, 17);
    EXPECT_EQ(tls.min_version, TlsVersion::k1_3);
    EXPECT_EQ(tls.ciphers, "ECDHE+AESGCM");
    EXPECT_EQ(tls.ciphersuites, "TLS_AES_256_GCM_SHA384");
    EXPECT_EQ(tls.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
    EXPECT_EQ(tls.client_ca, "/etc/ringlb/clients.pem");
    EXPECT_EQ(tls.verify_client, VerifyClient::kOptional);
    EXPECT_FALSE(tls.session_tickets);
    EXPECT_EQ(tls.handshake_timeout, Millis(3000));

    // Certificates alone imply the tls table: its line is that of the first header naming it.
    Config implied = load_string(
        listener_with("[[listener.tls.certificates]]\ncert = \"/a.pem\"\nkey = \"/a.key\"\n"),
        "t.toml");
    EXPECT_TRUE(implied.listeners[0].tls.enabled);
    EXPECT_EQ(implied.listeners[0].tls.line, 5);
    ASSERT_EQ(implied.listeners[0].tls.certificates.size(), 1u);
    EXPECT_EQ(implied.listeners[0].tls.certificates[0].line, 5);

    Config require = load_string(
        tls_with("client_ca = \"/etc/ringlb/clients.pem\"\nverify_client = \"require\"\n"),
        "t.toml");
    EXPECT_EQ(require.listeners[0].tls.verify_client, VerifyClient::kRequire);
}

// The PROXY header is read first, then the ClientHello picks the cluster, then the handshake.
TEST(ConfigTlsTest, ListenerTlsWithProxyProtocolRoutesAndBufferedForwarding) {
    Config c = load_string(listener_with("proxy_protocol = \"v2\"\nforward = \"buffered\"\n"
                                         "routes = [{ sni = \"api.example.com\", cluster = "
                                         "\"app\" }]\ntls = { " +
                                         std::string(kCertificates) + " }\n"),
                           "t.toml");
    EXPECT_TRUE(c.listeners[0].tls.enabled);
    EXPECT_EQ(c.listeners[0].tls.line, 8);
    EXPECT_EQ(c.listeners[0].routes.size(), 1u);
    EXPECT_EQ(c.listeners[0].forward, ForwardMode::kBuffered);
}

TEST(ConfigTlsTest, ListenerErrors) {
    EXPECT_EQ(error_of(listener_with("tls = true\n")),
              "t.toml:5:7: listener[0].tls: expected a table like { certificates = [{ cert = "
              "\"/etc/ringlb/web.pem\", key = \"/etc/ringlb/web.key\" }] }, got boolean true");
    EXPECT_EQ(error_of(listener_with("tls = {}\n")),
              "t.toml:5:7: listener[0].tls.certificates: missing required key \"certificates\"");
    EXPECT_EQ(error_of(listener_with("tls = { certificates = [] }\n")),
              "t.toml:5:24: listener[0].tls.certificates: at least one certificate is required");
    EXPECT_EQ(error_of(listener_with("tls = { certificates = \"/a.pem\" }\n")),
              "t.toml:5:24: listener[0].tls.certificates: expected an array of certificates like "
              "[{ cert = \"/etc/ringlb/web.pem\", key = \"/etc/ringlb/web.key\" }], got "
              "\"/a.pem\"");
    EXPECT_EQ(error_of(listener_with("tls = { certificates = [{ cert = \"/a.pem\" }] }\n")),
              "t.toml:5:25: listener[0].tls.certificates[0].key: missing required key \"key\"");
    EXPECT_EQ(error_of(listener_with("tls = { certificates = [{ key = \"/a.key\" }] }\n")),
              "t.toml:5:25: listener[0].tls.certificates[0].cert: missing required key \"cert\"");
    EXPECT_EQ(
        error_of(
            listener_with("tls = { certificates = [{ cert = \"a.pem\", key = \"/a.key\" }] }\n")),
        "t.toml:5:34: listener[0].tls.certificates[0].cert: expected the absolute path of a PEM "
        "file such as \"/etc/ringlb/web.pem\", got \"a.pem\"");
    EXPECT_EQ(
        error_of(
            listener_with("tls = { certificates = [{ cert = \"/a.pem\", key = \"/tls/\" }] }\n")),
        "t.toml:5:50: listener[0].tls.certificates[0].key: expected the absolute path of a PEM "
        "file such as \"/etc/ringlb/web.key\", got \"/tls/\"");
    EXPECT_EQ(error_of(listener_with("tls = { certificates = [{ cert = \"/a.pem\", key = "
                                     "\"/a.key\", chain = \"/c.pem\" }] }\n")),
              "t.toml:5:60: listener[0].tls.certificates[0].chain: unknown key \"chain\"");
    EXPECT_EQ(error_of(listener_with("tls = { certificates = [{ cert = \"/a.pem\", key = "
                                     "\"/a.key\" }, { cert = \"/a.pem\", key = \"/b.key\" }] }\n")),
              "t.toml:5:71: listener[0].tls.certificates[1].cert: duplicate certificate "
              "\"/a.pem\" (also listener[0].tls.certificates[0])");

    EXPECT_EQ(error_of(tls_with("min_version = \"1.1\"\n")),
              "t.toml:7:15: listener[0].tls.min_version: expected one of \"1.2\", \"1.3\", got "
              "\"1.1\" (did you mean \"1.2\"?)");
    EXPECT_EQ(error_of(tls_with("min_version = 1.3\n")),
              "t.toml:7:15: listener[0].tls.min_version: expected one of \"1.2\", \"1.3\", got "
              "float 1.3");
    EXPECT_EQ(error_of(tls_with("verify_client = \"require\"\n")),
              "t.toml:7:17: listener[0].tls.verify_client: \"require\" needs client_ca, the PEM "
              "file of the CAs that client certificates must chain to");
    EXPECT_EQ(error_of(tls_with("verify_client = \"optional\"\n")),
              "t.toml:7:17: listener[0].tls.verify_client: \"optional\" needs client_ca, the PEM "
              "file of the CAs that client certificates must chain to");
    EXPECT_EQ(error_of(tls_with("verify_client = \"always\"\n")),
              "t.toml:7:17: listener[0].tls.verify_client: expected one of \"none\", "
              "\"optional\", \"require\", got \"always\"");
    EXPECT_EQ(error_of(tls_with("client_ca = \"/etc/ringlb/clients.pem\"\n")),
              "t.toml:7:13: listener[0].tls.client_ca: has no effect without verify_client = "
              "\"optional\" or \"require\" (set verify_client, or remove client_ca)");
    EXPECT_EQ(error_of(tls_with("client_ca = \"clients.pem\"\nverify_client = \"require\"\n")),
              "t.toml:7:13: listener[0].tls.client_ca: expected the absolute path of a PEM file "
              "such as \"/etc/ringlb/clients.pem\", got \"clients.pem\"");
    EXPECT_EQ(error_of(tls_with("alpn = \"h2\"\n")),
              "t.toml:7:8: listener[0].tls.alpn: expected an array of protocol names like "
              "[\"h2\", \"http/1.1\"], got \"h2\"");
    EXPECT_EQ(error_of(tls_with("alpn = [\"h2\", \"\"]\n")),
              "t.toml:7:15: listener[0].tls.alpn[1]: a protocol name has 1 to 255 bytes, got 0");
    EXPECT_EQ(error_of(tls_with("alpn = [\"" + std::string(256, 'x') + "\"]\n")),
              "t.toml:7:9: listener[0].tls.alpn[0]: a protocol name has 1 to 255 bytes, got 256");
    EXPECT_EQ(error_of(tls_with("alpn = [\"h2\", \"h2\"]\n")),
              "t.toml:7:15: listener[0].tls.alpn[1]: duplicate protocol \"h2\" (also "
              "listener[0].tls.alpn[0])");
    EXPECT_EQ(error_of(tls_with("alpn = [2]\n")),
              "t.toml:7:9: listener[0].tls.alpn[0]: expected a string, got integer 2");
    EXPECT_EQ(error_of(tls_with("ciphers = \"\"\n")),
              "t.toml:7:11: listener[0].tls.ciphers: must not be empty (leave the key out for "
              "OpenSSL's default)");
    EXPECT_EQ(error_of(tls_with("ciphersuites = 1\n")),
              "t.toml:7:16: listener[0].tls.ciphersuites: expected a string, got integer 1");
    EXPECT_EQ(error_of(tls_with("session_tickets = \"yes\"\n")),
              "t.toml:7:19: listener[0].tls.session_tickets: expected true or false, got \"yes\"");
    EXPECT_EQ(error_of(tls_with("handshake_timeout = \"0s\"\n")),
              "t.toml:7:21: listener[0].tls.handshake_timeout: must be greater than 0, got "
              "\"0s\"");
    EXPECT_EQ(error_of(tls_with("handshake_timeout = \"2h\"\n")),
              "t.toml:7:21: listener[0].tls.handshake_timeout: must be at most 1h, got \"2h\"");
    EXPECT_EQ(error_of(tls_with("verify_clients = \"none\"\n")),
              "t.toml:7:1: listener[0].tls.verify_clients: unknown key \"verify_clients\" (did "
              "you mean \"verify_client\"?)");
    EXPECT_EQ(error_of(tls_with("sni = \"a.example.com\"\n")),
              "t.toml:7:1: listener[0].tls.sni: unknown key \"sni\" (it belongs in a cluster's tls "
              "table)");
    EXPECT_EQ(error_of(tls_with("key = \"/a.key\"\n")),
              "t.toml:7:1: listener[0].tls.key: unknown key \"key\" (it is set on each entry of "
              "certificates)");

    // splice moves bytes between sockets inside the kernel: nothing could decrypt them.
    EXPECT_EQ(error_of(listener_with("forward = \"splice\"\ntls = { " + std::string(kCertificates) +
                                     " }\n")),
              "t.toml:5:11: listener[0].forward: \"splice\" cannot carry TLS: this listener "
              "terminates TLS (its tls at line 6), and TLS bytes must pass through ringlb's "
              "buffers to be encrypted or decrypted; use \"auto\" or \"buffered\"");
}

TEST(ConfigTlsTest, ClusterDefaultsAndEveryKey) {
    Config plain = load_string(cluster_with("tls = {}\n"), "t.toml");
    const ClusterTls& d = plain.clusters[0].tls;
    EXPECT_TRUE(d.enabled);
    EXPECT_EQ(d.line, 8);
    EXPECT_EQ(d.sni, "");
    EXPECT_TRUE(d.verify);
    EXPECT_EQ(d.ca, "");
    EXPECT_EQ(d.cert, "");
    EXPECT_EQ(d.key, "");
    EXPECT_TRUE(d.alpn.empty());
    EXPECT_EQ(d.min_version, TlsVersion::k1_2);
    EXPECT_EQ(d.ciphers, "");
    EXPECT_EQ(d.ciphersuites, "");
    EXPECT_EQ(d.handshake_timeout, Millis(10000));
    // A TLS cluster needs no prelude on the client side.
    EXPECT_FALSE(plain.listeners[0].has_prelude());

    Config full = load_string(cluster_with(R"([cluster.tls]
sni = "API.Internal"
verify = true
ca = "/etc/ringlb/ca.pem"
cert = "/etc/ringlb/client.pem"
key = "/etc/ringlb/client.key"
alpn = ["h2"]
min_version = "1.3"
ciphers = "ECDHE+AESGCM"
ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"
handshake_timeout = "500ms"
)"),
                              "t.toml");
    const ClusterTls& f = full.clusters[0].tls;
    EXPECT_TRUE(f.enabled);
    EXPECT_EQ(f.line, 8);
    EXPECT_EQ(f.sni, "api.internal");
    EXPECT_TRUE(f.verify);
    EXPECT_EQ(f.ca, "/etc/ringlb/ca.pem");
    EXPECT_EQ(f.cert, "/etc/ringlb/client.pem");
    EXPECT_EQ(f.key, "/etc/ringlb/client.key");
    EXPECT_EQ(f.alpn, std::vector<std::string>{"h2"});
    EXPECT_EQ(f.min_version, TlsVersion::k1_3);
    EXPECT_EQ(f.ciphers, "ECDHE+AESGCM");
    EXPECT_EQ(f.ciphersuites, "TLS_CHACHA20_POLY1305_SHA256");
    EXPECT_EQ(f.handshake_timeout, Millis(500));

    Config unchecked = load_string(cluster_with("tls = { verify = false }\n"), "t.toml");
    EXPECT_FALSE(unchecked.clusters[0].tls.verify);
}

TEST(ConfigTlsTest, ClusterErrors) {
    EXPECT_EQ(error_of(cluster_with("tls = \"on\"\n")),
              "t.toml:8:7: cluster[0].tls: expected a table like { sni = \"api.internal\", ca = "
              "\"/etc/ringlb/ca.pem\" }, got \"on\"");
    EXPECT_EQ(error_of(cluster_with("tls = { sni = \"*.example.com\" }\n")),
              "t.toml:8:15: cluster[0].tls.sni: a wildcard names no server: \"*.example.com\" is "
              "sent as the one name the backends' certificates must hold (expected a host name "
              "like \"api.internal\")");
    EXPECT_EQ(error_of(cluster_with("tls = { sni = \"*\" }\n"))
                  .rfind("t.toml:8:15: cluster[0].tls.sni: a wildcard names no server: \"*\"", 0),
              0u);
    EXPECT_EQ(error_of(cluster_with("tls = { sni = \"a..b\" }\n")),
              "t.toml:8:15: cluster[0].tls.sni: invalid server name \"a..b\": SNI pattern 'a..b': "
              "empty label (expected a host name like \"api.internal\")");
    EXPECT_EQ(error_of(cluster_with("tls = { sni = \"10.0.0.1\" }\n")),
              "t.toml:8:15: cluster[0].tls.sni: \"10.0.0.1\" is an IP address, and TLS's server "
              "name (SNI) is a host name only; leave sni out to send none");
    EXPECT_NE(error_of(cluster_with("tls = { sni = \"::1\" }\n"))
                  .find("cluster[0].tls.sni: invalid server name \"::1\""),
              std::string::npos);
    EXPECT_EQ(error_of(cluster_with("tls = { cert = \"/c.pem\" }\n")),
              "t.toml:8:16: cluster[0].tls.cert: needs key, the client certificate's private key");
    EXPECT_EQ(error_of(cluster_with("tls = { key = \"/c.key\" }\n")),
              "t.toml:8:15: cluster[0].tls.key: needs cert, the client certificate it belongs to");
    EXPECT_EQ(error_of(cluster_with("tls = { cert = \"c.pem\", key = \"/c.key\" }\n")),
              "t.toml:8:16: cluster[0].tls.cert: expected the absolute path of a PEM file such "
              "as \"/etc/ringlb/client.pem\", got \"c.pem\"");
    EXPECT_EQ(error_of(cluster_with("tls = { verify = false, ca = \"/ca.pem\" }\n")),
              "t.toml:8:30: cluster[0].tls.ca: has no effect with verify = false (set verify = "
              "true, or remove ca)");
    EXPECT_EQ(error_of(cluster_with("tls = { ca = \"ca.pem\" }\n")),
              "t.toml:8:14: cluster[0].tls.ca: expected the absolute path of a PEM file such as "
              "\"/etc/ringlb/ca.pem\", got \"ca.pem\"");
    EXPECT_EQ(error_of(cluster_with("tls = { verify = \"yes\" }\n")),
              "t.toml:8:18: cluster[0].tls.verify: expected true or false, got \"yes\"");
    EXPECT_EQ(error_of(cluster_with("tls = { alpn = [\"\"] }\n")),
              "t.toml:8:17: cluster[0].tls.alpn[0]: a protocol name has 1 to 255 bytes, got 0");
    EXPECT_EQ(error_of(cluster_with("tls = { min_version = \"1.0\" }\n")),
              "t.toml:8:23: cluster[0].tls.min_version: expected one of \"1.2\", \"1.3\", got "
              "\"1.0\" (did you mean \"1.2\"?)");
    EXPECT_EQ(error_of(cluster_with("tls = { handshake_timeout = \"0ms\" }\n")),
              "t.toml:8:29: cluster[0].tls.handshake_timeout: must be greater than 0, got \"0ms\"");
    EXPECT_EQ(error_of(cluster_with("tls = { certificates = [] }\n")),
              "t.toml:8:9: cluster[0].tls.certificates: unknown key \"certificates\" (it belongs "
              "in a listener's tls table)");
    EXPECT_EQ(error_of(cluster_with("tls = { verify_client = \"none\" }\n")),
              "t.toml:8:9: cluster[0].tls.verify_client: unknown key \"verify_client\" (it belongs "
              "in a listener's tls table)");
}

// A listener that splices cannot reach a cluster that speaks TLS: its own, or a route's.
TEST(ConfigTlsTest, SpliceCannotReachATlsCluster) {
    EXPECT_EQ(
        error_of(listener_with("forward = \"splice\"\n") + "tls = { sni = \"app.internal\" }\n"),
        "t.toml:5:11: listener[0].forward: \"splice\" cannot carry TLS: cluster \"app\" "
        "speaks TLS to its backends (its tls at line 9), and TLS bytes must pass through "
        "ringlb's buffers to be encrypted or decrypted; use \"auto\" or \"buffered\"");
    std::string routed = listener_with(
                             "forward = \"splice\"\nroutes = [{ sni = \"a.example.com\", cluster = "
                             "\"app\" }, { sni = \"b.example.com\", cluster = \"secure\" }]\n") +
                         "[[cluster]]\nname = \"secure\"\nbackends = [ { address = "
                         "\"127.0.0.1:9002\" } ]\ntls = {}\n";
    EXPECT_EQ(error_of(routed),
              "t.toml:5:11: listener[0].forward: \"splice\" cannot carry TLS: cluster \"secure\" "
              "(routes[1]) speaks TLS to its backends (its tls at line 13), and TLS bytes must "
              "pass through ringlb's buffers to be encrypted or decrypted; use \"auto\" or "
              "\"buffered\"");
    // "auto" is buffered: allowed, as is a splicing listener whose clusters are plain TCP.
    std::string automatic = routed;
    automatic.replace(automatic.find("\"splice\""), 8, "\"auto\"");
    EXPECT_NO_THROW(load_string(automatic, "t.toml"));
    std::string plain = routed.substr(0, routed.rfind("tls = {}\n"));
    EXPECT_NO_THROW(load_string(plain, "t.toml"));
}

TEST(ConfigTlsTest, EnumNames) {
    using ringlb::config::to_string;
    EXPECT_STREQ(to_string(TlsVersion::k1_2), "1.2");
    EXPECT_STREQ(to_string(TlsVersion::k1_3), "1.3");
    EXPECT_STREQ(to_string(VerifyClient::kNone), "none");
    EXPECT_STREQ(to_string(VerifyClient::kOptional), "optional");
    EXPECT_STREQ(to_string(VerifyClient::kRequire), "require");
}
