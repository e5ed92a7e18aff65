#include "multilora/train/lora_training.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>

#include "multilora/io/atomic_file.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/text/prompt_encoding.h"
#include "multilora/train/diffusion_objective.h"
#include "multilora/train/image_folder.h"
#include "multilora/train/training_checkpoint.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::train {

namespace {

void check_options(const TrainLoraOptions& o) {
    if (o.steps < 1) throw UsageError("--steps must be at least 1");
    if (!(o.lr > 0)) throw UsageError("--lr must be positive");
    if (o.batch_size < 1) throw UsageError("--batch-size must be at least 1");
    if (o.alpha < 0) throw UsageError("--alpha must not be negative");
    if (!(o.noise_offset >= 0 && o.noise_offset <= 1)) throw UsageError("--noise-offset must be between 0 and 1");
    if (o.checkpoint_every < 0) throw UsageError("--checkpoint-every must not be negative");
    if (fs::path(o.out).extension() != ".safetensors") throw UsageError("--out must end in .safetensors");
    // Before any work: a folder that cannot take the file fails now, not after training.
    const fs::path folder = fs::absolute(o.out).parent_path();
    try {
        io::ensure_writable_dir(folder.string());
    } catch (const RuntimeError& e) {
        throw UsageError(std::string("--out: ") + e.what());
    }
}

using EncodedData = EncodedExamples;

std::string with_trigger(const std::string& caption, const std::string& trigger) {
    if (trigger.empty() || caption.find(trigger) != std::string::npos) return caption;
    return trigger + ", " + caption;
}

// Every image's latents (the VAE posterior's mean times scaling_factor) and its caption's hidden states,
// with each image listed `repeats` times.
EncodedData encode_data(pipeline::StableDiffusionModel& m, const ImageFolder& folder, const std::string& trigger) {
    torch::NoGradGuard no_grad;
    EncodedData d;
    const double scaling = m.vae->config().scaling_factor;
    for (const CaptionedImage& item : folder.items) {
        at::Tensor image = load_image_tensor(item.image_path).unsqueeze(0).to(m.dtype);
        at::Tensor latents = m.vae->encode_mean(image).mul(scaling);
        at::Tensor context = text::encode_prompts(*m.tokenizer, *m.text_encoder, with_trigger(item.caption, trigger), "",
                                                  text::LongPromptMode::Truncate)
                                 .cond;
        for (int r = 0; r < item.repeats; ++r) d.latents.push_back(latents), d.contexts.push_back(context);
    }
    return d;
}

std::string options_fingerprint(const TrainLoraOptions& o, size_t examples) {
    return "rank=" + std::to_string(o.rank) + ";alpha=" + std::to_string(o.alpha) + ";targets=" +
           lora_targets_name(o.targets) + ";batch=" + std::to_string(o.batch_size) + ";lr=" + std::to_string(o.lr) +
           ";seed=" + std::to_string(o.seed) + ";steps=" + std::to_string(o.steps) + ";examples=" + std::to_string(examples) +
           ";lr_scheduler=" + lr_scheduler_name(o.lr_scheduler) + ";noise_offset=" + std::to_string(o.noise_offset);
}

// The LoRA's factors and AdamW's state every checkpoint_every steps.
struct Checkpoint {
    TrainingCheckpoint file;
    void save(const TrainableLora& lora, const torch::optim::Optimizer& opt, const std::vector<double>& losses) const {
        file.save(lora.named_factors(), opt, {losses});
    }
    // The losses of the steps done, after restoring the factors and the optimizer state.
    std::vector<double> load(TrainableLora& lora, torch::optim::Optimizer& opt) const {
        return file.restore(lora.named_factors(), opt).losses;
    }
};

double train_step(models::UNet2DConditionModelImpl& unet, const DiffusionObjective& objective, const EncodedData& d,
                  int batch, double noise_offset, at::Generator& gen, torch::optim::Optimizer& opt) {
    at::Tensor picks = at::randint(0, static_cast<int64_t>(d.latents.size()), {batch}, gen, at::kLong);
    std::vector<at::Tensor> latents, contexts;
    for (int64_t i = 0; i < batch; ++i) {
        const int64_t k = picks[i].item<int64_t>();
        latents.push_back(d.latents[k]), contexts.push_back(d.contexts[k]);
    }
    opt.zero_grad();
    at::Tensor loss = objective.loss(unet, at::cat(latents), at::cat(contexts), gen, noise_offset);
    loss.backward();
    opt.step();
    return loss.item<double>();
}

// kohya's ss_ names where kohya has one; the schedule and the noise offset only where they are not the
// defaults (files trained without them stay as they were).
std::map<std::string, std::string> lora_metadata(const TrainLoraOptions& o) {
    std::map<std::string, std::string> m = {{"ss_output_name", fs::path(o.out).stem().string()},
                                            {"ss_steps", std::to_string(o.steps)},
                                            {"ss_learning_rate", std::to_string(o.lr)},
                                            {"multilora.trigger", o.trigger},
                                            {"multilora.targets", lora_targets_name(o.targets)}};
    if (o.lr_scheduler != LrScheduler::Constant) m["ss_lr_scheduler"] = lr_scheduler_name(o.lr_scheduler);
    if (o.noise_offset > 0) m["ss_noise_offset"] = std::to_string(o.noise_offset);
    return m;
}

TrainStatus status_after(const TrainLoraResult& r, int total, std::chrono::steady_clock::time_point t0) {
    TrainStatus st;
    st.step = static_cast<int>(r.losses.size());
    st.total = total;
    st.resumed_at = r.resumed_at;
    st.loss = r.losses.back();
    st.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t n = std::min<size_t>(50, r.losses.size());
    st.loss_mean = std::accumulate(r.losses.end() - n, r.losses.end(), 0.0) / static_cast<double>(n);
    return st;
}

}  // namespace

