#include "proxy/shard/timer_wheel.hpp"

#include <bit>
#include <cassert>

namespace ringlb::shard {

static_assert(sizeof(void*) != 8 || sizeof(Timer) == 48, "keep Timer small: one per session timer");

Timer::~Timer() {
    if (scheduled()) wheel_->cancel(*this);
}

TimerWheel::TimerWheel(uint64_t now_ms) : now_tick_(now_ms / kTickMs) {}

TimerWheel::~TimerWheel() {
    // Timers may outlive the wheel (the shard tears down in any order): leave none pointing here.
    for (Timer*& head : heads_) {
        while (Timer* t = head) {
            head = t->next_;
            t->next_ = nullptr;
            t->pprev_ = nullptr;
            t->wheel_ = nullptr;
            t->slot_ = Timer::kUnscheduled;
        }
    }
}

uint64_t TimerWheel::tick_of(uint64_t deadline_ms) {
    return deadline_ms / kTickMs + (deadline_ms % kTickMs != 0 ? 1 : 0);
}

uint64_t TimerWheel::ms_of(uint64_t tick) {
    return tick > UINT64_MAX / kTickMs ? UINT64_MAX : tick * kTickMs;
}

void TimerWheel::link(Timer& timer, uint16_t list) {
    Timer*& head = heads_[list];
    timer.next_ = head;
    if (head != nullptr) head->pprev_ = &timer.next_;
    head = &timer;
    timer.pprev_ = &head;
    timer.slot_ = list;
    if (list < kWheelSlots) occupied_[list / kSlots] |= uint64_t{1} << (list % kSlots);
}

void TimerWheel::unlink(Timer& timer) {
    *timer.pprev_ = timer.next_;
    if (timer.next_ != nullptr) timer.next_->pprev_ = timer.pprev_;
    const uint16_t list = timer.slot_;
    if (list < kWheelSlots && heads_[list] == nullptr)
        occupied_[list / kSlots] &= ~(uint64_t{1} << (list % kSlots));
    timer.next_ = nullptr;
    timer.pprev_ = nullptr;
    timer.slot_ = Timer::kUnscheduled;
}

void TimerWheel::place(Timer& timer, uint16_t due_list) {
    const uint64_t tick = tick_of(timer.deadline_ms_);
    if (tick <= now_tick_) {
        if (tick < pending_min_tick_) pending_min_tick_ = tick;
        link(timer, due_list);
        return;
    }
    // The highest 6-bit digit in which the due tick differs from now picks the level: below it
    // both agree, so the timer sits in a slot of the current block, strictly after now's slot.
    const unsigned level =
        static_cast<unsigned>(63 - std::countl_zero(tick ^ now_tick_)) / kSlotBits;
    if (level >= kLevels) {
        link(timer, kOverflow);
        return;
    }
    const auto slot = static_cast<uint16_t>((tick >> (level * kSlotBits)) & (kSlots - 1));
    link(timer, static_cast<uint16_t>(level * kSlots + slot));
}

void TimerWheel::schedule(Timer& timer, uint64_t deadline_ms) {
    assert(timer.handler_ != nullptr);
    if (timer.scheduled()) timer.wheel_->cancel(timer);
    timer.wheel_ = this;
    timer.deadline_ms_ = deadline_ms;
    ++size_;
    place(timer, kExpired);
}

void TimerWheel::cancel(Timer& timer) {
    if (!timer.scheduled()) return;
    assert(timer.wheel_ == this);
    unlink(timer);
    timer.wheel_ = nullptr;
    --size_;
    if (heads_[kExpired] == nullptr && heads_[kDue] == nullptr) pending_min_tick_ = kNever;
}

void TimerWheel::move_all(uint16_t from, uint16_t to) {
    while (Timer* t = heads_[from]) {
        unlink(*t);
        link(*t, to);
    }
}

void TimerWheel::cascade(uint16_t list) {
    // Detached first: a timer that still does not fit lower goes back into a list that is now
    // empty (the overflow list), so the walk ends.
    Timer* t = heads_[list];
    if (t == nullptr) return;
    heads_[list] = nullptr;
    t->pprev_ = nullptr;
    if (list < kWheelSlots) occupied_[list / kSlots] &= ~(uint64_t{1} << (list % kSlots));
    while (t != nullptr) {
        Timer* next = t->next_;
        t->next_ = nullptr;
        ++cascaded_;
        place(*t, kDue);
        t = next;
    }
}

uint64_t TimerWheel::next_event_tick() const {
    // Every non-empty slot of level l lies after now's slot in the current level l+1 block, and
    // all of level l comes before level l+1's next slot: the first level with a slot wins.
    for (unsigned level = 0; level < kLevels; ++level) {
        const unsigned shift = level * kSlotBits;
        const unsigned current = static_cast<unsigned>((now_tick_ >> shift) & (kSlots - 1));
        if (current == kSlots - 1) continue;
        const uint64_t later = occupied_[level] & (~uint64_t{0} << (current + 1));
        if (later == 0) continue;
        const unsigned block_shift = shift + kSlotBits;
        const uint64_t block = (now_tick_ >> block_shift) << block_shift;
        return block + (static_cast<uint64_t>(std::countr_zero(later)) << shift);
    }
    if (heads_[kOverflow] != nullptr) {
        constexpr unsigned kSpan = kLevels * kSlotBits;
        return ((now_tick_ >> kSpan) + 1) << kSpan;
    }
    return kNever;
}

std::optional<uint64_t> TimerWheel::next_expiry() const {
    if (size_ == 0) return std::nullopt;
    if (heads_[kExpired] != nullptr || heads_[kDue] != nullptr) return ms_of(pending_min_tick_);
    return ms_of(next_event_tick());
}

size_t TimerWheel::fire_due() {
    size_t fired = 0;
    // One at a time from the head: a callback may cancel or re-schedule any timer still here.
    while (Timer* t = heads_[kDue]) {
        cancel(*t);
        if (t->handler_ == nullptr) continue;  // never bound (schedule() asserts in debug)
        ++fired;
        t->handler_->on_timer(*t);  // may destroy *t: not touched afterwards
    }
    return fired;
}

size_t TimerWheel::advance(uint64_t now_ms) {
    assert(!advancing_);
    if (advancing_) return 0;
    advancing_ = true;
    const uint64_t target = now_ms / kTickMs;
    // What was already due before this call fires first; what callbacks make due waits for the
    // next call.
    move_all(kExpired, kDue);
    size_t fired = fire_due();
    while (now_tick_ < target) {
        const uint64_t next = next_event_tick();
        if (next > target) {
            // Nothing is filed in between, so every slot keeps its meaning at the new time.
            now_tick_ = target;
            break;
        }
        now_tick_ = next;
        // The order of the cascades does not matter: a cascaded timer always lands on the due
        // list or in a slot after now's, never in a slot this tick still has to process.
        if ((now_tick_ & ((uint64_t{1} << (kLevels * kSlotBits)) - 1)) == 0) cascade(kOverflow);
        for (unsigned level = kLevels; level-- > 1;) {
            const unsigned shift = level * kSlotBits;
            if ((now_tick_ & ((uint64_t{1} << shift) - 1)) != 0) continue;
            cascade(static_cast<uint16_t>(level * kSlots + ((now_tick_ >> shift) & (kSlots - 1))));
        }
        const auto slot = static_cast<uint16_t>(now_tick_ & (kSlots - 1));
        if (heads_[slot] != nullptr) {
            if (now_tick_ < pending_min_tick_) pending_min_tick_ = now_tick_;
            move_all(slot, kDue);
        }
        fired += fire_due();
    }
    advancing_ = false;
    return fired;
}

}  // namespace ringlb::shard
