// The container image, built and run for real: scripts/image.sh builds it with buildah from this
// tree (packaging the ringlb binary of this build), podman runs it on runc with host networking in
// front of a ringlb-echo backend on the host, and every check reads what the container really did
// (its log, /proc of its process, /metrics, the bytes that came back). Storage and configuration
// are the checkout's own (scripts/podman-env.sh). Every container a test starts is removed by the
// test; the image itself stays, as scripts/image.sh leaves it.
//
// KubePlayTest (its own ctest test, Release build only: it renders the Helm chart) runs the
// chart's sidecar pod with `podman kube play`: ringlb in front of a ringlb-echo app container.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
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

// ---------------------------------------------------------------------------------------------
// The chart's sidecar pod under `podman kube play`.
//
// What podman 4.3 (Debian 12) does with the chart's pod, found by running it:
// - A native sidecar (ringlb in initContainers with restartPolicy: Always) is refused: "cannot
//   create an init container that has either of lifecycle, livenessProbe, readinessProbe, or
//   startupProbe set" (podman's init containers run to completion before the app starts and
//   know no restartPolicy). The test tries it, says so, and runs the classic sidecar
//   (sidecar.native: false) for real; the native rendering passes the typed check.
// - Every containerPort is published on the host, which podman refuses with host networking, so
//   `k8s_check.mjs podman` drops the port lists and sets hostNetwork: true (bridge networking
//   adds NAT rules that skew benchmarks; never used here).
// - Probes become podman healthchecks (curl inside the container, port 0 for a named port),
//   which run only with systemd: not exercised; the test asks /ready itself.
// - terminationGracePeriodSeconds is ignored (stop timeout 10 s), and `podman kube down` stops
//   the pod with SIGKILL at once (podman issue #22397, fixed upstream by PR #22398): the test
//   stops the pod with `podman pod stop -t GRACE` first, as a user of podman 4.3 must, and then
//   runs `podman kube down`.

// ringlb-echo's image (scripts/image.sh --echo), built once per test program.
const std::string& echo_image() {
    static std::string ref = [] {
        Shell r = shell("RINGLB_IMAGE_BINARY=\"$1\" exec '" + kSource + "/scripts/image.sh' --echo",
                        {RINGLB_ECHO_BINARY}, 120s);
        return r.code == 0 ? last_line(r.output) : "";
    }();
    return ref;
}

// Pods and volumes are named ringlb-kubetest-PID-...; those of a test program that is gone (a
// killed earlier run) are removed, those of one running in parallel are left alone.
const std::string kPodPrefix = "ringlb-kubetest-";

bool test_program_alive(const std::string& pid) {
    std::string comm = read_file("/proc/" + pid + "/comm");
    return comm.rfind("ringlb_containe", 0) == 0;  // comm holds 15 characters
}

void remove_leftover_pods() {
    const std::regex name("^" + kPodPrefix + "([0-9]+)-");
    std::smatch m;
    std::istringstream pods(podman({"pod", "ps", "--format", "{{.Name}}"}).output);
    for (std::string pod; std::getline(pods, pod);)
        if (std::regex_search(pod, m, name) && !test_program_alive(m[1]))
            podman({"pod", "rm", "-f", "-t", "0", pod});
    std::istringstream volumes(podman({"volume", "ls", "--format", "{{.Name}}"}).output);
    for (std::string volume; std::getline(volumes, volume);)
        if (std::regex_search(volume, m, name) && !test_program_alive(m[1]))
            podman({"volume", "rm", "-f", volume});
}

// The image reference's repository and tag.
std::pair<std::string, std::string> split_ref(const std::string& ref) {
    size_t colon = ref.rfind(':');
    return {ref.substr(0, colon), ref.substr(colon + 1)};
}

// `text` with every {{KEY}} replaced by its value.
std::string fill(std::string text, const std::vector<std::pair<std::string, std::string>>& values) {
    for (const auto& [key, value] : values)
        for (size_t at; (at = text.find("{{" + key + "}}")) != std::string::npos;)
            text.replace(at, key.size() + 4, value);
    return text;
}

