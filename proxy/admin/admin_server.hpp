#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/address.hpp"
#include "common/fd.hpp"

namespace ringlb::admin {

// What a route handler sees of a request: the parsed request line and the body (the body limit
// keeps it small). Views into the connection's parser, valid during the handler call only.
struct Request {
    std::string_view method;  // "GET", "HEAD", ...
    std::string_view path;    // the target up to '?'
    std::string_view query;   // after '?', without it; "" when absent
    std::string_view body;
};

struct Reply {
    using Headers = std::vector<std::pair<std::string, std::string>>;

    Reply() = default;
    Reply(unsigned code, std::string type, std::string text, Headers fields = {})
        : status(code),
          content_type(std::move(type)),
          body(std::move(text)),
          headers(std::move(fields)) {}

    unsigned status = 200;
    std::string content_type = "text/plain";
    std::string body;
    Headers headers;  // more fields, e.g. Allow
};

// One admin endpoint. A request for `path` with a method not in `methods` gets 405 with an
// Allow header built from `methods`. A HEAD request runs the handler as GET would and sends the
// headers (Content-Length included) without the body.
struct Route {
    std::string path;
    std::vector<std::string> methods;
    std::string description;  // one line, listed in the 404 body
    std::function<Reply(const Request&)> handler;
    // `path` ends with '/' and matches every request path that starts with it.
    bool prefix = false;
};

// The bounds that make a stuck, slow or hostile admin client cost a bounded amount. The
// defaults are what ringlb runs with; the README's [admin] section lists them.
struct AdminLimits {
    // Connections served at once; one more is answered 503 and closed at once.
    size_t max_connections = 64;
    // Keep-alive requests on one connection; the last one is answered with Connection: close.
    unsigned max_requests_per_connection = 100;
    // From the end of a response (or the accept) until the next request's first byte.
    std::chrono::milliseconds idle_timeout{5000};
    // From a request's first byte until its last: a client that dribbles its header is cut here.
    std::chrono::milliseconds request_timeout{5000};
    // For writing one response: a client that does not read it is cut here.
    std::chrono::milliseconds write_timeout{5000};
    // Request line and header fields together: beyond this, 431.
    uint32_t max_header_bytes = 8192;
    // No endpoint takes a body yet; beyond this, 413.
    uint64_t max_body_bytes = 1024;
};

// The admin HTTP endpoint on the control thread (never on a shard), HTTP/1.1 on Boost.Beast:
//   GET|HEAD /metrics  Prometheus text format, built by `metrics` at scrape time
//   GET|HEAD /healthz  200 while the process runs
//   GET|HEAD /ready    200 once every shard serves, 503 while starting, draining or stopping
// plus the routes the owner adds (add_route) where their data lives (routes.hpp).
// No authentication: bind it to loopback or a private interface.
class AdminServer {
  public:
    struct Stats {
        size_t active = 0;           // connections open now
        uint64_t rejected = 0;       // connections closed at once for max_connections
        uint64_t accept_errors = 0;  // failed accepts (EMFILE, ...)
        uint64_t spares_used = 0;    // spare fds given up to accept while out of fds
    };

    AdminServer(boost::asio::io_context& io, std::function<std::string()> metrics,
                AdminLimits limits = {});
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Adds an endpoint after the built-in ones, before listen(); the 404 body lists it too.
    // Throws std::invalid_argument for a path already routed.
    void add_route(Route route);
    // Binds and starts accepting; returns the error instead of throwing.
    std::error_code listen(const common::Address& address);
    // The same on a listening socket handed over by the process ringlb replaces (upgrade).
    std::error_code adopt(common::Fd listening, const common::Address& address);
    // The listening socket's fd (for the upgrade to duplicate), or -1.
    int listening_fd();
    // `why`: the body of a 503 ("not ready: WHY").
    void set_ready(bool ready, std::string why = "");
    // Stops accepting and closes every admin connection.
    void close();

    // "GET, HEAD /metrics  Prometheus text format ..." one line per route.
    std::string describe_routes() const;
    // "/metrics /healthz /ready ...": every path, for the startup log line.
    std::string route_paths() const;
    Stats stats() const;

    struct State;  // shared with the connections, which may outlive this object in the io_context

  private:
    void accept();
    void on_accept_error(const boost::system::error_code& ec);

    std::shared_ptr<State> state_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;
};

}  // namespace ringlb::admin
