#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "proxy/shard/shard.hpp"

namespace ringlb::runtime {

// The shards of the process, seen from the control thread (Seastar's sharded<>): starts them,
// posts messages to all and hears back on the control thread's io_context, stops them.
class ShardGroup {
  public:
    explicit ShardGroup(boost::asio::io_context& io) : io_(io) {}
    ~ShardGroup() { stop(); }
    ShardGroup(const ShardGroup&) = delete;
    ShardGroup& operator=(const ShardGroup&) = delete;

    // Starts `shard`'s thread and keeps it. Returns an empty string, or why it failed (the
    // shard is then dropped).
    std::string start(std::unique_ptr<shard::Shard> shard);
    size_t size() const { return shards_.size(); }
    const std::vector<std::unique_ptr<shard::Shard>>& shards() const { return shards_; }

    // Runs `message` on every shard's thread; then `done` on the control thread, once all have
    // run it. A shard that stopped meanwhile never runs it, and `done` then never comes: only
    // post while the shards serve.
    void broadcast(const shard::Message& message, std::function<void()> done = {});
    // Runs `message(shard, i)` on shard i; then `done` as above.
    void post_each(std::function<void(shard::Shard&, size_t)> message,
                   std::function<void()> done = {});

    // Runs `message(shard, i)` on every shard i and waits, on the calling thread, until all have
    // run it or `timeout` passed (false then). Shards never wait for the control thread, so
    // blocking it briefly is safe; a reload uses this to answer with what happened.
    bool post_each_and_wait(std::function<void(shard::Shard&, size_t)> message,
                            std::chrono::milliseconds timeout);

    // Asks every shard to stop, then waits for all (sessions still open are aborted).
    void stop();

  private:
    boost::asio::io_context& io_;
    std::vector<std::unique_ptr<shard::Shard>> shards_;
};

}  // namespace ringlb::runtime
