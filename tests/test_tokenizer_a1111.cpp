// A1111 prompt syntax: parse_prompt_attention and tokenize_line against A1111's own code.
// tests/data/reference/a1111_prompt.json: 55 prompts through A1111's parse_prompt_attention (prompt_parser.py)
// and 13 long, weighted, BREAK and comma-heavy prompts through its tokenize_line (sd_hijack_clip.py, comma
// back-off 20), both run with Python 3.11 on A1111's source; the file's "origin" says which commits.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "multilora/text/a1111_prompt.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

using namespace multilora;

namespace {

const nlohmann::json& reference() {
    static const nlohmann::json j = [] {
        std::ifstream in(std::string(ML_TEST_DATA_DIR) + "/reference/a1111_prompt.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

}  // namespace

TEST(A1111Prompt, ParseMatchesA1111OnEveryReferencePrompt) {
    const auto& cases = reference()["parse_prompt_attention"];
    ASSERT_GE(cases.size(), 40u);
    for (const auto& c : cases) {
        const std::string prompt = c["prompt"];
        SCOPED_TRACE(prompt);
        const auto runs = text::parse_prompt_attention(prompt);
        ASSERT_EQ(runs.size(), c["runs"].size());
        for (size_t i = 0; i < runs.size(); ++i) {
            EXPECT_EQ(runs[i].text, c["runs"][i][0].get<std::string>());
            // The same double multiplications in the same order: bit-equal (1.5730000000000004 and all).
            EXPECT_EQ(runs[i].weight, c["runs"][i][1].get<double>());
        }
    }
}

TEST(A1111Prompt, ChunksMatchA1111TokenizeLine) {
    const auto tok = text::ClipTokenizer::builtin();
    for (const auto& c : reference()["tokenize_line"]) {
        const std::string prompt = c["prompt"];
        SCOPED_TRACE(prompt.substr(0, 60));
        const text::WeightedPrompt p = text::a1111_tokenize(*tok, prompt);
        EXPECT_EQ(p.token_count, c["token_count"].get<int>());
        ASSERT_EQ(p.chunks.size(), c["chunks"].size());
        for (size_t i = 0; i < p.chunks.size(); ++i) {
            EXPECT_EQ(p.chunks[i].ids, c["chunks"][i]["ids"].get<std::vector<int32_t>>()) << "chunk " << i;
            EXPECT_EQ(p.chunks[i].weights, c["chunks"][i]["weights"].get<std::vector<double>>()) << "chunk " << i;
        }
    }
}

// Worked by hand: a comma 5 tokens before the end of a full chunk moves the 5 tokens after it to the next
// chunk; with the back-off off, the chunk is cut at 75.
TEST(A1111Prompt, CommaBackOff) {
    const auto tok = text::ClipTokenizer::builtin();
    std::string prompt;
    for (int i = 0; i < 70; ++i) prompt += "fox ";
    prompt += ", a b c d e f g";  // 70 words, the comma (71st token), then 7 more: 78 tokens
    const text::WeightedPrompt backed = text::a1111_tokenize(*tok, prompt);
    ASSERT_EQ(backed.chunks.size(), 2u);
    EXPECT_EQ(backed.chunks[0].ids[71], tok->encode(",")[0]);
    EXPECT_EQ(backed.chunks[0].ids[72], text::ClipTokenizer::kEosId);
    EXPECT_EQ(backed.chunks[1].ids[1], tok->encode("a")[0]);
    const text::WeightedPrompt cut = text::a1111_tokenize(*tok, prompt, 0);
    EXPECT_EQ(cut.chunks[0].ids[75], tok->encode("d")[0]);
    EXPECT_EQ(cut.chunks[1].ids[1], tok->encode("e")[0]);
}

TEST(A1111Prompt, ABadWeightIsAUsageError) {
    EXPECT_THROW(text::parse_prompt_attention("(fox:1.2.3)"), UsageError);
    EXPECT_THROW(text::parse_prompt_attention("(fox:.)"), UsageError);
    EXPECT_EQ(text::parse_prompt_attention("fox:1.2.3)").front().text, "fox:1.2.3)");  // no open bracket: text
}

TEST(A1111Prompt, TagsAreTakenOut) {
    std::vector<text::PromptTag> tags;
    EXPECT_EQ(text::take_prompt_tags("a <lora:tiny-style:0.7>fox <hypernet:x> <not a tag> <:y>", tags),
              "a fox  <not a tag> <:y>");
    ASSERT_EQ(tags.size(), 2u);
    EXPECT_EQ(tags[0].kind, "lora");
    EXPECT_EQ(tags[0].args, (std::vector<std::string>{"tiny-style", "0.7"}));
    EXPECT_EQ(tags[1].kind, "hypernet");
    EXPECT_EQ(tags[1].args, (std::vector<std::string>{"x"}));
}
