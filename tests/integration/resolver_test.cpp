// discovery::Resolver against a real DNS server: dnsmasq on a loopback port, answering from a
// hosts file the tests rewrite (and SIGHUP it to reread), with no upstream server.

#include "proxy/discovery/resolver.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "tests/integration/dnsmasq.hpp"
#include "tests/integration/testkit.hpp"

namespace ringlb {
namespace {

using discovery::LookupError;
using discovery::Resolver;
using discovery::ResolverOptions;
using discovery::Result;
using testkit::Clock;
using testkit::Dnsmasq;
using testkit::Millis;

constexpr int kLocalTtl = 7;

int open_fds() {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        (void)entry;
        ++n;
    }
    return n;
}

std::vector<std::string> texts(const std::vector<common::Address>& addresses) {
    std::vector<std::string> out;
    for (const auto& address : addresses) out.push_back(address.to_string());
    return out;
}

std::string describe(const Result& result) {
    std::string out(discovery::to_string(result.error));
    if (!result.message.empty()) out += " (" + result.message + ")";
    for (const auto& text : texts(result.addresses)) out += " " + text;
    return out;
}

class ResolverTest : public ::testing::Test {
  protected:
    static constexpr const char* kHosts =
        "127.0.0.13 web.ringlb.test\n"
        "127.0.0.11 web.ringlb.test\n"
        "127.0.0.12 web.ringlb.test\n"
        "fd00::2 mixed.ringlb.test\n"
        "127.0.0.21 mixed.ringlb.test\n"
        "fd00::1 mixed.ringlb.test\n"
        "fd00::7 v6only.ringlb.test\n";

    void SetUp() override {
        std::string why = dns_.start(kHosts, kLocalTtl);
        if (!why.empty()) GTEST_SKIP() << "dnsmasq cannot run here: " << why;
    }

    std::unique_ptr<Resolver> make_resolver(ResolverOptions options = {}) {
        return std::make_unique<Resolver>(io_, std::vector<common::Address>{dns_.address()},
                                          options);
    }

    // Runs the loop until `done` holds or `limit` passes.
    void run_until(const std::function<bool()>& done, Millis limit = Millis(5000)) {
        auto deadline = Clock::now() + limit;
        while (!done() && Clock::now() < deadline) {
            if (io_.stopped()) io_.restart();
            io_.run_one_for(Millis(10));
        }
    }

    std::optional<Result> lookup(Resolver& resolver, const std::string& host, uint16_t port) {
        std::optional<Result> got;
        resolver.resolve(host, port, [&](Result result) { got = std::move(result); });
        run_until([&] { return got.has_value(); });
        return got;
    }

