#include "multilora/bench/random_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "multilora/io/safetensors.h"
#include "multilora/models/ldm_key_map.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::bench {
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

void add_ldm_unet(TensorList& ldm, const TensorList& tensors, const models::UNetConfig& cfg) {
    for (const auto& [name, t] : tensors) ldm.emplace_back(models::unet_key_to_ldm(name, cfg), t);
}

void add_ldm_vae(TensorList& ldm, const TensorList& tensors, const models::VaeConfig& cfg) {
    for (const auto& [name, t] : tensors) {
        at::Tensor v = t;
        // LDM stores the VAE's attention projections as 1x1 convolutions.
        if (name.find("mid_block.attentions.0.to_") != std::string::npos && t.dim() == 2)
            v = t.view({t.size(0), t.size(1), 1, 1});
        ldm.emplace_back(models::vae_key_to_ldm(name, cfg), v);
    }
}

void add_ldm_text(TensorList& ldm, const TensorList& tensors) {
    for (const auto& [name, t] : tensors) ldm.emplace_back(models::text_key_to_ldm(name), t);
}

std::map<std::string, std::string> ldm_metadata(const TinyModelConfigs& cfg, uint64_t seed) {
    return {{"multilora.unet_config", cfg.unet.to_json().dump()},
            {"multilora.vae_config", cfg.vae.to_json().dump()},
            {"multilora.text_encoder_config", cfg.text.to_json().dump()},
            {"multilora.seed", std::to_string(seed)}};
}

void write_random_checkpoint(const std::string& path, const TinyModelConfigs& cfg, uint64_t seed) {
    c10::InferenceMode guard(false);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    TensorList ldm;
    {  // one model at a time, so that the full SD1.5 is never all in memory twice
        models::UNet2DConditionModel unet(cfg.unet);
        fill_random_weights(*unet, gen);
        add_ldm_unet(ldm, models::named_tensors(*unet), cfg.unet);
    }
    {
        models::AutoencoderKL vae(cfg.vae);
        fill_random_weights(*vae, gen);
        add_ldm_vae(ldm, models::named_tensors(*vae), cfg.vae);
    }
    {
        text::ClipTextModel text(cfg.text);
        fill_random_weights(*text, gen);
        add_ldm_text(ldm, models::named_tensors(*text));
    }
    io::save_safetensors(path, ldm, ldm_metadata(cfg, seed));
}

namespace {

// LoHa or LoKr factors of spec.rank for one layer [out, in(, k, k)] (k = 0: Linear), with ΔW of about the
// plain LoRA's size. LoKr splits 8 x 8 into w1 where the widths allow, the rest into w2_a·w2_b.
void add_lycoris_factors(TensorList& tensors, const std::string& stem, const RandomLoraSpec& spec, int64_t out,
                         int64_t in, int64_t k, at::Generator& gen) {
    auto f32 = at::TensorOptions().dtype(at::kFloat);
    const int64_t r = spec.rank, kk = k ? k * k : 1;
    auto randn = [&](std::vector<int64_t> shape, double sd) { return at::randn(shape, gen, f32) * sd; };
    if (spec.form == "loha") {
        const double a_sd = std::sqrt(spec.up_gain / static_cast<double>(r)), b_sd = 1.0 / std::sqrt(static_cast<double>(in * kk));
        tensors.emplace_back(stem + ".hada_w1_a", randn({out, r}, a_sd));
        tensors.emplace_back(stem + ".hada_w1_b", randn({r, in * kk}, b_sd));
        tensors.emplace_back(stem + ".hada_w2_a", randn({out, r}, a_sd));
        tensors.emplace_back(stem + ".hada_w2_b", randn({r, in * kk}, b_sd));
    } else {
        const int64_t a = out % 8 == 0 ? 8 : 1, c = in % 8 == 0 ? 8 : 1;
        std::vector<int64_t> w2b{r, in / c};
        if (k) w2b.insert(w2b.end(), {k, k});
        tensors.emplace_back(stem + ".lokr_w1", randn({a, c}, 1.0 / static_cast<double>(c)));
        tensors.emplace_back(stem + ".lokr_w2_a", randn({out / a, r}, spec.up_gain / static_cast<double>(r)));
        tensors.emplace_back(stem + ".lokr_w2_b", randn(w2b, 1.0 / std::sqrt(static_cast<double>(in / c * kk))));
    }
    if (spec.alpha) tensors.emplace_back(stem + ".alpha", at::scalar_tensor(*spec.alpha, f32));
}

}  // namespace

