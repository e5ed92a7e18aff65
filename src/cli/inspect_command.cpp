// `multilora inspect FILE`: what a LoRA file or a checkpoint holds.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "multilora/io/safetensors.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::cli {
namespace {

bool is_lora_file(const std::string& path) {
    if (fs::is_directory(path)) return false;
    auto f = io::SafetensorsFile::open(path);
    for (const auto& n : f->names())
        if (n.find("lora") != std::string::npos || n.find("hada_") != std::string::npos ||
            n.find("lokr_") != std::string::npos)
            return true;
    return false;
}

void print_lora(const lora::LoraSummary& s, bool json, const std::string& model) {
    if (json) {
        nlohmann::json j = s.to_json();
        j["kind"] = "lora";
        j["coverage"] = s.coverage_json();
        j["coverage"]["model"] = model;
        j.erase("weight");
        std::printf("%s\n", j.dump(2).c_str());
        return;
    }
    std::printf("LoRA       %s\nformat     %s\n", s.path.c_str(), s.format.c_str());
    std::string ranks, alphas;
    for (auto r : s.ranks) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    for (auto a : s.alphas) alphas += (alphas.empty() ? "" : ", ") + nlohmann::json(a).dump();
    std::printf("rank       %s\nalpha      %s\n", ranks.c_str(), alphas.empty() ? "(none: scale 1)" : alphas.c_str());
    std::printf("targets   ");
    for (const auto& [kind, n] : s.by_kind) std::printf(" %s=%d", kind.c_str(), n);
    std::printf("\ncoverage   UNet %d/%d layers, text encoder %d/%d layers (%s)\n", s.matched_unet, s.unet_layers,
                s.matched_text, s.text_layers, model.c_str());
    if (s.unmatched) std::printf("unmatched  %d module(s) not in the model\n", s.unmatched);
    if (s.misfit) std::printf("misfit     %d module(s) with shapes that do not fit the model (another architecture?)\n", s.misfit);
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
    struct Options {
        std::string path, model;
        bool json = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("inspect", "Describe a LoRA file or an SD1.x checkpoint");
    sub->add_option("FILE", o->path, "A LoRA .safetensors, an LDM checkpoint or a diffusers folder")->required();
    sub->add_flag("--json", o->json, "Print JSON");
    sub->add_option("--model,-m", o->model, "For a LoRA: measure coverage against this checkpoint (default: SD1.5's architecture)");
    sub->footer("Examples:\n  multilora inspect models/loras/tiny-style.safetensors\n"
                "  multilora inspect models/loras/tiny-style.safetensors --model models/tiny-sd15.safetensors\n"
                "  multilora inspect models/tiny-sd15.safetensors --json");
    return [o] {
        if (!fs::exists(o->path)) throw RuntimeError("not found: '" + o->path + "'");
        if (is_lora_file(o->path)) {
            if (o->model.empty()) {
                print_lora(lora::inspect_lora(o->path), o->json, "SD1.5");
                return;
            }
            pipeline::LoadOptions load;
            load.model_path = o->model;
            auto model = pipeline::load_stable_diffusion(load);
            print_lora(lora::inspect_lora(o->path, model.unet.get(), model.text_encoder.get(), model.unet->config().to_json()),
                       o->json, o->model);
            return;
        }
        nlohmann::json j = pipeline::describe_checkpoint(o->path);
        j["kind"] = "checkpoint";
        if (o->json) {
            std::printf("%s\n", j.dump(2).c_str());
            return;
        }
        std::printf("checkpoint %s\nlayout     %s\ntensors    %zu\ndtypes     %s\nconfig     %s\n", o->path.c_str(),
                    j["layout"].get<std::string>().c_str(), j["tensor_count"].get<size_t>(), j["dtypes"].dump().c_str(),
                    j["config_source"].get<std::string>().c_str());
        if (j.contains("unet_config")) {
            const auto& u = j["unet_config"];
            std::printf("unet       block_out_channels=%s layers_per_block=%s cross_attention_dim=%s\n",
                        u["block_out_channels"].dump().c_str(), u["layers_per_block"].dump().c_str(),
                        u["cross_attention_dim"].dump().c_str());
        }
        if (j.contains("text_encoder_config"))
            std::printf("text       hidden_size=%s layers=%s\n", j["text_encoder_config"]["hidden_size"].dump().c_str(),
                        j["text_encoder_config"]["num_hidden_layers"].dump().c_str());
        if (j.contains("vae_config"))
            std::printf("vae        block_out_channels=%s\n", j["vae_config"]["block_out_channels"].dump().c_str());
    };
}

}  // namespace multilora::cli
