// Scheduler grids (timesteps, sigmas, init_noise_sigma) and config handling for Stable Diffusion v1.5's
// scheduler config, against values worked out independently in Python (numpy 1.24 + torch 1.13 on the
// project's Debian machine) from the formulas, not from diffusers' code:
//   beta_i  = linspace(sqrt(0.00085), sqrt(0.012), 1000)_i ^ 2 in float32, abar = cumprod(1 - beta),
//   sigma_t = sqrt((1 - abar_t) / abar_t) in float32 (the "VE" noise level of Karras et al. 2022);
//   DPM-Solver++ grid: rint(linspace(0, 999, n + 1)) reversed without its 0, sigmas interpolated there;
//   Karras grid (Karras et al. eq. 5, rho = 7) between sigma_0 and sigma_999, timesteps = rint of the
//     fractional timestep whose interpolated log-sigma matches;
//   Euler grid: linspace(0, 999, n) in float64 rounded to float32, sigmas linearly interpolated in float64;
//   DDIM grid ("leading"): k * (1000 // n) + steps_offset(1);
//   all sigma grids end with 0 and are rounded to float32.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"

namespace ms = multilora::sampling;
using nlohmann::json;

namespace {

const std::vector<double> k_dpm10_t = {
    999, 899, 799, 699, 599, 500, 400, 300, 200, 100};

const std::vector<double> k_dpm10_s = {
    14.614645, 8.30280495, 5.08776522, 3.32108426, 2.27646375, 1.61827958, 1.16439164, 0.832753181,
    0.57166636, 0.343931824, 0};

const std::vector<double> k_karras10_t = {
    999, 916, 815, 687, 523, 327, 146, 41, 7, 0};

const std::vector<double> k_karras10_s = {
    14.614645, 9.10293579, 5.47840071, 3.16861081, 1.74942291, 0.914076388, 0.446920872, 0.201399848,
    0.0819110498, 0.0291675329, 0};

const std::vector<double> k_euler10_t = {
    999, 888, 777, 666, 555, 444, 333, 222, 111, 0};

const std::vector<double> k_euler10_s = {
    14.614645, 7.83988476, 4.60917568, 2.91830826, 1.95016229, 1.34492826, 0.932358325, 0.624977291,
    0.368658513, 0.0291675329, 0};

const std::vector<double> k_ddim10_t = {
    901, 801, 701, 601, 501, 401, 301, 201, 101, 1};

const std::vector<double> k_dpm50_t = {
    999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699, 679, 659, 639, 619,
    599, 579, 559, 539, 519, 500, 480, 460, 440, 420, 400, 380, 360, 340, 320, 300, 280, 260, 240, 220,
    200, 180, 160, 140, 120, 100, 80, 60, 40, 20};

const std::vector<double> k_dpm50_s = {
    14.614645, 12.9663239, 11.5427742, 10.3094044, 9.2374258, 8.30280495, 7.48542356, 6.76838446,
    6.13746262, 5.58064604, 5.08776522, 4.65018511, 4.26055813, 3.91261458, 3.60098982, 3.32108426,
    3.06894422, 2.8411622, 2.63479638, 2.4473002, 2.27646375, 2.12036633, 1.97733319, 1.84590244,
    1.72479486, 1.61827958, 1.51419556, 1.41749513, 1.3274051, 1.24324012, 1.16439164, 1.09031713,
    1.0205313, 0.954598606, 0.89212513, 0.832753181, 0.776154816, 0.722026765, 0.670083702, 0.620052636,
    0.57166636, 0.524653435, 0.478728086, 0.433571011, 0.388802111, 0.343931824, 0.298264027,
    0.250681192, 0.199058905, 0.137990952, 0};

const std::vector<double> k_karras50_t = {
    999, 985, 970, 955, 940, 924, 907, 890, 871, 853, 833, 813, 791, 769, 746, 721, 696, 669, 641, 612,
    581, 549, 516, 481, 446, 409, 372, 335, 299, 263, 228, 195, 165, 137, 112, 90, 71, 55, 42, 32, 23,
    17, 12, 8, 6, 4, 2, 1, 1, 0};

const std::vector<double> k_karras50_s = {
    14.614645, 13.4292393, 12.3272219, 11.3036442, 10.3537989, 9.47320461, 8.65760136, 7.90294361,
    7.20538616, 6.56128311, 5.96717644, 5.41978884, 4.91601849, 4.45292902, 4.02774572, 3.63784647,
    3.28075695, 2.95414305, 2.65580583, 2.38367534, 2.13580418, 1.91036272, 1.7056334, 1.52000558,
    1.35197043, 1.20011592, 1.06312227, 0.939757228, 0.828871667, 0.72939527, 0.64033258, 0.56075877,
    0.48981598, 0.426709503, 0.370704353, 0.321121663, 0.277335584, 0.238770008, 0.204895586,
    0.175226822, 0.149319261, 0.126766846, 0.107199378, 0.0902800933, 0.0757033303, 0.0631923154,
    0.0524971075, 0.0433925465, 0.0356763974, 0.0291675329, 0};

const std::vector<double> k_euler50_t = {
    999, 978.612244, 958.224487, 937.836731, 917.448975, 897.061218, 876.673462, 856.285706, 835.897949,
    815.510193, 795.122437, 774.73468, 754.346924, 733.959167, 713.571411, 693.183655, 672.795898,
    652.408142, 632.020386, 611.632629, 591.244873, 570.857117, 550.46936, 530.081604, 509.693878,
    489.306122, 468.918365, 448.530609, 428.142853, 407.755096, 387.36734, 366.979584, 346.591827,
    326.204071, 305.816315, 285.428558, 265.040802, 244.653061, 224.265305, 203.877548, 183.489792,
    163.102036, 142.714279, 122.32653, 101.938774, 81.5510178, 61.1632652, 40.7755089, 20.3877544, 0};

const std::vector<double> k_euler50_s = {
    14.614645, 12.9367762, 11.4916487, 10.2429132, 9.16035461, 8.21873856, 7.39717579, 6.67801762,
    6.04652834, 5.49031973, 4.99885893, 4.56330729, 4.17610884, 3.83084393, 3.52206469, 3.24506021,
    2.99582982, 2.77091789, 2.56734061, 2.3825438, 2.2142868, 2.06064343, 1.91993654, 1.79069412,
    1.67164421, 1.56165934, 1.45975578, 1.36507058, 1.27683365, 1.19437146, 1.11708152, 1.04442632,
    0.975929856, 0.91115731, 0.849719882, 0.791261494, 0.735452473, 0.681988478, 0.630575895,
    0.580931664, 0.532770336, 0.485792398, 0.439667493, 0.394004464, 0.34830308, 0.301855206,
    0.253530443, 0.201179653, 0.13933751, 0.0291675329, 0};

const std::vector<double> k_ddim50_t = {
    981, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681, 661, 641, 621, 601,
    581, 561, 541, 521, 501, 481, 461, 441, 421, 401, 381, 361, 341, 321, 301, 281, 261, 241, 221, 201,
    181, 161, 141, 121, 101, 81, 61, 41, 21, 1};

std::unique_ptr<ms::Scheduler> sd15(const std::string& name, int steps, const json& extra = json::object()) {
    json cfg = ms::sd15_scheduler_config();
    for (auto it = extra.begin(); it != extra.end(); ++it) cfg[it.key()] = it.value();
    auto s = ms::make_scheduler(name, cfg);
    s->set_timesteps(steps);
    return s;
}

// Timesteps are compared exactly (integers, or float32 values printed with 9 digits); sigmas to about two
// float32 ulps, which leaves room for a libtorch whose float32 linspace/cumprod rounds differently.
void expect_grid(const std::vector<double>& got, const std::vector<double>& want, double rel, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i) {
        if (rel == 0) {
            EXPECT_EQ(static_cast<float>(got[i]), static_cast<float>(want[i])) << what << " [" << i << "]";
        } else {
            EXPECT_NEAR(got[i], want[i], rel * std::abs(want[i])) << what << " [" << i << "]";
        }
    }
}

