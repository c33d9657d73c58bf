#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/address.hpp"
#include "config/config.hpp"
#include "proxy/upstream/tried_set.hpp"

namespace ringlb::upstream {

struct Cluster;
class MaglevTable;

// What a balancer may look at to pick a backend for one session.
struct PickContext {
    const common::Address* client = nullptr;  // the client's address, for hashing (may be null)
};

// Picks a backend of one cluster for each new session. One per cluster per shard, built from the
// shard's config snapshot; not thread-safe by design. A balancer copies what it needs from the
// Cluster (weights, table pointer), so it does not depend on the Cluster's lifetime.
class Balancer {
  public:
    virtual ~Balancer() = default;

    virtual config::Balance policy() const = 0;

    // A backend index not in `exclude`, or -1 when every backend is excluded.
    virtual int pick(const PickContext& ctx, const TriedSet& exclude) = 0;

    // A session started / stopped using backend i (policies that count connections use these).
    // A detach without a matching attach is ignored rather than wrapping the count.
    virtual void attach(size_t /*i*/) {}
    virtual void detach(size_t /*i*/) {}

    // A connect to backend i succeeded after `elapsed` (least_time's EWMA).
    virtual void observe_connect(size_t /*i*/, std::chrono::nanoseconds /*elapsed*/) {}
    // A connect to backend i failed (refused, reset or timed out). least_time counts it as a
    // connect that took the whole connect_timeout: a backend refusing at once is not "fast".
    virtual void observe_connect_failure(size_t /*i*/) {}
};

// The balancer for cluster.balance. `seed` seeds the random policies; give each shard its own.
// A maglev cluster always carries its table (the Cluster constructor builds it).
std::unique_ptr<Balancer> make_balancer(const Cluster& cluster, uint64_t seed);

// A small, fast PRNG (splitmix64) for per-shard random choices; not for anything secret.
class FastRng {
  public:
    explicit FastRng(uint64_t seed);
    uint64_t next();
    // Uniform in [0, bound) for bound > 0 (multiply-shift; bias below 2^-32 for bounds < 2^32).
    uint64_t below(uint64_t bound);

  private:
    uint64_t state_;
};

// --- The policies. make_balancer is the way in; they are public for tests and for callers that
// want one policy regardless of the config.

// round_robin: smooth weighted round-robin (nginx's algorithm): spreads picks in proportion to
// weight without bursts; with equal weights, plain rotation. Excluded backends sit a pick out
// without earning credit.
class RoundRobinBalancer final : public Balancer {
  public:
    explicit RoundRobinBalancer(const Cluster& cluster);
    config::Balance policy() const override { return config::Balance::kRoundRobin; }
    int pick(const PickContext& ctx, const TriedSet& exclude) override;

  private:
    std::vector<uint32_t> weights_;
    std::vector<int64_t> current_;
};

// Shared by the policies that count active sessions per backend.
class CountingBalancer : public Balancer {
  public:
    void attach(size_t i) final;
    void detach(size_t i) final;
    uint32_t active(size_t i) const { return active_[i]; }

  protected:
    explicit CountingBalancer(const Cluster& cluster);
    std::vector<uint32_t> weights_;  // each >= 1 (the config allows 1..1000)
    std::vector<uint32_t> active_;
};

// least_conn: the backend with the fewest active sessions per unit of weight (active_i * w_j <
// active_j * w_i, exact in integers). Ties, the usual case when sessions are short, go by smooth
// weighted round-robin among the tied backends, so equal backends take turns and idle weighted
// backends still share in proportion to weight (a plain rotating start would split them evenly).
class LeastConnBalancer final : public CountingBalancer {
  public:
    explicit LeastConnBalancer(const Cluster& cluster);
    config::Balance policy() const override { return config::Balance::kLeastConn; }
    int pick(const PickContext& ctx, const TriedSet& exclude) override;

  private:
    std::vector<int64_t> current_;
};

// Draws two distinct backends outside `exclude`, each with probability proportional to weight
// (the second among those left). O(log n) when nothing is excluded, O(n) otherwise (retries).
class WeightedPairSampler {
  public:
    explicit WeightedPairSampler(const std::vector<uint32_t>& weights);
    // How many were drawn: 0 (all excluded), 1 (only *a is allowed) or 2.
    int draw(const TriedSet& exclude, FastRng& rng, size_t* a, size_t* b) const;

  private:
    size_t find(uint64_t point) const;  // the backend whose weight interval holds `point`

    std::vector<uint32_t> weights_;
    std::vector<uint64_t> prefix_;  // prefix_[i] = sum of weights before i; prefix_[n] = total
};

// random_two: power of two choices. Two candidates drawn in proportion to weight; the one with
// fewer active sessions per unit of weight wins, the first drawn on a tie. (The brief's cost,
// (active + 1) / weight, made the heavier candidate win every comparison between idle backends:
// with short sessions, weights 1,2,3,4 got 0/5/24/72% of picks. active / weight leaves idle ties
// to the weighted draw, 10/20/30/40%, and converges the same way under load.)
class RandomTwoBalancer final : public CountingBalancer {
  public:
    RandomTwoBalancer(const Cluster& cluster, uint64_t seed);
    config::Balance policy() const override { return config::Balance::kRandomTwo; }
    int pick(const PickContext& ctx, const TriedSet& exclude) override;

  private:
    FastRng rng_;
    WeightedPairSampler sampler_;
};

// least_time: power of two choices on cost = ewma_connect_time * (active + 1) / weight, where the
// EWMA (alpha = 1/4: a new sample counts a quarter) starts at the first sample. An unmeasured
// backend costs 0, so it is tried soon. On a tie the first drawn wins. One pick in kExploreOneIn
// takes the first drawn candidate without comparing costs: without that, a backend that was slow
// once would never be measured again while a faster one stayed lightly loaded.
class LeastTimeBalancer final : public CountingBalancer {
  public:
    static constexpr uint64_t kExploreOneIn = 32;

    LeastTimeBalancer(const Cluster& cluster, uint64_t seed);
    config::Balance policy() const override { return config::Balance::kLeastTime; }
    int pick(const PickContext& ctx, const TriedSet& exclude) override;
    void observe_connect(size_t i, std::chrono::nanoseconds elapsed) override;
    void observe_connect_failure(size_t i) override;

    // The smoothed connect time of backend i; 0 while unmeasured.
    std::chrono::nanoseconds ewma(size_t i) const { return std::chrono::nanoseconds(ewma_ns_[i]); }

  private:
    void sample(size_t i, int64_t ns);
    double cost(size_t i) const;

    FastRng rng_;
    WeightedPairSampler sampler_;
    std::vector<int64_t> ewma_ns_;
    std::vector<bool> measured_;
    int64_t failure_ns_;
};

// maglev: consistent hashing of the client's address through the cluster's MaglevTable (see
// maglev.hpp), so a client lands on the same backend on every shard, restart and replica with the
// same backend list. Excluded backends are avoided deterministically (MaglevTable::lookup). With
// no usable client address there is nothing to be consistent about: picks then walk keys
// 0, 1, 2, ... through the table, which spreads them in proportion to weight.
class MaglevBalancer final : public Balancer {
  public:
    // `table` must not be null.
    MaglevBalancer(std::shared_ptr<const MaglevTable> table, config::HashKey key);
    config::Balance policy() const override { return config::Balance::kMaglev; }
    int pick(const PickContext& ctx, const TriedSet& exclude) override;

  private:
    std::shared_ptr<const MaglevTable> table_;
    config::HashKey key_;
    uint64_t anonymous_next_ = 0;
};

}  // namespace ringlb::upstream
