#include "proxy/frontend/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

using ringlb::common::Address;
using ringlb::common::make_unix_address;
using ringlb::common::parse_address;
using namespace ringlb::frontend;

std::string from_hex(std::string_view hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return out;
}

Address address(const char* text) {
    std::optional<Address> a = parse_address(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(Address());
}

Address unix_address(std::string_view path) {
    std::optional<Address> a = make_unix_address(path);
    EXPECT_TRUE(a);
    return a.value_or(Address());
}

ParseStatus parse(std::string_view data, ProxyHeader* out = nullptr, std::string* error = nullptr,
                  ProxyAccept accept = ProxyAccept::kAny) {
    ProxyHeader scratch;
    return parse_proxy_header(data, accept, out ? out : &scratch, error);
}

// A v2 header from its parts: 0x2<command>, the family byte, the length field, the bytes after.
std::string v2(uint8_t version_command, uint8_t family, size_t length, std::string_view body) {
    std::string out = from_hex("0d0a0d0a000d0a515549540a");
    out.push_back(static_cast<char>(version_command));
    out.push_back(static_cast<char>(family));
    out.push_back(static_cast<char>(length >> 8));
    out.push_back(static_cast<char>(length & 0xff));
    out.append(body);
    return out;
}

std::string tlv(uint8_t type, std::string_view value) {
    std::string out(1, static_cast<char>(type));
    out.push_back(static_cast<char>(value.size() >> 8));
    out.push_back(static_cast<char>(value.size() & 0xff));
    out.append(value);
    return out;
}

// Every strict prefix of a header is kNeedMore, in each mode that takes its version.
void expect_prefixes_need_more(const std::string& header) {
    ProxyAccept own = header[0] == 'P' ? ProxyAccept::kV1 : ProxyAccept::kV2;
    for (ProxyAccept accept : {own, ProxyAccept::kAny}) {
        for (size_t n = 0; n < header.size(); ++n) {
            ProxyHeader out;
            std::string error;
            EXPECT_EQ(parse(header.substr(0, n), &out, &error, accept), ParseStatus::kNeedMore)
                << "prefix of " << n << " bytes: " << error;
        }
    }
}

// What HAProxy 2.6 (Debian's haproxy 2.6.12) sent with send-proxy and send-proxy-v2, captured
// once (the same bytes are the seed corpus, tests/fuzz/corpus/proxy_protocol/haproxy-*), each
// followed by the client's "hello".
struct Capture {
    const char* name;
    const char* hex;
    size_t length;
    bool local;
    int family;
    const char* source;
    const char* destination;
    std::vector<ProxyTlv> tlvs;
};

std::vector<Capture> haproxy_captures() {
    return {
        {"v1-tcp4",
         "50524f58592054435034203132372e302e302e31203132372e302e302e312034343832342031393130310d0a"
         "68656c6c6f",
         44,
         false,
         AF_INET,
         "127.0.0.1:44824",
         "127.0.0.1:19101",
         {}},
        {"v1-tcp6",
         "50524f58592054435036203a3a31203a3a312035383338362031393130330d0a68656c6c6f",
         32,
         false,
         AF_INET6,
         "[::1]:58386",
         "[::1]:19103",
         {}},
        {"v1-tcp6-v4mapped",
         "50524f58592054435036203a3a666666663a3132372e302e302e31203a3a666666663a3132372e302e302e31"
         "2035353031382031393130350d0a68656c6c6f",
         58,
         false,
         AF_INET6,
         "[::ffff:127.0.0.1]:55018",
         "[::ffff:127.0.0.1]:19105",
         {}},
        {"v2-tcp4",
         "0d0a0d0a000d0a515549540a2111000c7f0000017f000001dd044a9e68656c6c6f",
         28,
         false,
         AF_INET,
         "127.0.0.1:56580",
         "127.0.0.1:19102",
         {}},
        {"v2-tcp6",
         "0d0a0d0a000d0a515549540a21210024000000000000000000000000000000010000000000000000000000000"
         "0000001d3d24aa068656c6c6f",
         52,
         false,
         AF_INET6,
         "[::1]:54226",
         "[::1]:19104",
         {}},
        {"v2-tcp6-v4mapped",
         "0d0a0d0a000d0a515549540a2121002400000000000000000000ffff7f00000100000000000000000000ffff7"
         "f000001bd804aa268656c6c6f",
         52,
         false,
         AF_INET6,
         "[::ffff:127.0.0.1]:48512",
         "[::ffff:127.0.0.1]:19106",
         {}},
        // proxy-v2-options crc32c,unique-id (the unique id empty: tcp mode has none).
        {"v2-crc32c-unique-id",
         "0d0a0d0a000d0a515549540a211100167f0000017f000001dc364aa303000451e3bbbe05000068656c6c6f",
         38,
         false,
         AF_INET,
         "127.0.0.1:56374",
         "127.0.0.1:19107",
         {{0x03, from_hex("51e3bbbe")}, {0x05, ""}}},
        // proxy-v2-options authority behind a TLS bind, the client's SNI app.example.test.
        {"v2-authority",
         "0d0a0d0a000d0a515549540a2111001f7f0000017f000001d6664b010200106170702e6578616d706c652e74"
         "65737468656c6c6f",
         47,
         false,
         AF_INET,
         "127.0.0.1:54886",
         "127.0.0.1:19201",
         {{0x02, "app.example.test"}}},
        // A health check with check-send-proxy: LOCAL, family UNSPEC, no addresses.
        {"v2-local-check",
         "0d0a0d0a000d0a515549540a20000000",
         16,
         true,
         AF_UNSPEC,
         nullptr,
         nullptr,
         {}},
    };
}

TEST(ProxyProtocolTest, ParsesWhatHaproxySends) {
    for (const Capture& c : haproxy_captures()) {
        SCOPED_TRACE(c.name);
        std::string bytes = from_hex(c.hex);
        ProxyHeader header;
        std::string error;
        ASSERT_EQ(parse(bytes, &header, &error), ParseStatus::kDone) << error;
        EXPECT_EQ(header.version, c.name[1] - '0');
        EXPECT_EQ(header.length, c.length);
        EXPECT_EQ(bytes.substr(c.length), c.local ? "" : "hello");
        EXPECT_EQ(header.local, c.local);
        EXPECT_EQ(header.family, c.family);
        if (c.source) {
            EXPECT_EQ(header.source, address(c.source));
            EXPECT_EQ(header.destination, address(c.destination));
        }
        EXPECT_EQ(header.tlvs, c.tlvs);
        expect_prefixes_need_more(bytes.substr(0, c.length));
    }
}

TEST(ProxyProtocolTest, EncodesLikeHaproxy) {
    auto header_of = [](const char* name) {
        for (const Capture& c : haproxy_captures())
            if (std::string_view(c.name) == name) return from_hex(c.hex).substr(0, c.length);
        ADD_FAILURE() << name;
        return std::string();
    };
    Address s4 = address("127.0.0.1:44824"), d4 = address("127.0.0.1:19101");
    EXPECT_EQ(encode_proxy_v1(&s4, &d4), header_of("v1-tcp4"));
    Address s6 = address("[::1]:58386"), d6 = address("[::1]:19103");
    EXPECT_EQ(encode_proxy_v1(&s6, &d6), header_of("v1-tcp6"));
    s4 = address("127.0.0.1:56580"), d4 = address("127.0.0.1:19102");
    EXPECT_EQ(encode_proxy_v2(&s4, &d4), header_of("v2-tcp4"));
    s6 = address("[::1]:54226"), d6 = address("[::1]:19104");
    EXPECT_EQ(encode_proxy_v2(&s6, &d6), header_of("v2-tcp6"));
    s4 = address("127.0.0.1:54886"), d4 = address("127.0.0.1:19201");
    EXPECT_EQ(encode_proxy_v2(&s4, &d4, "app.example.test"), header_of("v2-authority"));
    EXPECT_EQ(encode_proxy_v2(nullptr, nullptr), header_of("v2-local-check"));

    // Where we differ on purpose: HAProxy sends a dual-stack listener's IPv4 client as
    // "TCP6 ::ffff:127.0.0.1" (captures v1-tcp6-v4mapped, v2-tcp6-v4mapped); we send IPv4.
    Address sm = address("[::ffff:127.0.0.1]:55018"), dm = address("[::ffff:127.0.0.1]:19105");
    EXPECT_EQ(encode_proxy_v1(&sm, &dm), "PROXY TCP4 127.0.0.1 127.0.0.1 55018 19105\r\n");
    sm = address("[::ffff:127.0.0.1]:56580"), dm = address("[::ffff:127.0.0.1]:19102");
    EXPECT_EQ(encode_proxy_v2(&sm, &dm), header_of("v2-tcp4"));
}

TEST(ProxyProtocolTest, EncodesEachFamilyPairing) {
    Address v4 = address("192.0.2.1:1"), v6 = address("[2001:db8::2]:2");
    Address mapped = address("[::ffff:198.51.100.3]:3");
    // IPv4 beside IPv6: HAProxy's choice, the IPv4 one mapped into IPv6.
    EXPECT_EQ(encode_proxy_v1(&v4, &v6), "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n");
    EXPECT_EQ(encode_proxy_v1(&mapped, &v6), "PROXY TCP6 ::ffff:198.51.100.3 2001:db8::2 3 2\r\n");
    EXPECT_EQ(encode_proxy_v1(&v4, &mapped), "PROXY TCP4 192.0.2.1 198.51.100.3 1 3\r\n");
    EXPECT_EQ(encode_proxy_v1(nullptr, &v4), "PROXY UNKNOWN\r\n");
    EXPECT_EQ(encode_proxy_v1(&v4, nullptr), "PROXY UNKNOWN\r\n");
    Address path = unix_address("/run/app.sock");
    EXPECT_EQ(encode_proxy_v1(&path, &path), "PROXY UNKNOWN\r\n");
    EXPECT_EQ(encode_proxy_v1(&v4, &path), "PROXY UNKNOWN\r\n");

    std::string local = from_hex("0d0a0d0a000d0a515549540a20000000");
    EXPECT_EQ(encode_proxy_v2(&v4, &path), local);
    EXPECT_EQ(encode_proxy_v2(nullptr, &v4), local);
    EXPECT_EQ(encode_proxy_v2(&v4, &v6), v2(0x21, 0x21, 36,
                                            from_hex("00000000000000000000ffffc0000201"
                                                     "20010db8000000000000000000000002"
                                                     "00010002")));
    std::string unix_header = encode_proxy_v2(&path, &path);
    std::string field = "/run/app.sock" + std::string(108 - 13, '\0');
    EXPECT_EQ(unix_header, v2(0x21, 0x31, 216, field + field));
    // The AUTHORITY TLV rides on LOCAL too; one longer than HAProxy takes is left out.
    EXPECT_EQ(encode_proxy_v2(nullptr, nullptr, "db.internal"),
              v2(0x20, 0x00, 14, tlv(0x02, "db.internal")));
    EXPECT_EQ(encode_proxy_v2(&v4, &v4, std::string(256, 'a')).size(), 16u + 12u);
    EXPECT_EQ(encode_proxy_v2(&v4, &v4, std::string(255, 'a')).size(), 16u + 12u + 3u + 255u);
}

// Every encoder output parses back to the addresses sent, at the encoded length, from every
// strict prefix kNeedMore, with bytes after it ignored, and fed one byte at a time.
TEST(ProxyProtocolTest, EncodedHeadersParseBack) {
    struct Pair {
        std::optional<Address> source, destination;
        int family;  // what is sent: AF_UNSPEC for UNKNOWN / LOCAL
        std::optional<Address> sent_source, sent_destination;
        bool v1_unknown;  // v1 has no AF_UNIX
    };
    Address v4a = address("10.1.2.3:40000"), v4b = address("192.0.2.80:443");
    Address v6a = address("[2001:db8::1]:65535"), v6b = address("[fe80::1:2:3:4]:0");
    Address m4a = address("[::ffff:10.1.2.3]:40000"), m4b = address("[::ffff:192.0.2.80]:443");
    Address m6a = address("[::ffff:10.1.2.3]:40000");
    Address path = unix_address("/run/ringlb/front.sock"), unnamed = unix_address("");
    Address abstract = unix_address(std::string_view("\0ringlb\0x", 9));
    Address longest = unix_address(std::string(108, 'p'));
    const std::vector<Pair> pairs = {
        {v4a, v4b, AF_INET, v4a, v4b, false},
        {v6a, v6b, AF_INET6, v6a, v6b, false},
        {m4a, m4b, AF_INET, v4a, v4b, false},
        {m4a, v4b, AF_INET, v4a, v4b, false},
        {m6a, v6a, AF_INET6, m6a, v6a, false},
        {v4a, v6b, AF_INET6, m6a, v6b, false},
        {unnamed, path, AF_UNIX, unnamed, path, true},
        {abstract, longest, AF_UNIX, abstract, longest, true},
        {std::nullopt, std::nullopt, AF_UNSPEC, std::nullopt, std::nullopt, true},
        {v4a, std::nullopt, AF_UNSPEC, std::nullopt, std::nullopt, true},
    };
    for (const Pair& p : pairs) {
        const Address* s = p.source ? &*p.source : nullptr;
        const Address* d = p.destination ? &*p.destination : nullptr;
        SCOPED_TRACE((s ? s->to_string() : "null") + " -> " + (d ? d->to_string() : "null"));
        for (int version : {1, 2}) {
            SCOPED_TRACE(version);
            std::string header = version == 1 ? encode_proxy_v1(s, d) : encode_proxy_v2(s, d, "x");
            bool local = p.family == AF_UNSPEC || (version == 1 && p.v1_unknown);
            for (const std::string& after : {std::string(), std::string("GET / HTTP/1.1\r\n"),
                                             std::string("\r\n\r\n\0PROXY ", 10)}) {
                ProxyHeader out;
                std::string error;
                ASSERT_EQ(parse(header + after, &out, &error), ParseStatus::kDone) << error;
                EXPECT_EQ(out.version, version);
                EXPECT_EQ(out.length, header.size());
                EXPECT_EQ(out.local, local);
                EXPECT_EQ(out.family, local ? AF_UNSPEC : p.family);
                if (!local) {
                    EXPECT_EQ(out.source, *p.sent_source) << out.source.to_string();
                    EXPECT_EQ(out.destination, *p.sent_destination);
                }
                if (version == 2) {
                    EXPECT_EQ(out.tlvs, (std::vector<ProxyTlv>{{kProxyTlvAuthority, "x"}}));
                }
            }
            expect_prefixes_need_more(header);

            // As a session would see it: the buffer grows by one byte per read.
            std::string stream = header + "payload";
            std::string buffer;
            size_t done_at = 0;
            for (char c : stream) {
                buffer.push_back(c);
                ProxyHeader out;
                ParseStatus status = parse(buffer, &out);
                ASSERT_NE(status, ParseStatus::kInvalid) << buffer.size();
                if (status == ParseStatus::kDone) {
                    done_at = buffer.size();
                    EXPECT_EQ(out.length, header.size());
                    break;
                }
            }
            EXPECT_EQ(done_at, header.size());
        }
    }
}

TEST(ProxyProtocolTest, UnixFieldsFollowGetsocknameLengths) {
    // A path padded with anything after its NUL, an abstract name padded with zeros.
    std::string source = "/tmp/a.sock" + std::string(1, '\0') + "junk";
    source.append(108 - source.size(), 'z');
    std::string destination = std::string(1, '\0') + "name";
    destination.append(108 - destination.size(), '\0');
    ProxyHeader out;
    ASSERT_EQ(parse(v2(0x21, 0x31, 216, source + destination), &out), ParseStatus::kDone);
    EXPECT_EQ(out.family, AF_UNIX);
    EXPECT_EQ(out.source, unix_address("/tmp/a.sock"));
    EXPECT_EQ(out.source.length, 2u + 11u + 1u);
    EXPECT_EQ(out.source.to_string(), "unix:/tmp/a.sock");
    EXPECT_EQ(out.destination, unix_address(std::string_view("\0name", 5)));
    EXPECT_EQ(out.destination.length, 2u + 5u);
    EXPECT_EQ(out.destination.to_string(), "unix:@name");
    // A 108-byte path has no NUL; an all-zero field is an unnamed socket.
    ASSERT_EQ(parse(v2(0x21, 0x31, 216, std::string(108, 'p') + std::string(108, '\0')), &out),
              ParseStatus::kDone);
    EXPECT_EQ(out.source.length, 2u + 108u);
    EXPECT_EQ(out.destination.length, 2u);
    EXPECT_EQ(out.destination.to_string(), "unix:");
}

TEST(ProxyProtocolTest, V1UnknownIgnoresTheRestOfItsLine) {
    for (std::string line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
                             "PROXY UNKNOWN \x01\xff\n junk \r\n"}) {
        ProxyHeader out;
        std::string error;
        ASSERT_EQ(parse(line + "data", &out, &error), ParseStatus::kDone) << error;
        EXPECT_EQ(out.version, 1);
        EXPECT_TRUE(out.local);
        EXPECT_EQ(out.family, AF_UNSPEC);
        EXPECT_EQ(out.length, line.size());
        expect_prefixes_need_more(line);
    }
    // The longest line the spec allows, 107 bytes with the CRLF.
    std::string longest = "PROXY UNKNOWN " + std::string(91, 'a') + "\r\n";
    ASSERT_EQ(longest.size(), kMaxProxyV1Length);
    EXPECT_EQ(parse(longest), ParseStatus::kDone);
    std::string v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    std::string tcp6 = "PROXY TCP6 " + v6 + " " + v6 + " 65535 65535\r\n";
    ASSERT_EQ(tcp6.size(), 104u);
    EXPECT_EQ(parse(tcp6), ParseStatus::kDone);
}

