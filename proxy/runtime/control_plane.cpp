#include "proxy/runtime/control_plane.hpp"

#include <fcntl.h>
#include <signal.h>

#include <algorithm>

#include <cstring>

#include "common/fd_reserve.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"
#include "proxy/admin/routes.hpp"

namespace ringlb::runtime {

namespace {

std::string format_stats(const shard::Shard& s, const shard::ShardLayout& layout) {
    std::string line = "shard " + std::to_string(s.id()) + " stats:";
    const shard::ShardCounters& c = s.counters();
#define RINGLB_FORMAT_COUNTER(name, kind, help) \
    line += " " #name "=" + std::to_string(c.name.get());
    RINGLB_SHARD_COUNTERS(RINGLB_FORMAT_COUNTER)
#undef RINGLB_FORMAT_COUNTER
    // Upstream totals of this shard, summed over its clusters and backends.
    uint64_t failures = 0, retries = 0, no_backend = 0;
    for (const auto& cluster : layout.clusters) {
        retries += cluster.counters->retries.get();
        no_backend += cluster.counters->no_backend.get();
        for (const auto& b : cluster.backends)
            for (const auto& f : b.counters->connect_failures) failures += f.get();
    }
    line += " connect_failures=" + std::to_string(failures) +
            " connect_retries=" + std::to_string(retries) +
            " no_backend=" + std::to_string(no_backend);
    return line;
}

void log_advice(const std::vector<HostAdvice>& advice) {
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
}

}  // namespace

ControlPlane::ControlPlane(std::shared_ptr<const config::Config> config,
                           std::optional<common::LogLevel> cli_level, bool upgrade)
    : signals_(io_, SIGINT, SIGTERM, SIGUSR1),
      config_(std::move(config)),
      cli_level_(cli_level),
      upgrade_(upgrade),
      drain_timer_(io_),
      shards_(io_),
      health_(io_,
              [this] {
                  post_health();
                  update_ready();
              }),
      loaded_(config_),
      discovery_(io_, [this] { on_dns_change(); }) {
    // Signal handling comes first, so no signal of the startup meets the default action (which
    // kills the process without closing anything): a stop requested while shards start stops
    // them and exits 0. Signals that arrived since block_control_signals() were kept pending and
    // reach the signal_set as soon as they are unblocked.
    signals_.add(SIGHUP);
    sigset_t set = control_signals();
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    signals_.async_wait(
        [this](const boost::system::error_code& ec, int signo) { on_signal(ec, signo); });
    control_.loaded();
}

ControlPlane::~ControlPlane() = default;

void ControlPlane::on_signal(const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGUSR1) {
        log_stats();
    } else if (signo == SIGHUP) {
        reload("SIGHUP");
    } else if (serving_ && !draining()) {
        LOG_INFO("%s: draining", strsignal(signo));
        drain();
    } else {
        if (draining())
            LOG_WARN("%s during the drain: stopping now (%llu sessions still open are reset)",
                     strsignal(signo), static_cast<unsigned long long>(open_sessions()));
        else
            LOG_INFO("%s: stopping", strsignal(signo));
        stop_requested_ = true;
        io_.stop();
        return;
    }
    signals_.async_wait([this](const boost::system::error_code& e, int s) { on_signal(e, s); });
}

void ControlPlane::log_stats() const {
    for (size_t i = 0; i < shards_.size() && i < layouts_.size(); ++i)
        LOG_INFO("%s", format_stats(*shards_.shards()[i], *layouts_[i]).c_str());
}

std::vector<admin::ShardView> ControlPlane::shard_views() const {
    std::vector<admin::ShardView> views;
    for (size_t i = 0; i < shards_.size() && i < layouts_.size(); ++i)
        views.push_back(admin::view_of(*shards_.shards()[i], layouts_[i]));
    return views;
}

void ControlPlane::stop() {
    health_.stop();
    discovery_.stop();
    shards_.stop();
    // A unix listener's file goes with it, unless a new process serves it now.
    if (!handed_over_)
        for (const auto& l : config_->listeners) common::remove_unix_socket(l.bind);
    if (access_log_) access_log_->flush();  // the sessions the shards closed as they stopped
    log_stats();
    LOG_INFO("stopped");
}

