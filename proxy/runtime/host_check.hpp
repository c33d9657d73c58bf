#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/runtime/cgroup.hpp"

namespace ringlb::runtime {

// The host settings that bound what a configuration can do, read once at start. -1: could not be
// read (the file is missing or unparsable).
struct HostLimits {
    int tcp_tw_reuse = -1;                    // net.ipv4.tcp_tw_reuse
    int port_lo = -1, port_hi = -1;           // net.ipv4.ip_local_port_range
    int tcp_fin_timeout = -1;                 // net.ipv4.tcp_fin_timeout (seconds)
    int somaxconn = -1;                       // net.core.somaxconn
    long fd_soft = -1, fd_hard = -1;          // RLIMIT_NOFILE
    bool local_port_range_supported = false;  // IP_LOCAL_PORT_RANGE (Linux 6.3+)
    long pipe_user_pages_soft = -1;           // fs.pipe-user-pages-soft (0: no limit)
    int cpus = -1;                            // CPUs this process may run on (usable_cpus())
    CgroupLimits cgroup;                      // CPU quota and memory limit of its cgroups
};

// The CPUs this process may run on, in increasing order: the calling thread's affinity mask
// (taskset, a container's cgroup cpuset), which std::thread::hardware_concurrency() ignores (it
// counts every online CPU). Empty when the mask cannot be read.
std::vector<int> usable_cpus();

// How many shards run: runtime.workers, or for "auto" one per usable CPU (`cpus`: cpu_budget()
// of the affinity mask and the cgroup quota; 1 when unknown).
unsigned resolve_workers(const config::RuntimeConfig& runtime, int cpus);

// The CPUs the process may really use on this host: cpu_budget(h.cpus, h.cgroup).
int cpu_budget(const HostLimits& h);

// The warning for more shards than usable CPUs, with what each extra shard costs; "" when
// `workers` <= `cpus` or `cpus` is unknown (< 1). check_host() includes it; `ringlb check`
// prints it too.
std::string workers_warning(const config::Config& config, unsigned workers, int cpus);

// One line on how the number of shards was chosen, e.g. "workers auto: 1 (cgroup cpu.max
// 100000/100000 = 1 CPU; 2 CPUs in affinity)". check_host() logs it.
std::string workers_line(const config::RuntimeConfig& runtime, const HostLimits& h,
                         unsigned workers);

// Reads the sysctls under `proc_sys_root` (a fake tree in tests), the process's RLIMIT_NOFILE,
// usable CPUs and cgroup limits (read_cgroup_limits()), and probes IP_LOCAL_PORT_RANGE on the
// running kernel. The net.* values are those of the calling thread's network namespace, the one
// ringlb's sockets live in. Call it after common::raise_fd_limit() so the fd limit is the one the
// shards will run with.
HostLimits read_host_limits(const std::string& proc_sys_root = "/proc/sys");

enum class AdviceLevel {
    kInfo,
    kWarn,
    kError,  // ringlb must refuse to start
};
const char* to_string(AdviceLevel level);

struct HostAdvice {
    AdviceLevel level = AdviceLevel::kInfo;
    std::string message;  // one line, says what to change and how
};

// Checks a configuration against the host. The first entry is always an info line with every
// value read; then one entry per finding. `workers` is the number of shards that will run (the
// resolved value of runtime.workers).
std::vector<HostAdvice> check_host(const HostLimits& limits, const config::Config& config,
                                   unsigned workers);

// Whether any advice is an error (ringlb must not start).
bool has_error(const std::vector<HostAdvice>& advice);

// The source ports connect() will pick from for a cluster's upstream sockets. lo/hi are -1 when
// the system range is unknown.
struct PortRange {
    int lo = -1;
    int hi = -1;
    bool known() const { return lo > 0 && hi >= lo; }
    long count() const { return known() ? hi - lo + 1 : 0; }
};

// The range the kernel will really use: the cluster's source_port_min/max applied the way
// IP_LOCAL_PORT_RANGE applies them (each bound only when it lies inside the system range, else
// silently ignored). That is the intersection with the system range whenever the two overlap; a
// range wholly outside it changes nothing and yields the whole system range. Without
// IP_LOCAL_PORT_RANGE support, or with source_port_min/max unset, it is the system range.
PortRange effective_source_port_range(const config::ClusterConfig& cluster,
                                      const HostLimits& limits);

// How long a 4-tuple stays in TIME_WAIT on Linux: TCP_TIMEWAIT_LEN, a compile-time 60 s. It is
// not tcp_fin_timeout (which bounds orphaned FIN_WAIT_2 sockets) and no sysctl changes it.
inline constexpr int kTimeWaitSeconds = 60;

// New upstream connections per second a cluster can sustain before ringlb runs out of source
// ports, assuming ringlb's side closes first so every connection leaves a TIME_WAIT entry:
//   usable source ports x max(1, source addresses of the backend's family) / 60 s,
// summed over the cluster's distinct backends (a 4-tuple is per destination, and
// IP_BIND_ADDRESS_NO_PORT lets one source port serve every destination).
// Usable ports are effective_source_port_range(); ports listed in ip_local_reserved_ports and
// ports other sockets hold are not subtracted.
// - close = "reset" does not change the figure: it avoids TIME_WAIT only where ringlb ends a
//   session or the backend closes first; when a client half-closes first, ringlb's FIN reaches
//   the backend first and TIME_WAIT follows on ringlb's side, as TCP requires.
// - tcp_tw_reuse = 1 (or 2 with loopback backends) lets connect() reuse a TIME_WAIT port once
//   TCP timestamps show it is safe (about a second after the old connection's last segment), so
//   the real ceiling is far higher; the figure stays the conservative one.
// - When the backend closes first, the TIME_WAIT is on its side, not ringlb's.
// NaN when the system port range is unknown; 0 for a cluster without backends.
double sustainable_new_conn_rate(const config::ClusterConfig& cluster, const HostLimits& limits);

// The file descriptors a configuration can hold open, for the fd-limit advice.
struct FdEstimate {
    long fixed = 0;  // listeners, engines, warm pools, queued clients, pipes: all shards
    long sessions =
        -1;  // most concurrent sessions (sum of backends' max_connections); -1: unbounded
    long total() const { return sessions < 0 ? -1 : fixed + 2 * sessions; }
};
FdEstimate estimate_fds(const config::Config& config, unsigned workers);

// Below this fd limit a proxy runs out of descriptors under modest load.
inline constexpr long kFdFloor = 4096;

}  // namespace ringlb::runtime
