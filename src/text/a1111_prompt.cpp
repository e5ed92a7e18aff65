#include "multilora/text/a1111_prompt.h"

#include <cctype>

#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

namespace multilora::text {
namespace {

// Python's \w for the ASCII range; UTF-8 lead and continuation bytes count as word characters (letters,
// in the text prompts are written in), as str patterns treat Unicode letters.
bool word_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || c == '_' || u >= 0x80;
}
bool space_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// re.split(r"\s*\bBREAK\b\s*", text): the pieces between whole-word BREAKs, the whitespace around them dropped.
std::vector<std::string> split_on_break(const std::string& text) {
    std::vector<std::string> parts;
    size_t piece_start = 0, from = 0;
    while (true) {
        const size_t p = text.find("BREAK", from);
        if (p == std::string::npos) break;
        const bool left = p == 0 || !word_char(text[p - 1]);
        const bool right = p + 5 == text.size() || !word_char(text[p + 5]);
        if (!left || !right) {
            from = p + 1;
            continue;
        }
        size_t start = p, end = p + 5;
        while (start > piece_start && space_char(text[start - 1])) --start;
        while (end < text.size() && space_char(text[end])) ++end;
        parts.push_back(text.substr(piece_start, start - piece_start));
        piece_start = from = end;
    }
    parts.push_back(text.substr(piece_start));
    return parts;
}

// One match of A1111's re_attention at `i`: its length, and the weight text of ":W)" (else empty).
size_t next_token(const std::string& s, size_t i, std::string& weight) {
    weight.clear();
    const char c = s[i];
    if (c == '\\') return i + 1 < s.size() && std::string("()[]\\").find(s[i + 1]) != std::string::npos ? 2 : 1;
    if (c == '(' || c == '[' || c == ')' || c == ']') return 1;
    if (c == ':') {
        size_t j = i + 1;
        if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
        const size_t digits = j;
        while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
        if (j > digits && j < s.size() && s[j] == ')') {
            weight = s.substr(i + 1, j - i - 1);
            return j - i + 1;
        }
        return 1;
    }
    size_t j = i;
    while (j < s.size() && std::string("\\()[]:").find(s[j]) == std::string::npos) ++j;
    return j - i;
}

// float(text) for [+-]?[.0-9]+, as Python reads it (one point at most, a digit somewhere).
double parse_weight(const std::string& text) {
    const size_t body = text[0] == '+' || text[0] == '-' ? 1 : 0;
    const auto points = std::count(text.begin(), text.end(), '.');
    if (points > 1 || text.size() - body == static_cast<size_t>(points))
        throw UsageError("prompt emphasis weight '" + text + "' is not a number (A1111 syntax: (word:1.2))");
    return std::stod(text);
}

void merge_equal_runs(std::vector<WeightedText>& res) {
    size_t i = 0;
    while (i + 1 < res.size()) {
        if (res[i].weight == res[i + 1].weight) {
            res[i].text += res[i + 1].text;
            res.erase(res.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        } else {
            ++i;
        }
    }
}

}  // namespace

std::vector<WeightedText> parse_prompt_attention(const std::string& text) {
    std::vector<WeightedText> res;
    std::vector<size_t> round, square;
    auto multiply_range = [&](size_t start, double m) {
        for (size_t p = start; p < res.size(); ++p) res[p].weight *= m;
    };
    std::string weight;
    for (size_t i = 0; i < text.size();) {
        const size_t n = next_token(text, i, weight);
        const std::string tok = text.substr(i, n);
        i += n;
        if (tok[0] == '\\') res.push_back({tok.substr(1), 1.0});
        else if (tok == "(") round.push_back(res.size());
        else if (tok == "[") square.push_back(res.size());
        else if (!weight.empty() && !round.empty()) {
            const double w = parse_weight(weight);
            multiply_range(round.back(), w);
            round.pop_back();
        } else if (tok == ")" && !round.empty()) {
            multiply_range(round.back(), 1.1);
            round.pop_back();
        } else if (tok == "]" && !square.empty()) {
            multiply_range(square.back(), 1 / 1.1);
            square.pop_back();
        } else {
            const std::vector<std::string> parts = split_on_break(tok);
            for (size_t k = 0; k < parts.size(); ++k) {
                if (k > 0) res.push_back({"BREAK", -1.0});
                res.push_back({parts[k], 1.0});
            }
        }
    }
    for (size_t pos : round) multiply_range(pos, 1.1);
    for (size_t pos : square) multiply_range(pos, 1 / 1.1);
    if (res.empty()) res.push_back({"", 1.0});
    merge_equal_runs(res);
    return res;
}

WeightedChunk a1111_empty_chunk() {
    WeightedChunk c;
    c.ids.assign(ClipTokenizer::kMaxLength, ClipTokenizer::kEosId);
    c.ids.front() = ClipTokenizer::kBosId;
    c.weights.assign(ClipTokenizer::kMaxLength, 1.0);
    return c;
}

namespace {

constexpr size_t kChunkTokens = 75;

// tokenize_line's state: the chunk being filled, the finished ones, the last comma's position.
struct ChunkPacker {
    WeightedPrompt out;
    WeightedChunk chunk;
    int last_comma = -1;

