#include "common/host_port.hpp"

#include <gtest/gtest.h>

#include <string>

using ringlb::common::parse_host_port;

TEST(HostPortTest, ParsesNames) {
    struct Case {
        const char* text;
        const char* host;
        uint16_t port;
    };
    for (const Case& c :
         {Case{"localhost:80", "localhost", 80},
          Case{"web.default.svc.cluster.local:8080", "web.default.svc.cluster.local", 8080},
          Case{"web.default.svc.cluster.local.:1", "web.default.svc.cluster.local.", 1},
          Case{"Backend-1.Example.COM:65535", "Backend-1.Example.COM", 65535},
          Case{"1.2.3.example:443", "1.2.3.example", 443},
          Case{"0x7f.example:443", "0x7f.example", 443}, Case{"a:9", "a", 9}}) {
        std::string error;
        auto parsed = parse_host_port(c.text, &error);
        ASSERT_TRUE(parsed) << c.text << ": " << error;
        EXPECT_EQ(parsed->host, c.host);
        EXPECT_EQ(parsed->port, c.port);
    }
}

TEST(HostPortTest, LengthLimits) {
    std::string label63(63, 'a');
    std::string name = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
    ASSERT_EQ(name.size(), 253u);
    EXPECT_TRUE(parse_host_port(name + ":80"));
    EXPECT_TRUE(parse_host_port(name + ".:80")) << "a trailing dot is not counted";
    std::string error;
    EXPECT_FALSE(parse_host_port(name + "b:80", &error));
    EXPECT_NE(error.find("253"), std::string::npos) << error;
    EXPECT_TRUE(parse_host_port(label63 + ".example:80"));
    EXPECT_FALSE(parse_host_port(label63 + "a.example:80", &error));
    EXPECT_NE(error.find("63"), std::string::npos) << error;
}

TEST(HostPortTest, RejectsWithReason) {
    struct Case {
        const char* text;
        const char* reason_part;
    };
    for (const Case& c : {Case{"127.0.0.1:80", "IP address"},
                          Case{"[::1]:80", "IPv6"},
                          Case{"::1:80", "IPv6"},
                          Case{"fe80::1%eth0:80", "IPv6"},
                          Case{"web.example", "host:port"},
                          Case{"web.example:", "invalid port"},
                          Case{"web.example:0", "invalid port"},
                          Case{"web.example:65536", "invalid port"},
                          Case{"web.example:8x", "invalid port"},
                          Case{"web.example:+80", "invalid port"},
                          Case{":80", "empty host name"},
                          Case{".:80", "empty host name"},
                          Case{"web..example:80", "empty label"},
                          Case{".web.example:80", "empty label"},
                          Case{"web.example..:80", "empty label"},
                          Case{"-web.example:80", "'-'"},
                          Case{"web-.example:80", "'-'"},
                          Case{"web_1.example:80", "invalid character '_'"},
                          Case{"web example:80", "invalid character ' '"},
                          Case{"wéb.example:80", "invalid character"},
                          Case{"10.0.0.300:80", "all digits"},
                          Case{"1.2.3:80", "all digits"},
                          Case{"123:80", "all digits"},
                          Case{"web.123.:80", "all digits"}}) {
        std::string error;
        EXPECT_FALSE(parse_host_port(c.text, &error)) << c.text;
        EXPECT_NE(error.find(c.reason_part), std::string::npos) << c.text << ": " << error;
    }
}
