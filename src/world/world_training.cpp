#include "multilora/world/world_training.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/train/diffusion_objective.h"
#include "multilora/train/image_folder.h"
#include "multilora/train/learning_rate.h"
#include "multilora/train/training_checkpoint.h"
#include "multilora/util/clock.h"

namespace multilora::world {

namespace {

using Clock = std::chrono::steady_clock;

using train::step_generator;

// Half generic scenes, half scenes with one random concept: the VAE must reproduce every element.
ConceptChoice random_choice(Rng& rng) {
    ConceptChoice c = kGeneric;
    if (!rng.chance(0.5f)) return c;
    const int concept = rng.below(3);  // drawn before the category: the order the shipped world was built in
    c[rng.below(kCategories)] = concept;
    return c;
}

at::Tensor vae_loss(models::AutoencoderKLImpl& vae, const at::Tensor& images, double kl_weight, at::Generator& gen) {
    at::Tensor moments = vae.quant_conv->forward(vae.encoder->forward(images));
    auto parts = moments.chunk(2, 1);
    at::Tensor mean = parts[0], logvar = parts[1].clamp(-30.0, 20.0);
    at::Tensor z = mean + (0.5 * logvar).exp() * at::randn(mean.sizes(), gen, mean.options());
    at::Tensor recon = vae.decode(z);
    at::Tensor kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum({1, 2, 3}).mean();
    return at::mse_loss(recon, images) + kl_weight * kl;
}

std::map<std::string, at::Tensor> parameters_by_name(const torch::nn::Module& module) {
    std::map<std::string, at::Tensor> params;
    for (const auto& p : module.named_parameters()) params[p.key()] = p.value();
    return params;
}

// A phase in progress: its steps' losses and the seconds it has run, those of the runs before a resume included.
class PhaseRun {
public:
    // Restores the module and the optimizer from the phase's checkpoint, when there is one.
    // `extra` are more tensors the checkpoint keeps (an average of the weights), by names of their own.
    PhaseRun(const PhaseCheckpoint& c, torch::nn::Module& module, torch::optim::Optimizer& opt,
             Clock::time_point start = Clock::now(), std::map<std::string, at::Tensor> extra = {})
        : c_(c), module_(module), opt_(opt), start_(start), extra_(std::move(extra)) {
        if (!c.path.empty() && std::filesystem::exists(c.path))
            before_ = train::TrainingCheckpoint{c.path, c.fingerprint}.restore(saved_tensors(), opt);
        losses_ = before_.losses;
    }
    int steps_done() const { return static_cast<int>(losses_.size()); }
    double last_loss() const { return losses_.back(); }
    double seconds() const { return before_.seconds + seconds_since(start_); }

    // After each step: the checkpoint, when one is due (not after the last step: the phase's result follows).
    void step_done(double loss, int steps) {
        losses_.push_back(loss);
        const int done = steps_done();
        if (c_.path.empty() || c_.every <= 0 || done % c_.every != 0 || done >= steps) return;
        train::TrainingCheckpoint{c_.path, c_.fingerprint}.save(saved_tensors(), opt_, {losses_, seconds()});
    }
    // The phase's result; its checkpoint is removed.
    PhaseResult end() {
        if (!c_.path.empty()) std::filesystem::remove(c_.path);
        return {losses_, seconds()};
    }

private:
    std::map<std::string, at::Tensor> saved_tensors() const {
        std::map<std::string, at::Tensor> all = parameters_by_name(module_);
        all.insert(extra_.begin(), extra_.end());
        return all;
    }

    const PhaseCheckpoint& c_;
    torch::nn::Module& module_;
    torch::optim::Optimizer& opt_;
    Clock::time_point start_;
    std::map<std::string, at::Tensor> extra_;
    train::TrainingProgress before_;
    std::vector<double> losses_;
};

// An exponential moving average of a module's parameters, as diffusers' EMAModel keeps it (warm-up decay
// min(decay, (1 + step) / (10 + step))). Its tensors are named "ema/<parameter>" for the checkpoint.
// tensors() hands out handles that share storage with the average: every update and copy here is in place,
// so the phase checkpoint saves the current average and its restore (a copy into those handles) resumes it.
class WeightAverage {
public:
    WeightAverage(const torch::nn::Module& module, double decay) : decay_(decay) {
        if (decay <= 0) return;
        torch::NoGradGuard no_grad;
        for (const auto& p : module.named_parameters()) {
            at::Tensor avg = p.value().detach().clone();
            average_["ema/" + p.key()] = avg;
            pairs_.push_back({p.value(), avg});
        }
    }
    const std::map<std::string, at::Tensor>& tensors() const { return average_; }

