#pragma once

#include <cstdint>
#include <list>
#include <memory>

#include "common/fd.hpp"
#include "proxy/engine/engine.hpp"

namespace ringlb::upstream {

class Connector;
class ConnectRequest;
struct BackendState;

// Pre-connected sockets to one backend, owned by one shard (`pool = { warm, max_idle }`): a
// client that finds one here skips the connect. The pool refills in the background (with
// backoff while the backend refuses), closes sockets idle longer than max_idle, and watches
// every idle socket for the backend's FIN or RST (POLLRDHUP) so that a dead one is dropped, never
// handed to a client; a last non-blocking poll() checks again at hand-over. Bytes a backend sends
// first (a greeting) stay in the socket and reach the client in order.
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
        enum class State : uint8_t { kConnecting, kIdle, kHandingOver, kClosing };
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
    };
    using ConnList = std::list<std::unique_ptr<Conn>>;

    bool start_connect();
    // A fill connect failed with `err`: count it and back off.
    void note_fill_failure(int err);
    void on_conn_op(Conn& conn, engine::Op& op, const engine::Completion& c);
    void on_connected(Conn& conn, int res);
    void on_poll(Conn& conn, const engine::Completion& c);
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
    engine::Op timer_;
    uint64_t timer_at_ms_ = 0;
    uint64_t backoff_ms_ = 0;   // after a failed fill connect; 0: none
    uint64_t retry_at_ms_ = 0;  // no fill connect before this
    bool stopping_ = false;
};

}  // namespace ringlb::upstream
