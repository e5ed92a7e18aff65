// CLIP's byte-level BPE tokenizer, as used by Stable Diffusion v1.5 (transformers' CLIPTokenizer).
//
// What it reproduces: transformers' slow CLIPTokenizer as StableDiffusionPipeline calls it
// (tokenizer(prompt, padding="max_length", max_length=77, truncation=True)) in a plain
// `pip install diffusers transformers` environment, i.e. WITHOUT the optional `ftfy` package, for
// transformers >= 4.31 (PR #22280, merged July 2023, gave CLIP's fallback path strip_accents=False, no
// punctuation splitting and NFC; older versions stripped accents and split every punctuation character
// apart, which gives different ids for "café" or "!!"). Step by step, for a UTF-8 prompt:
//   1. Added/special tokens typed in the text are split out first, as PreTrainedTokenizer.tokenize does
//      (exact, case-sensitive match of "<|startoftext|>" / "<|endoftext|>"; for from_folder() also the
//      folder's bos/eos/unk/pad/additional special tokens). Each becomes its id directly; the text pieces
//      between them are tokenized separately.
//   2. Each piece goes through BasicTokenizer(strip_accents=False, do_split_on_punc=False):
//      _clean_text (drops NUL, U+FFFD and every Unicode C* character except \t \n \r; maps \t \n \r and
//      Zs spaces to ' '), spaces around CJK ideographs (_tokenize_chinese_chars' code-point ranges),
//      NFC, whitespace split (Python str.split()), Python str.lower() per word; words joined by ' '.
//   3. CLIP's pattern <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//      with the `regex` module's IGNORECASE semantics (U+017F 'ſ' matches 's'; U+0345 matches none of the
//      alternatives and is skipped), scanned like re.findall; digits come out one by one.
//   4. Each match: UTF-8 bytes -> bytes_to_unicode symbols -> BPE by merge rank with "</w>" on the last
//      symbol -> ids (unknown -> unk id). A match equal to "<|startoftext|>"/"<|endoftext|>" maps to its id.
//
// ftfy's fix_text is NOT applied (same as transformers without ftfy, which is what a plain diffusers
// install runs). Consequences, versus an environment that has ftfy (or versus openai/CLIP's
// simple_tokenizer, which always uses ftfy + html.unescape): curly quotes stay curly (“don’t” gives
// "’" + "t", not "'t"), ligatures and full-width forms are not folded (ﬁ, ｗ), HTML entities (&amp;) and
// mojibake (cafÃ©) are not repaired, and CJK ideographs become one word each (ftfy's path keeps runs of
// ideographs together). Any of these give different ids with ftfy installed.
//
// Unicode data comes from scripts/gen_unicode_tables.py (Python's unicodedata; version in
// multilora/text/unicode.h's unicode_version()). Python's own Unicode version and the `regex` module's may
// differ from it for characters assigned in newer Unicode versions only.
//
// Invalid UTF-8 in the input is decoded to U+FFFD (as bytes.decode("utf-8", errors="replace")), which
// step 2 then drops: "ca\xFFt" tokenizes as "cat".
//
// Thread safety: all const methods may be called concurrently (the word cache is guarded by a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace multilora::text {

class ClipTokenizer {
public:
    static constexpr int32_t kBosId = 49406;  // <|startoftext|>
    static constexpr int32_t kEosId = 49407;  // <|endoftext|>
    static constexpr int kMaxLength = 77;

    // The vocabulary built into the binary (CLIP's MIT-licensed merges, third_party/clip).
    static std::shared_ptr<const ClipTokenizer> builtin();
    // A diffusers tokenizer/ folder (vocab.json + merges.txt); pad id from special_tokens_map.json /
    // tokenizer_config.json when given (SD1.5 pads with <|endoftext|>). Throws RuntimeError when unreadable.
    // As transformers does: merges.txt's first line is skipped as a header and at most 48,894 merges are read;
    // special_tokens_map.json overrides tokenizer_config.json; bos/eos/unk/pad default to CLIPTokenizer's
    // defaults; tokenizer_config.json's added_tokens_decoder entries are honoured. A missing pad token pads
    // with eos. added_tokens.json is not read.
    static std::shared_ptr<const ClipTokenizer> from_folder(const std::string& dir);

    // Text -> BPE ids with no bos/eos, no truncation.
    std::vector<int32_t> encode(const std::string& text) const;

    // bos + ids + eos, truncated to 77 (eos kept last) and padded with pad_id() to 77.
    // `truncated` (when not null) tells whether tokens were dropped.
    std::vector<int32_t> encode_padded(const std::string& text, bool* truncated = nullptr) const;

    // A1111/sd.cpp-style long prompts: ids split into chunks of 75, each wrapped as bos + chunk + eos and
    // padded to 77. An empty prompt gives one chunk.
    // Chunks are cut every 75 ids (no A1111 comma back-off); padding uses pad_id().
    std::vector<std::vector<int32_t>> encode_chunks(const std::string& text) const;

    // Text -> token strings (byte-level unicode form, "</w>" marks word ends), as transformers'
    // tokenizer.tokenize(text) returns them; special tokens appear as their text. For debugging and tests.
    std::vector<std::string> tokenize(const std::string& text) const;

    int32_t pad_id() const { return pad_id_; }
    int32_t bos_id() const { return bos_id_; }  // kBosId for SD1.5
    int32_t eos_id() const { return eos_id_; }  // kEosId for SD1.5
    int32_t unk_id() const { return unk_id_; }  // kEosId for SD1.5
    size_t vocab_size() const { return encoder_.size(); }
    // Id -> token string (byte-level unicode form, "</w>" marks word ends); for debugging and tests.
    // Returns an empty string for an id that is not in the vocabulary.
    std::string id_to_token(int32_t id) const;
    // The first id past the vocabulary and added tokens (where new embeddings' rows go).
    int32_t next_free_id() const { return static_cast<int32_t>(decoder_.size()); }

    // A copy that splits each name out of the text as its own token (before lowercasing and BPE, as
    // transformers' added tokens) and encodes it as its ids: a textual-inversion embedding with one id per
    // vector, rows appended to the text encoder's token embedding.
    std::shared_ptr<const ClipTokenizer> with_added_tokens(
        const std::vector<std::pair<std::string, std::vector<int32_t>>>& tokens) const;

private:
    ClipTokenizer() = default;
    void build_from_merges(const std::vector<std::pair<std::string, std::string>>& merges);
    void set_merges(const std::vector<std::vector<std::string>>& merge_lines);
    void finish();
    int32_t token_to_id(const std::string& token) const;
    // Tokens of one text piece without added tokens in it (BasicTokenizer + pattern + BPE).
    void tokenize_piece(const std::u32string& piece, std::vector<std::string>& out) const;
    std::vector<std::string> bpe(const std::string& word) const;

    std::unordered_map<std::string, int32_t> encoder_;
    std::vector<std::string> decoder_;
    std::unordered_map<std::string, int> merge_ranks_;  // key: first + ' ' + second
    // Added tokens (special tokens) split out of the text before anything else: content -> id.
    std::vector<std::pair<std::u32string, int32_t>> added_tokens_;
    std::unordered_map<std::string, int32_t> added_encoder_;
    std::unordered_map<int32_t, std::vector<int32_t>> expansions_;  // an added token's id -> all its ids
    int32_t bos_id_ = kBosId;
    int32_t eos_id_ = kEosId;
    int32_t unk_id_ = kEosId;
    int32_t pad_id_ = kEosId;
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<std::string>> cache_;
};

}  // namespace multilora::text
