// ControlPlane::drain(): the graceful stop (Seastar's gate, with a deadline). Every step runs on
// the control thread; the shards hear of it by message and answer by counters (their session
// gauges, readable from any thread) or by posting back to this thread.

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <memory>

#include "common/log.hpp"
#include "config/config.hpp"
#include "proxy/runtime/control_plane.hpp"

namespace ringlb::runtime {

namespace {

using Clock = std::chrono::steady_clock;

// How often the session gauges are read while waiting: a drain that empties early ends within
// this much of its last session.
constexpr std::chrono::milliseconds kDrainPoll{50};
// After drain_spread, the sessions the shards closed may still wait for their last completions
// (a cancelled op, a close): this long, then stop() resets whatever is left.
constexpr std::chrono::milliseconds kSpreadGrace{1000};
// A listener closes once its accept op has ended, normally within a loop iteration of its shard;
// should one never answer, the drain goes on without it after this long.
constexpr std::chrono::milliseconds kListenerCloseGuard{5000};

long long ms_since(Clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

}  // namespace

uint64_t ControlPlane::open_sessions() const {
    uint64_t open = 0;
    for (const auto& s : shards_.shards()) open += s->counters().active.get();
    return open;
}

void ControlPlane::drain() {
    drain_started_ = Clock::now();
    // Load balancers and Kubernetes stop sending new clients once /ready fails; the delay below
    // gives them time to notice while clients that still come are served.
    admin_->set_ready(false, "draining");
    const config::RuntimeConfig& rt = config_->runtime;
    if (rt.drain_delay.count() <= 0) {
        LOG_INFO("drain: /ready answers 503; %llu sessions open",
                 static_cast<unsigned long long>(open_sessions()));
        drain_stop_accepting();
        return;
    }
    LOG_INFO("drain: /ready answers 503; still accepting for drain_delay %s (%llu sessions open)",
             config::format_duration(rt.drain_delay).c_str(),
             static_cast<unsigned long long>(open_sessions()));
    drain_step_ = DrainStep::kDelay;
    drain_timer_.expires_after(rt.drain_delay);
    drain_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) drain_stop_accepting();
    });
}

void ControlPlane::drain_after_upgrade() {
    handed_over_ = true;
    if (draining()) return;
    drain_started_ = Clock::now();
    if (admin_) {
        admin_->set_ready(false, "upgraded: a new process serves");
        admin_->close();  // the new process serves the admin socket too
    }
    // The sessions are counted once every shard has let go of its sockets, so that none it
    // accepted meanwhile is missed.
    drain_stop_accepting(true);
}

void ControlPlane::drain_stop_accepting(bool handed_over) {
    drain_step_ = DrainStep::kClosingListeners;
    // One answer per listener socket (a listener has one per shard), posted back from the shard
    // that closed it; the last one moves the drain on.
    size_t sockets = 0;
    for (const auto& s : shards_.shards()) sockets += s->listener_count();
    if (sockets == 0) {
        boost::asio::post(io_, [this] { drain_listeners_closed(0); });
        return;
    }
    struct Tally {
        std::atomic<size_t> remaining;
        std::atomic<uint64_t> taken{0};
    };
    auto tally = std::make_shared<Tally>();
    tally->remaining.store(sockets);
    drain_timer_.expires_after(kListenerCloseGuard);
    drain_timer_.async_wait([this, tally](const boost::system::error_code& ec) {
        if (ec || drain_step_ != DrainStep::kClosingListeners) return;
        LOG_WARN("drain: %zu listening sockets not closed after %lld ms; going on without them",
                 tally->remaining.load(), static_cast<long long>(kListenerCloseGuard.count()));
        drain_listeners_closed(tally->taken.load(std::memory_order_relaxed));
    });
    shards_.post_each([this, tally, handed_over](shard::Shard& shard, size_t) {
        for (size_t i = 0; i < shard.listener_count(); ++i) {
            auto closed = [this, tally](size_t taken) {
                tally->taken.fetch_add(taken, std::memory_order_relaxed);
                if (tally->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                    uint64_t total = tally->taken.load(std::memory_order_relaxed);
                    boost::asio::post(io_, [this, total] { drain_listeners_closed(total); });
                }
            };
            if (handed_over)
                shard.release_listener(i, closed);
            else
                shard.close_listener(i, closed);
        }
    });
}

void ControlPlane::drain_listeners_closed(uint64_t taken) {
    if (drain_step_ != DrainStep::kClosingListeners) return;  // a second signal stopped it
    drain_step_ = DrainStep::kWaiting;
    const config::RuntimeConfig& rt = config_->runtime;
    LOG_INFO(
        "drain: listeners closed on %zu shards (%llu queued connections taken from their "
        "accept queues); waiting up to drain_timeout %s for %llu sessions",
        shards_.size(), static_cast<unsigned long long>(taken),
        config::format_duration(rt.drain_timeout).c_str(),
        static_cast<unsigned long long>(open_sessions()));
    drain_poll(Clock::now() + rt.drain_timeout, &ControlPlane::drain_timed_out);
}

void ControlPlane::drain_poll(Clock::time_point until, void (ControlPlane::*next)()) {
    if (open_sessions() == 0) {
        drain_done("every session has ended");
        return;
    }
    if (Clock::now() >= until) {
        (this->*next)();
        return;
    }
    drain_timer_.expires_after(std::min<Clock::duration>(kDrainPoll, until - Clock::now()));
    drain_timer_.async_wait([this, until, next](const boost::system::error_code& ec) {
        if (!ec) drain_poll(until, next);
    });
}

void ControlPlane::drain_timed_out() {
    drain_step_ = DrainStep::kSpreading;
    const config::RuntimeConfig& rt = config_->runtime;
    LOG_INFO(
        "drain: drain_timeout passed with %llu sessions open: closing them over "
        "drain_spread %s",
        static_cast<unsigned long long>(open_sessions()),
        config::format_duration(rt.drain_spread).c_str());
    shards_.broadcast([window = rt.drain_spread](shard::Shard& s) { s.close_sessions(window); });
    drain_poll(Clock::now() + rt.drain_spread + kSpreadGrace, &ControlPlane::drain_spread_over);
}

void ControlPlane::drain_spread_over() {
    LOG_WARN("drain: %llu sessions still open %lld ms after drain_spread; they are reset",
             static_cast<unsigned long long>(open_sessions()),
             static_cast<long long>(kSpreadGrace.count()));
    drain_done("drain_spread passed");
}

void ControlPlane::drain_done(const char* how) {
    drain_step_ = DrainStep::kDone;
    LOG_INFO("drain: done after %lld ms (%s)", ms_since(drain_started_), how);
    // run() goes on from io_.run(): the admin endpoint closes and the shards stop.
    io_.stop();
}

}  // namespace ringlb::runtime
