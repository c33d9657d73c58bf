#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/fd.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/tls/tls.hpp"

namespace ringlb::shard {

// The ops one leg (one socket) of a session can have armed, declared once: binding, cancelling
// and the "anything still armed?" check all iterate this list. X(member).
#define RINGLB_LEG_OPS(X) \
    X(recv)               \
    X(send)               \
    X(poll)

// Bytes a send is on its way from: allocated when filled and freed once sent, so an idle TLS
// session holds none (the engine's buffers cannot be used: the bytes are made by OpenSSL).
struct OutBytes {
    std::unique_ptr<char[]> data;
    size_t size = 0;
    size_t sent = 0;

    size_t unsent() const { return size - sent; }
    char* allocate(size_t n) {
        data = std::make_unique_for_overwrite<char[]>(n);
        size = n;
        sent = 0;
        return data.get();
    }
    void reset() {
        data.reset();
        size = sent = 0;
    }
};

// A leg that speaks TLS (proxy/shard/tls_pump.hpp drives it): the connection's TLS state and
// the bytes on their way out of it. Allocated only for TLS legs.
struct TlsLeg {
    explicit TlsLeg(std::unique_ptr<tls::Stream> s) : stream(std::move(s)) {}

    // Owned through a pointer: a warm pool hands over a stream it handshaked in advance.
    std::unique_ptr<tls::Stream> stream;
    // Ciphertext the leg's send op is sending (the stream's output, copied out because a memory
    // BIO may move its bytes while a send reads them).
    OutBytes out;
    // Plaintext read from this leg, on its way to a plain other leg (that leg's send reads it).
    OutBytes plain;
    // Client bytes the prelude read before this (upstream) leg's handshake: written to the
    // stream once it finishes.
    std::string early;
    uint64_t started_ns = 0;  // the handshake's start, for its duration
};

// One side of a session: the client's socket or the upstream's. It owns the fd, every op armed
// on that fd and the leg's half-close state, so teardown is "cancel everything on both legs".
struct Leg {
    common::Fd fd;
    engine::Op recv;  // receives from this leg (the buffered pump of the direction leaving it)
    engine::Op send;  // sends to this leg (the buffered pump of the direction entering it)
    engine::Op poll;  // readiness on this leg (the splice pump, both directions)
    bool fin_received = false;    // EOF read from this leg
    bool fin_sent = false;        // shutdown(SHUT_WR) sent to this leg
    std::unique_ptr<TlsLeg> tls;  // only when the leg speaks TLS

    // TLS still being negotiated on this leg: its bytes are the handshake's, not the pumps'.
    bool handshaking() const { return tls && !tls->stream->handshake_done(); }

    // Op tags are `base + index in RINGLB_LEG_OPS`, so a completion names its leg and its op.
    enum OpIndex : uint8_t {
#define RINGLB_LEG_OP_INDEX(name) k_##name,
        RINGLB_LEG_OPS(RINGLB_LEG_OP_INDEX)
#undef RINGLB_LEG_OP_INDEX
            kOpCount
    };

    void bind(engine::Handler* handler, uint8_t base) {
#define RINGLB_LEG_BIND(name) name.bind(handler, static_cast<uint8_t>(base + k_##name));
        RINGLB_LEG_OPS(RINGLB_LEG_BIND)
#undef RINGLB_LEG_BIND
    }
    bool armed() const {
#define RINGLB_LEG_ARMED(name) || name.armed()
        return false RINGLB_LEG_OPS(RINGLB_LEG_ARMED);
#undef RINGLB_LEG_ARMED
    }
    void cancel_all(engine::Engine& engine) {
#define RINGLB_LEG_CANCEL(name) \
    if (name.armed()) engine.cancel(name);
        RINGLB_LEG_OPS(RINGLB_LEG_CANCEL)
#undef RINGLB_LEG_CANCEL
    }
};

}  // namespace ringlb::shard
