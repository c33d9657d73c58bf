#include "common/socket.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

using ringlb::common::Fd;

TEST(SocketTest, ListenerIsReusePortAndAcceptedSocketsInheritNodelay) {
    std::error_code ec;
    auto address = ringlb::common::parse_address("127.0.0.1:0");
    ASSERT_TRUE(address);
    Fd listener = ringlb::common::listen_tcp(*address, 16, ec);
    ASSERT_TRUE(listener) << ec.message();
    int reuse = 0;
    socklen_t len = sizeof(reuse);
    ASSERT_EQ(::getsockopt(listener.get(), SOL_SOCKET, SO_REUSEPORT, &reuse, &len), 0);
    EXPECT_EQ(reuse, 1);

    ringlb::common::Address bound = ringlb::common::local_address(listener.get());
    ASSERT_NE(bound.port(), 0);
    // A second socket on the same address: what each shard does.
    Fd second = ringlb::common::listen_tcp(bound, 16, ec);
    EXPECT_TRUE(second) << ec.message();

    Fd client = ringlb::common::tcp_socket(AF_INET, ec);
    ASSERT_TRUE(client);
    int rc = ::connect(client.get(), bound.sa(), bound.length);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS);
    Fd accepted;
    for (int i = 0; i < 1000 && !accepted; ++i) {
        accepted.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
        if (!accepted) accepted.reset(::accept4(second.get(), nullptr, nullptr, SOCK_NONBLOCK));
        if (!accepted) ::usleep(1000);
    }
    ASSERT_TRUE(accepted);
    int nodelay = 0;
    len = sizeof(nodelay);
    ASSERT_EQ(::getsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    EXPECT_EQ(nodelay, 1);
}

TEST(SocketTest, ListenReportsBindErrors) {
    std::error_code ec;
    auto address = ringlb::common::parse_address("127.0.0.1:0");
    Fd listener = ringlb::common::listen_tcp(*address, 16, ec);
    ASSERT_TRUE(listener);
    // A plain (non-SO_REUSEPORT) socket already bound there makes our bind fail.
    Fd plain(::socket(AF_INET, SOCK_STREAM, 0));
    ringlb::common::Address bound = ringlb::common::local_address(listener.get());
    auto other = ringlb::common::parse_address("127.0.0.1:0");
    ASSERT_EQ(::bind(plain.get(), other->sa(), other->length), 0);
    ringlb::common::Address taken = ringlb::common::local_address(plain.get());
    Fd clash = ringlb::common::listen_tcp(taken, 16, ec);
    EXPECT_FALSE(clash);
    EXPECT_EQ(ec.value(), EADDRINUSE);
    (void)bound;
}

namespace {

using ringlb::common::Address;

Address parse(const char* text) {
    auto address = ringlb::common::parse_address(text);
    EXPECT_TRUE(address) << text;
    return address.value_or(Address{});
}

int get_int(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof(value);
    EXPECT_EQ(::getsockopt(fd, level, name, &value, &len), 0) << std::strerror(errno);
    return value;
}

// A listener on `text` (port 0: the kernel picks) with room for every connection a test opens.
struct Listener {
    Fd fd;
    Address address;
};
Listener listen_on(const char* text) {
    std::error_code ec;
    Listener l;
    l.fd = ringlb::common::listen_tcp(parse(text), 64, ec);
    EXPECT_TRUE(l.fd) << text << ": " << ec.message();
    if (l.fd) l.address = ringlb::common::local_address(l.fd.get());
    return l;
}

// A blocking client socket: the product connects non-blocking, the tests need not.
Fd blocking_socket(int family) {
    return Fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
}

// Accepts one connection, waiting up to two seconds; fills *peer with the client's address.
Fd accept_one(const Listener& l, Address* peer = nullptr) {
    pollfd p{l.fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return {};
    Address from;
    from.length = sizeof(from.storage);
    Fd fd(::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&from.storage), &from.length,
                    SOCK_CLOEXEC));
    if (peer) *peer = from;
    return fd;
}

int connect_to(int fd, const Address& to) {
    return ::connect(fd, to.sa(), to.length) == 0 ? 0 : errno;
}

