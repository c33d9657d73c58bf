#include "common/log_format.hpp"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace ringlb::common {

const char* to_string(LogFormat format) {
    switch (format) {
        case LogFormat::kText:
            return "text";
        case LogFormat::kLogfmt:
            return "logfmt";
        case LogFormat::kJson:
            return "json";
    }
    return "?";
}

bool parse_log_format(std::string_view text, LogFormat& out) {
    if (text == "text")
        out = LogFormat::kText;
    else if (text == "logfmt")
        out = LogFormat::kLogfmt;
    else if (text == "json")
        out = LogFormat::kJson;
    else
        return false;
    return true;
}

namespace {

// Length of the valid UTF-8 sequence starting at text[i] (2..4), or 0 when the bytes there are
// not one: a stray continuation byte, a truncated sequence, an overlong form, a surrogate or a
// code point above U+10FFFF (RFC 3629).
size_t utf8_sequence(std::string_view text, size_t i) {
    auto byte = [&](size_t k) -> unsigned {
        return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0u;
    };
    auto cont = [&](size_t k) { return (byte(k) & 0xc0) == 0x80; };
    unsigned b0 = byte(0);
    if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
    if (b0 >= 0xe0 && b0 <= 0xef) {
        unsigned b1 = byte(1);
        if (!cont(1) || !cont(2)) return 0;
        if (b0 == 0xe0 && b1 < 0xa0) return 0;  // overlong
        if (b0 == 0xed && b1 > 0x9f) return 0;  // UTF-16 surrogate
        return 3;
    }
    if (b0 >= 0xf0 && b0 <= 0xf4) {
        unsigned b1 = byte(1);
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (b0 == 0xf0 && b1 < 0x90) return 0;  // overlong
        if (b0 == 0xf4 && b1 > 0x8f) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

// The inside of a JSON string (no quotes).
void append_escaped(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < text.size();) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x80) {
            size_t n = utf8_sequence(text, i);
            if (n == 0) {
                out += "\\ufffd";
                ++i;
            } else {
                out.append(text.substr(i, n));
                i += n;
            }
            continue;
        }
        ++i;
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    out += "\\u00";
                    out += kHex[c >> 4];
                    out += kHex[c & 0xf];
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
}

bool is_bare(std::string_view text) {
    if (text.empty()) return false;
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f || c == '=' || c == '"') return false;
    }
    return true;
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    append_escaped(out, text);
    out += '"';
}

void append_logfmt_value(std::string& out, std::string_view text) {
    if (is_bare(text)) {
        out.append(text);
        return;
    }
    append_json_string(out, text);
}

std::string_view format_timestamp(const timespec& realtime, char (&text)[40]) {
    tm utc{};
    gmtime_r(&realtime.tv_sec, &utc);
    size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
    int m = snprintf(text + n, sizeof(text) - n, ".%03ldZ", realtime.tv_nsec / 1000000);
    if (m > 0) n += static_cast<size_t>(m);
    return {text, n < sizeof(text) ? n : sizeof(text) - 1};
}

void append_timestamp(std::string& out, const timespec& realtime) {
    char text[40];
    out.append(format_timestamp(realtime, text));
}

FieldWriter::FieldWriter(std::string& out, LogFormat format) : out_(out), format_(format) {
    if (format_ == LogFormat::kJson) out_ += '{';
}

void FieldWriter::key(std::string_view name) {
    if (format_ == LogFormat::kJson) {
        if (!first_) out_ += ',';
        out_ += '"';
        out_.append(name);
        out_ += "\":";
    } else {
        if (!first_) out_ += ' ';
        out_.append(name);
        out_ += '=';
    }
    first_ = false;
}

void FieldWriter::text(std::string_view name, std::string_view value) {
    key(name);
    if (format_ == LogFormat::kJson)
        append_json_string(out_, value);
    else
        append_logfmt_value(out_, value);
}

void FieldWriter::number(std::string_view name, uint64_t value) {
    key(name);
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), value);
    (void)ec;  // 24 digits hold any uint64_t
    out_.append(digits, end);
}

void FieldWriter::millis(std::string_view name, uint64_t ns) {
    key(name);
    uint64_t us = ns / 1000;
    char digits[32];
    auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), us / 1000);
    (void)ec;
    out_.append(digits, end);
    unsigned frac = static_cast<unsigned>(us % 1000);
    out_ += '.';
    out_ += static_cast<char>('0' + frac / 100);
    out_ += static_cast<char>('0' + frac / 10 % 10);
    out_ += static_cast<char>('0' + frac % 10);
}

void FieldWriter::none(std::string_view name) {
    key(name);
    out_ += format_ == LogFormat::kJson ? "null" : "-";
}

void FieldWriter::end() {
    if (format_ == LogFormat::kJson) out_ += '}';
    out_ += '\n';
}

}  // namespace ringlb::common
