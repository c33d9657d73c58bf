#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/admin/admin_server.hpp"
#include "proxy/admin/metrics.hpp"

namespace ringlb::admin {

// The admin endpoints that show the running proxy, declared here and added by the runtime
// (AdminServer::add_route), which owns the shards and the configuration they read.

// What a backend's "state" says: "up" takes new sessions; "down": health checks hold it down
// (new sessions go elsewhere, or to it anyway when every backend is down and the cluster has
// when_all_down = "try_anyway"); "full" means every shard has used its share of the backend's
// max_connections, so a new session for it waits in the cluster's queue or goes to another
// backend; "drained": taken out through the admin API.
inline constexpr const char* kBackendUp = "up";
inline constexpr const char* kBackendDown = "down";
inline constexpr const char* kBackendFull = "full";
inline constexpr const char* kBackendDrained = "drained";
// What "health" says of a backend its cluster does not check.
inline constexpr const char* kHealthUnknown = "unknown";

// {"backends": [{"cluster", "backend", "weight", "max_connections", "active_connections",
// "state", "health"}, ...]}: every backend of every cluster in configuration order, its active
// connections summed over the shards at call time (one relaxed load each, as for /metrics).
// "health" is "up", "down" or "unknown" (not checked), and for a checked backend "check" gives
// the last result and its detail.
std::string render_backends(const std::vector<ShardView>& shards,
                            const health::Monitor* health = nullptr);

// GET|HEAD /backends: render_backends() of the shards `shards` returns, as application/json.
Route backends_route(std::function<std::vector<ShardView>()> shards,
                     const health::Monitor* health = nullptr);

// GET|HEAD /config: the configuration the proxy runs on as TOML (config::render_toml: every key
// with its effective value, defaults included), which `ringlb check` accepts.
Route config_route(std::function<std::shared_ptr<const config::Config>()> config);

}  // namespace ringlb::admin
