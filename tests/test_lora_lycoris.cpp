// LyCORIS forms (LoHa, LoKr, IA3, full diffs, Tucker LoCon) and DoRA: ΔW against the LyCORIS library's own
// numbers, the layer's fused and per-row paths against the formula, and every composition method treating a
// LyCORIS file exactly as the full diff of its ΔW.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "compose_test_support.h"
#include "multilora/io/safetensors.h"
#include "multilora/lora/layer_adapters.h"
#include "multilora/lora/lycoris.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using namespace multilora::compose_test;

namespace {

struct Factor {
    const char* name;
    std::vector<int64_t> shape;
};

// One case: the base weight, then each factor, drawn in this order from randn with a generator seeded `seed`
// (libtorch's CPU randn equals torch.randn(generator=torch.Generator().manual_seed(seed)) in Python).
struct FormCase {
    const char* name;
    int seed;
    std::vector<int64_t> weight;
    std::vector<Factor> factors;
    double alpha;  // 0: no alpha key
    bool on_input = false;
    // ΔW's sum, sum of |·|, sum of squares, first three and last values, from the LyCORIS library.
    double sum, abs_sum, sq_sum;
    std::vector<double> values;
};

// Origin: KohakuBlueleaf/LyCORIS at f49d30d, run with Debian's python3-torch 1.13 (safetensors and einops
// stubbed) on the same seeded factors:
//   LoHa:  LohaModule.make_module_from_state_dict(...).get_weight(shape)  (alpha/rank applied once, as its
//          forward does; its get_diff_weight applies it twice, which A1111 and ComfyUI do not)
//   LoKr:  LokrModule.make_module_from_state_dict(...).get_weight(shape); lycoris.functional.lokr.diff_weight
//          where the module cannot load the factors; the Tucker case from functional make_kron and
//          rebuild_tucker with the rank of lokr_w2_b, as A1111's network_lokr reads it
//   DoRA:  module.apply_weight_decompose(W + ΔW, 1) - W (LoCon and LoHa modules; wd_on_out from the shape)
//   LoCon Tucker: LoConModule.make_module_from_state_dict(...).make_weight() * scale
//   IA3:   IA3Module(train_on_input=...).get_diff_weight()
const std::vector<FormCase>& form_cases() {
    static const std::vector<int64_t> L{6, 10}, C{6, 4, 3, 3};
    static const std::vector<FormCase> cases{
        {"loha_linear", 1001, L, {{"hada_w1_a", {6, 3}}, {"hada_w1_b", {3, 10}}, {"hada_w2_a", {6, 3}}, {"hada_w2_b", {3, 10}}}, 1.5, false,
         -10.3412418, 44.9812317, 63.4683838, {-0.0732095763, -1.64286292, 0.22236602, -0.1185579}},
        {"loha_conv", 1002, C, {{"hada_w1_a", {6, 2}}, {"hada_w1_b", {2, 36}}, {"hada_w2_a", {6, 2}}, {"hada_w2_b", {2, 36}}}, 4.0, false,
         4.1615715, 333.031891, 1979.04517, {0.0211084206, 0.0687702447, 0.165411517, 0.151574969}},
        {"loha_conv_tucker", 1003, C,
         {{"hada_t1", {2, 2, 3, 3}}, {"hada_w1_a", {2, 6}}, {"hada_w1_b", {2, 4}}, {"hada_t2", {2, 2, 3, 3}}, {"hada_w2_a", {2, 6}}, {"hada_w2_b", {2, 4}}},
         1.0, false, -2.0470798, 168.449539, 528.371521, {-0.754754603, -0.692059934, -0.0237264708, 0.576570034}},
        {"lokr_linear_full", 1004, L, {{"lokr_w1", {2, 2}}, {"lokr_w2", {3, 5}}}, 7.0, false,
         5.0835638, 38.9705658, 48.8655548, {0.140881851, 1.44042587, 0.757065892, 2.57577109}},
        {"lokr_linear_w2_lowrank", 1005, L, {{"lokr_w1", {2, 2}}, {"lokr_w2_a", {3, 2}}, {"lokr_w2_b", {2, 5}}}, 1.0, false,
         0.246785283, 38.3623886, 49.1750221, {0.443081468, -1.12910438, -0.23507461, 0.0617858991}},
        {"lokr_linear_both_lowrank", 1006, L, {{"lokr_w1_a", {2, 1}}, {"lokr_w1_b", {1, 2}}, {"lokr_w2_a", {3, 1}}, {"lokr_w2_b", {1, 5}}}, 3.0, false,
         12.2439032, 78.8980713, 179.793106, {-0.726786077, 0.445629835, 0.883568525, 2.01496983}},
        {"lokr_conv_w2_lowrank", 1007, C, {{"lokr_w1", {2, 2}}, {"lokr_w2_a", {3, 2}}, {"lokr_w2_b", {2, 2, 3, 3}}}, 1.0, false,
         5.33071995, 57.3552475, 65.4529953, {-0.0798166767, -0.0147003587, 0.0114210704, -0.324563265}},
        {"lokr_conv_tucker", 1008, C, {{"lokr_w1", {2, 2}}, {"lokr_t2", {2, 2, 3, 3}}, {"lokr_w2_a", {2, 3}}, {"lokr_w2_b", {2, 2}}}, 2.0, false,
         1.04097795, 202.048141, 761.086914, {-2.26056957, -0.675156653, 0.833615601, 0.00416059839}},
        {"lora_dora_out", 1009, L, {{"lora_down", {3, 10}}, {"lora_up", {6, 3}}, {"dora_scale", {6, 1}}}, 1.5, false,
         -0.0224288702, 40.6020584, 51.5635338, {0.949527562, 0.525868356, 0.32448259, 0.554561555}},
        {"lora_dora_in", 1010, L, {{"lora_down", {3, 10}}, {"lora_up", {6, 3}}, {"dora_scale", {1, 10}}}, 1.5, false,
         10.4509306, 50.3017807, 71.4639511, {1.19079745, 1.64932632, -3.05283904, 0.538110793}},
        {"loha_dora_conv", 1011, C,
         {{"hada_w1_a", {6, 2}}, {"hada_w1_b", {2, 36}}, {"hada_w2_a", {6, 2}}, {"hada_w2_b", {2, 36}}, {"dora_scale", {6, 1, 1, 1}}}, 2.0, false,
         -34.8290253, 193.105103, 269.305481, {-1.391325, -0.217696011, 1.02479219, 0.964867771}},
        {"locon_tucker", 1012, C, {{"lora_down", {2, 4, 1, 1}}, {"lora_mid", {2, 2, 3, 3}}, {"lora_up", {6, 2, 1, 1}}}, 1.0, false,
         -8.90746689, 146.666367, 212.54361, {0.908288479, -0.244916797, -0.854841411, -0.459895194}},
        {"ia3_linear_out", 1013, L, {{"weight", {6}}}, 0, false, 1.13181758, 38.62146, 59.4333878,
         {-0.740176201, 0.523419082, -0.0702380911, 0.00427104533}},
        {"ia3_linear_in", 1014, L, {{"weight", {10}}}, 0, true, 3.15798736, 34.6016045, 37.5138283,
         {0.0842206851, -0.983485162, 0.626754522, -0.290352374}},
        {"ia3_conv_out", 1015, C, {{"weight", {1, 6, 1, 1}}}, 0, false, 23.0718231, 194.745819, 331.042267,
         {0.744688153, 0.828305423, 0.300823838, 2.3198607}},
    };
    return cases;
}

lora::AdapterForm form_from_names(const std::vector<Factor>& factors) {
    for (const auto& f : factors) {
        const std::string n = f.name;
        if (n.rfind("hada_", 0) == 0) return lora::AdapterForm::LoHa;
        if (n.rfind("lokr_", 0) == 0) return lora::AdapterForm::LoKr;
        if (n == "weight") return lora::AdapterForm::IA3;
        if (n == "diff") return lora::AdapterForm::Full;
    }
    return lora::AdapterForm::Lora;
}

void set_factor(lora::LoraGroup& g, const std::string& name, const at::Tensor& t) {
    if (name == "lora_down") g.down = t;
    else if (name == "lora_up") g.up = t;
    else if (name == "dora_scale") g.dora_scale = t;
    else g.factors[name] = t;
}

}  // namespace

