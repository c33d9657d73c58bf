// Starting and stopping the process: a second ringlb on a served address refuses to start (the
// first keeps every connection), a restart binds while the previous run's connections sit in
// TIME_WAIT, a stop signal during startup exits 0 after closing what was opened, and more
// workers than usable CPUs are warned about at start and by `ringlb check`.

#include <sched.h>
#include <signal.h>

#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

class StartupTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }

    // Skips (with the reason) when the engine under test cannot run on this host.
    bool engine_unavailable(std::string* reason) const {
        return engine() == "io_uring" && !io_uring_available(reason);
    }
};

size_t count_of(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

// The first CPU this process may run on; -1 if the mask cannot be read.
int first_usable_cpu() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) return cpu;
    return -1;
}

TEST_P(StartupTest, SecondInstanceOnAServedAddressExitsAndTheFirstKeepsEveryConnection) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHttp, "first"));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {backend.address()};
    std::string config = make_config(spec);
    ProxyProcess first;
    RINGLB_START_PROXY(first, config, engine());

    // The same listener, its own admin port: only the listener address clashes.
    ProxyConfigSpec second_spec = spec;
    second_spec.admin_port = 0;
    TempDir dir;
    write_file(dir.file("second.toml"), make_config(second_spec));
    CommandResult second = run_ringlb({"run", dir.file("second.toml")}, 10s);
    EXPECT_EQ(second.exit_code, 1) << second.output;
    std::string reason =
        "error listener test: cannot listen on 127.0.0.1:" + std::to_string(spec.listen_port) +
        ": Address already in use";
    EXPECT_NE(second.output.find(reason), std::string::npos) << second.output;
    EXPECT_EQ(second.output.find("ready:"), std::string::npos) << second.output;

    // Every connection reaches the first instance.
    constexpr int kConnections = 40;
    for (int i = 0; i < kConnections; ++i) {
        std::string error;
        auto body = http_get(spec.listen_port, 5s, &error);
        ASSERT_TRUE(body) << "connection " << i << ": " << error;
        EXPECT_EQ(*body, "hello from first\n");
    }
    std::string last;
    EXPECT_TRUE(
        wait_for_metric(spec.admin_port, "ringlb_accepted_total", {}, kConnections, 5s, &last))
        << last;
    std::string error;
    auto metrics = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(metrics->sum("ringlb_accepted_total"), kConnections)
        << metrics->describe("ringlb_accepted_total");
    EXPECT_EQ(first.stop(), 0);

    // The backend closed each exchange, so ringlb's FIN reached each client first: the client
    // legs sit in TIME_WAIT on the listening port. A restart binds there all the same.
    EXPECT_GT(count_time_wait_between(spec.listen_port, 0), 0);
    ProxyProcess restarted;
    RINGLB_START_PROXY(restarted, config, engine());
    auto body = http_get(spec.listen_port, 5s, &error);
    ASSERT_TRUE(body) << error;
    EXPECT_EQ(*body, "hello from first\n");
    EXPECT_EQ(restarted.stop(), 0);
}

// Anything of the same user listening with SO_REUSEPORT (an older ringlb, say) would have shared
// the port with a plain SO_REUSEPORT bind; ringlb's exclusive first bind refuses it.
TEST_P(StartupTest, RefusesAnAddressServedByAReusePortSocket) {
    std::string why;
    if (engine_unavailable(&why)) GTEST_SKIP() << why;
    std::error_code ec;
    common::Fd other =
        common::listen_tcp(*common::parse_address("127.0.0.1:0"), 16, ec);  // SO_REUSEPORT
    ASSERT_TRUE(other) << ec.message();
    uint16_t port = common::local_address(other.get()).port();
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.listen_port = port;
    spec.backends = {"127.0.0.1:" + std::to_string(free_port())};
    TempDir dir;
    write_file(dir.file("ringlb.toml"), make_config(spec));
    CommandResult result = run_ringlb({"run", dir.file("ringlb.toml")}, 10s);
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_NE(result.output.find("listener test: cannot listen on 127.0.0.1:" +
                                 std::to_string(port) + ": Address already in use"),
              std::string::npos)
        << result.output;
}

// Enough shards that starting them takes far longer than the signal needs to arrive: about 0.6
// ms each in a Release build (longer in Debug and under ASan), against a few ms from the
// "starting" line to the signal.
constexpr unsigned kManyWorkers = 256;

