#include "proxy/upstream/warm_pool.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "common/clock.hpp"
#include "common/fd_reserve.hpp"
#include "common/log.hpp"
#include "proxy/upstream/cluster.hpp"
#include "proxy/upstream/connector.hpp"

namespace ringlb::upstream {

namespace {

constexpr uint32_t kDeadMask = POLLRDHUP | POLLHUP | POLLERR;
// Backoff between fill attempts while the backend refuses: 100 ms, doubling up to 10 s.
constexpr uint64_t kFirstBackoffMs = 100;
constexpr uint64_t kMaxBackoffMs = 10000;

}  // namespace

WarmPool::WarmPool(Connector& connector, BackendState& backend, uint32_t warm, uint64_t max_idle_ms)
    : connector_(connector), backend_(backend), warm_(warm), max_idle_ms_(max_idle_ms) {
    timer_.bind(this, 0);
    const Cluster& cluster = *backend.cluster->cluster;
    if (cluster.tls && cluster.settings->send_proxy == config::SendProxy::kNone) {
        tls_ = cluster.tls.get();
        handshake_timeout_ms_ =
            static_cast<uint64_t>(cluster.settings->tls.handshake_timeout.count());
    }
}

WarmPool::~WarmPool() = default;

void WarmPool::fill() {
    if (stopping_) return;
    if (connector_.host_.now_ms() >= retry_at_ms_) {
        while (idle_count_ + connecting_ + handshaking_ < warm_) {
            if (!start_connect()) break;
        }
    }
    arm_timer();
}

bool WarmPool::start_connect() {
    std::error_code ec;
    common::Fd fd = connector_.open_socket(backend_, ec);
    if (fd && common::fd_in_reserve(fd.get())) {
        // A pooled socket is speculative (a client without one connects directly), so it never
        // takes an fd kept for the admin endpoint: the fill backs off as if out of fds.
        fd.reset();
        ec = std::error_code(EMFILE, std::system_category());
    }
    if (!fd) {
        note_fill_failure(ec.value());
        return false;
    }
    auto conn = std::make_unique<Conn>(*this);
    conn->fd = std::move(fd);
    conn->connect_started_ns = common::monotonic_ns();
    ++connecting_;
    backend_.counters.pool_connects.add();
    const Backend& b = *backend_.backend;
    connector_.engine_.connect(conn->connect_op, conn->fd.get(), b.address.sa(), b.address.length,
                               backend_.cluster->cluster->settings->connect_timeout);
    conns_.push_back(std::move(conn));
    return true;
}

void WarmPool::note_fill_failure(int err) {
    backend_.counters.connect_failures[static_cast<size_t>(classify_connect_error(err))].add();
    backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, kMaxBackoffMs) : kFirstBackoffMs;
    retry_at_ms_ = connector_.host_.now_ms() + backoff_ms_;
}

void WarmPool::on_conn_op(Conn& conn, engine::Op& op, const engine::Completion& c) {
    if (&op == &conn.connect_op)
        on_connected(conn, c.res);
    else
        on_poll(conn, c);
}

void WarmPool::on_connected(Conn& conn, int res) {
    --connecting_;
    if (stopping_ || res != 0) {
        if (res != 0 && !stopping_) {
            note_fill_failure(-res);
            LOG_DEBUG("pool %s: fill connect failed (%d); next try in %llu ms",
                      backend_.backend->name.c_str(), -res,
                      static_cast<unsigned long long>(backoff_ms_));
        }
        close_conn(conn, false);
        arm_timer();
        return;
    }
    backoff_ms_ = 0;
    // A fill connect is a connect to the backend like a client's: it feeds the connect latency
    // histogram and least_time, else a cluster whose clients all find a pooled socket would
    // show no connect latency at all.
    uint64_t elapsed = common::monotonic_ns() - conn.connect_started_ns;
    ClusterState& cs = *backend_.cluster;
    cs.counters.connect_duration.observe(elapsed);
    cs.balancer->observe_connect(backend_.index, std::chrono::nanoseconds(elapsed));
    if (tls_) {
        start_handshake(conn);
        return;
    }
    become_idle(conn);
}