TEST(LycorisForms, DeltaMatchesTheLycorisLibrary) {
    for (const FormCase& c : form_cases()) {
        SCOPED_TRACE(c.name);
        auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(c.seed));
        at::Tensor w = at::randn(c.weight, gen);
        lora::LoraGroup g;
        g.form = form_from_names(c.factors);
        g.on_input = c.on_input;
        if (c.alpha != 0) g.alpha = c.alpha;
        for (const auto& f : c.factors) set_factor(g, f.name, at::randn(f.shape, gen));
        EXPECT_EQ(lora::factor_problem(g), "");
        EXPECT_EQ(lora::fit_problem(g, c.weight), "");
        at::Tensor d = lora::form_delta(g, w);
        ASSERT_EQ(d.sizes().vec(), c.weight);
        const double tol = 2e-6 * c.abs_sum;
        EXPECT_NEAR(d.sum().item<double>(), c.sum, tol);
        EXPECT_NEAR(d.abs().sum().item<double>(), c.abs_sum, tol);
        EXPECT_NEAR((d * d).sum().item<double>(), c.sq_sum, 2e-6 * c.sq_sum);
        at::Tensor flat = d.flatten();
        for (int i = 0; i < 3; ++i) EXPECT_NEAR(flat[i].item<double>(), c.values[static_cast<size_t>(i)], 2e-6);
        EXPECT_NEAR(flat[-1].item<double>(), c.values[3], 2e-6);
    }
}

