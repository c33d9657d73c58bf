#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "proxy/engine/engine.hpp"
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

  private:
    // Each listener is the handler of its own accept op, so a completion finds its listener
    // without an index in the op's 8-bit tag (a 256th listener would otherwise collide).
    struct Listener final : engine::Handler {
        Listener(Shard& shard, common::Fd listen_fd, std::shared_ptr<const Snapshot> snapshot,
                 const config::ListenerConfig& cfg, ListenerCounters& counters)
            : shard(shard),
              fd(std::move(listen_fd)),
              snapshot(std::move(snapshot)),
              config(&cfg),
              counters(&counters) {
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
        bool closing = false;        // a reload removed it: no accept is armed again
    };

    // The counters of the listener named `name`, made on first use. Kept for the shard's life
    // (sessions hold a reference and a reload carries them on by name): one entry per listener
    // name ever configured, a few hundred bytes each.
    ListenerCounters& counters_for(const std::string& name);
    // Stops `l` accepting for good: takes what waits in its queue, then closes the socket; `l`
    // moves to closing_listeners_ until its accept op has completed.
    void close_listener(std::unique_ptr<Listener> l);
    // Accepts and serves what waits in l's queue now, without blocking.
    void accept_queued(Listener& l);

    void run(std::string& error, std::atomic<int>& state);
    std::shared_ptr<const ShardLayout> build_layout() const;
    void arm_accept(Listener& l);
    void on_accept(Listener& l, const engine::Completion& c);
    void start_session(Listener& l, common::Fd client);
    void resume_accepting();
    void shutdown_sessions();

    ShardOptions options_;
    std::shared_ptr<const Snapshot> snapshot_;
    std::map<std::string, std::unique_ptr<ListenerCounters>, std::less<>> listener_counters_;
    std::vector<std::unique_ptr<Listener>> listeners_;  // stable addresses: ops point at them
    std::vector<std::unique_ptr<Listener>> closing_listeners_;
    std::unique_ptr<engine::Engine> engine_;
    std::unique_ptr<upstream::Connector> connector_;
    PipePool pipes_;
    TimerWheel timers_;
    uint64_t random_state_;
    ShardCounters counters_;
    engine::Op pause_timer_;
    bool accept_paused_ = false;
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
