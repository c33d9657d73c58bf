#pragma once

#include <cstddef>
#include <cstdint>

#include "common/fd.hpp"
#include "config/config.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/shard/buffered_pump.hpp"
#include "proxy/shard/direction.hpp"
#include "proxy/shard/leg.hpp"
#include "proxy/shard/splice_pump.hpp"

namespace ringlb::upstream {
struct Cluster;
}

namespace ringlb::shard {

class Shard;

// One proxied connection: a client leg, an upstream leg and one direction per way. The state
// machine lives here once, above the engine seam, for every engine.
//
// Phases, entered only through enter(), which rejects any other transition:
//   kPrelude -> kConnecting -> kForwarding -> kDraining -> kClosed
//   (kPrelude and kConnecting may go straight to kDraining)
// kPrelude reads what routing needs (nothing yet); kConnecting waits for an upstream socket,
// retrying other backends while no byte has moved; kForwarding runs the pumps (EOF on one side
// becomes shutdown(SHUT_WR) on the other); kDraining has cancelled every armed op and waits for
// their final completions; kClosed has closed both fds and is about to be freed, so no
// completion can ever reach freed memory.
class Session final : public engine::Handler {
  public:
    enum class Phase : uint8_t { kPrelude, kConnecting, kForwarding, kDraining, kClosed };

    Session(Shard& shard, common::Fd client, const config::ListenerConfig& listener,
            const upstream::Cluster& cluster, size_t cluster_index);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    void on_complete(engine::Op& op, const engine::Completion& c) override;

    // Called by the shard when buffers were released after this session starved for them.
    void resume_receive();
    // Called by the shard at shutdown.
    void abort();

    Phase phase() const { return phase_; }
    static const char* to_string(Phase phase);
    // Whether `from -> to` is a legal transition.
    static bool allowed(Phase from, Phase to);

    // Intrusive list of the shard's sessions.
    Session* prev = nullptr;
    Session* next = nullptr;
    bool starved_listed = false;

  private:
    friend class BufferedPump;
    friend class SplicePump;

    // Every op a session can have armed, declared once: the client leg's and the upstream leg's
    // (RINGLB_LEG_OPS each) and the session's own. Tags index this layout.
    enum Tag : uint8_t {
        kClientBase = 0,
        kUpstreamBase = Leg::kOpCount,
        kConnect = 2 * Leg::kOpCount,
        kFdRetry,
    };
#define RINGLB_SESSION_OPS(X) \
    X(connect_op_)            \
    X(fd_retry_timer_)

    bool enter(Phase next);
    bool closing() const {
        return phase_ >= Phase::kDraining;
    }

    void connect_next();
    void on_connected();
    void on_connect_failed(int err);
    void start_direction(Direction& d, bool splice);
    void on_leg_op(Leg& leg, Leg::OpIndex index, engine::Op& op, const engine::Completion& c);

    void count_bytes(const Direction& d, size_t n);
    void finish_direction(Direction& d);
    void fail(int err);
    void teardown();
    bool any_armed() const;
    void maybe_destroy();

    Shard& shard_;
    engine::Engine& engine_;
    const config::ListenerConfig& listener_;
    const upstream::Cluster& cluster_;
    size_t cluster_index_;
    Leg client_;
    Leg upstream_;
    engine::Op connect_op_;
    engine::Op fd_retry_timer_;  // out of fds for the upstream socket: try again shortly
    Direction c2u_;
    Direction u2c_;
    BufferedPump buffered_;
    SplicePump splice_;
    uint64_t tried_ = 0;
    unsigned attempts_ = 0;
    unsigned fd_retries_ = 0;
    Phase phase_ = Phase::kPrelude;
};

}  // namespace ringlb::shard
