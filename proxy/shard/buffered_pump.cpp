#include "proxy/shard/buffered_pump.hpp"

#include <cerrno>

#include "proxy/shard/session.hpp"
#include "proxy/shard/shard.hpp"

namespace ringlb::shard {

void BufferedPump::on_recv(Direction& d, const engine::Completion& c) {
    Session& s = session_;
    if (c.has_buffer()) {
        if (s.closing() || d.done || c.res <= 0) {
            s.shard_.release_buffer(c.buffer_id);
        } else {
            d.queue.push_back(Queued{c.buffer_id, static_cast<uint32_t>(c.res)});
            s.note_received(d);
            if (!d.send_op().armed()) send_head(d);
            bool full = static_cast<size_t>(c.res) >= s.engine_.buffer(c.buffer_id).size();
            if (full)
                d.small_streak = 0;
            else if (d.small_streak < kInteractiveStreak)
                ++d.small_streak;
            // Backpressure, and bulk onset: stop the multishot receive; maybe_receive() re-arms
            // (single-shot for bulk) once the other side keeps up.
            if ((full || d.queued() >= kHighWater) && d.recv_op().armed())
                s.engine_.cancel(d.recv_op());
        }
    }
    if (c.more() || s.closing()) return;
    if (c.res == 0) {
        d.src_eof = true;
        d.src->fin_received = true;
        s.note_received(d);  // a FIN is activity: half_closed_timeout counts from it
        if (d.queued() == 0 && !d.send_op().armed()) s.finish_direction(d);
        return;
    }
    if (c.res == -ENOBUFS) {
        s.shard_.stats().buffer_starved.add();
        d.starved = true;
        // Buffers may have come back while this completion was on its way: maybe_receive()
        // re-arms at once if any are free, and otherwise waits for the next release. (With
        // data queued, our own sends release buffers and re-arm.)
        maybe_receive(d);
        return;
    }
    if (c.res < 0 && c.res != -ECANCELED) {
        s.fail(-c.res);
        return;
    }
    maybe_receive(d);
}

void BufferedPump::send_head(Direction& d) {
    const Queued& head = d.queue[d.q_head];
    std::span<char> buf = session_.engine_.buffer(head.id);
    session_.engine_.send(d.send_op(), d.dst_fd(), buf.data() + d.head_sent,
                          head.len - d.head_sent);
}

void BufferedPump::on_sent(Direction& d, const engine::Completion& c) {
    Session& s = session_;
    if (s.closing()) return;
    if (c.res <= 0) {
        s.fail(c.res < 0 ? -c.res : EPIPE);
        return;
    }
    const Queued& head = d.queue[d.q_head];
    d.head_sent += static_cast<size_t>(c.res);
    s.count_bytes(d, static_cast<size_t>(c.res));
    if (d.head_sent >= head.len) {
        s.shard_.release_buffer(head.id);
        d.head_sent = 0;
        if (++d.q_head == d.queue.size()) {
            d.queue.clear();
            d.q_head = 0;
        }
    }
    if (d.queued() > 0) {
        send_head(d);
    } else if (d.src_eof && !d.recv_op().armed()) {
        s.finish_direction(d);
        return;
    }
    maybe_receive(d);
}

void BufferedPump::maybe_receive(Direction& d) {
    Session& s = session_;
    if (s.closing() || d.src_eof || d.done || d.mode != Direction::Mode::kBuffered ||
        d.recv_op().armed())
        return;
    if (d.queued() >= kHighWater) return;
    if (d.starved && s.engine_.buffers_free() == 0) {
        s.shard_.wait_for_buffers(&s);
        return;
    }
    d.starved = false;
    // Multishot only for interactive streams, and only while the pool is not under pressure.
    bool multishot = d.small_streak >= kInteractiveStreak &&
                     s.engine_.buffers_free() >= s.shard_.buffer_count() / 2;
    if (multishot)
        s.engine_.recv(d.recv_op(), d.src_fd());
    else
        s.engine_.recv_once(d.recv_op(), d.src_fd());
}

void BufferedPump::release(Direction& d) {
    for (size_t i = d.q_head; i < d.queue.size(); ++i)
        session_.shard_.release_buffer(d.queue[i].id);
    d.queue.clear();
    d.q_head = 0;
}

}  // namespace ringlb::shard
