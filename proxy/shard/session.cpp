#include "proxy/shard/session.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"
#include "proxy/frontend/proxy_protocol.hpp"
#include "proxy/shard/shard.hpp"
#include "proxy/upstream/cluster.hpp"

namespace ringlb::shard {

namespace {

constexpr uint32_t kPollMask = POLLIN | POLLOUT | POLLRDHUP;
// What the watch on a queued client waits for: a reset (or a close after our own shutdown), not
// data and not a half-close, which may follow a complete request.
constexpr uint32_t kClientGoneMask = POLLERR | POLLHUP;

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
        // A bug, but one that could hit every session: limited like the data path's warnings.
        thread_local common::LogLimiter transition_log;
        LOG_ERROR_LIMITED(transition_log, shard_.now_ms(),
                          "session: impossible phase transition %s -> %s (ignored)",
                          to_string(phase_), to_string(next));
        return false;
    }
    phase_ = next;
    return true;
}

Session::Session(Shard& shard, common::Fd client, std::shared_ptr<const Snapshot> snapshot,
                 const config::ListenerConfig& listener, ListenerCounters& listener_counters,
                 upstream::ClusterState& cluster, Admission& admission, Admission::Ticket ticket)
    : shard_(shard),
      engine_(shard.engine()),
      snapshot_(std::move(snapshot)),
      listener_(listener),
      listener_counters_(listener_counters),
      cluster_(&cluster),
      admission_(admission),
      ticket_(std::move(ticket)),
      buffered_(*this),
      splice_(*this),
      tls_(*this) {
    ++cluster_->users;  // a state a reload replaced lives until its last session ends
    client_.fd = std::move(client);
    client_.bind(this, kClientBase);
    upstream_.bind(this, kUpstreamBase);
    timeout_.bind(this, 0);
    c2u_.src = &client_;
    c2u_.dst = &upstream_;
    c2u_.c2u = true;
    u2c_.src = &upstream_;
    u2c_.dst = &client_;
    u2c_.c2u = false;
    accepted_ns_ = common::monotonic_ns();
    shard_.stats().active.add();
    listener_counters_.active_connections.add();
}

Session::~Session() {
    shard_.stats().active.sub();
    shard_.stats().closed.add();
    // Observed before the gauge drops, so a scrape that sees no session open sees them all here.
    listener_counters_.session_duration.observe((common::monotonic_ns() - accepted_ns_) / 1000);
    listener_counters_.active_connections.sub();
    --cluster_->users;
}

void Session::start() {
    started_ms_ = shard_.now_ms();
    if (shard_.access_log()) access_ = AccessTally::for_client(client_.fd.get());
    if (!listener_.has_prelude()) {
        // Routing needs nothing from the client. The client socket inherited TCP_NODELAY from
        // the listener (see common::listen_tcp).
        connect();
        maybe_destroy();
        return;
    }
    size_t index = static_cast<size_t>(&listener_ - snapshot_->config->listeners.data());
    prelude_ =
        std::make_unique<Prelude>(listener_, snapshot_->routers[index].get(), listener_counters_);
    if (listener_.proxy_protocol != config::ProxyProtocol::kNone && admission_.needs_source())
        prelude_->pause_after_header();
    if (!listener_.proxy_protocol_from.empty()) {
        common::Address peer = common::peer_address(client_.fd.get());
        if (peer.length == 0 || !prelude_->trusted(peer)) {
            refuse();
            maybe_destroy();
            return;
        }
    }
    if (!prelude_->reading()) {
        // Only TLS to terminate: the handshake is the prelude.
        start_client_tls();
        maybe_destroy();
        return;
    }
    shard_.timers().schedule(
        timeout_, started_ms_ + static_cast<uint64_t>(listener_.prelude_timeout.count()));
    engine_.recv_once(client_.recv, client_.fd.get());
}

