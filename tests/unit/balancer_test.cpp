#include "proxy/upstream/balancer.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <deque>
#include <random>
#include <set>

#include "proxy/upstream/cluster.hpp"
#include "proxy/upstream/maglev.hpp"
#include "proxy/upstream/tried_set.hpp"

// Test output names the policy instead of dumping the enum's bytes.
namespace ringlb::config {
inline void PrintTo(Balance balance, std::ostream* os) {
    *os << to_string(balance);
}
}  // namespace ringlb::config

using ringlb::common::Address;
using ringlb::config::BackendConfig;
using ringlb::config::Balance;
using ringlb::config::ClusterConfig;
using ringlb::upstream::Balancer;
using ringlb::upstream::Cluster;
using ringlb::upstream::FastRng;
using ringlb::upstream::LeastConnBalancer;
using ringlb::upstream::LeastTimeBalancer;
using ringlb::upstream::make_balancer;
using ringlb::upstream::PickContext;
using ringlb::upstream::RandomTwoBalancer;
using ringlb::upstream::TriedSet;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

constexpr int kPicks = 100000;

ClusterConfig make_config(const std::vector<uint32_t>& weights, Balance balance) {
    ClusterConfig config;
    config.name = "c";
    config.balance = balance;
    for (size_t i = 0; i < weights.size(); ++i) {
        BackendConfig b;
        b.address_text =
            "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":8080";
        b.address = *ringlb::common::parse_address(b.address_text);
        b.weight = weights[i];
        config.backends.push_back(b);
    }
    return config;
}

Address v4(uint32_t ip, uint16_t port) {
    Address a;
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(ip);
    sin->sin_port = htons(port);
    a.length = sizeof(sockaddr_in);
    return a;
}

// Picks for a stream of random clients (the client only matters to maglev), so every policy is
// exercised the same way.
class Driver {
  public:
    explicit Driver(Balancer& balancer, uint64_t seed = 7) : balancer_(balancer), rng_(seed) {}

    int pick(const TriedSet& exclude = TriedSet{}) {
        Address client = v4(static_cast<uint32_t>(rng_()), static_cast<uint16_t>(rng_()));
        PickContext ctx;
        ctx.client = &client;
        return balancer_.pick(ctx, exclude);
    }

    // `picks` sessions, each staying attached while the next `concurrency` sessions start
    // (0: each ends before the next starts). Returns picks per backend.
    std::vector<int> run(size_t backends, int picks, size_t concurrency) {
        std::vector<int> counts(backends, 0);
        std::deque<size_t> open;
        for (int n = 0; n < picks; ++n) {
            int b = pick();
            if (b < 0) {
                ADD_FAILURE() << "no backend picked";
                return counts;
            }
            ++counts[static_cast<size_t>(b)];
            balancer_.attach(static_cast<size_t>(b));
            open.push_back(static_cast<size_t>(b));
            if (open.size() > concurrency) {
                balancer_.detach(open.front());
                open.pop_front();
            }
        }
        return counts;
    }

  private:
    Balancer& balancer_;
    std::mt19937_64 rng_;
};

void expect_shares(const std::vector<int>& counts, const std::vector<uint32_t>& weights,
                   double tolerance, const std::string& what) {
    double total_weight = 0;
    for (uint32_t w : weights) total_weight += w;
    double total = 0;
    for (int c : counts) total += c;
    for (size_t i = 0; i < weights.size(); ++i) {
        EXPECT_NEAR(counts[i] / total, weights[i] / total_weight, tolerance)
            << what << ": backend " << i;
    }
}

const std::vector<Balance> kAllPolicies = {Balance::kRoundRobin, Balance::kLeastConn,
                                           Balance::kRandomTwo, Balance::kLeastTime,
                                           Balance::kMaglev};

std::string policy_name(const testing::TestParamInfo<Balance>& info) {
    return ringlb::config::to_string(info.param);
}

}  // namespace

// --- TriedSet

