// `multilora inspect FILE`: what a LoRA file or a checkpoint holds.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <map>
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

// kohya's ss_tag_frequency ({"dataset": {"tag": count}}) summed over datasets, most frequent first.
std::vector<std::pair<std::string, long long>> top_tags(const std::map<std::string, std::string>& training, size_t n) {
    auto it = training.find("ss_tag_frequency");
    if (it == training.end()) return {};
    const nlohmann::json f = nlohmann::json::parse(it->second, nullptr, false);
    if (!f.is_object()) return {};
    std::map<std::string, long long> total;
    for (const auto& [dataset, tags] : f.items())
        if (tags.is_object())
            for (const auto& [tag, count] : tags.items())
                if (count.is_number_integer()) total[tag] += count.get<long long>();
    std::vector<std::pair<std::string, long long>> out(total.begin(), total.end());
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    if (out.size() > n) out.resize(n);
    return out;
}

// The base model and kohya's training metadata, as text lines.
void print_lora_metadata(const lora::LoraSummary& s) {
    const lora::BaseModel& b = s.base_model;
    std::printf("base model %s\n", b.family.empty() ? "not recorded in the metadata" : (b.family + " (" + b.key + " = " + b.value + ")").c_str());
    auto get = [&](const char* k) {
        auto it = s.training.find(k);
        return it == s.training.end() ? std::string("?") : it->second;
    };
    if (s.training.count("ss_network_module"))
        std::printf("training   %s, dim %s, alpha %s\n", get("ss_network_module").c_str(), get("ss_network_dim").c_str(),
                    get("ss_network_alpha").c_str());
    std::string tags;
    for (const auto& [tag, count] : top_tags(s.training, 8)) tags += (tags.empty() ? "" : ", ") + tag + " (" + std::to_string(count) + ")";
    if (!tags.empty()) std::printf("tags       %s\n", tags.c_str());
}

void print_lora(const lora::LoraSummary& s, bool json, bool modules, const std::string& model) {
    if (json) {
        nlohmann::json j = s.to_json();
        j["ignored_keys"] = s.ignored_keys;
        j["modules"] = nlohmann::json::array();
        for (const auto& m : s.modules) j["modules"].push_back({{"key", m.key}, {"target", m.target}, {"form", m.form}});
        j["kind"] = "lora";
        j["metadata"] = s.training;
        j["top_tags"] = top_tags(s.training, 20);
        j["coverage"] = s.coverage_json();
        j["coverage"]["model"] = model;
        j.erase("weight");
        std::printf("%s\n", j.dump(2).c_str());
        return;
    }
    std::printf("LoRA       %s\nformat     %s\n", s.path.c_str(), s.format.c_str());
    print_lora_metadata(s);
    std::string ranks, alphas;
    for (auto r : s.ranks) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    for (auto a : s.alphas) alphas += (alphas.empty() ? "" : ", ") + nlohmann::json(a).dump();
    std::printf("rank       %s\nalpha      %s\n", ranks.c_str(), alphas.empty() ? "(none: scale 1)" : alphas.c_str());
    std::printf("forms     ");
    for (const auto& [form, n] : s.forms) std::printf(" %s=%d", form.c_str(), n);
    std::printf("\ntargets   ");
    for (const auto& [kind, n] : s.by_kind) std::printf(" %s=%d", kind.c_str(), n);
    std::printf("\ncoverage   UNet %d/%d layers, text encoder %d/%d layers (%s)\n", s.matched_unet, s.unet_layers,
                s.matched_text, s.text_layers, model.c_str());
    if (s.unmatched) std::printf("unmatched  %d module(s) not in the model\n", s.unmatched);
    if (s.misfit) std::printf("misfit     %d module(s) with shapes that do not fit the model (another architecture?)\n", s.misfit);
    if (!modules) return;
    for (const auto& m : s.modules) std::printf("module     %-12s %s  (%s)\n", m.form.c_str(), m.target.c_str(), m.key.c_str());
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
    struct Options {
        std::string path, model;
        bool json = false, modules = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("inspect", "Describe a LoRA file or an SD1.x checkpoint");
    sub->add_option("FILE", o->path, "A LoRA .safetensors, an LDM checkpoint or a diffusers folder")->required();
    sub->add_flag("--json", o->json, "Print JSON (a LoRA's JSON lists every matched module with its form)");
    sub->add_flag("--modules", o->modules, "For a LoRA: one line per matched module with its adapter form (lora, loha, lokr, ia3, full, +dora)");
    sub->add_option("--model,-m", o->model, "For a LoRA: measure coverage against this checkpoint (default: SD1.5's architecture)");
    sub->footer("Examples:\n  multilora inspect models/loras/tiny-style.safetensors\n"
                "  multilora inspect models/loras/tiny-style.safetensors --model models/tiny-sd15.safetensors\n"
                "  multilora inspect my-loha.safetensors --modules\n"
                "  multilora inspect models/tiny-sd15.safetensors --json");
    return [o] {
        if (!fs::exists(o->path)) throw RuntimeError("not found: '" + o->path + "'");
        if (is_lora_file(o->path)) {
            if (o->model.empty()) {
                print_lora(lora::inspect_lora(o->path), o->json, o->modules, "SD1.5");
                return;
            }
            pipeline::LoadOptions load;
            load.model_path = o->model;
            auto model = pipeline::load_stable_diffusion(load);
            print_lora(lora::inspect_lora(o->path, model.unet.get(), model.text_encoder.get(), model.unet->config().to_json()),
                       o->json, o->modules, o->model);
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
