// Faults on either side of the proxy: refused and silent backends, clients that reset, backends
// that die. The proxy must close what it should, promptly, and leak no descriptor.

#include <sys/socket.h>

#include <string>
#include <vector>

#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

std::string proxy_config(const std::string& engine, const std::string& forward,
                         const std::string& backend, uint16_t& port, uint16_t& admin_port,
                         const std::string& connect_timeout = "2s") {
    ProxyConfigSpec spec;
    spec.engine = engine;
    spec.forward = forward;
    spec.workers = 2;
    spec.backends = {backend};
    spec.connect_timeout = connect_timeout;
    std::string text = make_config(spec);
    port = spec.listen_port;
    admin_port = spec.admin_port;
    return text;
}

// Opens `count` connections to the proxy; each has completed the TCP handshake with it.
std::vector<common::Fd> connect_clients(uint16_t port, int count) {
    std::vector<common::Fd> clients;
    for (int i = 0; i < count; ++i) {
        std::string error;
        common::Fd fd = connect_to(port, 5s, &error);
        if (!fd) {
            ADD_FAILURE() << "client " << i << ": " << error;
            break;
        }
        clients.push_back(std::move(fd));
    }
    return clients;
}

std::vector<int> raw_fds(const std::vector<common::Fd>& fds) {
    std::vector<int> out;
    for (const auto& fd : fds) out.push_back(fd.get());
    return out;
}

// Sends the hash-mode header asking the backend for `reply_bytes`.
bool send_hash_header(int fd, uint64_t reply_bytes) {
    uint8_t header[tools::kHashHeaderSize];
    tools::put_be64(header, reply_bytes);
    return send_all(fd, header, sizeof(header), 5s);
}

void expect_fds_back_to_baseline(const ProxyProcess& proxy, const FdCounts& baseline,
                                 bool pipes_exact) {
    FdCounts now = wait_for_fd_baseline(proxy, baseline, 2s, pipes_exact);
    EXPECT_TRUE(fd_counts_match(now, baseline, pipes_exact))
        << "fd leak: baseline " << to_string(baseline) << ", now " << to_string(now)
        << "\nproxy sockets:\n"
        << proxy.describe_sockets();
}

// The per-shard counters from /metrics and the end of the log, for failure messages.
std::string proxy_state(ProxyProcess& proxy, uint16_t admin_port) {
    std::string error;
    auto metrics = scrape_metrics(admin_port, &error, 2s);
    if (!metrics) return "no /metrics: " + error + "\n" + proxy.log_tail(3000);
    std::string state;
    for (const MetricSample& sample : metrics->samples())
        if (sample.labels.count("shard")) state += to_string(sample) + "\n";
    return state + proxy.log_tail(3000);
}

