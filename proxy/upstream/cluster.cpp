#include "proxy/upstream/cluster.hpp"

#include <bit>

#include "proxy/upstream/balancer.hpp"
#include "proxy/upstream/maglev.hpp"

namespace ringlb::upstream {

Cluster::Cluster(const config::ClusterConfig& config)
    : name(config.name),
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

RoundRobin::RoundRobin(const Cluster& cluster)
    : impl_(std::make_unique<RoundRobinBalancer>(cluster)) {}
RoundRobin::RoundRobin(RoundRobin&&) noexcept = default;
RoundRobin& RoundRobin::operator=(RoundRobin&&) noexcept = default;
RoundRobin::~RoundRobin() = default;

int RoundRobin::pick(uint64_t exclude) {
    TriedSet tried;
    for (uint64_t bits = exclude; bits != 0; bits &= bits - 1)
        tried.insert(static_cast<size_t>(std::countr_zero(bits)));
    return impl_->pick(PickContext{}, tried);
}

}  // namespace ringlb::upstream
