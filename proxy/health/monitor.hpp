#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "config/config.hpp"
#include "proxy/health/checker.hpp"
#include "proxy/health/ejector.hpp"
#include "proxy/upstream/health.hpp"

namespace ringlb::health {

// What the control plane knows of backend health: the active checks (HealthChecker), passive
// ejection (Ejector) and, from both, which backends are down and which came back when (for
// slow_start). verdicts() is what every shard is sent after each change.
class Monitor {
  public:
    // `changed`: called after verdicts() changed.
    Monitor(boost::asio::io_context& io, std::function<void()> changed);
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    // A new configuration (at start and on each reload); state of unchanged backends stays.
    void apply(const config::Config& config);
    void stop();
    // From the shards (through the control thread's loop): passive health outcomes.
    void report(const std::string& cluster, const std::string& backend, bool ok);

    std::shared_ptr<const upstream::HealthVerdicts> verdicts() const { return verdicts_; }
    const HealthChecker& checker() const { return checker_; }
    const Ejector& ejector() const { return ejector_; }
    // slow_start: the share of its full share the backend takes now, 0 to 1 (1 when it does
    // not ramp).
    double slow_start_ratio(const std::string& cluster, const std::string& backend) const;

  private:
    void rebuild();

    HealthChecker checker_;
    Ejector ejector_;
    std::function<void()> changed_;
    std::map<std::string, uint64_t> slow_start_ms_;  // per cluster with slow_start
    std::unordered_set<std::string> down_;           // HealthVerdicts::key
    std::unordered_map<std::string, uint64_t> came_back_;
    std::shared_ptr<const upstream::HealthVerdicts> verdicts_;
};

}  // namespace ringlb::health
