// Prompt -> CLIP hidden states, as StableDiffusionPipeline's encode_prompt does it (or, with chunking,
// as A1111 and stable-diffusion.cpp encode long prompts).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace multilora::text {

class ClipTokenizer;
class ClipTextModelImpl;

enum class LongPromptMode { Truncate, Chunk };

struct EncodedPrompts {
    at::Tensor cond;    // [1, T, D]
    at::Tensor uncond;  // [1, T, D]
    bool prompt_truncated = false;    // the prompt was cut at 77 tokens (Truncate mode)
    bool negative_truncated = false;  // the negative prompt was
    int chunks = 1;
    bool truncated() const { return prompt_truncated || negative_truncated; }
};

// Encodes prompt and negative prompt with the same token length (both padded to the same chunk count).
// Truncation is reported in the result, not logged: the caller decides whether to warn.
EncodedPrompts encode_prompts(const ClipTokenizer& tokenizer, ClipTextModelImpl& encoder,
                              const std::string& prompt, const std::string& negative_prompt, LongPromptMode mode);

}  // namespace multilora::text
