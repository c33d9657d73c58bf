#include "proxy/runtime/host_check.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "common/socket.hpp"
#include "tests/unit/fake_tree.hpp"

using ringlb::config::ClosePolicy;
using ringlb::config::ClusterConfig;
using ringlb::config::Config;
using ringlb::config::ForwardMode;
using ringlb::config::ListenerConfig;
using ringlb::runtime::AdviceLevel;
using ringlb::runtime::check_host;
using ringlb::runtime::effective_source_port_range;
using ringlb::runtime::estimate_fds;
using ringlb::runtime::HostAdvice;
using ringlb::runtime::HostLimits;
using ringlb::runtime::read_host_limits;
using ringlb::runtime::sustainable_new_conn_rate;

namespace {

ringlb::common::Address addr(const char* text) {
    auto a = ringlb::common::parse_address(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(ringlb::common::Address{});
}

using FakeProcSys = ringlb::unit::FakeTree;  // a fake /proc/sys

// A host with the kernel's defaults and plenty of fds.
HostLimits default_host() {
    HostLimits h;
    h.tcp_tw_reuse = 2;
    h.port_lo = 32768;
    h.port_hi = 60999;
    h.tcp_fin_timeout = 60;
    h.somaxconn = 4096;
    h.fd_soft = h.fd_hard = 1048576;
    h.local_port_range_supported = true;
    h.pipe_user_pages_soft = 16384;
    return h;
}

ClusterConfig cluster(const std::string& name, std::initializer_list<const char*> backends) {
    ClusterConfig c;
    c.name = name;
    for (const char* b : backends) {
        ringlb::config::BackendConfig backend;
        backend.address = addr(b);
        backend.address_text = b;
        c.backends.push_back(backend);
    }
    return c;
}

ListenerConfig listener(const std::string& name, int backlog = 4096) {
    ListenerConfig l;
    l.name = name;
    l.bind = addr("127.0.0.1:8080");
    l.bind_text = "127.0.0.1:8080";
    l.cluster = "app";
    l.backlog = backlog;
    l.half_closed_timeout = std::chrono::seconds(30);
    return l;
}

Config one_cluster(ClusterConfig c) {
    Config config;
    config.listeners.push_back(listener("web"));
    config.clusters.push_back(std::move(c));
    return config;
}

// A copy of the advice whose message contains `needle` (a copy: callers pass temporaries).
std::optional<HostAdvice> find(const std::vector<HostAdvice>& advice, const std::string& needle) {
    for (const auto& a : advice)
        if (a.message.find(needle) != std::string::npos) return a;
    return std::nullopt;
}

}  // namespace

// ---- reading the host ----

TEST(HostLimitsTest, ReadsAFakeProcSysTree) {
    FakeProcSys fake;
    ASSERT_FALSE(fake.root().empty());
    fake.write("net/ipv4/tcp_tw_reuse", "1\n");
    fake.write("net/ipv4/ip_local_port_range", "10000\t65000\n");
    fake.write("net/ipv4/tcp_fin_timeout", "30\n");
    fake.write("net/core/somaxconn", "8192\n");
    fake.write("fs/pipe-user-pages-soft", "65536\n");
    HostLimits h = read_host_limits(fake.root());
    EXPECT_EQ(h.tcp_tw_reuse, 1);
    EXPECT_EQ(h.port_lo, 10000);
    EXPECT_EQ(h.port_hi, 65000);
    EXPECT_EQ(h.tcp_fin_timeout, 30);
    EXPECT_EQ(h.somaxconn, 8192);
    EXPECT_EQ(h.pipe_user_pages_soft, 65536);
    // The fd limit and the probe come from this process and this kernel.
    EXPECT_GT(h.fd_soft, 0);
    EXPECT_GE(h.fd_hard, h.fd_soft);
    EXPECT_EQ(h.local_port_range_supported, ringlb::common::local_port_range_supported());
}

TEST(HostLimitsTest, MissingOrGarbledFilesStayUnknown) {
    FakeProcSys fake;
    ASSERT_FALSE(fake.root().empty());
    fake.write("net/ipv4/tcp_fin_timeout", "not a number\n");
    fake.write("net/ipv4/ip_local_port_range", "40000\n");  // one value only
    HostLimits h = read_host_limits(fake.root());
    EXPECT_EQ(h.tcp_tw_reuse, -1);
    EXPECT_EQ(h.port_lo, -1);
    EXPECT_EQ(h.port_hi, -1);
    EXPECT_EQ(h.tcp_fin_timeout, -1);
    EXPECT_EQ(h.somaxconn, -1);
    EXPECT_EQ(h.pipe_user_pages_soft, -1);

    HostLimits nothing = read_host_limits(fake.root() + "/does-not-exist");
    EXPECT_EQ(nothing.somaxconn, -1);
    // Checking with every value unknown still works and says so.
    Config config = one_cluster(cluster("app", {"10.0.0.1:80"}));
    config.clusters[0].source_port_min = 20000;
    config.clusters[0].source_port_max = 29999;
    nothing.local_port_range_supported = true;
    auto advice = check_host(nothing, config, 2);
    ASSERT_FALSE(advice.empty());
    EXPECT_NE(advice[0].message.find("net.core.somaxconn=unknown"), std::string::npos);
    EXPECT_TRUE(find(advice, "cannot read net.ipv4.ip_local_port_range"));
    EXPECT_TRUE(std::isnan(sustainable_new_conn_rate(config.clusters[0], nothing)));
}

TEST(HostLimitsTest, ReadsTheRealHost) {
    HostLimits h = read_host_limits();
    EXPECT_GT(h.port_lo, 0);
    EXPECT_GE(h.port_hi, h.port_lo);
    EXPECT_GE(h.somaxconn, 0);
}

// ---- the summary ----

TEST(HostCheckTest, FirstAdviceSummarisesEveryValue) {
    HostLimits h = default_host();
    h.fd_soft = 20000;
    h.fd_hard = 40000;
    auto advice = check_host(h, one_cluster(cluster("app", {"127.0.0.1:9000"})), 1);
    ASSERT_FALSE(advice.empty());
    EXPECT_EQ(advice[0].level, AdviceLevel::kInfo);
    const std::string& s = advice[0].message;
    for (const char* part : {"net.ipv4.tcp_tw_reuse=2", "net.ipv4.ip_local_port_range=32768-60999",
                             "net.ipv4.tcp_fin_timeout=60", "net.core.somaxconn=4096",
                             "fd_limit=20000 (hard 40000)", "IP_LOCAL_PORT_RANGE=supported"})
        EXPECT_NE(s.find(part), std::string::npos) << part << " missing from: " << s;
}

TEST(HostCheckTest, DefaultHostAndConfigGiveNoWarning) {
    auto advice = check_host(default_host(), one_cluster(cluster("app", {"127.0.0.1:9000"})), 4);
    for (const auto& a : advice) EXPECT_EQ(a.level, AdviceLevel::kInfo) << a.message;
    EXPECT_FALSE(ringlb::runtime::has_error(advice));
}

// ---- somaxconn ----

TEST(HostCheckTest, BacklogAboveSomaxconnIsCappedSilently) {
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000"}));
    config.listeners.push_back(listener("big", 16384));
    auto advice = check_host(default_host(), config, 1);
    std::optional<HostAdvice> a = find(advice, "listener big: backlog 16384");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("caps it to 4096"), std::string::npos) << a->message;
    EXPECT_NE(a->message.find("sysctl -w net.core.somaxconn=16384"), std::string::npos);
    EXPECT_FALSE(find(advice, "listener web: backlog"));  // 4096 fits

