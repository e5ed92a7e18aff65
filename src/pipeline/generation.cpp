#include "multilora/pipeline/generation.h"

#include "multilora/lora/layer_adapters.h"

#include <torch/torch.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/interrupt.h"

namespace multilora::pipeline {

void validate_request(const GenerationRequest& r) {
    if (r.width <= 0 || r.height <= 0 || r.width % 8 != 0 || r.height % 8 != 0)
        throw UsageError("--width and --height must be positive multiples of 8 (got " + std::to_string(r.width) + "x" +
                         std::to_string(r.height) + ")");
    if (r.steps < 1 || r.steps > 1000) throw UsageError("--steps must be between 1 and 1000");
    if (r.num_images < 1) throw UsageError("--num-images must be at least 1");
    // CLIP reads 77 tokens (long_prompt "chunk": as many 75-token chunks as the text needs); 64 KiB is
    // ~10 000 words, far past any real prompt, and bounds the tokenizer's and the text encoder's work.
    constexpr size_t kMaxPromptBytes = 64 * 1024;
    for (const std::string* p : {&r.prompt, &r.negative_prompt})
        if (p->size() > kMaxPromptBytes)
            throw UsageError(std::string(p == &r.prompt ? "the prompt" : "the negative prompt") + " is " +
                             std::to_string(p->size()) + " bytes long; at most " + std::to_string(kMaxPromptBytes) +
                             " are accepted (CLIP reads 77 tokens of it)");
    if (!r.image_seeds.empty() && r.num_images % static_cast<int>(r.image_seeds.size()) != 0)
        throw RuntimeError(std::to_string(r.image_seeds.size()) + " image seeds cannot share " +
                           std::to_string(r.num_images) + " images evenly");
    if (!std::isfinite(r.guidance_scale) || std::fabs(r.guidance_scale) > 1000)
        throw UsageError("--guidance-scale must be a finite number between -1000 and 1000");
    const auto& names = sampling::scheduler_names();
    if (std::find(names.begin(), names.end(), r.scheduler) == names.end()) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        throw UsageError("unknown scheduler '" + r.scheduler + "' (choose one of: " + list + ")");
    }
}

namespace {

double parameter_bytes(torch::nn::Module& module) {
    double bytes = 0;
    for (const auto& p : module.parameters()) bytes += static_cast<double>(p.numel()) * p.element_size();
    for (const auto& b : module.buffers()) bytes += static_cast<double>(b.numel()) * b.element_size();
    return bytes;
}

std::string gigabytes(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
    return buf;
}

}  // namespace

std::string MemoryEstimate::describe() const {
    return "about " + gigabytes(total()) + " (weights " + gigabytes(weights) + ", " +
           (vae >= unet ? "VAE decode " + gigabytes(vae) : "UNet activations " + gigabytes(unet)) + ")";
}

MemoryEstimate estimate_memory(const StableDiffusionModel& model, const GenerationRequest& request, int rows) {
    MemoryEstimate e;
    auto& m = const_cast<StableDiffusionModel&>(model);
    e.weights = parameter_bytes(*m.unet) + parameter_bytes(*m.text_encoder) + parameter_bytes(*m.vae);
    const auto& vae = model.vae->config();
    const double factor = vae.downscale_factor();
    const double pixels = static_cast<double>(request.width) * request.height;
    const double element = at::elementSize(model.dtype);
    // UNet: ~10 tensors of the first level's width live at once (3 skips, the resnet's working set), per row.
    const double c0 = model.unet->config().block_out_channels.at(0);
    e.unet = rows * (pixels / (factor * factor)) * c0 * 10 * element + 128.0 * (1 << 20);
    // VAE decoder at full resolution: the last block's input (block_out[1] channels) and three working tensors
    // of block_out[0] channels, for each image.
    const auto& vc = vae.block_out_channels;
    const double c_in = vc.size() > 1 ? vc[1] : vc[0];
    // Tiled: one tile's working set, plus the decoded tiles and the image they are cut into.
    const double tile = request.vae_tile;
    const double working = request.vae_tile > 0 ? std::min(pixels, tile * tile) : pixels;
    e.vae = request.num_images * (working * (c_in + 3.0 * vc[0]) + (request.vae_tile > 0 ? 2 * 3 * pixels : 0)) * element;
    return e;
}

double physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<double>(pages) * page : 0;
}

void check_size_fits(const StableDiffusionModel& model, const GenerationRequest& request, int rows) {
    const auto& vae = model.vae->config();
    const int halvings = static_cast<int>(model.unet->config().block_out_channels.size()) - 1;
    const int min_side = vae.downscale_factor() * (1 << halvings);
    if (request.width < min_side || request.height < min_side)
        throw UsageError("--width and --height must be at least " + std::to_string(min_side) + " for this model (got " +
                         std::to_string(request.width) + "x" + std::to_string(request.height) +
                         "): its UNet halves the " + std::to_string(min_side / (1 << halvings)) + "x-smaller latents " +
                         std::to_string(halvings) + " times");
    if (request.vae_tile != 0 && (request.vae_tile < 2 * vae.downscale_factor() || request.vae_tile % vae.downscale_factor() != 0))
        throw UsageError("--vae-tile must be a multiple of " + std::to_string(vae.downscale_factor()) + " of at least " +
                         std::to_string(2 * vae.downscale_factor()) + " pixels for this model's VAE (got " +
                         std::to_string(request.vae_tile) + ")");
    const MemoryEstimate e = estimate_memory(model, request, rows);
    const double limit = request.max_memory_bytes > 0 ? request.max_memory_bytes : physical_memory_bytes();
    if (limit > 0 && e.total() > limit)
        throw UsageError(std::to_string(request.width) + "x" + std::to_string(request.height) + " needs " + e.describe() +
                         ", more than the " + gigabytes(limit) +
                         (request.max_memory_bytes > 0 ? " that --max-memory allows" : " of RAM this machine has") +
                         "; choose a smaller size" + (request.num_images > 1 ? " or fewer images" : "") +
                         ", or raise --max-memory (GB) if you know better");
}

at::Tensor draw_initial_noise(uint64_t seed, int64_t draw_index, at::IntArrayRef shape) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::Tensor noise;
    for (int64_t i = 0; i <= draw_index; ++i) noise = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    return noise;
}

compose::ModelParts model_parts(StableDiffusionModel& model) {
    return {*model.unet, *model.text_encoder, *model.tokenizer};
}

std::vector<std::vector<uint8_t>> to_rgb8(const at::Tensor& images) {
    at::Tensor x = (images.to(at::kFloat) / 2 + 0.5).clamp(0, 1);
    x = (x.permute({0, 2, 3, 1}).contiguous() * 255).round().to(at::kByte).cpu();
    std::vector<std::vector<uint8_t>> out;
    const int64_t per = x.size(1) * x.size(2) * x.size(3);
    for (int64_t i = 0; i < x.size(0); ++i) {
        const uint8_t* p = x[i].data_ptr<uint8_t>();
        out.emplace_back(p, p + per);
    }
    return out;
}

namespace {

// The scheduler stepping the latents. One scheduler and one generator seeded with the request's seed serve the
// whole batch, except for a sampler that draws noise at its steps given image seeds: then each run's images step
// with their own scheduler and generator, so they draw what they would alone (GenerationRequest::image_seeds).
class Sampler {
public:
    Sampler(const StableDiffusionModel& model, const GenerationRequest& request) {
        const bool per_run = sampling::scheduler_draws_noise(request.scheduler) && request.image_seeds.size() > 1;
        const std::vector<uint64_t> seeds = per_run ? request.image_seeds : std::vector<uint64_t>{request.seed};
        for (uint64_t seed : seeds) {
            schedulers_.push_back(sampling::make_scheduler(request.scheduler, model.scheduler_config));
            schedulers_.back()->set_timesteps(request.steps);
            generators_.push_back(at::make_generator<at::CPUGeneratorImpl>(seed));
        }
    }
    sampling::Scheduler& scheduler() { return *schedulers_.front(); }

