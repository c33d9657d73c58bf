#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/upstream/balancer.hpp"
#include "proxy/upstream/cluster.hpp"
#include "proxy/upstream/counters.hpp"
#include "proxy/upstream/health.hpp"
#include "proxy/upstream/tried_set.hpp"
#include "proxy/upstream/warm_pool.hpp"

namespace ringlb::upstream {

struct ClusterState;
class Connector;

// TCP keepalive and TCP_USER_TIMEOUT as configured (listener keys for the client leg, cluster
// keys for the upstream leg); zero values keep the kernel's defaults.
void apply_tcp_options(int fd, const config::TcpKeepalive& keepalive, config::Millis user_timeout);
class ConnectRequest;

// One backend as one shard sees it: its share of the connection limit, what is attached to it
// now, and its counters. Written only by the owning shard.
struct BackendState {
    // `counters`: shared with this backend's state before a reload, so they survive it.
    explicit BackendState(std::shared_ptr<BackendCounters> shared = nullptr)
        : counters_owner(shared ? std::move(shared) : std::make_shared<BackendCounters>()),
          counters(*counters_owner) {}

    const Backend* backend = nullptr;
    ClusterState* cluster = nullptr;
    size_t index = 0;
    uint32_t active = 0;  // sessions connecting or connected (what max_connections limits)
    uint32_t limit = 0;   // this shard's share of max_connections; 0 = unlimited
    std::shared_ptr<BackendCounters> counters_owner;
    BackendCounters& counters;
    std::unique_ptr<WarmPool> pool;  // when the cluster has pool.warm > 0
    bool down = false;               // held down by the health checks (Connector::set_health)
    // slow_start: when the backend came back (ConnectorHost::now_ms()), 0 when not ramping.
    uint64_t recovering_since_ms = 0;
    // Passive health: failures in a row this shard saw and reported (ConnectorHost).
    uint32_t failure_streak = 0;

    bool full() const { return limit != 0 && active >= limit; }
};

// One cluster as one shard sees it: the balancer (shard-local view of the immutable Cluster),
// the backends' states and the queue of clients waiting for a slot.
struct ClusterState {
    // `previous`: this cluster's state before a reload, whose counters (the cluster's and those of
    // backends with the same name) carry on here.
    ClusterState(const Cluster& cluster, unsigned shards, uint64_t seed,
                 const ClusterState* previous = nullptr);

    const Cluster* cluster;
    // Keeps `cluster` (and its settings) alive: the snapshot it came from. A state that a reload
    // keeps unchanged outlives the snapshot that made it.
    std::shared_ptr<const void> origin;
    std::unique_ptr<Balancer> balancer;
    std::vector<BackendState> backends;
    std::shared_ptr<ClusterCounters> counters_owner;
    ClusterCounters& counters;
    bool has_limits = false;  // some backend has max_connections
    // Backends held down by health checks, and those neither down nor drained.
    size_t down_count = 0;
    size_t up_usable = 0;
    size_t slow_starting = 0;  // backends with recovering_since_ms set
    // Waiting clients, oldest first (intrusive).
    ConnectRequest* queue_head = nullptr;
    ConnectRequest* queue_tail = nullptr;
    uint32_t queue_length = 0;
    uint32_t dispatched = 0;              // waiters woken for a freed slot, not yet resumed
    size_t next_source = 0;               // round-robin over cluster->source_addresses
    common::LogLimiter addr_warning_log;  // EADDRNOTAVAIL, per cluster
    // Sessions that hold this state (Session's constructor and destructor count them): a state
    // a reload replaced is freed once none is left.
    uint32_t users = 0;
};

// What the owner of a ConnectRequest hears back, exactly once per acquire() unless it abandons
// the request first.
class ConnectCallbacks {
  public:
    // req.fd is a connected socket to req.backend; the owner takes the fd. This call is the
    // connector's last touch of req (its ops are idle): the owner may destroy it here.
    virtual void on_upstream_ready(ConnectRequest& req) = 0;
    // No backend could be connected; `reason` is what the session's close is counted as.
    virtual void on_upstream_failed(ConnectRequest& req, CloseReason reason) = 0;
    // req has joined the cluster's queue (every eligible backend is full): the wait may last
    // queue.timeout, so the owner may watch its client meanwhile and abandon() req when the
    // client goes away. Not an answer: one of the two above still comes unless it abandons.
    virtual void on_upstream_queued(ConnectRequest&) {}

