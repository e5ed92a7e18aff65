#include "multilora/bench/benchmark.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "multilora/bench/flop_counter.h"
#include "multilora/bench/random_model.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/models/matmul_kernels.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/text/prompt_encoding.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace multilora::bench {

// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS, so that one phase's peak can be read.
void reset_peak_rss() {
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
}

int64_t peak_rss_bytes() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
    return -1;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds(const std::function<void()>& fn) {
    auto t0 = Clock::now();
    fn();
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

json stats(std::vector<double> times) {
    std::sort(times.begin(), times.end());
    double mean = 0;
    for (double t : times) mean += t;
    mean /= static_cast<double>(times.size());
    double median = times.size() % 2 ? times[times.size() / 2]
                                     : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
    return {{"median_s", median}, {"min_s", times.front()}, {"mean_s", mean}, {"runs", times.size()}};
}

// Best-of-3 GFLOP/s of a large fp32 (or bf16) matrix product, through BLAS (at::mm) and through the
// route the model's layers take (models::dense: oneDNN on the CPU in fp32), and of SD1.5's most common
// convolution. "best" is the highest of the three: the machine's demonstrated peak for this dtype.
json measure_peaks(c10::ScalarType dtype, c10::Device device, bool quick) {
    const int64_t n = quick ? 512 : 4096;
    auto opts = at::TensorOptions().dtype(dtype).device(device);
    at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
    double best_mm = 1e30, best_dense = 1e30;
    for (int i = 0; i < 3; ++i) best_mm = std::min(best_mm, seconds([&] { at::mm(a, b); if (device.is_cuda()) torch::cuda::synchronize(); }));
    for (int i = 0; i < 3; ++i)
        best_dense = std::min(best_dense, seconds([&] { models::dense(a, b, {}); if (device.is_cuda()) torch::cuda::synchronize(); }));
    const int64_t c = quick ? 64 : 320, hw = quick ? 16 : 64;
    at::Tensor x = at::randn({2, c, hw, hw}, opts), w = at::randn({c, c, 3, 3}, opts);
    double best_conv = 1e30;
    for (int i = 0; i < 3; ++i)
        best_conv = std::min(best_conv, seconds([&] { at::conv2d(x, w, {}, 1, 1); if (device.is_cuda()) torch::cuda::synchronize(); }));
    const double mm_flops = 2.0 * n * n * n, conv_flops = 2.0 * 2 * c * c * 9 * hw * hw;
    const double best = std::max({mm_flops / best_mm, mm_flops / best_dense, conv_flops / best_conv}) / 1e9;
    return {{"gemm", {{"shape", {n, n, n}}, {"seconds", best_mm}, {"gflops", mm_flops / best_mm / 1e9}}},
            {"gemm_model_route", {{"shape", {n, n, n}}, {"seconds", best_dense}, {"gflops", mm_flops / best_dense / 1e9},
                                  {"route", models::use_onednn_products(a) ? "onednn" : "blas"}}},
            {"conv3x3", {{"shape", {2, c, hw, hw}}, {"seconds", best_conv}, {"gflops", conv_flops / best_conv / 1e9}}},
            {"best_gflops", best}};
}

struct StepBench {
    pipeline::StableDiffusionModel& model;
    const text::EncodedPrompts& prompts;
    at::Tensor latents;
    at::Tensor timestep;
    double guidance = 7.5;
};

// The run length the timed steps belong to, for methods whose schedule depends on it (K-LoRA, W-Switch).
constexpr int kBenchRunSteps = 50;

// Times `repeats` UNet steps of `method` (steps numbered from 0, so Switch's switches fall where they
// would in a run), with one warm-up; returns stats plus the FLOPs of one step.
json time_steps(StepBench& b, compose::CompositionMethod& method, int repeats, bool warmup = true) {
    c10::InferenceMode im;
    auto run_step = [&](int step) {
        compose::StepContext ctx{b.latents, b.timestep, step, b.prompts, b.guidance, kBenchRunSteps};
        at::Tensor eps = method.predict(ctx);
        if (b.model.device.is_cuda()) torch::cuda::synchronize();
        return eps;
    };
    if (warmup) run_step(0);
    std::vector<double> times;
    double flops = 0;
    for (int i = 0; i < repeats; ++i) {
        FlopCounter counter;
        times.push_back(seconds([&] { run_step(i); }));
        if (i == 0) flops = counter.flops();
    }
    json j = stats(times);
    j["flops"] = flops;
    return j;
}

void spawn_or_throw(const std::string& cmd) {
    spdlog::info("preparing: {}", cmd);
    int rc = std::system(cmd.c_str());
    if (rc != 0) throw RuntimeError("benchmark preparation failed (exit " + std::to_string(rc) + "): " + cmd);
}


}  // namespace

