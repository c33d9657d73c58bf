// libFuzzer target for the PROXY protocol parser and encoders (proxy/frontend/). The parser is fed
// a client's bytes as they arrive, so besides not crashing it must answer consistently for every
// prefix of an input:
//   - a header found in the whole input (kDone, length L): every shorter prefix is kNeedMore and
//     every longer one is the same header (the bytes after it are not looked at);
//   - an input that still needs more: so does every prefix;
//   - an invalid input: some prefix turns kInvalid and every longer one stays kInvalid;
//   - kAny answers as the mode of the input's first byte would;
// and a parsed header, encoded again, parses back to the same addresses (IPv4-mapped pairs as
// the IPv4 pair the encoders send) and re-encodes to the same bytes. Built by
// `scripts/build.sh fuzz`; the corpus, tests/fuzz/corpus/proxy_protocol, is replayed by the
// ctest ProxyProtocolFuzzCorpusReplay.

#include <netinet/in.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include "proxy/frontend/proxy_protocol.hpp"

namespace {

using ringlb::common::Address;
using ringlb::common::unmapped_ipv4;
using namespace ringlb::frontend;

// Prefixes longer than this are not re-parsed one by one (a v2 header may be 4 KiB).
constexpr size_t kMaxPrefix = 600;

void require(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "proxy_protocol_fuzz: %s\n", what);
    std::abort();
}

bool same_header(const ProxyHeader& a, const ProxyHeader& b) {
    return a.version == b.version && a.local == b.local && a.family == b.family &&
           a.source == b.source && a.destination == b.destination && a.tlvs == b.tlvs &&
           a.length == b.length;
}

void check_round_trip(const ProxyHeader& parsed) {
    std::string authority;
    for (const ProxyTlv& tlv : parsed.tlvs) {
        if (tlv.type == kProxyTlvAuthority) {
            authority = tlv.value;
            break;
        }
    }
    const Address* source = parsed.local ? nullptr : &parsed.source;
    const Address* destination = parsed.local ? nullptr : &parsed.destination;
    auto encode = [&](const Address* s, const Address* d) {
        return parsed.version == 1 ? encode_proxy_v1(s, d) : encode_proxy_v2(s, d, authority);
    };
    std::string encoded = encode(source, destination);
    ProxyHeader again;
    std::string error;
    require(parse_proxy_header(encoded, ProxyAccept::kAny, &again, &error) == ParseStatus::kDone,
            "an encoded header does not parse");
    require(again.length == encoded.size(), "an encoded header parses to another length");
    require(again.version == parsed.version && again.local == parsed.local,
            "an encoded header changes version or command");
    if (!parsed.local) {
        // The encoders unmap an IPv4-mapped pair; a pair with one mapped address stays IPv6.
        Address s = unmapped_ipv4(parsed.source);
        Address d = unmapped_ipv4(parsed.destination);
        bool unmapped = s.family() == AF_INET && d.family() == AF_INET;
        require(again.source == (unmapped ? s : parsed.source) &&
                    again.destination == (unmapped ? d : parsed.destination),
                "an encoded header parses to other addresses");
    }
    if (parsed.version == 2) {
        bool sent = !authority.empty() && authority.size() <= kMaxProxyAuthorityLength;
        require(again.tlvs.size() == (sent ? 1u : 0u) &&
                    (!sent || (again.tlvs[0].type == kProxyTlvAuthority &&
                               again.tlvs[0].value == authority)),
                "an encoded header carries other TLVs");
    }
    require(encode(again.local ? nullptr : &again.source,
                   again.local ? nullptr : &again.destination) == encoded,
            "encoding a parsed encoded header gives other bytes");
}

ParseStatus check_mode(std::span<const char> input, ProxyAccept accept) {
    ProxyHeader whole;
    std::string error;
    ParseStatus status = parse_proxy_header(input, accept, &whole, &error);
    require(status != ParseStatus::kInvalid || !error.empty(), "kInvalid without a reason");
    if (status == ParseStatus::kDone) {
        require(whole.length > 0 && whole.length <= input.size(), "header length out of range");
        require(whole.version == 1 || whole.version == 2, "header version out of range");
        require(whole.local == (whole.family == AF_UNSPEC), "local disagrees with the family");
        require(whole.version == 2 || whole.tlvs.empty(), "a v1 header with TLVs");
        if (whole.version == 1) require(whole.length <= kMaxProxyV1Length, "v1 line too long");
        if (whole.version == 2)
            require(whole.length <= 16 + kMaxProxyV2Length, "v2 header over the cap");
    }
    bool seen_invalid = false;
    for (size_t n = 0; n <= std::min(input.size(), kMaxPrefix); ++n) {
        ProxyHeader header;
        ParseStatus prefix = parse_proxy_header(input.first(n), accept, &header, nullptr);
        if (status == ParseStatus::kDone) {
            if (n < whole.length) {
                require(prefix == ParseStatus::kNeedMore, "a prefix of a header is not kNeedMore");
            } else {
                require(prefix == ParseStatus::kDone && same_header(header, whole),
                        "bytes after a header change it");
            }
        } else if (status == ParseStatus::kNeedMore) {
            require(prefix == ParseStatus::kNeedMore, "a prefix of kNeedMore is not kNeedMore");
        } else {
            require(prefix != ParseStatus::kDone, "a prefix of an invalid input is a header");
            require(!seen_invalid || prefix == ParseStatus::kInvalid,
                    "more bytes made an invalid input valid again");
            seen_invalid = seen_invalid || prefix == ParseStatus::kInvalid;
        }
    }
    if (status == ParseStatus::kDone) check_round_trip(whole);
    return status;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::span<const char> input(reinterpret_cast<const char*>(data), size);
    ParseStatus v1 = check_mode(input, ProxyAccept::kV1);
    ParseStatus v2 = check_mode(input, ProxyAccept::kV2);
    ParseStatus any = check_mode(input, ProxyAccept::kAny);
    if (size == 0) {
        require(v1 == ParseStatus::kNeedMore && v2 == v1 && any == v1, "empty input not kNeedMore");
    } else if (input[0] == 'P') {
        require(any == v1 && v2 == ParseStatus::kInvalid, "a v1 start judged unlike kV1");
    } else if (input[0] == '\r') {
        require(any == v2 && v1 == ParseStatus::kInvalid, "a v2 start judged unlike kV2");
    } else {
        require(v1 == ParseStatus::kInvalid && v2 == v1 && any == v1, "a non-header accepted");
    }
    return 0;
}