    HostLimits roomy = default_host();
    roomy.somaxconn = 16384;
    EXPECT_FALSE(find(check_host(roomy, config, 1), "backlog"));
    HostLimits unknown = default_host();
    unknown.somaxconn = -1;
    EXPECT_FALSE(find(check_host(unknown, config, 1), "backlog 16384"));
}

// ---- file descriptors ----

TEST(HostCheckTest, LowFdLimitSaysHowToRaiseIt) {
    HostLimits h = default_host();
    h.fd_soft = 1024;
    h.fd_hard = 4096;
    auto advice = check_host(h, one_cluster(cluster("app", {"127.0.0.1:9000"})), 1);
    std::optional<HostAdvice> a = find(advice, "fd limit is 1024");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    for (const char* how : {"LimitNOFILE=", "ulimit -n", "--ulimit nofile", "about 512 sessions"})
        EXPECT_NE(a->message.find(how), std::string::npos) << how << ": " << a->message;

    h.fd_soft = 4096;
    EXPECT_FALSE(
        find(check_host(h, one_cluster(cluster("app", {"127.0.0.1:9000"})), 1), "fd limit is"));
}

TEST(HostCheckTest, FdEstimateCountsPoolsQueuesPipesAndSessions) {
    ClusterConfig c = cluster("app", {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"});
    c.pool.warm = 4;
    c.queue.size = 10;
    Config config = one_cluster(c);
    // Per shard: 4 (engine) + 1 listener + 3 backends x 4 warm + 10 queued = 27; 2 shards + 64.
    auto e = estimate_fds(config, 2);
    EXPECT_EQ(e.fixed, 64 + 2 * 27);
    EXPECT_EQ(e.sessions, -1);  // a backend without max_connections: unbounded
    EXPECT_EQ(e.total(), -1);

    for (auto& b : config.clusters[0].backends) b.max_connections = 100;
    e = estimate_fds(config, 2);
    EXPECT_EQ(e.sessions, 300);
    EXPECT_EQ(e.total(), 118 + 600);

    config.listeners[0].forward = ForwardMode::kSplice;
    config.runtime.pipe_pool = 256;
    EXPECT_EQ(estimate_fds(config, 2).fixed, 118 + 2 * 2 * 256);
}

TEST(HostCheckTest, FdLimitBelowWhatTheConfigCanHoldWarns) {
    ClusterConfig c = cluster("app", {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"});
    c.pool.warm = 4;
    c.queue.size = 10;
    for (auto& b : c.backends) b.max_connections = 100;
    Config config = one_cluster(c);  // 718 fds on 2 shards, see above
    HostLimits h = default_host();
    h.fd_soft = 700;
    auto advice = check_host(h, config, 2);
    std::optional<HostAdvice> a = find(advice, "can hold about 718 fds");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("2 x 300 sessions"), std::string::npos) << a->message;

    h.fd_soft = 800;
    EXPECT_FALSE(find(check_host(h, config, 2), "can hold about"));

    h.fd_soft = 100;  // not even the pools fit
    a = find(check_host(h, config, 2), "once pools and queues fill");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
}

TEST(HostCheckTest, UnboundedSessionsGetTheRoomLeft) {
    HostLimits h = default_host();
    h.fd_soft = 10000;
    // 1 shard: 64 + 4 + 1 listener = 69 fixed; (10000 - 69) / 2 = 4965.
    auto advice = check_host(h, one_cluster(cluster("app", {"127.0.0.1:9000"})), 1);
    std::optional<HostAdvice> a = find(advice, "room for about 4965 concurrent sessions");
    ASSERT_TRUE(a) << advice.size();
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
}

// ---- source port range ----

TEST(HostCheckTest, SourcePortRangeWithoutKernelSupportIsAnError) {
    ClusterConfig c = cluster("app", {"10.0.0.1:80"});
    c.source_port_min = 40000;
    c.source_port_max = 49999;
    HostLimits h = default_host();
    h.local_port_range_supported = false;
    auto advice = check_host(h, one_cluster(c), 1);
    std::optional<HostAdvice> a = find(advice, "cluster app: source_port_range 40000-49999");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kError);
    EXPECT_NE(a->message.find("Linux 6.3"), std::string::npos);
    EXPECT_TRUE(ringlb::runtime::has_error(advice));

    h.local_port_range_supported = true;
    advice = check_host(h, one_cluster(c), 1);
    EXPECT_FALSE(ringlb::runtime::has_error(advice));
    EXPECT_FALSE(find(advice, "source_port_range"));  // inside 32768-60999: fine

    // No range configured: an old kernel is no problem.
    h.local_port_range_supported = false;
    EXPECT_FALSE(
        ringlb::runtime::has_error(check_host(h, one_cluster(cluster("app", {"10.0.0.1:80"})), 1)));
}

TEST(HostCheckTest, SourcePortRangeOutsideTheSystemRangeWarnsWithTheEffectiveRange) {
    ClusterConfig c = cluster("app", {"10.0.0.1:80"});
    c.source_port_min = 20000;
    c.source_port_max = 29999;
    auto advice = check_host(default_host(), one_cluster(c), 1);
    std::optional<HostAdvice> a = find(advice, "cluster app: source_port_range 20000-29999");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("silently ignores"), std::string::npos) << a->message;
    EXPECT_NE(a->message.find("will use ports 32768-60999"), std::string::npos) << a->message;
    EXPECT_NE(a->message.find("ip_local_port_range=\"20000 60999\""), std::string::npos)
        << a->message;

    c.source_port_min = 30000;  // low bound outside, high bound inside
    c.source_port_max = 40000;
    a = find(check_host(default_host(), one_cluster(c), 1), "source_port_range 30000-40000");
    ASSERT_TRUE(a);
    EXPECT_NE(a->message.find("will use ports 32768-40000"), std::string::npos) << a->message;
}

TEST(HostCheckTest, EffectiveRangeFollowsTheKernelsRule) {
    HostLimits h = default_host();  // 32768-60999
    ClusterConfig c = cluster("app", {"10.0.0.1:80"});
    auto range = [&](int lo, int hi) {
        c.source_port_min = static_cast<uint16_t>(lo);
        c.source_port_max = static_cast<uint16_t>(hi);
        auto r = effective_source_port_range(c, h);
        return std::pair{r.lo, r.hi};
    };
    EXPECT_EQ(range(0, 0), std::pair(32768, 60999));          // unset
    EXPECT_EQ(range(40000, 49999), std::pair(40000, 49999));  // inside
    EXPECT_EQ(range(30000, 40000), std::pair(32768, 40000));  // intersection
    EXPECT_EQ(range(50000, 65000), std::pair(50000, 60999));  // intersection
    EXPECT_EQ(range(20000, 29999), std::pair(32768, 60999));  // disjoint: both ignored
    EXPECT_EQ(range(1024, 65535), std::pair(32768, 60999));   // wider: both ignored
    h.local_port_range_supported = false;
    EXPECT_EQ(range(40000, 49999), std::pair(32768, 60999));
}

// ---- tcp_tw_reuse ----

TEST(HostCheckTest, TwReuseZeroWarnsForGracefulClusters) {
    HostLimits h = default_host();
    h.tcp_tw_reuse = 0;
    Config config = one_cluster(cluster("app", {"10.0.0.1:80"}));
    std::optional<HostAdvice> a = find(check_host(h, config, 1), "net.ipv4.tcp_tw_reuse = 0");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("cluster(s) app"), std::string::npos);

    // A client that half-closes first still leaves TIME_WAIT on ringlb's side with reset.
    config.clusters[0].close = ClosePolicy::kReset;
    EXPECT_TRUE(find(check_host(h, config, 1), "tcp_tw_reuse = 0"));
}

