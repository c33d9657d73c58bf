// A listener's access control and limits through the real binary: allow and deny on the client's
// own address (clients bound to 127.0.0.2, 127.0.0.3, ...) and on a PROXY header's source;
// max_connections, max_connections_per_source and rate_per_source, exact on one shard and
// within the documented share on two; refused clients closed at once (FIN, or RST with
// reject = "reset") and counted in ringlb_listener_rejected_total; fds back to the baseline.

#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

class AclTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

double rejected(uint16_t admin_port, const std::string& listener, const std::string& reason) {
    auto m = scrape_metrics(admin_port);
    return m ? m->sum("ringlb_listener_rejected_total",
                      {{"listener", listener}, {"reason", reason}})
             : -1;
}

// A client of 127.0.0.1:port from `source` that the proxy served or refused: admitted ones
// echo a probe byte back; refused ones are closed without a byte.
struct Probe {
    common::Fd fd;
    bool admitted = false;
    CloseKind refusal = CloseKind::kTimeout;  // how a refused one was closed
};

// `watch`: first wait 300 ms for the proxy to close, sending nothing: a refused client that has
// sent bytes the proxy never read is reset by the kernel whatever `reject` says, so only a
// silent one shows how the proxy closed it.
Probe probe(const char* source, uint16_t port, const std::string& prefix = "", bool watch = false) {
    Probe p;
    uint16_t local_port = 0;
    p.fd = connect_from(source, port, &local_port);
    if (!p.fd && errno == ECONNRESET) {
        // A blocking connect() reports the proxy's reset when it lands before this thread wakes
        // from the handshake (seen under CI load with reject = "reset"): refused by a reset.
        p.refusal = CloseKind::kReset;
        return p;
    }
    EXPECT_TRUE(p.fd) << source << ": " << std::strerror(errno);
    if (!p.fd) return p;
    if (watch) {
        pollfd pfd{p.fd.get(), POLLIN | POLLRDHUP, 0};
        if (::poll(&pfd, 1, 300) == 1) {
            char c = 0;
            ssize_t n = ::recv(p.fd.get(), &c, 1, 0);
            EXPECT_LE(n, 0) << "a byte from the proxy";
            p.refusal = n == 0 ? CloseKind::kEof
                               : (errno == ECONNRESET ? CloseKind::kReset : CloseKind::kOtherError);
            return p;
        }
    }
    std::string bytes = prefix + "?";
    // A refused client may be closed before (RST then fails the send) or after this.
    if (!send_all(p.fd.get(), bytes.data(), bytes.size(), 5s)) {
        p.refusal = CloseKind::kReset;
        return p;
    }
    char c = 0;
    ssize_t n = ::recv(p.fd.get(), &c, 1, 0);
    if (n == 1) {
        EXPECT_EQ(c, '?');
        p.admitted = true;
    } else {
        p.refusal = n == 0 ? CloseKind::kEof
                           : (errno == ECONNRESET ? CloseKind::kReset : CloseKind::kOtherError);
    }
    return p;
}

// Sends 256 KiB through an admitted probe and checks every byte of the echo.
void expect_byte_exact(Probe& p, uint64_t seed) {
    ASSERT_TRUE(p.admitted);
    std::string payload = random_bytes(256 << 10, seed);
    std::string back = echo_through(p.fd.get(), payload);
    EXPECT_EQ(back.size(), payload.size());
    EXPECT_TRUE(back == payload) << "bytes differ";
}

void expect_fds_at(const ProxyProcess& proxy, const FdCounts& baseline) {
    FdCounts now = wait_for_fd_baseline(proxy, baseline, 5s);
    EXPECT_TRUE(fd_counts_match(now, baseline, false))
        << to_string(now) << " vs " << to_string(baseline);
}

