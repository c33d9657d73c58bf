#include "proxy/runtime/host_check.hpp"

#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>

#include "common/socket.hpp"

namespace ringlb::runtime {

namespace {

// Rough allowances, not an inventory: stdio, the control thread's Asio descriptors, the admin
// listener and its clients, health checks; per shard the engine's ring or epoll fd, its eventfd
// and a little slack.
constexpr long kProcessFds = 64;
constexpr long kShardFds = 4;
// The kernel's default tcp_fin_timeout; above it orphaned FIN_WAIT_2 sockets linger longer.
constexpr int kDefaultFinTimeout = 60;

std::optional<long> read_long(const std::string& path) {
    std::ifstream in(path);
    long value = 0;
    if (!(in >> value)) return std::nullopt;
    return value;
}

std::optional<std::pair<long, long>> read_pair(const std::string& path) {
    std::ifstream in(path);
    long a = 0, b = 0;
    if (!(in >> a >> b)) return std::nullopt;
    return std::pair{a, b};
}

int as_int(std::optional<long> value) {
    return value ? static_cast<int>(*value) : -1;
}

std::string value_or_unknown(long value) {
    return value < 0 ? std::string("unknown") : std::to_string(value);
}

std::string range_text(long lo, long hi) {
    std::string out = std::to_string(lo);
    out.append("-").append(std::to_string(hi));
    return out;
}

bool is_loopback(const common::Address& a) {
    if (a.family() == AF_INET) {
        uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr);
        return (ip >> 24) == 127;
    }
    if (a.family() == AF_INET6) {
        const in6_addr& ip = reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&ip)) return true;
        return IN6_IS_ADDR_V4MAPPED(&ip) && ip.s6_addr[12] == 127;
    }
    return a.family() == AF_UNIX;  // a unix socket is on this host too
}

// Same IP and port: the destination half of a 4-tuple.
bool same_endpoint(const common::Address& a, const common::Address& b) {
    if (a.family() != b.family() || a.port() != b.port()) return false;
    if (a.family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in*>(&b.storage)->sin_addr.s_addr;
    if (a.family() == AF_INET6)
        return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr,
                           &reinterpret_cast<const sockaddr_in6*>(&b.storage)->sin6_addr,
                           sizeof(in6_addr)) == 0;
    return false;
}

bool port_range_set(const config::ClusterConfig& c) {
    return c.source_port_min != 0 || c.source_port_max != 0;
}

const char* kRaiseFdLimit =
    "raise it with LimitNOFILE= in the systemd unit, `ulimit -n` in the shell that starts ringlb "
    "(up to the hard limit; fs.nr_open caps both), `--ulimit nofile=N:N` for docker run; in "
    "Kubernetes pods have no such field and the container runtime's default limit applies";

void add(std::vector<HostAdvice>& out, AdviceLevel level, std::string message) {
    out.push_back({level, std::move(message)});
}

std::string summary(const HostLimits& h) {
    std::string s = "host: net.ipv4.tcp_tw_reuse=" + value_or_unknown(h.tcp_tw_reuse);
    s += " net.ipv4.ip_local_port_range=";
    s += h.port_lo < 0 || h.port_hi < 0 ? std::string("unknown") : range_text(h.port_lo, h.port_hi);
    s += " net.ipv4.tcp_fin_timeout=" + value_or_unknown(h.tcp_fin_timeout);
    s += " net.core.somaxconn=" + value_or_unknown(h.somaxconn);
    s += " fs.pipe-user-pages-soft=" + value_or_unknown(h.pipe_user_pages_soft);
    s += " fd_limit=" + value_or_unknown(h.fd_soft) + " (hard " + value_or_unknown(h.fd_hard) + ")";
    s += h.local_port_range_supported ? " IP_LOCAL_PORT_RANGE=supported"
                                      : " IP_LOCAL_PORT_RANGE=unsupported";
    s += " cpus=" + value_or_unknown(h.cpus);
    return s;
}

