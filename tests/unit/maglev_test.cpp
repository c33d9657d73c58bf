#include "proxy/upstream/maglev.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>

#include "proxy/upstream/balancer.hpp"
#include "proxy/upstream/cluster.hpp"

using ringlb::common::Address;
using ringlb::config::BackendConfig;
using ringlb::config::Balance;
using ringlb::config::ClusterConfig;
using ringlb::config::HashKey;
using ringlb::upstream::build_maglev;
using ringlb::upstream::client_key_hash;
using ringlb::upstream::Cluster;
using ringlb::upstream::hash_bytes;
using ringlb::upstream::MaglevBackend;
using ringlb::upstream::MaglevBalancer;
using ringlb::upstream::MaglevTable;
using ringlb::upstream::mix64;
using ringlb::upstream::PickContext;
using ringlb::upstream::TriedSet;

namespace {

constexpr size_t kDefaultSize = 65537;
constexpr int kKeys = 100000;

// Owns the names the MaglevBackend views point into.
struct BackendList {
    std::vector<std::string> names;
    std::vector<uint32_t> weights;

    std::vector<MaglevBackend> view() const {
        std::vector<MaglevBackend> out;
        for (size_t i = 0; i < names.size(); ++i) out.push_back({names[i], weights[i]});
        return out;
    }
    MaglevTable table(size_t size = kDefaultSize) const { return MaglevTable(view(), size); }
};

BackendList backends(size_t n, std::vector<uint32_t> weights = {}) {
    BackendList list;
    for (size_t i = 0; i < n; ++i) {
        list.names.push_back("10.1.0." + std::to_string(i + 1) + ":443");
        list.weights.push_back(weights.empty() ? 1 : weights[i]);
    }
    return list;
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

Address v6(const uint8_t (&ip)[16], uint16_t port) {
    Address a;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, ip, 16);
    sin6->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
    return a;
}

std::vector<uint64_t> random_keys(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> keys;
    keys.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        Address client = v4(static_cast<uint32_t>(rng()), static_cast<uint16_t>(rng()));
        keys.push_back(*client_key_hash(client, HashKey::kSourceIp));
    }
    return keys;
}

std::vector<size_t> slots_per_backend(const MaglevTable& table) {
    std::vector<size_t> counts(table.backend_count(), 0);
    for (size_t s = 0; s < table.size(); ++s) ++counts.at(table.entry(s));
    return counts;
}

// The name each key lands on, for comparing tables whose indices differ.
std::vector<std::string> names_for(const MaglevTable& table, const BackendList& list,
                                   const std::vector<uint64_t>& keys) {
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (uint64_t k : keys) out.push_back(list.names[static_cast<size_t>(table.lookup(k, {}))]);
    return out;
}

double moved_fraction(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    size_t moved = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) ++moved;
    return static_cast<double>(moved) / static_cast<double>(a.size());
}

}  // namespace

// --- The fixed hashes

// These pin the hash to published constants: FNV-1a 64 ("" is the offset basis, "a" is
// 0xaf63dc4c8601ec8c) and splitmix64 (its first output from state 0 is 0xe220a8397b1dcdaf).
TEST(MaglevHashTest, MatchesPublishedVectors) {
    EXPECT_EQ(mix64(0x9e3779b97f4a7c15ULL), 0xe220a8397b1dcdafULL);
    EXPECT_EQ(mix64(0), 0u);
    EXPECT_EQ(hash_bytes({}, 0), mix64(0xcbf29ce484222325ULL));
    const std::byte a[] = {std::byte{'a'}};
    EXPECT_EQ(hash_bytes(a, 0), mix64(0xaf63dc4c8601ec8cULL));
    EXPECT_NE(hash_bytes(a, 1), hash_bytes(a, 0));
}