int ControlPlane::run() {
    fd_limit_ = common::raise_fd_limit();
    common::reserve_fds(fd_limit_);  // the admin endpoint keeps answering out of fds
    LOG_INFO("ringlb %s starting: config %s, fd limit %ld", RINGLB_VERSION, config_->source.c_str(),
             fd_limit_);

    engine_ = decide_engine(config_->runtime.engine);
    if (!engine_.ok) {
        LOG_ERROR("engine io_uring was configured but is unavailable: %s", engine_.reason.c_str());
        return 1;
    }
    LOG_INFO("engine: %s (%s)", engine_.name, engine_.reason.c_str());

    // Backends given by name: looked up before anything starts; a cluster left without any
    // backend stops here, an unresolved name beside other backends is a warning.
    if (std::string error = discovery_.add(*loaded_); !error.empty()) {
        LOG_ERROR("%s", error.c_str());
        return 1;
    }
    config_ = discovery_.expand(*loaded_);

    // What the host allows (ports, TIME_WAIT reuse, backlog cap, fds, CPUs), with advice where it
    // caps the configured load; an error (e.g. source_port_range without IP_LOCAL_PORT_RANGE)
    // stops.
    limits_ = read_host_limits();
    std::vector<HostAdvice> advice =
        check_host(limits_, *config_, resolve_workers(config_->runtime, cpu_budget(limits_)));
    log_advice(advice);
    if (has_error(advice)) return 1;

    if (config_->log.access_enabled()) {
        std::string error;
        access_log_ = AccessLogWriter::open(config_->log, &error);
        if (!access_log_) {
            LOG_ERROR("%s", error.c_str());
            return 1;
        }
        LOG_INFO("access log: %s (%s)", access_log_->target().c_str(),
                 common::to_string(config_->log.format));
    }

    if (upgrade_) {
        if (config_->runtime.upgrade_socket.empty()) {
            LOG_ERROR("--upgrade: %s sets no runtime.upgrade_socket to take the sockets from",
                      config_->source.c_str());
            return 1;
        }
        std::string error;
        inherited_ = UpgradeClient::take_over(config_->runtime.upgrade_socket, &error);
        if (!inherited_) {
            LOG_ERROR("%s", error.c_str());
            return 1;
        }
        size_t sockets = 0;
        for (const auto& g : inherited_->handover().listeners) sockets += g.second.size();
        LOG_INFO("upgrade: took %zu listening sockets of %zu addresses%s from %s", sockets,
                 inherited_->handover().listeners.size(),
                 inherited_->handover().admin ? " and the admin socket" : "",
                 config_->runtime.upgrade_socket.c_str());
    }

    bool stopped = false;
    if (!start(stopped)) return 1;
    if (stopped) {
        stop();
        return 0;
    }
    if (!start_admin()) return 1;
    health_.apply(*config_);
    std::string names;
    for (const auto& l : config_->listeners) names += " " + l.name + "=" + l.bind_text;
    LOG_INFO("ready: %zu listeners on %zu shards, engine %s:%s", config_->listeners.size(),
             shards_.size(), engine_.name, names.c_str());
    if (access_log_) access_log_->start(io_);
    if (inherited_) {
        for (const auto& g : inherited_->handover().listeners)
            if (!g.second.empty())
                LOG_INFO("upgrade: %s is not in this configuration; its sockets close",
                         g.first.to_string().c_str());
        if (std::error_code ec = inherited_->confirm())
            LOG_WARN("upgrade: the old process did not confirm (%s); it may still accept",
                     ec.message().c_str());
        else
            LOG_INFO("upgrade: the old process stopped accepting and drains");
        inherited_.reset();
    }
    serve_upgrades();
    serving_ = true;
    update_ready();
    io_.run();
    serving_ = false;

    admin_->set_ready(false);
    admin_->close();
    stop();
    return 0;
}

