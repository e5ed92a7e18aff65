#include "multilora/text/prompt_encoding.h"

#include <torch/torch.h>

#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"

namespace multilora::text {
namespace {

at::Tensor run_encoder(ClipTextModelImpl& encoder, const std::vector<std::vector<int32_t>>& chunks) {
    std::vector<at::Tensor> outs;
    auto device = encoder.token_embedding->weight.device();
    for (const auto& ids : chunks) {
        std::vector<int64_t> wide(ids.begin(), ids.end());
        at::Tensor t = torch::tensor(wide, torch::kLong).unsqueeze(0).to(device);
        outs.push_back(encoder.forward(t));
    }
    return outs.size() == 1 ? outs[0] : at::cat(outs, 1);
}

}  // namespace

EncodedPrompts encode_prompts(const ClipTokenizer& tokenizer, ClipTextModelImpl& encoder,
                              const std::string& prompt, const std::string& negative_prompt, LongPromptMode mode) {
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
