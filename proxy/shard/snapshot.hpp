#pragma once

#include <memory>
#include <vector>

#include "config/config.hpp"
#include "proxy/frontend/sni_router.hpp"
#include "proxy/upstream/cluster.hpp"

namespace ringlb::shard {

// An immutable view of the configuration that shards run on. The control thread builds it; a
// shard keeps the one it runs on alive while any session uses it, so sessions refer to clusters
// and backends by plain reference.
struct Snapshot {
    // `overrides`: what the admin API changed of backends (weights, drained) on top of `cfg`.
    explicit Snapshot(std::shared_ptr<const config::Config> cfg,
                      const upstream::BackendOverrides* overrides = nullptr)
        : config(std::move(cfg)) {
        clusters.reserve(config->clusters.size());
        for (const auto& c : config->clusters) clusters.emplace_back(c, overrides);
        routers.reserve(config->listeners.size());
        for (const auto& l : config->listeners) {
            if (l.routes.empty()) {
                routers.emplace_back();
                continue;
            }
            std::vector<frontend::SniRouter::Route> routes;
            for (size_t i = 0; i < l.routes.size(); ++i) routes.push_back({l.routes[i].sni, i});
            routers.push_back(std::make_unique<frontend::SniRouter>(std::move(routes)));
        }
    }

    std::shared_ptr<const config::Config> config;
    std::vector<upstream::Cluster> clusters;
    // Parallel to config->listeners: the SNI routes of each (targets index its `routes`), null
    // for a listener without routes.
    std::vector<std::unique_ptr<frontend::SniRouter>> routers;
};

}  // namespace ringlb::shard
