// [log] against the real binary: every line of a run parses in the configured format (JSON with
// nlohmann::json, logfmt with tests/tools/logfmt.hpp), a configuration error before the load is
// still text, `level` filters and --log-level overrides it, and the access log writes exactly one
// line per session with the listener, the backend, the bytes and the client port each client
// saw, for sessions that never reached a backend too, to a file or to stderr, and at shutdown
// the sessions still open.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"
#include "tests/tools/logfmt.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;
using Fields = std::map<std::string, std::string>;

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    size_t pos = 0;
    for (size_t end; (end = text.find('\n', pos)) != std::string::npos; pos = end + 1)
        lines.push_back(text.substr(pos, end - pos));
    return lines;
}

// "2026-12-02T12:00:00.123Z"
bool is_timestamp(std::string_view ts) {
    if (ts.size() != 24) return false;
    for (size_t i = 0; i < ts.size(); ++i) {
        char c = ts[i];
        bool ok = i == 4 || i == 7     ? c == '-'
                  : i == 10            ? c == 'T'
                  : i == 13 || i == 16 ? c == ':'
                  : i == 19            ? c == '.'
                  : i == 23            ? c == 'Z'
                                       : (c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

bool is_level(const std::string& level) {
    return level == "debug" || level == "info" || level == "warn" || level == "error";
}

// A JSON object's members as text: strings as they are, numbers as JSON writes them, null as
// "-" (what text and logfmt write), so one check serves every format.
std::optional<Fields> json_fields(const std::string& line, std::string* error) {
    nlohmann::json parsed;
    try {
        parsed = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
        *error = std::string(e.what()) + " in: " + line;
        return std::nullopt;
    }
    if (!parsed.is_object()) {
        *error = "not an object: " + line;
        return std::nullopt;
    }
    Fields fields;
    for (auto& [key, value] : parsed.items()) {
        if (value.is_string())
            fields[key] = value.get<std::string>();
        else if (value.is_null())
            fields[key] = "-";
        else if (value.is_number())
            fields[key] = value.dump();
        else {
            *error = "member " + key + " is neither a string, a number nor null: " + line;
            return std::nullopt;
        }
    }
    return fields;
}

// One access-log line in `format` as fields; text is "TS access k=v ...".
std::optional<Fields> access_fields(const std::string& format, const std::string& line,
                                    std::string* error) {
    if (format == "json") return json_fields(line, error);
    if (format == "logfmt") return tools::parse_logfmt(line, error);
    size_t space = line.find(' ');
    if (space == std::string::npos || !is_timestamp(line.substr(0, space)) ||
        line.compare(space, 8, " access ") != 0) {
        *error = "not \"TIMESTAMP access ...\": " + line;
        return std::nullopt;
    }
    auto fields = tools::parse_logfmt(std::string_view(line).substr(space + 8), error);
    if (fields) (*fields)["ts"] = line.substr(0, space);
    return fields;
}

// Checks that `fields` are exactly a log line's: ts, level, msg.
::testing::AssertionResult is_log_line(const Fields& fields, const std::string& line) {
    if (fields.size() != 3 || !fields.count("ts") || !fields.count("level") || !fields.count("msg"))
        return ::testing::AssertionFailure() << "not exactly ts, level, msg: " << line;
    if (!is_timestamp(fields.at("ts"))) return ::testing::AssertionFailure() << "bad ts: " << line;
    if (!is_level(fields.at("level")))
        return ::testing::AssertionFailure() << "bad level: " << line;
    return ::testing::AssertionSuccess();
}

uint16_t local_port(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
    return ntohs(reinterpret_cast<sockaddr_in&>(address).sin_port);
}

// One client through an echo backend: `bytes` up, the same back, then the backend's EOF.
// Returns the client's port, 0 on failure (reason in *error).
uint16_t echo_client(uint16_t port, size_t bytes, std::string* error) {
    common::Fd fd = connect_to(port, 5000ms, error);
    if (!fd) return 0;
    uint16_t mine = local_port(fd.get());
    std::string payload(bytes, 'x');
    for (size_t i = 0; i < bytes; ++i) payload[i] = static_cast<char>('a' + (i * 7 + bytes) % 26);
    if (!send_all(fd.get(), payload.data(), payload.size(), 5000ms)) {
        *error = "send failed";
        return 0;
    }
    ::shutdown(fd.get(), SHUT_WR);
    std::string echoed;
    CloseResult close = wait_for_close(fd.get(), 5000ms, &echoed);
    if (close.kind != CloseKind::kEof || echoed != payload) {
        *error = std::string("close ") + to_string(close.kind) + " after " +
                 std::to_string(echoed.size()) + " of " + std::to_string(bytes) + " bytes";
        return 0;
    }
    return mine;
}

// Polls `path` until it holds at least `count` lines (or 10 s pass); returns its lines.
std::vector<std::string> wait_for_lines(const std::string& path, size_t count) {
    auto deadline = Clock::now() + 10s;
    std::vector<std::string> lines;
    while ((lines = lines_of(read_file(path))).size() < count && Clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    return lines;
}

class LogFormatTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }

    // Runs ringlb with `log_section`, a refusing backend next to a working one (debug lines for
    // the failed connects), traffic, SIGUSR1 and a stop; *log is its whole output. Skips the
    // test where the engine is unavailable.
    void run_with(const std::string& log_section, std::string* log) {
        BackendProcess backend;
        ASSERT_TRUE(backend.start(EchoMode::kEcho));
        ProxyConfigSpec spec;
        spec.engine = engine();
        spec.backends = {backend.address(), "127.0.0.1:" + std::to_string(free_port())};
        std::string config = make_config(spec) + "\n" + log_section;
        ProxyProcess proxy;
        RINGLB_START_PROXY(proxy, config, engine());
        for (size_t i = 0; i < 6; ++i) {
            std::string error;
            EXPECT_NE(echo_client(spec.listen_port, 100 + i, &error), 0) << error;
        }
        size_t from = proxy.log().size();
        proxy.signal(SIGUSR1);
        EXPECT_TRUE(proxy.wait_for_log("stats:", 5000ms, from)) << proxy.log_tail();
        EXPECT_EQ(proxy.stop(), 0);
        *log = proxy.log();
        EXPECT_EQ(sanitizer_report(*log), "") << *log;
    }
};

// Every line of the run is one JSON object with exactly ts, level and msg.
TEST_P(LogFormatTest, JsonEveryLineParses) {
    std::string log;
    run_with("[log]\nformat = \"json\"\nlevel = \"debug\"\n", &log);
    if (IsSkipped() || HasFatalFailure()) return;
    std::vector<std::string> lines = lines_of(log);
    ASSERT_GE(lines.size(), 8u) << log;
    EXPECT_TRUE(log.ends_with('\n'));
    std::set<std::string> levels;
    std::vector<std::string> messages;
    for (const std::string& line : lines) {
        std::string error;
        auto fields = json_fields(line, &error);
        ASSERT_TRUE(fields) << error;
        ASSERT_TRUE(is_log_line(*fields, line));
        EXPECT_TRUE(line.starts_with("{\"ts\":\"")) << line;
        levels.insert(fields->at("level"));
        messages.push_back(fields->at("msg"));
    }
    auto has = [&](std::string_view start) {
        for (const std::string& m : messages)
            if (m.starts_with(start)) return true;
        return false;
    };
    EXPECT_TRUE(has("ringlb ")) << log;
    EXPECT_TRUE(has("ready: ")) << log;
    EXPECT_TRUE(has("shard 0 stats: accepted=")) << log;
    EXPECT_TRUE(has("stopped")) << log;
    EXPECT_TRUE(levels.count("info")) << log;
    EXPECT_TRUE(levels.count("debug")) << log;  // the refused connects
}

TEST_P(LogFormatTest, LogfmtEveryLineParses) {
    std::string log;
    run_with("[log]\nformat = \"logfmt\"\nlevel = \"debug\"\n", &log);
    if (IsSkipped() || HasFatalFailure()) return;
    std::vector<std::string> lines = lines_of(log);
    ASSERT_GE(lines.size(), 8u) << log;
    std::set<std::string> levels;
    bool ready = false, stats = false;
    for (const std::string& line : lines) {
        std::string error;
        auto fields = tools::parse_logfmt(line, &error);
        ASSERT_TRUE(fields) << error;
        ASSERT_TRUE(is_log_line(*fields, line));
        EXPECT_TRUE(line.starts_with("ts=")) << line;
        levels.insert(fields->at("level"));
        ready = ready || fields->at("msg").starts_with("ready: ");
        stats = stats || fields->at("msg").starts_with("shard 0 stats: accepted=");
    }
    EXPECT_TRUE(ready) << log;
    EXPECT_TRUE(stats) << log;
    EXPECT_TRUE(levels.count("debug")) << log;
}

INSTANTIATE_TEST_SUITE_P(Engines, LogFormatTest, ::testing::ValuesIn(kEngines), engine_name);

// The file that sets the format did not load: the error is a text line.
TEST(LogConfigTest, AnErrorBeforeTheLoadIsText) {
    TempDir dir;
    ProxyConfigSpec spec;
    spec.backends = {"127.0.0.1:9"};
    std::string path = dir.file("ringlb.toml");
    write_file(path, make_config(spec) + "\n[log]\nformat = \"json\"\nlevel = \"loud\"\n");
    CommandResult result = run_ringlb({"run", path});
    EXPECT_EQ(result.exit_code, 1) << result.output;
    std::vector<std::string> lines = lines_of(result.output);
    ASSERT_EQ(lines.size(), 1u) << result.output;
    EXPECT_TRUE(is_timestamp(lines[0].substr(0, 24))) << lines[0];
    EXPECT_NE(lines[0].find(" error " + path + ":"), std::string::npos) << lines[0];
    EXPECT_NE(
        lines[0].find(": log.level: expected one of \"debug\", \"info\", \"warn\", \"error\""),
        std::string::npos)
        << lines[0];
}

// level = "warn": a warning (a low fd limit) is written, no info line is; --log-level info on
// the command line brings them back and is the level /config shows.
TEST(LogConfigTest, LevelWarnSuppressesInfoAndTheCommandLineOverridesIt) {
    TempDir dir;
    ProxyConfigSpec spec;
    spec.engine = "epoll";
    spec.workers = 1;
    spec.backends = {"127.0.0.1:9"};
    std::string path = dir.file("ringlb.toml");
    write_file(path, make_config(spec) + "\n[log]\nlevel = \"warn\"\n");
    std::vector<std::string> launcher{
        "/usr/bin/prlimit", "--nofile=1024:1024", "--", RINGLB_BINARY, "run", path};
    {
        Subprocess proxy;
        std::string error;
        ASSERT_TRUE(proxy.spawn(launcher, dir.file("warn.log"), &error)) << error;
        // No "ready:" line to wait for at this level: the admin endpoint says it.
        std::optional<std::string> ready;
        auto deadline = Clock::now() + 10s;
        while (!(ready = http_get(spec.admin_port, "/ready", 1000ms)) && Clock::now() < deadline)
            std::this_thread::sleep_for(50ms);
        ASSERT_EQ(ready, std::optional<std::string>("ready\n")) << read_file(dir.file("warn.log"));
        ::kill(proxy.pid(), SIGTERM);
        ASSERT_EQ(proxy.wait(10s), std::optional<int>(0));
        std::string log = read_file(dir.file("warn.log"));
        EXPECT_NE(log.find(" warn fd limit is 1024 "), std::string::npos) << log;
        EXPECT_EQ(log.find(" info "), std::string::npos) << log;
        for (const std::string& line : lines_of(log))
            EXPECT_NE(line.find(" warn "), std::string::npos) << line;
    }
    ProxyProcess proxy;
    proxy.set_launcher({"/usr/bin/prlimit", "--nofile=1024:1024", "--"});
    StartResult started = proxy.start_file(path, {"--log-level", "info"});
    ASSERT_TRUE(started.ready()) << started.describe();
    std::string error;
    auto config = http_get(spec.admin_port, "/config", 5000ms, &error);
    ASSERT_TRUE(config) << error;
    EXPECT_NE(config->find("\n[log]\nformat = \"text\"\nlevel = \"info\"\n"), std::string::npos)
        << *config;
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_NE(proxy.log().find(" info stopped\n"), std::string::npos) << proxy.log();
}

// engine x format
class AccessLogTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
  protected:
    const std::string& engine() const { return std::get<0>(GetParam()); }
    const std::string& format() const { return std::get<1>(GetParam()); }
};

std::string engine_format_name(
    const ::testing::TestParamInfo<std::tuple<std::string, std::string>>& info) {
    return std::get<0>(info.param) + "_" + std::get<1>(info.param);
}

// 50 sessions of known sizes: exactly 50 lines, each naming its client's port once, with the
// listener, the backend, both byte counts and "done"; a session still open at the stop is
// written before ringlb exits, with reason "shutdown".
TEST_P(AccessLogTest, OneLinePerSessionToAFile) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    TempDir dir;
    std::string access = dir.file("access.log");
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    std::string config =
        make_config(spec) + "\n[log]\nformat = \"" + format() + "\"\naccess = \"" + access + "\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, engine());

    constexpr size_t kSessions = 50;
    std::map<uint16_t, size_t> sizes;  // client port -> bytes each way
    for (size_t i = 0; i < kSessions; ++i) {
        size_t bytes = 1 + i * 997;
        std::string error;
        uint16_t port = echo_client(spec.listen_port, bytes, &error);
        ASSERT_NE(port, 0) << "client " << i << ": " << error;
        ASSERT_TRUE(sizes.emplace(port, bytes).second) << "port " << port << " twice";
    }
    std::vector<std::string> lines = wait_for_lines(access, kSessions);
    ASSERT_EQ(lines.size(), kSessions) << read_file(access);

    std::set<uint16_t> seen;
    for (const std::string& line : lines) {
        std::string error;
        auto fields = access_fields(format(), line, &error);
        ASSERT_TRUE(fields) << error;
        const Fields& f = *fields;
        EXPECT_EQ(f.size(), 9u) << line;
        EXPECT_TRUE(is_timestamp(f.at("ts"))) << line;
        EXPECT_EQ(f.at("listener"), "test") << line;
        EXPECT_EQ(f.at("backend"), backend.address()) << line;
        EXPECT_EQ(f.at("reason"), "done") << line;
        const std::string& client = f.at("client");
        ASSERT_TRUE(client.starts_with("127.0.0.1:")) << line;
        uint16_t port = static_cast<uint16_t>(std::stoul(client.substr(10)));
        ASSERT_TRUE(sizes.count(port)) << "no client had port " << port << ": " << line;
        EXPECT_TRUE(seen.insert(port).second) << "port " << port << " twice: " << line;
        EXPECT_EQ(f.at("bytes_in"), std::to_string(sizes[port])) << line;
        EXPECT_EQ(f.at("bytes_out"), std::to_string(sizes[port])) << line;
        double duration = std::stod(f.at("duration_ms"));
        double connect = std::stod(f.at("connect_ms"));
        EXPECT_GE(connect, 0) << line;
        EXPECT_GE(duration, connect) << line;
        EXPECT_LT(duration, 10000) << line;
    }
    EXPECT_EQ(seen.size(), kSessions);

    // One more, open when ringlb stops.
    std::string error;
    common::Fd open = connect_to(spec.listen_port, 5000ms, &error);
    ASSERT_TRUE(open) << error;
    uint16_t open_port = local_port(open.get());
    ASSERT_TRUE(send_all(open.get(), "hello", 5, 5000ms));
    ASSERT_TRUE(recv_exactly(open.get(), 5, 5000ms));
    auto metrics = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(metrics->type("ringlb_access_log_dropped_total"), "counter");
    EXPECT_EQ(metrics->sum("ringlb_access_log_dropped_total"), 0);
    EXPECT_EQ(proxy.stop(), 0);
    lines = lines_of(read_file(access));
    ASSERT_EQ(lines.size(), kSessions + 1) << read_file(access);
    auto last = access_fields(format(), lines.back(), &error);
    ASSERT_TRUE(last) << error;
    EXPECT_EQ(last->at("client"), "127.0.0.1:" + std::to_string(open_port)) << lines.back();
    // SIGTERM drains; with the testkit's drain_timeout = "0s" what is open closes as drained.
    EXPECT_EQ(last->at("reason"), "drained") << lines.back();
    EXPECT_EQ(last->at("bytes_in"), "5") << lines.back();
    EXPECT_EQ(last->at("bytes_out"), "5") << lines.back();
    EXPECT_EQ(sanitizer_report(proxy.log()), "") << proxy.log();
}

