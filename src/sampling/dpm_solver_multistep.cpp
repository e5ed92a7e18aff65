// Multistep DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models", algorithm 2 with the data-prediction parameterisation), numerically following
// diffusers' DPMSolverMultistepScheduler for the deterministic "dpmsolver++" algorithm, solver orders 1 and 2,
// midpoint or heun second-order corrections, linspace / leading / trailing timestep spacing and Karras sigmas.
//
// Notation (per step, s = current noise level, t = next one, sigma = the "VE" sigma of the table):
//   alpha = 1 / sqrt(sigma^2 + 1),  sigma_vp = sigma * alpha,  lambda = log(alpha) - log(sigma_vp),
//   h = lambda_t - lambda_s,  x0 = (x - sigma_vp_s * eps) / alpha_s   (epsilon prediction),
//   first order:  x_t = (sigma_vp_t / sigma_vp_s) x - alpha_t (e^-h - 1) x0
//   second order (midpoint, DPM-Solver++(2M)), with r = h_prev / h and D1 = (x0 - x0_prev) / r:
//                 x_t = (sigma_vp_t / sigma_vp_s) x - alpha_t (e^-h - 1) x0 - 0.5 alpha_t (e^-h - 1) D1
//   heun:         ... + alpha_t ((e^-h - 1) / h + 1) D1 instead of the 0.5 term.
// The per-step scalars are 0-dim float32 CPU tensors combined with the same torch ops, in the same order,
// as diffusers (so that e.g. a CUDA latent divided by a CPU scalar takes the same kernel path), and the
// grids are built in float64 like diffusers' numpy code, then rounded to float32 / int64.
//
// Final step and `final_sigmas_type` across diffusers versions (read from the diffusers git history):
//   * up to 0.25: no `final_sigmas_type` key; the last step went to the noise level of training step 0,
//     sigma_min = 0.0291675 for SD1.5 (<= 0.21 via prev_timestep = 0; 0.22 - 0.25 by appending sigma_min to
//     the linspace grid, while Karras / Lu grids appended a copy of their own last sigma).
//     The last step was first order only with `euler_at_final` (0.22+) or (`lower_order_final` and fewer
//     than 15 steps), so with 15+ steps a run ended with a second-order step to sigma_min, keeping that noise.
//   * 0.26.0 (PR #6477, "fix DPM Scheduler with use_karras_sigmas option") added
//     `final_sigmas_type` = "zero" | "sigma_min", default "zero": the appended last sigma is 0 and the last
//     step is forced to first order whenever final_sigmas_type == "zero" (the second-order formula is not
//     defined at sigma = 0, where lambda = +inf). A first-order step to sigma 0 returns the model's x0
//     prediction exactly.
//   * 0.26.0 through 0.40.0 and current main (Aug 2026): that logic and default are unchanged. So the
//     paper's 0.26.3 and any later diffusers give the same result for SD1.5, whose config has no
//     final_sigmas_type key: final sigma 0, first-order last step. (Checked bit for bit: 50-step float32 runs
//     of 0.26.3's and main's scheduler code and of this file on the same inputs are identical.) The only
//     later change in this class on SD1.5's path is 0.27.0's (PR #7097) upcast of `sample` to float32
//     inside step(), with the result cast back to the model output's dtype; a no-op for float32 latents.
//     It is followed here, so for fp16 latents this matches >= 0.27, not 0.26.3.
//   * "final_sigmas_type": "sigma_min" in the config reproduces the pre-0.26 linspace ending (sigma_min
//     appended; with 15+ steps a second-order last step). That is far from the "zero" result: with an
//     analytic two-peak data denoiser the final latents differ by ~5e-2 relative L2 at 50 steps and ~1e-1 at
//     20 steps (the leftover noise level 0.029 is ~3% of the latent scale), far above a 1e-4 tolerance.
// The key that selects the ending is "final_sigmas_type" (absent -> "zero"); "euler_at_final", and
// "lower_order_final" with fewer than 15 steps, also make the last step first order.

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"
#include "sampling/schedule_common.h"
#include "sampling/scheduler_impls.h"

