// Hot reload (SIGHUP and POST /reload) with the real binary: configurations swapped under load
// lose no connection and no byte, a bad configuration changes nothing, counters survive.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

std::string pattern_bytes(uint64_t seed, uint64_t offset, size_t n) {
    std::string out(n, '\0');
    tools::pattern_fill(seed, offset, reinterpret_cast<uint8_t*>(out.data()), n);
    return out;
}

double metric_sum(uint16_t admin_port, const std::string& name, const Labels& labels = {}) {
    std::string error;
    auto metrics = scrape_metrics(admin_port, &error);
    if (!metrics) return -1;
    return metrics->sum(name, labels);
}

struct Ports {
    uint16_t main = free_port();
    uint16_t extra_a = free_port();
    uint16_t extra_b = free_port();
    uint16_t admin = free_port();
};

// Two valid configurations that differ in every way a reload can: a listener moves to another
// address (extra_a -> extra_b, its sockets change), the main listener changes a timeout (keeps
// its sockets), the cluster gains a backend (a new cluster state) and a cluster is added.
std::string config_text(const std::string& engine, const Ports& p, int variant,
                        const std::vector<std::string>& backends) {
    std::string t = "[runtime]\nworkers = 2\nengine = \"" + engine +
                    "\"\n\n[admin]\nbind = \"127.0.0.1:" + std::to_string(p.admin) + "\"\n";
    t += "\n[[listener]]\nname = \"main\"\nbind = \"127.0.0.1:" + std::to_string(p.main) +
         "\"\ncluster = \"app\"\nidle_timeout = \"" + (variant == 0 ? "1h" : "2h") + "\"\n";
    t += "\n[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:" +
         std::to_string(variant == 0 ? p.extra_a : p.extra_b) + "\"\ncluster = \"" +
         (variant == 0 ? "app" : "other") + "\"\n";
    t += "\n[[cluster]]\nname = \"app\"\nbackends = [{ address = \"" + backends[0] + "\" }";
    if (variant == 1) t += ", { address = \"" + backends[1] + "\" }";
    t += "]\n";
    if (variant == 1)
        t +=
            "\n[[cluster]]\nname = \"other\"\nbackends = [{ address = \"" + backends[1] + "\" }]\n";
    return t;
}

class ReloadTest : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        for (int i = 0; i < 2; ++i) {
            auto b = std::make_unique<BackendProcess>();
            BackendOptions options;
            options.mode = EchoMode::kEcho;
            options.threads = 2;
            ASSERT_TRUE(b->start(options));
            addresses_.push_back(b->address());
            backends_.push_back(std::move(b));
        }
    }

    std::vector<std::unique_ptr<BackendProcess>> backends_;
    std::vector<std::string> addresses_;
};

