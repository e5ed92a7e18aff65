// CLIP tokenizer: transformers' slow CLIPTokenizer without ftfy (see the header for the exact pipeline).
#include "multilora/text/clip_tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "multilora/text/unicode.h"
#include "multilora/util/error.h"

extern "C" {
extern const unsigned char multilora_clip_vocab_gz[];
extern const unsigned char multilora_clip_vocab_gz_end[];
}

namespace multilora::text {

namespace uni = unicode;

namespace {

// CLIPTokenizer reads merges.txt lines [1, 49152 - 256 - 2 + 1): 48,894 merges after the header line.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr size_t kWordCacheLimit = 1 << 16;
constexpr int kChunkIds = ClipTokenizer::kMaxLength - 2;  // 75 ids between bos and eos

const char* const kStartOfText = "<|startoftext|>";
const char* const kEndOfText = "<|endoftext|>";

// GPT-2/CLIP bytes_to_unicode(): printable Latin-1 bytes map to themselves, the others to U+0100 upwards.
// Returns the byte -> UTF-8 symbol table in byte order, and (via `order`) the bytes in the order the
// original builds its vocabulary.
std::vector<std::string> bytes_to_unicode(std::vector<int>* order = nullptr) {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::vector<char32_t> cs(bs.begin(), bs.end());
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
            bs.push_back(b);
            cs.push_back(static_cast<char32_t>(256 + n));
            ++n;
        }
    }
    std::vector<std::string> table(256);
    for (size_t i = 0; i < bs.size(); ++i) {
        std::string s;
        uni::append_utf8(s, cs[i]);
        table[static_cast<size_t>(bs[i])] = s;
    }
    if (order) *order = bs;
    return table;
}

const std::vector<std::string>& byte_encoder() {
    static const std::vector<std::string> table = bytes_to_unicode();
    return table;
}

std::string gunzip(const unsigned char* data, size_t size) {
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw RuntimeError("zlib: inflateInit2 failed");
    zs.next_in = const_cast<Bytef*>(data);
    zs.avail_in = static_cast<uInt>(size);
    std::string out;
    char buf[1 << 16];
    int rc;
    do {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof(buf);
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&zs);
            throw RuntimeError("zlib: corrupt embedded CLIP vocabulary");
        }
        out.append(buf, sizeof(buf) - zs.avail_out);
    } while (rc != Z_STREAM_END);
    inflateEnd(&zs);
    return out;
}

// Python str.split() on ASCII whitespace (enough for merges lines, which are byte-level symbols).
std::vector<std::string> split_ws(const std::string& line) {
    std::vector<std::string> parts;
    std::istringstream is(line);
    std::string p;
    while (is >> p) parts.push_back(p);
    return parts;
}

// Lines 1..kMaxMerges of `text` (line 0 is the "#version" header), as CLIPTokenizer.__init__ reads them:
// text.strip().split("\n")[1:48895], each split on whitespace.
std::vector<std::vector<std::string>> merge_lines(const std::string& text) {
    size_t b = 0, e = text.size();
    auto is_sp = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    while (b < e && is_sp(text[b])) ++b;
    while (e > b && is_sp(text[e - 1])) --e;
    std::vector<std::vector<std::string>> lines;
    size_t pos = b;
    size_t index = 0;
    while (pos <= e && lines.size() < kMaxMerges) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos || nl > e) nl = e;
        if (index > 0) lines.push_back(split_ws(text.substr(pos, nl - pos)));
        ++index;
        pos = nl + 1;
    }
    return lines;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw RuntimeError("cannot read " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) throw RuntimeError("cannot read " + path);
    return ss.str();
}

