#pragma once

#include <sys/types.h>

#include <cstdint>
#include <system_error>
#include <vector>

#include "common/address.hpp"
#include "common/fd.hpp"

namespace ringlb::common {

// A non-blocking, close-on-exec listening TCP socket with SO_REUSEADDR and SO_REUSEPORT. It also
// has TCP_NODELAY, which accepted sockets inherit. It joins any SO_REUSEPORT group of the same
// user already listening on `address`; the proxy's listeners use listen_tcp_group() instead.
Fd listen_tcp(const Address& address, int backlog, std::error_code& ec);

// `count` (>= 1) listening sockets on `address`, one per shard, in one SO_REUSEPORT group over
// which the kernel spreads connections. The first bind is exclusive: the call fails with
// EADDRINUSE when anything already listens on `address` or on an address overlapping it (a
// wildcard), SO_REUSEPORT or not, so a second proxy started on a served address fails instead of
// silently taking a share of the traffic. (A process of the same user that binds later with
// SO_REUSEPORT, as listen_tcp() does, can still join; the kernel allows that.) Each socket is as
// listen_tcp()'s. Port 0 is resolved by the first bind and reused for the others. On failure
// `ec` is set and nothing stays open.
std::vector<Fd> listen_tcp_group(const Address& address, int backlog, unsigned count,
                                 std::error_code& ec);

// How listen_group() opens a listener's sockets.
struct ListenOptions {
    int backlog = 4096;
    // IPPROTO_MPTCP instead of TCP where the kernel allows it (see listen_group()).
    bool mptcp = false;
    // AF_UNIX only: the socket file's permission bits and owner; -1 keeps what bind() made (the
    // umask, this process's ids).
    int mode = -1;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
};

// A listener's sockets, one per shard (`count` >= 1). An IP address gets listen_tcp_group()'s
// SO_REUSEPORT group; with options.mptcp its sockets are MPTCP ones, unless socket() refuses the
// protocol (EPROTONOSUPPORT, ENOPROTOOPT, EINVAL: net.mptcp.enabled = 0 or no CONFIG_MPTCP), when
// they are TCP and *mptcp_refused holds why. An AF_UNIX path cannot be in a SO_REUSEPORT group:
// one socket is opened and every shard gets a dup() of it, so all shards wait on one accept
// queue (see README, "bind"). Its file is replaced only when stale (a socket file nothing listens
// on: connect() is refused); a file some process still serves, or that is no socket, fails with
// EADDRINUSE. The mode and owner are set before listen(), so no client connects through wider
// permissions. On failure `ec` is set and nothing stays open.
std::vector<Fd> listen_group(const Address& address, const ListenOptions& options, unsigned count,
                             std::error_code& ec, std::error_code* mptcp_refused = nullptr);

// Removes the socket file of an AF_UNIX listener that this process stops serving (anything else
// at the path, or no path, is left alone).
void remove_unix_socket(const Address& address);

// A non-blocking, close-on-exec TCP socket for an outgoing connection to `family` (AF_UNIX: a
// unix stream socket).
Fd tcp_socket(int family, std::error_code& ec);

void set_nodelay(int fd);
std::error_code set_nonblocking(int fd);

// accept(2) errors that belong to the one connection being accepted (aborted before it was taken,
// a network error of its own, EINTR): the next accept may well succeed.
bool accept_error_is_transient(int err);

// How many established connections wait in a listening socket's accept queue (TCP_INFO's
// tcpi_unacked on a LISTEN socket); -1 when the kernel does not say.
int accept_queue_length(int listen_fd);

// The address a socket is bound to (useful when binding port 0). length 0 on failure.
Address local_address(int fd);
// The address of a connected socket's peer. length 0 on failure (e.g. ENOTCONN: it has gone).
Address peer_address(int fd);

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long raise_fd_limit();

// Upstream socket options. Each returns the errno of the first call that failed (empty on
// success) and neither logs nor throws: the connector decides what a failure means.

// SO_KEEPALIVE=1, then TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT for each value > 0; a value of 0
// keeps the kernel's default (net.ipv4.tcp_keepalive_time / _intvl / _probes).
std::error_code set_keepalive(int fd, int idle_s, int interval_s, int count);

// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged (and, with keepalive, how long
// probes may go unanswered) before the kernel aborts the connection with ETIMEDOUT. 0: the kernel
// default.
std::error_code set_user_timeout(int fd, unsigned ms);

// SO_LINGER {on, 0}: close() then sends RST and discards unsent data, so this side keeps no
// TIME_WAIT entry for the 4-tuple.
std::error_code set_linger_zero(int fd);

// Binds an unconnected socket to `source` (its port is ignored: port 0 is bound) with
// IP_BIND_ADDRESS_NO_PORT (Linux 4.2+, IPv4 and IPv6 sockets), which defers the choice of the
// source port to connect(). The kernel then picks a port whose full 4-tuple is free, so one port
// serves many destinations; a plain bind() to port 0 would reserve the port for every destination.
// When no port is free, connect() (also a non-blocking one) fails at once with EADDRNOTAVAIL.
std::error_code bind_source(int fd, const Address& source);

// IP_LOCAL_PORT_RANGE (Linux 6.3+, IPv4 and IPv6 sockets): narrows the ports connect() picks from
// to [lo, hi]. The kernel applies each bound only when it lies inside
// net.ipv4.ip_local_port_range and silently ignores a bound outside it. ENOPROTOOPT on older
// kernels, EINVAL when lo > hi. 0/0 restores the system range.
std::error_code set_local_port_range(int fd, uint16_t lo, uint16_t hi);

// Whether this kernel knows IP_LOCAL_PORT_RANGE (probed on a throwaway socket).
bool local_port_range_supported();

}  // namespace ringlb::common
