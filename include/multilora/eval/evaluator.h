// `multilora evaluate`: the comparative VLM judge, CLIPScore and the trained world's scorer over a batch output
// folder, with DIR/eval/{judgements.jsonl, clipscores.jsonl, summary.json, summary.md, report.html,
// world_recall.png}.
//
// judgements.jsonl holds one line per HTTP exchange ("type": "exchange": the request with its images
// elided to their path and sha256, the HTTP status or transport error, the response body, the parse result)
// and one line per finished judgement ("type": "judgement", "status": "ok" or "failed", the scores, the
// answer). A judgement is identified by a fingerprint of the judge model, the prompt text, the two images'
// sha256 and their order; a rerun sends only the judgements that have no "ok" line with their fingerprint
// (so changing the judge model, the template, or regenerating an image judges again; failed ones are retried).
// The API key is never written anywhere.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "multilora/eval/judge_client.h"

namespace multilora::eval {

struct EvalOptions {
    std::string run_dir;
    std::string base = "merge";
    std::vector<std::string> compares;  // empty: every other method in the run
    std::vector<std::string> styles;    // filters (empty: all)
    std::vector<int> ks;
    bool judge = true;  // false: no requests, aggregate what judgements.jsonl holds
    JudgeSettings judge_settings;
    std::string api_key_file;  // else OPENAI_API_KEY
    std::string prompt_template_file;
    int retries = 10;  // extra requests for an unparseable answer
    int concurrency = 2;
    bool dry_run = false;
    std::vector<std::string> lora_info;  // "[STYLE=]FILE"
    bool builtin_composlora = true;
    bool clipscore = false;
    std::string clip_model;
    std::string clip_text = "prompt";  // or "triggers"
    int clip_batch = 8;
    bool world = false;    // the trained world's element detector (world_scorer.h)
    std::string detector;  // empty: detector.safetensors beside the images' model
    int bootstrap = 2000;  // resamples per world interval
    std::function<void(size_t, size_t)> on_world_image;  // (done, total) while the detector runs
};

struct EvalOutcome {
    std::string eval_dir;
    size_t requested = 0;  // judgements the run asks for (pairs × 2 orders)
    size_t ok = 0;         // valid judgements (this run's and earlier ones)
    size_t failed = 0;     // judgements that ended without scores in this run
    size_t sent = 0;       // judgements attempted in this run
    size_t clip_images = 0;
    size_t world_images = 0;
    bool dry_run = false;
};

// Throws UsageError (bad options, no batch output, missing key) or RuntimeError (unreachable endpoint,
// refused key, I/O). Judgements that fail are counted in `failed`; summary files are still written.
EvalOutcome run_evaluation(const EvalOptions& options);

}  // namespace multilora::eval
