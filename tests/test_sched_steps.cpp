// Single scheduler updates worked by hand from the published formulas (evaluated here in double from the
// scheduler's own float32 sigmas or from alphas_cumprod values derived in Python as in test_sched_grids.cpp),
// plus whole 50-step runs on Gaussian data, where the probability-flow ODE has a closed-form solution.
//
// Notation: sigma is the "VE" noise level, alpha = 1 / sqrt(sigma^2 + 1), sigma_vp = sigma * alpha,
// lambda = log(alpha / sigma_vp) = -log(sigma).
//   DPM-Solver++ (Lu et al. 2022): x0 = (x - sigma_vp eps) / alpha; h = lambda_t - lambda_s;
//     1st order:  x_t = (sigma_vp_t / sigma_vp_s) x - alpha_t (e^-h - 1) x0
//     2M (midpoint): with r = h_prev / h, D1 = (x0 - x0_prev) / r, subtract 0.5 alpha_t (e^-h - 1) D1 more.
//   Euler (Karras et al. 2022, alg. 1, no churn): x' = x + (x - (x - sigma eps)) / sigma * (sigma' - sigma).
//   Euler ancestral: sigma_up = sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2), sigma_down =
//     sqrt(sigma'^2 - sigma_up^2), x' = x + eps (sigma_down - sigma) + z sigma_up, z ~ N(0, 1).
//   DDIM (Song et al. 2021, eq. 12, eta = 0): x' = sqrt(abar') x0 + sqrt(1 - abar') eps.
#include <gtest/gtest.h>

#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"

namespace ms = multilora::sampling;
using nlohmann::json;

