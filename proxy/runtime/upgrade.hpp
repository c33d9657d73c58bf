#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/address.hpp"
#include "common/fd.hpp"

namespace ringlb::runtime {

// Binary upgrade: the running process hands its listening sockets (SO_REUSEPORT groups, and the
// admin socket) to a new one over a Unix socket with SCM_RIGHTS, so the sockets, and the
// connections queued in them, never close (HAProxy's "expose-fd listeners", Envoy's hot restart).
// The exchange, one text line per message:
//   new -> old  "UPGRADE 1"
//   old -> new  "L ADDRESS" with the group's sockets (several lines for a large group), ...,
//               "A ADDRESS" with the admin socket (when there is one), then "E"
//   new -> old  "READY" once the new process serves; the old one stops accepting and drains
//   old -> new  "BYE" once it has closed the upgrade socket, which the new process then binds.
// A new process that exits or closes before READY changes nothing: the old one keeps serving.

// What the old process hands over.
struct Handover {
    std::vector<std::pair<common::Address, std::vector<common::Fd>>> listeners;
    std::optional<std::pair<common::Address, common::Fd>> admin;
};

// The old process's side: serves `path` (mode 0600; only the same user, or root, may connect).
class UpgradeServer {
  public:
    struct Hooks {
        std::function<Handover()> handover;  // duplicates of what to hand over
        std::function<void()> on_ready;      // the new process serves: stop accepting, drain
    };
    UpgradeServer(boost::asio::io_context& io, std::string path, Hooks hooks);
    ~UpgradeServer();
    // Binds `path` (replacing a stale file no process serves) and accepts.
    std::error_code start();
    // Stops accepting and removes the path; a connection under way is dropped.
    void close();

  private:
    void accept();
    void serve(std::shared_ptr<boost::asio::local::stream_protocol::socket> peer);

    boost::asio::io_context& io_;
    std::string path_;
    Hooks hooks_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    bool busy_ = false;  // one upgrade at a time
    bool closed_ = false;
};

// The new process's side.
class UpgradeClient {
  public:
    // Connects to `path` and takes the running process's sockets; nullopt with the reason.
    static std::optional<UpgradeClient> take_over(const std::string& path, std::string* error);
    Handover& handover() { return handover_; }
    // Says READY and waits (bounded) for BYE; the old process drains from then on.
    std::error_code confirm();

  private:
    common::Fd conn_;
    Handover handover_;
};

}  // namespace ringlb::runtime
