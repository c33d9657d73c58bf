#include "common/histogram.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace ringlb::common {
namespace {

constexpr std::array<double, 3> kBounds{0.001, 0.01, 1};
using MsHistogram = Histogram<kBounds, 1'000'000>;  // observed in µs

TEST(HistogramTest, AValueOnABoundCountsInThatBucket) {
    MsHistogram h;
    h.observe(1000);    // 0.001 s: le="0.001"
    h.observe(1001);    // just above: le="0.01"
    h.observe(0);       // le="0.001"
    h.observe(10'000);  // 0.01 s: le="0.01"
    h.observe(1'000'000);
    h.observe(1'000'001);  // above the last bound: +Inf only
    HistogramTotals totals = MsHistogram::empty_totals();
    h.add_to(totals);
    EXPECT_EQ(totals.counts, (std::vector<uint64_t>{2, 2, 1, 1}));
    EXPECT_EQ(totals.cumulative(), (std::vector<uint64_t>{2, 4, 5, 6}));
    EXPECT_EQ(totals.count(), 6u);
    EXPECT_EQ(totals.sum_units, 1000u + 1001u + 10'000u + 1'000'000u + 1'000'001u);
    EXPECT_DOUBLE_EQ(totals.sum_seconds(), 2.012002);
}

// Shards' histograms merge bucket by bucket: the merged counts are the sums, the cumulative
// series never decreases and ends at the total count.
TEST(HistogramTest, ShardsMergeBucketByBucket) {
    std::array<MsHistogram, 3> shards;
    std::vector<uint64_t> expected(kBounds.size() + 1, 0);
    uint64_t expected_sum = 0;
    const std::vector<std::vector<uint64_t>> values{
        {5, 500, 2000}, {20'000, 20'000, 3'000'000}, {999, 1000, 9999, 10'000, 999'999}};
    for (size_t s = 0; s < shards.size(); ++s) {
        for (uint64_t v : values[s]) {
            shards[s].observe(v);
            expected_sum += v;
            size_t bucket = v <= 1000 ? 0 : v <= 10'000 ? 1 : v <= 1'000'000 ? 2 : 3;
            ++expected[bucket];
        }
    }
    HistogramTotals totals = MsHistogram::empty_totals();
    for (const auto& h : shards) h.add_to(totals);
    EXPECT_EQ(totals.counts, expected);
    EXPECT_EQ(totals.counts, (std::vector<uint64_t>{4, 3, 3, 1}));
    std::vector<uint64_t> cumulative = totals.cumulative();
    for (size_t i = 1; i < cumulative.size(); ++i) EXPECT_GE(cumulative[i], cumulative[i - 1]);
    EXPECT_EQ(cumulative.back(), 11u);
    EXPECT_EQ(totals.sum_units, expected_sum);
    EXPECT_EQ(totals.bounds.size(), kBounds.size());
    EXPECT_DOUBLE_EQ(totals.bounds[1], 0.01);
}

TEST(HistogramTest, NanosecondUnitsKeepSubMillisecondBounds) {
    static constexpr std::array<double, 2> kFine{0.0001, 0.00025};
    Histogram<kFine, 1'000'000'000> h;
    h.observe(100'000);  // exactly 100 µs
    h.observe(100'001);
    h.observe(250'001);
    HistogramTotals totals = decltype(h)::empty_totals();
    h.add_to(totals);
    EXPECT_EQ(totals.counts, (std::vector<uint64_t>{1, 1, 1}));
    EXPECT_NEAR(totals.sum_seconds(), 450'002e-9, 1e-15);
}

}  // namespace
}  // namespace ringlb::common
