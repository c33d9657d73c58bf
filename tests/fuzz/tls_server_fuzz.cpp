// libFuzzer target for the server side of proxy/tls: what a client's bytes can do to a Stream
// on a listener's ServerContext (two certificates picked by SNI, ALPN, optional client
// certificates, so the servername and ALPN callbacks and the CertificateRequest path run).
// Byte 0 of the input says how the rest arrives and what the session does around it; the rest is
// ciphertext from the "client":
// - bits 0-3: the size of the pieces it is fed in (0: all at once; else a multiple of 23 bytes),
//   so records and handshake messages split at every place;
// - bit 4: plaintext read is written back; bit 5: shutdown() after the handshake; bit 6: the
//   output is taken in 7-byte pieces.
// Without the keys of a real client the fuzzer mostly reaches the ClientHello and the record
// layer. OpenSSL is Debian's, not instrumented: coverage guides by ringlb's own branches only
// (OpenSSL's parsers have their own fuzzers upstream); ASan still sees every buffer ringlb hands
// over. The invariants checked are the Stream's contract: kError comes with a failure and a
// reason and stays, a read never returns more than asked, output is taken as announced.
// Built by `scripts/build.sh fuzz`; the corpus (tests/fuzz/corpus/tls_server) is replayed by the
// ctest `TlsServerFuzzCorpusReplay`.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "proxy/tls/tls.hpp"

namespace {

using ringlb::tls::Failure;
using ringlb::tls::ServerContext;
using ringlb::tls::Stream;
using Result = Stream::Result;

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "tls_server_fuzz: %s\n", what);
    std::abort();
}

// A self-signed certificate for `cn` and its key, written as PEM to `dir`/`name`.pem/.key.
void write_certificate(const std::string& dir, const std::string& name, const char* cn) {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* cert = X509_new();
    if (key == nullptr || cert == nullptr) bug("cannot make a key");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 365L * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(cert, subject);
    if (X509_sign(cert, key, EVP_sha256()) == 0) bug("cannot sign the certificate");
    BIO* cert_file = BIO_new_file((dir + "/" + name + ".pem").c_str(), "w");
    BIO* key_file = BIO_new_file((dir + "/" + name + ".key").c_str(), "w");
    if (cert_file == nullptr || key_file == nullptr || PEM_write_bio_X509(cert_file, cert) != 1 ||
        PEM_write_bio_PrivateKey(key_file, key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
        bug("cannot write the certificate");
    BIO_free(cert_file);
    BIO_free(key_file);
    X509_free(cert);
    EVP_PKEY_free(key);
}

// Made once per process; the files are gone once loaded.
std::shared_ptr<const ServerContext> make_context() {
    char dir[] = "/tmp/ringlb-tls-fuzz-XXXXXX";
    if (mkdtemp(dir) == nullptr) bug("mkdtemp failed");
    write_certificate(dir, "default", "fuzz.example.test");
    write_certificate(dir, "wild", "*.wild.example.test");
    ringlb::config::ListenerTls tls;
    tls.enabled = true;
    for (const char* name : {"default", "wild"})
        tls.certificates.push_back(
            {std::string(dir) + "/" + name + ".pem", std::string(dir) + "/" + name + ".key", 1});
    tls.alpn = {"h2", "http/1.1"};
    tls.client_ca = std::string(dir) + "/default.pem";
    tls.verify_client = ringlb::config::VerifyClient::kOptional;
    std::shared_ptr<const ServerContext> context = ServerContext::load(tls, "fuzz");
    for (const char* file : {"default.pem", "default.key", "wild.pem", "wild.key"})
        unlink((std::string(dir) + "/" + file).c_str());
    rmdir(dir);
    return context;
}

void drain(Stream& stream, size_t piece) {
    char buffer[4096];
    size_t pending = stream.pending_output();
    size_t taken = 0;
    while (size_t n = stream.take_output({buffer, std::min(piece, sizeof(buffer))})) taken += n;
    if (taken != pending || stream.pending_output() != 0) bug("output taken is not as announced");
}

void check_error(const Stream& stream, Result result) {
    if (result != Result::kError) return;
    if (stream.failure() == Failure::kNone || stream.error().empty())
        bug("kError without a failure and a reason");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::shared_ptr<const ServerContext> context = make_context();
    if (size == 0) return 0;
    const uint8_t control = data[0];
    const size_t chunk = (control & 0x0f) != 0 ? (control & 0x0f) * 23u : size;
    const bool reply = (control & 0x10) != 0;
    const bool shut = (control & 0x20) != 0;
    const size_t piece = (control & 0x40) != 0 ? 7 : 4096;

    Stream stream(context->new_ssl(), true);
    std::span<const char> input(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool failed = false;
    while (!input.empty() && !failed) {
        size_t n = std::min(chunk, input.size());
        stream.feed(input.first(n));
        input = input.subspan(n);
        Result result = Result::kOk;
        if (!stream.handshake_done()) {
            result = stream.handshake();
            check_error(stream, result);
            if (result == Result::kOk && shut) stream.shutdown();
        }
        while (result == Result::kOk && stream.handshake_done()) {
            char plain[512];
            size_t got = 0;
            result = stream.read(plain, &got);
            check_error(stream, result);
            if (result == Result::kOk && (got == 0 || got > sizeof(plain)))
                bug("read returned more than asked, or nothing with kOk");
            if (result == Result::kOk && reply) {
                Result written = stream.write({plain, got});
                check_error(stream, written);
                if (written == Result::kError) result = written;
            }
        }
        drain(stream, piece);
        if (result == Result::kError) {
            failed = true;
            if (stream.handshake() != Result::kError) bug("kError did not stay");
        }
    }
    stream.shutdown();
    drain(stream, piece);
    (void)stream.version();
    (void)stream.cipher();
    (void)stream.alpn();
    (void)stream.server_name();
    (void)stream.resumed();
    return 0;
}
