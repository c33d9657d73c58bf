#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace ringlb::shard {

class Timer;
class TimerWheel;

class TimerHandler {
  public:
    virtual void on_timer(Timer& timer) = 0;

  protected:
    ~TimerHandler() = default;
};

// One session timer (idle, half-closed, max duration, pool max_idle, queue timeout, ...).
// Intrusive: embedded in its owner and never moved while scheduled (it is neither copyable nor
// movable). Destroying a scheduled timer cancels it, so an owner may die with timers pending.
// 48 bytes on 64-bit targets: list links, wheel, handler, deadline, slot and tag.
class Timer {
  public:
    Timer() = default;
    Timer(TimerHandler* handler, uint8_t tag) : handler_(handler), tag_(tag) {}
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    ~Timer();

    void bind(TimerHandler* handler, uint8_t tag) {
        handler_ = handler;
        tag_ = tag;
    }
    TimerHandler* handler() const { return handler_; }
    uint8_t tag() const { return tag_; }
    bool scheduled() const { return slot_ != kUnscheduled; }
    // The deadline last passed to schedule() (kept after the timer fires or is cancelled).
    uint64_t deadline_ms() const { return deadline_ms_; }

  private:
    friend class TimerWheel;
    static constexpr uint16_t kUnscheduled = 0xffff;

    // Singly linked with a back pointer to whatever points at us (a list head or the previous
    // timer's next_): unlinking is O(1) and a list head is one pointer.
    Timer* next_ = nullptr;
    Timer** pprev_ = nullptr;
    TimerWheel* wheel_ = nullptr;
    TimerHandler* handler_ = nullptr;
    uint64_t deadline_ms_ = 0;
    uint16_t slot_ = kUnscheduled;  // which list of wheel_ holds it
    uint8_t tag_ = 0;
};

// Every timer of one shard, in a hierarchical timing wheel (Varghese & Lauck): O(1) schedule and
// cancel, no syscall per timer, and a cost per tick that does not depend on how many timers wait.
//
// Time is cut into ticks of kTickMs. A timer is due at the first tick boundary at or after its
// deadline: it never fires early, and fires at most one tick late after the shard calls
// advance() with a time past that boundary (plus however late the shard calls it).
//
// kLevels levels of 64 slots: level l holds timers due in a later slot of the current level l+1
// block (slot width 64^l ticks). When time enters a slot of level l >= 1, its timers move down
// (cascade) to the level whose slot now fits them, so each timer is touched at most kLevels times
// before it fires. 5 levels at 10 ms span 2^30 ticks (124 days); timers further out wait in an
// overflow list re-examined once per 124 days. A 64-bit occupancy mask per level lets
// next_expiry() find the next non-empty slot with kLevels bit scans and no walk over timers.
//
// Single-threaded (the shard's own thread). Callbacks run from advance() only and may schedule or
// cancel any timer, including the one firing and others due in the same tick, and may destroy a
// timer's owner (after cancelling it, or by destroying the Timer, which cancels it). A timer
// cancelled by an earlier callback of the same advance() does not fire.
class TimerWheel {
  public:
    static constexpr uint64_t kTickMs = 10;
    static constexpr unsigned kLevels = 5;
    static constexpr unsigned kSlotBits = 6;
    static constexpr unsigned kSlots = 1u << kSlotBits;

    explicit TimerWheel(uint64_t now_ms);
    ~TimerWheel();  // unschedules every timer still scheduled (they do not fire)
    TimerWheel(const TimerWheel&) = delete;
    TimerWheel& operator=(const TimerWheel&) = delete;

    // (Re)schedules `timer`, which must be bound to a handler. A deadline already due (at or
    // before the current tick) fires on the next advance(), never inside this call, and (from a
    // callback) not in the advance() that is running: a timer re-scheduling itself into the past
    // cannot spin one advance() forever.
    void schedule(Timer& timer, uint64_t deadline_ms);
    // No-op when not scheduled.
    void cancel(Timer& timer);

    // Moves time to `now_ms` (earlier values than the last one are ignored) and fires every timer
    // now due, in deadline order at tick granularity (timers due in the same tick fire in no
    // particular order). Returns how many fired. A callback must not call advance().
    size_t advance(uint64_t now_ms);

    // When the shard must call advance() next: the start (ms) of the earliest tick with work to
    // do, or nullopt when no timer is scheduled. Never later than the earliest deadline rounded
    // up to a tick; it may be earlier (the start of a higher-level slot that must cascade first),
    // at most kLevels times in a row without a timer firing. Cost: at most kLevels + 1 mask
    // lookups.
    std::optional<uint64_t> next_expiry() const;

    size_t size() const { return size_; }
    // Timers moved between levels so far: at most kLevels per timer scheduled, plus one per
    // top-level span (124 days) for deadlines beyond it. Lets tests bound the work without clocks.
    uint64_t cascaded() const { return cascaded_; }

  private:
    friend class Timer;

    static constexpr uint16_t kWheelSlots = kLevels * kSlots;
    static constexpr uint16_t kOverflow = kWheelSlots;     // beyond the top level's span
    static constexpr uint16_t kExpired = kWheelSlots + 1;  // due; fires on the next advance()
    static constexpr uint16_t kDue = kWheelSlots + 2;      // firing in the running advance()
    static constexpr uint16_t kLists = kWheelSlots + 3;
    static constexpr uint64_t kNever = UINT64_MAX;

    static uint64_t tick_of(uint64_t deadline_ms);  // rounded up
    static uint64_t ms_of(uint64_t tick);           // saturating

    void link(Timer& timer, uint16_t list);
    void unlink(Timer& timer);
    // Files `timer` by its deadline relative to now_tick_; a due one goes to `due_list`.
    void place(Timer& timer, uint16_t due_list);
    void move_all(uint16_t from, uint16_t to);
    void cascade(uint16_t list);
    uint64_t next_event_tick() const;
    size_t fire_due();

    std::array<Timer*, kLists> heads_{};
    std::array<uint64_t, kLevels> occupied_{};  // bit s of level l: slot s is non-empty
    uint64_t now_tick_;
    // No later than the earliest due tick of the kExpired and kDue lists (stale-low after a
    // cancel, which only makes next_expiry() earlier); meaningful while either list is non-empty.
    uint64_t pending_min_tick_ = kNever;
    size_t size_ = 0;
    uint64_t cascaded_ = 0;
    bool advancing_ = false;
};

}  // namespace ringlb::shard