void Session::on_prelude_recv(const engine::Completion& c) {
    if (c.has_buffer()) {
        if (!closing() && c.res > 0) {
            // Copied before the buffer goes back: a released ring buffer may be refilled by the
            // kernel at once.
            std::span<char> buffer = engine_.buffer(c.buffer_id);
            Prelude::Step step =
                prelude_->feed(std::span<const char>(buffer.data(), static_cast<size_t>(c.res)));
            shard_.release_buffer(c.buffer_id);
            on_prelude_step(step);
            return;
        }
        shard_.release_buffer(c.buffer_id);
    }
    if (closing()) return;
    if (c.res == 0) {
        client_.fin_received = true;  // a TLS handshake after the prelude fails at once
        on_prelude_step(prelude_->end_of_input());
    } else if (c.res == -ENOBUFS) {
        shard_.stats().buffer_starved.add();
        c2u_.starved = true;
        if (engine_.buffers_free() > 0)
            resume_receive();
        else
            shard_.wait_for_buffers(this);
    } else if (c.res == -ECANCELED && prelude_deadline_) {
        on_prelude_step(prelude_->deadline());
    } else if (c.res < 0) {
        client_.fin_received = true;
        on_prelude_step(prelude_->end_of_input());
    }
}

void Session::on_prelude_step(Prelude::Step step) {
    switch (step) {
        case Prelude::Step::kMore:
            if (prelude_deadline_) {
                on_prelude_step(prelude_->deadline());
                return;
            }
            engine_.recv_once(client_.recv, client_.fd.get());
            return;
        case Prelude::Step::kClose:
            refuse();
            return;
        case Prelude::Step::kHeader:
            // Before any ClientHello is waited for or counted: a refused client neither holds
            // its session for prelude_timeout nor shows up among the SNI results.
            if (admit_source()) on_prelude_step(prelude_->resume());
            return;
        case Prelude::Step::kRoute:
            break;
    }
    shard_.timers().cancel(timeout_);
    if (std::optional<size_t> route = prelude_->route()) {
        // The cluster the shard runs now under that name: a reload since the accept may have
        // replaced the one of this session's snapshot. Gone altogether: the listener's own.
        upstream::ClusterState* routed =
            shard_.connector().state_named(listener_.routes[*route].cluster);
        if (routed && routed != cluster_) {
            --cluster_->users;
            cluster_ = routed;
            ++cluster_->users;
        }
    }
    if (prelude_->source()) {
        if (access_) access_->client = *prelude_->source();
    }
    if (listener_.tls.enabled) {
        start_client_tls();
        return;
    }
    connect();
}

void Session::start_client_tls() {
    // handshake_timeout counts from the accept: a prelude that took long leaves less.
    shard_.timers().cancel(timeout_);
    shard_.timers().schedule(
        timeout_, started_ms_ + static_cast<uint64_t>(listener_.tls.handshake_timeout.count()));
    size_t index = static_cast<size_t>(&listener_ - snapshot_->config->listeners.data());
    SSL* ssl = snapshot_->listener_tls[index]->new_ssl();
    if (!ssl) {
        fail(ENOMEM);
        return;
    }
    client_.tls = std::make_unique<TlsLeg>(std::make_unique<tls::Stream>(ssl, true));
    client_.tls->started_ns = common::monotonic_ns();
    // The ClientHello (or part of it), read by the prelude for routes.
    std::string early = prelude_->take_client_bytes();
    if (!early.empty()) client_.tls->stream->feed(early);
    tls_.handshake(client_);
}

tls::HandshakeCounters& Session::handshake_counters(const Leg& leg) {
    return &leg == &client_ ? listener_counters_.tls : cluster_->counters.tls;
}

void Session::on_handshake_done(Leg& leg) {
    TlsLeg& t = *leg.tls;
    tls::HandshakeCounters& counters = handshake_counters(leg);
    counters.count(t.stream->resumed() ? tls::HandshakeResult::k_resumed
                                       : tls::HandshakeResult::k_ok);
    counters.duration.observe((common::monotonic_ns() - t.started_ns) / 1000);
    if (&leg == &client_) {
        shard_.timers().cancel(timeout_);
        if (access_) {
            access_->tls_version = t.stream->version();
            access_->tls_cipher = t.stream->cipher();
        }
        connect();
        return;
    }
    upstream_tls_ready();
}

