// Text-to-image generation: encode, denoise with classifier-free guidance, decode. Mirrors diffusers'
// StableDiffusionPipeline step for step, so the same settings and seed give the same latents.
#pragma once

#include <cstdint>
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/compose/method.h"
#include "multilora/text/prompt_encoding.h"

namespace multilora::pipeline {

struct StableDiffusionModel;

struct GenerationRequest {
    std::string prompt;
    std::string negative_prompt;
    int steps = 50;
    double guidance_scale = 7.5;
    uint64_t seed = 0;
    int width = 512;
    int height = 512;
    std::string scheduler = "dpmpp-2m";
    int num_images = 1;
    text::LongPromptMode long_prompt = text::LongPromptMode::Truncate;
    text::PromptSyntax prompt_syntax = text::PromptSyntax::Plain;  // --prompt-syntax a1111: emphasis, BREAK
    // When defined: the initial noise [n, C, h, w] (float32, before init_noise_sigma), used instead of a fresh
    // draw from the seed's generator (batch runs share one generator across sets). The generator seeded with
    // `seed` still feeds ancestral samplers.
    at::Tensor initial_noise;
    // When not empty: the seeds of the runs whose images were stacked into this request (batch's shared
    // forwards), each covering num_images / image_seeds.size() images. A sampler that draws noise at its steps
    // (euler-a) then steps each run's images with its own scheduler and a generator seeded with its own seed, so
    // that they draw the numbers they would alone. Empty: one generator seeded with `seed`, as diffusers.
    std::vector<uint64_t> image_seeds;
    // false: a NaN or Inf in the latents after any step stops the image with an error that names the step and the
    // method (no black PNG). true (--allow-nan, batch "allow_nan"): carry on and write what comes out.
    bool allow_nan = false;
    // The most memory the run may need, in bytes (0: this machine's RAM). A larger estimate is refused before any
    // work, with the estimate's parts (--max-memory GB).
    double max_memory_bytes = 0;
    // The VAE decodes in tiles of this many pixels (0: in one piece), as diffusers' enable_tiling; for sizes whose
    // decode would not fit in memory. Tiles change the image slightly near their seams.
    int vae_tile = 0;

    compose::PromptText prompt_text() const { return {prompt, negative_prompt, long_prompt, prompt_syntax}; }
};

// The noise diffusers' prepare_latents draws: randn([n, C, h, w]) from a CPU generator seeded with `seed`.
// With `draw_index` k > 0 it is the (k+1)-th such draw from one generator (earlier draws are discarded).
at::Tensor draw_initial_noise(uint64_t seed, int64_t draw_index, at::IntArrayRef shape);

// Called after every denoising step: (0-based step, total steps, seconds the step took).
using StepCallback = std::function<void(int, int, double)>;

struct GenerationResult {
    at::Tensor latents;                        // final latents before VAE scaling, float32 CPU [n, C, h, w]
    std::vector<std::vector<uint8_t>> images;  // n RGB images, height*width*3 each
    int width = 0, height = 0;
    bool prompt_truncated = false;    // either prompt was cut at 77 tokens (the manifest's flag)
    bool positive_truncated = false;  // the prompt was
    bool negative_truncated = false;  // the negative prompt was
    double encode_seconds = 0, decode_seconds = 0;
    std::vector<double> step_seconds;
    std::vector<double> timesteps;
};

// Checks settings that need no model (sizes, steps, scheduler name); throws UsageError.
void validate_request(const GenerationRequest& request);

// What a run at this size needs at its peak, roughly: the weights, plus the larger of the UNet's live
// activations (skip connections and working tensors at the first level, one chunk of attention scores) and the
// VAE decoder's at full resolution (its last two levels' channels). `rows` counts UNet rows per step (2 with
// guidance, k times that for Composite).
struct MemoryEstimate {
    double weights = 0, unet = 0, vae = 0;
    double total() const { return weights + std::max(unet, vae); }
    std::string describe() const;  // "about 43.1 GB (weights 2.1 GB, VAE decode 41.0 GB)"
};
MemoryEstimate estimate_memory(const StableDiffusionModel& model, const GenerationRequest& request, int rows);
// This machine's RAM in bytes (sysconf).
double physical_memory_bytes();
// Refuses (UsageError) a size below the UNet's total downsampling, or an estimate above the request's limit.
void check_size_fits(const StableDiffusionModel& model, const GenerationRequest& request, int rows);

// The parts of the model a composition method drives.
compose::ModelParts model_parts(StableDiffusionModel& model);

// How a generation's prompts are encoded when not by method.encode(request's prompt): several images with their
// own prompts (RunSession::run_images) stack theirs as rows [n, T, D].
using PromptEncoder = std::function<text::EncodedPrompts(compose::CompositionMethod& method)>;

// Encodes with `method` (null: the plain base model, adapters untouched), denoises calling
// method->predict at every step, decodes. The method's encode() sets up the text encoder and the UNet.
GenerationResult generate(StableDiffusionModel& model, const GenerationRequest& request,
                          compose::CompositionMethod* method = nullptr, const StepCallback& on_step = {},
                          const PromptEncoder& encode = {});

// [n, 3, H, W] in [-1, 1] -> n uint8 RGB buffers, as diffusers' postprocess (x/2+0.5, clamp, ·255, round).
std::vector<std::vector<uint8_t>> to_rgb8(const at::Tensor& images);

}  // namespace multilora::pipeline
