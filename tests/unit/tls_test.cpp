// proxy/tls against itself, in memory: a server Stream and a client Stream, the ciphertext one
// produces fed to the other. Certificates are made once for the suite with the openssl command
// (EC P-256 keys, so it takes a moment): a CA, server certificates for a.example.test,
// *.wild.example.test, default.example.test and a CN-only name, a client certificate, a
// self-signed a.example.test and a second CA nobody trusts.

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "proxy/tls/tls.hpp"

namespace ringlb::tls {
namespace {

using Result = Stream::Result;

constexpr const char* kSource = "test.toml";

std::string run_output(const std::string& command) {
    std::string out;
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return out;
    char buffer[512];
    while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
    pclose(pipe);
    return out;
}

class TlsTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        char dir[] = "/tmp/ringlb-tls-test-XXXXXX";
        if (mkdtemp(dir) == nullptr) {
            error_ = "mkdtemp failed";
            return;
        }
        dir_ = dir;
        // No extensions besides the ones given: `openssl req -x509` would otherwise mark every
        // certificate as a CA.
        std::ofstream(path("min.cnf")) << "[req]\ndistinguished_name=dn\n[dn]\n";
        const std::string req = "openssl req -config " + path("min.cnf") +
                                " -x509 -days 30 -nodes -newkey ec -pkeyopt "
                                "ec_paramgen_curve:P-256 ";
        auto ca = [&](const std::string& name, const std::string& cn) {
            return req + "-keyout " + path(name + ".key") + " -out " + path(name + ".pem") +
                   " -subj '/CN=" + cn +
                   "' -addext basicConstraints=critical,CA:TRUE -addext "
                   "keyUsage=critical,keyCertSign,cRLSign";
        };
        auto leaf = [&](const std::string& name, const std::string& issuer, const std::string& cn,
                        const std::string& extensions) {
            std::string signer = issuer.empty() ? ""
                                                : "-CA " + path(issuer + ".pem") + " -CAkey " +
                                                      path(issuer + ".key") + " ";
            return req + signer + "-keyout " + path(name + ".key") + " -out " +
                   path(name + ".pem") + " -subj '/CN=" + cn + "' " + extensions;
        };
        const std::vector<std::string> commands = {
            ca("ca", "ringlb test CA"),
            ca("other_ca", "ringlb untrusted CA"),
            leaf("default", "ca", "default.example.test",
                 "-addext subjectAltName=DNS:default.example.test"),
            leaf("a", "ca", "a.example.test", "-addext subjectAltName=DNS:a.example.test"),
            leaf("wild", "ca", "wild", "-addext subjectAltName=DNS:*.wild.example.test"),
            leaf("cn_only", "ca", "cn-only.example.test", ""),
            leaf("client", "ca", "ringlb test client", "-addext extendedKeyUsage=clientAuth"),
            leaf("other_client", "other_ca", "untrusted client",
                 "-addext extendedKeyUsage=clientAuth"),
            leaf("self", "", "a.example.test", "-addext subjectAltName=DNS:a.example.test"),
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + path("rsa.key"),
            "openssl pkey -in " + path("a.key") + " -aes128 -passout pass:secret -out " +
                path("encrypted.key"),
        };
        for (const std::string& command : commands) {
            if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
                error_ = "failed: " + command;
                return;
            }
        }
    }

    static void TearDownTestSuite() {
        if (!dir_.empty()) std::filesystem::remove_all(dir_);
    }

    void SetUp() override {
        if (!error_.empty()) GTEST_FAIL() << error_;
    }

    static std::string path(const std::string& name) { return dir_ + "/" + name; }

    // A listener's tls with the named certificates (name.pem, name.key), the first the default.
    static config::ListenerTls server_config(const std::vector<std::string>& names) {
        config::ListenerTls tls;
        tls.enabled = true;
        tls.line = 3;
        int line = 4;
        for (const std::string& name : names)
            tls.certificates.push_back({path(name + ".pem"), path(name + ".key"), line++});
        return tls;
    }

    // A cluster's tls checking the server against the test CA.
    static config::ClusterTls client_config(const std::string& sni) {
        config::ClusterTls tls;
        tls.enabled = true;
        tls.line = 20;
        tls.sni = sni;
        tls.ca = path("ca.pem");
        return tls;
    }

    static std::string error_;
    static std::string dir_;
};

std::string TlsTest::error_;
std::string TlsTest::dir_;