void Session::on_handshake_failed(Leg& leg, tls::HandshakeResult result) {
    handshake_counters(leg).count(result);
    bool client = &leg == &client_;
    thread_local common::LogLimiter handshake_log;  // per shard
    LOG_WARN_LIMITED(handshake_log, shard_.now_ms(), "%s %s: TLS handshake failed: %s%s%s",
                     client ? "listener" : "cluster",
                     client ? listener_.name.c_str() : cluster_->cluster->name.c_str(),
                     tls::kHandshakeResultNames[static_cast<size_t>(result)],
                     leg.tls->stream->error().empty() ? "" : ": ",
                     leg.tls->stream->error().c_str());
    if (client) {
        close_reason_ = upstream::CloseReason::k_refused;
    } else {
        // The client was accepted and hears nothing more: a reset says so.
        close_reason_ = upstream::CloseReason::k_tls_handshake;
        reset_both_legs();
    }
    teardown();
}

void Session::refuse() {
    thread_local common::LogLimiter refusal_log;  // per shard
    const char* reason = prelude_ ? prelude_->error().c_str() : "?";
    LOG_WARN_LIMITED(refusal_log, shard_.now_ms(), "listener %s: client refused: %s",
                     listener_.name.c_str(), reason);
    close_reason_ = upstream::CloseReason::k_refused;
    teardown();
}

bool Session::admit_source() {
    // Only with proxy_protocol: otherwise the shard decided at accept (Shard::start_session).
    common::Address peer;
    const common::Address* client = prelude_->source();
    if (!client) {
        peer = common::peer_address(client_.fd.get());
        if (peer.length == 0) {
            fail(errno);
            return false;
        }
        client = &peer;
    }
    std::optional<RejectReason> refused =
        admission_.admit_source(listener_, *client, shard_.now_ms(), ticket_);
    if (!refused) return true;
    note_rejection(listener_, listener_counters_, client, *refused, shard_.now_ms());
    if (listener_.reject == config::ClosePolicy::kReset) common::set_linger_zero(client_.fd.get());
    close_reason_ = upstream::CloseReason::k_refused;
    teardown();
    return false;
}

void Session::connect() {
    enter(Phase::kConnecting);
    upstream::PickContext context;
    if (cluster_->cluster->settings->balance == config::Balance::kMaglev) {
        // Only hashing policies need the client's address: the PROXY header's, or one
        // getpeername() for them alone.
        client_address_ = std::make_unique<common::Address>(
            prelude_ && prelude_->source() ? *prelude_->source()
                                           : common::peer_address(client_.fd.get()));
        if (client_address_->length != 0) context.client = client_address_.get();
    }
    request_ = std::make_unique<upstream::ConnectRequest>();
    request_->connect_op.bind(this, kConnect);
    request_->timer_op.bind(this, kRequestTimer);
    shard_.connector().acquire(*request_, *cluster_, context, *this);
}

void Session::on_upstream_ready(upstream::ConnectRequest& req) {
    // The client was waited for; forwarding notices a reset by itself from here on.
    if (client_watch_ && client_.poll.armed()) engine_.cancel(client_.poll);
    upstream_.fd = std::move(req.fd);
    if (req.tls) upstream_.tls = std::make_unique<TlsLeg>(std::move(req.tls));
    backend_ = req.backend;
    // The connector is done with it (see ConnectCallbacks); an op still armed would be a bug,
    // and then it stays for teardown to cancel.
    if (&req == request_.get() && !req.armed()) request_.reset();
    if (access_) access_->connected_ns = common::monotonic_ns();
    on_connected();
}

void Session::on_upstream_failed(upstream::ConnectRequest&, upstream::CloseReason reason) {
    close_reason_ = reason;
    teardown();
}

void Session::on_upstream_queued(upstream::ConnectRequest&) {
    // The wait may last queue.timeout (up to an hour). A client that resets meanwhile leaves
    // the queue at once, instead of holding a place and then a backend slot it never uses.
    // Armed only for queued sessions: a poll and its cancel for every connect would cost two
    // SQEs per connection.
    if (client_watch_ || client_.poll.armed()) return;
    client_watch_ = true;
    engine_.poll(client_.poll, client_.fd.get(), kClientGoneMask);
}

