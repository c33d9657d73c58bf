#include "common/cidr.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace ringlb::common {

namespace {

bool fail(std::string* error, std::string_view text, std::string_view reason) {
    if (error) {
        error->assign("invalid address range \"").append(text).append("\": ").append(reason);
    }
    return false;
}

// Whether the first `bits` bits of `address` are those of `network`.
bool prefix_matches(const uint8_t* network, const uint8_t* address, unsigned bits) {
    size_t whole = bits / 8;
    if (std::memcmp(network, address, whole) != 0) return false;
    unsigned rest = bits % 8;
    if (rest == 0) return true;
    auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (address[whole] & mask) == network[whole];
}

}  // namespace

bool Cidr::parse(std::string_view text, Cidr* out, std::string* error) {
    size_t slash = text.find('/');
    std::string ip_error;
    std::optional<Address> ip = parse_ip(text.substr(0, slash), &ip_error);
    if (!ip) return fail(error, text, ip_error);
    Cidr cidr;
    cidr.family = ip->family();
    unsigned max_length = cidr.family == AF_INET ? 32 : 128;
    if (cidr.family == AF_INET) {
        std::memcpy(cidr.network.data(),
                    &reinterpret_cast<const sockaddr_in*>(&ip->storage)->sin_addr, 4);
    } else {
        std::memcpy(cidr.network.data(),
                    &reinterpret_cast<const sockaddr_in6*>(&ip->storage)->sin6_addr, 16);
    }
    unsigned length = max_length;
    if (slash != std::string_view::npos) {
        std::string_view digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3 ||
            !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return fail(error, text, "the prefix length must be a decimal number");
        if (digits.size() > 1 && digits.front() == '0')
            return fail(error, text, "the prefix length has a leading zero");
        length = 0;
        for (char c : digits) length = length * 10 + static_cast<unsigned>(c - '0');
        if (length > max_length)
            return fail(error, text, "the prefix length is above " + std::to_string(max_length));
    }
    cidr.prefix_length = static_cast<uint8_t>(length);
    // Clear the host bits (see parse()'s comment in the header).
    for (unsigned bit = length; bit < max_length; ++bit)
        cidr.network[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    *out = cidr;
    return true;
}

bool Cidr::contains(const Address& address) const {
    if (family == AF_INET) {
        Address v4 = unmapped_ipv4(address);
        if (v4.family() != AF_INET) return false;
        const auto* bytes = reinterpret_cast<const uint8_t*>(
            &reinterpret_cast<const sockaddr_in*>(&v4.storage)->sin_addr);
        return prefix_matches(network.data(), bytes, prefix_length);
    }
    if (family != AF_INET6) return false;
    uint8_t bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (address.family() == AF_INET6) {
        std::memcpy(bytes, &reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr, 16);
    } else if (address.family() == AF_INET) {
        std::memcpy(bytes + 12, &reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr,
                    4);
    } else {
        return false;
    }
    return prefix_matches(network.data(), bytes, prefix_length);
}

std::string Cidr::to_string() const {
    char text[INET6_ADDRSTRLEN] = {};
    if (family != AF_INET && family != AF_INET6) return "<unspecified>";
    inet_ntop(family, network.data(), text, sizeof(text));
    std::string out(text);
    out.append("/").append(std::to_string(prefix_length));
    return out;
}

bool cidr_list_contains(std::span<const Cidr> list, const Address& address) {
    return std::any_of(list.begin(), list.end(),
                       [&](const Cidr& cidr) { return cidr.contains(address); });
}

}  // namespace ringlb::common