TEST(ProxyProtocolTest, V2LocalAndUnspecSkipTheirAddressBlock) {
    // LOCAL with an IPv4 block: local, the block skipped, the TLV after it kept.
    std::string block = from_hex("c0000201c000020200500051");
    ProxyHeader out;
    ASSERT_EQ(parse(v2(0x20, 0x11, 12 + 5, block + tlv(0xE0, "ab")), &out), ParseStatus::kDone);
    EXPECT_TRUE(out.local);
    EXPECT_EQ(out.family, AF_UNSPEC);
    EXPECT_EQ(out.source, Address());
    EXPECT_EQ(out.tlvs, (std::vector<ProxyTlv>{{0xE0, "ab"}}));
    // LOCAL ignores the family, so a datagram one is taken there.
    EXPECT_EQ(parse(v2(0x20, 0x12, 12, block), &out), ParseStatus::kDone);
    EXPECT_TRUE(out.local);
    // PROXY with the UNSPEC family: local, TLVs right after the fixed part.
    ASSERT_EQ(parse(v2(0x21, 0x00, 4, tlv(0x04, "z")), &out), ParseStatus::kDone);
    EXPECT_TRUE(out.local);
    EXPECT_EQ(out.tlvs, (std::vector<ProxyTlv>{{0x04, "z"}}));
}

