#include "multilora/pipeline/random_model.h"

#include <torch/torch.h>

#include <filesystem>

#include "multilora/io/safetensors.h"
#include "multilora/models/ldm_key_map.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/text/clip_text_model.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void fill_random_weights(torch::nn::Module& m, at::Generator& gen) {
    torch::NoGradGuard no_grad;
    for (auto& item : m.named_parameters(true)) {
        const std::string& name = item.key();
        at::Tensor& p = item.value();
        at::Tensor r = at::randn(p.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
        bool is_norm = name.find("norm") != std::string::npos && p.dim() == 1;
        if (is_norm && ends_with(name, ".weight")) p.copy_(1.0 + 0.1 * r);
        else if (ends_with(name, ".bias")) p.copy_(0.02 * r);
        else if (name.find("embedding") != std::string::npos) p.copy_(0.5 * r);
        else p.copy_(r / std::sqrt(static_cast<double>(p.numel() / p.size(0))));
    }
}

namespace {

bool lora_target(const std::string& path) {
    return path.find("attn1.") != std::string::npos || path.find("attn2.") != std::string::npos ||
           path.find(".ff.") != std::string::npos || path.find("proj_in") != std::string::npos ||
           path.find("proj_out") != std::string::npos || path.find("self_attn.") != std::string::npos;
}

}  // namespace

void write_random_checkpoint(const std::string& path, const TinyModelConfigs& cfg, uint64_t seed) {
    c10::InferenceMode guard(false);
    at::Generator gen = at::detail::createCPUGenerator(seed);
    std::vector<std::pair<std::string, at::Tensor>> ldm;
    {
        models::UNet2DConditionModel unet(cfg.unet);
        fill_random_weights(*unet, gen);
        for (const auto& [name, t] : models::named_tensors(*unet)) ldm.emplace_back(models::unet_key_to_ldm(name, cfg.unet), t);
    }
    {
        models::AutoencoderKL vae(cfg.vae);
        fill_random_weights(*vae, gen);
        for (const auto& [name, t] : models::named_tensors(*vae)) {
            at::Tensor v = t;
            if (name.find("mid_block.attentions.0.to_") != std::string::npos && t.dim() == 2)
                v = t.view({t.size(0), t.size(1), 1, 1});
            ldm.emplace_back(models::vae_key_to_ldm(name, cfg.vae), v);
        }
    }
    {
        text::ClipTextModel text(cfg.text);
        fill_random_weights(*text, gen);
        for (const auto& [name, t] : models::named_tensors(*text)) ldm.emplace_back(models::text_key_to_ldm(name), t);
    }
    io::save_safetensors(path, ldm,
                         {{"multilora.unet_config", cfg.unet.to_json().dump()},
                          {"multilora.vae_config", cfg.vae.to_json().dump()},
                          {"multilora.text_encoder_config", cfg.text.to_json().dump()},
                          {"multilora.seed", std::to_string(seed)}});
}

std::vector<std::string> write_random_loras(const std::string& dir, const TinyModelConfigs& cfg, int count,
                                            int64_t rank, uint64_t seed) {
    c10::InferenceMode guard(false);
    models::UNet2DConditionModel unet(cfg.unet);
    text::ClipTextModel text(cfg.text);
    at::Generator gen = at::detail::createCPUGenerator(seed);
    auto f32 = at::TensorOptions().dtype(at::kFloat);
    std::vector<std::string> paths;
    for (int i = 0; i < count; ++i) {
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        for (int part = 0; part < 2; ++part) {
            torch::nn::Module& root = part == 0 ? static_cast<torch::nn::Module&>(*unet) : *text;
            for (const auto& item : root.named_modules("", false)) {
                auto* lin = dynamic_cast<models::LinearImpl*>(item.value().get());
                auto* conv = dynamic_cast<models::Conv2dImpl*>(item.value().get());
                if ((!lin && !conv) || !lora_target(item.key())) continue;
                const at::Tensor& w = lin ? lin->weight : conv->weight;
                if (conv && w.size(2) != 1) continue;
                const int64_t out = w.size(0), in = w.size(1);
                std::string stem = item.key();
                std::replace(stem.begin(), stem.end(), '.', '_');
                stem = (part == 0 ? "lora_unet_" : "lora_te_") + stem;
                at::Tensor down = at::randn({rank, in}, gen, f32) / std::sqrt(static_cast<double>(in));
                at::Tensor up = at::randn({out, rank}, gen, f32) * (0.1 / static_cast<double>(rank));
                if (conv) {
                    down = down.view({rank, in, 1, 1});
                    up = up.view({out, rank, 1, 1});
                }
                tensors.emplace_back(stem + ".lora_down.weight", down);
                tensors.emplace_back(stem + ".lora_up.weight", up);
                tensors.emplace_back(stem + ".alpha", at::scalar_tensor(static_cast<double>(rank) / 2, f32));
            }
        }
        std::string path = (fs::path(dir) / ("bench-r" + std::to_string(rank) + "-" + std::to_string(i) + ".safetensors")).string();
        io::save_safetensors(path, tensors);
        paths.push_back(path);
    }
    return paths;
}

}  // namespace multilora::pipeline
