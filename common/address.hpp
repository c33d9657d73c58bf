#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

namespace ringlb::common {

// A numeric IPv4 or IPv6 socket address, or an AF_UNIX one (a PROXY protocol v2 header can
// carry those). Names are not resolved here (DNS is a control-plane job).
struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
    int family() const { return storage.ss_family; }
    uint16_t port() const;
    // "1.2.3.4:80", "[::1]:80"; AF_UNIX: "unix:/path", "unix:@name" (abstract; a NUL in the
    // name is shown as '@', as ss(8) does) or "unix:" (unnamed).
    std::string to_string() const;
    // Same family, address and port (the bytes the kernel would be given).
    bool operator==(const Address& other) const;
};

// Parses "1.2.3.4:80" or "[::1]:80". Returns nullopt with a reason in *error on failure.
std::optional<Address> parse_address(std::string_view text, std::string* error = nullptr);

// Parses what a listener's bind or a backend's address may be: "IP:PORT" as parse_address(), or
// "unix:/absolute/path" (a filesystem AF_UNIX socket; the path below 108 bytes so it keeps its
// terminating NUL). nullopt with a reason in *error on failure.
std::optional<Address> parse_socket_address(std::string_view text, std::string* error = nullptr);

// The filesystem path of an AF_UNIX address ("" for an abstract or unnamed one, or another family).
std::string unix_path(const Address& address);

// Parses a bare numeric address, "1.2.3.4" or "::1" (no brackets, no port), as an Address with
// port 0: what a socket is bound to when the kernel picks the port. nullopt with a reason in
// *error on failure.
std::optional<Address> parse_ip(std::string_view text, std::string* error = nullptr);

// An AF_UNIX address with the length Linux's getsockname() reports: a path ("/run/x.sock", at
// most 108 bytes, no NUL) counts its terminating NUL when it has room for one; an abstract name
// (leading NUL) counts exactly its bytes; "" is an unnamed socket (the family alone). nullopt
// when it is longer than 108 bytes, or a path (not an abstract name) holding a NUL.
std::optional<Address> make_unix_address(std::string_view path);

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4
// peer) as the IPv4 address it carries, port kept; any other address unchanged.
Address unmapped_ipv4(const Address& address);

}  // namespace ringlb::common
