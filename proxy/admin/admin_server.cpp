#include "proxy/admin/admin_server.hpp"

#include <fcntl.h>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <climits>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <unordered_set>
#include <utility>

#include "common/fd.hpp"
#include "common/fd_reserve.hpp"
#include "common/log.hpp"

namespace ringlb::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// After a response that ends the connection, ringlb shuts down its sending side and reads what
// the client still sends (the body of a 413, the rest of a 431's header) before closing: closing
// with unread bytes makes the kernel answer with a reset, and a reset can destroy the response
// before the client has read it. Bounded in time and bytes.
constexpr auto kLingerTimeout = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 256 * 1024;
constexpr size_t kReadChunk = 4096;
// A failing accept (EMFILE, ENFILE, ENOBUFS) fails again at once: the connection stays queued.
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);

// The admin endpoint keeps this many fds open on /dev/null and gives one up to accept a
// connection when the process is out of fds: io_uring's multishot accept can take a burst of
// queued clients past the shards' fd reserve (common/fd_reserve.hpp) before their pause takes
// effect, and /metrics must answer exactly then. A few are enough: a scrape holds one.
constexpr size_t kSpareFds = common::kControlSpareFds;
// While the spares are short, they are topped up on this period as well as on every admin
// connection's open and close: a shard's io_uring accept can take the fd a closing admin
// connection frees, and with no scrape after that the spares would stay short for good.
constexpr auto kSpareRefill = std::chrono::milliseconds(250);

uint64_t steady_ms() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count());
}

http::response<http::string_body> make_response(const Reply& reply, bool head, bool keep_alive,
                                                unsigned version) {
    http::response<http::string_body> response;
    response.version(version);
    response.result(reply.status);
    response.set(http::field::content_type, reply.content_type);
    for (const auto& [name, value] : reply.headers) response.set(name, value);
    response.body() = reply.body;
    response.keep_alive(keep_alive);
    response.prepare_payload();
    // HEAD: the Content-Length GET would send, and no body.
    if (head) response.body().clear();
    return response;
}

std::string join(const std::vector<std::string>& items, const char* separator) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
    return out;
}

class Connection;

}  // namespace

struct AdminServer::State : std::enable_shared_from_this<AdminServer::State> {
    explicit State(asio::io_context& io) : refill_timer(io) {}

    AdminLimits limits;
    std::vector<Route> routes;
    bool ready = false;
    std::string not_ready_reason;
    bool closed = false;
    std::unordered_set<Connection*> connections;
    uint64_t rejected = 0;
    uint64_t accept_errors = 0;
    uint64_t spares_used = 0;
    common::LogLimiter accept_log;
    common::LogLimiter reject_log;
    std::vector<common::Fd> spare_fds;
    asio::steady_timer refill_timer;
    bool refill_armed = false;

    // Tops the spare fds up again; while the process is out of fds, leaves them short and tries
    // again after kSpareRefill.
    void refill_spares() {
        while (spare_fds.size() < kSpareFds) {
            common::Fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            if (!fd) return arm_refill();
            // Moved to the top slots of the table (common/fd_reserve.hpp), which the data path
            // never keeps: the fd a given-up spare frees is then the admin endpoint's.
            int floor = common::control_spare_floor();
            if (floor != INT_MAX && fd.get() < floor) {
                common::Fd high(::fcntl(fd.get(), F_DUPFD_CLOEXEC, floor));
                if (high) fd = std::move(high);
            }
            spare_fds.push_back(std::move(fd));
        }
    }

    void arm_refill() {
        if (refill_armed || closed) return;
        refill_armed = true;
        refill_timer.expires_after(kSpareRefill);
        refill_timer.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            auto self = weak.lock();
            if (!self) return;
            self->refill_armed = false;
            if (!ec && !self->closed) self->refill_spares();
        });
    }

    std::string describe_routes() const {
        std::string out;
        for (const auto& r : routes)
            out += join(r.methods, ", ") + " " + r.path + "  " + r.description + "\n";
        return out;
    }

    // The reply to a request that parsed.
    Reply route(const Request& request) const {
        for (const auto& r : routes) {
            if (r.prefix ? !request.path.starts_with(r.path) : r.path != request.path) continue;
            // A HEAD handler is the GET handler: the connection drops the body.
            for (const auto& m : r.methods)
                if (m == request.method) return r.handler(request);
            std::string allowed = join(r.methods, ", ");
            return {405,
                    "text/plain",
                    "method " + std::string(request.method) + " not allowed on " + r.path +
                        " (allowed: " + allowed + ")\n",
                    {{"Allow", allowed}}};
        }
        return {404, "text/plain",
                "not found: " + std::string(request.path) + "\nendpoints:\n" + describe_routes()};
    }
};

