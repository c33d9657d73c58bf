#include "common/cidr.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace {

using ringlb::common::Address;
using ringlb::common::Cidr;
using ringlb::common::cidr_list_contains;
using ringlb::common::make_unix_address;
using ringlb::common::parse_address;

Cidr cidr(std::string_view text) {
    Cidr out;
    std::string error;
    EXPECT_TRUE(Cidr::parse(text, &out, &error)) << text << ": " << error;
    return out;
}

Address address(const char* text) {
    std::optional<Address> a = parse_address(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(Address());
}

TEST(CidrTest, ParsesRangesAndBareAddresses) {
    struct Case {
        const char* text;
        const char* canonical;
        int family;
        int length;
    };
    for (const Case& c :
         {Case{"10.0.0.0/8", "10.0.0.0/8", AF_INET, 8}, Case{"0.0.0.0/0", "0.0.0.0/0", AF_INET, 0},
          Case{"192.0.2.7", "192.0.2.7/32", AF_INET, 32},
          Case{"192.0.2.7/32", "192.0.2.7/32", AF_INET, 32},
          Case{"::1/128", "::1/128", AF_INET6, 128}, Case{"::1", "::1/128", AF_INET6, 128},
          Case{"2001:db8::/32", "2001:db8::/32", AF_INET6, 32},
          Case{"2001:DB8:0::/48", "2001:db8::/48", AF_INET6, 48}, Case{"::/0", "::/0", AF_INET6, 0},
          Case{"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104", AF_INET6, 104}}) {
        Cidr parsed = cidr(c.text);
        EXPECT_EQ(parsed.to_string(), c.canonical) << c.text;
        EXPECT_EQ(parsed.family, c.family) << c.text;
        EXPECT_EQ(parsed.prefix_length, c.length) << c.text;
        EXPECT_EQ(cidr(parsed.to_string()), parsed) << c.text;
    }
}

TEST(CidrTest, ClearsHostBitsLikeHaproxy) {
    EXPECT_EQ(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
    EXPECT_EQ(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
    EXPECT_EQ(cidr("192.168.255.255/17").to_string(), "192.168.128.0/17");
    EXPECT_EQ(cidr("192.0.2.255/0").to_string(), "0.0.0.0/0");
    EXPECT_EQ(cidr("2001:db8:ffff:ffff::1/33").to_string(), "2001:db8:8000::/33");
    EXPECT_EQ(cidr("fe80::1:2:3:4/127").to_string(), "fe80::1:2:3:4/127");
    EXPECT_EQ(cidr("fe80::1:2:3:5/127").to_string(), "fe80::1:2:3:4/127");
}

TEST(CidrTest, RejectsMalformedWithReason) {
    struct Case {
        const char* text;
        const char* reason;
    };
    for (const Case& c :
         {Case{"", "empty"}, Case{"/8", "empty"}, Case{"10.0.0.0/", "decimal"},
          Case{"10.0.0.0/33", "above 32"}, Case{"::/129", "above 128"},
          Case{"10.0.0.0/-1", "decimal"}, Case{"10.0.0.0/+8", "decimal"},
          Case{"10.0.0.0/08", "leading zero"}, Case{"10.0.0.0/8/8", "decimal"},
          Case{"10.0.0.0/ 8", "decimal"}, Case{"10.0.0.0/1000", "decimal"},
          Case{"10.0.0/8", "invalid IP"}, Case{"10.0.0.0:80/8", "without a port"},
          Case{"[::1]/128", "brackets"}, Case{"localhost/8", "not resolved"},
          Case{" 10.0.0.0/8", "invalid IP"}, Case{"10.0.0.0/255.0.0.0", "decimal"}}) {
        Cidr out;
        std::string error;
        EXPECT_FALSE(Cidr::parse(c.text, &out, &error)) << c.text;
        EXPECT_NE(error.find(c.reason), std::string::npos) << c.text << ": " << error;
        EXPECT_NE(error.find(std::string("\"") + c.text + "\""), std::string::npos) << error;
    }
}

TEST(CidrTest, ContainsChecksThePrefixBitsOnly) {
    Cidr v4 = cidr("192.168.128.0/17");
    EXPECT_TRUE(v4.contains(address("192.168.128.0:1")));
    EXPECT_TRUE(v4.contains(address("192.168.255.255:65535")));
    EXPECT_FALSE(v4.contains(address("192.168.127.255:1")));
    EXPECT_FALSE(v4.contains(address("192.169.128.0:1")));
    Cidr host = cidr("203.0.113.9");
    EXPECT_TRUE(host.contains(address("203.0.113.9:80")));
    EXPECT_FALSE(host.contains(address("203.0.113.8:80")));
    Cidr all4 = cidr("0.0.0.0/0");
    EXPECT_TRUE(all4.contains(address("255.255.255.255:1")));
    EXPECT_FALSE(all4.contains(address("[2001:db8::1]:1")));

    Cidr v6 = cidr("2001:db8:8000::/33");
    EXPECT_TRUE(v6.contains(address("[2001:db8:8000::]:1")));
    EXPECT_TRUE(v6.contains(address("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:1")));
    EXPECT_FALSE(v6.contains(address("[2001:db8:7fff:ffff:ffff:ffff:ffff:ffff]:1")));
    Cidr pair = cidr("fe80::1:2:3:4/127");
    EXPECT_TRUE(pair.contains(address("[fe80::1:2:3:5]:1")));
    EXPECT_FALSE(pair.contains(address("[fe80::1:2:3:6]:1")));
    EXPECT_TRUE(cidr("::1").contains(address("[::1]:9")));
    EXPECT_FALSE(cidr("::1").contains(address("127.0.0.1:9")));
}

TEST(CidrTest, MappedClientsMatchIpv4RangesAndTheReverse) {
    // A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d.
    EXPECT_TRUE(cidr("10.0.0.0/8").contains(address("[::ffff:10.9.8.7]:1")));
    EXPECT_FALSE(cidr("10.0.0.0/8").contains(address("[::ffff:11.9.8.7]:1")));
    EXPECT_FALSE(cidr("10.0.0.0/8").contains(address("[::10.9.8.7]:1")));  // not mapped
    EXPECT_TRUE(cidr("::ffff:0:0/96").contains(address("192.0.2.1:1")));
    EXPECT_TRUE(cidr("::ffff:10.0.0.0/104").contains(address("10.1.1.1:1")));
    EXPECT_FALSE(cidr("::ffff:10.0.0.0/104").contains(address("11.1.1.1:1")));
    EXPECT_TRUE(cidr("::/0").contains(address("192.0.2.1:1")));
    EXPECT_FALSE(cidr("2001:db8::/32").contains(address("192.0.2.1:1")));
}

TEST(CidrTest, OtherFamiliesNeverMatch) {
    std::optional<Address> path = make_unix_address("/run/x.sock");
    ASSERT_TRUE(path);
    EXPECT_FALSE(cidr("0.0.0.0/0").contains(*path));
    EXPECT_FALSE(cidr("::/0").contains(*path));
    EXPECT_FALSE(cidr("::/0").contains(Address()));
    EXPECT_FALSE(Cidr().contains(address("10.0.0.1:1")));
}

TEST(CidrTest, ListContainsAny) {
    std::vector<Cidr> list = {cidr("10.0.0.0/8"), cidr("2001:db8::/32"), cidr("192.0.2.1")};
    EXPECT_TRUE(cidr_list_contains(list, address("10.200.0.1:1")));
    EXPECT_TRUE(cidr_list_contains(list, address("[2001:db8::5]:1")));
    EXPECT_TRUE(cidr_list_contains(list, address("192.0.2.1:1")));
    EXPECT_TRUE(cidr_list_contains(list, address("[::ffff:192.0.2.1]:1")));
    EXPECT_FALSE(cidr_list_contains(list, address("192.0.2.2:1")));
    EXPECT_FALSE(cidr_list_contains(list, address("[2001:db9::5]:1")));
    EXPECT_FALSE(cidr_list_contains({}, address("10.0.0.1:1")));
}

}  // namespace
