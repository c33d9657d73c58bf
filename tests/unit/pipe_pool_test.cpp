#include "proxy/shard/pipe_pool.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

using ringlb::shard::Pipe;
using ringlb::shard::PipePool;

TEST(PipePoolTest, BoundedAndReused) {
    PipePool pool(2, 65536);
    Pipe* a = pool.acquire();
    Pipe* b = pool.acquire();
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(pool.acquire(), nullptr);  // bounded
    EXPECT_EQ(pool.lent(), 2u);
    EXPECT_GE(a->capacity, 65536u);
    int read_fd = a->read_end.get();
    pool.release(a, true);
    EXPECT_EQ(pool.lent(), 1u);
    Pipe* again = pool.acquire();
    EXPECT_EQ(again, a);
    EXPECT_EQ(again->read_end.get(), read_fd);  // an empty pipe is reused as is
    pool.release(again, true);
    pool.release(b, true);
    EXPECT_EQ(pool.idle(), 2u);
}

TEST(PipePoolTest, NonEmptyPipeIsNeverReusedWithStaleBytes) {
    PipePool pool(1, 4096);
    Pipe* p = pool.acquire();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(::write(p->write_end.get(), "stale", 5), 5);
    pool.release(p, false);
    Pipe* q = pool.acquire();
    ASSERT_NE(q, nullptr);
    char buf[8];
    // The replacement pipe is new and empty: a non-blocking read finds nothing.
    EXPECT_EQ(::read(q->read_end.get(), buf, sizeof(buf)), -1);
    EXPECT_EQ(errno, EAGAIN);
    pool.release(q, true);
}

TEST(PipePoolTest, ZeroSizedPoolLendsNothing) {
    PipePool pool(0, 65536);
    EXPECT_EQ(pool.acquire(), nullptr);
}
