#include "multilora/compose/lora_rows.h"

#include <torch/torch.h>

#include <algorithm>

#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"

namespace multilora::compose {

LoraRowBatch lora_row_batch(const StepContext& ctx, const std::vector<int>& slots) {
    LoraRowBatch b;
    const int64_t count = static_cast<int64_t>(slots.size());
    const at::Tensor one_in = cfg_latents(ctx), one_ctx = cfg_context(ctx.prompts, ctx);
    b.rows_per_lora = one_in.size(0);
    for (int slot : slots)
        for (int64_t r = 0; r < b.rows_per_lora; ++r) b.row_slots.push_back({slot});
    b.input = count == 1 ? one_in : one_in.repeat({count, 1, 1, 1});
    b.context = count == 1 ? one_ctx : one_ctx.repeat({count, 1, 1});
    return b;
}

void for_each_lora_rows(models::UNet2DConditionModelImpl& unet, lora::AdapterSet& adapters,
                        const std::vector<int>& slots, const StepContext& ctx, int max_batch_rows,
                        const std::function<void(int64_t first, const at::Tensor& eps)>& consume) {
    const int64_t k = static_cast<int64_t>(slots.size());
    const int64_t per_lora = cfg_latents(ctx).size(0);
    const auto& s = ctx.scaled_latents.sizes();
    int64_t loras_per_chunk = k;
    if (max_batch_rows > 0) loras_per_chunk = std::max<int64_t>(1, max_batch_rows / per_lora);
    for (int64_t first = 0; first < k; first += loras_per_chunk) {
        const int64_t count = std::min<int64_t>(loras_per_chunk, k - first);
        const LoraRowBatch b = lora_row_batch(ctx, std::vector<int>(slots.begin() + first, slots.begin() + first + count));
        adapters.activate_unet_rows(b.row_slots);
        consume(first, unet.forward(b.input, ctx.timestep, b.context).view({count, per_lora, s[1], s[2], s[3]}));
    }
    adapters.activate_unet({});
}

}  // namespace multilora::compose
