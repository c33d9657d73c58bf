// Listeners and backends on every address family ringlb serves: IPv6 ([::1]) and across
// families, unix sockets (bind = "unix:/path", address = "unix:/path") with their socket file's
// life (mode, stale file, live file, reload, exit), and MPTCP listeners with their TCP fallback.
// Every exchange is checked byte for byte, on both engines and both forward modes.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using common::Address;

// A [runtime] that stops at once, one listener on `bind`, one cluster of `backends`.
std::string config_for(const std::string& engine, const std::string& forward,
                       const std::string& bind, const std::vector<std::string>& backends,
                       const std::string& listener_extra = "") {
    std::string text = "[runtime]\nworkers = 2\nengine = \"" + engine + "\"\n" +
                       std::string(kQuickStop) + "\n[[listener]]\nname = \"test\"\nbind = \"" +
                       bind + "\"\ncluster = \"app\"\nforward = \"" + forward + "\"\n" +
                       listener_extra + "\n[[cluster]]\nname = \"app\"\nbackends = [";
    for (size_t i = 0; i < backends.size(); ++i)
        text += (i ? ", " : " ") + std::string("{ address = \"") + backends[i] + "\" }";
    return text + " ]\n";
}

Address address_of(const std::string& text) {
    std::optional<Address> a = common::parse_socket_address(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(Address{});
}

// Sends `bytes` of the test pattern to an echo backend through `to` (a socket of `protocol`,
// 0: the family's default), shuts the write side, and reads everything back until EOF. "" when
// every byte came back in order, else what went wrong.
std::string echo_through(const Address& to, size_t bytes, int protocol = 0,
                         Millis timeout = Millis(20000)) {
    common::Fd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, protocol));
    if (!fd) return "socket: " + std::string(std::strerror(errno));
    timeval tv{static_cast<time_t>(timeout.count() / 1000), 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (::connect(fd.get(), to.sa(), to.length) != 0)
        return "connect to " + to.to_string() + ": " + std::strerror(errno);
    std::string payload(bytes, '\0');
    tools::pattern_fill(11, 0, reinterpret_cast<uint8_t*>(payload.data()), payload.size());
    bool sent = false;
    std::thread sender([&] {
        sent = send_all(fd.get(), payload.data(), payload.size(), timeout);
        ::shutdown(fd.get(), SHUT_WR);
    });
    std::string got;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
        if (n <= 0) break;
        got.append(buffer, static_cast<size_t>(n));
    }
    sender.join();
    if (!sent) return "send failed after " + std::to_string(got.size()) + " bytes back";
    if (got.size() != payload.size())
        return "got " + std::to_string(got.size()) + " of " + std::to_string(bytes) + " bytes";
    if (got != payload) return "the bytes differ";
    return "";
}

class AddressesTest : public ::testing::TestWithParam<EngineForward> {
  protected:
    const std::string& engine() const { return std::get<0>(GetParam()); }
    const std::string& forward() const { return std::get<1>(GetParam()); }

    // Three exchanges through the proxy at `client_to` (1 byte, 100 KB, 2 MiB), then the fds go
    // back to the baseline taken before them.
    void expect_forwarding(ProxyProcess& proxy, const Address& client_to) {
        FdCounts baseline = proxy.settled_fd_counts();
        for (size_t bytes : {size_t{1}, size_t{100000}, size_t{2} << 20})
            EXPECT_EQ(echo_through(client_to, bytes), "")
                << bytes << " bytes via " << client_to.to_string();
        FdCounts now = wait_for_fd_baseline(proxy, baseline);
        EXPECT_TRUE(fd_counts_match(now, baseline, false))
            << to_string(now) << " vs " << to_string(baseline);
        // Each exchange ran both directions in the mode asked for (splice works on unix sockets).
        std::string why;
        auto stats = proxy.stats(2, Millis(5000), &why);
        ASSERT_TRUE(stats) << why;
        EXPECT_EQ(sum_stat(*stats, forward() + "_directions"), 6u) << proxy.log_tail();
        EXPECT_EQ(sum_stat(*stats, "forward_errors"), 0u);
    }
};

