#include "proxy/frontend/client_hello.hpp"

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdio>

namespace ringlb::frontend {

namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHelloType = 1;
constexpr int64_t kRecordHeaderLength = 5;
constexpr int64_t kHandshakeHeaderLength = 4;
// legacy_version 2, random 32, session_id 1 + 0, cipher_suites 2 + 2, compression_methods
// 1 + 1: the shortest body that can be valid.
constexpr int64_t kMinBodyLength = 41;
constexpr int64_t kMaxBodyLength = kMaxClientHelloLength - kHandshakeHeaderLength;
constexpr int64_t kMaxSessionIdLength = 32;
constexpr int64_t kExtensionHeaderLength = 4;
constexpr uint16_t kServerNameExtension = 0;
constexpr uint16_t kAlpnExtension = 16;
// list length 2, name_type 1, name length 2, then 1 to 255 bytes.
constexpr int64_t kMinServerNameData = 6;
constexpr int64_t kMaxServerNameData = 5 + 255;
// list length 2, then at least one name: length 1, at least 1 byte.
constexpr int64_t kMinAlpnData = 4;

std::string hex(unsigned value, int digits) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%0*x", digits, value);
    return text;
}

// The values a length or type field may take: a union of at most three intervals (the pieces
// the fields after it can still be fitted to).
class Allowed {
  public:
    static Allowed between(int64_t lo, int64_t hi) { return Allowed{}.or_between(lo, hi); }
    static Allowed exactly(int64_t value) { return between(value, value); }
    // Lengths n for a field followed, within `room` bytes, by either nothing or more items of
    // at least `next` bytes each: room - n is 0 or at least `next`.
    static Allowed leaving(int64_t room, int64_t next) {
        return between(0, room - next).or_between(room, room);
    }

    Allowed or_between(int64_t lo, int64_t hi) {
        if (lo <= hi && count_ < ranges_.size()) ranges_[count_++] = {lo, hi};
        return *this;
    }
    Allowed clamp(int64_t lo, int64_t hi) const {
        Allowed result;
        for (size_t i = 0; i < count_; ++i)
            result = result.or_between(std::max(lo, ranges_[i].lo), std::min(hi, ranges_[i].hi));
        return result;
    }
    bool overlaps(int64_t lo, int64_t hi) const {
        for (size_t i = 0; i < count_; ++i)
            if (ranges_[i].lo <= hi && lo <= ranges_[i].hi) return true;
        return false;
    }
    std::string describe() const {
        if (count_ == 0) return "impossible (no room left)";
        std::string text;
        for (size_t i = 0; i < count_; ++i) {
            if (i > 0) text += i + 1 == count_ ? " or " : ", ";
            text += std::to_string(ranges_[i].lo);
            if (ranges_[i].hi != ranges_[i].lo) text += ".." + std::to_string(ranges_[i].hi);
        }
        return text;
    }

  private:
    struct Range {
        int64_t lo;
        int64_t hi;
    };
    std::array<Range, 3> ranges_{};
    size_t count_ = 0;
};

// The outcome of reading a field, or of one step of the parse: kOk to go on.
enum class Step : uint8_t { kOk, kNeedMore, kInvalid };

// A big-endian field of `width` bytes of which `present` have arrived. A partial field is
// refused as soon as no completion of its bytes lies in `allowed`: that keeps kNeedMore exact.
struct Field {
    const uint8_t* bytes;
    int64_t width;
    int64_t present;

    // The smallest and largest values the field can still turn out to have.
    int64_t low() const {
        int64_t value = 0;
        for (int64_t i = 0; i < width; ++i) value = value << 8 | (i < present ? bytes[i] : 0);
        return value;
    }
    int64_t high() const { return low() | ((int64_t{1} << 8 * (width - present)) - 1); }

