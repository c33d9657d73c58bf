// ControlPlane::reload: a new configuration from the same file, applied to every shard by
// message without dropping a connection (README "Hot reload").
#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>

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
    if (draining()) return fail("ringlb is draining");

    std::shared_ptr<const config::Config> next;
    try {
        config::Config loaded = config::load_file(config_->source);
        if (cli_level_) loaded.log.level = *cli_level_;
        next = std::make_shared<const config::Config>(std::move(loaded));
    } catch (const config::ConfigError& e) {
        return fail(e.what());
    }
    config::ConfigDiff changes = config::diff(*loaded_, *next);
    if (!changes.restart_only.empty()) {
        std::string keys;
        for (const auto& k : changes.restart_only) keys += (keys.empty() ? "" : ", ") + k;
        return fail(config_->source + ": " + keys +
                    ": changed, but takes effect only when ringlb restarts (or upgrades); put "
                    "the running value back to reload the rest");
    }
    // Names the running configuration has keep their addresses; new ones are looked up now.
    std::shared_ptr<const config::Config> written = next;
    if (std::string error = discovery_.add(*written); !error.empty()) return fail(error);
    next = discovery_.expand(*written);
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
        std::vector<common::Fd> group = open_listener(l, static_cast<unsigned>(workers), ec);
        if (group.empty()) {
            return fail(next->source + ": listener " + l.name + ": cannot listen on " +
                        l.bind_text + ": " + ec.message());
        }
        for (size_t w = 0; w < workers; ++w) (*fds)[w][i] = std::move(group[w]);
        ++opened;
    }

    // What the admin API changed lasts until the next reload: the file is the truth again.
    upstream::BackendOverrides none;
    std::shared_ptr<const config::Config> previous = config_;
    if (std::string error = publish(next, none, fds); !error.empty()) {
        control_.reload_failed();
        LOG_ERROR("reload (%s) failed: %s", trigger, error.c_str());
        return {false, error};
    }
    overrides_.clear();
    // The socket files of unix listeners this configuration dropped (a kept one keeps its file,
    // mode and owner: its socket is carried over unchanged).
    for (const auto& l : previous->listeners)
        if (std::none_of(next->listeners.begin(), next->listeners.end(),
                         [&](const auto& n) { return n.bind == l.bind; }))
            common::remove_unix_socket(l.bind);
    loaded_ = written;
    discovery_.retain(*loaded_);
    control_.reload_succeeded();
    common::set_log_level(config_->log.level);
    for (const HostAdvice& a : advice)
        if (a.level == AdviceLevel::kWarn) LOG_WARN("%s", a.message.c_str());
    std::string summary = changes.summary();
    LOG_INFO("reload (%s): applied %s: %s (%zu new sockets per shard)", trigger,
             config_->source.c_str(), summary.c_str(), opened);
    return {true, summary};
}

std::string ControlPlane::publish(std::shared_ptr<const config::Config> next,
                                  const upstream::BackendOverrides& overrides,
                                  std::shared_ptr<std::vector<std::vector<common::Fd>>> fds) {
    size_t workers = shards_.size();
    std::shared_ptr<const shard::Snapshot> snapshot;
    try {
        snapshot = std::make_shared<const shard::Snapshot>(next, &overrides);
    } catch (const std::exception& e) {
        return e.what();
    }
    if (!fds) fds = std::make_shared<std::vector<std::vector<common::Fd>>>(workers);
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
        return "a shard did not apply the configuration within " +
               std::to_string(kApplyTimeout.count()) + " s";
    }
    layouts_ = std::move(*layouts);
    config_ = std::move(next);
    snapshot_ = snapshot;
    forecast_.clear();
    for (const auto& c : config_->clusters)
        forecast_.push_back(sustainable_new_conn_rate(c, limits_));
    port_watch_ = std::make_unique<PortWatch>(io_, config_, layouts_, forecast_);
    // Checks of backends that stayed keep their state; new ones start up (until their first
    // check). The shards applied the snapshot with the verdicts they had, which name backends,
    // so what changed here reaches them next.
    health_.apply(*config_);
    post_health();
    update_ready();
    return {};
}

void ControlPlane::on_dns_change() {
    if (!serving_ || draining()) return;
    if (std::string error = publish(discovery_.expand(*loaded_), overrides_, nullptr);
        !error.empty())
        LOG_ERROR("dns: the new addresses could not be applied: %s", error.c_str());
}

