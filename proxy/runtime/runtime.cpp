#include "proxy/runtime/runtime.hpp"

#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "common/fd_reserve.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"
#include "proxy/admin/admin_server.hpp"
#include "proxy/admin/metrics.hpp"
#include "proxy/admin/routes.hpp"
#include "proxy/runtime/access_log_writer.hpp"
#include "proxy/runtime/host_check.hpp"
#include "proxy/shard/shard.hpp"
#include "proxy/shard/snapshot.hpp"

namespace ringlb::runtime {

namespace {

std::string format_stats(const shard::Shard& s) {
    std::string line = "shard " + std::to_string(s.id()) + " stats:";
    const shard::ShardCounters& c = s.counters();
#define RINGLB_FORMAT_COUNTER(name, kind, help) \
    line += " " #name "=" + std::to_string(c.name.get());
    RINGLB_SHARD_COUNTERS(RINGLB_FORMAT_COUNTER)
#undef RINGLB_FORMAT_COUNTER
    // Upstream totals of this shard, summed over its clusters and backends.
    uint64_t failures = 0, retries = 0, no_backend = 0;
    for (const auto& cluster : s.connector().clusters()) {
        retries += cluster->counters.retries.get();
        no_backend += cluster->counters.no_backend.get();
        for (const auto& b : cluster->backends)
            for (const auto& f : b.counters.connect_failures) failures += f.get();
    }
    line += " connect_failures=" + std::to_string(failures) +
            " connect_retries=" + std::to_string(retries) +
            " no_backend=" + std::to_string(no_backend);
    return line;
}

void log_stats(const std::vector<std::unique_ptr<shard::Shard>>& shards) {
    for (const auto& s : shards) LOG_INFO("%s", format_stats(*s).c_str());
}

// Warns when a cluster's observed connect rate passes half of what its source ports sustain
// given TIME_WAIT, before connects start failing with EADDRNOTAVAIL.
class PortWatch {
  public:
    PortWatch(boost::asio::io_context& io, const config::Config& config,
              const std::vector<std::unique_ptr<shard::Shard>>& shards,
              const std::vector<double>& forecast)
        : timer_(io),
          config_(config),
          shards_(shards),
          forecast_(forecast),
          last_(config.clusters.size(), 0),
          warned_at_(config.clusters.size()) {
        last_ = totals();
        arm();
    }

  private:
    static constexpr auto kInterval = std::chrono::seconds(10);
    static constexpr auto kWarnEvery = std::chrono::minutes(5);

    std::vector<uint64_t> totals() const {
        std::vector<uint64_t> sums(config_.clusters.size(), 0);
        for (const auto& s : shards_)
            for (size_t c = 0; c < sums.size(); ++c)
                sums[c] += s->connector().clusters()[c]->counters.connects.get();
        return sums;
    }

    void arm() {
        timer_.expires_after(kInterval);
        timer_.async_wait([this](const boost::system::error_code& ec) {
            if (ec) return;
            check();
            arm();
        });
    }

    void check() {
        std::vector<uint64_t> now = totals();
        auto when = std::chrono::steady_clock::now();
        for (size_t c = 0; c < now.size(); ++c) {
            double rate = static_cast<double>(now[c] - last_[c]) /
                          std::chrono::duration<double>(kInterval).count();
            double limit = forecast_[c];
            if (std::isfinite(limit) && rate > limit / 2 &&
                (warned_at_[c] == std::chrono::steady_clock::time_point{} ||
                 when - warned_at_[c] >= kWarnEvery)) {
                warned_at_[c] = when;
                LOG_WARN(
                    "cluster %s: %.0f new connections/s, more than half of the %.0f/s its source "
                    "ports sustain while closed connections sit in TIME_WAIT (60 s); add "
                    "source_addresses, widen source_port_range or net.ipv4.ip_local_port_range, "
                    "or use close = \"reset\" (metric ringlb_cluster_port_forecast_connections_"
                    "per_second)",
                    config_.clusters[c].name.c_str(), rate, limit);
            }
        }
        last_ = std::move(now);
    }