constexpr double kSigmaRel = 2.5e-7;

}  // namespace

TEST(schedGrids, DpmSolverLinspace) {
    auto s10 = sd15("dpmpp-2m", 10);
    expect_grid(s10->timesteps(), k_dpm10_t, 0, "timesteps");
    expect_grid(s10->sigmas(), k_dpm10_s, kSigmaRel, "sigmas");
    EXPECT_EQ(s10->init_noise_sigma(), 1.0);
    auto s50 = sd15("dpmpp-2m", 50);
    expect_grid(s50->timesteps(), k_dpm50_t, 0, "timesteps");
    expect_grid(s50->sigmas(), k_dpm50_s, kSigmaRel, "sigmas");
    EXPECT_EQ(s50->sigmas().back(), 0.0);  // final_sigmas_type "zero"
    EXPECT_EQ(s50->diffusers_class(), "DPMSolverMultistepScheduler");
}

TEST(schedGrids, DpmSolverKarras) {
    auto s10 = sd15("dpmpp-2m-karras", 10);
    expect_grid(s10->timesteps(), k_karras10_t, 0, "timesteps");
    expect_grid(s10->sigmas(), k_karras10_s, kSigmaRel, "sigmas");
    auto s50 = sd15("dpmpp-2m-karras", 50);
    expect_grid(s50->timesteps(), k_karras50_t, 0, "timesteps");  // note the repeated timestep 1
    expect_grid(s50->sigmas(), k_karras50_s, kSigmaRel, "sigmas");
}

