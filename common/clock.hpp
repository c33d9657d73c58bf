#pragma once

#include <time.h>

#include <cstdint>

namespace ringlb::common {

// CLOCK_MONOTONIC in nanoseconds: precise (a vDSO read), for durations that land in histograms
// or timer deadlines; the coarse clock's 1-4 ms steps would put every short one in one bucket.
inline uint64_t monotonic_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// CLOCK_MONOTONIC_COARSE in milliseconds: the tick's resolution, without a vDSO clock read cost
// that matters per event.
inline uint64_t coarse_monotonic_ms() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000u +
           static_cast<uint64_t>(ts.tv_nsec) / 1'000'000u;
}

}  // namespace ringlb::common
