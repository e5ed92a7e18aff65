// `multilora evaluate` against a loopback judge started by the test (127.0.0.1, ephemeral port): request
// shape, answers with extra text and malformed blocks (retried), 429 with Retry-After, 5xx, dropped
// connections, resume after SIGKILL, bounded concurrency, dry run, and the bad-input errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include "eval_test_support.h"
#include "multilora/eval/text_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using multilora::test::FakeSet;
using multilora::test::HttpRequest;
using multilora::test::LoopbackServer;
using multilora::test::Reply;

namespace {

const std::string kKey = "sk-test-SECRETKEY123";
const std::string kEnv = "OPENAI_API_KEY=" + kKey;

// data URL -> method, for every image of a run
std::map<std::string, std::string> image_methods(const fs::path& run) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(run)) {
        if (e.path().extension() != ".png") continue;
        std::string stem = e.path().stem().string();
        if (stem.rfind("sheet_", 0) == 0) continue;
        out["data:image/png;base64," + multilora::eval::base64_encode(multilora::test::read_bytes(e.path()))] =
            stem.substr(0, stem.find('_'));
    }
    return out;
}

// The two methods a request shows, in order.
std::pair<std::string, std::string> shown(const HttpRequest& r, const std::map<std::string, std::string>& methods) {
    json body = json::parse(r.body);
    const json& c = body["messages"][0]["content"];
    auto m = [&](const json& part) {
        auto it = methods.find(part["image_url"]["url"].get<std::string>());
        return it == methods.end() ? std::string("?") : it->second;
    };
    return {m(c[1]), m(c[2])};
}

// A judge that always gives switch/composite 8/7 and merge 6/6, whatever the order.
Reply fair_answer(const HttpRequest& r, const std::map<std::string, std::string>& methods) {
    auto [a, b] = shown(r, methods);
    auto sc = [](const std::string& m) { return m == "merge" ? std::pair<double, double>{6, 6} : std::pair<double, double>{8, 7}; };
    return multilora::test::ok_reply(
        multilora::test::judge_answer(sc(a).first, sc(a).second, sc(b).first, sc(b).second));
}

std::string args(const fs::path& run, const std::string& url, const std::string& extra = "") {
    std::string conc = extra.find("--concurrency") == std::string::npos ? " --concurrency 1 " : " ";
    return "evaluate --run " + run.string() + " --base merge --compare switch --api-base " + url +
           " --backoff-base 0.01 --backoff-max 0.05 --timeout 20 --connect-timeout 5" + conc + extra;
}

std::vector<json> jsonl(const fs::path& p) {
    std::vector<json> out;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        if (j.is_object()) out.push_back(j);
    }
    return out;
}

int count_type(const std::vector<json>& lines, const std::string& type, const std::string& status = "") {
    int n = 0;
    for (const auto& l : lines)
        if (l.value("type", "") == type && (status.empty() || l.value("status", "") == status)) ++n;
    return n;
}

void expect_no_key_anywhere(const fs::path& run, const std::string& output) {
    EXPECT_EQ(output.find(kKey), std::string::npos) << output;
    for (const auto& e : fs::recursive_directory_iterator(run))
        if (e.is_regular_file())
            EXPECT_EQ(multilora::test::read_bytes(e.path()).find(kKey), std::string::npos) << e.path();
}

const json* find_group(const json& summary, const std::string& style, const json& k, const std::string& cmp) {
    for (const auto& g : summary["groups"])
        if (g["style"] == style && g["k"] == k && g["compare"] == cmp) return &g;
    return nullptr;
}

}  // namespace

