#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/address.hpp"
#include "config/config.hpp"
#include "proxy/frontend/sni_router.hpp"
#include "proxy/shard/counters.hpp"

namespace ringlb::shard {

// A session's prelude: what it reads from the client before it picks a cluster (a PROXY header
// when the listener has proxy_protocol, a TLS ClientHello when it has routes), and what it writes
// to the upstream before forwarding starts (send_proxy's header, then every client byte read
// here, in order). The session owns the sockets and the timer and feeds this the bytes; this
// decides, and counts each decision in ringlb_listener_prelude_total.
//
// Bytes are copied out of the engine's buffer into a string of their own, so a client that
// trickles its header one byte per segment holds one small allocation rather than one 64 KiB
// engine buffer per segment.
class Prelude {
  public:
    enum class Step : uint8_t {
        kMore,   // keep reading
        kRoute,  // route() is decided: connect
        kClose,  // refused (counted; error() says why): close the client
        // The PROXY header is read (only after pause_after_header()): source() is the client's;
        // resume() goes on.
        kHeader,
    };

    // `router`: the listener's routes, or null when it has none.
    Prelude(const config::ListenerConfig& listener, const frontend::SniRouter* router,
            ListenerCounters& counters);

    // Whether `peer` may send a PROXY header (proxy_protocol_from); counts a refusal.
    bool trusted(const common::Address& peer);

    // Bytes the client sent.
    Step feed(std::span<const char> bytes);
    // The client's FIN (or a reset) before the prelude was complete.
    Step end_of_input();
    // prelude_timeout passed.
    Step deadline();

    bool reading() const { return proxy_pending_ || hello_pending_; }
    // feed() answers kHeader once the PROXY header is read, before it looks for a ClientHello
    // in the bytes after it: the listener's access control runs on the header's source first.
    void pause_after_header() { pause_after_header_ = true; }
    Step resume() { return advance(); }
    // The index into the listener's routes, or nullopt for its own cluster.
    std::optional<size_t> route() const { return route_; }
    // The client's addresses from its PROXY header; null without one (or a LOCAL one).
    const common::Address* source() const { return has_addresses_ ? &source_ : nullptr; }
    const common::Address* destination() const { return has_addresses_ ? &destination_ : nullptr; }
    const std::string& sni() const { return sni_; }
    const std::string& error() const { return error_; }

    // Takes the client's bytes read here (after any PROXY header), which then are not part of
    // prepare_output()'s: a TLS leg decrypts or encrypts them instead of sending them as read.
    std::string take_client_bytes();
    // Sets what goes to the upstream first: `header` (ringlb's own bytes), then the client's
    // bytes read here. Empty when there is nothing to send.
    void prepare_output(std::string header);
    std::span<const char> unsent() const { return std::span<const char>(out_).subspan(out_sent_); }
    // `n` more bytes went out; returns how many of them were the client's.
    size_t sent(size_t n);

  private:
    Step advance();
    void count(PreludeResult result) { counters_.count(result); }

    const config::ListenerConfig& listener_;
    const frontend::SniRouter* router_;
    ListenerCounters& counters_;
    std::string in_;       // what the client sent so far
    size_t consumed_ = 0;  // the PROXY header's bytes at the front of in_, never forwarded
    bool proxy_pending_;
    bool hello_pending_;
    bool has_addresses_ = false;
    bool pause_after_header_ = false;
    common::Address source_;
    common::Address destination_;
    // parse_client_hello()'s `needed`: it cannot answer before the bytes after the PROXY header
    // are this many. Parsing from the start on every segment would make a ClientHello sent in
    // 1-byte segments cost O(n^2); waiting for `needed` takes a few dozen parses.
    size_t hello_needed_ = 0;
    std::optional<size_t> route_;
    std::string sni_;
    std::string error_;
    std::string out_;
    size_t out_sent_ = 0;
    size_t header_length_ = 0;  // ringlb's bytes at the front of out_
};

}  // namespace ringlb::shard
