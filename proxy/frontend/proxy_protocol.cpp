#include "proxy/frontend/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace ringlb::frontend {

using common::Address;

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::array<uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr size_t kV2FixedLength = 16;
constexpr uint8_t kV2CommandLocal = 0x0;
constexpr uint8_t kV2CommandProxy = 0x1;
constexpr size_t kUnixPathLength = sizeof(sockaddr_un::sun_path);  // 108, as the spec's fields
constexpr size_t kTlvHeaderLength = 3;

ParseStatus invalid(std::string* error, const char* reason) {
    if (error) *error = reason;
    return ParseStatus::kInvalid;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// The text recognisers below read one v1 field a character at a time and say, at every point,
// whether the characters so far can still begin a valid field (feed() false from the first one
// that cannot), whether they are one (complete()), and how many characters at least would make
// them one (min_rest(), for the 107-byte limit). So a partial line is refused at its first
// impossible byte, not at its CRLF. They follow the grammar inet_pton(3) reads, checked
// against it in the unit tests.

// A decimal IPv4 address: exactly 4 numbers 0-255 without leading zeros (the spec forbids them:
// they would read as octal elsewhere), separated by single dots.
class Ipv4Text {
  public:
    bool feed(char c) {
        if (c == '.') {
            if (digits_ == 0 || part_ == 3) return false;
            ++part_;
            digits_ = 0;
            value_ = 0;
            return true;
        }
        if (!is_digit(c) || (digits_ == 1 && value_ == 0)) return false;
        value_ = value_ * 10 + (c - '0');
        ++digits_;
        return value_ <= 255;
    }
    bool complete() const { return part_ == 3 && digits_ > 0; }
    size_t min_rest() const { return (digits_ == 0 ? 1 : 0) + 2 * static_cast<size_t>(3 - part_); }

  private:
    int part_ = 0;
    int digits_ = 0;
    int value_ = 0;
};

// An IPv6 address as glibc's inet_pton reads it: 8 fields of 1-4 hex digits separated by ':',
// one "::" standing for at least one zero field, the last two fields possibly written as a dotted
// IPv4 address which then ends the text.
class Ipv6Text {
  public:
    bool feed(char c) {
        if (in_ipv4_) return ipv4_.feed(c);
        // Fields a complete address may still spell out: "::" stands for at least one.
        int limit = double_colon_ ? 7 : 8;
        if (c == ':') {
            if (token_ > 0) {  // ends a field; another one, or "::", must follow
                ++fields_;
                token_ = 0;
                colons_ = 1;
                return fields_ < limit;
            }
            if (colons_ == 1) {  // the second colon of "::" (fields_ < 8 already holds)
                if (double_colon_) return false;
                double_colon_ = true;
                colons_ = 2;
                return true;
            }
            if (fields_ == 0 && colons_ == 0) {  // a leading ':' must be doubled
                colons_ = 1;
                return true;
            }
            return false;  // ":::"
        }
        if (c == '.') {
            // A dotted IPv4 address fills the last two fields, so nothing can follow it: without
            // "::" six fields must precede it, with "::" at most five.
            if (token_ == 0 || !token_decimal_) return false;
            if (double_colon_ ? fields_ > 5 : fields_ != 6) return false;
            in_ipv4_ = true;
            return ipv4_.feed(c);
        }
        bool digit = is_digit(c);
        if (!digit && !((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
        if (colons_ == 1 && fields_ == 0) return false;  // ":1"
        if (token_ == 0) {                               // a new field
            if (fields_ + 1 > limit) return false;
            ipv4_ = Ipv4Text();
            token_decimal_ = true;
        }
        if (token_ == 4) return false;
        ++token_;
        colons_ = 0;
        // The field may yet turn out to be the first number of a dotted IPv4 address.
        token_decimal_ = token_decimal_ && digit && ipv4_.feed(c);
        return true;
    }
    bool complete() const {
        if (in_ipv4_) return ipv4_.complete();
        if (colons_ == 2) return true;
        if (token_ == 0) return false;  // empty, or a single ':' last
        return double_colon_ || fields_ + 1 == 8;
    }
    size_t min_rest() const {
        if (complete()) return 0;
        if (in_ipv4_) return ipv4_.min_rest();
        if (colons_ == 1) return 1;  // ':' (making "::") or a digit
        return 2;                    // "::"
    }

  private:
    int fields_ = 0;  // fields ended by ':'
    int token_ = 0;   // hex digits of the field being read
    int colons_ = 0;  // colons just read: 1 after a lone ':', 2 after "::"
    bool double_colon_ = false;
    bool token_decimal_ = false;
    bool in_ipv4_ = false;
    Ipv4Text ipv4_;  // the current field read as the start of a dotted address
};

// A TCP port, 0-65535 in decimal without leading zeros.
class PortText {
  public:
    bool feed(char c) {
        if (!is_digit(c) || (digits_ == 1 && value_ == 0)) return false;
        value_ = value_ * 10 + static_cast<uint32_t>(c - '0');
        ++digits_;
        return value_ <= 65535;
    }
    bool complete() const { return digits_ > 0; }
    size_t min_rest() const { return digits_ == 0 ? 1 : 0; }
    uint16_t value() const { return static_cast<uint16_t>(value_); }

  private:
    int digits_ = 0;
    uint32_t value_ = 0;
};

Address inet_address(int family, const void* bytes, uint16_t port_network_order) {
    Address out;
    if (family == AF_INET) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
        v4->sin_family = AF_INET;
        v4->sin_port = port_network_order;
        std::memcpy(&v4->sin_addr, bytes, 4);
        out.length = sizeof(sockaddr_in);
    } else {
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = port_network_order;
        std::memcpy(&v6->sin6_addr, bytes, 16);
        out.length = sizeof(sockaddr_in6);
    }
    return out;
}

// The fields of "PROXY TCP4 " / "PROXY TCP6 " lines after the keyword: reads them from
// line[start], which holds at most kMaxProxyV1Length bytes.
// At the end of a partial v1 line of `have` bytes: the fewest bytes that would complete it,
// `rest`, must still fit in the limit.
ParseStatus v1_need_more(size_t have, size_t rest, std::string* error) {
    if (have + rest > kMaxProxyV1Length)
        return invalid(error, "PROXY v1 line longer than 107 bytes");
    return ParseStatus::kNeedMore;
}

template <class AddressText>
ParseStatus parse_v1_tcp(std::string_view line, size_t start, int family, ProxyHeader* out,
                         std::string* error) {
    auto need_more = [&](size_t rest) { return v1_need_more(line.size(), rest, error); };
    const size_t min_address = AddressText().min_rest();
    size_t i = start;
    std::string_view texts[2];
    for (int which = 0; which < 2; ++which) {
        AddressText text;
        size_t begin = i;
        for (; i < line.size() && line[i] != ' '; ++i) {
            if (!text.feed(line[i]))
                return invalid(error, family == AF_INET ? "invalid IPv4 address in PROXY v1 line"
                                                        : "invalid IPv6 address in PROXY v1 line");
        }
        // Still to come: the rest of this address, " ", [the destination address, " "],
        // "0 0\r\n" at the least.
        if (i == line.size())
            return need_more(text.min_rest() + 1 + (which == 0 ? min_address + 1 : 0) + 5);
        if (!text.complete()) return invalid(error, "incomplete address in PROXY v1 line");
        texts[which] = line.substr(begin, i - begin);
        ++i;
    }
    PortText ports[2];
    for (int which = 0; which < 2; ++which) {
        const char end = which == 0 ? ' ' : '\r';
        for (; i < line.size() && line[i] != end; ++i) {
            if (!ports[which].feed(line[i])) return invalid(error, "invalid port in PROXY v1 line");
        }
        if (i == line.size())
            return need_more(ports[which].min_rest() + (which == 0 ? 1 + 1 : 0) + 2);
        if (!ports[which].complete()) return invalid(error, "missing port in PROXY v1 line");
        ++i;
    }
    if (i == line.size()) return need_more(1);
    if (line[i] != '\n') return invalid(error, "PROXY v1 line not ended by CRLF");

    // The recognisers accepted exactly what inet_pton reads; it turns the text into bytes.
    uint8_t bytes[2][16];
    for (int which = 0; which < 2; ++which) {
        char text[INET6_ADDRSTRLEN] = {};
        if (texts[which].size() >= sizeof(text))
            return invalid(error, "invalid address in PROXY v1 line");
        std::memcpy(text, texts[which].data(), texts[which].size());
        if (inet_pton(family, text, bytes[which]) != 1)
            return invalid(error, "invalid address in PROXY v1 line");
    }
    *out = ProxyHeader();
    out->version = 1;
    out->family = family;
    out->source = inet_address(family, bytes[0], htons(ports[0].value()));
    out->destination = inet_address(family, bytes[1], htons(ports[1].value()));
    out->length = i + 1;
    return ParseStatus::kDone;
}

ParseStatus parse_v1(std::string_view data, ProxyHeader* out, std::string* error) {
    // Nothing past the limit can be part of a valid line.
    std::string_view line = data.substr(0, kMaxProxyV1Length);
    size_t prefix = std::min(line.size(), kV1Prefix.size());
    if (line.substr(0, prefix) != kV1Prefix.substr(0, prefix))
        return invalid(error, "not a PROXY protocol header");
    if (line.size() <= kV1Prefix.size()) return ParseStatus::kNeedMore;

    std::string_view rest = line.substr(kV1Prefix.size());
    struct Keyword {
        std::string_view text;
        int family;
    };
    constexpr Keyword kKeywords[] = {
        {"TCP4 ", AF_INET}, {"TCP6 ", AF_INET6}, {"UNKNOWN", AF_UNSPEC}};
    for (const Keyword& keyword : kKeywords) {
        if (rest.size() < keyword.text.size()) {
            if (keyword.text.substr(0, rest.size()) == rest) return ParseStatus::kNeedMore;
            continue;
        }
        if (rest.substr(0, keyword.text.size()) != keyword.text) continue;
        size_t start = kV1Prefix.size() + keyword.text.size();
        if (keyword.family == AF_INET)
            return parse_v1_tcp<Ipv4Text>(line, start, AF_INET, out, error);
        if (keyword.family == AF_INET6)
            return parse_v1_tcp<Ipv6Text>(line, start, AF_INET6, out, error);
        // UNKNOWN: the spec has the receiver ignore the rest of the line, which ends at the
        // first CR; that CR must be followed by LF. After the keyword comes a space or the CR.
        if (line.size() > start && line[start] != ' ' && line[start] != '\r')
            return invalid(error, "invalid PROXY v1 protocol");
        size_t cr = line.find('\r', start);
        if (cr == std::string_view::npos) return v1_need_more(line.size(), 2, error);
        if (cr + 1 == line.size()) return v1_need_more(line.size(), 1, error);
        if (line[cr + 1] != '\n') return invalid(error, "PROXY v1 line not ended by CRLF");
        *out = ProxyHeader();
        out->version = 1;
        out->local = true;
        out->length = cr + 2;
        return ParseStatus::kDone;
    }
    return invalid(error, "invalid PROXY v1 protocol");
}

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as RFC 4960 appendix B and HAProxy's
// hash_crc32c compute it.
constexpr std::array<uint32_t, 256> kCrc32cTable = [] {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t crc = i;
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (crc & 1 ? 0x82F63B78u : 0);
        table[i] = crc;
    }
    return table;
}();

uint32_t crc32c_update(uint32_t crc, const uint8_t* data, size_t size) {
    for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

// The header's CRC32C with the 4-byte checksum value at `value_offset` taken as zeros.
uint32_t header_crc32c(std::span<const uint8_t> header, size_t value_offset) {
    static constexpr uint8_t kZeros[4] = {};
    uint32_t crc = 0xFFFFFFFFu;
    crc = crc32c_update(crc, header.data(), value_offset);
    crc = crc32c_update(crc, kZeros, sizeof(kZeros));
    crc = crc32c_update(crc, header.data() + value_offset + 4, header.size() - value_offset - 4);
    return ~crc;
}

uint16_t read_u16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// An AF_UNIX address from a 108-byte field: a path ends at its first NUL; an abstract name
// (leading NUL) at its last non-NUL byte, as a sender copying sun_path pads it with zeros; all
// zeros is an unnamed socket.
Address unix_address_from_field(const uint8_t* field) {
    const char* text = reinterpret_cast<const char*>(field);
    size_t size = 0;
    if (text[0] != '\0') {
        size = strnlen(text, kUnixPathLength);
    } else {
        size = kUnixPathLength;
        while (size > 0 && text[size - 1] == '\0') --size;
    }
    // Cannot fail: at most 108 bytes, and a path stops before its first NUL.
    return *common::make_unix_address(std::string_view(text, size));
}

ParseStatus parse_v2(std::span<const uint8_t> data, ProxyHeader* out, std::string* error) {
    size_t prefix = std::min(data.size(), kV2Signature.size());
    if (!std::equal(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(prefix),
                    kV2Signature.begin()))
        return invalid(error, "not a PROXY protocol header");
    if (data.size() <= 12) return ParseStatus::kNeedMore;
    if (data[12] >> 4 != 2) return invalid(error, "unsupported PROXY protocol version");
    const uint8_t command = data[12] & 0x0F;
    if (command != kV2CommandLocal && command != kV2CommandProxy)
        return invalid(error, "unknown PROXY v2 command");
    if (data.size() <= 13) return ParseStatus::kNeedMore;

    const uint8_t family_protocol = data[13];
    size_t address_length = 0;
    int family = AF_UNSPEC;
    switch (family_protocol) {
        case 0x00:
            break;
        case 0x11:
        case 0x12:
            family = AF_INET;
            address_length = 2 * 4 + 2 * 2;
            break;
        case 0x21:
        case 0x22:
            family = AF_INET6;
            address_length = 2 * 16 + 2 * 2;
            break;
        case 0x31:
        case 0x32:
            family = AF_UNIX;
            address_length = 2 * kUnixPathLength;
            break;
        default:
            return invalid(error, "unknown PROXY v2 address family or protocol");
    }
    if ((family_protocol & 0x0F) == 0x2 && command == kV2CommandProxy)
        return invalid(error, "PROXY v2 datagram connection (only streams are forwarded)");
    // The length's high byte alone can put it over the cap.
    if (data.size() > 14 && static_cast<size_t>(data[14]) << 8 > kMaxProxyV2Length)
        return invalid(error, "PROXY v2 header too long");
    if (data.size() < kV2FixedLength) return ParseStatus::kNeedMore;
    const size_t length = read_u16(&data[14]);
    if (length > kMaxProxyV2Length) return invalid(error, "PROXY v2 header too long");
    if (length < address_length)
        return invalid(error, "PROXY v2 address block shorter than its family needs");

    // TLVs must fill the rest exactly. Each is judged as soon as its own 3-byte header is in;
    // one that cannot fit is refused before its bytes arrive.
    const size_t end = kV2FixedLength + length;
    size_t offset = kV2FixedLength + address_length;
    while (offset < end) {
        if (end - offset < kTlvHeaderLength) return invalid(error, "truncated PROXY v2 TLV");
        if (data.size() < offset + kTlvHeaderLength) return ParseStatus::kNeedMore;
        const size_t value_length = read_u16(&data[offset + 1]);
        if (value_length > end - offset - kTlvHeaderLength)
            return invalid(error, "PROXY v2 TLV overruns the header");
        if (data[offset] == kProxyTlvCrc32c && value_length != 4)
            return invalid(error, "PROXY v2 CRC32C TLV is not 4 bytes");
        offset += kTlvHeaderLength + value_length;
    }
    if (data.size() < end) return ParseStatus::kNeedMore;

    // A CRC32C covers the whole header, so it is checked once all of it is in.
    std::span<const uint8_t> header = data.first(end);
    for (offset = kV2FixedLength + address_length; offset < end;) {
        const size_t value_length = read_u16(&header[offset + 1]);
        if (header[offset] == kProxyTlvCrc32c) {
            const size_t value = offset + kTlvHeaderLength;
            const uint32_t sent = static_cast<uint32_t>(header[value]) << 24 |
                                  static_cast<uint32_t>(header[value + 1]) << 16 |
                                  static_cast<uint32_t>(header[value + 2]) << 8 | header[value + 3];
            if (header_crc32c(header, value) != sent)
                return invalid(error, "PROXY v2 CRC32C mismatch");
        }
        offset += kTlvHeaderLength + value_length;
    }

    *out = ProxyHeader();
    out->version = 2;
    out->length = end;
    out->local = command == kV2CommandLocal || family == AF_UNSPEC;
    const uint8_t* block = &header[kV2FixedLength];
    if (!out->local) {
        out->family = family;
        if (family == AF_INET) {
            uint16_t ports[2];
            std::memcpy(ports, block + 8, 4);  // already in network byte order
            out->source = inet_address(AF_INET, block, ports[0]);
            out->destination = inet_address(AF_INET, block + 4, ports[1]);
        } else if (family == AF_INET6) {
            uint16_t ports[2];
            std::memcpy(ports, block + 32, 4);
            out->source = inet_address(AF_INET6, block, ports[0]);
            out->destination = inet_address(AF_INET6, block + 16, ports[1]);
        } else {
            out->source = unix_address_from_field(block);
            out->destination = unix_address_from_field(block + kUnixPathLength);
        }
    }
    for (offset = kV2FixedLength + address_length; offset < end;) {
        const size_t value_length = read_u16(&header[offset + 1]);
        const char* value = reinterpret_cast<const char*>(&header[offset + kTlvHeaderLength]);
        out->tlvs.push_back(ProxyTlv{header[offset], std::string(value, value_length)});
        offset += kTlvHeaderLength + value_length;
    }
    return ParseStatus::kDone;
}

// The addresses an encoder sends, both of one family: IPv4-mapped ones unmapped; an IPv4 one
// beside an IPv6 one mapped (as HAProxy does); AF_UNSPEC when either is missing or they do not
// pair (AF_UNIX with IP, or another family).
struct Pair {
    int family = AF_UNSPEC;
    Address source, destination;
};

Address mapped_ipv6(const Address& v4) {
    uint8_t bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const auto* in = reinterpret_cast<const sockaddr_in*>(&v4.storage);
    std::memcpy(bytes + 12, &in->sin_addr, 4);
    return inet_address(AF_INET6, bytes, in->sin_port);
}

Pair pair_of(const Address* source, const Address* destination) {
    Pair pair;
    if (!source || !destination) return pair;
    Address s = common::unmapped_ipv4(*source);
    Address d = common::unmapped_ipv4(*destination);
    auto is_ip = [](const Address& a) { return a.family() == AF_INET || a.family() == AF_INET6; };
    if (s.family() == AF_UNIX && d.family() == AF_UNIX) {
        pair.family = AF_UNIX;
    } else if (is_ip(s) && is_ip(d)) {
        pair.family = s.family() == AF_INET && d.family() == AF_INET ? AF_INET : AF_INET6;
        if (pair.family == AF_INET6) {
            if (s.family() == AF_INET) s = mapped_ipv6(s);
            if (d.family() == AF_INET) d = mapped_ipv6(d);
        }
    } else {
        return pair;
    }
    pair.source = s;
    pair.destination = d;
    return pair;
}

const void* ip_bytes(const Address& a) {
    if (a.family() == AF_INET) return &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr;
    return &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr;
}

uint16_t port_network_order(const Address& a) {
    if (a.family() == AF_INET) return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port;
    return reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port;
}

void append_unix_field(std::string* out, const Address& a) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&a.storage);
    constexpr size_t kPathOffset = offsetof(sockaddr_un, sun_path);
    size_t size = a.length > kPathOffset ? std::min(a.length - kPathOffset, kUnixPathLength) : 0;
    out->append(un->sun_path, size);
    out->append(kUnixPathLength - size, '\0');
}

}  // namespace