// A change to any constant remaps every client of every replica on upgrade: these values are the
// mapping's contract. They were checked against an independent re-implementation of the hash and
// of the fill (equal weights) written in Python, not only copied from this code's output.
TEST(MaglevHashTest, KeyAndTableArePinned) {
    EXPECT_EQ(*client_key_hash(v4(0x0a000001, 5555), HashKey::kSourceIp), 0xbc1fa852f28880f3ULL);
    EXPECT_EQ(*client_key_hash(v4(0x0a000001, 5555), HashKey::kSourceIpPort),
              0x2d4cf2340d5d45faULL);
    MaglevTable table = backends(5).table(13);
    std::vector<uint32_t> entries;
    for (size_t s = 0; s < table.size(); ++s) entries.push_back(table.entry(s));
    EXPECT_EQ(entries, (std::vector<uint32_t>{4, 1, 2, 4, 3, 0, 2, 0, 1, 0, 1, 2, 3}));
}

TEST(MaglevHashTest, SourceIpIgnoresThePortAndSourceIpPortUsesIt) {
    MaglevTable table = backends(10).table();
    std::set<int> by_ip;
    std::set<int> by_ip_port;
    for (uint16_t port = 1024; port < 3024; ++port) {
        Address client = v4(0xc0a80107, port);
        by_ip.insert(table.lookup(*client_key_hash(client, HashKey::kSourceIp), {}));
        by_ip_port.insert(table.lookup(*client_key_hash(client, HashKey::kSourceIpPort), {}));
    }
    EXPECT_EQ(by_ip.size(), 1u);
    EXPECT_EQ(by_ip_port.size(), 10u);  // 2000 ports of one client reach every backend
}

TEST(MaglevHashTest, Ipv6KeysAndMappedIpv4) {
    // An IPv4-mapped IPv6 client (a dual-stack listener) is the same key as the IPv4 client.
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 7};
    for (HashKey key : {HashKey::kSourceIp, HashKey::kSourceIpPort}) {
        EXPECT_EQ(*client_key_hash(v6(mapped, 4000), key),
                  *client_key_hash(v4(0xc0a80107, 4000), key));
    }
    // Native IPv6 clients: all 16 bytes count, and they spread evenly.
    MaglevTable table = backends(8).table();
    std::mt19937_64 rng(3);
    std::vector<int> counts(8, 0);
    uint8_t ip[16] = {0x20, 0x01, 0x0d, 0xb8};
    for (int i = 0; i < kKeys; ++i) {
        uint64_t r = rng();
        std::memcpy(ip + 8, &r, 8);
        auto key = client_key_hash(v6(ip, 443), HashKey::kSourceIp);
        ASSERT_TRUE(key.has_value());
        EXPECT_EQ(key, client_key_hash(v6(ip, 444), HashKey::kSourceIp));
        ++counts[static_cast<size_t>(table.lookup(*key, {}))];
    }
    for (int c : counts) EXPECT_NEAR(c / double(kKeys), 1.0 / 8, 0.02);
    // Two addresses that differ only in the last byte are different keys.
    uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    EXPECT_NE(client_key_hash(v6(a, 1), HashKey::kSourceIp),
              client_key_hash(v6(b, 1), HashKey::kSourceIp));
}

TEST(MaglevHashTest, UnknownFamilyHasNoKey) {
    Address none;
    EXPECT_FALSE(client_key_hash(none, HashKey::kSourceIp).has_value());
}

// --- The table

TEST(MaglevTableTest, IndependentBuildsAgree) {
    BackendList list_a = backends(10);
    BackendList list_b = backends(10);  // separate strings, separate build
    MaglevTable a = list_a.table();
    MaglevTable b = list_b.table();
    ASSERT_EQ(a.size(), b.size());
    for (size_t s = 0; s < a.size(); ++s) ASSERT_EQ(a.entry(s), b.entry(s)) << "slot " << s;
    for (uint64_t k : random_keys(10000, 1)) ASSERT_EQ(a.lookup(k, {}), b.lookup(k, {}));
}