// Whether this host has an IPv6 loopback to test on.
bool have_ipv6_loopback() {
    Fd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!fd) return false;
    Address any = parse("[::1]:0");
    return ::bind(fd.get(), any.sa(), any.length) == 0;
}

// net.ipv4.ip_local_port_range: per-socket ranges only work inside it.
std::pair<uint16_t, uint16_t> system_port_range() {
    FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    unsigned lo = 32768, hi = 60999;
    if (f) {
        if (std::fscanf(f, "%u %u", &lo, &hi) != 2) lo = 32768, hi = 60999;
        std::fclose(f);
    }
    return {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
}

// Closes test connections with RST so a test run leaves no TIME_WAIT behind.
void reset_all(std::vector<Fd>& fds) {
    for (Fd& fd : fds) {
        if (fd) ringlb::common::set_linger_zero(fd.get());
        fd.reset();
    }
}

}  // namespace

TEST(SocketOptionsTest, KeepaliveSetsEachPositiveValueAndKeepsKernelDefaultsForZero) {
    Fd fd = blocking_socket(AF_INET);
    ASSERT_TRUE(fd);
    int default_idle = get_int(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE);
    int default_count = get_int(fd.get(), IPPROTO_TCP, TCP_KEEPCNT);
    ASSERT_EQ(get_int(fd.get(), SOL_SOCKET, SO_KEEPALIVE), 0);

    EXPECT_FALSE(ringlb::common::set_keepalive(fd.get(), 0, 7, 0));
    EXPECT_EQ(get_int(fd.get(), SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE), default_idle);
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL), 7);
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_KEEPCNT), default_count);

    EXPECT_FALSE(ringlb::common::set_keepalive(fd.get(), 45, 9, 4));
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE), 45);
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL), 9);
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_KEEPCNT), 4);
}

TEST(SocketOptionsTest, KeepaliveReportsTheKernelsRefusal) {
    Fd fd = blocking_socket(AF_INET);
    // TCP_KEEPIDLE is capped at 32767 s (MAX_TCP_KEEPIDLE).
    std::error_code ec = ringlb::common::set_keepalive(fd.get(), 40000, 0, 0);
    EXPECT_EQ(ec.value(), EINVAL);
    EXPECT_EQ(ringlb::common::set_keepalive(-1, 1, 1, 1).value(), EBADF);
}

TEST(SocketOptionsTest, UserTimeoutReadsBack) {
    Fd fd = blocking_socket(AF_INET);
    ASSERT_TRUE(fd);
    EXPECT_FALSE(ringlb::common::set_user_timeout(fd.get(), 12345));
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT), 12345);
    EXPECT_FALSE(ringlb::common::set_user_timeout(fd.get(), 0));
    EXPECT_EQ(get_int(fd.get(), IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
}

TEST(SocketOptionsTest, LingerZeroReadsBack) {
    Fd fd = blocking_socket(AF_INET);
    ASSERT_TRUE(fd);
    EXPECT_FALSE(ringlb::common::set_linger_zero(fd.get()));
    linger value{};
    socklen_t len = sizeof(value);
    ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &value, &len), 0);
    EXPECT_EQ(value.l_onoff, 1);
    EXPECT_EQ(value.l_linger, 0);
}

namespace {

// TIME_WAIT entries of /proc/net/tcp for the 4-tuple local_port -> remote_port on loopback. A
// bind() probe would also fail when a parallel test's connection happens to hold the same
// ephemeral port, so the check reads the kernel's table for exactly this connection.
int time_wait_entries(uint16_t local_port, uint16_t remote_port) {
    std::FILE* f = std::fopen("/proc/net/tcp", "r");
    if (!f) return -1;
    char line[512];
    int count = 0;
    char want_local[16], want_remote[16];
    std::snprintf(want_local, sizeof(want_local), ":%04X", local_port);
    std::snprintf(want_remote, sizeof(want_remote), ":%04X", remote_port);
    while (std::fgets(line, sizeof(line), f)) {
        char local[64], remote[64], state[8];
        if (std::sscanf(line, " %*[0-9]: %63s %63s %7s", local, remote, state) != 3) continue;
        std::string l(local), r(remote);
        if (l.size() > 5 && r.size() > 5 && l.substr(l.size() - 5) == want_local &&
            r.substr(r.size() - 5) == want_remote && std::string(state) == "06")
            ++count;
    }
    std::fclose(f);
    return count;
}

}  // namespace