// A backend that refuses: every session is written, with no backend, no connect time, no bytes
// and the reason the metrics count it under.
TEST_P(AccessLogTest, SessionsThatNeverReachABackend) {
    TempDir dir;
    std::string access = dir.file("access.log");
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {"127.0.0.1:" + std::to_string(free_port())};  // nothing listens there
    std::string config =
        make_config(spec) + "\n[log]\nformat = \"" + format() + "\"\naccess = \"" + access + "\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, engine());

    constexpr size_t kSessions = 5;
    std::set<uint16_t> ports;
    for (size_t i = 0; i < kSessions; ++i) {
        std::string error;
        common::Fd fd = connect_to(spec.listen_port, 5000ms, &error);
        ASSERT_TRUE(fd) << error;
        ports.insert(local_port(fd.get()));
        CloseResult close = wait_for_close(fd.get(), 5000ms);
        ASSERT_NE(close.kind, CloseKind::kTimeout);
    }
    std::vector<std::string> lines = wait_for_lines(access, kSessions);
    ASSERT_EQ(lines.size(), kSessions) << read_file(access);
    std::set<uint16_t> seen;
    for (const std::string& line : lines) {
        std::string error;
        auto fields = access_fields(format(), line, &error);
        ASSERT_TRUE(fields) << error;
        const Fields& f = *fields;
        EXPECT_EQ(f.at("listener"), "test") << line;
        EXPECT_EQ(f.at("backend"), "-") << line;
        EXPECT_EQ(f.at("connect_ms"), "-") << line;
        EXPECT_EQ(f.at("bytes_in"), "0") << line;
        EXPECT_EQ(f.at("bytes_out"), "0") << line;
        EXPECT_EQ(f.at("reason"), "no_backend") << line;
        uint16_t port = static_cast<uint16_t>(std::stoul(f.at("client").substr(10)));
        EXPECT_TRUE(ports.count(port)) << line;
        seen.insert(port);
    }
    EXPECT_EQ(seen, ports);
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_EQ(lines_of(read_file(access)).size(), kSessions);
}