// One connection: both ends, and their SSLs for what the test looks at through OpenSSL itself.
struct Pair {
    SSL* server_ssl = nullptr;
    SSL* client_ssl = nullptr;
    std::unique_ptr<Stream> server;
    std::unique_ptr<Stream> client;
};

// `tweak` adjusts the client's SSL before its Stream starts (a version cap, a session).
Pair open_pair(const ServerContext& server, const ClientContext& client,
               const std::function<void(SSL*)>& tweak = {}) {
    Pair pair;
    pair.server_ssl = server.new_ssl();
    pair.client_ssl = client.new_ssl();
    if (tweak && pair.client_ssl) tweak(pair.client_ssl);
    pair.server = std::make_unique<Stream>(pair.server_ssl, true);
    pair.client = std::make_unique<Stream>(pair.client_ssl, false);
    return pair;
}

void max_tls12(SSL* ssl) {
    SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
}

// Moves what `from` has to send into `to`; whether anything moved.
bool shuttle(Stream& from, Stream& to) {
    bool moved = false;
    char buffer[4096];
    while (size_t n = from.take_output(buffer)) {
        to.feed({buffer, n});
        moved = true;
    }
    return moved;
}

struct Outcome {
    Result server;
    Result client;
};

// Runs both handshakes until neither has anything left to say.
Outcome handshake(Pair& pair) {
    Outcome outcome{Result::kWantRead, Result::kWantRead};
    for (int round = 0; round < 10; ++round) {
        if (outcome.client == Result::kWantRead) outcome.client = pair.client->handshake();
        bool moved = shuttle(*pair.client, *pair.server);
        if (outcome.server == Result::kWantRead) outcome.server = pair.server->handshake();
        moved |= shuttle(*pair.server, *pair.client);
        if (!moved) break;
    }
    return outcome;
}

// Reads until `stream` wants more; the last result in *last.
std::string read_available(Stream& stream, Result* last, size_t piece = 16384) {
    std::string got;
    std::vector<char> buffer(piece);
    for (;;) {
        size_t n = 0;
        Result result = stream.read(buffer, &n);
        if (result != Result::kOk) {
            *last = result;
            return got;
        }
        EXPECT_GT(n, 0u);
        got.append(buffer.data(), n);
    }
}

std::string served_cn(SSL* client_ssl) {
    X509* cert = SSL_get0_peer_certificate(client_ssl);
    if (cert == nullptr) return "";
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    return cn;
}

TEST_F(TlsTest, HandshakeInMemory) {
    auto server = ServerContext::load(server_config({"default"}), kSource);
    auto client = ClientContext::load(client_config("default.example.test"), kSource);
    for (bool tls12 : {false, true}) {
        SCOPED_TRACE(tls12 ? "TLS 1.2" : "TLS 1.3");
        Pair pair = open_pair(*server, *client, tls12 ? max_tls12 : nullptr);
        ASSERT_NE(pair.server_ssl, nullptr);
        ASSERT_NE(pair.client_ssl, nullptr);
        EXPECT_FALSE(pair.server->handshake_done());
        Outcome outcome = handshake(pair);
        ASSERT_EQ(outcome.server, Result::kOk) << pair.server->error();
        ASSERT_EQ(outcome.client, Result::kOk) << pair.client->error();
        EXPECT_TRUE(pair.server->handshake_done());
        EXPECT_TRUE(pair.client->handshake_done());
        EXPECT_STREQ(pair.server->version(), tls12 ? "TLSv1.2" : "TLSv1.3");
        EXPECT_STREQ(pair.client->version(), pair.server->version());
        EXPECT_STREQ(pair.server->cipher(), pair.client->cipher());
        EXPECT_NE(std::string(pair.server->cipher()), "(NONE)");
        EXPECT_EQ(pair.server->server_name(), "default.example.test");
        EXPECT_EQ(pair.client->server_name(), "");  // server side only
        EXPECT_EQ(pair.server->alpn(), "");
        EXPECT_FALSE(pair.server->resumed());
        EXPECT_EQ(pair.server->failure(), Failure::kNone);
        EXPECT_EQ(pair.server->error(), "");
    }
}