bool file_exists(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

nlohmann::json read_json(const std::string& path) {
    try {
        return nlohmann::json::parse(read_file(path));
    } catch (const nlohmann::json::exception& e) {
        throw RuntimeError(path + ": invalid JSON: " + e.what());
    }
}

// BasicTokenizer._is_whitespace after _clean_text's control check.
bool is_basic_whitespace(char32_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || uni::is_space_separator(c);
}

// BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text), joined by ' '.
std::u32string basic_tokenize(const std::u32string& text) {
    // _clean_text, then _tokenize_chinese_chars.
    std::u32string cleaned;
    cleaned.reserve(text.size() + 8);
    for (char32_t c : text) {
        if (c == 0 || c == 0xFFFD) continue;
        if (c != '\t' && c != '\n' && c != '\r' && uni::is_other(c)) continue;
        if (is_basic_whitespace(c)) {
            cleaned.push_back(' ');
        } else if (uni::is_cjk_ideograph(c)) {
            cleaned.push_back(' ');
            cleaned.push_back(c);
            cleaned.push_back(' ');
        } else {
            cleaned.push_back(c);
        }
    }
    const std::u32string normalized = uni::nfc(cleaned);
    // whitespace_tokenize (str.split()), lower-case each word, ' '.join. The second whitespace_tokenize
    // and join in the original change nothing: lower-casing creates no whitespace.
    std::u32string out;
    size_t i = 0;
    const size_t n = normalized.size();
    while (i < n) {
        while (i < n && uni::is_py_space(normalized[i])) ++i;
        if (i >= n) break;
        size_t j = i;
        while (j < n && !uni::is_py_space(normalized[j])) ++j;
        if (!out.empty()) out.push_back(' ');
        out += uni::to_lower(std::u32string_view(normalized).substr(i, j - i));
        i = j;
    }
    return out;
}

// Character equality under the `regex` module's simple case folding, for the pattern's ASCII letters.
bool ci_equal(char32_t pattern, char32_t c) {
    if (c == pattern) return true;
    if (pattern >= 'a' && pattern <= 'z') {
        if (c == pattern - 32) return true;
        if (pattern == 's' && c == 0x17F) return true;   // LATIN SMALL LETTER LONG S
        if (pattern == 'k' && c == 0x212A) return true;  // KELVIN SIGN
    }
    return false;
}

bool match_literal(const std::u32string& text, size_t pos, const char* lit, size_t* len) {
    size_t k = 0;
    for (; lit[k]; ++k) {
        if (pos + k >= text.size() || !ci_equal(static_cast<unsigned char>(lit[k]), text[pos + k])) return false;
    }
    *len = k;
    return true;
}

// Pattern classes. The text reaching the pattern holds no whitespace other than ' ' separators.
bool pat_space(char32_t c) { return uni::is_py_space(c); }
bool pat_letter(char32_t c) { return uni::is_letter(c); }  // [\p{L}] alone: no case expansion
bool pat_number(char32_t c) { return uni::is_number(c); }
// [^\s\p{L}\p{N}] under IGNORECASE: excluded when any simple case variant is a letter or number.
bool pat_other(char32_t c) {
    return !pat_space(c) && !uni::is_letter(c) && !uni::is_number(c) && !uni::has_letter_or_number_case_variant(c);
}

// re.findall(CLIP's pattern, text, IGNORECASE) as spans.
std::vector<std::pair<size_t, size_t>> find_all(const std::u32string& text) {
    static const char* const kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    std::vector<std::pair<size_t, size_t>> spans;
    const size_t n = text.size();
    size_t pos = 0;
    while (pos < n) {
        size_t len = 0;
        const char32_t c = text[pos];
        if (match_literal(text, pos, kStartOfText, &len) || match_literal(text, pos, kEndOfText, &len)) {
            spans.emplace_back(pos, len);
            pos += len;
            continue;
        }
        bool matched = false;
        if (c == '\'') {
            for (const char* con : kContractions) {
                if (match_literal(text, pos, con, &len)) {
                    matched = true;
                    break;
                }
            }
        }
        if (!matched) {
            if (pat_letter(c)) {
                len = 1;
                while (pos + len < n && pat_letter(text[pos + len])) ++len;
            } else if (pat_number(c)) {
                len = 1;
            } else if (pat_other(c)) {
                len = 1;
                while (pos + len < n && pat_other(text[pos + len])) ++len;
            } else {
                ++pos;  // no alternative matches here (' ' or U+0345): findall moves on
                continue;
            }
        }
        spans.emplace_back(pos, len);
        pos += len;
    }
    return spans;
}

}  // namespace

