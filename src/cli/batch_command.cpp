// `multilora batch CONFIG.json`: every ComposLoRA set of a config through every method, resumable and
// shardable, with comparison sheets and an HTML gallery.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "cli/batch_progress.h"
#include "cli/crash_injection.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/batch/config.h"
#include "multilora/batch/plan.h"
#include "multilora/batch/runner.h"
#include "multilora/util/error.h"
#include "multilora/util/interrupt.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::cli {
namespace {

struct BatchCliOptions {
    std::string config;
    bool dry_run = false;
    bool json = false;
    std::string shard;
    bool overwrite = false;
    int threads = -1;
    int batch_images = 1;  // images per UNet forward
    bool progress = true;
    bool measure = true;
    bool gallery_only = false;
    bool quick = false;
    std::string out;
};

std::string pad_left(const std::string& s, size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; }


// Counts per k and method (to do / total), the shard, and the time estimate.
std::string summary_text(const batch::BatchConfig& c, const batch::BatchPlan& plan, const batch::Shard& shard,
                         const batch::Survey& sv, const batch::StepCost& cost) {
    std::string out;
    std::vector<std::string> seeds;
    for (auto s : c.seeds) seeds.push_back(std::to_string(s));
    out += "style " + c.style + ": " + std::to_string(plan.sets.size()) + " sets, " + std::to_string(plan.images.size()) +
           " images (methods " + join(c.methods, ", ") + "; seed" + (seeds.size() > 1 ? "s " : " ") + join(seeds, ", ") +
           "; " + std::to_string(c.steps) + " steps at " + std::to_string(c.width) + "x" + std::to_string(c.height) + ")\n";
    int shard_sets = 0;
    for (const auto& s : plan.sets) shard_sets += shard.contains(s);
    out += "shard " + shard.str() + ": " + std::to_string(shard_sets) + " sets, " + std::to_string(sv.images.size()) +
           " images; finished " + std::to_string(sv.finished) + ", to do " + std::to_string(sv.pending + sv.stale);
    if (sv.stale) out += " (" + std::to_string(sv.stale) + " stale: made with other settings)";
    out += "\n";

    // Table: rows k, columns methods; cells "to do/total" for this shard.
    std::map<int, int> sets_per_k;
    std::map<std::pair<int, std::string>, std::pair<int, int>> cells;  // (todo, total)
    for (const auto& s : plan.sets)
        if (shard.contains(s)) ++sets_per_k[s.k];
    for (size_t i : sv.images) {
        const auto& im = plan.images[i];
        auto& cell = cells[{im.k, im.method}];
        ++cell.second;
        if (sv.checks.at(i).state != batch::ImageState::Finished) ++cell.first;
    }
    const size_t w = 12;
    out += "\n  to do/images" + pad_left("k", 4) + pad_left("sets", 6);
    for (const auto& m : c.methods) out += pad_left(m, w);
    out += pad_left("all", w) + "\n";
    std::map<std::string, std::pair<int, int>> col_total;
    std::pair<int, int> grand{0, 0};
    int all_sets = 0;
    for (int k : c.ks) {
        out += std::string(14, ' ') + pad_left(std::to_string(k), 4) + pad_left(std::to_string(sets_per_k[k]), 6);
        std::pair<int, int> row{0, 0};
        for (const auto& m : c.methods) {
            auto cell = cells[{k, m}];
            out += pad_left(std::to_string(cell.first) + "/" + std::to_string(cell.second), w);
            row.first += cell.first, row.second += cell.second;
            col_total[m].first += cell.first, col_total[m].second += cell.second;
        }
        out += pad_left(std::to_string(row.first) + "/" + std::to_string(row.second), w) + "\n";
        grand.first += row.first, grand.second += row.second;
        all_sets += sets_per_k[k];
    }
    out += std::string(14, ' ') + pad_left("all", 4) + pad_left(std::to_string(all_sets), 6);
    for (const auto& m : c.methods)
        out += pad_left(std::to_string(col_total[m].first) + "/" + std::to_string(col_total[m].second), w);
    out += pad_left(std::to_string(grand.first) + "/" + std::to_string(grand.second), w) + "\n\n";

    if (!cost.known()) {
        out += "time estimate: unknown (no measured step cost yet)\n";
        return out;
    }
    double total = 0;
    std::map<std::pair<int, std::string>, double> per_image;
    for (size_t i : sv.images) {
        const auto& im = plan.images[i];
        double s = cost.image_seconds(c, im);
        per_image[{im.k, im.method}] = s;
        if (sv.checks.at(i).state != batch::ImageState::Finished) total += s;
    }
    out += "time estimate for the " + std::to_string(grand.first) + " image(s) to do: " + format_duration(total) + " (" +
           cost.source + ")\n  per image:";
    for (int k : c.ks)
        for (const auto& m : c.methods) {
            auto it = per_image.find({k, m});
            if (it != per_image.end()) out += " " + m + "/k" + std::to_string(k) + " " + format_duration(it->second) + ";";
        }
    if (!out.empty() && out.back() == ';') out.pop_back();
    out += "\n";
    return out;
}

void run_batch_command(const BatchCliOptions& o) {
    if (o.json && !o.dry_run) throw UsageError("--json prints the plan and needs --dry-run");
    if (o.gallery_only && o.dry_run) throw UsageError("--gallery-only and --dry-run cannot be combined");
    if (o.threads < -1) throw UsageError("--threads must be 0 (all cores) or a positive count");

    batch::BatchConfig config = batch::load_batch_config(o.config, o.quick);
    if (!o.out.empty()) config.out = batch::resolve_against("", o.out);  // relative to the working directory
    batch::Shard shard = o.shard.empty() ? batch::shard_from_environment() : batch::parse_shard(o.shard);
    batch::BatchPlan plan = batch::make_plan(config);
    if (plan.images.empty())
        throw UsageError(o.config + ": the plan is empty (no category combination of the requested k has LoRAs)");

    if (o.dry_run && o.json) {
        for (const auto& s : plan.sets) {
            if (!shard.contains(s)) continue;
            for (size_t i : s.images) std::printf("%s\n", batch::plan_line(config, plan.images[i]).dump().c_str());
        }
        std::fflush(stdout);
        auto missing = batch::missing_input_files(config, batch::lora_ids_used(config, plan, shard));
        if (!missing.empty())
            spdlog::warn("{} input file(s) are missing; a real run needs them (first: {})", missing.size(), missing[0]);
        return;
    }
    if (o.gallery_only) {
        int sheets = batch::write_sheets_and_gallery(config, plan, shard, true);
        spdlog::info("wrote {} comparison sheet(s) and {}", sheets, (fs::path(config.out) / "index.html").string());
        std::printf("%s\n", (fs::path(config.out) / "index.html").string().c_str());
        return;
    }

    batch::Survey sv = batch::survey(config, plan, shard);
    batch::StepCost cost = batch::cost_from_log(config);
    auto missing = batch::missing_input_files(config, batch::lora_ids_used(config, plan, shard));
    if (o.dry_run) {
        std::error_code ec;
        if (!cost.known() && o.measure && sv.pending + sv.stale > 0 && fs::exists(config.model, ec)) {
            spdlog::info("measuring the step cost (loading {}; --no-measure skips this)", config.model);
            try {
                cost = batch::measure_step_cost(config, o.threads >= 0 ? o.threads : config.threads);
            } catch (const std::exception& e) {
                spdlog::warn("could not measure the step cost: {}", e.what());
            }
        }
        std::string text = "multilora batch " + o.config + " (dry run: no image is generated or written)\n" +
                           summary_text(config, plan, shard, sv, cost);
        if (!missing.empty()) {
            text += "missing input files (a real run stops on them):\n";
            for (size_t i = 0; i < missing.size() && i < 8; ++i) text += "  " + missing[i] + "\n";
            if (missing.size() > 8) text += "  ... and " + std::to_string(missing.size() - 8) + " more\n";
        }
        std::fputs(text.c_str(), stdout);
        return;
    }

    std::string text = summary_text(config, plan, shard, sv, cost);
    if (!cost.known()) text += "(the estimate follows the first image)\n";
    std::fputs(text.c_str(), stderr);
    BatchProgress progress(o.progress, static_cast<int>(sv.images.size()), sv.finished);
    batch::BatchOptions options;
    options.shard = shard;
    options.overwrite = o.overwrite;
    options.threads = o.threads;
    options.batch_images = o.batch_images;
    batch::BatchReport report;
    CrashInjector observer(progress);  // MULTILORA_TEST_CRASH (tests) only
    try {
        report = batch::run_batch(config, plan, options, observer);
    } catch (...) {
        progress.finish();
        throw;
    }
    progress.finish();
    spdlog::info("shard {}: generated {} image(s), {} were already finished, wrote {} sheet(s) in {}", shard.str(),
                 report.generated, report.skipped, report.sheets, format_duration(report.seconds));
    std::printf("%s\n", (fs::path(config.out) / "index.html").string().c_str());
}

}  // namespace

