#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/admin/admin_server.hpp"
#include "proxy/discovery/discovery.hpp"
#include "proxy/health/monitor.hpp"
#include "proxy/shard/counters.hpp"
#include "proxy/shard/layout.hpp"
#include "proxy/upstream/connector.hpp"

namespace ringlb::shard {
class Shard;
class AccessLogBuffer;
}  // namespace ringlb::shard

namespace ringlb::admin {

struct ShardView {
    unsigned id = 0;
    const shard::ShardCounters* counters = nullptr;
    // Listeners, clusters and backends with their counters. Every shard's layout comes from the
    // same configuration, so they line up by index.
    std::shared_ptr<const shard::ShardLayout> layout;
    // When [log] access is set: its dropped-lines count.
    const shard::AccessLogBuffer* access_log = nullptr;
};

// Everything /metrics shows of a running shard, with the layout the control thread holds for it.
ShardView view_of(const shard::Shard& shard, std::shared_ptr<const shard::ShardLayout> layout);

// What the control thread counts of itself. The control thread also serves /metrics, so plain
// values suffice. Configuration reloads call reload_succeeded() or reload_failed().
struct ControlStats {
    uint64_t reloads_succeeded = 0;
    uint64_t reloads_failed = 0;
    bool last_reload_successful = true;
    // Unix time (s) of the last configuration loaded successfully: the one loaded at start
    // counts, as for Prometheus's own prometheus_config_last_reload_success_timestamp_seconds.
    double last_success_seconds = 0;

    // A configuration is in use from now (at start, or a reload).
    void loaded();
    void reload_succeeded() {
        ++reloads_succeeded;
        last_reload_successful = true;
        loaded();
    }
    void reload_failed() {
        ++reloads_failed;
        last_reload_successful = false;
    }
};

struct MetricsSources {
    std::vector<ShardView> shards;
    std::string engine;
    // `port_forecast[i]`: new connections per second cluster i's source ports sustain given
    // TIME_WAIT (runtime::sustainable_new_conn_rate), exported as a gauge when given.
    std::vector<double> port_forecast;
    ControlStats control;
    std::optional<AdminServer::Stats> admin;
    bool process = true;  // read the process's own figures (process_stats.hpp)
    // Active checks and passive ejection (null: none run, every backend counts as up).
    const health::Monitor* health = nullptr;
    // Backends given by name (null: none).
    const discovery::Discovery* discovery = nullptr;
    // The certificates TLS listeners serve, from the snapshot the shards run.
    struct Certificate {
        std::string listener;
        std::string path;
        int64_t not_after = 0;  // seconds since the epoch
    };
    std::vector<Certificate> certificates{};
};

// Prometheus text exposition, read at scrape time (the shards keep writing; each value is one
// relaxed load). Each family is declared once with its help text, in the list of its entity:
//   RINGLB_SHARD_COUNTERS        proxy/shard/counters.hpp     label shard
//   RINGLB_LISTENER_COUNTERS, RINGLB_BYTE_DIRECTIONS, the session-duration histogram
//                                proxy/shard/counters.hpp     label listener (direction)
//   RINGLB_CLUSTER_COUNTERS, the connect-duration histogram
//                                proxy/upstream/counters.hpp  label cluster
//   RINGLB_BACKEND_COUNTERS, RINGLB_CONNECT_FAILURES, RINGLB_CLOSE_REASONS
//                                proxy/upstream/counters.hpp  labels cluster, backend (reason)
//   RINGLB_PROCESS_METRICS       proxy/admin/process_stats.hpp
//   RINGLB_CHECK_RESULTS         proxy/health/checker.hpp     labels cluster, backend, result
//   RINGLB_ADMIN_STATS, control, build and engine info, access log, backend_up: metrics.cpp
// Per-listener, per-cluster and per-backend values are summed over shards, histograms merged
// bucket by bucket; per-shard counters keep their `shard` label.
std::string render_metrics(const MetricsSources& sources);

}  // namespace ringlb::admin