void WarmPool::become_idle(Conn& conn) {
    conn.state = Conn::State::kIdle;
    conn.idle_since_ms = connector_.host_.now_ms();
    ++idle_count_;
    backend_.counters.pool_idle.add();
    // Only the backend's FIN or an error matters; a greeting (POLLIN) stays for the client.
    if (conn.poll_op.armed()) {
        // The handshake's watch (POLLIN) ends first; its final completion starts this one.
        conn.rewatch = true;
        if (!conn.poll_op.cancelling()) connector_.engine_.cancel(conn.poll_op);
    } else {
        connector_.engine_.poll(conn.poll_op, conn.fd.get(), POLLRDHUP);
    }
    arm_timer();
}

void WarmPool::start_handshake(Conn& conn) {
    SSL* ssl = tls_->new_ssl();
    if (!ssl) {
        close_conn(conn, false);
        arm_timer();
        return;
    }
    conn.tls = std::make_unique<tls::Stream>(ssl, false);
    conn.state = Conn::State::kHandshaking;
    conn.handshake_started_ns = common::monotonic_ns();
    conn.handshake_deadline_ms = connector_.host_.now_ms() + handshake_timeout_ms_;
    ++handshaking_;
    step_handshake(conn);
    arm_timer();
}

bool WarmPool::step_handshake(Conn& conn) {
    tls::Stream& stream = *conn.tls;
    tls::Stream::Result r = stream.handshake();
    // A flight is a few hundred bytes (a client certificate, a few KiB): a fresh socket's send
    // buffer always takes it whole; one that does not is as good as dead.
    char out[16384];
    while (size_t n = stream.take_output(std::span<char>(out, sizeof out))) {
        ssize_t sent = ::send(conn.fd.get(), out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent != static_cast<ssize_t>(n)) {
            handshake_failed(conn, tls::HandshakeResult::k_closed);
            return false;
        }
    }
    switch (r) {
        case tls::Stream::Result::kOk: {
            --handshaking_;
            tls::HandshakeCounters& counters = backend_.cluster->counters.tls;
            counters.count(stream.resumed() ? tls::HandshakeResult::k_resumed
                                            : tls::HandshakeResult::k_ok);
            counters.duration.observe((common::monotonic_ns() - conn.handshake_started_ns) / 1000);
            become_idle(conn);
            return true;
        }
        case tls::Stream::Result::kWantRead:
            if (!conn.poll_op.armed())
                connector_.engine_.poll(conn.poll_op, conn.fd.get(), POLLIN | POLLRDHUP);
            return true;
        case tls::Stream::Result::kClosed:
        case tls::Stream::Result::kError:
            break;
    }
    handshake_failed(conn, stream.failure() == tls::Failure::kCertificate
                               ? tls::HandshakeResult::k_certificate
                               : tls::HandshakeResult::k_protocol);
    return false;
}

void WarmPool::on_handshake_readable(Conn& conn, const engine::Completion& c) {
    bool ended = c.res < 0;
    char in[16384];
    while (!ended) {
        ssize_t n = ::recv(conn.fd.get(), in, sizeof in, MSG_DONTWAIT);
        if (n > 0) {
            conn.tls->feed(std::span<const char>(in, static_cast<size_t>(n)));
            continue;
        }
        ended = n == 0 || (errno != EAGAIN && errno != EINTR);
        break;
    }
    if (!step_handshake(conn) || conn.state != Conn::State::kHandshaking) return;
    if (ended) {
        handshake_failed(conn, tls::HandshakeResult::k_closed);
        return;
    }
    if (!c.more() && !conn.poll_op.armed())
        connector_.engine_.poll(conn.poll_op, conn.fd.get(), POLLIN | POLLRDHUP);
}

