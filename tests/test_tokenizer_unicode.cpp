// Unicode layer of the CLIP tokenizer. Expected values: tests/data/tokenizer/unicode_cases.tsv (Python's
// unicodedata.normalize / str.lower, see its header) and, inline, Python results quoted in the comments.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "multilora/text/unicode.h"

namespace u = multilora::text::unicode;

namespace {

std::u32string parse_cps(const std::string& field) {
    std::u32string s;
    std::istringstream is(field);
    std::string h;
    while (is >> h) s.push_back(static_cast<char32_t>(std::stoul(h, nullptr, 16)));
    return s;
}

std::string show(const std::u32string& s) {
    std::ostringstream os;
    for (char32_t c : s) os << std::hex << std::uppercase << static_cast<uint32_t>(c) << ' ';
    return os.str();
}

}  // namespace

TEST(tokenizerUnicode, Version) { EXPECT_STRNE(u::unicode_version(), ""); }

TEST(tokenizerUnicode, PythonNormalizeAndLowerCases) {
    std::ifstream f(std::string(ML_TEST_DATA_DIR) + "/tokenizer/unicode_cases.tsv");
    ASSERT_TRUE(f) << "tests/data/tokenizer/unicode_cases.tsv missing";
    std::string line;
    int n = 0, failures = 0;
    while (std::getline(f, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::string in, nfc, nfd, lower;
        std::getline(ls, in, '\t');
        std::getline(ls, nfc, '\t');
        std::getline(ls, nfd, '\t');
        std::getline(ls, lower);
        const std::u32string s = parse_cps(in);
        ++n;
        if (u::nfc(s) != parse_cps(nfc) && ++failures <= 10) ADD_FAILURE() << "NFC of " << show(s) << "-> " << show(u::nfc(s));
        if (u::nfd(s) != parse_cps(nfd) && ++failures <= 10) ADD_FAILURE() << "NFD of " << show(s) << "-> " << show(u::nfd(s));
        if (u::to_lower(s) != parse_cps(lower) && ++failures <= 10)
            ADD_FAILURE() << "lower of " << show(s) << "-> " << show(u::to_lower(s));
    }
    EXPECT_GE(n, 400);
    EXPECT_EQ(failures, 0);
}

TEST(tokenizerUnicode, LowerSpecialCases) {
    // Python: "İ".lower() == "i\u0307"; "ΟΔΟΣ".lower() == "οδος" (final sigma); "Σ".lower() == "σ";
    // "ΑΣ'Α".lower() == "ασ'α" (the apostrophe is case-ignorable, so a cased letter follows).
    EXPECT_EQ(u::to_lower(U"\u0130"), U"i\u0307");
    EXPECT_EQ(u::to_lower(U"\u039F\u0394\u039F\u03A3"), U"\u03BF\u03B4\u03BF\u03C2");
    EXPECT_EQ(u::to_lower(U"\u03A3"), U"\u03C3");
    EXPECT_EQ(u::to_lower(U"\u0391\u03A3'\u0391"), U"\u03B1\u03C3'\u03B1");
    EXPECT_EQ(u::to_lower(U"\u0391\u03A3."), U"\u03B1\u03C2.");
    EXPECT_EQ(u::to_lower(U"ABC xyz \u00C9\u212A"), U"abc xyz \u00E9k");  // Kelvin sign lowers to 'k'
}

TEST(tokenizerUnicode, Nfc) {
    // Python: normalize("NFC", "e\u0301") == "é"; Hangul jamo compose; U+212B (Angstrom) -> U+00C5;
    // CJK compatibility ideograph U+F900 -> U+8C48; "a\u0323\u0302" reorders nothing and composes to U+1EAD.
    EXPECT_EQ(u::nfc(U"e\u0301"), U"\u00E9");
    EXPECT_EQ(u::nfc(U"\u1100\u1161\u11A8"), U"\uAC01");
    EXPECT_EQ(u::nfc(U"\u212B"), U"\u00C5");
    EXPECT_EQ(u::nfc(U"\uF900"), U"\u8C48");
    EXPECT_EQ(u::nfc(U"a\u0302\u0323"), U"\u1EAD");
    EXPECT_EQ(u::nfc(U"plain ascii"), U"plain ascii");
}

TEST(tokenizerUnicode, Categories) {
    EXPECT_TRUE(u::is_letter(U'a'));
    EXPECT_TRUE(u::is_letter(0x732B));   // 猫 Lo
    EXPECT_FALSE(u::is_letter(U'1'));
    EXPECT_TRUE(u::is_number(U'7'));
    EXPECT_TRUE(u::is_number(0x2163));   // Ⅳ Nl
    EXPECT_TRUE(u::is_number(0x00BD));   // ½ No
    EXPECT_TRUE(u::is_other(0x07));      // Cc
    EXPECT_TRUE(u::is_other(0x200D));    // ZWJ Cf
    EXPECT_TRUE(u::is_other(0xE000));    // Co
    EXPECT_TRUE(u::is_other(0x0378));    // Cn (unassigned)
    EXPECT_TRUE(u::is_other(0x10FFFF));
    EXPECT_FALSE(u::is_other(0xFE0F));   // variation selector is Mn
    EXPECT_TRUE(u::is_space_separator(0xA0));
    EXPECT_TRUE(u::is_space_separator(0x3000));
    EXPECT_FALSE(u::is_space_separator(0x2028));  // Zl
    EXPECT_TRUE(u::is_py_space(0x2028));
    EXPECT_TRUE(u::is_py_space(0x1C));            // Python: "\x1c".isspace() is True
    EXPECT_FALSE(u::is_py_space(0x200B));
    EXPECT_TRUE(u::has_letter_or_number_case_variant(0x345));
    EXPECT_FALSE(u::has_letter_or_number_case_variant(U'!'));
    EXPECT_EQ(u::combining_class(0x301), 230);
    EXPECT_EQ(u::combining_class(0x323), 220);
    EXPECT_EQ(u::combining_class(U'a'), 0);
    EXPECT_TRUE(u::is_cjk_ideograph(0x4E00));
    EXPECT_TRUE(u::is_cjk_ideograph(0xF900));
    EXPECT_FALSE(u::is_cjk_ideograph(0x3042));  // Hiragana is not in BasicTokenizer's ranges
}

TEST(tokenizerUnicode, Utf8DecodeLikePythonReplace) {
    // Python: bytes.decode("utf-8", "replace"), one U+FFFD per maximal ill-formed subpart.
    EXPECT_EQ(u::decode_utf8("a\xC3\xA9"), U"a\u00E9");
    EXPECT_EQ(u::decode_utf8("\xF0\x9F\x98\x80"), U"\U0001F600");
    EXPECT_EQ(u::decode_utf8("\xE0\x80\xAF"), U"\uFFFD\uFFFD\uFFFD");          // overlong
    EXPECT_EQ(u::decode_utf8("\xED\xA0\x80"), U"\uFFFD\uFFFD\uFFFD");          // surrogate
    EXPECT_EQ(u::decode_utf8("\xF0\x9F\x98"), U"\uFFFD");                      // truncated
    EXPECT_EQ(u::decode_utf8("\xF0\x9F\x98" "a"), U"\uFFFDa");
    EXPECT_EQ(u::decode_utf8("\xC0\xAF"), U"\uFFFD\uFFFD");
    EXPECT_EQ(u::decode_utf8("\xF4\x90\x80\x80"), U"\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
    EXPECT_EQ(u::decode_utf8("\x80\x80"), U"\uFFFD\uFFFD");
    EXPECT_EQ(u::encode_utf8(U"a\u00E9\U0001F600"), "a\xC3\xA9\xF0\x9F\x98\x80");
}