    Step check(const Allowed& allowed) const {
        if (!allowed.overlaps(low(), high())) return Step::kInvalid;
        return present < width ? Step::kNeedMore : Step::kOk;
    }
    // "session_id length 33: must be 0..32"; "... 0xff00..: must be ..." for a partial field,
    // and no value at all for one refused before its first byte (no room left for it).
    std::string refusal(const char* what, const Allowed& allowed, const char* note = "") const {
        std::string value = present == width ? " " + std::to_string(low())
                            : present > 0
                                ? " " + hex(static_cast<unsigned>(low()), 2 * width) + ".."
                                : "";
        return std::string(what) + value + ": must be " + allowed.describe() + note;
    }
};

// The part of a structure still to be parsed: [pos, end) of the handshake body, `end` being
// where the enclosing length field says it stops, whether or not those bytes have arrived.
struct Span {
    int64_t pos;
    int64_t end;
    int64_t left() const { return end - pos; }
};

// Parses a ClientHello body of which only the first `arrived` bytes may be present.
class BodyParser {
  public:
    BodyParser(const uint8_t* body, int64_t arrived) : body_(body), arrived_(arrived) {}

    Step parse(Span hello, ClientHelloInfo* info) {
        int64_t major, minor;
        if (Step s = read(hello, 1, Allowed::exactly(3), "legacy_version major", &major,
                          " (SSL 3.0 or TLS)");
            s != Step::kOk)
            return s;
        if (Step s = read(hello, 1, Allowed::between(0, 255), "legacy_version minor", &minor);
            s != Step::kOk)
            return s;
        info->legacy_version = static_cast<uint16_t>(major << 8 | minor);
        if (Step s = skip(hello, 32, "random"); s != Step::kOk) return s;

        // After session_id: cipher_suites (2 + 2), compression_methods (1 + 1).
        int64_t length;
        Allowed session_id =
            Allowed::between(0, std::min(kMaxSessionIdLength, hello.left() - 1 - 6));
        if (Step s = read(hello, 1, session_id, "session_id length", &length); s != Step::kOk)
            return s;
        if (Step s = skip(hello, length, "session_id"); s != Step::kOk) return s;

        // After cipher_suites: compression_methods (1 + 1). The bound is made even so that the
        // interval test on a partial field stays exact.
        Allowed suites = Allowed::between(2, (hello.left() - 2 - 2) & ~int64_t{1});
        if (Step s = read(hello, 2, suites, "cipher_suites length", &length); s != Step::kOk)
            return s;
        if (length % 2 != 0)
            return fail("cipher_suites length " + std::to_string(length) + " is odd");
        if (Step s = skip(hello, length, "cipher_suites"); s != Step::kOk) return s;

        // After compression_methods: nothing, an empty extensions block (2) or one holding at
        // least one extension (2 + 4).
        int64_t room = hello.left() - 1;
        Allowed compression = Allowed::between(1, room - 6)
                                  .or_between(room - 2, room - 2)
                                  .or_between(room, room)
                                  .clamp(1, 255);
        if (Step s = read(hello, 1, compression, "compression_methods length", &length);
            s != Step::kOk)
            return s;
        if (Step s = skip(hello, length, "compression_methods"); s != Step::kOk) return s;

        if (hello.left() == 0) return Step::kOk;  // no extensions (allowed before TLS 1.3)
        if (Step s = read(hello, 2, Allowed::exactly(hello.left() - 2), "extensions length",
                          &length, " (the rest of the ClientHello)");
            s != Step::kOk)
            return s;
        return parse_extensions(hello, info);
    }

    const std::string& reason() const { return reason_; }