TEST(HostCheckTest, TwReuseTwoNotesNonLoopbackBackends) {
    HostLimits h = default_host();  // tcp_tw_reuse = 2
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000", "[::1]:9000"}));
    config.clusters.push_back(cluster("remote", {"127.0.0.1:9000", "10.1.2.3:80"}));
    std::optional<HostAdvice> a = find(check_host(h, config, 1), "tcp_tw_reuse = 2");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
    EXPECT_NE(a->message.find("cluster(s) remote reach"), std::string::npos) << a->message;

    config.clusters.pop_back();
    EXPECT_FALSE(find(check_host(h, config, 1), "tcp_tw_reuse = 2"));
    h.tcp_tw_reuse = 1;
    config.clusters.push_back(cluster("remote", {"10.1.2.3:80"}));
    EXPECT_FALSE(find(check_host(h, config, 1), "tcp_tw_reuse = "));
}

// ---- tcp_fin_timeout ----

TEST(HostCheckTest, LongFinTimeoutExplainsFinWait2AndHalfClosedTimeout) {
    HostLimits h = default_host();
    h.tcp_fin_timeout = 180;
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000"}));
    config.listeners.push_back(listener("open"));
    config.listeners.back().half_closed_timeout = ringlb::config::Millis(0);
    std::optional<HostAdvice> a = find(check_host(h, config, 1), "net.ipv4.tcp_fin_timeout = 180");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
    EXPECT_NE(a->message.find("FIN_WAIT_2"), std::string::npos);
    EXPECT_NE(a->message.find("off on listeners open"), std::string::npos) << a->message;

    h.tcp_fin_timeout = 60;
    EXPECT_FALSE(find(check_host(h, config, 1), "tcp_fin_timeout ="));
}

