#include "multilora/text/prompt_encoding.h"

#include <torch/torch.h>

#include "multilora/text/clip_text_model.h"
#include "multilora/text/a1111_prompt.h"
#include "multilora/text/clip_tokenizer.h"

namespace multilora::text {
namespace {

// One chunk's token ids through the encoder: [1, ids, hidden].
at::Tensor encode_ids(ClipTextModelImpl& encoder, const std::vector<int32_t>& ids) {
    std::vector<int64_t> wide(ids.begin(), ids.end());
    return encoder.forward(torch::tensor(wide, torch::kLong).unsqueeze(0).to(encoder.token_embedding->weight.device()));
}

at::Tensor run_encoder(ClipTextModelImpl& encoder, const std::vector<std::vector<int32_t>>& chunks) {
    std::vector<at::Tensor> outs;
    for (const auto& ids : chunks) outs.push_back(encode_ids(encoder, ids));
    return outs.size() == 1 ? outs[0] : at::cat(outs, 1);
}

// A1111's process_tokens per chunk, then the chunks side by side; `count` chunks (empty ones pad).
at::Tensor run_weighted(ClipTextModelImpl& encoder, const WeightedPrompt& prompt, size_t count) {
    std::vector<at::Tensor> outs;
    const auto device = encoder.token_embedding->weight.device();
    for (size_t i = 0; i < count; ++i) {
        const WeightedChunk chunk = i < prompt.chunks.size() ? prompt.chunks[i] : a1111_empty_chunk();
        at::Tensor z = encode_ids(encoder, chunk.ids);
        std::vector<float> w(chunk.weights.begin(), chunk.weights.end());
        const at::Tensor m = torch::tensor(w).to(device, z.scalar_type()).view({1, -1, 1});
        const at::Tensor original_mean = z.mean();
        z = z * m;
        z = z * (original_mean / z.mean());
        outs.push_back(z);
    }
    return outs.size() == 1 ? outs[0] : at::cat(outs, 1);
}

EncodedPrompts encode_a1111(const ClipTokenizer& tokenizer, ClipTextModelImpl& encoder, const std::string& prompt,
                            const std::string& negative_prompt) {
    // Extra-network tags (<lora:NAME:W>) are not text: A1111 takes them out before tokenizing.
    std::vector<PromptTag> tags;
    const WeightedPrompt cond = a1111_tokenize(tokenizer, take_prompt_tags(prompt, tags)),
                         uncond = a1111_tokenize(tokenizer, take_prompt_tags(negative_prompt, tags));
    const size_t count = std::max(cond.chunks.size(), uncond.chunks.size());
    EncodedPrompts out;
    out.cond = run_weighted(encoder, cond, count);
    out.uncond = run_weighted(encoder, uncond, count);
    out.chunks = static_cast<int>(count);
    return out;
}

}  // namespace

EncodedPrompts encode_prompts(const ClipTokenizer& tokenizer, ClipTextModelImpl& encoder,
                              const std::string& prompt, const std::string& negative_prompt, LongPromptMode mode,
                              PromptSyntax syntax) {
    if (syntax == PromptSyntax::A1111) return encode_a1111(tokenizer, encoder, prompt, negative_prompt);
    EncodedPrompts out;
    std::vector<std::vector<int32_t>> cond_ids, uncond_ids;
    if (mode == LongPromptMode::Truncate) {
        cond_ids = {tokenizer.encode_padded(prompt, &out.prompt_truncated)};
        uncond_ids = {tokenizer.encode_padded(negative_prompt, &out.negative_truncated)};
    } else {
        cond_ids = tokenizer.encode_chunks(prompt);
        uncond_ids = tokenizer.encode_chunks(negative_prompt);
        // Both sides need the same length for the batched UNet: pad the shorter with empty chunks.
        auto empty = tokenizer.encode_chunks("");
        while (uncond_ids.size() < cond_ids.size()) uncond_ids.push_back(empty[0]);
        while (cond_ids.size() < uncond_ids.size()) cond_ids.push_back(empty[0]);
        out.chunks = static_cast<int>(cond_ids.size());
    }
    out.cond = run_encoder(encoder, cond_ids);
    out.uncond = run_encoder(encoder, uncond_ids);
    return out;
}

}  // namespace multilora::text
