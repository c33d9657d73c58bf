// The container image, built and run for real: scripts/image.sh builds it with buildah from this
// tree (packaging the ringlb binary of this build), podman runs it on runc with host networking in
// front of a ringlb-echo backend on the host, and every check reads what the container really did
// (its log, /proc of its process, /metrics, the bytes that came back). Storage and configuration
// are the checkout's own (scripts/podman-env.sh). Every container a test starts is removed by the
// test; the image itself stays, as scripts/image.sh leaves it.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

const std::string kSource = RINGLB_SOURCE_DIR;

struct Shell {
    int code = -1;
    std::string output;  // stdout and stderr
};

// Runs `script` with bash after sourcing scripts/podman-env.sh; "$@" are `args`.
Shell shell(const std::string& script, const std::vector<std::string>& args = {},
            Millis timeout = 60s) {
    TempDir dir;
    std::vector<std::string> argv{"/bin/bash", "-c",
                                  ". '" + kSource + "/scripts/podman-env.sh' && " + script,
                                  "ringlb-container-test"};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess p;
    std::string error;
    Shell r;
    if (!p.spawn(argv, dir.file("out"), &error)) {
        r.output = error;
        return r;
    }
    std::optional<int> code = p.wait(timeout);
    r.output = read_file(dir.file("out"));
    if (!code) {
        p.kill_and_reap();
        r.output += "\n(timed out)";
        return r;
    }
    r.code = *code;
    return r;
}

Shell podman(const std::vector<std::string>& args, Millis timeout = 60s) {
    return shell("exec podman \"$@\"", args, timeout);
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

std::string last_line(const std::string& text) {
    std::string t = trim(text);
    size_t nl = t.rfind('\n');
    return nl == std::string::npos ? t : t.substr(nl + 1);
}

bool has(const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos;
}

// GET `path` from 127.0.0.1:port; the whole response, "" when nothing answers.
std::string http_get(uint16_t port, const std::string& path) {
    common::Fd fd = connect_to(port, 1s);
    if (!fd) return "";
    std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (!send_all(fd.get(), request.data(), request.size(), 2s)) return "";
    std::string response;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd.get(), buf, sizeof(buf), 0)) > 0;)
        response.append(buf, static_cast<size_t>(n));
    return response;
}

// The image the tests run, built once per test program.
struct Image {
    std::string ref;          // localhost/ringlb:VERSION
    std::string build_error;  // why it could not be built
    std::string skip;         // why containers cannot run on this machine at all
    double build_seconds = 0;
};

Image& image() {
    static Image img = [] {
        Image i;
        for (const char* tool : {"/usr/bin/podman", "/usr/bin/buildah"}) {
            if (::access(tool, X_OK) != 0) {
                i.skip = std::string(tool) + " is not installed (scripts/install-deps.sh test)";
                return i;
            }
        }
        // Containers a killed earlier run left behind (ctest timeout) go first.
        shell("podman ps -aq --filter label=ringlb.test | xargs -r podman rm -f -t 0");
        auto start = Clock::now();
        TempDir dir;
        Shell r = shell(
            "RINGLB_IMAGE_BINARY=\"$1\" exec '" + kSource + "/scripts/image.sh' --archive \"$2\"",
            {RINGLB_BINARY, dir.file("ringlb.tar")}, 120s);
        i.build_seconds = std::chrono::duration<double>(Clock::now() - start).count();
        if (r.code != 0) {
            i.build_error = "scripts/image.sh failed:\n" + r.output;
            return i;
        }
        i.ref = last_line(r.output);
        // The OCI archive holds the same image: its config names the user and the version.
        Shell inspect =
            shell("exec skopeo inspect --config \"oci-archive:$1\"", {dir.file("ringlb.tar")});
        if (inspect.code != 0 || !has(inspect.output, "\"User\": \"65532:65532\"") ||
            !has(inspect.output, "org.opencontainers.image.version\": \"" + project_version())) {
            i.build_error = "the OCI archive does not hold the image:\n" + inspect.output;
        }
        return i;
    }();
    return img;
}

#define RINGLB_NEED_IMAGE()                                              \
    do {                                                                 \
        if (!image().skip.empty()) GTEST_SKIP() << image().skip;         \
        ASSERT_TRUE(image().build_error.empty()) << image().build_error; \
    } while (0)