std::string checkpoint_path(const std::string& out) { return out + ".checkpoint"; }

TrainLoraResult train_lora(const TrainLoraOptions& o, const std::function<void(const TrainStatus&)>& on_step) {
    check_options(o);
    const ImageFolder folder = scan_image_folder(o.data);
    pipeline::LoadOptions load;
    load.model_path = o.model;
    pipeline::StableDiffusionModel m = pipeline::load_stable_diffusion(load);
    const EncodedData data = encode_data(m, folder, o.trigger);
    TrainLoraResult result = train_lora_on(*m.unet, sampling::training_alphas_cumprod(m.scheduler_config), data, o, on_step);
    result.images = static_cast<int>(folder.items.size());
    return result;
}

TrainLoraResult train_lora_on(models::UNet2DConditionModelImpl& unet, const at::Tensor& alphas_cumprod,
                              const EncodedExamples& data, const TrainLoraOptions& o,
                              const std::function<void(const TrainStatus&)>& on_step) {
    check_options(o);
    const DiffusionObjective objective(alphas_cumprod);
    at::Generator init = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    TrainableLora lora(unet, o.targets, o.rank, o.alpha > 0 ? o.alpha : static_cast<double>(o.rank), init);
    torch::optim::AdamW opt(lora.parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(1e-2));
    const Checkpoint ckpt{{checkpoint_path(o.out), options_fingerprint(o, data.latents.size())}};

    TrainLoraResult result;
    result.layers = lora.layer_count();
    result.images = static_cast<int>(data.latents.size());
    if (o.resume && fs::exists(ckpt.file.path)) result.losses = ckpt.load(lora, opt);
    result.resumed_at = static_cast<int>(result.losses.size());
    for (int step = result.resumed_at; step < o.steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        set_learning_rate(opt, scheduled_rate(o.lr_scheduler, o.lr, step, o.steps));
        at::Generator gen = step_generator(o.seed, step);
        result.losses.push_back(train_step(unet, objective, data, o.batch_size, o.noise_offset, gen, opt));
        if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps)
            ckpt.save(lora, opt, result.losses);
        if (on_step) on_step(status_after(result, o.steps, t0));
    }
    lora.save_kohya(o.out, lora_metadata(o), o.half);
    fs::remove(ckpt.file.path);
    result.path = o.out;
    return result;
}

}  // namespace multilora::train