// 200 long-lived sessions exchanging bytes and a stream of new connections, while 50 reloads
// alternate between two configurations (SIGHUP and POST /reload in turn) and every 10th is an
// invalid file: no connection fails, no byte is wrong, and the counters keep counting.
TEST_P(ReloadTest, FiftyReloadsUnderLoadLoseNothing) {
    Ports p;
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config_text(GetParam(), p, 0, addresses_), GetParam());
    const FdCounts baseline = proxy.settled_fd_counts();

    constexpr size_t kLongLived = 200;
    constexpr size_t kChunk = 8192;
    std::vector<ClientSession> sessions(kLongLived);
    for (auto& s : sessions) ASSERT_TRUE(s.connect(p.main)) << s.error();
    std::vector<uint64_t> echoed(kLongLived, 0);
    // One round: every long-lived session sends a chunk of its own pattern and reads it back.
    auto round = [&]() -> ::testing::AssertionResult {
        for (size_t i = 0; i < kLongLived; ++i) {
            std::string chunk = pattern_bytes(i + 1, echoed[i], kChunk);
            if (!sessions[i].send(chunk))
                return ::testing::AssertionFailure() << sessions[i].error();
        }
        for (size_t i = 0; i < kLongLived; ++i) {
            std::string chunk = pattern_bytes(i + 1, echoed[i], kChunk);
            if (!sessions[i].expect(chunk, 10000ms))
                return ::testing::AssertionFailure()
                       << "session " << i << " at " << echoed[i] << ": " << sessions[i].error();
            echoed[i] += kChunk;
        }
        return ::testing::AssertionSuccess();
    };
    ASSERT_TRUE(round());

    ConnectionStream stream(p.main, 4096);

    size_t expected_ok = 0, expected_failed = 0;
    for (int k = 1; k <= 50; ++k) {
        bool invalid = k % 10 == 0;
        int variant = k % 2;
        std::string text = config_text(GetParam(), p, variant, addresses_);
        if (invalid) text += "\n[[cluster]]\nname = \"app\"\nbackends = []\n";  // a duplicate
        write_file(proxy.config_path(), text);
        if (k % 2 == 0) {
            std::string reply = http_post(p.admin, "/reload");
            EXPECT_TRUE(reply.starts_with(invalid ? "HTTP/1.1 400" : "HTTP/1.1 200"))
                << "reload " << k << ": " << reply;
        } else {
            ASSERT_TRUE(proxy.signal(SIGHUP));
        }
        (invalid ? expected_failed : expected_ok) += 1;
        std::string last;
        ASSERT_TRUE(wait_for_metric(
            p.admin, "ringlb_config_reloads_total", {{"result", invalid ? "failure" : "success"}},
            static_cast<double>(invalid ? expected_failed : expected_ok), 10000ms, &last))
            << "reload " << k << ": " << last << "\n"
            << proxy.log_tail();
        ASSERT_TRUE(round()) << "after reload " << k;
        if (!invalid && k % 5 == 1) {
            // The moved listener answers on its new address only.
            uint16_t now = variant == 0 ? p.extra_a : p.extra_b;
            uint16_t gone = variant == 0 ? p.extra_b : p.extra_a;
            EXPECT_TRUE(echo_exchange(now, 1000, false, 5000ms).ok) << "reload " << k;
            std::string error;
            EXPECT_FALSE(connect_to(gone, 1000ms, &error)) << "reload " << k;
        }
    }
    stream.stop();
    EXPECT_EQ(stream.failed(), 0u) << stream.first_failure();
    EXPECT_GT(stream.succeeded(), 50u);

    // Every long-lived session ends cleanly: EOF both ways, nothing extra.
    for (auto& s : sessions) s.shutdown_write();
    for (size_t i = 0; i < kLongLived; ++i) {
        CloseResult c = sessions[i].wait_for_close(10000ms);
        EXPECT_EQ(c.kind, CloseKind::kEof) << i;
        EXPECT_EQ(c.bytes_before, 0u) << i;
    }
    // 45 listener moves left no socket behind: back to the fds of the start.
    FdCounts after = wait_for_fd_baseline(proxy, baseline, 5000ms);
    EXPECT_TRUE(fd_counts_match(after, baseline, false))
        << "baseline " << to_string(baseline) << ", now " << to_string(after);
    // Counters kept counting through 45 reloads: every connection to "main" is there.
    uint64_t total = kLongLived + stream.succeeded() + stream.failed();
    std::string last;
    EXPECT_TRUE(wait_for_metric(
        p.admin, "ringlb_listener_connections_total", {{"listener", "main"}},
        [&](double v) { return v == static_cast<double>(total); }, 5000ms, &last))
        << "expected " << total << ": " << last;
    EXPECT_EQ(metric_sum(p.admin, "ringlb_config_reloads_total", {{"result", "failure"}}), 5);
    EXPECT_EQ(metric_sum(p.admin, "ringlb_config_reloads_total", {{"result", "success"}}), 45);
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_EQ(sanitizer_report(proxy.log()), "") << proxy.log_tail();
}

