#include "multilora/eval/evaluator.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "multilora/eval/aggregate.h"
#include "multilora/eval/clip_score.h"
#include "multilora/eval/judge_prompt.h"
#include "multilora/eval/report.h"
#include "multilora/eval/run_index.h"
#include "multilora/eval/score_parser.h"
#include "multilora/eval/text_util.h"
#include "multilora/eval/world_scorer.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/jsonl.h"
#include "multilora/io/sha256.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/version.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace multilora::eval {

namespace {

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    size_t i = 0;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(i);
}

// A write into a .jsonl file that may end in a cut line: start on a fresh line first.
void ensure_newline_at_end(const fs::path& path) {
    std::error_code ec;
    if (!fs::exists(path, ec) || fs::file_size(path, ec) == 0) return;
    std::ifstream in(path, std::ios::binary);
    in.seekg(-1, std::ios::end);
    char c = 0;
    in.get(c);
    if (c != '\n') io::append_line_durable(path.string(), "");
}

json scores_json(const JudgeScores& s) {
    return json{{"image1", {{"composition", s.composition[0]}, {"image", s.image[0]}}},
                {"image2", {{"composition", s.composition[1]}, {"image", s.image[1]}}}};
}

JudgeScores scores_from_json(const json& j) {
    JudgeScores s;
    s.composition[0] = j.at("image1").at("composition").get<double>();
    s.image[0] = j.at("image1").at("image").get<double>();
    s.composition[1] = j.at("image2").at("composition").get<double>();
    s.image[1] = j.at("image2").at("image").get<double>();
    return s;
}

std::string read_api_key(const EvalOptions& o) {
    if (!o.api_key_file.empty()) {
        std::ifstream in(o.api_key_file);
        if (!in) throw UsageError("--api-key-file: cannot read '" + o.api_key_file + "'");
        std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        key = trim(key);
        if (key.empty()) throw UsageError("--api-key-file: '" + o.api_key_file + "' is empty");
        if (key.find('\n') != std::string::npos)
            throw UsageError("--api-key-file: '" + o.api_key_file + "' must hold the key alone on one line");
        return key;
    }
    const char* env = std::getenv("OPENAI_API_KEY");
    std::string key = env ? trim(env) : "";
    if (key.empty())
        throw UsageError(
            "no API key for the judge: set OPENAI_API_KEY or pass --api-key-file FILE "
            "(--dry-run needs none; --no-judge only aggregates earlier judgements)");
    return key;
}

struct Job {
    size_t set = 0;
    std::string compare;
    bool compare_first = false;
    std::string method[2];
    std::string png[2];
    std::string sha[2];
    std::string fingerprint;
};

// What one evaluation carries from phase to phase.
struct Evaluation {
    Evaluation(const EvalOptions& options, std::string chat_url) : o(options), url(std::move(chat_url)) {}

    const EvalOptions& o;
    const std::string url;  // the judge's chat completions endpoint
    RunIndex index;
    std::vector<CompositionSet> sets;  // those --style/--k select
    std::vector<std::string> styles;   // theirs, first-appearance order
    std::vector<std::string> compares;
    LoraCatalog catalog;
    fs::path eval_dir;
    EvalOutcome outcome;
    std::map<std::string, std::string> sha_cache;
    std::string template_name = "built-in";
    std::vector<std::string> prompts;  // the judge prompt of each set
    std::vector<Job> jobs;
    bool judging = false;
    fs::path log_path;
    std::map<std::string, json> judged;  // fingerprint -> ok judgement line
    std::vector<size_t> pending;         // the jobs without one
    std::map<std::string, json> fresh;   // fingerprint -> ok judgement line written this run
    std::vector<JudgedPair> pairs;
    json usage = {{"prompt_tokens", 0}, {"completion_tokens", 0}};
    json clip_summary = nullptr;
    json world_summary = nullptr;
    std::map<std::string, std::map<std::string, double>> clip_by_set;  // set idx -> method -> score

    std::string sha_of(const std::string& path) {
        auto it = sha_cache.find(path);
        if (it != sha_cache.end()) return it->second;
        std::string h = io::sha256_file_hex(path);
        sha_cache[path] = h;
        return h;
    }
};

// ---- options ----

