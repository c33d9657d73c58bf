#pragma once

#include <atomic>
#include <cstdint>

namespace ringlb::shard {

// A counter written by exactly one shard thread and read by the control thread at scrape time.
// Relaxed load+store (no read-modify-write) costs the same as a plain integer on the data path
// and keeps the cross-thread read well defined.
class Counter {
  public:
    void add(uint64_t n = 1) {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void sub(uint64_t n = 1) {
        v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }
    uint64_t get() const { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> v_{0};
};

// Every per-shard counter, declared once with its kind and help text; the stats log line and the
// Prometheus exposition both iterate this list. X(name, kind, help), kind is counter or gauge.
#define RINGLB_SHARD_COUNTERS(X)                                                                 \
    X(accepted, counter, "Client connections accepted.")                                         \
    X(active, gauge, "Proxied sessions currently open.")                                         \
    X(closed, counter, "Sessions finished.")                                                     \
    X(bytes_in, counter, "Bytes forwarded from clients to upstreams.")                           \
    X(bytes_out, counter, "Bytes forwarded from upstreams to clients.")                          \
    X(connect_failures, counter, "Upstream connect attempts that failed or timed out.")          \
    X(connect_retries, counter, "Connect attempts retried on another backend.")                  \
    X(no_backend, counter, "Sessions closed because no backend could be connected.")             \
    X(emfile_pauses, counter, "Times accepting paused because the process ran out of fds.")      \
    X(accept_errors, counter, "Accept errors other than running out of fds.")                    \
    X(forward_errors, counter, "Sessions ended by a socket error (reset, broken pipe).")         \
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
