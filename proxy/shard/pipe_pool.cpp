#include "proxy/shard/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "common/fd_reserve.hpp"

namespace ringlb::shard {

PipePool::PipePool(uint32_t max_pipes, uint32_t pipe_size)
    : max_pipes_(max_pipes), pipe_size_(pipe_size) {
    all_.reserve(max_pipes_);
    idle_.reserve(max_pipes_);
}

bool PipePool::open_pipe(Pipe& pipe) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    if (common::fd_in_reserve(fds[0]) || common::fd_in_reserve(fds[1])) {
        // A pipe is an optimisation (the direction forwards buffered without one), and up to
        // pipe_pool of them stay open per shard: they must not take the fds kept for the admin
        // endpoint.
        ::close(fds[0]);
        ::close(fds[1]);
        return false;
    }
    pipe.read_end.reset(fds[0]);
    pipe.write_end.reset(fds[1]);
    // Larger pipes mean fewer splice calls per byte. Failure (user pipe quota) leaves the
    // default size, which still works.
    int size = ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(pipe_size_));
    if (size < 0) size = ::fcntl(fds[1], F_GETPIPE_SZ);
    pipe.capacity = size > 0 ? static_cast<size_t>(size) : 4096;
    return true;
}

Pipe* PipePool::acquire() {
    Pipe* pipe = nullptr;
    if (!idle_.empty()) {
        pipe = idle_.back();
        idle_.pop_back();
    } else if (all_.size() < max_pipes_) {
        all_.push_back(std::make_unique<Pipe>());
        pipe = all_.back().get();
    } else {
        return nullptr;
    }
    if (!pipe->read_end && !open_pipe(*pipe)) {
        idle_.push_back(pipe);
        return nullptr;
    }
    ++lent_;
    return pipe;
}

void PipePool::release(Pipe* pipe, bool empty) {
    if (!empty) {
        // Stale bytes must never reach another connection.
        pipe->read_end.reset();
        pipe->write_end.reset();
    }
    --lent_;
    idle_.push_back(pipe);
}

}  // namespace ringlb::shard
