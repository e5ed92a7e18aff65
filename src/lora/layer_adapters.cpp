#include "multilora/lora/layer_adapters.h"

#include <torch/torch.h>

#include <algorithm>

namespace multilora::lora {

at::Tensor LayerAdapters::delta_weight(int slot) const {
    at::Tensor total;
    for (const auto& d : deltas_) {
        if (d.slot != slot) continue;
        at::Tensor w;
        if (d.down.dim() == 2) {
            w = at::mm(d.up.to(at::kFloat), d.down.to(at::kFloat));
        } else {
            // up is [out, r, 1, 1]; down [r, in, k, k]: delta[o, i, y, x] = Σ_r up[o, r] · down[r, i, y, x].
            at::Tensor up2 = d.up.to(at::kFloat).flatten(1);
            w = at::mm(up2, d.down.to(at::kFloat).flatten(1)).view({d.up.size(0), d.down.size(1), d.down.size(2), d.down.size(3)});
        }
        w.mul_(d.scale);
        total = total.defined() ? total.add_(w) : w;
    }
    return total;
}

void LayerAdapters::set_fused(const std::vector<int>& active_slots) {
    std::vector<int> mine;
    for (int s : active_slots)
        if (std::any_of(deltas_.begin(), deltas_.end(), [&](const LayerDelta& d) { return d.slot == s; }))
            mine.push_back(s);
    if (mine == fused_slots_ && (fused_.defined() || mine.empty())) return;
    fused_slots_ = mine;
    if (mine.empty()) {
        fused_ = at::Tensor();
        return;
    }
    at::Tensor w = base_.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
    for (int s : mine) w.add_(delta_weight(s).view(w.sizes()));
    fused_ = w.to(base_.scalar_type());
}

void LayerAdapters::set_row_slots(const std::vector<std::vector<int>>& row_slots) {
    row_groups_.clear();
    for (const auto& d : deltas_) {
        RowGroup g{&d, {}, 0, 0};
        for (size_t b = 0; b < row_slots.size(); ++b)
            if (std::find(row_slots[b].begin(), row_slots[b].end(), d.slot) != row_slots[b].end())
                g.rows.push_back(static_cast<int64_t>(b));
        if (g.rows.empty()) continue;
        bool contiguous = g.rows.back() - g.rows.front() + 1 == static_cast<int64_t>(g.rows.size());
        if (contiguous) {
            g.first = g.rows.front();
            g.count = static_cast<int64_t>(g.rows.size());
        }
        row_groups_.push_back(std::move(g));
    }
}

void LayerAdapters::add_linear_row_deltas(const at::Tensor& x, at::Tensor& y) const {
    for (const auto& g : row_groups_) {
        const LayerDelta& d = *g.delta;
        if (g.count > 0) {
            at::Tensor xs = x.narrow(0, g.first, g.count);
            at::Tensor low = at::linear(xs, d.down);
            y.narrow(0, g.first, g.count).add_(at::linear(low, d.up), d.scale);
        } else {
            at::Tensor idx = torch::tensor(g.rows, torch::kLong);
            at::Tensor low = at::linear(x.index_select(0, idx), d.down);
            y.index_add_(0, idx, at::linear(low, d.up).mul_(d.scale));
        }
    }
}

void LayerAdapters::add_conv_row_deltas(const at::Tensor& x, at::Tensor& y, int64_t stride, int64_t padding) const {
    for (const auto& g : row_groups_) {
        const LayerDelta& d = *g.delta;
        at::Tensor down = d.down.dim() == 4 ? d.down : d.down.view({d.down.size(0), d.down.size(1), 1, 1});
        at::Tensor up = d.up.dim() == 4 ? d.up : d.up.view({d.up.size(0), d.up.size(1), 1, 1});
        if (g.count > 0) {
            at::Tensor low = at::conv2d(x.narrow(0, g.first, g.count), down, {}, {stride, stride}, {padding, padding});
            y.narrow(0, g.first, g.count).add_(at::conv2d(low, up), d.scale);
        } else {
            at::Tensor idx = torch::tensor(g.rows, torch::kLong);
            at::Tensor low = at::conv2d(x.index_select(0, idx), down, {}, {stride, stride}, {padding, padding});
            y.index_add_(0, idx, at::conv2d(low, up).mul_(d.scale));
        }
    }
}

}  // namespace multilora::lora
