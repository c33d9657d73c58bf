#include "common/host_port.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>

namespace ringlb::common {

namespace {

std::optional<HostPort> fail(std::string* error, std::string reason) {
    if (error) *error = std::move(reason);
    return std::nullopt;
}

bool is_letter_or_digit(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool is_ip_literal(const std::string& host) {
    in6_addr bytes{};
    return inet_pton(AF_INET, host.c_str(), &bytes) == 1 ||
           inet_pton(AF_INET6, host.c_str(), &bytes) == 1;
}

// "" when `name` (without a trailing dot) is a valid host name, else why not.
std::string check_name(std::string_view name) {
    if (name.empty()) return "empty host name";
    if (name.size() > 253) return "host name longer than 253 characters";
    std::string_view last_label;
    size_t start = 0;
    while (start <= name.size()) {
        size_t dot = name.find('.', start);
        if (dot == std::string_view::npos) dot = name.size();
        std::string_view label = name.substr(start, dot - start);
        if (label.empty()) return "empty label in host name";
        if (label.size() > 63) return "host name label longer than 63 characters";
        if (label.front() == '-' || label.back() == '-')
            return "host name label \"" + std::string(label) + "\" starts or ends with '-'";
        for (char c : label) {
            if (!is_letter_or_digit(c) && c != '-')
                return "invalid character '" + std::string(1, c) +
                       "' in host name (letters, digits, '-' and '.' only)";
        }
        last_label = label;
        start = dot + 1;
    }
    bool all_digits = true;
    for (char c : last_label) all_digits = all_digits && c >= '0' && c <= '9';
    if (all_digits) return "host name whose last label is all digits (not an IP address either)";
    return "";
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text, std::string* error) {
    if (!text.empty() && text.front() == '[')
        return fail(error, "an IPv6 address, not a host name");
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail(error, "expected \"host:port\"");
    std::string host(text.substr(0, colon));
    std::string_view port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return fail(error, "an IPv6 address, not a host name");
    if (is_ip_literal(host)) return fail(error, "an IP address, not a host name");

    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port == 0 || port > 65535)
        return fail(error, "invalid port \"" + std::string(port_text) + "\"");

    std::string_view name(host);
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (std::string why = check_name(name); !why.empty()) return fail(error, why);
    return HostPort{std::move(host), static_cast<uint16_t>(port)};
}

}  // namespace ringlb::common