namespace {

// The random model and LoRAs, written by a child process so that this process's peak RSS is the run's
// own. A work dir from an earlier run is reused: the checkpoint when its ready marker is there, and the
// LoRA files of each rank when all `lora_count` of them exist (each is written atomically).
std::string prepare_work_dir(const BenchOptions& opt, int lora_count, std::string& dir) {
    dir = opt.work_dir;
    if (dir.empty()) {
        std::string templ = (fs::temp_directory_path() / "multilora-bench-XXXXXX").string();
        if (!mkdtemp(templ.data())) throw RuntimeError("cannot create a temporary folder for the benchmark");
        dir = templ;
    }
    fs::create_directories(dir);
    const std::string preset = opt.quick ? "tiny" : "sd15";
    const std::string model_path = (fs::path(dir) / ("bench-" + preset + ".safetensors")).string();
    const std::string exe = opt.self_exe.empty() ? "/proc/self/exe" : opt.self_exe;
    const bool have_model = fs::exists(model_path) && fs::exists(fs::path(dir) / "bench.ready");
    if (!have_model) {
        spawn_or_throw("'" + exe + "' make-random-model --preset " + preset + " --out '" + dir + "' --loras 0");
        std::ofstream(fs::path(dir) / "bench.ready") << "ok\n";
    }
    for (const std::string& form : opt.forms) {
        std::vector<int> missing_ranks;
        for (int rank : opt.ranks)
            for (int i = 0; i < lora_count; ++i)
                if (!fs::exists(fs::path(dir) / bench_lora_file(form, rank, i))) {
                    missing_ranks.push_back(rank);
                    break;
                }
        if (!missing_ranks.empty())
            spawn_or_throw("'" + exe + "' make-random-model --loras-only --preset " + preset + " --out '" + dir +
                           "' --loras " + std::to_string(lora_count) + " --ranks " + join_ints(missing_ranks) + " --form " + form);
    }
    return model_path;
}

// The k values each benchmarked method runs: BenchOptions' lists for the paper's three (their flags),
// else the method's own bench_k.
std::vector<int> bench_ks(const BenchOptions& opt, const compose::MethodInfo& m) {
    auto it = opt.method_k.find(m.name);
    if (it != opt.method_k.end()) return it->second;
    return m.bench_k;
}

std::vector<const compose::MethodInfo*> bench_methods(const BenchOptions& opt) {
    std::vector<const compose::MethodInfo*> out;
    auto chosen = [&](const std::string& name) {
        return opt.methods.empty() || std::find(opt.methods.begin(), opt.methods.end(), name) != opt.methods.end();
    };
    for (const compose::MethodInfo* m : compose::registry().methods())
        if (m->min_loras > 0 && !bench_ks(opt, *m).empty() && chosen(m->name)) out.push_back(m);
    return out;
}

int max_loras_needed(const BenchOptions& opt) {
    int n = 0;
    for (const compose::MethodInfo* m : bench_methods(opt))
        for (int k : bench_ks(opt, *m)) n = std::max(n, k);
    return n;
}

int64_t weight_bytes_of(const pipeline::StableDiffusionModel& model) {
    int64_t bytes = 0;
    for (auto* m : {static_cast<const torch::nn::Module*>(model.unet.get()), static_cast<const torch::nn::Module*>(model.text_encoder.get()),
                    static_cast<const torch::nn::Module*>(model.vae.get())})
        for (const auto& p : m->parameters()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
    return bytes;
}

text::EncodedPrompts time_text_encode(pipeline::StableDiffusionModel& model, int repeats, json& report) {
    std::vector<double> times;
    text::EncodedPrompts prompts;
    for (int i = 0; i < std::max(1, repeats); ++i)
        times.push_back(seconds([&] {
            prompts = text::encode_prompts(*model.tokenizer, *model.text_encoder, "a photo of a fox in the snow, detailed",
                                           "blurry, low quality", text::LongPromptMode::Truncate);
        }));
    report["text_encode"] = stats(times);
    return prompts;
}

// VAE decode right after the plain steps, with the phase boundary a generation has: the peak RSS over
// denoising + decoding is a plain generation's (loading maps the weights lazily, and text encoding peaks
// lower).
void time_vae_decode(StepBench& bench, int repeats, int64_t weight_bytes, json& report) {
    pipeline::StableDiffusionModel& model = bench.model;
    pipeline::release_resident_weights(*model.unet);
    pipeline::release_free_memory();
    std::vector<double> times;
    for (int i = 0; i < std::max(1, repeats); ++i)
        times.push_back(seconds([&] {
            at::Tensor img = model.vae->decode(bench.latents / model.vae->config().scaling_factor);
            if (model.device.is_cuda()) torch::cuda::synchronize();
        }));
    report["vae_decode"] = stats(times);
    const int64_t generation_peak = peak_rss_bytes();
    report["generation_peak_rss_bytes"] = generation_peak;
    report["generation_rss_over_weights"] = static_cast<double>(generation_peak) / static_cast<double>(weight_bytes);
    pipeline::release_free_memory();
}

json plain_case(StepBench& bench, int repeats) {
    auto method = compose::registry().create("none", {pipeline::model_parts(bench.model)});
    json timing = time_steps(bench, *method, repeats);
    timing["case"] = "none";
    timing["rank"] = 0;
    timing["k"] = 0;
    return timing;
}

// One method at one k with the first k LoRAs of `rank`: encoded once as a run does (which sets the text
// encoder and, for Merge, fuses the UNet), then timed. Step-dependent schedules (Switch) are timed over two
// of their stretches with no warm-up, so that their changes fall inside the timing.
json method_case(StepBench& bench, const BenchOptions& opt, const compose::MethodInfo& info, int k,
                 const std::vector<lora::LoraSpec>& specs, int rank, const std::string& form) {
    pipeline::StableDiffusionModel& model = bench.model;
    std::vector<lora::LoraSpec> first(specs.begin(), specs.begin() + k);
    lora::AdapterSet adapters(*model.unet, *model.text_encoder, model.unet->config().to_json(), first, 0.8, model.dtype,
                              model.device);
    compose::MethodArgs args(info.params);
    if (info.name == "switch") args.set_json("tau", opt.switch_interval, "bench --switch-interval");
    // Placeholder trigger words, for the methods that weight LoRAs by them.
    std::vector<std::vector<std::string>> triggers;
    for (int i = 0; i < k; ++i) triggers.push_back({"lora" + std::to_string(i)});
    auto method = compose::registry().create(info.name, {pipeline::model_parts(model), &adapters, {}, args, triggers});
    method->encode({});
    const int period = info.period_steps ? info.period_steps(k, args) : 0;
    json timing = period > 0 ? time_steps(bench, *method, 2 * period, false) : time_steps(bench, *method, opt.repeats);
    timing["case"] = info.name;
    timing["rank"] = rank;
    timing["k"] = k;
    timing["form"] = form;
    if (period > 0) timing["timed_over"] = "two schedule stretches, changes included";
    return timing;
}

void log_case(const json& c) {
    spdlog::info("{:<14} {:<4} rank {:>3} k {}: median {:.3f} s, min {:.3f} s", c["case"].get<std::string>(),
                 c.value("form", "lora"), c["rank"].get<int>(), c["k"].get<int>(), c["median_s"].get<double>(),
                 c["min_s"].get<double>());
}

json lora_cases(StepBench& bench, const BenchOptions& opt, const std::string& dir, int lora_count) {
    json cases = json::array();
    for (const std::string& form : opt.forms)
        for (int rank : opt.ranks) {
            std::vector<lora::LoraSpec> specs;
            for (int i = 0; i < lora_count; ++i) specs.push_back({(fs::path(dir) / bench_lora_file(form, rank, i)).string(), 1.0});
            for (const compose::MethodInfo* m : bench_methods(opt))
                for (int k : bench_ks(opt, *m)) {
                    cases.push_back(method_case(bench, opt, *m, k, specs, rank, form));
                    log_case(cases.back());
                }
        }
    return cases;
}

// Each LyCORIS case against the plain-LoRA case of the same method, rank and k (same layers adapted).
void add_form_ratios(const json& steps, json& ratios) {
    auto time_of = [](const json& c) { return c.contains("timed_over") ? c["mean_s"].get<double>() : c["median_s"].get<double>(); };
    for (const auto& c : steps) {
        if (c["case"] == "none" || c.value("form", "lora") == "lora") continue;
        for (const auto& base : steps)
            if (base["case"] == c["case"] && base.value("form", "") == "lora" && base["rank"] == c["rank"] && base["k"] == c["k"])
                ratios.push_back({{"case", c["case"]}, {"form", c["form"]}, {"rank", c["rank"]}, {"k", c["k"]},
                                  {"ratio", time_of(c) / time_of(base)}, {"against", "lora"}});
    }
}

// Achieved rates against the run's peak, and every method's ratio to the plain step (the faster of the
// two plain measurements): per image, so divided by the method's UNet rows over the plain step's.
void add_rates_and_ratios(json& report, double peak) {
    double none_step = 0;
    for (auto& c : report["unet_steps"]) {
        double gflops = c["flops"].get<double>() / c["median_s"].get<double>() / 1e9;
        c["gflops"] = gflops;
        c["fraction_of_peak"] = gflops / peak;
        if (c["case"] == "none")
            none_step = none_step == 0 ? c["median_s"].get<double>() : std::min(none_step, c["median_s"].get<double>());
    }
    json ratios = json::array();
    for (const auto& c : report["unet_steps"]) {
        if (c["case"] == "none") continue;
        const int k = c["k"].get<int>();
        const compose::MethodInfo& info = compose::registry().get(c["case"].get<std::string>());
        // Rows per image over the plain CFG step's (LoRAtorio's 2k + 2 rows: k + 1 plain steps).
        const int plain_rows = compose::registry().get("none").unet_rows(0, true);
        const int rows = info.unet_rows(k, true) / plain_rows;
        // Step-dependent schedules use their mean over the timed stretches; the others the median.
        const double t = c.contains("timed_over") ? c["mean_s"].get<double>() : c["median_s"].get<double>();
        ratios.push_back({{"case", c["case"]}, {"form", c.value("form", "lora")}, {"rank", c["rank"]}, {"k", k},
                          {"ratio", t / (rows * none_step)},
                          {"against", rows == 1 ? "none" : rows == k ? "k x none" : std::to_string(rows) + " x none"}});
    }
    add_form_ratios(report["unet_steps"], ratios);
    report["ratios"] = ratios;
}

}  // namespace

json run_benchmark(const BenchOptions& opt) {
    const int threads = pipeline::configure_threads(opt.threads);
    const int lora_count = max_loras_needed(opt);
    std::string dir;
    const std::string model_path = prepare_work_dir(opt, lora_count, dir);
    json report;
    json method_k = json::object();
    for (const compose::MethodInfo* m : bench_methods(opt)) method_k[m->name] = bench_ks(opt, *m);
    report["options"] = {{"size", opt.quick ? 64 : opt.size}, {"dtype", opt.dtype},   {"device", opt.device},
                         {"quick", opt.quick},                {"repeats", opt.repeats}, {"ranks", opt.ranks},
                         {"method_k", method_k},              {"switch_interval", opt.switch_interval},
                         {"forms", opt.forms},
                         {"model", model_path}};

    pipeline::StableDiffusionModel model;
    const double load_s = seconds([&] { model = pipeline::load_stable_diffusion({model_path, "", opt.dtype, opt.device}); });
    const int64_t weight_bytes = weight_bytes_of(model);
    report["load"] = {{"seconds", load_s}, {"weight_bytes", weight_bytes}};
    spdlog::info("loaded the {} model in {:.2f} s ({:.2f} GB of weights)", opt.quick ? "tiny" : "sd15", load_s,
                 weight_bytes / 1e9);

    c10::InferenceMode im;
    const text::EncodedPrompts prompts = time_text_encode(model, opt.repeats, report);
    // As in a generation: the text encoder's pages and free heap blocks go before denoising.
    pipeline::release_resident_weights(*model.text_encoder);
    pipeline::release_free_memory();
    reset_peak_rss();

    const int factor = model.vae->config().downscale_factor();
    const int size = opt.quick ? 64 : opt.size;
    StepBench bench{model, prompts,
                    pipeline::draw_initial_noise(1, 0, {1, model.unet->config().in_channels, size / factor, size / factor})
                        .to(model.device, model.dtype),
                    at::scalar_tensor(int64_t{500}, at::kLong).to(model.device)};

    json cases = json::array();
    cases.push_back(plain_case(bench, opt.repeats));
    log_case(cases.back());
    time_vae_decode(bench, opt.repeats, weight_bytes, report);
    for (const auto& c : lora_cases(bench, opt, dir, lora_count)) cases.push_back(c);
    // The plain step again at the end: on a shared machine speed drifts over a long run, and the ratios
    // divide by the faster of the two (the stricter choice).
    cases.push_back(plain_case(bench, opt.repeats));
    log_case(cases.back());
    cases.back()["position"] = "end";
    cases.front()["position"] = "start";
    report["unet_steps"] = cases;

    json peaks = measure_peaks(at::kFloat, model.device, opt.quick);
    if (model.dtype != at::kFloat) peaks["model_dtype"] = measure_peaks(model.dtype, model.device, opt.quick);
    report["peaks"] = peaks;
    add_rates_and_ratios(report, model.dtype == at::kFloat ? peaks["best_gflops"].get<double>()
                                                           : peaks["model_dtype"]["best_gflops"].get<double>());
    // Peak since the plain steps, LoRA cases included (Composite k=5 runs 10 rows per step).
    const int64_t run_peak = peak_rss_bytes();
    report["peak_rss_bytes"] = run_peak;
    report["rss_over_weights"] = static_cast<double>(run_peak) / static_cast<double>(weight_bytes);
    report["machine"] = pipeline::runtime_info();
    report["machine"]["threads"] = threads;
    return report;
}

std::string benchmark_markdown(const json& r) {
    std::ostringstream o;
    const auto& m = r["machine"];
    o << "Machine: " << m.value("cpu", "?") << ", " << m.value("threads", 0) << " threads, libtorch "
      << m.value("libtorch", "?") << ", BLAS " << m.value("blas_library", "?") << "\n\n";
    o << "Size " << r["options"]["size"] << ", dtype " << r["options"]["dtype"].get<std::string>() << ", device "
      << r["options"]["device"].get<std::string>() << (r["options"]["quick"].get<bool>() ? " (quick: tiny model)" : "")
      << ". Load " << r["load"]["seconds"].get<double>() << " s; text encode "
      << r["text_encode"]["median_s"].get<double>() << " s; VAE decode " << r["vae_decode"]["median_s"].get<double>()
      << " s.\n\nPeak RSS of a plain generation (steps + decode): " << r["generation_peak_rss_bytes"].get<int64_t>() / 1e9
      << " GB (" << r["generation_rss_over_weights"].get<double>() << " x the weights); over the whole benchmark, LoRA cases included: "
      << r["peak_rss_bytes"].get<int64_t>() / 1e9 << " GB (" << r["rss_over_weights"].get<double>() << " x).\n\n";
    o << "Measured peaks (fp32): GEMM through BLAS " << r["peaks"]["gemm"]["gflops"].get<double>()
      << " GFLOP/s, GEMM through the model's route (" << r["peaks"]["gemm_model_route"]["route"].get<std::string>()
      << ") " << r["peaks"]["gemm_model_route"]["gflops"].get<double>() << " GFLOP/s, conv3x3 "
      << r["peaks"]["conv3x3"]["gflops"].get<double>() << " GFLOP/s; \"of peak\" below is against the best of these.\n\n";
    o << "| UNet step (batch 2 per LoRA) | rank | k | median s | min s | GFLOP/step | GFLOP/s | of peak |\n";
    o << "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    char buf[256];
    for (const auto& c : r["unet_steps"]) {
        const std::string form = c.value("form", "lora");
        const std::string name = c["case"].get<std::string>() + (form == "lora" ? "" : " [" + form + "]") +
                                 (c.contains("position") ? " (" + c["position"].get<std::string>() + ")" : "");
        std::snprintf(buf, sizeof buf, "| %s | %d | %d | %.3f | %.3f | %.1f | %.1f | %.0f%% |\n",
                      name.c_str(), c["rank"].get<int>(), c["k"].get<int>(),
                      c["median_s"].get<double>(), c["min_s"].get<double>(), c["flops"].get<double>() / 1e9,
                      c["gflops"].get<double>(), 100 * c["fraction_of_peak"].get<double>());
        o << buf;
    }
    o << "\n| ratio | rank | k | value |\n| --- | --- | --- | --- |\n";
    for (const auto& q : r["ratios"]) {
        const std::string form = q.value("form", "lora"), tag = form == "lora" ? "" : " [" + form + "]";
        const std::string against = q["against"] == "lora" ? q["case"].get<std::string>() + " [lora]" : q["against"].get<std::string>();
        std::snprintf(buf, sizeof buf, "| %s%s / %s | %d | %d | %.3f |\n", q["case"].get<std::string>().c_str(), tag.c_str(),
                      against.c_str(), q["rank"].get<int>(), q["k"].get<int>(), q["ratio"].get<double>());
        o << buf;
    }
    return o.str();
}

}  // namespace multilora::bench