Command add_batch_command(CLI::App& app) {
    auto o = std::make_shared<BatchCliOptions>();
    CLI::App* sub = app.add_subcommand(
        "batch", "Run every ComposLoRA set of a config through the composition methods (resumable, shardable)");
    sub->add_option("config", o->config, "Batch config (JSON; see docs/batch-config.md)")->required();
    sub->add_flag("--dry-run", o->dry_run,
                  "Print the plan: a summary with counts and a time estimate, or with --json one line per image; "
                  "generates nothing");
    sub->add_flag("--json", o->json, "With --dry-run: one JSON line per image on stdout");
    sub->add_option("--shard", o->shard,
                    "Run shard I of N (0-based, I/N): sets are dealt round-robin. Default: "
                    "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when set, else the whole plan");
    sub->add_option("--out,-o", o->out, "Output folder instead of the config's \"out\" (relative to the working directory)");
    sub->add_flag("--quick", o->quick, "Run the config's \"quick\" subset (its keys replace the top-level ones)");
    sub->add_flag("--overwrite", o->overwrite, "Regenerate images made with other settings instead of stopping");
    sub->add_option("--threads", o->threads, "CPU threads (0: all cores; default: the config's \"threads\")");
    sub->add_option("--batch-images", o->batch_images,
                    "Images that share each UNet forward: a set's seeds of one method; merge, switch, composite "
                    "and none images of any set, method and k, in plan order: faster on small images "
                    "(docs/batch-config.md), but pixels can differ by a rounding from one-at-a-time images, which stay "
                    "the exact default")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    sub->add_flag("!--no-progress", o->progress, "No progress bars");
    sub->add_flag("!--no-measure", o->measure, "With --dry-run: do not load the model to measure the step cost");
    sub->add_flag("--gallery-only", o->gallery_only,
                  "(Re)write the comparison sheets and index.html from the images on disk; generate nothing");
    sub->footer(
        "Writes OUT/STYLE/K_elements/METHOD_ID1_ID2....png with its .json manifest, sheet_ID1_ID2....png per set,\n"
        "OUT/batch.jsonl (one line per finished image) and OUT/index.html. Re-running resumes: finished images\n"
        "(PNG + manifest with a matching hash) are skipped. Exit codes: 0 done, 1 runtime error, 2 usage/config error.\n"
        "Examples:\n"
        "  multilora batch configs/tiny-smoke.json\n"
        "  multilora batch configs/world-testbed.json --quick                 # minutes: then evaluate --scorer world\n"
        "  multilora batch configs/composlora-anime.json --dry-run\n"
        "  multilora batch configs/composlora-anime.json --dry-run --json > plan.jsonl\n"
        "  multilora batch configs/composlora-reality.json --shard 3/8      # or inside a Slurm job array\n"
        "  multilora batch configs/composlora-anime.json --gallery-only      # after all shards finished");
    return [o] {
        InterruptScope interrupts;  // Ctrl-C / SIGTERM: the image in progress is discarded, exit 130
        run_batch_command(*o);
    };
}

}  // namespace multilora::cli
