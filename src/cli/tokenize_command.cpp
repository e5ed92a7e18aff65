// `multilora tokenize`: prompt -> the 77 CLIP ids as a JSON array (SD1.5's tokenizer).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::cli {

Command add_tokenize_command(CLI::App& app) {
    struct Options {
        std::string prompt, model;
        bool chunk = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("tokenize", "Print a prompt's CLIP token ids as JSON");
    sub->add_option("--prompt,-p", o->prompt, "The text to tokenize")->required();
    sub->add_option("--model,-m", o->model, "A diffusers folder whose tokenizer/ to use (default: the built-in vocabulary)");
    sub->add_flag("--chunks", o->chunk, "Print the 75-token chunks of --long-prompt chunk instead (array of arrays)");
    sub->footer("Examples:\n  multilora tokenize --prompt \"a photo of a cat\"\n"
                "  multilora tokenize --prompt \"...\" --model models/tiny-sd15");
    return [o] {
        std::shared_ptr<const text::ClipTokenizer> tok = text::ClipTokenizer::builtin();
        if (!o->model.empty()) {
            fs::path dir = fs::path(o->model) / "tokenizer";
            if (fs::is_directory(dir)) tok = text::ClipTokenizer::from_folder(dir.string());
            else if (!fs::exists(o->model)) throw RuntimeError("model not found: '" + o->model + "'");
        }
        nlohmann::json out;
        if (o->chunk) {
            out = tok->encode_chunks(o->prompt);
        } else {
            out = tok->encode_padded(o->prompt);
        }
        std::printf("%s\n", out.dump().c_str());
    };
}

}  // namespace multilora::cli
