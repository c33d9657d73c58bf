#include "proxy/shard/session.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "common/socket.hpp"
#include "proxy/shard/shard.hpp"
#include "proxy/upstream/cluster.hpp"

namespace ringlb::shard {

namespace {

constexpr uint32_t kPollMask = POLLIN | POLLOUT | POLLRDHUP;
constexpr unsigned kMaxConnectAttempts = 3;
// Waiting for a free fd: 40 x 50 ms, then the client is closed.
constexpr unsigned kMaxFdRetries = 40;
constexpr engine::Millis kFdRetryDelay{50};

void set_linger_zero(int fd) {
    // An error on one leg becomes a reset on the other, so neither peer mistakes a failure for
    // a clean end of stream.
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

}  // namespace

Session::Session(Shard& shard, common::Fd client, const config::ListenerConfig& listener,
                 const upstream::Cluster& cluster, size_t cluster_index)
    : shard_(shard),
      engine_(shard.engine()),
      listener_(listener),
      cluster_(cluster),
      cluster_index_(cluster_index),
      client_(std::move(client)) {
    connect_op_.bind(this, kConnect);
    fd_retry_timer_.bind(this, kFdRetry);
    client_poll_.bind(this, kClientPoll);
    upstream_poll_.bind(this, kUpstreamPoll);
    c2u_.recv_op.bind(this, kRecvC2U);
    c2u_.send_op.bind(this, kSendC2U);
    u2c_.recv_op.bind(this, kRecvU2C);
    u2c_.send_op.bind(this, kSendU2C);
    c2u_.c2u = true;
    u2c_.c2u = false;
    shard_.stats().active.add();
}

Session::~Session() {
    shard_.stats().active.sub();
    shard_.stats().closed.add();
}

void Session::start() {
    // The client socket inherited TCP_NODELAY from the listener (see common::listen_tcp).
    connect_next();
    maybe_destroy();
}

void Session::connect_next() {
    if (upstream_) engine_.close_fd(upstream_.release());
    unsigned budget = static_cast<unsigned>(cluster_.backends.size());
    if (budget > kMaxConnectAttempts) budget = kMaxConnectAttempts;
    int index = attempts_ < budget ? shard_.balancer(cluster_index_).pick(tried_) : -1;
    if (index < 0) {
        shard_.stats().no_backend.add();
        LOG_DEBUG("listener %s: no backend of cluster %s could be connected after %u attempts",
                  listener_.name.c_str(), cluster_.name.c_str(), attempts_);
        teardown();
        return;
    }
    if (index < 64) tried_ |= uint64_t{1} << index;
    ++attempts_;
    const upstream::Backend& backend = cluster_.backends[static_cast<size_t>(index)];
    std::error_code ec;
    upstream_ = common::tcp_socket(backend.address.family(), ec);
    if (!upstream_) {
        if ((ec.value() == EMFILE || ec.value() == ENFILE) && fd_retries_ < kMaxFdRetries) {
            // The client is already ours: keep it and try again once fds free up, instead of
            // dropping it. Accepting pauses meanwhile, so no further client meets the same fate.
            ++fd_retries_;
            --attempts_;
            if (index < 64) tried_ &= ~(uint64_t{1} << index);
            shard_.pause_accepting();
            engine_.timer(fd_retry_timer_, kFdRetryDelay);
            return;
        }
        shard_.stats().connect_failures.add();
        teardown();
        return;
    }
    common::set_nodelay(upstream_.get());
    // Counted only when another backend is really tried, not for the attempt that gives up.
    if (attempts_ > 1) shard_.stats().connect_retries.add();
    engine_.connect(connect_op_, upstream_.get(), backend.address.sa(), backend.address.length,
                    cluster_.connect_timeout);
}

void Session::on_connect_failed(int err) {
    shard_.stats().connect_failures.add();
    LOG_DEBUG("cluster %s: connect failed: %s", cluster_.name.c_str(), std::strerror(err));
    if (closing_) return;
    // No byte has moved yet, so another backend is safe to try.
    connect_next();
}

void Session::on_connected() {
    forwarding_ = true;
    c2u_.src = client_.get();
    c2u_.dst = upstream_.get();
    u2c_.src = upstream_.get();
    u2c_.dst = client_.get();
    // Measured interleaved on one binary (README, Performance): buffered forwarding costs less
    // proxy CPU than readiness + splice per request, per connection and per GB, so "auto"
    // means buffered.
    bool splice = listener_.forward == config::ForwardMode::kSplice;
    start_direction(c2u_, splice);
    start_direction(u2c_, splice);
    if (splice) {
        engine_.poll(client_poll_, client_.get(), kPollMask);
        engine_.poll(upstream_poll_, upstream_.get(), kPollMask);
    }
}

void Session::start_direction(Direction& d, bool splice) {
    if (splice && shard_.pipes().max_pipes() > 0) {
        d.mode = Mode::kSplice;
        shard_.stats().splice_directions.add();
    } else {
        d.mode = Mode::kBuffered;
        shard_.stats().buffered_directions.add();
        maybe_receive(d);
    }
}

void Session::on_complete(engine::Op& op, const engine::Completion& c) {
    switch (op.tag()) {
        case kConnect:
            if (!closing_) {
                if (c.res == 0)
                    on_connected();
                else
                    on_connect_failed(-c.res);
            } else if (c.res != 0) {
                shard_.stats().connect_failures.add();
            }
            break;
        case kFdRetry:
            if (!closing_ && c.res == 0) connect_next();
            break;
        case kClientPoll:
        case kUpstreamPoll: {
            if (closing_) break;
            int fd = op.tag() == kClientPoll ? client_.get() : upstream_.get();
            if (c.res >= 0) on_readiness(fd, static_cast<uint32_t>(c.res));
            // The engine stopped watching (e.g. CQ overflow): keep watching while forwarding.
            if (!closing_ && !op.armed() && c.res >= 0) engine_.poll(op, fd, kPollMask);
            break;
        }
        case kRecvC2U:
            on_recv(c2u_, c);
            break;
        case kRecvU2C:
            on_recv(u2c_, c);
            break;
        case kSendC2U:
            on_sent(c2u_, c);
            break;
        case kSendU2C:
            on_sent(u2c_, c);
            break;
        default:
            break;
    }
    maybe_destroy();  // last statement: may delete this
}

// ---- splice pump -------------------------------------------------------------------------

void Session::on_readiness(int fd, uint32_t mask) {
    bool readable = mask & (POLLIN | POLLRDHUP | POLLHUP | POLLERR);
    bool writable = mask & (POLLOUT | POLLHUP | POLLERR);
    Direction& as_src = fd == client_.get() ? c2u_ : u2c_;
    Direction& as_dst = fd == client_.get() ? u2c_ : c2u_;
    if (writable && as_dst.mode == Mode::kSplice && as_dst.waiting_dst && !as_dst.done) {
        if (!pump_splice(as_dst)) return;
    }
    if (mask & POLLRDHUP) as_src.src_fin_seen = true;
    if (readable && as_src.mode == Mode::kSplice && !as_src.waiting_dst && !as_src.done) {
        pump_splice(as_src);
    }
}

bool Session::pump_splice(Direction& d) {
    d.waiting_dst = false;
    for (;;) {
        if (d.in_pipe > 0) {
            // When the source's FIN is already here, these are its last bytes: SPLICE_F_MORE
            // (MSG_MORE) holds them back so the shutdown() that follows sends data and FIN in
            // one segment instead of two.
            unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
            if (d.src_fin_seen) flags |= SPLICE_F_MORE;
            ssize_t n = ::splice(d.pipe->read_end.get(), nullptr, d.dst, nullptr, d.in_pipe, flags);
            if (n > 0) {
                d.in_pipe -= static_cast<size_t>(n);
                count_bytes(d, static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                d.waiting_dst = true;  // POLLOUT on dst resumes us
                return true;
            }
            fail(n < 0 ? errno : EPIPE);
            return false;
        }
        if (d.src_eof) {
            finish_direction(d);
            return !closing_;
        }
        if (d.pipe == nullptr) {
            d.pipe = shard_.pipes().acquire();
            if (d.pipe == nullptr) {
                // Pool exhausted: this direction carries on with buffered io instead of waiting.
                shard_.stats().pipe_pool_exhausted.add();
                d.mode = Mode::kBuffered;
                maybe_receive(d);
                return true;
            }
        }
        ssize_t n = ::splice(d.src, nullptr, d.pipe->write_end.get(), nullptr, d.pipe->capacity,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d.in_pipe = static_cast<size_t>(n);
            continue;
        }
        if (n == 0) {
            d.src_eof = true;
            continue;
        }
        if (errno == EAGAIN) {
            // Nothing to read: give the (empty) pipe back so an idle connection holds none.
            shard_.pipes().release(d.pipe, true);
            d.pipe = nullptr;
            return true;
        }
        fail(errno);
        return false;
    }
}

// ---- buffered pump -----------------------------------------------------------------------

void Session::on_recv(Direction& d, const engine::Completion& c) {
    if (c.has_buffer()) {
        if (closing_ || d.done || c.res <= 0) {
            shard_.release_buffer(c.buffer_id);
        } else {
            d.queue.push_back(Queued{c.buffer_id, static_cast<uint32_t>(c.res)});
            if (!d.send_op.armed()) send_head(d);
            bool full = static_cast<size_t>(c.res) >= engine_.buffer(c.buffer_id).size();
            if (full)
                d.small_streak = 0;
            else if (d.small_streak < kInteractiveStreak)
                ++d.small_streak;
            // Backpressure, and bulk onset: stop the multishot receive; maybe_receive() re-arms
            // (single-shot for bulk) once the other side keeps up.
            if ((full || d.queue.size() - d.q_head >= kHighWater) && d.recv_op.armed())
                engine_.cancel(d.recv_op);
        }
    }
    if (c.more() || closing_) return;
    if (c.res == 0) {
        d.src_eof = true;
        if (d.queue.size() == d.q_head && !d.send_op.armed()) finish_direction(d);
        return;
    }
    if (c.res == -ENOBUFS) {
        shard_.stats().buffer_starved.add();
        d.starved = true;
        // Buffers may have come back while this completion was on its way: maybe_receive()
        // re-arms at once if any are free, and otherwise waits for the next release. (With
        // data queued, our own sends release buffers and re-arm.)
        maybe_receive(d);
        return;
    }
    if (c.res < 0 && c.res != -ECANCELED) {
        fail(-c.res);
        return;
    }
    maybe_receive(d);
}

void Session::send_head(Direction& d) {
    const Queued& head = d.queue[d.q_head];
    std::span<char> buf = engine_.buffer(head.id);
    engine_.send(d.send_op, d.dst, buf.data() + d.head_sent, head.len - d.head_sent);
}

void Session::on_sent(Direction& d, const engine::Completion& c) {
    if (closing_) return;
    if (c.res <= 0) {
        fail(c.res < 0 ? -c.res : EPIPE);
        return;
    }
    const Queued& head = d.queue[d.q_head];
    d.head_sent += static_cast<size_t>(c.res);
    count_bytes(d, static_cast<size_t>(c.res));
    if (d.head_sent >= head.len) {
        shard_.release_buffer(head.id);
        d.head_sent = 0;
        if (++d.q_head == d.queue.size()) {
            d.queue.clear();
            d.q_head = 0;
        }
    }
    if (d.q_head < d.queue.size()) {
        send_head(d);
    } else if (d.src_eof && !d.recv_op.armed()) {
        finish_direction(d);
        return;
    }
    maybe_receive(d);
}

void Session::maybe_receive(Direction& d) {
    if (closing_ || d.src_eof || d.done || d.mode != Mode::kBuffered || d.recv_op.armed()) return;
    if (d.queue.size() - d.q_head >= kHighWater) return;
    if (d.starved && engine_.buffers_free() == 0) {
        shard_.wait_for_buffers(this);
        return;
    }
    d.starved = false;
    // Multishot only for interactive streams, and only while the pool is not under pressure.
    bool multishot =
        d.small_streak >= kInteractiveStreak && engine_.buffers_free() >= shard_.buffer_count() / 2;
    if (multishot)
        engine_.recv(d.recv_op, d.src);
    else
        engine_.recv_once(d.recv_op, d.src);
}

void Session::resume_receive() {
    maybe_receive(c2u_);
    maybe_receive(u2c_);
}

// ---- shared ------------------------------------------------------------------------------

void Session::count_bytes(const Direction& d, size_t n) {
    if (d.c2u)
        shard_.stats().bytes_in.add(n);
    else
        shard_.stats().bytes_out.add(n);
}

void Session::finish_direction(Direction& d) {
    if (d.done) return;
    d.done = true;
    // Half-close: the peer learns that no more bytes come, and may still answer.
    ::shutdown(d.dst, SHUT_WR);
    if (d.pipe) {
        shard_.pipes().release(d.pipe, d.in_pipe == 0);
        d.pipe = nullptr;
    }
    if (c2u_.done && u2c_.done) teardown();
}

void Session::fail(int err) {
    if (closing_) return;
    shard_.stats().forward_errors.add();
    LOG_DEBUG("listener %s: session ended: %s", listener_.name.c_str(), std::strerror(err));
    if (client_) set_linger_zero(client_.get());
    if (upstream_) set_linger_zero(upstream_.get());
    teardown();
}

void Session::abort() {
    if (client_) set_linger_zero(client_.get());
    if (upstream_) set_linger_zero(upstream_.get());
    teardown();
    maybe_destroy();
}

void Session::teardown() {
    if (closing_) return;
    closing_ = true;
    for (engine::Op* op : {&connect_op_, &fd_retry_timer_, &client_poll_, &upstream_poll_,
                           &c2u_.recv_op, &c2u_.send_op, &u2c_.recv_op, &u2c_.send_op}) {
        if (op->armed()) engine_.cancel(*op);
    }
}

bool Session::any_armed() const {
    return connect_op_.armed() || fd_retry_timer_.armed() || client_poll_.armed() ||
           upstream_poll_.armed() || c2u_.recv_op.armed() || c2u_.send_op.armed() ||
           u2c_.recv_op.armed() || u2c_.send_op.armed();
}

void Session::release_direction(Direction& d) {
    // Only called once no op is armed: no send can still be reading these buffers.
    for (size_t i = d.q_head; i < d.queue.size(); ++i) shard_.release_buffer(d.queue[i].id);
    d.queue.clear();
    d.q_head = 0;
    if (d.pipe) {
        shard_.pipes().release(d.pipe, d.in_pipe == 0);
        d.pipe = nullptr;
    }
}

void Session::maybe_destroy() {
    if (!closing_ || destroyed_ || any_armed()) return;
    destroyed_ = true;
    release_direction(c2u_);
    release_direction(u2c_);
    if (upstream_) engine_.close_fd(upstream_.release());
    if (client_) engine_.close_fd(client_.release());
    shard_.session_closed(this);  // deletes this
}

}  // namespace ringlb::shard
