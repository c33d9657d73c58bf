#include "proxy/upstream/balancer.hpp"

#include <algorithm>
#include <optional>

#include "proxy/upstream/cluster.hpp"
#include "proxy/upstream/maglev.hpp"

namespace ringlb::upstream {

namespace {

// The config allows weights 1..1000; a 0 would starve a backend or divide by zero, so it counts
// as 1 here.
std::vector<uint32_t> weights_of(const Cluster& cluster) {
    std::vector<uint32_t> weights;
    weights.reserve(cluster.backends.size());
    for (const auto& b : cluster.backends) weights.push_back(std::max<uint32_t>(b.weight, 1));
    return weights;
}

// Smooth weighted round-robin step over the backends `eligible` accepts: each earns its weight,
// the richest wins and pays the total earned. Returns -1 when none is eligible.
template <typename Eligible>
int smooth_pick(const std::vector<uint32_t>& weights, std::vector<int64_t>& current,
                Eligible eligible) {
    int best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < weights.size(); ++i) {
        if (!eligible(i)) continue;
        current[i] += weights[i];
        total += weights[i];
        if (best < 0 || current[i] > current[static_cast<size_t>(best)]) best = static_cast<int>(i);
    }
    if (best >= 0) current[static_cast<size_t>(best)] -= total;
    return best;
}

}  // namespace

// --- FastRng

FastRng::FastRng(uint64_t seed) : state_(mix64(seed ^ 0x6a09e667f3bcc909ULL)) {}

uint64_t FastRng::next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_);
}

uint64_t FastRng::below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
}

// --- round_robin

RoundRobinBalancer::RoundRobinBalancer(const Cluster& cluster)
    : weights_(weights_of(cluster)), current_(weights_.size(), 0) {}

int RoundRobinBalancer::pick(const PickContext&, const TriedSet& exclude) {
    return smooth_pick(weights_, current_, [&](size_t i) { return !exclude.contains(i); });
}

// --- counting policies

CountingBalancer::CountingBalancer(const Cluster& cluster)
    : weights_(weights_of(cluster)), active_(weights_.size(), 0) {}

void CountingBalancer::attach(size_t i) {
    if (i < active_.size()) ++active_[i];
}

void CountingBalancer::detach(size_t i) {
    if (i < active_.size() && active_[i] > 0) --active_[i];
}

LeastConnBalancer::LeastConnBalancer(const Cluster& cluster)
    : CountingBalancer(cluster), current_(weights_.size(), 0) {}

int LeastConnBalancer::pick(const PickContext&, const TriedSet& exclude) {
    // Loads compared as active_i / w_i < active_j / w_j, cross-multiplied in 64 bits.
    auto load_cmp = [&](size_t i, size_t j) {
        uint64_t li = uint64_t{active_[i]} * weights_[j];
        uint64_t lj = uint64_t{active_[j]} * weights_[i];
        return li < lj ? -1 : (li > lj ? 1 : 0);
    };
    int least = -1;
    for (size_t i = 0; i < weights_.size(); ++i) {
        if (exclude.contains(i)) continue;
        if (least < 0 || load_cmp(i, static_cast<size_t>(least)) < 0) least = static_cast<int>(i);
    }
    if (least < 0) return -1;
    const size_t l = static_cast<size_t>(least);
    return smooth_pick(weights_, current_,
                       [&](size_t i) { return !exclude.contains(i) && load_cmp(i, l) == 0; });
}

// --- two random choices

WeightedPairSampler::WeightedPairSampler(const std::vector<uint32_t>& weights)
    : weights_(weights), prefix_(weights.size() + 1, 0) {
    for (size_t i = 0; i < weights_.size(); ++i) prefix_[i + 1] = prefix_[i] + weights_[i];
}

size_t WeightedPairSampler::find(uint64_t point) const {
    // The last i with prefix_[i] <= point.
    auto it = std::upper_bound(prefix_.begin(), prefix_.end(), point);
    return static_cast<size_t>(it - prefix_.begin()) - 1;
}

