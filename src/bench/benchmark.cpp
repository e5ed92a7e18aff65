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

#include "bench_cases.h"
#include "multilora/bench/peer_process.h"
#include "multilora/bench/random_model.h"
#include "multilora/bench/step_profile.h"
#include "multilora/io/atomic_file.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
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

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

json stats(const std::vector<double>& times) {
    double mean = 0;
    for (double t : times) mean += t;
    mean /= static_cast<double>(times.size());
    return {{"median_s", median_of(times)}, {"min_s", *std::min_element(times.begin(), times.end())},
            {"max_s", *std::max_element(times.begin(), times.end())}, {"mean_s", mean}, {"runs", times.size()},
            {"times_s", times}};
}

json ratio_stats(const std::vector<double>& r) {
    return {{"ratio", median_of(r)}, {"min", *std::min_element(r.begin(), r.end())},
            {"max", *std::max_element(r.begin(), r.end())}, {"per_round", r}};
}

void spawn_or_throw(const std::string& cmd) {
    spdlog::info("preparing: {}", cmd);
    int rc = std::system(cmd.c_str());
    if (rc != 0) throw RuntimeError("benchmark preparation failed (exit " + std::to_string(rc) + "): " + cmd);
}

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

int64_t weight_bytes_of(const pipeline::StableDiffusionModel& model) {
    int64_t bytes = 0;
    for (auto* m : {static_cast<const torch::nn::Module*>(model.unet.get()), static_cast<const torch::nn::Module*>(model.text_encoder.get()),
                    static_cast<const torch::nn::Module*>(model.vae.get())})
        for (const auto& p : m->parameters()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
    return bytes;
}

std::string case_label(const json& meta) {
    std::string label = meta["case"].get<std::string>();
    if (meta.value("kind", "") != "unet" || meta.value("k", 0) == 0) return label;  // the plain steps
    const std::string form = meta.value("form", "lora");
    return label + (form == "lora" ? "" : " [" + form + "]") + " rank " + std::to_string(meta["rank"].get<int>()) +
           " k " + std::to_string(meta["k"].get<int>());
}

// diffusers' UNet in a child Python, started (and warmed up) before the rounds; its malloc is tuned through
// glibc's environment as ours is through mallopt, so that neither side pays page faults the other does not.
std::shared_ptr<PeerProcess> start_diffusers_peer(const BenchOptions& opt, const std::string& dir,
                                                  const pipeline::StableDiffusionModel& model, int size, int threads) {
    const std::string script = (fs::path(dir) / "diffusers_peer.py").string();
    const std::string config = (fs::path(dir) / "diffusers_peer_unet.json").string();
    io::write_file_atomic(script, diffusers_peer_script());
    io::write_file_atomic(config, model.unet->config().to_json().dump(2) + "\n");
    const int latent = size / model.vae->config().downscale_factor();
    spdlog::info("starting diffusers' UNet in {} (loads, then one warm-up step)", opt.compare_diffusers);
    const json malloc = pipeline::runtime_info()["allocator"];
    return std::make_shared<PeerProcess>(
        std::vector<std::string>{opt.compare_diffusers, script, "--config", config, "--latent-size", std::to_string(latent), "--threads",
                                 std::to_string(threads), "--dtype", opt.dtype},
        std::vector<std::string>{"MALLOC_MMAP_MAX_=" + std::to_string(malloc.value("M_MMAP_MAX", 0)),
                                 "MALLOC_TRIM_THRESHOLD_=" + std::to_string(malloc.value("M_TRIM_THRESHOLD", 0)),
                                 "MALLOC_TOP_PAD_=" + std::to_string(malloc.value("M_TOP_PAD", 0))},
        "--compare-diffusers");
}

// Runs the cases in the order of `order`, reporting each to the progress callback.
struct RoundRunner {
    const BenchOptions& opt;
    int done = 0, total = 0;

    RoundTime run(BenchCase& c) {
        const RoundTime t = c.run();
        if (opt.progress) opt.progress(++done, total, t.seconds * c.meta.value("steps_per_round", 1) + t.first_step, case_label(c.meta));
        return t;
    }
};

// The untimed warm-up round, which also counts each case's FLOPs and reads a plain generation's peak RSS:
// the plain step, then the VAE decode with the phase boundary a generation has (the UNet's pages go).
void warm_up(RoundRunner& runner, BenchCase& none, std::vector<BenchCase>& cases, pipeline::StableDiffusionModel& model,
             int64_t weight_bytes, json& report) {
    none.flops = runner.run(none).flops;
    auto whole_decode = [](const BenchCase& c) { return c.meta["kind"] == "vae_decode" && !c.meta.contains("tile"); };
    for (BenchCase& c : cases) {
        if (!whole_decode(c)) continue;
        pipeline::release_resident_weights(*model.unet);
        pipeline::release_free_memory();
        c.flops = runner.run(c).flops;
        const int64_t generation_peak = peak_rss_bytes();
        report["generation_peak_rss_bytes"] = generation_peak;
        report["generation_rss_over_weights"] = static_cast<double>(generation_peak) / static_cast<double>(weight_bytes);
        pipeline::release_free_memory();
        runner.run(none);  // faults the UNet's pages back in, so that round 1's plain step does not pay for it
    }
    for (BenchCase& c : cases)
        if (!whole_decode(c)) c.flops = runner.run(c).flops;
}

// The best of each peak over the rounds (each round measures once).
void keep_best_peaks(json& best, const json& round) {
    if (best.is_null()) {
        best = round;
        return;
    }
    for (const char* key : {"gemm", "gemm_model_route", "conv3x3"})
        if (round[key]["gflops"].get<double>() > best[key]["gflops"].get<double>()) best[key] = round[key];
    best["best_gflops"] = std::max(best["best_gflops"].get<double>(), round["best_gflops"].get<double>());
}

// The timed rounds: the plain step, then every case, R times; the plain step once more at the end, so that
// each case sits between two plain steps. The peaks are measured in every round (fp32, and the model's dtype).
json timed_rounds(RoundRunner& runner, BenchCase& none, std::vector<BenchCase>& cases, const std::string& dtype) {
    json peaks = json::object();
    for (int r = 0; r < runner.opt.repeats; ++r) {
        none.times.push_back(runner.run(none).seconds);
        for (BenchCase& c : cases) {
            const RoundTime t = runner.run(c);
            c.times.push_back(t.seconds);
            if (t.first_step > 0) c.first_steps.push_back(t.first_step);
        }
        keep_best_peaks(peaks["fp32"], measure_peaks("fp32", runner.opt.device, runner.opt.quick, 1));
        if (dtype != "fp32") keep_best_peaks(peaks[dtype], measure_peaks(dtype, runner.opt.device, runner.opt.quick, 1));
    }
    none.times.push_back(runner.run(none).seconds);
    return peaks;
}

// The plain step of round r: the mean of the plain steps before and after it.
double plain_around(const BenchCase& none, size_t r) { return 0.5 * (none.times[r] + none.times[r + 1]); }

// The per-round ratios numerator(r) / denominator(r) over `rounds` rounds, summarised.
json paired_ratio(size_t rounds, const std::function<double(size_t)>& numerator, const std::function<double(size_t)>& denominator) {
    std::vector<double> r;
    for (size_t i = 0; i < rounds; ++i) r.push_back(numerator(i) / denominator(i));
    return ratio_stats(r);
}

// Every UNet case against its share of plain steps; every LyCORIS form against plain LoRA at the same
// method, rank and k; the peer's step against ours.
// The targets are for SD1.5-sized steps (`with_targets`); the tiny model's steps are framework overhead.
json paired_ratios(const BenchCase& none, const std::vector<BenchCase>& cases, bool with_targets) {
    json ratios = json::array();
    for (const BenchCase& c : cases) {
        const json& m = c.meta;
        if (m["kind"] == "peer") {
            json q = paired_ratio(c.times.size(), [&](size_t i) { return plain_around(none, i); }, [&](size_t i) { return c.times[i]; });
            q.update({{"case", "none"}, {"against", m["case"]}, {"form", "lora"}, {"rank", 0}, {"k", 0}});
            ratios.push_back(q);
            continue;
        }
        if (m["kind"] != "unet") continue;
        const int rows = m["rows"].get<int>(), k = m["k"].get<int>();
        const auto own = [&](size_t i) { return c.times[i]; };
        json q = paired_ratio(c.times.size(), own, [&](size_t i) { return rows * plain_around(none, i); });
        q.update({{"case", m["case"]}, {"form", m["form"]}, {"rank", m["rank"]}, {"k", k},
                  {"against", rows == 1 ? "none" : rows == k ? "k x none" : std::to_string(rows) + " x none"}});
        auto target = ratio_targets().find(m["case"].get<std::string>());
        if (with_targets && target != ratio_targets().end() && m["form"] == "lora") {
            q["target"] = target->second;
            q["meets_target"] = q["ratio"].get<double>() <= target->second;
        }
        ratios.push_back(q);
        if (m["form"] == "lora") continue;
        for (const BenchCase& base : cases)
            if (base.meta["kind"] == "unet" && base.meta["form"] == "lora" && base.meta["case"] == m["case"] &&
                base.meta["rank"] == m["rank"] && base.meta["k"] == m["k"]) {
                json f = paired_ratio(c.times.size(), own, [&](size_t i) { return base.times[i]; });
                f.update({{"case", m["case"]}, {"form", m["form"]}, {"rank", m["rank"]}, {"k", k}, {"against", "lora"}});
                ratios.push_back(f);
            }
    }
    return ratios;
}

// Times, rates against the run's peaks (UNet steps against the best peak of the model's dtype, the VAE
// decode against its convolution peak), and the FLOPs counted in the warm-up.
json case_report(const BenchCase& c, const json& dtype_peaks) {
    json j = c.meta;
    j.update(stats(c.times));
    j["flops"] = c.flops;
    if (!c.first_steps.empty()) j["first_step_median_s"] = median_of(c.first_steps);
    if (c.flops > 0) {
        const double gflops = c.flops / j["median_s"].get<double>() / 1e9;
        j["gflops"] = gflops;
        const bool vae = c.meta["kind"] == "vae_decode";
        j["fraction_of_peak"] = gflops / (vae ? dtype_peaks["conv3x3"]["gflops"] : dtype_peaks["best_gflops"]).get<double>();
        j["peak_used"] = vae ? "conv3x3" : "best";
    }
    return j;
}

// One more plain step, under libtorch's profiler (after the timed rounds, so its overhead times nothing else).
json profile_plain_step(const BenchCase& none) {
    double wall = 0;
    const std::vector<ProfiledOp> ops = profile_top_level([&] { wall = none.run().seconds; });
    return {{"step_seconds", wall}, {"rows", profile_rows(ops, wall)}};
}

// The plain step's spread over the run decides whether the ratios get a verdict.
json verdict(const BenchCase& none, double max_spread, const json& ratios) {
    const double median = median_of(none.times);
    const double spread = (*std::max_element(none.times.begin(), none.times.end()) -
                           *std::min_element(none.times.begin(), none.times.end())) / median;
    json v = {{"plain_step_spread", spread}, {"max_spread", max_spread}, {"given", spread <= max_spread}};
    if (spread > max_spread) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "the plain step's spread over the run is %.1f%%, over the %.1f%% allowed: "
                      "the machine was too noisy for a verdict", 100 * spread, 100 * max_spread);
        v["reason"] = buf;
        return v;
    }
    json missed = json::array();
    int met = 0;
    for (const auto& q : ratios)
        if (q.contains("meets_target")) q["meets_target"].get<bool>() ? ++met : (missed.push_back(q), 0);
    v["targets_met"] = met;
    v["targets_missed"] = missed;
    return v;
}

}  // namespace

