#include "config/diff.hpp"

#include <algorithm>

namespace ringlb::config {

namespace {

template <typename T>
void diff_named(const std::vector<T>& running, const std::vector<T>& next,
                std::vector<std::string>& added, std::vector<std::string>& removed,
                std::vector<std::string>& changed) {
    for (const T& n : next) {
        auto old = std::find_if(running.begin(), running.end(),
                                [&](const T& r) { return r.name == n.name; });
        if (old == running.end())
            added.push_back(n.name);
        else if (!(*old == n))
            changed.push_back(n.name);
    }
    for (const T& r : running) {
        if (std::none_of(next.begin(), next.end(), [&](const T& n) { return n.name == r.name; }))
            removed.push_back(r.name);
    }
}

void list(std::string& out, const char* what, const std::vector<std::string>& added,
          const std::vector<std::string>& removed, const std::vector<std::string>& changed) {
    if (added.empty() && removed.empty() && changed.empty()) return;
    if (!out.empty()) out += "; ";
    out += what;
    for (const auto& n : added) out += " +" + n;
    for (const auto& n : removed) out += " -" + n;
    for (const auto& n : changed) out += " ~" + n;
}

}  // namespace

ConfigDiff diff(const Config& running, const Config& next) {
    ConfigDiff d;
    // ListenerConfig::cluster_index follows the clusters' order: a cluster added before another
    // would mark every listener changed. The lines of `tls` tables move with any line added
    // above them. Compare what the user wrote. A changed `tls` is an ordinary change: the new
    // contexts serve new connections, sessions keep the ones they started with.
    auto plain = [](std::vector<ListenerConfig> listeners) {
        for (auto& l : listeners) {
            l.cluster_index = 0;
            for (SniRoute& route : l.routes) route.cluster_index = 0;
            l.tls.line = 0;
            for (TlsCertificate& certificate : l.tls.certificates) certificate.line = 0;
        }
        return listeners;
    };
    auto plain_clusters = [](std::vector<ClusterConfig> clusters) {
        for (auto& c : clusters) c.tls.line = 0;
        return clusters;
    };
    diff_named(plain(running.listeners), plain(next.listeners), d.listeners_added,
               d.listeners_removed, d.listeners_changed);
    diff_named(plain_clusters(running.clusters), plain_clusters(next.clusters), d.clusters_added,
               d.clusters_removed, d.clusters_changed);
    const RuntimeConfig& a = running.runtime;
    const RuntimeConfig& b = next.runtime;
    if (a.workers != b.workers) d.restart_only.push_back("runtime.workers");
    if (a.pin_cpus != b.pin_cpus) d.restart_only.push_back("runtime.pin_cpus");
    if (a.engine != b.engine) d.restart_only.push_back("runtime.engine");
    if (a.buffer_size != b.buffer_size) d.restart_only.push_back("runtime.buffer_size");
    if (a.buffer_count != b.buffer_count) d.restart_only.push_back("runtime.buffer_count");
    if (a.pipe_size != b.pipe_size) d.restart_only.push_back("runtime.pipe_size");
    if (a.pipe_pool != b.pipe_pool) d.restart_only.push_back("runtime.pipe_pool");
    if (a.upgrade_socket != b.upgrade_socket) d.restart_only.push_back("runtime.upgrade_socket");
    // The log format and the access log's target are set up at start; the level is not.
    if (running.log.format != next.log.format) d.restart_only.push_back("log.format");
    if (running.log.access != next.log.access) d.restart_only.push_back("log.access");
    if (running.admin.enabled != next.admin.enabled) d.restart_only.push_back("admin");
    if (running.admin.enabled && next.admin.enabled && !(running.admin.bind == next.admin.bind))
        d.restart_only.push_back("admin.bind");
    return d;
}

bool ConfigDiff::empty() const {
    return listeners_added.empty() && listeners_removed.empty() && listeners_changed.empty() &&
           clusters_added.empty() && clusters_removed.empty() && clusters_changed.empty() &&
           restart_only.empty();
}

std::string ConfigDiff::summary() const {
    std::string out;
    list(out, "listeners", listeners_added, listeners_removed, listeners_changed);
    list(out, "clusters", clusters_added, clusters_removed, clusters_changed);
    return out.empty() ? "no change" : out;
}

}  // namespace ringlb::config
