#include "proxy/runtime/upgrade.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/fd_passing.hpp"
#include "common/log.hpp"

namespace ringlb::runtime {

namespace {

using namespace std::chrono_literals;
namespace local = boost::asio::local;

// Every exchange but the wait for READY is a few lines on a local socket.
constexpr auto kStepTimeout = 5000ms;

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), std::min(path.size(), sizeof(a.sun_path) - 1));
    return a;
}

// Whether a process serves `path` now (a stale file left by a crash does not).
bool served(const std::string& path) {
    common::Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a = unix_address(path);
    return probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

std::error_code send_group(int sock, char tag, const common::Address& address,
                           const std::vector<common::Fd>& fds) {
    std::vector<int> raw;
    for (const auto& fd : fds) raw.push_back(fd.get());
    std::string line = std::string(1, tag) + " " + address.to_string() + "\n";
    size_t at = 0;
    do {
        size_t n = std::min(common::kMaxFdsPerMessage, raw.size() - at);
        if (auto ec = common::send_line(sock, line, {raw.data() + at, n}, kStepTimeout)) return ec;
        at += n;
    } while (at < raw.size());
    return {};
}

}  // namespace

UpgradeServer::UpgradeServer(boost::asio::io_context& io, std::string path, Hooks hooks)
    : io_(io), path_(std::move(path)), hooks_(std::move(hooks)), acceptor_(io) {}

UpgradeServer::~UpgradeServer() {
    close();
}

std::error_code UpgradeServer::start() {
    if (served(path_)) return std::make_error_code(std::errc::address_in_use);
    ::unlink(path_.c_str());  // stale: nothing answers on it
    boost::system::error_code ec;
    local::stream_protocol::endpoint endpoint(path_);
    acceptor_.open(endpoint.protocol(), ec);
    // Only this user may take the sockets: the file is made 0600 before anyone can connect.
    mode_t old_mask = ::umask(0177);
    if (!ec) acceptor_.bind(endpoint, ec);
    ::umask(old_mask);
    if (!ec) acceptor_.listen(4, ec);
    if (ec) return {ec.value(), std::system_category()};
    accept();
    return {};
}

void UpgradeServer::close() {
    if (closed_) return;
    closed_ = true;
    if (acceptor_.is_open()) {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        ::unlink(path_.c_str());
    }
}

void UpgradeServer::accept() {
    auto peer = std::make_shared<local::stream_protocol::socket>(io_);
    acceptor_.async_accept(*peer, [this, peer](const boost::system::error_code& ec) {
        if (ec == boost::asio::error::operation_aborted || closed_) return;
        if (!ec) serve(peer);
        accept();
    });
}

void UpgradeServer::serve(std::shared_ptr<local::stream_protocol::socket> peer) {
    int sock = peer->native_handle();
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != ::geteuid() && cred.uid != 0)) {
        LOG_WARN("upgrade: refused a connection from uid %u on %s", cred.uid, path_.c_str());
        return;
    }
    if (busy_) {
        LOG_WARN("upgrade: a second new process (pid %d) tried while one is under way", cred.pid);
        return;
    }
    std::string line;
    std::vector<common::Fd> ignored;
    if (auto ec = common::recv_line(sock, line, ignored, kStepTimeout); ec || line != "UPGRADE 1") {
        LOG_WARN("upgrade: pid %d did not ask for the sockets (%s)", cred.pid,
                 ec ? ec.message().c_str() : line.c_str());
        return;
    }
    Handover handover = hooks_.handover();
    std::error_code ec;
    size_t sockets = 0;
    for (const auto& [address, fds] : handover.listeners) {
        if (!ec) ec = send_group(sock, 'L', address, fds);
        sockets += fds.size();
    }
    if (!ec && handover.admin) {
        std::vector<common::Fd> one;
        one.push_back(std::move(handover.admin->second));
        ec = send_group(sock, 'A', handover.admin->first, one);
    }
    if (!ec) ec = common::send_line(sock, "E\n", {}, kStepTimeout);
    if (ec) {
        LOG_WARN("upgrade: handing the sockets to pid %d failed: %s; still serving", cred.pid,
                 ec.message().c_str());
        return;
    }
    // Our duplicates close here; the new process holds its own.
    LOG_INFO(
        "upgrade: handed %zu listening sockets of %zu listeners to pid %d; serving until it "
        "is ready",
        sockets, handover.listeners.size(), cred.pid);
    busy_ = true;
    peer->async_wait(local::stream_protocol::socket::wait_read,
                     [this, peer, pid = cred.pid](const boost::system::error_code& wait_ec) {
                         busy_ = false;
                         if (wait_ec || closed_) return;
                         std::string reply;
                         std::vector<common::Fd> none;
                         auto rec = common::recv_line(peer->native_handle(), reply, none, 100ms);
                         if (rec || reply != "READY") {
                             LOG_WARN(
                                 "upgrade: pid %d went away before it was ready (%s); "
                                 "still serving",
                                 pid, rec ? rec.message().c_str() : reply.c_str());
                             return;
                         }
                         LOG_INFO(
                             "upgrade: pid %d serves; this process stops accepting and "
                             "drains",
                             pid);
                         close();  // frees the path for the new process
                         common::send_line(peer->native_handle(), "BYE\n", {}, kStepTimeout);
                         hooks_.on_ready();
                     });
}

std::optional<UpgradeClient> UpgradeClient::take_over(const std::string& path, std::string* error) {
    UpgradeClient client;
    client.conn_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a = unix_address(path);
    if (!client.conn_ ||
        ::connect(client.conn_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        *error =
            "upgrade: cannot reach the running ringlb on " + path + ": " + std::strerror(errno);
        return std::nullopt;
    }
    if (auto ec = common::send_line(client.conn_.get(), "UPGRADE 1\n", {}, kStepTimeout)) {
        *error = "upgrade: " + path + ": " + ec.message();
        return std::nullopt;
    }
    for (;;) {
        std::string line;
        std::vector<common::Fd> fds;
        if (auto ec = common::recv_line(client.conn_.get(), line, fds, kStepTimeout)) {
            *error = "upgrade: receiving the sockets from " + path + ": " + ec.message();
            return std::nullopt;
        }
        if (line == "E") return client;
        if (line.size() < 3 || (line[0] != 'L' && line[0] != 'A') || line[1] != ' ') {
            *error = "upgrade: unexpected message from the running ringlb: " + line;
            return std::nullopt;
        }
        std::string parse_error;
        auto address = common::parse_socket_address(std::string_view(line).substr(2), &parse_error);
        if (!address) {
            *error = "upgrade: bad address from the running ringlb: " + line;
            return std::nullopt;
        }
        if (line[0] == 'A') {
            if (fds.size() == 1) client.handover_.admin.emplace(*address, std::move(fds[0]));
            continue;
        }
        auto& groups = client.handover_.listeners;
        auto it = std::find_if(groups.begin(), groups.end(),
                               [&](const auto& g) { return g.first == *address; });
        if (it == groups.end()) {
            groups.emplace_back(*address, std::vector<common::Fd>{});
            it = groups.end() - 1;
        }
        for (auto& fd : fds) it->second.push_back(std::move(fd));
    }
}

std::error_code UpgradeClient::confirm() {
    if (auto ec = common::send_line(conn_.get(), "READY\n", {}, kStepTimeout)) return ec;
    std::string line;
    std::vector<common::Fd> none;
    if (auto ec = common::recv_line(conn_.get(), line, none, kStepTimeout)) return ec;
    if (line != "BYE") return std::make_error_code(std::errc::protocol_error);
    conn_.reset();
    return {};
}

}  // namespace ringlb::runtime
