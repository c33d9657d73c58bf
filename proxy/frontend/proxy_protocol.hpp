#pragma once

// The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy specifies it
// (doc/proxy-protocol.txt): the header a load balancer in front of us puts before its client's
// bytes, and the one we put before ours for a backend. Pure functions over bytes: the session
// decides when to call them and what to do with the result.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"

namespace ringlb::frontend {

// Which header versions a listener takes. The spec forbids guessing whether a header is there
// at all; which version it is shows in its first byte.
enum class ProxyAccept : uint8_t { kV1, kV2, kAny };

// A v1 line is at most 107 bytes with its CRLF (the spec's worst case).
inline constexpr size_t kMaxProxyV1Length = 107;
// Our cap on a v2 header's length field (the bytes after its 16-byte fixed part). The spec
// allows 65535; real ones are addresses and a few TLVs (HAProxy's SSL TLVs stay well under
// 1 KiB), and the cap bounds what a client can make us buffer before its header is judged.
inline constexpr size_t kMaxProxyV2Length = 4096;

// v2 TLV types we produce or check (the spec's PP2_TYPE_*).
inline constexpr uint8_t kProxyTlvAuthority = 0x02;
inline constexpr uint8_t kProxyTlvCrc32c = 0x03;
// HAProxy refuses a longer authority (PP2_AUTHORITY_MAX), and a host name fits in 253 bytes.
inline constexpr size_t kMaxProxyAuthorityLength = 255;

// A v2 Type-Length-Value field, its value verbatim (nested SSL sub-TLVs included).
struct ProxyTlv {
    uint8_t type = 0;
    std::string value;
    bool operator==(const ProxyTlv&) const = default;
};

struct ProxyHeader {
    uint8_t version = 0;  // 1 or 2
    // v2 LOCAL, a v2 UNSPEC family, or v1 UNKNOWN: no addresses, the connection's own apply.
    bool local = false;
    int family = AF_UNSPEC;  // AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC when local
    // The client and the address it connected to. AF_UNIX: the 108-byte path fields, with the
    // length getsockname() would report (common::make_unix_address).
    common::Address source, destination;
    std::vector<ProxyTlv> tlvs;  // v2, in wire order
    size_t length = 0;           // bytes the header occupies on the wire
};

enum class ParseStatus : uint8_t { kNeedMore, kDone, kInvalid };

// Parses the header at the start of `data`, everything the client has sent so far. Called again
// on the longer prefix as bytes arrive, so it answers for every prefix: kNeedMore while the bytes
// can still begin a valid header, kInvalid (with a short reason in *error, if given) from the
// first byte that rules that out, kDone once a whole header is there: *out is filled, and
// out->length bytes are the header; the bytes after them are not looked at. *out is written only
// on kDone.
//
// Strict, as the spec asks ("any sequence which does not exactly match the protocol must be
// discarded"): v1 fields separated by single spaces, addresses in the family TCP4 or TCP6 names
// (IPv4 without leading zeros, IPv6 as inet_pton(3) reads it), ports 0-65535 without sign or
// leading zero, CRLF within 107 bytes; "UNKNOWN" ends at its first CR (which must be followed
// by LF) and is local. v2: version 2; commands LOCAL and PROXY; families UNSPEC (local),
// TCP over IPv4 or IPv6, UNIX stream; a datagram family is refused (we forward streams) except
// under LOCAL, whose family the spec says to ignore; the length at most kMaxProxyV2Length and
// at least the family's addresses; TLVs exactly filling the rest; a CRC32C TLV must be 4 bytes
// and match the header, as HAProxy checks it.
ParseStatus parse_proxy_header(std::span<const char> data, ProxyAccept accept, ProxyHeader* out,
                               std::string* error = nullptr);

// The v1 line for a connection from `source` to `destination`. Like HAProxy's: "TCP4" when both
// are IPv4, "TCP6" when both are IP and one is IPv6 (an IPv4 one written as ::ffff:a.b.c.d),
// "PROXY UNKNOWN\r\n" when either is null or not IP. Unlike HAProxy, IPv4-mapped IPv6
// addresses (a dual-stack listener's view of an IPv4 client) are sent as the IPv4 addresses they
// are, so a backend matching IPv4 ranges sees IPv4.
std::string encode_proxy_v1(const common::Address* source, const common::Address* destination);

// The v2 header, by the same rules: PROXY over AF_INET or AF_INET6, IPv4-mapped addresses
// unmapped; a pair of AF_UNIX addresses as UNIX stream (HAProxy sends LOCAL for those); LOCAL
// with the UNSPEC family when either is null or the families do not pair. `authority` (the
// client's TLS SNI), when not empty and at most kMaxProxyAuthorityLength bytes, is sent as an
// AUTHORITY TLV (a longer one is left out: HAProxy would refuse the whole header).
std::string encode_proxy_v2(const common::Address* source, const common::Address* destination,
                            std::string_view authority = {});

}  // namespace ringlb::frontend
