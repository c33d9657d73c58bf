// The admin endpoint as an HTTP client sees it, byte by byte: the three endpoints with GET and
// HEAD, keep-alive, the error statuses, the timeouts and the connection limit. The admin server
// runs on the control thread and never touches the data path, so these tests are not
// parameterized over engines.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <csignal>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

// The limits ringlb runs with (AdminLimits' defaults, documented in the README).
constexpr size_t kMaxConnections = 64;
constexpr unsigned kMaxRequestsPerConnection = 100;
constexpr Millis kIdleTimeout = 5000ms;
constexpr Millis kRequestTimeout = 5000ms;

const char* const kMetricsType = "text/plain; version=0.0.4; charset=utf-8";

struct Response {
    int status = 0;
    std::string status_line;
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;

    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? "" : it->second;
    }
};

// One client connection that reads responses exactly: the head up to the blank line, then
// Content-Length bytes (none for HEAD), keeping whatever follows for the next response.
class Client {
  public:
    bool connect(uint16_t port) {
        fd_ = connect_to(port, 2000ms, &error_);
        return static_cast<bool>(fd_);
    }
    int fd() const { return fd_.get(); }
    const std::string& error() const { return error_; }
    void close() { fd_.reset(); }

    bool send(std::string_view bytes) {
        if (send_all(fd_.get(), bytes.data(), bytes.size(), 2000ms)) return true;
        error_ = "send failed";
        return false;
    }

    std::optional<Response> read_response(bool head_request, Millis timeout = 3000ms) {
        auto deadline = Clock::now() + timeout;
        size_t end;
        while ((end = pending_.find("\r\n\r\n")) == std::string::npos)
            if (!fill(deadline)) return fail("no complete response head: \"" + pending_ + "\"");
        std::string head = pending_.substr(0, end);
        pending_.erase(0, end + 4);
        Response response;
        size_t line_end = head.find("\r\n");
        response.status_line = head.substr(0, line_end);
        if (!response.status_line.starts_with("HTTP/1.1 ") || response.status_line.size() < 12)
            return fail("bad status line: \"" + response.status_line + "\"");
        auto [ptr, ec] = std::from_chars(response.status_line.data() + 9,
                                         response.status_line.data() + 12, response.status);
        if (ec != std::errc()) return fail("bad status: \"" + response.status_line + "\"");
        while (line_end != std::string::npos) {
            size_t start = line_end + 2;
            line_end = head.find("\r\n", start);
            std::string line = head.substr(start, line_end - start);
            size_t colon = line.find(": ");
            if (colon == std::string::npos) return fail("bad header line: \"" + line + "\"");
            std::string name = line.substr(0, colon);
            for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (response.headers.count(name)) return fail("header repeated: " + name);
            response.headers[name] = line.substr(colon + 2);
        }
        if (!response.headers.count("content-length")) return fail("no Content-Length");
        size_t length = std::stoul(response.header("content-length"));
        if (head_request) return response;
        while (pending_.size() < length)
            if (!fill(deadline)) return fail("body shorter than Content-Length");
        response.body = pending_.substr(0, length);
        pending_.erase(0, length);
        return response;
    }

    // Waits for the server to close with a FIN; the bytes that came before it (including any
    // buffered here) go to *extra. A reset fails: the server reads what the client still sends
    // before it closes, because a reset can destroy a response the client has not read yet.
    bool expect_close(Millis timeout, std::string* extra = nullptr) {
        std::string data = std::move(pending_);
        pending_.clear();
        CloseResult result = wait_for_close(fd_.get(), timeout, &data);
        if (extra) *extra = data;
        if (result.kind != CloseKind::kEof) {
            error_ = std::string("no close: ") + to_string(result.kind);
            return false;
        }
        return true;
    }

  private:
    bool fill(Clock::time_point deadline) {
        auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
        if (left <= 0ms) return false;
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char buf[16384];
        ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0) return false;
        pending_.append(buf, static_cast<size_t>(n));
        return true;
    }
    std::optional<Response> fail(std::string why) {
        error_ = std::move(why);
        return std::nullopt;
    }

    common::Fd fd_;
    std::string error_;
    std::string pending_;
};