TEST(EvalJudge, RequestShapeOutputsAndNoKey) {
    auto run = multilora::test::make_temp_dir("judge-shape");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_2"}, {"merge", "switch", "composite"}},
                                    {"anime", {"character_2", "style_1", "object_3"}, {"merge", "switch"}}});
    auto methods = image_methods(run);
    LoopbackServer server([&](const HttpRequest& r, int) { return fair_answer(r, methods); });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto reqs = server.requests();
    ASSERT_EQ(reqs.size(), 4u);
    int merge_first = 0, switch_first = 0, nezuko = 0;
    for (const auto& q : reqs) {
        EXPECT_EQ(q.method, "POST");
        EXPECT_EQ(q.path, "/v1/chat/completions");
        EXPECT_EQ(q.headers.at("authorization"), "Bearer " + kKey);
        EXPECT_NE(q.headers.at("content-type").find("application/json"), std::string::npos);
        json body = json::parse(q.body);
        EXPECT_EQ(body["model"], "gpt-4o");
        EXPECT_EQ(body["max_tokens"], 2048);
        EXPECT_DOUBLE_EQ(body["temperature"].get<double>(), 1.0);
        ASSERT_EQ(body["messages"].size(), 1u);
        EXPECT_EQ(body["messages"][0]["role"], "user");
        const json& c = body["messages"][0]["content"];
        ASSERT_EQ(c.size(), 3u);
        EXPECT_EQ(c[0]["type"], "text");
        EXPECT_EQ(c[1]["type"], "image_url");
        EXPECT_EQ(c[2]["type"], "image_url");
        std::string text = c[0]["text"];
        EXPECT_NE(text.find("1. character ("), std::string::npos) << text;
        EXPECT_NE(text.find("Image 1: Composition Quality: x/10, Image Quality: y/10"), std::string::npos);
        if (text.find("1. character (Kamado Nezuko): kamado nezuko, black hair, pink eyes, forehead\n2. clothing (") !=
            std::string::npos)
            ++nezuko;
        auto [a, b] = shown(q, methods);
        EXPECT_NE(a, "?");
        EXPECT_NE(b, "?");
        (a == "merge" ? merge_first : switch_first) += 1;
        EXPECT_EQ(q.body.find("composite_"), std::string::npos);
    }
    EXPECT_EQ(merge_first, 2);
    EXPECT_EQ(switch_first, 2);
    EXPECT_EQ(nezuko, 2);  // set character_1 + clothing_2, described from the built-in ComposLoRA list

    auto lines = jsonl(run / "eval" / "judgements.jsonl");
    EXPECT_EQ(count_type(lines, "exchange"), 4);
    EXPECT_EQ(count_type(lines, "judgement", "ok"), 4);
    for (const auto& l : lines)
        if (l["type"] == "exchange") {
            EXPECT_EQ(l["status"], 200);
            EXPECT_EQ(l["response"]["object"], "chat.completion");
            EXPECT_EQ(l["request"]["model"], "gpt-4o");
            EXPECT_NE(l["request"]["messages"][0]["content"][1]["image_url"]["url"].get<std::string>().find("omitted"),
                      std::string::npos);
        }
    json summary = json::parse(multilora::test::read_bytes(run / "eval" / "summary.json"));
    EXPECT_EQ(summary["judgements"]["ok"], 4);
    const json* g2 = find_group(summary, "anime", 2, "switch");
    ASSERT_NE(g2, nullptr);
    EXPECT_DOUBLE_EQ((*g2)["win_tie_loss"]["composition"]["win"].get<double>(), 100.0);
    EXPECT_DOUBLE_EQ((*g2)["mean"]["merge"]["composition"].get<double>(), 6.0);
    EXPECT_DOUBLE_EQ((*g2)["mean"]["switch"]["image"].get<double>(), 7.0);
    ASSERT_NE(find_group(summary, "anime", "all", "switch"), nullptr);
    EXPECT_EQ((*find_group(summary, "anime", "all", "switch"))["sets"], 2);
    std::string html = multilora::test::read_bytes(run / "eval" / "report.html");
    EXPECT_NE(html.find("../anime/2_elements/sheet_character_1_clothing_2.png"), std::string::npos);
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_TRUE(fs::exists(run / "eval" / "summary.md"));
    expect_no_key_anywhere(run, r.output);
}

