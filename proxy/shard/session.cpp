#include "proxy/shard/session.hpp"

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

const char* Session::to_string(Phase phase) {
    switch (phase) {
        case Phase::kPrelude:
            return "prelude";
        case Phase::kConnecting:
            return "connecting";
        case Phase::kForwarding:
            return "forwarding";
        case Phase::kDraining:
            return "draining";
        case Phase::kClosed:
            return "closed";
    }
    return "?";
}

bool Session::allowed(Phase from, Phase to) {
    switch (from) {
        case Phase::kPrelude:
            return to == Phase::kConnecting || to == Phase::kDraining;
        case Phase::kConnecting:
            return to == Phase::kForwarding || to == Phase::kDraining;
        case Phase::kForwarding:
            return to == Phase::kDraining;
        case Phase::kDraining:
            return to == Phase::kClosed;
        case Phase::kClosed:
            return false;
    }
    return false;
}

bool Session::enter(Phase next) {
    if (!allowed(phase_, next)) {
        LOG_ERROR("session: impossible phase transition %s -> %s (ignored)", to_string(phase_),
                  to_string(next));
        return false;
    }
    phase_ = next;
    return true;
}

Session::Session(Shard& shard, common::Fd client, const config::ListenerConfig& listener,
                 const upstream::Cluster& cluster, size_t cluster_index)
    : shard_(shard),
      engine_(shard.engine()),
      listener_(listener),
      cluster_(cluster),
      cluster_index_(cluster_index),
      buffered_(*this),
      splice_(*this) {
    client_.fd = std::move(client);
    client_.bind(this, kClientBase);
    upstream_.bind(this, kUpstreamBase);
    connect_op_.bind(this, kConnect);
    fd_retry_timer_.bind(this, kFdRetry);
    c2u_.src = &client_;
    c2u_.dst = &upstream_;
    c2u_.c2u = true;
    u2c_.src = &upstream_;
    u2c_.dst = &client_;
    u2c_.c2u = false;
    shard_.stats().active.add();
}

Session::~Session() {
    shard_.stats().active.sub();
    shard_.stats().closed.add();
}

void Session::start() {
    // No prelude yet: routing needs nothing from the client. The client socket inherited
    // TCP_NODELAY from the listener (see common::listen_tcp).
    enter(Phase::kConnecting);
    connect_next();
    maybe_destroy();
}