TEST(schedGrids, EulerAndAncestral) {
    for (const char* name : {"euler", "euler-a"}) {
        auto s10 = sd15(name, 10);
        expect_grid(s10->timesteps(), k_euler10_t, 0, "timesteps");
        expect_grid(s10->sigmas(), k_euler10_s, kSigmaRel, "sigmas");
        auto s50 = sd15(name, 50);
        expect_grid(s50->timesteps(), k_euler50_t, 0, "timesteps");
        expect_grid(s50->sigmas(), k_euler50_s, kSigmaRel, "sigmas");
        // linspace spacing: the initial noise is scaled by the largest sigma
        EXPECT_NEAR(s50->init_noise_sigma(), 14.614645, 14.614645 * kSigmaRel) << name;
    }
    // "leading" spacing scales by sqrt(sigma_max^2 + 1) instead
    auto lead = sd15("euler", 10, {{"timestep_spacing", "leading"}});
    expect_grid(lead->timesteps(), {901, 801, 701, 601, 501, 401, 301, 201, 101, 1}, 0, "leading timesteps");
    EXPECT_NEAR(lead->init_noise_sigma(), std::sqrt(lead->sigmas()[0] * lead->sigmas()[0] + 1), 1e-5);
    EXPECT_LT(lead->sigmas()[0], 14.0);  // sigma at t = 901, not 999
}

TEST(schedGrids, Ddim) {
    expect_grid(sd15("ddim", 10)->timesteps(), k_ddim10_t, 0, "timesteps");
    expect_grid(sd15("ddim", 50)->timesteps(), k_ddim50_t, 0, "timesteps");
    auto s = sd15("ddim", 50);
    EXPECT_TRUE(s->sigmas().empty());
    EXPECT_EQ(s->init_noise_sigma(), 1.0);
    // DDIM's own linspace spacing rounds the float grid half-to-even: 999 * 25 / 50 = 499.5 -> 500
    auto lin = sd15("ddim", 3, {{"timestep_spacing", "linspace"}});
    expect_grid(lin->timesteps(), {999, 500, 0}, 0, "linspace timesteps");
    auto trail = sd15("ddim", 3, {{"timestep_spacing", "trailing"}});
    expect_grid(trail->timesteps(), {999, 666, 332}, 0, "trailing timesteps");
}

TEST(schedGrids, DpmFinalSigmaFollowsConfig) {
    // absent key -> "zero" (diffusers >= 0.26 default); "sigma_min" appends the training sigma at t = 0
    auto zero = sd15("dpmpp-2m", 20);
    EXPECT_EQ(zero->sigmas().back(), 0.0);
    auto smin = sd15("dpmpp-2m", 20, {{"final_sigmas_type", "sigma_min"}});
    EXPECT_NEAR(smin->sigmas().back(), 0.0291675329, 0.0291675329 * kSigmaRel);
    auto smin_k = sd15("dpmpp-2m-karras", 20, {{"final_sigmas_type", "sigma_min"}});
    EXPECT_NEAR(smin_k->sigmas().back(), 0.0291675329, 0.0291675329 * kSigmaRel);
    EXPECT_THROW(sd15("dpmpp-2m", 20, {{"final_sigmas_type", "one"}}), multilora::UsageError);
}

