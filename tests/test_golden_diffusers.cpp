// Golden forward outputs of the UNet, the VAE decoder and the CLIP text encoder on the seeded tiny model
// (bench::make_tiny_model, seed 1234), against numbers computed by the reference implementations.
//
// How the numbers were made (the harness is not part of this repository):
//  - diffusers tag v0.26.3 (commit 66f94eaa0c68a893b2aba1ec9f79ee7890786fba): UNet2DConditionModel and
//    AutoencoderKL built with from_config(config.json) from the tiny model's diffusers folder (0.26.3 ignores
//    the VAE's mid_block_add_attention key; its value here, true, is 0.26.3's fixed behaviour).
//  - transformers (CLIPTextModel(CLIPTextConfig(**config.json))) at commit
//    e770f0316d2a9b787c9d1440f204fcb65e176682 of main (2024-02-20, version string 4.38.0.dev0): the point
//    where the v4.38 release branch was cut (the next commit on main, 1a77f07f6, is "v4.39.dev.0").
//  - Debian bookworm's python3-torch 1.13.1+dfsg-4 (torch.__version__ "1.13.0a0"; the same libtorch the C++
//    build links), Python 3.11, torch.set_num_threads(1), torch.no_grad(), default CPU capability (AVX2).
//  - Weights: the tiny model's diffusers folder as written by `multilora make-tiny` (seed 1234), read from
//    its .safetensors files and loaded with load_state_dict(strict=True).
//  - Inputs from torch.Generator("cpu").manual_seed(S), which draws the same numbers as
//    at::make_generator<at::CPUGeneratorImpl>(S) here:
//      UNet: sample = randn([2, 4, H, W]) seed 1, encoder_hidden_states = randn([2, 77, 32]) seed 2,
//            timestep a 0-dim tensor (int64 981, int64 1, float32 500.5) -> unet(...).sample;
//      VAE:  latents = randn([1, 4, 8, 8]) seed 3 -> vae.decode(latents).sample (no scaling factor applied;
//            AutoencoderKL::decode takes latents already divided by it);
//      CLIP: the 77 ids of "a photo of a cat" (BOS, 5 tokens, EOS padded with EOS) -> last_hidden_state.
//  - Debian's torch 1.13 baddbmm(beta=0), which diffusers' attention uses, now and then returns NaN on the
//    8x8 case's 4-token mid-block self-attention (the reason src/models/layers.cpp uses bmm); the harness kept
//    only finite outputs that a second run reproduced bit for bit (they agree with a bmm-based run to 1.6e-6).
//  - Each case keeps 32 values at flat indices (k * 2654435761) mod numel, k = 0..31, and the output's sum and
//    sum of absolute values (in double).
//
// Tolerance: multilora's products go through oneDNN, torch's through BLAS, and the elementwise kernels may
// run at another CPU capability (runtime_setup.cpp asks for AVX-512), so float32 rounding differs. Measured
// on an AVX2 CPU without AVX-512: over every element at most 4.3e-6 relative to max(1, |ref|) (2.0e-6 at the
// kept indices; the text encoder's output was bit-identical), checksums within 5e-8 of the abs sum; with
// ATEN_CPU_CAPABILITY=default, whose seeded draws (weights and inputs) also round differently by about an ulp,
// as AVX-512's do: 5.4e-6 (3.1e-6 at the kept indices) and 2.3e-7. The bounds below are 10-25x and 9-65x
// above those, and far below what a real change of the forward does.
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "multilora/pipeline/model_loader.h"
#include "multilora/bench/tiny_model.h"
#include "test_support.h"

using namespace multilora;