    // Draws `shape` as each generator would alone: [rows of run 0; rows of run 1; ...].
    at::Tensor randn(const std::vector<int64_t>& shape) {
        std::vector<at::Tensor> parts;
        std::vector<int64_t> part_shape = shape;
        part_shape[0] = shape[0] / static_cast<int64_t>(generators_.size());
        for (at::Generator& gen : generators_)
            parts.push_back(at::randn(part_shape, gen, at::TensorOptions().dtype(at::kFloat)));
        return parts.size() == 1 ? parts.front() : at::cat(parts, 0);
    }

    at::Tensor step(const at::Tensor& eps, int step_index, const at::Tensor& latents) {
        if (schedulers_.size() == 1) return schedulers_.front()->step(eps, step_index, latents, &generators_.front());
        const int64_t rows = latents.size(0) / static_cast<int64_t>(schedulers_.size());
        std::vector<at::Tensor> parts;
        for (size_t b = 0; b < schedulers_.size(); ++b) {
            const int64_t from = static_cast<int64_t>(b) * rows;
            parts.push_back(schedulers_[b]->step(eps.narrow(0, from, rows), step_index, latents.narrow(0, from, rows),
                                                 &generators_[b]));
        }
        return at::cat(parts, 0);
    }

private:
    std::vector<std::unique_ptr<sampling::Scheduler>> schedulers_;
    std::vector<at::Generator> generators_;
};

// The initial latents: float32 randn from a CPU generator seeded once (the numbers diffusers draws from
// torch.Generator("cpu").manual_seed(seed)), or the caller's noise, times init_noise_sigma.
at::Tensor initial_latents(const StableDiffusionModel& model, const GenerationRequest& request, Sampler& sampler,
                           int factor) {
    const int64_t channels = model.unet->config().in_channels;
    const std::vector<int64_t> shape{request.num_images, channels, request.height / factor, request.width / factor};
    at::Tensor latents;
    if (request.initial_noise.defined()) {
        if (request.initial_noise.sizes() != at::IntArrayRef(shape))
            throw RuntimeError("initial noise has the wrong shape for this request");
        latents = request.initial_noise.to(at::kFloat);
    } else {
        latents = sampler.randn(shape);
    }
    return latents.to(model.device, model.dtype) * sampler.scheduler().init_noise_sigma();
}

// A NaN or Inf anywhere in the latents: the image is lost, and saying where beats writing a black PNG.
void check_finite(const at::Tensor& latents, int step, int total, const compose::CompositionMethod& method) {
    if (at::isfinite(latents).all().item<bool>()) return;
    const nlohmann::json record = method.record();
    const std::string name = record.value("method", std::string("none"));
    const int64_t bad = latents.numel() - at::isfinite(latents).sum().item<int64_t>();
    throw RuntimeError("the latents hold NaN or Inf after denoising step " + std::to_string(step + 1) + " of " +
                       std::to_string(total) + " (method " + name + ", " + std::to_string(bad) + " of " +
                       std::to_string(latents.numel()) + " values); the image is not written. Try fp32 if this "
                       "ran in fp16/bf16, smaller LoRA weights or another sampler; --allow-nan writes it anyway");
}

// The denoising loop: one method->predict and one scheduler step per timestep.
at::Tensor denoise(StableDiffusionModel& model, const GenerationRequest& request, compose::CompositionMethod& method,
                   const text::EncodedPrompts& prompts, Sampler& sampler, at::Tensor latents,
                   const StepCallback& on_step, GenerationResult& result) {
    const int total = static_cast<int>(result.timesteps.size());
    sampling::Scheduler& scheduler = sampler.scheduler();  // timesteps and input scaling (steps: sampler.step)
    for (int i = 0; i < total; ++i) {
        throw_if_interrupted();  // SIGINT/SIGTERM under an InterruptScope: this image is discarded
        auto ts = std::chrono::steady_clock::now();
        const double t = result.timesteps[i];
        at::Tensor timestep = scheduler.timestep_is_integral() ? at::scalar_tensor(static_cast<int64_t>(t), at::kLong)
                                                               : at::scalar_tensor(t, at::kFloat);
        timestep = timestep.to(model.device);
        at::Tensor scaled = scheduler.scale_model_input(latents, i);
        compose::StepContext ctx{scaled, timestep, i, prompts, request.guidance_scale, total};
        at::Tensor eps = method.predict(ctx);
        latents = sampler.step(eps, i, latents);
        if (!request.allow_nan) check_finite(latents, i, total, method);
        const double secs = seconds_since(ts);
        result.step_seconds.push_back(secs);
        if (on_step) on_step(i, total, secs);
    }
    throw_if_interrupted();
    return latents;
}

// Without a method: the base model as it is (its adapters are left as they are).
class PlainMethod final : public compose::CompositionMethod {
public:
    explicit PlainMethod(compose::ModelParts model) : model_(model) {}
    text::EncodedPrompts encode(const compose::PromptText& text) override { return compose::encode_text(model_, text); }
    at::Tensor predict(const compose::StepContext& ctx) override { return compose::cfg_predict(model_.unet, ctx); }
    nlohmann::json record() const override { return {{"method", "none"}}; }

private:
    compose::ModelParts model_;
};

}  // namespace