TEST_F(TlsTest, SniPicksExactThenWildcardThenDefault) {
    auto server = ServerContext::load(server_config({"default", "a", "wild", "cn_only"}), kSource);
    struct Case {
        const char* sni;
        const char* cn;  // of the certificate served
    };
    for (const Case& c :
         {Case{"a.example.test", "a.example.test"}, Case{"A.Example.TEST", "a.example.test"},
          Case{"x.wild.example.test", "wild"}, Case{"default.example.test", "default.example.test"},
          Case{"cn-only.example.test", "cn-only.example.test"}}) {
        SCOPED_TRACE(c.sni);
        // With the name checked, a wrong certificate would fail the client's handshake.
        auto client = ClientContext::load(client_config(c.sni), kSource);
        Pair pair = open_pair(*server, *client);
        Outcome outcome = handshake(pair);
        ASSERT_EQ(outcome.client, Result::kOk) << pair.client->error();
        ASSERT_EQ(outcome.server, Result::kOk) << pair.server->error();
        EXPECT_EQ(served_cn(pair.client_ssl), c.cn);
        EXPECT_EQ(pair.server->server_name(), c.sni);
    }
    // No certificate names these: the default serves (a client that checks nothing sees it),
    // and a client checking the name refuses it.
    for (const char* sni : {"b.example.test", "wild.example.test", "", "127.0.0.1"}) {
        SCOPED_TRACE(sni);
        config::ClusterTls tls = client_config(sni);
        tls.verify = false;
        auto lax = ClientContext::load(tls, kSource);
        Pair pair = open_pair(*server, *lax);
        Outcome outcome = handshake(pair);
        ASSERT_EQ(outcome.client, Result::kOk) << pair.client->error();
        EXPECT_EQ(served_cn(pair.client_ssl), "default.example.test");
        if (std::string(sni).empty()) continue;  // nothing to check the name against
        auto client = ClientContext::load(client_config(sni), kSource);
        Pair refused = open_pair(*server, *client);
        outcome = handshake(refused);
        EXPECT_EQ(outcome.client, Result::kError);
        EXPECT_EQ(refused.client->failure(), Failure::kCertificate);
        EXPECT_NE(refused.client->error().find("mismatch"), std::string::npos)
            << refused.client->error();
    }
}

TEST_F(TlsTest, NameOfTwoCertificatesGoesToTheFirst) {
    // self.pem also names a.example.test, but no client trusts it.
    auto client = ClientContext::load(client_config("a.example.test"), kSource);
    for (bool trusted_first : {true, false}) {
        std::vector<std::string> names = {"default", "a", "self"};
        if (!trusted_first) std::swap(names[1], names[2]);
        std::shared_ptr<const ServerContext> server;
        ASSERT_NO_THROW(server = ServerContext::load(server_config(names), kSource));
        Pair pair = open_pair(*server, *client);
        Outcome outcome = handshake(pair);
        EXPECT_EQ(outcome.client, trusted_first ? Result::kOk : Result::kError)
            << pair.client->error();
    }
}

// Writes `data` into `from` in chunks of random sizes, moving ciphertext now and then and
// reading on `to` in pieces of random sizes; returns what `to` read.
std::string transfer(Stream& from, Stream& to, const std::string& data, std::mt19937& rng) {
    std::string got;
    std::uniform_int_distribution<size_t> chunk(1, 40000);
    std::vector<char> buffer(65536);
    size_t pos = 0;
    while (pos < data.size() || from.pending_output() > 0 || to.buffered_input() > 0) {
        if (pos < data.size()) {
            size_t n = std::min(chunk(rng), data.size() - pos);
            EXPECT_EQ(from.write({data.data() + pos, n}), Result::kOk) << from.error();
            pos += n;
        }
        // Move a part of the ciphertext: records arrive split.
        size_t move = std::min(chunk(rng), from.pending_output());
        std::vector<char> wire(move);
        wire.resize(from.take_output(wire));
        to.feed(wire);
        for (;;) {
            size_t n = 0;
            Result result = to.read({buffer.data(), chunk(rng) % buffer.size() + 1}, &n);
            if (result != Result::kOk) {
                EXPECT_EQ(result, Result::kWantRead) << to.error();
                break;
            }
            got.append(buffer.data(), n);
        }
        if (pos == data.size() && move == 0 && to.buffered_input() > 0) break;  // stuck
    }
    return got;
}