// One container; removed (with its process) when the object goes.
class Container {
  public:
    Container() : name_("ringlb-test-" + std::to_string(::getpid()) + "-" + std::to_string(++n_)) {}
    ~Container() { podman({"rm", "-f", "-t", "0", name_}); }
    Container(const Container&) = delete;
    Container& operator=(const Container&) = delete;

    // podman run -d with host networking, the config mounted read-only, plus `options`; waits until
    // /ready on `admin_port` answers 200.
    ::testing::AssertionResult start(const std::string& config_path, uint16_t admin_port,
                                     const std::vector<std::string>& options) {
        std::vector<std::string> args{"run",       "-d",
                                      "--name",    name_,
                                      "--label",   "ringlb.test=1",
                                      "--network", "host",
                                      "-v",        config_path + ":/etc/ringlb/ringlb.toml:ro"};
        args.insert(args.end(), options.begin(), options.end());
        args.push_back(image().ref);
        Shell r = podman(args);
        if (r.code != 0) return ::testing::AssertionFailure() << "podman run failed:\n" << r.output;
        auto deadline = Clock::now() + 20s;
        while (!has(http_get(admin_port, "/ready"), " 200 ")) {
            if (Clock::now() > deadline || !running())
                return ::testing::AssertionFailure() << "not ready:\n" << logs();
            std::this_thread::sleep_for(50ms);
        }
        return ::testing::AssertionSuccess();
    }

    const std::string& name() const { return name_; }
    std::string inspect(const std::string& format) const {
        return trim(podman({"inspect", "--format", format, name_}).output);
    }
    bool running() const { return inspect("{{.State.Running}}") == "true"; }
    std::string logs() const { return podman({"logs", name_}).output; }
    // podman stop (SIGTERM, the image's STOPSIGNAL); the container's exit code.
    int stop() const {
        Shell r = podman({"stop", "-t", "30", name_}, 60s);
        if (r.code != 0) return -1;
        std::string code = inspect("{{.State.ExitCode}}");
        return code.empty() ? -1 : std::atoi(code.c_str());
    }

  private:
    static inline int n_ = 0;
    std::string name_;
};

// A config for the container: one listener on 127.0.0.1:listen_port in front of `backend`, the
// admin endpoint on 127.0.0.1:admin_port. The file is world-readable: ringlb runs as 65532.
std::string container_config(uint16_t listen_port, uint16_t admin_port, const std::string& backend,
                             const std::string& runtime_extra = "") {
    return "[runtime]\nworkers = \"auto\"\n" + runtime_extra +
           "\n[[listener]]\nname = \"app\"\nbind = \"127.0.0.1:" + std::to_string(listen_port) +
           "\"\ncluster = \"app\"\n\n[[cluster]]\nname = \"app\"\nbackends = [{ address = \"" +
           backend + "\" }]\n\n[admin]\nbind = \"127.0.0.1:" + std::to_string(admin_port) + "\"\n";
}

// 1 MiB of random bytes through the proxy to the echo backend and back, compared byte for byte.
::testing::AssertionResult exchange_1mib(uint16_t port) {
    ExchangeResult r = echo_exchange(port, 1 << 20);
    if (!r.ok) return ::testing::AssertionFailure() << r.error;
    return ::testing::AssertionSuccess();
}

struct Rig {
    BackendProcess backend;
    TempDir dir;
    uint16_t listen_port = free_port();
    uint16_t admin_port = free_port();
    std::string config;

    ::testing::AssertionResult start(const std::string& runtime_extra = "") {
        if (auto ok = backend.start(EchoMode::kEcho); !ok) return ok;
        config = dir.file("ringlb.toml");
        write_file(config,
                   container_config(listen_port, admin_port, backend.address(), runtime_extra));
        return ::testing::AssertionSuccess();
    }
};

