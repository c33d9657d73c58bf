#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

namespace ringlb::common {

// A numeric IPv4 or IPv6 socket address. Names are not resolved here (DNS is a control-plane job).
struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
    int family() const { return storage.ss_family; }
    uint16_t port() const;
    std::string to_string() const;
    // Same family, address and port (the bytes the kernel would be given).
    bool operator==(const Address& other) const;
};

// Parses "1.2.3.4:80" or "[::1]:80". Returns nullopt with a reason in *error on failure.
std::optional<Address> parse_address(std::string_view text, std::string* error = nullptr);

// Parses a bare numeric address, "1.2.3.4" or "::1" (no brackets, no port), as an Address with
// port 0: what a socket is bound to when the kernel picks the port. nullopt with a reason in
// *error on failure.
std::optional<Address> parse_ip(std::string_view text, std::string* error = nullptr);

}  // namespace ringlb::common