TEST(LycorisForms, ScaleRules) {
    lora::LoraGroup loha;
    loha.form = lora::AdapterForm::LoHa;
    loha.factors["hada_w1_b"] = at::zeros({4, 8});
    EXPECT_DOUBLE_EQ(loha.scale(), 1.0);  // no alpha
    loha.alpha = 0.0;
    EXPECT_DOUBLE_EQ(loha.scale(), 1.0);  // alpha 0 reads as alpha = rank (LyCORIS)
    loha.alpha = 2.0;
    EXPECT_DOUBLE_EQ(loha.scale(), 0.5);
    lora::LoraGroup lokr;
    lokr.form = lora::AdapterForm::LoKr;
    lokr.alpha = 8.0;
    lokr.factors["lokr_w1"] = at::zeros({2, 2});
    lokr.factors["lokr_w2"] = at::zeros({4, 4});
    EXPECT_EQ(lokr.rank(), 0);
    EXPECT_DOUBLE_EQ(lokr.scale(), 1.0);  // both factors full: no scale
    lokr.factors.erase("lokr_w2");
    lokr.factors["lokr_w2_a"] = at::zeros({4, 2});
    lokr.factors["lokr_w2_b"] = at::zeros({2, 4});
    EXPECT_EQ(lokr.rank(), 2);
    EXPECT_DOUBLE_EQ(lokr.scale(), 4.0);
    EXPECT_EQ(lora::form_name(lokr), "lokr");
    lokr.dora_scale = at::ones({8, 1});
    EXPECT_EQ(lora::form_name(lokr), "lokr+dora");
}

TEST(LycorisForms, ShapeProblemsAreNamed) {
    lora::LoraGroup g;
    g.form = lora::AdapterForm::LoKr;
    g.factors["lokr_w1"] = at::zeros({2, 2});
    g.factors["lokr_w2"] = at::zeros({16, 8});
    EXPECT_EQ(lora::delta_shape(g), (std::vector<int64_t>{32, 16}));
    EXPECT_NE(lora::fit_problem(g, {32, 32}).find("Kronecker product [32, 16] does not fit"), std::string::npos);
    EXPECT_EQ(lora::fit_problem(g, {32, 16}), "");
    EXPECT_EQ(lora::fit_problem(g, {32, 16, 1, 1}), "");  // a 1x1 convolution
    EXPECT_NE(lora::fit_problem(g, {32, 16, 3, 3}), "");  // a 2-D product cannot fill a 3x3 kernel
    g.dora_scale = at::ones({7, 1});
    EXPECT_NE(lora::fit_problem(g, {32, 16}).find("DoRA magnitude [7, 1]"), std::string::npos);
    lora::LoraGroup h;
    h.form = lora::AdapterForm::LoHa;
    h.factors = {{"hada_w1_a", at::zeros({6, 3})}, {"hada_w1_b", at::zeros({2, 10})}, {"hada_w2_a", at::zeros({6, 3})},
                 {"hada_w2_b", at::zeros({3, 10})}};
    EXPECT_NE(lora::factor_problem(h).find("ranks differ within a pair"), std::string::npos);
    // Damaged factors are named before any size is read: a 1-D factor, an empty one, a 0-D magnitude.
    lora::LoraGroup k;
    k.form = lora::AdapterForm::LoKr;
    k.factors = {{"lokr_w1_a", at::zeros({4})}, {"lokr_w1_b", at::zeros({1, 2})}, {"lokr_w2", at::zeros({4, 4})}};
    EXPECT_NE(lora::factor_problem(k).find("lokr_w1_a has shape [4] (2-D expected)"), std::string::npos);
    h.factors["hada_w1_b"] = at::zeros({0, 10});
    EXPECT_NE(lora::factor_problem(h).find("hada_w1_b is empty"), std::string::npos);
    lora::LoraGroup d;
    d.down = at::zeros({2, 4});
    d.up = at::zeros({4, 2});
    d.dora_scale = at::zeros({});
    EXPECT_NE(lora::factor_problem(d).find("empty or 0-D"), std::string::npos);
}

