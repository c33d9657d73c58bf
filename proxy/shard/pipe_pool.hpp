#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/fd.hpp"

namespace ringlb::shard {

struct Pipe {
    common::Fd read_end;
    common::Fd write_end;
    size_t capacity = 0;
};

// A bounded per-shard pool of pipes for splice forwarding. A direction borrows a pipe only while
// bytes sit in it, so an idle proxied connection holds none; this keeps a shard far below
// fs.pipe-user-pages-soft (past which the kernel shrinks new pipes to one page).
class PipePool {
  public:
    PipePool(uint32_t max_pipes, uint32_t pipe_size);
    PipePool(const PipePool&) = delete;
    PipePool& operator=(const PipePool&) = delete;

    // A pipe, or nullptr when max_pipes are lent out or pipe creation fails (also when its fds
    // would lie in the fd reserve, common/fd_reserve.hpp).
    Pipe* acquire();
    // Returns a pipe. A pipe that may still hold bytes (`empty` false) is closed, not reused.
    void release(Pipe* pipe, bool empty);

    uint32_t lent() const { return lent_; }
    uint32_t idle() const { return static_cast<uint32_t>(idle_.size()); }
    uint32_t max_pipes() const { return max_pipes_; }

  private:
    bool open_pipe(Pipe& pipe);

    uint32_t max_pipes_;
    uint32_t pipe_size_;
    uint32_t lent_ = 0;
    std::vector<std::unique_ptr<Pipe>> all_;  // stable addresses; at most max_pipes_
    std::vector<Pipe*> idle_;
};

}  // namespace ringlb::shard
