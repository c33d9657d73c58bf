#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace ringlb::upstream {

// Which backends the control plane's health checks hold down, as the shards read it. Immutable
// once built: a change builds a new one and posts it to every shard (Shard::set_health), so
// no shard reads state another thread writes. Backends are named, not indexed, so a verdict
// stays right across a reload that reorders or replaces clusters.
struct HealthVerdicts {
    std::unordered_set<std::string> down;  // key(cluster, backend)
    // Backends that came back (a check brought them up, an ejection ended), with when
    // (CLOCK_MONOTONIC ms): a cluster with slow_start ramps their share up from then.
    std::unordered_map<std::string, uint64_t> recovered_at_ms;

    static std::string key(std::string_view cluster, std::string_view backend) {
        std::string k;
        k.reserve(cluster.size() + backend.size() + 1);
        k.append(cluster);
        k.push_back('\0');  // not allowed in a name, so the pair is unambiguous
        k.append(backend);
        return k;
    }
    bool is_down(std::string_view cluster, std::string_view backend) const {
        return !down.empty() && down.contains(key(cluster, backend));
    }
    // When the backend came back, or 0.
    uint64_t recovered_at(std::string_view cluster, std::string_view backend) const {
        if (recovered_at_ms.empty()) return 0;
        auto it = recovered_at_ms.find(key(cluster, backend));
        return it == recovered_at_ms.end() ? 0 : it->second;
    }
};

}  // namespace ringlb::upstream
