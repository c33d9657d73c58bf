// `ringlb check` on hostile or huge input (issue 17): every bad input ends with exit status 1
// and a message naming the file (and the line when there is one), never a signal or a hang;
// overlapping listener binds are refused; 10,000 listeners are checked in well under a second.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;

// Exit status 1 (not a signal, not a hang), the `expected` text in the output, and no sanitizer
// report.
void expect_refused(const CommandResult& result, const std::string& expected) {
    EXPECT_NE(result.exit_code, -1) << "ringlb check hung";
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_NE(result.output.find(expected), std::string::npos)
        << "expected \"" << expected << "\" in:\n"
        << result.output.substr(0, 2000);
    EXPECT_EQ(sanitizer_report(result.output), "");
}

constexpr std::string_view kCluster =
    "[[cluster]]\nname = \"app\"\nbackends = [ { address = \"127.0.0.1:9001\" } ]\n";

TEST(ConfigLimitsTest, CheckRefusesADeepDottedKey) {
    // The reproduction from the issue: python3 -c "print('['+'a.'*40000+'a]')"; it used to die
    // with SIGSEGV inside toml++.
    std::string text = "[";
    for (int i = 0; i < 40000; ++i) text += "a.";
    text += "a]\n";
    expect_refused(run_check(text),
                   "ringlb.toml:1:2: syntax: a dotted key or table name with more than 32 parts");
}

TEST(ConfigLimitsTest, CheckRefusesDeepArrays) {
    // Reported at the innermost bracket.
    std::string text = "x = " + std::string(100000, '[') + std::string(100000, ']') + "\n";
    expect_refused(
        run_check(text),
        "ringlb.toml:1:100004: syntax: arrays or inline tables nested more than 64 deep");
}

TEST(ConfigLimitsTest, CheckRefusesDevZero) {
    // Used to read until memory ran out and end in std::bad_alloc.
    expect_refused(run_ringlb({"check", "/dev/zero"}),
                   "/dev/zero: not a regular file (it is a character device)");
}

TEST(ConfigLimitsTest, CheckRefusesADirectory) {
    TempDir dir;
    expect_refused(run_ringlb({"check", dir.path()}),
                   dir.path() + ": not a regular file (it is a directory)");
}

TEST(ConfigLimitsTest, CheckRefusesAFifoWithoutBlocking) {
    TempDir dir;
    std::string path = dir.file("ringlb.toml");
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
    // Without a writer, a blocking open would wait forever (run_ringlb's timeout: -1).
    expect_refused(run_ringlb({"check", path}, 10s), path + ": not a regular file (it is a FIFO)");
}

TEST(ConfigLimitsTest, CheckRefusesAnOversizedFile) {
    TempDir dir;
    std::string path = dir.file("ringlb.toml");
    write_file(path, "");
    // Sparse, so no disk space is used; 1 GiB would have been read whole before.
    ASSERT_EQ(truncate(path.c_str(), 1L << 30), 0);
    expect_refused(run_ringlb({"check", path}),
                   path +
                       ": 1073741824 bytes is above the limit of 16 MiB (16777216 bytes) for a "
                       "configuration file");
}

// Two listeners on one port: the second (line 7) is refused, naming the first (line 3).
std::string two_listeners(const std::string& first, const std::string& second) {
    return "[[listener]]\nname = \"one\"\nbind = \"" + first +
           "\"\ncluster = \"app\"\n[[listener]]\nname = \"two\"\nbind = \"" + second +
           "\"\ncluster = \"app\"\n" + std::string(kCluster);
}

TEST(ConfigLimitsTest, CheckRefusesOverlappingBinds) {
    // Each pair binds side by side (SO_REUSEPORT) and would divide the clients between them.
    // check never binds, so the fixed port is harmless.
    struct Case {
        std::string first, second, expected;
    };
    const Case cases[] = {
        {"127.0.0.1:18080", "[::ffff:127.0.0.1]:18080",
         "ringlb.toml:7:8: listener[1].bind: address \"[::ffff:127.0.0.1]:18080\" is already "
         "bound by listener[0] (\"one\", \"127.0.0.1:18080\" at line 3)"},
        {"127.0.0.1:18080", "0.0.0.0:18080",
         "ringlb.toml:7:8: listener[1].bind: address \"0.0.0.0:18080\" overlaps listener[0] "
         "(\"one\", \"127.0.0.1:18080\" at line 3): 0.0.0.0 takes connections for every IPv4 "
         "address"},
        {"[::]:18080", "0.0.0.0:18080",
         "ringlb.toml:7:8: listener[1].bind: address \"0.0.0.0:18080\" overlaps listener[0] "
         "(\"one\", \"[::]:18080\" at line 3): [::] takes connections for every IPv6 address "
         "and, as ringlb leaves IPV6_V6ONLY off, for every IPv4 address"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.first + " then " + c.second);
        expect_refused(run_check(two_listeners(c.first, c.second)), c.expected);
    }
    // Different ports, or an IPv6 address beside 0.0.0.0, are fine.
    for (auto [first, second] :
         {std::pair{"0.0.0.0:18080", "0.0.0.0:18081"}, {"0.0.0.0:18080", "[::1]:18080"}}) {
        CommandResult result = run_check(two_listeners(first, second));
        EXPECT_EQ(result.exit_code, 0) << first << " and " << second << ":\n" << result.output;
    }
}

// `count` listeners on distinct loopback addresses, all to one cluster.
std::string many_listeners(int count) {
    std::string text;
    text.reserve(static_cast<size_t>(count) * 80);
    char line[160];
    for (int i = 0; i < count; ++i) {
        std::snprintf(
            line, sizeof(line),
            "[[listener]]\nname = \"l%d\"\nbind = \"127.0.%d.%d:%d\"\ncluster = \"app\"\n", i,
            i / 50000, i % 250 + 1, 10000 + i % 50000 / 250);
        text += line;
    }
    return text + std::string(kCluster);
}

TEST(ConfigLimitsTest, CheckOfTenThousandListenersIsFast) {
    // The pairwise duplicate checks took 30 s here; hash lookups take ~0.1 s (Release).
    // Generous bound for an ASan build on a busy machine.
    std::string text = many_listeners(10000);
    auto start = std::chrono::steady_clock::now();
    CommandResult result = run_check(text);
    auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
    EXPECT_EQ(result.exit_code, 0) << result.output.substr(0, 2000);
    EXPECT_NE(result.output.find("10000 listener(s)"), std::string::npos) << result.output;
    EXPECT_LT(took, 5s);
    std::printf("check of 10000 listeners: %lld ms\n", static_cast<long long>(took.count()));
}

}  // namespace
}  // namespace ringlb::testkit