TEST_F(TlsTest, BytesBothWaysExact) {
    auto server = ServerContext::load(server_config({"default"}), kSource);
    auto client = ClientContext::load(client_config("default.example.test"), kSource);
    std::mt19937 rng(7);
    std::string up(1 << 20, '\0');
    std::string down(1 << 20, '\0');
    for (char& c : up) c = static_cast<char>(rng());
    for (char& c : down) c = static_cast<char>(rng());
    for (bool tls12 : {false, true}) {
        SCOPED_TRACE(tls12 ? "TLS 1.2" : "TLS 1.3");
        Pair pair = open_pair(*server, *client, tls12 ? max_tls12 : nullptr);
        Outcome outcome = handshake(pair);
        ASSERT_EQ(outcome.server, Result::kOk) << pair.server->error();
        ASSERT_EQ(outcome.client, Result::kOk) << pair.client->error();
        EXPECT_TRUE(transfer(*pair.client, *pair.server, up, rng) == up);
        EXPECT_TRUE(transfer(*pair.server, *pair.client, down, rng) == down);
        EXPECT_EQ(pair.server->pending_output(), 0u);
        EXPECT_EQ(pair.server->buffered_input(), 0u);
    }
}

TEST_F(TlsTest, CloseNotifyHalfClosesBothWays) {
    auto server = ServerContext::load(server_config({"default"}), kSource);
    auto client = ClientContext::load(client_config("default.example.test"), kSource);
    for (bool tls12 : {false, true}) {
        for (bool client_first : {true, false}) {
            SCOPED_TRACE(std::string(tls12 ? "TLS 1.2" : "TLS 1.3") +
                         (client_first ? ", client shuts first" : ", server shuts first"));
            Pair pair = open_pair(*server, *client, tls12 ? max_tls12 : nullptr);
            Outcome outcome = handshake(pair);
            ASSERT_EQ(outcome.server, Result::kOk) << pair.server->error();
            ASSERT_EQ(outcome.client, Result::kOk) << pair.client->error();
            Stream& first = client_first ? *pair.client : *pair.server;
            Stream& second = client_first ? *pair.server : *pair.client;

            ASSERT_EQ(first.write(std::string_view("last words")), Result::kOk);
            EXPECT_FALSE(first.shutdown_sent());
            first.shutdown();
            EXPECT_TRUE(first.shutdown_sent());
            first.shutdown();  // once: a second call queues nothing
            shuttle(first, second);
            Result last = Result::kOk;
            EXPECT_EQ(read_available(second, &last), "last words");
            EXPECT_EQ(last, Result::kClosed);
            EXPECT_EQ(read_available(second, &last), "");  // and stays closed
            EXPECT_EQ(last, Result::kClosed);

            // The other direction is still open: the first reads what the second still sends.
            std::string reply(100000, 'r');
            ASSERT_EQ(second.write(reply), Result::kOk) << second.error();
            shuttle(second, first);
            EXPECT_EQ(read_available(first, &last, 1000), reply);
            EXPECT_EQ(last, Result::kWantRead) << first.error();
            second.shutdown();
            EXPECT_TRUE(second.shutdown_sent());
            shuttle(second, first);
            EXPECT_EQ(read_available(first, &last), "");
            EXPECT_EQ(last, Result::kClosed) << first.error();
            EXPECT_EQ(first.failure(), Failure::kNone);
            EXPECT_EQ(second.failure(), Failure::kNone);
        }
    }
}

TEST_F(TlsTest, ShutdownBeforeHandshakeSendsNothing) {
    auto server = ServerContext::load(server_config({"default"}), kSource);
    auto client = ClientContext::load(client_config("default.example.test"), kSource);
    Pair pair = open_pair(*server, *client);
    EXPECT_EQ(pair.client->handshake(), Result::kWantRead);
    size_t hello = pair.client->pending_output();
    pair.client->shutdown();
    EXPECT_FALSE(pair.client->shutdown_sent());
    EXPECT_EQ(pair.client->pending_output(), hello);
    // A write before the handshake is done drives it and takes nothing.
    EXPECT_EQ(pair.client->write(std::string_view("early")), Result::kWantRead);
}

