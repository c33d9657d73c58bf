#include "proxy/shard/shard.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include "common/clock.hpp"
#include "common/fd_reserve.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"
#include "proxy/shard/access_log.hpp"
#include "proxy/shard/session.hpp"

namespace ringlb::shard {

namespace {
constexpr engine::Millis kEmfilePause{100};
constexpr engine::Millis kLoopWait{1000};
// close_sessions() closes tick/window of the sessions per tick (1% over a 1 s window, 0.2% over
// the default 5 s), at the cost of one timer and one walk of the session list per tick.
constexpr engine::Millis kSpreadTick{10};
constexpr int kStarting = 0;
constexpr int kRunning = 1;
constexpr int kFailed = 2;

}  // namespace

Shard::Shard(ShardOptions options, std::shared_ptr<const Snapshot> snapshot,
             std::vector<common::Fd> listeners)
    : options_(std::move(options)),
      snapshot_(std::move(snapshot)),
      pipes_(options_.pipe_pool, options_.pipe_size),
      timers_(common::coarse_monotonic_ms()),
      random_state_(0x2545f4914f6cdd1dull ^ (uint64_t{options_.id} << 32) ^
                    common::coarse_monotonic_ms()) {
    for (size_t i = 0; i < listeners.size(); ++i) {
        const config::ListenerConfig& cfg = snapshot_->config->listeners[i];
        listeners_.push_back(std::make_unique<Listener>(*this, std::move(listeners[i]), snapshot_,
                                                        cfg, counters_for(cfg.name),
                                                        admission_for(cfg)));
    }
    pause_timer_.bind(this, kPauseTimer);
    spread_timer_.bind(this, kSpreadTimer);
}

Shard::~Shard() {
    request_stop();
    join();
}

std::string Shard::start() {
    std::string error;
    std::atomic<int> state{kStarting};
    thread_ = std::thread([this, &error, &state] { run(error, state); });
    state.wait(kStarting);
    if (state.load() == kFailed) {
        thread_.join();
        return error;
    }
    return {};
}

void Shard::request_stop() {
    if (stop_.exchange(true)) return;
    // engine_ is published before the thread reports kRunning and lives until the thread ends.
    if (thread_.joinable() && engine_) engine_->wake();
}

void Shard::post(Message message) {
    mailbox_.post(std::move(message));
    // As in request_stop(): a shard not yet running reads its mailbox once it does.
    if (thread_.joinable() && engine_) engine_->wake();
}

void Shard::join() {
    if (thread_.joinable()) thread_.join();
}

void Shard::run(std::string& error, std::atomic<int>& state) {
    if (options_.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(options_.cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
            LOG_WARN("shard %u: cannot pin to CPU %d", options_.id, options_.cpu);
    }
    std::unique_ptr<engine::Engine> engine;
    try {
        // Created on this thread: an io_uring with SINGLE_ISSUER/DEFER_TASKRUN belongs to the
        // thread that submits to it.
        engine = engine::make_engine(options_.engine, options_.engine_params);
    } catch (const std::exception& e) {
        error = "shard " + std::to_string(options_.id) + ": cannot create engine: " + e.what();
        state.store(kFailed);
        state.notify_all();
        return;
    }
    start_on(std::move(engine));
    state.store(kRunning);
    state.notify_all();
    while (!stop_.load(std::memory_order_acquire)) run_once(kLoopWait);
    stop_here();
}

void Shard::start_on(std::unique_ptr<engine::Engine> engine) {
    engine_ = std::move(engine);
    connector_ = std::make_unique<upstream::Connector>(*engine_, *this, options_.shards,
                                                       options_.id, snapshot_->clusters, snapshot_);
    for (auto& l : listeners_)
        l->cluster = &connector_->state_of(snapshot_->clusters[l->config->cluster_index]);
    connector_->start();
    layout_ = build_layout();
    for (auto& l : listeners_) arm_accept(*l);
}

std::shared_ptr<const ShardLayout> Shard::build_layout() const {
    auto layout = std::make_shared<ShardLayout>();
    for (const auto& l : listeners_) layout->listeners.push_back({l->config->name, l->counters});
    for (const auto& state : connector_->clusters()) {
        ShardLayout::Cluster& c = layout->clusters.emplace_back();
        c.name = state->cluster->name;
        c.counters = state->counters_owner;
        for (const upstream::BackendState& b : state->backends) {
            c.backends.push_back({b.backend->name, b.backend->weight,
                                  state->cluster->settings->backends[b.index].max_connections,
                                  b.limit, b.backend->drained, b.counters_owner});
        }
    }
    return layout;
}

void Shard::run_once(engine::Millis max_wait) {
    uint64_t now = common::coarse_monotonic_ms();
    timers_.advance(now);
    engine::Millis wait = max_wait;
    if (auto next = timers_.next_expiry();
        next && *next < now + static_cast<uint64_t>(wait.count()))
        wait = engine::Millis(*next > now ? *next - now : 0);
    engine_->run_once(wait);
    for (Message& message : mailbox_.take()) message(*this);
    if (!closing_listeners_.empty()) {
        std::erase_if(closing_listeners_,
                      [](const auto& l) { return !l->fd && !l->accept_op.armed(); });
    }
}

void Shard::stop_here() {
    stopping_ = true;
    if (options_.access_log) options_.access_log->stopping();  // the aborted sessions are logged
    for (auto& l : listeners_) engine_->cancel(l->accept_op);
    engine_->cancel(pause_timer_);
    engine_->cancel(spread_timer_);
    shutdown_sessions();
    connector_->stop();
    // Bounded: every op was cancelled, so completions arrive promptly.
    for (int i = 0; i < 500; ++i) {
        bool busy = sessions_ != nullptr || pause_timer_.armed() || spread_timer_.armed() ||
                    connector_->busy() ||
                    std::any_of(listeners_.begin(), listeners_.end(),
                                [](const auto& l) { return l->accept_op.armed(); });
        if (!busy) break;
        engine_->run_once(engine::Millis{10});
    }
    for (auto& l : closing_listeners_) engine_->cancel(l->accept_op);
    for (int i = 0; i < 100 && !closing_listeners_.empty(); ++i) {
        std::erase_if(closing_listeners_, [](const auto& l) { return !l->accept_op.armed(); });
        if (!closing_listeners_.empty()) engine_->run_once(engine::Millis{10});
    }
    for (auto& l : listeners_) l->fd.reset();
    if (options_.access_log) options_.access_log->hand_off();
}

uint64_t Shard::now_ms() const {
    return common::coarse_monotonic_ms();
}

void Shard::report_outcome(const upstream::BackendState& backend, bool ok) {
    if (options_.report_outcome)
        options_.report_outcome(backend.cluster->cluster->name, backend.backend->name, ok);
}

size_t Shard::session_count() const {
    size_t n = 0;
    for (const Session* s = sessions_; s != nullptr; s = s->next) ++n;
    return n;
}

std::vector<Session*> Shard::sessions() const {
    std::vector<Session*> out;
    for (Session* s = sessions_; s != nullptr; s = s->next) out.push_back(s);
    return out;
}

uint64_t Shard::random() {
    random_state_ ^= random_state_ >> 12;
    random_state_ ^= random_state_ << 25;
    random_state_ ^= random_state_ >> 27;
    return random_state_ * 0x2545f4914f6cdd1dull;
}

void Shard::arm_accept(Listener& l) {
    if (!l.accept_op.armed() && !l.closing) engine_->accept(l.accept_op, l.fd.get());
}

void Shard::on_complete(engine::Op& op, const engine::Completion& c) {
    // The shard's own timers; accepts go to their Listener.
    if (op.tag() == kSpreadTimer) {
        if (c.res == 0 && !stopping_) close_due_sessions();
        return;
    }
    if (c.res != 0 || stopping_ || !accept_paused_) return;
    // Accept again only once a new fd would land below the reserve: resuming regardless took
    // one more client into the reserve every pause (and, out of fds altogether, armed an accept
    // only to fail and log again ten times a second).
    if (common::fd_below_reserve_free())
        resume_accepting();
    else
        engine_->timer(pause_timer_, kEmfilePause);
}

void Shard::on_accept(Listener& l, const engine::Completion& c) {
    if (c.res >= 0) {
        common::Fd client(c.res);
        if (stopping_) return;
        if (l.closing) ++l.taken;  // delivered after the cancel: served like the queued ones
        // The kernel hands out the lowest free fd: this one in the reserve means the data path
        // has used its share. The client is already ours and is kept (its upstream socket may
        // take a reserve fd too); no further one is taken. (io_uring's multishot accept may
        // already have taken more from the listen queue, up to EMFILE; the admin endpoint keeps
        // spare fds of its own for that case.)
        bool last = common::fd_in_reserve(client.get());
        start_session(l, std::move(client));
        if (last) pause_accepting();
    }
    if (c.more()) return;
    if (l.closing) {
        // The op is over (cancelled, or ended by an error): nothing refers to the socket now.
        finish_close(l);
        return;
    }
    if (stopping_) return;
    switch (-c.res) {
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            pause_accepting();
            break;
        case ECANCELED:
            if (!accept_paused_) arm_accept(l);
            break;
        default:
            if (c.res < 0) {
                counters_.accept_errors.add();
                LOG_WARN_LIMITED(l.accept_error_log, now_ms(), "listener %s: accept: %s",
                                 l.config->name.c_str(), std::strerror(-c.res));
            }
            // Transient (ECONNABORTED, EPROTO, ...) or a multishot that simply ended.
            if (!accept_paused_) arm_accept(l);
            break;
    }
}

void Shard::start_session(Listener& l, common::Fd client) {
    counters_.accepted.add();
    l.counters->connections.add();
    Admission::Ticket ticket;
    if (std::optional<RejectReason> refused = l.admission->admit(ticket)) {
        reject(l, std::move(client), *refused, nullptr);
        return;
    }
    // With proxy_protocol the client is the header's source: the session asks once it has
    // read it. Otherwise the peer, looked up only when allow, deny or a per-source limit needs
    // it, so that a listener without them pays no syscall here.
    if (l.admission->needs_source() && l.config->proxy_protocol == config::ProxyProtocol::kNone) {
        common::Address peer = common::peer_address(client.get());
        if (peer.length == 0) {
            // ENOTCONN: the client has gone already (reset before we got here).
            engine_->close_fd(client.release());
            return;
        }
        if (std::optional<RejectReason> refused =
                l.admission->admit_source(*l.config, peer, now_ms(), ticket)) {
            reject(l, std::move(client), *refused, &peer);
            return;
        }
    }
    if (l.config->bind.family() != AF_UNIX)  // a unix client has none of TCP's options
        upstream::apply_tcp_options(client.get(), l.config->tcp_keepalive,
                                    l.config->tcp_user_timeout);
    auto owned =
        std::make_unique<Session>(*this, std::move(client), l.snapshot, *l.config, *l.counters,
                                  *l.cluster, *l.admission, std::move(ticket));
    Session* session = owned.release();  // owned by the intrusive list until session_closed
    session->next = sessions_;
    if (sessions_) sessions_->prev = session;
    sessions_ = session;
    session->start();  // may already have closed (and freed) the session
}

void Shard::reject(Listener& l, common::Fd client, RejectReason reason,
                   const common::Address* peer) {
    note_rejection(*l.config, *l.counters, peer, reason, now_ms());
    if (l.config->reject == config::ClosePolicy::kReset) common::set_linger_zero(client.get());
    engine_->close_fd(client.release());
}

Admission& Shard::admission_for(const config::ListenerConfig& cfg) {
    auto it = admissions_.find(cfg.name);
    if (it == admissions_.end())
        it = admissions_.emplace(cfg.name, std::make_unique<Admission>(random())).first;
    it->second->configure(cfg, options_.shards);
    return *it->second;
}

ListenerCounters& Shard::counters_for(const std::string& name) {
    auto it = listener_counters_.find(name);
    if (it == listener_counters_.end())
        it = listener_counters_.emplace(name, std::make_unique<ListenerCounters>()).first;
    return *it->second;
}

void Shard::set_health(std::shared_ptr<const upstream::HealthVerdicts> verdicts) {
    connector_->set_health(std::move(verdicts));
    count_backends_down();
}

void Shard::count_backends_down() {
    size_t down = 0;
    for (const auto& cs : connector_->clusters()) down += cs->down_count;
    counters_.backends_down.set(down);
}

void Shard::apply(std::shared_ptr<const Snapshot> next, std::vector<common::Fd> fds) {
    size_t kept_clusters = connector_->apply(next->clusters, next);
    count_backends_down();
    std::vector<std::unique_ptr<Listener>> old = std::move(listeners_);
    listeners_.clear();
    const auto& configs = next->config->listeners;
    for (size_t i = 0; i < configs.size(); ++i) {
        const config::ListenerConfig& cfg = configs[i];
        std::unique_ptr<Listener> l;
        if (i < fds.size() && fds[i]) {
            l = std::make_unique<Listener>(*this, std::move(fds[i]), next, cfg,
                                           counters_for(cfg.name), admission_for(cfg));
        } else {
            auto same = std::find_if(old.begin(), old.end(), [&](const auto& o) {
                return o && o->config->bind == cfg.bind;
            });
            if (same == old.end()) {
                // The control plane opens a socket for every address that is new; not finding
                // one here is a bug, and the listener is left out rather than guessed.
                LOG_ERROR("shard %u: reload: listener %s has no socket", options_.id,
                          cfg.name.c_str());
                continue;
            }
            l = std::move(*same);
            // listen() again on a listening socket only changes its backlog.
            if (l->config->backlog != cfg.backlog) ::listen(l->fd.get(), cfg.backlog);
            l->snapshot = next;
            l->config = &cfg;
            l->counters = &counters_for(cfg.name);
            l->admission = &admission_for(cfg);
        }
        l->cluster = connector_->state_named(cfg.cluster);
        listeners_.push_back(std::move(l));
    }
    snapshot_ = std::move(next);
    // New listeners accept before removed ones close.
    if (!accept_paused_)
        for (auto& l : listeners_) arm_accept(*l);
    size_t closed = 0;
    for (auto& l : old) {
        if (!l) continue;
        close_listener(std::move(l));
        ++closed;
    }
    layout_ = build_layout();
    LOG_DEBUG("shard %u: reload applied: %zu listeners (%zu closed), %zu of %zu clusters kept",
              options_.id, listeners_.size(), closed, kept_clusters, snapshot_->clusters.size());
}

void Shard::close_listener(std::unique_ptr<Listener> l) {
    begin_close(*l, {});
    // Kept until its socket has closed: its accept op refers to it until then.
    if (l->fd || l->accept_op.armed()) closing_listeners_.push_back(std::move(l));
}

void Shard::pause_accepting() {
    if (accept_paused_) return;
    accept_paused_ = true;
    counters_.emfile_pauses.add();
    LOG_WARN_LIMITED(out_of_fds_log_, now_ms(),
                     "shard %u: out of file descriptors (%llu sessions open, fds from %d kept for "
                     "the admin endpoint); pausing accept until one frees, checked every %lld ms",
                     options_.id, static_cast<unsigned long long>(counters_.active.get()),
                     common::fd_reserve_threshold(), static_cast<long long>(kEmfilePause.count()));
    for (auto& l : listeners_) engine_->cancel(l->accept_op);
    if (!pause_timer_.armed()) engine_->timer(pause_timer_, kEmfilePause);
}

void Shard::resume_accepting() {
    if (!accept_paused_ || stopping_) return;
    accept_paused_ = false;
    engine_->cancel(pause_timer_);
    // Listeners whose cancel is still in flight re-arm when it completes.
    for (auto& l : listeners_) arm_accept(*l);
}

void Shard::close_listener(size_t i, ListenerClosed closed) {
    begin_close(*listeners_[i], std::move(closed));
}

void Shard::begin_close(Listener& l, ListenerClosed closed) {
    if (l.closing && !l.fd) {
        if (closed) closed(0);
        return;
    }
    if (closed) l.on_closed.push_back(std::move(closed));
    if (l.closing) return;  // its close is under way and runs `closed` too
    l.closing = true;
    l.taken = 0;
    // The socket may only close once no op refers to it: io_uring's multishot accept holds the
    // file and may still complete after the cancel. Until then the listener keeps serving what
    // the engine delivers; then finish_close() takes the rest of the queue itself.
    if (l.accept_op.armed())
        engine_->cancel(l.accept_op);
    else
        finish_close(l);
}

std::vector<std::pair<common::Address, common::Fd>> Shard::dup_listeners() const {
    std::vector<std::pair<common::Address, common::Fd>> out;
    for (const auto& l : listeners_) {
        if (!l->fd || l->closing) continue;
        common::Fd copy(::fcntl(l->fd.get(), F_DUPFD_CLOEXEC, 0));
        if (!copy) {
            LOG_WARN("shard %u: listener %s: dup for the upgrade: %s", options_.id,
                     l->config->name.c_str(), std::strerror(errno));
            continue;
        }
        out.emplace_back(l->config->bind, std::move(copy));
    }
    return out;
}

void Shard::release_listener(size_t i, ListenerClosed closed) {
    listeners_[i]->handed_over = true;
    begin_close(*listeners_[i], std::move(closed));
}

void Shard::finish_close(Listener& l) {
    if (!l.fd) return;
    if (l.handed_over) {
        // A new process holds the socket now and accepts from it; ours closes without
        // shutdown(). What waits in the queue at this moment is still taken here: io_uring's
        // accept waits exclusively, so a wakeup that went to our op just before its cancel is
        // lost to the new process's op too, and its client would wait for the next connection
        // to arrive (a 10 s stall seen in the upgrade test).
        if (!stopping_) l.taken += take_queued(l);
        engine_->close_fd(l.fd.release());
        std::vector<ListenerClosed> callbacks;
        callbacks.swap(l.on_closed);
        for (ListenerClosed& callback : callbacks) callback(l.taken);
        return;
    }
    if (!stopping_) l.taken += take_queued(l);
    // shutdown() stops the socket listening now (Linux: inet_csk_listen_stop), whereas the
    // engine's close may be batched into the next submission (io_uring), with clients queueing
    // meanwhile only to be reset. A client completing its handshake between the last accept4()
    // and this call is reset: the window is one syscall wide.
    ::shutdown(l.fd.get(), SHUT_RDWR);
    engine_->close_fd(l.fd.release());
    LOG_DEBUG("shard %u: listener %s closed, %zu queued connections taken", options_.id,
              l.config->name.c_str(), l.taken);
    std::vector<ListenerClosed> callbacks;
    callbacks.swap(l.on_closed);
    for (ListenerClosed& callback : callbacks) callback(l.taken);
}

size_t Shard::take_queued(Listener& l) {
    // Out of fds (the pause is still on): a client taken now would only land in the reserve.
    if (accept_paused_ && !common::fd_below_reserve_free()) {
        LOG_WARN(
            "shard %u: listener %s closes while out of file descriptors: %d queued "
            "connections are reset",
            options_.id, l.config->name.c_str(), common::accept_queue_length(l.fd.get()));
        return 0;
    }
    // It was opened non-blocking (common::listen_tcp_group); a socket that was not must still
    // never block this thread here.
    if (std::error_code ec = common::set_nonblocking(l.fd.get()))
        LOG_WARN("shard %u: listener %s: O_NONBLOCK: %s", options_.id, l.config->name.c_str(),
                 ec.message().c_str());
    size_t taken = 0;
    for (;;) {
        int fd = ::accept4(l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK) break;
            if (common::accept_error_is_transient(err)) continue;
            counters_.accept_errors.add();
            LOG_WARN(
                "shard %u: listener %s: accept while closing: %s; %d queued connections "
                "are reset",
                options_.id, l.config->name.c_str(), std::strerror(err),
                common::accept_queue_length(l.fd.get()));
            break;
        }
        engine_->adopt_fd(fd);
        common::Fd client(fd);
        ++taken;
        // As in on_accept: a client in the reserve is kept, and no further one is taken.
        bool last = common::fd_in_reserve(fd);
        start_session(l, std::move(client));
        if (last) {
            pause_accepting();
            LOG_WARN(
                "shard %u: listener %s closes out of file descriptors: %d queued "
                "connections are reset",
                options_.id, l.config->name.c_str(), common::accept_queue_length(l.fd.get()));
            break;
        }
    }
    return taken;
}

void Shard::close_sessions(engine::Millis window) {
    spread_total_ = 0;
    for (const Session* s = sessions_; s != nullptr; s = s->next)
        if (s->phase() < Session::Phase::kDraining) ++spread_total_;
    spread_start_ms_ = now_ms();
    spread_window_ms_ = window.count() > 0 ? static_cast<uint64_t>(window.count()) : 0;
    close_due_sessions();
}

void Shard::close_due_sessions() {
    uint64_t elapsed = now_ms() - spread_start_ms_;
    // Sessions that may stay open for now: the share of the window still ahead. Those that
    // ended by themselves meanwhile count as closed.
    size_t keep = 0;
    if (elapsed < spread_window_ms_)
        keep = spread_total_ -
               static_cast<size_t>(uint64_t{spread_total_} * elapsed / spread_window_ms_);
    size_t open = 0;
    for (const Session* s = sessions_; s != nullptr; s = s->next)
        if (s->phase() < Session::Phase::kDraining) ++open;
    Session* s = sessions_;
    while (s != nullptr && open > keep) {
        // abort() may free s, never another session (the connector answers waiters later, from
        // the event loop).
        Session* next = s->next;
        if (s->phase() < Session::Phase::kDraining) {
            s->abort(upstream::CloseReason::k_drained);
            --open;
        }
        s = next;
    }
    if (open > 0 && !spread_timer_.armed()) engine_->timer(spread_timer_, kSpreadTick);
}

void Shard::shutdown_sessions() {
    Session* s = sessions_;
    while (s != nullptr) {
        Session* next = s->next;
        s->abort();  // may free s
        s = next;
    }
}

void Shard::session_closed(Session* session) {
    if (session->prev)
        session->prev->next = session->next;
    else
        sessions_ = session->next;
    if (session->next) session->next->prev = session->prev;
    if (session->starved_listed) {
        starved_.erase(std::remove(starved_.begin(), starved_.end(), session), starved_.end());
    }
    std::unique_ptr<Session> owned(session);
    owned.reset();
    if (connector_->retired_count() != 0) connector_->collect_retired();
    // Two fds were just freed: if accepting paused for lack of fds and one below the reserve is
    // free now, try again at once (else the pause timer checks again). Without the check, a
    // session in the reserve that closed resumed accepting with no fd to spare, and io_uring's
    // multishot accept drained the whole backlog into the reserve (194 of 300 waiting clients
    // closed in 10 s at a limit of 256, instead of waiting in the backlog).
    if (accept_paused_ && common::fd_below_reserve_free()) resume_accepting();
}

void Shard::wait_for_buffers(Session* session) {
    if (session->starved_listed) return;
    session->starved_listed = true;
    starved_.push_back(session);
}

void Shard::release_buffer(uint16_t buffer_id) {
    engine_->release_buffer(buffer_id);
    // Wake as many waiters as there are free buffers: waking fewer could leave a waiter
    // sleeping with buffers free and no further release coming.
    uint32_t wake = engine_->buffers_free();
    while (wake-- > 0 && !starved_.empty()) {
        Session* waiter = starved_.front();
        starved_.pop_front();
        waiter->starved_listed = false;
        waiter->resume_receive();
    }
}

}  // namespace ringlb::shard
