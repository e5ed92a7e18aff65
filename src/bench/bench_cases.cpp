#include "bench_cases.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "multilora/bench/flop_counter.h"
#include "multilora/bench/peer_process.h"
#include "multilora/bench/random_model.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/models/fused_attention.h"
#include "multilora/models/matmul_kernels.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/text/prompt_encoding.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace multilora::bench {

struct BenchInputs {
    pipeline::StableDiffusionModel& model;
    text::EncodedPrompts prompts;
    at::Tensor latents;
    at::Tensor timestep;
    double guidance = 7.5;
};

namespace {

using Clock = std::chrono::steady_clock;

// The run length the timed steps belong to, for methods whose schedule depends on it (K-LoRA, W-Switch).
constexpr int kBenchRunSteps = 50;

void synchronize(const c10::Device& device) {
    if (device.is_cuda()) torch::cuda::synchronize();
}

// Seconds and FLOPs per call of `fn`, called `calls` times back to back.
RoundTime time_calls(const c10::Device& device, int calls, const std::function<void(int)>& fn) {
    FlopCounter counter;
    const auto t0 = Clock::now();
    for (int i = 0; i < calls; ++i) fn(i);
    synchronize(device);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    return {s / calls, counter.flops() / calls};
}

text::EncodedPrompts encode_bench_prompts(pipeline::StableDiffusionModel& model) {
    return text::encode_prompts(*model.tokenizer, *model.text_encoder, "a photo of a fox in the snow, detailed",
                                "blurry, low quality", text::LongPromptMode::Truncate);
}

// One UNet step of `method` at step index `step`.
void method_step(BenchInputs& in, compose::CompositionMethod& method, int step) {
    compose::StepContext ctx{in.latents, in.timestep, step, in.prompts, in.guidance, kBenchRunSteps};
    at::Tensor eps = method.predict(ctx);
}

// One round of a method at k with `specs`: the adapters are built and the prompt encoded as a run does,
// untimed. A method with a step-dependent schedule (Switch) is then timed over one whole stretch (steps
// 0..period-1, the stretch's LoRA change included: what each step costs on average). Any other method runs
// step 0 untimed, since it does once-per-image work there (Merge fuses its weights on the first call), and
// step 1 timed; step 0's time is reported apart.
RoundTime method_round(BenchInputs& in, const compose::MethodInfo& info, const compose::MethodArgs& args,
                       const std::vector<lora::LoraSpec>& specs) {
    c10::InferenceMode im;
    pipeline::StableDiffusionModel& model = in.model;
    const int k = static_cast<int>(specs.size());
    // The files are the same every round: their load lines would drown the progress.
    const auto level = spdlog::get_level();
    spdlog::set_level(std::max(level, spdlog::level::warn));
    std::unique_ptr<lora::AdapterSet> made;
    try {
        made = std::make_unique<lora::AdapterSet>(*model.unet, *model.text_encoder, model.unet->config().to_json(), specs,
                                                  0.8, model.dtype, model.device);
    } catch (...) {
        spdlog::set_level(level);
        throw;
    }
    spdlog::set_level(level);
    lora::AdapterSet& adapters = *made;
    // Placeholder trigger words, for the methods that weight LoRAs by them.
    std::vector<std::vector<std::string>> triggers;
    for (int i = 0; i < k; ++i) triggers.push_back({"lora" + std::to_string(i)});
    auto method = compose::registry().create(info.name, {pipeline::model_parts(model), &adapters, {}, args, triggers});
    method->encode({});
    const int period = info.period_steps ? info.period_steps(k, args) : 0;
    if (period > 0) return time_calls(model.device, period, [&](int step) { method_step(in, *method, step); });
    const double first = time_calls(model.device, 1, [&](int) { method_step(in, *method, 0); }).seconds;
    RoundTime t = time_calls(model.device, 1, [&](int) { method_step(in, *method, 1); });
    t.first_step = first;
    return t;
}

BenchCase method_case(const std::shared_ptr<BenchInputs>& in, const BenchOptions& opt, const compose::MethodInfo& info,
                      int k, const std::vector<lora::LoraSpec>& all, int rank, const std::string& form) {
    compose::MethodArgs args(info.params);
    if (info.name == "switch") args.set_json("tau", opt.switch_interval, "bench --switch-interval");
    const std::vector<lora::LoraSpec> specs(all.begin(), all.begin() + k);
    const int plain_rows = compose::registry().get("none").unet_rows(0, true);
    const int period = info.period_steps ? info.period_steps(k, args) : 0;
    BenchCase c;
    c.meta = {{"kind", "unet"}, {"case", info.name}, {"rank", rank}, {"k", k}, {"form", form},
              {"rows", info.unet_rows(k, true) / plain_rows}, {"steps_per_round", std::max(1, period)}};
    if (period > 0) c.meta["timed_over"] = "one schedule stretch per round, its LoRA change included";
    c.run = [in, &info, args, specs] { return method_round(*in, info, args, specs); };
    return c;
}

}  // namespace