int WeightedPairSampler::draw(const TriedSet& exclude, FastRng& rng, size_t* a, size_t* b) const {
    const size_t n = weights_.size();
    if (n == 0) return 0;
    if (exclude.empty()) {
        if (n == 1) {
            *a = 0;
            return 1;
        }
        *a = find(rng.below(prefix_[n]));
        // The second draw skips the first's interval: no rejection loop, even when *a outweighs
        // the rest a thousand to one.
        uint64_t point = rng.below(prefix_[n] - weights_[*a]);
        if (point >= prefix_[*a]) point += weights_[*a];
        *b = find(point);
        return 2;
    }

    // Slow path (a session retrying): linear scans over the allowed backends.
    uint64_t total = 0;
    size_t allowed = 0;
    for (size_t i = 0; i < n; ++i) {
        if (exclude.contains(i)) continue;
        total += weights_[i];
        ++allowed;
        *a = i;
    }
    if (allowed <= 1) return static_cast<int>(allowed);
    auto pick_point = [&](uint64_t point, size_t skip) {
        size_t last = 0;
        for (size_t i = 0; i < n; ++i) {
            if (exclude.contains(i) || i == skip) continue;
            last = i;
            if (point < weights_[i]) return i;
            point -= weights_[i];
        }
        return last;  // not reached: point < total of the scanned weights
    };
    *a = pick_point(rng.below(total), n);
    *b = pick_point(rng.below(total - weights_[*a]), *a);
    return 2;
}

RandomTwoBalancer::RandomTwoBalancer(const Cluster& cluster, uint64_t seed)
    : CountingBalancer(cluster), rng_(seed), sampler_(weights_) {}

int RandomTwoBalancer::pick(const PickContext&, const TriedSet& exclude) {
    size_t a = 0;
    size_t b = 0;
    int drawn = sampler_.draw(exclude, rng_, &a, &b);
    if (drawn == 0) return -1;
    if (drawn == 1) return static_cast<int>(a);
    // b wins only when strictly less loaded per unit of weight.
    bool b_wins = uint64_t{active_[b]} * weights_[a] < uint64_t{active_[a]} * weights_[b];
    return static_cast<int>(b_wins ? b : a);
}

// --- least_time

LeastTimeBalancer::LeastTimeBalancer(const Cluster& cluster, uint64_t seed)
    : CountingBalancer(cluster),
      rng_(seed),
      sampler_(weights_),
      ewma_ns_(weights_.size(), 0),
      measured_(weights_.size(), false),
      failure_ns_(
          std::chrono::duration_cast<std::chrono::nanoseconds>(cluster.connect_timeout).count()) {}

double LeastTimeBalancer::cost(size_t i) const {
    return static_cast<double>(ewma_ns_[i]) * (static_cast<double>(active_[i]) + 1.0) /
           static_cast<double>(weights_[i]);
}

int LeastTimeBalancer::pick(const PickContext&, const TriedSet& exclude) {
    size_t a = 0;
    size_t b = 0;
    int drawn = sampler_.draw(exclude, rng_, &a, &b);
    if (drawn == 0) return -1;
    if (drawn == 1) return static_cast<int>(a);
    if (rng_.below(kExploreOneIn) == 0) return static_cast<int>(a);
    return static_cast<int>(cost(b) < cost(a) ? b : a);
}

void LeastTimeBalancer::sample(size_t i, int64_t ns) {
    if (i >= ewma_ns_.size()) return;
    ns = std::max<int64_t>(ns, 0);
    if (!measured_[i]) {
        ewma_ns_[i] = ns;
        measured_[i] = true;
        return;
    }
    ewma_ns_[i] += (ns - ewma_ns_[i]) / 4;
}

void LeastTimeBalancer::observe_connect(size_t i, std::chrono::nanoseconds elapsed) {
    sample(i, elapsed.count());
}

void LeastTimeBalancer::observe_connect_failure(size_t i) {
    sample(i, failure_ns_);
}

// --- maglev

MaglevBalancer::MaglevBalancer(std::shared_ptr<const MaglevTable> table, config::HashKey key)
    : table_(std::move(table)), key_(key) {}

int MaglevBalancer::pick(const PickContext& ctx, const TriedSet& exclude) {
    std::optional<uint64_t> key;
    if (ctx.client) key = client_key_hash(*ctx.client, key_);
    if (!key) key = mix64(anonymous_next_++);
    return table_->lookup(*key, exclude);
}

// --- factory

std::unique_ptr<Balancer> make_balancer(const Cluster& cluster, uint64_t seed) {
    switch (cluster.balance) {
        case config::Balance::kRoundRobin:
            break;
        case config::Balance::kLeastConn:
            return std::make_unique<LeastConnBalancer>(cluster);
        case config::Balance::kRandomTwo:
            return std::make_unique<RandomTwoBalancer>(cluster, seed);
        case config::Balance::kLeastTime:
            return std::make_unique<LeastTimeBalancer>(cluster, seed);
        case config::Balance::kMaglev:
            // The Cluster constructor builds the table for every maglev cluster; a Cluster
            // assembled by hand without one gets round-robin rather than a null dereference.
            if (cluster.maglev)
                return std::make_unique<MaglevBalancer>(cluster.maglev, cluster.hash_key);
            break;
    }
    return std::make_unique<RoundRobinBalancer>(cluster);
}

}  // namespace ringlb::upstream
