// `multilora make-world`: renders the world's scenes and trains its model and one LoRA per concept.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/world/evidence.h"
#include "multilora/world/make_world.h"

namespace multilora::cli {

Command add_make_world_command(CLI::App& app) {
    auto o = std::make_shared<world::MakeWorldOptions>();
    CLI::App* sub = app.add_subcommand("make-world", "Train the small world: an SD1.5-architecture model and one LoRA per concept");
    sub->add_option("--out,-o", o->out, "Output folder")->capture_default_str();
    sub->add_option("--seed", o->seed, "World seed (scenes, initial weights, batches)")->capture_default_str();
    sub->add_flag("--quick", o->quick, "A smoke build: every phase a few steps on little data (about a minute)");
    sub->footer("Renders 128x128 captioned scenes (five ComposLoRA categories, three concepts each), trains the VAE,\n"
                "the UNet (the CLIP text encoder keeps its seeded weights) and a kohya LoRA per concept, and writes\n"
                "OUT/world-sd15.safetensors, OUT/loras/<id>.safetensors, OUT/world_lora_info.json, OUT/training.json.\n"
                "docs/world.md describes the world.\n"
                "Examples:\n"
                "  multilora make-world --out models/world\n"
                "  multilora make-world --quick --out /tmp/world-smoke");
    return [o] {
        std::unique_ptr<StepProgress> progress;
        std::string phase;
        auto result = world::make_world(*o, [&](const world::PhaseStatus& s) {
            if (s.phase != phase) {
                if (progress) progress->finish();
                progress = std::make_unique<StepProgress>(s.phase);
                phase = s.phase;
            }
            char detail[48];
            std::snprintf(detail, sizeof detail, "loss %.4f", s.loss);
            progress->set_detail(detail);
            progress->update(s.step - 1, s.total, s.step_seconds);
        });
        if (progress) progress->finish();
        const std::string pictures = o->out + "/pictures";
        std::vector<std::string> files;
        world::write_loss_plot(pictures + "/losses.png", result.losses);
        files.push_back(pictures + "/losses.png");
        world::EvidenceOptions ev;
        if (o->quick) ev.steps = 4, ev.seeds = 1;
        StepProgress samples("samples");
        auto last = std::chrono::steady_clock::now();
        auto evidence = world::write_evidence(o->out, pictures, ev, [&](int done, int total) {
            const auto now = std::chrono::steady_clock::now();
            samples.update(done - 1, total, std::chrono::duration<double>(now - last).count());
            last = now;
        });
        samples.finish();
        files.push_back(evidence.base_grid);
        files.insert(files.end(), evidence.lora_sheets.begin(), evidence.lora_sheets.end());
        world::write_world_readme(*o, result, files);
        spdlog::info("the world is in {} (vae {:.0f} s, unet {:.0f} s, loras {:.0f} s)", o->out, result.seconds["vae"],
                     result.seconds["unet"], result.seconds["loras"]);
        std::printf("%s\n%s\n", result.model.c_str(), result.lora_info.c_str());
    };
}

}  // namespace multilora::cli