TEST(ContainerTest, ImageIsSmallNonRootAndServesByteExactReadOnlyThenDrainsOnStop) {
    RINGLB_NEED_IMAGE();
    EXPECT_EQ(image().ref, "localhost/ringlb:" + project_version());
    std::string size =
        trim(podman({"image", "inspect", "--format", "{{.Size}}", image().ref}).output);
    EXPECT_LT(std::atoll(size.c_str()), 20LL << 20) << size << " bytes";
    std::printf("image %s: %s bytes, built in %.1f s\n", image().ref.c_str(), size.c_str(),
                image().build_seconds);
    // A second build of the same tree is the same image, and quick.
    Shell again = shell("RINGLB_IMAGE_BINARY=\"$1\" exec '" + kSource + "/scripts/image.sh'",
                        {RINGLB_BINARY});
    ASSERT_EQ(again.code, 0) << again.output;
    EXPECT_EQ(last_line(again.output), image().ref);

    Rig s;
    ASSERT_TRUE(s.start("drain_timeout = \"20s\"\n"));
    Container c;
    // No --security-opt: podman's default seccomp profile, which blocks io_uring with ENOSYS.
    ASSERT_TRUE(c.start(s.config, s.admin_port, {"--read-only"}));

    // It runs as 65532:65532, whatever the image's user database says.
    EXPECT_EQ(c.inspect("{{.Config.User}}"), "65532:65532");
    std::string pid = c.inspect("{{.State.Pid}}");
    std::string status = read_file("/proc/" + pid + "/status");
    EXPECT_TRUE(has(status, "Uid:\t65532\t65532\t65532\t65532")) << status;
    EXPECT_TRUE(has(status, "Gid:\t65532\t65532\t65532\t65532")) << status;
    EXPECT_TRUE(has(status, "Seccomp:\t2")) << status;
    EXPECT_EQ(c.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");

    // The true reason for epoll: the seccomp filter, not the kernel.
    std::string log = c.logs();
    EXPECT_TRUE(has(log,
                    "engine: epoll (auto: io_uring unavailable: io_uring_setup failed: "
                    "Function not implemented (io_uring blocked by a seccomp filter"))
        << log;
    EXPECT_FALSE(has(log, "kernel built without io_uring")) << log;
    EXPECT_TRUE(has(http_get(s.admin_port, "/metrics"), "ringlb_engine_info{engine=\"epoll\"} 1"));

    EXPECT_TRUE(exchange_1mib(s.listen_port));

    // podman stop sends SIGTERM: a session open at that moment still completes byte for byte,
    // then ringlb exits 0.
    common::Fd client = connect_to(s.listen_port, 2s);
    ASSERT_TRUE(client);
    std::string payload(256 * 1024, '\0');
    std::mt19937_64 random(7);
    for (char& ch : payload) ch = static_cast<char>(random());
    ASSERT_TRUE(send_all(client.get(), payload.data(), payload.size() / 2, 5s));
    int stop_code = -2;
    std::thread stopper([&] { stop_code = c.stop(); });
    // The drain has begun (SIGTERM reached ringlb) before the rest of the payload is sent.
    auto deadline = Clock::now() + 10s;
    bool draining = false;
    while (!(draining = has(http_get(s.admin_port, "/ready"), " 503 ")) && Clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(draining) << c.logs();
    // No ASSERT until the stopper has joined.
    EXPECT_TRUE(
        send_all(client.get(), payload.data() + payload.size() / 2, payload.size() / 2, 5s));
    ::shutdown(client.get(), SHUT_WR);
    std::string back;
    char buf[65536];
    timeval tv{10, 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (ssize_t n; (n = ::recv(client.get(), buf, sizeof(buf), 0)) > 0;)
        back.append(buf, static_cast<size_t>(n));
    client.reset();
    stopper.join();
    EXPECT_TRUE(back == payload) << back.size() << " of " << payload.size() << " bytes came back";
    EXPECT_EQ(stop_code, 0);
    log = c.logs();
    EXPECT_TRUE(has(log, "Terminated: draining")) << log;
    EXPECT_TRUE(has(log, "drain: /ready answers 503; 1 sessions open")) << log;
    EXPECT_TRUE(has(log, "stopped")) << log;
}

TEST(ContainerTest, OneCpuOfQuotaStartsOneShardAndSaysWhy) {
    RINGLB_NEED_IMAGE();
    Rig s;
    // 64 MiB of buffers for the one shard, above the 48 MiB the container may use.
    ASSERT_TRUE(s.start("buffer_count = 1024\nbuffer_size = 65536\n"));
    Container c;
    ASSERT_TRUE(c.start(s.config, s.admin_port, {"--cpus", "1", "--memory", "48m"}));
    std::string log = c.logs();
    EXPECT_TRUE(has(log, "ready: 1 listeners on 1 shards")) << log;
    // cgroup v2 names cpu.max, v1 (hybrid hosts) cpu.cfs_quota_us/cpu.cfs_period_us.
    EXPECT_TRUE(has(log, "workers auto: 1 (cgroup cpu")) << log;
    EXPECT_TRUE(has(log, "100000/100000 = 1 CPU; ")) << log;
    EXPECT_TRUE(has(log,
                    "warn buffer pools can take 64 MiB (1 shards x runtime.buffer_count 1024 "
                    "x runtime.buffer_size 65536), more than the memory limit (cgroup memory"))
        << log;
    EXPECT_TRUE(exchange_1mib(s.listen_port));
    EXPECT_EQ(c.stop(), 0) << c.logs();
}

// The default profile (what podman uses without --security-opt) with the io_uring calls answering
// EPERM instead of ENOSYS, as containerd 2.0's and Docker 25+'s defaults do.
std::string eperm_profile() {
    nlohmann::json profile =
        nlohmann::json::parse(read_file(kSource + "/deploy/seccomp/ringlb.json"));
    const std::vector<std::string> io_uring{"io_uring_enter", "io_uring_register",
                                            "io_uring_setup"};
    for (auto& rule : profile["syscalls"]) {
        nlohmann::json kept = nlohmann::json::array();
        for (const auto& name : rule["names"])
            if (std::find(io_uring.begin(), io_uring.end(), name.get<std::string>()) ==
                io_uring.end())
                kept.push_back(name);
        rule["names"] = std::move(kept);
    }
    nlohmann::json blocked;
    blocked["names"] = io_uring;
    blocked["action"] = "SCMP_ACT_ERRNO";
    blocked["errnoRet"] = 1;
    profile["syscalls"].push_back(std::move(blocked));
    return profile.dump(1);
}

TEST(ContainerTest, SeccompProfileThatAnswersEpermFallsBackToEpollAndSaysSo) {
    RINGLB_NEED_IMAGE();
    Rig s;
    ASSERT_TRUE(s.start());
    std::string profile = s.dir.file("eperm.json");
    write_file(profile, eperm_profile());
    Container c;
    ASSERT_TRUE(c.start(s.config, s.admin_port, {"--security-opt", "seccomp=" + profile}));
    std::string log = c.logs();
    EXPECT_TRUE(has(log,
                    "engine: epoll (auto: io_uring unavailable: io_uring_setup failed: "
                    "Operation not permitted (io_uring blocked by a seccomp filter"))
        << log;
    EXPECT_TRUE(has(log, "deploy/seccomp/ringlb.json")) << log;
    EXPECT_TRUE(exchange_1mib(s.listen_port));
    EXPECT_TRUE(has(http_get(s.admin_port, "/metrics"), "ringlb_engine_info{engine=\"epoll\"} 1"));
    EXPECT_EQ(c.stop(), 0) << c.logs();
}

TEST(ContainerTest, RinglbSeccompProfileRunsOnIoUring) {
    RINGLB_NEED_IMAGE();
    std::string reason;
    if (!io_uring_available(&reason))
        GTEST_SKIP() << "io_uring is unavailable on this host itself: " << reason;
    Rig s;
    ASSERT_TRUE(s.start());
    Container c;
    ASSERT_TRUE(c.start(s.config, s.admin_port,
                        {"--security-opt", "seccomp=" + kSource + "/deploy/seccomp/ringlb.json"}));
    std::string log = c.logs();
    EXPECT_TRUE(has(log, "engine: io_uring (auto: io_uring available)")) << log;
    EXPECT_TRUE(exchange_1mib(s.listen_port));
    std::string metrics = http_get(s.admin_port, "/metrics");
    EXPECT_TRUE(has(metrics, "ringlb_engine_info{engine=\"io_uring\"} 1")) << metrics;
    EXPECT_EQ(c.stop(), 0) << c.logs();
}

}  // namespace
}  // namespace ringlb::testkit