const std::map<std::string, double>& ratio_targets() {
    static const std::map<std::string, double> targets{{"merge", 1.02}, {"switch", 1.03}, {"composite", 1.05}};
    return targets;
}

json run_benchmark(const BenchOptions& opt) {
    const int threads = pipeline::configure_threads(opt.threads);
    std::string dir;
    const std::string model_path = prepare_work_dir(opt, max_loras_needed(opt), dir);
    json report;
    json method_k = json::object();
    for (const std::string& name : bench_method_names(opt)) method_k[name] = bench_ks(opt, name);
    const int size = opt.quick ? 64 : opt.size;
    report["options"] = {{"size", size},           {"dtype", opt.dtype},         {"device", opt.device},
                         {"quick", opt.quick},     {"rounds", opt.repeats},      {"ranks", opt.ranks},
                         {"method_k", method_k},   {"switch_interval", opt.switch_interval},
                         {"forms", opt.forms},     {"max_spread", opt.max_spread}, {"model", model_path},
                         {"compare_diffusers", opt.compare_diffusers}};

    pipeline::StableDiffusionModel model;
    const double load_s = seconds([&] { model = pipeline::load_stable_diffusion({model_path, "", opt.dtype, opt.device}); });
    const int64_t weight_bytes = weight_bytes_of(model);
    report["load"] = {{"seconds", load_s}, {"weight_bytes", weight_bytes}};
    spdlog::info("loaded the {} model in {:.2f} s ({:.2f} GB of weights)", opt.quick ? "tiny" : "sd15", load_s, weight_bytes / 1e9);

    c10::InferenceMode im;
    auto inputs = make_bench_inputs(model, size);
    // As in a generation: the text encoder's pages and free heap blocks go before denoising.
    pipeline::release_resident_weights(*model.text_encoder);
    pipeline::release_free_memory();
    reset_peak_rss();

    BenchCase none = plain_case(inputs);
    std::vector<BenchCase> cases = lora_cases(inputs, opt, dir);
    for (BenchCase& c : attention_route_cases(inputs)) cases.push_back(std::move(c));
    std::shared_ptr<PeerProcess> peer;
    if (!opt.compare_diffusers.empty()) {
        peer = start_diffusers_peer(opt, dir, model, size, threads);
        cases.push_back(peer_case(peer, "diffusers"));
    }
    cases.push_back(vae_decode_case(inputs));
    const int tile = opt.vae_tile > 0 ? opt.vae_tile : size / 2;
    cases.push_back(vae_tiled_case(inputs, tile));
    cases.push_back(text_encode_case(inputs));

    RoundRunner runner{opt, 0, static_cast<int>((cases.size() + 1) * (opt.repeats + 1) + 2)};
    warm_up(runner, none, cases, model, weight_bytes, report);
    json peaks = timed_rounds(runner, none, cases, opt.dtype);
    // After the rounds: its two decodes would otherwise sit in the plain generation's peak RSS.
    report["vae_tiling"] = vae_seam_error(inputs, tile);
    if (opt.profile) report["step_profile"] = profile_plain_step(none);
    const json& dtype_peaks = peaks[opt.dtype];

    json steps = json::array(), others = json::array();
    steps.push_back(case_report(none, dtype_peaks));
    for (const BenchCase& c : cases) (c.meta["kind"] == "unet" ? steps : others).push_back(case_report(c, dtype_peaks));
    report["unet_steps"] = steps;
    report["other_cases"] = others;
    for (const json& c : others)
        if ((c["kind"] == "vae_decode" && !c.contains("tile")) || c["kind"] == "text_encode") report[c["kind"].get<std::string>()] = c;
    report["peaks"] = peaks;
    report["ratios"] = paired_ratios(none, cases, !opt.quick);
    report["verdict"] = verdict(none, opt.max_spread, report["ratios"]);
    // Peak since the plain steps, LoRA cases included (Composite k=5 runs 10 rows per step).
    const int64_t run_peak = peak_rss_bytes();
    report["peak_rss_bytes"] = run_peak;
    report["rss_over_weights"] = static_cast<double>(run_peak) / static_cast<double>(weight_bytes);
    report["machine"] = pipeline::runtime_info();
    report["machine"]["threads"] = threads;
    report["date"] = utc_timestamp();
    return report;
}

