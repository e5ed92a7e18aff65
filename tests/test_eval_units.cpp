// Judge prompt, score parsing, request/answer JSON, Retry-After and backoff, batch folder indexing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval_test_support.h"
#include "multilora/eval/judge_client.h"
#include "multilora/eval/judge_prompt.h"
#include "multilora/eval/run_index.h"
#include "multilora/eval/score_parser.h"
#include "multilora/eval/text_util.h"
#include "multilora/util/error.h"

using namespace multilora::eval;
using nlohmann::json;
namespace fs = std::filesystem;

// ---- score parsing ----

TEST(EvalScores, CanonicalBlock) {
    auto r = parse_judge_scores(
        "Image 1: Composition Quality: 7.5/10, Image Quality: 8/10\nImage 2: Composition Quality: 6/10, Image "
        "Quality: 9.5/10");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_DOUBLE_EQ(r.scores.composition[0], 7.5);
    EXPECT_DOUBLE_EQ(r.scores.image[0], 8);
    EXPECT_DOUBLE_EQ(r.scores.composition[1], 6);
    EXPECT_DOUBLE_EQ(r.scores.image[1], 9.5);
}

TEST(EvalScores, ExtraTextMarkdownAndCase) {
    std::string a = multilora::test::judge_answer(4, 5.5, 8, 7);
    auto r = parse_judge_scores(a);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_DOUBLE_EQ(r.scores.composition[0], 4);
    EXPECT_DOUBLE_EQ(r.scores.image[0], 5.5);
    EXPECT_DOUBLE_EQ(r.scores.composition[1], 8);
    EXPECT_DOUBLE_EQ(r.scores.image[1], 7);
    auto r2 = parse_judge_scores(
        "Sure.\r\n- IMAGE 1 - composition quality 3 / 10; image quality: 2/10.\r\n- image 2: Composition "
        "Quality: 10/10 | Image Quality: 0.5/10\r\nThanks!");
    ASSERT_TRUE(r2.ok) << r2.error;
    auto r3 = parse_judge_scores("Image 1 \u2013 Composition Quality \u2014 9/10, Image Quality: 8/10\n"
                                 "Image 2: Composition Quality:\u00a07/10, Image Quality: 6.5/10");
    ASSERT_TRUE(r3.ok) << r3.error;
    EXPECT_DOUBLE_EQ(r3.scores.composition[0], 9);
    EXPECT_DOUBLE_EQ(r3.scores.composition[1], 7);
    EXPECT_DOUBLE_EQ(r3.scores.image[1], 6.5);
    EXPECT_DOUBLE_EQ(r2.scores.composition[0], 3);
    EXPECT_DOUBLE_EQ(r2.scores.image[0], 2);
    EXPECT_DOUBLE_EQ(r2.scores.composition[1], 10);
    EXPECT_DOUBLE_EQ(r2.scores.image[1], 0.5);
}

TEST(EvalScores, LastLineOfAnImageWins) {
    auto r = parse_judge_scores(
        "Draft: Image 1: Composition Quality: 2/10, Image Quality: 2/10\n\nScores:\nImage 1: Composition Quality: "
        "6/10, Image Quality: 7/10\nImage 2: Composition Quality: 5/10, Image Quality: 4/10");
    ASSERT_TRUE(r.ok);
    EXPECT_DOUBLE_EQ(r.scores.composition[0], 6);
    EXPECT_DOUBLE_EQ(r.scores.image[0], 7);
}

TEST(EvalScores, MalformedBlocksAreRejected) {
    const char* bad[] = {
        "",
        "Both images are fine.",
        "Image 1: Composition Quality: 7/10, Image Quality: 8/10",  // image 2 missing
        "Image 1: Composition Quality: 7/10\nImage 2: Composition Quality: 6/10",  // image quality missing
        "Image 1: Composition Quality: 11/10, Image Quality: 8/10\nImage 2: Composition Quality: 6/10, Image "
        "Quality: 5/10",  // out of range
        "Image 1: Composition Quality: N/A, Image Quality: 8/10\nImage 2: Composition Quality: 6/10, Image Quality: "
        "5/10",
        "Image 1: Composition Quality: 7, Image Quality: 8\nImage 2: Composition Quality: 6, Image Quality: 5",  // no /10
        "Image 1: Composition Quality: 7/100, Image Quality: 8/10\nImage 2: Composition Quality: 6/10, Image "
        "Quality: 5/10",
        "Image 1:\nComposition Quality: 7/10\nImage Quality: 8/10\nImage 2:\nComposition Quality: 6/10\nImage "
        "Quality: 5/10",  // not one line per image
    };
    for (const char* a : bad) {
        auto r = parse_judge_scores(a);
        EXPECT_FALSE(r.ok) << a;
        EXPECT_FALSE(r.error.empty()) << a;
    }
    auto r = parse_judge_scores("Image 1: Composition Quality: 11/10, Image Quality: 8/10\nImage 2: Composition "
                                "Quality: 6/10, Image Quality: 5/10");
    EXPECT_NE(r.error.find("range"), std::string::npos) << r.error;
}

