#pragma once

#include <atomic>
#include <cstdint>

namespace ringlb::common {

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
    // For gauges recomputed whole rather than counted.
    void set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
    uint64_t get() const { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> v_{0};
};

}  // namespace ringlb::common