TEST(EvalJudge, PromptTemplateAndKeyFile) {
    auto run = multilora::test::make_temp_dir("judge-template");
    multilora::test::make_run(run, {{"anime", {"character_3", "background_1"}, {"merge", "switch"}}});
    std::ofstream(run / "tmpl.txt") << "Compare {k} elements ({style}):\n{elements}\nEnd with Image 1: Composition "
                                       "Quality: x/10, Image Quality: y/10";
    std::ofstream(run / "key.txt") << "sk-from-file-777\n";
    auto methods = image_methods(run);
    LoopbackServer server([&](const HttpRequest& r, int) { return fair_answer(r, methods); });
    auto r = multilora::test::run_env("", args(run, server.base_url(), "--prompt-template " + (run / "tmpl.txt").string() +
                                                                          " --api-key-file " + (run / "key.txt").string() +
                                                                          " --judge-model my-vlm --temperature 0.2 --max-tokens 99"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto reqs = server.requests();
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0].headers.at("authorization"), "Bearer sk-from-file-777");
    json body = json::parse(reqs[0].body);
    EXPECT_EQ(body["model"], "my-vlm");
    EXPECT_EQ(body["max_tokens"], 99);
    EXPECT_DOUBLE_EQ(body["temperature"].get<double>(), 0.2);
    EXPECT_EQ(body["messages"][0]["content"][0]["text"].get<std::string>(),
              "Compare 2 elements (anime):\n1. character (Son Goku): son goku, spiked hair, muscular male, wristband\n2. "
              "background (Bamboolight Background): bamboolight, outdoors, bamboo\nEnd with Image 1: Composition "
              "Quality: x/10, Image Quality: y/10");
    EXPECT_EQ(r.output.find("sk-from-file-777"), std::string::npos);
}

TEST(EvalJudge, MalformedAnswersAreRetried) {
    auto run = multilora::test::make_temp_dir("judge-malformed");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    auto methods = image_methods(run);
    LoopbackServer server([&](const HttpRequest& r, int i) {
        if (i == 0) return multilora::test::ok_reply("I cannot decide; both are lovely.");
        if (i == 1) return multilora::test::ok_reply("Image 1: Composition Quality: 7/10, Image Quality: 8/10\nImage 2: "
                                                     "Composition Quality: seven");
        if (i == 2) {
            Reply bad;
            bad.body = "<html>not json</html>";
            return bad;
        }
        return fair_answer(r, methods);
    });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url(), "--retries 3"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(server.count(), 5);  // 3 unparseable + 1 valid, then 1 for the other order
    auto lines = jsonl(run / "eval" / "judgements.jsonl");
    int unparsed = 0;
    for (const auto& l : lines)
        if (l["type"] == "exchange" && l.contains("answer_parsed") && !l["answer_parsed"].get<bool>()) ++unparsed;
    EXPECT_EQ(unparsed, 3);
    EXPECT_EQ(count_type(lines, "judgement", "ok"), 2);
    for (const auto& l : lines)
        if (l["type"] == "judgement" && l["order"] == "base_first") EXPECT_EQ(l["attempts"], 4);
}

TEST(EvalJudge, RetriesAreBoundedAndFailuresReported) {
    auto run = multilora::test::make_temp_dir("judge-bounded");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    LoopbackServer server([&](const HttpRequest&, int) { return multilora::test::ok_reply("no scores here"); });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url(), "--retries 2"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(server.count(), 6);  // 2 orders x (1 + 2 retries)
    EXPECT_NE(r.output.find("got no scores"), std::string::npos) << r.output;
    auto lines = jsonl(run / "eval" / "judgements.jsonl");
    EXPECT_EQ(count_type(lines, "judgement", "failed"), 2);
    json summary = json::parse(multilora::test::read_bytes(run / "eval" / "summary.json"));
    EXPECT_EQ(summary["judgements"]["ok"], 0);
    EXPECT_EQ(summary["judgements"]["missing"], 2);
}

