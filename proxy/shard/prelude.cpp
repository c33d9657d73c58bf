#include "proxy/shard/prelude.hpp"

#include <algorithm>

#include "proxy/frontend/client_hello.hpp"
#include "proxy/frontend/proxy_protocol.hpp"

namespace ringlb::shard {

namespace {

// What the prelude keeps of a client that is still being read. The parsers refuse a PROXY header
// long before (4 KiB) and a ClientHello handshake over 16 KiB; in 1-byte records (5 bytes of
// record header each) a legal one could still take ~100 KiB, but no client sends that, and such
// a client goes to the default route rather than holding memory.
constexpr size_t kMaxPreludeBytes = 64 * 1024;

frontend::ProxyAccept accept_of(config::ProxyProtocol version) {
    switch (version) {
        case config::ProxyProtocol::kV1:
            return frontend::ProxyAccept::kV1;
        case config::ProxyProtocol::kV2:
            return frontend::ProxyAccept::kV2;
        default:
            return frontend::ProxyAccept::kAny;
    }
}

}  // namespace

Prelude::Prelude(const config::ListenerConfig& listener, const frontend::SniRouter* router,
                 ListenerCounters& counters)
    : listener_(listener),
      router_(router),
      counters_(counters),
      proxy_pending_(listener.proxy_protocol != config::ProxyProtocol::kNone),
      hello_pending_(router != nullptr) {}

bool Prelude::trusted(const common::Address& peer) {
    if (!proxy_pending_ || listener_.proxy_protocol_from.empty() ||
        common::cidr_list_contains(listener_.proxy_protocol_from, peer))
        return true;
    count(PreludeResult::k_proxy_untrusted);
    error_ = "peer not in proxy_protocol_from";
    return false;
}

Prelude::Step Prelude::feed(std::span<const char> bytes) {
    in_.append(bytes.data(), bytes.size());
    return advance();
}

Prelude::Step Prelude::advance() {
    if (proxy_pending_) {
        frontend::ProxyHeader header;
        switch (frontend::parse_proxy_header(in_, accept_of(listener_.proxy_protocol), &header,
                                             &error_)) {
            case frontend::ParseStatus::kNeedMore:
                return Step::kMore;
            case frontend::ParseStatus::kInvalid:
                count(PreludeResult::k_proxy_invalid);
                return Step::kClose;
            case frontend::ParseStatus::kDone:
                break;
        }
        proxy_pending_ = false;
        consumed_ = header.length;
        if (header.local) {
            count(PreludeResult::k_proxy_local);
        } else {
            has_addresses_ = true;
            source_ = header.source;
            destination_ = header.destination;
            count(PreludeResult::k_proxy_accepted);
        }
        if (pause_after_header_) return Step::kHeader;
    }
    if (hello_pending_) {
        std::span<const char> rest = std::span<const char>(in_).subspan(consumed_);
        // Nothing yet after the PROXY header: a client that speaks first is still to come.
        if (rest.empty()) return Step::kMore;
        if (rest.size() < hello_needed_ && in_.size() < kMaxPreludeBytes) return Step::kMore;
        frontend::ClientHelloInfo hello;
        std::string why;
        switch (frontend::parse_client_hello(rest, &hello, &why, &hello_needed_)) {
            case frontend::HelloStatus::kNeedMore:
                if (in_.size() < kMaxPreludeBytes) return Step::kMore;
                count(PreludeResult::k_tls_invalid);
                break;
            case frontend::HelloStatus::kNotTls:
                count(PreludeResult::k_not_tls);
                break;
            case frontend::HelloStatus::kInvalid:
                count(PreludeResult::k_tls_invalid);
                break;
            case frontend::HelloStatus::kDone:
                sni_ = std::move(hello.sni);
                route_ = sni_.empty() ? std::nullopt : router_->match(sni_);
                if (!route_)
                    count(PreludeResult::k_sni_unmatched);
                else if (listener_.routes[*route_].sni.starts_with("*."))
                    count(PreludeResult::k_sni_wildcard);
                else
                    count(PreludeResult::k_sni_exact);
                break;
        }
        hello_pending_ = false;
    }
    return Step::kRoute;
}

Prelude::Step Prelude::end_of_input() {
    if (proxy_pending_) {
        count(PreludeResult::k_proxy_truncated);
        error_ = "connection ended within the PROXY header";
        return Step::kClose;
    }
    // Routes only: what came (if anything) goes to the default route with the FIN after it.
    return deadline();
}

Prelude::Step Prelude::deadline() {
    if (proxy_pending_) {
        count(PreludeResult::k_proxy_timeout);
        error_ = "no complete PROXY header within prelude_timeout";
        return Step::kClose;
    }
    if (hello_pending_) {
        count(in_.size() > consumed_ ? PreludeResult::k_tls_invalid : PreludeResult::k_silent);
        hello_pending_ = false;
    }
    return Step::kRoute;
}

std::string Prelude::take_client_bytes() {
    size_t header = std::min(consumed_, in_.size());
    std::string bytes = in_.substr(header);
    in_.resize(header);
    return bytes;
}

void Prelude::prepare_output(std::string header) {
    header_length_ = header.size();
    out_ = std::move(header);
    out_.append(in_, std::min(consumed_, in_.size()));
    out_sent_ = 0;
    std::string().swap(in_);
}

size_t Prelude::sent(size_t n) {
    size_t before = out_sent_;
    out_sent_ = std::min(out_.size(), out_sent_ + n);
    size_t ours_before = std::min(before, header_length_);
    size_t ours_after = std::min(out_sent_, header_length_);
    return (out_sent_ - before) - (ours_after - ours_before);
}

}  // namespace ringlb::shard