TEST_F(TlsTest, AlpnPicksTheServersFirstPreference) {
    config::ListenerTls tls = server_config({"default", "a"});
    tls.alpn = {"h2", "http/1.1"};
    auto server = ServerContext::load(tls, kSource);
    struct Case {
        std::vector<std::string> offered;
        const char* sni;
        const char* picked;
    };
    for (const Case& c : {Case{{"http/1.1", "h2"}, "default.example.test", "h2"},
                          Case{{"http/1.1", "h2"}, "a.example.test", "h2"},  // not the default
                          Case{{"http/1.1"}, "a.example.test", "http/1.1"},
                          Case{{"x", "http/1.1", "y"}, "default.example.test", "http/1.1"},
                          Case{{"imap"}, "a.example.test", ""},  // no overlap: no ALPN
                          Case{{}, "a.example.test", ""}}) {
        SCOPED_TRACE(std::string(c.sni) + " " + std::to_string(c.offered.size()));
        config::ClusterTls cluster = client_config(c.sni);
        cluster.alpn = c.offered;
        auto client = ClientContext::load(cluster, kSource);
        Pair pair = open_pair(*server, *client);
        Outcome outcome = handshake(pair);
        ASSERT_EQ(outcome.server, Result::kOk) << pair.server->error();
        ASSERT_EQ(outcome.client, Result::kOk) << pair.client->error();
        EXPECT_EQ(pair.server->alpn(), c.picked);
        EXPECT_EQ(pair.client->alpn(), c.picked);
    }
}

TEST_F(TlsTest, ClientCertificateRequired) {
    config::ListenerTls tls = server_config({"default", "a"});
    tls.client_ca = path("ca.pem");
    tls.verify_client = config::VerifyClient::kRequire;
    auto server = ServerContext::load(tls, kSource);
    // Both certificates: the rule must hold after the servername callback swapped the context.
    for (const char* sni : {"default.example.test", "a.example.test"}) {
        for (bool tls12 : {false, true}) {
            SCOPED_TRACE(std::string(sni) + (tls12 ? " TLS 1.2" : " TLS 1.3"));
            auto bare = ClientContext::load(client_config(sni), kSource);
            Pair pair = open_pair(*server, *bare, tls12 ? max_tls12 : nullptr);
            Outcome outcome = handshake(pair);
            EXPECT_EQ(outcome.server, Result::kError);
            EXPECT_EQ(pair.server->failure(), Failure::kCertificate) << pair.server->error();
            if (!tls12) {
                // TLS 1.3: the client's handshake ended before the server judged it; the alert
                // comes with its first read.
                ASSERT_EQ(outcome.client, Result::kOk);
                Result last = Result::kOk;
                read_available(*pair.client, &last);
                EXPECT_EQ(last, Result::kError);
                EXPECT_EQ(pair.client->failure(), Failure::kCertificate) << pair.client->error();
            }

            config::ClusterTls with_cert = client_config(sni);
            with_cert.cert = path("client.pem");
            with_cert.key = path("client.key");
            auto client = ClientContext::load(with_cert, kSource);
            Pair ok = open_pair(*server, *client, tls12 ? max_tls12 : nullptr);
            outcome = handshake(ok);
            EXPECT_EQ(outcome.server, Result::kOk) << ok.server->error();
            EXPECT_EQ(outcome.client, Result::kOk) << ok.client->error();
            EXPECT_EQ(served_cn(ok.client_ssl), sni);

            config::ClusterTls untrusted = with_cert;
            untrusted.cert = path("other_client.pem");
            untrusted.key = path("other_client.key");
            auto stranger = ClientContext::load(untrusted, kSource);
            Pair refused = open_pair(*server, *stranger, tls12 ? max_tls12 : nullptr);
            outcome = handshake(refused);
            EXPECT_EQ(outcome.server, Result::kError);
            EXPECT_EQ(refused.server->failure(), Failure::kCertificate);
            EXPECT_NE(refused.server->error().find("certificate verify failed"), std::string::npos)
                << refused.server->error();
        }
    }
}

TEST_F(TlsTest, ClientCertificateOptional) {
    config::ListenerTls tls = server_config({"default", "a"});
    tls.client_ca = path("ca.pem");
    tls.verify_client = config::VerifyClient::kOptional;
    auto server = ServerContext::load(tls, kSource);
    auto bare = ClientContext::load(client_config("a.example.test"), kSource);
    Pair pair = open_pair(*server, *bare);
    Outcome outcome = handshake(pair);
    EXPECT_EQ(outcome.server, Result::kOk) << pair.server->error();
    EXPECT_EQ(outcome.client, Result::kOk) << pair.client->error();
    // One that is sent must still verify.
    config::ClusterTls untrusted = client_config("a.example.test");
    untrusted.cert = path("other_client.pem");
    untrusted.key = path("other_client.key");
    auto stranger = ClientContext::load(untrusted, kSource);
    Pair refused = open_pair(*server, *stranger);
    outcome = handshake(refused);
    EXPECT_EQ(outcome.server, Result::kError);
    EXPECT_EQ(refused.server->failure(), Failure::kCertificate);
}