void Session::on_client_watch(engine::Op& op, const engine::Completion& c) {
    if (phase_ == Phase::kConnecting) {
        if (c.res > 0 && (static_cast<uint32_t>(c.res) & kClientGoneMask) != 0) {
            cluster_->counters.queue_abandoned.add();
            close_reason_ = upstream::CloseReason::k_queue_abandoned;
            teardown();  // leaves the queue (or cancels the connect) and cancels this watch
            return;
        }
        // A spurious first completion changes nothing; if the engine stopped watching, watch
        // again (an error ends the watch).
        if (op.armed()) return;
        if (c.res >= 0)
            engine_.poll(op, client_.fd.get(), kClientGoneMask);
        else
            client_watch_ = false;
        return;
    }
    // Connected since (the watch was cancelled at hand-over): wait for its last completion,
    // then the op is the splice pump's again.
    if (op.armed()) return;
    client_watch_ = false;
    if (client_poll_deferred_) {
        client_poll_deferred_ = false;
        engine_.poll(op, client_.fd.get(), kPollMask);
    }
}

void Session::on_connected() {
    if (!enter(Phase::kForwarding)) return;
    arm_timeouts();
    if (const tls::ClientContext* context = cluster_->cluster->tls.get()) {
        if (!upstream_.tls) {
            // No pooled connection handshaked in advance: this session waits for one.
            SSL* ssl = context->new_ssl();
            if (!ssl) {
                fail(ENOMEM);
                return;
            }
            upstream_.tls = std::make_unique<TlsLeg>(std::make_unique<tls::Stream>(ssl, false));
            cluster_->counters.tls_inline_handshakes.add();
            tls_end_ms_ =
                shard_.now_ms() +
                static_cast<uint64_t>(cluster_->cluster->settings->tls.handshake_timeout.count());
            rearm_timeout();
        }
        // The client's bytes the prelude read go to the backend inside TLS, after the
        // handshake; a terminated client's were its own handshake.
        if (prelude_ && !client_.tls) upstream_.tls->early = prelude_->take_client_bytes();
    }
    std::string header = proxy_header_out();
    if (!header.empty() && !prelude_)
        prelude_ = std::make_unique<Prelude>(listener_, nullptr, listener_counters_);
    if (prelude_) {
        prelude_->prepare_output(std::move(header));
        if (!prelude_->unsent().empty()) {
            std::span<const char> out = prelude_->unsent();
            engine_.send(upstream_.send, upstream_.fd.get(), out.data(), out.size());
            return;
        }
    }
    after_prelude_output();
}

void Session::after_prelude_output() {
    prelude_.reset();
    if (upstream_.tls) {
        if (upstream_.tls->stream->handshake_done()) {
            upstream_tls_ready();  // from the warm pool
            return;
        }
        upstream_.tls->started_ns = common::monotonic_ns();
        tls_.handshake(upstream_);
        return;
    }
    start_forwarding();
}

void Session::upstream_tls_ready() {
    TlsLeg& t = *upstream_.tls;
    tls_end_ms_ = 0;
    if (!t.early.empty()) {
        if (t.stream->write(t.early) != tls::Stream::Result::kOk) {
            fail(EPROTO);
            return;
        }
        count_bytes(c2u_, t.early.size());
        std::string().swap(t.early);
        tls_.flush(upstream_);
    }
    start_forwarding();
}

std::string Session::proxy_header_out() {
    config::SendProxy version = cluster_->cluster->settings->send_proxy;
    if (version == config::SendProxy::kNone) return {};
    const common::Address* source = prelude_ ? prelude_->source() : nullptr;
    const common::Address* destination = prelude_ ? prelude_->destination() : nullptr;
    common::Address peer;
    common::Address local;
    if (!source) {
        peer = common::peer_address(client_.fd.get());
        local = common::local_address(client_.fd.get());
        if (peer.length != 0 && local.length != 0) {
            source = &peer;
            destination = &local;
        }
    }
    if (version == config::SendProxy::kV1) return frontend::encode_proxy_v1(source, destination);
    return frontend::encode_proxy_v2(
        source, destination, prelude_ ? std::string_view(prelude_->sni()) : std::string_view());
}