void WarmPool::handshake_failed(Conn& conn, tls::HandshakeResult result) {
    --handshaking_;
    backend_.cluster->counters.tls.count(result);
    thread_local common::LogLimiter handshake_log;  // per shard
    LOG_WARN_LIMITED(handshake_log, connector_.host_.now_ms(),
                     "pool %s: TLS handshake failed: %s%s%s", backend_.backend->name.c_str(),
                     tls::kHandshakeResultNames[static_cast<size_t>(result)],
                     conn.tls->error().empty() ? "" : ": ", conn.tls->error().c_str());
    // Back off as after a refused connect: a backend whose certificate does not verify would
    // otherwise be handshaked with in a loop.
    backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, kMaxBackoffMs) : kFirstBackoffMs;
    retry_at_ms_ = connector_.host_.now_ms() + backoff_ms_;
    close_conn(conn, false);
    arm_timer();
}

void WarmPool::on_poll(Conn& conn, const engine::Completion& c) {
    switch (conn.state) {
        case Conn::State::kHandshaking:
            on_handshake_readable(conn, c);
            return;
        case Conn::State::kIdle:
            if (conn.rewatch) {
                // The handshake's watch: ignore what it saw (a session ticket may be readable);
                // once it has ended, watch for the backend's FIN.
                if (!conn.poll_op.armed()) {
                    conn.rewatch = false;
                    connector_.engine_.poll(conn.poll_op, conn.fd.get(), POLLRDHUP);
                }
                return;
            }
            if (c.res < 0 || (static_cast<uint32_t>(c.res) & kDeadMask)) {
                // The backend closed or reset it while it waited here: never a client's.
                --idle_count_;
                backend_.counters.pool_idle.sub();
                close_conn(conn, true);
                fill();
                return;
            }
            // The engine stopped watching (a final completion): keep watching.
            if (!c.more() && !conn.poll_op.armed())
                connector_.engine_.poll(conn.poll_op, conn.fd.get(), POLLRDHUP);
            return;
        case Conn::State::kHandingOver: {
            // The backend may close the socket while the watch's cancel is on its way.
            if (c.res >= 0 && (static_cast<uint32_t>(c.res) & kDeadMask)) conn.dead = true;
            if (conn.poll_op.armed()) return;  // the cancel's final completion is still ahead
            ConnectRequest* waiter = conn.waiter;
            conn.waiter = nullptr;
            if (!conn.dead) {
                pollfd p{conn.fd.get(), POLLRDHUP, 0};
                if (::poll(&p, 1, 0) < 0 || (static_cast<uint32_t>(p.revents) & kDeadMask))
                    conn.dead = true;
            }
            if (conn.dead) {
                close_conn(conn, true);
                if (waiter) connector_.pool_failed(*waiter);
                fill();
                return;
            }
            if (waiter == nullptr) {
                // The client left meanwhile: the socket goes back to the pool.
                conn.state = Conn::State::kIdle;
                ++idle_count_;
                backend_.counters.pool_idle.add();
                connector_.engine_.poll(conn.poll_op, conn.fd.get(), POLLRDHUP);
                return;
            }
            common::Fd fd = std::move(conn.fd);
            std::unique_ptr<tls::Stream> stream = std::move(conn.tls);
            conn.state = Conn::State::kClosing;
            maybe_erase(conn);
            connector_.pool_ready(*waiter, std::move(fd), std::move(stream));
            fill();
            return;
        }
        case Conn::State::kClosing:
            maybe_erase(conn);
            return;
        case Conn::State::kConnecting:
            return;
    }
}

bool WarmPool::take(ConnectRequest& req) {
    // Newest first: the socket least likely to have met the backend's own idle timeout.
    Conn* found = nullptr;
    std::vector<Conn*> dead;
    for (auto it = conns_.rbegin(); it != conns_.rend() && !found; ++it) {
        Conn& conn = **it;
        if (conn.state != Conn::State::kIdle) continue;
        --idle_count_;
        backend_.counters.pool_idle.sub();
        // The watch may not have reported a FIN that arrived just now: ask the kernel once more.
        pollfd p{conn.fd.get(), POLLRDHUP, 0};
        if (::poll(&p, 1, 0) < 0 || (static_cast<uint32_t>(p.revents) & kDeadMask))
            dead.push_back(&conn);
        else
            found = &conn;
    }
    for (Conn* conn : dead) close_conn(*conn, true);  // after the walk: this may erase
    if (found) {
        Conn& conn = *found;
        conn.state = Conn::State::kHandingOver;
        conn.waiter = &req;
        // The socket changes hands once its watch has really ended (engine contract: one
        // owner of an fd's ops at a time).
        if (conn.poll_op.armed()) connector_.engine_.cancel(conn.poll_op);
        backend_.counters.pool_hits.add();
    }
    fill();
    return found != nullptr;
}

