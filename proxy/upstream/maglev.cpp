#include "proxy/upstream/maglev.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

namespace ringlb::upstream {

namespace {

constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
// Seeds of the three independent uses of hash_bytes; part of the wire-stable mapping.
constexpr uint64_t kOffsetSeed = 1;
constexpr uint64_t kSkipSeed = 2;
constexpr uint64_t kKeySeed = 3;

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

}  // namespace

uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t hash_bytes(std::span<const std::byte> data, uint64_t seed) {
    uint64_t h = kFnvOffsetBasis ^ mix64(seed);
    for (std::byte b : data) {
        h ^= static_cast<uint64_t>(b);
        h *= kFnvPrime;
    }
    return mix64(h);
}

std::optional<uint64_t> client_key_hash(const common::Address& client, config::HashKey key) {
    std::array<std::byte, 18> buf{};
    size_t len = 0;
    uint16_t port_be = 0;  // network order, as it sits in the sockaddr
    if (client.family() == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(&client.storage);
        std::memcpy(buf.data(), &sin->sin_addr, 4);
        len = 4;
        port_be = sin->sin_port;
    } else if (client.family() == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&client.storage);
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            std::memcpy(buf.data(), reinterpret_cast<const std::byte*>(&sin6->sin6_addr) + 12, 4);
            len = 4;
        } else {
            std::memcpy(buf.data(), &sin6->sin6_addr, 16);
            len = 16;
        }
        port_be = sin6->sin6_port;
    } else {
        return std::nullopt;
    }
    if (key == config::HashKey::kSourceIpPort) {
        std::memcpy(buf.data() + len, &port_be, 2);
        len += 2;
    }
    return hash_bytes(std::span<const std::byte>(buf.data(), len), kKeySeed);
}

MaglevTable::MaglevTable(std::span<const MaglevBackend> backends, size_t size)
    : backend_count_(backends.size()) {
    const size_t n = backends.size();
    if (n == 0) return;
    if (size < n) {
        throw std::invalid_argument("maglev table size " + std::to_string(size) +
                                    " is smaller than the number of backends (" +
                                    std::to_string(n) + ")");
    }

    // Turn order by name so the map does not depend on how the list is ordered.
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (backends[a].name != backends[b].name) return backends[a].name < backends[b].name;
        return a < b;
    });

    std::vector<uint64_t> offset(n);
    std::vector<uint64_t> skip(n);
    std::vector<uint64_t> next(n, 0);  // how far along its walk each backend is
    std::vector<uint64_t> credit(n);
    uint64_t max_weight = 1;
    for (const auto& b : backends) max_weight = std::max<uint64_t>(max_weight, b.weight);
    for (size_t i = 0; i < n; ++i) {
        offset[i] = hash_bytes(bytes_of(backends[i].name), kOffsetSeed) % size;
        skip[i] = size > 1 ? hash_bytes(bytes_of(backends[i].name), kSkipSeed) % (size - 1) + 1 : 1;
        credit[i] = max_weight;  // everyone claims in the first round
    }

    constexpr uint32_t kFree = UINT32_MAX;
    entries_.assign(size, kFree);
    // Slot number j of backend i's walk: its permutation for j < size, then (only reachable when
    // the size shares a factor with the skip) a plain slot-by-slot walk, which always finds a free
    // slot while one is left.
    auto slot_at = [&](size_t i, uint64_t j) -> size_t {
        if (j < size) return static_cast<size_t>((offset[i] + j * skip[i]) % size);
        return static_cast<size_t>((offset[i] + (j - size)) % size);
    };

    size_t filled = 0;
    while (filled < size) {
        for (size_t i : order) {
            const uint64_t weight = std::max<uint64_t>(backends[i].weight, 1);
            while (credit[i] >= max_weight && filled < size) {
                credit[i] -= max_weight;
                size_t slot = slot_at(i, next[i]);
                while (entries_[slot] != kFree) slot = slot_at(i, ++next[i]);
                entries_[slot] = static_cast<uint32_t>(i);
                ++next[i];
                ++filled;
            }
            if (filled == size) break;
            credit[i] += weight;
        }
    }
}

int MaglevTable::lookup(uint64_t key_hash, const TriedSet& exclude) const {
    const size_t size = entries_.size();
    if (size == 0) return -1;
    const size_t home = static_cast<size_t>(key_hash % size);
    uint32_t b = entries_[home];
    if (!exclude.contains(b)) return static_cast<int>(b);

    for (int k = 1; k <= kRehashes; ++k) {
        b = entries_[mix64(key_hash ^ (static_cast<uint64_t>(k) * kGolden)) % size];
        if (!exclude.contains(b)) return static_cast<int>(b);
    }

    // Before walking the whole table, make sure the walk can end.
    int lowest_allowed = -1;
    for (size_t i = 0; i < backend_count_; ++i) {
        if (!exclude.contains(i)) {
            lowest_allowed = static_cast<int>(i);
            break;
        }
    }
    if (lowest_allowed < 0) return -1;
    for (size_t step = 1; step < size; ++step) {
        b = entries_[(home + step) % size];
        if (!exclude.contains(b)) return static_cast<int>(b);
    }
    // Unreachable while every backend owns a slot (the constructor guarantees it); kept so an
    // allowed backend is never refused.
    return lowest_allowed;
}

std::shared_ptr<const MaglevTable> build_maglev(std::span<const MaglevBackend> backends,
                                                size_t size) {
    return std::make_shared<const MaglevTable>(backends, size);
}

}  // namespace ringlb::upstream