void Session::on_prelude_sent(const engine::Completion& c) {
    if (closing()) return;
    if (c.res <= 0) {
        fail(c.res < 0 ? -c.res : EPIPE);
        return;
    }
    size_t client_bytes = prelude_->sent(static_cast<size_t>(c.res));
    if (client_bytes > 0) count_bytes(c2u_, client_bytes);
    std::span<const char> out = prelude_->unsent();
    if (!out.empty()) {
        engine_.send(upstream_.send, upstream_.fd.get(), out.data(), out.size());
        return;
    }
    after_prelude_output();
}

void Session::start_forwarding() {
    // Measured interleaved on one binary (README, Performance): buffered forwarding costs less
    // proxy CPU than readiness + splice per request, per connection and per GB, so "auto"
    // means buffered.
    if (client_.tls || upstream_.tls) {
        // The configuration refuses splice with TLS: the kernel cannot decrypt into a pipe here.
        shard_.stats().buffered_directions.add(2);
        tls_.start(c2u_);
        tls_.start(u2c_);
        return;
    }
    bool splice = listener_.forward == config::ForwardMode::kSplice;
    start_direction(c2u_, splice);
    start_direction(u2c_, splice);
    if (splice) {
        if (client_watch_)
            client_poll_deferred_ = true;  // armed when the queue's watch has ended
        else
            engine_.poll(client_.poll, client_.fd.get(), kPollMask);
        engine_.poll(upstream_.poll, upstream_.fd.get(), kPollMask);
    }
}

void Session::note_received(const Direction& d) {
    (d.c2u ? last_client_rx_ms_ : last_server_rx_ms_) = shard_.now_ms();
}

void Session::arm_timeouts() {
    const config::ListenerConfig& l = listener_;
    uint64_t now = shard_.now_ms();
    last_client_rx_ms_ = last_server_rx_ms_ = now;
    if (l.max_duration.count() > 0) {
        // Counted from the accept, as documented: a slow connect eats into it.
        uint64_t jitter = static_cast<uint64_t>(l.max_duration_jitter.count());
        end_ms_ = started_ms_ + static_cast<uint64_t>(l.max_duration.count()) +
                  (jitter ? shard_.random() % (jitter + 1) : 0);
    }
    rearm_timeout();
}

void Session::rearm_timeout() {
    upstream::CloseReason which;
    uint64_t deadline = next_deadline(&which);
    // The timer only ever needs to move earlier here: a later deadline is found when it fires.
    if (deadline != UINT64_MAX && (!timeout_.scheduled() || deadline < timeout_.deadline_ms()))
        shard_.timers().schedule(timeout_, deadline);
}

uint64_t Session::next_deadline(upstream::CloseReason* which) const {
    using upstream::CloseReason;
    uint64_t best = UINT64_MAX;
    auto consider = [&](config::Millis timeout, uint64_t since, CloseReason reason) {
        if (timeout.count() <= 0) return;
        uint64_t at = since + static_cast<uint64_t>(timeout.count());
        if (at < best) {
            best = at;
            *which = reason;
        }
    };
    const config::ListenerConfig& l = listener_;
    uint64_t last_any = std::max(last_client_rx_ms_, last_server_rx_ms_);
    consider(l.idle_timeout, last_any, CloseReason::k_idle_timeout);
    consider(l.client_idle_timeout, last_client_rx_ms_, CloseReason::k_client_idle_timeout);
    consider(cluster_->cluster->settings->server_idle_timeout, last_server_rx_ms_,
             CloseReason::k_server_idle_timeout);
    // Once either side has sent its FIN, a quiet pair is only waiting to pile up in FIN_WAIT_2.
    if (client_.fin_received || upstream_.fin_received)
        consider(l.half_closed_timeout, last_any, CloseReason::k_half_closed_timeout);
    if (end_ms_ != 0 && end_ms_ < best) {
        best = end_ms_;
        *which = CloseReason::k_max_duration;
    }
    if (tls_end_ms_ != 0 && tls_end_ms_ < best) {
        best = tls_end_ms_;
        *which = CloseReason::k_tls_handshake;
    }
    return best;
}

