#include "proxy/upstream/cluster.hpp"

namespace ringlb::upstream {

Cluster::Cluster(const config::ClusterConfig& config)
    : name(config.name), connect_timeout(config.connect_timeout) {
    backends.reserve(config.backends.size());
    for (const auto& b : config.backends) {
        backends.push_back(Backend{b.address, b.address_text, b.weight});
    }
}

RoundRobin::RoundRobin(const Cluster& cluster)
    : cluster_(&cluster), current_(cluster.backends.size(), 0) {
    for (const auto& b : cluster.backends) total_weight_ += b.weight;
}

int RoundRobin::pick(uint64_t exclude) {
    int best = -1;
    int64_t total = 0;
    const auto& backends = cluster_->backends;
    for (size_t i = 0; i < backends.size(); ++i) {
        if (i < 64 && (exclude & (uint64_t{1} << i))) continue;
        current_[i] += backends[i].weight;
        total += backends[i].weight;
        if (best < 0 || current_[i] > current_[static_cast<size_t>(best)])
            best = static_cast<int>(i);
    }
    if (best >= 0) current_[static_cast<size_t>(best)] -= total;
    return best;
}

}  // namespace ringlb::upstream
