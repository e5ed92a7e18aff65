// CLIP tokenizer tests. Expected ids come from three places, named at each use:
//  [published]  ids widely quoted for SD1.5's tokenizer ("a photo of a cat").
//  [vocab]      hand look-ups in shared/clip/sd15-tokenizer/vocab.json (e.g. "cat</w>" = 2368), or for
//               single-byte symbols the bytes_to_unicode order (printable '!'..'~' = 0..93, 0xA1..0xAC = 94..105,
//               0xAE..0xFF = 106..187, then 0x00..0x20 = 188..220, 0x7F..0xA0 = 221..254, 0xAD = 255; "</w>"
//               forms +256).
//  [reference]  tests/data/tokenizer/reference_ids.tsv, produced by a throwaway Python transcription of
//               transformers' slow CLIPTokenizer without ftfy run with the real `regex` module (see the file's
//               header).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

using multilora::text::ClipTokenizer;
using Ids = std::vector<int32_t>;

namespace {

// The tokenizers are built once per test binary.
const ClipTokenizer& builtin() {
    static const auto tok = ClipTokenizer::builtin();
    return *tok;
}

// SD1.5's diffusers tokenizer folder from the project's shared/ data (beside the checkout, or inside it).
std::string sd15_folder() {
    for (const char* rel : {"/../shared/clip/sd15-tokenizer", "/shared/clip/sd15-tokenizer"}) {
        const std::string dir = std::string(ML_SOURCE_DIR) + rel;
        if (std::filesystem::exists(dir + "/vocab.json")) return dir;
    }
    return std::string();
}

const ClipTokenizer* folder() {
    static const std::shared_ptr<const ClipTokenizer> tok = [] {
        const std::string dir = sd15_folder();
        return dir.empty() ? nullptr : ClipTokenizer::from_folder(dir);
    }();
    return tok.get();
}

Ids padded(Ids ids) {
    ids.insert(ids.begin(), 49406);
    ids.push_back(49407);
    ids.resize(77, 49407);
    return ids;
}

struct RefCase {
    std::string kind;
    std::string input;
    Ids ids;
};

std::string from_hex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

const std::vector<RefCase>& reference_cases() {
    static const std::vector<RefCase> cases = [] {
        std::vector<RefCase> v;
        std::ifstream f(std::string(ML_TEST_DATA_DIR) + "/tokenizer/reference_ids.tsv");
        std::string line;
        while (std::getline(f, line)) {
            if (line.empty() || line[0] == '#') continue;
            std::istringstream ls(line);
            RefCase c;
            std::string hex, ids;
            std::getline(ls, c.kind, '\t');
            std::getline(ls, hex, '\t');
            std::getline(ls, ids);
            c.input = from_hex(hex);
            std::istringstream is(ids);
            int32_t id;
            while (is >> id) c.ids.push_back(id);
            v.push_back(std::move(c));
        }
        return v;
    }();
    return cases;
}

std::string printable(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

}  // namespace

TEST(tokenizer, VocabularyShape) {
    const auto& t = builtin();
    EXPECT_EQ(t.vocab_size(), 49408u);  // 256 + 256 + 48,894 merges + 2 special tokens
    EXPECT_EQ(t.bos_id(), 49406);
    EXPECT_EQ(t.eos_id(), 49407);
    EXPECT_EQ(t.pad_id(), 49407);
    EXPECT_EQ(t.unk_id(), 49407);
    EXPECT_EQ(t.id_to_token(0), "!");                  // [vocab] first byte symbol
    EXPECT_EQ(t.id_to_token(256), "!</w>");            // [vocab]
    EXPECT_EQ(t.id_to_token(320), "a</w>");            // [vocab]
    EXPECT_EQ(t.id_to_token(2368), "cat</w>");         // [vocab]
    EXPECT_EQ(t.id_to_token(49406), "<|startoftext|>");
    EXPECT_EQ(t.id_to_token(49407), "<|endoftext|>");
    EXPECT_EQ(t.id_to_token(49408), "");
    EXPECT_EQ(t.id_to_token(-1), "");
}

TEST(tokenizer, PublishedPhotoOfACat) {
    // [published] SD1.5: "a photo of a cat" -> 49406 320 1125 539 320 2368 49407; [vocab] a</w>=320,
    // photo</w>=1125, of</w>=539, cat</w>=2368.
    const Ids ids = builtin().encode("a photo of a cat");
    EXPECT_EQ(ids, (Ids{320, 1125, 539, 320, 2368}));
    EXPECT_EQ(builtin().encode_padded("a photo of a cat"), padded({320, 1125, 539, 320, 2368}));
    EXPECT_EQ(builtin().tokenize("a photo of a cat"),
              (std::vector<std::string>{"a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"}));
}

TEST(tokenizer, CaseAndPunctuation) {
    // Lower-cased before BPE; "!!" is one punctuation run: [vocab] !!</w>=748, ,</w>=267, !</w>=256.
    EXPECT_EQ(builtin().encode("A Photo of a CAT!!"), (Ids{320, 1125, 539, 320, 2368, 748}));
    EXPECT_EQ(builtin().encode("cat, cat!"), (Ids{2368, 267, 2368, 256}));
    // Contractions: [vocab] don</w>=847, 't</w>=713.
    EXPECT_EQ(builtin().encode("don't"), (Ids{847, 713}));
    EXPECT_EQ(builtin().encode("DON'T"), (Ids{847, 713}));
}

TEST(tokenizer, DigitsOneByOne) {
    // [\p{N}] matches one digit at a time: [vocab] 1</w>=272, 2</w>=273, 3</w>=274.
    EXPECT_EQ(builtin().encode("123"), (Ids{272, 273, 274}));
}

TEST(tokenizer, AccentsComposedAndDecomposed) {
    // "café" is UTF-8 c3 a9 -> byte symbols "Ã©"; the whole word is one vocab entry: [vocab] cafÃ©</w>=15304.
    EXPECT_EQ(builtin().encode("caf\xC3\xA9"), (Ids{15304}));
    // e + U+0301 is NFC-composed to é first (BasicTokenizer's NFC), so the ids are the same.
    EXPECT_EQ(builtin().encode("cafe\xCC\x81"), (Ids{15304}));
    // Accents are kept (strip_accents=False): "cafe" differs. [reference]
    EXPECT_NE(builtin().encode("cafe"), (Ids{15304}));
}

TEST(tokenizer, CjkIdeographsAreSeparateWords) {
    // 猫 = e7 8c ab: no merge applies, so three byte symbols with "</w>" on the last:
    // [vocab] 'ç'(0xE7)=106+57=163, 'Į'(0x8C)=221+13=234, '«</w>'(0xAB)=256+94+10=360.
    EXPECT_EQ(builtin().encode("\xE7\x8C\xAB"), (Ids{163, 234, 360}));
    // Two ideographs are spaced apart by _tokenize_chinese_chars, so each ends with its own "</w>". [reference]
    const Ids two = builtin().encode("\xE7\x8C\xAB\xE7\x8C\xAB");
    EXPECT_EQ(two, (Ids{163, 234, 360, 163, 234, 360}));
}

TEST(tokenizer, Emoji) {
    // U+1F44D (f0 9f 91 8d) is one vocab entry: [vocab] "ðŁĳį</w>"=4201; with a skin tone modifier it merges
    // further [reference] 43722; "ok</w>"=2481.
    EXPECT_EQ(builtin().encode("\xF0\x9F\x91\x8D"), (Ids{4201}));
    EXPECT_EQ(builtin().encode("\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok"), (Ids{43722, 2481}));
}

TEST(tokenizer, WhitespaceRuns) {
    // Runs of spaces, tabs and newlines only separate words: [vocab] hello</w>=3306, world</w>=1002, !</w>=256.
    EXPECT_EQ(builtin().encode("  hello   world\t\n!\r\n"), (Ids{3306, 1002, 256}));
    EXPECT_EQ(builtin().encode("hello\xC2\xA0world"), (Ids{3306, 1002}));      // NBSP (Zs) -> space
    EXPECT_EQ(builtin().encode("hello\xE3\x80\x80world"), (Ids{3306, 1002}));  // U+3000 (Zs) -> space
    EXPECT_EQ(builtin().encode(" \t\n "), Ids{});
}

TEST(tokenizer, ControlCharactersAndInvalidUtf8AreDropped) {
    // _clean_text drops C* characters (here BEL, NUL) and U+FFFD; invalid UTF-8 decodes to U+FFFD first.
    EXPECT_EQ(builtin().encode("hel\x07lo"), (Ids{3306}));
    EXPECT_EQ(builtin().encode(std::string("hel\0lo", 6)), (Ids{3306}));
    EXPECT_EQ(builtin().encode("hel\xFFlo"), (Ids{3306}));
    EXPECT_EQ(builtin().encode("hel\xEF\xBF\xBDlo"), (Ids{3306}));
    // Zero-width joiner (Cf) disappears too. [reference]
    EXPECT_EQ(builtin().encode("hel\xE2\x80\x8Dlo"), (Ids{3306}));
}

TEST(tokenizer, SpecialTokenText) {
    // Added tokens are split out before anything else (PreTrainedTokenizer.tokenize) and map to their ids.
    EXPECT_EQ(builtin().encode("hello<|endoftext|>world"), (Ids{3306, 49407, 1002}));
    EXPECT_EQ(builtin().encode("<|startoftext|>a cat<|endoftext|>"), (Ids{49406, 320, 2368, 49407}));
    EXPECT_EQ(builtin().encode("<|endoftext|><|endoftext|>"), (Ids{49407, 49407}));
    // Not an added token (case differs), but lower-cased by BasicTokenizer and matched by the pattern's first
    // alternatives; CLIPTokenizer's pre-seeded BPE cache maps it to itself -> the same id.
    EXPECT_EQ(builtin().encode("<|ENDOFTEXT|>"), (Ids{49407}));
    // ... except that there, a punctuation run before it swallows "<|": [reference]
    const Ids ids = builtin().encode("!<|ENDOFTEXT|>");
    EXPECT_TRUE(std::find(ids.begin(), ids.end(), 49407) == ids.end());
    // and the exact text splits first, so the same prefix does not matter: "!" then 49407.
    EXPECT_EQ(builtin().encode("!<|endoftext|>"), (Ids{256, 49407}));
}

TEST(tokenizer, EmptyPrompt) {
    const Ids expected = padded({});  // 49406, then 49407 x 76
    EXPECT_EQ(builtin().encode(""), Ids{});
    bool truncated = true;
    EXPECT_EQ(builtin().encode_padded("", &truncated), expected);
    EXPECT_FALSE(truncated);
    const auto chunks = builtin().encode_chunks("");
    ASSERT_EQ(chunks.size(), 1u);
    EXPECT_EQ(chunks[0], expected);
}

TEST(tokenizer, TruncationKeepsEos) {
    // 80 words "b" after "a": 81 ids [vocab] a</w>=320, b</w>=321.
    std::string text = "a";
    for (int i = 0; i < 80; ++i) text += " b";
    const Ids ids = builtin().encode(text);
    ASSERT_EQ(ids.size(), 81u);
    bool truncated = false;
    const Ids p = builtin().encode_padded(text, &truncated);
    EXPECT_TRUE(truncated);
    ASSERT_EQ(p.size(), 77u);
    EXPECT_EQ(p.front(), 49406);
    EXPECT_EQ(p.back(), 49407);
    EXPECT_EQ(Ids(p.begin() + 1, p.end() - 1), Ids(ids.begin(), ids.begin() + 75));

    // Exactly 75 ids fit without truncation; 76 do not.
    std::string fits = "a";
    for (int i = 0; i < 74; ++i) fits += " b";
    EXPECT_EQ(builtin().encode(fits).size(), 75u);
    builtin().encode_padded(fits, &truncated);
    EXPECT_FALSE(truncated);
    builtin().encode_padded(fits + " b", &truncated);
    EXPECT_TRUE(truncated);
}

TEST(tokenizer, Chunks) {
    std::string text = "a";
    for (int i = 0; i < 150; ++i) text += " b";  // 151 ids -> chunks of 75, 75, 1
    const Ids ids = builtin().encode(text);
    ASSERT_EQ(ids.size(), 151u);
    const auto chunks = builtin().encode_chunks(text);
    ASSERT_EQ(chunks.size(), 3u);
    for (size_t c = 0; c < chunks.size(); ++c) {
        ASSERT_EQ(chunks[c].size(), 77u);
        EXPECT_EQ(chunks[c].front(), 49406);
        const size_t begin = c * 75, n = std::min<size_t>(75, ids.size() - begin);
        EXPECT_EQ(Ids(chunks[c].begin() + 1, chunks[c].begin() + 1 + static_cast<long>(n)),
                  Ids(ids.begin() + static_cast<long>(begin), ids.begin() + static_cast<long>(begin + n)));
        EXPECT_EQ(chunks[c][n + 1], 49407);
        for (size_t k = n + 2; k < 77; ++k) EXPECT_EQ(chunks[c][k], 49407);
    }
    // A short prompt is one chunk equal to encode_padded; exactly 75 ids is still one chunk.
    EXPECT_EQ(builtin().encode_chunks("a photo of a cat"), (std::vector<Ids>{builtin().encode_padded("a photo of a cat")}));
    std::string fits = "a";
    for (int i = 0; i < 74; ++i) fits += " b";
    EXPECT_EQ(builtin().encode_chunks(fits).size(), 1u);
}

TEST(tokenizer, ReferenceIds) {
    const auto& cases = reference_cases();
    ASSERT_GT(cases.size(), 250u) << "tests/data/tokenizer/reference_ids.tsv missing or short";
    size_t failures = 0;
    for (const auto& c : cases) {
        const Ids got = builtin().encode(c.input);
        if (got != c.ids && ++failures <= 10) {
            ADD_FAILURE() << c.kind << " case \"" << printable(c.input) << "\": ids differ from the reference";
        }
    }
    EXPECT_EQ(failures, 0u);
}

TEST(tokenizer, ReferencePaddedMatchesTransformersTruncation) {
    // transformers with padding="max_length", max_length=77, truncation=True: bos + ids[:75] + eos, pad 49407.
    for (const auto& c : reference_cases()) {
        Ids ids = c.ids;
        const bool over = ids.size() > 75;
        if (over) ids.resize(75);
        bool truncated = !over;
        EXPECT_EQ(builtin().encode_padded(c.input, &truncated), padded(ids)) << printable(c.input);
        EXPECT_EQ(truncated, over);
    }
}

TEST(tokenizerFolder, MatchesBuiltinOnAllCases) {
    const ClipTokenizer* f = folder();
    if (!f) GTEST_SKIP() << "shared/clip/sd15-tokenizer not found";
    EXPECT_EQ(f->vocab_size(), 49408u);
    EXPECT_EQ(f->bos_id(), 49406);
    EXPECT_EQ(f->eos_id(), 49407);
    EXPECT_EQ(f->pad_id(), 49407);  // special_tokens_map.json: pad_token "<|endoftext|>"
    for (int32_t id : {0, 255, 256, 511, 512, 30000, 49405, 49406, 49407}) EXPECT_EQ(f->id_to_token(id), builtin().id_to_token(id));
    size_t failures = 0;
    for (const auto& c : reference_cases()) {
        if (f->encode(c.input) != c.ids && ++failures <= 10) ADD_FAILURE() << "folder differs on " << printable(c.input);
        if (f->encode_padded(c.input) != builtin().encode_padded(c.input) && ++failures <= 10)
            ADD_FAILURE() << "padded differs on " << printable(c.input);
    }
    EXPECT_EQ(failures, 0u);
}

TEST(tokenizerFolder, PadTokenFromConfig) {
    const std::string src = sd15_folder();
    if (src.empty()) GTEST_SKIP() << "shared/clip/sd15-tokenizer not found";
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("ml_tok_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    fs::copy_file(fs::path(src) / "vocab.json", dir / "vocab.json", fs::copy_options::overwrite_existing);
    fs::copy_file(fs::path(src) / "merges.txt", dir / "merges.txt", fs::copy_options::overwrite_existing);
    // SD2.x style: pad with "!" (id 0 [vocab]); special_tokens_map.json overrides tokenizer_config.json.
    std::ofstream(dir / "tokenizer_config.json") << R"({"pad_token": "<|endoftext|>", "model_max_length": 77})";
    std::ofstream(dir / "special_tokens_map.json") << R"({"pad_token": {"content": "!", "lstrip": false}})";
    const auto t = ClipTokenizer::from_folder(dir.string());
    EXPECT_EQ(t->pad_id(), 0);
    const Ids p = t->encode_padded("a photo of a cat");
    EXPECT_EQ(Ids(p.begin(), p.begin() + 7), (Ids{49406, 320, 1125, 539, 320, 2368, 49407}));
    EXPECT_EQ(p[7], 0);
    EXPECT_EQ(p.back(), 0);
    // Without special token files the CLIPTokenizer defaults apply (pad = <|endoftext|>).
    fs::remove(dir / "special_tokens_map.json");
    fs::remove(dir / "tokenizer_config.json");
    EXPECT_EQ(ClipTokenizer::from_folder(dir.string())->pad_id(), 49407);
    fs::remove_all(dir);
}

TEST(tokenizerFolder, UnreadableFolderThrows) {
    EXPECT_THROW(ClipTokenizer::from_folder("/nonexistent/tokenizer"), multilora::RuntimeError);
}

TEST(tokenizer, ConcurrentEncode) {
    const auto& cases = reference_cases();
    std::vector<Ids> results(2 * cases.size());
    auto work = [&](size_t offset) {
        for (size_t i = 0; i < cases.size(); ++i) results[offset + i] = builtin().encode(cases[i].input);
    };
    std::thread a(work, 0), b(work, cases.size());
    a.join();
    b.join();
    for (size_t i = 0; i < cases.size(); ++i) {
        EXPECT_EQ(results[i], cases[i].ids);
        EXPECT_EQ(results[cases.size() + i], cases[i].ids);
    }
}
