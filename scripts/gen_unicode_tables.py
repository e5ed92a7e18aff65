#!/usr/bin/python3
"""Generates src/text/unicode_tables.{h,cpp}: the Unicode data the CLIP tokenizer needs.

Uses only the standard library's `unicodedata` and `str` methods, so the tables describe exactly the
Unicode version of the Python that runs this script (recorded in the output). The tokenizer reproduces
transformers' slow CLIPTokenizer, whose text clean-up is plain Python (`unicodedata.category`,
`str.isspace`, `str.lower`, `unicodedata.normalize("NFC")`), so these are the properties it needs:

  * property runs: letter (L*), number (N*), other (C*, unassigned included), space separator (Zs),
    Python's str.isspace(), Cased and Case_Ignorable (for str.lower()'s final-sigma rule), and
    "case-equivalent to a letter or number" (the `regex` module's IGNORECASE set matching);
  * lowercase mapping (str.lower() per code point; multi-code-point results listed separately);
  * canonical combining classes, canonical decompositions (one level) and the decompositions that
    NFC does not recompose (composition exclusions, singletons, non-starter decompositions).

Run from the repository root:  /usr/bin/python3 scripts/gen_unicode_tables.py
"""

import os
import sys
import unicodedata as ud

MAX_CP = 0x110000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_H = os.path.join(ROOT, "src", "text", "unicode_tables.h")
OUT_CPP = os.path.join(ROOT, "src", "text", "unicode_tables.cpp")

# Property bits (keep in sync with the header text below).
B_LETTER, B_NUMBER, B_OTHER, B_ZS, B_PYSPACE, B_CASED, B_CASE_IGN, B_CI_LN = (1 << i for i in range(8))


def is_cased(c):
    # CPython's _PyUnicode_IsCased is Unicode's Cased = Lowercase | Uppercase | Lt; str.islower/isupper
    # test the Lowercase/Uppercase properties and istitle() on one character tests Uppercase | Lt.
    return c.islower() or c.isupper() or c.istitle()


def is_case_ignorable(c):
    # Not exposed by unicodedata; probe it through str.lower()'s final-sigma rule, which skips
    # case-ignorable characters: for a cased c, "AΣc" lowers Σ to final ς only if c is skipped;
    # for an uncased c, "AcΣ" lowers Σ to ς only if c is skipped (back to the cased "A").
    if is_cased(c):
        return ("A\u03a3" + c).lower()[1] == "\u03c2"
    return ("A" + c + "\u03a3").lower()[-1] == "\u03c2"


def case_variants(c):
    out = set()
    for f in (c.lower(), c.upper(), c.title(), c.casefold()):
        if len(f) == 1 and f != c:
            out.add(f)
    return out


def prop_bits(cp):
    c = chr(cp)
    cat = ud.category(c)
    b = 0
    if cat[0] == "L":
        b |= B_LETTER
    if cat[0] == "N":
        b |= B_NUMBER
    if cat[0] == "C":
        b |= B_OTHER
    if cat == "Zs":
        b |= B_ZS
    if c.isspace():
        b |= B_PYSPACE
    cased = is_cased(c)
    if cased:
        b |= B_CASED
    if 0xD800 <= cp <= 0xDFFF:
        return b  # lone surrogates: never reach the tokenizer (UTF-8 decoding replaces them)
    if is_case_ignorable(c):
        b |= B_CASE_IGN
    # Cross-check the Cased derivation with the sigma rule: "cΣ" gives ς iff c is cased and not skipped.
    if not (b & B_CASE_IGN):
        assert ((c + "\u03a3").lower()[-1] == "\u03c2") == cased, hex(cp)
    if not (b & (B_LETTER | B_NUMBER)):
        if any(ud.category(v)[0] in "LN" for v in case_variants(c)):
            b |= B_CI_LN
    return b


