// LoRA state attached to one Linear or Conv2d layer. The base weight is never modified: deltas live
// beside it and are applied in one of two ways.
//  - Fused: W' = W + Σ s·B·A, built once when the active set changes (Merge; Switch's one active LoRA).
//  - Per-row: each batch row has its own active LoRAs (Composite). Each group of rows is computed either
//    with its own fused weight (built for the call) or as base + s·B(A x), whichever costs fewer FLOPs
//    for the rows at hand; see LayerAdapters::plan_group.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/models/weight_adapter.h"

namespace multilora::lora {

// One adapter's change to one layer. A plain LoRA is factored: ΔW = scale · up · down (conv: a k×k down,
// then a 1×1 up). Full-rank forms (LoHa, LoKr, IA3, full diffs, DoRA, Tucker LoCon) carry a builder of ΔW
// instead, so that only their small factors stay in memory: ΔW = scale · dense().
struct LayerDelta {
    int slot = -1;       // the LoRA's index in the run's ordered list
    at::Tensor down;     // [r, in] (Linear) or [r, in, kh, kw] (Conv2d); undefined for full-rank forms
    at::Tensor up;       // [out, r] or [out, r, 1, 1]
    double scale = 1.0;  // (alpha / rank) · user weight · lora_scale (full-rank forms: weight · lora_scale)
    double gain = 1.0;   // a weight schedule's factor at the current step
    // Full-rank forms: ΔW in float32, in the base weight's shape, the form's own scale included.
    std::function<at::Tensor()> dense;
    at::Tensor bias;     // a full diff's bias change (diff_b), float32 [out]; undefined otherwise
    int64_t rank = 0;    // full-rank forms: the file's rank (LoHa, LoKr), for methods that size by rank
    double applied() const { return scale * gain; }
    bool factored() const { return !dense; }
};

// How per-row groups are computed: chosen by cost (default), or forced (tests and benchmarks).
enum class RowPolicy { Auto, LowRank, Fused };
void set_row_policy(RowPolicy policy);
RowPolicy row_policy();

// The images sharing each forward (generate --num-images, batch --batch-images). The fuse-or-low-rank choice
// is made per image, on the rows one image brings, so that an image comes out with the same arithmetic, and
// the same bits, whether it ran alone or beside others.
void set_images_per_forward(int64_t images);
int64_t images_per_forward();

// Sets images_per_forward() for a scope and puts the earlier value back when it ends (also on an error).
class ImagesPerForwardScope {
public:
    explicit ImagesPerForwardScope(int64_t images) : before_(images_per_forward()) { set_images_per_forward(images); }
    ~ImagesPerForwardScope() { set_images_per_forward(before_); }
    ImagesPerForwardScope(const ImagesPerForwardScope&) = delete;
    ImagesPerForwardScope& operator=(const ImagesPerForwardScope&) = delete;

private:
    int64_t before_;
};

// How LayerAdapters' per-row groups decide between fused and low-rank arithmetic (set_row_slots).
struct RowPlan {
    int64_t amortize_steps = 1;       // the forwards a group's fused weight serves
    int64_t image_rows = 0;           // batch rows one image brings to a group (0: rows / images_per_forward())
    bool keep_only_selected = false;  // drop the cached weights of slot sets no group selects now
};

class LayerAdapters final : public models::WeightAdapter {
public:
    // `stride` / `padding` describe the base convolution (unused for Linear).
    LayerAdapters(at::Tensor base_weight, bool is_conv, int64_t stride = 1, int64_t padding = 0);

    void add_delta(LayerDelta d);
    const std::vector<LayerDelta>& deltas() const { return deltas_; }
    bool has_slot(int slot) const;

    // Whole-batch mode for the listed slots (when none of them targets this layer the base weight is used).
    // The choice between a fused weight and base + low-rank terms is made at the first forward, when the row
    // count is known: building the fused weight is worth it when its cost, spread over the `amortize_steps`
    // forwards it will serve, is below the low-rank terms' cost per forward (Merge: the whole run; Switch:
    // one switch interval).
    void set_fused(const std::vector<int>& slots, int64_t amortize_steps = int64_t{1} << 30);
    // Per-row mode: row_slots[b] lists the slots active for batch row b. By default each group of rows
    // decides for one forward and the rows are shared by images_per_forward() images (Composite's per-LoRA
    // blocks). With an image map (AdapterSet::map_images) each row is one image's, and the plan says how many
    // rows that image brings and for how many forwards, so a group fuses as that image alone would; a
    // whole-batch map activation also keeps only the fused weights of the groups it selects.
    void set_row_slots(const std::vector<std::vector<int>>& row_slots, RowPlan plan = {});
    // Per-row mode: the rows one image brings to a group, as set_row_slots was told (0: counted), for tests.
    int64_t row_image_rows() const { return row_plan_.image_rows; }
    // Back to base weights, every gain back to 1.
    void clear();
    // Sets the gain of `slot`'s delta; a change drops the fused weights built with the old one.
    void set_gain(int slot, double gain);
    bool active() const override { return mode_ != Mode::Base; }