std::shared_ptr<BenchInputs> make_bench_inputs(pipeline::StableDiffusionModel& model, int size) {
    c10::InferenceMode im;
    const int factor = model.vae->config().downscale_factor();
    auto in = std::make_shared<BenchInputs>(BenchInputs{model, encode_bench_prompts(model), {}, {}});
    in->latents = pipeline::draw_initial_noise(1, 0, {1, model.unet->config().in_channels, size / factor, size / factor})
                      .to(model.device, model.dtype);
    in->timestep = at::scalar_tensor(int64_t{500}, at::kLong).to(model.device);
    return in;
}

BenchCase plain_case(const std::shared_ptr<BenchInputs>& in) {
    BenchCase c;
    c.meta = {{"kind", "unet"}, {"case", "none"}, {"rank", 0}, {"k", 0}, {"form", "lora"}, {"rows", 1}, {"steps_per_round", 1}};
    auto method = std::shared_ptr<compose::CompositionMethod>(
        compose::registry().create("none", {pipeline::model_parts(in->model)}).release());
    c.run = [in, method] {
        c10::InferenceMode im;
        return time_calls(in->model.device, 1, [&](int) { method_step(*in, *method, 0); });
    };
    return c;
}

std::vector<BenchCase> attention_route_cases(const std::shared_ptr<BenchInputs>& in) {
    if (!models::use_fused_attention(in->latents)) return {};
    BenchCase c = plain_case(in);
    c.meta["case"] = "none, grouped attention";
    c.run = [run = c.run] {
        struct Restore {
            bool was;
            ~Restore() { models::set_fused_attention_enabled(was); }
        } restore{models::fused_attention_enabled()};
        models::set_fused_attention_enabled(false);
        return run();
    };
    return {c};
}

BenchCase text_encode_case(const std::shared_ptr<BenchInputs>& in) {
    BenchCase c;
    c.meta = {{"kind", "text_encode"}, {"case", "text encode"}, {"steps_per_round", 1}};
    c.run = [in] {
        c10::InferenceMode im;
        return time_calls(in->model.device, 1, [&](int) { encode_bench_prompts(in->model); });
    };
    return c;
}

BenchCase vae_decode_case(const std::shared_ptr<BenchInputs>& in) {
    BenchCase c;
    c.meta = {{"kind", "vae_decode"}, {"case", "VAE decode"}, {"steps_per_round", 1}};
    c.run = [in] {
        c10::InferenceMode im;
        pipeline::StableDiffusionModel& model = in->model;
        return time_calls(model.device, 1, [&](int) { model.vae->decode(in->latents / model.vae->config().scaling_factor); });
    };
    return c;
}

BenchCase vae_tiled_case(const std::shared_ptr<BenchInputs>& in, int tile) {
    BenchCase c;
    c.meta = {{"kind", "vae_decode"}, {"case", "VAE decode, " + std::to_string(tile) + " px tiles"}, {"tile", tile},
              {"steps_per_round", 1}};
    c.run = [in, tile] {
        c10::InferenceMode im;
        pipeline::StableDiffusionModel& model = in->model;
        return time_calls(model.device, 1,
                          [&](int) { model.vae->decode_tiled(in->latents / model.vae->config().scaling_factor, tile); });
    };
    return c;
}

json vae_seam_error(const std::shared_ptr<BenchInputs>& in, int tile) {
    c10::InferenceMode im;
    pipeline::StableDiffusionModel& model = in->model;
    const at::Tensor z = in->latents / model.vae->config().scaling_factor;
    // Pixels as the PNG writer sees them: [-1, 1] -> [0, 255].
    const at::Tensor whole = model.vae->decode(z).to(at::kFloat).clamp(-1, 1);
    const at::Tensor tiled = model.vae->decode_tiled(z, tile).to(at::kFloat).clamp(-1, 1);
    const at::Tensor diff = (whole - tiled).abs() * 127.5;
    return {{"tile", tile},
            {"max_255", diff.max().item<double>()},
            {"mean_255", diff.mean().item<double>()},
            {"share_over_1_255", (diff > 1.0).to(at::kFloat).mean().item<double>()}};
}