TEST(EvalJudge, RateLimitHonoursRetryAfterAnd5xxBacksOff) {
    auto run = multilora::test::make_temp_dir("judge-429");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    auto methods = image_methods(run);
    LoopbackServer server([&](const HttpRequest& r, int i) {
        if (i == 0) {
            Reply x;
            x.status = 429;
            x.headers = {{"Retry-After", "1"}};
            x.body = R"({"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}})";
            return x;
        }
        if (i == 1) {
            Reply x;
            x.status = 503;
            x.body = R"({"error":{"message":"The server is overloaded","type":"server_error"}})";
            return x;
        }
        return fair_answer(r, methods);
    });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto reqs = server.requests();
    ASSERT_EQ(reqs.size(), 4u);
    double gap1 = std::chrono::duration<double>(reqs[1].received - reqs[0].received).count();
    double gap2 = std::chrono::duration<double>(reqs[2].received - reqs[1].received).count();
    EXPECT_GE(gap1, 0.95);  // Retry-After: 1 beats the 0.01 s backoff
    EXPECT_LT(gap2, 0.9);   // exponential backoff from 0.01 s
    auto lines = jsonl(run / "eval" / "judgements.jsonl");
    bool saw429 = false;
    for (const auto& l : lines)
        if (l["type"] == "exchange" && l["status"] == 429) {
            saw429 = true;
            EXPECT_DOUBLE_EQ(l["retry_after_s"].get<double>(), 1.0);
            EXPECT_GE(l["wait_s"].get<double>(), 1.0);
        }
    EXPECT_TRUE(saw429);
    EXPECT_EQ(count_type(lines, "judgement", "ok"), 2);
}

TEST(EvalJudge, DroppedConnectionsAreRetried) {
    auto run = multilora::test::make_temp_dir("judge-drop");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    auto methods = image_methods(run);
    LoopbackServer server([&](const HttpRequest& r, int i) {
        Reply x = fair_answer(r, methods);
        if (i == 0) x.action = Reply::kDropBeforeResponse;
        if (i == 1) x.action = Reply::kDropMidBody;
        return x;
    });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(server.count(), 4);
    auto lines = jsonl(run / "eval" / "judgements.jsonl");
    int transport = 0;
    for (const auto& l : lines)
        if (l["type"] == "exchange" && l["status"] == 0 && l.contains("error")) ++transport;
    EXPECT_EQ(transport, 2);
    EXPECT_EQ(count_type(lines, "judgement", "ok"), 2);
}