void check_backlogs(const HostLimits& h, const config::Config& config,
                    std::vector<HostAdvice>& out) {
    if (h.somaxconn < 0) return;
    for (const auto& l : config.listeners) {
        if (l.backlog <= h.somaxconn) continue;
        add(out, AdviceLevel::kWarn,
            "listener " + l.name + ": backlog " + std::to_string(l.backlog) +
                " is above net.core.somaxconn (" + std::to_string(h.somaxconn) +
                "); listen() silently caps it to " + std::to_string(h.somaxconn) +
                ". Raise it with `sysctl -w net.core.somaxconn=" + std::to_string(l.backlog) +
                "` (persist it in /etc/sysctl.d/, see deploy/sysctl/ringlb.conf; per network "
                "namespace, an unsafe sysctl in Kubernetes) and restart ringlb, or lower backlog");
    }
}

void check_fds(const HostLimits& h, const config::Config& config, unsigned workers,
               std::vector<HostAdvice>& out) {
    if (h.fd_soft < 0) return;
    if (h.fd_soft < kFdFloor) {
        add(out, AdviceLevel::kWarn,
            "fd limit is " + std::to_string(h.fd_soft) + " (RLIMIT_NOFILE, hard " +
                value_or_unknown(h.fd_hard) + "), below " + std::to_string(kFdFloor) +
                ": each proxied session holds 2 fds, so at most about " +
                std::to_string(h.fd_soft / 2) + " sessions; " + kRaiseFdLimit);
    }
    FdEstimate e = estimate_fds(config, workers);
    if (e.fixed >= h.fd_soft) {
        add(out, AdviceLevel::kWarn,
            "listeners, warm pools, queues and pipes of " + std::to_string(workers) +
                " shards can hold about " + std::to_string(e.fixed) + " fds, the fd limit is " +
                std::to_string(h.fd_soft) +
                ": accept() and connect() fail with EMFILE once pools and queues fill, before "
                "sessions are counted; " +
                kRaiseFdLimit + "; or lower pool.warm, queue.size or runtime.pipe_pool");
    } else if (e.sessions >= 0 && e.total() > h.fd_soft) {
        add(out, AdviceLevel::kWarn,
            "the configuration can hold about " + std::to_string(e.total()) + " fds (" +
                std::to_string(e.fixed) + " for listeners, warm pools, queues and pipes + 2 x " +
                std::to_string(e.sessions) +
                " sessions at the backends' max_connections) but the fd limit is " +
                std::to_string(h.fd_soft) + ": past it accept() and connect() fail with EMFILE; " +
                kRaiseFdLimit);
    } else if (e.sessions < 0) {
        add(out, AdviceLevel::kInfo,
            "fd limit " + std::to_string(h.fd_soft) + " leaves room for about " +
                std::to_string((h.fd_soft - e.fixed) / 2) +
                " concurrent sessions (2 fds each) after " + std::to_string(e.fixed) +
                " for listeners, warm pools, queues and pipes");
    }
}

void check_source_ports(const HostLimits& h, const config::Config& config,
                        std::vector<HostAdvice>& out) {
    for (const auto& c : config.clusters) {
        if (!port_range_set(c)) continue;
        std::string range = range_text(c.source_port_min, c.source_port_max);
        if (!h.local_port_range_supported) {
            add(out, AdviceLevel::kError,
                "cluster " + c.name + ": source_port_range " + range +
                    " needs IP_LOCAL_PORT_RANGE, which this kernel lacks (Linux 6.3 or newer is "
                    "needed); remove source_port_range or run on a newer kernel");
            continue;
        }
        if (h.port_lo < 0 || h.port_hi < 0) {
            add(out, AdviceLevel::kWarn,
                "cluster " + c.name +
                    ": cannot read net.ipv4.ip_local_port_range, so whether "
                    "source_port_range " +
                    range +
                    " takes effect is unknown (the kernel ignores a "
                    "bound outside the system range)");
            continue;
        }
        PortRange eff = effective_source_port_range(c, h);
        bool lo_ignored = c.source_port_min != 0 && eff.lo != c.source_port_min;
        bool hi_ignored = c.source_port_max != 0 && eff.hi != c.source_port_max;
        if (!lo_ignored && !hi_ignored) continue;
        std::string system = range_text(h.port_lo, h.port_hi);
        add(out, AdviceLevel::kWarn,
            "cluster " + c.name + ": source_port_range " + range +
                " is not inside net.ipv4.ip_local_port_range (" + system +
                "); the kernel silently ignores a bound outside the system range, so connects "
                "will use ports " +
                range_text(eff.lo, eff.hi) + ". Choose a range inside " + system +
                ", or widen the system range (`sysctl -w net.ipv4.ip_local_port_range=\"" +
                std::to_string(
                    std::min<long>(h.port_lo, c.source_port_min ? c.source_port_min : h.port_lo)) +
                " " + std::to_string(std::max<long>(h.port_hi, c.source_port_max)) +
                "\"`, persisted in /etc/sysctl.d/)");
    }
}

