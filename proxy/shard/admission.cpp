#include "proxy/shard/admission.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/cidr.hpp"
#include "common/log.hpp"

namespace ringlb::shard {

namespace {

uint64_t ceil_div(uint64_t a, uint64_t b) {
    return (a + b - 1) / b;
}

// The client's address as SourceTable keys it; nullopt without an IP address.
std::optional<std::array<uint8_t, 16>> key_of(const common::Address& client) {
    std::array<uint8_t, 16> key{};
    if (client.family() == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(&client.storage);
        key[10] = 0xff;
        key[11] = 0xff;
        std::memcpy(key.data() + 12, &sin->sin_addr, 4);
        return key;
    }
    if (client.family() == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&client.storage);
        std::memcpy(key.data(), &sin6->sin6_addr, 16);
        return key;
    }
    return std::nullopt;
}

}  // namespace

std::optional<RejectReason> check_acl(const config::ListenerConfig& listener,
                                      const common::Address& client) {
    if (common::cidr_list_contains(listener.deny, client)) return RejectReason::k_denied;
    if (!listener.allow.empty() && !common::cidr_list_contains(listener.allow, client))
        return RejectReason::k_not_allowed;
    return std::nullopt;
}

AdmissionLimits AdmissionLimits::share(const config::ListenerConfig& listener, unsigned shards) {
    uint64_t n = shards == 0 ? 1 : shards;
    AdmissionLimits limits;
    limits.max_connections = static_cast<uint32_t>(ceil_div(listener.max_connections, n));
    limits.per_source = static_cast<uint32_t>(ceil_div(listener.max_connections_per_source, n));
    if (listener.rate_count != 0) {
        limits.refill = listener.rate_count;
        limits.cost = static_cast<uint64_t>(listener.rate_period.count()) * n;
        limits.capacity = ceil_div(listener.burst, n) * limits.cost;
    }
    return limits;
}

SourceTable::SourceTable(uint64_t seed)
    : seed_(seed), entries_(std::make_unique<Entry[]>(kBuckets * kWays)) {}

size_t SourceTable::bucket_of(const std::array<uint8_t, 16>& key) const {
    // Seeded per shard, so that nobody can pick addresses that all land in one bucket; every
    // bit of the key reaches the bucket's bits (an IPv4 key differs only in its last 4 bytes).
    auto mix = [](uint64_t x) {
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    };
    uint64_t a = 0;
    uint64_t b = 0;
    std::memcpy(&a, key.data(), 8);
    std::memcpy(&b, key.data() + 8, 8);
    return static_cast<size_t>(mix(mix(a ^ seed_) ^ b) & (kBuckets - 1));
}

void SourceTable::refill(Entry& e, uint64_t now_ms, const AdmissionLimits& limits) {
    if (limits.refill != 0 && e.tokens < limits.capacity) {
        uint64_t elapsed = now_ms > e.stamp_ms ? now_ms - e.stamp_ms : 0;
        uint64_t missing = limits.capacity - e.tokens;
        // Compared before multiplying: an entry idle for days must not overflow.
        if (elapsed >= ceil_div(missing, limits.refill))
            e.tokens = limits.capacity;
        else
            e.tokens += elapsed * limits.refill;
    }
    e.stamp_ms = std::max(e.stamp_ms, now_ms);
}

SourceTable::Entry* SourceTable::find(const std::array<uint8_t, 16>& key, uint64_t now_ms,
                                      const AdmissionLimits& limits) {
    Entry* bucket = &entries_[bucket_of(key) * kWays];
    for (size_t i = 0; i < kWays; ++i) {
        if (bucket[i].live && bucket[i].key == key) {
            refill(bucket[i], now_ms, limits);
            return &bucket[i];
        }
    }
    // A free entry, else the idle one with the most tokens: forgetting it gives away least.
    Entry* victim = nullptr;
    for (size_t i = 0; i < kWays; ++i) {
        Entry& e = bucket[i];
        if (!e.live) {
            victim = &e;
            break;
        }
        if (e.active != 0) continue;
        refill(e, now_ms, limits);
        if (e.tokens >= limits.capacity) {
            victim = &e;
            break;
        }
        if (!victim || e.tokens > victim->tokens) victim = &e;
    }
    if (!victim) return nullptr;
    *victim = Entry{key, 0, 1, limits.capacity, now_ms};
    return victim;
}

void SourceTable::refill_all(const AdmissionLimits& limits) {
    for (size_t i = 0; i < kBuckets * kWays; ++i) entries_[i].tokens = limits.capacity;
}

size_t SourceTable::live_count() const {
    size_t n = 0;
    for (size_t i = 0; i < kBuckets * kWays; ++i) n += entries_[i].live;
    return n;
}

Admission::Ticket& Admission::Ticket::operator=(Ticket&& other) noexcept {
    if (this != &other) {
        release();
        admission_ = std::exchange(other.admission_, nullptr);
        source_ = std::exchange(other.source_, nullptr);
    }
    return *this;
}

void Admission::Ticket::release() {
    if (admission_) --std::exchange(admission_, nullptr)->active_;
    if (source_) --std::exchange(source_, nullptr)->active;
}

void Admission::configure(const config::ListenerConfig& listener, unsigned shards) {
    AdmissionLimits next = AdmissionLimits::share(listener, shards);
    needs_source_ = listener.has_acl() || listener.limits_sources();
    if (listener.limits_sources() && !sources_) sources_ = std::make_unique<SourceTable>(seed_);
    // Tokens are counted in units of the rate: new units start every address over, full.
    if (sources_ && (next.cost != limits_.cost || next.capacity != limits_.capacity))
        sources_->refill_all(next);
    limits_ = next;
}

std::optional<RejectReason> Admission::admit(Ticket& ticket) {
    if (limits_.max_connections != 0 && active_ >= limits_.max_connections)
        return RejectReason::k_max_connections;
    ++active_;
    ticket.admission_ = this;
    return std::nullopt;
}

std::optional<RejectReason> Admission::admit_source(const config::ListenerConfig& listener,
                                                    const common::Address& client, uint64_t now_ms,
                                                    Ticket& ticket) {
    if (std::optional<RejectReason> refused = check_acl(listener, client)) return refused;
    if (!sources_ || (limits_.per_source == 0 && limits_.refill == 0)) return std::nullopt;
    std::optional<std::array<uint8_t, 16>> key = key_of(client);
    if (!key) return std::nullopt;
    SourceTable::Entry* entry = sources_->find(*key, now_ms, limits_);
    if (!entry) return std::nullopt;  // fail open: see SourceTable
    if (limits_.per_source != 0 && entry->active >= limits_.per_source)
        return RejectReason::k_max_connections_per_source;
    if (limits_.refill != 0) {
        if (entry->tokens < limits_.cost) return RejectReason::k_rate_per_source;
        entry->tokens -= limits_.cost;
    }
    ++entry->active;
    ticket.source_ = entry;
    return std::nullopt;
}

void note_rejection(const config::ListenerConfig& listener, ListenerCounters& counters,
                    const common::Address* client, RejectReason reason, uint64_t now_ms) {
    counters.count(reason);
    thread_local common::LogLimiter rejection_log;  // per shard
    LOG_WARN_LIMITED(rejection_log, now_ms, "listener %s: client %s rejected: %s",
                     listener.name.c_str(), client ? client->to_string().c_str() : "-",
                     kRejectReasonNames[static_cast<size_t>(reason)]);
}

}  // namespace ringlb::shard
