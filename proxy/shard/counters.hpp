#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "common/counter.hpp"
#include "common/histogram.hpp"
#include "proxy/tls/counters.hpp"

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
    X(buffer_starved, counter, "Receives that waited because every shard buffer was in use.")    \
    X(backends_down, gauge, "Backends this shard holds down by the health checks' verdicts.")

struct ShardCounters {
#define RINGLB_DECLARE_COUNTER(name, kind, help) Counter name;
    RINGLB_SHARD_COUNTERS(RINGLB_DECLARE_COUNTER)
#undef RINGLB_DECLARE_COUNTER
};

// Per-shard counters of one listener (label `listener`), summed over shards at scrape time.
// X(name, kind, help): exported as ringlb_listener_<name>_total (counter) or
// ringlb_listener_<name>.
#define RINGLB_LISTENER_COUNTERS(X)                                          \
    X(connections, counter, "Client connections accepted on this listener.") \
    X(active_connections, gauge, "Sessions of this listener open now.")

// ringlb_bytes_total{listener, direction}: bytes a listener's sessions forwarded, counted when
// written to the receiving socket. X(direction): the `direction` label values, client_to_upstream
// (received from the client, sent to the upstream) and upstream_to_client.
#define RINGLB_BYTE_DIRECTIONS(X) \
    X(client_to_upstream)         \
    X(upstream_to_client)
inline constexpr const char* kBytesHelp = "Bytes forwarded by the listener's sessions.";

enum class ByteDirection : uint8_t {
#define RINGLB_DIRECTION_ENUM(name) k_##name,
    RINGLB_BYTE_DIRECTIONS(RINGLB_DIRECTION_ENUM)
#undef RINGLB_DIRECTION_ENUM
        kCount
};
inline constexpr std::array<const char*, static_cast<size_t>(ByteDirection::kCount)>
    kByteDirectionNames{
#define RINGLB_DIRECTION_NAME(name) #name,
        RINGLB_BYTE_DIRECTIONS(RINGLB_DIRECTION_NAME)
#undef RINGLB_DIRECTION_NAME
    };

// ringlb_listener_prelude_total{listener, result}: what the prelude (proxy/shard/prelude.hpp) made
// of a client, counted once per step: a listener with both proxy_protocol and routes counts a
// proxy_* and then an SNI result for one connection. X(result, help).
#define RINGLB_PRELUDE_RESULTS(X)                                                              \
    X(proxy_accepted, "A PROXY header was read; its source address is the client's.")          \
    X(proxy_local, "A PROXY header without addresses (v2 LOCAL, v1 UNKNOWN).")                 \
    X(proxy_invalid, "Closed: a malformed PROXY header, or one of the version not accepted.")  \
    X(proxy_untrusted, "Closed: the peer is not in proxy_protocol_from.")                      \
    X(proxy_truncated, "Closed: the client ended the connection within the PROXY header.")     \
    X(proxy_timeout, "Closed: no complete PROXY header within prelude_timeout.")               \
    X(sni_exact, "Routed by the ClientHello's server name, to an exact route.")                \
    X(sni_wildcard, "Routed by the ClientHello's server name, to a wildcard route.")           \
    X(sni_unmatched, "A ClientHello without a server name, or one no route matches: default.") \
    X(not_tls, "The first bytes were not a TLS handshake: the listener's cluster.")            \
    X(tls_invalid, "A malformed or incomplete ClientHello: the listener's cluster.")           \
    X(silent, "Nothing received within prelude_timeout (or before EOF): the listener's cluster.")
inline constexpr const char* kPreludeHelp =
    "Clients by what the prelude read (PROXY header, TLS ClientHello) and what it did.";

enum class PreludeResult : uint8_t {
#define RINGLB_PRELUDE_ENUM(name, help) k_##name,
    RINGLB_PRELUDE_RESULTS(RINGLB_PRELUDE_ENUM)
#undef RINGLB_PRELUDE_ENUM
        kCount
};
inline constexpr std::array<const char*, static_cast<size_t>(PreludeResult::kCount)>
    kPreludeResultNames{
#define RINGLB_PRELUDE_NAME(name, help) #name,
        RINGLB_PRELUDE_RESULTS(RINGLB_PRELUDE_NAME)
#undef RINGLB_PRELUDE_NAME
    };

// ringlb_listener_rejected_total{listener, reason}: clients the listener's access control and
// limits (proxy/shard/admission.hpp) refused, closed at once without a byte. X(reason, help).
#define RINGLB_REJECT_REASONS(X)                                                          \
    X(denied, "The client's address is in deny.")                                         \
    X(not_allowed, "allow is set and the client's address is in none of its ranges.")     \
    X(max_connections, "The listener had max_connections sessions open (shard's share).") \
    X(max_connections_per_source,                                                         \
      "The client's address had max_connections_per_source open (shard's share).")        \
    X(rate_per_source, "The client's address used up its rate_per_source and burst.")
inline constexpr const char* kRejectedHelp =
    "Clients refused by the listener's access control (allow, deny) and limits.";

enum class RejectReason : uint8_t {
#define RINGLB_REJECT_ENUM(name, help) k_##name,
    RINGLB_REJECT_REASONS(RINGLB_REJECT_ENUM)
#undef RINGLB_REJECT_ENUM
        kCount
};
inline constexpr std::array<const char*, static_cast<size_t>(RejectReason::kCount)>
    kRejectReasonNames{
#define RINGLB_REJECT_NAME(name, help) #name,
        RINGLB_REJECT_REASONS(RINGLB_REJECT_NAME)
#undef RINGLB_REJECT_NAME
    };

// ringlb_session_duration_seconds{listener}: from the accept to the close of both sockets,
// observed in µs. Upper bounds (seconds) fixed so per-shard buckets sum: 1 ms (a refused or
// one-request session on a LAN) to 1 h (long-lived streams; longer ones land in +Inf).
inline constexpr std::array<double, 15> kSessionBuckets{0.001, 0.005, 0.01, 0.05, 0.1, 0.5,  1,   5,
                                                        10,    30,    60,   300,  600, 1800, 3600};
inline constexpr const char* kSessionDurationHelp =
    "Time from accepting a client to closing its session.";
using SessionHistogram = common::Histogram<kSessionBuckets, 1'000'000>;

struct ListenerCounters {
#define RINGLB_DECLARE_LISTENER_COUNTER(name, kind, help) Counter name;
    RINGLB_LISTENER_COUNTERS(RINGLB_DECLARE_LISTENER_COUNTER)
#undef RINGLB_DECLARE_LISTENER_COUNTER
    std::array<Counter, static_cast<size_t>(ByteDirection::kCount)> bytes;
    std::array<Counter, static_cast<size_t>(PreludeResult::kCount)> prelude;
    std::array<Counter, static_cast<size_t>(RejectReason::kCount)> rejected;
    SessionHistogram session_duration;
    // Clients' TLS handshakes, when the listener terminates TLS.
    tls::HandshakeCounters tls;
    void count(PreludeResult result) {
        prelude[static_cast<size_t>(result)].add();
    }
    void count(RejectReason reason) {
        rejected[static_cast<size_t>(reason)].add();
    }
};

}  // namespace ringlb::shard