// ---- pipes ----

TEST(HostCheckTest, SplicePipePoolAbovePipeUserPagesSoftWarns) {
    if (::sysconf(_SC_PAGESIZE) != 4096) GTEST_SKIP() << "page size is not 4 KiB";
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000"}));
    config.listeners[0].forward = ForwardMode::kSplice;
    config.runtime.pipe_pool = 256;
    config.runtime.pipe_size = 64 * 1024;  // 16 pages
    HostLimits h = default_host();
    h.pipe_user_pages_soft = 16384;
    // 8 shards x 256 x 16 = 32768 pages.
    std::optional<HostAdvice> a = find(check_host(h, config, 8), "fs.pipe-user-pages-soft (16384");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("= 32768 pages"), std::string::npos) << a->message;
    // 4 shards x 256 x 16 = 16384: fits.
    EXPECT_FALSE(find(check_host(h, config, 4), "pipe-user-pages-soft ("));
    h.pipe_user_pages_soft = 0;  // no limit
    EXPECT_FALSE(find(check_host(h, config, 8), "pipe-user-pages-soft ("));
    h.pipe_user_pages_soft = 16384;
    config.listeners[0].forward = ForwardMode::kBuffered;
    EXPECT_FALSE(find(check_host(h, config, 8), "pipe-user-pages-soft ("));
}

