#pragma once

#include <boost/asio/io_context.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/histogram.hpp"
#include "config/config.hpp"
#include "proxy/upstream/health.hpp"

namespace ringlb::health {

// What one check found. X(name, counts_against_the_backend, help)
#define RINGLB_CHECK_RESULTS(X)                                                              \
    X(ok, false, "the check passed")                                                         \
    X(refused, true, "the connect was refused")                                              \
    X(timeout, true, "no connect, or no complete reply, within the check's timeout")         \
    X(reset, true, "the backend reset the connection")                                       \
    X(unreachable, true, "no route to the backend (EHOSTUNREACH, ENETUNREACH)")              \
    X(wrong_reply, true, "the reply did not start with `expect`")                            \
    X(closed, true, "the backend closed the connection before sending all of `expect`")      \
    X(local_error, false,                                                                    \
      "ringlb could not run the check (out of fds, no source address); the backend's state " \
      "stays as it was")

enum class Result : uint8_t {
#define RINGLB_RESULT_ENUM(name, counts, help) name,
    RINGLB_CHECK_RESULTS(RINGLB_RESULT_ENUM)
#undef RINGLB_RESULT_ENUM
};
inline constexpr size_t kResultCount = 0
#define RINGLB_RESULT_COUNT(name, counts, help) +1
    RINGLB_CHECK_RESULTS(RINGLB_RESULT_COUNT)
#undef RINGLB_RESULT_COUNT
    ;
const char* to_string(Result result);

// Check durations (connect, send, reply), 0.5 ms to 10 s.
inline constexpr std::array<double, 14> kCheckBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
using CheckHistogram = common::Histogram<kCheckBuckets, 1'000'000>;  // µs

// One checked backend's state, read by /metrics and /backends on the control thread.
struct BackendHealth {
    std::string cluster;
    std::string backend;
    bool up = true;
    bool checked = false;  // a check has completed (one that counts)
    Result last = Result::ok;
    std::string last_detail;  // e.g. the reply's first bytes on wrong_reply
    uint32_t passes = 0;      // consecutive
    uint32_t failures = 0;    // consecutive
    std::array<uint64_t, kResultCount> results{};
    uint64_t went_down = 0;
    uint64_t went_up = 0;
    CheckHistogram durations;
};

// Active health checks (HAProxy's `check`, Envoy's health_checker): every backend of every
// cluster with `health` is checked every `interval` (± jitter) by a TCP connect, optionally
// followed by `send` and a reply that must start with `expect`, all within `timeout`. `fall`
// consecutive failures take a backend down, `rise` consecutive passes bring it back; a backend
// starts up and its first failed check takes it down at once, so a dead backend is known within
// one timeout of start. Runs on the control thread's Asio loop, never on a shard; verdicts()
// is what the shards are sent.
class HealthChecker {
  public:
    // `changed`: called (on the control thread) after a backend went up or down.
    HealthChecker(boost::asio::io_context& io, std::function<void()> changed);
    ~HealthChecker();
    HealthChecker(const HealthChecker&) = delete;
    HealthChecker& operator=(const HealthChecker&) = delete;

    // Checks the clusters of `config` that have `health`. A backend whose cluster, name, address
    // and check settings are unchanged keeps its state and its schedule; the others start
    // afresh, and checks of backends no longer there stop.
    void apply(const config::Config& config);
    void stop();

    // The backends held down now.
    std::shared_ptr<const upstream::HealthVerdicts> verdicts() const { return verdicts_; }
    // nullptr when the backend is not checked.
    const BackendHealth* find(const std::string& cluster, const std::string& backend) const;
    // Every checked backend, ordered by (cluster, backend).
    void for_each(const std::function<void(const BackendHealth&)>& fn) const;

  private:
    class Probe;
    friend class Probe;
    void on_change();

    boost::asio::io_context& io_;
    std::function<void()> changed_;
    std::map<std::pair<std::string, std::string>, std::shared_ptr<Probe>> probes_;
    std::shared_ptr<const upstream::HealthVerdicts> verdicts_;
};

}  // namespace ringlb::health