std::string bench_lora_file(const std::string& form, int64_t rank, int index) {
    return std::string("bench-") + (form == "lora" ? "" : form + "-") + "r" + std::to_string(rank) + "-" +
           std::to_string(index) + ".safetensors";
}

void write_random_lora(const std::string& path, torch::nn::Module& unet, torch::nn::Module& text,
                       const RandomLoraSpec& spec, at::Generator& gen) {
    TensorList tensors;
    auto f32 = at::TensorOptions().dtype(at::kFloat);
    const int64_t rank = spec.rank;
    for (int part = 0; part < 2; ++part) {
        torch::nn::Module& root = part == 0 ? unet : text;
        for (const auto& item : root.named_modules("", false)) {
            auto* lin = dynamic_cast<models::LinearImpl*>(item.value().get());
            auto* conv = dynamic_cast<models::Conv2dImpl*>(item.value().get());
            if (!lin && !conv) continue;
            const std::string& name = item.key();
            if (!spec.select(name, part == 0)) continue;
            const at::Tensor& w = lin ? lin->weight : conv->weight;
            if (conv && !spec.locon_3x3 && w.size(2) != 1) continue;
            const int64_t out = w.size(0), in = w.size(1), k = conv ? w.size(2) : 1;
            std::string flat = name;
            std::replace(flat.begin(), flat.end(), '.', '_');
            if (spec.form != "lora") {
                add_lycoris_factors(tensors, std::string(part == 0 ? "lora_unet_" : "lora_te_") + flat, spec, out, in,
                                    conv ? k : 0, gen);
                continue;
            }
            at::Tensor down = at::randn(conv ? std::vector<int64_t>{rank, in, k, k} : std::vector<int64_t>{rank, in}, gen, f32) /
                              std::sqrt(static_cast<double>(in * k * k));
            at::Tensor up = at::randn(conv ? std::vector<int64_t>{out, rank, 1, 1} : std::vector<int64_t>{out, rank}, gen, f32) *
                            (spec.up_gain / static_cast<double>(rank));
            if (spec.peft) {
                const std::string stem = std::string(part == 0 ? "unet." : "text_encoder.") + name;
                tensors.emplace_back(stem + ".lora_A.weight", down);
                tensors.emplace_back(stem + ".lora_B.weight", up);
            } else {
                const std::string stem = std::string(part == 0 ? "lora_unet_" : "lora_te_") + flat;
                tensors.emplace_back(stem + ".lora_down.weight", down);
                tensors.emplace_back(stem + ".lora_up.weight", up);
                if (spec.alpha) tensors.emplace_back(stem + ".alpha", at::scalar_tensor(*spec.alpha, f32));
            }
        }
    }
    io::save_safetensors(path, tensors, spec.metadata);
}

std::vector<std::string> write_random_loras(const std::string& dir, const TinyModelConfigs& cfg, int count,
                                            int64_t rank, uint64_t seed, const std::string& form) {
    c10::InferenceMode guard(false);
    models::UNet2DConditionModel unet(cfg.unet);
    text::ClipTextModel text(cfg.text);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    RandomLoraSpec spec;
    spec.rank = rank;
    spec.alpha = static_cast<double>(rank) / 2;
    spec.up_gain = 0.1;
    spec.form = form;
    spec.select = [](const std::string& path, bool) { return lora_target(path); };
    std::vector<std::string> paths;
    for (int i = 0; i < count; ++i) {
        paths.push_back((fs::path(dir) / bench_lora_file(form, rank, i)).string());
        write_random_lora(paths.back(), *unet, *text, spec, gen);
    }
    return paths;
}

}  // namespace multilora::bench
