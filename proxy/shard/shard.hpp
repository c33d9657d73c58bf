#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/shard/admission.hpp"
#include "proxy/shard/counters.hpp"
#include "proxy/shard/layout.hpp"
#include "proxy/shard/mailbox.hpp"
#include "proxy/shard/pipe_pool.hpp"
#include "proxy/shard/snapshot.hpp"
#include "proxy/shard/timer_wheel.hpp"
#include "proxy/upstream/connector.hpp"

namespace ringlb::shard {

class Session;
class AccessLogBuffer;

struct ShardOptions {
    unsigned id = 0;
    int cpu = -1;  // pin to this CPU when >= 0
    engine::EngineChoice engine = engine::EngineChoice::kEpoll;
    engine::EngineParams engine_params;
    uint32_t pipe_pool = 256;
    uint32_t pipe_size = 64 * 1024;
    unsigned shards = 1;  // how many shards share the configured limits (max_connections)
    // Where finished sessions go when [log] access is set; outlives the shard. nullptr: off.
    AccessLogBuffer* access_log = nullptr;
    // Passive health: a backend's outcome (upstream::ConnectorHost::report_outcome), called on
    // the shard's thread with (cluster, backend, ok); it must hand the report to the control
    // thread. Empty: not reported.
    std::function<void(const std::string&, const std::string&, bool)> report_outcome;
};

// One worker thread: its own engine, its own listening sockets (SO_REUSEPORT), its sessions,
// pools and counters. Nothing it mutates is shared with other shards.
class Shard final : public engine::Handler, public upstream::ConnectorHost {
  public:
    // `listeners[i]` is this shard's socket for snapshot->config->listeners[i].
    Shard(ShardOptions options, std::shared_ptr<const Snapshot> snapshot,
          std::vector<common::Fd> listeners);
    // `shards`: how many shards share the configured limits (max_connections).
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    // Starts the thread and waits until it runs. Returns an empty string, or why it failed.
    std::string start();
    // Thread-safe: asks the shard to stop; join() waits for it.
    void request_stop();
    void join();
    // Thread-safe: runs `message` on the shard's thread at its next loop iteration (at once if
    // the loop is waiting). A message posted once the shard has stopped is never run.
    void post(Message message);

    // Runs the shard on the calling thread instead (unit tests drive it with a scripted engine):
    // start_on() arms the listeners and pools, run_once() is one loop iteration, stop_here()
    // closes every session and waits for their ops. start() uses the same three.
    void start_on(std::unique_ptr<engine::Engine> engine);
    void run_once(engine::Millis max_wait);
    void stop_here();
    size_t session_count() const;
    // The open sessions, newest first, so that unit tests can read their phases and call their
    // public entry points; the shard still owns them.
    std::vector<Session*> sessions() const;

    unsigned id() const { return options_.id; }
    const ShardCounters& counters() const { return counters_; }
    // Per-cluster and per-backend state; its shape is fixed once start() has returned, and its
    // counters may be read from any thread.
    const upstream::Connector& connector() const { return *connector_; }
    // This shard's counters of listener i (snapshot->config->listeners[i]), readable from any
    // thread.
    size_t listener_count() const { return listeners_.size(); }
    const config::ListenerConfig& listener_config(size_t i) const { return *listeners_[i]->config; }
    const ListenerCounters& listener_counters(size_t i) const { return *listeners_[i]->counters; }
    // What other threads may read of this shard's listeners, clusters and backends: the one
    // built by start_on() (safe to take once start() has returned), then the one a message that
    // changes the configuration builds and hands back (shard/layout.hpp).
    std::shared_ptr<const ShardLayout> layout() const { return layout_; }
    const AccessLogBuffer* access_log() const { return options_.access_log; }