TEST(SocketOptionsTest, LingerZeroCloseResetsThePeerAndLeavesNoTimeWait) {
    Listener l = listen_on("127.0.0.1:0");
    ASSERT_TRUE(l.fd);

    // Control: after a graceful close by the client first, its side sits in TIME_WAIT (60 s; the
    // one entry this test leaves behind), so the check below can fail.
    {
        Fd client = blocking_socket(AF_INET);
        ASSERT_EQ(connect_to(client.get(), l.address), 0);
        Fd server = accept_one(l);
        ASSERT_TRUE(server);
        Address local = ringlb::common::local_address(client.get());
        client.reset();
        char byte;
        ASSERT_EQ(::recv(server.get(), &byte, 1, 0), 0);  // the client's FIN
        server.reset();                                   // our FIN: client goes to TIME_WAIT
        EXPECT_EQ(time_wait_entries(local.port(), l.address.port()), 1)
            << "graceful close left no TIME_WAIT: the check below proves nothing";
    }

    Fd client = blocking_socket(AF_INET);
    ASSERT_EQ(connect_to(client.get(), l.address), 0);
    Fd server = accept_one(l);
    ASSERT_TRUE(server);
    Address local = ringlb::common::local_address(client.get());
    ASSERT_FALSE(ringlb::common::set_linger_zero(client.get()));
    client.reset();

    char byte;
    ssize_t n = ::recv(server.get(), &byte, 1, 0);
    EXPECT_EQ(n, -1);
    EXPECT_EQ(errno, ECONNRESET);
    // No TIME_WAIT on the closing side.
    EXPECT_EQ(time_wait_entries(local.port(), l.address.port()), 0);
}

namespace {

// bind_source then connect to a listener on `listen_text`; the server must see `source_ip` with a
// port the kernel chose at connect() time.
void check_bind_source(int family, const char* source_text, const char* listen_text) {
    Listener l = listen_on(listen_text);
    ASSERT_TRUE(l.fd);
    Fd client = blocking_socket(family);
    ASSERT_TRUE(client);
    ASSERT_FALSE(ringlb::common::bind_source(client.get(), parse(source_text)));
    EXPECT_EQ(get_int(client.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT), 1);
    // IP_BIND_ADDRESS_NO_PORT at work: the address is bound, the port not yet.
    Address bound = ringlb::common::local_address(client.get());
    EXPECT_EQ(bound.port(), 0);

    ASSERT_EQ(connect_to(client.get(), l.address), 0) << std::strerror(errno);
    Address peer;
    Fd server = accept_one(l, &peer);
    ASSERT_TRUE(server);
    Address local = ringlb::common::local_address(client.get());
    EXPECT_NE(local.port(), 0);
    EXPECT_EQ(peer.to_string(), local.to_string());
    Address expected = parse(source_text);
    // Same host part: compare "ip:port" with the port cut off.
    std::string peer_text = peer.to_string();
    std::string expected_text = expected.to_string();
    EXPECT_EQ(peer_text.substr(0, peer_text.rfind(':')),
              expected_text.substr(0, expected_text.rfind(':')));
    auto [sys_lo, sys_hi] = system_port_range();
    EXPECT_GE(local.port(), sys_lo);
    EXPECT_LE(local.port(), sys_hi);
    ringlb::common::set_linger_zero(client.get());
}

// set_local_port_range(lo, hi) then connect: the local port must lie in [lo, hi].
void check_port_range(int family, const char* listen_text) {
    auto [sys_lo, sys_hi] = system_port_range();
    ASSERT_GE(sys_hi - sys_lo, 100);
    Listener l = listen_on(listen_text);
    ASSERT_TRUE(l.fd);
    uint16_t lo = static_cast<uint16_t>(sys_lo + (sys_hi - sys_lo) / 2);
    uint16_t hi = static_cast<uint16_t>(lo + 9);
    Fd client = blocking_socket(family);
    ASSERT_FALSE(ringlb::common::set_local_port_range(client.get(), lo, hi));
    EXPECT_EQ(static_cast<uint32_t>(get_int(client.get(), IPPROTO_IP, IP_LOCAL_PORT_RANGE)),
              (static_cast<uint32_t>(hi) << 16) | lo);
    ASSERT_EQ(connect_to(client.get(), l.address), 0) << std::strerror(errno);
    Fd server = accept_one(l);
    ASSERT_TRUE(server);
    uint16_t port = ringlb::common::local_address(client.get()).port();
    EXPECT_GE(port, lo);
    EXPECT_LE(port, hi);
    ringlb::common::set_linger_zero(client.get());
}

}  // namespace