TEST(TriedSetTest, InlineAndSpilledIndices) {
    TriedSet set;
    EXPECT_TRUE(set.empty());
    EXPECT_EQ(set.count(), 0u);
    for (size_t i : {0u, 63u, 64u, 127u, 128u, 150u, 1000u}) set.insert(i);
    EXPECT_EQ(set.count(), 7u);
    EXPECT_FALSE(set.empty());
    for (size_t i : {0u, 63u, 64u, 127u, 128u, 150u, 1000u}) EXPECT_TRUE(set.contains(i)) << i;
    for (size_t i : {1u, 62u, 65u, 149u, 151u, 999u, 1001u, 5000u}) EXPECT_FALSE(set.contains(i));
    set.insert(150);  // idempotent
    EXPECT_EQ(set.count(), 7u);
    set.erase(150);
    set.erase(63);
    set.erase(4000);  // never inserted, beyond the spill: no effect
    EXPECT_FALSE(set.contains(150));
    EXPECT_FALSE(set.contains(63));
    EXPECT_EQ(set.count(), 5u);
    set.clear();
    EXPECT_TRUE(set.empty());
    EXPECT_FALSE(set.contains(1000));
    set.insert(200);
    EXPECT_TRUE(set.contains(200));
    EXPECT_EQ(set.count(), 1u);
}

TEST(TriedSetTest, ErasingEverySpilledIndexLeavesItEmpty) {
    TriedSet set(300);
    set.insert(299);
    set.erase(299);
    EXPECT_TRUE(set.empty());
    EXPECT_EQ(set.count(), 0u);
}

TEST(TriedSetTest, Union) {
    TriedSet a;
    a.insert(1);
    a.insert(70);
    TriedSet b;
    b.insert(2);
    b.insert(500);
    TriedSet u = a | b;
    EXPECT_EQ(u.count(), 4u);
    for (size_t i : {1u, 2u, 70u, 500u}) EXPECT_TRUE(u.contains(i));
    a |= b;
    EXPECT_EQ(a.count(), 4u);
    EXPECT_TRUE(a.contains(500));
    EXPECT_EQ(b.count(), 2u);  // the right side is untouched
}

// --- FastRng

TEST(FastRngTest, SeededStreamsRepeatAndDiffer) {
    FastRng a(1);
    FastRng b(1);
    FastRng c(2);
    int same_as_c = 0;
    for (int i = 0; i < 100; ++i) {
        uint64_t x = a.next();
        EXPECT_EQ(x, b.next());
        if (x == c.next()) ++same_as_c;
    }
    EXPECT_EQ(same_as_c, 0);
}

TEST(FastRngTest, BelowIsInRangeAndRoughlyUniform) {
    FastRng rng(42);
    std::vector<int> counts(10, 0);
    for (int i = 0; i < kPicks; ++i) {
        uint64_t v = rng.below(10);
        ASSERT_LT(v, 10u);
        ++counts[v];
    }
    for (int c : counts) EXPECT_NEAR(c, kPicks / 10, kPicks / 100);  // ±10% of expected
    EXPECT_EQ(rng.below(1), 0u);
}

// --- Properties every policy must have

class EveryPolicyTest : public testing::TestWithParam<Balance> {};

TEST_P(EveryPolicyTest, FactoryBuildsThePolicyNamedInTheConfig) {
    Cluster cluster(make_config({1, 1}, GetParam()));
    EXPECT_EQ(make_balancer(cluster, 1)->policy(), GetParam());
}

TEST_P(EveryPolicyTest, EveryBackendGetsPicked) {
    Cluster cluster(make_config(std::vector<uint32_t>(200, 1), GetParam()));
    auto balancer = make_balancer(cluster, 1);
    Driver driver(*balancer);
    std::vector<int> counts = driver.run(200, kPicks, 0);
    for (size_t i = 0; i < 200; ++i) EXPECT_GT(counts[i], 0) << "backend " << i;
}

