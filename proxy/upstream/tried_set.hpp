#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringlb::upstream {

// A set of backend indices: the backends a session already tried (and, later, those that are down
// or full). Indices below 64 live in one inline word, so a session on an ordinary cluster never
// allocates; larger indices spill into words that grow on demand, so no backend is silently
// treated as untried (the uint64_t mask this replaces re-tried every backend past index 63).
class TriedSet {
  public:
    TriedSet() = default;
    // Reserves room for indices below `capacity`: inserting them never allocates.
    explicit TriedSet(size_t capacity) {
        if (capacity > kInlineBits) spill_.reserve(spill_words_for(capacity));
    }

    // Empties the set and keeps the reserved room.
    void clear() {
        inline_ = 0;
        spill_.clear();
    }

    void insert(size_t i) {
        if (i < kInlineBits) {
            inline_ |= bit(i);
            return;
        }
        size_t word = spill_word(i);
        if (word >= spill_.size()) spill_.resize(word + 1, 0);
        spill_[word] |= bit(i % 64);
    }

    void erase(size_t i) {
        if (i < kInlineBits) {
            inline_ &= ~bit(i);
            return;
        }
        size_t word = spill_word(i);
        if (word < spill_.size()) spill_[word] &= ~bit(i % 64);
    }

    bool contains(size_t i) const {
        if (i < kInlineBits) return (inline_ & bit(i)) != 0;
        size_t word = spill_word(i);
        return word < spill_.size() && (spill_[word] & bit(i % 64)) != 0;
    }

    size_t count() const {
        size_t n = static_cast<size_t>(std::popcount(inline_));
        for (uint64_t w : spill_) n += static_cast<size_t>(std::popcount(w));
        return n;
    }

    bool empty() const {
        return inline_ == 0 &&
               std::all_of(spill_.begin(), spill_.end(), [](uint64_t w) { return w == 0; });
    }

    // Union: adds every index of `other`.
    TriedSet& operator|=(const TriedSet& other) {
        inline_ |= other.inline_;
        if (other.spill_.size() > spill_.size()) spill_.resize(other.spill_.size(), 0);
        for (size_t w = 0; w < other.spill_.size(); ++w) spill_[w] |= other.spill_[w];
        return *this;
    }

    friend TriedSet operator|(TriedSet a, const TriedSet& b) { return a |= b; }

  private:
    static constexpr size_t kInlineBits = 64;

    static constexpr uint64_t bit(size_t i) { return uint64_t{1} << i; }
    static constexpr size_t spill_word(size_t i) { return i / 64 - 1; }
    static constexpr size_t spill_words_for(size_t capacity) { return (capacity + 63) / 64 - 1; }

    uint64_t inline_ = 0;
    std::vector<uint64_t> spill_;  // word k holds indices [64 (k + 1), 64 (k + 2))
};

}  // namespace ringlb::upstream