// A configuration that fails validation, or changes a key that needs a restart, or cannot bind,
// leaves everything as it runs: same listeners, same /config, an error that names the cause.
TEST_P(ReloadTest, BadReloadsChangeNothing) {
    Ports p;
    ProxyProcess proxy;
    std::string good = config_text(GetParam(), p, 0, addresses_);
    RINGLB_START_PROXY(proxy, good, GetParam());
    auto before = http_request(p.admin, "/config");
    ASSERT_TRUE(before && before->status == 200);

    struct Case {
        std::string text;
        std::string expect;  // in the reply
    };
    // Another process holds this port: the bind fails.
    common::Fd holder = [] { return common::Fd(::socket(AF_INET, SOCK_STREAM, 0)); }();
    uint16_t held = free_port();
    {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(held);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        ASSERT_EQ(::listen(holder.get(), 1), 0);
    }
    std::string moved = good;
    moved.replace(moved.find(std::to_string(p.extra_a)), std::to_string(p.extra_a).size(),
                  std::to_string(held));
    std::string workers = good;
    workers.replace(workers.find("workers = 2"), 11, "workers = 1");
    std::vector<Case> cases{
        {good + "\nbogus = 1\n", ":1"},  // an unknown key: file:line:col
        {workers, "runtime.workers"},
        {moved, "cannot listen on 127.0.0.1:" + std::to_string(held)},
    };
    for (const Case& c : cases) {
        write_file(proxy.config_path(), c.text);
        std::string reply = http_post(p.admin, "/reload");
        EXPECT_TRUE(reply.starts_with("HTTP/1.1 400")) << reply;
        EXPECT_NE(reply.find(c.expect), std::string::npos) << reply;
        auto after = http_request(p.admin, "/config");
        ASSERT_TRUE(after);
        EXPECT_EQ(after->body, before->body);
        EXPECT_TRUE(echo_exchange(p.main, 1000, false, 5000ms).ok);
        EXPECT_TRUE(echo_exchange(p.extra_a, 1000, false, 5000ms).ok);
    }
    EXPECT_EQ(metric_sum(p.admin, "ringlb_config_reloads_total", {{"result", "failure"}}), 3);
    EXPECT_EQ(metric_sum(p.admin, "ringlb_config_last_reload_successful"), 0);
    EXPECT_TRUE(
        proxy.wait_for_log("reload (POST /reload) failed, running configuration unchanged", 0ms));
    // A GET is refused: a reload changes state.
    auto get = http_request(p.admin, "/reload");
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 405);
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_EQ(sanitizer_report(proxy.log()), "") << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, ReloadTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit

namespace ringlb::testkit {
namespace {

// Which backend a new client lands on: the backend greets with its letter.
class BackendAdminTest : public ::testing::TestWithParam<std::string> {};

// POST /backends/C/B/drain|enable|weight change the running snapshot (new sessions only) until
// the next reload; /ready says 503 while a cluster has no usable backend.
TEST_P(BackendAdminTest, DrainEnableAndWeightLastUntilTheNextReload) {
    std::vector<std::unique_ptr<BackendProcess>> backends;
    for (const char* letter : {"A", "B"}) {
        BackendOptions options;
        options.greeting = letter;
        backends.push_back(std::make_unique<BackendProcess>());
        ASSERT_TRUE(backends.back()->start(options));
    }
    ProxyConfigSpec spec;
    spec.engine = GetParam();
    spec.backends = {backends[0]->address(), backends[1]->address()};
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, make_config(spec), GetParam());
    const std::string a = backends[0]->address();
    const std::string b = backends[1]->address();

    // A session on A, open across the drain.
    ClientSession on_a;
    for (int i = 0; i < 10 && !on_a.connected(); ++i) {
        ClientSession c;
        ASSERT_TRUE(c.connect(spec.listen_port));
        std::string got;
        ASSERT_TRUE(c.receive(1, &got));
        if (got == "A") on_a = std::move(c);
    }
    ASSERT_TRUE(on_a.connected());