std::string request(std::string_view method, std::string_view target, bool close = false) {
    return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
           (close ? "Connection: close\r\n" : "") + "\r\n";
}

class AdminTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(backend_.start(EchoMode::kEcho));
        spec_.backends = {backend_.address()};
        std::string message;
        StartVerdict verdict = start_proxy(proxy_, make_config(spec_), spec_.engine, &message);
        ASSERT_EQ(verdict, StartVerdict::kReady) << message;
    }

    void TearDown() override {
        if (proxy_.running()) {
            EXPECT_EQ(proxy_.stop(), 0);
        }
        std::string report = sanitizer_report(proxy_.log());
        EXPECT_EQ(report, "") << proxy_.log_tail();
    }

    uint16_t port() const { return spec_.admin_port; }

    // One request on a fresh connection; the response must end with the server's close when
    // `close` asks for it.
    std::optional<Response> exchange(std::string_view method, std::string_view target,
                                     std::string* error) {
        Client client;
        if (!client.connect(port()) || !client.send(request(method, target, true))) {
            *error = client.error();
            return std::nullopt;
        }
        auto response = client.read_response(method == "HEAD");
        if (!response) {
            *error = client.error();
            return std::nullopt;
        }
        std::string extra;
        if (!client.expect_close(2000ms, &extra) || !extra.empty()) {
            *error = client.error() + " after the response; extra bytes: \"" + extra + "\"";
            return std::nullopt;
        }
        return response;
    }

    BackendProcess backend_;
    ProxyConfigSpec spec_;
    ProxyProcess proxy_;
};

