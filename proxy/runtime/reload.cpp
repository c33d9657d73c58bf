// ControlPlane::reload: a new configuration from the same file, applied to every shard by
// message without dropping a connection (README "Hot reload").
#include <chrono>

#include "common/log.hpp"
#include "common/socket.hpp"
#include "config/diff.hpp"
#include "proxy/runtime/control_plane.hpp"

namespace ringlb::runtime {

namespace {
// Shards apply a snapshot between two engine waits: well under a millisecond unless a shard is
// stuck, which this bounds.
constexpr std::chrono::seconds kApplyTimeout{10};
}  // namespace

ControlPlane::ReloadResult ControlPlane::reload(const char* trigger) {
    auto fail = [&](std::string why) {
        control_.reload_failed();
        LOG_ERROR("reload (%s) failed, running configuration unchanged: %s", trigger, why.c_str());
        return ReloadResult{false, std::move(why)};
    };
    if (!serving_) return fail("ringlb is still starting");
    if (draining_) return fail("ringlb is draining");

    std::shared_ptr<const config::Config> next;
    try {
        next = std::make_shared<const config::Config>(config::load_file(config_->source));
    } catch (const config::ConfigError& e) {
        return fail(e.what());
    }
    config::ConfigDiff changes = config::diff(*config_, *next);
    if (!changes.restart_only.empty()) {
        std::string keys;
        for (const auto& k : changes.restart_only) keys += (keys.empty() ? "" : ", ") + k;
        return fail(config_->source + ": " + keys +
                    ": changed, but takes effect only when ringlb restarts (or upgrades); put "
                    "the running value back to reload the rest");
    }
    std::vector<HostAdvice> advice =
        check_host(limits_, *next, static_cast<unsigned>(shards_.size()));
    for (const HostAdvice& a : advice)
        if (a.level == AdviceLevel::kError) return fail(a.message);

    // Sockets for every address no running listener serves, opened before anything changes (a
    // bind that fails leaves all as it was); a listener whose address did not change keeps its
    // sockets, so its accept queues are never dropped.
    size_t workers = shards_.size();
    auto fds = std::make_shared<std::vector<std::vector<common::Fd>>>(workers);
    for (auto& per_shard : *fds) per_shard.resize(next->listeners.size());
    size_t opened = 0;
    for (size_t i = 0; i < next->listeners.size(); ++i) {
        const config::ListenerConfig& l = next->listeners[i];
        bool running = std::any_of(config_->listeners.begin(), config_->listeners.end(),
                                   [&](const auto& r) { return r.bind == l.bind; });
        if (running) continue;
        std::error_code ec;
        std::vector<common::Fd> group =
            common::listen_tcp_group(l.bind, l.backlog, static_cast<unsigned>(workers), ec);
        if (group.empty()) {
            return fail(next->source + ": listener " + l.name + ": cannot listen on " +
                        l.bind_text + ": " + ec.message());
        }
        for (size_t w = 0; w < workers; ++w) (*fds)[w][i] = std::move(group[w]);
        ++opened;
    }

    std::shared_ptr<const shard::Snapshot> snapshot;
    try {
        snapshot = std::make_shared<const shard::Snapshot>(next);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    auto layouts =
        std::make_shared<std::vector<std::shared_ptr<const shard::ShardLayout>>>(workers);
    bool applied = shards_.post_each_and_wait(
        [snapshot, fds, layouts](shard::Shard& s, size_t i) {
            s.apply(snapshot, std::move((*fds)[i]));
            (*layouts)[i] = s.layout();
        },
        kApplyTimeout);
    if (!applied) {
        // Some shards may run the new configuration already: nothing to roll back to safely.
        LOG_ERROR("reload (%s): a shard did not apply the configuration within %lld s", trigger,
                  static_cast<long long>(kApplyTimeout.count()));
        control_.reload_failed();
        return {false, "a shard did not answer"};
    }
    layouts_ = std::move(*layouts);
    config_ = next;
    snapshot_ = snapshot;
    forecast_.clear();
    for (const auto& c : config_->clusters)
        forecast_.push_back(sustainable_new_conn_rate(c, limits_));
    port_watch_ = std::make_unique<PortWatch>(io_, config_, layouts_, forecast_);
    control_.reload_succeeded();
    for (const HostAdvice& a : advice)
        if (a.level == AdviceLevel::kWarn) LOG_WARN("%s", a.message.c_str());
    std::string summary = changes.summary();
    LOG_INFO("reload (%s): applied %s: %s (%zu new sockets per shard)", trigger,
             config_->source.c_str(), summary.c_str(), opened);
    return {true, summary};
}

}  // namespace ringlb::runtime
