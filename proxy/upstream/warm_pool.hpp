#pragma once

#include <cstdint>
#include <list>
#include <memory>

#include "common/fd.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/tls/counters.hpp"
#include "proxy/tls/tls.hpp"

namespace ringlb::upstream {

class Connector;
class ConnectRequest;
struct BackendState;

// Pre-connected sockets to one backend, owned by one shard (`pool = { warm, max_idle }`): a
// client that finds one here skips the connect. The pool refills in the background (with
// backoff while the backend refuses), closes sockets idle longer than max_idle, and watches
// every idle socket for the backend's FIN or RST (POLLRDHUP) so that a dead one is dropped, never
// handed to a client; a last non-blocking poll() checks again at hand-over. Bytes a backend sends
// first (a greeting) stay in the socket and reach the client in order. For a cluster with
// `tls` (and no send_proxy) the pool also makes the TLS handshake, so a client's first byte meets
// an upstream that is encrypted already; the handshaked stream goes to the client's session with
// the socket.
class WarmPool final : public engine::Handler {
  public:
    WarmPool(Connector& connector, BackendState& backend, uint32_t warm, uint64_t max_idle_ms);
    ~WarmPool();
    WarmPool(const WarmPool&) = delete;
    WarmPool& operator=(const WarmPool&) = delete;

    // Opens connections up to `warm`.
    void fill();
    // Takes an idle socket for `req`: true when one was found alive; the hand-over completes
    // (Connector::pool_ready) once the socket's watch is cancelled, from the event loop.
    bool take(ConnectRequest& req);
    // `req` gives up while a hand-over is pending.
    void forget(ConnectRequest& req);
    // Shutdown: cancels and closes everything; busy() until every op has completed.
    void stop();
    bool busy() const;

    uint32_t idle() const { return idle_count_; }

    void on_complete(engine::Op& op, const engine::Completion& c) override;

  private:
    struct Conn final : engine::Handler {
        // kHandshaking: connected, its TLS handshake under way (clusters with `tls`).
        enum class State : uint8_t { kConnecting, kHandshaking, kIdle, kHandingOver, kClosing };
        explicit Conn(WarmPool& pool) : pool(pool) {
            connect_op.bind(this, 0);
            poll_op.bind(this, 1);
        }
        void on_complete(engine::Op& op, const engine::Completion& c) override {
            pool.on_conn_op(*this, op, c);
        }
        WarmPool& pool;
        common::Fd fd;
        engine::Op connect_op;
        engine::Op poll_op;
        State state = State::kConnecting;
        uint64_t idle_since_ms = 0;
        uint64_t connect_started_ns = 0;
        ConnectRequest* waiter = nullptr;
        bool dead = false;  // the backend closed it during the hand-over
        // TLS: the stream handshaked here and handed over with the socket.
        std::unique_ptr<tls::Stream> tls;
        uint64_t handshake_started_ns = 0;
        uint64_t handshake_deadline_ms = 0;
        // The handshake's readiness watch is being cancelled: its final completion starts the
        // idle watch instead of closing the socket.
        bool rewatch = false;
    };
    using ConnList = std::list<std::unique_ptr<Conn>>;

    bool start_connect();
    // A fill connect failed with `err`: count it and back off.
    void note_fill_failure(int err);
    void on_conn_op(Conn& conn, engine::Op& op, const engine::Completion& c);
    void on_connected(Conn& conn, int res);
    void on_poll(Conn& conn, const engine::Completion& c);
    // A connected socket waits for a client from now on (watched for the backend's FIN).
    void become_idle(Conn& conn);
    // TLS: the pool's connections are handshaked in advance, with plain non-blocking recv and
    // send on readiness rather than the shard's receive buffers (a handshake flight is a few
    // hundred bytes, and this is the background, not a client's path).
    void start_handshake(Conn& conn);
    // False when the handshake failed (`conn` may be gone).
    bool step_handshake(Conn& conn);
    void on_handshake_readable(Conn& conn, const engine::Completion& c);
    void handshake_failed(Conn& conn, tls::HandshakeResult result);
    void close_conn(Conn& conn, bool discarded);
    void maybe_erase(Conn& conn);
    void arm_timer();
    void on_timer();

    Connector& connector_;
    BackendState& backend_;
    uint32_t warm_;
    uint64_t max_idle_ms_;
    ConnList conns_;
    uint32_t idle_count_ = 0;
    uint32_t connecting_ = 0;
    uint32_t handshaking_ = 0;
    // The cluster's TLS when its pooled connections are handshaked in advance: not with
    // send_proxy, whose header must come before the handshake on the wire.
    const tls::ClientContext* tls_ = nullptr;
    uint64_t handshake_timeout_ms_ = 0;
    engine::Op timer_;
    uint64_t timer_at_ms_ = 0;
    uint64_t backoff_ms_ = 0;   // after a failed fill connect; 0: none
    uint64_t retry_at_ms_ = 0;  // no fill connect before this
    bool stopping_ = false;
};

}  // namespace ringlb::upstream
