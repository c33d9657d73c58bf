#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"

namespace ringlb::config {

// What a reload changes, by name: listeners and clusters added, removed and changed (any key).
// `restart_only` lists the keys that differ but take effect only at a restart (the shard count,
// the engine, the per-shard buffers and pipes, the admin endpoint); a reload that changes one is
// refused, so the running process never claims a configuration it does not run.
struct ConfigDiff {
    std::vector<std::string> listeners_added, listeners_removed, listeners_changed;
    std::vector<std::string> clusters_added, clusters_removed, clusters_changed;
    std::vector<std::string> restart_only;  // "runtime.workers", "admin.bind", ...

    bool empty() const;
    // "listeners +a -b ~c; clusters +x" or "no change".
    std::string summary() const;
};

ConfigDiff diff(const Config& running, const Config& next);

}  // namespace ringlb::config
