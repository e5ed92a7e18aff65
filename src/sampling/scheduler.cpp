#include "multilora/sampling/scheduler.h"

#include <nlohmann/json.hpp>

#include "multilora/util/error.h"
#include "sampling/schedule_common.h"
#include "sampling/scheduler_impls.h"

namespace multilora::sampling {

nlohmann::json sd15_scheduler_config() {
    // runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json
    return nlohmann::json{
        {"_class_name", "PNDMScheduler"},
        {"_diffusers_version", "0.6.0"},
        {"beta_end", 0.012},
        {"beta_schedule", "scaled_linear"},
        {"beta_start", 0.00085},
        {"num_train_timesteps", 1000},
        {"set_alpha_to_one", false},
        {"skip_prk_steps", true},
        {"steps_offset", 1},
        {"trained_betas", nullptr},
        {"clip_sample", false},
    };
}

const std::vector<std::string>& scheduler_names() {
    static const std::vector<std::string> names = {"dpmpp-2m", "dpmpp-2m-karras", "euler", "euler-a", "ddim"};
    return names;
}

bool scheduler_draws_noise(const std::string& name) { return name == "euler-a"; }

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const nlohmann::json& config) {
    if (name == "dpmpp-2m" || name == "dpmpp-2m-karras") {
        const nlohmann::json fixed = {
            {"algorithm_type", "dpmsolver++"},
            {"solver_order", 2},
            {"use_karras_sigmas", name == "dpmpp-2m-karras"},
        };
        return detail::make_dpm_solver_multistep(name, config, fixed);
    }
    if (name == "euler") return detail::make_euler_discrete(name, config);
    if (name == "euler-a") return detail::make_euler_ancestral(name, config);
    if (name == "ddim") return detail::make_ddim(name, config);
    std::string choices;
    for (const auto& n : scheduler_names()) choices += (choices.empty() ? "" : ", ") + n;
    throw UsageError("unknown scheduler '" + name + "'; valid choices: " + choices);
}

at::Tensor training_alphas_cumprod(const nlohmann::json& config) {
    const nlohmann::json ddpm_defaults = {{"num_train_timesteps", 1000}, {"beta_start", 0.0001},
                                          {"beta_end", 0.02},           {"beta_schedule", "linear"},
                                          {"trained_betas", nullptr},   {"rescale_betas_zero_snr", false}};
    return detail::make_noise_table(detail::resolve_config(config, ddpm_defaults), false).alphas_cumprod;
}

}  // namespace multilora::sampling