TEST(ProxyProtocolTest, V2KeepsTlvsVerbatim) {
    // An SSL TLV with its sub-TLVs, a custom type, an empty NOOP, a value with NUL bytes.
    std::string ssl = from_hex("0100000000") + tlv(0x21, "TLSv1.3") + tlv(0x22, "client.example");
    std::string binary("\0\x01\xff\0", 4);
    std::string tlvs = tlv(0x20, ssl) + tlv(0xE5, binary) + tlv(0x04, "") + tlv(0x30, "ns1");
    std::string header =
        v2(0x21, 0x11, 12 + tlvs.size(), from_hex("0a0000010a000002c3500050") + tlvs);
    ProxyHeader out;
    ASSERT_EQ(parse(header + "rest", &out), ParseStatus::kDone);
    EXPECT_EQ(out.length, header.size());
    EXPECT_EQ(out.source, address("10.0.0.1:50000"));
    EXPECT_EQ(out.destination, address("10.0.0.2:80"));
    EXPECT_EQ(out.tlvs,
              (std::vector<ProxyTlv>{{0x20, ssl}, {0xE5, binary}, {0x04, ""}, {0x30, "ns1"}}));
    expect_prefixes_need_more(header);
}

TEST(ProxyProtocolTest, V2LengthCap) {
    std::string block = from_hex("0a0000010a000002c3500050");
    // Exactly at the cap: the addresses and one NOOP TLV filling the rest.
    std::string at_cap = v2(0x21, 0x11, kMaxProxyV2Length,
                            block + tlv(0x04, std::string(kMaxProxyV2Length - 12 - 3, '.')));
    ProxyHeader out;
    ASSERT_EQ(parse(at_cap, &out), ParseStatus::kDone);
    EXPECT_EQ(out.length, 16 + kMaxProxyV2Length);
    // One above: refused from the length field, without waiting for the bytes.
    std::string error;
    EXPECT_EQ(parse(v2(0x21, 0x11, kMaxProxyV2Length + 1, ""), nullptr, &error),
              ParseStatus::kInvalid);
    EXPECT_EQ(error, "PROXY v2 header too long");
    EXPECT_EQ(parse(v2(0x21, 0x11, 0xffff, ""), nullptr, &error), ParseStatus::kInvalid);
}

