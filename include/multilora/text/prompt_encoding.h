// Prompt -> CLIP hidden states, as StableDiffusionPipeline's encode_prompt does it (or, with chunking,
// as A1111 and stable-diffusion.cpp encode long prompts).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace multilora::text {

class ClipTokenizer;
class ClipTextModelImpl;

enum class LongPromptMode { Truncate, Chunk };

// How prompt text is read: diffusers' plain text (the default; the paper's runs stay exact), or A1111's syntax
// (emphasis weights, BREAK, 75-token chunks with its comma back-off; see a1111_prompt.h).
enum class PromptSyntax { Plain, A1111 };

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
// A1111 syntax always chunks (`mode` is not read): each chunk's hidden states are multiplied by its tokens'
// weights, then rescaled so that the chunk's mean is what it was (sd_emphasis.py's "Original").
EncodedPrompts encode_prompts(const ClipTokenizer& tokenizer, ClipTextModelImpl& encoder,
                              const std::string& prompt, const std::string& negative_prompt, LongPromptMode mode,
                              PromptSyntax syntax = PromptSyntax::Plain);

}  // namespace multilora::text