std::shared_ptr<const ClipTokenizer> ClipTokenizer::builtin() {
    static const std::shared_ptr<const ClipTokenizer> instance = [] {
        const size_t size = static_cast<size_t>(multilora_clip_vocab_gz_end - multilora_clip_vocab_gz);
        const std::string text = gunzip(multilora_clip_vocab_gz, size);
        const auto lines = merge_lines(text);
        std::vector<std::pair<std::string, std::string>> merges;
        merges.reserve(lines.size());
        for (const auto& l : lines) {
            if (l.size() != 2) throw RuntimeError("embedded CLIP vocabulary: malformed merge line");
            merges.emplace_back(l[0], l[1]);
        }
        std::shared_ptr<ClipTokenizer> tok(new ClipTokenizer());
        tok->build_from_merges(merges);
        tok->set_merges(lines);
        tok->finish();
        return std::shared_ptr<const ClipTokenizer>(std::move(tok));
    }();
    return instance;
}

// The vocabulary as openai/CLIP's SimpleTokenizer builds it: byte symbols, their "</w>" forms, one token per
// merge, then <|startoftext|> and <|endoftext|>.
void ClipTokenizer::build_from_merges(const std::vector<std::pair<std::string, std::string>>& merges) {
    std::vector<int> order;
    const std::vector<std::string> table = bytes_to_unicode(&order);
    std::vector<std::string> vocab;
    vocab.reserve(512 + merges.size() + 2);
    for (int b : order) vocab.push_back(table[static_cast<size_t>(b)]);
    for (int b : order) vocab.push_back(table[static_cast<size_t>(b)] + "</w>");
    for (const auto& m : merges) vocab.push_back(m.first + m.second);
    vocab.emplace_back(kStartOfText);
    vocab.emplace_back(kEndOfText);
    encoder_.clear();
    for (size_t i = 0; i < vocab.size(); ++i) encoder_[vocab[i]] = static_cast<int32_t>(i);
}

void ClipTokenizer::set_merges(const std::vector<std::vector<std::string>>& merge_lines_in) {
    merge_ranks_.clear();
    merge_ranks_.reserve(merge_lines_in.size());
    // dict(zip(bpe_merges, range(len(bpe_merges)))): a repeated pair keeps its last rank; lines that are not
    // pairs take a rank but can never match.
    for (size_t i = 0; i < merge_lines_in.size(); ++i) {
        const auto& l = merge_lines_in[i];
        if (l.size() == 2) merge_ranks_[l[0] + " " + l[1]] = static_cast<int>(i);
    }
}

void ClipTokenizer::finish() {
    int32_t max_id = -1;
    for (const auto& kv : encoder_) max_id = std::max(max_id, kv.second);
    for (const auto& kv : added_encoder_) max_id = std::max(max_id, kv.second);
    decoder_.assign(static_cast<size_t>(max_id + 1), std::string());
    for (const auto& kv : encoder_) decoder_[static_cast<size_t>(kv.second)] = kv.first;
    for (const auto& kv : added_encoder_) decoder_[static_cast<size_t>(kv.second)] = kv.first;
    if (added_encoder_.empty()) {
        for (const char* s : {kStartOfText, kEndOfText}) {
            auto it = encoder_.find(s);
            if (it == encoder_.end()) throw RuntimeError(std::string("CLIP vocabulary lacks ") + s);
            added_encoder_[s] = it->second;
        }
        bos_id_ = added_encoder_[kStartOfText];
        eos_id_ = unk_id_ = pad_id_ = added_encoder_[kEndOfText];
    }
    added_tokens_.clear();
    for (const auto& kv : added_encoder_) {
        if (kv.first.empty()) continue;
        added_tokens_.emplace_back(uni::decode_utf8(kv.first), kv.second);
    }
    // Longest first, so that at one position the longest added token wins (as the trie does).
    std::sort(added_tokens_.begin(), added_tokens_.end(), [](const auto& a, const auto& b) {
        return a.first.size() != b.first.size() ? a.first.size() > b.first.size() : a.first < b.first;
    });
}

