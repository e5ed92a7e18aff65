#include "multilora/eval/evaluator.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
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
#include "multilora/io/atomic_file.h"
#include "multilora/io/sha256.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/version.h"

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

std::string relative_to(const std::string& path, const fs::path& dir) {
    std::error_code ec;
    fs::path a = fs::absolute(path, ec).lexically_normal();
    fs::path d = fs::absolute(dir, ec).lexically_normal();
    fs::path r = a.lexically_relative(d);
    return r.empty() ? a.string() : r.generic_string();
}

// Reads a .jsonl file, skipping blank and malformed lines (a run killed mid-write can leave a cut last line).
std::vector<json> read_jsonl(const fs::path& path, size_t* malformed) {
    std::vector<json> out;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        json j = json::parse(line, nullptr, false);
        if (j.is_object()) out.push_back(std::move(j));
        else if (malformed) ++*malformed;
    }
    return out;
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

}  // namespace

EvalOutcome run_evaluation(const EvalOptions& o) {
    // ---- options ----
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
    const std::string url = chat_completions_url(js.api_base);
    if (o.judge && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
        throw UsageError("--api-base must start with http:// or https:// (got '" + js.api_base + "')");

    // ---- the run ----
    RunIndex index = index_run(o.run_dir);
    std::vector<CompositionSet> sets;
    for (auto& s : index.sets) {
        if (!o.styles.empty() && std::find(o.styles.begin(), o.styles.end(), s.style) == o.styles.end()) continue;
        if (!o.ks.empty() && std::find(o.ks.begin(), o.ks.end(), s.k) == o.ks.end()) continue;
        sets.push_back(s);
    }
    if (sets.empty()) throw UsageError("no composition set of '" + o.run_dir + "' matches --style/--k");
    std::vector<std::string> methods_present;
    std::vector<std::string> styles;
    for (const auto& s : sets) {
        for (const auto& [m, img] : s.images)
            if (std::find(methods_present.begin(), methods_present.end(), m) == methods_present.end())
                methods_present.push_back(m);
        if (std::find(styles.begin(), styles.end(), s.style) == styles.end()) styles.push_back(s.style);
    }
    auto present = [&](const std::string& m) {
        return std::find(methods_present.begin(), methods_present.end(), m) != methods_present.end();
    };
    const std::string found = join(methods_present, ", ");
    if (!present(o.base))
        throw UsageError("--base " + o.base + ": the run has no images of that method (found: " + found + ")");
    std::vector<std::string> compares = o.compares;
    if (compares.empty()) {
        for (const auto& m : index.methods)
            if (m != o.base && present(m)) compares.push_back(m);
        if (compares.empty() && o.judge && !o.clipscore)
            throw UsageError("the run has only '" + o.base + "' images; nothing to compare (found: " + found + ")");
    }
    for (const auto& c : compares) {
        if (c == o.base) throw UsageError("--compare " + c + " is the base method");
        if (!present(c))
            throw UsageError("--compare " + c + ": the run has no images of that method (found: " + found + ")");
    }

    LoraCatalog catalog;
    catalog.use_builtin_composlora(o.builtin_composlora);
    for (const auto& spec : o.lora_info) {
        auto eq = spec.find('=');
        if (eq != std::string::npos && eq > 0 && spec.substr(0, eq).find('/') == std::string::npos)
            catalog.add_file(spec.substr(0, eq), spec.substr(eq + 1));
        else
            catalog.add_file("", spec);
    }
    catalog.discover(o.run_dir, styles);
    catalog.add_logged(index);
    std::set<std::string> undescribed;
    for (auto& s : sets)
        if (catalog.describe(s) > 0)
            for (const auto& e : s.elements)
                if (!e.described) undescribed.insert(s.style + "/" + e.id);
    if (!undescribed.empty())
        spdlog::warn("{} LoRA id(s) have no name or trigger words ({}{}); the judge sees only their ids and the "
                     "generation prompt. Pass --lora-info [STYLE=]FILE (ComposLoRA's lora_info format)",
                     undescribed.size(), *undescribed.begin(), undescribed.size() > 1 ? ", ..." : "");

    const fs::path eval_dir = fs::path(o.run_dir) / "eval";
    if (!o.dry_run) io::ensure_writable_dir(eval_dir.string());
    EvalOutcome outcome;
    outcome.eval_dir = eval_dir.string();
    outcome.dry_run = o.dry_run;

    std::map<std::string, std::string> sha_cache;
    auto sha_of = [&](const std::string& path) {
        auto it = sha_cache.find(path);
        if (it != sha_cache.end()) return it->second;
        std::string h = io::sha256_file_hex(path);
        sha_cache[path] = h;
        return h;
    };

    // ---- judging ----
    std::string template_text = default_judge_template();
    std::string template_name = "built-in";
    if (!o.prompt_template_file.empty()) {
        std::ifstream in(o.prompt_template_file);
        if (!in) throw UsageError("--prompt-template: cannot read '" + o.prompt_template_file + "'");
        template_text.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (trim(template_text).empty())
            throw UsageError("--prompt-template: '" + o.prompt_template_file + "' is empty");
        template_name = o.prompt_template_file;
        if (ascii_lower(template_text).find("composition quality") == std::string::npos)
            spdlog::warn("--prompt-template: the template does not mention \"Composition Quality\"; answers are "
                         "parsed for \"Image N: Composition Quality: x/10, Image Quality: y/10\"");
    }
    std::vector<std::string> prompts(sets.size());
    for (size_t i = 0; i < sets.size(); ++i) {
        PromptContext ctx{sets[i].elements, sets[i].style, sets[i].k, sets[i].prompt()};
        prompts[i] = render_judge_prompt(template_text, ctx);
    }

    std::vector<Job> jobs;
    for (size_t i = 0; i < sets.size(); ++i) {
        const auto& s = sets[i];
        auto b = s.images.find(o.base);
        if (b == s.images.end()) continue;
        for (const auto& c : compares) {
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
                jobs.push_back(j);
            }
        }
    }
    const bool judging = o.judge && !compares.empty();
    if (judging && jobs.empty() && !o.clipscore)
        throw UsageError("no composition set has images of both '" + o.base + "' and " +
                         (compares.size() == 1 ? "'" + compares[0] + "'" : "any compared method") + " in '" +
                         o.run_dir + "'");
    outcome.requested = jobs.size();

    const fs::path log_path = eval_dir / "judgements.jsonl";
    std::map<std::string, json> judged;  // fingerprint -> ok judgement line
    size_t malformed = 0;
    if (fs::exists(log_path)) {
        for (auto& line : read_jsonl(log_path, &malformed))
            if (line.value("type", "") == "judgement" && line.value("status", "") == "ok" && line.contains("fingerprint"))
                judged[line["fingerprint"].get<std::string>()] = line;
        if (malformed) spdlog::warn("{}: skipped {} malformed line(s)", log_path.string(), malformed);
    }
    std::vector<size_t> pending;
    for (size_t i = 0; i < jobs.size(); ++i) {
        Job& j = jobs[i];
        for (int n = 0; n < 2; ++n) j.sha[n] = sha_of(j.png[n]);
        j.fingerprint = io::sha256_hex(js.model + "\n" + prompts[j.set] + "\n" + j.method[0] + "\n" + j.sha[0] +
                                       "\n" + j.method[1] + "\n" + j.sha[1]);
        if (!judged.count(j.fingerprint)) pending.push_back(i);
    }

    auto pair_fields = [&](const Job& j) {
        const auto& s = sets[j.set];
        json f = {{"style", s.style},   {"k", s.k},
                    {"lora_ids", s.lora_ids}, {"base", o.base},
                    {"compare", j.compare}, {"order", j.compare_first ? "compare_first" : "base_first"},
                    {"image1", j.method[0]}, {"image2", j.method[1]}};
        if (s.seed) f["seed"] = *s.seed;
        return f;
    };

    if (o.dry_run) {
        fs::create_directories(eval_dir);
        const fs::path dry = eval_dir / "requests.dry-run.jsonl";
        std::string text;
        if (judging)
            for (size_t i : pending) {
                const Job& j = jobs[i];
                json req = build_chat_request(js, prompts[j.set], "", "");
                json line = pair_fields(j);
                line["fingerprint"] = j.fingerprint;
                line["url"] = url;
                line["request"] = elide_request_images(req, {j.png[0], j.png[1]}, {j.sha[0], j.sha[1]});
                // the elided form states the real size of each image's base64
                for (int n = 0; n < 2; ++n) {
                    std::error_code ec;
                    auto bytes = fs::file_size(j.png[n], ec);
                    line["request"]["messages"][0]["content"][1 + n]["image_url"]["url"] =
                        "data:image/png;base64,<" + std::to_string((bytes + 2) / 3 * 4) + " bytes of base64 omitted>";
                }
                text += line.dump() + "\n";
            }
        io::write_file_atomic(dry.string(), text);
        std::printf("dry run: %zu request(s) would be sent to %s (%zu judgement(s): %zu pair(s) x 2 orders, %zu "
                    "already judged); requests written to %s\n",
                    judging ? pending.size() : size_t(0), url.c_str(), jobs.size(), jobs.size() / 2,
                    jobs.size() - pending.size(), dry.string().c_str());
        outcome.sent = 0;
        outcome.ok = jobs.size() - pending.size();
        if (o.clipscore) {
            size_t n = 0;
            for (const auto& s : sets)
                for (const auto& [m, img] : s.images)
                    if (m == o.base || std::find(compares.begin(), compares.end(), m) != compares.end()) ++n;
            std::printf("dry run: CLIPScore would score up to %zu image(s) with %s\n", n, o.clip_model.c_str());
        }
        std::fflush(stdout);
        return outcome;
    }

    std::map<std::string, json> fresh;  // fingerprint -> ok judgement line written this run
    std::string fatal;
    if (judging && !pending.empty()) {
        const std::string key = read_api_key(o);
        ensure_newline_at_end(log_path);
        std::mutex mu;
        std::atomic<bool> stop{false};
        std::atomic<size_t> next{0}, done{0};
        std::atomic<size_t> failed{0};
        auto append = [&](const json& line, const JudgeClient& client) {
            std::string text = client.redact(line.dump());
            std::lock_guard<std::mutex> lock(mu);
            io::append_line_durable(log_path.string(), text);
        };
        spdlog::info("judging {} pair order(s) with {} at {} ({} already judged, concurrency {})", pending.size(),
                     js.model, url, jobs.size() - pending.size(), o.concurrency);
        auto worker = [&]() {
            JudgeClient client(js, key);
            while (!stop.load()) {
                size_t n = next.fetch_add(1);
                if (n >= pending.size()) break;
                const Job& j = jobs[pending[n]];
                const auto& s = sets[j.set];
                json fields = pair_fields(j);
                json judgement = fields;
                judgement["type"] = "judgement";
                judgement["fingerprint"] = j.fingerprint;
                judgement["judge_model"] = js.model;
                judgement["prompt_sha256"] = io::sha256_hex(prompts[j.set]);
                judgement["image1_file"] = {{"path", j.png[0]}, {"sha256", j.sha[0]}};
                judgement["image2_file"] = {{"path", j.png[1]}, {"sha256", j.sha[1]}};
                std::string body;
                json logged_request;
                try {
                    std::string png1 = io::read_file(j.png[0]), png2 = io::read_file(j.png[1]);
                    json req = build_chat_request(js, prompts[j.set], png1, png2);
                    body = req.dump();
                    logged_request = elide_request_images(req, {j.png[0], j.png[1]}, {j.sha[0], j.sha[1]});
                } catch (const std::exception& e) {
                    judgement["status"] = "failed";
                    judgement["error"] = e.what();
                    judgement["time"] = utc_timestamp();
                    append(judgement, client);
                    ++failed;
                    continue;
                }
                std::string last_error;
                bool finished = false;
                int attempt = 0;
                for (; attempt <= o.retries && !stop.load();) {
                    ++attempt;
                    SendResult r = client.send(body, &stop);
                    ChatAnswer answer;
                    ParsedScores parsed;
                    if (r.status == SendStatus::kOk) {
                        answer = extract_chat_answer(r.body);
                        if (answer.ok) parsed = parse_judge_scores(answer.text);
                        else parsed.error = answer.error;
                    }
                    for (size_t t = 0; t < r.attempts.size(); ++t) {
                        const HttpAttempt& a = r.attempts[t];
                        json ex = fields;
                        ex["type"] = "exchange";
                        ex["time"] = utc_timestamp();
                        ex["fingerprint"] = j.fingerprint;
                        ex["attempt"] = attempt;
                        ex["try"] = a.index;
                        ex["url"] = url;
                        ex["request"] = logged_request;
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
                        append(ex, client);
                    }
                    if (r.status == SendStatus::kFatal) {
                        std::lock_guard<std::mutex> lock(mu);
                        if (fatal.empty()) fatal = r.error;
                        stop = true;
                        break;
                    }
                    if (r.status == SendStatus::kCancelled) break;
                    if (r.status == SendStatus::kFailed) {
                        last_error = r.error;
                        break;
                    }
                    if (parsed.ok) {
                        judgement["status"] = "ok";
                        judgement["scores"] = scores_json(parsed.scores);
                        judgement["answer"] = client.redact(answer.text);
                        judgement["attempts"] = attempt;
                        if (!answer.usage.is_null()) judgement["usage"] = answer.usage;
                        judgement["time"] = utc_timestamp();
                        append(judgement, client);
                        {
                            std::lock_guard<std::mutex> lock(mu);
                            fresh[j.fingerprint] = judgement;
                        }
                        finished = true;
                        size_t d = ++done;
                        const int ci = j.compare_first ? 0 : 1;
                        spdlog::info("[{}/{}] {} k={} {}: {} vs {} ({} first): composition {} vs {}, image {} vs {}",
                                     d, pending.size(), s.style, s.k, s.id(), j.compare, o.base,
                                     j.compare_first ? j.compare : o.base, parsed.scores.composition[ci],
                                     parsed.scores.composition[1 - ci], parsed.scores.image[ci],
                                     parsed.scores.image[1 - ci]);
                        break;
                    }
                    last_error = "unparseable answer: " + parsed.error;
                    if (attempt <= o.retries)
                        spdlog::warn("{} k={} {} ({} vs {}): {}; asking again ({}/{})", s.style, s.k, s.id(), j.compare,
                                     o.base, parsed.error, attempt, o.retries);
                }
                if (!finished && !(stop.load() && last_error.empty())) {
                    if (last_error.empty()) continue;
                    judgement["status"] = "failed";
                    judgement["error"] = client.redact(last_error);
                    judgement["attempts"] = attempt;
                    judgement["time"] = utc_timestamp();
                    append(judgement, client);
                    ++failed;
                    size_t d = ++done;
                    spdlog::warn("[{}/{}] {} k={} {}: {} vs {}: no scores ({})", d, pending.size(), s.style, s.k, s.id(),
                                 j.compare, o.base, client.redact(last_error));
                }
            }
        };
        std::vector<std::thread> threads;
        const int n_threads = std::min<int>(o.concurrency, static_cast<int>(pending.size()));
        for (int t = 0; t < n_threads; ++t) threads.emplace_back(worker);
        for (auto& t : threads) t.join();
        outcome.sent = pending.size();
        outcome.failed = failed.load();
        if (!fatal.empty()) throw RuntimeError(fatal);
    }

    // ---- results ----
    std::vector<JudgedPair> pairs;
    json usage = {{"prompt_tokens", 0}, {"completion_tokens", 0}};
    std::map<std::string, json> set_judge;  // set index|compare -> per-set summary accumulators
    for (const auto& j : jobs) {
        const json* line = nullptr;
        auto f = fresh.find(j.fingerprint);
        if (f != fresh.end()) line = &f->second;
        else if (judged.count(j.fingerprint)) line = &judged[j.fingerprint];
        if (!line) continue;
        JudgedPair p;
        const auto& s = sets[j.set];
        p.style = s.style;
        p.k = s.k;
        p.set_key = s.id();
        p.base = o.base;
        p.compare = j.compare;
        p.compare_first = j.compare_first;
        try {
            p.scores = scores_from_json(line->at("scores"));
        } catch (const std::exception&) {
            continue;
        }
        pairs.push_back(p);
        if (f != fresh.end() && line->contains("usage") && (*line)["usage"].is_object())
            for (const char* u : {"prompt_tokens", "completion_tokens"})
                if ((*line)["usage"].contains(u) && (*line)["usage"][u].is_number_integer())
                    usage[u] = usage[u].get<long long>() + (*line)["usage"][u].get<long long>();
    }
    outcome.ok = pairs.size();

    // ---- CLIPScore ----
    json clip_summary = nullptr;
    std::map<std::string, std::map<std::string, double>> clip_by_set;  // set idx -> method -> score
    if (o.clipscore) {
        std::unique_ptr<ClipScorer> scorer = ClipScorer::load(o.clip_model);
        const fs::path clip_log = eval_dir / "clipscores.jsonl";
        std::map<std::string, double> known;
        if (fs::exists(clip_log))
            for (auto& line : read_jsonl(clip_log, nullptr))
                if (line.contains("fingerprint") && line.contains("score") && line["score"].is_number())
                    known[line["fingerprint"].get<std::string>()] = line["score"].get<double>();
        struct Item {
            size_t set;
            std::string method, png, text, fingerprint;
        };
        std::vector<Item> items;
        for (size_t i = 0; i < sets.size(); ++i) {
            const auto& s = sets[i];
            std::vector<std::string> trig;
            for (const auto& e : s.elements)
                for (const auto& t : e.triggers) trig.push_back(t);
            for (const auto& [m, img] : s.images) {
                if (m != o.base && std::find(compares.begin(), compares.end(), m) == compares.end()) continue;
                std::string text = o.clip_text == "prompt" ? (img.prompt.empty() ? s.prompt() : img.prompt) : join(trig, ", ");
                if (text.empty()) text = o.clip_text == "prompt" ? join(trig, ", ") : (img.prompt.empty() ? s.prompt() : img.prompt);
                if (text.empty()) {
                    spdlog::warn("CLIPScore: no prompt or trigger words for {}; skipped", img.png);
                    continue;
                }
                Item it{i, m, img.png, text, ""};
                it.fingerprint = io::sha256_hex(scorer->identity() + "\n" + sha_of(img.png) + "\n" + text);
                items.push_back(it);
            }
        }
        std::vector<size_t> todo;
        for (size_t i = 0; i < items.size(); ++i)
            if (!known.count(items[i].fingerprint)) todo.push_back(i);
        spdlog::info("CLIPScore: {} image(s), {} already scored", items.size(), items.size() - todo.size());
        if (!todo.empty()) ensure_newline_at_end(clip_log);
        for (size_t start = 0; start < todo.size(); start += static_cast<size_t>(o.clip_batch)) {
            size_t end = std::min(todo.size(), start + static_cast<size_t>(o.clip_batch));
            std::vector<std::string> paths, texts;
            for (size_t t = start; t < end; ++t) {
                paths.push_back(items[todo[t]].png);
                texts.push_back(items[todo[t]].text);
            }
            std::vector<double> scores = scorer->score_files(paths, texts, o.clip_batch);
            for (size_t t = start; t < end; ++t) {
                const Item& it = items[todo[t]];
                const auto& s = sets[it.set];
                double v = scores[t - start];
                known[it.fingerprint] = v;
                json line = {{"style", s.style},     {"k", s.k},         {"lora_ids", s.lora_ids},
                             {"method", it.method},  {"image", it.png},  {"sha256", sha_of(it.png)},
                             {"clip_model", scorer->identity()}, {"text", it.text}, {"score", v},
                             {"fingerprint", it.fingerprint}, {"time", utc_timestamp()}};
                io::append_line_durable(clip_log.string(), line.dump());
            }
            spdlog::info("CLIPScore: {}/{}", end, todo.size());
        }
        // groups
        std::map<std::tuple<std::string, int, std::string>, std::pair<double, int>> acc;
        for (const auto& it : items) {
            double v = known[it.fingerprint];
            const auto& s = sets[it.set];
            clip_by_set[std::to_string(it.set)][it.method] = v;
            for (const std::string& st : {s.style, std::string("all")})
                for (int k : {s.k, 0}) {
                    if (st == "all" && (styles.size() < 2 || k != 0)) continue;
                    auto& a = acc[{st, k, it.method}];
                    a.first += v;
                    ++a.second;
                }
        }
        json groups = json::array();
        std::vector<std::string> order_styles = styles;
        if (styles.size() > 1) order_styles.push_back("all");
        std::vector<std::string> methods = {o.base};
        methods.insert(methods.end(), compares.begin(), compares.end());
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
        clip_summary = {{"model", scorer->identity()},
                        {"text", o.clip_text == "prompt" ? "the generation prompt" : "the LoRAs' trigger words"},
                        {"formula", "100 * max(cos(image embedding, text embedding), 0)"},
                        {"images", items.size()},
                        {"groups", groups}};
        outcome.clip_images = items.size();
    }

    // ---- summary ----
    json agg = aggregate_judgements(pairs, o.base, compares);
    json summary;
    summary["run"] = o.run_dir;
    summary["created"] = utc_timestamp();
    summary["multilora_version"] = multilora::version();
    summary["base"] = o.base;
    summary["compare"] = compares;
    summary["judge"] = {{"enabled", judging},
                        {"model", js.model},
                        {"api_base", js.api_base},
                        {"temperature", js.temperature},
                        {"max_tokens", js.max_tokens},
                        {"prompt_template", template_name},
                        {"retries", o.retries}};
    summary["judgements"] = {{"requested", jobs.size()},
                             {"ok", pairs.size()},
                             {"failed", outcome.failed},
                             {"missing", jobs.size() - pairs.size()},
                             {"usage_this_run", usage}};
    summary["lora_info"] = catalog.sources();
    summary["groups"] = agg["groups"];
    summary["method_means"] = agg["method_means"];
    summary["clipscore"] = clip_summary;
    json set_rows = json::array();
    for (size_t i = 0; i < sets.size(); ++i) {
        const auto& s = sets[i];
        json row = {{"style", s.style}, {"k", s.k}, {"lora_ids", s.lora_ids}, {"prompt", s.prompt()}};
        if (s.seed) row["seed"] = *s.seed;
        json elems = json::array();
        for (const auto& e : s.elements)
            elems.push_back({{"id", e.id}, {"category", e.category}, {"name", e.name}, {"triggers", e.triggers}});
        row["elements"] = elems;
        row["sheet"] = s.sheet.empty() ? json(nullptr) : json(relative_to(s.sheet, eval_dir));
        json images = json::object();
        for (const auto& [m, img] : s.images) images[m] = relative_to(img.png, eval_dir);
        row["images"] = images;
        json judge = json::object();
        for (const auto& c : compares) {
            double sb[2] = {0, 0}, sc[2] = {0, 0};
            int n = 0;
            for (const auto& p : pairs) {
                if (p.style != s.style || p.k != s.k || p.set_key != s.id() || p.compare != c) continue;
                const int ci = p.compare_first ? 0 : 1;
                sc[0] += p.scores.composition[ci];
                sc[1] += p.scores.image[ci];
                sb[0] += p.scores.composition[1 - ci];
                sb[1] += p.scores.image[1 - ci];
                ++n;
            }
            if (!n) continue;
            auto verdict = [](double c, double b) {
                return c > b + 1e-9 ? "win" : c < b - 1e-9 ? "loss" : "tie";
            };
            judge[c] = {{"orders", n},
                        {"mean",
                         {{o.base, {{"composition", sb[0] / n}, {"image", sb[1] / n}}},
                          {c, {{"composition", sc[0] / n}, {"image", sc[1] / n}}}}},
                        {"verdict", {{"composition", verdict(sc[0], sb[0])}, {"image", verdict(sc[1], sb[1])}}}};
        }
        row["judge"] = judge;
        auto cs = clip_by_set.find(std::to_string(i));
        if (cs != clip_by_set.end()) row["clipscore"] = cs->second;
        set_rows.push_back(row);
    }
    summary["sets"] = set_rows;

    io::write_file_atomic((eval_dir / "summary.json").string(), summary.dump(2) + "\n");
    io::write_file_atomic((eval_dir / "summary.md").string(), render_summary_markdown(summary));
    io::write_file_atomic((eval_dir / "report.html").string(), render_report_html(summary));
    spdlog::info("wrote {}, summary.md and report.html ({} of {} judgement(s) valid)",
                 (eval_dir / "summary.json").string(), pairs.size(), jobs.size());
    return outcome;
}

}  // namespace multilora::eval
