// Unicode operations with Python's semantics, over the tables of unicode_tables.cpp.
#include "multilora/text/unicode.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

#include "text/unicode_tables.h"

namespace multilora::text::unicode {

namespace t = tables;

namespace {

constexpr char32_t kReplacement = 0xFFFD;

uint8_t prop_bits(char32_t cp) {
    if (cp >= 0x110000) return t::kOther;
    const uint32_t key = (static_cast<uint32_t>(cp) << 8) | 0xFFu;
    const uint32_t* end = t::kPropRuns + t::kPropRunsCount;
    const uint32_t* it = std::upper_bound(t::kPropRuns, end, key);
    // kPropRuns[0] starts at code point 0, so `it` is never the first entry.
    return static_cast<uint8_t>(*(it - 1) & 0xFFu);
}

// Hangul syllable constants (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

const t::Decomposition* find_decomposition(char32_t cp) {
    const t::Decomposition* begin = t::kDecompositions;
    const t::Decomposition* end = begin + t::kDecompositionsCount;
    const t::Decomposition* it =
        std::lower_bound(begin, end, cp, [](const t::Decomposition& d, char32_t c) { return d.cp < c; });
    return (it != end && it->cp == cp) ? it : nullptr;
}

void decompose(char32_t cp, std::u32string& out) {
    if (cp >= kSBase && cp < kSBase + kSCount) {
        const char32_t s = cp - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
        return;
    }
    const t::Decomposition* d = find_decomposition(cp);
    if (!d) {
        out.push_back(cp);
        return;
    }
    decompose(d->first, out);
    if (d->second) decompose(d->second, out);
}

// Primary composites: pairs from two-code-point canonical decompositions that are not excluded.
const std::unordered_map<uint64_t, char32_t>& composition_map() {
    static const std::unordered_map<uint64_t, char32_t> map = [] {
        std::unordered_map<uint64_t, char32_t> m;
        const uint32_t* ex_begin = t::kCompositionExcluded;
        const uint32_t* ex_end = ex_begin + t::kCompositionExcludedCount;
        for (size_t i = 0; i < t::kDecompositionsCount; ++i) {
            const t::Decomposition& d = t::kDecompositions[i];
            if (d.second == 0 || std::binary_search(ex_begin, ex_end, d.cp)) continue;
            m.emplace((static_cast<uint64_t>(d.first) << 32) | d.second, d.cp);
        }
        return m;
    }();
    return map;
}

char32_t compose_pair(char32_t a, char32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
        return a + (b - kTBase);
    const auto& m = composition_map();
    auto it = m.find((static_cast<uint64_t>(a) << 32) | b);
    return it == m.end() ? 0 : it->second;
}

// Stable-sorts each run of non-starters by combining class (canonical ordering).
void canonical_order(std::u32string& s) {
    size_t i = 0;
    while (i < s.size()) {
        if (combining_class(s[i]) == 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < s.size() && combining_class(s[j]) != 0) ++j;
        if (j - i > 1) {
            std::stable_sort(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(j),
                             [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
        }
        i = j;
    }
}

bool all_below(std::u32string_view s, char32_t limit) {
    return std::all_of(s.begin(), s.end(), [limit](char32_t c) { return c < limit; });
}

// CPython's handle_capital_sigma: U+03A3 lowers to final sigma U+03C2 when preceded by a cased character
// (skipping case-ignorable ones) and not followed by one (again skipping case-ignorable ones).
char32_t lower_sigma(std::u32string_view s, size_t i) {
    size_t j = i;
    char32_t c = 0;
    bool found = false;
    while (j > 0) {
        --j;
        c = s[j];
        if (!is_case_ignorable(c)) {
            found = true;
            break;
        }
    }
    bool final_sigma = found && is_cased(c);
    if (final_sigma && i + 1 < s.size()) {
        size_t k = i + 1;
        for (; k < s.size(); ++k) {
            c = s[k];
            if (!is_case_ignorable(c)) break;
        }
        final_sigma = k == s.size() || !is_cased(c);
    }
    return final_sigma ? 0x3C2 : 0x3C3;
}

}  // namespace

const char* unicode_version() { return t::kUnicodeVersion; }

std::u32string decode_utf8(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char b0 = p[i];
        if (b0 < 0x80) {
            out.push_back(b0);
            ++i;
            continue;
        }
        int need;        // continuation bytes
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
        char32_t cp;
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            need = 1;
            cp = b0 & 0x1F;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            need = 2;
            cp = b0 & 0x0F;
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            need = 3;
            cp = b0 & 0x07;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
        } else {
            out.push_back(kReplacement);  // invalid lead byte
            ++i;
            continue;
        }
        size_t k = 1;
        bool ok = true;
        for (; k <= static_cast<size_t>(need); ++k) {
            if (i + k >= n) {
                ok = false;
                break;
            }
            const unsigned char b = p[i + k];
            const unsigned l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
            if (b < l || b > h) {
                ok = false;
                break;
            }
            cp = (cp << 6) | (b & 0x3F);
        }
        if (ok) {
            out.push_back(cp);
            i += static_cast<size_t>(need) + 1;
        } else {
            out.push_back(kReplacement);  // one U+FFFD for the maximal ill-formed subpart
            i += k;
        }
    }
    return out;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string encode_utf8(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) append_utf8(out, c);
    return out;
}

bool is_letter(char32_t cp) { return prop_bits(cp) & t::kLetter; }
bool is_number(char32_t cp) { return prop_bits(cp) & t::kNumber; }
bool is_other(char32_t cp) { return prop_bits(cp) & t::kOther; }
bool is_space_separator(char32_t cp) { return prop_bits(cp) & t::kSpaceSeparator; }
bool is_py_space(char32_t cp) { return prop_bits(cp) & t::kPySpace; }
bool is_cased(char32_t cp) { return prop_bits(cp) & t::kCased; }
bool is_case_ignorable(char32_t cp) { return prop_bits(cp) & t::kCaseIgnorable; }
bool has_letter_or_number_case_variant(char32_t cp) { return prop_bits(cp) & t::kCaseVariantLN; }

uint8_t combining_class(char32_t cp) {
    if (cp < 0x300) return 0;
    const t::CccRange* begin = t::kCccRanges;
    const t::CccRange* end = begin + t::kCccRangesCount;
    const t::CccRange* it =
        std::upper_bound(begin, end, cp, [](char32_t c, const t::CccRange& r) { return c < r.lo; });
    if (it == begin) return 0;
    --it;
    return cp <= it->hi ? static_cast<uint8_t>(it->ccc) : 0;
}

bool is_cjk_ideograph(char32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

std::u32string to_lower(std::u32string_view s) {
    std::u32string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        const char32_t c = s[i];
        if (c < 0x80) {
            out.push_back((c >= 'A' && c <= 'Z') ? c + 32 : c);
            continue;
        }
        if (c == 0x3A3) {
            out.push_back(lower_sigma(s, i));
            continue;
        }
        const t::LowerMulti* mb = t::kLowerMulti;
        const t::LowerMulti* me = mb + t::kLowerMultiCount;
        const t::LowerMulti* m = std::find_if(mb, me, [c](const t::LowerMulti& x) { return x.cp == c; });
        if (m != me) {
            for (uint32_t to : m->to)
                if (to) out.push_back(to);
            continue;
        }
        const t::LowerRange* begin = t::kLowerRanges;
        const t::LowerRange* end = begin + t::kLowerRangesCount;
        const t::LowerRange* it =
            std::upper_bound(begin, end, c, [](char32_t v, const t::LowerRange& r) { return v < r.lo; });
        if (it != begin) {
            --it;
            if (c <= it->hi && (c - it->lo) % it->stride == 0) {
                out.push_back(static_cast<char32_t>(static_cast<int64_t>(c) + it->delta));
                continue;
            }
        }
        out.push_back(c);
    }
    return out;
}

std::u32string nfd(std::u32string_view s) {
    if (all_below(s, 0xC0)) return std::u32string(s);  // nothing below U+00C0 decomposes
    std::u32string out;
    out.reserve(s.size() + 8);
    for (char32_t c : s) decompose(c, out);
    canonical_order(out);
    return out;
}

std::u32string nfc(std::u32string_view s) {
    // Below U+0300 every character is a starter that NFC keeps and that nothing composes onto (asserted
    // by the table generator).
    if (all_below(s, 0x300)) return std::u32string(s);
    const std::u32string d = nfd(s);
    std::u32string out;
    out.reserve(d.size());
    size_t starter = std::u32string::npos;  // index in `out` of the last starter
    int last_cc = 0;                         // class of the last character appended after that starter
    for (char32_t c : d) {
        const int cc = combining_class(c);
        if (starter != std::u32string::npos) {
            const bool adjacent = out.size() == starter + 1;
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                if (char32_t composite = compose_pair(out[starter], c)) {
                    out[starter] = composite;
                    continue;
                }
            }
        }
        if (cc == 0) starter = out.size();
        last_cc = cc;
        out.push_back(c);
    }
    return out;
}

}  // namespace multilora::text::unicode
