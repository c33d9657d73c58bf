#include "proxy/runtime/cgroup.hpp"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/fake_tree.hpp"

namespace ringlb::runtime {
namespace {

using unit::FakeTree;

// mountinfo lines in the kernel's format: ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS - TYPE SOURCE
// SUPER_OPTIONS.
std::string v2_mount(const std::string& root = "/", const std::string& at = "/sys/fs/cgroup") {
    return "30 23 0:26 " + root + " " + at +
           " rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
}
std::string v1_mount(const std::string& controllers, const std::string& root,
                     const std::string& at) {
    return "32 31 0:29 " + root + " " + at + " rw,relatime - cgroup cgroup rw," + controllers +
           "\n";
}

TEST(CgroupTest, V2TakesTheTightestLimitOfTheCgroupAndItsAncestors) {
    FakeTree t;
    ASSERT_FALSE(t.root().empty());
    t.write("proc/self/cgroup", "0::/kubepods/pod1/ringlb\n");
    t.write("proc/self/mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" + v2_mount());
    t.write("sys/fs/cgroup/kubepods/pod1/ringlb/cpu.max", "50000 100000\n");
    t.write("sys/fs/cgroup/kubepods/pod1/cpu.max", "max 100000\n");
    t.write("sys/fs/cgroup/kubepods/cpu.max", "400000 100000\n");
    t.write("sys/fs/cgroup/kubepods/pod1/ringlb/memory.max", "max\n");
    t.write("sys/fs/cgroup/kubepods/pod1/memory.max", "268435456\n");
    CgroupLimits c = read_cgroup_limits(t.root());
    EXPECT_DOUBLE_EQ(c.cpu_quota, 0.5);
    EXPECT_EQ(c.cpu_source, "cgroup cpu.max 50000/100000");
    EXPECT_EQ(c.memory_max, 268435456u);
    EXPECT_EQ(c.memory_source, "cgroup memory.max");

    // An ancestor with less CPU than the cgroup itself caps it.
    t.write("sys/fs/cgroup/kubepods/pod1/ringlb/cpu.max", "800000 100000\n");
    c = read_cgroup_limits(t.root());
    EXPECT_DOUBLE_EQ(c.cpu_quota, 4);
    EXPECT_EQ(c.cpu_source, "cgroup cpu.max 400000/100000");
}

TEST(CgroupTest, V2InsideACgroupNamespaceReadsTheMountItself) {
    FakeTree t;
    t.write("proc/self/cgroup", "0::/\n");
    t.write("proc/self/mountinfo", v2_mount());
    t.write("sys/fs/cgroup/cpu.max", "150000 100000\n");
    t.write("sys/fs/cgroup/memory.max", "67108864\n");
    CgroupLimits c = read_cgroup_limits(t.root());
    EXPECT_DOUBLE_EQ(c.cpu_quota, 1.5);
    EXPECT_EQ(c.memory_max, 64u << 20);
}

TEST(CgroupTest, V1ControllersWinOverAnEmptyUnifiedHierarchy) {
    // A hybrid host as podman with runc sets up a container: each v1 controller's mount is the
    // container's own cgroup, which /proc/self/cgroup names by its full path.
    FakeTree t;
    const std::string ctr = "/libpod_parent/libpod-0123abcd";
    t.write("proc/self/cgroup",
            "9:name=systemd:/\n4:memory:" + ctr + "\n2:cpu,cpuacct:" + ctr + "\n0::/\n");
    t.write("proc/self/mountinfo", v1_mount("cpu,cpuacct", ctr, "/sys/fs/cgroup/cpu,cpuacct") +
                                       v1_mount("memory", ctr, "/sys/fs/cgroup/memory") +
                                       v2_mount("/", "/sys/fs/cgroup/unified"));
    t.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "100000\n");
    t.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    t.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "33554432\n");
    CgroupLimits c = read_cgroup_limits(t.root());
    EXPECT_DOUBLE_EQ(c.cpu_quota, 1);
    EXPECT_EQ(c.cpu_source, "cgroup cpu.cfs_quota_us/cpu.cfs_period_us 100000/100000");
    EXPECT_EQ(c.memory_max, 32u << 20);
    EXPECT_EQ(c.memory_source, "cgroup memory.limit_in_bytes");
}

TEST(CgroupTest, V1OnTheHostWalksUpFromTheProcessCgroup) {
    FakeTree t;
    t.write("proc/self/cgroup", "3:cpu:/a/b\n5:memory:/a/b\n");
    t.write("proc/self/mountinfo", v1_mount("cpu", "/", "/sys/fs/cgroup/cpu") +
                                       v1_mount("memory", "/", "/sys/fs/cgroup/memory"));
    t.write("sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us", "-1\n");  // no limit of its own
    t.write("sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us", "100000\n");
    t.write("sys/fs/cgroup/cpu/a/cpu.cfs_quota_us", "250000\n");
    t.write("sys/fs/cgroup/cpu/a/cpu.cfs_period_us", "100000\n");
    // The kernel's "no limit" in v1.
    t.write("sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    CgroupLimits c = read_cgroup_limits(t.root());
    EXPECT_DOUBLE_EQ(c.cpu_quota, 2.5);
    EXPECT_EQ(c.memory_max, 0u);
    EXPECT_EQ(c.memory_source, "");
}

TEST(CgroupTest, NothingReadableMeansNoLimits) {
    FakeTree t;
    CgroupLimits c = read_cgroup_limits(t.root());
    EXPECT_EQ(c.cpu_quota, 0);
    EXPECT_EQ(c.cpu_source, "");
    EXPECT_EQ(c.memory_max, 0u);
    // Garbage in the files is no limit either.
    t.write("proc/self/cgroup", "0::/x\n");
    t.write("proc/self/mountinfo", v2_mount());
    t.write("sys/fs/cgroup/x/cpu.max", "lots 100000\n");
    t.write("sys/fs/cgroup/x/memory.max", "\n");
    c = read_cgroup_limits(t.root());
    EXPECT_EQ(c.cpu_quota, 0);
    EXPECT_EQ(c.memory_max, 0u);
}

TEST(CgroupTest, EscapedMountPointsAreDecoded) {
    FakeTree t;
    t.write("proc/self/cgroup", "0::/\n");
    t.write("proc/self/mountinfo", v2_mount("/", "/sys/fs/my\\040cgroup"));
    t.write("sys/fs/my cgroup/cpu.max", "200000 100000\n");
    EXPECT_DOUBLE_EQ(read_cgroup_limits(t.root()).cpu_quota, 2);
}

TEST(CgroupTest, CpuBudgetIsTheAffinityCappedByTheQuotaRoundedUp) {
    auto quota = [](double cpus) {
        CgroupLimits c;
        c.cpu_quota = cpus;
        return c;
    };
    EXPECT_EQ(cpu_budget(2, quota(0)), 2);     // no quota
    EXPECT_EQ(cpu_budget(2, quota(1)), 1);     // podman run --cpus 1
    EXPECT_EQ(cpu_budget(64, quota(0.5)), 1);  // half a core of a 64-core node
    EXPECT_EQ(cpu_budget(4, quota(1.5)), 2);
    EXPECT_EQ(cpu_budget(1, quota(4)), 1);     // taskset -c 0 under a 4-CPU quota
    EXPECT_EQ(cpu_budget(-1, quota(2.5)), 3);  // affinity unknown
    EXPECT_EQ(cpu_budget(-1, quota(0)), -1);
}

}  // namespace
}  // namespace ringlb::runtime