// A full-rank delta (with a bias change) through every path of the layer: fused, per-row fused, per-row
// applied to the input, against y = x·(W + s·ΔW)ᵀ + b + s·Δb.
TEST(LayerAdapters, FullRankDeltasFollowTheFormulaOnEveryPath) {
    torch::manual_seed(5);
    for (bool conv : {false, true}) {
        SCOPED_TRACE(conv ? "conv" : "linear");
        at::Tensor w = conv ? torch::randn({6, 4, 3, 3}) : torch::randn({6, 10});
        at::Tensor bias = torch::randn({6}), dw = torch::randn(w.sizes()), db = torch::randn({6});
        at::Tensor a = torch::randn({2, conv ? 36 : 10}), b = torch::randn({6, 2});
        lora::LayerAdapters ad(w, conv, 1, 1);
        lora::LayerDelta full;
        full.slot = 0;
        full.scale = 0.7;
        full.dense = [dw] { return dw; };
        full.bias = db;
        ad.add_delta(full);
        ad.add_delta({1, conv ? a.view({2, 4, 3, 3}) : a, b, 0.3});
        at::Tensor x = conv ? torch::randn({3, 4, 5, 5}) : torch::randn({3, 7, 10});
        auto expect = [&](double s0, double s1) {
            at::Tensor wd = w + s0 * dw + s1 * b.mm(a).view(w.sizes());
            at::Tensor bd = bias + s0 * db;
            return conv ? at::conv2d(x, wd, bd, 1, 1) : at::linear(x, wd, bd);
        };
        ad.set_fused({0, 1});
        EXPECT_TRUE(torch::allclose(ad.forward(x, bias), expect(0.7, 0.3), 1e-4, 1e-4));
        for (auto policy : {lora::RowPolicy::LowRank, lora::RowPolicy::Fused, lora::RowPolicy::Auto}) {
            lora::set_row_policy(policy);
            ad.set_row_slots({{0}, {0, 1}, {}});
            at::Tensor y = ad.forward(x, bias);
            EXPECT_TRUE(torch::allclose(y[0], expect(0.7, 0)[0], 1e-4, 1e-4));
            EXPECT_TRUE(torch::allclose(y[1], expect(0.7, 0.3)[1], 1e-4, 1e-4));
            EXPECT_TRUE(torch::allclose(y[2], expect(0, 0)[2], 1e-4, 1e-4));
        }
        lora::set_row_policy(lora::RowPolicy::Auto);
        ad.set_gain(0, 2.0);
        ad.set_fused({0});
        EXPECT_TRUE(torch::allclose(ad.forward(x, bias), expect(1.4, 0), 1e-4, 1e-4));
        EXPECT_TRUE(torch::allclose(ad.delta_weight({0}), 1.4 * dw, 1e-6, 1e-6));
    }
}