// ---- workers and CPUs ----

TEST(HostCheckTest, WorkersAboveUsableCpusWarnOnceWithWhatAShardCosts) {
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000"}));
    config.runtime.buffer_count = 512;
    config.runtime.buffer_size = 64 * 1024;
    config.runtime.pipe_pool = 64;
    config.runtime.pipe_size = 64 * 1024;
    HostLimits h = default_host();
    h.cpus = 2;
    auto advice = check_host(h, config, 3);
    std::optional<HostAdvice> a = find(advice, "runtime.workers = 3 is more than the 2 CPU(s)");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("32 MiB of forwarding buffers"), std::string::npos) << a->message;
    EXPECT_NE(a->message.find("4 MiB of kernel pipe memory"), std::string::npos) << a->message;
    EXPECT_EQ(std::count_if(advice.begin(), advice.end(),
                            [](const HostAdvice& x) {
                                return x.message.find("runtime.workers") != std::string::npos;
                            }),
              1);
    EXPECT_FALSE(find(check_host(h, config, 2), "runtime.workers"));
    h.cpus = -1;  // unknown: no warning
    EXPECT_FALSE(find(check_host(h, config, 64), "runtime.workers"));
}

TEST(HostCheckTest, AutoWorkersFollowTheUsableCpus) {
    ringlb::config::RuntimeConfig runtime;  // workers = "auto"
    EXPECT_EQ(ringlb::runtime::resolve_workers(runtime, 3), 3u);
    EXPECT_EQ(ringlb::runtime::resolve_workers(runtime, -1), 1u);
    runtime.workers = 8;
    EXPECT_EQ(ringlb::runtime::resolve_workers(runtime, 3), 8u);
    std::vector<int> cpus = ringlb::runtime::usable_cpus();
    EXPECT_FALSE(cpus.empty());
    EXPECT_EQ(read_host_limits().cpus, static_cast<int>(cpus.size()));
    cpu_set_t set;
    ASSERT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
    EXPECT_EQ(static_cast<int>(cpus.size()), CPU_COUNT(&set));
    for (int cpu : cpus) EXPECT_TRUE(CPU_ISSET(cpu, &set)) << cpu;
}