    boost::asio::io_context io_;
    Dnsmasq dns_;
};

TEST_F(ResolverTest, EveryARecordSorted) {
    auto resolver = make_resolver();
    auto result = lookup(*resolver, "web.ringlb.test", 8080);
    ASSERT_TRUE(result);
    ASSERT_TRUE(result->ok()) << describe(*result) << "\n" << dns_.log();
    EXPECT_EQ(texts(result->addresses),
              (std::vector<std::string>{"127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080"}));
    EXPECT_EQ(result->ttl, std::chrono::seconds(kLocalTtl));
    EXPECT_EQ(resolver->pending(), 0u);
    // Both families were asked for.
    EXPECT_NE(dns_.log().find("query[AAAA] web.ringlb.test"), std::string::npos) << dns_.log();
}

TEST_F(ResolverTest, AaaaAlongsideA) {
    auto resolver = make_resolver();
    auto mixed = lookup(*resolver, "mixed.ringlb.test", 443);
    ASSERT_TRUE(mixed && mixed->ok()) << (mixed ? describe(*mixed) : "no answer");
    EXPECT_EQ(texts(mixed->addresses),
              (std::vector<std::string>{"127.0.0.21:443", "[fd00::1]:443", "[fd00::2]:443"}));
    auto v6 = lookup(*resolver, "v6only.ringlb.test", 443);
    ASSERT_TRUE(v6 && v6->ok()) << (v6 ? describe(*v6) : "no answer");
    EXPECT_EQ(texts(v6->addresses), (std::vector<std::string>{"[fd00::7]:443"}));
    EXPECT_EQ(v6->ttl, std::chrono::seconds(kLocalTtl));
}

TEST_F(ResolverTest, FollowsCname) {
    auto resolver = make_resolver();
    auto result = lookup(*resolver, "alias.ringlb.test", 80);
    ASSERT_TRUE(result && result->ok()) << (result ? describe(*result) : "no answer");
    EXPECT_EQ(texts(result->addresses),
              (std::vector<std::string>{"127.0.0.11:80", "127.0.0.12:80", "127.0.0.13:80"}));
    EXPECT_EQ(result->ttl, std::chrono::seconds(kLocalTtl));
}

TEST_F(ResolverTest, RecordChangesAreSeen) {
    auto resolver = make_resolver();
    auto before = lookup(*resolver, "web.ringlb.test", 80);
    ASSERT_TRUE(before && before->ok()) << (before ? describe(*before) : "no answer");

    // A pod replaced, one gone, one new with an IPv6 address.
    ASSERT_TRUE(
        dns_.replace_hosts("127.0.0.12 web.ringlb.test\n"
                           "127.0.0.14 web.ringlb.test\n"
                           "fd00::14 web.ringlb.test\n"));
    auto after = lookup(*resolver, "web.ringlb.test", 80);
    ASSERT_TRUE(after && after->ok()) << (after ? describe(*after) : "no answer");
    EXPECT_EQ(texts(after->addresses),
              (std::vector<std::string>{"127.0.0.12:80", "127.0.0.14:80", "[fd00::14]:80"}));
    EXPECT_NE(before->addresses, after->addresses);

    // The same records in another order: an equal set.
    ASSERT_TRUE(
        dns_.replace_hosts("fd00::14 web.ringlb.test\n"
                           "127.0.0.14 web.ringlb.test\n"
                           "127.0.0.12 web.ringlb.test\n"));
    auto reordered = lookup(*resolver, "web.ringlb.test", 80);
    ASSERT_TRUE(reordered && reordered->ok()) << (reordered ? describe(*reordered) : "no answer");
    EXPECT_EQ(reordered->addresses, after->addresses);

    // Every record removed: the name no longer exists.
    ASSERT_TRUE(dns_.replace_hosts("127.0.0.99 other.ringlb.test\n"));
    auto gone = lookup(*resolver, "web.ringlb.test", 80);
    ASSERT_TRUE(gone);
    EXPECT_EQ(gone->error, LookupError::kNxdomain) << describe(*gone);
    EXPECT_TRUE(gone->addresses.empty());
}

TEST_F(ResolverTest, UnknownNameIsNxdomain) {
    auto resolver = make_resolver();
    auto result = lookup(*resolver, "nosuch.ringlb.test", 80);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->error, LookupError::kNxdomain) << describe(*result);
    EXPECT_TRUE(result->addresses.empty());
    EXPECT_FALSE(result->message.empty());
}

// dnsmasq answers NOERROR with an empty answer for both A and AAAA of a name that has only a TXT
// record: that is kNoData, told apart from NXDOMAIN.
TEST_F(ResolverTest, NameWithoutAddressRecordsIsNoData) {
    auto resolver = make_resolver();
    auto result = lookup(*resolver, "text-only.ringlb.test", 80);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->error, LookupError::kNoData) << describe(*result);
    EXPECT_TRUE(result->addresses.empty());
}

TEST_F(ResolverTest, RefusedIsServerFailure) {
    auto resolver = make_resolver();
    // Outside ringlb.test, with no upstream, dnsmasq answers REFUSED.
    auto result = lookup(*resolver, "web.example.org", 80);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->error, LookupError::kServerFailure) << describe(*result) << "\n"
                                                          << dns_.log();
}

