#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "config/config.hpp"

namespace ringlb::upstream {

class MaglevTable;
class RoundRobinBalancer;

struct Backend {
    common::Address address;
    std::string name;  // "ip:port" as written in the config
    uint32_t weight = 1;
    size_t index = 0;  // position in Cluster::backends (what balancers and TriedSet speak)
};

// A cluster as every shard sees it: immutable once built from the config.
struct Cluster {
    // Builds the Maglev table when balance is maglev, here on the control thread rather than on
    // a shard. Throws std::invalid_argument if maglev_table_size is below the number of backends
    // (the config loader rejects that first).
    explicit Cluster(const config::ClusterConfig& config);

    std::string name;
    std::vector<Backend> backends;
    std::chrono::milliseconds connect_timeout;
    config::Balance balance;
    config::HashKey hash_key;
    std::shared_ptr<const MaglevTable> maglev;  // only when balance == kMaglev; shared by shards
};

// Legacy interface of the current shard code: smooth weighted round-robin behind a 64-bit
// exclusion mask (bit i set: skip backend i; backends past index 63 cannot be excluded). It runs
// RoundRobinBalancer (balancer.hpp), which new code should use directly. Not thread-safe by
// design: each shard owns one per cluster.
class RoundRobin {
  public:
    explicit RoundRobin(const Cluster& cluster);
    RoundRobin(RoundRobin&&) noexcept;
    RoundRobin& operator=(RoundRobin&&) noexcept;
    ~RoundRobin();

    // Index of the next backend, skipping those whose bit is set in `exclude` (the backends a
    // session already tried). Returns -1 when every backend is excluded.
    int pick(uint64_t exclude = 0);

  private:
    std::unique_ptr<RoundRobinBalancer> impl_;
};

}  // namespace ringlb::upstream
