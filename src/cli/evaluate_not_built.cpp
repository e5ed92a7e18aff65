// `multilora evaluate` in a build configured with -DMULTILORA_WITH_EVAL=OFF (no libcurl): the command is listed,
// takes any arguments, and says that it was not built (exit 2). CMake compiles this file instead of
// evaluate_command.cpp.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "multilora/util/error.h"

namespace multilora::cli {

Command add_evaluate_command(CLI::App& app) {
    CLI::App* sub = app.add_subcommand(
        "evaluate", "(not built: this multilora was configured with -DMULTILORA_WITH_EVAL=OFF)");
    sub->allow_extras();
    return [] {
        throw UsageError(
            "evaluate was not built into this multilora: it was configured with -DMULTILORA_WITH_EVAL=OFF. "
            "Reconfigure with -DMULTILORA_WITH_EVAL=ON (needs libcurl's development files) to use it.");
    };
}

}  // namespace multilora::cli
