#include "proxy/shard/tls_pump.hpp"

#include <cerrno>

#include "proxy/shard/session.hpp"
#include "proxy/shard/shard.hpp"

namespace ringlb::shard {

namespace {

// Decrypted bytes gathered for one send to a plain leg: up to four records, so bulk streams make
// a quarter of the sends they would with one record each.
constexpr size_t kPlainChunk = 64 * 1024;
// The largest TLS record's plaintext (RFC 8446 5.1).
constexpr size_t kRecord = 16 * 1024;

using Result = tls::Stream::Result;

}  // namespace

size_t TlsPump::unsent(const Leg& leg) {
    return leg.tls->out.unsent() + leg.tls->stream->pending_output();
}

bool TlsPump::destination_full(const Direction& d) const {
    if (d.dst->tls) return unsent(*d.dst) >= kMaxPending;
    // A plain destination is sent the source's decrypted bytes one chunk at a time.
    return d.src->tls->plain.unsent() > 0;
}

void TlsPump::flush(Leg& leg) {
    Session& s = session_;
    if (s.closing() || leg.send.armed()) return;
    TlsLeg& t = *leg.tls;
    if (t.out.unsent() == 0) {
        size_t n = t.stream->pending_output();
        if (n == 0) {
            t.out.reset();
            return;
        }
        t.stream->take_output(std::span<char>(t.out.allocate(n), n));
    }
    s.engine_.send(leg.send, leg.fd.get(), t.out.data.get() + t.out.sent, t.out.unsent());
}

void TlsPump::handshake(Leg& leg) {
    Session& s = session_;
    tls::Stream& stream = *leg.tls->stream;
    Result r = stream.handshake();
    flush(leg);  // our flight, or an alert
    switch (r) {
        case Result::kOk:
            s.on_handshake_done(leg);
            return;
        case Result::kWantRead:
            if (leg.fin_received) {
                s.on_handshake_failed(leg, tls::HandshakeResult::k_closed);
                return;
            }
            if (!leg.recv.armed()) s.engine_.recv_once(leg.recv, leg.fd.get());
            return;
        case Result::kClosed:
        case Result::kError:
            break;
    }
    s.on_handshake_failed(leg, stream.failure() == tls::Failure::kCertificate
                                   ? tls::HandshakeResult::k_certificate
                                   : tls::HandshakeResult::k_protocol);
}

void TlsPump::on_handshake_recv(Leg& leg, const engine::Completion& c) {
    Session& s = session_;
    if (c.has_buffer()) {
        if (!s.closing() && c.res > 0) {
            std::span<char> buffer = s.engine_.buffer(c.buffer_id);
            leg.tls->stream->feed(std::span<const char>(buffer.data(), static_cast<size_t>(c.res)));
            s.shard_.release_buffer(c.buffer_id);
            handshake(leg);
            return;
        }
        s.shard_.release_buffer(c.buffer_id);
    }
    if (s.closing()) return;
    if (c.res == -ENOBUFS) {
        s.shard_.stats().buffer_starved.add();
        (&leg == &s.client_ ? s.c2u_ : s.u2c_).starved = true;
        if (s.engine_.buffers_free() > 0)
            s.engine_.recv_once(leg.recv, leg.fd.get());
        else
            s.shard_.wait_for_buffers(&s);
        return;
    }
    // EOF or an error: the peer went away before the handshake finished.
    leg.fin_received = true;
    s.on_handshake_failed(leg, tls::HandshakeResult::k_closed);
}

void TlsPump::start(Direction& d) {
    d.mode = Direction::Mode::kTls;
    // Bytes that came in with the handshake's last flight (a client's first request) are in the
    // source's stream already.
    if (d.src->tls)
        pull(d);
    else
        maybe_receive(d);
}

void TlsPump::maybe_receive(Direction& d) {
    Session& s = session_;
    if (s.closing() || d.src_eof || d.done || d.mode != Direction::Mode::kTls ||
        d.recv_op().armed())
        return;
    if (destination_full(d)) return;
    if (d.src->tls && d.src->tls->stream->buffered_input() >= kMaxPending) return;
    if (d.starved && s.engine_.buffers_free() == 0) {
        s.shard_.wait_for_buffers(&s);
        return;
    }
    d.starved = false;
    s.engine_.recv_once(d.recv_op(), d.src_fd());
}

void TlsPump::on_recv(Direction& d, const engine::Completion& c) {
    Session& s = session_;
    if (c.has_buffer()) {
        if (s.closing() || d.done || c.res <= 0) {
            s.shard_.release_buffer(c.buffer_id);
        } else {
            std::span<char> buffer = s.engine_.buffer(c.buffer_id);
            std::span<const char> bytes(buffer.data(), static_cast<size_t>(c.res));
            s.note_received(d);
            if (d.src->tls) {
                d.src->tls->stream->feed(bytes);
                s.shard_.release_buffer(c.buffer_id);
            } else {
                Result r = d.dst->tls->stream->write(bytes);
                s.shard_.release_buffer(c.buffer_id);
                if (r != Result::kOk) {
                    s.fail(EPROTO);
                    return;
                }
                s.count_bytes(d, bytes.size());
                flush(*d.dst);
            }
        }
    }
    if (c.more() || s.closing()) return;
    if (c.res == 0) {
        // A FIN without close_notify ends the stream too: many clients never send one.
        d.src_eof = true;
        d.src->fin_received = true;
        s.note_received(d);
    } else if (c.res == -ENOBUFS) {
        s.shard_.stats().buffer_starved.add();
        d.starved = true;
    } else if (c.res < 0 && c.res != -ECANCELED) {
        s.fail(-c.res);
        return;
    }
    if (d.src->tls) {
        pull(d);
        return;
    }
    if (d.src_eof) {
        maybe_finish(d);
        return;
    }
    maybe_receive(d);
}

void TlsPump::pull(Direction& d) {
    Session& s = session_;
    TlsLeg& src = *d.src->tls;
    bool drained = false;  // the stream has nothing more to decrypt until more bytes come
    bool closed = false;   // the peer's close_notify
    while (!s.closing() && !d.done && !drained && !destination_full(d)) {
        Result r = Result::kOk;
        size_t n = 0;
        if (d.dst->tls) {
            char record[kRecord];
            r = src.stream->read(std::span<char>(record, sizeof record), &n);
            if (r == Result::kOk) {
                if (d.dst->tls->stream->write(std::span<const char>(record, n)) != Result::kOk) {
                    s.fail(EPROTO);
                    return;
                }
                s.count_bytes(d, n);
                flush(*d.dst);
                continue;
            }
        } else {
            char* chunk = src.plain.allocate(kPlainChunk);
            size_t filled = 0;
            while (filled < kPlainChunk) {
                r = src.stream->read(std::span<char>(chunk + filled, kPlainChunk - filled), &n);
                if (r != Result::kOk) break;
                filled += n;
            }
            if (filled == 0) {
                src.plain.reset();
            } else {
                src.plain.size = filled;
                s.engine_.send(d.send_op(), d.dst_fd(), chunk, filled);
            }
            if (r == Result::kOk) continue;
        }
        if (r == Result::kWantRead) {
            drained = true;
        } else if (r == Result::kClosed) {
            drained = closed = true;
        } else {
            s.fail(EPROTO);
            return;
        }
    }
    // Reading may have written (the answer to a TLS 1.3 key update).
    flush(*d.src);
    if (s.closing() || d.done) return;
    if (closed && !d.src_eof) {
        d.src_eof = true;
        d.src->fin_received = true;
        s.note_received(d);
        // The peer's TCP stream may still be open: nothing more is read from it (a FIN comes
        // later, or the session ends first).
    }
    if (d.src_eof) {
        if (drained) maybe_finish(d);
        return;
    }
    maybe_receive(d);
}

void TlsPump::maybe_finish(Direction& d) {
    Session& s = session_;
    if (!d.src_eof || d.done || s.closing()) return;
    if (d.dst->tls) {
        tls::Stream& dst = *d.dst->tls->stream;
        if (!dst.shutdown_sent()) {
            dst.shutdown();
            flush(*d.dst);
        }
        if (unsent(*d.dst) > 0 || d.send_op().armed()) return;  // on_sent comes back here
    } else if (d.src->tls->plain.unsent() > 0 || d.send_op().armed()) {
        return;  // on_plain_sent comes back here
    }
    s.finish_direction(d);
}

void TlsPump::on_plain_sent(Direction& d, const engine::Completion& c) {
    Session& s = session_;
    if (s.closing()) return;
    if (c.res <= 0) {
        s.fail(c.res < 0 ? -c.res : EPIPE);
        return;
    }
    OutBytes& plain = d.src->tls->plain;
    plain.sent += static_cast<size_t>(c.res);
    s.count_bytes(d, static_cast<size_t>(c.res));
    if (plain.unsent() > 0) {
        s.engine_.send(d.send_op(), d.dst_fd(), plain.data.get() + plain.sent, plain.unsent());
        return;
    }
    plain.reset();
    pull(d);
}

void TlsPump::on_sent(Leg& leg, const engine::Completion& c) {
    Session& s = session_;
    if (s.closing()) return;
    if (c.res <= 0) {
        s.fail(c.res < 0 ? -c.res : EPIPE);
        return;
    }
    OutBytes& out = leg.tls->out;
    out.sent += static_cast<size_t>(c.res);
    if (out.unsent() == 0) out.reset();
    flush(leg);
    // Room towards this leg again: the direction entering it goes on.
    Direction& entering = &leg == &s.client_ ? s.u2c_ : s.c2u_;
    if (entering.mode != Direction::Mode::kTls) return;  // a handshake's flight
    if (entering.src->tls) {
        pull(entering);
        return;
    }
    if (entering.src_eof) {
        maybe_finish(entering);
        return;
    }
    maybe_receive(entering);
}

}  // namespace ringlb::shard