TEST(HostCheckTest, WorkersLineSaysHowTheNumberWasChosen) {
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000"}));
    HostLimits h = default_host();
    h.cpus = 2;
    // podman run --cpus 1 on a 2-CPU host (cgroup v2)
    h.cgroup.cpu_quota = 1;
    h.cgroup.cpu_source = "cgroup cpu.max 100000/100000";
    int budget = ringlb::runtime::cpu_budget(h);
    EXPECT_EQ(budget, 1);
    unsigned workers = ringlb::runtime::resolve_workers(config.runtime, budget);
    EXPECT_EQ(workers, 1u);
    auto advice = check_host(h, config, workers);
    std::optional<HostAdvice> a = find(advice, "workers auto: ");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
    EXPECT_EQ(a->message,
              "workers auto: 1 (cgroup cpu.max 100000/100000 = 1 CPU; 2 CPUs in affinity)");

    h.cgroup = {};
    h.cpus = 1;  // taskset -c 0
    EXPECT_EQ(ringlb::runtime::workers_line(config.runtime, h, 1),
              "workers auto: 1 (1 CPU in affinity; no cgroup CPU quota)");
    h.cpus = -1;
    h.cgroup.cpu_quota = 2.5;
    h.cgroup.cpu_source = "cgroup cpu.cfs_quota_us/cpu.cfs_period_us 250000/100000";
    EXPECT_EQ(ringlb::runtime::cpu_budget(h), 3);
    EXPECT_EQ(ringlb::runtime::workers_line(config.runtime, h, 3),
              "workers auto: 3 (cgroup cpu.cfs_quota_us/cpu.cfs_period_us 250000/100000 = 2.5 "
              "CPUs; CPU affinity unknown)");
    config.runtime.workers = 4;
    EXPECT_EQ(ringlb::runtime::workers_line(config.runtime, h, 4),
              "workers: 4 (configured; cgroup cpu.cfs_quota_us/cpu.cfs_period_us 250000/100000 = "
              "2.5 CPUs; CPU affinity unknown)");
    // ... and 4 shards on a 3-CPU budget warn as more shards than CPUs do.
    EXPECT_TRUE(find(check_host(h, config, 4), "runtime.workers = 4 is more than the 3 CPU(s)"));
}

TEST(HostCheckTest, BufferPoolsAboveTheMemoryLimitWarnWithTheKeysToChange) {
    Config config = one_cluster(cluster("app", {"127.0.0.1:9000"}));
    config.runtime.buffer_count = 512;
    config.runtime.buffer_size = 64 * 1024;
    HostLimits h = default_host();
    // 2 shards x 512 x 64 KiB = 64 MiB
    std::optional<HostAdvice> a = find(check_host(h, config, 2), "buffer pools");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
    EXPECT_EQ(a->message,
              "buffer pools: at most 64 MiB (2 shards x runtime.buffer_count 512 x "
              "runtime.buffer_size 65536); no cgroup memory limit");

    h.cgroup.memory_max = 128u << 20;
    h.cgroup.memory_source = "cgroup memory.max";
    a = find(check_host(h, config, 2), "buffer pools");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
    EXPECT_NE(a->message.find("; cgroup memory.max 128 MiB"), std::string::npos) << a->message;

    h.cgroup.memory_max = 32u << 20;
    a = find(check_host(h, config, 2), "buffer pools");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kWarn);
    EXPECT_NE(a->message.find("64 MiB (2 shards x runtime.buffer_count 512 x runtime.buffer_size "
                              "65536), more than the memory limit (cgroup memory.max 32 MiB)"),
              std::string::npos)
        << a->message;
    EXPECT_NE(a->message.find("Lower runtime.buffer_count or runtime.buffer_size"),
              std::string::npos)
        << a->message;
    // One shard fits.
    a = find(check_host(h, config, 1), "buffer pools");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
}

