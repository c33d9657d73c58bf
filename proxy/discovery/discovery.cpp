#include "proxy/discovery/discovery.hpp"

#include <algorithm>
#include <unordered_set>

namespace ringlb::discovery {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

uint64_t steady_ms() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count());
}

std::string join(const std::vector<common::Address>& addresses) {
    std::string out;
    for (const auto& a : addresses) out += (out.empty() ? "" : ", ") + a.to_string();
    return out.empty() ? "none" : out;
}

// The TTL, when shorter than the refresh interval, decides the next lookup (at least 1 s).
milliseconds next_lookup(milliseconds refresh, std::chrono::seconds ttl) {
    if (ttl.count() <= 0) return refresh;
    return std::min(refresh, std::max<milliseconds>(ttl, std::chrono::seconds(1)));
}

}  // namespace

Discovery::Discovery(asio::io_context& io, std::function<void()> changed)
    : io_(io), changed_(std::move(changed)) {}

Discovery::~Discovery() {
    stop();
}

void Discovery::stop() {
    for (auto& [key, entry] : entries_)
        if (entry.timer) entry.timer->cancel();
    resolver_.reset();  // its lookups in flight never call back
}

void Discovery::ensure_resolver(const std::vector<common::Address>& servers) {
    if (resolver_ && servers == servers_) return;
    servers_ = servers;
    resolver_ = std::make_unique<Resolver>(io_, servers_);
}

std::string Discovery::add(const config::Config& config) {
    bool has_names = std::any_of(config.clusters.begin(), config.clusters.end(),
                                 [](const auto& c) { return c.has_names(); });
    if (!has_names) return {};
    try {
        ensure_resolver(config.runtime.dns_servers);
    } catch (const std::exception& e) {
        return std::string("dns: ") + e.what();
    }
    // New names, looked up together on a loop of their own: the control thread's loop may be
    // the caller's (a reload runs in one of its handlers).
    std::vector<Key> fresh;
    for (const config::ClusterConfig& c : config.clusters) {
        for (const config::BackendConfig& b : c.backends) {
            if (!b.is_name()) continue;
            Key key{c.name, b.address_text};
            auto [it, added] = entries_.try_emplace(key);
            Entry& e = it->second;
            e.refresh = c.dns_refresh;
            e.grace = c.dns_failure_grace;
            if (!added) continue;
            e.state.cluster = c.name;
            e.state.name = b.address_text;
            e.host = b.host;
            e.port = b.port;
            fresh.push_back(key);
        }
    }
    if (!fresh.empty()) {
        asio::io_context private_io;
        std::unique_ptr<Resolver> once;
        try {
            once = std::make_unique<Resolver>(private_io, servers_);
        } catch (const std::exception& e) {
            return std::string("dns: ") + e.what();
        }
        for (const Key& key : fresh) {
            Entry& e = entries_.at(key);
            once->resolve(e.host, e.port, [this, key](Result result) {
                auto it = entries_.find(key);
                if (it == entries_.end()) return;
                record(it->second, result);
                if (result.ok())
                    LOG_INFO("dns: cluster %s: %s is %s", key.first.c_str(), key.second.c_str(),
                             join(it->second.state.addresses).c_str());
            });
        }
        private_io.run_for(ResolverOptions{}.timeout + std::chrono::milliseconds(500));
        once.reset();
        for (const Key& key : fresh) {
            Entry& e = entries_.at(key);
            schedule(key, e.state.addresses.empty() ? std::min(e.refresh, milliseconds(1000))
                                                    : e.refresh);
        }
    }
    // A cluster left with no backend at all cannot start (or be reloaded to).
    std::shared_ptr<const config::Config> expanded = expand(config);
    for (size_t i = 0; i < config.clusters.size(); ++i) {
        const config::ClusterConfig& c = config.clusters[i];
        if (!expanded->clusters[i].backends.empty()) continue;
        std::string why;
        for (const config::BackendConfig& b : c.backends) {
            auto it = entries_.find({c.name, b.address_text});
            if (it == entries_.end()) continue;
            bool answered = it->second.state.lookups[static_cast<size_t>(LookupError::kOk)] > 0;
            why += (why.empty() ? "" : "; ") + b.address_text +
                   (answered ? ": no address in the answer" : ": did not resolve");
        }
        return config.source + ": cluster " + c.name + " has no backend: " + why;
    }
    return {};
}

void Discovery::retain(const config::Config& config) {
    std::unordered_set<std::string> wanted;
    for (const config::ClusterConfig& c : config.clusters)
        for (const config::BackendConfig& b : c.backends)
            if (b.is_name()) wanted.insert(c.name + '\0' + b.address_text);
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (wanted.contains(it->first.first + '\0' + it->first.second)) {
            ++it;
            continue;
        }
        if (it->second.timer) it->second.timer->cancel();
        it = entries_.erase(it);
    }
    if (entries_.empty()) resolver_.reset();
}

