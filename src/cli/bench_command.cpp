// `multilora bench`: per-step costs of every composition method at full SD1.5 size, with no download.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/compose/registry.h"
#include "multilora/io/atomic_file.h"
#include "multilora/bench/benchmark.h"
#include "multilora/bench/random_model.h"
#include "multilora/bench/tiny_model.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::cli {
namespace {

std::vector<int> parse_ints(const std::string& text, const char* what) {
    std::vector<int> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        try {
            size_t used = 0;
            int v = std::stoi(item, &used);
            if (used != item.size() || v < 0) throw std::invalid_argument(item);
            out.push_back(v);
        } catch (const std::exception&) {
            throw UsageError(std::string(what) + ": '" + item + "' is not a non-negative integer");
        }
    }
    return out;
}

// "a,b" -> {"a", "b"}, each one of `allowed` (when given); throws UsageError naming `what`.
std::vector<std::string> split_list(const std::string& text, const char* what, const std::vector<std::string>& allowed) {
    std::vector<std::string> out;
    for (const std::string& part : split(text, ',')) {
        const std::string item = trim(part);
        if (item.empty()) continue;
        if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), item) == allowed.end())
            throw UsageError(std::string(what) + ": '" + item + "' is not one of " + join(allowed, ", "));
        out.push_back(item);
    }
    if (out.empty()) throw UsageError(std::string(what) + " names nothing");
    return out;
}

const char* bench_footer() {
    return "Examples:\n  multilora bench --quick\n"
           "  multilora bench --size 512 --ranks 128 --repeats 3 --work-dir /var/tmp/mlbench\n"
           "  multilora bench --size 512 --ranks 128 --k composite=2,5 --k merge=5\n"
           "  multilora bench --size 512 --ranks 32 --forms lora,loha,lokr --methods merge,composite --k composite=2\n"
           "  multilora bench --size 512 --ranks 128 --repeats 5 --max-spread 0.03 --compare-diffusers python3\n"
           "  multilora bench --size 512 --ranks 128 --methods merge --k merge=5 --repeats 1 --profile\n"
           "  multilora bench --device cuda --dtype fp16\n"
           "Exit status: 0 with a verdict, 3 when the plain step's spread was over --max-spread (the report is "
           "written, marked NO VERDICT).";
}

}  // namespace

