#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <optional>
#include <system_error>
#include <unordered_set>

#include "proxy/frontend/sni_router.hpp"
#include "proxy/tls/tls.hpp"

namespace ringlb::tls {

namespace {

struct CtxFree {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

// Resumption with client certificates needs one (OpenSSL refuses to resume a session whose
// verification it cannot attribute); every context of every listener uses the same: a ticket is
// only ever decrypted by the ServerContext whose random key sealed it.
constexpr unsigned char kSessionIdContext[] = "ringlb";

// The earliest error on OpenSSL's queue names the cause ("No such file or directory", "key
// values mismatch"); the later ones only say which caller gave up. Empties the queue.
std::string openssl_reason() {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return "failed (OpenSSL gave no reason)";
    // ERR_reason_error_string() has no text for errno values (it would need a buffer).
    if (ERR_SYSTEM_ERROR(code))
        return std::error_code(static_cast<int>(ERR_GET_REASON(code)), std::generic_category())
            .message();
    if (const char* reason = ERR_reason_error_string(code)) return reason;
    char text[256];
    ERR_error_string_n(code, text, sizeof(text));
    return text;
}

// "<source>:<line>: <key>: <what>: <reason>", <what> being the file or the value at fault.
[[noreturn]] void fail(const std::string& source, int line, const std::string& key,
                       const std::string& what, const std::string& reason) {
    throw TlsError(source + ":" + std::to_string(line) + ": " + key + ": " + what + ": " + reason);
}

// Without it an encrypted key would make OpenSSL prompt for a passphrase on the terminal, and
// the control thread would wait there; with it the key just fails to load.
int no_passphrase(char*, int, int, void*) {
    return 0;
}

int proto_version(config::TlsVersion version) {
    return version == config::TlsVersion::k1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

// `protocols` in ALPN's wire format: each name behind its length byte.
std::string alpn_wire(const std::vector<std::string>& protocols, const std::string& source,
                      int line) {
    std::string wire;
    for (const std::string& protocol : protocols) {
        if (protocol.empty() || protocol.size() > 255)
            fail(source, line, "tls.alpn", "\"" + protocol + "\"",
                 "a protocol name has 1 to 255 bytes");
        wire.push_back(static_cast<char>(protocol.size()));
        wire += protocol;
    }
    return wire;
}

// What both sides set alike: the lowest version, the cipher lists, and the buffers.
void set_common(SSL_CTX* ctx, config::TlsVersion min_version, const std::string& ciphers,
                const std::string& ciphersuites, const std::string& source, int line) {
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_set_min_proto_version(ctx, proto_version(min_version)) != 1)
        fail(source, line, "tls.min_version", "", openssl_reason());
    if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1)
        fail(source, line, "tls.ciphers", ciphers, openssl_reason());
    if (!ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, ciphersuites.c_str()) != 1)
        fail(source, line, "tls.ciphersuites", ciphersuites, openssl_reason());
    // An idle connection then holds no record buffers (about 34 KiB: 16 KiB of record and
    // overhead each way): OpenSSL frees them whenever they are empty and takes them again for the
    // next record. With thousands of mostly idle connections per shard that is most of the
    // memory TLS would cost.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    // Renegotiation (TLS 1.2) only adds a way to make a server do handshakes on demand.
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
}

// A certificate file and its key on `ctx`: the chain, then the key checked against the leaf.
void use_certificate(SSL_CTX* ctx, const std::string& cert, const std::string& key,
                     const std::string& key_prefix, const std::string& source, int line) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
        fail(source, line, key_prefix + "cert", cert, openssl_reason());
    // A key of the leaf's type that does not match fails here ("key values mismatch").
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
        fail(source, line, key_prefix + "key", key, openssl_reason());
    // A key of another type went into another slot of the context, without a certificate.
    if (SSL_CTX_check_private_key(ctx) != 1)
        fail(source, line, key_prefix + "key", key,
             "does not match the certificate " + cert + " (" + openssl_reason() + ")");
}

std::string utf8(const ASN1_STRING* text) {
    unsigned char* out = nullptr;
    int length = ASN1_STRING_to_UTF8(&out, text);
    if (length < 0) return "";
    std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(length));
    OPENSSL_free(out);
    return result;
}

CertificateInfo describe(const X509* cert, const std::string& path) {
    CertificateInfo info;
    info.path = path;
    const X509_NAME* subject = X509_get_subject_name(cert);
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index >= 0)
        info.subject = utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
    auto* names =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
        const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
        if (name->type != GEN_DNS) continue;
        const ASN1_STRING* dns = name->d.dNSName;
        info.names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                static_cast<size_t>(ASN1_STRING_length(dns)));
    }
    GENERAL_NAMES_free(names);
    // The rule clients check names by (RFC 6125, X509_check_host): the CN counts only when the
    // certificate has no DNS subjectAltName.
    if (info.names.empty() && !info.subject.empty()) info.names.push_back(info.subject);
    struct tm expiry {};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &expiry) == 1) info.not_after = timegm(&expiry);
    return info;
}

