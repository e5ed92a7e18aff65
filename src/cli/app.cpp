#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <map>

#include "cli/commands.h"
#include "multilora/util/error.h"
#include "multilora/util/interrupt.h"
#include "multilora/util/version.h"

namespace multilora::cli {

int run(int argc, char** argv) {
    auto logger = spdlog::stderr_color_mt("multilora");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("[%H:%M:%S] %^%l%$: %v");

    CLI::App app{"multilora: compose several LoRAs in Stable Diffusion v1.5 images (arXiv 2402.16843)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("multilora ") + multilora::version());
    bool verbose = false, quiet = false;
    app.add_flag("-v,--verbose", verbose, "Debug-level logging");
    app.add_flag("-q,--quiet", quiet, "Warnings and errors only");
    app.footer(
        "Examples:\n"
        "  multilora make-tiny --out models\n"
        "  multilora generate --model models/tiny-sd15.safetensors --prompt \"a red fox\" --out out\n"
        "  multilora generate --model models/tiny-sd15.safetensors --prompt \"a red fox\" \\\n"
        "      --lora models/loras/tiny-character.safetensors --lora models/loras/tiny-style.safetensors --method switch\n"
        "  multilora inspect models/loras/tiny-style.safetensors\n"
        "  multilora tokenize --prompt \"a photo of a cat\"\n"
        "Run 'multilora COMMAND --help' for a command's options.");

    std::map<CLI::App*, Command> commands;
    auto reg = [&](Command (*add)(CLI::App&)) {
        size_t before = app.get_subcommands({}).size();
        Command c = add(app);
        commands[app.get_subcommands({}).at(before)] = std::move(c);
    };
    reg(add_generate_command);
    reg(add_tokenize_command);
    reg(add_make_tiny_command);
    reg(add_inspect_command);
    reg(add_evaluate_command);
    reg(add_bench_command);
    reg(add_make_random_model_command);
    reg(add_batch_command);
    reg(add_train_lora_command);
    reg(add_make_world_command);
    reg(add_detect_command);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    }
    spdlog::set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::warn : spdlog::level::info);
    try {
        for (auto& [sub, command] : commands)
            if (sub->parsed()) command();
        return 0;
    } catch (const ExitStatus& e) {
        return e.code;
    } catch (const UsageError& e) {
        spdlog::error("{}", e.what());
        return 2;
    } catch (const Interrupted& e) {
        spdlog::error("{}", e.what());
        return 130;
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}

}  // namespace multilora::cli