namespace {

struct GoldenCase {
    const char* name;
    std::vector<int64_t> shape;
    std::vector<int64_t> index;  // flat indices into the contiguous output
    std::vector<double> value;   // the reference's values there
    double sum;                  // of all elements
    double abs_sum;              // of all absolute values
};

// Unet8x8T981: sample randn[2,4,8,8] seed 1, context randn[2,77,32] seed 2, timestep 981 (torch.int64).
const GoldenCase kUnet8x8T981{
    "Unet8x8T981",
    {2, 4, 8, 8},
    {0, 433, 354, 275, 196, 117, 38, 471, 392, 313, 234, 155, 76, 509, 430, 351,
        272, 193, 114, 35, 468, 389, 310, 231, 152, 73, 506, 427, 348, 269, 190, 111},
    {0.666269183, 0.240927964, -0.364519596, -0.246010646, -0.0144969439, 0.42728442, -0.0678189769, -0.396718621,
        0.00489369268, 0.0742153302, -0.481241643, 0.747701824, 0.3880696, 0.0760443583, 0.409193844, -0.743436873,
        0.525490403, -0.375800312, 0.516629875, 0.398944736, -0.938453257, 0.0288550556, 0.00312689249, -0.889839172,
        0.117981635, 0.245698825, 0.806252122, 0.657378912, -0.774862111, -0.213714093, 0.301518649, 0.0896991417},
    63.169991130009294,
    237.41635068738833};

// Unet12x16T1: sample randn[2,4,12,16] seed 1, context randn[2,77,32] seed 2, timestep 1 (torch.int64).
const GoldenCase kUnet12x16T1{
    "Unet12x16T1",
    {2, 4, 12, 16},
    {0, 433, 866, 1299, 196, 629, 1062, 1495, 392, 825, 1258, 155, 588, 1021, 1454, 351,
        784, 1217, 114, 547, 980, 1413, 310, 743, 1176, 73, 506, 939, 1372, 269, 702, 1135},
    {0.382175207, 0.216293946, 0.385161221, 2.03085256, 0.57610786, 0.863854945, 0.30292502, -0.520715356,
        0.523098946, 0.370393306, 0.815301478, 0.245718896, -0.465550154, -0.0601577312, -0.576114357, -0.831631362,
        0.171770573, 0.806248605, 0.455745637, 0.641447246, -0.172778681, 0.353115618, 1.28079808, -0.591407597,
        -0.753961146, -0.0377752669, 0.483336985, -0.400688589, -0.216893509, 0.202961028, 0.108719133, 0.080497317},
    200.43731860529806,
    743.79088601503463};

// Unet12x16T500p5: sample randn[2,4,12,16] seed 1, context randn[2,77,32] seed 2, timestep 500.5 (torch.float32).
const GoldenCase kUnet12x16T500p5{
    "Unet12x16T500p5",
    {2, 4, 12, 16},
    {0, 433, 866, 1299, 196, 629, 1062, 1495, 392, 825, 1258, 155, 588, 1021, 1454, 351,
        784, 1217, 114, 547, 980, 1413, 310, 743, 1176, 73, 506, 939, 1372, 269, 702, 1135},
    {0.291828215, 0.00430575013, 0.705491543, 2.02549219, 0.354067802, 0.525246024, -0.219117552, -0.258405149,
        0.301462442, 0.363456726, 0.890577376, 0.277861983, -0.352433503, -0.617076218, -0.686104, -0.5420295,
        0.22190854, 0.926802754, 0.44609195, 0.627471924, -0.34984228, 0.391517371, 1.50849044, -0.719276726,
        -0.940848827, -0.0770489424, 0.590730667, -0.388543606, -0.0993522182, 0.29190886, -0.113202423, 0.362259477},
    191.37173409786192,
    735.79174803177011};

// VaeDecode8x8: latents randn[1,4,8,8] seed 3 -> vae.decode(latents).sample.
const GoldenCase kVaeDecode8x8{
    "VaeDecode8x8",
    {1, 3, 64, 64},
    {0, 6577, 866, 7443, 1732, 8309, 2598, 9175, 3464, 10041, 4330, 10907, 5196, 11773, 6062, 351,
        6928, 1217, 7794, 2083, 8660, 2949, 9526, 3815, 10392, 4681, 11258, 5547, 12124, 6413, 702, 7279},
    {0.078725554, 0.367716849, -0.20979242, -0.77331686, 0.150243074, -0.050429333, 0.147635832, -1.40220952,
        -0.462224245, -0.35796836, 0.843218088, -0.0256833825, -1.31219304, -0.241931289, -0.00774655631, -0.13671276,
        0.220198512, 0.00921983831, 0.478460252, -0.233345315, -1.05062282, 1.40889478, -0.0511579216, -0.0278578717,
        -0.669368684, 0.381700218, -0.727389812, -0.698898017, 0.00345031614, -0.305302918, -0.146542311, 0.233862489},
    -442.55804842444013,
    5599.8811506897564};

// ClipText: input_ids of 'a photo of a cat' (77 ids, multilora tokenize) -> last_hidden_state.
const GoldenCase kClipText{
    "ClipText",
    {1, 77, 32},
    {0, 593, 1186, 1779, 2372, 501, 1094, 1687, 2280, 409, 1002, 1595, 2188, 317, 910, 1503,
        2096, 225, 818, 1411, 2004, 133, 726, 1319, 1912, 41, 634, 1227, 1820, 2413, 542, 1135},
    {-0.208059788, 0.0749695152, -0.108458631, -1.2947526, 2.24187493, 0.143158317, 0.28929466, 0.67311424,
        0.228137866, -1.20930219, -0.847711921, -0.158102453, -0.421542495, -0.343876004, -0.892643332, -0.667813003,
        1.86352599, -0.688025415, 1.31802344, -0.262882054, -1.17095256, 0.813473046, -1.27325463, 0.428869247,
        -0.55879885, 1.32342565, -1.27044189, -1.27600622, -0.460814446, 0.551234007, 0.106101431, -0.890465379},
    7.2662281873053871,
    1940.0747352643521};

constexpr double kValueTol = 5e-5;     // |got - ref| <= kValueTol * max(1, |ref|)
constexpr double kChecksumTol = 2e-6;  // |got - ref| <= kChecksumTol * ref.abs_sum, for the sum and the abs sum
// libtorch's normal draws round differently at each CPU capability (AVX2 has its own vectorised Box-Muller;
// default and AVX-512 use the scalar one), by about an ulp: the sums of the seeded inputs (and of the weights)
// are checked with room for that, which still catches another seed, shape or generator.
constexpr double kDrawTol = 1e-6;  // per element, on the sum of a seeded input

void expect_matches(const at::Tensor& out, const GoldenCase& g) {
    SCOPED_TRACE(g.name);
    ASSERT_EQ(out.sizes(), at::IntArrayRef(g.shape));
    at::Tensor flat = out.detach().contiguous().to(at::kDouble).reshape({-1});
    const double* p = flat.data_ptr<double>();
    double worst = 0.0;
    for (size_t k = 0; k < g.index.size(); ++k) {
        const double got = p[g.index[k]], ref = g.value[k];
        const double dev = std::abs(got - ref) / std::max(1.0, std::abs(ref));
        worst = std::max(worst, dev);
        EXPECT_LE(dev, kValueTol) << "index " << g.index[k] << ": got " << got << ", reference " << ref;
    }
    const double sum = flat.sum().item<double>(), abs_sum = flat.abs().sum().item<double>();
    EXPECT_LE(std::abs(sum - g.sum), kChecksumTol * g.abs_sum) << "sum " << sum << ", reference " << g.sum;
    EXPECT_LE(std::abs(abs_sum - g.abs_sum), kChecksumTol * g.abs_sum)
        << "abs sum " << abs_sum << ", reference " << g.abs_sum;
    std::printf("[golden] %-16s max value deviation %.3g, sum deviation %.3g, abs-sum deviation %.3g (relative)\n",
                g.name, worst, std::abs(sum - g.sum) / g.abs_sum, std::abs(abs_sum - g.abs_sum) / g.abs_sum);
}

at::Tensor seeded_randn(at::IntArrayRef shape, uint64_t seed) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

double sum_of(const at::Tensor& t) { return t.to(at::kDouble).sum().item<double>(); }

double parameter_abs_sum(const torch::nn::Module& m) {
    double s = 0.0;
    for (const auto& p : m.parameters()) s += p.detach().to(at::kDouble).abs().sum().item<double>();
    return s;
}

// The ids the reference was given: "a photo of a cat", padded to 77 with EOS.
std::vector<int64_t> prompt_ids() {
    std::vector<int64_t> ids = {49406, 320, 1125, 539, 320, 2368};
    ids.resize(77, 49407);
    return ids;
}

class GoldenDiffusers : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        at::set_num_threads(1);
        paths_ = new bench::TinyModelPaths(bench::make_tiny_model(test::make_temp_dir("golden").string(), 1234));
    }
    static void TearDownTestSuite() {
        delete paths_;
        paths_ = nullptr;
    }

    static pipeline::StableDiffusionModel load(const std::string& path) {
        pipeline::LoadOptions options;
        options.model_path = path;
        return pipeline::load_stable_diffusion(options);
    }

    static void check_unet(pipeline::StableDiffusionModel& model) {
        c10::InferenceMode guard;
        struct Run {
            int64_t h, w;
            at::Tensor timestep;
            const GoldenCase* golden;
            double sample_sum;
        };
        const Run runs[] = {
            {8, 8, at::scalar_tensor(981, at::kLong), &kUnet8x8T981, -1.3927529508364387},
            {12, 16, at::scalar_tensor(1, at::kLong), &kUnet12x16T1, 48.475868662702851},
            {12, 16, at::scalar_tensor(500.5, at::kFloat), &kUnet12x16T500p5, 48.475868662702851},
        };
        for (const auto& r : runs) {
            at::Tensor sample = seeded_randn({2, 4, r.h, r.w}, 1);
            at::Tensor context = seeded_randn({2, 77, 32}, 2);
            // The same draws as torch.Generator("cpu").manual_seed(S) gave the reference.
            ASSERT_NEAR(sum_of(sample), r.sample_sum, kDrawTol * sample.numel()) << r.golden->name;
            ASSERT_NEAR(sum_of(context), 119.20604466287477, kDrawTol * context.numel());
            expect_matches(model.unet->forward(sample, r.timestep, context), *r.golden);
        }
    }

    static void check_vae(pipeline::StableDiffusionModel& model) {
        c10::InferenceMode guard;
        at::Tensor latents = seeded_randn({1, 4, 8, 8}, 3);
        ASSERT_NEAR(sum_of(latents), 5.1128789195790887, kDrawTol * latents.numel());
        expect_matches(model.vae->decode(latents), kVaeDecode8x8);
    }

    static void check_text(pipeline::StableDiffusionModel& model) {
        c10::InferenceMode guard;
        at::Tensor ids = at::tensor(prompt_ids(), at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
        expect_matches(model.text_encoder->forward(ids), kClipText);
    }

    static bench::TinyModelPaths* paths_;
};