INSTANTIATE_TEST_SUITE_P(EnginesFormats, AccessLogTest,
                         ::testing::Combine(::testing::ValuesIn(kEngines),
                                            ::testing::Values("text", "logfmt", "json")),
                         engine_format_name);

// access = "stderr": the access lines go with the log lines, each whole, each parsing.
TEST(AccessLogStderrTest, AccessLinesJoinTheLogLines) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = "epoll";
    spec.backends = {backend.address()};
    std::string config = make_config(spec) + "\n[log]\nformat = \"logfmt\"\naccess = \"stderr\"\n";
    ProxyProcess proxy;
    StartResult started = proxy.start(config);
    ASSERT_TRUE(started.ready()) << started.describe();

    constexpr size_t kSessions = 20;
    std::set<uint16_t> ports;
    for (size_t i = 0; i < kSessions; ++i) {
        std::string error;
        uint16_t port = echo_client(spec.listen_port, 10 + i, &error);
        ASSERT_NE(port, 0) << error;
        ports.insert(port);
    }
    EXPECT_EQ(proxy.stop(), 0);
    std::set<uint16_t> seen;
    size_t log_lines = 0;
    for (const std::string& line : lines_of(proxy.log())) {
        std::string error;
        auto fields = tools::parse_logfmt(line, &error);
        ASSERT_TRUE(fields) << error;
        if (fields->count("msg")) {
            EXPECT_TRUE(is_log_line(*fields, line));
            ++log_lines;
            continue;
        }
        EXPECT_EQ(fields->size(), 9u) << line;
        EXPECT_EQ(fields->at("backend"), backend.address()) << line;
        EXPECT_EQ(fields->at("reason"), "done") << line;
        uint16_t port = static_cast<uint16_t>(std::stoul(fields->at("client").substr(10)));
        EXPECT_TRUE(ports.count(port)) << line;
        EXPECT_TRUE(seen.insert(port).second) << line;
        EXPECT_EQ(fields->at("bytes_in"), fields->at("bytes_out")) << line;
    }
    EXPECT_EQ(seen, ports) << proxy.log();
    EXPECT_GE(log_lines, 3u) << proxy.log();
}

}  // namespace
}  // namespace ringlb::testkit
