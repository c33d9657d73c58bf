#pragma once

#include <system_error>

#include "common/address.hpp"
#include "common/fd.hpp"

namespace ringlb::common {

// A non-blocking, close-on-exec listening TCP socket with SO_REUSEADDR and SO_REUSEPORT, so each
// shard can bind its own socket to the same address and the kernel spreads connections. It also
// has TCP_NODELAY, which accepted sockets inherit.
Fd listen_tcp(const Address& address, int backlog, std::error_code& ec);

// A non-blocking, close-on-exec TCP socket for an outgoing connection to `family`.
Fd tcp_socket(int family, std::error_code& ec);

void set_nodelay(int fd);
std::error_code set_nonblocking(int fd);

// The address a socket is bound to (useful when binding port 0).
Address local_address(int fd);

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long raise_fd_limit();

}  // namespace ringlb::common
