// Loading a Stable Diffusion v1.x model from an LDM single-file checkpoint or a diffusers folder, with an
// optional separate VAE. All layouts end in the same diffusers-named modules.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"

namespace multilora::pipeline {

struct LoadOptions {
    std::string model_path;
    std::string vae_path;  // empty: the model's own VAE
    std::string dtype = "fp32";  // fp32 | bf16 | fp16
    std::string device = "cpu";  // cpu | cuda | cuda:N
    // An LDM .yaml for a single-file checkpoint (--model-config); empty: NAME.yaml beside NAME.safetensors, if any.
    std::string model_config;
    // Textual-inversion embeddings (--embedding, --embedding-dir): their names become tokens of the prompt.
    std::vector<std::string> embeddings;
    std::vector<std::string> embedding_dirs;
};

struct StableDiffusionModel {
    models::UNet2DConditionModel unet{nullptr};
    text::ClipTextModel text_encoder{nullptr};
    models::AutoencoderKL vae{nullptr};
    std::shared_ptr<const text::ClipTokenizer> tokenizer;
    nlohmann::json scheduler_config;

    std::string layout;                    // "ldm-single-file" | "diffusers-folder"
    std::string tokenizer_source;          // "builtin" or the folder read
    std::vector<std::string> model_files;  // the weight files read for the model (hashed in manifests)
    std::vector<std::string> vae_files;    // the weight files of --vae, when given
    std::vector<std::string> unused_tensors;
    std::string model_config;              // the LDM .yaml that was applied ("" when none)
    nlohmann::json embeddings = nlohmann::json::array();  // [{name, path, format, vectors}] added to the tokenizer
    c10::ScalarType dtype = c10::ScalarType::Float;
    c10::Device device = c10::Device(c10::DeviceType::CPU);
};

// Parses "fp32"/"bf16"/"fp16" (UsageError otherwise).
c10::ScalarType parse_dtype(const std::string& name);
c10::Device parse_device(const std::string& name);

// Throws RuntimeError with a clear message for missing files, pickles, malformed or mismatched weights.
StableDiffusionModel load_stable_diffusion(const LoadOptions& options);

// Layout, configs (read or detected), dtypes and tensor count of a checkpoint, without building the models.
nlohmann::json describe_checkpoint(const std::string& path);

// Drops the resident pages of a model part's weights where they are views of the safetensors file
// (io::release_mapped_pages); converted or adapted weights are left alone. Between phases of a generation
// the part not in use then holds no memory (the text encoder while denoising, the UNet while the VAE
// decodes); the next use faults its pages back in from the page cache (~0.3 s for the SD1.5 UNet).
// Returns the bytes released.
size_t release_resident_weights(const torch::nn::Module& part);

// Detects the layout of a path: "ldm-single-file", "diffusers-folder", or throws.
std::string detect_layout(const std::string& path);

}  // namespace multilora::pipeline
