#pragma once

#include <cstdint>

#include "proxy/shard/direction.hpp"

namespace ringlb::shard {

class Session;

// Splice forwarding: readiness (multishot poll / edge-triggered epoll) plus inline non-blocking
// splice(2) through a pipe borrowed from the shard's pool only while bytes sit in it, so an idle
// session holds no pipe. IORING_OP_SPLICE is not used: it always runs on io-wq workers.
class SplicePump {
  public:
    explicit SplicePump(Session& session) : session_(session) {}

    // Readiness on `leg` (the source of `as_src`, the destination of `as_dst`).
    void on_readiness(Direction& as_src, Direction& as_dst, uint32_t mask);
    // Moves what it can; returns false after the session started tearing down on error.
    bool pump(Direction& d);
    // Gives the pipe back (closed when it may still hold bytes).
    void release(Direction& d);

  private:
    Session& session_;
};

}  // namespace ringlb::shard
