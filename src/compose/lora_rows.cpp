#include "multilora/compose/lora_rows.h"

#include <torch/torch.h>

#include <algorithm>

#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"

namespace multilora::compose {

void for_each_lora_rows(models::UNet2DConditionModelImpl& unet, lora::AdapterSet& adapters,
                        const std::vector<int>& slots, const StepContext& ctx, int max_batch_rows,
                        const std::function<void(int64_t first, const at::Tensor& eps)>& consume) {
    const int64_t k = static_cast<int64_t>(slots.size());
    const int64_t n = ctx.scaled_latents.size(0);
    const bool cfg = ctx.guidance_scale > 1.0;
    const int64_t per_lora = cfg ? 2 * n : n;
    at::Tensor uncond = ctx.prompts.uncond.expand({n, -1, -1});
    at::Tensor cond = ctx.prompts.cond.expand({n, -1, -1});
    at::Tensor lora_ctx = cfg ? at::cat({uncond, cond}, 0) : cond;
    at::Tensor lora_in = cfg ? at::cat({ctx.scaled_latents, ctx.scaled_latents}, 0) : ctx.scaled_latents;

    int64_t loras_per_chunk = k;
    if (max_batch_rows > 0) loras_per_chunk = std::max<int64_t>(1, max_batch_rows / per_lora);
    for (int64_t first = 0; first < k; first += loras_per_chunk) {
        const int64_t count = std::min<int64_t>(loras_per_chunk, k - first);
        std::vector<std::vector<int>> rows;
        for (int64_t i = 0; i < count; ++i)
            for (int64_t r = 0; r < per_lora; ++r) rows.push_back({slots[first + i]});
        adapters.activate_unet_rows(rows);
        at::Tensor input = count == 1 ? lora_in : lora_in.repeat({count, 1, 1, 1});
        at::Tensor context = count == 1 ? lora_ctx : lora_ctx.repeat({count, 1, 1});
        consume(first, unet.forward(input, ctx.timestep, context)
                           .view({count, per_lora, lora_in.size(1), lora_in.size(2), lora_in.size(3)}));
    }
    adapters.activate_unet({});
}

}  // namespace multilora::compose
