// Messages into running shards (real threads, real engines): what the control plane's reload and
// drain rely on. Also built with ThreadSanitizer (scripts/build.sh tsan).
#include "proxy/runtime/shard_group.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "config/config.hpp"

namespace ringlb::runtime {
namespace {

std::shared_ptr<const shard::Snapshot> empty_snapshot(const std::string& more = "") {
    auto cfg = std::make_shared<const config::Config>(config::load_string(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\ncluster = \"app\"\n"
        "[[cluster]]\nname = \"app\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n" +
            more,
        "t.toml"));
    return std::make_shared<const shard::Snapshot>(cfg);
}

class ShardGroupTest : public ::testing::Test {
  protected:
    void start_shards(unsigned n) {
        auto snapshot = empty_snapshot();
        for (unsigned i = 0; i < n; ++i) {
            shard::ShardOptions options;
            options.id = i;
            options.engine = engine::EngineChoice::kEpoll;
            options.engine_params.buffer_count = 16;
            options.engine_params.buffer_size = 4096;
            options.engine_params.max_fds = 1024;
            options.pipe_pool = 0;
            options.shards = n;
            ASSERT_EQ(group.start(std::make_unique<shard::Shard>(options, snapshot,
                                                                 std::vector<common::Fd>{})),
                      "");
        }
    }
    // Runs the control loop until `done` or 5 s.
    void run_until(const std::atomic<bool>& done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!done.load() && std::chrono::steady_clock::now() < deadline) {
            io.run_for(std::chrono::milliseconds(10));
            io.restart();
        }
    }

    boost::asio::io_context io;
    ShardGroup group{io};
};

TEST_F(ShardGroupTest, BroadcastRunsOnEveryShardThreadThenDoneOnTheControlThread) {
    start_shards(3);
    std::mutex mutex;
    std::set<unsigned> ids;
    std::set<std::thread::id> threads;
    std::atomic<bool> done{false};
    std::thread::id control = std::this_thread::get_id();
    std::thread::id done_thread;
    size_t seen_at_done = 0;
    group.broadcast(
        [&](shard::Shard& s) {
            std::lock_guard lock(mutex);
            ids.insert(s.id());
            threads.insert(std::this_thread::get_id());
        },
        [&] {
            done_thread = std::this_thread::get_id();
            std::lock_guard lock(mutex);
            seen_at_done = ids.size();
            done = true;
        });
    run_until(done);
    ASSERT_TRUE(done.load());
    EXPECT_EQ(done_thread, control);
    EXPECT_EQ(seen_at_done, 3u);  // done comes after every shard ran the message
    EXPECT_EQ(ids, (std::set<unsigned>{0, 1, 2}));
    EXPECT_EQ(threads.size(), 3u);
    EXPECT_EQ(threads.count(control), 0u);
}

TEST_F(ShardGroupTest, MessagesReachEachShardInOrder) {
    start_shards(2);
    std::vector<std::vector<int>> seen(2);  // each written only by its shard
    std::atomic<bool> done{false};
    for (int k = 0; k < 100; ++k) {
        group.post_each([&seen, k](shard::Shard&, size_t i) { seen[i].push_back(k); },
                        k == 99 ? std::function<void()>([&] { done = true; }) : nullptr);
    }
    run_until(done);
    ASSERT_TRUE(done.load());
    for (const auto& v : seen) {
        ASSERT_EQ(v.size(), 100u);
        for (int k = 0; k < 100; ++k) EXPECT_EQ(v[k], k);
    }
}

TEST_F(ShardGroupTest, PostEachAndWaitReturnsOnceEveryShardRanIt) {
    start_shards(2);
    std::atomic<int> ran{0};
    EXPECT_TRUE(group.post_each_and_wait([&](shard::Shard&, size_t) { ran.fetch_add(1); },
                                         std::chrono::seconds(5)));
    EXPECT_EQ(ran.load(), 2);
}

// What a reload does to the shards: each applies the new snapshot on its thread and hands back
// a layout that the control thread then reads; counters of a cluster that changed carry on.
TEST_F(ShardGroupTest, ApplyingASnapshotPublishesANewLayout) {
    start_shards(2);
    auto next = empty_snapshot(
        "[[cluster]]\nname = \"more\"\nbackends = [{ address = \"127.0.0.1:10\" }]\n");
    std::vector<std::shared_ptr<const shard::ShardLayout>> before(2), after(2);
    for (size_t i = 0; i < 2; ++i) before[i] = group.shards()[i]->layout();
    ASSERT_TRUE(group.post_each_and_wait(
        [&](shard::Shard& s, size_t i) {
            s.apply(next, std::vector<common::Fd>(1));
            after[i] = s.layout();
        },
        std::chrono::seconds(5)));
    for (size_t i = 0; i < 2; ++i) {
        ASSERT_EQ(before[i]->clusters.size(), 1u);
        ASSERT_EQ(after[i]->clusters.size(), 2u);
        EXPECT_EQ(after[i]->clusters[1].name, "more");
        // "app" did not change: the same state, so the same counters.
        EXPECT_EQ(after[i]->clusters[0].counters, before[i]->clusters[0].counters);
    }
}

TEST_F(ShardGroupTest, EmptyGroupStillAnswers) {
    std::atomic<bool> done{false};
    group.broadcast([](shard::Shard&) {}, [&] { done = true; });
    run_until(done);
    EXPECT_TRUE(done.load());
}

}  // namespace
}  // namespace ringlb::runtime
