#include "proxy/upstream/connector.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/fd_reserve.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"

namespace ringlb::upstream {

namespace {

// Waiting for a free fd: 40 x 50 ms, then the client is closed.
constexpr unsigned kMaxFdRetries = 40;
constexpr engine::Millis kFdRetryDelay{50};

}  // namespace

void apply_tcp_options(int fd, const config::TcpKeepalive& keepalive, config::Millis user_timeout) {
    // Best effort: the values were validated at load time, and a refused option must not cost
    // the client its connection.
    if (keepalive.enabled) {
        using std::chrono::duration_cast;
        using std::chrono::seconds;
        common::set_keepalive(fd, static_cast<int>(duration_cast<seconds>(keepalive.idle).count()),
                              static_cast<int>(duration_cast<seconds>(keepalive.interval).count()),
                              static_cast<int>(keepalive.count));
    }
    if (user_timeout.count() > 0)
        common::set_user_timeout(fd, static_cast<unsigned>(user_timeout.count()));
}

ClusterState::ClusterState(const Cluster& c, unsigned shards, uint64_t seed,
                           const ClusterState* previous)
    : cluster(&c),
      balancer(make_balancer(c, seed)),
      counters_owner(previous ? previous->counters_owner : std::make_shared<ClusterCounters>()),
      counters(*counters_owner) {
    backends.reserve(c.backends.size());
    for (size_t i = 0; i < c.backends.size(); ++i) {
        std::shared_ptr<BackendCounters> shared;
        if (previous) {
            for (const BackendState& old : previous->backends)
                if (old.backend->name == c.backends[i].name) shared = old.counters_owner;
        }
        BackendState& b = backends.emplace_back(std::move(shared));
        b.backend = &c.backends[i];
        b.index = i;
        b.cluster = this;
        uint32_t max = c.settings->backends[i].max_connections;
        // Each shard takes an equal share, rounded up so a limit below the shard count still
        // admits one session per shard: the total may exceed max by at most shards - 1.
        b.limit = max == 0 ? 0 : (max + shards - 1) / shards;
        if (b.limit != 0) has_limits = true;
        if (!b.backend->drained) ++up_usable;
    }
}

Connector::Connector(engine::Engine& engine, ConnectorHost& host, unsigned shards,
                     unsigned shard_id, const std::vector<Cluster>& clusters,
                     std::shared_ptr<const void> origin)
    : engine_(engine),
      host_(host),
      shards_(shards == 0 ? 1 : shards),
      shard_id_(shard_id),
      rng_(0xd1b54a32d192ed03ull * (shard_id + 1)) {
    clusters_.reserve(clusters.size());
    for (size_t i = 0; i < clusters.size(); ++i) {
        // Per-shard seeds: random policies on different shards must not move in lockstep.
        uint64_t seed = 0x9e3779b97f4a7c15ull * (shard_id + 1) + i;
        clusters_.push_back(std::make_unique<ClusterState>(clusters[i], shards_, seed));
        clusters_.back()->origin = origin;
    }
}

ClusterState* Connector::state_named(std::string_view name) {
    for (auto& c : clusters_)
        if (c->cluster->name == name) return c.get();
    return nullptr;
}

size_t Connector::apply(const std::vector<Cluster>& clusters, std::shared_ptr<const void> origin) {
    std::vector<std::unique_ptr<ClusterState>> next;
    next.reserve(clusters.size());
    size_t kept = 0;
    for (size_t i = 0; i < clusters.size(); ++i) {
        const Cluster& c = clusters[i];
        auto old = std::find_if(clusters_.begin(), clusters_.end(), [&](const auto& state) {
            return state && state->cluster->name == c.name;
        });
        if (old != clusters_.end() && (*old)->cluster->same_as(c)) {
            next.push_back(std::move(*old));  // still points at its own (equal) Cluster
            ++kept;
            continue;
        }
        uint64_t seed = 0x9e3779b97f4a7c15ull * (shard_id_ + 1) + i + 0x51ed27 * retired_.size();
        auto state = std::make_unique<ClusterState>(c, shards_, seed,
                                                    old != clusters_.end() ? old->get() : nullptr);
        state->origin = origin;
        apply_health(*state);
        if (started_) start_pools(*state);
        next.push_back(std::move(state));
    }
    for (auto& old : clusters_) {
        if (!old) continue;
        for (BackendState& b : old->backends)
            if (b.pool) b.pool->stop();
        retired_.push_back(std::move(old));
    }
    clusters_ = std::move(next);
    collect_retired();
    return kept;
}

void Connector::set_health(std::shared_ptr<const HealthVerdicts> verdicts) {
    health_ = std::move(verdicts);
    for (auto& cs : clusters_) apply_health(*cs);
}

void Connector::apply_health(ClusterState& cs) {
    cs.down_count = 0;
    cs.up_usable = 0;
    cs.slow_starting = 0;
    uint64_t window = static_cast<uint64_t>(cs.cluster->settings->slow_start.count());
    uint64_t now = host_.now_ms();
    for (BackendState& b : cs.backends) {
        b.down = health_ && health_->is_down(cs.cluster->name, b.backend->name);
        if (b.down) ++cs.down_count;
        if (!b.down && !b.backend->drained) ++cs.up_usable;
        uint64_t since = health_ && window > 0 && !b.down
                             ? health_->recovered_at(cs.cluster->name, b.backend->name)
                             : 0;
        b.recovering_since_ms = since != 0 && now < since + window ? since : 0;
        if (b.recovering_since_ms != 0) ++cs.slow_starting;
    }
}

int Connector::slow_start_repick(ClusterState& cs, int index, const PickContext& context,
                                 TriedSet& exclude) {
    BackendState& b = cs.backends[static_cast<size_t>(index)];
    if (b.recovering_since_ms == 0) return -1;
    uint64_t window = static_cast<uint64_t>(cs.cluster->settings->slow_start.count());
    uint64_t elapsed = host_.now_ms() - std::min(host_.now_ms(), b.recovering_since_ms);
    if (elapsed >= window) {
        b.recovering_since_ms = 0;
        --cs.slow_starting;
        return -1;
    }
    // Keep the pick with probability elapsed / window, so the backend's share grows linearly
    // from 0 to its full one over the window, whatever the policy picked it for; otherwise
    // the balancer picks again without it (and falls back to it when nothing else is left).
    if (rng_.below(window) < elapsed) return -1;
    exclude.insert(b.index);
    return cs.balancer->pick(context, exclude);
}

void Connector::report(BackendState& b, bool ok) {
    if (b.cluster->cluster->settings->eject_after == 0) return;
    if (ok) {
        if (b.failure_streak == 0) return;
        b.failure_streak = 0;
    } else {
        ++b.failure_streak;
    }
    host_.report_outcome(b, ok);
}

void Connector::collect_retired() {
    std::erase_if(retired_, [](const std::unique_ptr<ClusterState>& state) {
        if (state->users != 0 || state->queue_head != nullptr || state->dispatched != 0)
            return false;
        for (const BackendState& b : state->backends)
            if (b.active != 0 || (b.pool && b.pool->busy())) return false;
        return true;
    });
}

Connector::~Connector() = default;

ClusterState& Connector::state_of(const Cluster& cluster) {
    for (auto& c : clusters_)
        if (c->cluster == &cluster) return *c;
    // Clusters come from the snapshot the connector was built from; anything else is a bug.
    LOG_ERROR("connector: unknown cluster %s", cluster.name.c_str());
    return *clusters_.front();
}

void Connector::acquire(ConnectRequest& req, ClusterState& cluster, const PickContext& context,
                        ConnectCallbacks& callbacks) {
    req.cluster_ = &cluster;
    req.callbacks_ = &callbacks;
    req.context_ = context;
    req.tried_ = TriedSet(cluster.backends.size());
    req.attempts_ = 0;
    req.fd_retries_ = 0;
    req.from_queue_ = false;
    req.state_ = ConnectRequest::State::kPicking;
    try_next(req);
}

void Connector::try_next(ConnectRequest& req) {
    ClusterState& cs = *req.cluster_;
    const config::ClusterConfig& cluster = *cs.cluster->settings;
    size_t count = cs.backends.size();
    if (req.attempts_ > cluster.retries || req.tried_.count() >= count) {
        fail(req, CloseReason::k_no_backend);
        return;
    }
    // Oldest first: while clients wait for a slot (queued, or woken and about to take one), a
    // newcomer queues behind them instead of taking a slot that freed for them.
    if (cs.has_limits && !req.from_queue_ && req.attempts_ == 0 &&
        (cs.queue_length > 0 || cs.dispatched > 0)) {
        wait_or_refuse(req);
        return;
    }
    // Backends at their limit are excluded from this pick, like those already tried.
    TriedSet exclude = req.tried_;
    if (cs.cluster->any_drained) {
        for (const BackendState& b : cs.backends)
            if (b.backend->drained) exclude.insert(b.index);
    }
    if (cs.down_count > 0) {
        if (cs.up_usable > 0) {
            for (const BackendState& b : cs.backends)
                if (b.down) exclude.insert(b.index);
        } else if (req.attempts_ == 0) {
            // Every backend is down: the checks may be wrong (a checked port that differs from
            // the served one, a network blip on the control thread's path), so by default the
            // connect is tried anyway, like HAProxy's and Envoy's panic mode.
            cs.counters.all_down.add();
            if (cluster.when_all_down == config::WhenAllDown::kFail) {
                fail(req, CloseReason::k_no_backend);
                return;
            }
        } else if (cluster.when_all_down == config::WhenAllDown::kFail) {
            fail(req, CloseReason::k_no_backend);
            return;
        }
    }
    bool any_full = false;
    if (cs.has_limits) {
        for (BackendState& b : cs.backends) {
            if (b.full() && !req.tried_.contains(b.index)) {
                exclude.insert(b.index);
                any_full = true;
            }
        }
    }
    int index = cs.balancer->pick(req.context_, exclude);
    if (index >= 0 && cs.slow_starting > 0) {
        int other = slow_start_repick(cs, index, req.context_, exclude);
        if (other >= 0) index = other;
    }
    if (index < 0) {
        if (any_full)
            wait_or_refuse(req);
        else
            fail(req, CloseReason::k_no_backend);
        return;
    }
    BackendState& b = cs.backends[static_cast<size_t>(index)];
    if (b.pool) {
        if (b.pool->take(req)) {
            // The connect is off the client's path; the hand-over completes from the loop.
            req.tried_.insert(b.index);
            ++req.attempts_;
            claim(req, b);
            req.state_ = ConnectRequest::State::kPoolWait;
            return;
        }
        b.counters.pool_misses.add();
    }
    start_connect(req, b);
}

void Connector::wait_or_refuse(ConnectRequest& req) {
    ClusterState& cs = *req.cluster_;
    const config::QueueConfig& queue = cs.cluster->settings->queue;
    if (queue.size > 0 && cs.queue_length < queue.size && !req.timer_op.armed()) {
        enqueue(req);
    } else {
        cs.counters.queue_full.add();
        fail(req, CloseReason::k_queue_full);
    }
}

void Connector::claim(ConnectRequest& req, BackendState& b) {
    ClusterState& cs = *req.cluster_;
    // Counted only when another backend is really tried, not for the attempt that gives up.
    if (req.attempts_ > 1) cs.counters.retries.add();
    attach(cs, b);
    req.backend = &b;
}

void Connector::start_connect(ConnectRequest& req, BackendState& b) {
    ClusterState& cs = *req.cluster_;
    const config::ClusterConfig& cluster = *cs.cluster->settings;
    const Backend& backend = *b.backend;
    req.tried_.insert(b.index);
    ++req.attempts_;
    std::error_code ec;
    // This socket may take an fd of the reserve (common/fd_reserve.hpp), unlike
    // pooled sockets and pipes: the client is already ours and needs exactly one, and accepting
    // stops once a client's fd lands in the reserve.
    common::Fd fd = open_socket(b, ec);
    if (!fd) {
        if ((ec.value() == EMFILE || ec.value() == ENFILE) && req.fd_retries_ < kMaxFdRetries &&
            !req.timer_op.armed()) {
            // The client is already ours: keep it and try again once fds free up, instead of
            // dropping it. Accepting pauses meanwhile, so no further client meets the same fate.
            ++req.fd_retries_;
            --req.attempts_;
            req.tried_.erase(b.index);
            req.state_ = ConnectRequest::State::kWaitingFd;
            host_.pause_accepting();
            engine_.timer(req.timer_op, kFdRetryDelay);
            return;
        }
        ConnectFailure failure = classify_connect_error(ec.value());
        b.counters.connect_failures[static_cast<size_t>(failure)].add();
        if (failure == ConnectFailure::k_addr_not_avail) {
            // A source address that cannot be bound: another backend may still work.
            warn_addr_not_avail(cs, b);
            try_next(req);
            return;
        }
        fail(req, CloseReason::k_no_backend);
        return;
    }
    cs.counters.connects.add();
    claim(req, b);
    req.fd = std::move(fd);
    req.state_ = ConnectRequest::State::kConnecting;
    req.started_ns_ = common::monotonic_ns();
    engine_.connect(req.connect_op, req.fd.get(), backend.address.sa(), backend.address.length,
                    cluster.connect_timeout);
}

common::Fd Connector::open_socket(BackendState& b, std::error_code& ec) {
    const config::ClusterConfig& cluster = *b.cluster->cluster->settings;
    const Backend& backend = *b.backend;
    common::Fd fd = common::tcp_socket(backend.address.family(), ec);
    if (fd && common::fd_in_control_spares(fd.get())) {
        // The slot of a spare the admin endpoint just gave up to accept (common/fd_reserve.hpp).
        fd.reset();
        ec = std::error_code(EMFILE, std::system_category());
    }
    // A unix socket has none of TCP's options and no source address to choose.
    if (!fd || backend.address.family() == AF_UNIX) return fd;
    common::set_nodelay(fd.get());
    apply_tcp_options(fd.get(), cluster.tcp_keepalive, cluster.tcp_user_timeout);
    if (cluster.source_port_min != 0)
        common::set_local_port_range(fd.get(), cluster.source_port_min, cluster.source_port_max);
    if (!cluster.source_addresses.empty()) {
        // Round-robin over the source addresses of the backend's family (the config guarantees
        // there is one).
        ClusterState& cs = *b.cluster;
        size_t n = cluster.source_addresses.size();
        for (size_t k = 0; k < n; ++k) {
            const common::Address& a = cluster.source_addresses[(cs.next_source + k) % n];
            if (a.family() != backend.address.family()) continue;
            cs.next_source = (cs.next_source + k + 1) % n;
            ec = common::bind_source(fd.get(), a);
            if (ec) fd.reset();
            break;
        }
    }
    return fd;
}

void Connector::pool_failed(ConnectRequest& req) {
    // The pooled socket died during the hand-over: give back its slot and pick again, from the
    // request's own timer (this runs inside the pool's completion, not the owner's).
    BackendState& b = *req.backend;
    req.backend = nullptr;
    req.tried_.erase(b.index);
    --req.attempts_;
    detach(*req.cluster_, b);
    req.state_ = ConnectRequest::State::kResume;
    engine_.timer(req.timer_op, engine::Millis{0});
}

void Connector::pool_ready(ConnectRequest& req, common::Fd fd, std::unique_ptr<tls::Stream> tls) {
    req.fd = std::move(fd);
    req.tls = std::move(tls);
    req.backend->counters.connections.add();
    req.state_ = ConnectRequest::State::kReady;
    req.callbacks_->on_upstream_ready(req);
}

void Connector::start() {
    started_ = true;
    for (auto& cs : clusters_) start_pools(*cs);
}

void Connector::start_pools(ClusterState& cs) {
    const config::PoolConfig& pool = cs.cluster->settings->pool;
    if (pool.warm == 0) return;
    for (BackendState& b : cs.backends) {
        if (b.backend->drained) continue;  // nobody would take its sockets
        b.pool = std::make_unique<WarmPool>(*this, b, pool.warm,
                                            static_cast<uint64_t>(pool.max_idle.count()));
        b.pool->fill();
    }
}

void Connector::stop() {
    for (const auto* list : {&clusters_, &retired_})
        for (auto& cs : *list)
            for (BackendState& b : cs->backends)
                if (b.pool) b.pool->stop();
}

bool Connector::busy() const {
    for (const auto* list : {&clusters_, &retired_})
        for (const auto& cs : *list)
            for (const BackendState& b : cs->backends)
                if (b.pool && b.pool->busy()) return true;
    return false;
}

void Connector::on_request_op(ConnectRequest& req, engine::Op& op, const engine::Completion& c) {
    if (&op == &req.connect_op) {
        on_connect_result(req, c.res);
        return;
    }
    // The timer: a queue timeout, an fd retry, or a queued request woken by a freed slot (its
    // timer is cancelled so that it resumes here, from the event loop).
    if (req.abandoned_) return;
    if (req.state_ == ConnectRequest::State::kDispatched) {
        --req.cluster_->dispatched;
        req.from_queue_ = true;
        req.state_ = ConnectRequest::State::kPicking;
        try_next(req);
        return;
    }
    if (req.state_ == ConnectRequest::State::kResume) {
        req.state_ = ConnectRequest::State::kPicking;
        try_next(req);
        return;
    }
    if (c.res != 0) return;
    if (req.state_ == ConnectRequest::State::kQueued) {
        dequeue(req);
        req.cluster_->counters.queue_timeouts.add();
        fail(req, CloseReason::k_queue_timeout);
    } else if (req.state_ == ConnectRequest::State::kWaitingFd) {
        req.state_ = ConnectRequest::State::kPicking;
        try_next(req);
    }
}

void Connector::on_connect_result(ConnectRequest& req, int res) {
    BackendState& b = *req.backend;
    ClusterState& cs = *req.cluster_;
    if (res == 0 && !req.abandoned_) {
        uint64_t elapsed = common::monotonic_ns() - req.started_ns_;
        cs.counters.connect_duration.observe(elapsed);
        cs.balancer->observe_connect(b.index, std::chrono::nanoseconds(elapsed));
        b.counters.connections.add();
        req.state_ = ConnectRequest::State::kReady;
        req.callbacks_->on_upstream_ready(req);
        return;
    }
    if (res != 0) {
        ConnectFailure failure = classify_connect_error(-res);
        // A connect cancelled because its owner left is not the backend's fault.
        if (!(req.abandoned_ && res == -ECANCELED)) {
            b.counters.connect_failures[static_cast<size_t>(failure)].add();
            cs.balancer->observe_connect_failure(b.index);
            // Out of source ports or fds is ringlb's problem, not the backend's.
            if (failure != ConnectFailure::k_addr_not_avail && failure != ConnectFailure::k_no_fd)
                report(b, false);
        }
        LOG_DEBUG("cluster %s: connect to %s failed: %s", cs.cluster->name.c_str(),
                  b.backend->name.c_str(), std::strerror(-res));
        if (failure == ConnectFailure::k_addr_not_avail) warn_addr_not_avail(cs, b);
    }
    if (req.fd) engine_.close_fd(req.fd.release());
    req.backend = nullptr;
    detach(cs, b);
    if (req.abandoned_) return;
    // No byte has moved yet, so another backend is safe to try.
    req.state_ = ConnectRequest::State::kPicking;
    try_next(req);
}

void Connector::abandon(ConnectRequest& req) {
    if (req.abandoned_ || req.state_ == ConnectRequest::State::kIdle) return;
    req.abandoned_ = true;
    if (req.state_ == ConnectRequest::State::kQueued) dequeue(req);
    if (req.state_ == ConnectRequest::State::kDispatched) {
        // The slot it was woken for goes to the next waiter.
        --req.cluster_->dispatched;
        req.state_ = ConnectRequest::State::kPicking;
        dispatch_queue(*req.cluster_);
    }
    if (req.state_ == ConnectRequest::State::kPoolWait && req.backend) {
        req.backend->pool->forget(req);
        detach(*req.cluster_, *req.backend);
        req.backend = nullptr;
    }
    if (req.connect_op.armed()) engine_.cancel(req.connect_op);
    if (req.timer_op.armed()) engine_.cancel(req.timer_op);
}

void Connector::release(BackendState& b, CloseReason reason, bool backend_spoke) {
    b.counters.closes[static_cast<size_t>(reason)].add();
    // A backend that accepts and resets (or closes on error) before saying anything fails like
    // one that refuses; a session it served counts as a success. Timeouts, drains and stops
    // say nothing about the backend.
    // A backend whose TLS handshake fails (a certificate that does not verify) serves nobody.
    if ((reason == CloseReason::k_error || reason == CloseReason::k_tls_handshake) &&
        !backend_spoke)
        report(b, false);
    else if (reason == CloseReason::k_done || backend_spoke)
        report(b, true);
    detach(*b.cluster, b);
}

void Connector::attach(ClusterState& cs, BackendState& b) {
    ++b.active;
    b.counters.active_connections.add();
    cs.balancer->attach(b.index);
}

void Connector::detach(ClusterState& cs, BackendState& b) {
    --b.active;
    b.counters.active_connections.sub();
    cs.balancer->detach(b.index);
    if (cs.queue_length > 0 && !b.full()) dispatch_queue(cs);
}

void Connector::fail(ConnectRequest& req, CloseReason reason) {
    ClusterState& cs = *req.cluster_;
    if (reason == CloseReason::k_no_backend) {
        cs.counters.no_backend.add();
        LOG_DEBUG("cluster %s: no backend could be connected after %u attempts",
                  cs.cluster->name.c_str(), req.attempts_);
    }
    req.state_ = ConnectRequest::State::kFailed;
    req.callbacks_->on_upstream_failed(req, reason);
}

void Connector::enqueue(ConnectRequest& req) {
    ClusterState& cs = *req.cluster_;
    req.state_ = ConnectRequest::State::kQueued;
    req.queue_prev_ = cs.queue_tail;
    req.queue_next_ = nullptr;
    if (cs.queue_tail)
        cs.queue_tail->queue_next_ = &req;
    else
        cs.queue_head = &req;
    cs.queue_tail = &req;
    ++cs.queue_length;
    cs.counters.queued.add();
    cs.counters.queue_length.add();
    engine_.timer(req.timer_op, cs.cluster->settings->queue.timeout);
    req.callbacks_->on_upstream_queued(req);
}

void Connector::dequeue(ConnectRequest& req) {
    ClusterState& cs = *req.cluster_;
    if (req.queue_prev_)
        req.queue_prev_->queue_next_ = req.queue_next_;
    else
        cs.queue_head = req.queue_next_;
    if (req.queue_next_)
        req.queue_next_->queue_prev_ = req.queue_prev_;
    else
        cs.queue_tail = req.queue_prev_;
    req.queue_next_ = req.queue_prev_ = nullptr;
    --cs.queue_length;
    cs.counters.queue_length.sub();
    req.state_ = ConnectRequest::State::kPicking;
}

void Connector::dispatch_queue(ClusterState& cs) {
    // As many waiters as there are free slots, oldest first. They are not answered from here
    // (this runs inside another session's teardown): cancelling a waiter's timer makes it resume
    // from its own completion, on the event loop.
    uint64_t free = 0;
    for (const BackendState& b : cs.backends) {
        if (b.limit == 0) {
            free = cs.queue_length + cs.dispatched;
            break;
        }
        if (b.active < b.limit) free += b.limit - b.active;
    }
    // Slots already promised to woken waiters are not free.
    free = free > cs.dispatched ? free - cs.dispatched : 0;
    for (ConnectRequest* req = cs.queue_head; req && free > 0; --free) {
        ConnectRequest* next = req->queue_next_;
        dequeue(*req);
        req->state_ = ConnectRequest::State::kDispatched;
        ++cs.dispatched;
        engine_.cancel(req->timer_op);
        req = next;
    }
}

void Connector::warn_addr_not_avail(ClusterState& cs, const BackendState& b) {
    LOG_WARN_LIMITED(
        cs.addr_warning_log, host_.now_ms(),
        "cluster %s: no free source port to reach %s (EADDRNOTAVAIL): connections in TIME_WAIT "
        "hold the ports. Widen net.ipv4.ip_local_port_range or source_port_range, add "
        "source_addresses, set net.ipv4.tcp_tw_reuse = 1, or use close = \"reset\" (see "
        "deploy/sysctl/ringlb.conf); logged at most every 10 s",
        cs.cluster->name.c_str(), b.backend->name.c_str());
}

}  // namespace ringlb::upstream