bool ControlPlane::start(bool& stopped) {
    unsigned workers = resolve_workers(config_->runtime, cpu_budget(limits_));
    try {
        snapshot_ = std::make_shared<const shard::Snapshot>(config_);
    } catch (const std::exception& e) {
        // A certificate or key that does not load (tls::TlsError names file, line and key).
        LOG_ERROR("%s", e.what());
        return false;
    }

    // Listening sockets are opened here, before any shard runs, so a bad bind is reported once
    // and clearly. Each listener gets one SO_REUSEPORT group with a socket per shard; its first
    // bind is exclusive, so an address another process already serves (an orphaned ringlb, say)
    // fails here with EADDRINUSE instead of sharing its connections (common::listen_tcp_group).
    std::vector<std::vector<common::Fd>> per_shard(workers);
    for (const auto& l : config_->listeners) {
        std::error_code ec;
        std::vector<common::Fd> group = inherited_group(l, workers);
        if (group.empty()) group = open_listener(l, workers, ec);
        if (group.empty()) {
            LOG_ERROR("listener %s: cannot listen on %s: %s", l.name.c_str(), l.bind_text.c_str(),
                      ec.message().c_str());
            return false;
        }
        for (unsigned w = 0; w < workers; ++w) per_shard[w].push_back(std::move(group[w]));
    }

    // pin_cpus: shard N goes to the Nth CPU this process may run on, which need not be CPU N in a
    // container's cpuset.
    std::vector<int> cpu_ids = config_->runtime.pin_cpus ? usable_cpus() : std::vector<int>{};
    engine::EngineParams params;
    params.buffer_size = config_->runtime.buffer_size;
    params.buffer_count = config_->runtime.buffer_count;
    params.max_fds = static_cast<unsigned>(fd_limit_ > 0 ? fd_limit_ : 65536);
    for (unsigned w = 0; w < workers; ++w) {
        // A signal that arrived while the previous shards started is handled now.
        io_.poll();
        if (stop_requested_) break;
        shard::ShardOptions options;
        options.id = w;
        options.cpu = cpu_ids.empty() ? -1 : cpu_ids[w % cpu_ids.size()];
        options.engine = engine_.choice;
        options.engine_params = params;
        options.pipe_pool = config_->runtime.pipe_pool;
        options.pipe_size = config_->runtime.pipe_size;
        options.shards = workers;
        options.access_log = access_log_ ? access_log_->add_shard() : nullptr;
        // Passive health: failures are rare and reported once each, so a post per report to
        // the control thread costs the data path nothing it would notice.
        options.report_outcome = [this](const std::string& cluster, const std::string& backend,
                                        bool ok) {
            boost::asio::post(
                io_, [this, cluster, backend, ok] { health_.report(cluster, backend, ok); });
        };
        // Shard threads inherit this mask: signals are handled only by the control thread. A
        // signal that arrives meanwhile stays pending until the mask is restored.
        sigset_t all;
        sigfillset(&all);
        sigset_t previous;
        pthread_sigmask(SIG_BLOCK, &all, &previous);
        std::string error = shards_.start(
            std::make_unique<shard::Shard>(options, snapshot_, std::move(per_shard[w])));
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        if (!error.empty()) {
            LOG_ERROR("%s", error.c_str());
            return false;  // shards already started stop in the group's destructor
        }
        layouts_.push_back(shards_.shards().back()->layout());
    }
    io_.poll();
    if (stop_requested_) {
        LOG_INFO("stop requested during startup: %zu of %u shards had started", shards_.size(),
                 workers);
        stopped = true;
        return true;  // the listening sockets of shards that never started close here
    }
    forecast_.clear();
    for (const auto& c : config_->clusters)
        forecast_.push_back(sustainable_new_conn_rate(c, limits_));
    port_watch_ = std::make_unique<PortWatch>(io_, config_, layouts_, forecast_);
    return true;
}

bool ControlPlane::start_admin() {
    admin_ = std::make_unique<admin::AdminServer>(io_, [this] {
        admin::MetricsSources sources{shard_views(), engine_.name, forecast_, control_,
                                      admin_->stats()};
        sources.health = &health_;
        sources.discovery = &discovery_;
        for (size_t l = 0; l < snapshot_->listener_tls.size(); ++l) {
            if (!snapshot_->listener_tls[l]) continue;
            for (const tls::CertificateInfo& c : snapshot_->listener_tls[l]->certificates())
                sources.certificates.push_back(
                    {snapshot_->config->listeners[l].name, c.path, c.not_after});
        }
        return admin::render_metrics(sources);
    });
    // The endpoints that read the shards and the configuration (proxy/admin/routes.hpp).
    admin_->add_route(admin::backends_route([this] { return shard_views(); }, &health_));
    // The configuration as written (backends by name, not their addresses).
    admin_->add_route(admin::config_route([this] { return loaded_; }));
    admin_->add_route({"/reload",
                       {"POST"},
                       "reads the configuration file again and applies it (as SIGHUP does)",
                       [this](const admin::Request&) -> admin::Reply {
                           ReloadResult r = reload("POST /reload");
                           if (r.ok) return {200, "text/plain", "reloaded: " + r.message + "\n"};
                           return {400, "text/plain", "reload failed: " + r.message + "\n"};
                       }});
    admin_->add_route({"/backends/",
                       {"POST"},
                       "CLUSTER/BACKEND/drain, /enable or /weight?value=N: takes a backend out of "
                       "rotation, back in, or changes its weight until the next reload",
                       [this](const admin::Request& r) { return backend_action(r); },
                       true});
    if (!config_->admin.enabled) return true;
    std::error_code ec;
    if (inherited_ && inherited_->handover().admin &&
        inherited_->handover().admin->first == config_->admin.bind) {
        ec = admin_->adopt(std::move(inherited_->handover().admin->second), config_->admin.bind);
        inherited_->handover().admin.reset();
    } else {
        ec = admin_->listen(config_->admin.bind);
    }
    if (ec) {
        LOG_ERROR("admin: cannot listen on %s: %s", config_->admin.bind_text.c_str(),
                  ec.message().c_str());
        return false;
    }
    LOG_INFO("admin: serving %s on %s", admin_->route_paths().c_str(),
             config_->admin.bind_text.c_str());
    return true;
}