namespace {

// One admin connection: keep-alive requests, each read within request_timeout after an idle wait
// of at most idle_timeout, answered in order, until the client closes, a limit is reached or a
// request is malformed.
class Connection : public std::enable_shared_from_this<Connection> {
  public:
    Connection(tcp::socket socket, std::shared_ptr<AdminServer::State> state)
        : stream_(std::move(socket)), state_(std::move(state)) {
        state_->connections.insert(this);
    }
    ~Connection() {
        state_->connections.erase(this);
        // Close first: a spare given up for this connection takes its fd back at once, before a
        // shard waiting for an fd can.
        beast::error_code ignored;
        stream_.socket().close(ignored);
        state_->refill_spares();
    }

    void start() { wait_for_request(); }
    void stop() { stream_.close(); }

  private:
    // Idle until the first byte of the next request (unless it is already buffered), so that
    // request_timeout measures the request itself.
    void wait_for_request() {
        if (buffer_.size() > 0) return read_request();
        stream_.expires_after(state_->limits.idle_timeout);
        stream_.async_read_some(buffer_.prepare(kReadChunk),
                                [self = shared_from_this()](beast::error_code ec, size_t n) {
                                    // Timeout, EOF, reset or close(): the destructor closes.
                                    if (ec) return;
                                    self->buffer_.commit(n);
                                    self->read_request();
                                });
    }

    void read_request() {
        parser_.emplace();
        parser_->header_limit(state_->limits.max_header_bytes);
        parser_->body_limit(state_->limits.max_body_bytes);
        stream_.expires_after(state_->limits.request_timeout);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_request(ec); });
    }

    void on_request(beast::error_code ec) {
        const auto& limits = state_->limits;
        if (ec == http::error::header_limit)
            return reject({431, "text/plain",
                           "request header larger than " + std::to_string(limits.max_header_bytes) +
                               " bytes\n"});
        if (ec == http::error::body_limit)
            return reject(
                {413, "text/plain",
                 "request body larger than " + std::to_string(limits.max_body_bytes) + " bytes\n"});
        static const auto& http_category =
            http::make_error_code(http::error::bad_target).category();
        if (ec && ec.category() == http_category && ec != http::error::end_of_stream &&
            ec != http::error::partial_message)
            return reject({400, "text/plain", "bad request: " + ec.message() + "\n"});
        // The client left, timed out, or the server closes.
        if (ec) return;

        const auto& message = parser_->get();
        auto view = [](beast::string_view v) { return std::string_view(v.data(), v.size()); };
        std::string_view target = view(message.target());
        size_t question = target.find('?');
        Request request;
        request.method = view(message.method_string());
        request.path = target.substr(0, question);
        if (question != std::string_view::npos) request.query = target.substr(question + 1);
        request.body = message.body();
        bool head = message.method() == http::verb::head;
        Reply reply = state_->route(request);
        bool keep_alive = message.keep_alive() && !state_->closed &&
                          ++served_ < limits.max_requests_per_connection;
        respond(make_response(reply, head, keep_alive, message.version()));
    }

    // An answer to a request that did not parse; the connection cannot go on after it.
    void reject(const Reply& reply) { respond(make_response(reply, false, false, 11)); }

    void respond(http::response<http::string_body> response) {
        response_ = std::move(response);
        stream_.expires_after(state_->limits.write_timeout);
        http::async_write(stream_, response_,
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return;
                              if (self->response_.keep_alive()) return self->wait_for_request();
                              self->linger();
                          });
    }

    void linger() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.expires_after(kLingerTimeout);
        drain();
    }

    void drain() {
        buffer_.clear();
        stream_.async_read_some(buffer_.prepare(kReadChunk),
                                [self = shared_from_this()](beast::error_code ec, size_t n) {
                                    self->drained_ += n;
                                    if (ec || self->drained_ > kLingerBytes) return;
                                    self->drain();
                                });
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    unsigned served_ = 0;
    size_t drained_ = 0;
    std::shared_ptr<AdminServer::State> state_;
};

}  // namespace

