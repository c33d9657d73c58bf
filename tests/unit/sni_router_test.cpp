#include "proxy/frontend/sni_router.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using ringlb::frontend::SniRouter;

namespace {

TEST(SniRouterTest, ExactBeforeWildcardThenLongestSuffix) {
    SniRouter router({{"*.example.com", 1},
                      {"api.example.com", 2},
                      {"*.eu.example.com", 3},
                      {"*.com", 4},
                      {"example.com", 5},
                      {"eu.example.com", 6}});
    struct Case {
        const char* sni;
        std::optional<size_t> target;
    };
    for (const Case& c : {Case{"api.example.com", 2},     // exact beats *.example.com
                          Case{"www.example.com", 1},     // one label
                          Case{"a.b.example.com", 1},     // several labels
                          Case{"x.eu.example.com", 3},    // longest suffix wins
                          Case{"x.y.eu.example.com", 3},  //
                          Case{"eu.example.com", 6},      // exact
                          Case{"example.com", 5},         // exact; *.example.com never
                          Case{"other.com", 4},           //
                          Case{"a.b.c.other.com", 4},     //
                          Case{"com", std::nullopt},      // "*.com" needs a label before
                          Case{"example.org", std::nullopt},
                          Case{"badexample.com", 4},  // not *.example.com: labels, not bytes
                          Case{"", std::nullopt}}) {
        EXPECT_EQ(router.match(c.sni), c.target) << c.sni;
    }
}

TEST(SniRouterTest, WildcardDoesNotMatchItsOwnDomain) {
    SniRouter router({{"*.example.com", 7}});
    EXPECT_EQ(router.match("a.example.com"), 7u);
    EXPECT_EQ(router.match("a.b.example.com"), 7u);
    EXPECT_EQ(router.match("example.com"), std::nullopt);
    EXPECT_EQ(router.match(".example.com"), std::nullopt);
    EXPECT_EQ(router.match("a..example.com"), std::nullopt);  // no empty label for the '*'
    EXPECT_EQ(router.match("badexample.com"), std::nullopt);
    EXPECT_EQ(router.match("example.com.evil"), std::nullopt);
    EXPECT_EQ(router.match("a.example.co"), std::nullopt);
}

TEST(SniRouterTest, CaseAndTrailingDot) {
    SniRouter router({{"API.Example.com", 1}, {"*.Wild.Example.COM", 2}});
    EXPECT_EQ(router.match("api.example.com"), 1u);
    EXPECT_EQ(router.match("API.EXAMPLE.COM"), 1u);
    EXPECT_EQ(router.match("api.example.com."), 1u);
    EXPECT_EQ(router.match("X.wild.example.com"), 2u);
    EXPECT_EQ(router.match("x.WILD.example.com."), 2u);
    EXPECT_EQ(router.match("api.example.com.."), std::nullopt);
    EXPECT_EQ(router.match("."), std::nullopt);
}

TEST(SniRouterTest, NoRoutesAndLongNames) {
    SniRouter empty({});
    EXPECT_EQ(empty.match("api.example.com"), std::nullopt);
    std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                          std::string(63, 'c') + "." + std::string(59, 'd') + ".com";
    ASSERT_EQ(longest.size(), 255u);
    SniRouter router({{longest, 1}, {"*.com", 2}});
    EXPECT_EQ(router.match(longest), 1u);
    EXPECT_EQ(router.match(longest + "."), 1u);
    EXPECT_EQ(router.match("x" + longest), std::nullopt) << "longer than any name";
    EXPECT_EQ(router.match(std::string(300, 'a') + ".com"), std::nullopt);
}

TEST(SniRouterTest, ValidPatterns) {
    for (const char* pattern : {"api.example.com", "*.example.com", "*.com", "localhost",
                                "_acme-challenge.example.com", "A.B-C.D_E", "*.a"}) {
        std::string error;
        EXPECT_TRUE(SniRouter::valid_pattern(pattern, &error)) << pattern << ": " << error;
    }
    std::string label63(63, 'a');
    std::string longest = label63 + "." + label63 + "." + label63 + "." + std::string(63, 'b');
    EXPECT_TRUE(SniRouter::valid_pattern(longest, nullptr));
    EXPECT_FALSE(SniRouter::valid_pattern(longest + "b", nullptr));
}

TEST(SniRouterTest, InvalidPatternsWithReason) {
    struct Case {
        const char* pattern;
        const char* reason;
    };
    for (const Case& c :
         {Case{"", "empty"}, Case{"*", "bare '*'"}, Case{"*.", "nothing after"},
          Case{"**.example.com", "'*' is allowed only"},
          Case{"*example.com", "'*' is allowed only"},
          Case{"www.*.example.com", "'*' is allowed only"}, Case{"mail.*", "'*' is allowed only"},
          Case{"*.*.example.com", "'*' is allowed only"}, Case{".example.com", "empty label"},
          Case{"*..example.com", "empty label"}, Case{"a..b", "empty label"},
          Case{"example.com.", "ends with '.'"}, Case{"exa mple.com", "byte 32"},
          Case{"example.com:443", "byte 58"},
          Case{"b\xc3\xbc"
               "cher.example",
               "byte 195"}}) {
        std::string error;
        EXPECT_FALSE(SniRouter::valid_pattern(c.pattern, &error)) << c.pattern;
        EXPECT_NE(error.find(c.reason), std::string::npos) << c.pattern << ": " << error;
        EXPECT_NE(error.find("SNI pattern"), std::string::npos) << error;
        EXPECT_THROW(SniRouter({{c.pattern, 0}}), std::invalid_argument) << c.pattern;
    }
}

TEST(SniRouterTest, DuplicatePatternsAreRefused) {
    EXPECT_THROW(SniRouter({{"api.example.com", 1}, {"API.example.com", 2}}),
                 std::invalid_argument);
    EXPECT_THROW(SniRouter({{"*.example.com", 1}, {"*.EXAMPLE.com", 2}}), std::invalid_argument);
    try {
        SniRouter({{"a.example", 1}, {"a.example", 1}});
        FAIL() << "no exception";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find("'a.example' given twice"), std::string::npos)
            << error.what();
    }
    // The same name as an exact and as a wildcard pattern is no duplicate.
    SniRouter router({{"example.com", 1}, {"*.example.com", 2}});
    EXPECT_EQ(router.match("example.com"), 1u);
    EXPECT_EQ(router.match("www.example.com"), 2u);
}

}  // namespace
