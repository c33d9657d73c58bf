#pragma once

#include <optional>

namespace ringlb::admin {

// What the process uses, exported as ringlb_process_<name> (a counter with _total), read at
// scrape time from /proc/self and getrlimit/getrusage. X(name, kind, help)
#define RINGLB_PROCESS_METRICS(X)                                                               \
    X(open_fds, gauge, "Open file descriptors.")                                                \
    X(max_fds, gauge, "Most file descriptors the process may open (RLIMIT_NOFILE soft limit).") \
    X(resident_memory_bytes, gauge, "Resident memory size in bytes.")                           \
    X(virtual_memory_bytes, gauge, "Virtual memory size in bytes.")                             \
    X(start_time_seconds, gauge, "Start time of the process since the Unix epoch in seconds.")  \
    X(cpu_seconds, counter, "User and system CPU time spent in seconds.")

// A value read through a file descriptor (everything under /proc) is absent when none is free:
// the admin endpoint still answers when the process is out of fds, with what it could read.
struct ProcessStats {
#define RINGLB_PROCESS_FIELD(name, kind, help) std::optional<double> name;
    RINGLB_PROCESS_METRICS(RINGLB_PROCESS_FIELD)
#undef RINGLB_PROCESS_FIELD
};

ProcessStats read_process_stats();

}  // namespace ringlb::admin