// Throws UsageError for an option out of range; returns the judge's chat completions URL.
std::string validate_options(const EvalOptions& o) {
    if (o.retries < 0) throw UsageError("--retries must be >= 0");
    if (o.concurrency < 1 || o.concurrency > 64) throw UsageError("--concurrency must be between 1 and 64");
    const JudgeSettings& js = o.judge_settings;
    if (js.http_retries < 0) throw UsageError("--http-retries must be >= 0");
    if (js.backoff_base_s < 0 || js.backoff_max_s < 0) throw UsageError("--backoff-base/--backoff-max must be >= 0");
    if (js.timeout_s <= 0 || js.connect_timeout_s <= 0) throw UsageError("--timeout must be > 0");
    if (js.max_tokens <= 0) throw UsageError("--max-tokens must be > 0");
    if (js.temperature < 0 || js.temperature > 2) throw UsageError("--temperature must be between 0 and 2");
    if (js.model.empty()) throw UsageError("--judge-model must not be empty");
    if (o.clip_text != "prompt" && o.clip_text != "triggers")
        throw UsageError("--clip-text must be 'prompt' or 'triggers', not '" + o.clip_text + "'");
    if (o.clipscore && o.clip_model.empty()) throw UsageError("--clipscore needs --clip-model PATH");
    if (o.clip_batch < 1) throw UsageError("--clip-batch must be >= 1");
    if (o.bootstrap < 0 || o.bootstrap > 1000000) throw UsageError("--bootstrap must be between 0 and 1000000");
    const std::string url = chat_completions_url(js.api_base);
    if (o.judge && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
        throw UsageError("--api-base must start with http:// or https:// (got '" + js.api_base + "')");
    return url;
}

// ---- the run ----

// Indexes the run and keeps the composition sets --style/--k select.
void select_sets(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    ev.index = index_run(o.run_dir);
    for (auto& s : ev.index.sets) {
        if (!o.styles.empty() && std::find(o.styles.begin(), o.styles.end(), s.style) == o.styles.end()) continue;
        if (!o.ks.empty() && std::find(o.ks.begin(), o.ks.end(), s.k) == o.ks.end()) continue;
        ev.sets.push_back(s);
    }
    if (ev.sets.empty()) throw UsageError("no composition set of '" + o.run_dir + "' matches --style/--k");
}

// The selected sets' styles, and the methods compared with the base: --compare, else every other method
// with images. Throws UsageError for a method the selected sets have no images of.
void resolve_methods(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    std::vector<std::string> methods_present;
    for (const auto& s : ev.sets) {
        for (const auto& [m, img] : s.images)
            if (std::find(methods_present.begin(), methods_present.end(), m) == methods_present.end())
                methods_present.push_back(m);
        if (std::find(ev.styles.begin(), ev.styles.end(), s.style) == ev.styles.end()) ev.styles.push_back(s.style);
    }
    auto present = [&](const std::string& m) {
        return std::find(methods_present.begin(), methods_present.end(), m) != methods_present.end();
    };
    const std::string found = join(methods_present, ", ");
    if (!present(o.base))
        throw UsageError("--base " + o.base + ": the run has no images of that method (found: " + found + ")");
    ev.compares = o.compares;
    if (ev.compares.empty()) {
        for (const auto& m : ev.index.methods)
            if (m != o.base && present(m)) ev.compares.push_back(m);
        if (ev.compares.empty() && o.judge && !o.clipscore)
            throw UsageError("the run has only '" + o.base + "' images; nothing to compare (found: " + found + ")");
    }
    for (const auto& c : ev.compares) {
        if (c == o.base) throw UsageError("--compare " + c + " is the base method");
        if (!present(c))
            throw UsageError("--compare " + c + ": the run has no images of that method (found: " + found + ")");
    }
}

// Names and trigger words of the sets' LoRAs: --lora-info files, files next to the run, batch.jsonl, built-in.
void describe_loras(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    LoraCatalog& catalog = ev.catalog;
    catalog.use_builtin_composlora(o.builtin_composlora);
    for (const auto& spec : o.lora_info) {
        auto eq = spec.find('=');
        if (eq != std::string::npos && eq > 0 && spec.substr(0, eq).find('/') == std::string::npos)
            catalog.add_file(spec.substr(0, eq), spec.substr(eq + 1));
        else
            catalog.add_file("", spec);
    }
    catalog.discover(o.run_dir, ev.styles);
    catalog.add_logged(ev.index);
    std::set<std::string> undescribed;
    for (auto& s : ev.sets)
        if (catalog.describe(s) > 0)
            for (const auto& e : s.elements)
                if (!e.described) undescribed.insert(s.style + "/" + e.id);
    if (!undescribed.empty())
        spdlog::warn("{} LoRA id(s) have no name or trigger words ({}{}); the judge sees only their ids and the "
                     "generation prompt. Pass --lora-info [STYLE=]FILE (ComposLoRA's lora_info format)",
                     undescribed.size(), *undescribed.begin(), undescribed.size() > 1 ? ", ..." : "");
}

// The world scorer's checks and detection run before eval/ is created, so a refused run leaves nothing.
void run_world_scorer(Evaluation& ev) {
    WorldScoreOptions w;
    w.detector = ev.o.detector;
    w.base = ev.o.base;
    w.compares = ev.compares;
    w.bootstrap = ev.o.bootstrap;
    w.eval_dir = (fs::path(ev.o.run_dir) / "eval").string();
    ev.world_summary = score_world(ev.sets, w, ev.o.on_world_image);
    ev.outcome.world_images = ev.world_summary["images"].size();
}

void prepare_eval_dir(Evaluation& ev) {
    ev.eval_dir = fs::path(ev.o.run_dir) / "eval";
    if (!ev.o.dry_run) io::ensure_writable_dir(ev.eval_dir.string());
    ev.outcome.eval_dir = ev.eval_dir.string();
    ev.outcome.dry_run = ev.o.dry_run;
}

// ---- planning the judgements ----

// The judge prompt template: the built-in one, or --prompt-template's file (its name goes to the summary).
std::string load_template(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    std::string template_text = default_judge_template();
    if (!o.prompt_template_file.empty()) {
        std::ifstream in(o.prompt_template_file);
        if (!in) throw UsageError("--prompt-template: cannot read '" + o.prompt_template_file + "'");
        template_text.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (trim(template_text).empty())
            throw UsageError("--prompt-template: '" + o.prompt_template_file + "' is empty");
        ev.template_name = o.prompt_template_file;
        if (ascii_lower(template_text).find("composition quality") == std::string::npos)
            spdlog::warn("--prompt-template: the template does not mention \"Composition Quality\"; answers are "
                         "parsed for \"Image N: Composition Quality: x/10, Image Quality: y/10\"");
    }
    return template_text;
}

void render_prompts(Evaluation& ev, const std::string& template_text) {
    ev.prompts.resize(ev.sets.size());
    for (size_t i = 0; i < ev.sets.size(); ++i) {
        const auto& s = ev.sets[i];
        PromptContext ctx{s.elements, s.style, s.k, s.prompt()};
        ev.prompts[i] = render_judge_prompt(template_text, ctx);
    }
}

// Two judgements (base first, compare first) per set and compared method that both have an image.
void plan_jobs(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    for (size_t i = 0; i < ev.sets.size(); ++i) {
        const auto& s = ev.sets[i];
        auto b = s.images.find(o.base);
        if (b == s.images.end()) continue;
        for (const auto& c : ev.compares) {
            auto ci = s.images.find(c);
            if (ci == s.images.end()) continue;
            for (bool compare_first : {false, true}) {
                Job j;
                j.set = i;
                j.compare = c;
                j.compare_first = compare_first;
                const RunImage& first = compare_first ? ci->second : b->second;
                const RunImage& second = compare_first ? b->second : ci->second;
                j.method[0] = first.method;
                j.method[1] = second.method;
                j.png[0] = first.png;
                j.png[1] = second.png;
                ev.jobs.push_back(j);
            }
        }
    }
    ev.judging = o.judge && !ev.compares.empty();
    if (ev.judging && ev.jobs.empty() && !o.clipscore)
        throw UsageError("no composition set has images of both '" + o.base + "' and " +
                         (ev.compares.size() == 1 ? "'" + ev.compares[0] + "'" : "any compared method") + " in '" +
                         o.run_dir + "'");
    ev.outcome.requested = ev.jobs.size();
}

// ---- resuming ----

// The ok judgements an earlier run left in judgements.jsonl, by fingerprint.
void load_judged(Evaluation& ev) {
    ev.log_path = ev.eval_dir / "judgements.jsonl";
    size_t malformed = 0;
    if (fs::exists(ev.log_path)) {
        for (auto& line : io::read_jsonl(ev.log_path.string(), &malformed))
            if (line.value("type", "") == "judgement" && line.value("status", "") == "ok" && line.contains("fingerprint"))
                ev.judged[line["fingerprint"].get<std::string>()] = line;
        if (malformed) spdlog::warn("{}: skipped {} malformed line(s)", ev.log_path.string(), malformed);
    }
}

// Fingerprints every job (judge model, prompt, both images' method and sha256, in order); the jobs with no ok
// judgement of that fingerprint are pending.
void find_pending(Evaluation& ev) {
    const JudgeSettings& js = ev.o.judge_settings;
    for (size_t i = 0; i < ev.jobs.size(); ++i) {
        Job& j = ev.jobs[i];
        for (int n = 0; n < 2; ++n) j.sha[n] = ev.sha_of(j.png[n]);
        j.fingerprint = io::sha256_hex(js.model + "\n" + ev.prompts[j.set] + "\n" + j.method[0] + "\n" + j.sha[0] +
                                       "\n" + j.method[1] + "\n" + j.sha[1]);
        if (!ev.judged.count(j.fingerprint)) ev.pending.push_back(i);
    }
}

// The fields that name a pair order on each of its lines.
json pair_fields(const Evaluation& ev, const Job& j) {
    const auto& s = ev.sets[j.set];
    json f = {{"style", s.style},   {"k", s.k},
                {"lora_ids", s.lora_ids}, {"base", ev.o.base},
                {"compare", j.compare}, {"order", j.compare_first ? "compare_first" : "base_first"},
                {"image1", j.method[0]}, {"image2", j.method[1]}};
    if (s.seed) f["seed"] = *s.seed;
    return f;
}

// ---- dry run ----

// A requests.dry-run.jsonl line: the pair order and its request, each image elided to its path and sha256.
json dry_run_line(const Evaluation& ev, const Job& j) {
    json req = build_chat_request(ev.o.judge_settings, ev.prompts[j.set], "", "");
    json line = pair_fields(ev, j);
    line["fingerprint"] = j.fingerprint;
    line["url"] = ev.url;
    line["request"] = elide_request_images(req, {j.png[0], j.png[1]}, {j.sha[0], j.sha[1]});
    // the elided form states the real size of each image's base64
    for (int n = 0; n < 2; ++n) {
        std::error_code ec;
        auto bytes = fs::file_size(j.png[n], ec);
        line["request"]["messages"][0]["content"][1 + n]["image_url"]["url"] =
            "data:image/png;base64,<" + std::to_string((bytes + 2) / 3 * 4) + " bytes of base64 omitted>";
    }
    return line;
}

// --dry-run: writes the requests a run would send and prints what it would do.
EvalOutcome write_dry_run(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    fs::create_directories(ev.eval_dir);
    const fs::path dry = ev.eval_dir / "requests.dry-run.jsonl";
    std::string text;
    if (ev.judging)
        for (size_t i : ev.pending) text += dry_run_line(ev, ev.jobs[i]).dump() + "\n";
    io::write_file_atomic(dry.string(), text);
    std::printf("dry run: %zu request(s) would be sent to %s (%zu judgement(s): %zu pair(s) x 2 orders, %zu "
                "already judged); requests written to %s\n",
                ev.judging ? ev.pending.size() : size_t(0), ev.url.c_str(), ev.jobs.size(), ev.jobs.size() / 2,
                ev.jobs.size() - ev.pending.size(), dry.string().c_str());
    ev.outcome.sent = 0;
    ev.outcome.ok = ev.jobs.size() - ev.pending.size();
    if (o.clipscore) {
        size_t n = 0;
        for (const auto& s : ev.sets)
            for (const auto& [m, img] : s.images)
                if (m == o.base || std::find(ev.compares.begin(), ev.compares.end(), m) != ev.compares.end()) ++n;
        std::printf("dry run: CLIPScore would score up to %zu image(s) with %s\n", n, o.clip_model.c_str());
    }
    std::fflush(stdout);
    return ev.outcome;
}

// ---- the judge ----

// What the judge's worker threads share.
struct JudgeRun {
    JudgeRun(Evaluation& evaluation, std::string api_key) : ev(evaluation), key(std::move(api_key)) {}

    Evaluation& ev;  // read-only but for `fresh`, which `mu` guards
    const std::string key;
    std::mutex mu;
    std::atomic<bool> stop{false};
    std::atomic<size_t> next{0}, done{0};
    std::atomic<size_t> failed{0};
    std::string fatal;  // the first fatal error (`mu`)

    // Appends a line, the API key redacted, to judgements.jsonl.
    void append(const json& line, const JudgeClient& client) {
        std::string text = client.redact(line.dump());
        std::lock_guard<std::mutex> lock(mu);
        io::append_line_durable(ev.log_path.string(), text);
    }
};

// One pair order in the judge's hands.
struct JobRequest {
    JobRequest(const Job& j, json pair) : job(j), fields(std::move(pair)) {}

    const Job& job;
    json fields;          // pair_fields
    json judgement;       // its judgement line, filled as it goes
    std::string body;     // the request, images inline
    json logged_request;  // the request, images elided
    int attempt = 0;
    std::string last_error;
};

// The judgement line's fields before its outcome.
json judgement_head(const Evaluation& ev, const Job& j, const json& fields) {
    json judgement = fields;
    judgement["type"] = "judgement";
    judgement["fingerprint"] = j.fingerprint;
    judgement["judge_model"] = ev.o.judge_settings.model;
    judgement["prompt_sha256"] = io::sha256_hex(ev.prompts[j.set]);
    judgement["image1_file"] = {{"path", j.png[0]}, {"sha256", j.sha[0]}};
    judgement["image2_file"] = {{"path", j.png[1]}, {"sha256", j.sha[1]}};
    return judgement;
}

// Builds the request with both images; false, after a failed judgement line, when one cannot be read.
bool build_request(JudgeRun& run, const JudgeClient& client, JobRequest& q) {
    const Job& j = q.job;
    try {
        std::string png1 = io::read_file(j.png[0]), png2 = io::read_file(j.png[1]);
        json req = build_chat_request(run.ev.o.judge_settings, run.ev.prompts[j.set], png1, png2);
        q.body = req.dump();
        q.logged_request = elide_request_images(req, {j.png[0], j.png[1]}, {j.sha[0], j.sha[1]});
    } catch (const std::exception& e) {
        q.judgement["status"] = "failed";
        q.judgement["error"] = e.what();
        q.judgement["time"] = utc_timestamp();
        run.append(q.judgement, client);
        ++run.failed;
        return false;
    }
    return true;
}

// One "exchange" line per HTTP try of the current attempt.
void log_exchanges(JudgeRun& run, const JudgeClient& client, const JobRequest& q, const SendResult& r,
                   const ParsedScores& parsed) {
    for (size_t t = 0; t < r.attempts.size(); ++t) {
        const HttpAttempt& a = r.attempts[t];
        json ex = q.fields;
        ex["type"] = "exchange";
        ex["time"] = utc_timestamp();
        ex["fingerprint"] = q.job.fingerprint;
        ex["attempt"] = q.attempt;
        ex["try"] = a.index;
        ex["url"] = run.ev.url;
        ex["request"] = q.logged_request;
        ex["status"] = a.status;
        if (!a.error.empty()) ex["error"] = a.error;
        if (a.retry_after) ex["retry_after_s"] = *a.retry_after;
        if (a.wait_s > 0) ex["wait_s"] = a.wait_s;
        ex["seconds"] = a.seconds;
        json resp = json::parse(a.body, nullptr, false);
        ex["response"] = resp.is_discarded() ? json(a.body) : resp;
        if (t + 1 == r.attempts.size() && r.status == SendStatus::kOk) {
            ex["answer_parsed"] = parsed.ok;
            if (!parsed.ok) ex["answer_error"] = parsed.error;
        }
        run.append(ex, client);
    }
}

void record_ok(JudgeRun& run, const JudgeClient& client, JobRequest& q, const ChatAnswer& answer,
               const ParsedScores& parsed) {
    const Evaluation& ev = run.ev;
    const Job& j = q.job;
    const auto& s = ev.sets[j.set];
    json& judgement = q.judgement;
    judgement["status"] = "ok";
    judgement["scores"] = scores_json(parsed.scores);
    judgement["answer"] = client.redact(answer.text);
    judgement["attempts"] = q.attempt;
    if (!answer.usage.is_null()) judgement["usage"] = answer.usage;
    judgement["time"] = utc_timestamp();
    run.append(judgement, client);
    {
        std::lock_guard<std::mutex> lock(run.mu);
        run.ev.fresh[j.fingerprint] = judgement;
    }
    size_t d = ++run.done;
    const int ci = j.compare_first ? 0 : 1;
    spdlog::info("[{}/{}] {} k={} {}: {} vs {} ({} first): composition {} vs {}, image {} vs {}",
                 d, ev.pending.size(), s.style, s.k, s.id(), j.compare, ev.o.base,
                 j.compare_first ? j.compare : ev.o.base, parsed.scores.composition[ci],
                 parsed.scores.composition[1 - ci], parsed.scores.image[ci],
                 parsed.scores.image[1 - ci]);
}

void record_failure(JudgeRun& run, const JudgeClient& client, JobRequest& q) {
    const Evaluation& ev = run.ev;
    const Job& j = q.job;
    const auto& s = ev.sets[j.set];
    q.judgement["status"] = "failed";
    q.judgement["error"] = client.redact(q.last_error);
    q.judgement["attempts"] = q.attempt;
    q.judgement["time"] = utc_timestamp();
    run.append(q.judgement, client);
    ++run.failed;
    size_t d = ++run.done;
    spdlog::warn("[{}/{}] {} k={} {}: {} vs {}: no scores ({})", d, ev.pending.size(), s.style, s.k, s.id(),
                 j.compare, ev.o.base, client.redact(q.last_error));
}

// Sends the request, again while the answer is unparseable and --retries allows; true once judged. A fatal
// error stops every worker; a failed exchange ends this pair order (with `last_error` set).
bool ask_judge(JudgeRun& run, JudgeClient& client, JobRequest& q) {
    const EvalOptions& o = run.ev.o;
    const Job& j = q.job;
    const auto& s = run.ev.sets[j.set];
    while (q.attempt <= o.retries && !run.stop.load()) {
        ++q.attempt;
        SendResult r = client.send(q.body, &run.stop);
        ChatAnswer answer;
        ParsedScores parsed;
        if (r.status == SendStatus::kOk) {
            answer = extract_chat_answer(r.body);
            if (answer.ok) parsed = parse_judge_scores(answer.text);
            else parsed.error = answer.error;
        }
        log_exchanges(run, client, q, r, parsed);
        if (r.status == SendStatus::kFatal) {
            std::lock_guard<std::mutex> lock(run.mu);
            if (run.fatal.empty()) run.fatal = r.error;
            run.stop = true;
            return false;
        }
        if (r.status == SendStatus::kCancelled) return false;
        if (r.status == SendStatus::kFailed) {
            q.last_error = r.error;
            return false;
        }
        if (parsed.ok) {
            record_ok(run, client, q, answer, parsed);
            return true;
        }
        q.last_error = "unparseable answer: " + parsed.error;
        if (q.attempt <= o.retries)
            spdlog::warn("{} k={} {} ({} vs {}): {}; asking again ({}/{})", s.style, s.k, s.id(), j.compare,
                         o.base, parsed.error, q.attempt, o.retries);
    }
    return false;
}

void judge_job(JudgeRun& run, JudgeClient& client, const Job& j) {
    JobRequest q(j, pair_fields(run.ev, j));
    q.judgement = judgement_head(run.ev, j, q.fields);
    if (!build_request(run, client, q)) return;
    if (ask_judge(run, client, q)) return;
    // no error: cancelled, or stopped before a request; nothing to record
    if (!q.last_error.empty()) record_failure(run, client, q);
}

void judge_worker(JudgeRun& run) {
    const Evaluation& ev = run.ev;
    JudgeClient client(ev.o.judge_settings, run.key);
    while (!run.stop.load()) {
        size_t n = run.next.fetch_add(1);
        if (n >= ev.pending.size()) break;
        judge_job(run, client, ev.jobs[ev.pending[n]]);
    }
}

// Judges the pending pair orders on --concurrency threads. Throws RuntimeError on a fatal error (after the
// workers have stopped).
void judge_pending(Evaluation& ev) {
    if (!ev.judging || ev.pending.empty()) return;
    JudgeRun run(ev, read_api_key(ev.o));
    ensure_newline_at_end(ev.log_path);
    spdlog::info("judging {} pair order(s) with {} at {} ({} already judged, concurrency {})", ev.pending.size(),
                 ev.o.judge_settings.model, ev.url, ev.jobs.size() - ev.pending.size(), ev.o.concurrency);
    std::vector<std::thread> threads;
    const int n_threads = std::min<int>(ev.o.concurrency, static_cast<int>(ev.pending.size()));
    for (int t = 0; t < n_threads; ++t) threads.emplace_back([&run] { judge_worker(run); });
    for (auto& t : threads) t.join();
    ev.outcome.sent = ev.pending.size();
    ev.outcome.failed = run.failed.load();
    if (!run.fatal.empty()) throw RuntimeError(run.fatal);
}

// ---- results ----

// The judged pairs (this run's judgements, else earlier ok ones), and this run's token usage.
void collect_pairs(Evaluation& ev) {
    for (const auto& j : ev.jobs) {
        const json* line = nullptr;
        auto f = ev.fresh.find(j.fingerprint);
        if (f != ev.fresh.end()) line = &f->second;
        else if (ev.judged.count(j.fingerprint)) line = &ev.judged[j.fingerprint];
        if (!line) continue;
        JudgedPair p;
        const auto& s = ev.sets[j.set];
        p.style = s.style;
        p.k = s.k;
        p.set_key = s.id();
        p.base = ev.o.base;
        p.compare = j.compare;
        p.compare_first = j.compare_first;
        try {
            p.scores = scores_from_json(line->at("scores"));
        } catch (const std::exception&) {
            continue;
        }
        ev.pairs.push_back(p);
        if (f != ev.fresh.end() && line->contains("usage") && (*line)["usage"].is_object())
            for (const char* u : {"prompt_tokens", "completion_tokens"})
                if ((*line)["usage"].contains(u) && (*line)["usage"][u].is_number_integer())
                    ev.usage[u] = ev.usage[u].get<long long>() + (*line)["usage"][u].get<long long>();
    }
    ev.outcome.ok = ev.pairs.size();
}

// ---- CLIPScore ----

struct ClipItem {
    size_t set;
    std::string method, png, text, fingerprint;
};

// The scores clipscores.jsonl already holds, by fingerprint.
std::map<std::string, double> read_clip_log(const fs::path& clip_log) {
    std::map<std::string, double> known;
    if (fs::exists(clip_log))
        for (auto& line : io::read_jsonl(clip_log.string(), nullptr))
            if (line.contains("fingerprint") && line.contains("score") && line["score"].is_number())
                known[line["fingerprint"].get<std::string>()] = line["score"].get<double>();
    return known;
}

// One item per image of the base and compared methods, with the text --clip-text asks for (else the other
// one); images with neither are skipped.
std::vector<ClipItem> plan_clip_items(Evaluation& ev, const ClipScorer& scorer) {
    const EvalOptions& o = ev.o;
    std::vector<ClipItem> items;
    for (size_t i = 0; i < ev.sets.size(); ++i) {
        const auto& s = ev.sets[i];
        std::vector<std::string> trig;
        for (const auto& e : s.elements)
            for (const auto& t : e.triggers) trig.push_back(t);
        for (const auto& [m, img] : s.images) {
            if (m != o.base && std::find(ev.compares.begin(), ev.compares.end(), m) == ev.compares.end()) continue;
            std::string text = o.clip_text == "prompt" ? (img.prompt.empty() ? s.prompt() : img.prompt) : join(trig, ", ");
            if (text.empty()) text = o.clip_text == "prompt" ? join(trig, ", ") : (img.prompt.empty() ? s.prompt() : img.prompt);
            if (text.empty()) {
                spdlog::warn("CLIPScore: no prompt or trigger words for {}; skipped", img.png);
                continue;
            }
            ClipItem it{i, m, img.png, text, ""};
            it.fingerprint = io::sha256_hex(scorer.identity() + "\n" + ev.sha_of(img.png) + "\n" + text);
            items.push_back(it);
        }
    }
    return items;
}

// Scores the items clipscores.jsonl does not hold, --clip-batch at a time, appending a line for each.
void score_clip_items(Evaluation& ev, ClipScorer& scorer, const std::vector<ClipItem>& items,
                      std::map<std::string, double>& known, const fs::path& clip_log) {
    const int clip_batch = ev.o.clip_batch;
    std::vector<size_t> todo;
    for (size_t i = 0; i < items.size(); ++i)
        if (!known.count(items[i].fingerprint)) todo.push_back(i);
    spdlog::info("CLIPScore: {} image(s), {} already scored", items.size(), items.size() - todo.size());
    if (!todo.empty()) ensure_newline_at_end(clip_log);
    for (size_t start = 0; start < todo.size(); start += static_cast<size_t>(clip_batch)) {
        size_t end = std::min(todo.size(), start + static_cast<size_t>(clip_batch));
        std::vector<std::string> paths, texts;
        for (size_t t = start; t < end; ++t) {
            paths.push_back(items[todo[t]].png);
            texts.push_back(items[todo[t]].text);
        }
        std::vector<double> scores = scorer.score_files(paths, texts, clip_batch);
        for (size_t t = start; t < end; ++t) {
            const ClipItem& it = items[todo[t]];
            const auto& s = ev.sets[it.set];
            double v = scores[t - start];
            known[it.fingerprint] = v;
            json line = {{"style", s.style},     {"k", s.k},         {"lora_ids", s.lora_ids},
                         {"method", it.method},  {"image", it.png},  {"sha256", ev.sha_of(it.png)},
                         {"clip_model", scorer.identity()}, {"text", it.text}, {"score", v},
                         {"fingerprint", it.fingerprint}, {"time", utc_timestamp()}};
            io::append_line_durable(clip_log.string(), line.dump());
        }
        spdlog::info("CLIPScore: {}/{}", end, todo.size());
    }
}

// The mean score per (style, k, method), k 0 standing for all k and style "all" for all styles (when there
// are several); fills each set's scores by method.
json clip_groups(Evaluation& ev, const std::vector<ClipItem>& items, std::map<std::string, double>& known) {
    std::map<std::tuple<std::string, int, std::string>, std::pair<double, int>> acc;
    for (const auto& it : items) {
        double v = known[it.fingerprint];
        const auto& s = ev.sets[it.set];
        ev.clip_by_set[std::to_string(it.set)][it.method] = v;
        for (const std::string& st : {s.style, std::string("all")})
            for (int k : {s.k, 0}) {
                if (st == "all" && (ev.styles.size() < 2 || k != 0)) continue;
                auto& a = acc[{st, k, it.method}];
                a.first += v;
                ++a.second;
            }
    }
    json groups = json::array();
    std::vector<std::string> order_styles = ev.styles;
    if (ev.styles.size() > 1) order_styles.push_back("all");
    std::vector<std::string> methods = {ev.o.base};
    methods.insert(methods.end(), ev.compares.begin(), ev.compares.end());
    for (const auto& st : order_styles) {
        std::set<int> ks;
        for (const auto& [key, a] : acc)
            if (std::get<0>(key) == st) ks.insert(std::get<1>(key));
        std::vector<int> korder;
        for (int k : ks)
            if (k) korder.push_back(k);
        korder.push_back(0);
        for (int k : korder)
            for (const auto& m : methods) {
                auto a = acc.find({st, k, m});
                if (a == acc.end()) continue;
                groups.push_back({{"style", st},
                                  {"k", k ? json(k) : json("all")},
                                  {"method", m},
                                  {"images", a->second.second},
                                  {"mean", a->second.first / a->second.second}});
            }
    }
    return groups;
}

void run_clipscore(Evaluation& ev) {
    const EvalOptions& o = ev.o;
    std::unique_ptr<ClipScorer> scorer = ClipScorer::load(o.clip_model);
    const fs::path clip_log = ev.eval_dir / "clipscores.jsonl";
    std::map<std::string, double> known = read_clip_log(clip_log);
    std::vector<ClipItem> items = plan_clip_items(ev, *scorer);
    score_clip_items(ev, *scorer, items, known, clip_log);
    json groups = clip_groups(ev, items, known);
    ev.clip_summary = {{"model", scorer->identity()},
                       {"text", o.clip_text == "prompt" ? "the generation prompt" : "the LoRAs' trigger words"},
                       {"formula", "100 * max(cos(image embedding, text embedding), 0)"},
                       {"images", items.size()},
                       {"groups", groups}};
    ev.outcome.clip_images = items.size();
}

// ---- summary ----

const char* verdict(double c, double b) { return c > b + 1e-9 ? "win" : c < b - 1e-9 ? "loss" : "tie"; }

// For each compared method with judgements of the set: both methods' mean scores over the orders, and the verdict.
json set_judge(const Evaluation& ev, const CompositionSet& s) {
    const std::string& base = ev.o.base;
    json judge = json::object();
    for (const auto& c : ev.compares) {
        double sb[2] = {0, 0}, sc[2] = {0, 0};
        int n = 0;
        for (const auto& p : ev.pairs) {
            if (p.style != s.style || p.k != s.k || p.set_key != s.id() || p.compare != c) continue;
            const int ci = p.compare_first ? 0 : 1;
            sc[0] += p.scores.composition[ci];
            sc[1] += p.scores.image[ci];
            sb[0] += p.scores.composition[1 - ci];
            sb[1] += p.scores.image[1 - ci];
            ++n;
        }
        if (!n) continue;
        judge[c] = {{"orders", n},
                    {"mean",
                     {{base, {{"composition", sb[0] / n}, {"image", sb[1] / n}}},
                      {c, {{"composition", sc[0] / n}, {"image", sc[1] / n}}}}},
                    {"verdict", {{"composition", verdict(sc[0], sb[0])}, {"image", verdict(sc[1], sb[1])}}}};
    }
    return judge;
}

// The summary's row for set i: its LoRAs, images (relative to eval/), judgements and CLIPScores.
json set_row(const Evaluation& ev, size_t i) {
    const auto& s = ev.sets[i];
    json row = {{"style", s.style}, {"k", s.k}, {"lora_ids", s.lora_ids}, {"prompt", s.prompt()}};
    if (s.seed) row["seed"] = *s.seed;
    json elems = json::array();
    for (const auto& e : s.elements)
        elems.push_back({{"id", e.id}, {"category", e.category}, {"name", e.name}, {"triggers", e.triggers}});
    row["elements"] = elems;
    row["sheet"] = s.sheet.empty() ? json(nullptr) : json(relative_path(s.sheet, ev.eval_dir.string()));
    json images = json::object();
    for (const auto& [m, img] : s.images) images[m] = relative_path(img.png, ev.eval_dir.string());
    row["images"] = images;
    row["judge"] = set_judge(ev, s);
    auto cs = ev.clip_by_set.find(std::to_string(i));
    if (cs != ev.clip_by_set.end()) row["clipscore"] = cs->second;
    return row;
}

// With both the judge and the world scorer: how the judge's composition score of an image (averaged over its
// judgements) follows the detector's recall of it, over the images both scored.
json judge_world_agreement(const Evaluation& ev) {
    std::map<std::pair<std::string, std::string>, std::pair<double, int>> judged;  // (set id, method) -> score sum, count
    for (const auto& p : ev.pairs)
        for (int i = 0; i < 2; ++i) {
            const bool compared = (i == 0) == p.compare_first;
            auto& acc = judged[{p.set_key, compared ? p.compare : p.base}];
            acc.first += p.scores.composition[i];
            ++acc.second;
        }
    std::vector<double> score, recall;
    for (const auto& im : ev.world_summary["images"]) {
        auto it = judged.find({im["set"].get<std::string>(), im["method"].get<std::string>()});
        if (it == judged.end()) continue;
        score.push_back(it->second.first / it->second.second);
        recall.push_back(im["recall"].get<double>());
    }
    auto number = [](double v) { return std::isnan(v) ? json(nullptr) : json(v); };
    return {{"images", score.size()}, {"pearson", number(pearson(score, recall))},
            {"spearman", number(spearman(score, recall))},
            {"what", "the judge's composition score of an image (mean over its judgements) against the detector's recall"}};
}

json build_summary(const Evaluation& ev) {
    const EvalOptions& o = ev.o;
    const JudgeSettings& js = o.judge_settings;
    json agg = aggregate_judgements(ev.pairs, o.base, ev.compares);
    json summary;
    summary["run"] = o.run_dir;
    summary["created"] = utc_timestamp();
    summary["multilora_version"] = multilora::version();
    summary["base"] = o.base;
    summary["compare"] = ev.compares;
    summary["judge"] = {{"enabled", ev.judging},
                        {"model", js.model},
                        {"api_base", js.api_base},
                        {"temperature", js.temperature},
                        {"max_tokens", js.max_tokens},
                        {"prompt_template", ev.template_name},
                        {"retries", o.retries}};
    summary["judgements"] = {{"requested", ev.jobs.size()},
                             {"ok", ev.pairs.size()},
                             {"failed", ev.outcome.failed},
                             {"missing", ev.jobs.size() - ev.pairs.size()},
                             {"usage_this_run", ev.usage}};
    summary["lora_info"] = ev.catalog.sources();
    summary["groups"] = agg["groups"];
    summary["method_means"] = agg["method_means"];
    summary["clipscore"] = ev.clip_summary;
    summary["world"] = ev.world_summary;
    if (!ev.world_summary.is_null() && !ev.pairs.empty()) summary["world"]["judge_agreement"] = judge_world_agreement(ev);
    json set_rows = json::array();
    for (size_t i = 0; i < ev.sets.size(); ++i) set_rows.push_back(set_row(ev, i));
    summary["sets"] = set_rows;
    return summary;
}

// summary.json, summary.md and report.html.
void write_summary(const Evaluation& ev) {
    json summary = build_summary(ev);
    const fs::path& eval_dir = ev.eval_dir;
    if (!ev.world_summary.is_null()) {
        write_world_recall_plot((eval_dir / "world_recall.png").string(), ev.world_summary);
        summary["world"]["plot"] = "world_recall.png";
    }
    io::write_file_atomic((eval_dir / "summary.json").string(), summary.dump(2) + "\n");
    io::write_file_atomic((eval_dir / "summary.md").string(), render_summary_markdown(summary));
    io::write_file_atomic((eval_dir / "report.html").string(), render_report_html(summary));
    spdlog::info("wrote {}, summary.md and report.html ({} of {} judgement(s) valid)",
                 (eval_dir / "summary.json").string(), ev.pairs.size(), ev.jobs.size());
}

}  // namespace

EvalOutcome run_evaluation(const EvalOptions& o) {
    Evaluation ev(o, validate_options(o));
    select_sets(ev);
    resolve_methods(ev);
    describe_loras(ev);
    if (o.world && !o.dry_run) run_world_scorer(ev);
    prepare_eval_dir(ev);
    render_prompts(ev, load_template(ev));
    plan_jobs(ev);
    load_judged(ev);
    find_pending(ev);
    if (o.dry_run) return write_dry_run(ev);
    judge_pending(ev);
    collect_pairs(ev);
    if (o.clipscore) run_clipscore(ev);
    write_summary(ev);
    return ev.outcome;
}

}  // namespace multilora::eval