std::shared_ptr<const ClipTokenizer> ClipTokenizer::from_folder(const std::string& dir_in) {
    std::string dir = dir_in;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const std::string vocab_path = dir + "/vocab.json";
    const std::string merges_path = dir + "/merges.txt";

    std::shared_ptr<ClipTokenizer> tok(new ClipTokenizer());
    const nlohmann::json vocab = read_json(vocab_path);
    if (!vocab.is_object()) throw RuntimeError(vocab_path + ": expected a JSON object of token -> id");
    for (const auto& item : vocab.items()) {
        if (!item.value().is_number_integer()) throw RuntimeError(vocab_path + ": non-integer id for a token");
        const auto id = item.value().get<int64_t>();
        if (id < 0 || id > INT32_MAX) throw RuntimeError(vocab_path + ": id out of range");
        tok->encoder_[item.key()] = static_cast<int32_t>(id);
    }
    if (tok->encoder_.empty()) throw RuntimeError(vocab_path + ": empty vocabulary");
    tok->set_merges(merge_lines(read_file(merges_path)));

    // Special tokens: CLIPTokenizer's defaults, then tokenizer_config.json, then special_tokens_map.json
    // (which from_pretrained lets override the config).
    std::unordered_map<std::string, std::string> special = {
        {"bos_token", kStartOfText}, {"eos_token", kEndOfText}, {"unk_token", kEndOfText}, {"pad_token", kEndOfText}};
    std::vector<std::string> additional;
    std::unordered_map<std::string, int32_t> added_with_ids;
    auto content_of = [](const nlohmann::json& v, std::string* out) {
        if (v.is_string()) {
            *out = v.get<std::string>();
            return true;
        }
        if (v.is_object() && v.contains("content") && v["content"].is_string()) {
            *out = v["content"].get<std::string>();
            return true;
        }
        return false;
    };
    auto apply = [&](const std::string& path, bool read_added_decoder) {
        if (!file_exists(path)) return;
        const nlohmann::json j = read_json(path);
        if (!j.is_object()) throw RuntimeError(path + ": expected a JSON object");
        for (auto& kv : special) {
            if (!j.contains(kv.first)) continue;
            const auto& v = j[kv.first];
            std::string s;
            if (v.is_null()) {
                kv.second.clear();
            } else if (content_of(v, &s)) {
                kv.second = s;
            } else {
                throw RuntimeError(path + ": malformed " + kv.first);
            }
        }
        if (j.contains("additional_special_tokens") && j["additional_special_tokens"].is_array()) {
            additional.clear();
            for (const auto& v : j["additional_special_tokens"]) {
                std::string s;
                if (content_of(v, &s)) additional.push_back(s);
            }
        }
        if (read_added_decoder && j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
            for (const auto& item : j["added_tokens_decoder"].items()) {
                std::string s;
                if (!content_of(item.value(), &s)) continue;
                try {
                    added_with_ids[s] = static_cast<int32_t>(std::stol(item.key()));
                } catch (const std::exception&) {
                    throw RuntimeError(path + ": malformed added_tokens_decoder id " + item.key());
                }
            }
        }
    };
    apply(dir + "/tokenizer_config.json", true);
    apply(dir + "/special_tokens_map.json", false);

    auto id_of = [&](const std::string& s) -> int32_t {
        auto a = added_with_ids.find(s);
        if (a != added_with_ids.end()) return a->second;
        auto it = tok->encoder_.find(s);
        if (it == tok->encoder_.end()) throw RuntimeError(dir + ": special token " + s + " is not in vocab.json");
        return it->second;
    };
    for (const auto& kv : added_with_ids) tok->added_encoder_[kv.first] = kv.second;
    for (const auto& kv : special) {
        if (!kv.second.empty()) tok->added_encoder_[kv.second] = id_of(kv.second);
    }
    for (const auto& s : additional) tok->added_encoder_[s] = id_of(s);
    if (special["bos_token"].empty() || special["eos_token"].empty())
        throw RuntimeError(dir + ": the tokenizer has no bos or eos token");
    tok->bos_id_ = id_of(special["bos_token"]);
    tok->eos_id_ = id_of(special["eos_token"]);
    tok->unk_id_ = special["unk_token"].empty() ? tok->eos_id_ : id_of(special["unk_token"]);
    tok->pad_id_ = special["pad_token"].empty() ? tok->eos_id_ : id_of(special["pad_token"]);
    tok->finish();
    return std::shared_ptr<const ClipTokenizer>(std::move(tok));
}