  private:
    Step parse_extensions(Span block, ClientHelloInfo* info) {
        // Duplicates are refused the moment the second type arrives, whatever the number of
        // extensions; used[high byte] makes that exact for a type's first byte too.
        std::bitset<65536> seen;
        std::array<uint16_t, 256> used{};
        while (block.left() > 0) {
            Field type_field = field(block, 2);
            if (type_field.present == 1 && used[body_[block.pos]] == 256)
                return fail("every extension type " + hex(body_[block.pos], 2) + "xx already used");
            if (type_field.present < 2) return Step::kNeedMore;
            auto type = static_cast<uint16_t>(type_field.low());
            if (seen.test(type)) return fail("duplicate extension " + hex(type, 4));
            seen.set(type);
            ++used[type >> 8];
            block.pos += 2;

            Allowed data = Allowed::leaving(block.left() - 2, kExtensionHeaderLength);
            const char* what = "extension length";
            if (type == kServerNameExtension) {
                data = data.clamp(kMinServerNameData, kMaxServerNameData);
                what = "server_name extension length";
            } else if (type == kAlpnExtension) {
                data = data.clamp(kMinAlpnData, 65535);
                what = "ALPN extension length";
            }
            int64_t length;
            if (Step s = read(block, 2, data, what, &length); s != Step::kOk) return s;
            Span extension{block.pos, block.pos + length};
            block.pos += length;
            Step s;
            if (type == kServerNameExtension) {
                s = parse_server_name(extension, &info->sni);
            } else if (type == kAlpnExtension) {
                s = parse_alpn(extension, &info->alpn);
            } else {
                s = skip(extension, length, "extension data");
            }
            if (s != Step::kOk) return s;
        }
        return Step::kOk;
    }

    Step parse_server_name(Span data, std::string* sni) {
        int64_t value;
        if (Step s = read(data, 2, Allowed::exactly(data.left() - 2), "server_name list length",
                          &value, " (the rest of its extension)");
            s != Step::kOk)
            return s;
        if (Step s =
                read(data, 1, Allowed::exactly(0), "server_name name_type", &value, " (host_name)");
            s != Step::kOk)
            return s;
        if (Step s = read(data, 2, Allowed::exactly(data.left() - 2),
                          "server_name host_name length", &value, " (one name fills the list)");
            s != Step::kOk)
            return s;
        // Judged byte by byte as they arrive; the length is 1..255 by the extension's bounds.
        int64_t start = data.pos;
        int64_t present = std::clamp<int64_t>(arrived_ - start, 0, data.left());
        for (int64_t i = start; i < start + present; ++i) {
            if (!is_host_name_byte(body_[i]))
                return fail("server_name host_name holds byte " + hex(body_[i], 2));
            if (body_[i] == '.' && (i == start || body_[i - 1] == '.'))
                return fail("server_name host_name has an empty label");
        }
        if (Step s = skip(data, data.left(), "host_name"); s != Step::kOk) return s;
        const uint8_t* name = body_ + start;
        size_t length = static_cast<size_t>(value);
        if (name[length - 1] == '.') --length;  // never empties it: a leading '.' is refused
        sni->resize(length);
        for (size_t i = 0; i < length; ++i) {
            uint8_t c = name[i];
            (*sni)[i] = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        return Step::kOk;
    }

    Step parse_alpn(Span data, std::vector<std::string>* alpn) {
        int64_t length;
        if (Step s = read(data, 2, Allowed::exactly(data.left() - 2), "ALPN list length", &length,
                          " (the rest of its extension)");
            s != Step::kOk)
            return s;
        while (data.left() > 0) {
            // After a name: nothing, or another one (1 + 1).
            Allowed name = Allowed::leaving(data.left() - 1, 2).clamp(1, 255);
            if (Step s = read(data, 1, name, "ALPN protocol name length", &length); s != Step::kOk)
                return s;
            int64_t at = data.pos;
            if (Step s = skip(data, length, "ALPN protocol name"); s != Step::kOk) return s;
            alpn->emplace_back(reinterpret_cast<const char*>(body_ + at),
                               static_cast<size_t>(length));
        }
        return Step::kOk;
    }

    Field field(const Span& span, int64_t width) const {
        int64_t present = std::clamp<int64_t>(arrived_ - span.pos, 0, width);
        return Field{present > 0 ? body_ + span.pos : nullptr, width, present};
    }

    Step read(Span& span, int64_t width, const Allowed& allowed, const char* what, int64_t* value,
              const char* note = "") {
        // The bounds given by the callers keep every field inside its span; this guard only
        // makes sure that a mistake there cannot read past the message.
        if (width > span.left()) return fail(std::string(what) + " overruns its structure");
        Field f = field(span, width);
        Step step = f.check(allowed);
        if (step == Step::kInvalid) return fail(f.refusal(what, allowed, note));
        if (step == Step::kOk) {
            *value = f.low();
            span.pos += width;
        }
        return step;
    }

    Step skip(Span& span, int64_t length, const char* what) {
        if (length > span.left()) return fail(std::string(what) + " overruns its structure");
        if (span.pos + length > arrived_) return Step::kNeedMore;
        span.pos += length;
        return Step::kOk;
    }

    Step fail(std::string reason) {
        reason_ = std::move(reason);
        return Step::kInvalid;
    }

    const uint8_t* body_;
    int64_t arrived_;
    std::string reason_;
};

HelloStatus refuse(HelloStatus status, std::string* error, std::string reason) {
    if (error) *error = std::move(reason);
    return status;
}

}  // namespace