TEST_F(AdminTest, GetEachEndpoint) {
    std::string error;
    auto healthz = exchange("GET", "/healthz", &error);
    ASSERT_TRUE(healthz) << error;
    EXPECT_EQ(healthz->status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(healthz->header("content-type"), "text/plain");
    EXPECT_EQ(healthz->header("content-length"), "3");
    EXPECT_EQ(healthz->header("connection"), "close");
    EXPECT_EQ(healthz->body, "ok\n");

    auto ready = exchange("GET", "/ready", &error);
    ASSERT_TRUE(ready) << error;
    EXPECT_EQ(ready->status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(ready->header("content-type"), "text/plain");
    EXPECT_EQ(ready->header("content-length"), "6");
    EXPECT_EQ(ready->body, "ready\n");

    // A query string does not change the route.
    auto metrics = exchange("GET", "/metrics?format=text", &error);
    ASSERT_TRUE(metrics) << error;
    EXPECT_EQ(metrics->status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(metrics->header("content-type"), kMetricsType);
    EXPECT_EQ(metrics->header("content-length"), std::to_string(metrics->body.size()));
    auto parsed = Metrics::parse(metrics->body, &error);
    ASSERT_TRUE(parsed) << error;
    EXPECT_TRUE(parsed->has("ringlb_build_info")) << metrics->body;
    EXPECT_EQ(parsed->sum("ringlb_accepted_total"), 0);
}

TEST_F(AdminTest, HeadSendsTheHeadersOfGetWithoutTheBody) {
    for (const char* path : {"/healthz", "/ready", "/metrics", "/nowhere"}) {
        SCOPED_TRACE(path);
        std::string error;
        auto get = exchange("GET", path, &error);
        ASSERT_TRUE(get) << error;
        // exchange() fails on any byte between the head and the close.
        auto head = exchange("HEAD", path, &error);
        ASSERT_TRUE(head) << error;
        EXPECT_EQ(head->status_line, get->status_line);
        EXPECT_GT(get->body.size(), 0u);
        if (std::string_view(path) != "/metrics") {
            EXPECT_EQ(head->headers, get->headers);
            EXPECT_EQ(head->header("content-length"), std::to_string(get->body.size()));
            continue;
        }
        // The process figures (CPU time, memory, admin connections) change between two scrapes,
        // and with them the length by a few bytes.
        auto without_length = [](std::map<std::string, std::string> headers) {
            headers.erase("content-length");
            return headers;
        };
        EXPECT_EQ(without_length(head->headers), without_length(get->headers));
        EXPECT_NEAR(std::stod(head->header("content-length")),
                    static_cast<double>(get->body.size()), 100);
    }

    // On a kept-alive connection the byte after a HEAD response's head is the next response.
    Client client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    ASSERT_TRUE(client.send(request("HEAD", "/metrics") + request("GET", "/healthz")));
    auto head = client.read_response(true);
    ASSERT_TRUE(head) << client.error();
    EXPECT_EQ(head->status, 200);
    EXPECT_EQ(head->header("content-type"), kMetricsType);
    auto next = client.read_response(false);
    ASSERT_TRUE(next) << client.error();
    EXPECT_EQ(next->status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(next->body, "ok\n");
}

TEST_F(AdminTest, KeepAliveServesRequestsInOrderUpToTheLimit) {
    Client client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    // Two in turn, then two sent together.
    ASSERT_TRUE(client.send(request("GET", "/healthz")));
    auto first = client.read_response(false);
    ASSERT_TRUE(first) << client.error();
    EXPECT_EQ(first->body, "ok\n");
    EXPECT_EQ(first->header("connection"), "");
    ASSERT_TRUE(client.send(request("GET", "/metrics")));
    auto second = client.read_response(false);
    ASSERT_TRUE(second) << client.error();
    EXPECT_EQ(second->status, 200);
    EXPECT_TRUE(Metrics::parse(second->body));
    ASSERT_TRUE(client.send(request("GET", "/ready") + request("GET", "/healthz")));
    auto third = client.read_response(false);
    auto fourth = client.read_response(false);
    ASSERT_TRUE(third && fourth) << client.error();
    EXPECT_EQ(third->body, "ready\n");
    EXPECT_EQ(fourth->body, "ok\n");

    // The last request the connection may carry is answered with Connection: close.
    for (unsigned i = 5; i <= kMaxRequestsPerConnection; ++i) {
        ASSERT_TRUE(client.send(request("GET", "/healthz"))) << i;
        auto response = client.read_response(false);
        ASSERT_TRUE(response) << i << ": " << client.error();
        ASSERT_EQ(response->body, "ok\n") << i;
        ASSERT_EQ(response->header("connection"), i == kMaxRequestsPerConnection ? "close" : "")
            << i;
    }
    std::string extra;
    EXPECT_TRUE(client.expect_close(2000ms, &extra)) << client.error();
    EXPECT_EQ(extra, "");

    // HTTP/1.0 closes unless asked to keep the connection.
    Client old;
    ASSERT_TRUE(old.connect(port())) << old.error();
    ASSERT_TRUE(old.send("GET /healthz HTTP/1.0\r\n\r\n"));
    std::string bytes;
    EXPECT_TRUE(old.expect_close(2000ms, &bytes)) << old.error();
    EXPECT_EQ(bytes,
              "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n");
}

TEST_F(AdminTest, GarbageIs400AndClosed) {
    for (std::string garbage : {std::string("garbage\r\n\r\n"), std::string("GET\r\n\r\n"),
                                std::string("GET /metrics HTTP/9.9\r\n\r\n"),
                                std::string("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n"),
                                std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)}) {
        SCOPED_TRACE(garbage);
        Client client;
        ASSERT_TRUE(client.connect(port())) << client.error();
        ASSERT_TRUE(client.send(garbage));
        auto response = client.read_response(false);
        ASSERT_TRUE(response) << client.error();
        EXPECT_EQ(response->status_line, "HTTP/1.1 400 Bad Request");
        EXPECT_EQ(response->header("connection"), "close");
        EXPECT_TRUE(response->body.starts_with("bad request: ")) << response->body;
        std::string extra;
        EXPECT_TRUE(client.expect_close(2000ms, &extra)) << client.error();
        EXPECT_EQ(extra, "");
    }
}

TEST_F(AdminTest, UnknownPathIs404ListingTheEndpoints) {
    Client client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    ASSERT_TRUE(client.send(request("GET", "/nope?x=1")));
    auto response = client.read_response(false);
    ASSERT_TRUE(response) << client.error();
    EXPECT_EQ(response->status_line, "HTTP/1.1 404 Not Found");
    EXPECT_EQ(response->header("content-type"), "text/plain");
    const std::string& body = response->body;
    EXPECT_TRUE(body.starts_with("not found: /nope\nendpoints:\n")) << body;
    for (const char* line : {"\nGET, HEAD /metrics  ", "\nGET, HEAD /healthz  ",
                             "\nGET, HEAD /ready  ", "\nGET, HEAD /backends  ",
                             "\nGET, HEAD /config  ", "\nPOST /reload  ", "\nPOST /backends/  "})
        EXPECT_NE(body.find(line), std::string::npos) << line << " in:\n" << body;
    // Seven endpoints, one line each, after the two lines of preamble.
    EXPECT_EQ(std::count(body.begin(), body.end(), '\n'), 9) << body;

    // A 404 keeps the connection.
    ASSERT_TRUE(client.send(request("GET", "/healthz")));
    auto next = client.read_response(false);
    ASSERT_TRUE(next) << client.error();
    EXPECT_EQ(next->body, "ok\n");
}

TEST_F(AdminTest, WrongMethodIs405WithAllow) {
    Client client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    for (const char* method : {"POST", "DELETE", "BREW"}) {
        SCOPED_TRACE(method);
        ASSERT_TRUE(client.send(std::string(method) +
                                " /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
        auto response = client.read_response(false);
        ASSERT_TRUE(response) << client.error();
        EXPECT_EQ(response->status_line, "HTTP/1.1 405 Method Not Allowed");
        EXPECT_EQ(response->header("allow"), "GET, HEAD");
        EXPECT_EQ(response->body, std::string("method ") + method +
                                      " not allowed on /metrics (allowed: GET, HEAD)\n");
    }
}

TEST_F(AdminTest, HugeHeaderIs431) {
    Client client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    // Sent whole: the server answers before reading it all and must not lose the answer.
    std::string big =
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n";
    ASSERT_TRUE(client.send(big));
    auto response = client.read_response(false);
    ASSERT_TRUE(response) << client.error();
    EXPECT_EQ(response->status_line, "HTTP/1.1 431 Request Header Fields Too Large");
    EXPECT_EQ(response->header("connection"), "close");
    EXPECT_EQ(response->body, "request header larger than 8192 bytes\n");
    EXPECT_TRUE(client.expect_close(3000ms)) << client.error();

    // Just under the limit is fine.
    Client fits;
    ASSERT_TRUE(fits.connect(port())) << fits.error();
    std::string request = "GET /healthz HTTP/1.1\r\nX-Big: ";
    request += std::string(8000 - request.size(), 'a') + "\r\n\r\n";
    ASSERT_TRUE(fits.send(request));
    auto ok = fits.read_response(false);
    ASSERT_TRUE(ok) << fits.error();
    EXPECT_EQ(ok->body, "ok\n");
}

TEST_F(AdminTest, BodyPastTheLimitIs413) {
    struct Case {
        const char* name;
        std::string bytes;
    };
    std::string chunked = "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 40; ++i) chunked += "40\r\n" + std::string(64, 'b') + "\r\n";
    for (const Case& c :
         {Case{"content-length",
               "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                   std::string(100000, 'b')},
          Case{"chunked", chunked}}) {
        SCOPED_TRACE(c.name);
        Client client;
        ASSERT_TRUE(client.connect(port())) << client.error();
        ASSERT_TRUE(client.send(c.bytes));
        auto response = client.read_response(false);
        ASSERT_TRUE(response) << client.error();
        EXPECT_EQ(response->status_line, "HTTP/1.1 413 Payload Too Large");
        EXPECT_EQ(response->header("connection"), "close");
        EXPECT_EQ(response->body, "request body larger than 1024 bytes\n");
        EXPECT_TRUE(client.expect_close(3000ms)) << client.error();
    }

    // A body within the limit is read and ignored; the connection goes on.
    Client client;
    ASSERT_TRUE(client.connect(port())) << client.error();
    ASSERT_TRUE(client.send("GET /healthz HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" +
                            std::string(1024, 'c') + request("GET", "/ready")));
    auto first = client.read_response(false);
    auto second = client.read_response(false);
    ASSERT_TRUE(first && second) << client.error();
    EXPECT_EQ(first->body, "ok\n");
    EXPECT_EQ(second->body, "ready\n");
}

// A client that dribbles its header is cut request_timeout after its first byte, however
// steadily it sends; one that sends nothing is cut after idle_timeout. Both without a response.
TEST_F(AdminTest, SlowAndIdleClientsAreClosedAfterTheTimeouts) {
    Client slow, idle;
    ASSERT_TRUE(slow.connect(port())) << slow.error();
    ASSERT_TRUE(idle.connect(port())) << idle.error();
    auto idle_from = Clock::now();
    std::string header = "GET /metrics HTTP/1.1\r\nX-Slow: " + std::string(1000, 'a');
    auto slow_from = Clock::now();
    std::optional<Clock::time_point> slow_closed, idle_closed;
    std::string slow_bytes, idle_bytes;
    size_t sent = 0;
    auto next_send = Clock::now();
    while ((!slow_closed || !idle_closed) && Clock::now() - slow_from < 10s) {
        if (!slow_closed && Clock::now() >= next_send && sent < header.size()) {
            if (::send(slow.fd(), header.data() + sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                ++sent;
            next_send += 200ms;
        }
        pollfd fds[2] = {{slow.fd(), POLLIN, 0}, {idle.fd(), POLLIN, 0}};
        ::poll(fds, 2, 20);
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            auto& closed = i == 0 ? slow_closed : idle_closed;
            auto& bytes = i == 0 ? slow_bytes : idle_bytes;
            if (closed) continue;
            char buf[4096];
            ssize_t n = ::recv(fds[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0) bytes.append(buf, static_cast<size_t>(n));
            if (n <= 0) closed = Clock::now();
        }
    }
    ASSERT_TRUE(slow_closed) << "slow client still open after 10 s, " << sent << " bytes sent";
    ASSERT_TRUE(idle_closed) << "idle client still open after 10 s";
    auto slow_after = std::chrono::duration_cast<Millis>(*slow_closed - slow_from);
    auto idle_after = std::chrono::duration_cast<Millis>(*idle_closed - idle_from);
    EXPECT_GE(slow_after, kRequestTimeout - 100ms);
    EXPECT_LE(slow_after, kRequestTimeout + 1000ms);
    EXPECT_GE(sent, 20u);  // it kept sending until the cut
    EXPECT_GE(idle_after, kIdleTimeout - 100ms);
    EXPECT_LE(idle_after, kIdleTimeout + 1000ms);
    EXPECT_EQ(slow_bytes, "");
    EXPECT_EQ(idle_bytes, "");
}

TEST_F(AdminTest, ConnectionsPastTheLimitAreRefusedAndCounted) {
    std::vector<Client> held(kMaxConnections);
    for (auto& c : held) ASSERT_TRUE(c.connect(port())) << c.error();
    // The server accepts in order: by the time it takes these two, the first 64 are its own.
    for (int attempt = 0; attempt < 2; ++attempt) {
        Client extra;
        ASSERT_TRUE(extra.connect(port())) << extra.error();
        std::string bytes;
        EXPECT_TRUE(extra.expect_close(2000ms, &bytes)) << extra.error();
        EXPECT_EQ(bytes,
                  "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                  "Connection: close\r\nContent-Length: 27\r\n\r\ntoo many admin connections\n");
    }
    // The held ones are served, within their idle timeout.
    ASSERT_TRUE(held[0].send(request("GET", "/healthz")));
    auto response = held[0].read_response(false);
    ASSERT_TRUE(response) << held[0].error();
    EXPECT_EQ(response->body, "ok\n");

    // Once some close, /metrics answers again (the server learns of the close asynchronously).
    for (size_t i = 0; i < 8; ++i) held[i].close();
    std::optional<HttpResponse> page;
    std::string error;
    auto deadline = Clock::now() + 2s;
    while (Clock::now() < deadline) {
        page = http_request(port(), "/metrics", 2000ms, &error);
        if (page && page->status == 200) break;
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_TRUE(page) << error;
    EXPECT_EQ(page->status, 200) << page->head;
    EXPECT_TRUE(Metrics::parse(page->body));

    // Two refusals, one log line: the rest of the 10 s window is counted, not logged.
    std::string log = proxy_.log();
    size_t first = log.find("admin: refused a connection: 64 open is the limit\n");
    EXPECT_NE(first, std::string::npos) << log;
    EXPECT_EQ(log.find("admin: refused a connection", first + 1), std::string::npos) << log;
}

// SIGTERM with admin connections idle, mid-request and kept alive: ringlb exits 0 at once, the
// connections end with a FIN, and the sanitizers (TearDown) find nothing in the teardown.
TEST_F(AdminTest, StopsWithAdminConnectionsOpen) {
    Client idle, partial, kept;
    ASSERT_TRUE(idle.connect(port())) << idle.error();
    ASSERT_TRUE(partial.connect(port())) << partial.error();
    ASSERT_TRUE(kept.connect(port())) << kept.error();
    ASSERT_TRUE(partial.send("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
    ASSERT_TRUE(kept.send(request("GET", "/healthz")));
    auto response = kept.read_response(false);
    ASSERT_TRUE(response) << kept.error();
    EXPECT_EQ(response->body, "ok\n");

    auto start = Clock::now();
    EXPECT_EQ(proxy_.stop(), 0);
    EXPECT_LT(Clock::now() - start, 2s);
    for (Client* c : {&idle, &partial, &kept}) {
        std::string extra;
        EXPECT_TRUE(c->expect_close(2000ms, &extra)) << c->error();
        EXPECT_EQ(extra, "");
    }
}

// Out of fds the admin acceptor first gives up its spare fds (one per connection), then pauses
// (100 ms between attempts) instead of spinning on the connection it cannot take, logs that
// once, and serves again once fds are free.
TEST(AdminFdTest, RunningOutOfFdsPausesAcceptingAndRecovers) {
    ProxyConfigSpec spec;
    spec.engine = "epoll";
    spec.workers = 1;
    spec.backends = {"127.0.0.1:9"};
    TempDir dir;
    write_file(dir.file("ringlb.toml"), make_config(spec));
    Subprocess proxy;
    ASSERT_TRUE(spawn_until_ready(
        proxy,
        {"/usr/bin/prlimit", "--nofile=48:48", "--", RINGLB_BINARY, "run", dir.file("ringlb.toml")},
        dir.file("ringlb.log")));

    // More than the fds left plus the spare fds, fewer than max_connections: some stay in the
    // accept queue.
    std::vector<Client> held(50);
    for (auto& c : held) ASSERT_TRUE(c.connect(spec.admin_port)) << c.error();
    std::string log;
    auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline &&
           (log = read_file(dir.file("ringlb.log"))).find("admin: accept: ") == std::string::npos)
        std::this_thread::sleep_for(50ms);
    ASSERT_NE(log.find("admin: accept: Too many open files; retrying in 100 ms\n"),
              std::string::npos)
        << log;

    // A spinning acceptor would burn a whole core; paused, it costs next to nothing.
    auto cpu_ms = [&] {
        std::string stat = read_file("/proc/" + std::to_string(proxy.pid()) + "/stat");
        std::istringstream in(stat.substr(stat.rfind(')') + 2));
        std::string field;
        long ticks = 0;
        for (int i = 3; i <= 15 && in >> field; ++i)
            if (i == 14 || i == 15) ticks += std::stol(field);
        return ticks * 1000 / sysconf(_SC_CLK_TCK);
    };
    long before = cpu_ms();
    std::this_thread::sleep_for(1000ms);
    long used = cpu_ms() - before;
    EXPECT_LT(used, 200) << "ms of CPU in 1 s while out of fds";
    ASSERT_TRUE(proxy.running()) << read_file(dir.file("ringlb.log"));

    held.clear();
    std::optional<HttpResponse> page;
    std::string error;
    deadline = Clock::now() + 3s;
    while (Clock::now() < deadline) {
        page = http_request(spec.admin_port, "/healthz", 2000ms, &error);
        if (page) break;
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_TRUE(page) << error;
    EXPECT_EQ(page->status, 200);
    EXPECT_EQ(page->body, "ok\n");

    ::kill(proxy.pid(), SIGTERM);
    EXPECT_EQ(proxy.wait(10s), std::optional<int>(0));
    log = read_file(dir.file("ringlb.log"));
    size_t first = log.find("admin: accept: ");
    // About ten failed attempts per second, one line per 10 s.
    EXPECT_EQ(log.find("admin: accept: ", first + 1), std::string::npos) << log;
    EXPECT_EQ(sanitizer_report(log), "") << log;
}

}  // namespace
}  // namespace ringlb::testkit
