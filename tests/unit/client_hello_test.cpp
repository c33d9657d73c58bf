// The ClientHello parser (proxy/frontend/client_hello.hpp) on real ClientHellos captured from
// openssl s_client, curl and Python's ssl module (tests/tools/capture_client_hello.py; the same
// bytes are the seed corpus in tests/fuzz/corpus/client_hello/), on those hellos framed again
// into other record sizes, and on hand-built ones broken one field at a time. Every case checks
// where the answer is decided: each shorter prefix must be kNeedMore, each longer one the same.

#include "proxy/frontend/client_hello.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace ringlb::frontend {
// Found by gtest through ADL: statuses print by name.
void PrintTo(HelloStatus status, std::ostream* os) {
    *os << hello_status_name(status);
}
}  // namespace ringlb::frontend

namespace {

using ringlb::frontend::ClientHelloInfo;
using ringlb::frontend::HelloStatus;
using ringlb::frontend::kMaxClientHelloLength;
using ringlb::frontend::parse_client_hello;

std::string unhex(std::string_view hex) {
    std::string bytes;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        bytes.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return bytes;
}

// Captured with tests/tools/capture_client_hello.py (OpenSSL 3.0.19, curl 7.88.1, Python 3 on
// OpenSSL 3.0.19); each is exactly the records holding one ClientHello.
struct Capture {
    const char* name;
    const char* sni;
    std::vector<std::string> alpn;
    const char* hex;
};

const std::vector<Capture>& captures() {
    static const std::vector<Capture> kCaptures = {
        // openssl s_client -tls1_2 -servername api.example.com
        {"openssl-tls12-sni",
         "api.example.com",
         {},
         "16030100cf010000cb0303a78e3b3063b848a790c88c00d25478c316585f085f05aac3e24603ed8d38d6"
         "93000038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009"
         "c0130033009d009c003d003c0035002f00ff0100006a00000014001200000f6170692e6578616d706c65"
         "2e636f6d000b000403000102000a000c000a001d0017001e00190018002300000016000000170000000d"
         "002a0028040305030603080708080809080a080b08040805080604010501060103030301030204020502"
         "0602"},
        // openssl s_client -tls1_2 -servername api.example.com -alpn h2,http/1.1
        {"openssl-tls12-alpn",
         "api.example.com",
         {"h2", "http/1.1"},
         "16030100e1010000dd03036054d0d56d34d9aaf4f05baeb22c5b24047fd4ffa68e4bb5e7febd6c35b3eb"
         "b5000038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009"
         "c0130033009d009c003d003c0035002f00ff0100007c00000014001200000f6170692e6578616d706c65"
         "2e636f6d000b000403000102000a000c000a001d0017001e00190018002300000010000e000c02683208"
         "687474702f312e310016000000170000000d002a0028040305030603080708080809080a080b08040805"
         "0806040105010601030303010302040205020602"},
        // openssl s_client -tls1_3 -servername Www.Example.COM
        {"openssl-tls13-sni",
         "www.example.com",
         {},
         "16030100f4010000f003030bebec654f8ccd0fc6d2e99273b861ce05fe7b01c0b9ceb68d01bd3d937084"
         "aa20ba587fc9a42d48e98a846d89df4d7b280511e130fb8d8ced013321686d838c690008130213031301"
         "00ff0100009f00000014001200000f5777772e4578616d706c652e434f4d000b000403000102000a0016"
         "0014001d0017001e0019001801000101010201030104002300000016000000170000000d001e001c0403"
         "05030603080708080809080a080b080408050806040105010601002b0003020304002d00020101003300"
         "260024001d0020aa70621436826076ddd309fc8a9922358b762ab2cb1a2cfa1d928959a76aa81e"},
        // openssl s_client -tls1_3 -servername grpc.internal.example -alpn h2,http/1.1
        {"openssl-tls13-alpn",
         "grpc.internal.example",
         {"h2", "http/1.1"},
         "160301010c0100010803034c4fb33f313f566ad8a60eb560def1b2894fcb886da50d9541789c32152041"
         "7f2013166f38fb959edd1ff34540306d3820a1a18f5c6cf642316fb847541536dd800008130213031301"
         "00ff010000b70000001a0018000015677270632e696e7465726e616c2e6578616d706c65000b00040300"
         "0102000a00160014001d0017001e0019001801000101010201030104002300000010000e000c02683208"
         "687474702f312e310016000000170000000d001e001c040305030603080708080809080a080b08040805"
         "0806040105010601002b0003020304002d00020101003300260024001d0020385df08026b8d34dbbf876"
         "04347c151ad3b683b5ed6c2bd1f7851324142d5e22"},
        // openssl s_client -noservername
        {"openssl-no-sni",
         "",
         {},
         "1603010124010001200303b9854022f93ed4562c7b169ed15b0118ba6d939313da2c68172d53fdf0707b"
         "3b205666d09ede3652b91567d57a3affd7d8a7e65104ff57f829d7a658dd64066863003e130213031301"
         "c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033"
         "009d009c003d003c0035002f00ff01000099000b000403000102000a00160014001d0017001e00190018"
         "01000101010201030104002300000016000000170000000d002a0028040305030603080708080809080a"
         "080b080408050806040105010601030303010302040205020602002b0009080304030303020301002d00"
         "020101003300260024001d0020822e2809b0b94012b780846f2f70fcb29a63bee573098b2953ac9832ca"
         "8ba76d"},
        // openssl s_client -servername dot.example.com.
        {"openssl-trailing-dot",
         "dot.example.com",
         {},
         "160301013d010001390303a25705c91a4e3d13843dfe6320f0badc31e40bb6eab4237d23600adfd54dc7"
         "182078b18b6aae167f2edef24d398c9e782e3958d6af0d38a647ad24a05ce2a81873003e130213031301"
         "c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033"
         "009d009c003d003c0035002f00ff010000b2000000150013000010646f742e6578616d706c652e636f6d"
         "2e000b000403000102000a00160014001d0017001e001900180100010101020103010400230000001600"
         "0000170000000d002a0028040305030603080708080809080a080b080408050806040105010601030303"
         "010302040205020602002b0009080304030303020301002d00020101003300260024001d002089db2d9f"
         "5e8d02f60821b756633c6821a34baa2437b1468f3764062fd4881e63"},
        // curl --resolve www.example.org:PORT:127.0.0.1 https://www.example.org:PORT/
        {"curl",
         "www.example.org",
         {"h2", "http/1.1"},
         "1603010200010001fc030384a0cae49480d6243350c4d61e3f54385a7077b8b3d422b6850f72384669eb"
         "5d20e14d4db3f2953a0b7feeca02fb6311c753ddda7730b5051718e26b8232ee6daf003e130213031301"
         "c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033"
         "009d009c003d003c0035002f00ff0100017500000014001200000f7777772e6578616d706c652e6f7267"
         "000b000403000102000a00160014001d0017001e00190018010001010102010301040010000e000c0268"
         "3208687474702f312e31001600000017000000310000000d002a0028040305030603080708080809080a"
         "080b080408050806040105010601030303010302040205020602002b0009080304030303020301002d00"
         "020101003300260024001d0020a5b61d79160ef5b99d7e9d91db7ccfd85cb6b86f746ad3f45a5025ff97"
         "353f52001500ae0000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000"},
        // Python ssl, server_hostname="py.example.net", ALPN h2,http/1.1
        {"python-ssl",
         "py.example.net",
         {"h2", "http/1.1"},
         "1603010200010001fc0303663862e4b5404291a664b30ae90d154d732a8557268acd1c55e05279c77022"
         "78208332659237d5d5d78e3c6a7011862d13b69e039f43abe95d526bace788cbbf520024130213031301"
         "c02cc030c02bc02fcca9cca8c024c028c023c027009f009e006b006700ff0100018f0000001300110000"
         "0e70792e6578616d706c652e6e6574000b000403000102000a00160014001d0017001e00190018010001"
         "01010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a00"
         "28040305030603080708080809080a080b08040805080604010501060103030301030204020502060200"
         "2b00050403040303002d00020101003300260024001d002032ac41fb0399a0f7452346efdc57b701f463"
         "4a74caabf9b020e29aa8deca8350001500cd000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000"},
        // Python ssl, server_hostname="Py.Example.NET."
        {"python-ssl-dot",
         "py.example.net",
         {},
         "1603010200010001fc030397b12e16d7da679062595daaec867c70c22223c1a35b71bce004ca9ac2dea2"
         "ce20e930b0faeabd2d79a902fac529c8ed047c80c0146b5f99aa735fb83b45281a1b0024130213031301"
         "c02cc030c02bc02fcca9cca8c024c028c023c027009f009e006b006700ff0100018f0000001400120000"
         "0f50792e4578616d706c652e4e45542e000b000403000102000a00160014001d0017001e001900180100"
         "0101010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b"
         "080408050806040105010601030303010302040205020602002b00050403040303002d00020101003300"
         "260024001d0020420e4b2189c8b9d16db7c87b5ba72e0f2509aadc4e946124a3829340247ce462001500"
         "de0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000"},
    };
    return kCaptures;
}

struct Result {
    HelloStatus status = HelloStatus::kNeedMore;
    ClientHelloInfo info;
    std::string error;
    size_t needed = 0;
};

// Parses a copy of `bytes` in a heap block of exactly that size, so that ASan reports any read
// past the end (a std::string's spare capacity would hide it).
Result parse(std::string_view bytes) {
    auto copy = std::make_unique<char[]>(bytes.size());
    if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
    Result result;
    result.status = parse_client_hello(std::span<const char>(copy.get(), bytes.size()),
                                       &result.info, &result.error, &result.needed);
    if (result.status == HelloStatus::kNeedMore) {
        EXPECT_GT(result.needed, bytes.size()) << "*needed must ask for more than it has";
    }
    return result;
}

// Where the answer for `bytes` is decided: the shortest prefix that is not kNeedMore (every
// longer prefix is checked to give the same answer, and when it is kDone, no shorter one may
// have asked for more bytes than that), or bytes.size() + 1 if none is.
struct Decision {
    size_t at;
    Result result;
};

Decision decide(std::string_view bytes) {
    size_t most_needed = 0;
    for (size_t n = 0; n <= bytes.size(); ++n) {
        Result result = parse(bytes.substr(0, n));
        if (result.status == HelloStatus::kNeedMore) {
            most_needed = std::max(most_needed, result.needed);
            continue;
        }
        if (result.status == HelloStatus::kDone) {
            EXPECT_LE(most_needed, result.info.length) << "*needed overshot the ClientHello";
        }
        for (size_t m = n + 1; m <= bytes.size(); ++m) {
            Result later = parse(bytes.substr(0, m));
            EXPECT_EQ(later.status, result.status) << "prefix " << m << " after " << n;
            EXPECT_EQ(later.info.sni, result.info.sni) << "prefix " << m;
            EXPECT_EQ(later.info.alpn, result.info.alpn) << "prefix " << m;
            EXPECT_EQ(later.info.length, result.info.length) << "prefix " << m;
        }
        return {n, result};
    }
    return {bytes.size() + 1, Result{}};
}

std::string be(uint64_t value, int width) {
    std::string bytes;
    for (int i = width - 1; i >= 0; --i) bytes.push_back(static_cast<char>(value >> (8 * i)));
    return bytes;
}

// The handshake bytes that a capture's records carry.
std::string handshake_of(std::string_view records) {
    std::string message;
    while (!records.empty()) {
        size_t length = static_cast<uint8_t>(records[3]) << 8 | static_cast<uint8_t>(records[4]);
        message.append(records.substr(5, length));
        records.remove_prefix(5 + length);
    }
    return message;
}

// `message` in handshake records of the given payload sizes, the last size repeated as needed.
std::string frame(std::string_view message, std::vector<size_t> sizes,
                  std::string_view version = "\x03\x01") {
    std::string records;
    for (size_t i = 0; !message.empty(); ++i) {
        size_t length = std::min(sizes[std::min(i, sizes.size() - 1)], message.size());
        records += "\x16" + std::string(version) + be(length, 2);
        records.append(message.substr(0, length));
        message.remove_prefix(length);
    }
    return records;
}

// `message` in `count` records of nearly equal size.
std::string frame_into(std::string_view message, size_t count) {
    size_t size = (message.size() + count - 1) / count;
    std::string records = frame(message, {size});
    EXPECT_EQ(handshake_of(records), message);
    return records;
}

std::string extension(uint16_t type, std::string_view data) {
    return be(type, 2) + be(data.size(), 2) + std::string(data);
}

std::string server_name(std::string_view host) {
    std::string entry = std::string(1, '\0') + be(host.size(), 2) + std::string(host);
    return extension(0, be(entry.size(), 2) + entry);
}

std::string alpn(const std::vector<std::string>& names) {
    std::string list;
    for (const std::string& name : names) list += be(name.size(), 1) + name;
    return extension(16, be(list.size(), 2) + list);
}

// A ClientHello built field by field, to break one at a time. With the defaults the fields lie
// at these offsets of records(): record header 0-4, handshake header 5-8, legacy_version 9-10,
// random 11-42, session_id length 43, session_id 44-75, cipher_suites length 76-77,
// cipher_suites 78-83, compression_methods length 84, compression_methods 85, extensions
// length 86-87, extensions from 88 (server_name: type 88-89, length 90-91, list length 92-93,
// name_type 94, host_name length 95-96, host_name from 97).
struct Hello {
    std::string version = unhex("0303");
    std::string session_id = std::string(32, '\x5a');
    std::string suites = unhex("13011302c02f");
    std::string compression = std::string(1, '\0');
    std::optional<std::string> extensions =
        server_name("api.example.com") + alpn({"h2", "http/1.1"});

