#include "proxy/runtime/shard_group.hpp"

#include <atomic>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <mutex>

namespace ringlb::runtime {

std::string ShardGroup::start(std::unique_ptr<shard::Shard> shard) {
    std::string error = shard->start();
    if (error.empty()) shards_.push_back(std::move(shard));
    return error;
}

void ShardGroup::broadcast(const shard::Message& message, std::function<void()> done) {
    post_each([message](shard::Shard& s, size_t) { message(s); }, std::move(done));
}

void ShardGroup::post_each(std::function<void(shard::Shard&, size_t)> message,
                           std::function<void()> done) {
    if (shards_.empty()) {
        if (done) boost::asio::post(io_, std::move(done));
        return;
    }
    // The last shard to finish hands `done` to the control thread.
    auto remaining = std::make_shared<std::atomic<size_t>>(shards_.size());
    auto shared_message =
        std::make_shared<std::function<void(shard::Shard&, size_t)>>(std::move(message));
    auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
    for (size_t i = 0; i < shards_.size(); ++i) {
        shards_[i]->post([this, i, remaining, shared_message, shared_done](shard::Shard& s) {
            (*shared_message)(s, i);
            if (remaining->fetch_sub(1, std::memory_order_acq_rel) == 1 && *shared_done)
                boost::asio::post(io_, *shared_done);
        });
    }
}

bool ShardGroup::post_each_and_wait(std::function<void(shard::Shard&, size_t)> message,
                                    std::chrono::milliseconds timeout) {
    struct Wait {
        std::mutex mutex;
        std::condition_variable cv;
        size_t remaining;
    };
    auto wait = std::make_shared<Wait>();
    wait->remaining = shards_.size();
    auto shared_message =
        std::make_shared<std::function<void(shard::Shard&, size_t)>>(std::move(message));
    for (size_t i = 0; i < shards_.size(); ++i) {
        shards_[i]->post([i, wait, shared_message](shard::Shard& s) {
            (*shared_message)(s, i);
            std::lock_guard lock(wait->mutex);
            if (--wait->remaining == 0) wait->cv.notify_all();
        });
    }
    std::unique_lock lock(wait->mutex);
    return wait->cv.wait_for(lock, timeout, [&] { return wait->remaining == 0; });
}

void ShardGroup::stop() {
    for (auto& s : shards_) s->request_stop();
    for (auto& s : shards_) s->join();
}

}  // namespace ringlb::runtime
