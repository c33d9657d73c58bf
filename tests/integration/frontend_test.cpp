// The front end against real peers: HAProxy sending PROXY headers to ringlb (send-proxy-v2) and
// accepting ringlb's (accept-proxy), headers that trickle in one byte per segment, malformed,
// late and untrusted ones; SNI routing to openssl s_server backends for openssl s_client and
// curl, with a ClientHello cut into 1-byte segments, and clients that are not TLS or silent.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

std::string binary_of(std::initializer_list<const char*> paths) {
    for (const char* path : paths)
        if (::access(path, X_OK) == 0) return path;
    return "";
}

// Whether something listens on 127.0.0.1:port, without connecting (a probe connection would
// reach the peer's backends and show up in the counters the tests check).
bool listening(uint16_t port) {
    for (const TcpEntry& e : tcp_table())
        if (e.state == 10 && e.local_port == port) return true;
    return false;
}

bool wait_listening(uint16_t port, Millis timeout) {
    for (auto end = Clock::now() + timeout; Clock::now() < end; std::this_thread::sleep_for(20ms))
        if (listening(port)) return true;
    return false;
}

// HAProxy 2.6 (Debian) in tcp mode: `sections` are its frontend and backend sections. Every
// connection logs "seen CLIENT dst DESTINATION" as soon as it is accepted (logasap), the
// addresses taken from its PROXY header on an accept-proxy bind.
class Haproxy {
  public:
    std::string start(const std::string& sections, uint16_t port) {
        std::string binary = binary_of({"/usr/sbin/haproxy", "/usr/bin/haproxy"});
        if (binary.empty()) return "haproxy is not installed (scripts/install-deps.sh test)";
        std::string config =
            "global\n"
            "    log stdout format raw local0\n"
            "defaults\n"
            "    mode tcp\n"
            "    log global\n"
            "    option logasap\n"
            "    log-format \"seen %ci:%cp dst %fi:%fp\"\n"
            "    timeout connect 2s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n" +
            sections;
        write_file(dir_.file("haproxy.cfg"), config);
        std::string error;
        if (!process_.spawn({binary, "-f", dir_.file("haproxy.cfg"), "-db"},
                            dir_.file("haproxy.log"), &error))
            return error;
        if (!wait_listening(port, 5s)) return "haproxy did not listen: " + log();
        return "";
    }
    std::string log() const { return read_file(dir_.file("haproxy.log")); }
    bool wait_for_log(const std::string& needle, Millis timeout) const {
        for (auto end = Clock::now() + timeout; Clock::now() < end;
             std::this_thread::sleep_for(20ms))
            if (log().find(needle) != std::string::npos) return true;
        return false;
    }

  private:
    TempDir dir_;
    Subprocess process_;
};

// Sends `bytes` one per TCP segment (TCP_NODELAY, a pause after each).
bool send_bytewise(int fd, std::string_view bytes, Millis pause = 2ms) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (char c : bytes) {
        if (!send_all(fd, &c, 1, 5s)) return false;
        std::this_thread::sleep_for(pause);
    }
    return true;
}

// A v2 PROXY header, TCP over IPv4, built from the spec (doc/proxy-protocol.txt) by hand.
std::string proxy_v2_tcp4(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
    std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
    h += '\x21';  // version 2, PROXY
    h += '\x11';  // AF_INET, STREAM
    h += '\0';
    h += '\x0c';  // 12 bytes of addresses
    in_addr a;
    ::inet_pton(AF_INET, src, &a);
    h.append(reinterpret_cast<const char*>(&a), 4);
    ::inet_pton(AF_INET, dst, &a);
    h.append(reinterpret_cast<const char*>(&a), 4);
    h += static_cast<char>(sport >> 8);
    h += static_cast<char>(sport & 0xff);
    h += static_cast<char>(dport >> 8);
    h += static_cast<char>(dport & 0xff);
    return h;
}