namespace {

std::string fmt(const char* format, double a, double b = 0, double c = 0, double d = 0) {
    char buf[160];
    std::snprintf(buf, sizeof buf, format, a, b, c, d);
    return buf;
}

void markdown_header(std::ostringstream& o, const json& r) {
    const auto& m = r["machine"];
    const auto& opt = r["options"];
    o << "Machine: " << m.value("cpu", "?") << ", " << m.value("threads", 0) << " threads, libtorch " << m.value("libtorch", "?")
      << ", BLAS " << m.value("blas_library", "?") << ". Run " << r.value("date", "?") << ".\n\n";
    o << "Size " << opt["size"] << ", dtype " << opt["dtype"].get<std::string>() << ", device " << opt["device"].get<std::string>()
      << (opt["quick"].get<bool>() ? " (quick: tiny model)" : "") << "; " << opt["rounds"]
      << " timed rounds after a warm-up round, every case once per round between two plain steps (ABAB...). Load "
      << fmt("%.2f", r["load"]["seconds"].get<double>()) << " s.\n\n";
    for (const auto& [dtype, p] : r["peaks"].items())
        o << "Peaks (" << dtype << ", best over the rounds): GEMM through BLAS " << fmt("%.1f", p["gemm"]["gflops"].get<double>())
          << " GFLOP/s, through the model's route (" << p["gemm_model_route"]["route"].get<std::string>() << ") "
          << fmt("%.1f", p["gemm_model_route"]["gflops"].get<double>()) << ", conv3x3 "
          << fmt("%.1f", p["conv3x3"]["gflops"].get<double>()) << ".\n";
    o << "A method's first step in each round is untimed (Merge fuses its weights there, once per image); its median is "
         "the \"first step\" column. Switch-like methods are timed per step over one schedule stretch, changes included.\n";
    o << "\"Of peak\": UNet steps against the best " << opt["dtype"].get<std::string>()
      << " rate above, the VAE decode against the conv3x3 rate.\n\n";
    o << "Peak RSS of a plain generation (steps + decode): " << fmt("%.2f", r["generation_peak_rss_bytes"].get<int64_t>() / 1e9)
      << " GB (" << fmt("%.2f", r["generation_rss_over_weights"].get<double>()) << " x the weights); over the whole run: "
      << fmt("%.2f", r["peak_rss_bytes"].get<int64_t>() / 1e9) << " GB (" << fmt("%.2f", r["rss_over_weights"].get<double>()) << " x).\n\n";
}

void markdown_cases(std::ostringstream& o, const json& r) {
    const json& seam = r["vae_tiling"];
    o << "Tiled VAE decode (" << seam["tile"] << " px tiles, a quarter tile blended) against the whole decode: max "
      << fmt("%.2f/255, mean %.3f/255, %.2f%% of values over 1/255", seam["max_255"].get<double>(), seam["mean_255"].get<double>(),
             100 * seam["share_over_1_255"].get<double>())
      << ".\n\n";
    o << "| case | rank | k | median s | min–max s | first step s | GFLOP | GFLOP/s | of peak |\n"
      << "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    auto row = [&](const json& c) {
        const bool unet = c["kind"] == "unet";
        const std::string form = c.value("form", "lora");
        std::string name = c["case"].get<std::string>() + (unet && form != "lora" ? " [" + form + "]" : "");
        if (c.contains("timed_over")) name += " (per step over a schedule stretch)";
        const bool counted = c.value("flops", 0.0) > 0;
        o << "| " << name << " | " << (unet && c["k"].get<int>() != 0 ? std::to_string(c["rank"].get<int>()) : "–") << " | "
          << (unet && c["k"].get<int>() != 0 ? std::to_string(c["k"].get<int>()) : "–") << " | "
          << fmt("%.3f | %.3f–%.3f", c["median_s"].get<double>(), c["min_s"].get<double>(), c["max_s"].get<double>()) << " | "
          << (c.contains("first_step_median_s") ? fmt("%.3f", c["first_step_median_s"].get<double>()) : std::string("–")) << " | "
          << (counted ? fmt("%.1f | %.1f | %.0f%%", c["flops"].get<double>() / 1e9, c["gflops"].get<double>(),
                            100 * c["fraction_of_peak"].get<double>())
                      : std::string("– | – | –"))
          << " |\n";
    };
    for (const auto& c : r["unet_steps"]) row(c);
    for (const auto& c : r["other_cases"]) row(c);
}