std::vector<std::string> ClipTokenizer::bpe(const std::string& token) const {
    if (token == kStartOfText || token == kEndOfText) return {token};  // CLIPTokenizer's pre-seeded cache
    {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        auto it = cache_.find(token);
        if (it != cache_.end()) return it->second;
    }
    // Split into code points (the byte-level symbols), "</w>" on the last.
    std::vector<std::string> word;
    for (size_t i = 0; i < token.size();) {
        size_t len = 1;
        const auto b = static_cast<unsigned char>(token[i]);
        if (b >= 0xF0) len = 4;
        else if (b >= 0xE0) len = 3;
        else if (b >= 0xC0) len = 2;
        word.push_back(token.substr(i, len));
        i += len;
    }
    if (word.empty()) return {};
    word.back() += "</w>";
    std::string key;
    while (word.size() > 1) {
        int best_rank = INT_MAX;
        size_t best = 0;
        for (size_t i = 0; i + 1 < word.size(); ++i) {
            key.assign(word[i]).append(" ").append(word[i + 1]);
            auto it = merge_ranks_.find(key);
            if (it != merge_ranks_.end() && it->second < best_rank) {
                best_rank = it->second;
                best = i;
            }
        }
        if (best_rank == INT_MAX) break;
        const std::string first = word[best], second = word[best + 1];
        std::vector<std::string> merged;
        merged.reserve(word.size());
        for (size_t i = 0; i < word.size();) {
            if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
                merged.push_back(first + second);
                i += 2;
            } else {
                merged.push_back(word[i]);
                i += 1;
            }
        }
        word.swap(merged);
    }
    {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (cache_.size() >= kWordCacheLimit) cache_.clear();
        cache_.emplace(token, word);
    }
    return word;
}

void ClipTokenizer::tokenize_piece(const std::u32string& piece, std::vector<std::string>& out) const {
    const std::u32string text = basic_tokenize(piece);
    const auto& enc = byte_encoder();
    std::string utf8, mapped;
    for (const auto& span : find_all(text)) {
        utf8.clear();
        for (size_t k = 0; k < span.second; ++k) uni::append_utf8(utf8, text[span.first + k]);
        mapped.clear();
        for (unsigned char b : utf8) mapped += enc[b];
        for (auto& t : bpe(mapped)) out.push_back(std::move(t));
    }
}

std::vector<std::string> ClipTokenizer::tokenize(const std::string& text) const {
    const std::u32string s = uni::decode_utf8(text);
    std::vector<std::string> out;
    // PreTrainedTokenizer.tokenize: split out added tokens (earliest match; longest at one position), then
    // tokenize the pieces between them.
    size_t pos = 0;
    while (pos < s.size()) {
        size_t best_at = std::u32string::npos;
        const std::pair<std::u32string, int32_t>* best = nullptr;
        for (const auto& at : added_tokens_) {
            const size_t f = s.find(at.first, pos);
            if (f != std::u32string::npos && (best_at == std::u32string::npos || f < best_at)) {
                best_at = f;
                best = &at;  // added_tokens_ is longest-first, so ties keep the longest
            }
        }
        const size_t end = best ? best_at : s.size();
        if (end > pos) tokenize_piece(s.substr(pos, end - pos), out);
        if (!best) break;
        out.push_back(uni::encode_utf8(best->first));
        pos = best_at + best->first.size();
    }
    return out;
}

