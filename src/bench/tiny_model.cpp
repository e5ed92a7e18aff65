#include "multilora/bench/tiny_model.h"

#include "multilora/bench/random_model.h"

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <optional>

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

namespace multilora::bench {

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

// One example LoRA over the layers `select` picks: down ~ N(0, 1/in), up ~ N(0, (1.5/r)²).
std::string write_lora(const fs::path& path, torch::nn::Module& unet, torch::nn::Module& text, int64_t rank,
                       std::optional<double> alpha, bool peft, const std::function<bool(const std::string&, bool)>& select,
                       at::Generator& gen, bool locon_3x3 = false) {
    RandomLoraSpec spec;
    spec.rank = rank;
    spec.alpha = alpha;
    spec.peft = peft;
    spec.locon_3x3 = locon_3x3;
    spec.select = select;
    spec.metadata = {{"multilora.note", "example LoRA written by make-tiny"}};
    write_random_lora(path.string(), unet, text, spec, gen);
    return path.string();
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

void write_json(const fs::path& path, const nlohmann::json& j) {
    fs::create_directories(path.parent_path());
    io::write_file_atomic(path.string(), j.dump(2) + "\n");
}

}  // namespace

TinyModelPaths make_tiny_model(const std::string& dir, uint64_t seed) {
    c10::InferenceMode guard(false);
    io::ensure_writable_dir(dir);
    const TinyModelConfigs cfg = tiny_configs();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    models::UNet2DConditionModel unet(cfg.unet);
    text::ClipTextModel text_encoder(cfg.text);
    models::AutoencoderKL vae(cfg.vae);
    fill_random_weights(*unet, gen);
    fill_random_weights(*text_encoder, gen);
    fill_random_weights(*vae, gen);

    auto unet_tensors = models::named_tensors(*unet);
    auto text_tensors = models::named_tensors(*text_encoder);
    auto vae_tensors = models::named_tensors(*vae);

    TinyModelPaths paths;
    paths.single_file = (fs::path(dir) / "tiny-sd15.safetensors").string();
    paths.folder = (fs::path(dir) / "tiny-sd15").string();

    // LDM single file, with the configs as metadata (shapes alone cannot tell head counts).
    TensorList ldm;
    add_ldm_unet(ldm, unet_tensors, cfg.unet);
    add_ldm_vae(ldm, vae_tensors, cfg.vae);
    add_ldm_text(ldm, text_tensors);
    for (const auto& [name, t] : ldm)
        if (name.empty()) throw RuntimeError("internal: a tiny-model tensor has no LDM name");
    io::save_safetensors(paths.single_file, ldm, ldm_metadata(cfg, seed));

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

    // Example LoRAs.
    fs::path loras = fs::path(dir) / "loras";
    fs::create_directories(loras);
    auto attention = [](const std::string& n) { return contains(n, "attn1.") || contains(n, "attn2."); };
    auto text_attention = [](const std::string& n) { return contains(n, "self_attn."); };
    paths.loras.push_back(write_lora(
        loras / "tiny-character.safetensors", *unet, *text_encoder, 4, 2.0, false,
        [&](const std::string& n, bool is_unet) {
            if (!is_unet) return text_attention(n) || contains(n, "mlp.fc");
            return attention(n) || contains(n, ".ff.") || contains(n, "proj_in") || contains(n, "proj_out");
        },
        gen));
    paths.loras.push_back(write_lora(
        loras / "tiny-style.safetensors", *unet, *text_encoder, 8, 4.0, false,
        [&](const std::string& n, bool is_unet) {
            if (!is_unet) return text_attention(n);
            return attention(n) || n == "down_blocks.0.resnets.0.conv1";
        },
        gen, /*locon_3x3=*/true));
    paths.loras.push_back(write_lora(
        loras / "tiny-object.safetensors", *unet, *text_encoder, 4, std::nullopt, false,
        [&](const std::string& n, bool is_unet) { return is_unet && (contains(n, "attn2.") || contains(n, ".ff.")); },
        gen));
    paths.loras.push_back(write_lora(
        loras / "tiny-peft.safetensors", *unet, *text_encoder, 4, std::nullopt, true,
        [&](const std::string& n, bool is_unet) { return is_unet ? contains(n, "attn1.") : text_attention(n); }, gen));
    // The four LoRAs as a ComposLoRA-style testbed (one instance per category) for configs/tiny-smoke.json.
    auto entry = [](const char* id, const char* name, std::vector<std::string> trigger) {
        return nlohmann::ordered_json{{"id", id}, {"name", name}, {"trigger", trigger}, {"url", ""}};
    };
    nlohmann::ordered_json info;
    info["character"] = nlohmann::ordered_json::array({entry("tiny-character", "Tiny Character", {"tiny fox", "red fur"})});
    info["clothing"] = nlohmann::ordered_json::array({entry("tiny-peft", "Tiny Scarf (PEFT)", {"blue scarf"})});
    info["style"] = nlohmann::ordered_json::array({entry("tiny-style", "Tiny Watercolor Style", {"watercolor", "soft edges"})});
    info["object"] = nlohmann::ordered_json::array({entry("tiny-object", "Tiny Lantern", {"paper lantern"})});
    paths.lora_info = (loras / "tiny_lora_info.json").string();
    io::write_file_atomic(paths.lora_info, info.dump(4) + "\n");
    return paths;
}

}  // namespace multilora::bench