void markdown_profile(std::ostringstream& o, const json& r) {
    if (!r.contains("step_profile")) return;
    const json& p = r["step_profile"];
    o << "\nWhere one plain step goes (" << fmt("%.3f", p["step_seconds"].get<double>())
      << " s under libtorch's profiler; top-level operators by group):\n\n"
      << "| group | calls | s | share | GFLOP | GFLOP/s |\n| --- | --- | --- | --- | --- | --- |\n";
    for (const auto& row : p["rows"]) {
        const double gflop = row["gflop"].get<double>();
        o << "| " << row["group"].get<std::string>() << " | " << row["calls"] << " | "
          << fmt("%.3f | %.1f%%", row["seconds"].get<double>(), 100 * row["share"].get<double>()) << " | "
          << (gflop > 0 ? fmt("%.1f | %.0f", gflop, row["gflop_per_s"].get<double>()) : std::string("– | –")) << " |\n";
    }
}

void markdown_ratios(std::ostringstream& o, const json& r) {
    const json& v = r["verdict"];
    o << "\nPlain step spread over the run: " << fmt("%.1f%%", 100 * v["plain_step_spread"].get<double>()) << " (allowed "
      << fmt("%.1f%%", 100 * v["max_spread"].get<double>()) << ").\n\n";
    if (!v["given"].get<bool>()) {
        o << "**NO VERDICT**: " << v["reason"].get<std::string>() << ". The ratios below are not to be read as results.\n\n";
    }
    o << "| ratio (median of the per-round paired ratios) | rank | k | value | min–max | target |\n| --- | --- | --- | --- | --- | --- |\n";
    for (const auto& q : r["ratios"]) {
        const std::string form = q.value("form", "lora"), tag = form == "lora" ? "" : " [" + form + "]";
        const std::string against = q["against"] == "lora" ? q["case"].get<std::string>() + " [lora]" : q["against"].get<std::string>();
        std::string target = "–";
        if (q.contains("target"))
            target = fmt("≤ %.2f ", q["target"].get<double>()) + (!v["given"].get<bool>() ? "(no verdict)" : q["meets_target"].get<bool>() ? "met" : "**missed**");
        o << "| " << q["case"].get<std::string>() << tag << " / " << against << " | " << q["rank"] << " | " << q["k"] << " | "
          << fmt("%.3f | %.3f–%.3f", q["ratio"].get<double>(), q["min"].get<double>(), q["max"].get<double>()) << " | " << target << " |\n";
    }
}

}  // namespace

std::string benchmark_markdown(const json& r) {
    std::ostringstream o;
    markdown_header(o, r);
    markdown_cases(o, r);
    markdown_ratios(o, r);
    markdown_profile(o, r);
    return o.str();
}

}  // namespace multilora::bench