TEST(ProxyProtocolTest, V2ChecksCrc32c) {
    std::string capture =
        from_hex("0d0a0d0a000d0a515549540a211100167f0000017f000001dc364aa303000451e3bbbe050000");
    ASSERT_EQ(parse(capture), ParseStatus::kDone);
    // Any changed byte, in the checksum or elsewhere, fails the check.
    for (size_t i : {16, 24, 31, 34, 35}) {
        std::string changed = capture;
        changed[i] = static_cast<char>(changed[i] ^ 0x01);
        std::string error;
        EXPECT_EQ(parse(changed, nullptr, &error), ParseStatus::kInvalid) << i;
        EXPECT_EQ(error, "PROXY v2 CRC32C mismatch") << i;
    }
}

// Malformed input is refused at its first impossible byte: every prefix of `good` still needs
// more, and good + bad[0] is already invalid (good + bad too, with `reason` in the error).
struct Malformed {
    std::string good;
    std::string bad;
    const char* reason;
    ProxyAccept accept = ProxyAccept::kAny;
};

void expect_malformed(const Malformed& m) {
    SCOPED_TRACE(testing::PrintToString(m.good + m.bad));
    for (size_t n = 0; n <= m.good.size(); ++n) {
        std::string error;
        ASSERT_EQ(parse(m.good.substr(0, n), nullptr, &error, m.accept), ParseStatus::kNeedMore)
            << n << ": " << error;
    }
    std::string error;
    EXPECT_EQ(parse(m.good + m.bad.substr(0, 1), nullptr, &error, m.accept), ParseStatus::kInvalid);
    EXPECT_EQ(parse(m.good + m.bad, nullptr, &error, m.accept), ParseStatus::kInvalid);
    EXPECT_NE(error.find(m.reason), std::string::npos) << error;
}

