#pragma once

#include <memory>
#include <vector>

#include "config/config.hpp"
#include "proxy/frontend/sni_router.hpp"
#include "proxy/tls/tls.hpp"
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
        // Certificates and keys are read here, on the control thread, for every snapshot: a
        // reload picks up a renewed file under the same name, and a bad one throws (TlsError
        // names file, line and key) before any shard sees the configuration.
        for (const auto& l : config->listeners)
            listener_tls.push_back(l.tls.enabled ? tls::ServerContext::load(l.tls, config->source)
                                                 : nullptr);
        for (size_t c = 0; c < clusters.size(); ++c)
            if (config->clusters[c].tls.enabled)
                clusters[c].tls = tls::ClientContext::load(config->clusters[c].tls, config->source);
    }

    std::shared_ptr<const config::Config> config;
    std::vector<upstream::Cluster> clusters;
    // Parallel to config->listeners: the SNI routes of each (targets index its `routes`), null
    // for a listener without routes.
    std::vector<std::unique_ptr<frontend::SniRouter>> routers;
    // Parallel to config->listeners: the certificates of each TLS listener, null for the others.
    std::vector<std::shared_ptr<const tls::ServerContext>> listener_tls;
};

}  // namespace ringlb::shard