int32_t ClipTokenizer::token_to_id(const std::string& token) const {
    auto a = added_encoder_.find(token);
    if (a != added_encoder_.end()) return a->second;
    auto it = encoder_.find(token);
    return it != encoder_.end() ? it->second : unk_id_;
}

std::vector<int32_t> ClipTokenizer::encode(const std::string& text) const {
    std::vector<int32_t> ids;
    for (const auto& t : tokenize(text)) {
        const int32_t id = token_to_id(t);
        auto it = expansions_.find(id);
        if (it == expansions_.end()) ids.push_back(id);
        else ids.insert(ids.end(), it->second.begin(), it->second.end());
    }
    return ids;
}

std::shared_ptr<const ClipTokenizer> ClipTokenizer::with_added_tokens(
    const std::vector<std::pair<std::string, std::vector<int32_t>>>& tokens) const {
    std::shared_ptr<ClipTokenizer> t(new ClipTokenizer());
    t->encoder_ = encoder_;
    t->merge_ranks_ = merge_ranks_;
    t->added_encoder_ = added_encoder_;
    t->expansions_ = expansions_;
    t->bos_id_ = bos_id_;
    t->eos_id_ = eos_id_;
    t->unk_id_ = unk_id_;
    t->pad_id_ = pad_id_;
    for (const auto& [name, ids] : tokens) {
        if (name.empty() || ids.empty()) throw RuntimeError("an added token needs a name and at least one id");
        t->added_encoder_[name] = ids.front();
        t->expansions_[ids.front()] = ids;
    }
    t->finish();
    // Ids past the first of a multi-vector token have no text of their own; the decoder covers them too.
    int32_t max_id = static_cast<int32_t>(t->decoder_.size()) - 1;
    for (const auto& [name, ids] : tokens) max_id = std::max(max_id, *std::max_element(ids.begin(), ids.end()));
    t->decoder_.resize(static_cast<size_t>(max_id + 1));
    return t;
}

std::vector<int32_t> ClipTokenizer::encode_padded(const std::string& text, bool* truncated) const {
    std::vector<int32_t> ids = encode(text);
    const bool cut = ids.size() > static_cast<size_t>(kChunkIds);
    if (cut) ids.resize(kChunkIds);
    if (truncated) *truncated = cut;
    std::vector<int32_t> out;
    out.reserve(kMaxLength);
    out.push_back(bos_id_);
    out.insert(out.end(), ids.begin(), ids.end());
    out.push_back(eos_id_);
    out.resize(kMaxLength, pad_id_);
    return out;
}

std::vector<std::vector<int32_t>> ClipTokenizer::encode_chunks(const std::string& text) const {
    const std::vector<int32_t> ids = encode(text);
    std::vector<std::vector<int32_t>> chunks;
    size_t i = 0;
    do {
        const size_t end = std::min(ids.size(), i + static_cast<size_t>(kChunkIds));
        std::vector<int32_t> c;
        c.reserve(kMaxLength);
        c.push_back(bos_id_);
        c.insert(c.end(), ids.begin() + static_cast<std::ptrdiff_t>(i), ids.begin() + static_cast<std::ptrdiff_t>(end));
        c.push_back(eos_id_);
        c.resize(kMaxLength, pad_id_);
        chunks.push_back(std::move(c));
        i = end;
    } while (i < ids.size());
    return chunks;
}

std::string ClipTokenizer::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= decoder_.size()) return std::string();
    return decoder_[static_cast<size_t>(id)];
}

}  // namespace multilora::text