AdminServer::AdminServer(asio::io_context& io, std::function<std::string()> metrics,
                         AdminLimits limits)
    : state_(std::make_shared<State>(io)), acceptor_(io), retry_(io) {
    state_->limits = limits;
    // The handlers live in *state_, so a raw pointer to it cannot dangle (a shared_ptr would be
    // a cycle).
    State* state = state_.get();
    state_->routes = {
        {"/metrics",
         {"GET", "HEAD"},
         "Prometheus text format: every counter, summed over the shards at scrape time",
         [metrics = std::move(metrics)](const Request&) -> Reply {
             return {200, "text/plain; version=0.0.4; charset=utf-8", metrics()};
         }},
        {"/healthz",
         {"GET", "HEAD"},
         "200 while the process runs",
         [](const Request&) -> Reply {
             return {200, "text/plain", "ok\n"};
         }},
        {"/ready",
         {"GET", "HEAD"},
         "200 once every shard serves, 503 while starting, draining or stopping",
         [state](const Request&) -> Reply {
             if (state->ready) return {200, "text/plain", "ready\n"};
             if (!state->not_ready_reason.empty())
                 return {503, "text/plain", "not ready: " + state->not_ready_reason + "\n"};
             return {503, "text/plain", "not ready\n"};
         }},
    };
}

void AdminServer::add_route(Route route) {
    for (const auto& r : state_->routes)
        if (r.path == route.path)
            throw std::invalid_argument("admin: route " + route.path + " is already declared");
    state_->routes.push_back(std::move(route));
}

AdminServer::~AdminServer() {
    close();
}

namespace {
tcp::endpoint endpoint_of(const common::Address& address) {
    tcp::endpoint endpoint;
    endpoint.resize(address.length);
    std::memcpy(endpoint.data(), address.sa(), address.length);
    return endpoint;
}
}  // namespace

std::error_code AdminServer::listen(const common::Address& address) {
    boost::system::error_code ec;
    tcp::endpoint endpoint = endpoint_of(address);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return {ec.value(), std::system_category()};
    state_->closed = false;
    state_->refill_spares();
    accept();
    return {};
}

std::error_code AdminServer::adopt(common::Fd listening, const common::Address& address) {
    boost::system::error_code ec;
    acceptor_.assign(endpoint_of(address).protocol(), listening.get(), ec);
    if (ec) return {ec.value(), std::system_category()};
    listening.release();  // the acceptor owns it now
    state_->closed = false;
    state_->refill_spares();
    accept();
    return {};
}

int AdminServer::listening_fd() {
    return acceptor_.is_open() ? acceptor_.native_handle() : -1;
}

void AdminServer::set_ready(bool ready, std::string why) {
    state_->ready = ready;
    state_->not_ready_reason = std::move(why);
}

void AdminServer::close() {
    state_->closed = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
    state_->refill_timer.cancel();
    // stop() only closes sockets; the connections end (and leave the set) in their handlers.
    for (Connection* c : state_->connections) c->stop();
}

std::string AdminServer::describe_routes() const {
    return state_->describe_routes();
}

std::string AdminServer::route_paths() const {
    std::string out;
    for (const auto& r : state_->routes) out += (out.empty() ? "" : " ") + r.path;
    return out;
}

AdminServer::Stats AdminServer::stats() const {
    return {state_->connections.size(), state_->rejected, state_->accept_errors,
            state_->spares_used};
}

void AdminServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || state_->closed) return;
        if (ec) return on_accept_error(ec);
        if (state_->connections.size() >= state_->limits.max_connections) {
            // Best effort and without waiting: a fresh socket's send buffer is empty.
            ++state_->rejected;
            boost::system::error_code ignored;
            socket.non_blocking(true, ignored);
            auto busy = make_response({503, "text/plain", "too many admin connections\n"}, false,
                                      false, 11);
            http::write(socket, busy, ignored);
            socket.shutdown(tcp::socket::shutdown_both, ignored);
            socket.close(ignored);
            LOG_WARN_LIMITED(state_->reject_log, steady_ms(),
                             "admin: refused a connection: %zu open is the limit",
                             state_->connections.size());
        } else {
            state_->refill_spares();
            std::make_shared<Connection>(std::move(socket), state_)->start();
        }
        accept();
    });
}

void AdminServer::on_accept_error(const boost::system::error_code& ec) {
    ++state_->accept_errors;
    if ((ec.value() == EMFILE || ec.value() == ENFILE) && !state_->spare_fds.empty()) {
        // Give up a spare fd and accept again at once: the shards have paused accepting, so the
        // fd just freed is the admin endpoint's.
        state_->spare_fds.pop_back();
        ++state_->spares_used;
        return accept();
    }
    LOG_WARN_LIMITED(state_->accept_log, steady_ms(), "admin: accept: %s; retrying in %lld ms",
                     ec.message().c_str(), static_cast<long long>(kAcceptRetry.count()));
    retry_.expires_after(kAcceptRetry);
    retry_.async_wait([this](const boost::system::error_code& wait_ec) {
        if (!wait_ec && !state_->closed) accept();
    });
}

}  // namespace ringlb::admin
