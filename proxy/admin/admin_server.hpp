#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <string>
#include <system_error>

#include "common/address.hpp"
#include "common/log.hpp"

namespace ringlb::admin {

// The admin HTTP endpoint on the control thread (never on a shard):
//   GET /metrics  Prometheus text format, built by `metrics` at scrape time
//   GET /healthz  200 while the process runs
//   GET /ready    200 once every shard serves, 503 while starting or stopping
// One request per connection, bounded in size and time, so a stuck client costs nothing.
class AdminServer {
  public:
    AdminServer(boost::asio::io_context& io, std::function<std::string()> metrics);

    // Binds and starts accepting; returns the error instead of throwing.
    std::error_code listen(const common::Address& address);
    void set_ready(bool ready) { ready_ = ready; }
    void close();

  private:
    void accept();

    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;
    std::function<std::string()> metrics_;
    bool ready_ = false;
    common::LogLimiter accept_error_log_;
};

}  // namespace ringlb::admin
