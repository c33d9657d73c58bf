#include "proxy/health/ejector.hpp"

#include <algorithm>

namespace ringlb::health {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {
uint64_t steady_ms() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count());
}
}  // namespace

Ejector::Ejector(asio::io_context& io, std::function<void()> changed)
    : io_(io), changed_(std::move(changed)) {}

Ejector::~Ejector() {
    stop();
}

void Ejector::apply(const config::Config& config) {
    std::map<std::string, Settings> clusters;
    std::map<std::pair<std::string, std::string>, Entry> entries;
    bool changed = false;
    for (const config::ClusterConfig& c : config.clusters) {
        if (c.eject_after == 0) continue;
        Settings& s = clusters[c.name];
        s.eject_after = c.eject_after;
        s.eject_time = c.eject_time;
        s.eject_time_max = c.eject_time_max;
        s.max_percent = c.max_ejected_percent;
        s.backends = c.backends.size();
        if (auto old = clusters_.find(c.name); old != clusters_.end())
            s.refused = old->second.refused;
        for (const config::BackendConfig& b : c.backends) {
            std::pair<std::string, std::string> key{c.name, b.address_text};
            auto it = entries_.find(key);
            if (it != entries_.end()) {
                entries.emplace(key, std::move(it->second));
                entries_.erase(it);
            } else {
                entries.emplace(key, Entry{});
            }
        }
    }
    // Backends no longer watched: their ejection ends with them.
    for (auto& [key, entry] : entries_) {
        changed = changed || entry.state.ejected;
        if (entry.timer) entry.timer->cancel();
    }
    entries_ = std::move(entries);
    clusters_ = std::move(clusters);
    if (changed && changed_) changed_();
}

void Ejector::stop() {
    for (auto& [key, entry] : entries_)
        if (entry.timer) entry.timer->cancel();
    entries_.clear();
    clusters_.clear();
}

void Ejector::report(const std::string& cluster, const std::string& backend, bool ok) {
    auto it = entries_.find({cluster, backend});
    auto settings = clusters_.find(cluster);
    if (it == entries_.end() || settings == clusters_.end()) return;  // reloaded away meanwhile
    EjectionState& state = it->second.state;
    if (ok) {
        state.failures = 0;
        return;
    }
    ++state.failures;
    if (!state.ejected && state.failures >= settings->second.eject_after)
        eject(cluster, backend, it->second, settings->second);
}

size_t Ejector::ejected_in(const std::string& cluster) const {
    size_t n = 0;
    for (auto it = entries_.lower_bound({cluster, std::string()});
         it != entries_.end() && it->first.first == cluster; ++it)
        n += it->second.state.ejected ? 1 : 0;
    return n;
}

void Ejector::eject(const std::string& cluster, const std::string& backend, Entry& entry,
                    Settings& settings) {
    EjectionState& state = entry.state;
    // At least one backend may always be ejected (unless the percentage is 0), or a cluster of
    // two with 40% could never eject its dead half.
    size_t cap = settings.backends * settings.max_percent / 100;
    if (settings.max_percent > 0) cap = std::max<size_t>(cap, 1);
    if (ejected_in(cluster) >= cap) {
        ++settings.refused;
        LOG_WARN_LIMITED(settings.refused_log, steady_ms(),
                         "health: backend %s of cluster %s failed %u times in a row but stays: "
                         "max_ejected_percent (%u%%) allows %zu of %zu ejected at once",
                         backend.c_str(), cluster.c_str(), state.failures, settings.max_percent,
                         cap, settings.backends);
        return;
    }
    auto now = Clock::now();
    // Ejections close together double; a backend that behaved for eject_time_max starts over.
    if (state.times > 0 && now - state.readmitted > settings.eject_time_max) state.times = 0;
    auto duration = settings.eject_time;
    for (uint32_t i = 0; i < state.times && duration < settings.eject_time_max; ++i) duration *= 2;
    duration = std::min(duration, settings.eject_time_max);
    ++state.times;
    ++state.ejections;
    state.ejected = true;
    state.until = now + duration;
    LOG_WARN(
        "health: backend %s of cluster %s is ejected for %s: %u failures in a row "
        "(ejection %u in a row)",
        backend.c_str(), cluster.c_str(), config::format_duration(duration).c_str(), state.failures,
        state.times);
    if (!entry.timer) entry.timer = std::make_unique<asio::steady_timer>(io_);
    entry.timer->expires_at(state.until);
    entry.timer->async_wait([this, cluster, backend](const boost::system::error_code& ec) {
        if (!ec) readmit(cluster, backend);
    });
    if (changed_) changed_();
}

void Ejector::readmit(const std::string& cluster, const std::string& backend) {
    auto it = entries_.find({cluster, backend});
    if (it == entries_.end() || !it->second.state.ejected) return;
    EjectionState& state = it->second.state;
    state.ejected = false;
    state.failures = 0;
    state.readmitted = Clock::now();
    LOG_INFO("health: backend %s of cluster %s is readmitted after its ejection", backend.c_str(),
             cluster.c_str());
    if (changed_) changed_();
}

bool Ejector::ejected(const std::string& cluster, const std::string& backend) const {
    const EjectionState* s = find(cluster, backend);
    return s && s->ejected;
}

const EjectionState* Ejector::find(const std::string& cluster, const std::string& backend) const {
    auto it = entries_.find({cluster, backend});
    return it == entries_.end() ? nullptr : &it->second.state;
}

void Ejector::for_each_ejected(
    const std::function<void(const std::string&, const std::string&)>& fn) const {
    for (const auto& [key, entry] : entries_)
        if (entry.state.ejected) fn(key.first, key.second);
}

uint64_t Ejector::refused(const std::string& cluster) const {
    auto it = clusters_.find(cluster);
    return it == clusters_.end() ? 0 : it->second.refused;
}

}  // namespace ringlb::health