TEST(MaglevTableTest, ListOrderDoesNotChangeTheMapping) {
    BackendList list = backends(10, {1, 2, 3, 4, 5, 1, 2, 3, 4, 5});
    BackendList shuffled = list;
    std::mt19937 rng(5);
    std::vector<size_t> perm(10);
    for (size_t i = 0; i < 10; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (size_t i = 0; i < 10; ++i) {
        shuffled.names[i] = list.names[perm[i]];
        shuffled.weights[i] = list.weights[perm[i]];
    }
    std::vector<uint64_t> keys = random_keys(10000, 2);
    EXPECT_EQ(names_for(list.table(), list, keys), names_for(shuffled.table(), shuffled, keys));
}

TEST(MaglevTableTest, EqualWeightsGetEqualSlots) {
    MaglevTable table = backends(10).table();
    for (size_t c : slots_per_backend(table)) {
        EXPECT_NEAR(static_cast<double>(c), kDefaultSize / 10.0, kDefaultSize / 10.0 * 0.01);
    }
}

TEST(MaglevTableTest, SlotsAndKeysFollowWeights) {
    const std::vector<uint32_t> weights = {1, 2, 3, 4};
    MaglevTable table = backends(4, weights).table();
    std::vector<size_t> slots = slots_per_backend(table);
    for (size_t i = 0; i < 4; ++i) {
        double ideal = kDefaultSize * weights[i] / 10.0;
        EXPECT_NEAR(static_cast<double>(slots[i]), ideal, ideal * 0.01) << "backend " << i;
    }
    std::vector<int> counts(4, 0);
    for (uint64_t k : random_keys(kKeys, 3)) ++counts[static_cast<size_t>(table.lookup(k, {}))];
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(kKeys), weights[i] / 10.0, 0.02);
}

TEST(MaglevTableTest, ExtremeWeightsStillGiveEveryBackendASlot) {
    MaglevTable table = backends(3, {1000, 1, 1000}).table(2003);
    std::vector<size_t> slots = slots_per_backend(table);
    EXPECT_GE(slots[1], 1u);
    EXPECT_NEAR(static_cast<double>(slots[0]), 2003 * 1000 / 2001.0, 5.0);
}

TEST(MaglevTableTest, RemovingOneOfTenMovesAboutATenth) {
    BackendList all = backends(10);
    BackendList fewer = all;
    fewer.names.erase(fewer.names.begin() + 4);
    fewer.weights.erase(fewer.weights.begin() + 4);
    std::vector<uint64_t> keys = random_keys(kKeys, 4);
    std::vector<std::string> before = names_for(all.table(), all, keys);
    std::vector<std::string> after = names_for(fewer.table(), fewer, keys);
    double moved = moved_fraction(before, after);
    EXPECT_LE(moved, 1.0 / 10 + 0.02);
    // Every key of the removed backend had to move; it alone is ~1/10.
    EXPECT_GE(moved, 1.0 / 10 - 0.01);
}

TEST(MaglevTableTest, AddingAnEleventhMovesAboutAnEleventh) {
    BackendList ten = backends(10);
    BackendList eleven = backends(11);
    std::vector<uint64_t> keys = random_keys(kKeys, 5);
    double moved =
        moved_fraction(names_for(ten.table(), ten, keys), names_for(eleven.table(), eleven, keys));
    EXPECT_LE(moved, 1.0 / 11 + 0.02);
    EXPECT_GE(moved, 1.0 / 11 - 0.01);  // the newcomer's share had to come from somewhere
}

TEST(MaglevTableTest, ChangingOneWeightMovesLittle) {
    BackendList before = backends(10);
    BackendList after = before;
    after.weights[2] = 2;  // its share goes from 1/10 to 2/11
    std::vector<uint64_t> keys = random_keys(kKeys, 6);
    double moved = moved_fraction(names_for(before.table(), before, keys),
                                  names_for(after.table(), after, keys));
    EXPECT_LE(moved, 2.0 / 11 - 1.0 / 10 + 0.03);
}

TEST(MaglevTableTest, SizesThatAreNotPrimeStillFillEverySlot) {
    for (size_t size : {size_t{5}, size_t{12}, size_t{64}, size_t{1000}, size_t{65536}}) {
        MaglevTable table = backends(5, {1, 2, 3, 1, 1}).table(size);
        ASSERT_EQ(table.size(), size);
        std::vector<size_t> slots = slots_per_backend(table);  // .at() checks every entry
        for (size_t c : slots) EXPECT_GE(c, 1u) << "size " << size;
    }
    MaglevTable one = backends(1).table(1);
    EXPECT_EQ(one.lookup(12345, {}), 0);
}

