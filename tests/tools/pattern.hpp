#pragma once

// The byte pattern and the hash-mode wire protocol shared by ringlb-echo and the integration
// test clients. Both sides regenerate the same bytes from a seed, so neither has to store what it
// sent to check what came back, and a mismatch can be reported at its exact offset.
//
// Hash mode (ringlb-echo --mode hash):
//   client -> backend: 8-byte big-endian N, then a payload of any length, then EOF (SHUT_WR).
//   backend -> client: N bytes of pattern(kBackendPatternSeed), then, once it has both sent those
//   and seen the client's EOF, a 40-byte trailer: SHA-256 of the payload it received (header
//   excluded) followed by the payload length as 8-byte big-endian; then it closes.

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace ringlb::tools {

inline constexpr uint64_t kBackendPatternSeed = 0x72696e676c622d65ULL;  // "ringlb-e"
inline constexpr size_t kHashHeaderSize = 8;
inline constexpr size_t kSha256Size = 32;
inline constexpr size_t kHashTrailerSize = kSha256Size + 8;

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// One 8-byte block of the stream. Blocks are independent, so any window of the stream can be
// generated directly from its offset (a partial send just regenerates from the new offset).
inline uint64_t pattern_block(uint64_t seed, uint64_t block) {
    return splitmix64(seed * 0xd1b54a32d192ed03ULL ^ block);
}

// Writes bytes [offset, offset + n) of the stream for `seed`; byte i of a block is bits 8i..8i+7.
inline void pattern_fill(uint64_t seed, uint64_t offset, uint8_t* out, size_t n) {
    uint64_t block = offset / 8;
    size_t skip = static_cast<size_t>(offset % 8);
    while (n > 0) {
        uint64_t word = pattern_block(seed, block++);
        if (skip == 0 && n >= 8) {
            for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(word >> (8 * i));
            out += 8;
            n -= 8;
            continue;
        }
        for (size_t i = skip; i < 8 && n > 0; ++i, --n)
            *out++ = static_cast<uint8_t>(word >> (8 * i));
        skip = 0;
    }
}

// Index of the first byte of `data` that differs from the stream at `offset`, or n if all match.
inline size_t pattern_mismatch(uint64_t seed, uint64_t offset, const uint8_t* data, size_t n) {
    uint8_t expected[4096];
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < sizeof(expected) ? n - done : sizeof(expected);
        pattern_fill(seed, offset + done, expected, chunk);
        if (std::memcmp(expected, data + done, chunk) != 0) {
            for (size_t i = 0; i < chunk; ++i)
                if (expected[i] != data[done + i]) return done + i;
        }
        done += chunk;
    }
    return n;
}

inline void put_be64(uint8_t* out, uint64_t value) {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<uint8_t>(value);
        value >>= 8;
    }
}

inline uint64_t get_be64(const uint8_t* in) {
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = (value << 8) | in[i];
    return value;
}

// Incremental SHA-256 over OpenSSL EVP.
class Sha256 {
  public:
    Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }

    void update(const void* data, size_t n) {
        if (n > 0) EVP_DigestUpdate(ctx_.get(), data, n);
    }
    std::array<uint8_t, kSha256Size> finish() {
        std::array<uint8_t, kSha256Size> digest{};
        unsigned int length = 0;
        EVP_DigestFinal_ex(ctx_.get(), digest.data(), &length);
        return digest;
    }

  private:
    struct Free {
        void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
    };
    std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

}  // namespace ringlb::tools