Command add_bench_command(CLI::App& app) {
    struct Options {
        bench::BenchOptions bench;
        std::string ranks = "16,128";
        std::string forms = "lora", methods;
        std::vector<std::string> method_k;  // METHOD=K1,K2 (and the older --merge-k, --composite-k, --switch-k)
        std::string json_out = "bench.json", md_out = "bench.md";
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("bench", "Measure each composition method's UNet step cost (random SD1.5 weights)");
    sub->add_option("--size", o->bench.size, "Image side in pixels")->capture_default_str()->check(CLI::Range(64, 2048));
    sub->add_option("--dtype", o->bench.dtype, "Compute dtype")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
    sub->add_option("--device", o->bench.device, "cpu or cuda[:N]")->capture_default_str();
    sub->add_option("--threads", o->bench.threads, "CPU threads (0: all cores)")->capture_default_str();
    sub->add_option("--repeats", o->bench.repeats,
                    "Timed rounds: each runs the plain step and every case once, in turn (after one warm-up round)")
        ->capture_default_str()
        ->check(CLI::Range(1, 100));
    sub->add_option("--max-spread", o->bench.max_spread,
                    "Largest spread (max - min) / median of the plain step for which the run gives a verdict; over it, "
                    "the report says NO VERDICT and bench exits with 3")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 10.0));
    sub->add_option("--compare-diffusers", o->bench.compare_diffusers,
                    "A Python with diffusers and torch: its UNet2DConditionModel (SD1.5 config, random weights) is timed "
                    "in the same rounds");
    sub->add_option("--ranks", o->ranks, "LoRA ranks to measure (comma-separated)")->capture_default_str();
    sub->add_option("--forms", o->forms,
                    "Adapter forms to measure, comma-separated: lora, loha, lokr (same layers and rank; LoHa and LoKr "
                    "are also reported against plain LoRA)")
        ->capture_default_str();
    sub->add_option("--methods", o->methods, "Only these composition methods, comma-separated (default: all)");
    std::string method_list;
    for (const compose::MethodInfo* m : compose::registry().methods())
        if (m->min_loras > 0)
            method_list += "\n  " + m->name + ": k = " + join_ints(m->bench_k) + " by default (" + m->cost + " UNet rows per step)";
    sub->add_option("--k", o->method_k,
                    "LoRA counts of one method, METHOD=K1,K2,... (repeatable; METHOD= skips it). Cases:" + method_list);
    for (const char* name : {"merge", "composite", "switch"})
        sub->add_option_function<std::string>(
            std::string("--") + name + "-k", [o, name](const std::string& v) { o->method_k.push_back(std::string(name) + "=" + v); },
            std::string("Same as --k ") + name + "=...");
    sub->add_option("--vae-tile", o->bench.vae_tile,
                    "Tile side of the tiled VAE decode timed beside the whole one, with its seam error (default: half "
                    "the size)")
        ->check(CLI::Range(0, 8192));
    sub->add_option("--work-dir", o->bench.work_dir, "Where the random model and LoRAs go (reused when present)");
    sub->add_option("--json", o->json_out, "Report file (JSON)")->capture_default_str();
    sub->add_option("--markdown", o->md_out, "Report file (markdown table)")->capture_default_str();
    sub->add_flag("--quick", o->bench.quick, "The tiny model at 64x64: seconds, for smoke tests");
    sub->add_flag("--profile", o->bench.profile,
                  "After the rounds, profile one plain step with libtorch's profiler: where its time goes (3x3 "
                  "convolutions by feature-map size, linear layers, attention, norms, ...), with GFLOP/s per row");
    sub->footer(bench_footer());
    return [o] {
        o->bench.ranks = parse_ints(o->ranks, "--ranks");
        o->bench.forms = split_list(o->forms, "--forms", {"lora", "loha", "lokr"});
        if (!o->methods.empty())
            for (const std::string& name : split_list(o->methods, "--methods", {})) {
                compose::registry().get(name, "--methods");
                o->bench.methods.push_back(name);
            }
        for (const auto& text : o->method_k) {
            auto [name, list] = compose::split_assignment(text, "--k");
            compose::registry().get(name, "--k");
            o->bench.method_k[name] = list.empty() ? std::vector<int>{} : parse_ints(list, "--k");
        }
        if (o->bench.quick) {
            o->bench.ranks = {4};
            o->bench.switch_interval = 2;
        }
        o->bench.self_exe = fs::read_symlink("/proc/self/exe").string();
        StepProgress progress("bench");
        o->bench.progress = [&progress](int done, int total, double seconds, const std::string& what) {
            progress.set_detail(what);
            progress.update(done - 1, total, seconds);  // update() takes the 0-based index
        };
        auto report = bench::run_benchmark(o->bench);
        progress.finish();
        io::write_file_atomic(o->json_out, report.dump(2) + "\n");
        std::string md = bench::benchmark_markdown(report);
        io::write_file_atomic(o->md_out, md);
        std::printf("%s", md.c_str());
        spdlog::info("wrote {} and {}", o->json_out, o->md_out);
        if (!report["verdict"]["given"].get<bool>()) {
            spdlog::error("no verdict: {}", report["verdict"]["reason"].get<std::string>());
            throw ExitStatus{3};
        }
    };
}

Command add_make_random_model_command(CLI::App& app) {
    struct Options {
        std::string preset = "sd15", out, ranks = "16", form = "lora";
        int loras = 5;
        uint64_t seed = 7;
        bool loras_only = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("make-random-model", "Write a seeded random SD1.5 (or tiny) checkpoint and LoRAs");
    sub->group("");  // internal: used by `bench`
    sub->add_option("--preset", o->preset)->check(CLI::IsMember({"sd15", "tiny"}));
    sub->add_option("--out", o->out)->required();
    sub->add_option("--loras", o->loras);
    sub->add_option("--ranks", o->ranks);
    sub->add_option("--seed", o->seed);
    sub->add_option("--form", o->form)->check(CLI::IsMember({"lora", "loha", "lokr"}));
    sub->add_flag("--loras-only", o->loras_only, "Write only the LoRAs (the checkpoint is already there)");
    return [o] {
        bench::TinyModelConfigs cfg = bench::tiny_configs();
        if (o->preset == "sd15") cfg = {models::UNetConfig::v1_5(), models::VaeConfig::v1_5(), text::ClipTextConfig::v1_5()};
        fs::create_directories(o->out);
        if (!o->loras_only)
            bench::write_random_checkpoint((fs::path(o->out) / ("bench-" + o->preset + ".safetensors")).string(), cfg, o->seed);
        for (int rank : parse_ints(o->ranks, "--ranks"))
            bench::write_random_loras(o->out, cfg, o->loras, rank, o->seed + static_cast<uint64_t>(rank), o->form);
    };
}

}  // namespace multilora::cli
