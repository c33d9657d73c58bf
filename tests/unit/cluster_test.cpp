#include "proxy/upstream/cluster.hpp"

#include <gtest/gtest.h>

#include <map>

#include "proxy/upstream/balancer.hpp"
#include "proxy/upstream/maglev.hpp"

using ringlb::config::BackendConfig;
using ringlb::config::Balance;
using ringlb::config::ClusterConfig;
using ringlb::config::HashKey;
using ringlb::upstream::Cluster;
using ringlb::upstream::make_balancer;
using ringlb::upstream::PickContext;
using ringlb::upstream::RoundRobinBalancer;
using ringlb::upstream::TriedSet;

namespace {

ClusterConfig make_cluster(std::initializer_list<uint32_t> weights) {
    ClusterConfig config;
    config.name = "c";
    uint16_t port = 9001;
    for (uint32_t w : weights) {
        BackendConfig b;
        b.address_text = "127.0.0.1:" + std::to_string(port);
        b.address = *ringlb::common::parse_address(b.address_text);
        b.weight = w;
        config.backends.push_back(b);
        ++port;
    }
    return config;
}

TriedSet tried(std::initializer_list<size_t> indices) {
    TriedSet set;
    for (size_t i : indices) set.insert(i);
    return set;
}

}  // namespace

// Smooth weighted round-robin through the Balancer interface (make_balancer's default policy).

TEST(RoundRobinTest, EqualWeightsRotate) {
    Cluster cluster(make_cluster({1, 1, 1}));
    auto rr = make_balancer(cluster, 0);
    ASSERT_EQ(rr->policy(), Balance::kRoundRobin);
    std::vector<int> picks;
    for (int i = 0; i < 6; ++i) picks.push_back(rr->pick(PickContext{}, TriedSet{}));
    EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST(RoundRobinTest, WeightsAreHonouredWithoutBursts) {
    Cluster cluster(make_cluster({5, 1, 1}));
    RoundRobinBalancer rr(cluster);
    std::vector<int> picks;
    for (int i = 0; i < 7; ++i) picks.push_back(rr.pick(PickContext{}, TriedSet{}));
    // Smooth weighted round-robin: {a a b a c a a}, never five a's in a row.
    EXPECT_EQ(picks, (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
    std::map<int, int> counts;
    for (int i = 0; i < 700; ++i) ++counts[rr.pick(PickContext{}, TriedSet{})];
    EXPECT_EQ(counts[0], 500);
    EXPECT_EQ(counts[1], 100);
    EXPECT_EQ(counts[2], 100);
}

TEST(RoundRobinTest, ExcludedBackendsAreSkipped) {
    Cluster cluster(make_cluster({1, 1, 1}));
    RoundRobinBalancer rr(cluster);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(rr.pick(PickContext{}, tried({0, 2})), 1);
    EXPECT_EQ(rr.pick(PickContext{}, tried({0, 1, 2})), -1);
}

TEST(ClusterTest, CopiesBackendsAndTimeout) {
    ClusterConfig config = make_cluster({2, 3});
    config.connect_timeout = std::chrono::milliseconds(750);
    Cluster cluster(config);
    ASSERT_EQ(cluster.backends.size(), 2u);
    EXPECT_EQ(cluster.backends[1].name, "127.0.0.1:9002");
    EXPECT_EQ(cluster.backends[1].weight, 3u);
    EXPECT_EQ(cluster.connect_timeout.count(), 750);
    EXPECT_EQ(cluster.backends[0].index, 0u);
    EXPECT_EQ(cluster.backends[1].index, 1u);
    EXPECT_EQ(cluster.balance, Balance::kRoundRobin);
    EXPECT_EQ(cluster.maglev, nullptr);  // built only for maglev clusters
}

TEST(ClusterTest, MaglevClusterCarriesItsTable) {
    ClusterConfig config = make_cluster({1, 1, 1});
    config.balance = Balance::kMaglev;
    config.hash_key = HashKey::kSourceIpPort;
    config.maglev_table_size = 101;
    Cluster cluster(config);
    EXPECT_EQ(cluster.hash_key, HashKey::kSourceIpPort);
    ASSERT_NE(cluster.maglev, nullptr);
    EXPECT_EQ(cluster.maglev->size(), 101u);
    EXPECT_EQ(cluster.maglev->backend_count(), 3u);
    // A copy of the cluster (the snapshot keeps a vector of them) shares the one table.
    Cluster copy = cluster;
    EXPECT_EQ(copy.maglev.get(), cluster.maglev.get());
}

TEST(ClusterTest, MaglevTableSmallerThanClusterIsRejected) {
    ClusterConfig config = make_cluster({1, 1, 1});
    config.balance = Balance::kMaglev;
    config.maglev_table_size = 2;
    EXPECT_THROW(Cluster{config}, std::invalid_argument);
}
