#pragma once

#include "proxy/engine/engine.hpp"
#include "proxy/shard/direction.hpp"

namespace ringlb::shard {

class Session;

// Buffered forwarding (the measured default): receive into the shard's engine buffers, send them
// on, with at most kHighWater buffers waiting per direction (backpressure: receiving pauses while
// the other side cannot take more, so a slow reader never makes ringlb grow).
class BufferedPump {
  public:
    explicit BufferedPump(Session& session) : session_(session) {}

    // Arms a receive when the direction may take more.
    void maybe_receive(Direction& d);
    void on_recv(Direction& d, const engine::Completion& c);
    void on_sent(Direction& d, const engine::Completion& c);
    // Gives back the buffers still queued; only once no op of the session is armed.
    void release(Direction& d);

    // Buffers a direction may hold before receiving pauses. With single-shot receives in bulk
    // mode this bounds a stalled reader's share of the shard's buffer pool.
    static constexpr size_t kHighWater = 2;
    static constexpr uint8_t kInteractiveStreak = 2;

  private:
    void send_head(Direction& d);

    Session& session_;
};

}  // namespace ringlb::shard