// The chart's values for the test pod: ringlb on loopback ports of the host in front of
// ringlb-echo, short drain settings so the stop takes seconds.
std::string kube_values(uint16_t listen_port, uint16_t admin_port, uint16_t app_port) {
    auto [repository, tag] = split_ref(image().ref);
    auto [app_repository, app_tag] = split_ref(echo_image());
    return fill(R"(mode: sidecar
replicaCount: 1
image: {repository: {{REPOSITORY}}, tag: "{{TAG}}"}
config:
  runtime: {workers: 1, drain_delay: "2s", drain_timeout: "5s", drain_spread: "1s"}
  admin: {bind: "127.0.0.1:{{ADMIN}}"}
  log: {format: text, level: info}
  listener:
    - {name: tcp, bind: "127.0.0.1:{{LISTEN}}", cluster: app}
  cluster:
    - name: app
      connect_timeout: "1s"
      backends: [{address: "127.0.0.1:{{APP}}"}]
app:
  name: echo
  image: {repository: {{APP_REPOSITORY}}, tag: "{{APP_TAG}}"}
  args: ["--listen", "127.0.0.1:{{APP}}", "--mode", "echo"]
  preStopSleepSeconds: 0
  shutdownSeconds: 1
)",
                {{"REPOSITORY", repository},
                 {"TAG", tag},
                 {"APP_REPOSITORY", app_repository},
                 {"APP_TAG", app_tag},
                 {"ADMIN", std::to_string(admin_port)},
                 {"LISTEN", std::to_string(listen_port)},
                 {"APP", std::to_string(app_port)}});
}

// One rendering of the chart, played with `podman kube play`; torn down (also after a failed
// play) when the object goes.
class KubePod {
  public:
    KubePod(const TempDir& dir, const std::string& release, const std::string& values, bool native)
        : dir_(dir.path()),
          release_(release),
          pod_(release + "-pod-0"),
          rendered_(dir.file(release + ".yaml")),
          played_(dir.file(release + "-podman.yaml")) {
        render_ = shell("eval \"$('" + kSource + "/scripts/helm-tools.sh')\" && cd '" + kSource +
                            "' && \"$HELM\" template \"$1\" helm/ringlb -f \"$2\" --set "
                            "sidecar.native=\"$3\" >\"$4\" && node tests/deploy/k8s_check.mjs "
                            "podman \"$4\" >\"$5\"",
                        {release, values, native ? "true" : "false", rendered_, played_}, 120s);
    }
    ~KubePod() {
        if (!played_once_) return;
        podman({"kube", "down", played_});
        podman({"pod", "rm", "-f", "-t", "0", pod_});
        // The ConfigMap's volume outlives `kube down` (podman 4.3).
        podman({"volume", "rm", "-f", release_});
    }
    KubePod(const KubePod&) = delete;
    KubePod& operator=(const KubePod&) = delete;

    const Shell& render() const { return render_; }
    const std::string& rendered() const { return rendered_; }
    std::string container(const std::string& name) const { return pod_ + "-" + name; }
    const std::string& pod() const { return pod_; }

    Shell play() {
        played_once_ = true;
        // podman 4.3 looks for a directory named like each image's last path component in the
        // working directory to build the image from, and fails on a file of that name (ctest runs
        // in build/release, which holds the binary ringlb-echo) even with --build=false: play
        // from the test's own directory.
        return shell("cd \"$1\" && exec podman kube play --build=false \"$2\"", {dir_, played_},
                     60s);
    }
    Shell down() { return podman({"kube", "down", played_}, 60s); }

    std::string inspect(const std::string& name, const std::string& format) const {
        return trim(podman({"inspect", "--format", format, container(name)}).output);
    }
    std::string logs(const std::string& name) const {
        return podman({"logs", container(name)}).output;
    }
    // What the kubelet would give the pod to stop.
    int grace_seconds() const {
        std::smatch m;
        std::string text = read_file(played_);
        static const std::regex grace("terminationGracePeriodSeconds: ([0-9]+)");
        return std::regex_search(text, m, grace) ? std::stoi(m[1]) : -1;
    }

