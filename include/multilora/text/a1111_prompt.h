// A1111's prompt syntax (`--prompt-syntax a1111`): attention emphasis as modules/prompt_parser.py's
// parse_prompt_attention reads it, and the weighted 75-token chunks of modules/sd_hijack_clip.py's
// tokenize_line (BREAK, the comma back-off). Prompt editing ([a:b:0.5]) and alternation ([a|b]) are not read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace multilora::text {

class ClipTokenizer;

// A run of prompt text and its weight. A1111 marks a forced chunk break as the text "BREAK" with weight -1.
struct WeightedText {
    std::string text;
    double weight = 1.0;
    bool is_break() const { return weight == -1.0 && text == "BREAK"; }
};

// "(x)" ×1.1, "((x))" ×1.21, "(x:1.3)" ×1.3, "[x]" ÷1.1, "\(" "\)" "\[" "\]" "\\" literal, unclosed brackets
// close at the end, "BREAK" as a word splits; adjacent runs of equal weight merge. Throws UsageError for a
// weight that is not a number ("(x:1.2.3)"), where A1111 raises.
std::vector<WeightedText> parse_prompt_attention(const std::string& text);

// One CLIP window: bos, 75 tokens (eos-padded), eos, and each position's weight.
struct WeightedChunk {
    std::vector<int32_t> ids;
    std::vector<double> weights;
};

struct WeightedPrompt {
    std::vector<WeightedChunk> chunks;
    int token_count = 0;  // A1111's count: 75 per full chunk plus the last chunk's tokens
};

// The prompt as A1111 feeds it to CLIP: each weighted run tokenized alone, packed into 75-token chunks; at a
// chunk's end, text after a comma among its last `comma_backtrack` tokens moves to the next chunk (A1111's
// default 20; 0 turns it off). An empty prompt gives one chunk.
WeightedPrompt a1111_tokenize(const ClipTokenizer& tokenizer, const std::string& text, int comma_backtrack = 20);

// bos, 76 × eos, all weights 1: what pads the shorter of prompt and negative prompt.
WeightedChunk a1111_empty_chunk();

// The `<NAME:ARGS>` tags A1111's extra networks read (`<lora:file:0.8>`), taken out of the prompt.
struct PromptTag {
    std::string kind;  // "lora", "lyco", "hypernet", ...
    std::vector<std::string> args;
};
// Removes every `<kind:args>` tag (kind is a word, args contain no '>') and returns the prompt without them,
// as A1111's extra_networks.parse_prompt does.
std::string take_prompt_tags(const std::string& prompt, std::vector<PromptTag>& tags);

}  // namespace multilora::text
