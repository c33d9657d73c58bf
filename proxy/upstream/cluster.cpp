#include "proxy/upstream/cluster.hpp"

#include "proxy/upstream/balancer.hpp"
#include "proxy/upstream/maglev.hpp"

namespace ringlb::upstream {

Cluster::Cluster(const config::ClusterConfig& config)
    : settings(&config),
      name(config.name),
      connect_timeout(config.connect_timeout),
      balance(config.balance),
      hash_key(config.hash_key) {
    backends.reserve(config.backends.size());
    for (const auto& b : config.backends) {
        backends.push_back(Backend{b.address, b.address_text, b.weight, backends.size()});
    }
    if (balance == config::Balance::kMaglev) {
        std::vector<MaglevBackend> members;
        members.reserve(backends.size());
        for (const auto& b : backends) members.push_back(MaglevBackend{b.name, b.weight});
        maglev = build_maglev(members, config.maglev_table_size);
    }
}

}  // namespace ringlb::upstream