  private:
    std::string dir_;
    std::string release_;
    std::string pod_;
    std::string rendered_;
    std::string played_;
    Shell render_;
    bool played_once_ = false;
};

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(KubePlayTest, ChartSidecarPodServesByteExactAndDrainsOnStop) {
    RINGLB_NEED_IMAGE();
    ASSERT_FALSE(echo_image().empty()) << "scripts/image.sh --echo failed";
    remove_leftover_pods();

    uint16_t listen_port = free_port();
    uint16_t admin_port = free_port();
    uint16_t app_port = free_port();
    TempDir dir;
    std::string values = dir.file("values.yaml");
    write_file(values, kube_values(listen_port, admin_port, app_port));
    std::string base = kPodPrefix + std::to_string(::getpid());

    // Both renderings are valid Kubernetes objects (the chart tests' typed check).
    KubePod native(dir, base + "-native", values, true);
    ASSERT_EQ(native.render().code, 0) << native.render().output;
    KubePod classic(dir, base + "-classic", values, false);
    ASSERT_EQ(classic.render().code, 0) << classic.render().output;
    std::string native_yaml = read_file(native.rendered());
    EXPECT_TRUE(has(native_yaml, "initContainers:\n        - name: ringlb")) << native_yaml;
    EXPECT_TRUE(has(native_yaml, "restartPolicy: Always")) << native_yaml;
    auto start = Clock::now();
    Shell typed =
        shell("eval \"$('" + kSource + "/scripts/helm-tools.sh')\" && node '" + kSource +
                  "/tests/deploy/k8s_check.mjs' to-ts \"$1\" \"$2\" \"$3\" && \"$TSC\" -p \"$1\"",
              {dir.file("types"), native.rendered(), classic.rendered()}, 120s);
    ASSERT_EQ(typed.code, 0) << typed.output;
    std::printf("typed check of both renderings: %.1f s\n", seconds_since(start));

    // The native sidecar: podman 4.3 refuses it (see above); a podman that runs it gets the same
    // checks as the classic one below.
    std::vector<KubePod*> pods;
    Shell played = native.play();
    if (played.code != 0) {
        EXPECT_TRUE(has(played.output, "init container")) << played.output;
        std::printf("podman kube play does not run the native sidecar: %s\n",
                    trim(played.output).c_str());
        native.down();
    } else {
        pods.push_back(&native);
    }
    pods.push_back(&classic);

    for (KubePod* pod : pods) {
        SCOPED_TRACE(pod->pod());
        if (pod == &classic) {
            start = Clock::now();
            played = pod->play();
            ASSERT_EQ(played.code, 0) << played.output;
            std::printf("podman kube play: %.1f s\n", seconds_since(start));
        }
        auto deadline = Clock::now() + 20s;
        while (!has(http_get(admin_port, "/ready"), " 200 ")) {
            ASSERT_LT(Clock::now(), deadline) << pod->logs("ringlb") << pod->logs("echo");
            std::this_thread::sleep_for(50ms);
        }
        // The chart's pod spec reached the containers: its user, read-only root filesystem,
        // memory limit and the configuration from its ConfigMap.
        EXPECT_EQ(pod->inspect("ringlb", "{{.Config.User}}"), "65532:65532");
        EXPECT_EQ(pod->inspect("ringlb", "{{.HostConfig.ReadonlyRootfs}}"), "true");
        EXPECT_EQ(pod->inspect("echo", "{{.Config.User}}"), "65532:65532");
        std::string log = pod->logs("ringlb");
        EXPECT_TRUE(has(log, "ready: 1 listeners on 1 shards")) << log;
        EXPECT_TRUE(has(log, "config /etc/ringlb/ringlb.toml")) << log;
        EXPECT_TRUE(std::regex_search(log, std::regex("cgroup memory[.a-z_]* 256 MiB"))) << log;

        // A client on the host, through ringlb, to the app container and back.
        start = Clock::now();
        EXPECT_TRUE(exchange_1mib(listen_port));
        std::printf("1 MiB echoed through the pod: %.3f s\n", seconds_since(start));

        // Stop as the kubelet would: SIGTERM, up to the grace period. ringlb drains (/ready 503
        // while it still accepts for drain_delay) and exits 0.
        int grace = pod->grace_seconds();
        ASSERT_GT(grace, 0);
        start = Clock::now();
        Shell stopped;
        std::thread stopper([&] {
            stopped = podman({"pod", "stop", "-t", std::to_string(grace), pod->pod()}, 60s);
        });
        deadline = Clock::now() + 10s;
        bool draining = false;
        while (!(draining = has(http_get(admin_port, "/ready"), " 503 ")) &&
               Clock::now() < deadline)
            std::this_thread::sleep_for(20ms);
        stopper.join();
        EXPECT_TRUE(draining);
        EXPECT_EQ(stopped.code, 0) << stopped.output;
        std::printf("podman pod stop -t %d: %.1f s\n", grace, seconds_since(start));
        EXPECT_EQ(pod->inspect("ringlb", "{{.State.ExitCode}}"), "0");
        EXPECT_EQ(pod->inspect("echo", "{{.State.ExitCode}}"), "0");
        log = pod->logs("ringlb");
        EXPECT_TRUE(has(log, "Terminated: draining")) << log;
        EXPECT_TRUE(has(log, "drain: /ready answers 503; still accepting for drain_delay 2s"))
            << log;
        EXPECT_TRUE(has(log, "drain: done after")) << log;
        EXPECT_TRUE(has(log, "stopped")) << log;

        start = Clock::now();
        Shell down = pod->down();
        EXPECT_EQ(down.code, 0) << down.output;
        std::printf("podman kube down: %.1f s\n", seconds_since(start));
        EXPECT_FALSE(has(podman({"pod", "ps", "--format", "{{.Name}}"}).output, pod->pod()));
        EXPECT_FALSE(has(http_get(admin_port, "/ready"), "HTTP"));
    }
}

}  // namespace
}  // namespace ringlb::testkit
