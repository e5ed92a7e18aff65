#include "multilora/train/trainable_lora.h"

#include <torch/torch.h>

#include <algorithm>

#include "multilora/io/safetensors.h"
#include "multilora/models/layers.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::train {

LoraTargets parse_lora_targets(const std::string& text) {
    if (text == "attn") return LoraTargets::Attn;
    if (text == "attn+ff") return LoraTargets::AttnFF;
    if (text == "all") return LoraTargets::All;
    throw UsageError("--targets must be attn, attn+ff or all (got '" + text + "')");
}

const char* lora_targets_name(LoraTargets t) {
    return t == LoraTargets::Attn ? "attn" : t == LoraTargets::AttnFF ? "attn+ff" : "all";
}

bool lora_targets_layer(LoraTargets t, const std::string& path) {
    static const char* attn[] = {".to_q", ".to_k", ".to_v", ".to_out.0"};
    static const char* ff[] = {".ff.net.0.proj", ".ff.net.2"};
    static const char* rest[] = {".proj_in", ".proj_out", ".conv1", ".conv2", ".conv_shortcut", ".time_emb_proj"};
    auto any = [&path](const auto& list) {
        return std::any_of(std::begin(list), std::end(list), [&path](const char* s) { return ends_with(path, s); });
    };
    if (!starts_with(path, "down_blocks.") && !starts_with(path, "mid_block.") && !starts_with(path, "up_blocks.")) return false;
    if (any(attn) && path.find(".attentions.") != std::string::npos) return true;
    if (t != LoraTargets::Attn && any(ff)) return true;
    return t == LoraTargets::All && any(rest);
}

// One adapted layer: y = base(x) + (alpha / rank) · up(down(x)); convolutions keep the base layer's
// kernel, stride and padding in `down` and use a 1x1 `up`, as kohya's LoCon does.
struct TrainableLora::Layer : models::WeightAdapter {
    std::string path;
    models::LinearImpl* linear = nullptr;
    models::Conv2dImpl* conv = nullptr;
    at::Tensor down, up;
    double scale = 1;

    bool active() const override { return true; }
    at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const override {
        if (linear) return at::linear(x, linear->weight, bias) + at::linear(at::linear(x, down), up) * scale;
        const std::vector<int64_t> stride{conv->stride, conv->stride}, pad{conv->padding, conv->padding};
        at::Tensor base = at::conv2d(x, conv->weight, bias, stride, pad);
        return base + at::conv2d(at::conv2d(x, down, {}, stride, pad), up) * scale;
    }
};

TrainableLora::TrainableLora(torch::nn::Module& unet, LoraTargets targets, int64_t rank, double alpha,
                             at::Generator& gen)
    : rank_(rank), alpha_(alpha) {
    if (rank < 1) throw UsageError("--rank must be at least 1");
    torch::NoGradGuard no_grad;
    for (const auto& item : unet.named_modules("", false)) {
        auto layer = std::make_shared<Layer>();
        layer->linear = dynamic_cast<models::LinearImpl*>(item.value().get());
        layer->conv = dynamic_cast<models::Conv2dImpl*>(item.value().get());
        if ((!layer->linear && !layer->conv) || !lora_targets_layer(targets, item.key())) continue;
        const at::Tensor& w = layer->linear ? layer->linear->weight : layer->conv->weight;
        std::vector<int64_t> down_shape = w.sizes().vec(), up_shape = {w.size(0), rank};
        down_shape[0] = rank;
        if (layer->conv) up_shape.insert(up_shape.end(), {1, 1});
        const double fan_in = static_cast<double>(w.numel() / w.size(0));
        const double bound = 1.0 / std::sqrt(fan_in);  // kaiming_uniform(a = sqrt(5))
        layer->down = (at::rand(down_shape, gen, w.options().dtype(at::kFloat)) * 2 - 1).mul_(bound).requires_grad_(true);
        layer->up = at::zeros(up_shape, w.options().dtype(at::kFloat)).requires_grad_(true);
        layer->scale = alpha / static_cast<double>(rank);
        layer->path = item.key();
        if (layer->linear) layer->linear->adapter = layer;
        if (layer->conv) layer->conv->adapter = layer;
        layers_.push_back(layer);
    }
    if (layers_.empty()) throw UsageError("no UNet layer matches --targets " + std::string(lora_targets_name(targets)));
}

TrainableLora::~TrainableLora() {
    for (const auto& l : layers_) {
        if (l->linear) l->linear->adapter.reset();
        if (l->conv) l->conv->adapter.reset();
    }
}

std::vector<at::Tensor> TrainableLora::parameters() const {
    std::vector<at::Tensor> out;
    for (const auto& l : layers_) out.insert(out.end(), {l->down, l->up});
    return out;
}

std::map<std::string, at::Tensor> TrainableLora::named_factors() const {
    std::map<std::string, at::Tensor> out;
    for (const auto& l : layers_) {
        out[l->path + ".lora_down.weight"] = l->down;
        out[l->path + ".lora_up.weight"] = l->up;
    }
    return out;
}

void TrainableLora::save_kohya(const std::string& path, const std::map<std::string, std::string>& metadata,
                               bool half) const {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    const auto dtype = half ? at::kHalf : at::kFloat;
    for (const auto& l : layers_) {
        std::string flat = l->path;
        std::replace(flat.begin(), flat.end(), '.', '_');
        const std::string stem = "lora_unet_" + flat;
        tensors.emplace_back(stem + ".lora_down.weight", l->down.detach().to(dtype).contiguous());
        tensors.emplace_back(stem + ".lora_up.weight", l->up.detach().to(dtype).contiguous());
        tensors.emplace_back(stem + ".alpha", at::scalar_tensor(alpha_, at::TensorOptions().dtype(dtype)));
    }
    std::map<std::string, std::string> meta = metadata;
    meta["ss_network_module"] = "networks.lora";
    meta["ss_network_dim"] = std::to_string(rank_);
    meta["ss_network_alpha"] = std::to_string(alpha_);
    meta["ss_base_model_version"] = "sd_v1";
    io::save_safetensors(path, tensors, meta);
}

}  // namespace multilora::train
