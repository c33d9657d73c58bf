#include "proxy/admin/routes.hpp"

#include <nlohmann/json.hpp>

#include <utility>

#include "config/render.hpp"

namespace ringlb::admin {

std::string render_backends(const std::vector<ShardView>& shards, const health::Monitor* health) {
    // ordered_json keeps the keys in the order written here, the order the README shows.
    nlohmann::ordered_json backends = nlohmann::ordered_json::array();
    if (!shards.empty()) {
        // Every shard has the same clusters and backends in the same order (one configuration).
        const auto& clusters = shards.front().layout->clusters;
        for (size_t c = 0; c < clusters.size(); ++c) {
            const shard::ShardLayout::Cluster& cluster = clusters[c];
            for (size_t b = 0; b < cluster.backends.size(); ++b) {
                uint64_t active = 0;
                bool every_shard_full = true;
                for (const ShardView& s : shards) {
                    const shard::ShardLayout::Backend& state = s.layout->clusters[c].backends[b];
                    uint64_t here = state.counters->active_connections.get();
                    active += here;
                    if (state.limit == 0 || here < state.limit) every_shard_full = false;
                }
                const std::string& name = cluster.backends[b].name;
                const health::BackendHealth* h =
                    health ? health->checker().find(cluster.name, name) : nullptr;
                const health::EjectionState* e =
                    health ? health->ejector().find(cluster.name, name) : nullptr;
                bool down = (h && !h->up) || (e && e->ejected);
                nlohmann::ordered_json entry = {
                    {"cluster", cluster.name},
                    {"backend", cluster.backends[b].name},
                    {"weight", cluster.backends[b].weight},
                    {"max_connections", cluster.backends[b].max_connections},
                    {"active_connections", active},
                    {"state",
                     cluster.backends[b].drained
                         ? kBackendDrained
                         : (down ? kBackendDown : (every_shard_full ? kBackendFull : kBackendUp))},
                    {"health", h ? (h->up ? "up" : "down") : kHealthUnknown},
                };
                if (h && h->checked) {
                    entry["check"] = {{"result", health::to_string(h->last)},
                                      {"detail", h->last_detail}};
                }
                if (e) {
                    entry["ejected"] = e->ejected;
                    entry["ejections"] = e->ejections;
                }
                if (health) {
                    double ratio = health->slow_start_ratio(cluster.name, name);
                    if (ratio < 1) entry["slow_start"] = ratio;
                }
                backends.push_back(std::move(entry));
            }
        }
    }
    nlohmann::ordered_json body;
    body["backends"] = std::move(backends);
    return body.dump(2) + "\n";
}

Route backends_route(std::function<std::vector<ShardView>()> shards,
                     const health::Monitor* health) {
    return {"/backends",
            {"GET", "HEAD"},
            "JSON: every backend with its weight, active connections (summed over the shards), "
            "state and health",
            [shards = std::move(shards), health](const Request&) -> Reply {
                return {200, "application/json", render_backends(shards(), health)};
            }};
}

Route config_route(std::function<std::shared_ptr<const config::Config>()> config) {
    return {"/config",
            {"GET", "HEAD"},
            "the running configuration as TOML, every key with its effective value",
            [config = std::move(config)](const Request&) -> Reply {
                return {200, "application/toml", config::render_toml(*config())};
            }};
}

}  // namespace ringlb::admin