// ---- prompt ----

TEST(EvalPrompt, ElementsAndRubric) {
    LoraElement a{"character_1", "character", "Kamado Nezuko", {"kamado nezuko", "black hair", "pink eyes"}, true};
    LoraElement b{"clothing_2", "clothing", "Zero Suit", {"zero suit", "bodysuit"}, true};
    PromptContext ctx{{a, b}, "anime", 2, "masterpiece"};
    std::string p = render_judge_prompt(default_judge_template(), ctx);
    EXPECT_NE(p.find("1. character (Kamado Nezuko): kamado nezuko, black hair, pink eyes\n2. clothing (Zero Suit): "
                     "zero suit, bodysuit"),
              std::string::npos)
        << p;
    for (const char* needle :
         {"0 to 10 in steps of 0.5", "Subtract 3 points when an element is missing", "Subtract 1 point for every feature",
          "Subtract 1 point for a minor inconsistency", "Subtract 3 points for every deformity",
          "Subtract 2 points for visible problems with texture, lighting or colour",
          "Subtract 1 point for every minor flaw", "critically", "do not let the two images tie",
          "Image 1: Composition Quality: x/10, Image Quality: y/10",
          "Image 2: Composition Quality: x/10, Image Quality: y/10"})
        EXPECT_NE(p.find(needle), std::string::npos) << needle;
    EXPECT_EQ(p.find("{elements}"), std::string::npos);
}

TEST(EvalPrompt, TemplatePlaceholders) {
    LoraElement a{"character_1", "character", "Nezuko", {"nezuko"}, true};
    LoraElement u{"object_9", "object", "object_9", {}, false};
    PromptContext ctx{{a, u}, "anime", 2, "masterpiece, nezuko, thing"};
    std::string p = render_judge_prompt("k={k} style={style} {unknown}\n{elements}\nP={prompt}", ctx);
    EXPECT_EQ(p,
              "k=2 style=anime {unknown}\n1. character (Nezuko): nezuko\n2. object (object_9)\n(The images were "
              "generated from the prompt: \"masterpiece, nezuko, thing\")\nP=masterpiece, nezuko, thing");
}

// ---- request / answer ----

TEST(EvalRequest, ChatRequestShape) {
    JudgeSettings s;
    s.model = "judge-x";
    s.temperature = 0.5;
    s.max_tokens = 321;
    json r = build_chat_request(s, "PROMPT", "abc", "hello");
    EXPECT_EQ(r["model"], "judge-x");
    EXPECT_EQ(r["max_tokens"], 321);
    EXPECT_DOUBLE_EQ(r["temperature"].get<double>(), 0.5);
    ASSERT_EQ(r["messages"].size(), 1u);
    EXPECT_EQ(r["messages"][0]["role"], "user");
    const json& c = r["messages"][0]["content"];
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[0], json({{"type", "text"}, {"text", "PROMPT"}}));
    EXPECT_EQ(c[1]["type"], "image_url");
    EXPECT_EQ(c[1]["image_url"]["url"], "data:image/png;base64,YWJj");
    EXPECT_EQ(c[2]["image_url"]["url"], "data:image/png;base64,aGVsbG8=");
    json e = elide_request_images(r, {"a.png", "b.png"}, {"h1", "h2"});
    EXPECT_EQ(e["messages"][0]["content"][1]["image_url"]["url"], "data:image/png;base64,<4 bytes of base64 omitted>");
    EXPECT_EQ(e["messages"][0]["content"][2]["image_url"]["x_multilora_path"], "b.png");
    EXPECT_EQ(e["messages"][0]["content"][2]["image_url"]["x_multilora_sha256"], "h2");
    EXPECT_EQ(chat_completions_url("http://h:1/v1/"), "http://h:1/v1/chat/completions");
    EXPECT_EQ(chat_completions_url("http://h:1/v1/chat/completions"), "http://h:1/v1/chat/completions");
}

TEST(EvalRequest, Base64) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
}

TEST(EvalRequest, AnswerExtraction) {
    auto a = extract_chat_answer(multilora::test::chat_completion("hello"));
    ASSERT_TRUE(a.ok);
    EXPECT_EQ(a.text, "hello");
    EXPECT_EQ(a.finish_reason, "stop");
    EXPECT_EQ(a.usage["prompt_tokens"], 1500);
    auto parts = extract_chat_answer(
        R"({"choices":[{"message":{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]})");
    ASSERT_TRUE(parts.ok);
    EXPECT_EQ(parts.text, "ab");
    EXPECT_FALSE(extract_chat_answer("<html>bad gateway</html>").ok);
    EXPECT_FALSE(extract_chat_answer(R"({"choices":[]})").ok);
    EXPECT_FALSE(extract_chat_answer(R"({"choices":[{"message":{"role":"assistant","content":null}}]})").ok);
    auto err = extract_chat_answer(R"({"error":{"message":"boom","type":"server_error"}})");
    EXPECT_FALSE(err.ok);
    EXPECT_NE(err.error.find("boom"), std::string::npos);
}