  protected:
    ~ConnectCallbacks() = default;
};

// A client's request for an upstream socket, held by its owner (a session) while it connects. The
// owner binds the two ops to itself (they are part of its op list, so its teardown waits for them)
// and forwards their completions to Connector::on_complete().
class ConnectRequest {
  public:
    engine::Op connect_op;
    engine::Op timer_op;  // out of fds: retry shortly; queued: the queue timeout

    // Valid after on_upstream_ready: the connected socket (owner takes it) and its backend;
    // for a cluster with `tls`, the stream a warm pool handshaked on it (null: the owner
    // handshakes).
    common::Fd fd;
    BackendState* backend = nullptr;
    std::unique_ptr<tls::Stream> tls;

    bool armed() const { return connect_op.armed() || timer_op.armed(); }

  private:
    friend class Connector;
    enum class State : uint8_t {
        kIdle,
        kPicking,
        kConnecting,
        kPoolWait,    // a pooled socket is being handed over
        kWaitingFd,   // timer_op: retry once fds free up
        kQueued,      // timer_op: the queue timeout
        kDispatched,  // left the queue; resumes when timer_op's cancel completes
        kResume,      // picks again when timer_op (0 ms) completes
        kReady,
        kFailed,
    };

    ClusterState* cluster_ = nullptr;
    ConnectCallbacks* callbacks_ = nullptr;
    PickContext context_;
    TriedSet tried_;
    unsigned attempts_ = 0;
    unsigned fd_retries_ = 0;
    uint64_t started_ns_ = 0;
    State state_ = State::kIdle;
    bool abandoned_ = false;
    bool from_queue_ = false;  // waited in the queue: first in line for a slot
    ConnectRequest* queue_next_ = nullptr;
    ConnectRequest* queue_prev_ = nullptr;
};

// The shard's side of the host: what the connector needs from its shard.
class ConnectorHost {
  public:
    // Out of fds: stop accepting new clients for a while.
    virtual void pause_accepting() = 0;
    // The shard's coarse clock (ms), read once per loop iteration.
    virtual uint64_t now_ms() const = 0;
    // Passive health (cluster eject_after > 0): a backend failed (a connect failed, or the
    // session ended in an error before the backend sent a byte), or served after failing.
    // Called only on a failure and on the first success after failures, off the fast path.
    virtual void report_outcome(const BackendState& /*backend*/, bool /*ok*/) {}

  protected:
    ~ConnectorHost() = default;
};

// Hands sessions connected upstream sockets (Envoy's TcpConnPool idea): picks a backend with the
// cluster's balancer, connects with the cluster's socket options, retries another backend on a
// refused, reset or timed-out connect (the owner only asks while no byte has been forwarded),
// enforces per-backend limits with a bounded wait queue, and counts every outcome per backend.
// One per shard, used only on the shard's thread.
class Connector {
  public:
    // `origin` keeps `clusters` alive (the snapshot they belong to).
    Connector(engine::Engine& engine, ConnectorHost& host, unsigned shards, unsigned shard_id,
              const std::vector<Cluster>& clusters, std::shared_ptr<const void> origin = nullptr);
    ~Connector();
    Connector(const Connector&) = delete;
    Connector& operator=(const Connector&) = delete;

    // Starts the warm pools (on the shard's thread, once its engine runs).
    void start();
    // Shutdown: closes pooled sockets; busy() until their ops have completed.
    void stop();
    bool busy() const;

    // The shard-local state of `cluster` (one of the clusters given at construction).
    ClusterState& state_of(const Cluster& cluster);
    // The current state of the cluster named `name`, or nullptr.
    ClusterState* state_named(std::string_view name);