TEST_P(AddressesTest, Ipv6ListenerToIpv6Backend) {
    BackendOptions options;
    options.host = "::1";
    BackendProcess echo;
    ASSERT_TRUE(echo.start(options));
    uint16_t port = free_port();
    std::string bind = "[::1]:" + std::to_string(port);
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_for(engine(), forward(), bind, {echo.address()}), engine());
    expect_forwarding(proxy, address_of(bind));
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(AddressesTest, Ipv6ClientToIpv4Backend) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    std::string bind = "[::1]:" + std::to_string(free_port());
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_for(engine(), forward(), bind, {echo.address()}), engine());
    expect_forwarding(proxy, address_of(bind));
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(AddressesTest, Ipv4ClientToIpv6Backend) {
    BackendOptions options;
    options.host = "::1";
    BackendProcess echo;
    ASSERT_TRUE(echo.start(options));
    std::string bind = "127.0.0.1:" + std::to_string(free_port());
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_for(engine(), forward(), bind, {echo.address()}), engine());
    expect_forwarding(proxy, address_of(bind));
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(AddressesTest, UnixListenerToTcpBackend) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    TempDir dir;
    std::string path = dir.file("front.sock");
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy,
                       config_for(engine(), forward(), "unix:" + path, {echo.address()},
                                  "mode = \"0600\"\nowner = \"" + std::to_string(::getuid()) + ":" +
                                      std::to_string(::getgid()) + "\"\n"),
                       engine());
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    expect_forwarding(proxy, address_of("unix:" + path));
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_NE(::lstat(path.c_str(), &st), 0) << path << " is left after a clean exit";
}

TEST_P(AddressesTest, TcpListenerToUnixBackend) {
    TempDir dir;
    BackendOptions options;
    options.host = "unix:" + dir.file("back.sock");
    BackendProcess echo;
    ASSERT_TRUE(echo.start(options));
    std::string bind = "127.0.0.1:" + std::to_string(free_port());
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_for(engine(), forward(), bind, {echo.address()}), engine());
    expect_forwarding(proxy, address_of(bind));
    EXPECT_EQ(proxy.stop(), 0);
}

TEST_P(AddressesTest, UnixListenerToUnixBackend) {
    TempDir dir;
    BackendOptions options;
    options.host = "unix:" + dir.file("back.sock");
    BackendProcess echo;
    ASSERT_TRUE(echo.start(options));
    std::string bind = "unix:" + dir.file("front.sock");
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_for(engine(), forward(), bind, {echo.address()}), engine());
    expect_forwarding(proxy, address_of(bind));
    EXPECT_EQ(proxy.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, AddressesTest,
                         ::testing::Combine(::testing::ValuesIn(kEngines),
                                            ::testing::Values("splice", "buffered")),
                         engine_forward_name);

// A socket file bound by a process that is gone (nothing listens: connect() is refused).
void leave_stale_socket(const std::string& path, bool keep_listening, common::Fd* live) {
    common::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    Address a = *common::parse_socket_address("unix:" + path);
    ASSERT_EQ(::bind(fd.get(), a.sa(), a.length), 0) << std::strerror(errno);
    if (keep_listening) {
        ASSERT_EQ(::listen(fd.get(), 16), 0);
        *live = std::move(fd);
    }
}

TEST(UnixSocketFile, StaleFileIsReplaced) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    TempDir dir;
    std::string path = dir.file("stale.sock");
    leave_stale_socket(path, false, nullptr);
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_for("epoll", "auto", "unix:" + path, {echo.address()}),
                       "epoll");
    EXPECT_EQ(echo_through(address_of("unix:" + path), 70000), "");
    EXPECT_EQ(proxy.stop(), 0);
}

TEST(UnixSocketFile, LiveListenerOrOtherFileIsKept) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    TempDir dir;
    std::string live_path = dir.file("live.sock");
    common::Fd live;
    leave_stale_socket(live_path, true, &live);
    std::string file_path = dir.file("plain");
    write_file(file_path, "keep me");
    for (const std::string& path : {live_path, file_path}) {
        ProxyProcess proxy;
        StartResult r = proxy.start(config_for("epoll", "auto", "unix:" + path, {echo.address()}));
        EXPECT_EQ(r.status, StartResult::Status::kExited) << r.describe();
        EXPECT_NE(r.log.find("Address already in use"), std::string::npos) << r.log;
        struct stat st {};
        EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << " was removed";
    }
    EXPECT_EQ(read_file(file_path), "keep me");
    // The live listener still has its file and takes connections.
    common::Fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    Address a = address_of("unix:" + live_path);
    EXPECT_EQ(::connect(client.get(), a.sa(), a.length), 0) << std::strerror(errno);
}

