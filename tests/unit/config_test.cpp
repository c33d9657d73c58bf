#include "config/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

using ringlb::config::Config;
using ringlb::config::ConfigError;
using ringlb::config::EngineKind;
using ringlb::config::ForwardMode;
using ringlb::config::load_file;
using ringlb::config::load_string;
using ringlb::config::Millis;
using ringlb::config::parse_duration;

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

TEST(ConfigTest, LogLevelIsNotAConfigKey) {
    EXPECT_EQ(error_of(with("[runtime]\nlog_level = \"debug\"\n")),
              "t.toml:2:1: runtime.log_level: unknown key \"log_level\" (the log level is set on "
              "the command line with --log-level)");
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
              "listener[0] (\"web2\")");
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
              "expected \"ip:port\"");
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
        EXPECT_STREQ(error.what(), "/tmp: cannot read: Is a directory");
    }
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
