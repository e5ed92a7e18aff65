// Noise schedulers, numerically equal to diffusers' classes of the same name when built from the same
// scheduler config (diffusers' `from_config` semantics: keys present in the JSON override each class's
// own defaults; keys absent fall back to that class's defaults).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace at {
class Tensor;
class Generator;
}  // namespace at

namespace multilora::sampling {

// Stable Diffusion v1.5's scheduler/scheduler_config.json (a PNDMScheduler config): 1000 train steps,
// scaled_linear betas 0.00085..0.012, epsilon prediction, steps_offset 1, set_alpha_to_one false,
// skip_prk_steps true, clip_sample false. Used when a checkpoint carries no scheduler config.
nlohmann::json sd15_scheduler_config();

class Scheduler {
public:
    virtual ~Scheduler() = default;

    // diffusers' set_timesteps(num_inference_steps).
    virtual void set_timesteps(int num_inference_steps) = 0;
    // The timesteps handed to the UNet, one per denoising step, in order (float: Euler's are fractional).
    virtual std::vector<double> timesteps() const = 0;
    // Standard deviation of the initial noise (diffusers' init_noise_sigma).
    virtual double init_noise_sigma() const = 0;
    // diffusers' scale_model_input for step `step_index` (0-based position in timesteps()).
    virtual at::Tensor scale_model_input(const at::Tensor& sample, int step_index) = 0;
    // diffusers' step(model_output, timesteps()[step_index], sample, generator).prev_sample.
    // `generator` is only used by ancestral samplers and may be null for the others (null there means
    // torch's default generator). The multistep DPM-Solver keeps its history between calls: call it with
    // step_index 0, 1, 2, ... in order (0 starts over); other orders throw RuntimeError.
    virtual at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                            at::Generator* generator) = 0;

    // Whether the UNet receives the timestep as an integer (int64) tensor, as diffusers passes
    // DPM-Solver's and DDIM's; the Euler family hands it fractional float timesteps.
    virtual bool timestep_is_integral() const { return true; }

    // The canonical multilora name ("dpmpp-2m", ...) and the diffusers class it mirrors.
    virtual std::string name() const = 0;
    virtual std::string diffusers_class() const = 0;

    // diffusers' `sigmas` after set_timesteps (float32 values, one more than timesteps(): the last is
    // the sigma the final step lands on). Empty for schedulers without a sigma grid (DDIM).
    virtual std::vector<double> sigmas() const = 0;
    // The configuration the scheduler resolved from the given JSON (every keyword of the diffusers class,
    // with the value taken from the config, from the scheduler name's fixed settings, or the class default),
    // plus "_class_name". For manifests and logs.
    virtual nlohmann::json config() const = 0;
};

// Known names: dpmpp-2m, dpmpp-2m-karras, euler, euler-a, ddim.
const std::vector<std::string>& scheduler_names();
// Whether the named sampler draws fresh noise at its steps (euler-a): such runs depend on their generator.
bool scheduler_draws_noise(const std::string& name);

// `config` is a diffusers scheduler config JSON (any class's: only the shared keys are taken, as
// from_config does). Throws UsageError for an unknown name, a malformed config, or a config that asks for a
// diffusers feature not implemented here (thresholding, learned variance, exponential/beta/Lu sigmas, ...).
// The names fix what makes them that sampler and take everything else from the config, like
// `Class.from_config(config, **fixed)` would:
//   dpmpp-2m         DPMSolverMultistepScheduler, fixed algorithm_type="dpmsolver++", solver_order=2,
//                    use_karras_sigmas=false
//   dpmpp-2m-karras  the same with use_karras_sigmas=true
//   euler            EulerDiscreteScheduler
//   euler-a          EulerAncestralDiscreteScheduler
//   ddim             DDIMScheduler (eta = 0, as the pipeline's default)
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const nlohmann::json& config);

// The training noise table's alphas_cumprod ([num_train_timesteps] float32) for a scheduler config, as
// diffusers' DDPMScheduler builds it for training's add_noise (its defaults fill the keys a config lacks;
// zero-SNR rescaling applies when the config asks for it). Throws UsageError like make_scheduler.
at::Tensor training_alphas_cumprod(const nlohmann::json& config);

}  // namespace multilora::sampling