    // Stops accepting on listener i without losing the clients the kernel has already queued
    // for it (closing a listening socket resets every connection in its accept queue; with
    // SO_REUSEPORT each shard's socket has its own): cancels its accept op and, once that op
    // has ended, takes every queued connection with accept4() (the fd reserve rules of
    // on_accept apply) and closes the socket. Connections the engine still delivers meanwhile
    // (io_uring's multishot accept may complete after the cancel) are served too. `closed`
    // then runs on this thread with how many connections were taken since the call; at once
    // (with 0) when the listener was closed already. The Listener itself stays: scrapes read
    // its counters and its sessions refer to them. Shard thread only.
    using ListenerClosed = std::function<void(size_t taken)>;
    void close_listener(size_t i, ListenerClosed closed = {});
    // Binary upgrade, old side (shard thread): a duplicate of every listening socket still open,
    // with its address, to hand to the new process; then release_listeners() stops accepting
    // and closes this process's fds without shutdown() and without taking the accept queues,
    // which stay with the sockets the new process now serves.
    std::vector<std::pair<common::Address, common::Fd>> dup_listeners() const;
    void release_listener(size_t i, ListenerClosed closed = {});
    // Whether listener i still has its socket (shard thread only).
    bool listener_open(size_t i) const { return static_cast<bool>(listeners_[i]->fd); }
    // The end of a drain: closes the sessions open now (reason drained), spread evenly over
    // `window` so that their clients do not all reconnect at once; 0 closes them at once.
    // Shard thread only.
    void close_sessions(engine::Millis window);

    // For sessions, on the shard's own thread only.
    engine::Engine& engine() { return *engine_; }
    PipePool& pipes() { return pipes_; }
    uint32_t buffer_count() const { return options_.engine_params.buffer_count; }
    ShardCounters& stats() { return counters_; }
    AccessLogBuffer* access_log() { return options_.access_log; }
    upstream::Connector& connector() { return *connector_; }
    void session_closed(Session* session);
    // Out of fds (EMFILE/ENFILE, or a client's fd in the fd reserve): stop accepting until
    // a session closes, or a short pause ends and an fd below the reserve is free.
    void pause_accepting() override;
    // CLOCK_MONOTONIC_COARSE (vDSO, a few ns, 1-4 ms resolution): read per event rather than
    // cached per loop iteration, since a completion may arrive after a long wait.
    uint64_t now_ms() const override;
    void report_outcome(const upstream::BackendState& backend, bool ok) override;
    TimerWheel& timers() { return timers_; }
    // A shard-local pseudo-random number (xorshift64*), e.g. for max_duration_jitter.
    uint64_t random();
    void wait_for_buffers(Session* session);
    void release_buffer(uint16_t buffer_id);

    void on_complete(engine::Op& op, const engine::Completion& c) override;

    // A reload, on the shard's thread: `next` replaces the snapshot new sessions start on.
    // `fds[i]` is this shard's socket for next->config->listeners[i] when the control plane
    // opened one; an empty Fd means the listener keeps the socket of the running listener with
    // the same address (so its accept queue is never dropped). Listeners not carried over stop
    // accepting: what already waits in their queues is accepted and served, then they close.
    // Sessions keep the snapshot, cluster and backend they started with.
    void apply(std::shared_ptr<const Snapshot> next, std::vector<common::Fd> fds);
    // The health checks' verdicts (a message from the control thread): which backends new
    // sessions avoid. Established sessions are left alone.
    void set_health(std::shared_ptr<const upstream::HealthVerdicts> verdicts);

