#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "config/config.hpp"

namespace ringlb::upstream {

struct Backend {
    common::Address address;
    std::string name;  // "ip:port" as written in the config
    uint32_t weight = 1;
};

// A cluster as every shard sees it: immutable once built from the config.
struct Cluster {
    explicit Cluster(const config::ClusterConfig& config);

    std::string name;
    std::vector<Backend> backends;
    std::chrono::milliseconds connect_timeout;
};

// Shard-local smooth weighted round-robin (the nginx algorithm): spreads picks in proportion to
// weight without bursts. With equal weights it is plain round-robin. Not thread-safe by design:
// each shard owns one per cluster.
class RoundRobin {
  public:
    explicit RoundRobin(const Cluster& cluster);

    // Index of the next backend, skipping those whose bit is set in `exclude` (the backends a
    // session already tried). Returns -1 when every backend is excluded.
    int pick(uint64_t exclude = 0);

  private:
    const Cluster* cluster_;
    std::vector<int64_t> current_;
    int64_t total_weight_ = 0;
};

}  // namespace ringlb::upstream
