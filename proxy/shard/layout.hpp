#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/shard/counters.hpp"
#include "proxy/upstream/counters.hpp"

namespace ringlb::shard {

// What other threads (the control thread's /metrics, /backends, SIGUSR1 line and port watch) may
// read of one shard's listeners, clusters and backends. Immutable: the shard builds a new one on
// its own thread whenever its configuration changes (start, reload) and hands it over by
// message, so a scrape never walks structures a reload is rebuilding. The counters are the live
// ones (relaxed atomics written only by the shard), kept alive by the layout.
struct ShardLayout {
    struct Listener {
        std::string name;
        const ListenerCounters* counters = nullptr;  // the shard never frees these
    };
    struct Backend {
        std::string name;
        uint32_t weight = 1;
        uint32_t max_connections = 0;  // configured, for the whole process
        uint32_t limit = 0;            // this shard's share; 0: unlimited
        bool drained = false;          // through the admin API
        std::shared_ptr<const upstream::BackendCounters> counters;
    };
    struct Cluster {
        std::string name;
        std::shared_ptr<const upstream::ClusterCounters> counters;
        std::vector<Backend> backends;
    };
    std::vector<Listener> listeners;  // in configuration order
    std::vector<Cluster> clusters;    // in configuration order
};

}  // namespace ringlb::shard
