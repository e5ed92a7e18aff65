// What one generation writes: PNG(s) with A1111 parameters, optional latents, and the JSON manifest,
// all written atomically and all-or-nothing (a failure removes what this call already wrote).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::pipeline {

struct GenerationRequest;
struct GenerationResult;

struct OutputPlan {
    std::string dir;
    std::string stem;
    int num_images = 1;
    bool save_latents = false;
    bool overwrite = false;

    // DIR/STEM.png for one image; DIR/STEM-0.png, DIR/STEM-1.png, ... for several.
    std::vector<std::string> png_paths() const;
    std::string manifest_path() const;  // DIR/STEM.json
    std::string latents_path() const;   // DIR/STEM.latents.safetensors
    std::vector<std::string> all_paths() const;
};

// Before any work: the folder is writable and no output exists (unless overwrite). Throws RuntimeError.
void check_outputs(const OutputPlan& plan);

// A1111's sampler names for multilora's scheduler names ("DPM++ 2M", "Euler a", ...).
std::string a1111_sampler_name(const std::string& scheduler);

// The text of A1111's "parameters" PNG chunk.
std::string a1111_parameters(const GenerationRequest& request, uint64_t seed, const std::string& model_hash,
                             const std::string& model_name);

// Writes the PNG(s) (each with its own seed's parameters), latents when asked, then the manifest, to
// which an "outputs" list is added. Returns the manifest as written.
nlohmann::json write_outputs(const OutputPlan& plan, const GenerationRequest& request, const GenerationResult& result,
                             const std::string& model_hash, const std::string& model_name, nlohmann::json manifest);

}  // namespace multilora::pipeline
