#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringlb::frontend {

// Picks a route target for a TLS server name: an exact pattern ("api.example.com") first, then
// the wildcard ("*.example.com") with the longest suffix; nullopt sends the client to the
// default route.
//
// "*.example.com" matches one or more whole labels in front of ".example.com": "a.example.com"
// and "a.b.example.com", never "example.com" itself (write both patterns for both) nor
// "badexample.com". That is how nginx's server_name and map `hostnames` treat "*.example.com"
// ("matches not only www.example.org but www.sub.example.org as well"; the "*" only on a dot
// border) and Envoy's filter_chain_match server_names (www.example.com tries www.example.com,
// then *.example.com, then *.com: the most specific wins). HAProxy has no wildcard here:
// `req.ssl_sni -m end .example.com` is a plain string suffix, the same set of names when
// written with the leading dot, but "-m end example.com" also takes "badexample.com" and the
// first matching rule wins rather than the longest. nginx's ".example.com" shorthand (the name
// and its subdomains) and its "mail.*" form are not supported; neither is a bare "*": the
// default route is the catch-all.
//
// Names are compared case-insensitively (DNS names are, RFC 4343); one trailing dot of the
// name is ignored. A lookup lowercases the name into a stack buffer and then makes one hash
// lookup per label: no allocation.
class SniRouter {
  public:
    struct Route {
        std::string pattern;  // "api.example.com" or "*.example.com"
        size_t target;
    };

    // A pattern is a host name as parse_client_hello() accepts one (1 to 255 bytes of
    // [A-Za-z0-9-_.], no empty label), without a trailing dot, optionally preceded by "*." (the
    // '*' nowhere else). False with the reason in *error (may be null) otherwise.
    static bool valid_pattern(std::string_view pattern, std::string* error);

    // Throws std::invalid_argument on a pattern valid_pattern() refuses, or on a pattern given
    // twice (case-insensitively): either is a configuration mistake that would otherwise route
    // silently by list order.
    explicit SniRouter(std::vector<Route> routes);

    std::optional<size_t> match(std::string_view sni) const;

  private:
    // Transparent, so that match() looks a string_view up without building a std::string.
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view text) const {
            return std::hash<std::string_view>{}(text);
        }
    };
    using Map = std::unordered_map<std::string, size_t, Hash, std::equal_to<>>;

    Map exact_;     // lowercased name -> target
    Map suffixes_;  // "*.example.com" as ".example.com" -> target
};

}  // namespace ringlb::frontend
