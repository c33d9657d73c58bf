// Proves that ringlb runs where io_uring is blocked (Docker 25+ / containerd 2.0 seccomp
// defaults): under a seccomp filter that makes the io_uring syscalls fail with EPERM, "auto"
// falls back to epoll with one clear log line, forwards byte-exact, and exports the engine.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

// GET `path` from the admin port; returns the whole response (head and body) or "" on failure.
std::string admin_get(uint16_t port, const std::string& path) {
    std::string error;
    common::Fd fd = connect_to(port, Millis(2000), &error);
    if (!fd) return "";
    std::string request =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (!send_all(fd.get(), request.data(), request.size(), Millis(2000))) return "";
    std::string response;
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
        if (n <= 0) break;
        response.append(buf, static_cast<size_t>(n));
    }
    return response;
}

std::string config_with_admin(ProxyConfigSpec& spec, uint16_t admin_port) {
    spec.admin = true;
    spec.admin_port = admin_port;
    return make_config(spec);
}

TEST(EngineFallbackTest, AutoFallsBackToEpollWhenSeccompBlocksIoUring) {
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = "auto";
    spec.backends = {backend.address()};
    uint16_t admin_port = free_port();
    TempDir dir;
    write_file(dir.file("ringlb.toml"), config_with_admin(spec, admin_port));

    Subprocess proxy;
    ASSERT_TRUE(spawn_until_ready(
        proxy, {RINGLB_NO_URING_BINARY, "--", RINGLB_BINARY, "run", dir.file("ringlb.toml")},
        dir.file("ringlb.log")));
    std::string log = read_file(dir.file("ringlb.log"));
    EXPECT_NE(log.find("engine: epoll (auto: io_uring unavailable: io_uring_setup failed: "
                       "Operation not permitted (io_uring blocked by a seccomp filter"),
              std::string::npos)
        << log;

    for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{65536}, uint64_t{3} << 20}) {
        ExchangeResult r = hash_exchange(spec.listen_port, size, size);
        EXPECT_TRUE(r.ok) << size << " bytes: " << r.error;
    }
    std::string metrics = admin_get(admin_port, "/metrics");
    EXPECT_NE(metrics.find("ringlb_engine_info{engine=\"epoll\"} 1"), std::string::npos) << metrics;
    EXPECT_NE(admin_get(admin_port, "/ready").find("200 OK"), std::string::npos);

    ASSERT_TRUE(proxy.running());
    ::kill(proxy.pid(), SIGTERM);
    EXPECT_EQ(proxy.wait(Millis(10000)), std::optional<int>(0));
}

TEST(EngineFallbackTest, ForcedIoUringRefusesToStartWithTheReason) {
    ProxyConfigSpec spec;
    spec.engine = "io_uring";
    spec.backends = {"127.0.0.1:9"};
    TempDir dir;
    write_file(dir.file("ringlb.toml"), make_config(spec));
    Subprocess proxy;
    std::string error;
    ASSERT_TRUE(
        proxy.spawn({RINGLB_NO_URING_BINARY, "--", RINGLB_BINARY, "run", dir.file("ringlb.toml")},
                    dir.file("ringlb.log"), &error))
        << error;
    std::optional<int> code = proxy.wait(Millis(10000));
    ASSERT_TRUE(code.has_value());
    EXPECT_NE(*code, 0);
    std::string log = read_file(dir.file("ringlb.log"));
    EXPECT_NE(log.find("engine io_uring was configured but is unavailable: io_uring_setup failed: "
                       "Operation not permitted"),
              std::string::npos)
        << log;
    EXPECT_EQ(log.find("ready:"), std::string::npos) << log;
}

// ENOSYS from a seccomp filter (podman's default profile answers so): the fallback names the
// filter, not a kernel without io_uring.
TEST(EngineFallbackTest, EnosysFromASeccompFilterAlsoFallsBackAndSaysSo) {
    ProxyConfigSpec spec;
    spec.engine = "auto";
    spec.backends = {"127.0.0.1:9"};
    TempDir dir;
    write_file(dir.file("ringlb.toml"), make_config(spec));
    Subprocess check;
    std::string error;
    ASSERT_TRUE(check.spawn({RINGLB_NO_URING_BINARY, "--errno", "ENOSYS", "--", RINGLB_BINARY,
                             "check", dir.file("ringlb.toml")},
                            dir.file("check.log"), &error))
        << error;
    EXPECT_EQ(check.wait(Millis(10000)), std::optional<int>(0));
    std::string out = read_file(dir.file("check.log"));
    EXPECT_NE(out.find("engine on this host: epoll (auto: io_uring unavailable"), std::string::npos)
        << out;
    EXPECT_NE(out.find("io_uring_setup failed: Function not implemented (io_uring blocked by a "
                       "seccomp filter: /proc/self/status shows Seccomp: 2"),
              std::string::npos)
        << out;
    EXPECT_EQ(out.find("kernel built without io_uring"), std::string::npos) << out;
}

TEST(EngineFallbackTest, MetricsNameTheEngineInUse) {
    std::string reason;
    if (!io_uring_available(&reason)) GTEST_SKIP() << "io_uring unavailable here: " << reason;
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.engine = "auto";
    spec.backends = {backend.address()};
    uint16_t admin_port = free_port();
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_with_admin(spec, admin_port), "auto");
    EXPECT_TRUE(hash_exchange(spec.listen_port, 1000, 1000).ok);
    std::string metrics = admin_get(admin_port, "/metrics");
    EXPECT_NE(metrics.find("ringlb_engine_info{engine=\"io_uring\"} 1"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("ringlb_accepted_total{shard=\"0\"}"), std::string::npos) << metrics;
    EXPECT_EQ(proxy.stop(), 0);
}

}  // namespace
}  // namespace ringlb::testkit
