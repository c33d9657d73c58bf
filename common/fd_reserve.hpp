#pragma once

namespace ringlb::common {

// The top of the fd table is kept back from the data path's growth: a shard stops accepting once
// a client's fd lands there (fd_in_reserve), so the clients already accepted still get their
// upstream sockets and the control plane (admin endpoint, later health checks and reloads)
// finds fds. Pooled sockets and pipes, which are optional, never take one of it. Without it the
// shards retried accept every 100 ms and took each fd the moment it freed, and /metrics timed
// out (11,000 idle clients at a 20,000 fd limit).
//
// The kernel always hands out the lowest free fd, so an fd at or above the threshold means
// every fd below it is in use: one comparison tells how full the table is.
//
// It is a soft bound: io_uring's multishot accept hands over the listen queue in a burst before
// the shard's pause takes effect (300 queued clients at a limit of 256 took every fd left), so
// the admin endpoint also holds spare fds of its own (proxy/admin/admin_server.cpp).

// The very top of the table (kControlSpareFds slots, at most half the reserve) holds the admin
// endpoint's spare fds, which it gives up to accept a connection when the process is out of fds
// altogether. A freed spare is then the only free fd: an upstream socket that lands there is
// closed again at once (as if out of fds), so the admin's accept, right after, gets it.
inline constexpr long kControlSpareFds = 4;
int control_spare_floor();  // the lowest of those slots; INT_MAX when none
bool fd_in_control_spares(int fd);

// fds kept back: kMaxFdReserve, or an eighth of the limit when that is smaller (but at least
// one), so that a small limit (64 in the tests) still leaves the data path most of its fds.
inline constexpr long kMaxFdReserve = 64;
long fd_reserve_for(long fd_limit);

// Keeps the top fd_reserve_for(fd_limit) fds back. Call once at start, before any shard runs.
// Until then (and for a limit <= 0, unknown) nothing is reserved.
void reserve_fds(long fd_limit);
// The lowest fd of the reserve.
int fd_reserve_threshold();
// Whether `fd` lies in the reserve: the data path has used its share of the table.
bool fd_in_reserve(int fd);
// Whether the next fd opened would land below the reserve (probed by opening one and closing it
// again); false also when the process is out of fds altogether.
bool fd_below_reserve_free();

}  // namespace ringlb::common
