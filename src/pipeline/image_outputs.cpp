#include "multilora/pipeline/image_outputs.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/io/sha256.h"
#include "multilora/pipeline/generation.h"
#include "multilora/util/error.h"
#include "multilora/util/version.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {

std::vector<std::string> OutputPlan::png_paths() const {
    std::vector<std::string> out;
    if (num_images == 1) return {(fs::path(dir) / (stem + ".png")).string()};
    for (int i = 0; i < num_images; ++i) out.push_back((fs::path(dir) / (stem + "-" + std::to_string(i) + ".png")).string());
    return out;
}

std::string OutputPlan::manifest_path() const { return (fs::path(dir) / (stem + ".json")).string(); }
std::string OutputPlan::latents_path() const { return (fs::path(dir) / (stem + ".latents.safetensors")).string(); }

std::vector<std::string> OutputPlan::all_paths() const {
    auto paths = png_paths();
    if (save_latents) paths.push_back(latents_path());
    paths.push_back(manifest_path());
    return paths;
}

void check_outputs(const OutputPlan& plan) {
    if (plan.stem.empty() || plan.stem.find('/') != std::string::npos)
        throw UsageError("--name must be a plain file stem without '/' (got '" + plan.stem + "')");
    io::ensure_writable_dir(plan.dir);
    for (const auto& p : plan.all_paths()) {
        std::error_code ec;
        if (fs::is_symlink(p, ec))
            throw RuntimeError("'" + p + "' is a symbolic link (to '" + fs::read_symlink(p, ec).string() +
                               "'); multilora does not write through or over links: remove it, or choose another --name");
    }
    if (plan.overwrite) return;
    for (const auto& p : plan.all_paths())
        if (fs::exists(p)) throw RuntimeError("'" + p + "' already exists; pass --overwrite to replace it, or choose another --name");
}

std::string a1111_sampler_name(const std::string& s) {
    if (s == "dpmpp-2m") return "DPM++ 2M";
    if (s == "dpmpp-2m-karras") return "DPM++ 2M Karras";
    if (s == "euler") return "Euler";
    if (s == "euler-a") return "Euler a";
    if (s == "ddim") return "DDIM";
    return s;
}

std::string a1111_parameters(const GenerationRequest& r, uint64_t seed, const std::string& model_hash,
                             const std::string& model_name) {
    char cfg[32];
    std::snprintf(cfg, sizeof cfg, "%g", r.guidance_scale);
    std::string text = r.prompt + "\n";
    if (!r.negative_prompt.empty()) text += "Negative prompt: " + r.negative_prompt + "\n";
    text += "Steps: " + std::to_string(r.steps) + ", Sampler: " + a1111_sampler_name(r.scheduler) +
            ", CFG scale: " + cfg + ", Seed: " + std::to_string(seed) + ", Size: " + std::to_string(r.width) + "x" +
            std::to_string(r.height) + ", Model hash: " + model_hash.substr(0, 10) + ", Model: " + model_name +
            ", Version: multilora " + multilora::version();
    // Not an A1111 field (A1111 keeps unknown ones): tells --from-png how the prompt was read.
    if (r.prompt_syntax == text::PromptSyntax::A1111) text += ", Prompt syntax: a1111";
    return text;
}

nlohmann::json write_outputs(const OutputPlan& plan, const GenerationRequest& request, const GenerationResult& result,
                             const std::string& model_hash, const std::string& model_name, nlohmann::json manifest) {
    std::vector<std::string> written;
    try {
        nlohmann::json outputs = nlohmann::json::array();
        auto pngs = plan.png_paths();
        for (size_t i = 0; i < pngs.size(); ++i) {
            // Every image of a batch shares the seed's generator (diffusers' num_images_per_prompt).
            std::string params = a1111_parameters(request, request.seed, model_hash, model_name);
            std::string bytes = io::encode_png(result.images[i].data(), result.width, result.height,
                                               {{"parameters", params}});
            io::write_file_atomic(pngs[i], bytes);
            written.push_back(pngs[i]);
            outputs.push_back({{"kind", "png"}, {"path", pngs[i]}, {"sha256", io::sha256_hex(bytes)}, {"index", i}});
        }
        if (plan.save_latents) {
            io::save_safetensors(plan.latents_path(), {{"latents", result.latents}},
                                 {{"format", "pt"}, {"multilora.note", "final latents before VAE scaling"}});
            written.push_back(plan.latents_path());
            outputs.push_back({{"kind", "latents"}, {"path", plan.latents_path()},
                               {"sha256", io::sha256_file_hex(plan.latents_path())}});
        }
        manifest["outputs"] = outputs;
        io::write_file_atomic(plan.manifest_path(), manifest.dump(2) + "\n");
        return manifest;
    } catch (...) {
        for (const auto& p : written) std::remove(p.c_str());
        throw;
    }
}

}  // namespace multilora::pipeline