    // The layer's forward with adapters applied (only called while active()): linear() or conv().
    at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const override {
        return is_conv_ ? conv(x, bias) : linear(x, bias);
    }
    at::Tensor linear(const at::Tensor& x, const at::Tensor& bias) const;
    at::Tensor conv(const at::Tensor& x, const at::Tensor& bias) const;

    // Σ_{s in slots} scale·up·down in the base weight's shape (float32), for tests and fusing.
    at::Tensor delta_weight(const std::vector<int>& slots) const;
    // base + delta_weight(slots), in the base dtype.
    at::Tensor fused_weight(const std::vector<int>& slots) const;
    // One delta's ΔW without its scale and gain, float32 [out, in] (conv: in·kh·kw).
    at::Tensor delta_product(const LayerDelta& d) const;
    // Per-row mode: how many fused group weights are kept (tests).
    size_t cached_group_weights() const { return group_weights_.size(); }

private:
    enum class Mode { Base, Fused, Rows };
    // Base weights, gains kept.
    void to_base();
    struct RowGroup {
        int64_t first = 0, count = 0;
        std::vector<const LayerDelta*> deltas;  // this layer's deltas active for these rows
    };
    // True when building a fused weight, once for `amortize_steps` forwards, costs fewer FLOPs than the
    // low-rank path on `image_rows` input rows (one image's, so that an image gets the same arithmetic alone
    // or beside others).
    bool plan_group(const RowGroup& g, int64_t image_rows, int64_t amortize_steps) const;
    // Per-row mode: one image's input rows for group g, whose batch rows each hold `rows_per_batch_row`.
    int64_t group_image_rows(const RowGroup& g, int64_t rows_per_batch_row) const;
    // Per-row mode: whether each group runs on a fused weight.
    std::vector<bool> plan_rows(int64_t rows_per_batch_row) const;
    static std::vector<int> slots_of(const RowGroup& g);
    // An image map's activation: the cached group weights of slot sets no group selects now are dropped
    // (a Switch over n images would otherwise keep k·n fused copies of every layer).
    void keep_selected_group_weights();
    // Fused mode: decides (once) and builds the fused weight if it pays; true when fused.
    bool fused_ready(int64_t rows) const;
    at::Tensor low_rank(const at::Tensor& x, const LayerDelta& d) const;
    // `bias` plus the deltas' bias changes (full diffs' diff_b), or `bias` itself when none has one.
    at::Tensor bias_with(const at::Tensor& bias, const std::vector<const LayerDelta*>& ds) const;
    // Adds the bias changes of `ds` to an output computed with the base bias.
    void add_bias_changes(at::Tensor& y, const std::vector<const LayerDelta*>& ds) const;
    // Per-row mode: a group's fused weight, built at its first use and kept while the same slots stay
    // selected (Composite evaluates the same groups every step; only layers where fusing pays, the
    // high-resolution ones with small weights, build one). Dropped by set_fused() and clear().
    const at::Tensor& group_weight(const std::vector<int>& slots) const;

    at::Tensor base_;
    bool is_conv_;
    int64_t stride_, padding_;
    int64_t in_features_, out_features_;  // conv: in·kh·kw and out
    std::vector<LayerDelta> deltas_;
    Mode mode_ = Mode::Base;
    mutable at::Tensor fused_;
    std::vector<int> fused_slots_;
    int64_t amortize_steps_ = 1;
    RowPlan row_plan_;  // per-row mode: see set_row_slots
    mutable int decision_ = -1;  // fused mode: -1 undecided, 0 low-rank, 1 fused
    RowGroup fused_group_;        // fused mode: the active deltas, for the low-rank path
    std::vector<RowGroup> groups_;
    mutable std::map<std::vector<int>, at::Tensor> group_weights_;
};

}  // namespace multilora::lora