namespace {

std::unique_ptr<ms::Scheduler> sd15(const std::string& name, int steps, const json& extra = json::object()) {
    json cfg = ms::sd15_scheduler_config();
    for (auto it = extra.begin(); it != extra.end(); ++it) cfg[it.key()] = it.value();
    auto s = ms::make_scheduler(name, cfg);
    s->set_timesteps(steps);
    return s;
}

// 16 distinct values in [-1, 1], shape [1, 4, 2, 2]
torch::Tensor ramp(double scale = 1.0, double shift = 0.0) {
    return (torch::linspace(-1.0, 1.0, 16, torch::kFloat) * scale + shift).reshape({1, 4, 2, 2});
}

std::vector<double> values(const torch::Tensor& t) {
    torch::Tensor c = t.to(torch::kDouble).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void expect_close(const torch::Tensor& got, const std::vector<double>& want, double tol, const char* what) {
    const auto g = values(got);
    ASSERT_EQ(g.size(), want.size()) << what;
    for (size_t i = 0; i < g.size(); ++i) {
        EXPECT_NEAR(g[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " [" << i << "]";
    }
}

struct Vp {
    double alpha, sigma_vp, lambda;
};
Vp vp(double sigma) {
    const double a = 1.0 / std::sqrt(sigma * sigma + 1.0);
    return {a, sigma * a, std::log(a) - std::log(sigma * a)};
}

double dpm_x0(double x, double eps, double sigma) {
    const Vp s = vp(sigma);
    return (x - s.sigma_vp * eps) / s.alpha;
}
double dpm_first(double x, double x0, double sigma_s, double sigma_t) {
    const Vp s = vp(sigma_s), t = vp(sigma_t);
    const double h = t.lambda - s.lambda;
    return (t.sigma_vp / s.sigma_vp) * x - t.alpha * (std::exp(-h) - 1.0) * x0;
}
double dpm_second(double x, double x0, double x0_prev, double sigma_prev, double sigma_s, double sigma_t) {
    const Vp p = vp(sigma_prev), s = vp(sigma_s), t = vp(sigma_t);
    const double h = t.lambda - s.lambda, r = (s.lambda - p.lambda) / h;
    const double d1 = (x0 - x0_prev) / r;
    return (t.sigma_vp / s.sigma_vp) * x - t.alpha * (std::exp(-h) - 1.0) * x0 -
           0.5 * t.alpha * (std::exp(-h) - 1.0) * d1;
}

constexpr double kTol = 2e-6;  // float32 evaluation vs double formula

}  // namespace

TEST(schedStep, DpmFirstThenSecondOrder) {
    auto s = sd15("dpmpp-2m", 10);
    const auto sig = s->sigmas();
    const torch::Tensor x = ramp(14.0, 0.5);
    const torch::Tensor e0 = ramp(0.7, 0.1);
    const torch::Tensor e1 = ramp(-0.4, 0.3);
    EXPECT_TRUE(s->scale_model_input(x, 0).equal(x));  // DPM-Solver feeds the sample unscaled

    // step 0: no history, first order
    const torch::Tensor x1 = s->step(e0, 0, x, nullptr);
    std::vector<double> want1, x0_0;
    const auto xv = values(x), e0v = values(e0), e1v = values(e1);
    for (size_t i = 0; i < xv.size(); ++i) {
        x0_0.push_back(dpm_x0(xv[i], e0v[i], sig[0]));
        want1.push_back(dpm_first(xv[i], x0_0[i], sig[0], sig[1]));
    }
    expect_close(x1, want1, kTol, "first-order step");

    // step 1: second-order midpoint update using the previous data prediction
    const torch::Tensor x2 = s->step(e1, 1, x1, nullptr);
    std::vector<double> want2, first_order_instead;
    const auto x1v = values(x1);
    for (size_t i = 0; i < x1v.size(); ++i) {
        const double x0_1 = dpm_x0(x1v[i], e1v[i], sig[1]);
        want2.push_back(dpm_second(x1v[i], x0_1, x0_0[i], sig[0], sig[1], sig[2]));
        first_order_instead.push_back(dpm_first(x1v[i], x0_1, sig[1], sig[2]));
    }
    expect_close(x2, want2, kTol, "second-order step");
    // the correction term is large enough here that a first-order step would fail the check above
    double max_gap = 0;
    for (size_t i = 0; i < want2.size(); ++i) max_gap = std::max(max_gap, std::abs(want2[i] - first_order_instead[i]));
    EXPECT_GT(max_gap, 1e-2);

    // steps must come in order; step 0 starts over
    EXPECT_THROW(s->step(e1, 5, x2, nullptr), multilora::RuntimeError);
    expect_close(s->step(e0, 0, x, nullptr), want1, kTol, "restart");
}

// Runs steps 0 .. n-2 and returns the sample, its model output and the previous x0 for the last step.
struct BeforeLast {
    torch::Tensor x, eps;
    std::vector<double> x0_prev;
};
BeforeLast run_to_last(ms::Scheduler& s) {
    const auto sig = s.sigmas();
    const int n = static_cast<int>(s.timesteps().size());
    torch::Tensor x = ramp(14.0, 0.5);
    std::vector<double> x0_prev;
    for (int i = 0; i < n - 1; ++i) {
        const torch::Tensor eps = ramp(0.5, 0.02 * i);
        x0_prev.clear();
        for (double v : values((x - vp(sig[i]).sigma_vp * eps) / vp(sig[i]).alpha)) x0_prev.push_back(v);
        x = s.step(eps, i, x, nullptr);
    }
    return {x, ramp(0.5, 0.02 * (n - 1)), x0_prev};
}

TEST(schedStep, DpmFinalStepLandsOnX0) {
    // final_sigmas_type "zero" (default): the last step is first order to sigma 0, i.e. returns x0
    for (int n : {10, 20, 50}) {
        auto s = sd15("dpmpp-2m", n);
        const auto sig = s->sigmas();
        const BeforeLast b = run_to_last(*s);
        const torch::Tensor out = s->step(b.eps, n - 1, b.x, nullptr);
        std::vector<double> want;
        const auto xv = values(b.x), ev = values(b.eps);
        for (size_t i = 0; i < xv.size(); ++i) want.push_back(dpm_x0(xv[i], ev[i], sig[n - 1]));
        expect_close(out, want, kTol, "final step");
    }
}

TEST(schedStep, DpmLowerOrderFinalWithSigmaMin) {
    // final_sigmas_type "sigma_min": with fewer than 15 steps lower_order_final makes the last step first
    // order (to sigma_min); with 15 or more it stays second order.
    for (int n : {10, 20}) {
        auto s = sd15("dpmpp-2m", n, {{"final_sigmas_type", "sigma_min"}});
        const auto sig = s->sigmas();
        ASSERT_GT(sig[n], 0.02);
        const BeforeLast b = run_to_last(*s);
        const torch::Tensor out = s->step(b.eps, n - 1, b.x, nullptr);
        std::vector<double> first, second;
        const auto xv = values(b.x), ev = values(b.eps);
        for (size_t i = 0; i < xv.size(); ++i) {
            const double x0 = dpm_x0(xv[i], ev[i], sig[n - 1]);
            first.push_back(dpm_first(xv[i], x0, sig[n - 1], sig[n]));
            second.push_back(dpm_second(xv[i], x0, b.x0_prev[i], sig[n - 2], sig[n - 1], sig[n]));
        }
        expect_close(out, n < 15 ? first : second, kTol, n < 15 ? "first-order final" : "second-order final");
    }
}

TEST(schedStep, DpmVPrediction) {
    auto s = sd15("dpmpp-2m", 10, {{"prediction_type", "v_prediction"}});
    const auto sig = s->sigmas();
    const torch::Tensor x = ramp(14.0, 0.5), v = ramp(0.9, -0.2);
    const torch::Tensor out = s->step(v, 0, x, nullptr);
    std::vector<double> want;
    const auto xv = values(x), vv = values(v);
    const Vp p = vp(sig[0]);
    for (size_t i = 0; i < xv.size(); ++i) {
        want.push_back(dpm_first(xv[i], p.alpha * xv[i] - p.sigma_vp * vv[i], sig[0], sig[1]));
    }
    expect_close(out, want, kTol, "v-prediction step");
}

TEST(schedStep, Euler) {
    auto s = sd15("euler", 10);
    const auto sig = s->sigmas();
    const torch::Tensor x = ramp(14.0, 0.5), e = ramp(0.7, 0.1);
    std::vector<double> scaled, want;
    const auto xv = values(x), ev = values(e);
    for (size_t i = 0; i < xv.size(); ++i) {
        scaled.push_back(xv[i] / std::sqrt(sig[3] * sig[3] + 1));
        const double denoised = xv[i] - sig[3] * ev[i];
        want.push_back(xv[i] + (xv[i] - denoised) / sig[3] * (sig[4] - sig[3]));
    }
    expect_close(s->scale_model_input(x, 3), scaled, kTol, "scale_model_input");
    expect_close(s->step(e, 3, x, nullptr), want, kTol, "euler step");
    // last step: sigma' = 0, the result is the denoised sample
    std::vector<double> last;
    for (size_t i = 0; i < xv.size(); ++i) last.push_back(xv[i] - sig[9] * ev[i]);
    expect_close(s->step(e, 9, x, nullptr), last, kTol, "euler last step");

    auto sv = sd15("euler", 10, {{"prediction_type", "v_prediction"}});
    std::vector<double> want_v;
    for (size_t i = 0; i < xv.size(); ++i) {
        const double c = sig[3] * sig[3] + 1;
        const double denoised = ev[i] * (-sig[3] / std::sqrt(c)) + xv[i] / c;
        want_v.push_back(xv[i] + (xv[i] - denoised) / sig[3] * (sig[4] - sig[3]));
    }
    expect_close(sv->step(e, 3, x, nullptr), want_v, kTol, "euler v-prediction step");
}

TEST(schedStep, EulerAncestralUsesGeneratorNoise) {
    auto s = sd15("euler-a", 10);
    const auto sig = s->sigmas();
    const torch::Tensor x = ramp(14.0, 0.5), e = ramp(0.7, 0.1);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(42);
    at::Generator twin = at::make_generator<at::CPUGeneratorImpl>(42);
    const auto xv = values(x), ev = values(e);

    torch::Tensor cur = x;
    for (int step : {0, 1}) {
        const auto cv = values(cur);
        const torch::Tensor out = s->step(e, step, cur, &gen);
        const auto z = values(at::randn({1, 4, 2, 2}, twin, at::kFloat));  // the numbers step() must have drawn
        const double sf = sig[step], st = sig[step + 1];
        const double up = std::sqrt(st * st * (sf * sf - st * st) / (sf * sf));
        const double down = std::sqrt(st * st - up * up);
        std::vector<double> want;
        for (size_t i = 0; i < cv.size(); ++i) want.push_back(cv[i] + ev[i] * (down - sf) + z[i] * up);
        expect_close(out, want, kTol, step == 0 ? "ancestral step 0" : "ancestral step 1");
        ASSERT_GT(up, 1.0);  // the noise term matters at these noise levels
        cur = out;
    }
    // last step: sigma_up = 0, no noise survives (but the draw still happens)
    std::vector<double> last;
    for (size_t i = 0; i < xv.size(); ++i) last.push_back(xv[i] - sig[9] * ev[i]);
    expect_close(s->step(e, 9, x, &gen), last, kTol, "ancestral last step");
    at::randn({1, 4, 2, 2}, twin, at::kFloat);
    EXPECT_TRUE(at::randn({3}, gen, at::kFloat).equal(at::randn({3}, twin, at::kFloat)));
}

TEST(schedStep, Ddim) {
    // alphas_cumprod at t = 0, 1, 801, 901 (worked out in Python as described in test_sched_grids.cpp)
    const double ac0 = 0.999149978, ac1 = 0.998296022, ac801 = 0.0365464985, ac901 = 0.0140048908;
    const torch::Tensor x = ramp(1.0, 0.2), e = ramp(0.7, 0.1);
    const auto xv = values(x), ev = values(e);
    auto ddim_ref = [&](double a, double a_prev, bool last_is_x0) {
        std::vector<double> out;
        for (size_t i = 0; i < xv.size(); ++i) {
            const double x0 = (xv[i] - std::sqrt(1 - a) * ev[i]) / std::sqrt(a);
            out.push_back(last_is_x0 ? x0 : std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev) * ev[i]);
        }
        return out;
    };
    auto s = sd15("ddim", 10);  // timesteps 901, 801, ..., 1
    EXPECT_TRUE(s->scale_model_input(x, 0).equal(x));
    expect_close(s->step(e, 0, x, nullptr), ddim_ref(ac901, ac801, false), 1e-5, "ddim 901 -> 801");
    // last step: 1 -> -99, which uses alphas_cumprod[0] since set_alpha_to_one is false for SD1.5
    expect_close(s->step(e, 9, x, nullptr), ddim_ref(ac1, ac0, false), 1e-5, "ddim last step");
    auto one = sd15("ddim", 10, {{"set_alpha_to_one", true}});
    expect_close(one->step(e, 9, x, nullptr), ddim_ref(ac1, 1.0, true), 1e-5, "ddim last step to alpha 1");

    auto v = sd15("ddim", 10, {{"prediction_type", "v_prediction"}});
    std::vector<double> want_v;
    for (size_t i = 0; i < xv.size(); ++i) {
        const double x0 = std::sqrt(ac901) * xv[i] - std::sqrt(1 - ac901) * ev[i];
        const double eps = std::sqrt(ac901) * ev[i] + std::sqrt(1 - ac901) * xv[i];
        want_v.push_back(std::sqrt(ac801) * x0 + std::sqrt(1 - ac801) * eps);
    }
    expect_close(v->step(e, 0, x, nullptr), want_v, 1e-5, "ddim v-prediction");
}

// Data x0 ~ N(0, s^2): the exact noise prediction is eps = sigma_vp x_vp / (alpha^2 s^2 + sigma_vp^2), linear
// in the sample, so after any number of steps the sample is k * (initial sample) for a scalar k that the
// formulas above give when iterated in double. Checks the whole 50-step trajectory (every step's order
// choice included) against that, and, loosely, against the closed-form probability-flow ODE solution,
// which maps the VE sample y = x_vp / alpha at noise sigma to y * s / sqrt(s^2 + sigma^2) at 0. The gap to
// the ODE is the schedules' own discretisation error: DPM-Solver's linspace grid ends with a first-order
// jump from sigma 0.138 to 0 (landing on the posterior mean, ~3% off the flow for s = 0.5), Euler and DDIM
// are first order throughout.
TEST(schedRun, GaussianData50Steps) {
    const double s2 = 0.25;
    // alphas_cumprod for DDIM's timesteps, from the same formula as the grid tests
    const torch::Tensor betas =
        torch::linspace(std::pow(0.00085, 0.5), std::pow(0.012, 0.5), 1000, torch::kFloat).pow(2);
    const torch::Tensor abar = torch::cumprod(1.0 - betas, 0).to(torch::kDouble);
    const double a0 = abar[0].item<double>();
    struct Case {
        const char* name;
        double ode_tol;  // measured gaps: 3.2e-2, 3.8e-4, 5.2e-2, 4.6e-2
    };
    const Case cases[] = {{"dpmpp-2m", 4e-2}, {"dpmpp-2m-karras", 1e-3}, {"euler", 7e-2}, {"ddim", 6e-2}};
    for (const Case& c : cases) {
        const std::string name = c.name;
        auto s = sd15(name, 50);
        const auto ts = s->timesteps();
        const auto sig = s->sigmas();
        const int n = static_cast<int>(ts.size());
        auto sigma_at = [&](int i) {
            if (!sig.empty()) return sig[static_cast<size_t>(i)];
            const double a = abar[static_cast<int64_t>(ts[static_cast<size_t>(i)])].item<double>();
            return std::sqrt((1 - a) / a);
        };
        auto eps_gain = [&](double sigma) {  // eps = gain * (model input)
            const Vp p = vp(sigma);
            return p.sigma_vp / (p.alpha * p.alpha * s2 + p.sigma_vp * p.sigma_vp);
        };
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
        const torch::Tensor x_init = at::randn({4, 16, 16}, gen, at::kFloat) * s->init_noise_sigma();
        torch::Tensor x = x_init;
        double k = 1.0, x0_prev = 0.0;
        for (int i = 0; i < n; ++i) {
            const double sg = sigma_at(i);
            const torch::Tensor in = s->scale_model_input(x, i).to(torch::kDouble);
            x = s->step((in * eps_gain(sg)).to(torch::kFloat), i, x, &gen);
            if (name == "euler") {
                const double eps = eps_gain(sg) * k / std::sqrt(sg * sg + 1);
                k = k + eps * (sig[i + 1] - sg);
            } else if (name == "ddim") {
                const auto t = static_cast<int64_t>(ts[i]);
                const double a = abar[t].item<double>();
                const double a_prev = t - 20 >= 0 ? abar[t - 20].item<double>() : a0;
                const double eps = eps_gain(sg) * k;
                const double x0 = (k - std::sqrt(1 - a) * eps) / std::sqrt(a);
                k = std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev) * eps;
            } else {
                const double x0 = dpm_x0(k, eps_gain(sg) * k, sg);
                k = (i == 0 || i == n - 1) ? dpm_first(k, x0, sg, sig[i + 1])
                                           : dpm_second(k, x0, x0_prev, sig[i - 1], sg, sig[i + 1]);
                x0_prev = x0;
            }
        }
        const torch::Tensor want = x_init.to(torch::kDouble) * k;
        const double rel_formula = ((x.to(torch::kDouble) - want).norm() / want.norm()).item<double>();
        EXPECT_LT(rel_formula, 2e-5) << name << ": 50 steps vs the formulas iterated in double";

        // closed-form flow; DDIM stops at the noise level of t = 0 (alphas_cumprod[0]), the others at sigma 0
        const double sigma0 = sigma_at(0);
        const double sigma_end = sig.empty() ? std::sqrt((1 - a0) / a0) : 0.0;
        const double y_scale = name == "euler" ? 1.0 : std::sqrt(sigma0 * sigma0 + 1);  // Euler's samples are VE
        const double k_ode = y_scale * vp(sigma_end).alpha * std::sqrt(s2 + sigma_end * sigma_end) /
                             std::sqrt(s2 + sigma0 * sigma0);
        const double rel_ode = std::abs(k - k_ode) / k_ode;
        EXPECT_LT(rel_ode, c.ode_tol) << name;
        EXPECT_GT(rel_ode, 0.0) << name;
    }
}