    // After optimizer step `step` (0-based).
    void update(int step) {
        torch::NoGradGuard no_grad;
        const double d = std::min(decay_, (1.0 + step) / (10.0 + step));
        for (auto& [param, avg] : pairs_) avg.lerp_(param, 1.0 - d);
    }
    // The module's parameters become the average.
    void copy_to_module() {
        torch::NoGradGuard no_grad;
        for (auto& [param, avg] : pairs_) param.copy_(avg);
    }

private:
    double decay_;
    std::map<std::string, at::Tensor> average_;
    std::vector<std::pair<at::Tensor, at::Tensor>> pairs_;  // (parameter, its average), in parameter order
};

void set_scaling_factor(models::AutoencoderKLImpl& vae, uint64_t seed) {
    torch::NoGradGuard no_grad;
    std::vector<uint64_t> seeds;
    for (uint64_t i = 0; i < 64; ++i) seeds.push_back(seed * 1000003 + i);
    at::Tensor latents = vae.encode_mean(render_batch(seeds, kGeneric));
    vae.set_scaling_factor(1.0 / latents.std().item<double>());
}

}  // namespace

bench::TinyModelConfigs world_configs() {
    bench::TinyModelConfigs c;
    c.unet.block_out_channels = {64, 128, 128};
    c.unet.down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
    c.unet.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
    c.unet.num_attention_heads = {4, 4, 4};
    c.unet.layers_per_block = 1;
    c.unet.cross_attention_dim = 64;
    c.unet.sample_size = kImageSize / 8;
    c.vae.block_out_channels = {32, 64, 64, 64};
    c.vae.layers_per_block = 1;
    c.vae.sample_size = kImageSize;
    c.text.hidden_size = 64;
    c.text.intermediate_size = 128;
    c.text.num_hidden_layers = 2;
    c.text.num_attention_heads = 2;
    return c;
}

at::Tensor render_batch(const std::vector<uint64_t>& seeds, const ConceptChoice& choice, int size) {
    std::vector<at::Tensor> images;
    for (uint64_t s : seeds) {
        const std::vector<uint8_t> px = render_scene(sample_scene(s, choice), size).to_rgb8();
        images.push_back(train::rgb8_to_tensor(px.data(), size, size));
    }
    return at::stack(images);
}

namespace {

// A training step's scenes: `batch` renders, each of a choice drawn by `choose` and then its scene seed, in
// that order (a statement each, so the draws do not depend on the compiler's argument order).
at::Tensor step_scenes(uint64_t seed, int step, int batch, ConceptChoice (*choose)(Rng&)) {
    Rng rng(seed * 0x51ED27ull + static_cast<uint64_t>(step));
    std::vector<at::Tensor> images;
    for (int i = 0; i < batch; ++i) {
        const ConceptChoice c = choose(rng);
        images.push_back(render_batch({rng.next()}, c));
    }
    return at::cat(images);
}

}  // namespace

PhaseResult train_vae(models::AutoencoderKLImpl& vae, const VaeTraining& t, const PhaseCallback& on_step,
                      const PhaseCheckpoint& checkpoint) {
    for (auto& p : vae.parameters()) p.requires_grad_(true);
    torch::optim::AdamW opt(vae.parameters(), torch::optim::AdamWOptions(t.lr).weight_decay(0));
    PhaseRun run(checkpoint, vae, opt);
    for (int step = run.steps_done(); step < t.steps; ++step) {
        const auto t0 = Clock::now();
        const at::Tensor x = step_scenes(t.seed, step, t.batch, random_choice);
        at::Generator gen = step_generator(t.seed, step);
        opt.zero_grad();
        at::Tensor loss = vae_loss(vae, x, t.kl_weight, gen);
        loss.backward();
        opt.step();
        run.step_done(loss.item<double>(), t.steps);
        if (on_step) on_step({"vae", step + 1, t.steps, run.last_loss(), seconds_since(t0)});
    }
    for (auto& p : vae.parameters()) p.requires_grad_(false);
    set_scaling_factor(vae, t.seed);
    return run.end();
}

PhaseResult refine_vae_decoder(models::AutoencoderKLImpl& vae, const DecoderTraining& t, const PhaseCallback& on_step,
                               const PhaseCheckpoint& checkpoint) {
    std::vector<at::Tensor> params = vae.decoder->parameters();
    for (const at::Tensor& p : vae.post_quant_conv->parameters()) params.push_back(p);
    for (auto& p : params) p.requires_grad_(true);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(t.lr).weight_decay(0));
    PhaseRun run(checkpoint, vae, opt);
    for (int step = run.steps_done(); step < t.steps; ++step) {
        const auto t0 = Clock::now();
        train::tenth_rate_for_last_quarter(opt, t.lr, step, t.steps);
        const at::Tensor x = step_scenes(t.seed, step, t.batch, independent_choice);
        at::Tensor latents;
        {
            torch::NoGradGuard no_grad;
            latents = vae.encode_mean(x);
        }
        opt.zero_grad();
        at::Tensor loss = at::mse_loss(vae.decode(latents), x);
        loss.backward();
        opt.step();
        run.step_done(loss.item<double>(), t.steps);
        if (on_step) on_step({"decoder", step + 1, t.steps, run.last_loss(), seconds_since(t0)});
    }
    for (auto& p : params) p.requires_grad_(false);
    return run.end();
}

