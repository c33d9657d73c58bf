#include "common/fd_reserve.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>

namespace ringlb::common {

namespace {
// Written once at start before the shard threads exist (their creation orders it before their
// reads); relaxed loads keep the per-accept check a plain load.
std::atomic<int> g_threshold{INT_MAX};
std::atomic<int> g_spare_floor{INT_MAX};

int clamp_to_int(long value) {
    return static_cast<int>(std::min<long>(value, INT_MAX));
}
}  // namespace

long fd_reserve_for(long fd_limit) {
    if (fd_limit <= 0) return 0;
    return std::clamp(fd_limit / 8, 1L, kMaxFdReserve);
}

void reserve_fds(long fd_limit) {
    long reserve = fd_reserve_for(fd_limit);
    bool known = fd_limit > 0;
    g_threshold.store(known ? clamp_to_int(fd_limit - reserve) : INT_MAX,
                      std::memory_order_relaxed);
    long spares = std::min<long>(kControlSpareFds, reserve / 2);
    g_spare_floor.store(known && spares > 0 ? clamp_to_int(fd_limit - spares) : INT_MAX,
                        std::memory_order_relaxed);
}

int control_spare_floor() {
    return g_spare_floor.load(std::memory_order_relaxed);
}

bool fd_in_control_spares(int fd) {
    return fd >= control_spare_floor();
}

int fd_reserve_threshold() {
    return g_threshold.load(std::memory_order_relaxed);
}

bool fd_in_reserve(int fd) {
    return fd >= fd_reserve_threshold();
}

bool fd_below_reserve_free() {
    // An eventfd needs no path and no other fd; it takes the lowest free fd like any other.
    int probe = ::eventfd(0, EFD_CLOEXEC);
    if (probe < 0) return false;
    ::close(probe);
    return !fd_in_reserve(probe);
}

}  // namespace ringlb::common
