// Prompt -> CLIP hidden states, as StableDiffusionPipeline's encode_prompt does it (or, with chunking,
// as A1111 and stable-diffusion.cpp encode long prompts).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace multilora::text {
class ClipTokenizer;
class ClipTextModelImpl;
}  // namespace multilora::text

namespace multilora::pipeline {

enum class LongPromptMode { Truncate, Chunk };

struct EncodedPrompts {
    at::Tensor cond;    // [1, T, D]
    at::Tensor uncond;  // [1, T, D]
    bool truncated = false;
    int chunks = 1;
};

// Encodes prompt and negative prompt with the same token length (both padded to the same chunk count).
EncodedPrompts encode_prompts(const text::ClipTokenizer& tokenizer, text::ClipTextModelImpl& encoder,
                              const std::string& prompt, const std::string& negative_prompt, LongPromptMode mode);

}  // namespace multilora::pipeline