TEST(SocketSourceTest, BindSourceIpv4LetsTheKernelPickThePortAtConnect) {
    check_bind_source(AF_INET, "127.0.0.2:0", "127.0.0.1:0");
}

TEST(SocketSourceTest, BindSourceIgnoresThePortGiven) {
    Fd client = blocking_socket(AF_INET);
    ASSERT_FALSE(ringlb::common::bind_source(client.get(), parse("127.0.0.2:5555")));
    EXPECT_EQ(ringlb::common::local_address(client.get()).port(), 0);
}

TEST(SocketSourceTest, BindSourceIpv6) {
    if (!have_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback ([::1]) on this host";
    check_bind_source(AF_INET6, "[::1]:0", "[::1]:0");
}

TEST(SocketSourceTest, BindSourceReportsAFamilyMismatch) {
    Fd client = blocking_socket(AF_INET);
    std::error_code ec = ringlb::common::bind_source(client.get(), Address{});
    EXPECT_EQ(ec.value(), EAFNOSUPPORT);
    if (!have_ipv6_loopback()) return;
    ec = ringlb::common::bind_source(client.get(), parse("[::1]:0"));
    EXPECT_TRUE(ec);  // an IPv6 address on an IPv4 socket
}

TEST(SocketSourceTest, BindSourceSharesOnePortAcrossDestinations) {
    // With the port picked at connect(), one source port serves two destinations; a plain
    // bind() to port 0 would have reserved it for the first one.
    if (!ringlb::common::local_port_range_supported())
        GTEST_SKIP() << "kernel lacks IP_LOCAL_PORT_RANGE (Linux 6.3+)";
    auto [sys_lo, sys_hi] = system_port_range();
    Listener a = listen_on("127.0.0.1:0");
    Listener b = listen_on("127.0.0.1:0");
    ASSERT_TRUE(a.fd && b.fd);
    // A one-port range; another process may hold the port we pick, so try a few.
    bool shared = false;
    for (int attempt = 0; attempt < 5 && !shared; ++attempt) {
        uint16_t port = static_cast<uint16_t>(sys_hi - 1000 - 7 * attempt);
        ASSERT_GT(port, sys_lo);
        std::vector<Fd> fds;
        for (const Listener* l : {&a, &b}) {
            Fd client = blocking_socket(AF_INET);
            ASSERT_FALSE(ringlb::common::set_local_port_range(client.get(), port, port));
            ASSERT_FALSE(ringlb::common::bind_source(client.get(), parse("127.0.0.3:0")));
            if (connect_to(client.get(), l->address) != 0) break;
            EXPECT_EQ(ringlb::common::local_address(client.get()).port(), port);
            fds.push_back(std::move(client));
            fds.push_back(accept_one(*l));
        }
        shared = fds.size() == 4;
        reset_all(fds);
    }
    EXPECT_TRUE(shared);
}

TEST(SocketSourceTest, LocalPortRangeIpv4) {
    if (!ringlb::common::local_port_range_supported())
        GTEST_SKIP() << "kernel lacks IP_LOCAL_PORT_RANGE (Linux 6.3+)";
    check_port_range(AF_INET, "127.0.0.1:0");
}

TEST(SocketSourceTest, LocalPortRangeIpv6) {
    if (!ringlb::common::local_port_range_supported())
        GTEST_SKIP() << "kernel lacks IP_LOCAL_PORT_RANGE (Linux 6.3+)";
    if (!have_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback ([::1]) on this host";
    check_port_range(AF_INET6, "[::1]:0");
}

TEST(SocketSourceTest, LocalPortRangeRejectsAnInvertedRange) {
    Fd client = blocking_socket(AF_INET);
    std::error_code ec = ringlb::common::set_local_port_range(client.get(), 40009, 40000);
    if (!ringlb::common::local_port_range_supported())
        EXPECT_EQ(ec.value(), ENOPROTOOPT);
    else
        EXPECT_EQ(ec.value(), EINVAL);
}

TEST(SocketSourceTest, ExhaustedPortRangeFailsConnectWithEaddrnotavail) {
    if (!ringlb::common::local_port_range_supported())
        GTEST_SKIP() << "kernel lacks IP_LOCAL_PORT_RANGE (Linux 6.3+)";
    auto [sys_lo, sys_hi] = system_port_range();
    Listener l = listen_on("127.0.0.1:0");
    ASSERT_TRUE(l.fd);
    uint16_t lo = static_cast<uint16_t>(sys_hi - 500);
    uint16_t hi = static_cast<uint16_t>(lo + 1);
    ASSERT_GT(lo, sys_lo);

    // Every connection goes to the same destination and stays open, so each takes one of the
    // two ports for good. A port another process holds on its own shrinks the range further,
    // hence "at most two".
    std::vector<Fd> fds;
    int connected = 0;
    int error = 0;
    for (int i = 0; i < 4 && error == 0; ++i) {
        Fd client = blocking_socket(AF_INET);
        ASSERT_FALSE(ringlb::common::set_local_port_range(client.get(), lo, hi));
        error = connect_to(client.get(), l.address);
        if (error != 0) break;
        uint16_t port = ringlb::common::local_address(client.get()).port();
        EXPECT_GE(port, lo);
        EXPECT_LE(port, hi);
        ++connected;
        fds.push_back(std::move(client));
        fds.push_back(accept_one(l));
        EXPECT_TRUE(fds.back());
    }
    EXPECT_EQ(error, EADDRNOTAVAIL) << std::strerror(error);
    EXPECT_GE(connected, 1);
    EXPECT_LE(connected, 2);
    reset_all(fds);

    // Once they are closed (with RST: no TIME_WAIT), the range serves again.
    Fd client = blocking_socket(AF_INET);
    ASSERT_FALSE(ringlb::common::set_local_port_range(client.get(), lo, hi));
    EXPECT_EQ(connect_to(client.get(), l.address), 0);
    Fd server = accept_one(l);
    ringlb::common::set_linger_zero(client.get());
}

TEST(SocketSourceTest, ProbeMatchesTheKernel) {
    Fd fd = blocking_socket(AF_INET);
    uint32_t value = 0;
    socklen_t len = sizeof(value);
    bool kernel_knows = ::getsockopt(fd.get(), IPPROTO_IP, IP_LOCAL_PORT_RANGE, &value, &len) == 0;
    EXPECT_EQ(ringlb::common::local_port_range_supported(), kernel_knows);
}

namespace {

// The address a listener got (port 0 resolved).
Address bound_address(const Fd& fd) {
    return ringlb::common::local_address(fd.get());
}

Address with_port(const char* host_port0, uint16_t port) {
    auto address = ringlb::common::parse_address(host_port0);
    EXPECT_TRUE(address) << host_port0;
    if (address && address->family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&address->storage)->sin_port = htons(port);
    return address.value_or(Address{});
}

// Whether /proc/net/tcp lists a TIME_WAIT socket whose local port is `port`.
bool time_wait_on_local_port(uint16_t port) {
    FILE* f = std::fopen("/proc/net/tcp", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    while (std::fgets(line, sizeof(line), f)) {
        unsigned local_port = 0, state = 0;
        if (std::sscanf(line, " %*d: %*8[0-9A-Fa-f]:%x %*8[0-9A-Fa-f]:%*x %x", &local_port,
                        &state) == 2 &&
            local_port == port && state == 6)
            found = true;
    }
    std::fclose(f);
    return found;
}

}  // namespace

TEST(SocketGroupTest, FirstBindIsExclusiveOnAServedAddress) {
    std::error_code ec;
    // Served by a SO_REUSEPORT socket (what any shard socket, or an older ringlb, holds).
    Fd shared = ringlb::common::listen_tcp(*ringlb::common::parse_address("127.0.0.1:0"), 16, ec);
    ASSERT_TRUE(shared) << ec.message();
    std::vector<Fd> group = ringlb::common::listen_tcp_group(bound_address(shared), 16, 2, ec);
    EXPECT_TRUE(group.empty());
    EXPECT_EQ(ec.value(), EADDRINUSE) << ec.message();

    // Served by another group: a second ringlb on the same listener address.
    std::vector<Fd> first =
        ringlb::common::listen_tcp_group(*ringlb::common::parse_address("127.0.0.1:0"), 16, 2, ec);
    ASSERT_EQ(first.size(), 2u) << ec.message();
    uint16_t port = bound_address(first[0]).port();
    group = ringlb::common::listen_tcp_group(bound_address(first[0]), 16, 2, ec);
    EXPECT_TRUE(group.empty());
    EXPECT_EQ(ec.value(), EADDRINUSE) << ec.message();
    // ... and the wildcard address over it.
    group = ringlb::common::listen_tcp_group(with_port("0.0.0.0:0", port), 16, 1, ec);
    EXPECT_TRUE(group.empty());
    EXPECT_EQ(ec.value(), EADDRINUSE) << ec.message();

    // Served by a plain listener without SO_REUSEPORT.
    Fd plain(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    Address any = *ringlb::common::parse_address("127.0.0.1:0");
    ASSERT_EQ(::bind(plain.get(), any.sa(), any.length), 0);
    ASSERT_EQ(::listen(plain.get(), 4), 0);
    group = ringlb::common::listen_tcp_group(bound_address(plain), 16, 1, ec);
    EXPECT_TRUE(group.empty());
    EXPECT_EQ(ec.value(), EADDRINUSE) << ec.message();
}

TEST(SocketGroupTest, GroupSocketsShareThePortAndEachGetsConnections) {
    std::error_code ec;
    constexpr unsigned kSockets = 3;
    std::vector<Fd> group = ringlb::common::listen_tcp_group(
        *ringlb::common::parse_address("127.0.0.1:0"), 64, kSockets, ec);
    ASSERT_EQ(group.size(), kSockets) << ec.message();
    Address address = bound_address(group[0]);
    ASSERT_NE(address.port(), 0);
    for (const Fd& fd : group) {
        EXPECT_EQ(bound_address(fd).port(), address.port());
        int reuse = 0;
        socklen_t len = sizeof(reuse);
        ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &reuse, &len), 0);
        EXPECT_EQ(reuse, 1);
    }

    // The kernel hashes each connection's 4-tuple onto one socket of the group: with 40
    // connections, a socket left without any is a 3 x (2/3)^40 (about 3e-7) chance.
    constexpr int kConnections = 40;
    std::vector<Fd> clients;
    for (int i = 0; i < kConnections; ++i) {
        Fd client = blocking_socket(AF_INET);
        ASSERT_EQ(connect_to(client.get(), address), 0) << std::strerror(errno);
        clients.push_back(std::move(client));
    }
    std::vector<Fd> accepted;
    std::vector<int> per_socket(kSockets, 0);
    for (int round = 0; round < 2000 && static_cast<int>(accepted.size()) < kConnections; ++round) {
        for (unsigned s = 0; s < kSockets; ++s) {
            Fd fd(::accept4(group[s].get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!fd) continue;
            int nodelay = get_int(fd.get(), IPPROTO_TCP, TCP_NODELAY);
            EXPECT_EQ(nodelay, 1);
            ++per_socket[s];
            accepted.push_back(std::move(fd));
        }
        if (static_cast<int>(accepted.size()) < kConnections) ::usleep(1000);
    }
    EXPECT_EQ(accepted.size(), static_cast<size_t>(kConnections));
    for (unsigned s = 0; s < kSockets; ++s) EXPECT_GT(per_socket[s], 0) << "socket " << s;
    reset_all(clients);
    reset_all(accepted);
}

TEST(SocketGroupTest, RebindsWhileAcceptedConnectionsSitInTimeWait) {
    std::error_code ec;
    std::vector<Fd> group =
        ringlb::common::listen_tcp_group(*ringlb::common::parse_address("127.0.0.1:0"), 16, 2, ec);
    ASSERT_EQ(group.size(), 2u) << ec.message();
    Address address = bound_address(group[0]);
    Fd client = blocking_socket(AF_INET);
    ASSERT_EQ(connect_to(client.get(), address), 0);
    Fd server;
    for (int i = 0; i < 2000 && !server; ++i) {
        for (const Fd& l : group)
            if (!server) server.reset(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!server) ::usleep(1000);
    }
    ASSERT_TRUE(server);
    // The proxy's side closes first, so the TIME_WAIT entry has the listening port as local port.
    server.reset();
    char byte;
    EXPECT_EQ(::recv(client.get(), &byte, 1, 0), 0);
    client.reset();
    ASSERT_TRUE(time_wait_on_local_port(address.port()));
    group.clear();

    group = ringlb::common::listen_tcp_group(address, 16, 2, ec);
    EXPECT_EQ(group.size(), 2u) << ec.message();
}

TEST(SocketTest, UnixListenerGroupSharesOneSocketAndReplacesOnlyStaleFiles) {
    char dir[] = "/tmp/ringlb-socket-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string path = std::string(dir) + "/l.sock";
    auto address = ringlb::common::parse_socket_address("unix:" + path);
    ASSERT_TRUE(address);
    ringlb::common::ListenOptions options;
    options.mode = 0640;
    std::error_code ec;
    {
        std::vector<Fd> group = ringlb::common::listen_group(*address, options, 3, ec);
        ASSERT_EQ(group.size(), 3u) << ec.message();
        struct stat first {};
        ASSERT_EQ(::fstat(group[0].get(), &first), 0);
        for (const Fd& fd : group) {
            struct stat st {};
            ASSERT_EQ(::fstat(fd.get(), &st), 0);
            EXPECT_EQ(st.st_ino, first.st_ino);  // one socket, dup()ed
        }
        struct stat file {};
        ASSERT_EQ(::lstat(path.c_str(), &file), 0);
        EXPECT_EQ(file.st_mode & 07777, 0640u);
        // While it listens, a second group fails and leaves the file alone.
        std::error_code busy;
        EXPECT_TRUE(ringlb::common::listen_group(*address, options, 1, busy).empty());
        EXPECT_EQ(busy, std::errc::address_in_use);
        ASSERT_EQ(::lstat(path.c_str(), &file), 0);
        // A client reaches it through any shard's copy.
        Fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::connect(client.get(), address->sa(), address->length), 0);
        pollfd pfd{group[2].get(), POLLIN, 0};
        EXPECT_EQ(::poll(&pfd, 1, 1000), 1);
    }
    // Closed without removing the file: stale, so it is replaced.
    std::vector<Fd> again = ringlb::common::listen_group(*address, options, 1, ec);
    EXPECT_EQ(again.size(), 1u) << ec.message();
    ringlb::common::remove_unix_socket(*address);
    struct stat gone {};
    EXPECT_NE(::lstat(path.c_str(), &gone), 0);
    ::rmdir(dir);
}

TEST(SocketTest, MptcpListenerGroup) {
    auto address = ringlb::common::parse_address("127.0.0.1:0");
    ringlb::common::ListenOptions options;
    options.mptcp = true;
    std::error_code ec, refused;
    std::vector<Fd> group = ringlb::common::listen_group(*address, options, 2, ec, &refused);
    ASSERT_EQ(group.size(), 2u) << ec.message();
    int protocol = 0;
    socklen_t len = sizeof(protocol);
    ASSERT_EQ(::getsockopt(group[1].get(), SOL_SOCKET, SO_PROTOCOL, &protocol, &len), 0);
    // MPTCP where the kernel has it, else TCP with the reason.
    if (refused)
        EXPECT_EQ(protocol, IPPROTO_TCP) << refused.message();
    else
        EXPECT_EQ(protocol, IPPROTO_MPTCP);
    EXPECT_EQ(ringlb::common::local_address(group[0].get()),
              ringlb::common::local_address(group[1].get()));
}
