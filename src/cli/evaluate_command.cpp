// `multilora evaluate`: the paper's comparative VLM judge, CLIPScore and the trained world's element detector over
// a `multilora batch` output folder.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/eval/evaluator.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/util/error.h"

namespace multilora::cli {

namespace {

struct Options {
    eval::EvalOptions eval;
    bool no_judge = false;
    bool no_builtin = false;
    int threads = 0;
    std::vector<std::string> scorers;
    bool progress = true;
};

// --scorer picks exactly the scorers that run; without it: the judge (unless --no-judge), CLIPScore when asked.
void choose_scorers(const Options& o, eval::EvalOptions& opts) {
    auto asked = [&](const char* s) { return std::find(o.scorers.begin(), o.scorers.end(), s) != o.scorers.end(); };
    if (!o.scorers.empty()) {
        if (o.no_judge && asked("judge")) throw UsageError("--no-judge contradicts --scorer judge");
        opts.judge = asked("judge");
        opts.clipscore = asked("clipscore");
        opts.world = asked("world");
        if (!opts.clip_model.empty() && !opts.clipscore)
            throw UsageError("--clip-model is given but --scorer does not name clipscore");
    } else {
        opts.judge = !o.no_judge;
        if (!opts.clip_model.empty()) opts.clipscore = true;
    }
    if (!opts.detector.empty() && !opts.world) throw UsageError("--detector is for --scorer world");
    opts.builtin_composlora = !o.no_builtin;
}

}  // namespace

Command add_evaluate_command(CLI::App& app) {
    auto o = std::make_shared<Options>();
    eval::EvalOptions& e = o->eval;
    eval::JudgeSettings& j = e.judge_settings;
    CLI::App* sub = app.add_subcommand(
        "evaluate",
        "Score a batch run's compositions: a vision-language judge (both orders), CLIPScore, or the trained world's "
        "element detector");
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
    sub->add_option("--scorer", o->scorers,
                    "judge, clipscore or world; repeatable; only these run (default: the judge, plus CLIPScore with "
                    "--clip-model)")
        ->check(CLI::IsMember({"judge", "clipscore", "world"}));
    sub->add_option("--detector", e.detector,
                    "World scorer: the element detector (default: detector.safetensors beside the images' model)");
    sub->add_option("--bootstrap", e.bootstrap, "World scorer: bootstrap resamples per 95% interval (0: none)")
        ->capture_default_str();
    sub->add_option("--threads", o->threads, "CPU threads for CLIP and the world detector (0: all cores)")
        ->capture_default_str();
    sub->add_flag("!--no-progress", o->progress, "No progress bar");
    sub->footer(
        "Writes DIR/eval/judgements.jsonl (every request and answer, no key), summary.json, summary.md, report.html;\n"
        "a rerun sends only what is not judged yet. Exit codes: 0 all judged, 1 runtime error or some judgements\n"
        "failed (the summary is still written), 2 usage error (bad options, no batch output, no API key).\n"
        "Examples:\n"
        "  OPENAI_API_KEY=... multilora evaluate --run out --base merge --compare switch --compare composite\n"
        "  multilora evaluate --run out --compare composite --dry-run\n"
        "  multilora evaluate --run out --no-judge --clipscore --clip-model models/clip-vit-large-patch14\n"
        "  multilora evaluate --run out/world-testbed-quick --scorer world      # the trained world: offline\n"
        "  multilora evaluate --run out/world-testbed-quick --scorer world --scorer judge   # both, one summary");
    return [o] {
        eval::EvalOptions opts = o->eval;
        choose_scorers(*o, opts);
        if (opts.clipscore || opts.world) pipeline::configure_threads(o->threads);
        StepProgress bar("world scorer", o->progress);
        if (opts.world)
            opts.on_world_image = [&bar, start = std::chrono::steady_clock::now()](size_t done, size_t total) {
                const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                bar.update(static_cast<int>(done) - 1, static_cast<int>(total), done ? s / done : 0);
            };
        eval::EvalOutcome r = eval::run_evaluation(opts);
        bar.finish();
        if (r.failed > 0)
            throw RuntimeError(std::to_string(r.failed) + " of " + std::to_string(r.sent) +
                               " judgement(s) sent in this run got no scores (see " + r.eval_dir +
                               "/judgements.jsonl); the summary covers the rest; rerun to retry them");
    };
}

}  // namespace multilora::cli
