#include "proxy/frontend/sni_router.hpp"

#include <stdexcept>

#include "proxy/frontend/client_hello.hpp"

namespace ringlb::frontend {

namespace {

constexpr size_t kMaxNameLength = 255;

char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowercase(std::string_view text) {
    std::string result(text);
    for (char& c : result) c = lower(c);
    return result;
}

}  // namespace

bool SniRouter::valid_pattern(std::string_view pattern, std::string* error) {
    auto refuse = [&](const std::string& reason) {
        if (error) *error = "SNI pattern '" + std::string(pattern) + "': " + reason;
        return false;
    };
    if (pattern.empty()) return refuse("empty");
    if (pattern.size() > kMaxNameLength) return refuse("longer than 255 bytes");
    if (pattern == "*") return refuse("a bare '*' is no pattern: the default route takes the rest");
    std::string_view name = pattern;
    if (name.starts_with("*.")) name.remove_prefix(2);
    if (name.empty()) return refuse("nothing after \"*.\"");
    for (size_t i = 0; i < name.size(); ++i) {
        unsigned char c = name[i];
        if (c == '*')
            return refuse("'*' is allowed only as the whole first label (\"*.example.com\")");
        if (!is_host_name_byte(c))
            return refuse("byte " + std::to_string(c) + " is not a letter, digit, '-', '_' or '.'");
        if (c == '.' && (i == 0 || name[i - 1] == '.')) return refuse("empty label");
    }
    if (name.back() == '.') return refuse("ends with '.'");
    return true;
}

SniRouter::SniRouter(std::vector<Route> routes) {
    for (Route& route : routes) {
        std::string error;
        if (!valid_pattern(route.pattern, &error)) throw std::invalid_argument(error);
        std::string key = lowercase(route.pattern);
        bool wildcard = key.starts_with("*.");
        if (wildcard) key.erase(0, 1);  // keeps the dot: ".example.com"
        Map& map = wildcard ? suffixes_ : exact_;
        if (!map.emplace(std::move(key), route.target).second)
            throw std::invalid_argument("SNI pattern '" + route.pattern + "' given twice");
    }
}

std::optional<size_t> SniRouter::match(std::string_view sni) const {
    if (sni.ends_with('.')) sni.remove_suffix(1);
    if (sni.empty() || sni.size() > kMaxNameLength) return std::nullopt;
    char buffer[kMaxNameLength];
    for (size_t i = 0; i < sni.size(); ++i) buffer[i] = lower(sni[i]);
    std::string_view name(buffer, sni.size());
    if (auto it = exact_.find(name); it != exact_.end()) return it->second;
    if (suffixes_.empty()) return std::nullopt;
    // Left to right is longest suffix first. The '*' stands for at least one non-empty label:
    // a dot at position 0 or after another dot is not a border.
    for (size_t dot = name.find('.', 1); dot != std::string_view::npos;
         dot = name.find('.', dot + 1)) {
        if (name[dot - 1] == '.') continue;
        if (auto it = suffixes_.find(name.substr(dot)); it != suffixes_.end()) return it->second;
    }
    return std::nullopt;
}

}  // namespace ringlb::frontend