TEST(EvalRequest, RetryAfterAndBackoff) {
    EXPECT_DOUBLE_EQ(*retry_after_seconds({{"retry-after", "3"}}, 0), 3.0);
    EXPECT_DOUBLE_EQ(*retry_after_seconds({{"retry-after-ms", "1500"}, {"retry-after", "9"}}, 0), 1.5);
    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
    EXPECT_DOUBLE_EQ(*retry_after_seconds({{"retry-after", "Sun, 06 Nov 1994 08:49:37 GMT"}}, 784111770), 7.0);
    EXPECT_FALSE(retry_after_seconds({{"retry-after", "soon"}}, 0).has_value());
    EXPECT_FALSE(retry_after_seconds({}, 0).has_value());
    EXPECT_DOUBLE_EQ(backoff_seconds(0, 1.0, 60, 1.0), 1.0);
    EXPECT_DOUBLE_EQ(backoff_seconds(0, 1.0, 60, 0.0), 0.5);
    EXPECT_DOUBLE_EQ(backoff_seconds(3, 1.0, 60, 1.0), 8.0);
    EXPECT_DOUBLE_EQ(backoff_seconds(10, 1.0, 60, 1.0), 60.0);
    EXPECT_EQ(redact("key sk-123 and sk-123", "sk-123"), "key [redacted] and [redacted]");
}

// ---- batch folders ----

TEST(EvalRunIndex, StemParsing) {
    std::string m;
    std::vector<std::string> ids;
    ASSERT_TRUE(parse_image_stem("merge_character_1_clothing_2", m, ids));
    EXPECT_EQ(m, "merge");
    EXPECT_EQ(ids, (std::vector<std::string>{"character_1", "clothing_2"}));
    ASSERT_TRUE(parse_image_stem("composite_tiny_character_1_style_10", m, ids));
    EXPECT_EQ(ids, (std::vector<std::string>{"tiny_character_1", "style_10"}));
    EXPECT_FALSE(parse_image_stem("sheet", m, ids));
    EXPECT_FALSE(parse_image_stem("merge_character", m, ids));
    EXPECT_FALSE(parse_image_stem("merge_1_2", m, ids));
}

TEST(EvalRunIndex, LogAndScan) {
    auto dir = multilora::test::make_temp_dir("eval-index");
    using multilora::test::FakeSet;
    multilora::test::make_run(dir, {{"anime", {"character_1", "clothing_2"}, {"merge", "switch"}},
                                    {"anime", {"character_2", "style_1", "object_3"}, {"merge", "composite"}}});
    // An image only in the tree (another shard's log), and one log line whose image is gone.
    multilora::test::write_test_png(dir / "anime/2_elements/composite_character_1_clothing_2.png", 50);
    std::ofstream(dir / "anime/2_elements/composite_character_1_clothing_2.json") << "{\"prompt\":\"p\",\"seed\":111}";
    std::ofstream(dir / "batch.jsonl", std::ios::app)
        << R"({"style":"anime","k":2,"method":"merge","lora_ids":["character_3","clothing_1"],"prompt":"x","output":"anime/2_elements/gone.png"})"
        << "\nnot json\n";
    RunIndex idx = index_run(dir.string());
    EXPECT_TRUE(idx.has_batch_log);
    ASSERT_EQ(idx.sets.size(), 2u);
    EXPECT_EQ(idx.images, 5u);
    EXPECT_EQ(idx.skipped_log_lines, 2u);
    EXPECT_EQ(idx.sets[0].key, "character_1_clothing_2");
    EXPECT_EQ(idx.sets[0].images.size(), 3u);
    EXPECT_EQ(idx.sets[0].images.at("switch").prompt, "masterpiece, best quality, character_1_clothing_2");
    EXPECT_FALSE(idx.sets[0].sheet.empty());
    EXPECT_EQ(idx.sets[1].k, 3);
    EXPECT_EQ(idx.methods, (std::vector<std::string>{"merge", "switch", "composite"}));

    LoraCatalog cat;
    CompositionSet s = idx.sets[0];
    EXPECT_EQ(cat.describe(s), 0);  // built-in ComposLoRA list
    EXPECT_EQ(s.elements[0].name, "Kamado Nezuko");
    EXPECT_EQ(s.elements[1].category, "clothing");
    cat.use_builtin_composlora(false);
    EXPECT_EQ(cat.describe(s), 2);
    EXPECT_EQ(s.elements[1].category, "clothing");
    EXPECT_EQ(s.elements[1].name, "clothing_2");
    std::ofstream(dir / "info.json") << R"({"character": [{"id": "character_1", "name": "Nezuko", "trigger": ["nezuko"]}],
        "clothing": [{"id": "clothing_2", "name": "Suit", "trigger": ["suit", "tie"], "url": "x"}]})";
    cat.add_file("anime", (dir / "info.json").string());
    EXPECT_EQ(cat.describe(s), 0);
    EXPECT_EQ(s.elements[1].triggers, (std::vector<std::string>{"suit", "tie"}));
    EXPECT_THROW(cat.add_file("", (dir / "missing.json").string()), multilora::UsageError);
}

