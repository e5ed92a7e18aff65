// `multilora bench`: per-step costs of every composition method at full SD1.5 size, with no download.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "multilora/cli/commands.h"
#include "multilora/io/atomic_file.h"
#include "multilora/pipeline/benchmark.h"
#include "multilora/pipeline/random_model.h"
#include "multilora/pipeline/tiny_model.h"
#include "multilora/util/error.h"

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

}  // namespace

Command add_bench_command(CLI::App& app) {
    struct Options {
        pipeline::BenchOptions bench;
        std::string ranks = "16,128", merge_k = "1,5", composite_k = "2,3,4,5";
        std::string json_out = "bench.json", md_out = "bench.md";
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("bench", "Measure each composition method's UNet step cost (random SD1.5 weights)");
    sub->add_option("--size", o->bench.size, "Image side in pixels")->capture_default_str()->check(CLI::Range(64, 2048));
    sub->add_option("--dtype", o->bench.dtype, "Compute dtype")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
    sub->add_option("--device", o->bench.device, "cpu or cuda[:N]")->capture_default_str();
    sub->add_option("--threads", o->bench.threads, "CPU threads (0: all cores)")->capture_default_str();
    sub->add_option("--repeats", o->bench.repeats, "Timed repeats per case")->capture_default_str()->check(CLI::Range(1, 100));
    sub->add_option("--ranks", o->ranks, "LoRA ranks to measure (comma-separated)")->capture_default_str();
    sub->add_option("--merge-k", o->merge_k, "Merge: LoRA counts")->capture_default_str();
    sub->add_option("--composite-k", o->composite_k, "Composite: LoRA counts")->capture_default_str();
    sub->add_option("--switch-k", o->bench.switch_k, "Switch: LoRA count")->capture_default_str();
    sub->add_option("--work-dir", o->bench.work_dir, "Where the random model and LoRAs go (reused when present)");
    sub->add_option("--json", o->json_out, "Report file (JSON)")->capture_default_str();
    sub->add_option("--markdown", o->md_out, "Report file (markdown table)")->capture_default_str();
    sub->add_flag("--quick", o->bench.quick, "The tiny model at 64x64: seconds, for smoke tests");
    sub->footer("Examples:\n  multilora bench --quick\n"
                "  multilora bench --size 512 --ranks 128 --repeats 3 --work-dir /var/tmp/mlbench\n"
                "  multilora bench --device cuda --dtype fp16");
    return [o] {
        o->bench.ranks = parse_ints(o->ranks, "--ranks");
        o->bench.merge_k = parse_ints(o->merge_k, "--merge-k");
        o->bench.composite_k = parse_ints(o->composite_k, "--composite-k");
        if (o->bench.quick) {
            o->bench.ranks = {4};
            o->bench.repeats = std::min(o->bench.repeats, 2);
            o->bench.switch_interval = 2;
        }
        o->bench.self_exe = fs::read_symlink("/proc/self/exe").string();
        auto report = pipeline::run_benchmark(o->bench);
        io::write_file_atomic(o->json_out, report.dump(2) + "\n");
        std::string md = pipeline::benchmark_markdown(report);
        io::write_file_atomic(o->md_out, md);
        std::printf("%s", md.c_str());
        spdlog::info("wrote {} and {}", o->json_out, o->md_out);
    };
}

Command add_make_random_model_command(CLI::App& app) {
    struct Options {
        std::string preset = "sd15", out, ranks = "16";
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
    sub->add_flag("--loras-only", o->loras_only, "Write only the LoRAs (the checkpoint is already there)");
    return [o] {
        pipeline::TinyModelConfigs cfg = pipeline::tiny_configs();
        if (o->preset == "sd15") cfg = {models::UNetConfig::v1_5(), models::VaeConfig::v1_5(), models::ClipTextConfig::v1_5()};
        fs::create_directories(o->out);
        if (!o->loras_only)
            pipeline::write_random_checkpoint((fs::path(o->out) / ("bench-" + o->preset + ".safetensors")).string(), cfg, o->seed);
        for (int rank : parse_ints(o->ranks, "--ranks"))
            pipeline::write_random_loras(o->out, cfg, o->loras, rank, o->seed + static_cast<uint64_t>(rank));
    };
}

}  // namespace multilora::cli
