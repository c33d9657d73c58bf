#include "proxy/runtime/port_watch.hpp"

#include <cmath>

#include "common/log.hpp"

namespace ringlb::runtime {

PortWatch::PortWatch(boost::asio::io_context& io, std::shared_ptr<const config::Config> config,
                     const std::vector<std::shared_ptr<const shard::ShardLayout>>& layouts,
                     std::vector<double> forecast)
    : timer_(io),
      config_(std::move(config)),
      layouts_(layouts),
      forecast_(std::move(forecast)),
      warned_at_(config_->clusters.size()) {
    last_ = totals();
    arm();
}

std::vector<uint64_t> PortWatch::totals() const {
    // By name, which is what the counters are kept by across reloads.
    std::vector<uint64_t> sums(config_->clusters.size(), 0);
    for (const auto& layout : layouts_)
        for (const auto& cluster : layout->clusters)
            for (size_t c = 0; c < sums.size(); ++c)
                if (cluster.name == config_->clusters[c].name)
                    sums[c] += cluster.counters->connects.get();
    return sums;
}

void PortWatch::arm() {
    timer_.expires_after(kInterval);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        check();
        arm();
    });
}

void PortWatch::check() {
    std::vector<uint64_t> now = totals();
    auto when = std::chrono::steady_clock::now();
    for (size_t c = 0; c < now.size(); ++c) {
        double rate = static_cast<double>(now[c] >= last_[c] ? now[c] - last_[c] : 0) /
                      std::chrono::duration<double>(kInterval).count();
        double limit = forecast_[c];
        if (std::isfinite(limit) && rate > limit / 2 &&
            (warned_at_[c] == std::chrono::steady_clock::time_point{} ||
             when - warned_at_[c] >= kWarnEvery)) {
            warned_at_[c] = when;
            LOG_WARN(
                "cluster %s: %.0f new connections/s, more than half of the %.0f/s its source "
                "ports sustain while closed connections sit in TIME_WAIT (60 s); add "
                "source_addresses, widen source_port_range or net.ipv4.ip_local_port_range, "
                "or use close = \"reset\" (metric ringlb_cluster_port_forecast_connections_"
                "per_second)",
                config_->clusters[c].name.c_str(), rate, limit);
        }
    }
    last_ = std::move(now);
}

}  // namespace ringlb::runtime
