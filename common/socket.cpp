#include "common/socket.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>

namespace ringlb::common {

namespace {
std::error_code last_error() {
    return {errno, std::system_category()};
}
}  // namespace

Fd listen_tcp(const Address& address, int backlog, std::error_code& ec) {
    Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (!fd) {
        ec = last_error();
        return {};
    }
    int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        // Accepted sockets inherit TCP_NODELAY from the listener: one syscall per connection
        // saved.
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        ::bind(fd.get(), address.sa(), address.length) != 0 || ::listen(fd.get(), backlog) != 0) {
        ec = last_error();
        return {};
    }
    ec.clear();
    return fd;
}

Fd tcp_socket(int family, std::error_code& ec) {
    Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
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

Address local_address(int fd) {
    Address out;
    out.length = sizeof(out.storage);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&out.storage), &out.length) != 0)
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

}  // namespace ringlb::common
