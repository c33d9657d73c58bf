#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "common/counter.hpp"

namespace ringlb::common {

// A histogram's buckets summed over shards at scrape time.
struct HistogramTotals {
    explicit HistogramTotals(std::span<const double> upper_bounds, double unit_seconds)
        : bounds(upper_bounds),
          counts(upper_bounds.size() + 1, 0),
          seconds_per_unit(unit_seconds) {}

    std::span<const double> bounds;  // seconds, ascending; +Inf is implied after the last
    std::vector<uint64_t> counts;  // per bucket, not cumulative; the last is (bounds.back(), +Inf)
    uint64_t sum_units = 0;
    double seconds_per_unit;  // of sum_units

    uint64_t count() const { return std::accumulate(counts.begin(), counts.end(), uint64_t{0}); }
    double sum_seconds() const { return static_cast<double>(sum_units) * seconds_per_unit; }
    // Prometheus's `le` buckets: observations <= bounds[i], the last one (+Inf) being count().
    std::vector<uint64_t> cumulative() const {
        std::vector<uint64_t> out(counts.size());
        std::partial_sum(counts.begin(), counts.end(), out.begin());
        return out;
    }
};

// A duration histogram written by one shard: the bounds are fixed at compile time, so every
// shard's buckets line up and are summed at scrape time (add_to), and each bucket is a plain
// single-writer Counter, so the data path touches no shared atomic. Observations are integers in
// 1/kUnitsPerSecond s; the sum is kept in that unit too, which bounds it at 2^64 units (584 years
// of total time in ns, 584 000 years in µs: long sessions count in µs).
template <const auto& kBounds, uint64_t kUnitsPerSecond>
class Histogram {
    static_assert(std::is_sorted(kBounds.begin(), kBounds.end()), "bounds must ascend");

  public:
    static constexpr std::span<const double> bounds() { return kBounds; }

    // `value` in 1/kUnitsPerSecond s. A value equal to a bound counts in that bound's bucket
    // (Prometheus's `le`, "less than or equal").
    void observe(uint64_t value) {
        size_t i = static_cast<size_t>(
            std::lower_bound(kUnitBounds.begin(), kUnitBounds.end(), value) - kUnitBounds.begin());
        buckets_[i].add();
        sum_.add(value);
    }

    void add_to(HistogramTotals& totals) const {
        for (size_t i = 0; i < buckets_.size() && i < totals.counts.size(); ++i)
            totals.counts[i] += buckets_[i].get();
        totals.sum_units += sum_.get();
    }

    static HistogramTotals empty_totals() {
        return HistogramTotals(bounds(), 1.0 / static_cast<double>(kUnitsPerSecond));
    }

  private:
    static constexpr auto to_units() {
        std::array<uint64_t, kBounds.size()> units{};
        for (size_t i = 0; i < kBounds.size(); ++i)
            units[i] =
                static_cast<uint64_t>(kBounds[i] * static_cast<double>(kUnitsPerSecond) + 0.5);
        return units;
    }
    static constexpr std::array<uint64_t, kBounds.size()> kUnitBounds = to_units();

    std::array<Counter, kBounds.size() + 1> buckets_;  // the last one is +Inf
    Counter sum_;
};

}  // namespace ringlb::common