std::string lowercase(std::string text) {
    for (char& c : text)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return text;
}

}  // namespace

// --- ServerContext ------------------------------------------------------------------------------

struct ServerContext::Impl {
    std::vector<CtxPtr> contexts;  // one per certificate; [0] the default, on which SSLs start
    std::optional<frontend::SniRouter> router;  // certificate name -> index into contexts
    std::string alpn;                           // ours, in preference order, wire format

    // OpenSSL's servername callback (on contexts[0], at the ClientHello): moves the SSL to the
    // context of the certificate that serves the name.
    static int select_certificate(SSL* ssl, int* alert, void* arg) {
        const auto* impl = static_cast<const Impl*>(arg);
        const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        if (name == nullptr) return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
        std::optional<size_t> index = impl->router->match(name);
        if (!index || *index == 0) return SSL_TLSEXT_ERR_OK;
        // SSL_set_SSL_CTX takes the new context's certificate, trust store (client certificates
        // are checked against ctx->cert_store), client CA list, ALPN callback and cipher lists;
        // the verify mode, options and versions stay those SSL_new copied from contexts[0].
        // Every context is configured alike (configure()), so a client meets the same rules
        // whichever certificate serves it.
        if (SSL_set_SSL_CTX(ssl, impl->contexts[*index].get()) == nullptr) {
            *alert = SSL_AD_INTERNAL_ERROR;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        return SSL_TLSEXT_ERR_OK;
    }

    // The server's first preference that the client offers. Without one the handshake goes on
    // without ALPN rather than failing: HAProxy does the same (SSL_TLSEXT_ERR_NOACK); nginx
    // refuses with a no_application_protocol alert since 1.21.4, as RFC 7301 3.2 asks. ringlb
    // forwards bytes it does not parse, so a client with other protocols still gets through, and
    // the backend decides what it speaks.
    static int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length,
                           const unsigned char* in, unsigned int in_length, void* arg) {
        const std::string& ours = static_cast<const Impl*>(arg)->alpn;
        for (size_t i = 0; i < ours.size(); i += 1 + static_cast<uint8_t>(ours[i])) {
            size_t length = static_cast<uint8_t>(ours[i]);
            const char* name = ours.data() + i + 1;
            for (unsigned int j = 0; j < in_length; j += 1u + in[j]) {
                if (j + 1 + in[j] > in_length) break;  // malformed list: OpenSSL checked already
                if (in[j] == length && std::memcmp(in + j + 1, name, length) == 0) {
                    *out = in + j + 1;
                    *out_length = in[j];
                    return SSL_TLSEXT_ERR_OK;
                }
            }
        }
        return SSL_TLSEXT_ERR_NOACK;
    }

    // Everything but the certificate, the same on every context (see select_certificate()).
    void configure(SSL_CTX* ctx, const config::ListenerTls& tls, const std::string& source) {
        set_common(ctx, tls.min_version, tls.ciphers, tls.ciphersuites, source, tls.line);
        if (!alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, select_alpn, this);
        if (!tls.client_ca.empty()) {
            if (SSL_CTX_load_verify_locations(ctx, tls.client_ca.c_str(), nullptr) != 1)
                fail(source, tls.line, "tls.client_ca", tls.client_ca, openssl_reason());
            // The CA names the CertificateRequest lists, so a client picks a certificate they
            // issued.
            STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca.c_str());
            if (names == nullptr)
                fail(source, tls.line, "tls.client_ca", tls.client_ca, openssl_reason());
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        int verify = SSL_VERIFY_NONE;
        if (tls.verify_client == config::VerifyClient::kOptional) verify = SSL_VERIFY_PEER;
        if (tls.verify_client == config::VerifyClient::kRequire)
            verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, verify, nullptr);
        // The contexts are shared by every shard: OpenSSL's stateful session cache would be one
        // locked table on the data path. Tickets resume statelessly (the key stays in
        // contexts[0], the session context of every SSL).
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext) - 1);
        if (!tls.session_tickets) {
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
            // TLS 1.3 sends stateful tickets under SSL_OP_NO_TICKET, useless without a cache.
            SSL_CTX_set_num_tickets(ctx, 0);
        }
    }
};

ServerContext::ServerContext() : impl_(std::make_unique<Impl>()) {}
ServerContext::~ServerContext() = default;