TEST_P(EveryPolicyTest, ExcludedBackendsAreNeverReturned) {
    Cluster cluster(make_config({1, 2, 3, 4, 5, 6, 7, 8}, GetParam()));
    auto balancer = make_balancer(cluster, 3);
    Driver driver(*balancer);
    std::mt19937 rng(11);
    for (int n = 0; n < 20000; ++n) {
        TriedSet exclude;
        for (size_t i = 0; i < 8; ++i)
            if (rng() % 2) exclude.insert(i);
        int b = driver.pick(exclude);
        if (exclude.count() == 8) {
            ASSERT_EQ(b, -1);
            continue;
        }
        ASSERT_GE(b, 0);
        ASSERT_LT(b, 8);
        ASSERT_FALSE(exclude.contains(static_cast<size_t>(b))) << "picked excluded " << b;
        balancer->attach(static_cast<size_t>(b));
        if (n % 3 == 0) balancer->detach(static_cast<size_t>(b));
    }
}

// Past index 63: the uint64_t mask this replaces could not exclude these.
TEST_P(EveryPolicyTest, OnlyTheOneAllowedBackendOfTwoHundredIsPicked) {
    Cluster cluster(make_config(std::vector<uint32_t>(200, 1), GetParam()));
    auto balancer = make_balancer(cluster, 5);
    TriedSet exclude(200);
    for (size_t i = 0; i < 200; ++i)
        if (i != 150) exclude.insert(i);
    Driver driver(*balancer);
    for (int n = 0; n < 2000; ++n) ASSERT_EQ(driver.pick(exclude), 150);
    exclude.insert(150);
    EXPECT_EQ(driver.pick(exclude), -1);
}

TEST_P(EveryPolicyTest, AllExcludedGivesMinusOne) {
    Cluster cluster(make_config({1, 1, 1}, GetParam()));
    auto balancer = make_balancer(cluster, 5);
    TriedSet all;
    for (size_t i = 0; i < 3; ++i) all.insert(i);
    Driver driver(*balancer);
    for (int n = 0; n < 100; ++n) EXPECT_EQ(driver.pick(all), -1);
    EXPECT_EQ(balancer->pick(PickContext{}, all), -1);
}

TEST_P(EveryPolicyTest, SingleBackend) {
    Cluster cluster(make_config({3}, GetParam()));
    auto balancer = make_balancer(cluster, 5);
    Driver driver(*balancer);
    for (int n = 0; n < 100; ++n) EXPECT_EQ(driver.pick(), 0);
    EXPECT_EQ(balancer->pick(PickContext{}, TriedSet{}), 0);
}

// Short sessions (each ends before the next starts): weights 1,2,3,4 must give 10/20/30/40%.
// Deterministic policies get ±0.5% absolute, the random ones ±2%.
TEST_P(EveryPolicyTest, WeightsAreRespectedWithShortSessions) {
    const std::vector<uint32_t> weights = {1, 2, 3, 4};
    Cluster cluster(make_config(weights, GetParam()));
    auto balancer = make_balancer(cluster, 9);
    Driver driver(*balancer);
    std::vector<int> counts = driver.run(4, kPicks, 0);
    bool deterministic = GetParam() == Balance::kRoundRobin || GetParam() == Balance::kLeastConn;
    expect_shares(counts, weights, deterministic ? 0.005 : 0.02, "short sessions");
}

// 100 sessions open at any time: the counting policies now see load. Shares stay within ±2%
// absolute (round_robin and maglev ignore load; the counting policies keep active/weight even,
// which for sessions of equal length is the same thing).
TEST_P(EveryPolicyTest, WeightsAreRespectedUnderLoad) {
    const std::vector<uint32_t> weights = {1, 2, 3, 4};
    Cluster cluster(make_config(weights, GetParam()));
    auto balancer = make_balancer(cluster, 9);
    Driver driver(*balancer);
    std::vector<int> counts = driver.run(4, kPicks, 100);
    expect_shares(counts, weights, 0.02, "100 concurrent sessions");
}