TEST_P(StartupTest, StopDuringStartupExitsZeroAfterClosingWhatWasOpened) {
    std::string why;
    if (engine_unavailable(&why)) GTEST_SKIP() << why;
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = kManyWorkers;
    spec.backends = {"127.0.0.1:" + std::to_string(free_port())};
    spec.runtime_extra = "buffer_count = 16";
    TempDir dir;
    write_file(dir.file("ringlb.toml"), make_config(spec));

    // A modest fd limit keeps each epoll shard's fd table small (48 bytes per fd).
    Subprocess proxy;
    std::string log_path = dir.file("ringlb.log");
    ASSERT_TRUE(proxy.spawn({"/usr/bin/prlimit", "--nofile=4096:4096", "--", RINGLB_BINARY, "run",
                             dir.file("ringlb.toml")},
                            log_path, &why))
        << why;
    auto deadline = Clock::now() + 10s;
    while (read_file(log_path).find(" starting: ") == std::string::npos) {
        ASSERT_TRUE(proxy.running()) << read_file(log_path);
        ASSERT_LT(Clock::now(), deadline) << "no \"starting\" line:\n" << read_file(log_path);
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(::kill(proxy.pid(), SIGTERM), 0);
    std::optional<int> code = proxy.wait(20s);
    std::string log = read_file(log_path);
    ASSERT_TRUE(code) << "still running 20 s after SIGTERM:\n" << log;
    EXPECT_EQ(*code, 0) << log;
    EXPECT_NE(log.find("stop requested during startup"), std::string::npos)
        << "the signal did not land during startup; raise kManyWorkers:\n"
        << log;
    EXPECT_NE(log.find(" stopped"), std::string::npos) << log;
    EXPECT_EQ(log.find("ready:"), std::string::npos) << log;
    EXPECT_EQ(sanitizer_report(log), "") << log;
    // Closed: nothing accepts on the listener's port any more.
    EXPECT_FALSE(connect_to(spec.listen_port, 1s));
}

TEST_P(StartupTest, MoreWorkersThanUsableCpusWarnsAtStartAndInCheck) {
    int cpu = first_usable_cpu();
    if (cpu < 0) GTEST_SKIP() << "sched_getaffinity failed";
    std::string taskset_cpu = std::to_string(cpu);
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = 2;
    spec.backends = {"127.0.0.1:" + std::to_string(free_port())};
    TempDir dir;
    std::string config = make_config(spec);
    write_file(dir.file("two.toml"), config);
    std::string warning = "runtime.workers = 2 is more than the 1 CPU(s) this process may run on";

    // Under taskset -c CPU the process may use one CPU, however many the host has online.
    {
        Subprocess proxy;
        std::string log_path = dir.file("two.log");
        ::testing::AssertionResult ready = spawn_until_ready(
            proxy,
            {"/usr/bin/taskset", "-c", taskset_cpu, RINGLB_BINARY, "run", dir.file("two.toml")},
            log_path);
        std::string why;
        if (!ready && engine_unavailable(&why)) GTEST_SKIP() << why;
        ASSERT_TRUE(ready);
        ::kill(proxy.pid(), SIGTERM);
        EXPECT_EQ(proxy.wait(10s), std::optional<int>(0));
        std::string log = read_file(log_path);
        EXPECT_EQ(count_of(log, " warn " + warning), 1u) << log;
        EXPECT_NE(log.find("on 2 shards"), std::string::npos) << log;
        EXPECT_EQ(sanitizer_report(log), "") << log;
    }
    {
        Subprocess check;
        std::string log_path = dir.file("check.log");
        std::string why;
        ASSERT_TRUE(check.spawn(
            {"/usr/bin/taskset", "-c", taskset_cpu, RINGLB_BINARY, "check", dir.file("two.toml")},
            log_path, &why))
            << why;
        EXPECT_EQ(check.wait(10s), std::optional<int>(0));
        std::string output = read_file(log_path);
        EXPECT_NE(output.find("config OK"), std::string::npos) << output;
        EXPECT_NE(output.find("warning: " + warning), std::string::npos) << output;
    }

    // "auto" follows the affinity mask: one shard, no warning.
    std::string auto_config = config;
    size_t at = auto_config.find("workers = 2");
    ASSERT_NE(at, std::string::npos);
    auto_config.replace(at, 11, "workers = \"auto\"");
    write_file(dir.file("auto.toml"), auto_config);
    Subprocess proxy;
    std::string log_path = dir.file("auto.log");
    ASSERT_TRUE(spawn_until_ready(
        proxy, {"/usr/bin/taskset", "-c", taskset_cpu, RINGLB_BINARY, "run", dir.file("auto.toml")},
        log_path));
    ::kill(proxy.pid(), SIGTERM);
    EXPECT_EQ(proxy.wait(10s), std::optional<int>(0));
    std::string log = read_file(log_path);
    EXPECT_NE(log.find("on 1 shards"), std::string::npos) << log;
    EXPECT_EQ(log.find("runtime.workers ="), std::string::npos) << log;
    // ... and says why: the affinity mask (a cgroup quota on this host would be named too).
    EXPECT_NE(log.find("workers auto: 1 ("), std::string::npos) << log;
    EXPECT_NE(log.find("1 CPU in affinity"), std::string::npos) << log;
    EXPECT_EQ(sanitizer_report(log), "") << log;
}

INSTANTIATE_TEST_SUITE_P(Engines, StartupTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
