#include "proxy/upstream/cluster.hpp"

#include <gtest/gtest.h>

#include <map>

using ringlb::config::BackendConfig;
using ringlb::config::ClusterConfig;
using ringlb::upstream::Cluster;
using ringlb::upstream::RoundRobin;

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

}  // namespace

TEST(RoundRobinTest, EqualWeightsRotate) {
    Cluster cluster(make_cluster({1, 1, 1}));
    RoundRobin rr(cluster);
    std::vector<int> picks;
    for (int i = 0; i < 6; ++i) picks.push_back(rr.pick());
    EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST(RoundRobinTest, WeightsAreHonouredWithoutBursts) {
    Cluster cluster(make_cluster({5, 1, 1}));
    RoundRobin rr(cluster);
    std::vector<int> picks;
    for (int i = 0; i < 7; ++i) picks.push_back(rr.pick());
    // Smooth weighted round-robin: {a a b a c a a}, never five a's in a row.
    EXPECT_EQ(picks, (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
    std::map<int, int> counts;
    for (int i = 0; i < 700; ++i) ++counts[rr.pick()];
    EXPECT_EQ(counts[0], 500);
    EXPECT_EQ(counts[1], 100);
    EXPECT_EQ(counts[2], 100);
}

TEST(RoundRobinTest, ExcludedBackendsAreSkipped) {
    Cluster cluster(make_cluster({1, 1, 1}));
    RoundRobin rr(cluster);
    for (int i = 0; i < 10; ++i) {
        int pick = rr.pick(0b101);
        EXPECT_EQ(pick, 1);
    }
    EXPECT_EQ(rr.pick(0b111), -1);
}

TEST(ClusterTest, CopiesBackendsAndTimeout) {
    ClusterConfig config = make_cluster({2, 3});
    config.connect_timeout = std::chrono::milliseconds(750);
    Cluster cluster(config);
    ASSERT_EQ(cluster.backends.size(), 2u);
    EXPECT_EQ(cluster.backends[1].name, "127.0.0.1:9002");
    EXPECT_EQ(cluster.backends[1].weight, 3u);
    EXPECT_EQ(cluster.connect_timeout.count(), 750);
}
