// `multilora make-world`: renders the world's scenes, trains its model, one LoRA per concept and the element
// detector, then writes the evidence (pictures, the detector's accuracy, the LoRA check) and the README.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/io/atomic_file.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/util/interrupt.h"
#include "multilora/world/detector.h"
#include "multilora/world/evidence.h"
#include "multilora/world/make_world.h"
#include "multilora/world/shipped_detector.h"

namespace fs = std::filesystem;

namespace multilora::cli {
namespace {

struct MakeWorldCli {
    world::MakeWorldOptions world;
    int threads = 0;
    int check_seeds = 20;
    bool evidence_only = false;
    bool retrain_loras = false;
    bool refine_decoder = false;
};

// A progress bar per phase, replaced when the phase changes.
struct PhaseBars {
    std::unique_ptr<StepProgress> bar;
    std::string phase;
    void update(const std::string& name, int step, int total, double seconds, const std::string& detail) {
        throw_if_interrupted();  // Ctrl-C / SIGTERM: finished phases and the running one's last checkpoint stay for --resume
        if (name != phase) {
            if (bar) bar->finish();
            bar = std::make_unique<StepProgress>(name);
            phase = name;
        }
        bar->set_detail(detail);
        bar->update(step - 1, total, seconds);
    }
    void finish() { if (bar) bar->finish(), bar.reset(), phase.clear(); }
};

std::function<void(int, int)> image_ticker(PhaseBars& bars, const std::string& name) {
    auto last = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    return [&bars, name, last](int done, int total) {
        const auto now = std::chrono::steady_clock::now();
        bars.update(name, done, total, std::chrono::duration<double>(now - *last).count(), "");
        *last = now;
    };
}

world::PhaseCallback phase_bars(PhaseBars& bars) {
    return [&bars](const world::PhaseStatus& s) {
        char detail[48];
        std::snprintf(detail, sizeof detail, "loss %.4f", s.loss);
        bars.update(s.phase, s.step, s.total, s.step_seconds, detail);
    };
}

// The model and LoRAs: trained from the seed, read back (--evidence-only), or read back with every LoRA
// trained again on the model as shipped (--retrain-loras) or its VAE decoder trained further (--refine-decoder).
world::MakeWorldResult world_files(const MakeWorldCli& c, PhaseBars& bars) {
    if (!c.evidence_only && !c.retrain_loras && !c.refine_decoder) {
        auto result = world::make_world(c.world, phase_bars(bars));
        bars.finish();
        return result;
    }
    world::MakeWorldResult result = world::read_world(c.world);
    // An earlier build's lora_info may carry older descriptions of the concepts; make_world wrote the current ones.
    io::write_file_atomic(result.lora_info, world::world_lora_info().dump(4) + "\n");
    if (c.retrain_loras) world::retrain_loras(c.world, result, phase_bars(bars)), bars.finish();
    if (c.refine_decoder) world::refine_decoder(c.world, result, phase_bars(bars)), bars.finish();
    return result;
}

// Ctrl-C or SIGTERM: finished phases and the running phase's last checkpoint stay in OUT for --resume, exit 130.
void run_make_world(const MakeWorldCli& c) {
    pipeline::configure_threads(c.threads);
    InterruptScope interrupts;
    PhaseBars bars;
    world::ElementDetector detector;
    const bool keep_detector = c.retrain_loras && !c.evidence_only;
    // --retrain-loras alone keeps OUT's detector (it depends on the model, not on the LoRAs); a missing one is
    // refused before any training.
    std::string accuracy = keep_detector ? world::read_shipped_detector(c.world.out, detector) : "";
    const world::MakeWorldResult result = world_files(c, bars);
    if (!keep_detector) {
        accuracy = world::train_shipped_detector(c.world.out, c.world.quick, detector, [&](const world::DetectorStatus& s) {
            char detail[48];
            std::snprintf(detail, sizeof detail, "loss %.4f", s.loss);
            bars.update("detector", s.step, s.total, s.step_seconds, detail);
        });
        bars.finish();
    }
    const std::string pictures = c.world.out + "/pictures";
    std::vector<std::string> files = {world::write_concept_sheet(pictures + "/concepts.png")};
    world::write_loss_plot(pictures + "/losses.png", result.losses);
    files.push_back(pictures + "/losses.png");
    world::EvidenceOptions ev;
    if (c.world.quick) ev.steps = 4, ev.seeds = 1;
    auto evidence = world::write_evidence(c.world.out, pictures, ev, image_ticker(bars, "samples"));
    bars.finish();
    files.push_back(evidence.base_grid);
    files.insert(files.end(), evidence.lora_sheets.begin(), evidence.lora_sheets.end());
    const world::WorldCheck check = world::check_world(c.world.out, detector, ev, c.check_seeds, image_ticker(bars, "check"));
    bars.finish();
    const std::string sections = "## Does each LoRA draw its element?\n\nThe detector's verdicts on images made from seeds not used in training (" +
                                 std::to_string(ev.steps) + " steps, guidance " + std::to_string(ev.guidance_scale).substr(0, 3) +
                                 "):\n\n" + check.markdown() + "\n## The element detector\n\n" + accuracy + "\n";
    world::write_world_readme(c.world, result, files, sections,
                              {c.world.out + "/detector.safetensors", c.world.out + "/detector.md"});
    io::write_file_atomic(c.world.out + "/world_check.md", check.markdown());
    spdlog::info("the world is in {}", c.world.out);
    std::printf("%s\n%s\n%s", result.model.c_str(), result.lora_info.c_str(), check.markdown().c_str());
}

// The command line that continues an interrupted build: the options that the record checks, as given.
std::string resume_command(const world::MakeWorldOptions& o) {
    std::string cmd = "multilora make-world --resume --out " + o.out;
    if (o.seed != world::MakeWorldOptions{}.seed) cmd += " --seed " + std::to_string(o.seed);
    if (o.quick) cmd += " --quick";
    return cmd;
}

}  // namespace

Command add_make_world_command(CLI::App& app) {
    auto c = std::make_shared<MakeWorldCli>();
    CLI::App* sub = app.add_subcommand("make-world", "Train the small world: an SD1.5-architecture model and one LoRA per concept");
    sub->add_option("--out,-o", c->world.out, "Output folder")->capture_default_str();
    sub->add_option("--seed", c->world.seed, "World seed (scenes, initial weights, batches)")->capture_default_str();
    sub->add_flag("--quick", c->world.quick, "A smoke build: every phase a few steps on little data (about a minute)");
    CLI::Option* evidence = sub->add_flag("--evidence-only", c->evidence_only, "Keep OUT's model and LoRAs; retrain the detector, redo the pictures, the check and the README");
    CLI::Option* retrain = sub->add_flag("--retrain-loras", c->retrain_loras,
                  "Keep OUT's model (and its detector, unless --evidence-only); train every LoRA again on the model as shipped, "
                  "then redo the pictures, the check and the README");
    CLI::Option* resume = sub->add_flag("--resume", c->world.resume,
                  "Continue a build that stopped (Ctrl-C, SIGTERM, a crash): the phases it finished in OUT (VAE, UNet, decoder, "
                  "each LoRA) are kept, the VAE, UNet and decoder phases go on from their last checkpoint (every 200 steps), "
                  "and the files come out as an uninterrupted build's (same --seed and --quick)")
        ->excludes(retrain)
        ->excludes(evidence);
    sub->add_flag("--refine-decoder", c->refine_decoder,
                  "Keep OUT's LoRAs and all of its model but the VAE decoder; train the decoder further (encoder frozen) "
                  "on the model as shipped, then retrain the detector and redo the pictures, the check and the README")
        ->excludes(retrain)
        ->excludes(evidence)
        ->excludes(resume);
    CLI::Option* check_seeds =
        sub->add_option("--check-seeds", c->check_seeds, "Seeds per concept for the LoRA check (--quick: 1 unless given)")->capture_default_str();
    sub->add_option("--threads", c->threads, "CPU threads (0: all cores)")->capture_default_str();
    sub->footer("Renders 64x64 captioned scenes (five ComposLoRA categories, three concepts each), trains the VAE,\n"
                "the UNet (the CLIP text encoder keeps its seeded weights), a kohya LoRA per concept and the element\n"
                "detector, and writes OUT/world-sd15.safetensors, OUT/loras/<id>.safetensors, OUT/world_lora_info.json,\n"
                "OUT/training.json, OUT/detector.safetensors, OUT/pictures/ and OUT/README.md (with the LoRA check:\n"
                "how often the detector finds each concept with and without its LoRA). docs/world.md describes the world.\n"
                "Examples:\n"
                "  multilora make-world --out models/world\n"
                "  multilora make-world --quick --out /tmp/world-smoke\n"
                "  multilora make-world --resume --out models/world      # after Ctrl-C: keeps the finished phases\n"
                "  multilora make-world --evidence-only --out models/world\n"
                "  multilora make-world --retrain-loras --out models/world\n"
                "  multilora make-world --refine-decoder --out models/world");
    return [c, check_seeds] {
        if (c->world.quick && check_seeds->count() == 0) c->check_seeds = 1;
        try {
            run_make_world(*c);
        } catch (const Interrupted&) {
            if (!c->evidence_only && !c->retrain_loras && !c->refine_decoder)
                spdlog::warn("make-world stopped; `{}` continues from the last checkpoint", resume_command(c->world));
            throw;
        }
    };
}

}  // namespace multilora::cli