HelloStatus parse_client_hello(std::span<const char> data, ClientHelloInfo* out, std::string* error,
                               size_t* needed) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
    const auto size = static_cast<int64_t>(data.size());
    if (size >= 1 && bytes[0] != kHandshakeRecord)
        return refuse(HelloStatus::kNotTls, error,
                      "first byte " + hex(bytes[0], 2) + " is not a TLS handshake record");
    if (size >= 2 && bytes[1] != 3)
        return refuse(HelloStatus::kNotTls, error,
                      "record version " + hex(bytes[1], 2) + "xx is not SSL 3.0 or TLS");

    // Walks the records, gathering the handshake message they carry. While it fits one record
    // it is read in place; from the second record on it is copied into `joined`.
    const uint8_t* message = nullptr;  // the handshake bytes gathered so far
    int64_t gathered = 0;
    std::string joined;
    int64_t declared = 0;        // the handshake bytes the records seen so far announce
    int64_t message_length = 0;  // header included; 0 until its 4-byte header has arrived
    int64_t pos = 0;
    int64_t records_end = 0;  // where the records whose headers have arrived end
    bool complete = false;
    std::string record_error;  // set when the records are invalid after the header arrived
    while (true) {
        if (message_length != 0 && gathered == message_length) {
            complete = true;
            break;
        }
        if (pos == size) break;
        int64_t header_present = std::min(size - pos, kRecordHeaderLength);
        if (pos > 0) {
            if (bytes[pos] != kHandshakeRecord) {
                record_error = "record type " + std::to_string(bytes[pos]) +
                               " inside the ClientHello (no interleaving)";
                break;
            }
            if (header_present >= 2 && bytes[pos + 1] != 3) {
                record_error =
                    "record version " + hex(bytes[pos + 1], 2) + "xx inside the ClientHello";
                break;
            }
        }
        // The record may hold at most the rest of the largest message still possible.
        int64_t largest = kMaxClientHelloLength;
        if (message_length != 0) {
            largest = message_length;
        } else if (gathered >= 2) {
            Field body_length{message + 1, 3, gathered - 1};
            largest = std::min(largest, kHandshakeHeaderLength + body_length.high());
        }
        Allowed record = Allowed::between(1, largest - gathered);
        Field length_field{header_present > 3 ? bytes + pos + 3 : nullptr, 2,
                           std::max<int64_t>(header_present - 3, 0)};
        Step step = length_field.check(record);
        if (step == Step::kInvalid) {
            record_error = length_field.refusal("TLS record length", record,
                                                " (the rest of the ClientHello, at most 16384)");
            break;
        }
        if (step == Step::kNeedMore) break;
        int64_t record_length = length_field.low();
        declared += record_length;
        const uint8_t* payload = bytes + pos + kRecordHeaderLength;
        int64_t arrived = std::min(record_length, size - pos - kRecordHeaderLength);
        if (pos == 0) {
            message = payload;
        } else {
            if (joined.empty()) joined.assign(reinterpret_cast<const char*>(message), gathered);
            joined.append(reinterpret_cast<const char*>(payload), arrived);
            message = reinterpret_cast<const uint8_t*>(joined.data());
        }
        gathered += arrived;
        if (gathered >= 1 && message[0] != kClientHelloType)
            return refuse(
                HelloStatus::kInvalid, error,
                "handshake message type " + std::to_string(message[0]) + " is not ClientHello");
        if (message_length == 0 && gathered >= 2) {
            // The message must hold at least what the records announced so far.
            Allowed body = Allowed::between(
                std::max(kMinBodyLength, declared - kHandshakeHeaderLength), kMaxBodyLength);
            Field body_length{message + 1, 3, std::min<int64_t>(gathered - 1, 3)};
            step = body_length.check(body);
            if (step == Step::kInvalid) {
                if (body_length.low() > kMaxBodyLength)
                    return refuse(
                        HelloStatus::kInvalid, error,
                        "ClientHello too long: " + body_length.refusal("body length", body));
                if (body_length.present == 3 && body_length.low() >= kMinBodyLength)
                    return refuse(HelloStatus::kInvalid, error,
                                  "the records hold " + std::to_string(declared) +
                                      " handshake bytes, more than the " +
                                      std::to_string(kHandshakeHeaderLength + body_length.low()) +
                                      "-byte ClientHello (data after it in its record)");
                return refuse(HelloStatus::kInvalid, error,
                              body_length.refusal("ClientHello body length", body,
                                                  " (at least 41, and what its records hold)"));
            }
            if (step == Step::kOk) message_length = kHandshakeHeaderLength + body_length.low();
        }
        if (arrived < record_length) {
            records_end = pos + kRecordHeaderLength + record_length;
            break;
        }
        pos += kRecordHeaderLength + record_length;
        records_end = pos;
    }
    // The least the data can be complete with: the records begun, then one more record for
    // the rest of the shortest message still possible.
    auto need_more = [&] {
        if (needed) {
            int64_t least = message_length != 0
                                ? message_length
                                : std::max(kHandshakeHeaderLength + kMinBodyLength, declared);
            int64_t rest = least - declared;
            *needed =
                static_cast<size_t>(records_end + (rest > 0 ? kRecordHeaderLength + rest : 0));
        }
        return HelloStatus::kNeedMore;
    };
    if (message_length == 0) {
        if (!record_error.empty())
            return refuse(HelloStatus::kInvalid, error, std::move(record_error));
        return need_more();
    }

    // The body's own errors come first: they lie in bytes that precede a record error.
    ClientHelloInfo info;
    BodyParser parser(message + kHandshakeHeaderLength, gathered - kHandshakeHeaderLength);
    Step step = parser.parse(Span{0, message_length - kHandshakeHeaderLength}, &info);
    if (step == Step::kInvalid) return refuse(HelloStatus::kInvalid, error, parser.reason());
    if (!record_error.empty()) return refuse(HelloStatus::kInvalid, error, std::move(record_error));
    if (step == Step::kNeedMore || !complete) return need_more();
    info.length = static_cast<size_t>(pos);
    if (out) *out = std::move(info);
    return HelloStatus::kDone;
}

const char* hello_status_name(HelloStatus status) {
    switch (status) {
        case HelloStatus::kNeedMore:
            return "need more";
        case HelloStatus::kDone:
            return "done";
        case HelloStatus::kNotTls:
            return "not TLS";
        case HelloStatus::kInvalid:
            return "invalid";
    }
    return "?";
}

}  // namespace ringlb::frontend
