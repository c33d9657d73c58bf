#pragma once

#include <string>
#include <vector>

#include "proxy/shard/counters.hpp"
#include "proxy/upstream/connector.hpp"

namespace ringlb::admin {

struct ShardView {
    unsigned id = 0;
    const shard::ShardCounters* counters = nullptr;
    const upstream::Connector* connector = nullptr;  // per-cluster and per-backend state
};

// Prometheus text exposition, read at scrape time (the shards keep writing; each value is one
// relaxed load): every shard's counters (label `shard`), the per-cluster and per-backend
// counters summed over shards (labels `cluster`, `backend`, and `reason` where declared), the
// connect-duration histogram per cluster, plus build and engine info.
// `port_forecast[i]`: new connections per second cluster i's source ports sustain given TIME_WAIT
// (runtime::sustainable_new_conn_rate), exported as a gauge when given.
std::string render_metrics(const std::vector<ShardView>& shards, const std::string& engine,
                           const std::vector<double>& port_forecast = {});

}  // namespace ringlb::admin