TEST_F(ResolverTest, SilentServerTimesOutWithinTheBound) {
    ResolverOptions options;
    options.timeout = Millis(600);
    options.tries = 2;
    auto resolver = make_resolver(options);
    ASSERT_EQ(::kill(dns_.process().pid(), SIGSTOP), 0);  // bound, but answers nothing
    auto start = Clock::now();
    auto result = lookup(*resolver, "web.ringlb.test", 80);
    auto took = std::chrono::duration_cast<Millis>(Clock::now() - start);
    ::kill(dns_.process().pid(), SIGCONT);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->error, LookupError::kTimeout) << describe(*result);
    EXPECT_GE(took, Millis(550));
    EXPECT_LE(took, Millis(900));
    EXPECT_EQ(resolver->pending(), 0u);

    // The resolver still works once the server is back.
    auto later = lookup(*resolver, "web.ringlb.test", 80);
    ASSERT_TRUE(later);
    EXPECT_TRUE(later->ok()) << describe(*later);
}

TEST_F(ResolverTest, StoppedServerFailsWithinTheBound) {
    ResolverOptions options;
    options.timeout = Millis(600);
    auto resolver = make_resolver(options);
    dns_.process().kill_and_reap(SIGTERM);
    auto start = Clock::now();
    auto result = lookup(*resolver, "web.ringlb.test", 80);
    auto took = std::chrono::duration_cast<Millis>(Clock::now() - start);
    ASSERT_TRUE(result);
    // Nothing listens on the port: the kernel refuses each query (ICMP port unreachable), no
    // waiting for a timeout.
    EXPECT_EQ(result->error, LookupError::kServerFailure) << describe(*result);
    EXPECT_LE(took, Millis(900));
}

TEST_F(ResolverTest, NextServerWhenTheFirstIsDown) {
    auto dead = *common::parse_address("127.0.0.1:" + std::to_string(testkit::free_port()));
    ResolverOptions options;
    options.timeout = Millis(1000);
    Resolver resolver(io_, {dead, dns_.address()}, options);
    auto start = Clock::now();
    auto result = lookup(resolver, "web.ringlb.test", 80);
    auto took = std::chrono::duration_cast<Millis>(Clock::now() - start);
    ASSERT_TRUE(result);
    ASSERT_TRUE(result->ok()) << describe(*result);
    EXPECT_EQ(result->addresses.size(), 3u);
    // At worst one query waited out its try (500 ms) on the dead server: the kernel's refusal
    // of a UDP datagram can surface on the next send from that socket rather than its own.
    EXPECT_LT(took, Millis(900));
}

// With explicit servers a name is asked as written: LOCALDOMAIN (like resolv.conf's search
// list) does not make "web" into web.ringlb.test.
TEST_F(ResolverTest, ExplicitServersIgnoreTheSearchList) {
    ::setenv("LOCALDOMAIN", "ringlb.test", 1);
    auto resolver = make_resolver();
    ::unsetenv("LOCALDOMAIN");
    auto result = lookup(*resolver, "web", 80);
    ASSERT_TRUE(result);
    EXPECT_FALSE(result->ok()) << describe(*result);
    EXPECT_NE(dns_.log().find("query[A] web from"), std::string::npos) << dns_.log();
    EXPECT_EQ(dns_.log().find("query[A] web.ringlb.test"), std::string::npos) << dns_.log();
}

TEST_F(ResolverTest, ManyLookupsAtOnce) {
    auto resolver = make_resolver();
    struct Want {
        const char* host;
        LookupError error;
        size_t addresses;
    };
    const std::vector<Want> wants = {{"web.ringlb.test", LookupError::kOk, 3},
                                     {"mixed.ringlb.test", LookupError::kOk, 3},
                                     {"v6only.ringlb.test", LookupError::kOk, 1},
                                     {"nosuch.ringlb.test", LookupError::kNxdomain, 0}};
    const size_t kRounds = 25;
    std::vector<std::optional<Result>> got(wants.size() * kRounds);
    for (size_t i = 0; i < got.size(); ++i)
        resolver->resolve(wants[i % wants.size()].host, static_cast<uint16_t>(1000 + i),
                          [&got, i](Result result) { got[i] = std::move(result); });
    EXPECT_EQ(resolver->pending(), got.size());
    run_until([&] {
        for (const auto& g : got)
            if (!g) return false;
        return true;
    });
    for (size_t i = 0; i < got.size(); ++i) {
        const Want& want = wants[i % wants.size()];
        ASSERT_TRUE(got[i]) << "lookup " << i << " of " << want.host << " unanswered";
        EXPECT_EQ(got[i]->error, want.error) << want.host << ": " << describe(*got[i]);
        ASSERT_EQ(got[i]->addresses.size(), want.addresses) << want.host;
        for (const auto& address : got[i]->addresses) EXPECT_EQ(address.port(), 1000 + i);
    }
    EXPECT_EQ(resolver->pending(), 0u);
}

