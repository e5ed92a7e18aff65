// `multilora evaluate`: the paper's comparative VLM judge and CLIPScore over a `multilora batch` output folder.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <memory>

#include "cli/commands.h"
#include "multilora/eval/evaluator.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/util/error.h"

namespace multilora::cli {

Command add_evaluate_command(CLI::App& app) {
    struct Options {
        eval::EvalOptions eval;
        bool no_judge = false;
        bool no_builtin = false;
        int threads = 0;
    };
    auto o = std::make_shared<Options>();
    eval::EvalOptions& e = o->eval;
    eval::JudgeSettings& j = e.judge_settings;
    CLI::App* sub = app.add_subcommand(
        "evaluate", "Judge a batch run's compositions with a vision-language model (both orders) and CLIPScore");
    sub->add_option("--run", e.run_dir, "Batch output folder (holds batch.jsonl and {style}/{k}_elements/)")->required();
    sub->add_option("--base", e.base, "Method every other one is compared with")->capture_default_str();
    sub->add_option("--compare", e.compares, "Method compared with the base; repeatable (default: every other method)");
    sub->add_option("--style", e.styles, "Only these styles (repeatable)");
    sub->add_option("--k", e.ks, "Only sets of k elements (repeatable)");
    sub->add_option("--lora-info", e.lora_info,
                    "[STYLE=]FILE: LoRA names and trigger words ({category: [{id, name, trigger}]}); repeatable. "
                    "Default: DIR/{style}_lora_info.json, DIR/{style}/lora_info.json, DIR/lora_info.json, then the "
                    "built-in ComposLoRA list");
    sub->add_flag("--no-builtin-lora-info", o->no_builtin, "Do not fall back on the built-in ComposLoRA list");
    sub->add_option("--api-base", j.api_base, "OpenAI-compatible API base URL")->capture_default_str();
    sub->add_option("--judge-model", j.model, "Judge model")->capture_default_str();
    sub->add_option("--temperature", j.temperature, "Sampling temperature")->capture_default_str();
    sub->add_option("--max-tokens", j.max_tokens, "Answer length limit")->capture_default_str();
    sub->add_option("--api-key-file", e.api_key_file, "File holding the API key (default: $OPENAI_API_KEY)");
    sub->add_option("--prompt-template", e.prompt_template_file,
                    "Judge prompt template; placeholders {elements} {k} {style} {prompt}");
    sub->add_option("--retries", e.retries, "Extra requests when an answer has no parseable score block")
        ->capture_default_str();
    sub->add_option("--http-retries", j.http_retries, "Retries of one request after 429/5xx or a dropped connection")
        ->capture_default_str();
    sub->add_option("--backoff-base", j.backoff_base_s, "Seconds; backoff = min(max, base*2^n) * U(0.5,1)")
        ->capture_default_str();
    sub->add_option("--backoff-max", j.backoff_max_s, "Seconds; longest backoff (Retry-After may ask for more)")
        ->capture_default_str();
    sub->add_option("--timeout", j.timeout_s, "Seconds one request may take")->capture_default_str();
    sub->add_option("--connect-timeout", j.connect_timeout_s, "Seconds to connect")->capture_default_str();
    sub->add_option("--concurrency", e.concurrency, "Requests in flight at once")->capture_default_str();
    sub->add_flag("--dry-run", e.dry_run, "Write the requests that would be sent (DIR/eval/requests.dry-run.jsonl) "
                                          "and their count; send nothing");
    sub->add_flag("--no-judge", o->no_judge, "Send nothing; aggregate the judgements already in judgements.jsonl");
    sub->add_flag("--clipscore", e.clipscore, "Add CLIPScore (needs --clip-model)");
    sub->add_option("--clip-model", e.clip_model,
                    "CLIP folder (transformers layout, e.g. openai/clip-vit-large-patch14) or .safetensors file");
    sub->add_option("--clip-text", e.clip_text, "CLIPScore text: prompt (the generation prompt) or triggers")
        ->capture_default_str();
    sub->add_option("--clip-batch", e.clip_batch, "Images per CLIP forward")->capture_default_str();
    sub->add_option("--threads", o->threads, "CPU threads for CLIP (0: all cores)")->capture_default_str();
    sub->footer(
        "Writes DIR/eval/judgements.jsonl (every request and answer, no key), summary.json, summary.md, report.html;\n"
        "a rerun sends only what is not judged yet. Exit codes: 0 all judged, 1 runtime error or some judgements\n"
        "failed (the summary is still written), 2 usage error (bad options, no batch output, no API key).\n"
        "Examples:\n"
        "  OPENAI_API_KEY=... multilora evaluate --run out --base merge --compare switch --compare composite\n"
        "  multilora evaluate --run out --compare composite --dry-run\n"
        "  multilora evaluate --run out --no-judge --clipscore --clip-model models/clip-vit-large-patch14");
    return [o] {
        eval::EvalOptions opts = o->eval;
        opts.judge = !o->no_judge;
        opts.builtin_composlora = !o->no_builtin;
        if (!opts.clip_model.empty()) opts.clipscore = true;
        if (opts.clipscore) pipeline::configure_threads(o->threads);
        eval::EvalOutcome r = eval::run_evaluation(opts);
        if (r.failed > 0)
            throw RuntimeError(std::to_string(r.failed) + " of " + std::to_string(r.sent) +
                               " judgement(s) sent in this run got no scores (see " + r.eval_dir +
                               "/judgements.jsonl); the summary covers the rest; rerun to retry them");
    };
}

}  // namespace multilora::cli