double prelude_count(uint16_t admin_port, const std::string& listener, const std::string& result) {
    auto m = scrape_metrics(admin_port);
    return m ? m->sum("ringlb_listener_prelude_total", {{"listener", listener}, {"result", result}})
             : -1;
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol

class ProxyProtocolTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

// client (127.0.0.2) -> HAProxy send-proxy-v2 -> ringlb proxy_protocol = "v2", send_proxy =
// v1 or v2 -> HAProxy accept-proxy -> echo backend: the last HAProxy sees the client's own
// address and the address it connected to, and 4 MiB come back exactly.
void run_haproxy_chain(const std::string& engine, const std::string& send_proxy) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    uint16_t inner_port = free_port();
    Haproxy inner;
    std::string why = inner.start("frontend f\n    bind 127.0.0.1:" + std::to_string(inner_port) +
                                      " accept-proxy\n    default_backend b\n"
                                      "backend b\n    server s " +
                                      echo.address() + "\n",
                                  inner_port);
    ASSERT_EQ(why, "");

    ProxyConfigSpec spec;
    spec.engine = engine;
    spec.backends = {"127.0.0.1:" + std::to_string(inner_port)};
    spec.listener_extra = "proxy_protocol = \"v2\"\nproxy_protocol_from = [\"127.0.0.1\"]\n";
    spec.cluster_extra = "send_proxy = \"" + send_proxy + "\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine);

    uint16_t outer_port = free_port();
    Haproxy outer;
    why = outer.start("frontend f\n    bind 127.0.0.1:" + std::to_string(outer_port) +
                          "\n    default_backend b\n"
                          "backend b\n    server s 127.0.0.1:" +
                          std::to_string(spec.listen_port) + " send-proxy-v2\n",
                      outer_port);
    ASSERT_EQ(why, "");

    for (uint64_t round = 0; round < 2; ++round) {
        uint16_t client_port = 0;
        common::Fd client = connect_from("127.0.0.2", outer_port, &client_port);
        ASSERT_TRUE(client) << std::strerror(errno);
        std::string payload = random_bytes(4 << 20, round + 1);
        std::string back = echo_through(client.get(), payload);
        EXPECT_EQ(back.size(), payload.size());
        EXPECT_TRUE(back == payload) << "bytes differ";
        std::string seen = "seen 127.0.0.2:" + std::to_string(client_port) +
                           " dst 127.0.0.1:" + std::to_string(outer_port);
        EXPECT_TRUE(inner.wait_for_log(seen, 5s))
            << "the inner HAProxy did not see " << seen << "; its log:\n"
            << inner.log() << "\nringlb:\n"
            << proxy.log_tail();
    }
    std::string last;
    EXPECT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_listener_prelude_total",
        {{"listener", "test"}, {"result", "proxy_accepted"}}, [](double v) { return v == 2; }, 5s,
        &last))
        << last;
    // 4 MiB each way, twice: the client's bytes only (neither PROXY header counts).
    EXPECT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_bytes_total",
        {{"listener", "test"}, {"direction", "client_to_upstream"}},
        [](double v) { return v == 2 * (4 << 20); }, 5s, &last))
        << last;
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

TEST_P(ProxyProtocolTest, HaproxyChainKeepsTheClientAddressSendV1) {
    run_haproxy_chain(engine(), "v1");
}

TEST_P(ProxyProtocolTest, HaproxyChainKeepsTheClientAddressSendV2) {
    run_haproxy_chain(engine(), "v2");
}