TEST(MaglevTableTest, TableSmallerThanBackendListIsRejected) {
    EXPECT_THROW(backends(5).table(4), std::invalid_argument);
}

TEST(MaglevTableTest, NoBackendsNoPick) {
    MaglevTable table({}, kDefaultSize);
    EXPECT_EQ(table.size(), 0u);
    EXPECT_EQ(table.lookup(1, {}), -1);
}

// --- Exclusion

TEST(MaglevTableTest, ExcludedBackendsAreAvoidedDeterministically) {
    BackendList list = backends(10);
    MaglevTable a = list.table();
    MaglevTable b = list.table();
    TriedSet exclude;
    exclude.insert(3);
    exclude.insert(7);
    std::map<int, int> fallback_to;
    for (uint64_t k : random_keys(kKeys, 7)) {
        int home = a.lookup(k, {});
        int got = a.lookup(k, exclude);
        ASSERT_GE(got, 0);
        ASSERT_FALSE(exclude.contains(static_cast<size_t>(got)));
        ASSERT_EQ(got, b.lookup(k, exclude));  // every shard and replica agrees
        if (home == 3 || home == 7)
            ++fallback_to[got];
        else
            ASSERT_EQ(got, home);  // keys of allowed backends stay put
    }
    // The excluded backends' keys spread over all the others, not onto one neighbour.
    EXPECT_EQ(fallback_to.size(), 8u);
    for (const auto& [backend, n] : fallback_to) EXPECT_GT(n, 20000 / 8 / 2) << backend;
}

TEST(MaglevTableTest, OnlyAllowedBackendOfTwoHundredIsFound) {
    MaglevTable table = backends(200).table();
    TriedSet exclude(200);
    for (size_t i = 0; i < 200; ++i)
        if (i != 150) exclude.insert(i);
    for (uint64_t k : random_keys(10000, 8)) ASSERT_EQ(table.lookup(k, exclude), 150);
    exclude.insert(150);
    EXPECT_EQ(table.lookup(42, exclude), -1);
}

// --- The balancer

TEST(MaglevBalancerTest, SameClientSameBackendAcrossShards) {
    ClusterConfig config;
    config.name = "c";
    config.balance = Balance::kMaglev;
    for (int i = 1; i <= 6; ++i) {
        BackendConfig b;
        b.address_text = "10.2.0." + std::to_string(i) + ":80";
        b.address = *ringlb::common::parse_address(b.address_text);
        config.backends.push_back(b);
    }
    Cluster shared(config);
    Cluster rebuilt(config);  // another process (a restart or a replica) building its own
    auto shard0 = ringlb::upstream::make_balancer(shared, 0);
    auto shard1 = ringlb::upstream::make_balancer(shared, 1);
    auto other = ringlb::upstream::make_balancer(rebuilt, 2);
    std::mt19937_64 rng(9);
    for (int i = 0; i < 10000; ++i) {
        Address client = v4(static_cast<uint32_t>(rng()), static_cast<uint16_t>(rng()));
        PickContext ctx{&client};
        int b = shard0->pick(ctx, {});
        ASSERT_EQ(b, shard1->pick(ctx, {}));
        ASSERT_EQ(b, other->pick(ctx, {}));
    }
}

TEST(MaglevBalancerTest, WithoutAClientAddressPicksSpreadByWeight) {
    BackendList list = backends(4, {1, 2, 3, 4});
    MaglevBalancer balancer(build_maglev(list.view(), kDefaultSize), HashKey::kSourceIp);
    std::vector<int> counts(4, 0);
    for (int i = 0; i < kKeys; ++i) ++counts[static_cast<size_t>(balancer.pick({}, {}))];
    for (size_t i = 0; i < 4; ++i)
        EXPECT_NEAR(counts[i] / double(kKeys), list.weights[i] / 10.0, 0.02);
    Address unix_client;  // AF_UNSPEC: no key either
    PickContext ctx{&unix_client};
    EXPECT_GE(balancer.pick(ctx, {}), 0);
}
