#include "multilora/lora/layer_adapters.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <set>

#include "multilora/models/matmul_kernels.h"

namespace multilora::lora {
namespace {
std::atomic<RowPolicy> g_policy{RowPolicy::Auto};
}

void set_row_policy(RowPolicy p) { g_policy = p; }
RowPolicy row_policy() { return g_policy; }

namespace {
std::atomic<int64_t> g_images_per_forward{1};
}
void set_images_per_forward(int64_t images) { g_images_per_forward = std::max<int64_t>(1, images); }
int64_t images_per_forward() { return g_images_per_forward; }

LayerAdapters::LayerAdapters(at::Tensor base_weight, bool is_conv, int64_t stride, int64_t padding)
    : base_(std::move(base_weight)), is_conv_(is_conv), stride_(stride), padding_(padding) {
    out_features_ = base_.size(0);
    in_features_ = base_.numel() / out_features_;
}

void LayerAdapters::add_delta(LayerDelta d) {
    if (d.bias.defined()) d.bias = d.bias.to(base_.device(), at::kFloat).reshape({out_features_});
    if (!d.factored()) {
        deltas_.push_back(std::move(d));
        return;
    }
    d.down = d.down.to(base_.device(), base_.scalar_type());
    d.up = d.up.to(base_.device(), base_.scalar_type());
    if (is_conv_) {
        if (d.down.dim() == 2) d.down = d.down.view({d.down.size(0), d.down.size(1), 1, 1});
        if (d.up.dim() == 2) d.up = d.up.view({d.up.size(0), d.up.size(1), 1, 1});
    } else {
        if (d.down.dim() == 4) d.down = d.down.flatten(1);
        if (d.up.dim() == 4) d.up = d.up.flatten(1);
    }
    deltas_.push_back(std::move(d));
}

bool LayerAdapters::has_slot(int slot) const {
    return std::any_of(deltas_.begin(), deltas_.end(), [&](const LayerDelta& d) { return d.slot == slot; });
}

// up·down in float32 as [out, in], through the same matrix-product route as the layers (oneDNN on the CPU).
at::Tensor LayerAdapters::delta_product(const LayerDelta& d) const {
    if (!d.factored()) return d.dense().to(base_.device(), at::kFloat).reshape({out_features_, in_features_});
    at::Tensor up = d.up.to(at::kFloat).reshape({out_features_, -1});
    at::Tensor down_t = d.down.to(at::kFloat).reshape({d.down.size(0), in_features_}).t().contiguous();
    return models::dense(up, down_t, {});
}

at::Tensor LayerAdapters::delta_weight(const std::vector<int>& slots) const {
    at::Tensor total = at::zeros({out_features_, in_features_}, base_.options().dtype(at::kFloat));
    for (const auto& d : deltas_)
        if (std::find(slots.begin(), slots.end(), d.slot) != slots.end()) total.add_(delta_product(d), d.applied());
    return total.view(base_.sizes());
}

at::Tensor LayerAdapters::fused_weight(const std::vector<int>& slots) const {
    // base + Σ scale·up·down, accumulated in float32: the first term writes the new weight in one pass.
    at::Tensor w;
    at::Tensor base = base_.to(at::kFloat).reshape({out_features_, in_features_});
    for (const auto& d : deltas_) {
        if (std::find(slots.begin(), slots.end(), d.slot) == slots.end()) continue;
        if (w.defined()) w.add_(delta_product(d), d.applied());
        else w = at::add(base, delta_product(d), d.applied());
    }
    if (!w.defined()) w = base.clone();
    return w.view(base_.sizes()).to(base_.scalar_type());
}

const at::Tensor& LayerAdapters::group_weight(const std::vector<int>& slots) const {
    auto it = group_weights_.find(slots);
    if (it == group_weights_.end()) it = group_weights_.emplace(slots, fused_weight(slots)).first;
    return it->second;
}

void LayerAdapters::set_fused(const std::vector<int>& slots, int64_t amortize_steps) {
    std::vector<int> mine;
    for (int s : slots)
        if (has_slot(s)) mine.push_back(s);
    groups_.clear();
    group_weights_.clear();
    if (mine.empty()) {
        to_base();
        return;
    }
    if (mode_ == Mode::Fused && mine == fused_slots_ && amortize_steps == amortize_steps_) return;
    mode_ = Mode::Fused;
    fused_slots_ = mine;
    amortize_steps_ = std::max<int64_t>(1, amortize_steps);
    fused_ = at::Tensor();
    decision_ = -1;
    fused_group_ = RowGroup{};
    for (const auto& d : deltas_)
        if (std::find(mine.begin(), mine.end(), d.slot) != mine.end()) fused_group_.deltas.push_back(&d);
}

bool LayerAdapters::fused_ready(int64_t rows) const {
    if (decision_ < 0) {
        decision_ = plan_group(fused_group_, std::max<int64_t>(1, rows / g_images_per_forward), amortize_steps_) ? 1 : 0;
        if (decision_ == 1) fused_ = fused_weight(fused_slots_);
    }
    return decision_ == 1;
}

void LayerAdapters::set_row_slots(const std::vector<std::vector<int>>& row_slots, RowPlan plan) {
    groups_.clear();
    fused_ = at::Tensor();
    fused_slots_.clear();
    plan.amortize_steps = std::max<int64_t>(1, plan.amortize_steps);
    plan.image_rows = std::max<int64_t>(0, plan.image_rows);
    row_plan_ = plan;
    bool any = false;
    // Consecutive rows with the same active deltas form one group.
    for (size_t b = 0; b < row_slots.size(); ++b) {
        std::vector<const LayerDelta*> ds;
        for (const auto& d : deltas_)
            if (std::find(row_slots[b].begin(), row_slots[b].end(), d.slot) != row_slots[b].end()) ds.push_back(&d);
        any = any || !ds.empty();
        if (!groups_.empty() && groups_.back().deltas == ds && groups_.back().first + groups_.back().count == int64_t(b))
            ++groups_.back().count;
        else
            groups_.push_back({static_cast<int64_t>(b), 1, std::move(ds)});
    }
    mode_ = any ? Mode::Rows : Mode::Base;
    if (!any) groups_.clear();
    if (row_plan_.keep_only_selected) keep_selected_group_weights();
}

void LayerAdapters::keep_selected_group_weights() {
    std::set<std::vector<int>> selected;
    for (const RowGroup& g : groups_) selected.insert(slots_of(g));
    for (auto it = group_weights_.begin(); it != group_weights_.end();)
        it = selected.count(it->first) ? std::next(it) : group_weights_.erase(it);
}

std::vector<int> LayerAdapters::slots_of(const RowGroup& g) {
    std::vector<int> slots;
    for (const LayerDelta* d : g.deltas) slots.push_back(d->slot);
    return slots;
}

void LayerAdapters::set_gain(int slot, double gain) {
    bool changed = false;
    for (auto& d : deltas_)
        if (d.slot == slot && d.gain != gain) {
            d.gain = gain;
            changed = true;
        }
    if (!changed) return;
    fused_ = at::Tensor();
    decision_ = -1;
    group_weights_.clear();
}

void LayerAdapters::clear() {
    for (auto& d : deltas_) d.gain = 1.0;
    to_base();
}

void LayerAdapters::to_base() {
    mode_ = Mode::Base;
    fused_ = at::Tensor();
    fused_slots_.clear();
    decision_ = -1;
    fused_group_ = RowGroup{};
    groups_.clear();
    group_weights_.clear();
}

// Cost model, in multiply-adds for one call on `rows` input rows (tokens or pixels):
//   low-rank: every row goes through A then B: rows · Σ r · (in + out);
//   fused:    the group's weight is rebuilt: Σ r · in · out (its matmul with the rows then costs the same
//             as the base matmul it replaces).
// High-resolution layers (thousands of rows) therefore fuse, and the narrow low-resolution ones, where a
// weight is larger than the activations, stay low-rank. At 4096 rows a rank-128 LoRA on a 320x320
// projection costs ~80% of the projection unfused, ~1.5% fused.
bool LayerAdapters::plan_group(const RowGroup& g, int64_t image_rows, int64_t amortize_steps) const {
    RowPolicy p = g_policy;
    if (p == RowPolicy::Fused) return true;
    if (p == RowPolicy::LowRank) return false;
    double low = 0, fuse = 0;
    for (const LayerDelta* d : g.deltas) {
        if (!d->factored()) {  // a full-rank ΔW: applying it costs a whole GEMM, adding it to the weight one pass
            low += static_cast<double>(image_rows) * static_cast<double>(in_features_ * out_features_);
            fuse += static_cast<double>(in_features_ * out_features_);
            continue;
        }
        const double r = static_cast<double>(d->down.size(0));
        low += static_cast<double>(image_rows) * r * static_cast<double>(in_features_ + out_features_);
        fuse += r * static_cast<double>(in_features_) * static_cast<double>(out_features_);
    }
    return fuse / static_cast<double>(amortize_steps) < low;
}

int64_t LayerAdapters::group_image_rows(const RowGroup& g, int64_t rows_per_batch_row) const {
    if (row_plan_.image_rows > 0) return row_plan_.image_rows * rows_per_batch_row;  // each row one image's
    return std::max<int64_t>(1, g.count * rows_per_batch_row / g_images_per_forward);
}

std::vector<bool> LayerAdapters::plan_rows(int64_t rows_per_batch_row) const {
    std::vector<bool> fuse(groups_.size());
    for (size_t i = 0; i < groups_.size(); ++i)
        fuse[i] = !groups_[i].deltas.empty() &&
                  plan_group(groups_[i], group_image_rows(groups_[i], rows_per_batch_row), row_plan_.amortize_steps);
    return fuse;
}

at::Tensor LayerAdapters::low_rank(const at::Tensor& x, const LayerDelta& d) const {
    if (!d.factored()) {
        const at::Tensor w = d.dense().to(base_.device(), base_.scalar_type()).view(base_.sizes());
        return is_conv_ ? at::conv2d(x, w, {}, {stride_, stride_}, {padding_, padding_}) : models::dense(x, w, {});
    }
    if (is_conv_) return at::conv2d(at::conv2d(x, d.down, {}, {stride_, stride_}, {padding_, padding_}), d.up);
    return models::dense(models::dense(x, d.down, {}), d.up, {});
}

at::Tensor LayerAdapters::bias_with(const at::Tensor& bias, const std::vector<const LayerDelta*>& ds) const {
    at::Tensor b;
    for (const LayerDelta* d : ds) {
        if (!d->bias.defined()) continue;
        if (!b.defined()) b = bias.defined() ? bias.to(at::kFloat).clone() : at::zeros({out_features_}, d->bias.options());
        b.add_(d->bias, d->applied());
    }
    return b.defined() ? b.to(base_.scalar_type()) : bias;
}

void LayerAdapters::add_bias_changes(at::Tensor& y, const std::vector<const LayerDelta*>& ds) const {
    for (const LayerDelta* d : ds) {
        if (!d->bias.defined()) continue;
        const at::Tensor b = (d->bias * d->applied()).to(y.scalar_type());
        y.add_(is_conv_ ? b.view({out_features_, 1, 1}) : b);
    }
}

at::Tensor LayerAdapters::linear(const at::Tensor& x, const at::Tensor& bias) const {
    if (mode_ == Mode::Fused) {
        const at::Tensor b = bias_with(bias, fused_group_.deltas);
        if (fused_ready(x.numel() / in_features_)) return models::dense(x, fused_, b);
        at::Tensor y = models::dense(x, base_, b);
        for (const LayerDelta* d : fused_group_.deltas) y.add_(low_rank(x, *d), d->applied());
        return y;
    }
    const std::vector<bool> fuse = plan_rows(x.numel() / std::max<int64_t>(1, x.size(0) * in_features_));
    if (std::none_of(fuse.begin(), fuse.end(), [](bool f) { return f; })) {
        // One base GEMM over the whole batch, then each group's low-rank terms.
        at::Tensor y = models::dense(x, base_, bias);
        for (const auto& g : groups_) {
            at::Tensor yg = y.narrow(0, g.first, g.count);
            for (const LayerDelta* d : g.deltas) yg.add_(low_rank(x.narrow(0, g.first, g.count), *d), d->applied());
            add_bias_changes(yg, g.deltas);
        }
        return y;
    }
    std::vector<int64_t> out_shape = x.sizes().vec();
    out_shape.back() = out_features_;
    at::Tensor y = at::empty(out_shape, x.options());
    for (size_t i = 0; i < groups_.size(); ++i) {
        const RowGroup& g = groups_[i];
        at::Tensor xg = x.narrow(0, g.first, g.count).reshape({-1, in_features_});
        at::Tensor yg = y.narrow(0, g.first, g.count).view({-1, out_features_});
        if (fuse[i]) {
            yg.copy_(models::dense(xg, group_weight(slots_of(g)), bias_with(bias, g.deltas)));
        } else {
            yg.copy_(models::dense(xg, base_, bias_with(bias, g.deltas)));
            for (const LayerDelta* d : g.deltas) yg.add_(low_rank(xg, *d), d->applied());
        }
    }
    return y;
}

at::Tensor LayerAdapters::conv(const at::Tensor& x, const at::Tensor& bias) const {
    const std::vector<int64_t> st{stride_, stride_}, pad{padding_, padding_};
    if (mode_ == Mode::Fused) {
        const int64_t out_pixels = x.size(0) * ((x.size(2) + 2 * padding_ - base_.size(2)) / stride_ + 1) *
                                   ((x.size(3) + 2 * padding_ - base_.size(3)) / stride_ + 1);
        const at::Tensor b = bias_with(bias, fused_group_.deltas);
        if (fused_ready(out_pixels)) return at::conv2d(x, fused_, b, st, pad);
        at::Tensor y = at::conv2d(x, base_, b, st, pad);
        for (const LayerDelta* d : fused_group_.deltas) y.add_(low_rank(x, *d), d->applied());
        return y;
    }
    const std::vector<bool> fuse = plan_rows(x.size(2) * x.size(3));
    if (std::none_of(fuse.begin(), fuse.end(), [](bool f) { return f; })) {
        at::Tensor y = at::conv2d(x, base_, bias, st, pad);
        for (const auto& g : groups_) {
            at::Tensor yg = y.narrow(0, g.first, g.count);
            for (const LayerDelta* d : g.deltas) yg.add_(low_rank(x.narrow(0, g.first, g.count), *d), d->applied());
            add_bias_changes(yg, g.deltas);
        }
        return y;
    }
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i < groups_.size(); ++i) {
        const RowGroup& g = groups_[i];
        at::Tensor xg = x.narrow(0, g.first, g.count);
        if (fuse[i]) {
            parts.push_back(at::conv2d(xg, group_weight(slots_of(g)), bias_with(bias, g.deltas), st, pad));
        } else {
            at::Tensor yg = at::conv2d(xg, base_, bias_with(bias, g.deltas), st, pad);
            for (const LayerDelta* d : g.deltas) yg.add_(low_rank(xg, *d), d->applied());
            parts.push_back(yg);
        }
    }
    return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
}

}  // namespace multilora::lora
