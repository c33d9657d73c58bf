#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "proxy/shard/layout.hpp"

namespace ringlb::runtime {

// Warns when a cluster's observed connect rate passes half of what its source ports sustain
// given TIME_WAIT, before connects start failing with EADDRNOTAVAIL. Made anew for each
// configuration (a reload replaces it).
class PortWatch {
  public:
    PortWatch(boost::asio::io_context& io, std::shared_ptr<const config::Config> config,
              const std::vector<std::shared_ptr<const shard::ShardLayout>>& layouts,
              std::vector<double> forecast);

  private:
    static constexpr auto kInterval = std::chrono::seconds(10);
    static constexpr auto kWarnEvery = std::chrono::minutes(5);

    std::vector<uint64_t> totals() const;
    void arm();
    void check();

    boost::asio::steady_timer timer_;
    std::shared_ptr<const config::Config> config_;
    const std::vector<std::shared_ptr<const shard::ShardLayout>>& layouts_;
    std::vector<double> forecast_;
    std::vector<uint64_t> last_;
    std::vector<std::chrono::steady_clock::time_point> warned_at_;
};

}  // namespace ringlb::runtime