namespace {

std::string flat(std::string s) {
    std::replace(s.begin(), s.end(), '.', '_');
    return s;
}

// The kohya stem of a group ("lora_unet_..." / "lora_te_..."), whatever naming its file used.
std::string kohya_stem(const lora::LoraGroup& g) {
    if (g.flattened) return g.stem;
    return (g.part == lora::LoraPart::Unet ? "lora_unet_" : "lora_te_") + flat(g.target);
}

// A LyCORIS file of the given form on the modules tiny LoRA 0 adapts, with seeded factors.
std::string write_form_file(const std::string& form, const fs::path& dir) {
    lora::LoraFile src = lora::read_lora_file(world().paths.loras.at(0));
    torch::manual_seed(17);
    std::vector<std::pair<std::string, at::Tensor>> t;
    for (const auto& g : src.groups) {
        const std::string k = kohya_stem(g);
        const int64_t out = g.up.size(0), r = g.down.size(0), in_flat = g.down.numel() / r;
        std::vector<int64_t> kernel(g.down.sizes().begin() + 2, g.down.sizes().end());
        auto rn = [](std::vector<int64_t> s, double sd) { return torch::randn(s) * sd; };
        if (form == "loha") {
            t.push_back({k + ".hada_w1_a", rn({out, 2}, 0.3)});
            t.push_back({k + ".hada_w1_b", rn({2, in_flat}, 0.3)});
            t.push_back({k + ".hada_w2_a", rn({out, 2}, 0.3)});
            t.push_back({k + ".hada_w2_b", rn({2, in_flat}, 0.3)});
            t.push_back({k + ".alpha", torch::tensor(1.0)});
        } else if (form == "lokr") {
            std::vector<int64_t> w2b{2, g.down.size(1) / 2};
            w2b.insert(w2b.end(), kernel.begin(), kernel.end());
            t.push_back({k + ".lokr_w1", rn({2, 2}, 0.3)});
            t.push_back({k + ".lokr_w2_a", rn({out / 2, 2}, 0.3)});
            t.push_back({k + ".lokr_w2_b", rn(w2b, 0.3)});
            t.push_back({k + ".alpha", torch::tensor(4.0)});
        } else if (form == "dora") {
            t.push_back({k + ".lora_down.weight", g.down});
            t.push_back({k + ".lora_up.weight", g.up});
            std::vector<int64_t> m{out, 1};
            for (size_t i = 0; i < kernel.size(); ++i) m.push_back(1);
            t.push_back({k + ".dora_scale", 1.0 + rn(m, 0.1).abs()});
        } else if (form == "ia3") {
            t.push_back({k + ".weight", rn({out}, 0.2)});
            t.push_back({k + ".on_input", torch::tensor(0)});
        }
    }
    const std::string path = (dir / (form + ".safetensors")).string();
    io::save_safetensors(path, t, {});
    return path;
}

// The full diff of every ΔW `set` attached for slot 0 (weight 1, scale 1), as a LyCORIS "diff" file.
std::string write_equivalent_diff(const lora::AdapterSet& set, const fs::path& path) {
    std::vector<std::pair<std::string, at::Tensor>> t;
    for (const auto& l : set.unet_layers()) t.push_back({"lora_unet_" + flat(l.path) + ".diff", l.adapters->delta_weight({0})});
    for (const auto& l : set.text_layers()) t.push_back({"lora_te_" + flat(l.path) + ".diff", l.adapters->delta_weight({0})});
    io::save_safetensors(path.string(), t, {});
    return path.string();
}

}  // namespace

// Every composition method treats a LoHa, LoKr, DoRA or IA3 file exactly as the full diff of its ΔW, beside a
// plain LoRA (K-LoRA sizes its top-K by rank, which a diff has not: it is only run).
TEST(LycorisForms, EveryMethodTreatsAFormAsItsFullDiff) {
    auto model = load_tiny();
    const fs::path dir = test::make_temp_dir("lycoris");
    const at::Tensor none = run(model, nullptr, "none");
    for (const std::string form : {"loha", "lokr", "dora", "ia3"}) {
        SCOPED_TRACE(form);
        const std::string path = write_form_file(form, dir);
        lora::LoraFile file = lora::read_lora_file(path);
        ASSERT_FALSE(file.groups.empty());
        const std::string expected_form = form == "dora" ? "lora+dora" : form;
        EXPECT_EQ(lora::form_name(file.groups.front()), expected_form);
        std::string diff;
        {
            auto one = attach(model, {{path, 1.0}}, 1.0);
            EXPECT_EQ(one->summaries().front().forms.at(expected_form), static_cast<int>(file.groups.size()));
            diff = write_equivalent_diff(*one, dir / (form + "-diff.safetensors"));
            at::Tensor merged = run(model, one.get(), "merge");
            EXPECT_GT(rel_err(merged, none), 1e-3);
        }
        for (const std::string& method : compose::registry().names()) {
            if (method == "none") continue;
            SCOPED_TRACE(method);
            const std::vector<std::string> args =
                compose::default_args(method).has("tau") ? std::vector<std::string>{"tau=2"} : std::vector<std::string>{};
            auto once = [&](const std::string& first) {
                return run_method(model, {{first, 0.8}, {world().paths.loras.at(1), 0.6}}, method, args, small_request(),
                                  {{"fox"}, {"snow"}}, {"character", "background"})
                    .latents;
            };
            at::Tensor a = once(path);
            EXPECT_TRUE(at::isfinite(a).all().item<bool>());
            if (method != "klora") EXPECT_LT(rel_err(a, once(diff)), 1e-5);
        }
    }
}
