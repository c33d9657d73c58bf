#include "proxy/health/checker.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "common/log.hpp"

namespace ringlb::health {

namespace asio = boost::asio;
// Generic, so a unix backend (address = "unix:/path") is checked as a TCP one is.
using Stream = asio::generic::stream_protocol;
using Clock = std::chrono::steady_clock;

const char* to_string(Result result) {
    switch (result) {
#define RINGLB_RESULT_NAME(name, counts, help) \
    case Result::name:                         \
        return #name;
        RINGLB_CHECK_RESULTS(RINGLB_RESULT_NAME)
#undef RINGLB_RESULT_NAME
    }
    return "?";
}

namespace {

bool counts_against(Result result) {
    switch (result) {
#define RINGLB_RESULT_COUNTS(name, counts, help) \
    case Result::name:                           \
        return counts;
        RINGLB_CHECK_RESULTS(RINGLB_RESULT_COUNTS)
#undef RINGLB_RESULT_COUNTS
    }
    return false;
}

Result classify(const boost::system::error_code& ec) {
    if (ec == asio::error::eof) return Result::closed;
    switch (ec.value()) {
        case ECONNREFUSED:
            return Result::refused;
        case ECONNRESET:
        case EPIPE:
        case ECONNABORTED:
            return Result::reset;
        case ETIMEDOUT:
            return Result::timeout;
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EHOSTDOWN:
        case ENETDOWN:
            return Result::unreachable;
        default:
            return Result::local_error;
    }
}

// The reply as a log can show it: printable ASCII as is, the rest as \xNN, at most 32 bytes.
std::string printable(std::string_view bytes) {
    std::string out;
    for (size_t i = 0; i < bytes.size() && i < 32; ++i) {
        unsigned char c = static_cast<unsigned char>(bytes[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    if (bytes.size() > 32) out += "...";
    return out;
}

// The check port replaces the backend's; a unix backend has no port, so it has none.
Stream::endpoint endpoint_of(const common::Address& address, uint16_t port) {
    common::Address target = address;
    if (port != 0 && target.family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&target.storage)->sin_port = htons(port);
    else if (port != 0 && target.family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&target.storage)->sin6_port = htons(port);
    return Stream::endpoint(target.sa(), target.length);
}

}  // namespace

// One backend's checks: one at a time, each bounded by the timeout, the next one `interval`
// (± jitter) after the previous one started.
class HealthChecker::Probe : public std::enable_shared_from_this<Probe> {
  public:
    Probe(HealthChecker& owner, const config::ClusterConfig& cluster,
          const config::BackendConfig& backend)
        : owner_(&owner),
          settings_(cluster.health),
          address_(backend.address),
          target_(endpoint_of(backend.address, cluster.health.port)),
          timer_(owner.io_),
          deadline_(owner.io_),
          socket_(owner.io_),
          rng_(std::random_device{}()) {
        state_.cluster = cluster.name;
        state_.backend = backend.address_text;
    }

    bool same_check(const config::ClusterConfig& cluster,
                    const config::BackendConfig& backend) const {
        return settings_ == cluster.health && address_ == backend.address;
    }

    const BackendHealth& state() const { return state_; }

    void start() { run(); }

    void stop() {
        stopped_ = true;
        owner_ = nullptr;
        timer_.cancel();
        deadline_.cancel();
        boost::system::error_code ignored;
        socket_.close(ignored);
    }

  private:
    void run() {
        if (stopped_) return;
        ++attempt_;
        done_ = false;
        reply_.clear();
        started_ = Clock::now();
        schedule_next();
        boost::system::error_code ec;
        socket_.open(target_.protocol(), ec);
        if (ec) return finish(classify(ec), ec.message());
        deadline_.expires_after(settings_.timeout);
        deadline_.async_wait(
            [self = shared_from_this(), attempt = attempt_](const boost::system::error_code& e) {
                if (e || self->stale(attempt)) return;
                self->finish(
                    Result::timeout,
                    self->reply_.empty()
                        ? "no answer within " + config::format_duration(self->settings_.timeout)
                        : "partial reply \"" + printable(self->reply_) + "\"");
            });
        socket_.async_connect(target_, [self = shared_from_this(),
                                        attempt = attempt_](const boost::system::error_code& e) {
            if (self->stale(attempt)) return;
            if (e) return self->finish(classify(e), e.message());
            self->connected();
        });
    }

    bool stale(uint64_t attempt) const { return stopped_ || done_ || attempt != attempt_; }

    void connected() {
        if (settings_.send.empty()) return await_reply();
        asio::async_write(socket_, asio::buffer(settings_.send),
                          [self = shared_from_this(), attempt = attempt_](
                              const boost::system::error_code& e, size_t) {
                              if (self->stale(attempt)) return;
                              if (e) return self->finish(classify(e), "send: " + e.message());
                              self->await_reply();
                          });
    }

    void await_reply() {
        if (settings_.expect.empty()) return finish(Result::ok, {});
        socket_.async_read_some(
            asio::buffer(chunk_), [self = shared_from_this(), attempt = attempt_](
                                      const boost::system::error_code& e, size_t n) {
                if (self->stale(attempt)) return;
                self->reply_.append(self->chunk_.data(), n);
                const std::string& expect = self->settings_.expect;
                size_t common = std::min(self->reply_.size(), expect.size());
                if (self->reply_.compare(0, common, expect, 0, common) != 0)
                    return self->finish(Result::wrong_reply, "got \"" + printable(self->reply_) +
                                                                 "\", expected \"" +
                                                                 printable(expect) + "\"");
                if (self->reply_.size() >= expect.size()) return self->finish(Result::ok, {});
                if (e)
                    return self->finish(classify(e),
                                        self->reply_.empty()
                                            ? e.message()
                                            : "after \"" + printable(self->reply_) + "\"");
                self->await_reply();
            });
    }

    void schedule_next() {
        // interval ± jitter, so that checks of many backends (and many proxies) do not line up.
        auto interval = std::chrono::duration_cast<std::chrono::microseconds>(settings_.interval);
        int64_t spread = interval.count() * settings_.jitter_percent / 100;
        int64_t offset = 0;
        if (spread > 0) offset = std::uniform_int_distribution<int64_t>(-spread, spread)(rng_);
        timer_.expires_at(started_ + interval + std::chrono::microseconds(offset));
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
            if (e || self->stopped_) return;
            if (!self->done_) {
                // Only when the timeout exceeds the interval minus jitter; the config keeps the
                // timeout within the interval, so this is a check that overran: end it.
                self->finish(Result::timeout, "still running when the next check was due");
            }
            self->run();
        });
    }

    void finish(Result result, std::string detail) {
        done_ = true;
        boost::system::error_code ignored;
        socket_.close(ignored);
        deadline_.cancel();
        auto elapsed =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
        state_.durations.observe(static_cast<uint64_t>(std::max<int64_t>(elapsed.count(), 0)));
        ++state_.results[static_cast<size_t>(result)];
        if (result == Result::local_error) {
            LOG_WARN_LIMITED(local_error_log_, steady_ms(),
                             "health: cannot check backend %s of cluster %s: %s",
                             state_.backend.c_str(), state_.cluster.c_str(), detail.c_str());
            return;
        }
        bool first = !state_.checked;
        state_.checked = true;
        state_.last = result;
        state_.last_detail = std::move(detail);
        if (result == Result::ok) {
            state_.failures = 0;
            ++state_.passes;
            if (!state_.up && state_.passes >= settings_.rise) {
                state_.up = true;
                ++state_.went_up;
                LOG_INFO("health: backend %s of cluster %s is up (%u checks passed)",
                         state_.backend.c_str(), state_.cluster.c_str(), state_.passes);
                if (owner_) owner_->on_change();
            }
            return;
        }
        if (!counts_against(result)) return;
        state_.passes = 0;
        ++state_.failures;
        if (state_.up && (first || state_.failures >= settings_.fall)) {
            state_.up = false;
            ++state_.went_down;
            LOG_WARN("health: backend %s of cluster %s is down: %s%s%s (%s)",
                     state_.backend.c_str(), state_.cluster.c_str(), to_string(result),
                     state_.last_detail.empty() ? "" : ": ", state_.last_detail.c_str(),
                     first ? "its first check failed"
                           : (std::to_string(state_.failures) + " checks failed in a row").c_str());
            if (owner_) owner_->on_change();
        }
    }

    static uint64_t steady_ms() {
        return static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
                .count());
    }

