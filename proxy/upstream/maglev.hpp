#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/address.hpp"
#include "config/config.hpp"
#include "proxy/upstream/tried_set.hpp"

namespace ringlb::upstream {

// Hashes that must give the same value on every shard, restart, machine and ringlb version:
// Maglev's promise to replicas is that they all map a client to the same backend. Never std::hash
// (implementation-defined). Changing any constant here remaps every client.
//
// A 64-bit mixer (the splitmix64 finaliser): a bijection whose every output bit depends on every
// input bit.
uint64_t mix64(uint64_t x);
// 64-bit FNV-1a over `data` with the offset basis perturbed by mix64(seed), then mix64'd (FNV-1a's
// low bits mix poorly, and the table index is taken modulo the size). Seed 0 is plain FNV-1a
// before the final mix.
uint64_t hash_bytes(std::span<const std::byte> data, uint64_t seed);
// The Maglev key of a client: its IP bytes (4 for IPv4, 16 for IPv6; an IPv4-mapped IPv6 address
// counts as the IPv4 address, so a dual-stack listener maps a client like an IPv4 one), followed by
// its port in network order for source_ip_port. nullopt for an address that is neither.
std::optional<uint64_t> client_key_hash(const common::Address& client, config::HashKey key);

struct MaglevBackend {
    std::string_view name;  // hashed for the backend's permutation: its identity across replicas
    uint32_t weight = 1;
};

// Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of `size` slots, each
// naming a backend. Backend i walks its own permutation of the slots, slot(j) = (offset_i + j *
// skip_i) mod size, with offset and skip from two fixed hashes of its name; backends take turns
// claiming the next free slot on their walk until the table is full. A key maps to slot
// hash(key) mod size. Removing or adding one of N backends moves about 1/N of the keys.
//
// Weights: each round, a backend earns credit equal to its weight and claims one slot per
// max-weight of credit it holds, so the heaviest backend claims one slot every round and a
// backend of weight w about w / max_weight slots per round; slot counts come out proportional to
// weight. Every backend claims a slot in the first round, so each owns at least one slot.
//
// Backends take turns in the order of their names (index breaks ties), not in list order, so
// replicas whose lists hold the same backends in another order build the same name -> slot map.
//
// The size should be a prime much larger than the number of backends (65537 by default): with a
// prime size every skip in [1, size-1] is coprime with it, so each walk visits every slot. Any
// size >= the number of backends still builds: a walk that has gone all the way round without
// finding a free slot goes on slot by slot, which ends, but balance and disruption are then no
// longer Maglev's. Built once per config snapshot on the control thread; immutable and shared by
// every shard.
class MaglevTable {
  public:
    // Throws std::invalid_argument when backends is not empty and size < backends.size(). With no
    // backends the table is empty and every lookup returns -1.
    MaglevTable(std::span<const MaglevBackend> backends, size_t size);

    size_t size() const { return entries_.size(); }
    size_t backend_count() const { return backend_count_; }
    // The backend index that owns `slot` (slot < size()).
    uint32_t entry(size_t slot) const { return entries_[slot]; }

    // The backend for a key hash, never one in `exclude`; -1 only when every backend is excluded
    // (or there are none). When the key's own slot names an excluded backend, the fallback is
    // deterministic, so every shard and replica with the same exclusions agrees: up to kRehashes
    // further slots from rehashing the key with other seeds (spreading an excluded backend's keys
    // over the others in proportion to their slots), then the first acceptable slot walking
    // forward from the key's own slot.
    int lookup(uint64_t key_hash, const TriedSet& exclude) const;

    static constexpr int kRehashes = 4;

  private:
    std::vector<uint32_t> entries_;
    size_t backend_count_ = 0;
};

// The table for a backend list (see MaglevTable).
std::shared_ptr<const MaglevTable> build_maglev(std::span<const MaglevBackend> backends,
                                                size_t size);

}  // namespace ringlb::upstream
