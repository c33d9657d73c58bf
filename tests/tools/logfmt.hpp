#pragma once

// A strict logfmt reader for tests: one line of `key=value` pairs separated by single spaces,
// each value bare (printable ASCII without space, `=` or `"`) or a quoted string with JSON's
// escapes (what common/log_format.hpp writes and go-logfmt reads). Independent of the writer,
// so a test that parses ringlb's output with it checks the writer.

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace ringlb::tools {

using LogfmtFields = std::map<std::string, std::string>;

namespace logfmt_detail {

inline void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

inline bool bare_char(char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f && c != '=' && c != '"';
}

}  // namespace logfmt_detail

// The fields of `line` (without its newline); nullopt, with the reason in *error, when it is
// not strict logfmt or repeats a key.
inline std::optional<LogfmtFields> parse_logfmt(std::string_view line,
                                                std::string* error = nullptr) {
    using namespace logfmt_detail;
    auto fail = [&](const std::string& why) -> std::optional<LogfmtFields> {
        if (error) *error = why + " in: " + std::string(line);
        return std::nullopt;
    };
    LogfmtFields fields;
    size_t i = 0;
    while (i < line.size()) {
        if (!fields.empty()) {
            if (line[i] != ' ') return fail("expected a space at " + std::to_string(i));
            ++i;
        }
        size_t key_start = i;
        while (i < line.size() && bare_char(line[i])) ++i;
        if (i == key_start) return fail("expected a key at " + std::to_string(i));
        std::string key(line.substr(key_start, i - key_start));
        if (i >= line.size() || line[i] != '=') return fail("expected '=' after " + key);
        ++i;
        std::string value;
        if (i < line.size() && line[i] == '"') {
            ++i;
            bool closed = false;
            while (i < line.size()) {
                char c = line[i++];
                if (c == '"') {
                    closed = true;
                    break;
                }
                if (static_cast<unsigned char>(c) < 0x20) return fail("raw control character");
                if (c != '\\') {
                    value += c;
                    continue;
                }
                if (i >= line.size()) return fail("dangling backslash");
                char e = line[i++];
                switch (e) {
                    case '"':
                    case '\\':
                    case '/':
                        value += e;
                        break;
                    case 'n':
                        value += '\n';
                        break;
                    case 'r':
                        value += '\r';
                        break;
                    case 't':
                        value += '\t';
                        break;
                    case 'b':
                        value += '\b';
                        break;
                    case 'f':
                        value += '\f';
                        break;
                    case 'u': {
                        if (i + 4 > line.size()) return fail("short \\u escape");
                        unsigned cp = 0;
                        for (int k = 0; k < 4; ++k) {
                            char h = line[i++];
                            cp <<= 4;
                            if (h >= '0' && h <= '9')
                                cp |= static_cast<unsigned>(h - '0');
                            else if (h >= 'a' && h <= 'f')
                                cp |= static_cast<unsigned>(h - 'a' + 10);
                            else if (h >= 'A' && h <= 'F')
                                cp |= static_cast<unsigned>(h - 'A' + 10);
                            else
                                return fail("bad \\u escape");
                        }
                        append_utf8(value, cp);
                        break;
                    }
                    default:
                        return fail(std::string("unknown escape \\") + e);
                }
            }
            if (!closed) return fail("unterminated quoted value of " + key);
        } else {
            size_t value_start = i;
            while (i < line.size() && bare_char(line[i])) ++i;
            if (i == value_start) return fail("empty bare value of " + key);
            value = std::string(line.substr(value_start, i - value_start));
        }
        if (!fields.emplace(key, value).second) return fail("repeated key " + key);
    }
    if (fields.empty()) return fail("no field");
    return fields;
}

}  // namespace ringlb::tools
