#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "common/counter.hpp"
#include "common/histogram.hpp"
#include "proxy/tls/counters.hpp"

namespace ringlb::upstream {

using common::Counter;

// Why a connect attempt failed, declared once: the counters, the metric's `reason` label and the
// log lines all come from this list. X(name, help)
#define RINGLB_CONNECT_FAILURES(X)                                                      \
    X(refused, "The backend refused the connection (ECONNREFUSED).")                    \
    X(timeout, "connect_timeout passed, or the network said ETIMEDOUT/EHOSTUNREACH.")   \
    X(reset, "The connection was reset during the handshake.")                          \
    X(addr_not_avail, "No free source port or address (EADDRNOTAVAIL): see TIME_WAIT.") \
    X(no_fd, "No file descriptor for the upstream socket (EMFILE/ENFILE).")             \
    X(other, "Any other connect error.")

enum class ConnectFailure : uint8_t {
#define RINGLB_FAILURE_ENUM(name, help) k_##name,
    RINGLB_CONNECT_FAILURES(RINGLB_FAILURE_ENUM)
#undef RINGLB_FAILURE_ENUM
        kCount
};
const char* to_string(ConnectFailure failure);
ConnectFailure classify_connect_error(int err);

// Why a session ended, declared once. X(name, help)
#define RINGLB_CLOSE_REASONS(X)                                                                \
    X(done, "Both directions finished (FIN both ways).")                                       \
    X(error, "A socket error on either leg (reset, broken pipe).")                             \
    X(idle_timeout, "idle_timeout: no byte in either direction.")                              \
    X(client_idle_timeout, "client_idle_timeout: nothing received from the client.")           \
    X(server_idle_timeout, "server_idle_timeout: nothing received from the backend.")          \
    X(half_closed_timeout, "half_closed_timeout: inactivity after one side's FIN.")            \
    X(max_duration, "max_duration reached.")                                                   \
    X(no_backend, "No backend could be connected (all tried, failed or excluded).")            \
    X(queue_full, "Every backend was at max_connections and the wait queue was full.")         \
    X(queue_timeout, "Waited in the queue for a backend slot longer than queue.timeout.")      \
    X(queue_abandoned,                                                                         \
      "The client reset while it waited in the queue (or in the connect that followed).")      \
    X(shutdown, "ringlb stopped while the session was open.")                                  \
    X(drained, "drain_timeout passed during a graceful drain (closed over drain_spread).")     \
    X(refused,                                                                                 \
      "Refused in the prelude: no valid PROXY header in time, an untrusted peer, or a failed " \
      "TLS handshake with the client.")                                                        \
    X(tls_handshake, "The backend's TLS handshake failed (certificate, protocol) or timed out.")

enum class CloseReason : uint8_t {
#define RINGLB_CLOSE_ENUM(name, help) k_##name,
    RINGLB_CLOSE_REASONS(RINGLB_CLOSE_ENUM)
#undef RINGLB_CLOSE_ENUM
        kCount
};
const char* to_string(CloseReason reason);
// Whether a session closing for `reason` had a backend (the others never got one).
constexpr bool close_reason_has_backend(CloseReason reason) {
    return reason != CloseReason::k_no_backend && reason != CloseReason::k_queue_full &&
           reason != CloseReason::k_queue_timeout && reason != CloseReason::k_queue_abandoned &&
           reason != CloseReason::k_refused;
}

// Per-shard counters of one backend, written only by that shard, summed at scrape time.
// X(name, kind, help)
#define RINGLB_BACKEND_COUNTERS(X)                                                          \
    X(connections, counter, "Sessions handed a connected socket to this backend.")          \
    X(active_connections, gauge, "Sessions connecting or connected to this backend.")       \
    X(pool_hits, counter, "Sessions served from the warm pool.")                            \
    X(pool_misses, counter, "Sessions that found the warm pool empty and connected.")       \
    X(pool_discarded, counter, "Pooled sockets dropped: closed by the backend or too old.") \
    X(pool_connects, counter, "Connects made to fill the warm pool.")                       \
    X(pool_idle, gauge, "Connected sockets waiting in the warm pool.")

struct BackendCounters {
#define RINGLB_DECLARE_BACKEND_COUNTER(name, kind, help) Counter name;
    RINGLB_BACKEND_COUNTERS(RINGLB_DECLARE_BACKEND_COUNTER)
#undef RINGLB_DECLARE_BACKEND_COUNTER
    std::array<Counter, static_cast<size_t>(ConnectFailure::kCount)> connect_failures;
    std::array<Counter, static_cast<size_t>(CloseReason::kCount)> closes;
};

// ringlb_connect_duration_seconds{cluster}: upper bounds (seconds), fixed so per-shard buckets sum;
// observed in ns (a loopback connect takes tens of µs).
inline constexpr std::array<double, 14> kConnectBuckets{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
inline constexpr const char* kConnectDurationHelp =
    "Time from connect() to an established upstream socket (clients' connects and warm pool "
    "fills).";
using ConnectHistogram = common::Histogram<kConnectBuckets, 1'000'000'000>;

// Per-shard counters of one cluster. X(name, kind, help)
#define RINGLB_CLUSTER_COUNTERS(X)                                                                 \
    X(queued, counter, "Clients that waited in the queue because every backend was full.")         \
    X(queue_timeouts, counter, "Queued clients closed after queue.timeout.")                       \
    X(queue_abandoned, counter,                                                                    \
      "Queued clients that reset before they got a backend: they left the queue at once.")         \
    X(queue_full, counter, "Clients closed because every backend was full and the queue too.")     \
    X(queue_length, gauge, "Clients waiting in the queue now.")                                    \
    X(no_backend, counter, "Sessions closed because no backend could be connected.")               \
    X(retries, counter, "Connect attempts retried on another backend.")                            \
    X(all_down, counter,                                                                           \
      "Clients that found every backend down by health checks: tried anyway "                      \
      "(when_all_down = try_anyway) or closed as no_backend (fail).")                              \
    X(connects, counter, "Connects started for clients (pool fills excluded); see port forecast.") \
    X(tls_inline_handshakes, counter,                                                              \
      "Sessions that waited for a TLS handshake with their backend: no pooled connection "         \
      "handshaked in advance was handed over.")

struct ClusterCounters {
#define RINGLB_DECLARE_CLUSTER_COUNTER(name, kind, help) Counter name;
    RINGLB_CLUSTER_COUNTERS(RINGLB_DECLARE_CLUSTER_COUNTER)
#undef RINGLB_DECLARE_CLUSTER_COUNTER
    ConnectHistogram connect_duration;
    // Backends' TLS handshakes, when the cluster originates TLS (warm pool fills included).
    tls::HandshakeCounters tls;
};

}  // namespace ringlb::upstream