void Session::on_timer(Timer&) {
    if (closing()) return;
    if (client_.handshaking()) {
        on_handshake_failed(client_, tls::HandshakeResult::k_timeout);
        maybe_destroy();  // may delete this
        return;
    }
    if (phase_ == Phase::kPrelude) {
        // prelude_timeout: the receive is cancelled first, and its completion (perhaps with
        // bytes that raced the cancel) decides, so that no client byte is left behind.
        prelude_deadline_ = true;
        if (client_.recv.armed())
            engine_.cancel(client_.recv);
        else
            on_prelude_step(prelude_->deadline());
        maybe_destroy();  // may delete this
        return;
    }
    upstream::CloseReason which = upstream::CloseReason::k_done;
    uint64_t deadline = next_deadline(&which);
    if (deadline == UINT64_MAX) return;
    if (deadline > shard_.now_ms()) {
        // Activity moved the deadline since the timer was set: sleep again.
        shard_.timers().schedule(timeout_, deadline);
        return;
    }
    if (which == upstream::CloseReason::k_tls_handshake) {
        on_handshake_failed(upstream_, tls::HandshakeResult::k_timeout);
        maybe_destroy();  // may delete this
        return;
    }
    shard_.stats().timeouts.add();
    close_reason_ = which;
    LOG_DEBUG("listener %s: session closed: %s", listener_.name.c_str(),
              upstream::to_string(which));
    teardown();
    maybe_destroy();  // may delete this
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
    } else {
        shard_.connector().on_request_op(*request_, op, c);
    }
    maybe_destroy();  // last statement: may delete this
}

void Session::on_leg_op(Leg& leg, Leg::OpIndex index, engine::Op& op, const engine::Completion& c) {
    bool is_client = &leg == &client_;
    Direction& leaving = is_client ? c2u_ : u2c_;   // this leg is its source
    Direction& entering = is_client ? u2c_ : c2u_;  // this leg is its destination
    switch (index) {
        case Leg::k_recv:
            if (leg.handshaking())
                tls_.on_handshake_recv(leg, c);
            else if (phase_ <= Phase::kConnecting || (phase_ == Phase::kDraining && prelude_))
                on_prelude_recv(c);
            else if (leaving.mode == Direction::Mode::kTls)
                tls_.on_recv(leaving, c);
            else
                buffered_.on_recv(leaving, c);
            break;
        case Leg::k_send:
            if (prelude_ && !is_client)
                on_prelude_sent(c);
            else if (leg.tls)
                tls_.on_sent(leg, c);
            else if (entering.mode == Direction::Mode::kTls)
                tls_.on_plain_sent(entering, c);
            else
                buffered_.on_sent(entering, c);
            break;
        case Leg::k_poll:
            if (closing()) break;
            if (is_client && client_watch_) {
                on_client_watch(op, c);
                break;
            }
            if (c.res >= 0) splice_.on_readiness(leaving, entering, static_cast<uint32_t>(c.res));
            // The engine stopped watching (e.g. CQ overflow): keep watching while forwarding.
            if (!closing() && !op.armed() && c.res >= 0) engine_.poll(op, leg.fd.get(), kPollMask);
            break;
        case Leg::kOpCount:
            break;
    }
}

void Session::resume_receive() {
    for (Leg* leg : {&client_, &upstream_}) {
        if (!leg->handshaking()) continue;
        (leg == &client_ ? c2u_ : u2c_).starved = false;
        if (!leg->recv.armed()) engine_.recv_once(leg->recv, leg->fd.get());
        return;
    }
    if (phase_ == Phase::kPrelude) {
        c2u_.starved = false;
        if (!client_.recv.armed()) engine_.recv_once(client_.recv, client_.fd.get());
        return;
    }
    // Starved in the prelude and routed since (prelude_timeout): the pumps are not running yet.
    if (phase_ != Phase::kForwarding || prelude_) return;
    if (c2u_.mode == Direction::Mode::kTls) {
        tls_.maybe_receive(c2u_);
        tls_.maybe_receive(u2c_);
        return;
    }
    buffered_.maybe_receive(c2u_);
    buffered_.maybe_receive(u2c_);
}