void check_tw_reuse(const HostLimits& h, const config::Config& config,
                    std::vector<HostAdvice>& out) {
    // Every cluster: even with close = "reset", a client that half-closes first makes ringlb's
    // FIN reach the backend first, and TIME_WAIT follows on ringlb's side.
    std::string graceful;  // clusters whose closes can leave TIME_WAIT on ringlb's side
    std::string remote;    // those of them with a non-loopback backend
    for (const auto& c : config.clusters) {
        graceful += (graceful.empty() ? "" : ", ") + c.name;
        bool any_remote = std::any_of(c.backends.begin(), c.backends.end(),
                                      [](const auto& b) { return !is_loopback(b.address); });
        if (any_remote) remote += (remote.empty() ? "" : ", ") + c.name;
    }
    if (h.tcp_tw_reuse == 0 && !graceful.empty()) {
        add(out, AdviceLevel::kWarn,
            "net.ipv4.tcp_tw_reuse = 0: upstream connects cannot reuse a source port whose last "
            "connection to the same backend is still in TIME_WAIT (60 s), so cluster(s) " +
                graceful +
                " can run out of source ports under connection churn. Set it to 1 (reuse for all "
                "outgoing connections, when TCP timestamps show it is safe) or 2 (loopback only, "
                "the kernel default), or use close = \"reset\" where ringlb or the backend ends "
                "sessions");
    } else if (h.tcp_tw_reuse == 2 && !remote.empty()) {
        add(out, AdviceLevel::kInfo,
            "net.ipv4.tcp_tw_reuse = 2 reuses TIME_WAIT source ports for loopback connections "
            "only; cluster(s) " +
                remote +
                " reach non-loopback backends, where each closed connection holds its source port "
                "for 60 s. 1 extends the reuse to them (needs net.ipv4.tcp_timestamps = 1)");
    }
}

void check_fin_timeout(const HostLimits& h, const config::Config& config,
                       std::vector<HostAdvice>& out) {
    if (h.tcp_fin_timeout <= kDefaultFinTimeout) return;
    std::string off;
    for (const auto& l : config.listeners)
        if (l.half_closed_timeout.count() == 0) off += (off.empty() ? "" : ", ") + l.name;
    std::string message =
        "net.ipv4.tcp_fin_timeout = " + std::to_string(h.tcp_fin_timeout) +
        " s: a socket ringlb has closed waits up to that long in FIN_WAIT_2 for the peer's FIN "
        "(the kernel default is 60 s; TIME_WAIT is a fixed 60 s and does not depend on it). A "
        "half-closed session that ringlb still holds open is not bounded by this timer but by "
        "the listener's half_closed_timeout";
    if (!off.empty()) message += ", which is off on listeners " + off;
    add(out, AdviceLevel::kInfo, std::move(message));
}

void check_pipes(const HostLimits& h, const config::Config& config, unsigned workers,
                 std::vector<HostAdvice>& out) {
    bool splice = std::any_of(config.listeners.begin(), config.listeners.end(), [](const auto& l) {
        return l.forward == config::ForwardMode::kSplice;
    });
    if (!splice || h.pipe_user_pages_soft <= 0 || config.runtime.pipe_pool == 0) return;
    long page = ::sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    // The kernel sizes a pipe in a power-of-two number of pages.
    long pages = (static_cast<long>(config.runtime.pipe_size) + page - 1) / page;
    long rounded = 1;
    while (rounded < pages) rounded <<= 1;
    long total = rounded * config.runtime.pipe_pool * static_cast<long>(workers);
    if (total <= h.pipe_user_pages_soft) return;
    add(out, AdviceLevel::kWarn,
        "splice: " + std::to_string(workers) + " shards x runtime.pipe_pool " +
            std::to_string(config.runtime.pipe_pool) + " pipes x " + std::to_string(rounded) +
            " pages = " + std::to_string(total) + " pages, above fs.pipe-user-pages-soft (" +
            std::to_string(h.pipe_user_pages_soft) +
            ", counted per user over all its processes): past it an unprivileged user's new pipes "
            "get the minimum size and F_SETPIPE_SZ fails (CAP_SYS_RESOURCE or CAP_SYS_ADMIN "
            "lifts this). Raise fs.pipe-user-pages-soft to at least " +
            std::to_string(total) + " or lower runtime.pipe_pool");
}

