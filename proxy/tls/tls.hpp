#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace ringlb::tls {

// TLS on ringlb's legs, with OpenSSL. Contexts are loaded and checked by the control thread when
// a configuration is applied (start, reload: a snapshot holds them) and shared read-only by the
// shards; a Stream is one connection's TLS state over memory BIOs, so TLS never touches a socket
// and runs the same on both engines: the session feeds it the ciphertext its receives bring and
// sends the ciphertext it produces.

// A file that does not load, a key that does not match its certificate, a bad cipher list:
// what() is "<source>:<line>: <key>: <path>: <reason>".
class TlsError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// What a certificate of a listener is, for metrics and logs.
struct CertificateInfo {
    std::string path;                // the `cert` file
    std::string subject;             // its subject's CN, or "" without one
    std::vector<std::string> names;  // DNS names it serves (subjectAltName, else CN)
    int64_t not_after = 0;           // expiry, seconds since the epoch
};

// The server side of a listener's `tls`: one SSL_CTX per certificate, the one that serves a
// client picked in OpenSSL's servername callback by the ClientHello's name (exact, then the
// longest wildcard, then the first certificate; frontend::SniRouter's rule).
class ServerContext {
  public:
    // Loads every file of `tls` and checks it (PEM parses, key matches certificate, cipher lists
    // and ALPN valid, client_ca loads). `source` and the entries' lines name the place in errors.
    static std::shared_ptr<const ServerContext> load(const config::ListenerTls& tls,
                                                     const std::string& source);
    ~ServerContext();
    ServerContext(const ServerContext&) = delete;
    ServerContext& operator=(const ServerContext&) = delete;

    // A new server-side SSL on the default certificate's context; null when OpenSSL is out of
    // memory. It must not outlive this context: OpenSSL's callbacks read the context's tables.
    SSL* new_ssl() const;
    const std::vector<CertificateInfo>& certificates() const { return certificates_; }

  private:
    ServerContext();
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::vector<CertificateInfo> certificates_;
};

// The client side of a cluster's `tls`.
class ClientContext {
  public:
    static std::shared_ptr<const ClientContext> load(const config::ClusterTls& tls,
                                                     const std::string& source);
    ~ClientContext();
    ClientContext(const ClientContext&) = delete;
    ClientContext& operator=(const ClientContext&) = delete;

    // A new client-side SSL sending `sni` (when set) and, with `verify`, checking the
    // certificate's chain and that it names `sni`; null when OpenSSL is out of memory.
    SSL* new_ssl() const;

  private:
    ClientContext();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Why a handshake failed, for ringlb_tls_handshakes_total's `result` label.
enum class Failure : uint8_t {
    kNone,
    kProtocol,     // malformed or unexpected bytes, no shared version or cipher, an alert
    kCertificate,  // the peer's certificate did not verify, a required one was missing, or the
                   // peer refused ours (a certificate alert: unknown_ca, bad_certificate, ...)
    kClosed,       // the peer closed the connection during the handshake
};

// One connection's TLS: an SSL with a memory BIO in each direction. Not thread-safe; lives on
// one shard. Every call clears OpenSSL's (thread-local) error queue first, so one connection's
// errors never show up in another's.
class Stream {
  public:
    enum class Result : uint8_t {
        kOk,        // done (handshake finished; read() returned bytes; write() took them all)
        kWantRead,  // needs more ciphertext: send pending output first, then feed more
        kClosed,    // read(): the peer's close_notify (a clean end of its stream)
        kError,     // fatal: failure() and error() say why; send pending output (an alert), close.
                    // Every later call returns kError again.
    };

    // Takes ownership of `ssl` (from a context's new_ssl()); `server` picks the role.
    Stream(SSL* ssl, bool server);
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    // Ciphertext received from the peer.
    void feed(std::span<const char> bytes);
    // Ciphertext fed and not yet consumed by OpenSSL.
    size_t buffered_input() const;

    // Drives the handshake: kOk once finished, kWantRead for more, kError.
    Result handshake();
    bool handshake_done() const;

    // Plaintext out: up to out.size() bytes into `out`, the count in *n (kOk with *n > 0), or
    // kWantRead, kClosed, kError with *n = 0. Data already decrypted is returned before more is
    // asked for. May queue output (an alert, a TLS 1.3 KeyUpdate's answer): check
    // pending_output() after every call.
    Result read(std::span<char> out, size_t* n);
    // Plaintext in: encrypts all of `bytes` into pending output (memory BIOs never block). Before
    // the handshake is done it drives the handshake instead and takes nothing (kWantRead).
    Result write(std::span<const char> bytes);
    // Queues a close_notify (once). Reading goes on: the peer may still send (half-close). Before
    // the handshake is done, or after a kError, nothing is sent (OpenSSL refuses a close_notify
    // mid-handshake): just close.
    void shutdown();
    bool shutdown_sent() const;

    // Ciphertext to send to the peer.
    size_t pending_output() const;
    // Moves up to out.size() bytes of it into `out`; returns the count.
    size_t take_output(std::span<char> out);

    Failure failure() const { return failure_; }
    // The session's own verdict, for what a memory BIO cannot see: kClosed when the peer's
    // transport ended during the handshake. Later calls return kError.
    void set_failure(Failure failure) { failure_ = failure; }
    // OpenSSL's reason for the last kError ("" otherwise).
    const std::string& error() const { return error_; }
    // After the handshake: "TLSv1.3", "TLS_AES_128_GCM_SHA256", the ALPN protocol ("" if none).
    const char* version() const;
    const char* cipher() const;
    std::string_view alpn() const;
    // The server name the client sent ("" if none, and on the client side).
    std::string_view server_name() const;
    // Whether the handshake resumed a session (tickets).
    bool resumed() const;

  private:
    Result fail(int ret);

    SSL* ssl_;
    BIO* in_;   // owned by ssl_
    BIO* out_;  // owned by ssl_
    bool server_;
    Failure failure_ = Failure::kNone;
    std::string error_;
};

}  // namespace ringlb::tls
