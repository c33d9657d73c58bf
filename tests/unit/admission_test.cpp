// A listener's access control and limits on one shard (proxy/shard/admission.hpp), on a clock the
// test sets: allow and deny, max_connections, the per-source table (its bound, eviction, failing
// open) and the token bucket, and how the limits divide over shards.

#include "proxy/shard/admission.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/cidr.hpp"

namespace ringlb::shard {
namespace {

using Reason = RejectReason;
using Ticket = Admission::Ticket;

common::Address ip(const std::string& text) {
    std::optional<common::Address> a = common::parse_address(text);
    EXPECT_TRUE(a.has_value()) << text;
    return a.value_or(common::Address{});
}

std::vector<common::Cidr> cidrs(std::initializer_list<const char*> texts) {
    std::vector<common::Cidr> out;
    for (const char* t : texts) {
        common::Cidr c;
        EXPECT_TRUE(common::Cidr::parse(t, &c)) << t;
        out.push_back(c);
    }
    return out;
}

TEST(AdmissionTest, DenyWinsOverAllow) {
    config::ListenerConfig l;
    EXPECT_EQ(check_acl(l, ip("192.0.2.1:1")), std::nullopt);
    l.deny = cidrs({"127.0.0.2"});
    EXPECT_EQ(check_acl(l, ip("127.0.0.2:5")), Reason::k_denied);
    EXPECT_EQ(check_acl(l, ip("127.0.0.3:5")), std::nullopt);
    l.allow = cidrs({"127.0.0.0/8"});
    EXPECT_EQ(check_acl(l, ip("127.0.0.2:5")), Reason::k_denied);  // in both: deny wins
    EXPECT_EQ(check_acl(l, ip("127.0.0.3:5")), std::nullopt);
    EXPECT_EQ(check_acl(l, ip("10.0.0.1:5")), Reason::k_not_allowed);
    // A dual-stack socket's mapped form is the IPv4 client.
    EXPECT_EQ(check_acl(l, ip("[::ffff:127.0.0.2]:5")), Reason::k_denied);
    EXPECT_EQ(check_acl(l, ip("[::ffff:127.0.0.9]:5")), std::nullopt);
    EXPECT_EQ(check_acl(l, ip("[::1]:5")), Reason::k_not_allowed);
    // A client without an IP address matches no range.
    common::Address unix_client;
    unix_client.storage.ss_family = AF_UNIX;
    unix_client.length = sizeof(sa_family_t);
    EXPECT_EQ(check_acl(l, unix_client), Reason::k_not_allowed);
    l.allow.clear();
    EXPECT_EQ(check_acl(l, unix_client), std::nullopt);
}

TEST(AdmissionTest, SharesDivideOverShards) {
    config::ListenerConfig l;
    l.max_connections = 5;
    l.max_connections_per_source = 3;
    l.rate_count = 10;
    l.rate_period = config::Millis(1000);
    l.burst = 7;
    AdmissionLimits one = AdmissionLimits::share(l, 1);
    EXPECT_EQ(one.max_connections, 5u);
    EXPECT_EQ(one.per_source, 3u);
    EXPECT_EQ(one.refill, 10u);
    EXPECT_EQ(one.cost, 1000u);
    EXPECT_EQ(one.capacity, 7000u);
    AdmissionLimits two = AdmissionLimits::share(l, 2);
    EXPECT_EQ(two.max_connections, 3u);  // rounded up
    EXPECT_EQ(two.per_source, 2u);
    // 10 per s over 2 shards: 5 tokens per s each, exactly (10 units per ms, 2000 a token).
    EXPECT_EQ(two.refill, 10u);
    EXPECT_EQ(two.cost, 2000u);
    EXPECT_EQ(two.capacity, 4u * 2000u);  // burst 7 over 2: 4
    EXPECT_EQ(AdmissionLimits::share(config::ListenerConfig{}, 4), AdmissionLimits{});
}

TEST(AdmissionTest, MaxConnectionsCountsOpenTickets) {
    config::ListenerConfig l;
    l.max_connections = 3;
    Admission a(1);
    a.configure(l, 2);  // a share of 2 on this shard
    EXPECT_FALSE(a.needs_source());
    Ticket t1, t2, t3;
    EXPECT_EQ(a.admit(t1), std::nullopt);
    EXPECT_EQ(a.admit(t2), std::nullopt);
    EXPECT_EQ(a.admit(t3), Reason::k_max_connections);
    EXPECT_EQ(a.active(), 2u);
    t1.release();
    EXPECT_EQ(a.active(), 1u);
    t1.release();  // twice is once
    EXPECT_EQ(a.active(), 1u);
    {
        Ticket moved = std::move(t2);
        EXPECT_EQ(a.active(), 1u);
    }
    EXPECT_EQ(a.active(), 0u);
    // A reload that lifts the limit keeps counting the sessions already open.
    EXPECT_EQ(a.admit(t1), std::nullopt);
    l.max_connections = 0;
    a.configure(l, 2);
    EXPECT_EQ(a.admit(t2), std::nullopt);
    EXPECT_EQ(a.active(), 2u);
}

TEST(AdmissionTest, PerSourceLimitLeavesOtherSourcesAlone) {
    config::ListenerConfig l;
    l.max_connections_per_source = 2;
    Admission a(7);
    a.configure(l, 1);
    EXPECT_TRUE(a.needs_source());
    common::Address x = ip("127.0.0.2:1000");
    common::Address x_other_port = ip("127.0.0.2:2000");
    common::Address y = ip("127.0.0.3:1000");
    Ticket t[5];
    EXPECT_EQ(a.admit_source(l, x, 0, t[0]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, x_other_port, 0, t[1]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, x, 0, t[2]), Reason::k_max_connections_per_source);
    EXPECT_EQ(a.admit_source(l, y, 0, t[2]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, y, 0, t[3]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, y, 0, t[4]), Reason::k_max_connections_per_source);
    t[0].release();
    EXPECT_EQ(a.admit_source(l, x, 0, t[0]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, x, 0, t[4]), Reason::k_max_connections_per_source);
    // The IPv4 client and its mapped form are one source.
    EXPECT_EQ(a.admit_source(l, ip("[::ffff:127.0.0.2]:3"), 0, t[4]),
              Reason::k_max_connections_per_source);
    // Deny is checked first and takes nothing.
    l.deny = cidrs({"127.0.0.4"});
    EXPECT_EQ(a.admit_source(l, ip("127.0.0.4:1"), 0, t[4]), Reason::k_denied);
}

TEST(AdmissionTest, TokenBucketRefillsAtTheRate) {
    config::ListenerConfig l;
    l.rate_count = 4;  // 4/s: one token per 250 ms
    l.rate_period = config::Millis(1000);
    l.burst = 3;
    Admission a(3);
    a.configure(l, 1);
    common::Address x = ip("10.0.0.1:1");
    common::Address y = ip("10.0.0.2:1");
    std::vector<Ticket> held(32);
    size_t n = 0;
    uint64_t now = 1'000'000;
    // A full bucket: the burst at once, then nothing.
    for (int i = 0; i < 3; ++i) EXPECT_EQ(a.admit_source(l, x, now, held[n++]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, x, now, held[n]), Reason::k_rate_per_source);
    EXPECT_EQ(a.admit_source(l, y, now, held[n++]), std::nullopt);  // another source: its own
    // 249 ms later still nothing; at 250 ms one token.
    EXPECT_EQ(a.admit_source(l, x, now + 249, held[n]), Reason::k_rate_per_source);
    EXPECT_EQ(a.admit_source(l, x, now + 250, held[n++]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, x, now + 250, held[n]), Reason::k_rate_per_source);
    // Closing sessions gives no token back: the rate counts new connections.
    for (size_t i = 0; i < n; ++i) held[i].release();
    EXPECT_EQ(a.admit_source(l, x, now + 499, held[n]), Reason::k_rate_per_source);
    // An hour idle refills to the burst, not beyond.
    now += 3'600'000;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(a.admit_source(l, x, now, held[n++]), std::nullopt);
    EXPECT_EQ(a.admit_source(l, x, now, held[n]), Reason::k_rate_per_source);
    // Over 10 s at one attempt per ms: 10 s * 4/s = 40 tokens.
    size_t admitted = 0;
    for (uint64_t t = 1; t <= 10'000; ++t) {
        Ticket ticket;
        admitted += !a.admit_source(l, x, now + t, ticket).has_value();
    }
    EXPECT_EQ(admitted, 40u);
}

TEST(AdmissionTest, TokenBucketSharedOverShardsAddsUpToTheRate) {
    config::ListenerConfig l;
    l.rate_count = 3;  // 3 per s over 2 shards: 1.5 per s each, kept exactly
    l.rate_period = config::Millis(1000);
    l.burst = 1;
    Admission a(3);
    a.configure(l, 2);
    common::Address x = ip("10.0.0.1:1");
    size_t admitted = 0;
    for (uint64_t t = 0; t < 10'000; ++t) {
        Ticket ticket;
        admitted += !a.admit_source(l, x, t, ticket).has_value();
    }
    // The first from the full bucket (burst 1 over 2 shards: 1), then 1.5 per s for 10 s.
    EXPECT_EQ(admitted, 1u + 14u);
}

TEST(AdmissionTest, SourceTableIsBoundedAndForgetsIdleSourcesFirst) {
    config::ListenerConfig l;
    l.max_connections_per_source = 1;
    l.rate_count = 1;
    l.rate_period = config::Millis(60000);  // 1/m: an entry refills in 60 s
    l.burst = 1;
    Admission a(11);
    a.configure(l, 1);
    constexpr size_t kCapacity = SourceTable::kBuckets * SourceTable::kWays;
    // 4 * capacity distinct addresses, one connection each, closed at once: the table never
    // holds more than its capacity.
    for (uint32_t i = 0; i < 4 * kCapacity; ++i) {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(0x0a000000u + i);
        common::Address addr;
        std::memcpy(&addr.storage, &sin, sizeof(sin));
        addr.length = sizeof(sin);
        Ticket t;
        ASSERT_EQ(a.admit_source(l, addr, 1000, t), std::nullopt) << i;
    }
    EXPECT_EQ(a.sources()->live_count(), kCapacity);
}

TEST(AdmissionTest, FullBucketOfOpenSourcesFailsOpen) {
    config::ListenerConfig l;
    l.max_connections_per_source = 1;
    Admission a(5);
    a.configure(l, 1);
    // Hold one session from each of many addresses until some bucket has kWays open sources,
    // then one more address of that bucket is admitted untracked, as often as it connects.
    std::vector<Ticket> held;
    held.reserve(1 << 16);
    size_t live_before = 0;
    uint32_t i = 0;
    for (;; ++i) {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr.s6_addr[0] = 0x20;
        std::memcpy(&sin6.sin6_addr.s6_addr[12], &i, 4);
        common::Address addr;
        std::memcpy(&addr.storage, &sin6, sizeof(sin6));
        addr.length = sizeof(sin6);
        held.emplace_back();
        live_before = a.sources()->live_count();
        ASSERT_EQ(a.admit_source(l, addr, 0, held.back()), std::nullopt);
        if (a.sources()->live_count() == live_before) {
            // Not tracked: a second and third connection from it are admitted too.
            Ticket again, third;
            EXPECT_EQ(a.admit_source(l, addr, 0, again), std::nullopt);
            EXPECT_EQ(a.admit_source(l, addr, 0, third), std::nullopt);
            break;
        }
        ASSERT_LT(i, SourceTable::kBuckets * SourceTable::kWays);
    }
    EXPECT_GE(i, SourceTable::kWays);
    // Every tracked source is still held to its limit.
    held.clear();
    EXPECT_LE(a.sources()->live_count(), SourceTable::kBuckets * SourceTable::kWays);
}

}  // namespace
}  // namespace ringlb::shard