    std::string reply = http_post(spec.admin_port, "/backends/app/" + a + "/drain");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
    EXPECT_NE(reply.find("cluster app backend " + a + ": drained"), std::string::npos) << reply;
    for (int i = 0; i < 10; ++i) EXPECT_EQ(first_byte(spec.listen_port), "B");
    auto backends_json = http_request(spec.admin_port, "/backends");
    ASSERT_TRUE(backends_json);
    EXPECT_NE(backends_json->body.find("\"state\": \"drained\""), std::string::npos)
        << backends_json->body;
    // The established session still forwards.
    ASSERT_TRUE(on_a.send("ping"));
    EXPECT_TRUE(on_a.expect("ping"));
    auto ready = http_request(spec.admin_port, "/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200);

    // Both drained: nothing usable, /ready says why, a new client is closed.
    reply = http_post(spec.admin_port, "/backends/app/" + b + "/drain");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
    ready = http_request(spec.admin_port, "/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503);
    EXPECT_EQ(ready->body, "not ready: cluster app has no usable backend\n");
    EXPECT_EQ(first_byte(spec.listen_port), "<closed>");

    reply = http_post(spec.admin_port, "/backends/app/" + a + "/enable");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
    for (int i = 0; i < 6; ++i) EXPECT_EQ(first_byte(spec.listen_port), "A");
    ready = http_request(spec.admin_port, "/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200);

    reply = http_post(spec.admin_port, "/backends/app/" + a + "/weight?value=7");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
    backends_json = http_request(spec.admin_port, "/backends");
    ASSERT_TRUE(backends_json);
    EXPECT_NE(backends_json->body.find("\"weight\": 7"), std::string::npos) << backends_json->body;

    // Mistakes: unknown backend, bad weight, unknown action, GET.
    EXPECT_TRUE(
        http_post(spec.admin_port, "/backends/app/127.0.0.1:1/drain").starts_with("HTTP/1.1 404"));
    EXPECT_TRUE(
        http_post(spec.admin_port, "/backends/nope/" + a + "/drain").starts_with("HTTP/1.1 404"));
    EXPECT_TRUE(http_post(spec.admin_port, "/backends/app/" + a + "/weight?value=0")
                    .starts_with("HTTP/1.1 400"));
    EXPECT_TRUE(http_post(spec.admin_port, "/backends/app/" + a + "/weight?value=x")
                    .starts_with("HTTP/1.1 400"));
    EXPECT_TRUE(
        http_post(spec.admin_port, "/backends/app/" + a + "/explode").starts_with("HTTP/1.1 404"));
    auto get = http_request(spec.admin_port, "/backends/app/" + a + "/drain");
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 405);

    // A reload returns to the file: B is back, weights as written.
    reply = http_post(spec.admin_port, "/reload");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
    backends_json = http_request(spec.admin_port, "/backends");
    ASSERT_TRUE(backends_json);
    EXPECT_EQ(backends_json->body.find("drained"), std::string::npos) << backends_json->body;
    EXPECT_EQ(backends_json->body.find("\"weight\": 7"), std::string::npos) << backends_json->body;
    std::set<std::string> seen;
    for (int i = 0; i < 6; ++i) seen.insert(first_byte(spec.listen_port));
    EXPECT_EQ(seen, (std::set<std::string>{"A", "B"}));
    on_a.close();
    EXPECT_EQ(proxy.stop(), 0);
    EXPECT_EQ(sanitizer_report(proxy.log()), "") << proxy.log_tail();
}

INSTANTIATE_TEST_SUITE_P(Engines, BackendAdminTest, ::testing::ValuesIn(kEngines), engine_name);

}  // namespace
}  // namespace ringlb::testkit
