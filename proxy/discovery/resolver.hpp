#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"

namespace ringlb::discovery {

// How a lookup ended. The caller keeps its last good set on anything but kOk (issue #12: never
// route to nothing because DNS hiccupped), so the kinds only need to tell the log and the
// metrics apart.
enum class LookupError : uint8_t {
    kOk,
    kNxdomain,       // the name does not exist (NXDOMAIN for A and AAAA)
    kServerFailure,  // every server answered SERVFAIL, REFUSED or NOTIMP, or had no port open
    kTimeout,        // no server answered within the bound
    kNoData,         // the name exists but has no A and no AAAA record
    kOther,          // a malformed answer, out of memory, ...
};
std::string_view to_string(LookupError error);

struct Result {
    LookupError error = LookupError::kOk;
    std::string message;  // "" on kOk; c-ares' reason (or ours, for the deadline) otherwise
    // Every A and AAAA answer with the requested port, sorted (IPv4 first, then by address
    // bytes) and without duplicates, so that two answers compare with ==. Empty unless kOk.
    std::vector<common::Address> addresses;
    // The smallest TTL among the records of the answer (CNAMEs included), to re-resolve sooner
    // than the refresh interval when DNS asks for it. 0 when the answer carried none (an IP
    // literal, /etc/hosts) or on failure.
    std::chrono::seconds ttl{0};

    bool ok() const { return error == LookupError::kOk; }
};

struct ResolverOptions {
    // The whole lookup's bound: done() gets kTimeout at the latest this long after resolve().
    std::chrono::milliseconds timeout{2000};
    // Queries per server before giving up on it; each try waits timeout / tries (c-ares
    // doubles that from the second round on, and the bound above cuts it).
    int tries = 2;
};

// Asynchronous A+AAAA lookups with c-ares, driven by the control plane's Asio loop: c-ares'
// sockets are watched with stream_descriptor waits and its retransmissions with one
// steady_timer, so there is no extra thread and nothing blocks.
//
// Servers: an empty list uses the system's configuration (resolv.conf's nameservers, search
// list and ndots, and /etc/hosts). A list of servers (port 0 meaning 53) replaces all of that:
// names are asked as written, from those servers only, in order.
//
// Everything, construction and destruction included, happens on the thread that runs `io`.
class Resolver {
  public:
    // Throws std::runtime_error when c-ares cannot be set up (startup or reload: the caller
    // turns it into a message).
    Resolver(boost::asio::io_context& io, std::vector<common::Address> servers,
             ResolverOptions options = {});
    // Cancels the lookups in flight: their done() is never called, not even with an error.
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // Looks `host` up (A and AAAA); `done` runs later on the io_context, never inside this call,
    // exactly once unless the Resolver is destroyed first. It may destroy the Resolver.
    void resolve(std::string host, uint16_t port, std::function<void(Result)> done);

    // Lookups answered neither by DNS nor by the deadline yet.
    size_t pending() const;

  private:
    class Impl;
    std::shared_ptr<Impl> impl_;  // handlers hold weak_ptrs: they outlive the Resolver harmlessly
};

}  // namespace ringlb::discovery