void Session::count_bytes(const Direction& d, size_t n) {
    using enum ByteDirection;
    if (d.c2u) {
        shard_.stats().bytes_in.add(n);
        listener_counters_.bytes[static_cast<size_t>(k_client_to_upstream)].add(n);
        if (access_) access_->bytes_in += n;
    } else {
        backend_spoke_ = true;
        shard_.stats().bytes_out.add(n);
        listener_counters_.bytes[static_cast<size_t>(k_upstream_to_client)].add(n);
        if (access_) access_->bytes_out += n;
    }
}

void Session::finish_direction(Direction& d) {
    if (d.done) return;
    d.done = true;
    // Half-close: the peer learns that no more bytes come, and may still answer.
    ::shutdown(d.dst_fd(), SHUT_WR);
    d.dst->fin_sent = true;
    splice_.release(d);
    if (c2u_.done && u2c_.done) {
        teardown();
        return;
    }
    // half_closed_timeout may now come before the deadline the timer sleeps on.
    rearm_timeout();
}

void Session::fail(int err) {
    if (closing()) return;
    shard_.stats().forward_errors.add();
    close_reason_ = upstream::CloseReason::k_error;
    LOG_DEBUG("listener %s: session ended: %s", listener_.name.c_str(), std::strerror(err));
    reset_both_legs();
    teardown();
}

void Session::abort(upstream::CloseReason reason) {
    if (!closing()) close_reason_ = reason;
    reset_both_legs();
    teardown();
    maybe_destroy();
}

void Session::reset_both_legs() {
    // An error on one leg becomes a reset on the other, so neither peer mistakes a failure for
    // a clean end of stream.
    if (client_.fd) common::set_linger_zero(client_.fd.get());
    if (upstream_.fd) common::set_linger_zero(upstream_.fd.get());
}

void Session::teardown() {
    if (closing()) return;
    enter(Phase::kDraining);
    shard_.timers().cancel(timeout_);
    // Leaves the queue or the pool's hand-over and cancels the request's armed ops.
    if (request_) shard_.connector().abandon(*request_);
    client_.cancel_all(engine_);
    upstream_.cancel_all(engine_);
}

bool Session::any_armed() const {
    return client_.armed() || upstream_.armed() || (request_ && request_->armed());
}

void Session::maybe_destroy() {
    if (phase_ != Phase::kDraining || any_armed()) return;
    enter(Phase::kClosed);
    // No op is armed: no send can still be reading these buffers.
    buffered_.release(c2u_);
    buffered_.release(u2c_);
    splice_.release(c2u_);
    splice_.release(u2c_);
    if (request_ && request_->fd) engine_.close_fd(request_->fd.release());
    if (backend_) {
        // close = "reset": no TIME_WAIT on ringlb's side, at the price of an RST to the backend.
        if (upstream_.fd && cluster_->cluster->settings->close == config::ClosePolicy::kReset)
            common::set_linger_zero(upstream_.fd.get());
        shard_.connector().release(*backend_, close_reason_, backend_spoke_);
    }
    if (upstream_.fd) engine_.close_fd(upstream_.fd.release());
    if (client_.fd) engine_.close_fd(client_.fd.release());
    if (access_) log_access();
    shard_.session_closed(this);  // deletes this
}

void Session::log_access() {
    AccessRecord record;
    record.listener = listener_.name;
    if (access_->client.length != 0) record.client = &access_->client;
    if (backend_) record.backend = backend_->backend->name;
    record.bytes_in = access_->bytes_in;
    record.bytes_out = access_->bytes_out;
    record.duration_ns = common::monotonic_ns() - accepted_ns_;
    record.connected = access_->connected_ns != 0;
    record.connect_ns = record.connected ? access_->connected_ns - accepted_ns_ : 0;
    record.reason = upstream::to_string(close_reason_);
    if (access_->tls_version) {
        record.tls_version = access_->tls_version;
        record.tls_cipher = access_->tls_cipher ? access_->tls_cipher : "";
    }
    shard_.access_log()->append(record, shard_.timers(), shard_.now_ms());
}

}  // namespace ringlb::shard
