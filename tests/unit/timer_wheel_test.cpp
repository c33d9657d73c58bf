// Unit tests for the shard timer wheel: firing times, ordering, changes from inside callbacks,
// far deadlines, big time jumps, and next_expiry() against a brute-force model.

#include "proxy/shard/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

namespace ringlb::shard {
namespace {

constexpr uint64_t kTick = TimerWheel::kTickMs;
constexpr uint64_t kSecond = 1000;
constexpr uint64_t kMinute = 60 * kSecond;
constexpr uint64_t kHour = 60 * kMinute;
constexpr uint64_t kDay = 24 * kHour;
// An arbitrary steady-clock reading that is not tick-aligned.
constexpr uint64_t kStart = 123'456'789'003;

uint64_t due_tick(uint64_t deadline_ms) {
    return (deadline_ms + kTick - 1) / kTick;
}
// The earliest advance() time at which a timer with this deadline must have fired.
uint64_t due_ms(uint64_t deadline_ms) {
    return due_tick(deadline_ms) * kTick;
}

struct Fired {
    uint8_t tag;
    uint64_t now;  // the time passed to the advance() that fired it
};

// Records firings; an optional hook acts from inside the callback.
class Recorder final : public TimerHandler {
  public:
    void on_timer(Timer& timer) override {
        EXPECT_FALSE(timer.scheduled()) << "a firing timer is unscheduled before its callback";
        fired.push_back({timer.tag(), now});
        if (hook) hook(timer);
    }

    std::vector<uint8_t> tags() const {
        std::vector<uint8_t> out;
        for (const Fired& f : fired) out.push_back(f.tag);
        return out;
    }

    uint64_t now = 0;  // set by the test before each advance
    std::vector<Fired> fired;
    std::function<void(Timer&)> hook;
};

class TimerWheelTest : public ::testing::Test {
  protected:
    size_t advance(uint64_t now) {
        rec_.now = now;
        return wheel_.advance(now);
    }

    // Advances in steps of `step` ms up to `until` (inclusive).
    void advance_by_steps(uint64_t until, uint64_t step) {
        for (uint64_t t = now_; t < until;) {
            t = std::min(until, t + step);
            advance(t);
        }
        now_ = until;
    }

