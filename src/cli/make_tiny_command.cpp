// `multilora make-tiny`: writes the embedded default model (both layouts).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "multilora/bench/tiny_model.h"

namespace multilora::cli {

Command add_make_tiny_command(CLI::App& app) {
    struct Options {
        std::string out = "models";
        uint64_t seed = 1234;
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("make-tiny", "Write the tiny seeded SD1.5-architecture model used by tests and the demo");
    sub->add_option("--out,-o", o->out, "Output folder")->capture_default_str();
    sub->add_option("--seed", o->seed, "Weight seed")->capture_default_str();
    sub->footer("Writes OUT/tiny-sd15.safetensors (LDM single file), OUT/tiny-sd15/ (diffusers folder) and four\n"
                "example LoRAs in OUT/loras/ (three kohya, one PEFT).\n"
                "Example:\n  multilora make-tiny --out models");
    return [o] {
        auto paths = bench::make_tiny_model(o->out, o->seed);
        spdlog::info("wrote the tiny model (seed {})", o->seed);
        std::printf("%s\n%s\n", paths.single_file.c_str(), paths.folder.c_str());
        for (const auto& l : paths.loras) std::printf("%s\n", l.c_str());
    };
}

}  // namespace multilora::cli
