// The multilora subcommands. Each `add_*` registers its options on the app and returns the callback
// that runs it (the callback throws UsageError / RuntimeError; app.cpp maps them to exit codes).
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace multilora::cli {

using Command = std::function<void()>;

// Thrown by a command that finished its work (its outputs written) but must end with another exit status,
// e.g. `bench` with no verdict (3). The message has already been logged.
struct ExitStatus {
    int code;
};

Command add_generate_command(CLI::App& app);
Command add_tokenize_command(CLI::App& app);
Command add_make_tiny_command(CLI::App& app);
Command add_inspect_command(CLI::App& app);
Command add_evaluate_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_make_random_model_command(CLI::App& app);
Command add_batch_command(CLI::App& app);
Command add_train_lora_command(CLI::App& app);
Command add_make_world_command(CLI::App& app);
Command add_detect_command(CLI::App& app);

// Runs the CLI: 0 success, 1 runtime error, 2 usage error, 130 interrupted, or an ExitStatus's code.
int run(int argc, char** argv);

}  // namespace multilora::cli
