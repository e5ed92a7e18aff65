#include "multilora/pipeline/generation.h"

#include <torch/torch.h>

#include <chrono>

#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"

namespace multilora::pipeline {

void validate_request(const GenerationRequest& r) {
    if (r.width <= 0 || r.height <= 0 || r.width % 8 != 0 || r.height % 8 != 0)
        throw UsageError("--width and --height must be positive multiples of 8 (got " + std::to_string(r.width) + "x" +
                         std::to_string(r.height) + ")");
    if (r.steps < 1 || r.steps > 1000) throw UsageError("--steps must be between 1 and 1000");
    if (r.num_images < 1) throw UsageError("--num-images must be at least 1");
    const auto& names = sampling::scheduler_names();
    if (std::find(names.begin(), names.end(), r.scheduler) == names.end()) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        throw UsageError("unknown scheduler '" + r.scheduler + "' (choose one of: " + list + ")");
    }
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

// The initial latents: float32 randn from a CPU generator seeded once (the numbers diffusers draws from
// torch.Generator("cpu").manual_seed(seed)), or the caller's noise, times init_noise_sigma.
at::Tensor initial_latents(const StableDiffusionModel& model, const GenerationRequest& request,
                           const sampling::Scheduler& scheduler, at::Generator& gen, int factor) {
    const int64_t channels = model.unet->config().in_channels;
    const std::vector<int64_t> shape{request.num_images, channels, request.height / factor, request.width / factor};
    at::Tensor latents;
    if (request.initial_noise.defined()) {
        if (request.initial_noise.sizes() != at::IntArrayRef(shape))
            throw RuntimeError("initial noise has the wrong shape for this request");
        latents = request.initial_noise.to(at::kFloat);
    } else {
        latents = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    }
    return latents.to(model.device, model.dtype) * scheduler.init_noise_sigma();
}

// The denoising loop: one method->predict and one scheduler step per timestep.
at::Tensor denoise(StableDiffusionModel& model, const GenerationRequest& request, compose::CompositionMethod& method,
                   const text::EncodedPrompts& prompts, sampling::Scheduler& scheduler, at::Tensor latents,
                   at::Generator& gen, const StepCallback& on_step, GenerationResult& result) {
    const int total = static_cast<int>(result.timesteps.size());
    for (int i = 0; i < total; ++i) {
        auto ts = std::chrono::steady_clock::now();
        const double t = result.timesteps[i];
        at::Tensor timestep = scheduler.timestep_is_integral() ? at::scalar_tensor(static_cast<int64_t>(t), at::kLong)
                                                               : at::scalar_tensor(t, at::kFloat);
        timestep = timestep.to(model.device);
        at::Tensor scaled = scheduler.scale_model_input(latents, i);
        compose::StepContext ctx{scaled, timestep, i, prompts, request.guidance_scale, total};
        at::Tensor eps = method.predict(ctx);
        latents = scheduler.step(eps, i, latents, &gen);
        const double secs = seconds_since(ts);
        result.step_seconds.push_back(secs);
        if (on_step) on_step(i, total, secs);
    }
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
                          compose::CompositionMethod* method, const StepCallback& on_step) {
    validate_request(request);
    c10::InferenceMode inference;
    GenerationResult result;
    const auto& vae_cfg = model.vae->config();
    const int factor = vae_cfg.downscale_factor();
    if (request.width % factor != 0 || request.height % factor != 0)
        throw UsageError("--width and --height must be multiples of " + std::to_string(factor) + " for this VAE");
    result.width = request.width;
    result.height = request.height;
    PlainMethod plain(model_parts(model));
    compose::CompositionMethod& m = method ? *method : plain;

    auto t0 = std::chrono::steady_clock::now();
    const text::EncodedPrompts prompts = m.encode(request.prompt_text());
    result.positive_truncated = prompts.prompt_truncated;
    result.negative_truncated = prompts.negative_truncated;
    result.prompt_truncated = prompts.truncated();
    result.encode_seconds = seconds_since(t0);
    // Phase boundary: the text encoder's weight pages and the free heap blocks it left are not needed
    // while denoising; likewise the UNet's while the VAE decodes (below). Measured at 512x512 fp32 with
    // the full SD1.5: peak RSS 6.95 -> 4.75 GB (1.11x the 4.27 GB of weights).
    release_resident_weights(*model.text_encoder);
    release_free_memory();

    auto scheduler = sampling::make_scheduler(request.scheduler, model.scheduler_config);
    scheduler->set_timesteps(request.steps);
    result.timesteps = scheduler->timesteps();
    // The generator that drew the initial noise then feeds ancestral samplers.
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(request.seed);
    at::Tensor latents = initial_latents(model, request, *scheduler, gen, factor);
    latents = denoise(model, request, m, prompts, *scheduler, latents, gen, on_step, result);
    result.latents = latents.to(at::kFloat).cpu();

    auto td = std::chrono::steady_clock::now();
    release_resident_weights(*model.unet);
    release_free_memory();
    at::Tensor image = model.vae->decode(latents / vae_cfg.scaling_factor);
    result.images = to_rgb8(image);
    result.decode_seconds = seconds_since(td);
    return result;
}

}  // namespace multilora::pipeline
