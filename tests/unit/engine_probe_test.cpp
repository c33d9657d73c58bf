// Why io_uring is unavailable: each errno of io_uring_setup has more than one cause, and the log
// must name the one that applies (a seccomp filter is not a kernel without io_uring).

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "proxy/engine/engine.hpp"
#include "tests/unit/fake_tree.hpp"

namespace ringlb::engine {
namespace {

bool has(const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos;
}

TEST(EngineProbeTest, EnosysUnderASeccompFilterIsTheFilterNotTheKernel) {
    std::string r = explain_setup_failure(ENOSYS, 2, 0);
    EXPECT_TRUE(has(r, "io_uring_setup failed: Function not implemented")) << r;
    EXPECT_TRUE(has(r, "io_uring blocked by a seccomp filter")) << r;
    EXPECT_TRUE(has(r, "podman's default profile")) << r;
    EXPECT_TRUE(has(r, "deploy/seccomp/ringlb.json")) << r;
    EXPECT_FALSE(has(r, "kernel built without io_uring")) << r;

    for (int mode : {0, -1}) {
        r = explain_setup_failure(ENOSYS, mode, -1);
        EXPECT_TRUE(has(r, "(kernel built without io_uring)")) << r;
        EXPECT_FALSE(has(r, "seccomp")) << r;
    }
}

TEST(EngineProbeTest, EpermNamesTheSysctlTheFilterOrASecurityModule) {
    std::string r = explain_setup_failure(EPERM, 2, 0);
    EXPECT_TRUE(has(r, "io_uring_setup failed: Operation not permitted")) << r;
    EXPECT_TRUE(has(r, "io_uring blocked by a seccomp filter")) << r;
    EXPECT_TRUE(has(r, "containerd 2.0")) << r;
    EXPECT_TRUE(has(r, "deploy/seccomp/ringlb.json")) << r;

    // The sysctl is a fact whatever filter there is.
    for (int mode : {0, 2}) {
        r = explain_setup_failure(EPERM, mode, 2);
        EXPECT_TRUE(has(r, "(kernel.io_uring_disabled=2)")) << r;
        EXPECT_FALSE(has(r, "seccomp filter")) << r;
    }

    r = explain_setup_failure(EPERM, 0, 0);
    EXPECT_TRUE(has(r, "neither a seccomp filter nor kernel.io_uring_disabled")) << r;
    r = explain_setup_failure(EPERM, 0, -1);
    EXPECT_TRUE(has(r, "security module")) << r;
    // /proc/self/status unreadable: the likeliest cause, said as a guess.
    r = explain_setup_failure(EPERM, -1, -1);
    EXPECT_TRUE(has(r, "blocked by a seccomp profile, e.g.")) << r;
}

TEST(EngineProbeTest, OtherErrorsAreReportedAsTheyAre) {
    std::string r = explain_setup_failure(ENOMEM, 2, 0);
    EXPECT_EQ(r, "io_uring_setup failed: Cannot allocate memory");
}

TEST(EngineProbeTest, SeccompModeComesFromTheStatusFile) {
    unit::FakeTree t;
    ASSERT_FALSE(t.root().empty());
    t.write("status", "Name:\tringlb\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n");
    EXPECT_EQ(read_seccomp_mode(t.root() + "/status"), 2);
    t.write("status", "Name:\tringlb\nSeccomp:\t0\nSeccomp_filters:\t0\n");
    EXPECT_EQ(read_seccomp_mode(t.root() + "/status"), 0);
    t.write("status", "Name:\tringlb\n");  // a kernel without CONFIG_SECCOMP
    EXPECT_EQ(read_seccomp_mode(t.root() + "/status"), -1);
    EXPECT_EQ(read_seccomp_mode(t.root() + "/missing"), -1);
    // This process: the field exists on every kernel that can filter syscalls.
    int self = read_seccomp_mode();
    EXPECT_TRUE(self == 0 || self == 2 || self == -1) << self;
}

}  // namespace
}  // namespace ringlb::engine
