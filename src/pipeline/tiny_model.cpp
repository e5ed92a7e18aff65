#include "multilora/pipeline/tiny_model.h"

#include <torch/torch.h>

#include <filesystem>

#include "multilora/io/atomic_file.h"
#include "multilora/io/safetensors.h"
#include "multilora/models/ldm_key_map.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {

TinyModelConfigs tiny_configs() {
    TinyModelConfigs c;
    c.unet.block_out_channels = {32, 64, 64};
    c.unet.down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
    c.unet.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
    c.unet.num_attention_heads = {8, 8, 8};
    c.unet.layers_per_block = 2;
    c.unet.cross_attention_dim = 32;
    c.unet.sample_size = 8;
    c.vae.block_out_channels = {32, 32, 32, 32};
    c.vae.layers_per_block = 1;
    c.vae.sample_size = 64;
    c.text.hidden_size = 32;
    c.text.intermediate_size = 64;
    c.text.num_hidden_layers = 2;
    c.text.num_attention_heads = 2;
    return c;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Seeded initialisation: norms at identity, small biases, fan-in scaled weights, wide embeddings.
void init_weights(torch::nn::Module& m, at::Generator& gen) {
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

void write_json(const fs::path& path, const nlohmann::json& j) {
    fs::create_directories(path.parent_path());
    io::write_file_atomic(path.string(), j.dump(2) + "\n");
}

}  // namespace

TinyModelPaths make_tiny_model(const std::string& dir, uint64_t seed) {
    c10::InferenceMode guard(false);
    io::ensure_writable_dir(dir);
    const TinyModelConfigs cfg = tiny_configs();
    at::Generator gen = at::detail::createCPUGenerator(seed);
    models::UNet2DConditionModel unet(cfg.unet);
    text::ClipTextModel text_encoder(cfg.text);
    models::AutoencoderKL vae(cfg.vae);
    init_weights(*unet, gen);
    init_weights(*text_encoder, gen);
    init_weights(*vae, gen);

    auto unet_tensors = models::named_tensors(*unet);
    auto text_tensors = models::named_tensors(*text_encoder);
    auto vae_tensors = models::named_tensors(*vae);

    TinyModelPaths paths;
    paths.single_file = (fs::path(dir) / "tiny-sd15.safetensors").string();
    paths.folder = (fs::path(dir) / "tiny-sd15").string();

    // LDM single file, with the configs as metadata (shapes alone cannot tell head counts).
    std::vector<std::pair<std::string, at::Tensor>> ldm;
    for (const auto& [name, t] : unet_tensors) ldm.emplace_back(models::unet_key_to_ldm(name, cfg.unet), t);
    for (const auto& [name, t] : vae_tensors) {
        at::Tensor v = t;
        // LDM stores the VAE's attention projections as 1x1 convolutions.
        if (name.find("mid_block.attentions.0.to_") != std::string::npos && t.dim() == 2)
            v = t.view({t.size(0), t.size(1), 1, 1});
        ldm.emplace_back(models::vae_key_to_ldm(name, cfg.vae), v);
    }
    for (const auto& [name, t] : text_tensors) ldm.emplace_back(models::text_key_to_ldm(name), t);
    for (const auto& [name, t] : ldm)
        if (name.empty()) throw RuntimeError("internal: a tiny-model tensor has no LDM name");
    io::save_safetensors(paths.single_file, ldm,
                         {{"multilora.unet_config", cfg.unet.to_json().dump()},
                          {"multilora.vae_config", cfg.vae.to_json().dump()},
                          {"multilora.text_encoder_config", cfg.text.to_json().dump()},
                          {"multilora.seed", std::to_string(seed)}});

    // diffusers folder.
    fs::path root(paths.folder);
    write_json(root / "model_index.json",
               {{"_class_name", "StableDiffusionPipeline"},
                {"_diffusers_version", "0.26.3"},
                {"unet", {"diffusers", "UNet2DConditionModel"}},
                {"vae", {"diffusers", "AutoencoderKL"}},
                {"text_encoder", {"transformers", "CLIPTextModel"}},
                {"tokenizer", {"transformers", "CLIPTokenizer"}},
                {"scheduler", {"diffusers", "PNDMScheduler"}},
                {"safety_checker", {nullptr, nullptr}},
                {"feature_extractor", {nullptr, nullptr}},
                {"requires_safety_checker", false}});
    write_json(root / "unet" / "config.json", cfg.unet.to_json());
    io::save_safetensors((root / "unet" / "diffusion_pytorch_model.safetensors").string(), unet_tensors);
    write_json(root / "vae" / "config.json", cfg.vae.to_json());
    io::save_safetensors((root / "vae" / "diffusion_pytorch_model.safetensors").string(), vae_tensors);
    write_json(root / "text_encoder" / "config.json", cfg.text.to_json());
    io::save_safetensors((root / "text_encoder" / "model.safetensors").string(), text_tensors);
    write_json(root / "scheduler" / "scheduler_config.json", sampling::sd15_scheduler_config());
    return paths;
}

}  // namespace multilora::pipeline
