#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "common/counter.hpp"
#include "common/histogram.hpp"

namespace ringlb::tls {

// How a TLS handshake ended, declared once: ringlb_listener_tls_handshakes_total (ringlb
// terminates: the client's handshake) and ringlb_cluster_tls_handshakes_total (ringlb
// originates: the backend's) label `result` with these. X(result, help)
#define RINGLB_TLS_HANDSHAKE_RESULTS(X)                                                        \
    X(ok, "Finished with a full handshake.")                                                   \
    X(resumed, "Finished, resuming an earlier session (a ticket).")                            \
    X(protocol, "Failed: malformed bytes, no shared version or cipher, or an alert.")          \
    X(certificate, "Failed: the peer's certificate did not verify, or a required one lacked.") \
    X(closed, "Failed: the peer closed or reset the connection during the handshake.")         \
    X(timeout, "Failed: handshake_timeout passed.")

enum class HandshakeResult : uint8_t {
#define RINGLB_TLS_RESULT_ENUM(name, help) k_##name,
    RINGLB_TLS_HANDSHAKE_RESULTS(RINGLB_TLS_RESULT_ENUM)
#undef RINGLB_TLS_RESULT_ENUM
        kCount
};
inline constexpr std::array<const char*, static_cast<size_t>(HandshakeResult::kCount)>
    kHandshakeResultNames{
#define RINGLB_TLS_RESULT_NAME(name, help) #name,
        RINGLB_TLS_HANDSHAKE_RESULTS(RINGLB_TLS_RESULT_NAME)
#undef RINGLB_TLS_RESULT_NAME
    };
inline constexpr const char* kHandshakesHelp = "TLS handshakes by how they ended.";

// ringlb_*_tls_handshake_duration_seconds: from the first handshake byte sent or received to
// the finished handshake, observed in µs (a loopback TLS 1.3 handshake takes about a
// millisecond of CPU; a slow client takes up to handshake_timeout).
inline constexpr std::array<double, 12> kHandshakeBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                          0.05,   0.1,   0.25,   0.5,   1,    5};
inline constexpr const char* kHandshakeDurationHelp =
    "Time TLS handshakes took to finish (successful ones).";
using HandshakeHistogram = common::Histogram<kHandshakeBuckets, 1'000'000>;

// One shard's handshake counters of one listener or one cluster; summed at scrape time.
struct HandshakeCounters {
    std::array<common::Counter, static_cast<size_t>(HandshakeResult::kCount)> results;
    HandshakeHistogram duration;
    void count(HandshakeResult result) { results[static_cast<size_t>(result)].add(); }
};

}  // namespace ringlb::tls
