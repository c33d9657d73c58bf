#include "proxy/health/monitor.hpp"

#include <chrono>

namespace ringlb::health {

namespace {
// CLOCK_MONOTONIC ms, the clock the shards read (coarse) for slow_start.
uint64_t steady_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}
}  // namespace

Monitor::Monitor(boost::asio::io_context& io, std::function<void()> changed)
    : checker_(io, [this] { rebuild(); }),
      ejector_(io, [this] { rebuild(); }),
      changed_(std::move(changed)),
      verdicts_(std::make_shared<upstream::HealthVerdicts>()) {}

void Monitor::apply(const config::Config& config) {
    slow_start_ms_.clear();
    for (const config::ClusterConfig& c : config.clusters)
        if (c.slow_start.count() > 0)
            slow_start_ms_[c.name] = static_cast<uint64_t>(c.slow_start.count());
    checker_.apply(config);
    ejector_.apply(config);
    rebuild();
}

void Monitor::stop() {
    checker_.stop();
    ejector_.stop();
}

void Monitor::report(const std::string& cluster, const std::string& backend, bool ok) {
    ejector_.report(cluster, backend, ok);
}

void Monitor::rebuild() {
    auto next = std::make_shared<upstream::HealthVerdicts>();
    next->down = checker_.verdicts()->down;
    ejector_.for_each_ejected([&](const std::string& cluster, const std::string& backend) {
        next->down.insert(upstream::HealthVerdicts::key(cluster, backend));
    });
    uint64_t now = steady_ms();
    for (const std::string& key : down_)
        if (!next->down.contains(key)) came_back_[key] = now;
    for (const std::string& key : next->down) came_back_.erase(key);
    // Only clusters with slow_start care, and only for their window.
    std::erase_if(came_back_, [&](const auto& entry) {
        std::string cluster = entry.first.substr(0, entry.first.find('\0'));
        auto window = slow_start_ms_.find(cluster);
        return window == slow_start_ms_.end() || now >= entry.second + window->second;
    });
    next->recovered_at_ms = came_back_;
    bool same =
        next->down == verdicts_->down && next->recovered_at_ms == verdicts_->recovered_at_ms;
    down_ = next->down;
    verdicts_ = std::move(next);
    if (!same && changed_) changed_();
}

double Monitor::slow_start_ratio(const std::string& cluster, const std::string& backend) const {
    auto window = slow_start_ms_.find(cluster);
    if (window == slow_start_ms_.end()) return 1;
    auto it = came_back_.find(upstream::HealthVerdicts::key(cluster, backend));
    if (it == came_back_.end()) return 1;
    uint64_t now = steady_ms();
    if (now >= it->second + window->second) return 1;
    return static_cast<double>(now - std::min(now, it->second)) /
           static_cast<double>(window->second);
}

}  // namespace ringlb::health