// ---- the port forecast ----

TEST(PortForecastTest, PortsTimesSourcesTimesBackendsOverTimeWait) {
    HostLimits h = default_host();
    h.port_lo = 10000;
    h.port_hi = 65000;
    ClusterConfig c = cluster("app", {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"});
    c.source_port_min = 20000;
    c.source_port_max = 29999;
    c.source_addresses = {addr("10.9.0.1:0"), addr("10.9.0.2:0")};
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), 10000.0 * 2 * 3 / 60);  // 1000/s
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), 1000.0);

    c.source_addresses.clear();  // the kernel picks one source address
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), 500.0);
}

TEST(PortForecastTest, UsesTheIntersectionWithTheSystemRange) {
    HostLimits h = default_host();  // 32768-60999
    ClusterConfig c = cluster("app", {"10.0.0.1:80"});
    c.source_port_min = 30000;
    c.source_port_max = 40000;
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), (40000.0 - 32768 + 1) / 60);
    // Wholly outside: the kernel ignores both bounds and uses the system range.
    c.source_port_min = 20000;
    c.source_port_max = 29999;
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), 28232.0 / 60);
    c.source_port_min = c.source_port_max = 0;
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), 28232.0 / 60);
}

// close = "reset" avoids TIME_WAIT only where ringlb or the backend ends the session; a client
// that half-closes first still leaves one per connection, so the forecast stays finite.
TEST(PortForecastTest, ResetCloseKeepsTheConservativeFigure) {
    ClusterConfig c = cluster("app", {"10.0.0.1:80"});
    double graceful = sustainable_new_conn_rate(c, default_host());
    c.close = ClosePolicy::kReset;
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, default_host()), graceful);
    auto advice = check_host(default_host(), one_cluster(c), 1);
    EXPECT_TRUE(find(advice, "cluster app: close = reset leaves no TIME_WAIT where ringlb ends"));
}

TEST(PortForecastTest, CountsDistinctDestinationsAndMatchingSourceFamilies) {
    HostLimits h = default_host();
    h.port_lo = 40000;
    h.port_hi = 40599;  // 600 ports: 10/s per (source, destination)
    ClusterConfig c = cluster("app", {"10.0.0.1:80", "10.0.0.1:80", "10.0.0.1:81", "[fd00::1]:80"});
    c.source_addresses = {addr("10.9.0.1:0"), addr("10.9.0.2:0"), addr("10.9.0.3:0")};
    // 10.0.0.1:80 once x 3 sources + 10.0.0.1:81 x 3 + the IPv6 backend x 1 (no IPv6 source).
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(c, h), 10.0 * (3 + 3 + 1));
    EXPECT_DOUBLE_EQ(sustainable_new_conn_rate(cluster("none", {}), h), 0.0);
}

TEST(PortForecastTest, CheckHostReportsTheForecastPerCluster) {
    HostLimits h = default_host();
    h.port_lo = 10000;
    h.port_hi = 65000;
    ClusterConfig c = cluster("app", {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"});
    c.source_port_min = 20000;
    c.source_port_max = 29999;
    c.source_addresses = {addr("10.9.0.1:0"), addr("10.9.0.2:0")};
    std::optional<HostAdvice> a =
        find(check_host(h, one_cluster(c), 1), "cluster app: about 1000 new");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->level, AdviceLevel::kInfo);
    EXPECT_NE(a->message.find("10000 ports 20000-29999"), std::string::npos) << a->message;
}