def hex_list(values, per_line, fmt="0x{:X}"):
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(fmt.format(v) for v in values[i:i + per_line]) + ",")
    return "\n".join(lines)


def main():
    version = ud.unidata_version

    # ---- property runs: (start << 8) | bits, a new entry wherever the bits change ----
    runs = []
    prev = None
    for cp in range(MAX_CP):
        b = prop_bits(cp)
        if b != prev:
            runs.append((cp << 8) | b)
            prev = b

    # ---- lowercase: single-code-point mappings as (lo, hi, delta, stride) ranges ----
    singles = []
    multi = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        lo = chr(cp).lower()
        if lo == chr(cp):
            continue
        if len(lo) == 1:
            singles.append((cp, ord(lo) - cp))
        else:
            multi.append((cp, [ord(x) for x in lo]))
        assert lo.lower() == lo, hex(cp)  # str.lower() is idempotent: lowering twice changes nothing
    lower_ranges = []  # [lo, hi, delta, stride]
    for cp, d in singles:
        if lower_ranges:
            r = lower_ranges[-1]
            if r[2] == d:
                step = cp - r[1]
                if r[0] == r[1] and step in (1, 2):
                    r[1] = cp
                    r[3] = step
                    continue
                if r[0] != r[1] and step == r[3]:
                    r[1] = cp
                    continue
        lower_ranges.append([cp, cp, d, 1])
    assert all(len(m[1]) <= 3 for m in multi)

    # ---- canonical combining classes as (lo, hi, ccc) runs ----
    ccc_runs = []
    for cp in range(MAX_CP):
        k = ud.combining(chr(cp))
        if k == 0:
            continue
        if ccc_runs and ccc_runs[-1][1] == cp - 1 and ccc_runs[-1][2] == k:
            ccc_runs[-1][1] = cp
        else:
            ccc_runs.append([cp, cp, k])

    # ---- canonical decompositions (one level) and NFC exclusions ----
    decomp = []
    excluded = []
    for cp in range(MAX_CP):
        d = ud.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, hex(cp)
        decomp.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
        # A two-code-point decomposition is recomposed by NFC unless excluded; NFC(c) != c tells which.
        if len(parts) == 2 and ud.normalize("NFC", chr(cp)) != chr(cp):
            excluded.append(cp)

    # Facts nfc() in unicode.cpp relies on for its fast path: below U+0300 every character is a starter that
    # NFC leaves alone, and nothing composes with a second character below U+0300.
    for cp in range(0x300):
        assert ud.combining(chr(cp)) == 0 and ud.normalize("NFC", chr(cp)) == chr(cp), hex(cp)
    assert all(second >= 0x300 for cp, first, second in decomp if second and cp not in excluded)

    h = f"""// GENERATED by scripts/gen_unicode_tables.py from Python {sys.version.split()[0]}'s unicodedata
// (Unicode {version}). Do not edit; rerun the script instead.
#pragma once

#include <cstddef>
#include <cstdint>

namespace multilora::text::unicode::tables {{

inline constexpr const char* kUnicodeVersion = "{version}";

// Property bits of kPropRuns entries.
enum : uint8_t {{
    kLetter = 0x01,         // general category L*
    kNumber = 0x02,         // general category N*
    kOther = 0x04,          // general category C* (Cc, Cf, Cs, Co, Cn)
    kSpaceSeparator = 0x08, // general category Zs
    kPySpace = 0x10,        // Python str.isspace()
    kCased = 0x20,          // Unicode Cased (Lowercase | Uppercase | Lt)
    kCaseIgnorable = 0x40,  // Unicode Case_Ignorable
    kCaseVariantLN = 0x80,  // not L/N itself, but a simple case variant is L or N (regex IGNORECASE sets)
}};

// (first code point << 8) | bits; each entry holds up to the next entry's first code point.
extern const uint32_t kPropRuns[];
extern const size_t kPropRunsCount;

// str.lower() for code points that lower to one code point: for cp in [lo, hi] with (cp - lo) % stride == 0,
// lower(cp) = cp + delta.
struct LowerRange {{
    uint32_t lo, hi;
    int32_t delta;
    uint32_t stride;
}};
extern const LowerRange kLowerRanges[];
extern const size_t kLowerRangesCount;

// str.lower() results longer than one code point (unused slots are 0).
struct LowerMulti {{
    uint32_t cp;
    uint32_t to[3];
}};
extern const LowerMulti kLowerMulti[];
extern const size_t kLowerMultiCount;

// Canonical combining class of [lo, hi]; code points not listed have class 0.
struct CccRange {{
    uint32_t lo, hi;
    uint32_t ccc;
}};
extern const CccRange kCccRanges[];
extern const size_t kCccRangesCount;

// Canonical decomposition mapping (one level, as in UnicodeData.txt): cp -> first [second]; second is 0
// for singletons. Hangul syllables are algorithmic and not listed.
struct Decomposition {{
    uint32_t cp, first, second;
}};
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsCount;

// Code points with a two-code-point canonical decomposition that NFC never recomposes
// (Full_Composition_Exclusion among them), sorted.
extern const uint32_t kCompositionExcluded[];
extern const size_t kCompositionExcludedCount;

}}  // namespace multilora::text::unicode::tables
"""

    cpp = [f"""// GENERATED by scripts/gen_unicode_tables.py from Python {sys.version.split()[0]}'s unicodedata
// (Unicode {version}). Do not edit; rerun the script instead.
#include "text/unicode_tables.h"

namespace multilora::text::unicode::tables {{

const uint32_t kPropRuns[] = {{
{hex_list(runs, 8)}
}};
const size_t kPropRunsCount = sizeof(kPropRuns) / sizeof(kPropRuns[0]);

const LowerRange kLowerRanges[] = {{
{chr(10).join(f"    {{0x{r[0]:X}, 0x{r[1]:X}, {r[2]}, {r[3]}}}," for r in lower_ranges)}
}};
const size_t kLowerRangesCount = sizeof(kLowerRanges) / sizeof(kLowerRanges[0]);

const LowerMulti kLowerMulti[] = {{
{chr(10).join("    {0x%X, {%s}}," % (cp, ", ".join("0x%X" % x for x in (to + [0, 0, 0])[:3])) for cp, to in multi)}
}};
const size_t kLowerMultiCount = sizeof(kLowerMulti) / sizeof(kLowerMulti[0]);

const CccRange kCccRanges[] = {{
{chr(10).join(f"    {{0x{r[0]:X}, 0x{r[1]:X}, {r[2]}}}," for r in ccc_runs)}
}};
const size_t kCccRangesCount = sizeof(kCccRanges) / sizeof(kCccRanges[0]);

const Decomposition kDecompositions[] = {{
{chr(10).join("    " + " ".join("{0x%X, 0x%X, 0x%X}," % d for d in decomp[i:i + 4]) for i in range(0, len(decomp), 4))}
}};
const size_t kDecompositionsCount = sizeof(kDecompositions) / sizeof(kDecompositions[0]);

const uint32_t kCompositionExcluded[] = {{
{hex_list(excluded, 10)}
}};
const size_t kCompositionExcludedCount = sizeof(kCompositionExcluded) / sizeof(kCompositionExcluded[0]);

}}  // namespace multilora::text::unicode::tables
"""]
    with open(OUT_H, "w", encoding="utf-8") as f:
        f.write(h)
    with open(OUT_CPP, "w", encoding="utf-8") as f:
        f.write("".join(cpp))
    print(f"Unicode {version}: {len(runs)} property runs, {len(lower_ranges)} lowercase ranges "
          f"(+{len(multi)} multi), {len(ccc_runs)} ccc ranges, {len(decomp)} decompositions, "
          f"{len(excluded)} exclusions")


if __name__ == "__main__":
    main()
