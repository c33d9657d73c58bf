#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/address.hpp"

namespace ringlb::common {

// An IPv4 or IPv6 address range, "10.0.0.0/8" or "2001:db8::/32": which clients may do
// something (send a PROXY protocol header, say).
struct Cidr {
    int family = AF_UNSPEC;  // AF_INET or AF_INET6 once parsed
    uint8_t prefix_length = 0;
    // The network in network byte order (the first 4 bytes for AF_INET), host bits zero.
    std::array<uint8_t, 16> network{};

    // Parses "ADDRESS/LENGTH", or a bare ADDRESS as the single host (/32 or /128). LENGTH is
    // decimal, 0 to 32 (IPv4) or 128 (IPv6), without sign or leading zero. Host bits set below
    // the prefix are cleared rather than refused, as HAProxy does ("10.1.2.3/8" is 10.0.0.0/8):
    // an address with its prefix length, the way interfaces are often written, means its
    // network. false with a reason in *error otherwise.
    static bool parse(std::string_view text, Cidr* out, std::string* error = nullptr);

    // Whether the address lies in the range; its port is ignored. An IPv4 client and the same
    // client seen through a dual-stack socket (::ffff:a.b.c.d) are the same host: the mapped
    // form matches IPv4 ranges, and an IPv4 address matches IPv6 ranges as its mapped form
    // (::ffff:0:0/96 holds every IPv4 client), as HAProxy's ACLs do. Other families never match.
    bool contains(const Address& address) const;

    // "10.0.0.0/8", "2001:db8::/32": the network (host bits cleared) and the length, always.
    std::string to_string() const;

    bool operator==(const Cidr&) const = default;
};

// Whether any range of the list holds the address (false for an empty list).
bool cidr_list_contains(std::span<const Cidr> list, const Address& address);

}  // namespace ringlb::common