GenerationResult generate(StableDiffusionModel& model, const GenerationRequest& request,
                          compose::CompositionMethod* method, const StepCallback& on_step, const PromptEncoder& encode) {
    validate_request(request);
    c10::InferenceMode inference;
    GenerationResult result;
    const auto& vae_cfg = model.vae->config();
    const int factor = vae_cfg.downscale_factor();
    if (request.width % factor != 0 || request.height % factor != 0)
        throw UsageError("--width and --height must be multiples of " + std::to_string(factor) + " for this VAE");
    check_size_fits(model, request, 2 * request.num_images);
    // Each image's adapters decide as if it ran alone (see lora::set_images_per_forward).
    const lora::ImagesPerForwardScope images_per_forward(request.num_images);
    result.width = request.width;
    result.height = request.height;
    PlainMethod plain(model_parts(model));
    compose::CompositionMethod& m = method ? *method : plain;

    auto t0 = std::chrono::steady_clock::now();
    const text::EncodedPrompts prompts = encode ? encode(m) : m.encode(request.prompt_text());
    result.positive_truncated = prompts.prompt_truncated;
    result.negative_truncated = prompts.negative_truncated;
    result.prompt_truncated = prompts.truncated();
    result.encode_seconds = seconds_since(t0);
    // Phase boundary: the text encoder's weight pages and the free heap blocks it left are not needed
    // while denoising; likewise the UNet's while the VAE decodes (below). Measured at 512x512 fp32 with
    // the full SD1.5: peak RSS 6.95 -> 4.75 GB (1.11x the 4.27 GB of weights).
    release_resident_weights(*model.text_encoder);
    release_free_memory();

    // The generator that drew the initial noise then feeds ancestral samplers.
    Sampler sampler(model, request);
    result.timesteps = sampler.scheduler().timesteps();
    at::Tensor latents = initial_latents(model, request, sampler, factor);
    latents = denoise(model, request, m, prompts, sampler, latents, on_step, result);
    result.latents = latents.to(at::kFloat).cpu();

    auto td = std::chrono::steady_clock::now();
    release_resident_weights(*model.unet);
    release_free_memory();
    at::Tensor image = request.vae_tile > 0 ? model.vae->decode_tiled(latents / vae_cfg.scaling_factor, request.vae_tile)
                                            : model.vae->decode(latents / vae_cfg.scaling_factor);
    result.images = to_rgb8(image);
    result.decode_seconds = seconds_since(td);
    return result;
}

}  // namespace multilora::pipeline
