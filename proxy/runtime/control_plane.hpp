#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/admin/admin_server.hpp"
#include "proxy/admin/metrics.hpp"
#include "proxy/discovery/discovery.hpp"
#include "proxy/health/monitor.hpp"
#include "proxy/runtime/access_log_writer.hpp"
#include "proxy/runtime/host_check.hpp"
#include "proxy/runtime/port_watch.hpp"
#include "proxy/runtime/runtime.hpp"
#include "proxy/runtime/shard_group.hpp"
#include "proxy/runtime/upgrade.hpp"
#include "proxy/shard/snapshot.hpp"

namespace ringlb::runtime {

// The process seen from its control thread: the Asio loop, signals, the admin endpoint and the
// shard group, and the running configuration. run() is start, serve, stop; what changes the
// running process (reload, drain) is a method here, and the shards hear of it by message.
class ControlPlane {
  public:
    // `upgrade`: take the listening sockets of the running ringlb (runtime.upgrade_socket)
    // instead of binding, then tell it to drain (proxy/runtime/upgrade.hpp).
    ControlPlane(std::shared_ptr<const config::Config> config,
                 std::optional<common::LogLevel> cli_level, bool upgrade = false);
    ~ControlPlane();
    ControlPlane(const ControlPlane&) = delete;
    ControlPlane& operator=(const ControlPlane&) = delete;

    // Returns the process exit code.
    int run();

    struct ReloadResult {
        bool ok = false;
        std::string message;  // the change summary, or why nothing changed
    };
    // Reads the configuration file again and applies it to every shard (proxy/runtime/reload.cpp).
    // On any error the running configuration stays and the error is logged and counted.
    // `trigger`: "SIGHUP", "POST /reload", for the log.
    ReloadResult reload(const char* trigger);
    // POST /backends/CLUSTER/BACKEND/drain|enable|weight?value=N: a new snapshot with the change,
    // through the same path as a reload; it lasts until the next reload.
    admin::Reply backend_action(const admin::Request& request);

  private:
    // Opens listeners and starts the shards; false (after logging why) when that fails.
    // `stopped` is set when a stop signal arrived meanwhile.
    bool start(bool& stopped);
    bool start_admin();
    // Hands `next` (with `overrides` on top) to every shard and waits until all run it; `fds`:
    // new listener sockets per shard (nullptr: none). Returns "" or why it failed.
    std::string publish(std::shared_ptr<const config::Config> next,
                        const upstream::BackendOverrides& overrides,
                        std::shared_ptr<std::vector<std::vector<common::Fd>>> fds);
    // /ready: 200 while serving, not draining, and every cluster has a usable backend (neither
    // drained nor down by health checks).
    void update_ready();
    // Sends every shard the health checks' current verdicts.
    void post_health();
    // A name's addresses changed: the running configuration with the new ones, to every shard.
    void on_dns_change();
    void on_signal(const boost::system::error_code& ec, int signo);
    void log_stats() const;
    std::vector<admin::ShardView> shard_views() const;
    void stop();

    // Graceful drain (drain.cpp), on SIGTERM/SIGINT once serving: /ready turns 503, accepting
    // goes on for drain_delay, then every listener stops (its accept queue served), live
    // sessions get drain_timeout, what is left closes spread over drain_spread, and run()
    // returns 0. Each step logs once.
    void drain();
    bool draining() const { return drain_step_ != DrainStep::kIdle; }
    // `handed_over`: after an upgrade, the sockets stay open in the new process: let go of them
    // (Shard::release_listener) instead of closing them.
    void drain_stop_accepting(bool handed_over = false);
    void drain_listeners_closed(uint64_t taken);
    // Polls the shards' session gauges until none is open or `until` passes, then `next`.
    void drain_poll(std::chrono::steady_clock::time_point until, void (ControlPlane::*next)());
    void drain_timed_out();
    void drain_spread_over();
    void drain_done(const char* how);
    uint64_t open_sessions() const;
    // Binary upgrade, old side: the new process serves; stop accepting (its sockets stay open
    // there) and drain the sessions as a stop signal would, without drain_delay.
    void drain_after_upgrade();
    // Binary upgrade, both sides: what to hand over, and serving runtime.upgrade_socket.
    Handover handover();
    void serve_upgrades();
    // This listener's sockets from the process ringlb replaces, when it had the address.
    std::vector<common::Fd> inherited_group(const config::ListenerConfig& l, unsigned workers);
    // A listener's sockets, one per shard (common::listen_group); logs an MPTCP fallback.
    std::vector<common::Fd> open_listener(const config::ListenerConfig& l, unsigned workers,
                                          std::error_code& ec);

    boost::asio::io_context io_;
    boost::asio::signal_set signals_;
    std::shared_ptr<const config::Config> config_;
    std::shared_ptr<const shard::Snapshot> snapshot_;
    EngineDecision engine_;
    HostLimits limits_;
    long fd_limit_ = 0;
    std::vector<double> forecast_;               // per cluster of config_
    admin::ControlStats control_;                // for /metrics
    std::optional<common::LogLevel> cli_level_;  // --log-level: wins over [log] level
    bool upgrade_ = false;
    std::optional<UpgradeClient> inherited_;  // until the new process serves
    bool handed_over_ = false;                // a new process serves our listening sockets
    std::unique_ptr<UpgradeServer> upgrade_server_;
    bool stop_requested_ = false;
    bool serving_ = false;  // from "ready:" on: a stop signal drains, a reload applies
    enum class DrainStep { kIdle, kDelay, kClosingListeners, kWaiting, kSpreading, kDone };
    DrainStep drain_step_ = DrainStep::kIdle;
    boost::asio::steady_timer drain_timer_;
    std::chrono::steady_clock::time_point drain_started_;
    upstream::BackendOverrides overrides_;  // through the admin API, until the next reload
    // Declared before the shards, so it outlives them and writes what they hand over last.
    std::unique_ptr<AccessLogWriter> access_log_;
    ShardGroup shards_;
    // What the control thread reads of each shard's listeners and clusters (shard/layout.hpp).
    std::vector<std::shared_ptr<const shard::ShardLayout>> layouts_;
    std::unique_ptr<admin::AdminServer> admin_;
    health::Monitor health_;  // active checks, passive ejection, slow start
    // Backends given by name: config_ is loaded_ with each name replaced by its addresses.
    std::shared_ptr<const config::Config> loaded_;
    discovery::Discovery discovery_;
    std::unique_ptr<PortWatch> port_watch_;
};

}  // namespace ringlb::runtime
