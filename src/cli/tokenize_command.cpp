// `multilora tokenize`: prompt -> the 77 CLIP ids as a JSON array (SD1.5's tokenizer).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "multilora/text/a1111_prompt.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::cli {

Command add_tokenize_command(CLI::App& app) {
    struct Options {
        std::string prompt, model, syntax = "plain";
        bool chunk = false, parse = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* sub = app.add_subcommand("tokenize", "Print a prompt's CLIP token ids as JSON");
    sub->add_option("--prompt,-p", o->prompt, "The text to tokenize")->required();
    sub->add_option("--model,-m", o->model, "A diffusers folder whose tokenizer/ to use (default: the built-in vocabulary)");
    sub->add_flag("--chunks", o->chunk, "Print the 75-token chunks of --long-prompt chunk instead (array of arrays)");
    sub->add_option("--prompt-syntax", o->syntax,
                    "a1111: print A1111's chunks as {\"chunks\": [{\"ids\": [77 ids], \"weights\": [77 weights]}], "
                    "\"token_count\": N}, with (emphasis), [de-emphasis], BREAK and the comma back-off")
        ->capture_default_str()
        ->check(CLI::IsMember({"plain", "a1111"}));
    sub->add_flag("--parse", o->parse, "With --prompt-syntax a1111: print parse_prompt_attention's [text, weight] runs instead");
    sub->footer("Examples:\n  multilora tokenize --prompt \"a photo of a cat\"\n"
                "  multilora tokenize --prompt \"...\" --model models/tiny-sd15\n"
                "  multilora tokenize --prompt-syntax a1111 --prompt \"a (red:1.3) fox BREAK [snow]\"\n"
                "  multilora tokenize --prompt-syntax a1111 --parse --prompt \"a (((house:1.3)) [on] a hill\"");
    return [o] {
        std::shared_ptr<const text::ClipTokenizer> tok = text::ClipTokenizer::builtin();
        if (!o->model.empty()) {
            fs::path dir = fs::path(o->model) / "tokenizer";
            if (fs::is_directory(dir)) tok = text::ClipTokenizer::from_folder(dir.string());
            else if (!fs::exists(o->model)) throw RuntimeError("model not found: '" + o->model + "'");
        }
        nlohmann::json out;
        if (o->syntax == "a1111" && o->parse) {
            out = nlohmann::json::array();
            for (const auto& run : text::parse_prompt_attention(o->prompt)) out.push_back({run.text, run.weight});
        } else if (o->syntax == "a1111") {
            std::vector<text::PromptTag> tags;
            const text::WeightedPrompt p = text::a1111_tokenize(*tok, text::take_prompt_tags(o->prompt, tags));
            out = {{"chunks", nlohmann::json::array()}, {"token_count", p.token_count}};
            for (const auto& c : p.chunks) out["chunks"].push_back({{"ids", c.ids}, {"weights", c.weights}});
        } else if (o->parse) {
            throw UsageError("--parse needs --prompt-syntax a1111");
        } else if (o->chunk) {
            out = tok->encode_chunks(o->prompt);
        } else {
            out = tok->encode_padded(o->prompt);
        }
        std::printf("%s\n", out.dump().c_str());
    };
}

}  // namespace multilora::cli