    boost::asio::steady_timer timer_;
    const config::Config& config_;
    const std::vector<std::unique_ptr<shard::Shard>>& shards_;
    const std::vector<double>& forecast_;
    std::vector<uint64_t> last_;
    std::vector<std::chrono::steady_clock::time_point> warned_at_;
};

}  // namespace

EngineDecision decide_engine(config::EngineKind requested) {
    EngineDecision d;
    if (requested == config::EngineKind::kEpoll) {
        d.reason = "configured";
        return d;
    }
    engine::UringSupport support = engine::probe_io_uring();
    if (support.usable) {
        d.choice = engine::EngineChoice::kIoUring;
        d.name = "io_uring";
        d.reason =
            requested == config::EngineKind::kIoUring ? "configured" : "auto: io_uring available";
        return d;
    }
    if (requested == config::EngineKind::kIoUring) {
        d.ok = false;
        d.name = "io_uring";
        d.reason = support.reason;
        return d;
    }
    d.reason = "auto: io_uring unavailable: " + support.reason;
    return d;
}

namespace {
// The signals the control thread handles; every other thread keeps them blocked.
sigset_t control_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, signo);
    return set;
}
}  // namespace

void block_control_signals() {
    sigset_t set = control_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int run(std::shared_ptr<const config::Config> config) {
    // Signal handling comes first, so no signal of the startup meets the default action (which
    // kills the process without closing anything): a stop requested while shards start stops
    // them and exits 0. Signals that arrived since block_control_signals() were kept pending and
    // reach the signal_set as soon as they are unblocked.
    boost::asio::io_context io;
    boost::asio::signal_set signals(io, SIGINT, SIGTERM, SIGUSR1);
    signals.add(SIGHUP);
    {
        sigset_t set = control_signals();
        pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    }
    // Declared before the shards, so it outlives them and writes what they hand over last.
    std::unique_ptr<AccessLogWriter> access_log;
    std::vector<std::unique_ptr<shard::Shard>> shards;
    admin::ControlStats control;  // for /metrics; a reload calls reload_succeeded/failed
    control.loaded();
    bool stop_requested = false;
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int signo) {
            if (ec) return;
            if (signo == SIGUSR1) {
                log_stats(shards);
            } else if (signo == SIGHUP) {
                LOG_WARN(
                    "SIGHUP: hot reload is not available in this version; configuration "
                    "unchanged");
            } else {
                LOG_INFO("%s: stopping", strsignal(signo));
                stop_requested = true;
                io.stop();
                return;
            }
            signals.async_wait(on_signal);
        };
    signals.async_wait(on_signal);
    auto stop_shards = [&shards, &access_log] {
        for (auto& s : shards) s->request_stop();
        for (auto& s : shards) s->join();
        if (access_log) access_log->flush();  // the sessions the shards closed as they stopped
        log_stats(shards);
        LOG_INFO("stopped");
    };

    long fd_limit = common::raise_fd_limit();
    common::reserve_fds(fd_limit);  // the admin endpoint keeps answering out of fds
    LOG_INFO("ringlb %s starting: config %s, fd limit %ld", RINGLB_VERSION, config->source.c_str(),
             fd_limit);

    EngineDecision engine = decide_engine(config->runtime.engine);
    if (!engine.ok) {
        LOG_ERROR("engine io_uring was configured but is unavailable: %s", engine.reason.c_str());
        return 1;
    }
    LOG_INFO("engine: %s (%s)", engine.name, engine.reason.c_str());

    // What the host allows (ports, TIME_WAIT reuse, backlog cap, fds, CPUs), with advice where it
    // caps the configured load; an error (e.g. source_port_range without IP_LOCAL_PORT_RANGE)
    // stops.
    HostLimits limits = read_host_limits();
    unsigned workers = resolve_workers(config->runtime, limits.cpus);
    std::vector<HostAdvice> advice = check_host(limits, *config, workers);
    for (const HostAdvice& a : advice) {
        switch (a.level) {
            case AdviceLevel::kInfo:
                LOG_INFO("%s", a.message.c_str());
                break;
            case AdviceLevel::kWarn:
                LOG_WARN("%s", a.message.c_str());
                break;
            case AdviceLevel::kError:
                LOG_ERROR("%s", a.message.c_str());
                break;
        }
    }
    if (has_error(advice)) return 1;

    if (config->log.access_enabled()) {
        std::string error;
        access_log = AccessLogWriter::open(config->log, &error);
        if (!access_log) {
            LOG_ERROR("%s", error.c_str());
            return 1;
        }
        LOG_INFO("access log: %s (%s)", access_log->target().c_str(),
                 common::to_string(config->log.format));
    }

    auto snapshot = std::make_shared<const shard::Snapshot>(config);

    // Listening sockets are opened here, before any shard runs, so a bad bind is reported once
    // and clearly. Each listener gets one SO_REUSEPORT group with a socket per shard; its first
    // bind is exclusive, so an address another process already serves (an orphaned ringlb, say)
    // fails here with EADDRINUSE instead of sharing its connections (common::listen_tcp_group).
    std::vector<std::vector<common::Fd>> per_shard(workers);
    for (const auto& l : config->listeners) {
        std::error_code ec;
        std::vector<common::Fd> group = common::listen_tcp_group(l.bind, l.backlog, workers, ec);
        if (group.empty()) {
            LOG_ERROR("listener %s: cannot listen on %s: %s", l.name.c_str(), l.bind_text.c_str(),
                      ec.message().c_str());
            return 1;
        }
        for (unsigned w = 0; w < workers; ++w) per_shard[w].push_back(std::move(group[w]));
    }

    // pin_cpus: shard N goes to the Nth CPU this process may run on, which need not be CPU N in a
    // container's cpuset.
    std::vector<int> cpu_ids = config->runtime.pin_cpus ? usable_cpus() : std::vector<int>{};
    engine::EngineParams params;
    params.buffer_size = config->runtime.buffer_size;
    params.buffer_count = config->runtime.buffer_count;
    params.max_fds = static_cast<unsigned>(fd_limit > 0 ? fd_limit : 65536);
    for (unsigned w = 0; w < workers; ++w) {
        // A signal that arrived while the previous shards started is handled now.
        io.poll();
        if (stop_requested) break;
        shard::ShardOptions options;
        options.id = w;
        options.cpu = cpu_ids.empty() ? -1 : cpu_ids[w % cpu_ids.size()];
        options.engine = engine.choice;
        options.engine_params = params;
        options.pipe_pool = config->runtime.pipe_pool;
        options.pipe_size = config->runtime.pipe_size;
        options.shards = workers;
        options.access_log = access_log ? access_log->add_shard() : nullptr;
        // Shard threads inherit this mask: signals are handled only by the control thread. A
        // signal that arrives meanwhile stays pending until the mask is restored.
        sigset_t all;
        sigfillset(&all);
        sigset_t previous;
        pthread_sigmask(SIG_BLOCK, &all, &previous);
        shards.push_back(
            std::make_unique<shard::Shard>(options, snapshot, std::move(per_shard[w])));
        std::string error = shards.back()->start();
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        if (!error.empty()) {
            LOG_ERROR("%s", error.c_str());
            return 1;  // shards already started stop in their destructors
        }
    }
    io.poll();
    if (stop_requested) {
        LOG_INFO("stop requested during startup: %zu of %u shards had started", shards.size(),
                 workers);
        per_shard.clear();  // the listening sockets of shards that never started
        stop_shards();
        return 0;
    }

    std::vector<double> forecast;
    for (const auto& c : config->clusters) forecast.push_back(sustainable_new_conn_rate(c, limits));
    admin::AdminServer admin_server(io, [&shards, &engine, &forecast, &control, &admin_server] {
        admin::MetricsSources sources{{}, engine.name, forecast, control, admin_server.stats()};
        for (const auto& s : shards) sources.shards.push_back(admin::view_of(*s));
        return admin::render_metrics(sources);
    });
    // The endpoints that read the shards and the configuration (proxy/admin/routes.hpp).
    admin_server.add_route(admin::backends_route([&shards] {
        std::vector<admin::ShardView> views;
        for (const auto& s : shards) views.push_back(admin::view_of(*s));
        return views;
    }));
    admin_server.add_route(admin::config_route([config] { return config; }));
    PortWatch port_watch(io, *config, shards, forecast);
    if (config->admin.enabled) {
        std::error_code ec = admin_server.listen(config->admin.bind);
        if (ec) {
            LOG_ERROR("admin: cannot listen on %s: %s", config->admin.bind_text.c_str(),
                      ec.message().c_str());
            return 1;
        }
        LOG_INFO("admin: serving %s on %s", admin_server.route_paths().c_str(),
                 config->admin.bind_text.c_str());
    }
    admin_server.set_ready(true);

    std::string names;
    for (const auto& l : config->listeners) names += " " + l.name + "=" + l.bind_text;
    LOG_INFO("ready: %zu listeners on %u shards, engine %s:%s", config->listeners.size(), workers,
             engine.name, names.c_str());
    if (access_log) access_log->start(io);
    io.run();

    admin_server.set_ready(false);
    admin_server.close();
    stop_shards();
    return 0;
}

}  // namespace ringlb::runtime