std::vector<common::Fd> ControlPlane::inherited_group(const config::ListenerConfig& l,
                                                      unsigned workers) {
    if (!inherited_) return {};
    auto& groups = inherited_->handover().listeners;
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == l.bind && !g.second.empty(); });
    if (it == groups.end()) return {};
    std::vector<common::Fd> group = std::move(it->second);
    it->second.clear();
    // One socket per shard. More than this process has shards: the rest close, and the clients
    // queued in them are reset (keep `workers` across an upgrade to lose none). Fewer: the group
    // gets more, bound to the same address.
    if (group.size() > workers) {
        LOG_WARN("upgrade: listener %s: %zu inherited sockets for %u shards; %zu close",
                 l.name.c_str(), group.size(), workers, group.size() - workers);
        group.resize(workers);
    }
    common::Address bound = common::local_address(group.front().get());
    while (group.size() < workers) {
        std::error_code ec;
        // A unix socket is shared by all shards (common::listen_group).
        common::Fd fd = l.bind.family() == AF_UNIX
                            ? common::Fd(::fcntl(group.front().get(), F_DUPFD_CLOEXEC, 0))
                            : common::listen_tcp(bound, l.backlog, ec);
        if (!fd && !ec) ec = {errno, std::system_category()};
        if (!fd) {
            LOG_ERROR("upgrade: listener %s: another socket on %s: %s", l.name.c_str(),
                      l.bind_text.c_str(), ec.message().c_str());
            return {};
        }
        group.push_back(std::move(fd));
    }
    for (auto& fd : group) ::listen(fd.get(), l.backlog);  // this configuration's backlog
    return group;
}

std::vector<common::Fd> ControlPlane::open_listener(const config::ListenerConfig& l,
                                                    unsigned workers, std::error_code& ec) {
    common::ListenOptions options;
    options.backlog = l.backlog;
    options.mptcp = l.mptcp;
    options.mode = l.mode;
    options.uid = l.uid;
    options.gid = l.gid;
    std::error_code refused;
    std::vector<common::Fd> group = common::listen_group(l.bind, options, workers, ec, &refused);
    if (refused && !group.empty())
        LOG_WARN("listener %s: MPTCP refused by the kernel (%s; see net.mptcp.enabled): TCP on %s",
                 l.name.c_str(), refused.message().c_str(), l.bind_text.c_str());
    return group;
}

Handover ControlPlane::handover() {
    Handover out;
    std::vector<std::vector<std::pair<common::Address, common::Fd>>> per_shard(shards_.size());
    shards_.post_each_and_wait(
        [&per_shard](shard::Shard& s, size_t i) { per_shard[i] = s.dup_listeners(); },
        std::chrono::seconds(5));
    for (auto& dups : per_shard) {
        for (auto& [address, fd] : dups) {
            auto it = std::find_if(out.listeners.begin(), out.listeners.end(),
                                   [&](const auto& g) { return g.first == address; });
            if (it == out.listeners.end()) {
                out.listeners.emplace_back(address, std::vector<common::Fd>{});
                it = out.listeners.end() - 1;
            }
            it->second.push_back(std::move(fd));
        }
    }
    if (admin_ && admin_->listening_fd() >= 0) {
        common::Fd copy(::fcntl(admin_->listening_fd(), F_DUPFD_CLOEXEC, 0));
        if (copy) out.admin.emplace(config_->admin.bind, std::move(copy));
    }
    return out;
}

void ControlPlane::serve_upgrades() {
    const std::string& path = config_->runtime.upgrade_socket;
    if (path.empty()) return;
    upgrade_server_ = std::make_unique<UpgradeServer>(
        io_, path,
        UpgradeServer::Hooks{[this] { return handover(); }, [this] { drain_after_upgrade(); }});
    if (std::error_code ec = upgrade_server_->start()) {
        LOG_WARN("upgrade: cannot serve %s: %s; binary upgrade is unavailable", path.c_str(),
                 ec.message().c_str());
        upgrade_server_.reset();
        return;
    }
    LOG_INFO("upgrade: a new ringlb started with --upgrade takes over through %s", path.c_str());
}

}  // namespace ringlb::runtime
