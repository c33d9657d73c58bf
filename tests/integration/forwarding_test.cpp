// Byte-exact forwarding through the real ringlb binary, for every engine and forward mode.

#include <sys/socket.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

std::string proxy_config(const std::string& engine, const std::string& forward,
                         const std::vector<std::string>& backends, uint16_t& port,
                         uint16_t& admin_port, unsigned workers = 2) {
    ProxyConfigSpec spec;
    spec.engine = engine;
    spec.forward = forward;
    spec.workers = workers;
    spec.backends = backends;
    std::string text = make_config(spec);
    port = spec.listen_port;
    admin_port = spec.admin_port;
    return text;
}

// The forward mode axis is only worth its cost if each mode really runs its own pump: the shards
// count the directions they forwarded with splice and with buffers.
void expect_forward_mode_used(uint16_t admin_port, const std::string& forward) {
    if (forward == "auto") return;
    std::string error;
    auto metrics = scrape_metrics(admin_port, &error);
    ASSERT_TRUE(metrics) << error;
    for (const char* name : {"ringlb_splice_directions_total", "ringlb_buffered_directions_total"})
        ASSERT_TRUE(metrics->has(name)) << "no " << name << " in /metrics";
    double spliced = metrics->sum("ringlb_splice_directions_total");
    double buffered = metrics->sum("ringlb_buffered_directions_total");
    if (forward == "splice") {
        EXPECT_GT(spliced, 0);
        EXPECT_EQ(buffered, 0);
    } else {
        EXPECT_EQ(spliced, 0);
        EXPECT_GT(buffered, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// (1) 0 B, 1 B, 64 KiB and 10 MiB each way and both at once.

using TransferParam = std::tuple<std::string, std::string, uint64_t>;

class TransferTest : public ::testing::TestWithParam<TransferParam> {};

TEST_P(TransferTest, ByteExactEachDirectionAndBoth) {
    const auto& [engine, forward, size] = GetParam();
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, proxy_config(engine, forward, {backend.address()}, port, admin_port),
                       engine);

    struct Case {
        const char* name;
        uint64_t up;
        uint64_t down;
    };
    const Case cases[] = {
        {"client->backend", size, 0}, {"backend->client", 0, size}, {"both at once", size, size}};
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        ExchangeResult result = hash_exchange(port, c.up, c.down);
        EXPECT_TRUE(result.ok) << result.error;
    }
    expect_forward_mode_used(admin_port, forward);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

std::string transfer_name(const ::testing::TestParamInfo<TransferParam>& info) {
    uint64_t size = std::get<2>(info.param);
    std::string size_name = size >= kMiB   ? std::to_string(size / kMiB) + "MiB"
                            : size >= kKiB ? std::to_string(size / kKiB) + "KiB"
                                           : std::to_string(size) + "B";
    return std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" + size_name;
}

INSTANTIATE_TEST_SUITE_P(All, TransferTest,
                         ::testing::Combine(::testing::ValuesIn(kEngines),
                                            ::testing::ValuesIn(kForwardModes),
                                            ::testing::Values(0, 1, 64 * kKiB, 10 * kMiB)),
                         transfer_name);

// ---------------------------------------------------------------------------------------------
// (2), (3): many connections at once, half-close.

class ForwardingTest : public ::testing::TestWithParam<EngineForward> {
  protected:
    const std::string& engine() const { return std::get<0>(GetParam()); }
    const std::string& forward() const { return std::get<1>(GetParam()); }
};

TEST_P(ForwardingTest, ThousandConcurrentConnectionsAreByteExact) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(
        proxy, proxy_config(engine(), forward(), {backend.address()}, port, admin_port), engine());
    // A first session lets the proxy finish any lazy setup before the baseline is taken.
    ExchangeResult warm = hash_exchange(port, 64 * kKiB, 64 * kKiB);
    ASSERT_TRUE(warm.ok) << "warm-up exchange: " << warm.error;
    FdCounts baseline = proxy.settled_fd_counts();

    ExchangeSpec spec;
    spec.send_bytes = 16 * kKiB;
    spec.recv_bytes = 16 * kKiB;
    RunOptions options;
    options.deadline = 60s;
    RunSummary summary = run_concurrent(port, 1000, spec, options);
    EXPECT_TRUE(summary.ok()) << summary.describe();

    std::string error;
    auto metrics = scrape_metrics(admin_port, &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(metrics->sum("ringlb_accepted_total"), 1001);  // and the warm-up
    // Every session is over, so only pooled idle pipes may remain beyond the baseline.
    FdCounts after = wait_for_fd_baseline(proxy, baseline, 3s, forward() == "buffered");
    EXPECT_TRUE(fd_counts_match(after, baseline, forward() == "buffered"))
        << "baseline " << to_string(baseline) << ", now " << to_string(after)
        << "\nproxy sockets:\n"
        << proxy.describe_sockets();
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(ForwardingTest, HalfCloseKeepsTheReplyFlowing) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kEcho));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(
        proxy, proxy_config(engine(), forward(), {backend.address()}, port, admin_port), engine());

    {
        SCOPED_TRACE("read only after SHUT_WR");
        ExchangeResult result = echo_exchange(port, 64 * kKiB, /*read_after_shutdown=*/true);
        EXPECT_TRUE(result.ok) << result.error;
    }
    {
        SCOPED_TRACE("4 MiB, reading while sending");
        ExchangeResult result = echo_exchange(port, 4 * kMiB);
        EXPECT_TRUE(result.ok) << result.error;
    }
    {
        // The reply is still on its way well after the client's FIN: the proxy must not treat
        // the client's EOF as the end of the session.
        SCOPED_TRACE("read 300 ms after SHUT_WR");
        std::string error;
        common::Fd fd = connect_to(port, 5s, &error);
        ASSERT_TRUE(fd) << error;
        std::string payload(1000, '\0');
        tools::pattern_fill(7, 0, reinterpret_cast<uint8_t*>(payload.data()), payload.size());
        ASSERT_TRUE(send_all(fd.get(), payload.data(), payload.size(), 5s));
        ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
        std::this_thread::sleep_for(300ms);
        std::string reply;
        CloseResult closed = wait_for_close(fd.get(), 5s, &reply);
        EXPECT_EQ(closed.kind, CloseKind::kEof) << to_string(closed.kind);
        EXPECT_TRUE(reply == payload) << "got " << reply.size() << " of " << payload.size()
                                      << " bytes back, or different bytes";
    }
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(All, ForwardingTest,
                         ::testing::Combine(::testing::ValuesIn(kEngines),
                                            ::testing::ValuesIn(kForwardModes)),
                         engine_forward_name);

// ---------------------------------------------------------------------------------------------
// (4), (5): balancing over backends and over shards.

class BalancingTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

TEST_P(BalancingTest, RoundRobinReachesEveryBackend) {
    BackendProcess first;
    BackendProcess second;
    ASSERT_TRUE(first.start(EchoMode::kHttp, "b1"));
    ASSERT_TRUE(second.start(EchoMode::kHttp, "b2"));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(
        proxy,
        proxy_config(engine(), "auto", {first.address(), second.address()}, port, admin_port),
        engine());

    std::map<std::string, int> replies;
    for (int i = 0; i < 20; ++i) {
        std::string error;
        auto body = http_get(port, 5s, &error);
        ASSERT_TRUE(body) << "request " << i << ": " << error;
        ++replies[*body];
    }
    EXPECT_GT(replies["hello from b1\n"], 0);
    EXPECT_GT(replies["hello from b2\n"], 0);
    EXPECT_EQ(replies.size(), 2u);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(BalancingTest, BothShardsAcceptUnderLoad) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, proxy_config(engine(), "auto", {backend.address()}, port, admin_port),
                       engine());

    // SO_REUSEPORT hashes the 4-tuple, so many connections (each its own source port) spread
    // over both shards' listeners.
    ExchangeSpec spec;
    spec.send_bytes = 100;
    spec.recv_bytes = 100;
    RunOptions options;
    options.deadline = 30s;
    options.max_in_flight = 50;
    RunSummary summary = run_concurrent(port, 400, spec, options);
    EXPECT_TRUE(summary.ok()) << summary.describe();

    std::string error;
    auto metrics = scrape_metrics(admin_port, &error);
    ASSERT_TRUE(metrics) << error;
    ASSERT_EQ(metrics->count("ringlb_accepted_total"), 2u)
        << metrics->describe("ringlb_accepted_total");
    for (const char* shard : {"0", "1"})
        EXPECT_GT(metrics->sum("ringlb_accepted_total", {{"shard", shard}}), 0)
            << "shard " << shard << " accepted nothing";
    EXPECT_EQ(metrics->sum("ringlb_accepted_total"), 400);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(All, BalancingTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
