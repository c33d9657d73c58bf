#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "config/config.hpp"

namespace ringlb::tls {
class ClientContext;
}  // namespace ringlb::tls

namespace ringlb::upstream {

class MaglevTable;

struct Backend {
    common::Address address;
    std::string name;  // "ip:port" as written in the config
    uint32_t weight = 1;
    size_t index = 0;  // position in Cluster::backends (what balancers and TriedSet speak)
    // Taken out of rotation through the admin API (POST /backends/C/B/drain): no new session
    // picks it; those it has keep running.
    bool drained = false;
};

// What the admin API changed of one backend until the next reload.
struct BackendOverride {
    std::optional<uint32_t> weight;
    bool drained = false;
};
// By (cluster name, backend name).
using BackendOverrides = std::map<std::pair<std::string, std::string>, BackendOverride>;

// A cluster as every shard sees it: immutable once built from the config.
struct Cluster {
    // Builds the Maglev table when balance is maglev, here on the control thread rather than on
    // a shard. Throws std::invalid_argument if maglev_table_size is below the number of backends
    // (the config loader rejects that first).
    explicit Cluster(const config::ClusterConfig& config,
                     const BackendOverrides* overrides = nullptr);
    // Same settings and the same weights and drained backends: a reload keeps its state.
    bool same_as(const Cluster& other) const;

    // The cluster's configuration (retries, queue, pool, socket options, ...), inside the same
    // snapshot as this Cluster, so it lives exactly as long.
    const config::ClusterConfig* settings;
    std::string name;
    std::vector<Backend> backends;
    std::chrono::milliseconds connect_timeout;
    config::Balance balance;
    config::HashKey hash_key;
    std::shared_ptr<const MaglevTable> maglev;  // only when balance == kMaglev; shared by shards
    // When the cluster originates TLS (`tls`): loaded with the snapshot, shared by the shards.
    std::shared_ptr<const tls::ClientContext> tls;
    bool any_drained = false;
    // Backends not drained: 0 leaves the cluster with nothing to pick (/ready says 503).
    size_t usable() const;
};

}  // namespace ringlb::upstream
