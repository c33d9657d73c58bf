#pragma once

#include <string>
#include <vector>

#include "proxy/shard/counters.hpp"

namespace ringlb::admin {

struct ShardView {
    unsigned id = 0;
    const shard::ShardCounters* counters = nullptr;
};

// Prometheus text exposition of every shard's counters, read at scrape time (the shards keep
// writing; each value is one relaxed load), plus build and engine info.
std::string render_metrics(const std::vector<ShardView>& shards, const std::string& engine);

}  // namespace ringlb::admin