bench::TinyModelPaths* GoldenDiffusers::paths_ = nullptr;

}  // namespace

// The weights the reference loaded: a changed tiny model (not a changed forward) shows up here first.
TEST_F(GoldenDiffusers, TinyModelWeightsAreTheOnesTheReferenceRan) {
    auto model = load(paths_->folder);
    EXPECT_NEAR(parameter_abs_sum(*model.unet), 128957.32105673627, 1e-7 * 128957.32105673627);
    EXPECT_NEAR(parameter_abs_sum(*model.vae), 19303.891869828873, 1e-7 * 19303.891869828873);
    EXPECT_NEAR(parameter_abs_sum(*model.text_encoder), 634201.36337999266, 1e-7 * 634201.36337999266);
    // The prompt's ids as multilora's tokenizer gives them.
    std::vector<int32_t> ids = model.tokenizer->encode_padded("a photo of a cat");
    EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.end()), prompt_ids());
}

TEST_F(GoldenDiffusers, UNetMatchesDiffusers) {
    auto model = load(paths_->folder);
    check_unet(model);
}

TEST_F(GoldenDiffusers, VaeDecoderMatchesDiffusers) {
    auto model = load(paths_->folder);
    check_vae(model);
}

TEST_F(GoldenDiffusers, ClipTextEncoderMatchesTransformers) {
    auto model = load(paths_->folder);
    check_text(model);
}

// The LDM single file goes through the key map and the configs in its metadata; it must give the same numbers.
TEST_F(GoldenDiffusers, LdmSingleFileMatchesTheReferenceToo) {
    auto model = load(paths_->single_file);
    ASSERT_EQ(model.layout, "ldm-single-file");
    check_unet(model);
    check_vae(model);
    check_text(model);
}
