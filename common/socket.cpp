#include "common/socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

// glibc 2.36's <netinet/in.h> predates IP_LOCAL_PORT_RANGE (Linux 6.3); the value is the kernel's
// ABI, <linux/in.h> cannot be mixed with the glibc header.
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

namespace ringlb::common {

namespace {
std::error_code last_error() {
    return {errno, std::system_category()};
}

std::error_code set_int(int fd, int level, int name, int value) {
    if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) return last_error();
    return {};
}

enum class Bind { kJoin, kExclusive };

// See listen_tcp() and listen_tcp_group(); `protocol` is IPPROTO_TCP or IPPROTO_MPTCP.
Fd open_listener(const Address& address, int backlog, Bind mode, std::error_code& ec,
                 int protocol = IPPROTO_TCP) {
    auto fail = [&ec](std::error_code e) {
        ec = e;
        return Fd{};
    };
    Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
    if (!fd) return fail(last_error());
    // SO_REUSEADDR: a restarted proxy binds even while connections it accepted before sit in
    // TIME_WAIT on the port.
    // SO_REUSEPORT: the kernel checks it at bind() against the sockets already on the address,
    // and two sockets may share the address only when both had it set then. An exclusive bind
    // sets it only after bind() succeeded, before listen() (which adds the socket to the group):
    // that bind fails on any address already served, while the group's other sockets, bound
    // later with the flag, join. Of two proxies started on one address only one can succeed,
    // whatever the timing.
    // TCP_NODELAY: accepted sockets inherit it from the listener, one syscall per connection
    // saved.
    if (auto e = set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1)) return fail(e);
    if (mode == Bind::kJoin)
        if (auto e = set_int(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1)) return fail(e);
    // MPTCP passes TCP_NODELAY on to its subflows only since Linux 5.18; older ones refuse it.
    if (auto e = set_int(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1); e && protocol == IPPROTO_TCP)
        return fail(e);
    if (::bind(fd.get(), address.sa(), address.length) != 0) return fail(last_error());
    if (mode == Bind::kExclusive)
        if (auto e = set_int(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1)) return fail(e);
    if (::listen(fd.get(), backlog) != 0) return fail(last_error());
    ec.clear();
    return fd;
}
}  // namespace

Fd listen_tcp(const Address& address, int backlog, std::error_code& ec) {
    return open_listener(address, backlog, Bind::kJoin, ec);
}

namespace {
std::vector<Fd> open_group(const Address& address, int backlog, unsigned count, int protocol,
                           std::error_code& ec) {
    std::vector<Fd> group;
    Fd first = open_listener(address, backlog, Bind::kExclusive, ec, protocol);
    if (!first) return {};
    Address bound = local_address(first.get());
    group.push_back(std::move(first));
    while (group.size() < count) {
        Fd fd = open_listener(bound, backlog, Bind::kJoin, ec, protocol);
        if (!fd) return {};
        group.push_back(std::move(fd));
    }
    return group;
}

// A socket file left by a process that ended without removing it: connect() is refused. A
// non-blocking connect also answers EAGAIN for a live listener whose queue is full.
bool stale_unix_socket(const Address& address) {
    struct stat st {};
    if (::lstat(unix_path(address).c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    return probe && ::connect(probe.get(), address.sa(), address.length) != 0 &&
           errno == ECONNREFUSED;
}

Fd listen_unix(const Address& address, const ListenOptions& options, std::error_code& ec) {
    auto fail = [&ec](std::error_code e) {
        ec = e;
        return Fd{};
    };
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail(last_error());
    if (::bind(fd.get(), address.sa(), address.length) != 0) {
        if (errno != EADDRINUSE || !stale_unix_socket(address)) return fail(last_error());
        ::unlink(unix_path(address).c_str());
        if (::bind(fd.get(), address.sa(), address.length) != 0) return fail(last_error());
    }
    std::string path = unix_path(address);
    auto undo = [&](std::error_code e) {
        ::unlink(path.c_str());
        return fail(e);
    };
    // Until listen() every connect() is refused, so no client gets in through the umask's mode.
    if (options.mode >= 0 && ::chmod(path.c_str(), static_cast<mode_t>(options.mode)) != 0)
        return undo(last_error());
    if ((options.uid != static_cast<uid_t>(-1) || options.gid != static_cast<gid_t>(-1)) &&
        ::chown(path.c_str(), options.uid, options.gid) != 0)
        return undo(last_error());
    if (::listen(fd.get(), options.backlog) != 0) return undo(last_error());
    ec.clear();
    return fd;
}
}  // namespace

std::vector<Fd> listen_tcp_group(const Address& address, int backlog, unsigned count,
                                 std::error_code& ec) {
    return open_group(address, backlog, count, IPPROTO_TCP, ec);
}

std::vector<Fd> listen_group(const Address& address, const ListenOptions& options, unsigned count,
                             std::error_code& ec, std::error_code* mptcp_refused) {
    if (address.family() == AF_UNIX) {
        std::vector<Fd> group;
        group.push_back(listen_unix(address, options, ec));
        if (!group.front()) return {};
        while (group.size() < count) {
            Fd copy(::fcntl(group.front().get(), F_DUPFD_CLOEXEC, 0));
            if (!copy) {
                ec = last_error();
                ::unlink(unix_path(address).c_str());
                return {};
            }
            group.push_back(std::move(copy));
        }
        return group;
    }
    if (options.mptcp) {
        Fd probe(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP));
        if (probe) return open_group(address, options.backlog, count, IPPROTO_MPTCP, ec);
        int err = errno;
        if (err != EPROTONOSUPPORT && err != ENOPROTOOPT && err != EINVAL) {
            ec = {err, std::system_category()};
            return {};
        }
        if (mptcp_refused) *mptcp_refused = {err, std::system_category()};
    }
    return open_group(address, options.backlog, count, IPPROTO_TCP, ec);
}

void remove_unix_socket(const Address& address) {
    std::string path = unix_path(address);
    struct stat st {};
    if (!path.empty() && ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(path.c_str());
}

Fd tcp_socket(int family, std::error_code& ec) {
    Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   family == AF_UNIX ? 0 : IPPROTO_TCP));
    if (!fd)
        ec = last_error();
    else
        ec.clear();
    return fd;
}

