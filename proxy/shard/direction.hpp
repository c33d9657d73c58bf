#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxy/shard/leg.hpp"
#include "proxy/shard/pipe_pool.hpp"

namespace ringlb::shard {

// Bytes received but not yet sent, in order. Holds engine buffer ids.
struct Queued {
    uint16_t id;
    uint32_t len;
};

// One direction of a session (client to upstream, or back): from `src`'s receive side to `dst`'s
// send side. The buffered and the splice pump both run on this state; a splice direction can
// turn buffered mid-stream when the pipe pool is empty. kTls: either leg speaks TLS
// (proxy/shard/tls_pump.hpp), whose state sits in the legs.
struct Direction {
    enum class Mode : uint8_t { kSplice, kBuffered, kTls };

    Leg* src = nullptr;
    Leg* dst = nullptr;
    Mode mode = Mode::kBuffered;
    bool c2u = true;
    bool src_eof = false;
    bool done = false;  // EOF forwarded as shutdown(SHUT_WR), nothing left
    // splice
    Pipe* pipe = nullptr;
    size_t in_pipe = 0;
    bool waiting_dst = false;
    bool src_fin_seen = false;  // POLLRDHUP: the source's FIN arrived, EOF follows the data
    // buffered: a multishot receive can deliver several buffers before a pause takes effect, so
    // the queue grows on demand; it allocates nothing until data first waits.
    std::vector<Queued> queue;
    size_t q_head = 0;
    size_t head_sent = 0;
    bool starved = false;
    // Bulk streams (full buffers) receive one buffer at a time; interactive ones keep a
    // multishot receive armed, which saves a submission per message. A direction starts
    // single-shot and turns multishot only after kInteractiveStreak small messages in a row (a
    // stream that opens with a short greeting and then turns bulk would otherwise take a burst
    // of buffers from the shared pool), and back on the first full buffer.
    uint8_t small_streak = 0;

    engine::Op& recv_op() { return src->recv; }
    engine::Op& send_op() { return dst->send; }
    int src_fd() const { return src->fd.get(); }
    int dst_fd() const { return dst->fd.get(); }
    size_t queued() const { return queue.size() - q_head; }
};

}  // namespace ringlb::shard
