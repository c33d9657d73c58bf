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
#include "proxy/runtime/host_check.hpp"
#include "proxy/runtime/port_watch.hpp"
#include "proxy/runtime/runtime.hpp"
#include "proxy/runtime/shard_group.hpp"
#include "proxy/shard/snapshot.hpp"

namespace ringlb::runtime {

// The process seen from its control thread: the Asio loop, signals, the admin endpoint and the
// shard group, and the running configuration. run() is start, serve, stop; what changes the
// running process (reload, drain) is a method here, and the shards hear of it by message.
class ControlPlane {
  public:
    explicit ControlPlane(std::shared_ptr<const config::Config> config);
    ~ControlPlane();
    ControlPlane(const ControlPlane&) = delete;
    ControlPlane& operator=(const ControlPlane&) = delete;

    // Returns the process exit code.
    int run();

  private:
    // Opens listeners and starts the shards; false (after logging why) when that fails.
    // `stopped` is set when a stop signal arrived meanwhile.
    bool start(bool& stopped);
    bool start_admin();
    void on_signal(const boost::system::error_code& ec, int signo);
    void log_stats() const;
    void stop();

    // Graceful drain (drain.cpp), on SIGTERM/SIGINT once serving: /ready turns 503, accepting
    // goes on for drain_delay, then every listener stops (its accept queue served), live
    // sessions get drain_timeout, what is left closes spread over drain_spread, and run()
    // returns 0. Each step logs once.
    void drain();
    bool draining() const { return drain_step_ != DrainStep::kIdle; }
    void drain_stop_accepting();
    void drain_listeners_closed(uint64_t taken);
    // Polls the shards' session gauges until none is open or `until` passes, then `next`.
    void drain_poll(std::chrono::steady_clock::time_point until, void (ControlPlane::*next)());
    void drain_timed_out();
    void drain_spread_over();
    void drain_done(const char* how);
    uint64_t open_sessions() const;

    boost::asio::io_context io_;
    boost::asio::signal_set signals_;
    std::shared_ptr<const config::Config> config_;
    std::shared_ptr<const shard::Snapshot> snapshot_;
    EngineDecision engine_;
    HostLimits limits_;
    long fd_limit_ = 0;
    std::vector<double> forecast_;  // per cluster of config_
    admin::ControlStats control_;   // for /metrics
    bool stop_requested_ = false;
    bool serving_ = false;  // from "ready:" on: a stop signal drains
    enum class DrainStep { kIdle, kDelay, kClosingListeners, kWaiting, kSpreading, kDone };
    DrainStep drain_step_ = DrainStep::kIdle;
    boost::asio::steady_timer drain_timer_;
    std::chrono::steady_clock::time_point drain_started_;
    ShardGroup shards_;
    std::unique_ptr<admin::AdminServer> admin_;
    std::unique_ptr<PortWatch> port_watch_;
};

}  // namespace ringlb::runtime