void set_nodelay(int fd) {
    int one = 1;
    // Best effort: failure only costs latency, never correctness.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::error_code set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return last_error();
    return {};
}

bool accept_error_is_transient(int err) {
    switch (err) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            return true;
        default:
            return false;
    }
}

int accept_queue_length(int listen_fd) {
    tcp_info info{};
    socklen_t len = sizeof(info);
    if (::getsockopt(listen_fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        len < offsetof(tcp_info, tcpi_unacked) + sizeof(info.tcpi_unacked) ||
        info.tcpi_state != TCP_LISTEN)
        return -1;
    return static_cast<int>(info.tcpi_unacked);
}

Address local_address(int fd) {
    Address out;
    out.length = sizeof(out.storage);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&out.storage), &out.length) != 0)
        out.length = 0;
    return out;
}

Address peer_address(int fd) {
    Address out;
    out.length = sizeof(out.storage);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&out.storage), &out.length) != 0)
        out.length = 0;
    return out;
}

long raise_fd_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
        ::getrlimit(RLIMIT_NOFILE, &lim);
    }
    return static_cast<long>(lim.rlim_cur);
}

std::error_code set_keepalive(int fd, int idle_s, int interval_s, int count) {
    if (auto ec = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1)) return ec;
    if (idle_s > 0)
        if (auto ec = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) return ec;
    if (interval_s > 0)
        if (auto ec = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) return ec;
    if (count > 0)
        if (auto ec = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, count)) return ec;
    return {};
}

std::error_code set_user_timeout(int fd, unsigned ms) {
    unsigned value = ms;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &value, sizeof(value)) != 0)
        return last_error();
    return {};
}

std::error_code set_linger_zero(int fd) {
    linger value{};
    value.l_onoff = 1;
    value.l_linger = 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, sizeof(value)) != 0) return last_error();
    return {};
}

std::error_code bind_source(int fd, const Address& source) {
    Address bound = source;
    if (bound.family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&bound.storage)->sin_port = 0;
    else if (bound.family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&bound.storage)->sin6_port = 0;
    else
        return {EAFNOSUPPORT, std::system_category()};
    // An IPv6 TCP socket hands SOL_IP options to the IPv4 code, which keeps the flag in the common
    // inet_sock that inet6_bind() also reads.
    if (auto ec = set_int(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)) return ec;
    if (::bind(fd, bound.sa(), bound.length) != 0) return last_error();
    return {};
}

std::error_code set_local_port_range(int fd, uint16_t lo, uint16_t hi) {
    uint32_t value = (static_cast<uint32_t>(hi) << 16) | lo;
    if (::setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &value, sizeof(value)) != 0)
        return last_error();
    return {};
}

bool local_port_range_supported() {
    Fd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!probe) return false;
    // 0/0 means "the system range": a no-op that only an older kernel rejects (ENOPROTOOPT).
    return !set_local_port_range(probe.get(), 0, 0);
}

}  // namespace ringlb::common
