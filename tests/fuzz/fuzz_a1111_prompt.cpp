// A1111 prompt syntax on arbitrary bytes: the emphasis parser, the weighted chunking and the tag scanner.
// Invariants: every chunk is 77 ids with 77 weights, bos first and eos last; weights are finite unless the
// prompt wrote a non-finite number; a bad weight is a UsageError, nothing else escapes.
#include <cmath>
#include <string>

#include "fuzz_support.h"
#include "multilora/text/a1111_prompt.h"
#include "multilora/text/clip_tokenizer.h"

using namespace multilora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const auto tokenizer = text::ClipTokenizer::builtin();
    const std::string prompt(reinterpret_cast<const char*>(data), size);
    fuzz::expect_clean_errors([&] {
        std::vector<text::PromptTag> tags;
        const std::string untagged = text::take_prompt_tags(prompt, tags);
        if (untagged.size() > prompt.size()) __builtin_trap();
        const auto runs = text::parse_prompt_attention(untagged);
        if (runs.empty()) __builtin_trap();
        const text::WeightedPrompt p = text::a1111_tokenize(*tokenizer, untagged);
        if (p.chunks.empty()) __builtin_trap();
        for (const auto& c : p.chunks) {
            if (c.ids.size() != 77 || c.weights.size() != 77) __builtin_trap();
            if (c.ids.front() != text::ClipTokenizer::kBosId || c.ids.back() != text::ClipTokenizer::kEosId) __builtin_trap();
        }
    });
    return 0;
}
