// Binary upgrade with the real binary: `ringlb run CONFIG --upgrade` takes the running process's
// listening sockets over runtime.upgrade_socket; no client is refused, every transfer in flight
// completes on the old process, which then exits 0.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1024 * 1024;

class UpgradeTest : public ::testing::TestWithParam<std::string> {};

// A stream of new connections and 20 long transfers across an upgrade.
TEST_P(UpgradeTest, NewConnectionsAndTransfersInFlightLoseNothing) {
    BackendProcess hash_backend;
    ASSERT_TRUE(hash_backend.start(EchoMode::kHash));
    BackendProcess echo_backend;
    ASSERT_TRUE(echo_backend.start(EchoMode::kEcho));
    TempDir dir;
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.backends = {hash_backend.address()};
    spec.runtime_extra = "drain_timeout = \"30s\"\ndrain_spread = \"1s\"\nupgrade_socket = \"" +
                         dir.file("upgrade.sock") + "\"";
    // A second listener for the stream of short echo exchanges.
    uint16_t stream_port = free_port();
    std::string config =
        make_config(spec) +
        "\n[[listener]]\nname = \"stream\"\nbind = \"127.0.0.1:" + std::to_string(stream_port) +
        "\"\ncluster = \"echo\"\n\n[[cluster]]\nname = \"echo\"\nbackends = [{ "
        "address = \"" +
        echo_backend.address() + "\" }]\n";
    ProxyProcess old_proxy;
    RINGLB_START_PROXY(old_proxy, config, GetParam());
    ASSERT_TRUE(old_proxy.wait_for_log("upgrade: a new ringlb started with --upgrade", 5s));

    // A steady stream, not a flood: 2 cores also run both proxies and the backends.
    ConnectionStream stream(stream_port, 2048, 2ms);

    constexpr size_t kTransfers = 20;
    ExchangeSpec transfer;
    transfer.kind = ExchangeKind::kHash;
    transfer.send_bytes = 128 * 1024;
    // Loopback socket buffers take several MiB of a transfer off the proxy's hands (ringlb's
    // send buffer grows to tcp_wmem's maximum; the client's receive buffer is bounded here):
    // 12 MiB beyond them, read at 4 MiB/s, keep every session busy in ringlb for about 3 s.
    RunOptions options;
    options.recv_bytes_per_second = 4 * kMiB;
    options.recv_buffer_bytes = 64 * 1024;
    transfer.recv_bytes = kernel_buffering_to_client(options) + 12 * kMiB;
    options.deadline = 60s;
    auto run = std::async(std::launch::async, [&] {
        return run_concurrent(spec.listen_port, kTransfers, transfer, options);
    });
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_listener_active_connections", {{"listener", "test"}},
        [](double v) { return v == kTransfers; }, 10s, &last))
        << last << old_proxy.log_tail() << "\nrun finished: "
        << (run.wait_for(0s) == std::future_status::ready ? run.get().describe() : "no");

    size_t before = stream.succeeded();
    ProxyProcess new_proxy;
    StartResult started = new_proxy.start_file(old_proxy.config_path(), {"--upgrade"});
    ASSERT_TRUE(started.ready()) << started.describe();
    EXPECT_TRUE(new_proxy.wait_for_log("upgrade: the old process stopped accepting", 5s))
        << new_proxy.log_tail();
    EXPECT_TRUE(old_proxy.wait_for_log("stops accepting and drains", 5s)) << old_proxy.log_tail();
    EXPECT_EQ(run.wait_for(0s), std::future_status::timeout)
        << "the transfers ended before the upgrade: nothing was in flight";

    // The old process finishes its transfers, then exits 0.
    RunSummary summary = run.get();
    EXPECT_TRUE(summary.ok()) << summary.describe();
    std::optional<int> code = old_proxy.wait_exit(30s);
    ASSERT_TRUE(code) << old_proxy.log_tail();
    EXPECT_EQ(*code, 0) << old_proxy.log_tail();

    // The new one kept taking clients all along, and serves the admin endpoint now.
    auto until = std::chrono::steady_clock::now() + 5s;
    while (stream.succeeded() < before + 50 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(10ms);
    stream.stop();
    EXPECT_EQ(stream.failed(), 0u) << stream.first_failure();
    EXPECT_GE(stream.succeeded(), before + 50);
    EXPECT_TRUE(wait_for_metric(spec.admin_port, "ringlb_listener_connections_total",
                                {{"listener", "stream"}}, 1.0, 5s, &last))
        << last;
    EXPECT_TRUE(hash_exchange(spec.listen_port, 1000, 100000, 5000ms).ok);
    EXPECT_EQ(new_proxy.stop(), 0);
    EXPECT_EQ(sanitizer_report(old_proxy.log()), "") << old_proxy.log_tail();
    EXPECT_EQ(sanitizer_report(new_proxy.log()), "") << new_proxy.log_tail();
}