TEST_P(EveryPolicyTest, EqualWeightsShareEvenly) {
    const std::vector<uint32_t> weights(10, 1);
    Cluster cluster(make_config(weights, GetParam()));
    auto balancer = make_balancer(cluster, 13);
    Driver driver(*balancer);
    std::vector<int> counts = driver.run(10, kPicks, 20);
    expect_shares(counts, weights, 0.01, "equal weights");
}

INSTANTIATE_TEST_SUITE_P(Policies, EveryPolicyTest, testing::ValuesIn(kAllPolicies), policy_name);

// --- least_conn

TEST(LeastConnTest, SteersAwayFromABusyBackend) {
    Cluster cluster(make_config({1, 1, 1}, Balance::kLeastConn));
    LeastConnBalancer lc(cluster);
    for (int n = 0; n < 50; ++n) lc.attach(0);
    EXPECT_EQ(lc.active(0), 50u);
    std::vector<int> counts(3, 0);
    for (int n = 0; n < 3000; ++n) {
        int b = lc.pick(PickContext{}, TriedSet{});
        ASSERT_GE(b, 0);
        ++counts[static_cast<size_t>(b)];
        lc.attach(static_cast<size_t>(b));
        lc.detach(static_cast<size_t>(b));
    }
    EXPECT_EQ(counts[0], 0);
    EXPECT_EQ(counts[1], 1500);
    EXPECT_EQ(counts[2], 1500);

    // Once its sessions end, it is back in the rotation.
    for (int n = 0; n < 50; ++n) lc.detach(0);
    EXPECT_EQ(lc.active(0), 0u);
    std::set<int> seen;
    for (int n = 0; n < 3; ++n) seen.insert(lc.pick(PickContext{}, TriedSet{}));
    EXPECT_EQ(seen, (std::set<int>{0, 1, 2}));
}

TEST(LeastConnTest, LongSessionsFillBackendsInProportionToWeight) {
    Cluster cluster(make_config({1, 3}, Balance::kLeastConn));
    LeastConnBalancer lc(cluster);
    for (int n = 0; n < 400; ++n) {
        int b = lc.pick(PickContext{}, TriedSet{});
        ASSERT_GE(b, 0);
        lc.attach(static_cast<size_t>(b));
        // At every step the loads per unit of weight differ by at most one session's worth.
        double l0 = lc.active(0) / 1.0;
        double l1 = lc.active(1) / 3.0;
        EXPECT_LE(std::abs(l0 - l1), 1.0) << "after " << n + 1 << " sessions";
    }
    EXPECT_EQ(lc.active(0), 100u);
    EXPECT_EQ(lc.active(1), 300u);
}

TEST(LeastConnTest, DetachWithoutAttachDoesNotWrap) {
    Cluster cluster(make_config({1, 1}, Balance::kLeastConn));
    LeastConnBalancer lc(cluster);
    lc.detach(0);
    lc.detach(7);  // out of range: ignored
    lc.attach(7);
    EXPECT_EQ(lc.active(0), 0u);
    lc.attach(1);
    EXPECT_EQ(lc.pick(PickContext{}, TriedSet{}), 0);
}

// --- random_two

TEST(RandomTwoTest, ABusyBackendLosesEveryComparison) {
    Cluster cluster(make_config({1, 1, 1, 1}, Balance::kRandomTwo));
    RandomTwoBalancer r2(cluster, 1);
    for (int n = 0; n < 100; ++n) r2.attach(0);
    std::vector<int> counts(4, 0);
    for (int n = 0; n < 10000; ++n) ++counts[static_cast<size_t>(r2.pick(PickContext{}, {}))];
    EXPECT_EQ(counts[0], 0);
    for (size_t i = 1; i < 4; ++i) EXPECT_NEAR(counts[i], 10000 / 3, 300);
}

