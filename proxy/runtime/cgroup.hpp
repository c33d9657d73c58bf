#pragma once

#include <cstdint>
#include <string>

namespace ringlb::runtime {

// The CPU and memory limits the process's cgroups put on it, read once at start. A container's
// CPU limit (`podman run --cpus`, a Kubernetes CPU limit) is a CFS quota, not a cpuset: the
// affinity mask still shows every CPU of the node, so sizing shards by it alone would start 64
// shards in a pod allowed half a core of a 64-core node.
struct CgroupLimits {
    // CPUs the quota allows per period (quota / period, e.g. 0.5); 0 when no quota applies or
    // none could be read.
    double cpu_quota = 0;
    // Where it came from, for the log: "cgroup cpu.max 50000/100000" (v2) or "cgroup
    // cpu.cfs_quota_us/cpu.cfs_period_us 50000/100000" (v1); "" without a quota.
    std::string cpu_source;
    // The memory limit in bytes (v2 memory.max, v1 memory.limit_in_bytes); 0 when unlimited or
    // unknown.
    uint64_t memory_max = 0;
    std::string memory_source;  // "cgroup memory.max" or "cgroup memory.limit_in_bytes"
};

// Reads the limits of the calling process's cgroups. Every path is taken under `root` ("" for the
// real system; a fake tree in tests): /proc/self/cgroup names the process's cgroup in each
// hierarchy, /proc/self/mountinfo says where each hierarchy is mounted and which of its cgroups
// is the mount's root (inside a container that is the container's own cgroup, so the path in
// /proc/self/cgroup is taken relative to it). A controller mounted as cgroup v1 wins over the v2
// hierarchy, which on a hybrid host has no controllers. The tightest limit of the cgroup and its
// ancestors up to the mount applies, as the kernel enforces every level.
CgroupLimits read_cgroup_limits(const std::string& root = "");

// The CPUs this process may really use: the number in its affinity mask (`affinity_cpus`, < 1 when
// unknown), capped by the cgroup CPU quota rounded up (1.5 CPUs of quota allow 2 shards to make
// progress at once). At least 1; -1 when both are unknown.
int cpu_budget(int affinity_cpus, const CgroupLimits& cgroup);

}  // namespace ringlb::runtime
