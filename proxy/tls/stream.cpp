#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>

#include "proxy/tls/tls.hpp"

namespace ringlb::tls {

namespace {

// The reasons that mean a certificate, not the protocol, ended the handshake: ours checking the
// peer's, or the peer's alert about ours.
bool certificate_reason(unsigned long code) {
    if (ERR_SYSTEM_ERROR(code) || ERR_GET_LIB(code) != ERR_LIB_SSL) return false;
    switch (ERR_GET_REASON(code)) {
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            return true;
        default:
            return false;
    }
}

std::string reason_text(unsigned long code) {
    if (const char* reason = ERR_reason_error_string(code)) return reason;
    char text[256];
    ERR_error_string_n(code, text, sizeof(text));
    return text;
}

}  // namespace

Stream::Stream(SSL* ssl, bool server)
    : ssl_(ssl), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())), server_(server) {
    if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) {
        BIO_free(in_);
        BIO_free(out_);
        SSL_free(ssl_);
        ssl_ = nullptr;
        in_ = out_ = nullptr;
        failure_ = Failure::kProtocol;
        error_ = "out of memory";
        return;
    }
    // An empty memory BIO reads as EOF by default; -1 with the retry flag makes it "want read",
    // which is what an empty buffer means here: the peer's next bytes have not arrived yet.
    BIO_set_mem_eof_return(in_, -1);
    SSL_set_bio(ssl_, in_, out_);
    if (server_) {
        SSL_set_accept_state(ssl_);
    } else {
        SSL_set_connect_state(ssl_);
    }
}

Stream::~Stream() {
    SSL_free(ssl_);  // and both BIOs
}

void Stream::feed(std::span<const char> bytes) {
    if (failure_ != Failure::kNone) return;
    while (!bytes.empty()) {
        int chunk = static_cast<int>(std::min<size_t>(bytes.size(), INT_MAX));
        int written = BIO_write(in_, bytes.data(), chunk);
        if (written <= 0) {  // a memory BIO only fails to grow
            ERR_clear_error();
            failure_ = Failure::kProtocol;
            error_ = "out of memory buffering input";
            return;
        }
        bytes = bytes.subspan(static_cast<size_t>(written));
    }
}

size_t Stream::buffered_input() const {
    return in_ ? BIO_ctrl_pending(in_) : 0;
}

Stream::Result Stream::handshake() {
    if (failure_ != Failure::kNone) return Result::kError;
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl_);
    if (ret == 1) return Result::kOk;
    return fail(ret);
}

bool Stream::handshake_done() const {
    return ssl_ && SSL_is_init_finished(ssl_);
}

Stream::Result Stream::read(std::span<char> out, size_t* n) {
    *n = 0;
    if (failure_ != Failure::kNone) return Result::kError;
    if (out.empty()) return Result::kOk;
    ERR_clear_error();
    size_t got = 0;
    int ret = SSL_read_ex(ssl_, out.data(), out.size(), &got);
    if (ret == 1) {
        *n = got;
        return Result::kOk;
    }
    if (SSL_get_error(ssl_, ret) == SSL_ERROR_ZERO_RETURN) return Result::kClosed;
    return fail(ret);
}

Stream::Result Stream::write(std::span<const char> bytes) {
    if (failure_ != Failure::kNone) return Result::kError;
    if (bytes.empty()) return Result::kOk;
    ERR_clear_error();
    size_t written = 0;
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE success means every byte: the output BIO grows.
    int ret = SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written);
    if (ret == 1) return Result::kOk;
    return fail(ret);
}

void Stream::shutdown() {
    if (failure_ != Failure::kNone || !SSL_is_init_finished(ssl_) || shutdown_sent()) return;
    ERR_clear_error();
    // 0: close_notify queued, the peer's not yet seen; SSL_read still returns the peer's data
    // until its own close_notify (the record layer drops only handshake messages after ours).
    SSL_shutdown(ssl_);
    ERR_clear_error();
}

bool Stream::shutdown_sent() const {
    return ssl_ && (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0;
}

size_t Stream::pending_output() const {
    return out_ ? BIO_ctrl_pending(out_) : 0;
}

size_t Stream::take_output(std::span<char> out) {
    if (out_ == nullptr || out.empty()) return 0;
    int got = BIO_read(out_, out.data(), static_cast<int>(std::min<size_t>(out.size(), INT_MAX)));
    return got > 0 ? static_cast<size_t>(got) : 0;
}

const char* Stream::version() const {
    return ssl_ ? SSL_get_version(ssl_) : "";
}

const char* Stream::cipher() const {
    return ssl_ ? SSL_get_cipher_name(ssl_) : "";
}

std::string_view Stream::alpn() const {
    if (ssl_ == nullptr) return {};
    const unsigned char* protocol = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(ssl_, &protocol, &length);
    if (protocol == nullptr) return {};
    return {reinterpret_cast<const char*>(protocol), length};
}

std::string_view Stream::server_name() const {
    if (ssl_ == nullptr || !server_) return {};
    const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
    return name ? std::string_view(name) : std::string_view();
}

bool Stream::resumed() const {
    return ssl_ && SSL_session_reused(ssl_) == 1;
}

Stream::Result Stream::fail(int ret) {
    int code = SSL_get_error(ssl_, ret);
    if (code == SSL_ERROR_WANT_READ) return Result::kWantRead;
    if (code == SSL_ERROR_ZERO_RETURN) {  // a close_notify where the handshake was expected
        failure_ = Failure::kClosed;
        error_ = "close_notify during the handshake";
        ERR_clear_error();
        return Result::kError;
    }
    failure_ = Failure::kProtocol;
    unsigned long first = ERR_get_error();
    error_ = first != 0 ? reason_text(first)
                        : "SSL_get_error " + std::to_string(code) + " without a reason";
    for (unsigned long e = first; e != 0; e = ERR_get_error())
        if (certificate_reason(e)) failure_ = Failure::kCertificate;
    // Only meaningful when we checked: without SSL_VERIFY_PEER OpenSSL records a failed check
    // and goes on.
    long verify = SSL_get_verify_result(ssl_);
    if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0 && verify != X509_V_OK) {
        failure_ = Failure::kCertificate;
        error_ += ": ";
        error_ += X509_verify_cert_error_string(verify);
    }
    ERR_clear_error();
    return Result::kError;
}

}  // namespace ringlb::tls
