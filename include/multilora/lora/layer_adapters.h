// LoRA state attached to one Linear or Conv2d layer. The base weight is never modified: deltas live
// beside it, either fused into a separate weight (Merge, or Switch's single active LoRA) or applied
// unfused per batch row (Composite, where each row has its own active LoRA).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::lora {

// One LoRA's factors for one layer: delta W = scale · up · down (conv: up 1x1 after a k×k down).
struct LayerDelta {
    int slot = -1;          // the LoRA's index in the run's ordered list
    at::Tensor down;        // [r, in] or [r, in, k, k]
    at::Tensor up;          // [out, r] or [out, r, 1, 1]
    double scale = 1.0;     // (alpha / rank) · user weight · lora_scale
};

class LayerAdapters {
public:
    explicit LayerAdapters(at::Tensor base_weight) : base_(std::move(base_weight)) {}

    void add_delta(LayerDelta d) { deltas_.push_back(std::move(d)); }
    const std::vector<LayerDelta>& deltas() const { return deltas_; }

    // Fused mode: weight = base + Σ_{slot in active} scale·up·down, built once per activation change.
    // An empty `active` list (or none of this layer's slots) clears the fused weight: base is used.
    void set_fused(const std::vector<int>& active_slots);
    bool has_fused() const { return fused_.defined(); }
    const at::Tensor& fused_weight() const { return fused_; }

    // Unfused per-row mode: `row_slots[b]` lists the LoRA slots active for batch row b. Applied on top
    // of whatever weight the forward used. Empty clears it.
    void set_row_slots(const std::vector<std::vector<int>>& row_slots);
    bool has_row_adapters() const { return !row_groups_.empty(); }

    // y += Σ rows' deltas, for Linear ([B, ..., in] -> [B, ..., out]) and Conv2d.
    void add_linear_row_deltas(const at::Tensor& x, at::Tensor& y) const;
    void add_conv_row_deltas(const at::Tensor& x, at::Tensor& y, int64_t stride, int64_t padding) const;

    // The full delta of one slot for this layer (zeros-shaped undefined when the slot has none).
    at::Tensor delta_weight(int slot) const;

private:
    struct RowGroup {
        const LayerDelta* delta;
        std::vector<int64_t> rows;  // contiguous ranges are common; kept as a list for generality
        int64_t first = 0, count = 0;  // set when rows are one contiguous range
    };
    at::Tensor base_;
    std::vector<LayerDelta> deltas_;
    at::Tensor fused_;
    std::vector<int> fused_slots_;
    std::vector<RowGroup> row_groups_;
};

}  // namespace multilora::lora