TEST(EvalJudge, ResumeAfterKill) {
    auto run = multilora::test::make_temp_dir("judge-resume");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}},
                                    {"anime", {"character_2", "clothing_2"}, {"merge", "switch"}},
                                    {"anime", {"character_3", "style_2"}, {"merge", "switch"}}});
    auto methods = image_methods(run);
    int judged_before = 0;
    {
        LoopbackServer slow([&](const HttpRequest& r, int i) {
            Reply x = fair_answer(r, methods);
            if (i >= 3) x.delay_ms = 1500;  // the 4th answer never arrives before the kill
            return x;
        });
        pid_t pid = multilora::test::spawn_env(kEnv, args(run, slow.base_url()),
                                               run / "killed-run.log");
        ASSERT_GT(pid, 0);
        // Kill once the 4th request is in: with concurrency 1, three judgements are recorded by then.
        for (int i = 0; i < 400 && slow.requests().size() < 4; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        ASSERT_GE(slow.requests().size(), 4u);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        auto lines = jsonl(run / "eval" / "judgements.jsonl");
        judged_before = count_type(lines, "judgement", "ok");
        EXPECT_EQ(judged_before, 3);
        // A write cut by the kill.
        std::ofstream(run / "eval" / "judgements.jsonl", std::ios::app) << "{\"type\":\"judgement\",\"sta";
    }
    {
        LoopbackServer server([&](const HttpRequest& r, int) { return fair_answer(r, methods); });
        auto r = multilora::test::run_env(kEnv, args(run, server.base_url()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_EQ(server.count(), 6 - judged_before);
        json summary = json::parse(multilora::test::read_bytes(run / "eval" / "summary.json"));
        EXPECT_EQ(summary["judgements"]["ok"], 6);
        EXPECT_EQ(summary["judgements"]["missing"], 0);
    }
    {
        LoopbackServer server([&](const HttpRequest& r, int) { return fair_answer(r, methods); });
        auto r = multilora::test::run_env(kEnv, args(run, server.base_url()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_EQ(server.count(), 0);
    }
    // Aggregating only needs no key.
    auto r = multilora::test::run_env("", args(run, "http://127.0.0.1:9/v1", "--no-judge"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto lines = jsonl(run / "eval" / "judgements.jsonl");
    EXPECT_EQ(count_type(lines, "judgement", "ok"), 6);
}

TEST(EvalJudge, ConcurrencyIsBounded) {
    auto run = multilora::test::make_temp_dir("judge-conc");
    std::vector<FakeSet> sets;
    for (int i = 1; i <= 4; ++i) sets.push_back({"anime", {"character_" + std::to_string(i % 3 + 1), "object_" + std::to_string(i)}, {"merge", "switch"}});
    multilora::test::make_run(run, sets);
    auto methods = image_methods(run);
    LoopbackServer server([&](const HttpRequest& r, int) {
        Reply x = fair_answer(r, methods);
        x.delay_ms = 200;
        return x;
    });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url(), "--concurrency 3"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(server.count(), 8);
    EXPECT_LE(server.max_in_flight(), 3);
    EXPECT_GE(server.max_in_flight(), 2);
}

TEST(EvalJudge, DryRunSendsNothing) {
    auto run = multilora::test::make_temp_dir("judge-dry");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch", "composite"}},
                                    {"reality", {"character_1", "style_2"}, {"merge", "switch", "composite"}}});
    LoopbackServer server([&](const HttpRequest&, int) { return multilora::test::ok_reply("x"); });
    auto r = multilora::test::run_env("", "evaluate --run " + run.string() + " --compare switch --compare composite "
                                          "--dry-run --api-base " + server.base_url());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(server.count(), 0);
    EXPECT_NE(r.output.find("dry run: 8 request(s)"), std::string::npos) << r.output;
    auto lines = jsonl(run / "eval" / "requests.dry-run.jsonl");
    ASSERT_EQ(lines.size(), 8u);
    for (const auto& l : lines) {
        EXPECT_EQ(l["request"]["model"], "gpt-4o");
        EXPECT_EQ(l["request"]["messages"][0]["content"].size(), 3u);
        EXPECT_EQ(l["url"], server.base_url() + "/chat/completions");
    }
    EXPECT_FALSE(fs::exists(run / "eval" / "judgements.jsonl"));
}

TEST(EvalJudge, NoBatchOutputIsAClearError) {
    auto run = multilora::test::make_temp_dir("judge-nobatch");
    auto r = multilora::test::run_env(kEnv, args(run, "http://127.0.0.1:9/v1"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("no batch output"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("multilora batch"), std::string::npos) << r.output;
}

TEST(EvalJudge, MissingKeyIsAClearError) {
    auto run = multilora::test::make_temp_dir("judge-nokey");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    LoopbackServer server([&](const HttpRequest&, int) { return multilora::test::ok_reply("x"); });
    auto r = multilora::test::run_env("", args(run, server.base_url()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("OPENAI_API_KEY"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--api-key-file"), std::string::npos) << r.output;
    EXPECT_EQ(server.count(), 0);
    auto r2 = multilora::test::run_env("", args(run, server.base_url(), "--api-key-file " + (run / "nope").string()));
    EXPECT_EQ(r2.exit_code, 2) << r2.output;
    EXPECT_NE(r2.output.find("cannot read"), std::string::npos) << r2.output;
}

TEST(EvalJudge, UnreachableEndpointIsAClearError) {
    auto run = multilora::test::make_temp_dir("judge-unreach");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    std::string url = "http://127.0.0.1:" + std::to_string(multilora::test::closed_port()) + "/v1";
    auto t0 = std::chrono::steady_clock::now();
    auto r = multilora::test::run_env(kEnv, args(run, url, "--concurrency 2"));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("cannot reach the judge endpoint " + url + "/chat/completions"), std::string::npos)
        << r.output;
    EXPECT_LT(secs, 20);
    expect_no_key_anywhere(run, r.output);
}

TEST(EvalJudge, RefusedKeyIsAClearErrorWithoutTheKey) {
    auto run = multilora::test::make_temp_dir("judge-401");
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_1"}, {"merge", "switch"}}});
    LoopbackServer server([&](const HttpRequest&, int) {
        Reply x;
        x.status = 401;
        x.body = R"({"error":{"message":"Incorrect API key provided: )" + kKey +
                 R"(. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}})";
        return x;
    });
    auto r = multilora::test::run_env(kEnv, args(run, server.base_url()));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("refused the API key"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("[redacted]"), std::string::npos) << r.output;
    EXPECT_EQ(server.count(), 1);
    expect_no_key_anywhere(run, r.output);
}