TEST(schedConfig, FromConfigSemantics) {
    // A key present in the JSON overrides the class default ...
    auto lead = sd15("dpmpp-2m", 10, {{"timestep_spacing", "leading"}});
    expect_grid(lead->timesteps(), {901, 811, 721, 631, 541, 451, 361, 271, 181, 91}, 0, "leading");
    // ... unless the config says it only carried the saving class's default
    auto dflt = sd15("dpmpp-2m", 10, {{"timestep_spacing", "leading"}, {"_use_default_values", {"timestep_spacing"}}});
    expect_grid(dflt->timesteps(), k_dpm10_t, 0, "linspace");
    // keys the class does not take are ignored; null means "not given"
    auto other = sd15("euler", 10, {{"skip_prk_steps", true}, {"solver_order", 3}, {"prediction_type", nullptr}});
    expect_grid(other->timesteps(), k_euler10_t, 0, "euler");
    // the name fixes what makes the sampler: dpmpp-2m stays second-order data-prediction without Karras
    auto fixed = sd15("dpmpp-2m", 10,
                      {{"use_karras_sigmas", true}, {"solver_order", 3}, {"algorithm_type", "sde-dpmsolver++"}});
    expect_grid(fixed->timesteps(), k_dpm10_t, 0, "fixed");
    const json c = fixed->config();
    EXPECT_EQ(c.at("_class_name"), "DPMSolverMultistepScheduler");
    EXPECT_EQ(c.at("solver_order"), 2);
    EXPECT_EQ(c.at("algorithm_type"), "dpmsolver++");
    EXPECT_EQ(c.at("use_karras_sigmas"), false);
    EXPECT_EQ(c.at("timestep_spacing"), "linspace");
    EXPECT_EQ(c.at("steps_offset"), 1);
    EXPECT_EQ(c.at("beta_schedule"), "scaled_linear");
    EXPECT_EQ(sd15("ddim", 10)->config().at("set_alpha_to_one"), false);
    EXPECT_EQ(sd15("ddim", 10)->config().at("clip_sample"), false);
    EXPECT_EQ(sd15("ddim", 10)->config().at("timestep_spacing"), "leading");
}

TEST(schedConfig, Errors) {
    try {
        ms::make_scheduler("heun", ms::sd15_scheduler_config());
        FAIL() << "no exception";
    } catch (const multilora::UsageError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("heun"), std::string::npos);
        for (const auto& n : ms::scheduler_names()) EXPECT_NE(msg.find(n), std::string::npos) << msg;
    }
    EXPECT_EQ(ms::scheduler_names().size(), 5u);
    EXPECT_THROW(ms::make_scheduler("euler", json::array()), multilora::UsageError);
    EXPECT_THROW(sd15("euler", 10, {{"steps_offset", "one"}}), multilora::UsageError);
    EXPECT_THROW(sd15("ddim", 10, {{"thresholding", true}}), multilora::UsageError);
    EXPECT_THROW(sd15("euler", 10, {{"beta_schedule", "cubic"}}), multilora::UsageError);
    EXPECT_THROW(sd15("euler-a", 10, {{"prediction_type", "sample"}}), multilora::UsageError);
    EXPECT_THROW(sd15("dpmpp-2m", 0), multilora::UsageError);
    EXPECT_THROW(sd15("ddim", 1001), multilora::UsageError);
    auto s = ms::make_scheduler("dpmpp-2m", ms::sd15_scheduler_config());
    EXPECT_THROW(s->step(torch::zeros({1}), 0, torch::zeros({1}), nullptr), multilora::RuntimeError);
}

TEST(schedNumpy, Helpers) {
    namespace d = multilora::sampling::detail;
    // np.linspace(0, 999, 51)[25] == 499.5 exactly; rounding is half-to-even like ndarray.round()
    EXPECT_EQ(d::np_linspace(0, 999, 51)[25], 499.5);
    EXPECT_EQ(d::np_linspace(0, 999, 51).back(), 999.0);
    EXPECT_EQ(d::np_linspace(3, 7, 1), std::vector<double>{3.0});
    EXPECT_EQ(d::np_round(499.5), 500.0);
    EXPECT_EQ(d::np_round(0.5), 0.0);
    EXPECT_EQ(d::np_round(2.5), 2.0);
    EXPECT_EQ(d::np_round(-1.5), -2.0);
    // np.arange(1000, 0, -1000/3) -> [1000, 666.666..., 333.333...]
    const auto a = d::np_arange(1000, 0, -1000.0 / 3);
    ASSERT_EQ(a.size(), 3u);
    EXPECT_DOUBLE_EQ(a[1], 1000 - 1000.0 / 3);
    // np.interp([0.25, 1.5, 2.0, 3.0, 7, -3], arange(4), [1, 3, 2, 5]) -> [1.5, 2.5, 2, 5, 5, 1]
    const auto y = d::np_interp_unit_grid({0.25, 1.5, 2.0, 3.0, 7, -3}, {1.0, 3.0, 2.0, 5.0});
    EXPECT_EQ(y, (std::vector<double>{1.5, 2.5, 2.0, 5.0, 5.0, 1.0}));
}