// Headers of both versions sent one byte per segment are accepted; what ringlb then sends
// (send_proxy = "v1", echoed back by the backend) carries their addresses, followed by exactly
// the client's bytes.
TEST_P(ProxyProtocolTest, AHeaderInOneByteSegmentsIsAccepted) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {echo.address()};
    spec.listener_extra = "proxy_protocol = \"any\"\n";
    spec.cluster_extra = "send_proxy = \"v1\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), engine());
    FdCounts baseline = proxy.settled_fd_counts();

    const std::string v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n";
    const std::string v2 = proxy_v2_tcp4("192.0.2.9", "198.51.100.3", 40001, 8443);
    const std::string expected[] = {v1, "PROXY TCP4 192.0.2.9 198.51.100.3 40001 8443\r\n"};
    const std::string headers[] = {v1, v2};
    for (size_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(i == 0 ? "v1" : "v2");
        std::string error;
        common::Fd client = connect_to(spec.listen_port, 5s, &error);
        ASSERT_TRUE(client) << error;
        ASSERT_TRUE(send_bytewise(client.get(), headers[i]));
        std::string payload = random_bytes(100000, i + 7);
        std::string back = echo_through(client.get(), payload);
        EXPECT_TRUE(back == expected[i] + payload)
            << "got " << back.size() << " bytes, starting "
            << back.substr(0, std::min<size_t>(back.size(), 60));
    }
    EXPECT_EQ(prelude_count(spec.admin_port, "test", "proxy_accepted"), 2);
    FdCounts now = wait_for_fd_baseline(proxy, baseline);
    EXPECT_TRUE(fd_counts_match(now, baseline, false))
        << to_string(now) << " vs " << to_string(baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// Garbage, the other version, an overlong v1 line, a header cut by the client's FIN, a header
// that stops coming, and a header from a peer outside proxy_protocol_from: each client is
// closed without a byte, counted, and never reaches a backend; the proxy keeps serving and its
// fds return to the baseline.
TEST_P(ProxyProtocolTest, BadHeadersAreRefusedAndCounted) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {echo.address()};
    spec.listener_extra = "proxy_protocol = \"v1\"\nprelude_timeout = \"400ms\"\n";
    ProxyProcess proxy;
    uint16_t strict_port = free_port();
    std::string config = make_config(spec) + "\n[[listener]]\nname = \"strict\"\nbind = " +
                         "\"127.0.0.1:" + std::to_string(strict_port) +
                         "\"\ncluster = \"app\"\nproxy_protocol = \"v1\"\n"
                         "proxy_protocol_from = [\"10.0.0.0/8\", \"::1\"]\n";
    RINGLB_START_PROXY(proxy, config, engine());
    FdCounts baseline = proxy.settled_fd_counts();

    struct Case {
        const char* name;
        std::string bytes;
        bool fin;  // shut the write side after the bytes
    };
    const Case refused[] = {
        {"garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
        {"v2 on a v1 listener", proxy_v2_tcp4("192.0.2.1", "192.0.2.2", 1, 2), false},
        {"overlong v1", "PROXY TCP4 " + std::string(120, '1'), false},
        {"truncated", "PROXY TCP4 192.0.2.1 ", true},
    };
    for (const Case& c : refused) {
        SCOPED_TRACE(c.name);
        std::string error;
        common::Fd client = connect_to(spec.listen_port, 5s, &error);
        ASSERT_TRUE(client) << error;
        ASSERT_TRUE(send_all(client.get(), c.bytes.data(), c.bytes.size(), 5s));
        if (c.fin) ::shutdown(client.get(), SHUT_WR);
        CloseResult closed = wait_for_close(client.get(), 3s);
        EXPECT_NE(closed.kind, CloseKind::kTimeout);
        EXPECT_EQ(closed.bytes_before, 0u);
    }
    {
        SCOPED_TRACE("late");
        std::string error;
        common::Fd client = connect_to(spec.listen_port, 5s, &error);
        ASSERT_TRUE(client) << error;
        ASSERT_TRUE(send_all(client.get(), "PROXY TCP4 ", 11, 5s));
        auto start = Clock::now();
        CloseResult closed = wait_for_close(client.get(), 3s);
        EXPECT_NE(closed.kind, CloseKind::kTimeout);
        EXPECT_GE(Clock::now() - start, 300ms) << "closed before prelude_timeout";
        EXPECT_EQ(closed.bytes_before, 0u);
    }
    {
        SCOPED_TRACE("untrusted");
        std::string error;
        common::Fd client = connect_to(strict_port, 5s, &error);
        ASSERT_TRUE(client) << error;
        const std::string header = "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nhello";
        send_all(client.get(), header.data(), header.size(), 5s);  // may meet the close
        CloseResult closed = wait_for_close(client.get(), 3s);
        EXPECT_NE(closed.kind, CloseKind::kTimeout);
        EXPECT_EQ(closed.bytes_before, 0u);
    }
    auto m = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(m);
    auto count = [&](const char* listener, const char* result) {
        return m->sum("ringlb_listener_prelude_total",
                      {{"listener", listener}, {"result", result}});
    };
    EXPECT_EQ(count("test", "proxy_invalid"), 3) << m->describe("ringlb_listener_prelude_total");
    EXPECT_EQ(count("test", "proxy_truncated"), 1);
    EXPECT_EQ(count("test", "proxy_timeout"), 1);
    EXPECT_EQ(count("test", "proxy_accepted"), 0);
    EXPECT_EQ(count("strict", "proxy_untrusted"), 1);
    EXPECT_EQ(m->sum("ringlb_backend_connections_total"), 0);
    EXPECT_NE(proxy.log().find("client refused"), std::string::npos) << proxy.log_tail();

    // Still serving: a good header and an exact echo.
    std::string error;
    common::Fd client = connect_to(spec.listen_port, 5s, &error);
    ASSERT_TRUE(client) << error;
    const std::string header = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n";
    ASSERT_TRUE(send_all(client.get(), header.data(), header.size(), 5s));
    std::string payload = random_bytes(65536, 3);
    EXPECT_TRUE(echo_through(client.get(), payload) == payload);
    client.reset();

    FdCounts now = wait_for_fd_baseline(proxy, baseline);
    EXPECT_TRUE(fd_counts_match(now, baseline, false))
        << to_string(now) << " vs " << to_string(baseline);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, ProxyProtocolTest, ::testing::ValuesIn(kEngines), engine_name);

// ---------------------------------------------------------------------------------------------
// SNI routing

// Self-signed certificates for the TLS backends, one per name, made once with the openssl CLI.
class Certificates {
  public:
    static const Certificates& get() {
        static Certificates certs;
        return certs;
    }
    std::string error;
    std::string cert(const std::string& cn) const { return dir_.file(cn + ".crt"); }
    std::string key(const std::string& cn) const { return dir_.file(cn + ".key"); }

  private:
    Certificates() {
        std::string openssl = binary_of({"/usr/bin/openssl"});
        if (openssl.empty()) {
            error = "openssl is not installed (scripts/install-deps.sh test)";
            return;
        }
        for (const char* cn : {"api", "web", "default"}) {
            CommandResult r =
                run_command({openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                             std::string("/CN=") + cn, "-keyout", key(cn), "-out", cert(cn)});
            if (r.exit_code != 0) {
                error = "openssl req failed: " + r.output;
                return;
            }
        }
    }
    TempDir dir_;
};

// `openssl s_server -www` with the certificate of `cn`.
class TlsServer {
  public:
    std::string start(const std::string& cn) {
        const Certificates& certs = Certificates::get();
        if (!certs.error.empty()) return certs.error;
        port_ = free_port();
        std::string error;
        if (!process_.spawn(
                {"/usr/bin/openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port_),
                 "-cert", certs.cert(cn), "-key", certs.key(cn), "-www", "-quiet"},
                dir_.file("log"), &error))
            return error;
        if (!wait_listening(port_, 5s))
            return "s_server did not listen: " + read_file(dir_.file("log"));
        return "";
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  private:
    TempDir dir_;
    Subprocess process_;
    uint16_t port_ = 0;
};

// Which certificate a TLS client gets through 127.0.0.1:port with `sni` ("" sends none):
// "api", "web" or "default", from `openssl s_client`'s output; or what went wrong.
std::string served_by(uint16_t port, const std::string& sni) {
    std::vector<std::string> argv = {"/usr/bin/openssl", "s_client", "-connect",
                                     "127.0.0.1:" + std::to_string(port)};
    if (sni.empty()) {
        argv.push_back("-noservername");
    } else {
        argv.push_back("-servername");
        argv.push_back(sni);
    }
    CommandResult r = run_command(argv);
    for (const char* cn : {"api", "web", "default"})
        if (r.output.find(std::string("subject=CN = ") + cn + "\n") != std::string::npos) return cn;
    return "no certificate (exit " + std::to_string(r.exit_code) + "): " + r.output;
}

// Forwards one client to 127.0.0.1:target, its bytes one per TCP segment, the other way as
// they come.
class TricklingRelay {
  public:
    explicit TricklingRelay(uint16_t target) : target_(target) {
        listener_ = common::Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
        ::listen(listener_.get(), 4);
        socklen_t len = sizeof(a);
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~TricklingRelay() {
        ::shutdown(listener_.get(), SHUT_RDWR);
        thread_.join();
    }
    uint16_t port() const { return port_; }

  private:
    void run() {
        common::Fd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) return;
        std::string error;
        common::Fd upstream = connect_to(target_, 5s, &error);
        if (!upstream) return;
        int one = 1;
        ::setsockopt(upstream.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        std::thread back([&] {
            char buf[16384];
            ssize_t n;
            while ((n = ::recv(upstream.get(), buf, sizeof(buf), 0)) > 0)
                if (!send_all(client.get(), buf, static_cast<size_t>(n), 5s)) break;
            ::shutdown(client.get(), SHUT_WR);
        });
        char buf[16384];
        ssize_t n;
        while ((n = ::recv(client.get(), buf, sizeof(buf), 0)) > 0)
            if (!send_bytewise(upstream.get(), std::string_view(buf, static_cast<size_t>(n)), 1ms))
                break;
        ::shutdown(upstream.get(), SHUT_WR);
        back.join();
    }
    common::Fd listener_;
    uint16_t port_ = 0;
    uint16_t target_;
    std::thread thread_;
};

class SniTest : public ::testing::TestWithParam<std::string> {
  protected:
    const std::string& engine() const { return GetParam(); }
};

// api.example.com exactly, *.example.com, and everything else to the listener's cluster.
TEST_P(SniTest, ClientsReachTheBackendOfTheirServerName) {
    TlsServer api, web, fallback;
    for (auto [server, cn] : {std::pair{&api, "api"}, {&web, "web"}, {&fallback, "default"}}) {
        std::string why = server->start(cn);
        ASSERT_EQ(why, "") << cn;
    }
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {fallback.address()};
    spec.listener_extra =
        "routes = [{ sni = \"api.example.com\", cluster = \"api\" },"
        " { sni = \"*.EXAMPLE.com\", cluster = \"web\" }]\n";
    std::string config = make_config(spec) + "\n[[cluster]]\nname = \"api\"\nbackends = [{ " +
                         "address = \"" + api.address() + "\" }]\n" +
                         "\n[[cluster]]\nname = \"web\"\nbackends = [{ address = \"" +
                         web.address() + "\" }]\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, engine());

    EXPECT_EQ(served_by(spec.listen_port, "api.example.com"), "api");
    EXPECT_EQ(served_by(spec.listen_port, "API.Example.COM"), "api");
    EXPECT_EQ(served_by(spec.listen_port, "www.example.com"), "web");
    EXPECT_EQ(served_by(spec.listen_port, "a.b.example.com"), "web");
    EXPECT_EQ(served_by(spec.listen_port, "example.com"), "default");
    EXPECT_EQ(served_by(spec.listen_port, "other.org"), "default");
    EXPECT_EQ(served_by(spec.listen_port, ""), "default");

    // curl, through the whole TLS exchange to s_server's status page.
    std::string port = std::to_string(spec.listen_port);
    CommandResult curl = run_command({"/usr/bin/curl", "-skv", "--max-time", "10", "--resolve",
                                      "api.example.com:" + port + ":127.0.0.1",
                                      "https://api.example.com:" + port + "/"});
    EXPECT_EQ(curl.exit_code, 0) << curl.output;
    EXPECT_NE(curl.output.find("subject: CN=api"), std::string::npos) << curl.output;
    EXPECT_NE(curl.output.find("HTTP/1.0 200 ok"), std::string::npos) << curl.output;

    // A ClientHello in 1-byte segments still routes.
    TricklingRelay relay(spec.listen_port);
    EXPECT_EQ(served_by(relay.port(), "www.example.com"), "web");

    auto m = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(m);
    auto count = [&](const char* result) {
        return m->sum("ringlb_listener_prelude_total", {{"listener", "test"}, {"result", result}});
    };
    EXPECT_EQ(count("sni_exact"), 3) << m->describe("ringlb_listener_prelude_total");
    EXPECT_EQ(count("sni_wildcard"), 3);
    EXPECT_EQ(count("sni_unmatched"), 3);
    EXPECT_EQ(count("not_tls"), 0);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

// A listener with routes in front of a server-speaks-first backend: a client that sends
// nothing reaches it after prelude_timeout, one that sends something else than TLS at once,
// and without routes a silent client is not kept waiting at all.
TEST_P(SniTest, SilentAndNonTlsClientsGoToTheListenersCluster) {
    BackendOptions options;
    options.mode = EchoMode::kEcho;
    options.greeting = "220 ready\r\n";
    BackendProcess greeter;
    ASSERT_TRUE(greeter.start(options));
    ProxyConfigSpec spec;
    spec.engine = engine();
    spec.backends = {greeter.address()};
    spec.listener_extra =
        "prelude_timeout = \"600ms\"\nroutes = [{ sni = \"api.example.com\", cluster = \"app\" }]"
        "\n";
    uint16_t plain_port = free_port();
    std::string config = make_config(spec) + "\n[[listener]]\nname = \"plain\"\nbind = " +
                         "\"127.0.0.1:" + std::to_string(plain_port) + "\"\ncluster = \"app\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, engine());

    {
        SCOPED_TRACE("silent, with routes");
        ClientSession client;
        ASSERT_TRUE(client.connect(spec.listen_port)) << client.error();
        auto start = Clock::now();
        EXPECT_TRUE(client.expect("220 ready\r\n", 5s)) << client.error();
        auto waited = Clock::now() - start;
        EXPECT_GE(waited, 500ms);
        EXPECT_LT(waited, 3s);
        EXPECT_TRUE(client.send("after\n"));
        EXPECT_TRUE(client.expect("after\n")) << client.error();
    }
    {
        SCOPED_TRACE("not TLS, with routes");
        ClientSession client;
        ASSERT_TRUE(client.connect(spec.listen_port)) << client.error();
        auto start = Clock::now();
        EXPECT_TRUE(client.send("EHLO client\r\n"));
        EXPECT_TRUE(client.expect("220 ready\r\nEHLO client\r\n", 5s)) << client.error();
        EXPECT_LT(Clock::now() - start, 400ms);
    }
    {
        SCOPED_TRACE("silent, without routes");
        ClientSession client;
        ASSERT_TRUE(client.connect(plain_port)) << client.error();
        auto start = Clock::now();
        EXPECT_TRUE(client.expect("220 ready\r\n", 5s)) << client.error();
        EXPECT_LT(Clock::now() - start, 400ms);
    }
    auto m = scrape_metrics(spec.admin_port);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->sum("ringlb_listener_prelude_total", {{"listener", "test"}, {"result", "silent"}}),
              1);
    EXPECT_EQ(
        m->sum("ringlb_listener_prelude_total", {{"listener", "test"}, {"result", "not_tls"}}), 1);
    EXPECT_EQ(m->sum("ringlb_listener_prelude_total", {{"listener", "plain"}}), 0);
    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, SniTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
