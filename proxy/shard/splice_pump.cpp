#include "proxy/shard/splice_pump.hpp"

#include <fcntl.h>
#include <poll.h>

#include <cerrno>

#include "proxy/shard/session.hpp"
#include "proxy/shard/shard.hpp"

namespace ringlb::shard {

void SplicePump::on_readiness(Direction& as_src, Direction& as_dst, uint32_t mask) {
    bool readable = mask & (POLLIN | POLLRDHUP | POLLHUP | POLLERR);
    bool writable = mask & (POLLOUT | POLLHUP | POLLERR);
    if (writable && as_dst.mode == Direction::Mode::kSplice && as_dst.waiting_dst && !as_dst.done) {
        if (!pump(as_dst)) return;
    }
    if (mask & POLLRDHUP) as_src.src_fin_seen = true;
    if (readable && as_src.mode == Direction::Mode::kSplice && !as_src.waiting_dst &&
        !as_src.done) {
        pump(as_src);
    }
}

bool SplicePump::pump(Direction& d) {
    Session& s = session_;
    PipePool& pipes = s.shard_.pipes();
    d.waiting_dst = false;
    for (;;) {
        if (d.in_pipe > 0) {
            // When the source's FIN is already here, these are its last bytes: SPLICE_F_MORE
            // (MSG_MORE) holds them back so the shutdown() that follows sends data and FIN in
            // one segment instead of two.
            unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
            if (d.src_fin_seen) flags |= SPLICE_F_MORE;
            ssize_t n =
                ::splice(d.pipe->read_end.get(), nullptr, d.dst_fd(), nullptr, d.in_pipe, flags);
            if (n > 0) {
                d.in_pipe -= static_cast<size_t>(n);
                s.count_bytes(d, static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                d.waiting_dst = true;  // POLLOUT on dst resumes us
                return true;
            }
            s.fail(n < 0 ? errno : EPIPE);
            return false;
        }
        if (d.src_eof) {
            s.finish_direction(d);
            return !s.closing();
        }
        if (d.pipe == nullptr) {
            d.pipe = pipes.acquire();
            if (d.pipe == nullptr) {
                // Pool exhausted: this direction carries on with buffered io instead of waiting.
                s.shard_.stats().pipe_pool_exhausted.add();
                d.mode = Direction::Mode::kBuffered;
                s.buffered_.maybe_receive(d);
                return true;
            }
        }
        ssize_t n = ::splice(d.src_fd(), nullptr, d.pipe->write_end.get(), nullptr,
                             d.pipe->capacity, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d.in_pipe = static_cast<size_t>(n);
            s.note_received(d);
            continue;
        }
        if (n == 0) {
            d.src_eof = true;
            d.src->fin_received = true;
            s.note_received(d);  // a FIN is activity: half_closed_timeout counts from it
            continue;
        }
        if (errno == EAGAIN) {
            // Nothing to read: give the (empty) pipe back so an idle connection holds none.
            pipes.release(d.pipe, true);
            d.pipe = nullptr;
            return true;
        }
        s.fail(errno);
        return false;
    }
}

void SplicePump::release(Direction& d) {
    if (d.pipe) {
        session_.shard_.pipes().release(d.pipe, d.in_pipe == 0);
        d.pipe = nullptr;
    }
}

}  // namespace ringlb::shard
