#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/address.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "proxy/discovery/resolver.hpp"

namespace ringlb::discovery {

inline constexpr size_t kLookupErrorCount = 6;  // LookupError's values

// One backend given by name (cluster, "NAME:PORT"), as /metrics shows it.
struct NameState {
    std::string cluster;
    std::string name;                        // "NAME:PORT" as the configuration writes it
    std::vector<common::Address> addresses;  // the last good answer, in use
    bool stale = false;    // the last lookups failed: the last good answer is kept
    bool expired = false;  // failing for longer than dns_failure_grace
    std::array<uint64_t, kLookupErrorCount> lookups{};  // by LookupError
};

// Turns backends given by name into backends (Kubernetes headless Services, DNS round robin):
// each name is looked up at start (or when a reload brings it) and every dns_refresh after that,
// sooner when the answer's TTL is shorter; each address of the answer becomes a backend
// ("IP:PORT", with the name's weight and max_connections). A failed, SERVFAIL, NXDOMAIN or empty
// answer keeps the last good addresses for dns_failure_grace, and past it they still stay when
// the cluster would otherwise have no backend: a DNS hiccup never routes to nothing. Runs on the
// control thread; `changed` republishes the configuration.
class Discovery {
  public:
    Discovery(boost::asio::io_context& io, std::function<void()> changed);
    ~Discovery();
    Discovery(const Discovery&) = delete;
    Discovery& operator=(const Discovery&) = delete;

    // Watches the names of `config` besides those already watched (which keep their answers):
    // new names are looked up now, on a private loop, waiting at most one lookup's bound (2 s),
    // so a start or reload knows their addresses. Returns "" or why a cluster has no backend.
    std::string add(const config::Config& config);
    // Stops watching names `config` does not have (after a reload succeeded).
    void retain(const config::Config& config);
    void stop();

    // `config` with every name replaced by its addresses; an address a cluster lists twice is
    // kept once. Clusters without names are copied as they are.
    std::shared_ptr<const config::Config> expand(const config::Config& config) const;

    void for_each(const std::function<void(const NameState&)>& fn) const;
    bool empty() const { return entries_.empty(); }

  private:
    struct Entry {
        NameState state;
        std::string host;
        uint16_t port = 0;
        std::chrono::milliseconds refresh{};
        std::chrono::milliseconds grace{};
        std::chrono::steady_clock::time_point last_ok{};
        std::unique_ptr<boost::asio::steady_timer> timer;
        common::LogLimiter failure_log;
    };
    using Key = std::pair<std::string, std::string>;
    // Applies an answer; true when the addresses in use changed.
    bool record(Entry& entry, const Result& result);
    void schedule(const Key& key, std::chrono::milliseconds delay);
    void lookup(const Key& key);
    void ensure_resolver(const std::vector<common::Address>& servers);

    boost::asio::io_context& io_;
    std::function<void()> changed_;
    std::vector<common::Address> servers_;
    std::unique_ptr<Resolver> resolver_;
    std::map<Key, Entry> entries_;
};

}  // namespace ringlb::discovery
