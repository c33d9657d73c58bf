#pragma once

namespace ringlb::common {

// The top of the fd table is kept for the control plane (the admin endpoint's sockets), so that
// /metrics still answers while the data path has used every fd it may: without it, the shards
// retried accept every 100 ms and took each fd the moment it freed, and /metrics timed out
// (11,000 idle clients at a 20,000 fd limit).
//
// The kernel always hands out the lowest free fd, so an fd at or above a threshold means every
// fd below it is in use: one comparison tells how full the table is. The reserve has two halves:
//  - its lower half absorbs what the data path opens after it decided to stop growing: a shard
//    stops accepting once a client's fd lands in the reserve (fd_in_reserve), but the clients
//    accepted meanwhile and their upstream sockets still need fds (io_uring's multishot accept
//    hands over a burst: 300 clients waiting in the backlog at a limit of 256 took every fd
//    left, and the admin endpoint's accept failed with EMFILE);
//  - its upper half is the control plane's alone (fd_in_control_reserve): a data-path fd that
//    lands there is closed at once. Pooled sockets and pipes, which are optional, stay below
//    the reserve altogether.

// fds kept back: kMaxFdReserve, or an eighth of the limit when that is smaller (but at least
// one), so that a small limit (64 in the tests) still leaves the data path most of its fds.
inline constexpr long kMaxFdReserve = 64;
long fd_reserve_for(long fd_limit);

// Keeps the top fd_reserve_for(fd_limit) fds back. Call once at start, before any shard runs.
// Until then (and for a limit <= 0, unknown) nothing is reserved.
void reserve_fds(long fd_limit);
// The lowest fd of the reserve, and of its upper half.
int fd_reserve_threshold();
int fd_control_reserve_threshold();
// Whether `fd` lies in the reserve: the data path has used its share of the table.
bool fd_in_reserve(int fd);
// Whether `fd` lies in the reserve's upper half, which only the control plane may hold.
bool fd_in_control_reserve(int fd);
// Whether the next fd opened would land below the reserve (probed by opening one and closing it
// again); false also when the process is out of fds altogether.
bool fd_below_reserve_free();

}  // namespace ringlb::common