    // A new configuration (a reload): a cluster whose settings did not change keeps its state
    // (balancer position, warm pool, limits, queue); any other gets a new state that carries on
    // the counters of the cluster and backends with the same names, and starts its warm pool.
    // Replaced and removed states stop their pools and are freed once no session holds them
    // (their sessions finish on them, with the backends they had). Returns how many states were
    // kept unchanged.
    size_t apply(const std::vector<Cluster>& clusters, std::shared_ptr<const void> origin);
    // The health checks' verdicts (from the control thread, by message): down backends are not
    // picked while another is usable; with none usable, cluster.when_all_down decides. Kept for
    // the states a later apply() creates.
    void set_health(std::shared_ptr<const HealthVerdicts> verdicts);
    // Frees replaced states that no session holds any more; cheap when there are none.
    void collect_retired();
    size_t retired_count() const { return retired_.size(); }
    const std::vector<std::unique_ptr<ClusterState>>& clusters() const { return clusters_; }

    // Starts finding an upstream socket for `req`. The answer comes through `callbacks`: from a
    // later completion of one of req's ops, or at once from inside this call when it fails
    // without trying (no backend, queue full).
    void acquire(ConnectRequest& req, ClusterState& cluster, const PickContext& context,
                 ConnectCallbacks& callbacks);
    // The owner forwards completions of req.connect_op and req.timer_op here.
    void on_request_op(ConnectRequest& req, engine::Op& op, const engine::Completion& c);
    // The owner gives up before an answer (client gone, shutdown): cancels what is armed and
    // leaves the queue. The ops' final completions still arrive through on_request_op(); the
    // owner closes req.fd once they have.
    void abandon(ConnectRequest& req);
    // The owner is done with the backend it was handed: frees its slot and may wake a waiter.
    // `backend_spoke`: the backend sent at least one byte (passive health: an error before
    // that counts against the backend).
    void release(BackendState& backend, CloseReason reason, bool backend_spoke = true);

  private:
    friend class WarmPool;

    void start_pools(ClusterState& cluster);
    void try_next(ConnectRequest& req);
    void start_connect(ConnectRequest& req, BackendState& backend);
    // Every eligible backend is full: the queue, or queue_full when it has no room.
    void wait_or_refuse(ConnectRequest& req);
    // Reserves `backend` for req (its slot, the balancer's count).
    void claim(ConnectRequest& req, BackendState& backend);
    // A socket to `backend` with the cluster's options (source address, port range, keepalive).
    common::Fd open_socket(BackendState& backend, std::error_code& ec);
    // A pooled socket for req, from WarmPool; or the socket died during the hand-over.
    void pool_ready(ConnectRequest& req, common::Fd fd, std::unique_ptr<tls::Stream> tls);
    void pool_failed(ConnectRequest& req);
    void on_connect_result(ConnectRequest& req, int res);
    void attach(ClusterState& cluster, BackendState& backend);
    void detach(ClusterState& cluster, BackendState& backend);
    void fail(ConnectRequest& req, CloseReason reason);
    void enqueue(ConnectRequest& req);
    void dequeue(ConnectRequest& req);
    void dispatch_queue(ClusterState& cluster);
    void warn_addr_not_avail(ClusterState& cluster, const BackendState& backend);
    void apply_health(ClusterState& cluster);
    // slow_start: the pick `index` stands, or another backend replaces it (-1: keep it).
    int slow_start_repick(ClusterState& cluster, int index, const PickContext& context,
                          TriedSet& exclude);
    void report(BackendState& backend, bool ok);

    engine::Engine& engine_;
    ConnectorHost& host_;
    unsigned shards_;
    uint64_t shard_id_;
    bool started_ = false;
    std::vector<std::unique_ptr<ClusterState>> clusters_;
    std::vector<std::unique_ptr<ClusterState>> retired_;
    std::shared_ptr<const HealthVerdicts> health_;
    FastRng rng_;  // slow_start's draws
};

}  // namespace ringlb::upstream