// deny wins over allow; an address in neither is not allowed; allowed clients are served byte
// for byte. A second listener with reject = "reset" resets the clients it refuses.
TEST_P(AclTest, AllowAndDenyOnTheClientAddress) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {echo.address()};
    spec.listener_extra = "allow = [\"127.0.0.0/29\"]\ndeny = [\"127.0.0.2\"]\n";
    uint16_t reset_port = free_port();
    std::string config = make_config(spec) + "\n[[listener]]\nname = \"strict\"\nbind = " +
                         "\"127.0.0.1:" + std::to_string(reset_port) +
                         "\"\ncluster = \"app\"\ndeny = [\"127.0.0.2\"]\nreject = \"reset\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, engine());
    FdCounts baseline = proxy.settled_fd_counts();

    for (int round = 0; round < 3; ++round) {
        Probe denied = probe("127.0.0.2", spec.listen_port, "", true);
        EXPECT_FALSE(denied.admitted);
        EXPECT_EQ(denied.refusal, CloseKind::kEof) << to_string(denied.refusal);
        Probe outside = probe("127.0.0.9", spec.listen_port, "", true);  // not in 127.0.0.0/29
        EXPECT_FALSE(outside.admitted);
        EXPECT_EQ(outside.refusal, CloseKind::kEof) << to_string(outside.refusal);
        Probe allowed = probe("127.0.0.3", spec.listen_port, "", true);
        expect_byte_exact(allowed, round + 1);
        Probe reset = probe("127.0.0.2", reset_port, "", true);
        EXPECT_FALSE(reset.admitted);
        EXPECT_EQ(reset.refusal, CloseKind::kReset) << to_string(reset.refusal);
        Probe other = probe("127.0.0.9", reset_port, "", true);  // strict has no allow
        expect_byte_exact(other, round + 10);
    }
    EXPECT_EQ(rejected(spec.admin_port, "test", "denied"), 3);
    EXPECT_EQ(rejected(spec.admin_port, "test", "not_allowed"), 3);
    EXPECT_EQ(rejected(spec.admin_port, "strict", "denied"), 3);
    EXPECT_EQ(rejected(spec.admin_port, "strict", "not_allowed"), 0);
    // Refused clients never reach a backend: 6 sessions were forwarded, counted as accepted.
    auto m = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->sum("ringlb_listener_connections_total", {{"listener", "test"}}), 9);
    EXPECT_EQ(m->sum("ringlb_bytes_total", {{"direction", "client_to_upstream"}}),
              6 * ((256 << 10) + 1));
    EXPECT_NE(proxy.log_tail().find("listener test: client 127.0.0.2:"), std::string::npos);
    expect_fds_at(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// max_connections_per_source on one shard is exact; another source is not affected, and a
// source gets its place back when one of its sessions closes.
TEST_P(AclTest, PerSourceLimitIsExactOnOneShard) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = 1;
    spec.backends = {echo.address()};
    spec.listener_extra = "max_connections_per_source = 3\nmax_connections = 5\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    std::vector<Probe> held;
    for (int i = 0; i < 3; ++i) {
        held.push_back(probe("127.0.0.2", spec.listen_port));
        EXPECT_TRUE(held.back().admitted) << i;
    }
    for (int i = 0; i < 2; ++i) EXPECT_FALSE(probe("127.0.0.2", spec.listen_port).admitted);
    // Another source: its own 3, but the listener's 5 stop it at 2.
    for (int i = 0; i < 2; ++i) {
        held.push_back(probe("127.0.0.3", spec.listen_port));
        EXPECT_TRUE(held.back().admitted) << i;
    }
    EXPECT_FALSE(probe("127.0.0.3", spec.listen_port).admitted);
    EXPECT_EQ(rejected(spec.admin_port, "test", "max_connections_per_source"), 2);
    EXPECT_EQ(rejected(spec.admin_port, "test", "max_connections"), 1);
    // One of 127.0.0.2's sessions ends: 127.0.0.2 may connect once more, byte-exact.
    expect_byte_exact(held[0], 7);
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_listener_active_connections", {{"listener", "test"}},
        [](double v) { return v == 4; }, 5s, &last))
        << last;
    Probe again = probe("127.0.0.2", spec.listen_port);
    EXPECT_TRUE(again.admitted);
    // 5 open now: the listener's limit, whoever comes.
    EXPECT_FALSE(probe("127.0.0.4", spec.listen_port).admitted);
    EXPECT_EQ(rejected(spec.admin_port, "test", "max_connections"), 2);
    expect_byte_exact(again, 8);
    held.clear();
    expect_fds_at(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// On two shards each admits ceil(4 / 2) = 2 of a source's connections: of 8 attempts held open,
// between 2 and 4 are admitted (the kernel's hash decides which shard takes each), every other
// one is refused and counted; a second source with 2 connections is never refused.
TEST_P(AclTest, PerSourceLimitOnTwoShardsStaysWithinTheShare) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = 2;
    spec.backends = {echo.address()};
    spec.listener_extra = "max_connections_per_source = 4\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    std::vector<Probe> held;
    int admitted = 0;
    for (int i = 0; i < 8; ++i) {
        held.push_back(probe("127.0.0.2", spec.listen_port));
        admitted += held.back().admitted;
    }
    EXPECT_GE(admitted, 2);
    EXPECT_LE(admitted, 4);
    EXPECT_EQ(rejected(spec.admin_port, "test", "max_connections_per_source"), 8 - admitted);
    for (int i = 0; i < 2; ++i) {
        held.push_back(probe("127.0.0.3", spec.listen_port));
        expect_byte_exact(held.back(), i + 1);
    }
    held.clear();
    expect_fds_at(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// rate_per_source = "5/s" with burst = 4 on one shard: a quick run of 10 connections gets the
// burst and whatever refilled meanwhile (one per 200 ms); another source has its own bucket;
// after a second the source has new tokens.
TEST_P(AclTest, RatePerSourceAllowsTheBurstThenTheRate) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = 1;
    spec.backends = {echo.address()};
    spec.listener_extra = "rate_per_source = \"5/s\"\nburst = 4\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    auto start = Clock::now();
    int admitted = 0;
    for (int i = 0; i < 10; ++i) admitted += probe("127.0.0.2", spec.listen_port).admitted;
    auto elapsed_ms = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
    EXPECT_GE(admitted, 4);
    EXPECT_LE(admitted, 4 + elapsed_ms / 200 + 1) << elapsed_ms << " ms";
    EXPECT_EQ(rejected(spec.admin_port, "test", "rate_per_source"), 10 - admitted);
    Probe other = probe("127.0.0.3", spec.listen_port);
    expect_byte_exact(other, 1);
    std::this_thread::sleep_for(1100ms);  // 5 tokens, capped at the burst of 4
    int later = 0;
    for (int i = 0; i < 6; ++i) later += probe("127.0.0.2", spec.listen_port).admitted;
    EXPECT_GE(later, 4);
    EXPECT_LE(later, 5);
    expect_fds_at(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// With proxy_protocol the ACL and per-source limits apply to the header's source, not to the
// peer; a header without addresses (UNKNOWN) is judged by the peer's. The listener also routes
// by SNI: the check comes right after the header, before any ClientHello.
TEST_P(AclTest, ProxyProtocolListenerJudgesTheHeaderSource) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.workers = 1;
    spec.backends = {echo.address()};
    spec.listener_extra =
        "proxy_protocol = \"v1\"\ndeny = [\"192.0.2.0/28\", \"127.0.0.1\"]\n"
        "max_connections_per_source = 1\nprelude_timeout = \"5s\"\n"
        "routes = [{ sni = \"a.example.com\", cluster = \"app\" }]\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    const std::string denied = "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n";
    const std::string allowed = "PROXY TCP4 192.0.2.77 198.51.100.2 40001 443\r\n";
    const std::string unknown = "PROXY UNKNOWN\r\n";
    // Refused as soon as the header is in, without waiting for a ClientHello (routes) for up to
    // prelude_timeout.
    uint16_t local_port = 0;
    common::Fd header_only = connect_from("127.0.0.2", spec.listen_port, &local_port);
    ASSERT_TRUE(header_only);
    ASSERT_TRUE(send_all(header_only.get(), denied.data(), denied.size(), 5s));
    CloseResult closed = wait_for_close(header_only.get(), 4s);
    EXPECT_EQ(closed.kind, CloseKind::kEof) << to_string(closed.kind);
    EXPECT_EQ(closed.bytes_before, 0u);
    EXPECT_LT(closed.elapsed, 1s);
    Probe u = probe("127.0.0.1", spec.listen_port, unknown);  // the peer, 127.0.0.1: denied
    EXPECT_FALSE(u.admitted);
    Probe a = probe("127.0.0.1", spec.listen_port, allowed);
    ASSERT_TRUE(a.admitted);
    // The same header source again while its first session is open: over its limit of 1,
    // although this one comes from another peer.
    Probe twice = probe("127.0.0.3", spec.listen_port, allowed);
    EXPECT_FALSE(twice.admitted);
    expect_byte_exact(a, 3);  // the backend sees the client's bytes only
    EXPECT_EQ(rejected(spec.admin_port, "test", "denied"), 2);
    EXPECT_EQ(rejected(spec.admin_port, "test", "max_connections_per_source"), 1);
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_listener_active_connections", {{"listener", "test"}},
        [](double v) { return v == 0; }, 5s, &last))
        << last;
    Probe back = probe("127.0.0.3", spec.listen_port, allowed);
    expect_byte_exact(back, 4);
    auto m = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->sum("ringlb_listener_prelude_total", {{"result", "proxy_accepted"}}), 4);
    EXPECT_EQ(m->sum("ringlb_listener_prelude_total", {{"result", "proxy_local"}}), 1);
    // Only the admitted ones went on to the ClientHello step (their "?" is not TLS).
    EXPECT_EQ(m->sum("ringlb_listener_prelude_total", {{"result", "not_tls"}}), 2);
    expect_fds_at(proxy, baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, AclTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
