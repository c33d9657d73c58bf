#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringlb::common {

// A backend given by DNS name: "web.default.svc.cluster.local:8080". The name is resolved at run
// time by the control plane (proxy/discovery/); this is only its syntax, kept in common/ so that
// config/ can tell a name from a numeric address without depending on the resolver.
struct HostPort {
    std::string host;  // as written, a trailing dot (a fully qualified name) included
    uint16_t port = 0;
};

// Parses "name:port". The name follows the host name rules of RFC 1123: dot-separated labels of
// 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen, at most 253
// characters (a single trailing dot allowed), and a last label that is not all digits (so
// "10.0.0.300" and "1.2.3" are never sent to DNS as names). IP literals are refused: those are
// parse_address()'s to parse. The port is 1 to 65535. nullopt with a reason in *error otherwise.
std::optional<HostPort> parse_host_port(std::string_view text, std::string* error = nullptr);

}  // namespace ringlb::common