namespace multilora::sampling::detail {

using nlohmann::json;

namespace {

// Every keyword of DPMSolverMultistepScheduler.__init__ (diffusers main, 2026) with its default.
json dpm_defaults() {
    return json{
        {"num_train_timesteps", 1000},
        {"beta_start", 0.0001},
        {"beta_end", 0.02},
        {"beta_schedule", "linear"},
        {"trained_betas", nullptr},
        {"solver_order", 2},
        {"prediction_type", "epsilon"},
        {"thresholding", false},
        {"dynamic_thresholding_ratio", 0.995},
        {"sample_max_value", 1.0},
        {"algorithm_type", "dpmsolver++"},
        {"solver_type", "midpoint"},
        {"lower_order_final", true},
        {"euler_at_final", false},
        {"use_karras_sigmas", false},
        {"use_exponential_sigmas", false},
        {"use_beta_sigmas", false},
        {"use_lu_lambdas", false},
        {"use_flow_sigmas", false},
        {"flow_shift", 1.0},
        {"final_sigmas_type", "zero"},
        {"lambda_min_clipped", -INFINITY},
        {"variance_type", nullptr},
        {"timestep_spacing", "linspace"},
        {"steps_offset", 0},
        {"rescale_betas_zero_snr", false},
        {"use_dynamic_shifting", false},
        {"time_shift_type", "exponential"},
    };
}

struct AlphaSigma {
    at::Tensor alpha;
    at::Tensor sigma;
};

// alpha_t = 1 / (sigma^2 + 1)^0.5, sigma_t = sigma * alpha_t, on 0-dim float32 tensors.
AlphaSigma to_alpha_sigma(const at::Tensor& sigma) {
    at::Tensor alpha = (sigma.pow(2) + 1).pow(0.5).reciprocal() * 1;  // Python's `1 / x` on a tensor
    return {alpha, sigma * alpha};
}

at::Tensor lambda_of(const AlphaSigma& as) { return at::log(as.alpha) - at::log(as.sigma); }

class DpmSolverMultistep final : public Scheduler {
public:
    DpmSolverMultistep(std::string name, json cfg) : name_(std::move(name)), cfg_(std::move(cfg)) {
        order_ = cfg_int(cfg_, "solver_order");
        if (order_ != 1 && order_ != 2) {
            throw UsageError("scheduler config: solver_order " + std::to_string(order_) +
                             " is not supported (1 or 2)");
        }
        std::string algo = cfg_string(cfg_, "algorithm_type");
        if (algo == "deis") algo = "dpmsolver++";  // diffusers re-registers "deis" as dpmsolver++
        if (algo != "dpmsolver++") {
            throw UsageError("scheduler config: algorithm_type '" + algo + "' is not supported (dpmsolver++)");
        }
        cfg_["algorithm_type"] = algo;
        solver_type_ = cfg_string(cfg_, "solver_type");
        if (solver_type_ == "logrho" || solver_type_ == "bh1" || solver_type_ == "bh2") {
            solver_type_ = "midpoint";  // diffusers maps UniPC/DEIS solver types to midpoint
            cfg_["solver_type"] = solver_type_;
        }
        if (solver_type_ != "midpoint" && solver_type_ != "heun") {
            throw UsageError("scheduler config: solver_type '" + solver_type_ + "' is not supported (midpoint, heun)");
        }
        prediction_type_ = cfg_string(cfg_, "prediction_type");
        if (prediction_type_ != "epsilon" && prediction_type_ != "v_prediction" && prediction_type_ != "sample") {
            throw UsageError("scheduler config: prediction_type '" + prediction_type_ +
                             "' is not supported by " + diffusers_class() + " (epsilon, v_prediction, sample)");
        }
        for (const char* key : {"thresholding", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas",
                                "use_flow_sigmas", "use_dynamic_shifting"}) {
            if (cfg_bool(cfg_, key)) {
                throw UsageError(std::string("scheduler config: ") + key + "=true is not supported");
            }
        }
        if (!cfg_.at("variance_type").is_null()) {
            throw UsageError("scheduler config: variance_type (learned variance) is not supported");
        }
        final_sigmas_type_ = final_sigmas_type(cfg_);
        lower_order_final_ = cfg_bool(cfg_, "lower_order_final");
        euler_at_final_ = cfg_bool(cfg_, "euler_at_final");
        karras_ = cfg_bool(cfg_, "use_karras_sigmas");
        spacing_ = cfg_string(cfg_, "timestep_spacing");
        steps_offset_ = cfg_int(cfg_, "steps_offset");
        table_ = make_noise_table(cfg_, /*pin_zero_snr_tail=*/true);
        cfg_["_class_name"] = diffusers_class();
    }