std::string mib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.0f MiB", static_cast<double>(bytes) / (1 << 20));
    return text;
}

void check_memory(const HostLimits& h, const config::Config& config, unsigned workers,
                  std::vector<HostAdvice>& out) {
    const config::RuntimeConfig& r = config.runtime;
    uint64_t pools = uint64_t{workers} * r.buffer_count * r.buffer_size;
    std::string what = mib(pools) + " (" + std::to_string(workers) +
                       " shards x runtime.buffer_count " + std::to_string(r.buffer_count) +
                       " x runtime.buffer_size " + std::to_string(r.buffer_size) + ")";
    if (h.cgroup.memory_max == 0) {
        add(out, AdviceLevel::kInfo, "buffer pools: at most " + what + "; no cgroup memory limit");
    } else if (pools <= h.cgroup.memory_max) {
        add(out, AdviceLevel::kInfo,
            "buffer pools: at most " + what + "; " + h.cgroup.memory_source + " " +
                mib(h.cgroup.memory_max));
    } else {
        add(out, AdviceLevel::kWarn,
            "buffer pools can take " + what + ", more than the memory limit (" +
                h.cgroup.memory_source + " " + mib(h.cgroup.memory_max) +
                "): under load the kernel kills ringlb (out of memory) before the pools fill. "
                "Lower runtime.buffer_count or runtime.buffer_size (or runtime.workers), or raise "
                "the memory limit");
    }
}

void forecasts(const HostLimits& h, const config::Config& config, std::vector<HostAdvice>& out) {
    for (const auto& c : config.clusters) {
        if (c.close == config::ClosePolicy::kReset) {
            add(out, AdviceLevel::kInfo,
                "cluster " + c.name +
                    ": close = reset leaves no TIME_WAIT where ringlb ends a session (timeouts, "
                    "errors); a client that half-closes first still "
                    "makes ringlb's FIN reach the backend first (TIME_WAIT follows), so the "
                    "forecast below still bounds that traffic");
        }
        double rate = sustainable_new_conn_rate(c, h);
        if (std::isnan(rate)) continue;
        PortRange eff = effective_source_port_range(c, h);
        char figure[32];
        std::snprintf(figure, sizeof(figure), "%.0f", rate);
        add(out, AdviceLevel::kInfo,
            "cluster " + c.name + ": about " + figure +
                " new upstream connections/s before source ports run out while ringlb closes "
                "first (" +
                std::to_string(eff.count()) + " ports " + range_text(eff.lo, eff.hi) + ", " +
                std::to_string(std::max<size_t>(1, c.source_addresses.size())) +
                " source address(es), " + std::to_string(c.backends.size()) + " backend(s), " +
                std::to_string(kTimeWaitSeconds) + " s TIME_WAIT)");
    }
}

}  // namespace

const char* to_string(AdviceLevel level) {
    switch (level) {
        case AdviceLevel::kInfo:
            return "info";
        case AdviceLevel::kWarn:
            return "warn";
        case AdviceLevel::kError:
            return "error";
    }
    return "?";
}

std::vector<int> usable_cpus() {
    // cpu_set_t holds 1024 CPUs; larger machines need a larger mask (EINVAL until it fits).
    for (size_t sets = 1; sets <= 64; sets *= 2) {
        std::vector<cpu_set_t> mask(sets);
        size_t bytes = sets * sizeof(cpu_set_t);
        if (::sched_getaffinity(0, bytes, mask.data()) != 0) {
            if (errno == EINVAL) continue;
            return {};
        }
        std::vector<int> cpus;
        for (size_t cpu = 0; cpu < bytes * 8; ++cpu)
            if (CPU_ISSET_S(cpu, bytes, mask.data())) cpus.push_back(static_cast<int>(cpu));
        return cpus;
    }
    return {};
}