    void next_chunk(bool is_last = false) {
        out.token_count += is_last ? static_cast<int>(chunk.ids.size()) : static_cast<int>(kChunkTokens);
        while (chunk.ids.size() < kChunkTokens) {
            chunk.ids.push_back(ClipTokenizer::kEosId);
            chunk.weights.push_back(1.0);
        }
        chunk.ids.insert(chunk.ids.begin(), ClipTokenizer::kBosId);
        chunk.ids.push_back(ClipTokenizer::kEosId);
        chunk.weights.insert(chunk.weights.begin(), 1.0);
        chunk.weights.push_back(1.0);
        last_comma = -1;
        out.chunks.push_back(std::move(chunk));
        chunk = {};
    }

    // A full chunk with a comma among its last `backtrack` tokens: what follows the comma moves on.
    void back_off_to_comma() {
        const auto at = static_cast<std::ptrdiff_t>(last_comma + 1);
        std::vector<int32_t> ids(chunk.ids.begin() + at, chunk.ids.end());
        std::vector<double> weights(chunk.weights.begin() + at, chunk.weights.end());
        chunk.ids.resize(static_cast<size_t>(at));
        chunk.weights.resize(static_cast<size_t>(at));
        next_chunk();
        chunk.ids = std::move(ids);
        chunk.weights = std::move(weights);
    }

    void add(int32_t token, double weight, int32_t comma, int backtrack) {
        if (token == comma) {
            last_comma = static_cast<int>(chunk.ids.size());
        } else if (backtrack != 0 && chunk.ids.size() == kChunkTokens && last_comma != -1 &&
                   static_cast<int>(chunk.ids.size()) - last_comma <= backtrack) {
            back_off_to_comma();
        }
        if (chunk.ids.size() == kChunkTokens) next_chunk();
        chunk.ids.push_back(token);
        chunk.weights.push_back(weight);
    }
};

}  // namespace

WeightedPrompt a1111_tokenize(const ClipTokenizer& tokenizer, const std::string& text, int comma_backtrack) {
    const std::vector<int32_t> comma_ids = tokenizer.encode(",");  // ",</w>", A1111's comma_token
    const int32_t comma = comma_ids.size() == 1 ? comma_ids[0] : -1;
    ChunkPacker packer;
    for (const WeightedText& run : parse_prompt_attention(text)) {
        if (run.is_break()) {
            packer.next_chunk();
            continue;
        }
        for (int32_t token : tokenizer.encode(run.text)) packer.add(token, run.weight, comma, comma_backtrack);
    }
    if (!packer.chunk.ids.empty() || packer.out.chunks.empty()) packer.next_chunk(true);
    return std::move(packer.out);
}

std::string take_prompt_tags(const std::string& prompt, std::vector<PromptTag>& tags) {
    std::string out;
    size_t i = 0;
    while (i < prompt.size()) {
        size_t j = i + 1;
        if (prompt[i] == '<') {
            while (j < prompt.size() && (std::isalnum(static_cast<unsigned char>(prompt[j])) || prompt[j] == '_')) ++j;
            const size_t close = prompt.find('>', j);
            if (j > i + 1 && j < prompt.size() && prompt[j] == ':' && close != std::string::npos && close > j + 1) {
                PromptTag tag{prompt.substr(i + 1, j - i - 1), {}};
                const std::string args = prompt.substr(j + 1, close - j - 1);
                size_t from = 0;
                for (size_t c = args.find(':'); c != std::string::npos; from = c + 1, c = args.find(':', from))
                    tag.args.push_back(args.substr(from, c - from));
                tag.args.push_back(args.substr(from));
                tags.push_back(std::move(tag));
                i = close + 1;
                continue;
            }
        }
        out += prompt[i];
        i = i + 1;
    }
    return out;
}

}  // namespace multilora::text