void Session::connect_next() {
    if (upstream_.fd) engine_.close_fd(upstream_.fd.release());
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
    upstream_.fd = common::tcp_socket(backend.address.family(), ec);
    if (!upstream_.fd) {
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
    common::set_nodelay(upstream_.fd.get());
    // Counted only when another backend is really tried, not for the attempt that gives up.
    if (attempts_ > 1) shard_.stats().connect_retries.add();
    engine_.connect(connect_op_, upstream_.fd.get(), backend.address.sa(), backend.address.length,
                    cluster_.connect_timeout);
}

void Session::on_connect_failed(int err) {
    shard_.stats().connect_failures.add();
    LOG_DEBUG("cluster %s: connect failed: %s", cluster_.name.c_str(), std::strerror(err));
    if (closing()) return;
    // No byte has moved yet, so another backend is safe to try.
    connect_next();
}

void Session::on_connected() {
    if (!enter(Phase::kForwarding)) return;
    // Measured interleaved on one binary (README, Performance): buffered forwarding costs less
    // proxy CPU than readiness + splice per request, per connection and per GB, so "auto"
    // means buffered.
    bool splice = listener_.forward == config::ForwardMode::kSplice;
    start_direction(c2u_, splice);
    start_direction(u2c_, splice);
    if (splice) {
        engine_.poll(client_.poll, client_.fd.get(), kPollMask);
        engine_.poll(upstream_.poll, upstream_.fd.get(), kPollMask);
    }
}

void Session::start_direction(Direction& d, bool splice) {
    if (splice && shard_.pipes().max_pipes() > 0) {
        d.mode = Direction::Mode::kSplice;
        shard_.stats().splice_directions.add();
    } else {
        d.mode = Direction::Mode::kBuffered;
        shard_.stats().buffered_directions.add();
        buffered_.maybe_receive(d);
    }
}

void Session::on_complete(engine::Op& op, const engine::Completion& c) {
    uint8_t tag = op.tag();
    if (tag < kUpstreamBase) {
        on_leg_op(client_, static_cast<Leg::OpIndex>(tag - kClientBase), op, c);
    } else if (tag < kConnect) {
        on_leg_op(upstream_, static_cast<Leg::OpIndex>(tag - kUpstreamBase), op, c);
    } else if (tag == kConnect) {
        if (!closing()) {
            if (c.res == 0)
                on_connected();
            else
                on_connect_failed(-c.res);
        } else if (c.res != 0) {
            shard_.stats().connect_failures.add();
        }
    } else if (tag == kFdRetry) {
        if (!closing() && c.res == 0) connect_next();
    }
    maybe_destroy();  // last statement: may delete this
}

void Session::on_leg_op(Leg& leg, Leg::OpIndex index, engine::Op& op, const engine::Completion& c) {
    bool is_client = &leg == &client_;
    Direction& leaving = is_client ? c2u_ : u2c_;   // this leg is its source
    Direction& entering = is_client ? u2c_ : c2u_;  // this leg is its destination
    switch (index) {
        case Leg::k_recv:
            buffered_.on_recv(leaving, c);
            break;
        case Leg::k_send:
            buffered_.on_sent(entering, c);
            break;
        case Leg::k_poll:
            if (closing()) break;
            if (c.res >= 0) splice_.on_readiness(leaving, entering, static_cast<uint32_t>(c.res));
            // The engine stopped watching (e.g. CQ overflow): keep watching while forwarding.
            if (!closing() && !op.armed() && c.res >= 0) engine_.poll(op, leg.fd.get(), kPollMask);
            break;
        case Leg::kOpCount:
            break;
    }
}

void Session::resume_receive() {
    buffered_.maybe_receive(c2u_);
    buffered_.maybe_receive(u2c_);
}

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
    ::shutdown(d.dst_fd(), SHUT_WR);
    d.dst->fin_sent = true;
    splice_.release(d);
    if (c2u_.done && u2c_.done) teardown();
}

void Session::fail(int err) {
    if (closing()) return;
    shard_.stats().forward_errors.add();
    LOG_DEBUG("listener %s: session ended: %s", listener_.name.c_str(), std::strerror(err));
    if (client_.fd) set_linger_zero(client_.fd.get());
    if (upstream_.fd) set_linger_zero(upstream_.fd.get());
    teardown();
}

void Session::abort() {
    if (client_.fd) set_linger_zero(client_.fd.get());
    if (upstream_.fd) set_linger_zero(upstream_.fd.get());
    teardown();
    maybe_destroy();
}

void Session::teardown() {
    if (closing()) return;
    enter(Phase::kDraining);
    client_.cancel_all(engine_);
    upstream_.cancel_all(engine_);
#define RINGLB_SESSION_CANCEL(op) \
    if (op.armed()) engine_.cancel(op);
    RINGLB_SESSION_OPS(RINGLB_SESSION_CANCEL)
#undef RINGLB_SESSION_CANCEL
}

bool Session::any_armed() const {
#define RINGLB_SESSION_ARMED(op) || op.armed()
    return client_.armed() || upstream_.armed() RINGLB_SESSION_OPS(RINGLB_SESSION_ARMED);
#undef RINGLB_SESSION_ARMED
}

void Session::maybe_destroy() {
    if (phase_ != Phase::kDraining || any_armed()) return;
    enter(Phase::kClosed);
    // No op is armed: no send can still be reading these buffers.
    buffered_.release(c2u_);
    buffered_.release(u2c_);
    splice_.release(c2u_);
    splice_.release(u2c_);
    if (upstream_.fd) engine_.close_fd(upstream_.fd.release());
    if (client_.fd) engine_.close_fd(client_.fd.release());
    shard_.session_closed(this);  // deletes this
}

}  // namespace ringlb::shard