TEST(UnixSocketFile, ReloadKeepsTheSocket) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    TempDir dir;
    std::string kept = dir.file("kept.sock");
    std::string dropped = dir.file("dropped.sock");
    auto two_listeners = [&](const std::string& idle) {
        return config_for("epoll", "auto", "unix:" + kept, {echo.address()},
                          "idle_timeout = \"" + idle +
                              "\"\n[[listener]]\nname = \"other\"\nbind = \"unix:" + dropped +
                              "\"\ncluster = \"app\"\n");
    };
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, two_listeners("1h"), "epoll");
    struct stat before {};
    ASSERT_EQ(::lstat(kept.c_str(), &before), 0);
    ASSERT_EQ(echo_through(address_of("unix:" + dropped), 1000), "");

    // A client connected before the reload is served after it, on the same socket file.
    Address a = address_of("unix:" + kept);
    common::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(fd.get(), a.sa(), a.length), 0);

    write_file(proxy.config_path(), config_for("epoll", "auto", "unix:" + kept, {echo.address()},
                                               "idle_timeout = \"30m\"\n"));
    size_t from = proxy.log().size();
    ASSERT_TRUE(proxy.signal(SIGHUP));
    ASSERT_TRUE(proxy.wait_for_log("reload (SIGHUP): applied", Millis(5000), from))
        << proxy.log_tail();
    struct stat after {};
    ASSERT_EQ(::lstat(kept.c_str(), &after), 0);
    EXPECT_EQ(before.st_ino, after.st_ino) << "the socket file was replaced";
    EXPECT_NE(::lstat(dropped.c_str(), &after), 0) << "a dropped listener's file is left";

    ASSERT_TRUE(send_all(fd.get(), "ping", 4, Millis(5000)));
    char reply[4] = {};
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    EXPECT_EQ(::recv(fd.get(), reply, 4, MSG_WAITALL), 4);
    EXPECT_EQ(std::string(reply, 4), "ping");
    EXPECT_EQ(echo_through(a, 300000), "");
    fd.reset();
    EXPECT_EQ(proxy.stop(), 0);
}

// A binary upgrade hands the unix listener to the new process: it keeps the socket file (the same
// inode) and serves it, and the old process leaves the file in place when it exits.
TEST(UnixSocketFile, UpgradeHandsTheSocketOver) {
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    TempDir dir;
    std::string path = dir.file("front.sock");
    std::string config = config_for("epoll", "auto", "unix:" + path, {echo.address()});
    config.insert(config.find("\n[[listener]]"),
                  "upgrade_socket = \"" + dir.file("upgrade.sock") + "\"\n");
    ProxyProcess old_proxy;
    RINGLB_START_PROXY(old_proxy, config, "epoll");
    ASSERT_TRUE(
        old_proxy.wait_for_log("upgrade: a new ringlb started with --upgrade", Millis(5000)));
    struct stat before {};
    ASSERT_EQ(::lstat(path.c_str(), &before), 0);
    ProxyProcess new_proxy;
    StartResult started = new_proxy.start_file(old_proxy.config_path(), {"--upgrade"});
    ASSERT_TRUE(started.ready()) << started.describe();
    EXPECT_NE(new_proxy.log().find("upgrade: took 2 listening sockets of 1 addresses"),
              std::string::npos)
        << new_proxy.log();
    std::optional<int> code = old_proxy.wait_exit(Millis(10000));
    ASSERT_TRUE(code) << old_proxy.log_tail();
    EXPECT_EQ(*code, 0);
    struct stat after {};
    ASSERT_EQ(::lstat(path.c_str(), &after), 0) << "the old process removed the served file";
    EXPECT_EQ(before.st_ino, after.st_ino);
    EXPECT_EQ(echo_through(address_of("unix:" + path), 200000), "");
    EXPECT_EQ(new_proxy.stop(), 0);
    EXPECT_NE(::lstat(path.c_str(), &after), 0);
}