TEST(ProxyProtocolTest, RefusesMalformedV1AtTheFirstBadByte) {
    const std::string v6 = "0000:0000:0000:0000:0000:0000:255.255.255.255";
    const std::vector<Malformed> cases = {
        {"", "GET / HTTP/1.1\r\n", "not a PROXY protocol header"},
        {"", "\x16\x03\x01", "not a PROXY protocol header"},
        {"PROX", "Z TCP4", "not a PROXY protocol header"},
        {"PROXY", "\tTCP4", "not a PROXY protocol header"},
        {"PROXY ", " TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"},
        {"PROXY ", "tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"},
        {"PROXY TCP", "5 1.2.3.4", "protocol"},
        {"PROXY TCP4", "\r\n", "protocol"},
        {"PROXY UNKNOWN", "X\r\n", "protocol"},
        {"PROXY UNKNOWN\r", "\r\n", "CRLF"},
        {"PROXY UNKNOWN abc\r", "X", "CRLF"},
        {"PROXY UNKNOWN " + std::string(91, 'a'), "a\r\n", "longer than 107"},
        {"PROXY UNKNOWN " + std::string(91, 'a') + "\r", "\r\n", "CRLF"},
        // IPv4 addresses: exactly four numbers, 0-255, no leading zero, single dots.
        {"PROXY TCP4 ", " 1.2.3.4 5.6.7.8 1 2\r\n", "incomplete address"},
        {"PROXY TCP4 0", "1.2.3.4 5.6.7.8 1 2\r\n", "IPv4"},
        {"PROXY TCP4 25", "6.1.1.1 5.6.7.8 1 2\r\n", "IPv4"},
        {"PROXY TCP4 1.", ".3.4 5.6.7.8 1 2\r\n", "IPv4"},
        {"PROXY TCP4 1.2.3.4", ".5 5.6.7.8 1 2\r\n", "IPv4"},
        {"PROXY TCP4 1.2.3", " 5.6.7.8 1 2\r\n", "incomplete address"},
        {"PROXY TCP4 1.2.3.", " 5.6.7.8 1 2\r\n", "incomplete address"},
        {"PROXY TCP4 ", "::1 ::1 1 2\r\n", "IPv4"},
        {"PROXY TCP4 1.2.3.4 ", " 5.6.7.8 1 2\r\n", "incomplete address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8", "\r\n", "IPv4"},
        // IPv6 addresses, as inet_pton reads them.
        {"PROXY TCP6 1", ".2.3.4 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 :", "1 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 ::", ": ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1::2:", ":3 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1234", "5:: ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1:2:3:4:5:6:7:8", ":9 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1:2:3:4:5:6:7::", "8 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1::2:3:4:5:6:7", ".0.0.1 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1:2:3:4:5", ".0.0.1 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 ::ffff:1.2.3.4", ":: ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 ::ffff:01", ".2.3.4 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 ::", "g ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 fe80::1", "%eth0 ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 ", "[::1] ::1 1 2\r\n", "IPv6"},
        {"PROXY TCP6 1:2", " ::1 1 2\r\n", "incomplete address"},
        {"PROXY TCP6 ::1:", " ::1 1 2\r\n", "incomplete address"},
        {"PROXY TCP6 ::1 ::1", "\r\n", "IPv6"},
        // Ports: 0-65535, decimal, no sign, no leading zero, then one space or the CRLF.
        {"PROXY TCP4 1.2.3.4 5.6.7.8 ", "+1 2\r\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 ", "-1 2\r\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 0", "1 2\r\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 6553", "6 2\r\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65535 9999", "9\r\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 ", " 1 2\r\n", "missing port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 ", "\r\n", "missing port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", " \r\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "\n", "port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "\r\n", "CRLF"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "X", "CRLF"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1", "\r\n", "port"},
        // The 107-byte limit, from the first byte that makes it unreachable: 101 bytes are in,
        // the destination's last digit would leave no room for " 0 0\r\n".
        {"PROXY TCP6 " + v6 + " " + v6.substr(0, v6.size() - 1), "5 1 2\r\n", "107"},
        // The other version than the one configured.
        {"", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v2 is expected", ProxyAccept::kV2},
        {"", from_hex("0d0a0d0a000d0a515549540a20000000"), "v1 is expected", ProxyAccept::kV1},
    };
    for (const Malformed& m : cases) expect_malformed(m);
}

TEST(ProxyProtocolTest, RefusesMalformedV2AtTheFirstBadByte) {
    const std::string signature = from_hex("0d0a0d0a000d0a515549540a");
    const std::string block = from_hex("0a0000010a000002c3500050");
    const std::vector<Malformed> cases = {
        {signature.substr(0, 7), "q" + signature.substr(8), "not a PROXY protocol header"},
        {signature.substr(0, 4), std::string("\x01", 1), "not a PROXY protocol header"},
        {signature.substr(0, 1), "\r", "not a PROXY protocol header"},
        {signature, "\x11", "version"},
        {signature, "\x31", "version"},
        {signature, "\x22", "command"},
        {signature, "\x2f", "command"},
        {signature + "\x21", "\x41", "family"},
        {signature + "\x21", "\x13", "family or protocol"},
        {signature + "\x21", "\x01", "family or protocol"},
        {signature + "\x21", "\x10", "family or protocol"},
        {signature + "\x20", "\x03", "family or protocol"},
        {signature + "\x21", "\x12", "datagram"},
        {signature + "\x21", "\x22", "datagram"},
        {signature + "\x21", "\x32", "datagram"},
        {signature + "\x21\x11\x10", std::string("\x01", 1), "too long"},
        {signature + "\x21\x11", "\xff\xff", "too long"},
        {signature + "\x21\x11", "\x11", "too long"},
        {signature + std::string("\x21\x11\x00", 3), "\x0b", "shorter than its family"},
        {signature + std::string("\x21\x21\x00", 3), "\x23", "shorter than its family"},
        {signature + std::string("\x21\x31\x00", 3), "\xd7", "shorter than its family"},
        {signature + std::string("\x20\x11\x00", 3), "\x0b", "shorter than its family"},
        // TLVs: a header that cannot fit the rest, a value running past the end, known from the
        // TLV's header on; a CRC32C TLV of the wrong size.
        {signature + std::string("\x21\x11\x00", 3), "\x0d" + block + "ab", "truncated"},
        {signature + std::string("\x21\x11\x00", 3), "\x0e" + block + "abc", "truncated"},
        {v2(0x21, 0x11, 12 + 5, block + std::string("\xe0\x00", 2)), "\x03", "overruns"},
        {v2(0x21, 0x11, 12 + 3 + 4, block + tlv(0x04, "") + std::string("\xe0\x00", 2)), "\x02zz",
         "overruns"},
        {v2(0x21, 0x11, 12 + 3 + 3, block + std::string("\x03\x00", 2)), "\x03", "not 4 bytes"},
    };
    for (const Malformed& m : cases) expect_malformed(m);
}

// The v1 address recognisers against inet_pton itself, over every string of up to 8 characters
// from a small alphabet: a field is complete exactly when inet_pton takes it; a partial field is
// kNeedMore exactly when some completion exists (every prefix of a valid one is, and each one
// kept has a short completion, the shortest the recognisers count for the 107-byte limit).
void check_address_texts(int family, std::string_view alphabet, size_t max_length) {
    const std::string keyword = family == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ";
    const std::string rest = family == AF_INET ? " 1.2.3.4 1 2\r\n" : " ::1 1 2\r\n";
    const std::vector<std::string> completions = {"",     ":",      "::",  "0",     ".0",
                                                  ".0.0", ".0.0.0", "0.0", "0.0.0", "0.0.0.0"};
    auto valid = [&](const std::string& text) {
        unsigned char bytes[16];
        return inet_pton(family, text.c_str(), bytes) == 1;
    };
    std::vector<std::string> texts = {""};
    for (size_t begin = 0; begin < texts.size(); ++begin) {
        if (texts[begin].size() == max_length) continue;
        for (char c : alphabet) texts.push_back(texts[begin] + c);
    }
    std::set<std::string> prefixes_of_valid;
    for (const std::string& text : texts) {
        if (!valid(text)) continue;
        for (size_t n = 0; n <= text.size(); ++n) prefixes_of_valid.insert(text.substr(0, n));
    }
    size_t complete = 0;
    for (const std::string& text : texts) {
        ParseStatus whole = parse(keyword + text + rest);
        ASSERT_EQ(whole == ParseStatus::kDone, valid(text)) << text;
        complete += whole == ParseStatus::kDone;
        ParseStatus partial = parse(keyword + text);
        if (prefixes_of_valid.count(text)) {
            ASSERT_EQ(partial, ParseStatus::kNeedMore) << text;
        }
        if (partial == ParseStatus::kNeedMore) {
            bool completes = false;
            for (const std::string& tail : completions) completes = completes || valid(text + tail);
            ASSERT_TRUE(completes) << text;
        } else {
            ASSERT_EQ(partial, ParseStatus::kInvalid) << text;
        }
    }
    EXPECT_GT(complete, 100u);  // the alphabet reaches well-formed addresses
}

TEST(ProxyProtocolTest, V1AddressesAgreeWithInetPton) {
    check_address_texts(AF_INET, "0125.", 8);
    check_address_texts(AF_INET6, "01f:.", 8);
    check_address_texts(AF_INET6, "0f:.", 9);  // reaches "::0.0.0.0"
}

}  // namespace