void ControlPlane::post_health() {
    auto verdicts = health_.verdicts();
    shards_.post_each([verdicts](shard::Shard& s, size_t) { s.set_health(verdicts); });
}

void ControlPlane::update_ready() {
    if (!admin_) return;
    if (!serving_ || draining()) {
        admin_->set_ready(false, draining() ? "draining" : "");
        return;
    }
    auto verdicts = health_.verdicts();
    for (const upstream::Cluster& c : snapshot_->clusters) {
        size_t usable = 0;
        size_t down = 0;
        for (const upstream::Backend& b : c.backends) {
            bool is_down = verdicts->is_down(c.name, b.name);
            down += is_down ? 1 : 0;
            usable += (!is_down && !b.drained) ? 1 : 0;
        }
        if (usable == 0) {
            admin_->set_ready(
                false,
                "cluster " + c.name + " has no usable backend" +
                    (down > 0 ? " (" + std::to_string(down) + " down by health checks)" : ""));
            return;
        }
    }
    admin_->set_ready(true);
}

namespace {

// "%5B" and the like in a path segment (IPv6 brackets, ':').
std::string percent_decode(std::string_view in) {
    std::string out;
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size() &&
            std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += in[i];
        }
    }
    return out;
}

// "value=N" with 1 <= N <= kMaxBackendWeight.
std::optional<uint32_t> weight_of(std::string_view query) {
    if (!query.starts_with("value=")) return std::nullopt;
    std::string_view digits = query.substr(6);
    if (digits.empty() || digits.size() > 4) return std::nullopt;
    uint32_t value = 0;
    for (char ch : digits) {
        if (ch < '0' || ch > '9') return std::nullopt;
        value = value * 10 + static_cast<uint32_t>(ch - '0');
    }
    if (value < 1 || value > config::kMaxBackendWeight) return std::nullopt;
    return value;
}

}  // namespace

admin::Reply ControlPlane::backend_action(const admin::Request& request) {
    // /backends/CLUSTER/BACKEND/ACTION
    std::string_view rest = request.path.substr(std::string_view("/backends/").size());
    size_t first = rest.find('/');
    size_t last = rest.rfind('/');
    if (first == std::string_view::npos || last == first)
        return {404, "text/plain",
                "not found: POST /backends/CLUSTER/BACKEND/drain|enable|weight?value=N\n"};
    std::string cluster = percent_decode(rest.substr(0, first));
    std::string backend = percent_decode(rest.substr(first + 1, last - first - 1));
    std::string action(rest.substr(last + 1));
    const config::ClusterConfig* cc = nullptr;
    for (const auto& c : config_->clusters)
        if (c.name == cluster) cc = &c;
    bool known = cc && std::any_of(cc->backends.begin(), cc->backends.end(),
                                   [&](const auto& b) { return b.address_text == backend; });
    if (!known)
        return {404, "text/plain", "no backend " + backend + " in cluster " + cluster + "\n"};
    if (!serving_ || draining()) return {503, "text/plain", "not serving\n"};
    upstream::BackendOverrides next = overrides_;
    upstream::BackendOverride& o = next[{cluster, backend}];
    std::string what;
    if (action == "drain") {
        o.drained = true;
        what = "drained";
    } else if (action == "enable") {
        o.drained = false;
        what = "enabled";
    } else if (action == "weight") {
        std::optional<uint32_t> weight = weight_of(request.query);
        if (!weight)
            return {400, "text/plain",
                    "weight: expected ?value=N with N from 1 to " +
                        std::to_string(config::kMaxBackendWeight) + "\n"};
        o.weight = *weight;
        what = "weight " + std::to_string(*weight);
    } else {
        return {404, "text/plain", "unknown action " + action + " (drain, enable, weight)\n"};
    }
    if (std::string error = publish(config_, next, nullptr); !error.empty()) {
        LOG_ERROR("admin: POST %s failed: %s", std::string(request.path).c_str(), error.c_str());
        return {500, "text/plain", error + "\n"};
    }
    overrides_ = std::move(next);
    LOG_INFO("admin: cluster %s backend %s: %s (until the next reload)", cluster.c_str(),
             backend.c_str(), what.c_str());
    return {200, "text/plain", "cluster " + cluster + " backend " + backend + ": " + what + "\n"};
}

}  // namespace ringlb::runtime