unsigned resolve_workers(const config::RuntimeConfig& runtime, int cpus) {
    if (runtime.workers > 0) return runtime.workers;
    return cpus > 0 ? static_cast<unsigned>(cpus) : 1;
}

int cpu_budget(const HostLimits& h) {
    return cpu_budget(h.cpus, h.cgroup);
}

std::string workers_line(const config::RuntimeConfig& runtime, const HostLimits& h,
                         unsigned workers) {
    std::string why;
    if (h.cgroup.cpu_quota > 0) {
        char cpus[32];
        std::snprintf(cpus, sizeof(cpus), "%g", h.cgroup.cpu_quota);
        why = h.cgroup.cpu_source + " = " + cpus + (h.cgroup.cpu_quota == 1 ? " CPU" : " CPUs");
    }
    std::string affinity =
        h.cpus > 0 ? std::to_string(h.cpus) + (h.cpus == 1 ? " CPU" : " CPUs") + " in affinity"
                   : std::string("CPU affinity unknown");
    why = why.empty() ? affinity + "; no cgroup CPU quota" : why + "; " + affinity;
    if (runtime.workers == 0) return "workers auto: " + std::to_string(workers) + " (" + why + ")";
    return "workers: " + std::to_string(workers) + " (configured; " + why + ")";
}

std::string workers_warning(const config::Config& config, unsigned workers, int cpus) {
    if (cpus < 1 || workers <= static_cast<unsigned>(cpus)) return {};
    const config::RuntimeConfig& r = config.runtime;
    std::string costs =
        "a thread, about 0.5 MiB resident at rest (io_uring; epoll: 48 bytes per "
        "fd of the fd limit) and up to " +
        mib(uint64_t{r.buffer_count} * r.buffer_size) +
        " of forwarding buffers under load (buffer_count x buffer_size)";
    if (r.pipe_pool > 0)
        costs += " plus " + mib(uint64_t{r.pipe_pool} * r.pipe_size) +
                 " of kernel pipe memory when splicing (pipe_pool x pipe_size)";
    return "runtime.workers = " + std::to_string(workers) + " is more than the " +
           std::to_string(cpus) +
           " CPU(s) this process may run on (its CPU affinity, capped by its cgroup CPU quota): "
           "shards beyond that share CPUs and "
           "add no throughput, yet each costs " +
           costs + ", and start time; set workers = \"auto\" (one shard per usable CPU)";
}

HostLimits read_host_limits(const std::string& proc_sys_root) {
    HostLimits h;
    h.tcp_tw_reuse = as_int(read_long(proc_sys_root + "/net/ipv4/tcp_tw_reuse"));
    h.tcp_fin_timeout = as_int(read_long(proc_sys_root + "/net/ipv4/tcp_fin_timeout"));
    h.somaxconn = as_int(read_long(proc_sys_root + "/net/core/somaxconn"));
    if (auto v = read_long(proc_sys_root + "/fs/pipe-user-pages-soft")) h.pipe_user_pages_soft = *v;
    if (auto range = read_pair(proc_sys_root + "/net/ipv4/ip_local_port_range")) {
        if (range->first > 0 && range->first <= range->second && range->second <= 65535) {
            h.port_lo = static_cast<int>(range->first);
            h.port_hi = static_cast<int>(range->second);
        }
    }
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        constexpr long kMax = std::numeric_limits<long>::max();
        h.fd_soft = lim.rlim_cur == RLIM_INFINITY ? kMax : static_cast<long>(lim.rlim_cur);
        h.fd_hard = lim.rlim_max == RLIM_INFINITY ? kMax : static_cast<long>(lim.rlim_max);
    }
    h.local_port_range_supported = common::local_port_range_supported();
    h.cpus = static_cast<int>(usable_cpus().size());
    if (h.cpus == 0) h.cpus = -1;
    h.cgroup = read_cgroup_limits();
    return h;
}