namespace {

// The base dataset: generic scenes, encoded once.
void encode_base_dataset(models::AutoencoderKLImpl& vae, const std::function<at::Tensor(const std::string&)>& encode,
                         const UnetTraining& t, std::vector<at::Tensor>& latents, std::vector<at::Tensor>& contexts) {
    torch::NoGradGuard no_grad;
    const double scaling = vae.config().scaling_factor;
    for (int start = 0; start < t.dataset; start += 32) {
        std::vector<uint64_t> seeds;
        for (int i = start; i < std::min(t.dataset, start + 32); ++i) seeds.push_back(t.seed * 1000003 + i);
        at::Tensor z = vae.encode_mean(render_batch(seeds, kGeneric)).mul(scaling);
        for (size_t i = 0; i < seeds.size(); ++i) {
            latents.push_back(z.narrow(0, static_cast<int64_t>(i), 1));
            contexts.push_back(encode(caption(sample_scene(seeds[i]))));
        }
    }
}

}  // namespace

PhaseResult train_unet(models::UNet2DConditionModelImpl& unet, models::AutoencoderKLImpl& vae,
                       const std::function<at::Tensor(const std::string&)>& encode,
                       const at::Tensor& alphas_cumprod, const UnetTraining& t, const PhaseCallback& on_step,
                       const PhaseCheckpoint& checkpoint) {
    const auto start = Clock::now();  // the dataset's encoding counts: a resumed run encodes it again
    std::vector<at::Tensor> latents, contexts;
    encode_base_dataset(vae, encode, t, latents, contexts);
    const at::Tensor empty = encode("");
    const train::DiffusionObjective objective(alphas_cumprod);
    for (auto& p : unet.parameters()) p.requires_grad_(true);
    torch::optim::AdamW opt(unet.parameters(), torch::optim::AdamWOptions(t.lr).weight_decay(1e-2));
    WeightAverage average(unet, t.ema_decay);
    PhaseRun run(checkpoint, unet, opt, start, average.tensors());
    for (int step = run.steps_done(); step < t.steps; ++step) {
        const auto t0 = Clock::now();
        at::Generator gen = step_generator(t.seed, step);
        at::Tensor picks = at::randint(0, static_cast<int64_t>(latents.size()), {t.batch}, gen, at::kLong);
        at::Tensor drop = at::rand({t.batch}, gen);
        std::vector<at::Tensor> z, ctx;
        for (int i = 0; i < t.batch; ++i) {
            const int64_t k = picks[i].item<int64_t>();
            z.push_back(latents[k]);
            ctx.push_back(drop[i].item<double>() < t.caption_dropout ? empty : contexts[k]);
        }
        opt.zero_grad();
        at::Tensor loss = objective.loss(unet, at::cat(z), at::cat(ctx), gen);
        loss.backward();
        opt.step();
        average.update(step);
        run.step_done(loss.item<double>(), t.steps);
        if (on_step) on_step({"unet", step + 1, t.steps, run.last_loss(), seconds_since(t0)});
    }
    for (auto& p : unet.parameters()) p.requires_grad_(false);
    average.copy_to_module();
    return run.end();
}

}  // namespace multilora::world
