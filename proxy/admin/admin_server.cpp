#include "proxy/admin/admin_server.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <memory>

#include "common/log.hpp"

namespace ringlb::admin {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr size_t kMaxRequest = 8192;
constexpr auto kRequestTimeout = std::chrono::seconds(5);

struct Response {
    int status;
    const char* reason;
    const char* content_type;
    std::string body;
};

// One admin connection: read one request head, answer, close.
class Exchange : public std::enable_shared_from_this<Exchange> {
  public:
    Exchange(tcp::socket socket,
             std::function<Response(const std::string&, const std::string&)> route)
        : socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          request_(kMaxRequest),
          route_(std::move(route)) {}

    void start() {
        auto self = shared_from_this();
        timer_.expires_after(kRequestTimeout);
        timer_.async_wait([self](const boost::system::error_code& ec) {
            if (!ec) {
                boost::system::error_code ignored;
                self->socket_.close(ignored);
            }
        });
        asio::async_read_until(
            socket_, request_, "\r\n\r\n",
            [self](const boost::system::error_code& ec, size_t) { self->on_request(ec); });
    }

  private:
    void on_request(const boost::system::error_code& ec) {
        Response response;
        if (ec) {
            if (ec == asio::error::not_found) {
                response = {431, "Request Header Fields Too Large", "text/plain", "too large\n"};
            } else {
                timer_.cancel();
                return;
            }
        } else {
            std::istream in(&request_);
            std::string method, target;
            in >> method >> target;
            response = route_(method, target);
        }
        out_ = "HTTP/1.1 " + std::to_string(response.status) + " " + response.reason +
               "\r\nContent-Type: " + response.content_type +
               "\r\nContent-Length: " + std::to_string(response.body.size()) +
               "\r\nConnection: close\r\n\r\n" + response.body;
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(out_),
                          [self](const boost::system::error_code&, size_t) {
                              boost::system::error_code ignored;
                              self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                              self->socket_.close(ignored);
                              self->timer_.cancel();
                          });
    }

    tcp::socket socket_;
    asio::steady_timer timer_;
    asio::streambuf request_;
    std::string out_;
    std::function<Response(const std::string&, const std::string&)> route_;
};

}  // namespace

AdminServer::AdminServer(asio::io_context& io, std::function<std::string()> metrics)
    : acceptor_(io), retry_(io), metrics_(std::move(metrics)) {}

std::error_code AdminServer::listen(const common::Address& address) {
    boost::system::error_code ec;
    tcp::endpoint endpoint;
    endpoint.resize(address.length);
    std::memcpy(endpoint.data(), address.sa(), address.length);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return {ec.value(), std::system_category()};
    accept();
    return {};
}

void AdminServer::close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
}

void AdminServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
            auto route = [this](const std::string& method, const std::string& target) -> Response {
                if (method != "GET" && method != "HEAD")
                    return {405, "Method Not Allowed", "text/plain", "use GET\n"};
                std::string path = target.substr(0, target.find('?'));
                if (path == "/metrics")
                    return {200, "OK", "text/plain; version=0.0.4; charset=utf-8", metrics_()};
                if (path == "/healthz") return {200, "OK", "text/plain", "ok\n"};
                if (path == "/ready") {
                    if (ready_) return {200, "OK", "text/plain", "ready\n"};
                    return {503, "Service Unavailable", "text/plain", "not ready\n"};
                }
                return {404, "Not Found", "text/plain", "try /metrics, /healthz or /ready\n"};
            };
            std::make_shared<Exchange>(std::move(socket), route)->start();
            accept();
            return;
        }
        // Out of fds even in the reserve the data path leaves it (common/fd_reserve.hpp), or
        // similar: try again shortly rather than spin, and log once per window, not per retry.
        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now().time_since_epoch());
        LOG_WARN_LIMITED(accept_error_log_, static_cast<uint64_t>(now.count()), "admin: accept: %s",
                         ec.message().c_str());
        retry_.expires_after(std::chrono::milliseconds(100));
        retry_.async_wait([this](const boost::system::error_code& wait_ec) {
            if (!wait_ec) accept();
        });
    });
}

}  // namespace ringlb::admin
