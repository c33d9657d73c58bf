#pragma once

#include <memory>
#include <vector>

#include "config/config.hpp"
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
    }

    std::shared_ptr<const config::Config> config;
    std::vector<upstream::Cluster> clusters;
};

}  // namespace ringlb::shard