TEST_F(ResolverTest, DestroyedResolverNeverCallsBack) {
    ResolverOptions options;
    options.timeout = Millis(200);
    auto resolver = make_resolver(options);
    int fds_before = open_fds();  // the loop's own (epoll, timerfd) are open by now
    ASSERT_EQ(::kill(dns_.process().pid(), SIGSTOP), 0);
    int calls = 0;
    for (int i = 0; i < 3; ++i) resolver->resolve("web.ringlb.test", 80, [&](Result) { ++calls; });
    run_until([] { return false; }, Millis(50));  // the queries are out, their sockets watched
    EXPECT_GT(open_fds(), fds_before);
    EXPECT_EQ(resolver->pending(), 3u);
    resolver.reset();
    run_until([] { return false; }, Millis(400));  // past the deadline the lookups had
    ::kill(dns_.process().pid(), SIGCONT);
    EXPECT_EQ(calls, 0);
    EXPECT_EQ(open_fds(), fds_before) << "c-ares' sockets closed once, by c-ares";
}

TEST_F(ResolverTest, AnsweredButUndeliveredIsDroppedWithTheResolver) {
    auto resolver = make_resolver();
    bool called = false;
    resolver->resolve("web.ringlb.test", 80, [&](Result) { called = true; });
    // Run until the answer is in (pending() drops) but stop before the posted callback runs.
    run_until([&] { return resolver->pending() == 0; });
    ASSERT_EQ(resolver->pending(), 0u);
    resolver.reset();
    run_until([] { return false; }, Millis(50));
    EXPECT_FALSE(called);
}

TEST_F(ResolverTest, CallbackMayDestroyTheResolver) {
    auto resolver = make_resolver();
    int calls = 0;
    resolver->resolve("web.ringlb.test", 80, [&](Result result) {
        ++calls;
        EXPECT_TRUE(result.ok()) << describe(result);
        resolver.reset();
    });
    // Answered, its callback queued: the next lookup's answer can only come after it, and
    // finds the Resolver gone.
    run_until([&] { return resolver->pending() == 0; });
    resolver->resolve("v6only.ringlb.test", 80, [&](Result) { ++calls; });
    run_until([&] { return resolver == nullptr; });
    EXPECT_EQ(resolver, nullptr);
    run_until([] { return false; }, Millis(100));
    EXPECT_EQ(calls, 1);
}

// No dnsmasq: the system's configuration, whose /etc/hosts knows localhost.
TEST(SystemResolverTest, LocalhostFromTheSystemConfiguration) {
    boost::asio::io_context io;
    Resolver resolver(io, {});
    std::optional<Result> got;
    resolver.resolve("localhost", 9, [&](Result result) { got = std::move(result); });
    auto deadline = Clock::now() + Millis(5000);
    while (!got && Clock::now() < deadline) {
        if (io.stopped()) io.restart();
        io.run_one_for(Millis(10));
    }
    ASSERT_TRUE(got);
    ASSERT_TRUE(got->ok()) << describe(*got);
    auto loopback = *common::parse_address("127.0.0.1:9");
    EXPECT_NE(std::find(got->addresses.begin(), got->addresses.end(), loopback),
              got->addresses.end())
        << describe(*got);
}

TEST(ResolverOptionsTest, RejectsAServerThatIsNoIpAddress) {
    boost::asio::io_context io;
    common::Address unset;
    EXPECT_THROW(Resolver resolver(io, {unset}), std::runtime_error);
}

}  // namespace
}  // namespace ringlb