// A new process that fails before it serves changes nothing: the old one keeps every socket.
TEST_P(UpgradeTest, ANewProcessThatFailsLeavesTheOldOneServing) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    TempDir dir;
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.backends = {backend.address()};
    spec.runtime_extra = "upgrade_socket = \"" + dir.file("upgrade.sock") + "\"";
    std::string config = make_config(spec);
    ProxyProcess old_proxy;
    RINGLB_START_PROXY(old_proxy, config, GetParam());
    ASSERT_TRUE(old_proxy.wait_for_log("upgrade: a new ringlb started with --upgrade", 5s));
    const FdCounts baseline = old_proxy.settled_fd_counts();

    // The new configuration adds a listener on an address another process holds: the new
    // process takes the sockets, then fails to bind and exits 1 before it is ready.
    BackendProcess squatter;
    ASSERT_TRUE(squatter.start(EchoMode::kEcho));
    std::string broken = config + "\n[[listener]]\nname = \"taken\"\nbind = \"" +
                         squatter.address() + "\"\ncluster = \"app\"\n";
    write_file(dir.file("broken.toml"), broken);
    ProxyProcess new_proxy;
    StartResult started = new_proxy.start_file(dir.file("broken.toml"), {"--upgrade"});
    ASSERT_FALSE(started.ready()) << started.describe();
    std::optional<int> code = new_proxy.wait_exit(10s);
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 1) << new_proxy.log_tail();
    EXPECT_TRUE(old_proxy.wait_for_log("went away before it was ready", 5s))
        << old_proxy.log_tail();
    for (int i = 0; i < 20; ++i)
        ASSERT_TRUE(echo_exchange(spec.listen_port, 1000, false, 5000ms).ok) << i;
    auto ready = http_request(spec.admin_port, "/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200);
    // The duplicates it handed over are closed again.
    FdCounts after = wait_for_fd_baseline(old_proxy, baseline, 5000ms);
    EXPECT_TRUE(fd_counts_match(after, baseline, false))
        << "baseline " << to_string(baseline) << ", now " << to_string(after);

    // Without a running ringlb to take over from, --upgrade says so and exits 1.
    ProxyProcess orphan;
    ProxyConfigSpec other;
    other.engine = GetParam();
    other.backends = {backend.address()};
    other.runtime_extra = "upgrade_socket = \"" + dir.file("nobody.sock") + "\"";
    StartResult alone = orphan.start(make_config(other), {"--upgrade"});
    ASSERT_FALSE(alone.ready());
    code = orphan.wait_exit(10s);
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 1);
    EXPECT_NE(orphan.log().find("upgrade: cannot reach the running ringlb on"), std::string::npos)
        << orphan.log();
    EXPECT_EQ(old_proxy.stop(), 0);
    EXPECT_EQ(sanitizer_report(old_proxy.log()), "") << old_proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, UpgradeTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
