#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "common/address.hpp"
#include "config/config.hpp"
#include "proxy/shard/counters.hpp"

namespace ringlb::shard {

// Whether a listener's allow and deny let a client in: deny wins over allow; with allow set, an
// address in none of its ranges (or one without an IP address) is refused. nullopt: admitted.
std::optional<RejectReason> check_acl(const config::ListenerConfig& listener,
                                      const common::Address& client);

// One shard's share of a listener's limits. Shards share no writable state, and SO_REUSEPORT
// spreads one source's connections over them, so each shard enforces ceil(limit / shards) on
// what it accepted itself (as a backend's max_connections is divided): the total admitted never
// exceeds shards * ceil(limit / shards), and a client is refused once the shard its connection
// landed on has used its share. rate_per_source divides exactly (each shard refills N / shards
// per period), its burst is rounded up.
struct AdmissionLimits {
    uint32_t max_connections = 0;  // 0: unlimited
    uint32_t per_source = 0;       // 0: unlimited
    // Token bucket in units of 1 / (period_ms * shards) of a token, so that refilling is
    // integer and exact: `refill` units per ms, `cost` per connection, `capacity` in all.
    uint64_t refill = 0;  // 0: no rate limit
    uint64_t cost = 0;
    uint64_t capacity = 0;

    static AdmissionLimits share(const config::ListenerConfig& listener, unsigned shards);
    bool operator==(const AdmissionLimits&) const = default;
};

// Per-source state of one listener on one shard: open sessions and a token bucket per client
// address, in a fixed table of kBuckets * kWays entries (40 bytes each, 320 KiB), allocated the
// first time the listener limits sources and never grown, so a flood of distinct addresses
// cannot grow memory. An address hashes (seeded per shard) to one bucket of kWays entries. An
// entry with no open session whose bucket has refilled holds nothing worth keeping and is free;
// when none is, the idle entry with the most tokens is forgotten (that address gets a full
// bucket again). When every entry of the bucket has sessions open, the new address is admitted
// untracked (fail open): it is neither limited nor counted.
class SourceTable {
  public:
    static constexpr size_t kBuckets = 1024;
    static constexpr size_t kWays = 8;
    struct Entry {
        std::array<uint8_t, 16> key{};  // IPv6, or IPv4 as ::ffff:a.b.c.d
        uint32_t active = 0;            // sessions open
        uint32_t live = 0;              // holds an address
        uint64_t tokens = 0;            // as of stamp_ms, in AdmissionLimits units
        uint64_t stamp_ms = 0;
    };

    explicit SourceTable(uint64_t seed);
    // The entry of `key` (made, or found), its tokens refilled to `now_ms`; null when the
    // bucket holds kWays addresses with sessions open.
    Entry* find(const std::array<uint8_t, 16>& key, uint64_t now_ms, const AdmissionLimits& limits);
    // The bucket after a change of the rate's units (reload): every entry full again.
    void refill_all(const AdmissionLimits& limits);
    size_t live_count() const;

  private:
    size_t bucket_of(const std::array<uint8_t, 16>& key) const;
    static void refill(Entry& e, uint64_t now_ms, const AdmissionLimits& limits);

    uint64_t seed_;
    std::unique_ptr<Entry[]> entries_;
};

// A listener's access control and limits on one shard: what check_acl() decides, plus the
// listener's open sessions and its SourceTable. Kept by listener name for the shard's life, as
// its counters are, since sessions admitted under one configuration release under the next.
class Admission {
  public:
    // What one admitted session holds; gives its place back when destroyed.
    class Ticket {
      public:
        Ticket() = default;
        Ticket(Ticket&& other) noexcept { *this = std::move(other); }
        Ticket& operator=(Ticket&& other) noexcept;
        ~Ticket() { release(); }
        void release();

      private:
        friend class Admission;
        Admission* admission_ = nullptr;  // set: counted in active_
        SourceTable::Entry* source_ = nullptr;
    };

    explicit Admission(uint64_t seed) : seed_(seed) {}
    // The listener's configuration now (at start and at each reload).
    void configure(const config::ListenerConfig& listener, unsigned shards);
    const AdmissionLimits& limits() const { return limits_; }
    // Whether admit_source() needs the client's address.
    bool needs_source() const { return needs_source_; }

    // At accept: max_connections. Counts the session in `ticket` when admitted.
    std::optional<RejectReason> admit(Ticket& ticket);
    // With the client's address (at accept, or from its PROXY header): allow and deny, then
    // max_connections_per_source, then rate_per_source (a token is taken only when admitted).
    std::optional<RejectReason> admit_source(const config::ListenerConfig& listener,
                                             const common::Address& client, uint64_t now_ms,
                                             Ticket& ticket);
    uint32_t active() const { return active_; }
    const SourceTable* sources() const { return sources_.get(); }

  private:
    uint64_t seed_;
    AdmissionLimits limits_;
    bool needs_source_ = false;
    uint32_t active_ = 0;
    std::unique_ptr<SourceTable> sources_;
};

// A refused client: counted in ringlb_listener_rejected_total and logged (at most one line per
// 10 s per shard: a flood must not become a flood of log lines). `client` may be null.
void note_rejection(const config::ListenerConfig& listener, ListenerCounters& counters,
                    const common::Address* client, RejectReason reason, uint64_t now_ms);

}  // namespace ringlb::shard
