#pragma once

#include <cstdint>

#include "common/counter.hpp"

namespace ringlb::shard {

using common::Counter;

// Every per-shard counter, declared once with its kind and help text; the stats log line and the
// Prometheus exposition both iterate this list. X(name, kind, help), kind is counter or gauge.
#define RINGLB_SHARD_COUNTERS(X)                                                                 \
    X(accepted, counter, "Client connections accepted.")                                         \
    X(active, gauge, "Proxied sessions currently open.")                                         \
    X(closed, counter, "Sessions finished.")                                                     \
    X(bytes_in, counter, "Bytes forwarded from clients to upstreams.")                           \
    X(bytes_out, counter, "Bytes forwarded from upstreams to clients.")                          \
    X(emfile_pauses, counter, "Times accepting paused because the process ran out of fds.")      \
    X(accept_errors, counter, "Accept errors other than running out of fds.")                    \
    X(forward_errors, counter, "Sessions ended by a socket error (reset, broken pipe).")         \
    X(timeouts, counter, "Sessions closed by a timeout (reason per backend in closes_total).")   \
    X(splice_directions, counter, "Session directions started with splice forwarding.")          \
    X(buffered_directions, counter, "Session directions started with buffered forwarding.")      \
    X(pipe_pool_exhausted, counter, "Splice directions that fell back to buffered: pool empty.") \
    X(buffer_starved, counter, "Receives that waited because every shard buffer was in use.")

struct ShardCounters {
#define RINGLB_DECLARE_COUNTER(name, kind, help) Counter name;
    RINGLB_SHARD_COUNTERS(RINGLB_DECLARE_COUNTER)
#undef RINGLB_DECLARE_COUNTER
};

}  // namespace ringlb::shard
