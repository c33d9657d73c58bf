#include "common/address.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>

using ringlb::common::parse_address;

TEST(AddressTest, ParsesIpv4) {
    auto a = parse_address("127.0.0.1:8080");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->family(), AF_INET);
    EXPECT_EQ(a->port(), 8080);
    EXPECT_EQ(a->length, sizeof(sockaddr_in));
    EXPECT_EQ(a->to_string(), "127.0.0.1:8080");
}

TEST(AddressTest, ParsesBracketedIpv6) {
    auto a = parse_address("[::1]:443");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->family(), AF_INET6);
    EXPECT_EQ(a->port(), 443);
    EXPECT_EQ(a->to_string(), "[::1]:443");
}

TEST(AddressTest, RejectsBadInputWithReason) {
    struct Case {
        const char* text;
        const char* reason_part;
    };
    for (const Case& c :
         {Case{"127.0.0.1", "expected"}, Case{"127.0.0.1:", "invalid port"},
          Case{"127.0.0.1:65536", "invalid port"}, Case{"127.0.0.1:8x", "invalid port"},
          Case{"localhost:80", "not resolved"}, Case{"::1:80", "[ipv6]:port"},
          Case{"[::1]80", "[ipv6]:port"}, Case{"999.1.1.1:80", "invalid IP"}}) {
        std::string error;
        EXPECT_FALSE(parse_address(c.text, &error)) << c.text;
        EXPECT_NE(error.find(c.reason_part), std::string::npos) << c.text << ": " << error;
    }
}

TEST(AddressTest, ParseIpTakesBareAddressesWithPortZero) {
    auto v4 = ringlb::common::parse_ip("127.0.0.2");
    ASSERT_TRUE(v4);
    EXPECT_EQ(v4->family(), AF_INET);
    EXPECT_EQ(v4->port(), 0);
    EXPECT_EQ(v4->length, sizeof(sockaddr_in));
    EXPECT_EQ(v4->to_string(), "127.0.0.2:0");
    auto v6 = ringlb::common::parse_ip("0:0::1");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->family(), AF_INET6);
    EXPECT_EQ(v6->port(), 0);
    EXPECT_EQ(v6->length, sizeof(sockaddr_in6));
    EXPECT_EQ(v6->to_string(), "[::1]:0");
}

TEST(AddressTest, ParseIpRejectsPortsBracketsAndNames) {
    struct Case {
        const char* text;
        const char* reason;
    };
    for (const Case& c :
         {Case{"", "empty IP address"},
          Case{"127.0.0.1:80", "expected an IP address without a port"},
          Case{"[::1]:80", "expected an IP address without a port"},
          Case{"[::1]", "write IPv6 addresses without brackets"},
          Case{"localhost", "invalid IP address \"localhost\" (host names are not resolved)"},
          Case{"10.0.0.256", "invalid IP address \"10.0.0.256\" (host names are not resolved)"},
          Case{" 10.0.0.1", "invalid IP address \" 10.0.0.1\" (host names are not resolved)"}}) {
        std::string error;
        EXPECT_FALSE(ringlb::common::parse_ip(c.text, &error)) << c.text;
        EXPECT_EQ(error, c.reason) << c.text;
    }
}

TEST(AddressTest, UnixAddressesHaveGetsocknameLengths) {
    using ringlb::common::make_unix_address;
    auto path = make_unix_address("/run/ringlb.sock");
    ASSERT_TRUE(path);
    EXPECT_EQ(path->family(), AF_UNIX);
    EXPECT_EQ(path->length, 2u + 16u + 1u);  // family, path, NUL
    EXPECT_EQ(path->port(), 0);
    EXPECT_EQ(path->to_string(), "unix:/run/ringlb.sock");
    auto longest = make_unix_address(std::string(108, 'p'));
    ASSERT_TRUE(longest);
    EXPECT_EQ(longest->length, 2u + 108u);  // no room for the NUL
    EXPECT_EQ(longest->to_string(), "unix:" + std::string(108, 'p'));
    auto abstract = make_unix_address(std::string_view("\0ringlb\0a", 9));
    ASSERT_TRUE(abstract);
    EXPECT_EQ(abstract->length, 2u + 9u);
    EXPECT_EQ(abstract->to_string(), "unix:@ringlb@a");
    auto unnamed = make_unix_address("");
    ASSERT_TRUE(unnamed);
    EXPECT_EQ(unnamed->length, sizeof(sa_family_t));
    EXPECT_EQ(unnamed->to_string(), "unix:");
    EXPECT_NE(*path, *unnamed);
    EXPECT_EQ(*path, *make_unix_address("/run/ringlb.sock"));

    EXPECT_FALSE(make_unix_address(std::string(109, 'p')));
    EXPECT_FALSE(make_unix_address(std::string_view("/a\0b", 4)));
}

TEST(AddressTest, UnmappedIpv4) {
    using ringlb::common::unmapped_ipv4;
    EXPECT_EQ(unmapped_ipv4(*parse_address("[::ffff:192.0.2.1]:443")),
              *parse_address("192.0.2.1:443"));
    for (const char* same : {"192.0.2.1:443", "[::1]:443", "[::192.0.2.1]:443",
                             "[::ffff:0:192.0.2.1]:443", "[2001:db8::ffff:c000:201]:443"}) {
        EXPECT_EQ(unmapped_ipv4(*parse_address(same)), *parse_address(same)) << same;
    }
    EXPECT_EQ(unmapped_ipv4(*ringlb::common::make_unix_address("/x")),
              *ringlb::common::make_unix_address("/x"));
}

TEST(AddressTest, SocketAddressTakesUnixPaths) {
    using ringlb::common::parse_socket_address;
    auto unix = parse_socket_address("unix:/run/a.sock");
    ASSERT_TRUE(unix);
    EXPECT_EQ(unix->family(), AF_UNIX);
    EXPECT_EQ(unix->to_string(), "unix:/run/a.sock");
    EXPECT_EQ(ringlb::common::unix_path(*unix), "/run/a.sock");
    EXPECT_TRUE(*unix == *ringlb::common::make_unix_address("/run/a.sock"));
    auto ip = parse_socket_address("[::1]:80");
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->to_string(), "[::1]:80");
    EXPECT_EQ(ringlb::common::unix_path(*ip), "");
    std::string error;
    EXPECT_FALSE(parse_socket_address("unix:", &error));
    EXPECT_EQ(error, "expected an absolute path after \"unix:\", like \"unix:/run/x.sock\"");
    EXPECT_FALSE(parse_socket_address("unix:a.sock", &error));
    std::string longest = "unix:/" + std::string(106, 'x');  // 107 bytes: room for the NUL
    EXPECT_TRUE(parse_socket_address(longest));
    EXPECT_FALSE(parse_socket_address(longest + "x", &error));
    EXPECT_EQ(error, "a unix socket path must be shorter than 108 bytes and hold no NUL");
    EXPECT_FALSE(parse_socket_address(std::string("unix:/a\0b", 9), &error));
    EXPECT_FALSE(parse_socket_address("1.2.3.4", &error));
}
