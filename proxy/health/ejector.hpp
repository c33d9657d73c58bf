#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/log.hpp"
#include "config/config.hpp"

namespace ringlb::health {

// One backend's passive-health state, read by /metrics and /backends.
struct EjectionState {
    uint32_t failures = 0;  // in a row, over every shard
    bool ejected = false;
    uint32_t times = 0;      // ejections in a row (each doubles the time), reset after a quiet time
    uint64_t ejections = 0;  // ever
    std::chrono::steady_clock::time_point until{};
    std::chrono::steady_clock::time_point readmitted{};
};

// Passive health (Envoy's outlier detection, HAProxy's observe layer4): the shards report each
// backend's failures (a refused, reset or timed-out connect; a session the backend reset before
// saying anything) and the first success after them; `eject_after` failures in a row, summed
// over shards, eject the backend for `eject_time`, doubled on each ejection that follows within
// eject_time_max of the last readmission, up to `eject_time_max`; at most
// `max_ejected_percent` of the cluster's backends (at least one) are ejected at once. Runs on
// the control thread; ejected() feeds the verdicts the shards are sent.
class Ejector {
  public:
    // `changed`: called after a backend was ejected or readmitted.
    Ejector(boost::asio::io_context& io, std::function<void()> changed);
    ~Ejector();
    Ejector(const Ejector&) = delete;
    Ejector& operator=(const Ejector&) = delete;

    // Clusters with eject_after > 0 are watched; a backend that stays keeps its state.
    void apply(const config::Config& config);
    void report(const std::string& cluster, const std::string& backend, bool ok);
    void stop();

    bool ejected(const std::string& cluster, const std::string& backend) const;
    // nullptr when the backend's cluster is not watched.
    const EjectionState* find(const std::string& cluster, const std::string& backend) const;
    // Ejections refused because max_ejected_percent was reached, per cluster.
    uint64_t refused(const std::string& cluster) const;
    // Every ejected backend, as (cluster, backend).
    void for_each_ejected(
        const std::function<void(const std::string&, const std::string&)>& fn) const;

  private:
    struct Settings {
        uint32_t eject_after = 0;
        std::chrono::milliseconds eject_time{};
        std::chrono::milliseconds eject_time_max{};
        uint32_t max_percent = 0;
        size_t backends = 0;
        uint64_t refused = 0;
        common::LogLimiter refused_log;
    };
    struct Entry {
        EjectionState state;
        std::unique_ptr<boost::asio::steady_timer> timer;
    };
    void eject(const std::string& cluster, const std::string& backend, Entry& entry,
               Settings& settings);
    void readmit(const std::string& cluster, const std::string& backend);
    size_t ejected_in(const std::string& cluster) const;

    boost::asio::io_context& io_;
    std::function<void()> changed_;
    std::map<std::string, Settings> clusters_;
    std::map<std::pair<std::string, std::string>, Entry> entries_;
};

}  // namespace ringlb::health