BenchCase peer_case(const std::shared_ptr<PeerProcess>& peer, const std::string& name) {
    BenchCase c;
    c.meta = {{"kind", "peer"}, {"case", name}, {"rows", 1}, {"steps_per_round", 1}};
    c.run = [peer] { return RoundTime{peer->step(), 0}; };
    return c;
}

std::vector<BenchCase> lora_cases(const std::shared_ptr<BenchInputs>& in, const BenchOptions& opt, const std::string& dir) {
    std::vector<BenchCase> cases;
    const int lora_count = max_loras_needed(opt);
    for (const std::string& form : opt.forms)
        for (int rank : opt.ranks) {
            std::vector<lora::LoraSpec> specs;
            for (int i = 0; i < lora_count; ++i) specs.push_back({(fs::path(dir) / bench_lora_file(form, rank, i)).string(), 1.0});
            for (const std::string& name : bench_method_names(opt))
                for (int k : bench_ks(opt, name))
                    cases.push_back(method_case(in, opt, compose::registry().get(name), k, specs, rank, form));
        }
    return cases;
}

std::vector<int> bench_ks(const BenchOptions& opt, const std::string& method) {
    auto it = opt.method_k.find(method);
    if (it != opt.method_k.end()) return it->second;
    return compose::registry().get(method).bench_k;
}

std::vector<std::string> bench_method_names(const BenchOptions& opt) {
    std::vector<std::string> out;
    auto chosen = [&](const std::string& name) {
        return opt.methods.empty() || std::find(opt.methods.begin(), opt.methods.end(), name) != opt.methods.end();
    };
    for (const compose::MethodInfo* m : compose::registry().methods())
        if (m->min_loras > 0 && !bench_ks(opt, m->name).empty() && chosen(m->name)) out.push_back(m->name);
    return out;
}

int max_loras_needed(const BenchOptions& opt) {
    int n = 0;
    for (const std::string& name : bench_method_names(opt))
        for (int k : bench_ks(opt, name)) n = std::max(n, k);
    return n;
}

// GEMM through BLAS (at::mm) and through the route the model's layers take (models::dense: oneDNN on the CPU
// in fp32), and SD1.5's most common convolution; "best" is the highest of the three: the machine's
// demonstrated peak for this dtype.
json measure_peaks(const std::string& dtype_name, const std::string& device_name, bool quick, int tries) {
    const c10::ScalarType dtype = dtype_name == "bf16" ? at::kBFloat16 : dtype_name == "fp16" ? at::kHalf : at::kFloat;
    const c10::Device device(device_name);
    c10::InferenceMode im;
    const int64_t n = quick ? 512 : 4096;
    auto opts = at::TensorOptions().dtype(dtype).device(device);
    at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
    const int64_t c = quick ? 64 : 320, hw = quick ? 16 : 64;
    at::Tensor x = at::randn({2, c, hw, hw}, opts), w = at::randn({c, c, 3, 3}, opts);
    auto best_of = [&](const std::function<void(int)>& fn) {
        double best = 1e30;
        for (int i = 0; i < tries; ++i) best = std::min(best, time_calls(device, 1, fn).seconds);
        return best;
    };
    const double mm_s = best_of([&](int) { at::mm(a, b); });
    const double dense_s = best_of([&](int) { models::dense(a, b, {}); });
    const double conv_s = best_of([&](int) { at::conv2d(x, w, {}, 1, 1); });
    const double mm_flops = 2.0 * n * n * n, conv_flops = 2.0 * 2 * c * c * 9 * hw * hw;
    const double best = std::max({mm_flops / mm_s, mm_flops / dense_s, conv_flops / conv_s}) / 1e9;
    return {{"dtype", dtype_name},
            {"gemm", {{"shape", {n, n, n}}, {"seconds", mm_s}, {"gflops", mm_flops / mm_s / 1e9}}},
            {"gemm_model_route", {{"shape", {n, n, n}}, {"seconds", dense_s}, {"gflops", mm_flops / dense_s / 1e9},
                                  {"route", models::use_onednn_products(a) ? "onednn" : "blas"}}},
            {"conv3x3", {{"shape", {2, c, hw, hw}}, {"seconds", conv_s}, {"gflops", conv_flops / conv_s / 1e9}}},
            {"best_gflops", best}};
}

}  // namespace multilora::bench
