#pragma once

#include <cstddef>
#include <cstdint>

#include <memory>

#include "common/address.hpp"
#include "common/fd.hpp"
#include "config/config.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/shard/access_log.hpp"
#include "proxy/shard/admission.hpp"
#include "proxy/shard/buffered_pump.hpp"
#include "proxy/shard/counters.hpp"
#include "proxy/shard/direction.hpp"
#include "proxy/shard/leg.hpp"
#include "proxy/shard/prelude.hpp"
#include "proxy/shard/snapshot.hpp"
#include "proxy/shard/splice_pump.hpp"
#include "proxy/shard/timer_wheel.hpp"
#include "proxy/shard/tls_pump.hpp"
#include "proxy/upstream/connector.hpp"

namespace ringlb::shard {

class Shard;

// One proxied connection: a client leg, an upstream leg and one direction per way. The state
// machine lives here once, above the engine seam, for every engine.
//
// Phases, entered only through enter(), which rejects any other transition:
//   kPrelude -> kConnecting -> kForwarding -> kDraining -> kClosed
//   (kPrelude and kConnecting may go straight to kDraining)
// kPrelude reads what routing needs (proxy/shard/prelude.hpp: a PROXY header, a TLS ClientHello,
// or nothing, when it is left at once); kConnecting waits for the connector's
// upstream socket (it retries other backends while no byte has moved); kForwarding runs the pumps
// (EOF on one side becomes shutdown(SHUT_WR) on the other); kDraining has cancelled every armed op
// and waits for their final completions; kClosed has closed both fds and is about to be freed, so
// no completion can ever reach freed memory.
//
// A session keeps the snapshot it started on alive and refers into it by pointer (listener,
// cluster, backend), so a new snapshot can replace the shard's under live sessions.
class Session final : public engine::Handler,
                      public upstream::ConnectCallbacks,
                      public TimerHandler {
  public:
    enum class Phase : uint8_t { kPrelude, kConnecting, kForwarding, kDraining, kClosed };

    Session(Shard& shard, common::Fd client, std::shared_ptr<const Snapshot> snapshot,
            const config::ListenerConfig& listener, ListenerCounters& listener_counters,
            upstream::ClusterState& cluster, Admission& admission, Admission::Ticket ticket);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    void on_complete(engine::Op& op, const engine::Completion& c) override;
    void on_upstream_ready(upstream::ConnectRequest& req) override;
    void on_upstream_failed(upstream::ConnectRequest& req, upstream::CloseReason reason) override;
    void on_upstream_queued(upstream::ConnectRequest& req) override;
    void on_timer(Timer& timer) override;

    // Called by the shard when buffers were released after this session starved for them.
    void resume_receive();
    // Called by the shard at shutdown (k_shutdown) and at the end of a drain (k_drained): resets
    // both legs and closes.
    void abort(upstream::CloseReason reason = upstream::CloseReason::k_shutdown);

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
    friend class TlsPump;

    // Every op a session can have armed: the client leg's and the upstream leg's (RINGLB_LEG_OPS
    // each) and, while it connects, its ConnectRequest's (ConnectRequest::armed() lists them).
    // Tags index this layout.
    enum Tag : uint8_t {
        kClientBase = 0,
        kUpstreamBase = Leg::kOpCount,
        kConnect = 2 * Leg::kOpCount,
        kRequestTimer,
    };

    bool enter(Phase next);
    bool closing() const { return phase_ >= Phase::kDraining; }

    // The prelude: reading the client before a cluster is picked, and writing to the upstream
    // before forwarding.
    void on_prelude_recv(const engine::Completion& c);
    void on_prelude_step(Prelude::Step step);
    void on_prelude_sent(const engine::Completion& c);
    void refuse();
    // The listener's allow, deny and per-source limits on the PROXY header's source (or the
    // peer's address for a header without addresses); false once it has refused the client.
    bool admit_source();
    // Picks the route's cluster and asks the connector for an upstream.
    void connect();
    void on_connected();
    // While queued, the client leg's poll op watches the client for a reset (client_watch_).
    void on_client_watch(engine::Op& op, const engine::Completion& c);
    // TLS (proxy/shard/tls_pump.hpp): the client's handshake when the listener terminates TLS
    // (after the prelude, before connecting), the backend's when the cluster originates it
    // (after send_proxy's header, before forwarding).
    void start_client_tls();
    void on_handshake_done(Leg& leg);
    void on_handshake_failed(Leg& leg, tls::HandshakeResult result);
    tls::HandshakeCounters& handshake_counters(const Leg& leg);
    // The upstream leg's first bytes are out (send_proxy's header, the prelude's client bytes):
    // its TLS handshake, or forwarding.
    void after_prelude_output();
    // The backend's TLS is up (handshaked here or by the warm pool): the prelude's client bytes
    // go in, and forwarding starts.
    void upstream_tls_ready();
    // The PROXY header send_proxy asks for, "" without one.
    std::string proxy_header_out();
    void start_forwarding();
    void start_direction(Direction& d, bool splice);
    void on_leg_op(Leg& leg, Leg::OpIndex index, engine::Op& op, const engine::Completion& c);

    void count_bytes(const Direction& d, size_t n);
    // Bytes arrived from d's source: the idle timeouts start over (one store, no timer call).
    void note_received(const Direction& d);
    void arm_timeouts();
    // Schedules the timer at the earliest deadline when that is earlier than where it sleeps.
    void rearm_timeout();
    void reset_both_legs();
    // The earliest deadline among the configured timeouts, and which one it is.
    uint64_t next_deadline(upstream::CloseReason* which) const;
    void finish_direction(Direction& d);
    void fail(int err);
    void teardown();
    bool any_armed() const;
    void maybe_destroy();
    void log_access();

    Shard& shard_;
    engine::Engine& engine_;
    std::shared_ptr<const Snapshot> snapshot_;  // keeps listener_ and cluster_ alive
    const config::ListenerConfig& listener_;
    ListenerCounters& listener_counters_;  // this shard's, of listener_
    upstream::ClusterState* cluster_;      // the listener's, until a route picks another
    Admission& admission_;                 // the listener's on this shard
    Admission::Ticket ticket_;             // this session's place in it
    // Only from connect() until the upstream is ready (280 bytes an idle session does without).
    std::unique_ptr<upstream::ConnectRequest> request_;
    upstream::BackendState* backend_ = nullptr;  // once connected; released at close
    // Only for balancers that hash it (maglev): 8 bytes per session instead of 136.
    std::unique_ptr<common::Address> client_address_;
    // Only while the prelude reads or writes (listener proxy_protocol or routes, cluster
    // send_proxy).
    std::unique_ptr<Prelude> prelude_;
    // Only when the access log is on (the client's address, connect time, bytes).
    std::unique_ptr<AccessTally> access_;
    Leg client_;
    Leg upstream_;
    Direction c2u_;
    Direction u2c_;
    BufferedPump buffered_;
    SplicePump splice_;
    TlsPump tls_;
    upstream::CloseReason close_reason_ = upstream::CloseReason::k_done;
    bool backend_spoke_ = false;  // a byte came from the backend (passive health)
    // client_.poll is the reset watch armed when the session queued (armed, or its cancel
    // pending); a splice poll asked for meanwhile is armed when the watch's last completion
    // comes (client_poll_deferred_).
    bool client_watch_ = false;
    bool client_poll_deferred_ = false;
    // Every timeout of the session shares one wheel timer, set to the earliest deadline; bytes
    // only stamp these (coarse clock, ms) and the timer re-arms itself when it finds activity.
    Timer timeout_;
    uint64_t last_client_rx_ms_ = 0;
    uint64_t last_server_rx_ms_ = 0;
    uint64_t started_ms_ = 0;
    uint64_t accepted_ns_ = 0;       // CLOCK_MONOTONIC, for ringlb_session_duration_seconds
    uint64_t end_ms_ = 0;            // max_duration (+ jitter) deadline; 0: none
    uint64_t tls_end_ms_ = 0;        // the backend's handshake_timeout deadline; 0: none
    bool prelude_deadline_ = false;  // prelude_timeout passed while a receive was armed
    Phase phase_ = Phase::kPrelude;
};

}  // namespace ringlb::shard