    std::string body() const {
        std::string body = version + std::string(32, '\x11') + be(session_id.size(), 1) +
                           session_id + be(suites.size(), 2) + suites + be(compression.size(), 1) +
                           compression;
        if (extensions) body += be(extensions->size(), 2) + *extensions;
        return body;
    }
    std::string message() const {
        std::string body = this->body();
        return "\x01" + be(body.size(), 3) + body;
    }
    std::string records() const { return frame(message(), {16384}); }
};

constexpr size_t kExtensionsAt = 88;

// A copy of `bytes` with `replacement` written at `offset`.
std::string patch(std::string bytes, size_t offset, std::string_view replacement) {
    bytes.replace(offset, replacement.size(), replacement);
    return bytes;
}

// Expects `bytes` to be refused as invalid from prefix `at` on (and kNeedMore before), for a
// reason containing `reason`.
void expect_invalid_at(std::string_view bytes, size_t at, std::string_view reason,
                       const std::string& label) {
    SCOPED_TRACE(label);
    Decision decision = decide(bytes);
    EXPECT_EQ(decision.result.status, HelloStatus::kInvalid);
    EXPECT_EQ(decision.at, at);
    EXPECT_NE(decision.result.error.find(reason), std::string::npos) << decision.result.error;
    EXPECT_EQ(decision.result.error.find('\n'), std::string::npos) << decision.result.error;
}

void expect_done(std::string_view bytes, const std::string& sni,
                 const std::vector<std::string>& alpn, const std::string& label) {
    SCOPED_TRACE(label);
    Decision decision = decide(bytes);
    ASSERT_EQ(decision.result.status, HelloStatus::kDone) << decision.result.error;
    EXPECT_EQ(decision.at, bytes.size()) << "a strict prefix was not kNeedMore";
    EXPECT_EQ(decision.result.info.sni, sni);
    EXPECT_EQ(decision.result.info.alpn, alpn);
    EXPECT_EQ(decision.result.info.length, bytes.size());
}

TEST(ClientHelloTest, Captures) {
    for (const Capture& capture : captures()) {
        SCOPED_TRACE(capture.name);
        std::string bytes = unhex(capture.hex);
        expect_done(bytes, capture.sni, capture.alpn, "as captured");
        Result result = parse(bytes);
        EXPECT_EQ(result.info.legacy_version, 0x0303);
        EXPECT_TRUE(result.error.empty());
    }
}

TEST(ClientHelloTest, CorpusHoldsTheCaptures) {
    for (const Capture& capture : captures()) {
        std::string path = std::string(RINGLB_SOURCE_DIR) +
                           "/tests/fuzz/corpus/client_hello/capture-" + capture.name + ".bin";
        std::ifstream file(path, std::ios::binary);
        ASSERT_TRUE(file) << path;
        std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        EXPECT_EQ(bytes, unhex(capture.hex)) << path;
    }
}

TEST(ClientHelloTest, BytesAfterTheHelloAreNotRead) {
    // A TLS 1.3 client in middlebox compatibility mode may send ChangeCipherSpec (and early
    // data) right behind its ClientHello; neither is looked at, whatever it holds.
    for (const Capture& capture : captures()) {
        SCOPED_TRACE(capture.name);
        std::string hello = unhex(capture.hex);
        for (std::string tail :
             {unhex("140303000101"), std::string("GET / HTTP/1.1\r\n"), std::string(1, '\0')}) {
            Result result = parse(hello + tail);
            ASSERT_EQ(result.status, HelloStatus::kDone) << result.error;
            EXPECT_EQ(result.info.length, hello.size());
            EXPECT_EQ(result.info.sni, capture.sni);
        }
    }
}

TEST(ClientHelloTest, CapturesInOtherRecords) {
    for (const Capture& capture : captures()) {
        SCOPED_TRACE(capture.name);
        std::string message = handshake_of(unhex(capture.hex));
        for (size_t count : {2, 3, 7, 64}) {
            expect_done(frame_into(message, count), capture.sni, capture.alpn,
                        std::to_string(count) + " records");
        }
        expect_done(frame(message, {1}), capture.sni, capture.alpn, "1-byte records");
        // The handshake header cut after each of its bytes, then records of mixed sizes.
        for (size_t first = 1; first <= 4; ++first)
            expect_done(frame(message, {first, 2, 3, 100}), capture.sni, capture.alpn,
                        "first record of " + std::to_string(first));
        // Any record minor version, as long as the major one is 3.
        expect_done(frame(message, {100}, unhex("0300")), capture.sni, capture.alpn, "SSL 3.0");
        expect_done(frame(message, {100}, unhex("0303")), capture.sni, capture.alpn, "TLS 1.2");
        expect_done(frame(message, {100}, unhex("037f")), capture.sni, capture.alpn, "3.127");
    }
}

TEST(ClientHelloTest, NotTls) {
    struct Case {
        std::string bytes;
        size_t decided_at;
    };
    for (const Case& c :
         {Case{"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 1},
          Case{"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 1},
          Case{"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n", 1},
          Case{unhex("0d0a0d0a000d0a515549540a2111000c"), 1},     // PROXY v2
          Case{unhex("802e0100020015000000100000"), 1},           // SSLv2 hello
          Case{std::string(1, '\0'), 1}, Case{unhex("1502"), 1},  // an alert record
          Case{unhex("170303001000"), 1},
          Case{unhex("16020000"), 2},  // handshake type byte, major version 2
          Case{unhex("16000000"), 2}, Case{unhex("16fe"), 2}}) {  // DTLS's major version
        SCOPED_TRACE(c.bytes);
        Decision decision = decide(c.bytes);
        EXPECT_EQ(decision.result.status, HelloStatus::kNotTls);
        EXPECT_EQ(decision.at, c.decided_at);
        EXPECT_FALSE(decision.result.error.empty());
    }
    Result empty = parse("");
    EXPECT_EQ(empty.status, HelloStatus::kNeedMore);
    EXPECT_TRUE(empty.error.empty());
    EXPECT_EQ(parse("\x16").status, HelloStatus::kNeedMore);
    EXPECT_EQ(parse("\x16\x03").status, HelloStatus::kNeedMore);
}

TEST(ClientHelloTest, BuiltHelloAndItsVariants) {
    expect_done(Hello{}.records(), "api.example.com", {"h2", "http/1.1"}, "default");
    Result result = parse(Hello{}.records());
    EXPECT_EQ(result.info.legacy_version, 0x0303);

    Hello tls10;
    tls10.version = unhex("0301");
    EXPECT_EQ(parse(tls10.records()).info.legacy_version, 0x0301);

    Hello no_extensions;  // TLS 1.2 allows a ClientHello without the extensions block
    no_extensions.extensions.reset();
    expect_done(no_extensions.records(), "", {}, "no extensions block");
    Hello empty_block;
    empty_block.extensions = "";
    expect_done(empty_block.records(), "", {}, "empty extensions block");

    Hello empty_session;
    empty_session.session_id.clear();
    expect_done(empty_session.records(), "api.example.com", {"h2", "http/1.1"}, "no session_id");

    Hello others;  // unknown extensions and GREASE are skipped, before or after the ones read
    others.extensions = extension(0x0a0a, "") + alpn({"x"}) + extension(0x1234, "abc") +
                        server_name("B.example") + extension(0xfafa, std::string(1, '\0'));
    expect_done(others.records(), "b.example", {"x"}, "unknown extensions");

    Hello alpn_only;
    alpn_only.extensions = alpn({"h3", std::string(255, 'p')});
    expect_done(alpn_only.records(), "", {"h3", std::string(255, 'p')}, "ALPN only");
}

TEST(ClientHelloTest, HostNames) {
    struct Case {
        std::string sent;
        std::string sni;
    };
    std::string label63(63, 'a');
    std::string longest = label63 + "." + label63 + "." + label63 + "." + std::string(63, 'b');
    ASSERT_EQ(longest.size(), 255u);
    for (const Case& c :
         {Case{"Api.Example.COM", "api.example.com"}, Case{"api.example.com.", "api.example.com"},
          Case{"localhost", "localhost"}, Case{"a", "a"}, Case{"a.", "a"},
          Case{"_acme-challenge.example.com", "_acme-challenge.example.com"},
          Case{"-edge-.example", "-edge-.example"}, Case{"192.0.2.1", "192.0.2.1"},
          Case{"xn--bcher-kva.example", "xn--bcher-kva.example"}, Case{longest, longest},
          Case{longest.substr(0, 254) + ".", longest.substr(0, 254)}}) {
        Hello hello;
        hello.extensions = server_name(c.sent);
        expect_done(hello.records(), c.sni, {}, c.sent);
    }
}

TEST(ClientHelloTest, BadHostNames) {
    constexpr size_t kName = kExtensionsAt + 9;  // the host name's first byte
    struct Case {
        std::string name;
        size_t bad_byte;  // offset in the name of the byte that refutes it
        const char* reason;
    };
    for (const Case& c :
         {Case{"api example.com", 3, "byte 0x20"}, Case{"*.example.com", 0, "byte 0x2a"},
          Case{"api.exa/mple", 7, "byte 0x2f"}, Case{std::string("a\0b", 3), 1, "byte 0x00"},
          Case{"b\xc3\xbc"
               "cher.example",
               1, "byte 0xc3"},
          Case{"a:443", 1, "byte 0x3a"}, Case{".example.com", 0, "empty label"},
          Case{".", 0, "empty label"}, Case{"a..example.com", 2, "empty label"},
          Case{"a.example.com..", 14, "empty label"}}) {
        Hello hello;
        hello.extensions = server_name(c.name);
        expect_invalid_at(hello.records(), kName + c.bad_byte + 1, c.reason, c.name);
    }
}

TEST(ClientHelloTest, BadServerNameExtensions) {
    constexpr size_t kData = kExtensionsAt + 4;  // the server_name extension's data
    Hello hello;
    std::string name = "api.example.com";
    std::string good = hello.records();

    // The extension's length is judged against what server_name can hold (6..260).
    // A type whose data cannot fit the room left is refused with its last byte.
    Hello empty_name;
    empty_name.extensions = server_name("");
    expect_invalid_at(empty_name.records(), kExtensionsAt + 2, "server_name extension length",
                      "empty host name");
    Hello too_long;
    too_long.extensions = server_name(std::string(256, 'a'));
    expect_invalid_at(too_long.records(), kExtensionsAt + 4, "server_name extension length 261",
                      "256-byte host name");
    Hello empty_list;
    empty_list.extensions = extension(0, be(0, 2));
    expect_invalid_at(empty_list.records(), kExtensionsAt + 2, "server_name extension length",
                      "empty list");
    Hello no_list;  // what a server sends back in its ServerHello
    no_list.extensions = extension(0, "");
    expect_invalid_at(no_list.records(), kExtensionsAt + 2, "server_name extension length",
                      "empty extension");

    std::string list_length = be(1 + 2 + name.size(), 2);
    expect_invalid_at(patch(good, kData, be(1 + 2 + name.size() - 1, 2)), kData + 2,
                      "server_name list length", "list shorter than the extension");
    expect_invalid_at(patch(good, kData, be(1 + 2 + name.size() + 1, 2)), kData + 2,
                      "server_name list length", "list longer than the extension");
    expect_invalid_at(patch(good, kData, "\x01"), kData + 1, "server_name list length 0x0100..",
                      "list length refuted by its high byte");
    expect_invalid_at(patch(good, kData + 2, "\x01"), kData + 3, "server_name name_type 1",
                      "name_type 1");
    expect_invalid_at(patch(good, kData + 3, be(name.size() - 1, 2)), kData + 5,
                      "server_name host_name length", "name shorter than the list");

    Hello two_names;  // exactly one name: a second entry of any type is refused
    std::string entries =
        std::string(1, '\0') + be(3, 2) + "a.b" + std::string(1, '\0') + be(3, 2) + "c.d";
    two_names.extensions = extension(0, be(entries.size(), 2) + entries);
    expect_invalid_at(two_names.records(), kData + 5, "one name fills the list", "two names");

    Hello twice;
    twice.extensions = server_name("a.example") + server_name("b.example");
    std::string records = twice.records();
    size_t second = kExtensionsAt + server_name("a.example").size();
    expect_invalid_at(records, second + 2, "duplicate extension 0x0000", "server_name twice");
}

TEST(ClientHelloTest, BadAlpnExtensions) {
    auto with = [](std::string extensions) {
        Hello hello;
        hello.extensions = std::move(extensions);
        return hello.records();
    };
    constexpr size_t kData = kExtensionsAt + 4;
    expect_invalid_at(with(extension(16, be(0, 2))), kExtensionsAt + 2, "ALPN extension length",
                      "empty list");
    expect_invalid_at(with(extension(16, "")), kExtensionsAt + 2, "ALPN extension length",
                      "no list");
    std::string good = with(alpn({"h2", "http/1.1"}));
    expect_invalid_at(patch(good, kData, be(11, 2)), kData + 2, "ALPN list length 11",
                      "list shorter than the extension");
    expect_invalid_at(patch(good, kData + 2, std::string(1, '\0')), kData + 3,
                      "ALPN protocol name length 0", "empty name");
    expect_invalid_at(patch(good, kData + 2, "\x0c"), kData + 3, "ALPN protocol name length 12",
                      "name overruns the list");
    // "h2" then 9 bytes: a 7-byte name would leave a single byte, too short for another name.
    expect_invalid_at(patch(good, kData + 5, "\x07"), kData + 6, "ALPN protocol name length 7",
                      "name leaves one byte");
    expect_invalid_at(with(alpn({"h2"}) + alpn({"h2"})), kExtensionsAt + 11,
                      "duplicate extension 0x0010", "ALPN twice");
}

TEST(ClientHelloTest, BadHelloFields) {
    std::string good = Hello{}.records();
    expect_invalid_at(patch(good, 9, "\x02"), 10, "legacy_version major 2", "SSL 2 version");
    expect_invalid_at(patch(good, 9, "\x04"), 10, "legacy_version major 4", "version 4.x");
    expect_invalid_at(patch(good, 43, "\x21"), 44, "session_id length 33", "33-byte session_id");
    expect_invalid_at(patch(good, 76, be(0, 2)), 78, "cipher_suites length 0", "no suites");
    expect_invalid_at(patch(good, 76, be(5, 2)), 78, "cipher_suites length 5 is odd", "odd");
    expect_invalid_at(patch(good, 76, "\x01"), 77, "cipher_suites length 0x0100..",
                      "suites refuted by the high byte");
    expect_invalid_at(patch(good, 84, std::string(1, '\0')), 85, "compression_methods length 0",
                      "no compression method");
    expect_invalid_at(patch(good, 86, be(good.size() - 88 + 1, 2)), 88, "extensions length",
                      "extensions longer than the rest");
    expect_invalid_at(patch(good, 86, be(good.size() - 88 - 1, 2)), 88, "extensions length",
                      "extensions shorter than the rest");

    // Lengths that leave too little for the fields after them are refused at once: the
    // shortest ClientHello (41-byte body) has no room for a session_id byte, and cipher_suites
    // cannot take the two bytes compression_methods needs.
    Hello shortest;
    shortest.session_id.clear();
    shortest.suites = unhex("1301");
    shortest.extensions.reset();
    ASSERT_EQ(shortest.body().size(), 41u);
    std::string records = shortest.records();
    EXPECT_EQ(parse(records).status, HelloStatus::kDone);
    expect_invalid_at(patch(records, 43, "\x01"), 44, "session_id length 1: must be 0",
                      "session_id into cipher_suites");
    expect_invalid_at(patch(records, 44, be(4, 2)), 46, "cipher_suites length 4: must be 2",
                      "cipher_suites into compression_methods");

    // An extension overrunning the block, or leaving 1 to 3 bytes (no room for another).
    Hello one;
    one.extensions = extension(0x1234, "abcdef");
    records = one.records();
    expect_invalid_at(patch(records, kExtensionsAt + 2, be(7, 2)), kExtensionsAt + 4,
                      "extension length 7", "overrun");
    for (size_t shorter = 1; shorter <= 3; ++shorter)
        expect_invalid_at(patch(records, kExtensionsAt + 2, be(6 - shorter, 2)), kExtensionsAt + 4,
                          "extension length", "leaves " + std::to_string(shorter));
    std::string exact = patch(records, kExtensionsAt + 2, be(6, 2));
    EXPECT_EQ(parse(exact).status, HelloStatus::kDone);

    Hello twice;
    twice.extensions = extension(0x1234, "") + extension(0x0a0a, "x") + extension(0x1234, "");
    expect_invalid_at(twice.records(), kExtensionsAt + 9 + 2, "duplicate extension 0x1234",
                      "unknown extension twice");

    // With all 256 types 0x12xx used, a further extension is refused at its type's first byte.
    Hello full;
    full.extensions = "";
    for (int low = 0; low < 256; ++low) *full.extensions += extension(0x1200 + low, "");
    *full.extensions += extension(0x1300, "");
    EXPECT_EQ(parse(full.records()).status, HelloStatus::kDone);
    *full.extensions += extension(0x1234, "");
    expect_invalid_at(full.records(), kExtensionsAt + 257 * 4 + 1, "every extension type 0x12xx",
                      "257th 0x12xx extension");

    // Room for no extensions block: the compression_methods length leaving 1 byte (or 3 to 5:
    // an extensions length and less than one extension header) is refused at that byte.
    Hello tail;
    tail.extensions.reset();
    std::string message = tail.message();
    for (size_t extra = 1; extra <= 5; ++extra) {
        if (extra == 2) continue;  // an empty extensions block
        std::string longer = message + std::string(extra, '\0');
        longer = patch(longer, 1, be(longer.size() - 4, 3));
        expect_invalid_at(frame(longer, {16384}), 85, "compression_methods length 1",
                          std::to_string(extra) + " bytes after compression_methods");
    }
}

TEST(ClientHelloTest, BadRecordsAndHandshakeHeader) {
    std::string good = Hello{}.records();
    std::string message = Hello{}.message();
    expect_invalid_at(patch(good, 3, be(0, 2)), 5, "TLS record length 0", "empty record");
    expect_invalid_at(patch(good, 3, "\x41"), 4, "TLS record length 0x4100..", "record > 2^14");
    expect_invalid_at(patch(good, 3, be(16385, 2)), 5, "TLS record length 16385",
                      "record of 16385");
    expect_invalid_at(patch(good, 5, "\x02"), 6, "handshake message type 2", "ServerHello");
    expect_invalid_at(patch(good, 5, "\x10"), 6, "handshake message type 16", "type 16");
    expect_invalid_at(patch(good, 6, be(16381, 3)), 9, "ClientHello too long", "16385 bytes");
    expect_invalid_at(patch(good, 6, "\x01"), 7, "ClientHello too long: body length 0x010000..",
                      "high byte");
    expect_invalid_at(patch(good, 6, be(40, 3)), 9, "ClientHello body length 40", "too short");

    // A record holding more than the ClientHello: refused once the message length is known.
    std::string more = frame(message + "x", {16384});
    expect_invalid_at(more, 9, "data after it in its record", "one byte more in the record");
    // ... and the same when the handshake header came in 1-byte records.
    std::string split = frame(message.substr(0, 3), {1}) + frame(message.substr(3) + "x", {16384});
    expect_invalid_at(split, 3 * 6 + 5 + 1, "data after it in its record",
                      "one byte more, header split");

    // The length's first two bytes (0x0000..) cap the message at 259 bytes, 3 of them in:
    // a record of 300 is refused at its own length field, before the third byte arrives.
    std::string capped = frame(message.substr(0, 3), {1}) + unhex("160301") + be(300, 2) +
                         message.substr(3) + std::string(300 - (message.size() - 3), 'x');
    expect_invalid_at(capped, 3 * 6 + 5, "TLS record length 300", "record beyond a partial length");

    // The second of two records: not handshake, wrong major version, empty, or longer than
    // what the message leaves.
    std::string two = frame(message, {50});
    size_t second = 5 + 50;
    expect_invalid_at(patch(two, second, "\x17"), second + 1, "record type 23", "application data");
    expect_invalid_at(patch(two, second, "\x14"), second + 1, "record type 20", "ChangeCipherSpec");
    expect_invalid_at(patch(two, second + 1, "\x02"), second + 2, "record version 0x02xx",
                      "major 2");
    expect_invalid_at(patch(two, second + 3, be(0, 2)), second + 5, "TLS record length 0",
                      "empty second record");
    expect_invalid_at(patch(two, second + 3, be(message.size() - 50 + 1, 2)), second + 5,
                      "TLS record length", "second record too long");
}

TEST(ClientHelloTest, LengthCap) {
    // Padded (an unknown extension) to exactly kMaxClientHelloLength bytes of handshake message.
    Hello hello;
    hello.extensions = server_name("big.example");
    size_t base = hello.message().size();
    hello.extensions = server_name("big.example") +
                       extension(21, std::string(kMaxClientHelloLength - base - 4, '\0'));
    std::string message = hello.message();
    ASSERT_EQ(message.size(), kMaxClientHelloLength);
    Result one = parse(frame(message, {16384}));
    ASSERT_EQ(one.status, HelloStatus::kDone) << one.error;
    EXPECT_EQ(one.info.sni, "big.example");
    Result many = parse(frame(message, {1000}));
    ASSERT_EQ(many.status, HelloStatus::kDone) << many.error;
    EXPECT_EQ(many.info.sni, "big.example");

    hello.extensions = *hello.extensions + extension(0x1234, "");
    Result over = parse(frame(hello.message(), {1000}));
    EXPECT_EQ(over.status, HelloStatus::kInvalid);
    EXPECT_NE(over.error.find("ClientHello too long"), std::string::npos) << over.error;
    // Refused from the handshake header on, before the rest is buffered.
    EXPECT_EQ(parse(frame(hello.message(), {1000}).substr(0, 9)).status, HelloStatus::kInvalid);
}

TEST(ClientHelloTest, NullOutputs) {
    std::string hello = Hello{}.records();
    EXPECT_EQ(parse_client_hello(std::span<const char>(hello), nullptr, nullptr),
              HelloStatus::kDone);
    EXPECT_EQ(parse_client_hello(std::span<const char>(patch(hello, 9, "\x02")), nullptr, nullptr),
              HelloStatus::kInvalid);
    std::string get = "GET /";
    EXPECT_EQ(parse_client_hello(std::span<const char>(get), nullptr, nullptr),
              HelloStatus::kNotTls);
}

TEST(ClientHelloTest, OutputsUntouchedUnlessDoneOrRefused) {
    std::string hello = Hello{}.records();
    ClientHelloInfo info;
    info.sni = "before";
    std::string error = "before";
    EXPECT_EQ(parse_client_hello(std::span<const char>(hello.data(), 50), &info, &error),
              HelloStatus::kNeedMore);
    EXPECT_EQ(info.sni, "before");
    EXPECT_EQ(error, "before");
    EXPECT_EQ(parse_client_hello(std::span<const char>(hello), &info, &error), HelloStatus::kDone);
    EXPECT_EQ(info.sni, "api.example.com");
    EXPECT_EQ(error, "before");
}

TEST(ClientHelloTest, NeededBytes) {
    for (const Capture& capture : captures()) {
        SCOPED_TRACE(capture.name);
        std::string hello = unhex(capture.hex);
        for (size_t n = 0; n < hello.size(); ++n) {
            Result result = parse(std::string_view(hello).substr(0, n));
            ASSERT_EQ(result.status, HelloStatus::kNeedMore);
            // Before the record length: a record header and the shortest ClientHello (45).
            // From it on (one record holds each capture): exactly the capture.
            EXPECT_EQ(result.needed, n < 5 ? 50 : hello.size()) << "prefix " << n;
        }
        // Two records: the first one's end, then a header and the rest of the message.
        std::string message = handshake_of(hello);
        std::string two = frame(message, {100, 16384});
        EXPECT_EQ(parse(std::string_view(two).substr(0, 20)).needed, two.size());
        EXPECT_EQ(parse(std::string_view(two).substr(0, 105)).needed, two.size());
        EXPECT_EQ(parse(std::string_view(two).substr(0, 107)).needed, two.size());
    }
    // The header split over 1-byte records: the shortest message still possible.
    std::string split = frame(Hello{}.message(), {1});
    EXPECT_EQ(parse(std::string_view(split).substr(0, 6)).needed, 6 + 5 + 44u);
    EXPECT_EQ(parse(std::string_view(split).substr(0, 8)).needed, 6 + 5 + 44u);
    EXPECT_EQ(parse(std::string_view(split).substr(0, 12)).needed, 12 + 5 + 43u);
}

TEST(ClientHelloTest, TrickledHelloTakesFewParses) {
    // The worst a client can do: the largest ClientHello in 1-byte records, one byte per read.
    // A caller that parses again only once *needed bytes are in gets kDone at the last byte
    // after a few dozen parses instead of one parse per byte.
    Hello hello;
    hello.extensions = server_name("slow.example");
    hello.extensions =
        server_name("slow.example") +
        extension(21, std::string(kMaxClientHelloLength - hello.message().size() - 4, '\0'));
    std::string records = frame(hello.message(), {1});
    ASSERT_EQ(records.size(), 6 * kMaxClientHelloLength);
    size_t parses = 0;
    size_t needed = 0;
    for (size_t n = 1; n <= records.size(); ++n) {
        if (n < needed) continue;
        ++parses;
        ClientHelloInfo info;
        std::string error;
        HelloStatus status =
            parse_client_hello(std::span<const char>(records.data(), n), &info, &error, &needed);
        if (status == HelloStatus::kNeedMore) {
            ASSERT_GT(needed, n);
            continue;
        }
        ASSERT_EQ(status, HelloStatus::kDone) << error;
        EXPECT_EQ(n, records.size());
        EXPECT_EQ(info.sni, "slow.example");
        break;
    }
    EXPECT_LT(parses, 60u);
}

}  // namespace
