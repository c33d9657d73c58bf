#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace ringlb::shard {

class Shard;

// What the control plane asks of a shard (a new snapshot, drain, stop): a function run on the
// shard's own thread between two engine waits. Seastar's smp::submit_to, without futures: a
// message that must answer posts its answer back to the control thread itself.
using Message = std::function<void(Shard&)>;

// Messages into one shard. post() takes a lock, but only the control plane posts (a reload, a
// drain: a few per minute at most); the shard's loop reads one relaxed flag per iteration and
// takes the lock only when there is something to take, so the data path stays free of shared
// writes.
class Mailbox {
  public:
    // Any thread. The caller wakes the shard's engine afterwards.
    void post(Message message) {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(message));
        pending_.store(true, std::memory_order_release);
    }

    // The shard's thread: everything posted so far, oldest first.
    std::vector<Message> take() {
        std::vector<Message> out;
        if (!pending_.load(std::memory_order_acquire)) return out;
        std::lock_guard lock(mutex_);
        out.swap(queue_);
        pending_.store(false, std::memory_order_relaxed);
        return out;
    }

  private:
    std::mutex mutex_;
    std::vector<Message> queue_;
    std::atomic<bool> pending_{false};
};

}  // namespace ringlb::shard
