#include "proxy/upstream/cluster.hpp"

#include "proxy/upstream/balancer.hpp"
#include "proxy/upstream/maglev.hpp"

namespace ringlb::upstream {

Cluster::Cluster(const config::ClusterConfig& config, const BackendOverrides* overrides)
    : settings(&config),
      name(config.name),
      connect_timeout(config.connect_timeout),
      balance(config.balance),
      hash_key(config.hash_key) {
    backends.reserve(config.backends.size());
    for (const auto& b : config.backends) {
        Backend& backend =
            backends.emplace_back(Backend{b.address, b.address_text, b.weight, backends.size()});
        if (overrides) {
            auto it = overrides->find({config.name, b.address_text});
            if (it != overrides->end()) {
                if (it->second.weight) backend.weight = *it->second.weight;
                backend.drained = it->second.drained;
                any_drained = any_drained || backend.drained;
            }
        }
    }
    if (balance == config::Balance::kMaglev) {
        std::vector<MaglevBackend> members;
        members.reserve(backends.size());
        for (const auto& b : backends) members.push_back(MaglevBackend{b.name, b.weight});
        maglev = build_maglev(members, config.maglev_table_size);
    }
}

bool Cluster::same_as(const Cluster& other) const {
    if (!(*settings == *other.settings) || backends.size() != other.backends.size()) return false;
    for (size_t i = 0; i < backends.size(); ++i) {
        if (backends[i].weight != other.backends[i].weight ||
            backends[i].drained != other.backends[i].drained)
            return false;
    }
    return true;
}

size_t Cluster::usable() const {
    size_t n = 0;
    for (const Backend& b : backends) n += b.drained ? 0 : 1;
    return n;
}

}  // namespace ringlb::upstream
