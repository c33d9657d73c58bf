// libFuzzer target for the ClientHello parser (proxy/frontend/client_hello.hpp). Besides
// crashes and sanitizer reports, it checks the contract the proxy relies on when it parses the
// growing prefix of what a client sent after every read:
// - kNotTls exactly when the first byte is not 22 or the second not 3;
// - the input and each of its prefixes up to kMaxPrefix: once a prefix is kNotTls or kInvalid,
//   every longer one is the same; when the input is kDone with length L, every prefix shorter
//   than L is kNeedMore and every longer one is kDone with the same result;
// - a kNeedMore prefix asks (*needed) for more bytes than it has, and never for more than the
//   input's ClientHello turns out to hold;
// - a kDone result is well formed (a lowercase SNI without trailing dot, length within the
//   input), and the same handshake message framed into records of another size gives the same
//   result; an error has a one-line reason.
// Built by `scripts/build.sh fuzz`; the corpus (tests/fuzz/corpus/client_hello) is replayed by
// the ctest `ClientHelloFuzzCorpusReplay`.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include "proxy/frontend/client_hello.hpp"

namespace {

using ringlb::frontend::ClientHelloInfo;
using ringlb::frontend::hello_status_name;
using ringlb::frontend::HelloStatus;
using ringlb::frontend::is_host_name_byte;
using ringlb::frontend::parse_client_hello;

constexpr size_t kMaxPrefix = 2048;

[[noreturn]] void bug(const char* what, size_t prefix, HelloStatus got) {
    std::fprintf(stderr, "client_hello_fuzz: %s (prefix %zu: %s)\n", what, prefix,
                 hello_status_name(got));
    std::abort();
}

bool same(const ClientHelloInfo& a, const ClientHelloInfo& b) {
    return a.sni == b.sni && a.alpn == b.alpn && a.legacy_version == b.legacy_version;
}

bool final_status(HelloStatus status) {
    return status == HelloStatus::kNotTls || status == HelloStatus::kInvalid;
}

void check_result(HelloStatus status, const ClientHelloInfo& info, const std::string& error,
                  size_t size) {
    if (final_status(status) && (error.empty() || error.find('\n') != std::string::npos))
        bug("error without a one-line reason", size, status);
    if (status != HelloStatus::kDone) return;
    if (info.length == 0 || info.length > size) bug("length outside the input", size, status);
    if (info.sni.size() > 255 || info.sni.ends_with('.') || info.sni.starts_with('.'))
        bug("malformed SNI", size, status);
    for (char c : info.sni)
        if ((c >= 'A' && c <= 'Z') || !is_host_name_byte(static_cast<unsigned char>(c)))
            bug("SNI byte not lowercase host name", size, status);
    for (const std::string& protocol : info.alpn)
        if (protocol.empty()) bug("empty ALPN name", size, status);
}

// The handshake bytes carried by the records of a parsed ClientHello, framed again into records
// of `chunk` bytes with the same record header bytes 0 to 2.
std::string reframe(std::span<const char> hello, size_t chunk) {
    std::string message;
    for (size_t pos = 0; pos < hello.size();) {
        size_t length = size_t{static_cast<uint8_t>(hello[pos + 3])} << 8 |
                        static_cast<uint8_t>(hello[pos + 4]);
        message.append(hello.data() + pos + 5, length);
        pos += 5 + length;
    }
    std::string framed;
    for (size_t pos = 0; pos < message.size(); pos += chunk) {
        size_t length = std::min(chunk, message.size() - pos);
        framed.append(hello.data(), 3);
        framed.push_back(static_cast<char>(length >> 8));
        framed.push_back(static_cast<char>(length & 0xff));
        framed.append(message, pos, length);
    }
    return framed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::span<const char> input(reinterpret_cast<const char*>(data), size);
    ClientHelloInfo whole_info;
    std::string whole_error;
    HelloStatus whole = parse_client_hello(input, &whole_info, &whole_error);
    check_result(whole, whole_info, whole_error, size);
    bool not_tls = (size >= 1 && data[0] != 22) || (size >= 2 && data[1] != 3);
    if ((whole == HelloStatus::kNotTls) != not_tls)
        bug("kNotTls not decided by bytes 0-1", size, whole);

    HelloStatus previous = HelloStatus::kNeedMore;
    for (size_t length = 0; length <= std::min(size, kMaxPrefix); ++length) {
        ClientHelloInfo info;
        std::string error;
        size_t needed = 0;
        HelloStatus status = parse_client_hello(input.first(length), &info, &error, &needed);
        check_result(status, info, error, length);
        if (status == HelloStatus::kNeedMore) {
            if (needed <= length) bug("*needed asks for no more bytes", length, status);
            if (whole == HelloStatus::kDone && needed > whole_info.length)
                bug("*needed overshot the ClientHello", length, status);
        }
        if (final_status(previous) && status != previous)
            bug("a refused prefix was accepted when longer", length, status);
        if (final_status(status) && whole != status)
            bug("a refused prefix was not refused as a whole", length, status);
        if (whole == HelloStatus::kDone) {
            if (length < whole_info.length && status != HelloStatus::kNeedMore)
                bug("a prefix of a ClientHello is not kNeedMore", length, status);
            if (length >= whole_info.length &&
                (status != HelloStatus::kDone || !same(info, whole_info) ||
                 info.length != whole_info.length))
                bug("the input past the ClientHello changed the result", length, status);
        }
        previous = status;
    }

    if (whole == HelloStatus::kDone) {
        size_t chunk = 1 + size % 300;
        std::string framed = reframe(input.first(whole_info.length), chunk);
        ClientHelloInfo info;
        std::string error;
        HelloStatus status = parse_client_hello(framed, &info, &error);
        if (status != HelloStatus::kDone || !same(info, whole_info) || info.length != framed.size())
            bug("the same ClientHello in other records parsed differently", chunk, status);
    }
    return 0;
}