void WarmPool::forget(ConnectRequest& req) {
    for (auto& conn : conns_)
        if (conn->waiter == &req) conn->waiter = nullptr;
}

void WarmPool::close_conn(Conn& conn, bool discarded) {
    if (discarded) backend_.counters.pool_discarded.add();
    conn.state = Conn::State::kClosing;
    if (conn.connect_op.armed()) connector_.engine_.cancel(conn.connect_op);
    if (conn.poll_op.armed()) connector_.engine_.cancel(conn.poll_op);
    maybe_erase(conn);
}

void WarmPool::maybe_erase(Conn& conn) {
    if (conn.connect_op.armed() || conn.poll_op.armed()) return;
    if (conn.fd) connector_.engine_.close_fd(conn.fd.release());
    auto it = std::find_if(conns_.begin(), conns_.end(),
                           [&](const std::unique_ptr<Conn>& c) { return c.get() == &conn; });
    if (it != conns_.end()) conns_.erase(it);  // destroys conn
}

void WarmPool::arm_timer() {
    if (stopping_) return;
    uint64_t next = UINT64_MAX;
    for (const auto& conn : conns_) {
        if (conn->state == Conn::State::kIdle) {
            next = std::min(next, conn->idle_since_ms + max_idle_ms_);
            break;  // the oldest idle is first in the list
        }
    }
    for (const auto& conn : conns_)
        if (conn->state == Conn::State::kHandshaking)
            next = std::min(next, conn->handshake_deadline_ms);
    if (idle_count_ + connecting_ + handshaking_ < warm_) next = std::min(next, retry_at_ms_);
    if (next == UINT64_MAX) return;
    if (timer_.armed()) {
        // A later wake-up is pending: cancel it; its completion re-arms for the earlier one.
        if (next < timer_at_ms_ && !timer_.cancelling()) connector_.engine_.cancel(timer_);
        return;
    }
    uint64_t now = connector_.host_.now_ms();
    timer_at_ms_ = next;
    connector_.engine_.timer(timer_, engine::Millis(next > now ? next - now : 0));
}

void WarmPool::on_complete(engine::Op&, const engine::Completion&) {
    on_timer();
}

void WarmPool::on_timer() {
    if (stopping_) return;
    uint64_t now = connector_.host_.now_ms();
    for (auto it = conns_.begin(); it != conns_.end();) {
        Conn& conn = **it;
        ++it;
        if (conn.state == Conn::State::kIdle && now - conn.idle_since_ms >= max_idle_ms_) {
            --idle_count_;
            backend_.counters.pool_idle.sub();
            close_conn(conn, true);
        } else if (conn.state == Conn::State::kHandshaking && now >= conn.handshake_deadline_ms) {
            handshake_failed(conn, tls::HandshakeResult::k_timeout);
        }
    }
    fill();
}

void WarmPool::stop() {
    stopping_ = true;
    if (timer_.armed()) connector_.engine_.cancel(timer_);
    for (auto it = conns_.begin(); it != conns_.end();) {
        Conn& conn = **it;
        ++it;
        if (conn.state == Conn::State::kIdle) {
            --idle_count_;
            backend_.counters.pool_idle.sub();
        } else if (conn.state == Conn::State::kHandshaking) {
            --handshaking_;
        }
        close_conn(conn, false);
    }
}

bool WarmPool::busy() const {
    return timer_.armed() || !conns_.empty();
}

}  // namespace ringlb::upstream