TEST(RandomTwoTest, PicksFallAsLoadRises) {
    Cluster cluster(make_config({1, 1, 1, 1}, Balance::kRandomTwo));
    RandomTwoBalancer r2(cluster, 2);
    for (size_t i = 0; i < 4; ++i)
        for (size_t n = 0; n < 10 * i; ++n) r2.attach(i);  // loads 0, 10, 20, 30
    std::vector<int> counts(4, 0);
    for (int n = 0; n < kPicks; ++n) ++counts[static_cast<size_t>(r2.pick(PickContext{}, {}))];
    // Ordered pairs are uniform over the 12; the less loaded of the two wins: backend i wins
    // against the 3 - i more loaded ones, both orders: (3 - i) / 6.
    EXPECT_NEAR(counts[0], kPicks * 3 / 6, kPicks / 50);
    EXPECT_NEAR(counts[1], kPicks * 2 / 6, kPicks / 50);
    EXPECT_NEAR(counts[2], kPicks * 1 / 6, kPicks / 50);
    EXPECT_EQ(counts[3], 0);
}

// Two choices keep load even where one random choice would not: 10 backends, 1000 sessions that
// never end. Random alone spreads them with a standard deviation of ~30 around 100 each.
TEST(RandomTwoTest, KeepsLoadTight) {
    Cluster cluster(make_config(std::vector<uint32_t>(10, 1), Balance::kRandomTwo));
    RandomTwoBalancer r2(cluster, 3);
    for (int n = 0; n < 1000; ++n) r2.attach(static_cast<size_t>(r2.pick(PickContext{}, {})));
    uint32_t lo = UINT32_MAX;
    uint32_t hi = 0;
    for (size_t i = 0; i < 10; ++i) {
        lo = std::min(lo, r2.active(i));
        hi = std::max(hi, r2.active(i));
    }
    EXPECT_LE(hi - lo, 10u);
}

TEST(RandomTwoTest, SameSeedSamePicks) {
    Cluster cluster(make_config({1, 2, 3, 4, 5}, Balance::kRandomTwo));
    RandomTwoBalancer a(cluster, 77);
    RandomTwoBalancer b(cluster, 77);
    RandomTwoBalancer c(cluster, 78);
    int differ = 0;
    for (int n = 0; n < 1000; ++n) {
        int pa = a.pick(PickContext{}, {});
        EXPECT_EQ(pa, b.pick(PickContext{}, {}));
        if (pa != c.pick(PickContext{}, {})) ++differ;
    }
    EXPECT_GT(differ, 100);  // another shard's seed gives another stream
}

TEST(RandomTwoTest, HeavyWeightDoesNotStallTheSecondDraw) {
    // The second candidate is drawn among the rest, not by rejection: with weights 1000:1 the
    // light backend is the second candidate almost every time, and loses unless it is less
    // loaded per unit of weight.
    Cluster cluster(make_config({1000, 1}, Balance::kRandomTwo));
    RandomTwoBalancer r2(cluster, 4);
    r2.attach(0);  // heavy: 1 / 1000, light: 0 / 1
    int light = 0;
    for (int n = 0; n < 1000; ++n)
        if (r2.pick(PickContext{}, {}) == 1) ++light;
    EXPECT_EQ(light, 1000);
    r2.attach(1);  // heavy: 1 / 1000, light: 1 / 1
    light = 0;
    for (int n = 0; n < 1000; ++n)
        if (r2.pick(PickContext{}, {}) == 1) ++light;
    EXPECT_EQ(light, 0);
}

// --- least_time

TEST(LeastTimeTest, EwmaStartsAtTheFirstSampleAndMovesAQuarter) {
    Cluster cluster(make_config({1, 1}, Balance::kLeastTime));
    LeastTimeBalancer lt(cluster, 1);
    EXPECT_EQ(lt.ewma(0).count(), 0);
    lt.observe_connect(0, microseconds(1000));
    EXPECT_EQ(lt.ewma(0), microseconds(1000));
    lt.observe_connect(0, microseconds(2000));
    EXPECT_EQ(lt.ewma(0), microseconds(1250));
    lt.observe_connect(0, microseconds(250));
    EXPECT_EQ(lt.ewma(0), microseconds(1000));
    lt.observe_connect(9, microseconds(1));  // out of range: ignored
}