    void set_timesteps(int num_inference_steps) override {
        const int64_t N = cfg_int(cfg_, "num_train_timesteps");
        check_steps(num_inference_steps, N, false);
        const int64_t n = num_inference_steps;

        // Timesteps whose log-SNR lies below lambda_min_clipped are cut from the top of the grid.
        at::Tensor ac = table_.alphas_cumprod;
        at::Tensor lambda_t = at::log(at::sqrt(ac)) - at::log(at::sqrt(at::rsub(ac, 1)));
        const double lambda_min = cfg_.at("lambda_min_clipped").is_number() ? cfg_double(cfg_, "lambda_min_clipped")
                                                                              : -INFINITY;
        const int64_t clipped = at::searchsorted(at::flip(lambda_t, {0}), at::Scalar(lambda_min)).item<int64_t>();
        const int64_t last_timestep = N - clipped;

        std::vector<double> grid;  // n values, descending
        if (spacing_ == "linspace") {
            std::vector<double> v = np_linspace(0.0, static_cast<double>(last_timestep - 1), n + 1);
            for (auto& x : v) x = np_round(x);
            std::reverse(v.begin(), v.end());
            grid.assign(v.begin(), v.end() - 1);
        } else if (spacing_ == "leading") {
            const int64_t ratio = last_timestep / (n + 1);
            for (int64_t k = n; k >= 1; --k) grid.push_back(static_cast<double>(k * ratio + steps_offset_));
        } else if (spacing_ == "trailing") {
            const double ratio = static_cast<double>(N) / static_cast<double>(n);
            grid = np_arange(static_cast<double>(last_timestep), 0.0, -ratio);
            for (auto& x : grid) x = static_cast<double>(static_cast<int64_t>(np_round(x)) - 1);
        } else {
            throw UsageError("scheduler config: timestep_spacing '" + spacing_ +
                             "' is not supported (linspace, leading, trailing)");
        }

        std::vector<double> sig;
        if (karras_) {
            double smin = table_.sigmas.front();
            double smax = table_.sigmas.back();
            double v;
            if (cfg_optional_double(cfg_, "sigma_min", &v)) smin = v;
            if (cfg_optional_double(cfg_, "sigma_max", &v)) smax = v;
            sig = karras_sigmas(smin, smax, n);
            const std::vector<float> log_sigmas = log_sigma_table(table_.sigmas);
            const bool round = cfg_string(cfg_, "beta_schedule") != "squaredcos_cap_v2";
            grid.clear();
            for (double s : sig) {
                const double t = sigma_to_t(s, log_sigmas);
                grid.push_back(round ? np_round(t) : t);
            }
        } else {
            sig = np_interp_unit_grid(grid, table_.sigmas);
        }
        sig.push_back(final_sigmas_type_ == "sigma_min" ? table_.sigmas.front() : 0.0);

        timesteps_.clear();
        for (double t : grid) timesteps_.push_back(static_cast<int64_t>(t));  // astype(int64) truncates
        sigmas_ = float_tensor(sig);
        reset_state();
    }

    std::vector<double> timesteps() const override {
        return std::vector<double>(timesteps_.begin(), timesteps_.end());
    }

    double init_noise_sigma() const override { return 1.0; }

    at::Tensor scale_model_input(const at::Tensor& sample, int step_index) override {
        check_index(step_index);
        return sample;
    }

    at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                    at::Generator* /*generator*/) override {
        check_index(step_index);
        if (step_index == 0) reset_state();
        if (step_index != next_index_) {
            throw RuntimeError(diffusers_class() + ": step " + std::to_string(step_index) +
                               " called out of order (expected " + std::to_string(next_index_) + ")");
        }
        const auto n = static_cast<int>(timesteps_.size());
        const bool last = step_index == n - 1;
        const bool lower_order_final =
            last && (euler_at_final_ || (lower_order_final_ && n < 15) || final_sigmas_type_ == "zero");

        at::Tensor x0 = convert_model_output(model_output, sample, step_index);
        // keep the last `order_` data predictions, oldest first
        if (static_cast<int>(model_outputs_.size()) == order_) model_outputs_.erase(model_outputs_.begin());
        model_outputs_.push_back(x0);

        at::Tensor x = sample.to(at::kFloat);
        at::Tensor prev;
        if (order_ == 1 || lower_order_nums_ < 1 || lower_order_final) {
            prev = first_order_update(x0, x, step_index);
        } else {
            prev = second_order_update(x, step_index);
        }
        if (lower_order_nums_ < order_) ++lower_order_nums_;
        next_index_ = step_index + 1;
        return prev.to(x0.scalar_type());
    }