// ss(8) lines of MPTCP sockets (-M) for `args`, e.g. "-l 'sport = :8080'".
std::string ss_mptcp(const std::string& args) {
    std::string out;
    FILE* pipe = ::popen(("ss -HnM " + args + " 2>&1").c_str(), "r");
    if (!pipe) return "popen failed";
    char line[512];
    while (std::fgets(line, sizeof line, pipe)) out += line;
    ::pclose(pipe);
    return out;
}

TEST(Mptcp, ListenerAcceptsMptcpAndTcpClients) {
    common::Fd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP));
    if (!probe) GTEST_SKIP() << "this kernel refuses MPTCP sockets: " << std::strerror(errno);
    probe.reset();
    BackendProcess echo;
    ASSERT_TRUE(echo.start(EchoMode::kEcho));
    uint16_t port = free_port();
    std::string bind = "127.0.0.1:" + std::to_string(port);
    for (const std::string& engine : kEngines) {
        ProxyProcess proxy;
        RINGLB_START_PROXY(
            proxy, config_for(engine, "auto", bind, {echo.address()}, "mptcp = true\n"), engine);
        EXPECT_EQ(proxy.log().find("MPTCP refused"), std::string::npos) << proxy.log();
        std::string filter = "'sport = :" + std::to_string(port) + "'";
        EXPECT_NE(ss_mptcp("-l " + filter), "") << "no MPTCP listener on " << bind;
        // An MPTCP client, byte-exact; then one held open, whose socket on the proxy's side is
        // an MPTCP one.
        EXPECT_EQ(echo_through(address_of(bind), 8 << 20, IPPROTO_MPTCP), "");
        common::Fd held(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP));
        Address to = address_of(bind);
        ASSERT_EQ(::connect(held.get(), to.sa(), to.length), 0) << std::strerror(errno);
        ASSERT_TRUE(send_all(held.get(), "ping", 4, Millis(5000)));
        char reply[4] = {};
        timeval tv{5, 0};
        ::setsockopt(held.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ASSERT_EQ(::recv(held.get(), reply, 4, MSG_WAITALL), 4);
        EXPECT_EQ(std::string(reply, 4), "ping");
        // With -t, ss lists the TCP subflows too ("tcp ..."); the MPTCP socket is "mptcp ...".
        std::string lines = "\n" + ss_mptcp("-t state established " + filter);
        EXPECT_NE(lines.find("\nmptcp "), std::string::npos)
            << "no established MPTCP socket on port " << port << ":" << lines;
        held.reset();
        // A plain TCP client still gets through (the kernel falls back per connection).
        EXPECT_EQ(echo_through(address_of(bind), 100000), "");
        EXPECT_EQ(proxy.stop(), 0);
    }
}

TEST(Mptcp, FallsBackToTcpWhenTheKernelRefuses) {
    // A network namespace of its own with net.mptcp.enabled = 0: socket(IPPROTO_MPTCP) fails
    // there (ENOPROTOOPT) as it does on a host that disabled MPTCP.
    if (::getuid() != 0 || std::system("unshare --net true >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "needs root and unshare --net";
    ProxyProcess proxy;
    proxy.set_launcher({"/usr/bin/unshare", "--net", "--", "/bin/sh", "-c",
                        "ip link set lo up && sysctl -qw net.mptcp.enabled=0 && exec \"$@\"",
                        "sh"});
    std::string bind = "127.0.0.1:" + std::to_string(free_port());
    StartResult r =
        proxy.start(config_for("epoll", "auto", bind, {"127.0.0.1:9"}, "mptcp = true\n"));
    ASSERT_TRUE(r.ready()) << r.describe();
    EXPECT_NE(proxy.log().find("listener test: MPTCP refused by the kernel (Protocol not "
                               "available; see net.mptcp.enabled): TCP on " +
                               bind),
              std::string::npos)
        << proxy.log();
    EXPECT_EQ(proxy.stop(), 0);
}

}  // namespace
}  // namespace ringlb::testkit