TEST_F(TlsTest, ClientRefusesAnUnknownIssuer) {
    // A self-signed a.example.test.
    auto self = ServerContext::load(server_config({"self"}), kSource);
    auto client = ClientContext::load(client_config("a.example.test"), kSource);
    Pair pair = open_pair(*self, *client);
    Outcome outcome = handshake(pair);
    EXPECT_EQ(outcome.client, Result::kError);
    EXPECT_EQ(pair.client->failure(), Failure::kCertificate);
    EXPECT_NE(pair.client->error().find("self-signed"), std::string::npos) << pair.client->error();
    // The client's alert reaches the server: its certificate was refused.
    EXPECT_EQ(outcome.server, Result::kError);
    EXPECT_EQ(pair.server->failure(), Failure::kCertificate) << pair.server->error();

    // A chain to a CA the client does not trust.
    auto server = ServerContext::load(server_config({"a"}), kSource);
    config::ClusterTls other = client_config("a.example.test");
    other.ca = path("other_ca.pem");
    auto distrustful = ClientContext::load(other, kSource);
    Pair refused = open_pair(*server, *distrustful);
    outcome = handshake(refused);
    EXPECT_EQ(outcome.client, Result::kError);
    EXPECT_EQ(refused.client->failure(), Failure::kCertificate);
    EXPECT_NE(refused.client->error().find("issuer"), std::string::npos) << refused.client->error();

    // Without verify anything goes.
    config::ClusterTls lax = client_config("a.example.test");
    lax.verify = false;
    auto trusting = ClientContext::load(lax, kSource);
    Pair accepted = open_pair(*self, *trusting);
    outcome = handshake(accepted);
    EXPECT_EQ(outcome.client, Result::kOk) << accepted.client->error();
    EXPECT_EQ(outcome.server, Result::kOk) << accepted.server->error();
}