    std::string name() const override { return name_; }
    std::string diffusers_class() const override { return "DPMSolverMultistepScheduler"; }

    std::vector<double> sigmas() const override { return float_values(sigmas_); }

    json config() const override { return cfg_; }

private:
    void check_index(int step_index) const { check_step_index(diffusers_class(), timesteps_.size(), step_index); }

    void reset_state() {
        model_outputs_.clear();
        lower_order_nums_ = 0;
        next_index_ = 0;
    }

    // The data prediction x0 from the network output.
    at::Tensor convert_model_output(const at::Tensor& model_output, const at::Tensor& sample, int i) const {
        if (prediction_type_ == "sample") return model_output;
        const AlphaSigma as = to_alpha_sigma(sigmas_[i]);
        if (prediction_type_ == "epsilon") return (sample - as.sigma * model_output) / as.alpha;
        return as.alpha * sample - as.sigma * model_output;  // v_prediction
    }

    at::Tensor first_order_update(const at::Tensor& x0, const at::Tensor& x, int i) const {
        const AlphaSigma t = to_alpha_sigma(sigmas_[i + 1]);
        const AlphaSigma s = to_alpha_sigma(sigmas_[i]);
        const at::Tensor h = lambda_of(t) - lambda_of(s);
        return (t.sigma / s.sigma) * x - (t.alpha * (at::exp(-h) - 1.0)) * x0;
    }

    at::Tensor second_order_update(const at::Tensor& x, int i) const {
        const AlphaSigma t = to_alpha_sigma(sigmas_[i + 1]);
        const AlphaSigma s0 = to_alpha_sigma(sigmas_[i]);
        const AlphaSigma s1 = to_alpha_sigma(sigmas_[i - 1]);
        const at::Tensor lambda_t = lambda_of(t);
        const at::Tensor lambda_s0 = lambda_of(s0);
        const at::Tensor lambda_s1 = lambda_of(s1);
        const at::Tensor& m0 = model_outputs_.back();
        const at::Tensor& m1 = model_outputs_[model_outputs_.size() - 2];
        const at::Tensor h = lambda_t - lambda_s0;
        const at::Tensor h_0 = lambda_s0 - lambda_s1;
        const at::Tensor r0 = h_0 / h;
        const at::Tensor& D0 = m0;
        const at::Tensor D1 = (r0.reciprocal() * 1.0) * (m0 - m1);  // Python's `1.0 / r0`
        const at::Tensor phi = t.alpha * (at::exp(-h) - 1.0);
        if (solver_type_ == "midpoint") {
            return (t.sigma / s0.sigma) * x - phi * D0 - (phi * 0.5) * D1;
        }
        return (t.sigma / s0.sigma) * x - phi * D0 + (t.alpha * ((at::exp(-h) - 1.0) / h + 1.0)) * D1;
    }

    std::string name_;
    json cfg_;
    NoiseTable table_;
    int order_ = 2;
    bool lower_order_final_ = true;
    bool euler_at_final_ = false;
    bool karras_ = false;
    std::string solver_type_, prediction_type_, final_sigmas_type_, spacing_;
    int64_t steps_offset_ = 0;

    std::vector<int64_t> timesteps_;
    at::Tensor sigmas_;  // float32 CPU, timesteps_.size() + 1 entries
    std::vector<at::Tensor> model_outputs_;
    int lower_order_nums_ = 0;
    int next_index_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver_multistep(const std::string& name, const json& config,
                                                     const json& overrides) {
    json cfg = resolve_config(config, dpm_defaults(), overrides, {"sigma_min", "sigma_max"});
    return std::make_unique<DpmSolverMultistep>(name, std::move(cfg));
}

}  // namespace multilora::sampling::detail