ParseStatus parse_proxy_header(std::span<const char> data, ProxyAccept accept, ProxyHeader* out,
                               std::string* error) {
    if (data.empty()) return ParseStatus::kNeedMore;
    if (data[0] == kV1Prefix[0]) {
        if (accept == ProxyAccept::kV2)
            return invalid(error, "PROXY v1 header where v2 is expected");
        return parse_v1(std::string_view(data.data(), data.size()), out, error);
    }
    if (data[0] == static_cast<char>(kV2Signature[0])) {
        if (accept == ProxyAccept::kV1)
            return invalid(error, "PROXY v2 header where v1 is expected");
        return parse_v2(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()), out,
                        error);
    }
    return invalid(error, "not a PROXY protocol header");
}

std::string encode_proxy_v1(const Address* source, const Address* destination) {
    Pair pair = pair_of(source, destination);
    if (pair.family != AF_INET && pair.family != AF_INET6) return "PROXY UNKNOWN\r\n";
    char texts[2][INET6_ADDRSTRLEN] = {};
    inet_ntop(pair.family, ip_bytes(pair.source), texts[0], sizeof(texts[0]));
    inet_ntop(pair.family, ip_bytes(pair.destination), texts[1], sizeof(texts[1]));
    std::string line(pair.family == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ");
    line.append(texts[0]).append(" ").append(texts[1]).append(" ");
    line.append(std::to_string(ntohs(port_network_order(pair.source)))).append(" ");
    line.append(std::to_string(ntohs(port_network_order(pair.destination)))).append("\r\n");
    return line;
}

std::string encode_proxy_v2(const Address* source, const Address* destination,
                            std::string_view authority) {
    Pair pair = pair_of(source, destination);
    std::string out(reinterpret_cast<const char*>(kV2Signature.data()), kV2Signature.size());
    out.reserve(kV2FixedLength + 2 * kUnixPathLength + kTlvHeaderLength + authority.size());
    const bool local = pair.family == AF_UNSPEC;
    out.push_back(static_cast<char>(0x20 | (local ? kV2CommandLocal : kV2CommandProxy)));
    out.push_back(static_cast<char>(pair.family == AF_INET    ? 0x11
                                    : pair.family == AF_INET6 ? 0x21
                                    : pair.family == AF_UNIX  ? 0x31
                                                              : 0x00));
    out.append(2, '\0');  // the length, set below
    if (pair.family == AF_INET || pair.family == AF_INET6) {
        const size_t size = pair.family == AF_INET ? 4 : 16;
        out.append(static_cast<const char*>(ip_bytes(pair.source)), size);
        out.append(static_cast<const char*>(ip_bytes(pair.destination)), size);
        uint16_t ports[2] = {port_network_order(pair.source), port_network_order(pair.destination)};
        out.append(reinterpret_cast<const char*>(ports), sizeof(ports));
    } else if (pair.family == AF_UNIX) {
        append_unix_field(&out, pair.source);
        append_unix_field(&out, pair.destination);
    }
    if (!authority.empty() && authority.size() <= kMaxProxyAuthorityLength) {
        out.push_back(static_cast<char>(kProxyTlvAuthority));
        out.push_back(static_cast<char>(authority.size() >> 8));
        out.push_back(static_cast<char>(authority.size() & 0xff));
        out.append(authority);
    }
    const size_t length = out.size() - kV2FixedLength;
    out[14] = static_cast<char>(length >> 8);
    out[15] = static_cast<char>(length & 0xff);
    return out;
}

}  // namespace ringlb::frontend