TEST(EvalRunIndex, ScanWithoutLog) {
    auto dir = multilora::test::make_temp_dir("eval-scan");
    multilora::test::make_run(dir, {{"reality", {"character_1", "background_2"}, {"merge", "switch"}}}, false);
    RunIndex idx = index_run(dir.string());
    EXPECT_FALSE(idx.has_batch_log);
    ASSERT_EQ(idx.sets.size(), 1u);
    EXPECT_EQ(idx.sets[0].images.size(), 2u);
    EXPECT_EQ(idx.sets[0].prompt(), "masterpiece, best quality, character_1_background_2");
}

TEST(EvalRunIndex, NoBatchOutput) {
    auto dir = multilora::test::make_temp_dir("eval-empty");
    fs::create_directories(dir / "anime" / "2_elements");
    try {
        index_run(dir.string());
        FAIL() << "expected an error";
    } catch (const multilora::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("no batch output"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("batch.jsonl"), std::string::npos) << e.what();
    }
    EXPECT_THROW(index_run((dir / "nope").string()), multilora::UsageError);
}

TEST(EvalRunIndex, SeedsPngFieldAndManifestDetails) {
    auto dir = multilora::test::make_temp_dir("eval-seeds");
    // Two seeds per method, `png` instead of `output`, prompt and LoRA descriptions only in the manifests.
    std::string log;
    int n = 0;
    for (int seed : {111, 222})
        for (const char* m : {"merge", "switch"}) {
            std::string stem = std::string(m) + "_character_1_object_2_seed" + std::to_string(seed);
            fs::path rel = fs::path("anime/2_elements") / (stem + ".png");
            multilora::test::write_test_png(dir / rel, ++n);
            json manifest = {
                {"settings", {{"prompt", "masterpiece, nezuko, apple"}}},
                {"batch",
                 {{"noise", {{"seed", seed}}},
                  {"lora_set",
                   {{{"id", "character_1"}, {"name", "Nezuko (from manifest)"}, {"category", "character"}, {"trigger", {"nezuko"}}},
                    {{"id", "object_2"}, {"name", "Apple"}, {"category", "object"}, {"trigger", {"apple"}}}}}}}};
            std::ofstream(fs::path(dir / rel).replace_extension(".json")) << manifest.dump();
            if (seed == 111)  // the 222 images are only in the tree
                log += json({{"style", "anime"}, {"k", 2}, {"method", m}, {"seed", seed},
                             {"lora_ids", {"character_1", "object_2"}}, {"png", rel.string()}})
                           .dump() +
                       "\n";
        }
    std::ofstream(dir / "batch.jsonl") << log;
    RunIndex idx = index_run(dir.string());
    ASSERT_EQ(idx.sets.size(), 2u);
    EXPECT_EQ(idx.images, 4u);
    for (const auto& s : idx.sets) {
        ASSERT_TRUE(s.seed.has_value());
        EXPECT_EQ(s.images.size(), 2u);
        EXPECT_EQ(s.prompt(), "masterpiece, nezuko, apple");
        EXPECT_EQ(s.id(), "character_1_object_2#seed" + std::to_string(*s.seed));
    }
    EXPECT_NE(idx.sets[0].seed, idx.sets[1].seed);
    LoraCatalog cat;
    cat.add_logged(idx);
    CompositionSet s = idx.sets[0];
    EXPECT_EQ(cat.describe(s), 0);
    EXPECT_EQ(s.elements[0].name, "Nezuko (from manifest)");  // the run's own description beats the built-in list
    EXPECT_EQ(s.elements[1].triggers, (std::vector<std::string>{"apple"}));

    std::string m;
    std::vector<std::string> ids;
    std::optional<uint64_t> seed;
    ASSERT_TRUE(parse_image_stem("merge_character_1_object_2_seed222", m, ids, &seed));
    EXPECT_EQ(*seed, 222u);
    EXPECT_EQ(ids.size(), 2u);
}