TEST(LeastTimeTest, AFailedConnectCountsAsTheConnectTimeout) {
    ClusterConfig config = make_config({1, 1}, Balance::kLeastTime);
    config.connect_timeout = milliseconds(2000);
    Cluster cluster(config);
    LeastTimeBalancer lt(cluster, 1);
    lt.observe_connect_failure(1);
    EXPECT_EQ(lt.ewma(1), milliseconds(2000));
    lt.observe_connect(0, microseconds(300));
    int to_0 = 0;
    for (int n = 0; n < 1000; ++n)
        if (lt.pick(PickContext{}, {}) == 0) ++to_0;
    EXPECT_GT(to_0, 950);
}

TEST(LeastTimeTest, AnUnmeasuredBackendIsTriedSoon) {
    Cluster cluster(make_config({1, 1, 1}, Balance::kLeastTime));
    LeastTimeBalancer lt(cluster, 2);
    lt.observe_connect(0, microseconds(100));
    lt.observe_connect(1, microseconds(100));
    // Backend 2 costs 0 while unmeasured: it wins every comparison it is drawn into.
    int first = -1;
    for (int n = 0; n < 20 && first < 0; ++n)
        if (lt.pick(PickContext{}, {}) == 2) first = n;
    EXPECT_GE(first, 0);
}

TEST(LeastTimeTest, PrefersTheFasterBackendButStillExplores) {
    Cluster cluster(make_config({1, 1}, Balance::kLeastTime));
    LeastTimeBalancer lt(cluster, 3);
    lt.observe_connect(0, microseconds(200));
    lt.observe_connect(1, microseconds(2000));
    std::vector<int> counts(2, 0);
    for (int n = 0; n < kPicks; ++n) ++counts[static_cast<size_t>(lt.pick(PickContext{}, {}))];
    // Two backends: both are always the candidates; the slow one wins only when the pick
    // explores (1 in 32) and it was drawn first (1 in 2): 1.6%.
    EXPECT_GT(counts[0], kPicks * 97 / 100);
    EXPECT_NEAR(counts[1], kPicks / 64, kPicks / 200);
}

TEST(LeastTimeTest, LoadOutweighsASmallSpeedAdvantage) {
    Cluster cluster(make_config({1, 1}, Balance::kLeastTime));
    LeastTimeBalancer lt(cluster, 4);
    lt.observe_connect(0, microseconds(100));
    lt.observe_connect(1, microseconds(150));
    // 0 costs 100 * (active + 1), 1 costs 150: 0 wins while idle, and stops winning once busy.
    for (int n = 0; n < 5; ++n) lt.attach(0);
    int to_0 = 0;
    for (int n = 0; n < 1000; ++n)
        if (lt.pick(PickContext{}, {}) == 0) ++to_0;
    EXPECT_LT(to_0, 50);  // exploration only
}

TEST(LeastTimeTest, TrafficReturnsToABackendThatGotFaster) {
    Cluster cluster(make_config({1, 1}, Balance::kLeastTime));
    LeastTimeBalancer lt(cluster, 5);
    microseconds latency[2] = {microseconds(200), microseconds(3000)};
    auto run = [&](int picks) {
        std::vector<int> counts(2, 0);
        for (int n = 0; n < picks; ++n) {
            size_t b = static_cast<size_t>(lt.pick(PickContext{}, {}));
            ++counts[b];
            lt.observe_connect(b, latency[b]);
        }
        return counts;
    };
    std::vector<int> before = run(20000);
    EXPECT_GT(before[0], before[1] * 10);
    // Backend 1 recovers and becomes the faster one. Backend 0 stays as fast as it was, so its
    // cost never rises: only exploration re-measures backend 1 and notices.
    latency[1] = microseconds(100);
    std::vector<int> after = run(20000);
    EXPECT_GT(after[1], after[0] * 10);
}