    Recorder rec_;
    uint64_t now_ = kStart;
    TimerWheel wheel_{kStart};
};

TEST_F(TimerWheelTest, EmptyWheelHasNoExpiry) {
    EXPECT_EQ(wheel_.size(), 0u);
    EXPECT_FALSE(wheel_.next_expiry().has_value());
    EXPECT_EQ(advance(kStart + kHour), 0u);
}

TEST_F(TimerWheelTest, FiresAtTheTickBoundaryAfterTheDeadlineNeverBefore) {
    Timer t(&rec_, 1);
    const uint64_t deadline = kStart + 1234;  // not tick-aligned
    wheel_.schedule(t, deadline);
    EXPECT_TRUE(t.scheduled());
    EXPECT_EQ(t.deadline_ms(), deadline);
    EXPECT_EQ(wheel_.size(), 1u);
    // 123 ticks out: filed on level 1, so the first wake-up may come at its slot's start.
    ASSERT_TRUE(wheel_.next_expiry().has_value());
    EXPECT_LE(*wheel_.next_expiry(), due_ms(deadline));
    EXPECT_GT(*wheel_.next_expiry(), kStart);

    EXPECT_EQ(advance(deadline - 1), 0u);
    EXPECT_EQ(advance(due_ms(deadline) - 1), 0u);
    EXPECT_TRUE(rec_.fired.empty());
    EXPECT_EQ(advance(due_ms(deadline)), 1u);
    ASSERT_EQ(rec_.fired.size(), 1u);
    EXPECT_GE(rec_.fired[0].now, deadline);
    EXPECT_LT(rec_.fired[0].now, deadline + kTick);
    EXPECT_FALSE(t.scheduled());
    EXPECT_EQ(wheel_.size(), 0u);
    EXPECT_FALSE(wheel_.next_expiry().has_value());
    EXPECT_EQ(advance(deadline + kHour), 0u);
}

TEST_F(TimerWheelTest, FiresInDeadlineOrder) {
    // Deadlines at distinct ticks, scheduled out of order and spread over several levels.
    const std::vector<uint64_t> offsets = {5 * kSecond,  20,       3 * kHour,    700,
                                           41 * kSecond, 2 * kDay, 90 * kMinute, 15};
    std::vector<std::unique_ptr<Timer>> timers;
    for (size_t i = 0; i < offsets.size(); ++i) {
        timers.push_back(std::make_unique<Timer>(&rec_, static_cast<uint8_t>(i)));
        wheel_.schedule(*timers.back(), kStart + offsets[i]);
    }
    std::vector<size_t> order(offsets.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
    std::vector<uint8_t> expected;
    for (size_t i : order) expected.push_back(static_cast<uint8_t>(i));

    // One jump fires them all, still in order.
    EXPECT_EQ(advance(kStart + 3 * kDay), offsets.size());
    EXPECT_EQ(rec_.tags(), expected);
}

TEST_F(TimerWheelTest, FiresInOrderWhenDrivenByNextExpiry) {
    std::mt19937_64 rng(7);
    std::vector<std::unique_ptr<Timer>> timers;
    std::vector<uint64_t> deadlines;
    for (int i = 0; i < 200; ++i) {
        timers.push_back(std::make_unique<Timer>(&rec_, static_cast<uint8_t>(i)));
        deadlines.push_back(kStart + 1 + rng() % (3 * kHour));
        wheel_.schedule(*timers.back(), deadlines.back());
    }
    // Bounded, so a wheel that stops making progress fails instead of hanging.
    for (int guard = 0; wheel_.next_expiry() && guard < 10'000; ++guard)
        advance(*wheel_.next_expiry());
    ASSERT_EQ(rec_.fired.size(), timers.size());
    for (size_t i = 0; i < rec_.fired.size(); ++i) {
        const uint64_t deadline = deadlines[rec_.fired[i].tag];
        EXPECT_EQ(rec_.fired[i].now, due_ms(deadline)) << "timer " << int(rec_.fired[i].tag);
        if (i > 0) {
            EXPECT_LE(due_tick(deadlines[rec_.fired[i - 1].tag]), due_tick(deadline));
        }
    }
}

TEST_F(TimerWheelTest, CancelledTimerDoesNotFire) {
    Timer a(&rec_, 1), b(&rec_, 2);
    wheel_.cancel(a);  // not scheduled: no-op
    EXPECT_EQ(wheel_.size(), 0u);
    wheel_.schedule(a, kStart + 100);
    wheel_.schedule(b, kStart + 2 * kHour);
    EXPECT_EQ(wheel_.size(), 2u);
    wheel_.cancel(a);
    wheel_.cancel(a);
    EXPECT_FALSE(a.scheduled());
    EXPECT_EQ(wheel_.size(), 1u);
    wheel_.cancel(b);
    EXPECT_EQ(wheel_.size(), 0u);
    EXPECT_FALSE(wheel_.next_expiry().has_value());
    EXPECT_EQ(advance(kStart + 3 * kHour), 0u);
    EXPECT_TRUE(rec_.fired.empty());
}

TEST_F(TimerWheelTest, DestroyingAScheduledTimerUnschedulesIt) {
    auto t = std::make_unique<Timer>(&rec_, 1);
    wheel_.schedule(*t, kStart + 50);
    Timer other(&rec_, 2);
    wheel_.schedule(other, kStart + 60);
    t.reset();
    EXPECT_EQ(wheel_.size(), 1u);
    EXPECT_EQ(advance(kStart + kSecond), 1u);
    EXPECT_EQ(rec_.tags(), std::vector<uint8_t>{2});
}

TEST_F(TimerWheelTest, TimerMayOutliveItsWheel) {
    Timer t(&rec_, 1);
    {
        TimerWheel wheel(kStart);
        wheel.schedule(t, kStart + kDay);
    }
    EXPECT_FALSE(t.scheduled());
    // Its destructor (and a new wheel) must not touch the dead one; ASan checks.
    wheel_.schedule(t, kStart + 10);
    EXPECT_EQ(advance(kStart + 20), 1u);
}

TEST_F(TimerWheelTest, RescheduleEarlierAndLater) {
    Timer a(&rec_, 1), b(&rec_, 2);
    wheel_.schedule(a, kStart + kHour);
    wheel_.schedule(b, kStart + 100);
    wheel_.schedule(a, kStart + 50);           // earlier, from a higher level to level 0
    wheel_.schedule(b, kStart + 5 * kSecond);  // later
    EXPECT_EQ(wheel_.size(), 2u);
    EXPECT_EQ(wheel_.next_expiry(), due_ms(kStart + 50));
    advance(kStart + 4 * kSecond);
    EXPECT_EQ(rec_.tags(), std::vector<uint8_t>{1});
    EXPECT_EQ(rec_.fired[0].now, kStart + 4 * kSecond);
    // b's first deadline passed without firing it.
    advance(due_ms(kStart + 5 * kSecond));
    EXPECT_EQ(rec_.tags(), (std::vector<uint8_t>{1, 2}));
}

TEST_F(TimerWheelTest, PastDeadlineFiresOnTheNextAdvance) {
    advance(kStart + kSecond);
    Timer t(&rec_, 1);
    wheel_.schedule(t, kStart);  // a second ago
    EXPECT_TRUE(rec_.fired.empty()) << "never from inside schedule()";
    ASSERT_TRUE(wheel_.next_expiry().has_value());
    EXPECT_LE(*wheel_.next_expiry(), due_ms(kStart));
    EXPECT_EQ(advance(kStart + kSecond), 1u);  // same time again: still fires
}

TEST_F(TimerWheelTest, IdlePatternReschedulesForTheRemainderFromInsideTheCallback) {
    // A session stamps last_activity without touching the wheel; at the original deadline it
    // checks and schedules the rest.
    constexpr uint64_t kIdle = kHour;
    uint64_t last_activity = kStart;
    uint64_t now = kStart;
    std::vector<uint64_t> expired_at;
    Timer idle(&rec_, 1);
    rec_.hook = [&](Timer& t) {
        uint64_t deadline = last_activity + kIdle;
        if (deadline > now)
            wheel_.schedule(t, deadline);
        else
            expired_at.push_back(now);
    };
    wheel_.schedule(idle, kStart + kIdle);
    auto run_to = [&](uint64_t until) {
        // A shard loop: wake at next_expiry or at activity, whichever is first.
        for (int guard = 0; now < until; ++guard) {
            ASSERT_LT(guard, 1000) << "no progress";
            auto next = wheel_.next_expiry();
            now = next ? std::min(until, std::max(*next, now)) : until;
            rec_.now = now;
            wheel_.advance(now);
            if (!next) break;
        }
        now = until;
    };
    ASSERT_NO_FATAL_FAILURE(run_to(kStart + 40 * kMinute));
    last_activity = now;  // activity at 40 min: the idle deadline becomes 1h40
    ASSERT_NO_FATAL_FAILURE(run_to(kStart + kIdle + 30 * kMinute));
    EXPECT_EQ(rec_.fired.size(), 1u) << "fired once at 1h and re-scheduled";
    EXPECT_TRUE(idle.scheduled());
    EXPECT_EQ(idle.deadline_ms(), kStart + 100 * kMinute);
    EXPECT_TRUE(expired_at.empty());
    ASSERT_NO_FATAL_FAILURE(run_to(kStart + 3 * kHour));
    ASSERT_EQ(expired_at.size(), 1u);
    EXPECT_EQ(expired_at[0], due_ms(kStart + 100 * kMinute));
    EXPECT_FALSE(idle.scheduled());
}

TEST_F(TimerWheelTest, CallbackReschedulingItselfIntoThePastDoesNotSpin) {
    Timer t(&rec_, 1);
    int calls = 0;
    rec_.hook = [&](Timer& timer) {
        if (++calls < 100) wheel_.schedule(timer, kStart);
    };
    wheel_.schedule(t, kStart + 10);
    EXPECT_EQ(advance(kStart + 100), 1u);
    EXPECT_EQ(advance(kStart + 100), 1u);
    EXPECT_EQ(calls, 2);
    EXPECT_TRUE(t.scheduled());
}

TEST_F(TimerWheelTest, CallbackMayCancelAndDestroyOtherTimersDueInTheSameTick) {
    // Five timers in one tick plus one later: the first to fire cancels every other one of its
    // tick, destroys the owner of one of them and keeps the later one.
    std::vector<std::unique_ptr<Timer>> timers;
    for (uint8_t i = 0; i < 5; ++i) {
        timers.push_back(std::make_unique<Timer>(&rec_, i));
        wheel_.schedule(*timers.back(), kStart + 500);
    }
    Timer later(&rec_, 9);
    wheel_.schedule(later, kStart + 900);
    rec_.hook = [&](Timer& fired) {
        if (fired.tag() == 9) return;
        for (auto& t : timers) {
            if (t && t.get() != &fired) wheel_.cancel(*t);
        }
        for (auto& t : timers) {
            if (t && t.get() != &fired) {
                t.reset();
                break;
            }
        }
    };
    EXPECT_EQ(advance(kStart + kSecond), 2u);
    ASSERT_EQ(rec_.fired.size(), 2u);
    EXPECT_LT(rec_.fired[0].tag, 5);
    EXPECT_EQ(rec_.fired[1].tag, 9);
    EXPECT_EQ(wheel_.size(), 0u);
}

TEST_F(TimerWheelTest, CallbackMayDestroyAnotherOwnerWithoutCancellingFirst) {
    Timer first(&rec_, 1);
    auto second = std::make_unique<Timer>(&rec_, 2);
    wheel_.schedule(first, kStart + 100);
    wheel_.schedule(*second, kStart + 100);
    rec_.hook = [&](Timer&) { second.reset(); };  // whichever fires first kills the other
    EXPECT_EQ(advance(kStart + 200), 1u);
    EXPECT_EQ(wheel_.size(), 0u);
}

TEST_F(TimerWheelTest, CallbackMayRescheduleOthersDueInTheSameTick) {
    Timer a(&rec_, 1), b(&rec_, 2), c(&rec_, 3);
    wheel_.schedule(a, kStart + 100);
    wheel_.schedule(b, kStart + 100);
    wheel_.schedule(c, kStart + 100);
    // The first to fire pushes the others out by a second (and one of them far out, by a day).
    bool pushed = false;
    rec_.hook = [&](Timer& fired) {
        if (pushed) return;
        pushed = true;
        Timer* others[2];
        int n = 0;
        for (Timer* t : {&a, &b, &c})
            if (t != &fired) others[n++] = t;
        wheel_.schedule(*others[0], kStart + 100 + kSecond);
        wheel_.schedule(*others[1], kStart + 100 + kDay);
        // And re-arms itself for the same time as the first.
        wheel_.schedule(fired, kStart + 100 + kSecond);
    };
    EXPECT_EQ(advance(kStart + 200), 1u);
    EXPECT_EQ(wheel_.size(), 3u);
    EXPECT_EQ(advance(due_ms(kStart + 100 + kSecond)), 2u);
    EXPECT_EQ(advance(kStart + kDay), 0u);
    EXPECT_EQ(advance(due_ms(kStart + 100 + kDay)), 1u);
    EXPECT_EQ(rec_.fired.size(), 4u);
}

TEST_F(TimerWheelTest, BigTimeJumpFiresEverythingDueAndNothingElse) {
    // The loop stalled for 10 s.
    std::vector<std::unique_ptr<Timer>> timers;
    std::vector<uint64_t> deadlines;
    for (uint8_t i = 0; i < 40; ++i) {
        timers.push_back(std::make_unique<Timer>(&rec_, i));
        deadlines.push_back(kStart + (39 - i) * 333 + 7);  // 7 ms .. 13 s, reversed
        wheel_.schedule(*timers.back(), deadlines.back());
    }
    const uint64_t jump = kStart + 10 * kSecond;
    size_t due = 0;
    for (uint64_t d : deadlines) due += due_ms(d) <= jump ? 1 : 0;
    EXPECT_EQ(advance(jump), due);
    for (size_t i = 1; i < rec_.fired.size(); ++i)
        EXPECT_LE(deadlines[rec_.fired[i - 1].tag], deadlines[rec_.fired[i].tag]);
    for (size_t i = 0; i < timers.size(); ++i)
        EXPECT_EQ(timers[i]->scheduled(), due_ms(deadlines[i]) > jump) << i;
    EXPECT_EQ(wheel_.size(), timers.size() - due);
    EXPECT_EQ(wheel_.next_expiry(), due_ms(deadlines[timers.size() - due - 1]));
}

TEST_F(TimerWheelTest, SevenDayDeadlineFiresOnTimeWithBigJumps) {
    Timer t(&rec_, 1);
    const uint64_t deadline = kStart + 7 * kDay + 12'345;
    wheel_.schedule(t, deadline);
    for (uint64_t now = kStart + kDay; now < deadline; now += kDay) {
        advance(now);
        ASSERT_TRUE(rec_.fired.empty());
    }
    advance(due_ms(deadline) - 1);
    EXPECT_TRUE(rec_.fired.empty());
    advance(due_ms(deadline));
    EXPECT_EQ(rec_.fired.size(), 1u);
}

TEST_F(TimerWheelTest, SevenDayDeadlineFiresOnTimeWithSmallJumps) {
    Timer t(&rec_, 1);
    Timer near(&rec_, 2);
    const uint64_t deadline = kStart + 7 * kDay + 4'321;
    wheel_.schedule(t, deadline);
    // Steps of just under a second, not tick-aligned, plus a short timer re-armed all along.
    rec_.hook = [&](Timer& fired) {
        if (fired.tag() == 2) wheel_.schedule(near, rec_.now + 2 * kSecond + 3);
    };
    wheel_.schedule(near, kStart + 2 * kSecond);
    advance_by_steps(deadline - 1, 997);
    ASSERT_EQ(std::count_if(rec_.fired.begin(), rec_.fired.end(),
                            [](const Fired& f) { return f.tag == 1; }),
              0);
    advance_by_steps(due_ms(deadline) - 1, 1);
    advance_by_steps(due_ms(deadline), 1);
    EXPECT_FALSE(t.scheduled());
    auto it = std::find_if(rec_.fired.begin(), rec_.fired.end(),
                           [](const Fired& f) { return f.tag == 1; });
    ASSERT_NE(it, rec_.fired.end());
    EXPECT_EQ(it->now, due_ms(deadline));
}

TEST_F(TimerWheelTest, DeadlinesBeyondTheTopLevelSpanFire) {
    // 5 levels of 10 ms ticks span ~124 days; a year waits in the overflow list.
    Timer year(&rec_, 1), far(&rec_, 2);
    const uint64_t year_deadline = kStart + 365 * kDay + 17;
    const uint64_t far_deadline = kStart + 130 * kDay;
    wheel_.schedule(year, year_deadline);
    wheel_.schedule(far, far_deadline);
    EXPECT_LE(*wheel_.next_expiry(), due_ms(far_deadline));
    advance_by_steps(far_deadline - 1, 3 * kHour);
    EXPECT_TRUE(rec_.fired.empty());
    advance(due_ms(far_deadline));
    EXPECT_EQ(rec_.tags(), std::vector<uint8_t>{2});
    now_ = due_ms(far_deadline);
    advance_by_steps(due_ms(year_deadline) - 1, 7 * kDay + 1);
    EXPECT_EQ(rec_.fired.size(), 1u);
    advance(due_ms(year_deadline));
    EXPECT_EQ(rec_.tags(), (std::vector<uint8_t>{2, 1}));
    // A deadline that can never come must not break anything.
    Timer never(&rec_, 3);
    wheel_.schedule(never, UINT64_MAX);
    EXPECT_TRUE(wheel_.next_expiry().has_value());
    advance(due_ms(year_deadline) + 400 * kDay);
    EXPECT_TRUE(never.scheduled());
}

TEST_F(TimerWheelTest, ManyIdleTimersCascadeBoundedTimes) {
    // 10,000 sessions with idle timers about an hour out, driven the way a shard drives the
    // wheel. The work is checked through counters, not clocks: each timer moves between levels
    // at most kLevels times, and wake-ups that fire nothing stay a small share.
    constexpr size_t kCount = 10'000;
    std::mt19937_64 rng(42);
    std::vector<std::unique_ptr<Timer>> timers;
    std::vector<uint64_t> deadlines;
    for (size_t i = 0; i < kCount; ++i) {
        timers.push_back(std::make_unique<Timer>(&rec_, static_cast<uint8_t>(i % 251)));
        deadlines.push_back(kStart + kHour - 10 * kMinute + rng() % (20 * kMinute));
        wheel_.schedule(*timers.back(), deadlines.back());
    }
    std::vector<uint64_t> fired_at(kCount, 0);
    rec_.hook = [&](Timer& t) {
        size_t i = 0;
        while (timers[i].get() != &t) ++i;  // test-only lookup
        fired_at[i] = rec_.now;
    };
    size_t wakeups = 0, empty_wakeups = 0, empty_streak = 0;
    while (auto next = wheel_.next_expiry()) {
        ASSERT_LT(++wakeups, 10 * kCount) << "no progress";
        if (advance(*next) == 0) {
            ++empty_wakeups;
            ++empty_streak;
            ASSERT_LE(empty_streak, TimerWheel::kLevels);
        } else {
            empty_streak = 0;
        }
    }
    EXPECT_EQ(rec_.fired.size(), kCount);
    for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(fired_at[i], due_ms(deadlines[i])) << i;
    EXPECT_LE(wheel_.cascaded(), kCount * TimerWheel::kLevels);
    // Spread over 20 minutes in 10 ms ticks, most wake-ups fire something.
    EXPECT_LE(empty_wakeups, wakeups / 4);
}

// ---- randomized model check ----------------------------------------------------------------

// A brute-force model: the set of scheduled timers and their deadlines.
class ModelTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(ModelTest, MatchesBruteForceModel) {
    constexpr size_t kTimers = 300;
    constexpr int kOps = 6000;
    std::mt19937_64 rng(GetParam());
    uint64_t now = kStart + rng() % 1000;
    TimerWheel wheel(now);

    struct Slot {
        std::unique_ptr<Timer> timer;
        bool scheduled = false;
        uint64_t deadline = 0;
        // Scheduled from a callback with a deadline already due: fires on the next advance.
        bool deferred = false;
    };
    std::vector<Slot> model(kTimers);

    uint64_t advance_start_tick = 0;
    uint64_t last_fired_key = 0;
    uint64_t advance_now = 0;
    bool in_advance = false;

    auto random_deadline = [&]() -> uint64_t {
        switch (rng() % 8) {
            case 0:
                return now - std::min<uint64_t>(now, rng() % 500);  // past
            case 1:
                return now + rng() % 30;  // this tick or next
            case 2:
                return now + rng() % 1000;
            case 3:
                return now + rng() % (64 * kSecond);
            case 4:
                return now + rng() % (2 * kHour);
            case 5:
                return now + kHour + rng() % kMinute;  // idle timeouts
            case 6:
                return now + rng() % (8 * kDay);
            default:
                return now + rng() % (200 * kDay);  // overflow list
        }
    };

    class Handler final : public TimerHandler {
      public:
        std::function<void(Timer&)> fn;
        void on_timer(Timer& t) override { fn(t); }
    } handler;

    for (size_t i = 0; i < kTimers; ++i)
        model[i].timer = std::make_unique<Timer>(&handler, static_cast<uint8_t>(i % 256));

    auto index_of = [&](Timer& t) {
        for (size_t i = 0; i < kTimers; ++i)
            if (model[i].timer.get() == &t) return i;
        ADD_FAILURE() << "unknown timer";
        return size_t{0};
    };
    auto do_schedule = [&](size_t i, uint64_t deadline) {
        wheel.schedule(*model[i].timer, deadline);
        model[i].scheduled = true;
        model[i].deadline = deadline;
        model[i].deferred = in_advance && due_tick(deadline) <= advance_now / kTick;
    };
    auto do_cancel = [&](size_t i) {
        wheel.cancel(*model[i].timer);
        model[i].scheduled = false;
    };

    size_t fired_total = 0;
    handler.fn = [&](Timer& t) {
        size_t i = index_of(t);
        Slot& s = model[i];
        ASSERT_TRUE(s.scheduled) << "fired a timer the model has cancelled";
        // Never early, and in deadline order at tick granularity (timers that were already due
        // when advance() began come first, in any order).
        ASSERT_LE(due_tick(s.deadline), advance_now / kTick);
        uint64_t key = std::max(due_tick(s.deadline), advance_start_tick);
        ASSERT_GE(key, last_fired_key);
        last_fired_key = key;
        s.scheduled = false;
        s.deferred = false;
        ++fired_total;
        // Act from inside the callback now and then.
        switch (rng() % 6) {
            case 0:
                do_schedule(i, random_deadline());
                break;  // itself
            case 1:
                do_schedule(rng() % kTimers, random_deadline());
                break;  // another
            case 2:
                do_cancel(rng() % kTimers);
                break;
            case 3: {
                // Destroy another owner outright (its Timer's destructor cancels).
                size_t j = rng() % kTimers;
                if (j != i) {
                    model[j].timer = std::make_unique<Timer>(&handler, static_cast<uint8_t>(j));
                    model[j].scheduled = false;
                }
                break;
            }
            default:
                break;
        }
    };

    auto check_expiry = [&] {
        uint64_t earliest = UINT64_MAX;
        size_t count = 0;
        for (const Slot& s : model) {
            if (!s.scheduled) continue;
            ++count;
            earliest = std::min(earliest, due_tick(s.deadline));
        }
        ASSERT_EQ(wheel.size(), count);
        auto next = wheel.next_expiry();
        ASSERT_EQ(next.has_value(), count > 0);
        if (count == 0) return;
        // Never later than the earliest deadline rounded up to a tick (saturating).
        uint64_t bound = earliest > UINT64_MAX / kTick ? UINT64_MAX : earliest * kTick;
        ASSERT_LE(*next, bound);
    };

    size_t empty_streak = 0;
    for (int op = 0; op < kOps; ++op) {
        size_t i = rng() % kTimers;
        switch (rng() % 10) {
            case 0:
            case 1:
            case 2:
                do_schedule(i, random_deadline());
                empty_streak = 0;  // the bound holds for the timers present between firings
                break;
            case 3:
                do_cancel(i);
                empty_streak = 0;
                break;
            default: {
                // Advance: small steps, to next_expiry, or a stall of up to a day.
                uint64_t to = now;
                switch (rng() % 4) {
                    case 0:
                        to = now + rng() % 30;
                        break;
                    case 1:
                        to = now + rng() % (20 * kSecond);
                        break;
                    case 2:
                        to = now + rng() % kDay;
                        break;
                    default:
                        if (auto next = wheel.next_expiry()) to = std::max(now, *next);
                        break;
                }
                const bool to_expiry = wheel.next_expiry() && to == *wheel.next_expiry();
                advance_start_tick = now / kTick;
                last_fired_key = 0;
                now = to;
                advance_now = now;
                in_advance = true;
                size_t before = fired_total;
                size_t fired = wheel.advance(now);
                in_advance = false;
                ASSERT_FALSE(::testing::Test::HasFatalFailure());
                ASSERT_EQ(fired, fired_total - before);
                // Nothing due is left behind, except what callbacks made due for next time.
                for (const Slot& s : model) {
                    if (s.scheduled && !s.deferred) {
                        ASSERT_GT(due_tick(s.deadline), now / kTick) << "missed a due timer";
                    }
                }
                for (Slot& s : model) s.deferred = false;
                if (fired > 0) {
                    empty_streak = 0;
                } else if (to_expiry) {
                    ++empty_streak;
                    ASSERT_LE(empty_streak, TimerWheel::kLevels)
                        << "next_expiry() woke the loop too early too often";
                }
                break;
            }
        }
        ASSERT_NO_FATAL_FAILURE(check_expiry());
    }
    EXPECT_GT(fired_total, 100u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::Values(1u, 2u, 3u, 20240601u, 99u));

}  // namespace
}  // namespace ringlb::shard
