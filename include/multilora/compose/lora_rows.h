// Each composed LoRA alone on the step's rows, batched: the layout Composite and the methods built on it
// share. The batch is [LoRA 0: ∅ ×n, c ×n | LoRA 1: ∅ ×n, c ×n | ...] (no ∅ rows without guidance), each
// row with its own adapter, as many LoRAs per UNet forward as the row budget allows.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/compose/method.h"

namespace multilora::compose {

// One forward's worth of LoRAs, each alone on its rows (cfg_latents / cfg_context repeated per LoRA).
struct LoraRowBatch {
    at::Tensor input, context;
    std::vector<std::vector<int>> row_slots;  // for AdapterSet::activate_unet_rows
    int64_t rows_per_lora = 0;
};
LoraRowBatch lora_row_batch(const StepContext& ctx, const std::vector<int>& slots);

// Hands each forward's predictions to `consume` as [count, rows per LoRA, C, H, W], with the composition
// index of its first LoRA. max_batch_rows = 0: every LoRA in one forward. Leaves the UNet on base weights.
void for_each_lora_rows(models::UNet2DConditionModelImpl& unet, lora::AdapterSet& adapters,
                        const std::vector<int>& slots, const StepContext& ctx, int max_batch_rows,
                        const std::function<void(int64_t first, const at::Tensor& eps)>& consume);

}  // namespace multilora::compose