bool Discovery::record(Entry& e, const Result& result) {
    NameState& s = e.state;
    ++s.lookups[static_cast<size_t>(result.error)];
    auto now = Clock::now();
    if (result.ok() && !result.addresses.empty()) {
        bool changed = result.addresses != s.addresses || s.expired;
        if (s.stale)
            LOG_INFO("dns: cluster %s: %s answers again", s.cluster.c_str(), s.name.c_str());
        s.addresses = result.addresses;
        s.stale = false;
        s.expired = false;
        e.last_ok = now;
        return changed;
    }
    std::string why = result.ok() ? "an empty answer"
                                  : std::string(to_string(result.error)) +
                                        (result.message.empty() ? "" : " (" + result.message + ")");
    if (s.addresses.empty()) {
        LOG_WARN_LIMITED(e.failure_log, steady_ms(), "dns: cluster %s: %s: %s; no address yet",
                         s.cluster.c_str(), s.name.c_str(), why.c_str());
        return false;
    }
    bool expired = now - e.last_ok > e.grace;
    bool changed = expired && !s.expired;
    s.stale = true;
    s.expired = expired;
    LOG_WARN_LIMITED(e.failure_log, steady_ms(), "dns: cluster %s: %s: %s; %s %s",
                     s.cluster.c_str(), s.name.c_str(), why.c_str(),
                     expired ? "dns_failure_grace is over, dropping" : "keeping",
                     join(s.addresses).c_str());
    return changed;
}

void Discovery::schedule(const Key& key, milliseconds delay) {
    Entry& e = entries_.at(key);
    if (!e.timer) e.timer = std::make_unique<asio::steady_timer>(io_);
    e.timer->expires_after(delay);
    e.timer->async_wait([this, key](const boost::system::error_code& ec) {
        if (!ec) lookup(key);
    });
}

void Discovery::lookup(const Key& key) {
    auto it = entries_.find(key);
    if (it == entries_.end() || !resolver_) return;
    Entry& e = it->second;
    resolver_->resolve(e.host, e.port, [this, key](Result result) {
        auto found = entries_.find(key);
        if (found == entries_.end()) return;
        Entry& entry = found->second;
        std::vector<common::Address> before = entry.state.addresses;
        bool changed = record(entry, result);
        schedule(key, result.ok() && !result.addresses.empty()
                          ? next_lookup(entry.refresh, result.ttl)
                          : entry.refresh);
        if (!changed) return;
        LOG_INFO("dns: cluster %s: %s is %s (was %s)", key.first.c_str(), key.second.c_str(),
                 entry.state.expired ? "none" : join(entry.state.addresses).c_str(),
                 join(before).c_str());
        if (changed_) changed_();
    });
}

std::shared_ptr<const config::Config> Discovery::expand(const config::Config& config) const {
    auto out = std::make_shared<config::Config>(config);
    for (config::ClusterConfig& c : out->clusters) {
        if (!c.has_names()) continue;
        auto build = [&](bool with_expired) {
            std::vector<config::BackendConfig> backends;
            std::unordered_set<std::string> seen;
            for (const config::BackendConfig& b : c.backends) {
                if (!b.is_name()) {
                    if (seen.insert(b.address_text).second) backends.push_back(b);
                    continue;
                }
                auto it = entries_.find({c.name, b.address_text});
                if (it == entries_.end()) continue;
                const NameState& s = it->second.state;
                if (s.expired && !with_expired) continue;
                for (const common::Address& a : s.addresses) {
                    config::BackendConfig one;
                    one.address = a;
                    one.address_text = a.to_string();
                    one.weight = b.weight;
                    one.max_connections = b.max_connections;
                    if (seen.insert(one.address_text).second) backends.push_back(std::move(one));
                }
            }
            return backends;
        };
        std::vector<config::BackendConfig> backends = build(false);
        // Never route to nothing: names past their grace still serve when nothing else would.
        if (backends.empty()) backends = build(true);
        // Maglev needs a table larger than the backend count.
        if (c.balance == config::Balance::kMaglev && backends.size() >= c.maglev_table_size) {
            LOG_WARN("dns: cluster %s: %zu addresses, maglev_table_size %u allows %u",
                     c.name.c_str(), backends.size(), c.maglev_table_size, c.maglev_table_size - 1);
            backends.resize(c.maglev_table_size - 1);
        }
        c.backends = std::move(backends);
    }
    return out;
}

void Discovery::for_each(const std::function<void(const NameState&)>& fn) const {
    for (const auto& [key, entry] : entries_) fn(entry.state);
}

}  // namespace ringlb::discovery