PortRange effective_source_port_range(const config::ClusterConfig& cluster,
                                      const HostLimits& limits) {
    PortRange r;
    if (limits.port_lo <= 0 || limits.port_hi < limits.port_lo) return r;
    r.lo = limits.port_lo;
    r.hi = limits.port_hi;
    if (!limits.local_port_range_supported) return r;
    // The kernel's rule (inet_sk_get_local_port_range): the low bound first, then the high bound
    // against the possibly raised low. 0 is never inside the system range, so "unset" falls out.
    int lo = cluster.source_port_min;
    int hi = cluster.source_port_max;
    if (r.lo <= lo && lo <= r.hi) r.lo = lo;
    if (r.lo <= hi && hi <= r.hi) r.hi = hi;
    return r;
}

double sustainable_new_conn_rate(const config::ClusterConfig& cluster, const HostLimits& limits) {
    PortRange ports = effective_source_port_range(cluster, limits);
    if (!ports.known()) return std::numeric_limits<double>::quiet_NaN();
    double tuples = 0;
    for (size_t i = 0; i < cluster.backends.size(); ++i) {
        const common::Address& dest = cluster.backends[i].address;
        if (dest.family() == AF_UNIX) continue;  // uses no source port
        bool seen = false;
        for (size_t j = 0; j < i && !seen; ++j)
            seen = same_endpoint(cluster.backends[j].address, dest);
        if (seen) continue;
        long sources =
            std::count_if(cluster.source_addresses.begin(), cluster.source_addresses.end(),
                          [&](const common::Address& s) { return s.family() == dest.family(); });
        tuples += static_cast<double>(ports.count()) * static_cast<double>(std::max(1L, sources));
    }
    bool unix_only = !cluster.backends.empty() &&
                     std::all_of(cluster.backends.begin(), cluster.backends.end(),
                                 [](const auto& b) { return b.address.family() == AF_UNIX; });
    if (unix_only) return std::numeric_limits<double>::quiet_NaN();  // no port to run out of
    return tuples / kTimeWaitSeconds;
}

FdEstimate estimate_fds(const config::Config& config, unsigned workers) {
    long shards = std::max(1U, workers);
    bool splice = std::any_of(config.listeners.begin(), config.listeners.end(), [](const auto& l) {
        return l.forward == config::ForwardMode::kSplice;
    });
    long per_shard = kShardFds + static_cast<long>(config.listeners.size());
    if (splice) per_shard += 2L * config.runtime.pipe_pool;
    bool bounded = !config.clusters.empty();
    long sessions = 0;
    for (const auto& c : config.clusters) {
        // Warm pools and queues are per shard; a queued client holds its own fd.
        per_shard += static_cast<long>(c.pool.warm) * static_cast<long>(c.backends.size());
        per_shard += c.queue.size;
        for (const auto& b : c.backends) {
            if (b.max_connections == 0) bounded = false;
            sessions += b.max_connections;
        }
        if (c.backends.empty()) bounded = false;
    }
    FdEstimate e;
    e.fixed = kProcessFds + shards * per_shard;
    // max_connections is per backend, divided over shards: the sum is the process-wide bound.
    e.sessions = bounded ? sessions : -1;
    return e;
}

std::vector<HostAdvice> check_host(const HostLimits& limits, const config::Config& config,
                                   unsigned workers) {
    workers = std::max(1U, workers);
    std::vector<HostAdvice> out;
    add(out, AdviceLevel::kInfo, summary(limits));
    check_source_ports(limits, config, out);
    check_backlogs(limits, config, out);
    check_fds(limits, config, workers, out);
    check_tw_reuse(limits, config, out);
    check_fin_timeout(limits, config, out);
    check_pipes(limits, config, workers, out);
    add(out, AdviceLevel::kInfo, workers_line(config.runtime, limits, workers));
    if (std::string w = workers_warning(config, workers, cpu_budget(limits)); !w.empty())
        add(out, AdviceLevel::kWarn, std::move(w));
    check_memory(limits, config, workers, out);
    forecasts(limits, config, out);
    return out;
}

bool has_error(const std::vector<HostAdvice>& advice) {
    return std::any_of(advice.begin(), advice.end(),
                       [](const HostAdvice& a) { return a.level == AdviceLevel::kError; });
}

}  // namespace ringlb::runtime