    HealthChecker* owner_;
    config::HealthCheckConfig settings_;
    common::Address address_;
    Stream::endpoint target_;
    asio::steady_timer timer_;
    asio::steady_timer deadline_;
    Stream::socket socket_;
    std::mt19937_64 rng_;
    std::array<char, 512> chunk_{};
    std::string reply_;
    Clock::time_point started_{};
    uint64_t attempt_ = 0;
    bool done_ = true;
    bool stopped_ = false;
    BackendHealth state_;
    common::LogLimiter local_error_log_;
};

HealthChecker::HealthChecker(asio::io_context& io, std::function<void()> changed)
    : io_(io),
      changed_(std::move(changed)),
      verdicts_(std::make_shared<upstream::HealthVerdicts>()) {}

HealthChecker::~HealthChecker() {
    stop();
}

void HealthChecker::apply(const config::Config& config) {
    std::map<std::pair<std::string, std::string>, std::shared_ptr<Probe>> next;
    std::vector<std::shared_ptr<Probe>> started;
    for (const config::ClusterConfig& cluster : config.clusters) {
        if (!cluster.health.enabled) continue;
        for (const config::BackendConfig& backend : cluster.backends) {
            std::pair<std::string, std::string> key{cluster.name, backend.address_text};
            auto it = probes_.find(key);
            if (it != probes_.end() && it->second->same_check(cluster, backend)) {
                next.emplace(key, std::move(it->second));
                probes_.erase(it);
                continue;
            }
            auto probe = std::make_shared<Probe>(*this, cluster, backend);
            started.push_back(probe);
            next.emplace(std::move(key), std::move(probe));
        }
    }
    bool changed = false;
    for (auto& [key, probe] : probes_) {
        changed = changed || !probe->state().up;
        probe->stop();
    }
    probes_ = std::move(next);
    for (const auto& probe : started) probe->start();
    if (changed) on_change();
}

void HealthChecker::stop() {
    for (auto& [key, probe] : probes_) probe->stop();
    probes_.clear();
}

const BackendHealth* HealthChecker::find(const std::string& cluster,
                                         const std::string& backend) const {
    auto it = probes_.find({cluster, backend});
    return it == probes_.end() ? nullptr : &it->second->state();
}

void HealthChecker::for_each(const std::function<void(const BackendHealth&)>& fn) const {
    for (const auto& [key, probe] : probes_) fn(probe->state());
}

void HealthChecker::on_change() {
    auto verdicts = std::make_shared<upstream::HealthVerdicts>();
    for (const auto& [key, probe] : probes_)
        if (!probe->state().up)
            verdicts->down.insert(upstream::HealthVerdicts::key(key.first, key.second));
    verdicts_ = std::move(verdicts);
    if (changed_) changed_();
}

}  // namespace ringlb::health
