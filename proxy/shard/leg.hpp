#pragma once

#include <cstdint>

#include "common/fd.hpp"
#include "proxy/engine/engine.hpp"

namespace ringlb::shard {

// The ops one leg (one socket) of a session can have armed, declared once: binding, cancelling
// and the "anything still armed?" check all iterate this list. X(member).
#define RINGLB_LEG_OPS(X) \
    X(recv)               \
    X(send)               \
    X(poll)

// One side of a session: the client's socket or the upstream's. It owns the fd, every op armed
// on that fd and the leg's half-close state, so teardown is "cancel everything on both legs".
struct Leg {
    common::Fd fd;
    engine::Op recv;  // receives from this leg (the buffered pump of the direction leaving it)
    engine::Op send;  // sends to this leg (the buffered pump of the direction entering it)
    engine::Op poll;  // readiness on this leg (the splice pump, both directions)
    bool fin_received = false;  // EOF read from this leg
    bool fin_sent = false;      // shutdown(SHUT_WR) sent to this leg

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
