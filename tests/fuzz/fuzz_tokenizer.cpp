// The CLIP tokenizer on arbitrary bytes (invalid UTF-8 included), in every encoding mode a prompt goes through.
#include <string>

#include "fuzz_support.h"
#include "multilora/text/clip_tokenizer.h"

using namespace multilora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const auto tokenizer = text::ClipTokenizer::builtin();
    const std::string prompt(reinterpret_cast<const char*>(data), size);
    fuzz::expect_clean_errors([&] {
        const auto ids = tokenizer->encode(prompt);
        for (int32_t id : ids)
            if (id < 0 || static_cast<size_t>(id) >= tokenizer->vocab_size()) __builtin_trap();
        bool truncated = false;
        const auto padded = tokenizer->encode_padded(prompt, &truncated);
        if (padded.size() != static_cast<size_t>(text::ClipTokenizer::kMaxLength)) __builtin_trap();
        for (const auto& chunk : tokenizer->encode_chunks(prompt))
            if (chunk.size() != static_cast<size_t>(text::ClipTokenizer::kMaxLength)) __builtin_trap();
    });
    return 0;
}