std::shared_ptr<const ServerContext> ServerContext::load(const config::ListenerTls& tls,
                                                         const std::string& source) {
    std::shared_ptr<ServerContext> context(new ServerContext());
    Impl& impl = *context->impl_;
    ERR_clear_error();
    if (tls.certificates.empty())
        throw TlsError(source + ":" + std::to_string(tls.line) +
                       ": tls.certificates: at least one certificate is needed");
    if (tls.verify_client != config::VerifyClient::kNone && tls.client_ca.empty())
        throw TlsError(source + ":" + std::to_string(tls.line) +
                       ": tls.verify_client: checking client certificates needs tls.client_ca");
    impl.alpn = alpn_wire(tls.alpn, source, tls.line);

    std::vector<frontend::SniRouter::Route> routes;
    std::unordered_set<std::string> names;  // lowercased, as SniRouter compares them
    for (size_t i = 0; i < tls.certificates.size(); ++i) {
        const config::TlsCertificate& certificate = tls.certificates[i];
        std::string prefix = "tls.certificates[" + std::to_string(i) + "].";
        CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
        if (!ctx)
            fail(source, certificate.line, prefix + "cert", certificate.cert, openssl_reason());
        impl.configure(ctx.get(), tls, source);
        use_certificate(ctx.get(), certificate.cert, certificate.key, prefix, source,
                        certificate.line);
        CertificateInfo info = describe(SSL_CTX_get0_certificate(ctx.get()), certificate.cert);
        // A name two certificates serve goes to the first, as the default does for the rest;
        // a name SniRouter cannot take (an IP address in a CN, "*" alone) selects nothing.
        for (const std::string& name : info.names)
            if (frontend::SniRouter::valid_pattern(name, nullptr) &&
                names.insert(lowercase(name)).second)
                routes.push_back({name, i});
        context->certificates_.push_back(std::move(info));
        impl.contexts.push_back(std::move(ctx));
    }
    impl.router.emplace(std::move(routes));
    SSL_CTX_set_tlsext_servername_callback(impl.contexts[0].get(), Impl::select_certificate);
    SSL_CTX_set_tlsext_servername_arg(impl.contexts[0].get(), &impl);
    return context;
}

SSL* ServerContext::new_ssl() const {
    return SSL_new(impl_->contexts[0].get());
}

// --- ClientContext ------------------------------------------------------------------------------

struct ClientContext::Impl {
    CtxPtr ctx;
    std::string sni;
    bool sni_is_ip = false;  // an address literal: checked against the IP subjectAltNames, not sent
    bool verify = true;
};

ClientContext::ClientContext() : impl_(std::make_unique<Impl>()) {}
ClientContext::~ClientContext() = default;

std::shared_ptr<const ClientContext> ClientContext::load(const config::ClusterTls& tls,
                                                         const std::string& source) {
    std::shared_ptr<ClientContext> context(new ClientContext());
    Impl& impl = *context->impl_;
    ERR_clear_error();
    impl.ctx.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX* ctx = impl.ctx.get();
    if (!ctx) fail(source, tls.line, "tls", "", openssl_reason());
    set_common(ctx, tls.min_version, tls.ciphers, tls.ciphersuites, source, tls.line);
    impl.sni = tls.sni;
    in6_addr address;
    impl.sni_is_ip = inet_pton(AF_INET, tls.sni.c_str(), &address) == 1 ||
                     inet_pton(AF_INET6, tls.sni.c_str(), &address) == 1;
    impl.verify = tls.verify;
    if (tls.verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        if (tls.ca.empty()) {
            if (SSL_CTX_set_default_verify_paths(ctx) != 1)
                fail(source, tls.line, "tls.ca", "(the system's trust store)", openssl_reason());
        } else if (SSL_CTX_load_verify_locations(ctx, tls.ca.c_str(), nullptr) != 1) {
            fail(source, tls.line, "tls.ca", tls.ca, openssl_reason());
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (!tls.cert.empty() || !tls.key.empty()) {
        if (tls.cert.empty() || tls.key.empty())
            fail(source, tls.line, tls.cert.empty() ? "tls.key" : "tls.cert",
                 tls.cert.empty() ? tls.key : tls.cert,
                 "a client certificate needs both tls.cert and tls.key");
        use_certificate(ctx, tls.cert, tls.key, "tls.", source, tls.line);
    }
    if (!tls.alpn.empty()) {
        std::string wire = alpn_wire(tls.alpn, source, tls.line);
        // 0 is success here, unlike everywhere else in OpenSSL.
        if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                    static_cast<unsigned int>(wire.size())) != 0)
            fail(source, tls.line, "tls.alpn", "", openssl_reason());
    }
    return context;
}

SSL* ClientContext::new_ssl() const {
    SSL* ssl = SSL_new(impl_->ctx.get());
    if (ssl == nullptr || impl_->sni.empty()) return ssl;
    const char* sni = impl_->sni.c_str();
    bool ok = true;
    if (impl_->sni_is_ip) {
        // RFC 6066 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
        if (impl_->verify) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sni) == 1;
    } else {
        ok = SSL_set_tlsext_host_name(ssl, sni) == 1;
        if (ok && impl_->verify) {
            // "*.example.com" matches, "w*.example.com" does not (RFC 6125 6.4.3 allows the
            // partial form; browsers refuse it).
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(ssl, sni) == 1;
        }
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return nullptr;
    }
    return ssl;
}

}  // namespace ringlb::tls