TEST_F(TlsTest, GarbageIsAProtocolError) {
    auto server = ServerContext::load(server_config({"default"}), kSource);
    auto client = ClientContext::load(client_config("default.example.test"), kSource);
    Pair pair = open_pair(*server, *client);
    pair.server->feed(std::string_view("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_EQ(pair.server->handshake(), Result::kError);
    EXPECT_EQ(pair.server->failure(), Failure::kProtocol);
    EXPECT_FALSE(pair.server->error().empty());
    size_t n = 1;
    char buffer[16];
    EXPECT_EQ(pair.server->read(buffer, &n), Result::kError);  // stays failed
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(pair.server->write(std::string_view("x")), Result::kError);

    // A client given garbage for a ServerHello.
    EXPECT_EQ(pair.client->handshake(), Result::kWantRead);
    pair.client->feed(std::string_view("\x16\x03\x03\x00\x04\x02\x00\x00\x00", 9));
    EXPECT_EQ(pair.client->handshake(), Result::kError);
    EXPECT_EQ(pair.client->failure(), Failure::kProtocol);
    EXPECT_GT(pair.client->pending_output(), 0u);  // the alert
}

TEST_F(TlsTest, NullSslFailsCleanly) {
    Stream stream(nullptr, true);
    EXPECT_EQ(stream.handshake(), Result::kError);
    EXPECT_EQ(stream.failure(), Failure::kProtocol);
    stream.feed(std::string_view("x"));
    EXPECT_EQ(stream.buffered_input(), 0u);
    stream.shutdown();
    EXPECT_FALSE(stream.shutdown_sent());
    EXPECT_EQ(stream.pending_output(), 0u);
    EXPECT_STREQ(stream.version(), "");
}

TEST_F(TlsTest, SessionSetFailureIsSticky) {
    auto server = ServerContext::load(server_config({"default"}), kSource);
    Stream stream(server->new_ssl(), true);
    EXPECT_EQ(stream.handshake(), Result::kWantRead);
    stream.set_failure(Failure::kClosed);
    EXPECT_EQ(stream.failure(), Failure::kClosed);
    EXPECT_EQ(stream.handshake(), Result::kError);
}

// A first connection's session, taken after the client read the server's tickets.
SSL_SESSION* first_session(const ServerContext& server, const ClientContext& client, bool tls12) {
    Pair pair = open_pair(server, client, tls12 ? max_tls12 : nullptr);
    Outcome outcome = handshake(pair);
    EXPECT_EQ(outcome.server, Result::kOk) << pair.server->error();
    EXPECT_EQ(outcome.client, Result::kOk) << pair.client->error();
    Result last = Result::kOk;
    read_available(*pair.client, &last);  // TLS 1.3 tickets arrive after the handshake
    EXPECT_EQ(last, Result::kWantRead);
    // SSL_free() marks the session of a connection that did not send its close_notify as not
    // resumable.
    pair.client->shutdown();
    return SSL_get1_session(pair.client_ssl);
}

TEST_F(TlsTest, SessionTicketsResume) {
    for (bool tickets : {true, false}) {
        for (bool mtls : {false, true}) {
            for (bool tls12 : {false, true}) {
                SCOPED_TRACE(std::string(tickets ? "tickets" : "no tickets") +
                             (mtls ? ", client certificate" : "") + (tls12 ? ", TLS 1.2" : ""));
                config::ListenerTls tls = server_config({"default", "a"});
                tls.session_tickets = tickets;
                config::ClusterTls cluster = client_config("a.example.test");
                if (mtls) {
                    tls.client_ca = path("ca.pem");
                    tls.verify_client = config::VerifyClient::kRequire;
                    cluster.cert = path("client.pem");
                    cluster.key = path("client.key");
                }
                auto server = ServerContext::load(tls, kSource);
                auto client = ClientContext::load(cluster, kSource);
                SSL_SESSION* session = first_session(*server, *client, tls12);
                ASSERT_NE(session, nullptr);
                EXPECT_EQ(SSL_SESSION_is_resumable(session) == 1, tickets);
                Pair again = open_pair(*server, *client, [&](SSL* ssl) {
                    if (tls12) max_tls12(ssl);
                    SSL_set_session(ssl, session);
                });
                SSL_SESSION_free(session);
                Outcome outcome = handshake(again);
                EXPECT_EQ(outcome.server, Result::kOk) << again.server->error();
                EXPECT_EQ(outcome.client, Result::kOk) << again.client->error();
                EXPECT_EQ(again.server->resumed(), tickets);
                EXPECT_EQ(again.client->resumed(), tickets);
            }
        }
    }
}

TEST_F(TlsTest, CertificateInfo) {
    auto server = ServerContext::load(server_config({"a", "wild", "cn_only"}), kSource);
    const std::vector<CertificateInfo>& infos = server->certificates();
    ASSERT_EQ(infos.size(), 3u);
    EXPECT_EQ(infos[0].path, path("a.pem"));
    EXPECT_EQ(infos[0].subject, "a.example.test");
    EXPECT_EQ(infos[0].names, std::vector<std::string>{"a.example.test"});
    EXPECT_EQ(infos[1].subject, "wild");  // a CN beside subjectAltNames is not a name
    EXPECT_EQ(infos[1].names, std::vector<std::string>{"*.wild.example.test"});
    EXPECT_EQ(infos[2].names, std::vector<std::string>{"cn-only.example.test"});
    for (const CertificateInfo& info : infos) {
        // "notAfter=Jan  2 02:10:00 2027 GMT"
        std::string end = run_output("openssl x509 -noout -enddate -in " + info.path);
        struct tm tm {};
        ASSERT_TRUE(end.starts_with("notAfter=")) << end;
        ASSERT_NE(strptime(end.c_str() + 9, "%b %d %H:%M:%S %Y GMT", &tm), nullptr) << end;
        EXPECT_EQ(info.not_after, timegm(&tm)) << end;
    }
}

// what() of the TlsError `load` throws, "" without one.
template <typename Load>
std::string load_error(Load load) {
    try {
        load();
    } catch (const TlsError& e) {
        return e.what();
    }
    return "";
}

TEST_F(TlsTest, ServerLoadErrorsNameTheKeyAndFile) {
    auto server_error = [](const config::ListenerTls& tls) {
        return load_error([&] { ServerContext::load(tls, kSource); });
    };
    config::ListenerTls missing = server_config({"default", "a"});
    missing.certificates[1].cert = path("nope.pem");
    EXPECT_EQ(server_error(missing), "test.toml:5: tls.certificates[1].cert: " + path("nope.pem") +
                                         ": No such file or directory");

    config::ListenerTls no_key = server_config({"default"});
    no_key.certificates[0].key = path("nope.key");
    EXPECT_EQ(server_error(no_key), "test.toml:4: tls.certificates[0].key: " + path("nope.key") +
                                        ": No such file or directory");

    config::ListenerTls mismatch = server_config({"a"});
    mismatch.certificates[0].key = path("default.key");
    EXPECT_EQ(server_error(mismatch), "test.toml:4: tls.certificates[0].key: " +
                                          path("default.key") + ": key values mismatch");

    config::ListenerTls other_type = server_config({"a"});  // an RSA key, an EC certificate
    other_type.certificates[0].key = path("rsa.key");
    std::string error = server_error(other_type);
    EXPECT_TRUE(error.starts_with("test.toml:4: tls.certificates[0].key: " + path("rsa.key") +
                                  ": does not match the certificate " + path("a.pem")))
        << error;

    config::ListenerTls encrypted = server_config({"a"});  // fails; never asks for a passphrase
    encrypted.certificates[0].key = path("encrypted.key");
    error = server_error(encrypted);
    EXPECT_TRUE(
        error.starts_with("test.toml:4: tls.certificates[0].key: " + path("encrypted.key") + ": "))
        << error;

    config::ListenerTls not_pem = server_config({"a"});  // a key where the certificate goes
    not_pem.certificates[0].cert = path("a.key");
    error = server_error(not_pem);
    EXPECT_TRUE(error.starts_with("test.toml:4: tls.certificates[0].cert: " + path("a.key") + ": "))
        << error;

    config::ListenerTls ciphers = server_config({"a"});
    ciphers.ciphers = "NOPE:ALSO-NOPE";
    EXPECT_EQ(server_error(ciphers), "test.toml:3: tls.ciphers: NOPE:ALSO-NOPE: no cipher match");
    config::ListenerTls suites = server_config({"a"});
    suites.ciphersuites = "TLS_NOPE";
    EXPECT_EQ(server_error(suites), "test.toml:3: tls.ciphersuites: TLS_NOPE: no cipher match");

    config::ListenerTls ca = server_config({"a"});
    ca.client_ca = path("nope-ca.pem");
    ca.verify_client = config::VerifyClient::kRequire;
    error = server_error(ca);
    EXPECT_TRUE(error.starts_with("test.toml:3: tls.client_ca: " + path("nope-ca.pem") + ": "))
        << error;
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;

    config::ListenerTls no_ca = server_config({"a"});
    no_ca.verify_client = config::VerifyClient::kOptional;
    EXPECT_NE(server_error(no_ca).find("tls.verify_client"), std::string::npos);

    config::ListenerTls alpn = server_config({"a"});
    alpn.alpn = {"h2", ""};
    EXPECT_EQ(server_error(alpn),
              "test.toml:3: tls.alpn: \"\": a protocol name has 1 to 255 bytes");

    EXPECT_NE(server_error(server_config({})).find("tls.certificates"), std::string::npos);
}

TEST_F(TlsTest, ClientLoadErrorsNameTheKeyAndFile) {
    auto client_error = [](const config::ClusterTls& tls) {
        return load_error([&] { ClientContext::load(tls, kSource); });
    };
    config::ClusterTls ca = client_config("a.example.test");
    ca.ca = path("nope.pem");
    std::string error = client_error(ca);
    EXPECT_TRUE(error.starts_with("test.toml:20: tls.ca: " + path("nope.pem") + ": ")) << error;
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;

    config::ClusterTls mismatch = client_config("a.example.test");
    mismatch.cert = path("client.pem");
    mismatch.key = path("a.key");
    EXPECT_EQ(client_error(mismatch),
              "test.toml:20: tls.key: " + path("a.key") + ": key values mismatch");

    config::ClusterTls half = client_config("a.example.test");
    half.cert = path("client.pem");
    EXPECT_NE(client_error(half).find("tls.cert"), std::string::npos);

    config::ClusterTls ciphers = client_config("a.example.test");
    ciphers.ciphers = "NOPE";
    EXPECT_EQ(client_error(ciphers), "test.toml:20: tls.ciphers: NOPE: no cipher match");

    // The system's trust store when `ca` is empty; its absence is no load error.
    config::ClusterTls system = client_config("a.example.test");
    system.ca = "";
    EXPECT_EQ(client_error(system), "");
}

}  // namespace
}  // namespace ringlb::tls
