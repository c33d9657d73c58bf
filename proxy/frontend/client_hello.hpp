#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ringlb::frontend {

// Largest ClientHello handshake message (its 4-byte header included) reassembled from the
// records; real ones are 200 to 2,000 bytes (a post-quantum key share adds about 1,200). A
// larger one is refused rather than buffered: the proxy holds this much per pending client.
// Since a record may hold nothing after the ClientHello, this also bounds every record to
// RFC 8446's 2^14 bytes for plaintext records.
inline constexpr size_t kMaxClientHelloLength = 16384;

enum class HelloStatus : uint8_t {
    kNeedMore,  // the bytes so far can still begin a valid ClientHello: read more
    kDone,      // a whole ClientHello: *out is filled
    kNotTls,    // the first bytes are not a TLS handshake record (plain text, SSH, PROXY, ...)
    kInvalid,   // a TLS handshake record that cannot hold a valid ClientHello
};

struct ClientHelloInfo {
    // server_name's host_name, lowercased, without a trailing dot; empty when the client sent no
    // server_name extension.
    std::string sni;
    // application_layer_protocol_negotiation's names in the client's order, as sent (opaque
    // bytes, "h2", "http/1.1"); empty without the extension.
    std::vector<std::string> alpn;
    // ClientHello.legacy_version: 0x0303 from TLS 1.2 and 1.3 clients (1.3 is offered in the
    // supported_versions extension, which is not read here).
    uint16_t legacy_version = 0;
    // Bytes of `data` from the first record through the one that ends the ClientHello. Nothing
    // after it is read (a TLS 1.3 client may already have sent ChangeCipherSpec or early data).
    size_t length = 0;
};

// Parses the start of what a client sent, as far as it has arrived. Made to be called again on
// the whole growing prefix after every read, and right for every prefix: kNeedMore exactly while
// some continuation of the bytes would be a ClientHello these rules accept. Every field is
// judged byte by byte as it arrives, against its enclosing length and the least room the fields
// after it need (a length field whose high byte already rules out every fitting value is refused
// at that byte). So a prefix that is kNotTls or kInvalid stays so however much more arrives, and
// a ClientHello that ends at byte L is kNeedMore for every shorter prefix and kDone from L on.
//
// kNotTls is decided by the first two bytes: a record content type other than 22 (handshake)
// or a record version whose major byte is not 3. An SSLv2-framed hello (first byte 0x80) is
// kNotTls too: no TLS 1.x server accepts one any more.
//
// kInvalid, with a one-line reason in *error:
// - records: a length of 0, or more than what is left of the handshake message (a record may
//   hold nothing after the ClientHello: the client cannot send another handshake message before
//   the server answers, and early data or ChangeCipherSpec come in records of their own); a
//   record after the first that is not a handshake record or has a major version other than 3
//   (RFC 8446 5.1: no interleaving). Record minor versions are not checked.
// - handshake: a message type other than 1 (client_hello); a message longer than
//   kMaxClientHelloLength ("ClientHello too long"), which may span any number of records.
// - ClientHello body: a legacy_version whose major byte is not 3; a session_id over 32 bytes;
//   cipher_suites empty or of odd length; compression_methods empty; any field overrunning the
//   message; an extensions block whose length differs from what remains of the message (none
//   left means no extensions, as TLS 1.2 allows) or that cannot be cut into whole extensions;
//   an extension overrunning the block; the same extension type twice (RFC 8446 4.2, RFC 5246
//   7.4.1.4: a proxy that routed on the first of two server_name extensions while the backend
//   read the second would be routing on a name the backend never saw).
// - server_name (RFC 6066 3): a list length other than the extension's data length, and
//   anything but exactly one entry of name_type host_name (0); OpenSSL refuses the same, since a
//   name of an unknown type cannot be skipped (it has no length of its own). The host name is
//   1 to 255 bytes of [A-Za-z0-9-_.], does not start with '.', has no empty label ("a..b") and
//   may end with one '.' (which is removed). Underscores and labels starting or ending in '-'
//   are let through (seen in the wild, harmless for matching); so are IP literals, which
//   RFC 6066 forbids but old clients send (no route pattern can match them: they take the
//   default route).
// - ALPN (RFC 7301): a list length other than the extension's data length, an empty list, an
//   empty protocol name, a name overrunning the list.
// Other extensions are skipped unread: their semantics are the backend's business.
//
// *out is written only on kDone, *error only on kNotTls and kInvalid, *needed only on kNeedMore;
// any may be null. Reads no byte outside `data`.
//
// *needed: the fewest bytes `data` can hold a whole ClientHello with (always more than
// data.size()). Each call parses the whole prefix again (a walk over the length fields, plus a
// copy of the handshake bytes when the message spans records), so calling after every read is
// quadratic for a client that trickles its hello: a 16 KiB one in 1-byte records, one byte per
// read, costs some 11 s of CPU that way here. Calling again only once *needed bytes have arrived
// takes that to 48 calls and 8 ms (each wait covers a record header plus what is missing, of
// which a 1-byte record delivers a sixth) and never delays kDone; it only delays kInvalid from
// the byte that refutes the hello to that point.
HelloStatus parse_client_hello(std::span<const char> data, ClientHelloInfo* out, std::string* error,
                               size_t* needed = nullptr);

// "need more", "done", "not TLS", "invalid": for logs and test output.
const char* hello_status_name(HelloStatus status);

// True for the bytes a host name may hold here: letters, digits, '-', '_' and '.'. Shared with
// the SNI route patterns so that a pattern can only name what the parser can produce.
constexpr bool is_host_name_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

}  // namespace ringlb::frontend