  private:
    // Each listener is the handler of its own accept op, so a completion finds its listener
    // without an index in the op's 8-bit tag (a 256th listener would otherwise collide).
    struct Listener final : engine::Handler {
        Listener(Shard& shard, common::Fd listen_fd, std::shared_ptr<const Snapshot> snapshot,
                 const config::ListenerConfig& cfg, ListenerCounters& counters,
                 Admission& admission)
            : shard(shard),
              fd(std::move(listen_fd)),
              snapshot(std::move(snapshot)),
              config(&cfg),
              counters(&counters),
              admission(&admission) {
            accept_op.bind(this, 0);
        }
        void on_complete(engine::Op&, const engine::Completion& c) override {
            shard.on_accept(*this, c);
        }
        Shard& shard;
        common::Fd fd;
        std::shared_ptr<const Snapshot> snapshot;  // holds `config`; its sessions start on it
        const config::ListenerConfig* config = nullptr;
        upstream::ClusterState* cluster = nullptr;  // set once the connector exists
        engine::Op accept_op;
        common::LogLimiter accept_error_log;
        ListenerCounters* counters;  // in Shard::listener_counters_, by name
        Admission* admission;        // in Shard::admissions_, by name
        // close_listener(): closing waits for accept_op's final completion, then the socket
        // closes and on_closed runs; `taken` counts the connections accepted meanwhile. A
        // listener a reload removed waits in closing_listeners_ meanwhile.
        bool closing = false;
        bool handed_over = false;  // release_listeners(): a new process serves the socket
        size_t taken = 0;
        std::vector<ListenerClosed> on_closed;
    };

    // The counters of the listener named `name`, made on first use. Kept for the shard's life
    // (sessions hold a reference and a reload carries them on by name): one entry per listener
    // name ever configured, a few hundred bytes each.
    ListenerCounters& counters_for(const std::string& name);
    // The admission state of listener `cfg.name` (made on first use, kept like its counters:
    // admitted sessions release their place in it), configured for `cfg`.
    Admission& admission_for(const config::ListenerConfig& cfg);
    // start_session()'s refusal: counts, logs and closes (RST with reject = "reset").
    void reject(Listener& l, common::Fd client, RejectReason reason, const common::Address* peer);
    // A listener a reload removed: closes it as close_listener(i) does; it waits in
    // closing_listeners_ until its socket has closed.
    void close_listener(std::unique_ptr<Listener> l);
    void begin_close(Listener& l, ListenerClosed closed);

    void run(std::string& error, std::atomic<int>& state);
    std::shared_ptr<const ShardLayout> build_layout() const;
    void count_backends_down();
    void arm_accept(Listener& l);
    void on_accept(Listener& l, const engine::Completion& c);
    void start_session(Listener& l, common::Fd client);
    void resume_accepting();
    void shutdown_sessions();
    // close_listener()'s second half, once l.accept_op has ended.
    void finish_close(Listener& l);
    // Accepts what waits in l's accept queue; returns how many.
    size_t take_queued(Listener& l);
    // close_sessions(): closes as many open sessions as the elapsed share of the window asks.
    void close_due_sessions();

    ShardOptions options_;
    std::shared_ptr<const Snapshot> snapshot_;
    std::map<std::string, std::unique_ptr<ListenerCounters>, std::less<>> listener_counters_;
    std::map<std::string, std::unique_ptr<Admission>, std::less<>> admissions_;
    std::vector<std::unique_ptr<Listener>> listeners_;  // stable addresses: ops point at them
    std::vector<std::unique_ptr<Listener>> closing_listeners_;
    std::unique_ptr<engine::Engine> engine_;
    std::unique_ptr<upstream::Connector> connector_;
    PipePool pipes_;
    TimerWheel timers_;
    uint64_t random_state_;
    ShardCounters counters_;
    // The shard's own ops (tags): the pause of accept when out of fds, the ticks of
    // close_sessions().
    enum Tag : uint8_t { kPauseTimer = 0, kSpreadTimer = 1 };
    engine::Op pause_timer_;
    engine::Op spread_timer_;
    bool accept_paused_ = false;
    // close_sessions(): how many were open at its start, when it started, over how long.
    size_t spread_total_ = 0;
    uint64_t spread_start_ms_ = 0;
    uint64_t spread_window_ms_ = 0;
    common::LogLimiter out_of_fds_log_;
    Session* sessions_ = nullptr;  // intrusive list head
    std::deque<Session*> starved_;
    std::shared_ptr<const ShardLayout> layout_;
    Mailbox mailbox_;
    std::atomic<bool> stop_{false};
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace ringlb::shard
