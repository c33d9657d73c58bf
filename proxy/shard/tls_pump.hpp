#pragma once

#include <cstddef>

#include "proxy/engine/engine.hpp"
#include "proxy/shard/direction.hpp"
#include "proxy/shard/leg.hpp"

namespace ringlb::shard {

class Session;

// TLS on a session's legs: the handshakes, then forwarding when either leg speaks TLS. TLS is a
// transport over the engine's own receives and sends (proxy/tls/tls.hpp: memory BIOs), so it
// runs the same on both engines; splice never carries a TLS leg.
//
// Per direction, bytes go: receive (engine buffer) -> the source leg's stream decrypts (TLS
// source) -> the destination leg's stream encrypts (TLS destination) -> send. A TLS leg's send
// op carries everything its stream writes (records, the handshake, alerts, close_notify), so
// one flush() per leg is the only sender; a plain destination is sent the source leg's
// decrypted bytes straight from TlsLeg::plain. Backpressure as in the buffered pump: a
// direction receives only while less than kMaxPending bytes wait for its destination.
//
// Half-close maps both ways: the peer's close_notify (or a FIN without one) ends a direction as
// a FIN does, and ending a direction towards a TLS leg sends close_notify, then the FIN.
class TlsPump {
  public:
    explicit TlsPump(Session& session) : session_(session) {}

    // Drives `leg`'s handshake once its TlsLeg exists (and holds any bytes already read); ends
    // in Session::on_handshake_done() or on_handshake_failed().
    void handshake(Leg& leg);
    void on_handshake_recv(Leg& leg, const engine::Completion& c);

    void start(Direction& d);
    void maybe_receive(Direction& d);
    void on_recv(Direction& d, const engine::Completion& c);
    // A send to a plain leg (of the bytes a TLS source decrypted) completed.
    void on_plain_sent(Direction& d, const engine::Completion& c);
    // A TLS leg's send completed.
    void on_sent(Leg& leg, const engine::Completion& c);

    // Sends what `leg`'s stream has written, unless a send is on its way already.
    void flush(Leg& leg);

    // What a direction may have waiting for its destination before it stops receiving: about
    // four TLS records, so one is always in flight while the next is decrypted.
    static constexpr size_t kMaxPending = 64 * 1024;

  private:
    // Decrypts what the source leg's stream holds towards the destination, as far as the
    // destination takes it.
    void pull(Direction& d);
    // A direction whose source ended: once everything is out, its end goes on (close_notify
    // to a TLS destination, then the FIN).
    void maybe_finish(Direction& d);
    bool destination_full(const Direction& d) const;
    // Unsent ciphertext of a TLS leg: copied out and pending in its stream.
    static size_t unsent(const Leg& leg);

    Session& session_;
};

}  // namespace ringlb::shard