// One healthy exchange first, so that whatever the proxy sets up lazily on its first session is in
// the baseline; a per-session leak still shows on the sessions that follow.
::testing::AssertionResult warm_up(uint16_t port) {
    ExchangeResult result = hash_exchange(port, 64 * kKiB, 64 * kKiB);
    if (result.ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "warm-up exchange: " << result.error;
}

double connect_failures(uint16_t admin_port) {
    std::string error;
    auto metrics = scrape_metrics(admin_port, &error);
    if (!metrics) {
        ADD_FAILURE() << error;
        return 0;
    }
    return metrics->sum("ringlb_backend_connect_failures_total");
}

// ---------------------------------------------------------------------------------------------
// (a), (b): the backend cannot be reached. No data flows, so every fd count must come back.

class BackendDownTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

TEST_P(BackendDownTest, RefusedBackendClosesClientsPromptly) {
    // Nothing listens on this port, so every connect is refused.
    std::string backend = "127.0.0.1:" + std::to_string(free_port());
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, proxy_config(engine(), "auto", backend, port, admin_port), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    std::vector<common::Fd> clients = connect_clients(port, 20);
    std::vector<CloseResult> closed = wait_for_close_all(raw_fds(clients), 5s);
    for (size_t i = 0; i < closed.size(); ++i) {
        EXPECT_NE(closed[i].kind, CloseKind::kTimeout) << "client " << i << " was never closed";
        EXPECT_LT(closed[i].elapsed, 2s) << "client " << i;
        EXPECT_EQ(closed[i].bytes_before, 0u) << "client " << i;
    }
    clients.clear();

    expect_fds_back_to_baseline(proxy, baseline, true);
    EXPECT_GT(connect_failures(admin_port), 0);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(BackendDownTest, SilentBackendHitsConnectTimeout) {
    BlackholeBackend backend;
    ASSERT_TRUE(backend.start());
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy,
                       proxy_config(engine(), "auto", backend.address(), port, admin_port, "300ms"),
                       engine());
    FdCounts baseline = proxy.settled_fd_counts();

    std::vector<common::Fd> clients = connect_clients(port, 5);
    std::vector<CloseResult> closed = wait_for_close_all(raw_fds(clients), 5s);
    for (size_t i = 0; i < closed.size(); ++i) {
        EXPECT_NE(closed[i].kind, CloseKind::kTimeout) << "client " << i << " was never closed";
        EXPECT_GE(closed[i].elapsed, 250ms) << "client " << i << " closed before the timeout";
        EXPECT_LT(closed[i].elapsed, 1500ms) << "client " << i;
    }
    clients.clear();

    expect_fds_back_to_baseline(proxy, baseline, true);
    EXPECT_GT(connect_failures(admin_port), 0);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(All, BackendDownTest, ::testing::ValuesIn(kEngines), engine_name);

// ---------------------------------------------------------------------------------------------
// (c), (d): a peer vanishes mid-transfer. Pooled pipes may outlive sessions, so pipe fds are
// only required to come back exactly in buffered mode.

class MidTransferTest : public ::testing::TestWithParam<EngineForward> {
  protected:
    const std::string& engine() const { return std::get<0>(GetParam()); }
    const std::string& forward() const { return std::get<1>(GetParam()); }
    bool pipes_exact() const { return forward() == "buffered"; }
};

TEST_P(MidTransferTest, ClientResetDoesNotHurtTheProxy) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(
        proxy, proxy_config(engine(), forward(), backend.address(), port, admin_port), engine());
    ASSERT_TRUE(warm_up(port));
    FdCounts baseline = proxy.settled_fd_counts();

    // Both directions busy when the RST lands: the backend streams 64 MiB while the client is
    // still uploading.
    std::vector<common::Fd> clients = connect_clients(port, 30);
    std::string payload(64 * kKiB, 'x');
    for (auto& fd : clients) {
        ASSERT_TRUE(send_hash_header(fd.get(), 64 * kMiB));
        ASSERT_TRUE(send_all(fd.get(), payload.data(), payload.size(), 5s));
    }
    for (size_t i = 0; i < clients.size(); ++i) {
        size_t got = 0;
        ASSERT_TRUE(recv_exactly(clients[i].get(), 128 * kKiB, 5s, &got))
            << "client " << i << " received " << got << " of " << 128 * kKiB
            << " bytes in 5 s; proxy log:\n"
            << proxy_state(proxy, admin_port);
    }
    for (auto& fd : clients) reset_close(fd);
    // And some that reset before the proxy can have reached the backend.
    std::vector<common::Fd> early = connect_clients(port, 10);
    for (auto& fd : early) reset_close(fd);

    ASSERT_TRUE(proxy.running()) << proxy.log_tail();
    ExchangeResult result = hash_exchange(port, kMiB, kMiB, 10s);
    EXPECT_TRUE(result.ok) << "after the resets: " << result.error << "\nproxy sockets:\n"
                           << proxy.describe_sockets() << "proxy log:\n"
                           << (result.ok ? "" : proxy_state(proxy, admin_port));
    expect_fds_back_to_baseline(proxy, baseline, pipes_exact());
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(MidTransferTest, BackendDeathClosesItsClients) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    uint16_t port = 0, admin_port = 0;
    ProxyProcess proxy;
    RINGLB_START_PROXY(
        proxy, proxy_config(engine(), forward(), backend.address(), port, admin_port), engine());
    ASSERT_TRUE(warm_up(port));
    FdCounts baseline = proxy.settled_fd_counts();

    std::vector<common::Fd> clients = connect_clients(port, 20);
    for (auto& fd : clients) ASSERT_TRUE(send_hash_header(fd.get(), 1024 * kMiB));
    for (size_t i = 0; i < clients.size(); ++i) {
        size_t got = 0;
        ASSERT_TRUE(recv_exactly(clients[i].get(), 256 * kKiB, 5s, &got))
            << "client " << i << " received " << got << " of " << 256 * kKiB
            << " bytes in 5 s; proxy log:\n"
            << proxy_state(proxy, admin_port);
    }
    backend.kill(SIGKILL);

    std::vector<CloseResult> closed = wait_for_close_all(raw_fds(clients), 5s);
    for (size_t i = 0; i < closed.size(); ++i)
        EXPECT_NE(closed[i].kind, CloseKind::kTimeout)
            << "client " << i << " still open 5 s after its backend died";
    clients.clear();  // the client's FIN ends the other direction too

    ASSERT_TRUE(proxy.running()) << proxy.log_tail();
    expect_fds_back_to_baseline(proxy, baseline, pipes_exact());
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(All, MidTransferTest,
                         ::testing::Combine(::testing::ValuesIn(kEngines),
                                            ::testing::ValuesIn(kForwardModes)),
                         engine_forward_name);

}  // namespace
}  // namespace ringlb::testkit
