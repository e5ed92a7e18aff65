// --prompt-syntax a1111 end to end: weighted encoding against its formula, identities with plain text, LoRA
// tags resolved like --lora, and the PNG's parameters carrying the tags back to A1111.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "compose_test_support.h"
#include "multilora/io/png_writer.h"
#include "multilora/text/a1111_prompt.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using namespace multilora::compose_test;

namespace {

at::Tensor encode_ids(text::ClipTextModelImpl& enc, const std::vector<int32_t>& ids) {
    std::vector<int64_t> wide(ids.begin(), ids.end());
    return enc.forward(torch::tensor(wide, torch::kLong).unsqueeze(0));
}

}  // namespace

// No emphasis and under 75 tokens: A1111's encoding is the plain one, bit for bit (all weights 1, the mean
// restored by a factor of exactly 1).
TEST(A1111Encoding, UnweightedShortPromptEqualsPlainText) {
    auto model = load_tiny();
    c10::InferenceMode im;
    auto plain = text::encode_prompts(*model.tokenizer, *model.text_encoder, "a red fox in the snow", "blurry",
                                      text::LongPromptMode::Truncate);
    auto a1111 = text::encode_prompts(*model.tokenizer, *model.text_encoder, "a red fox in the snow", "blurry",
                                      text::LongPromptMode::Truncate, text::PromptSyntax::A1111);
    EXPECT_TRUE(at::equal(plain.cond, a1111.cond));
    EXPECT_TRUE(at::equal(plain.uncond, a1111.uncond));
}

// (fox:1.5): the hidden states times each token's weight, rescaled to the unweighted chunk's mean
// (sd_emphasis.py's "Original"), worked here from the plain chunk.
TEST(A1111Encoding, EmphasisScalesTokensAndRestoresTheMean) {
    auto model = load_tiny();
    c10::InferenceMode im;
    auto got = text::encode_prompts(*model.tokenizer, *model.text_encoder, "a (fox:1.5) [in] snow", "",
                                    text::LongPromptMode::Truncate, text::PromptSyntax::A1111);
    const auto ids = model.tokenizer->encode_padded("a fox in snow");
    at::Tensor z = encode_ids(*model.text_encoder, ids);
    at::Tensor w = torch::ones({1, 77, 1});
    w[0][2][0] = 1.5;        // bos, a, fox
    w[0][3][0] = 1 / 1.1;    // in
    at::Tensor weighted = z * w;
    at::Tensor expect = weighted * (z.mean() / weighted.mean());
    EXPECT_TRUE(torch::allclose(got.cond, expect, 1e-6, 1e-6));
    EXPECT_GT((got.cond - z).abs().max().item<double>(), 1e-3);
}

TEST(A1111Encoding, BreakStartsAChunkAndTheNegativeIsPadded) {
    auto model = load_tiny();
    c10::InferenceMode im;
    auto got = text::encode_prompts(*model.tokenizer, *model.text_encoder, "a fox BREAK snow", "blurry",
                                    text::LongPromptMode::Truncate, text::PromptSyntax::A1111);
    EXPECT_EQ(got.chunks, 2);
    EXPECT_EQ(got.cond.size(1), 154);
    EXPECT_EQ(got.uncond.size(1), 154);
    // The negative's second chunk is A1111's empty chunk (bos + eos), which weights of 1 leave as encoded.
    at::Tensor empty = encode_ids(*model.text_encoder, text::a1111_empty_chunk().ids);
    EXPECT_TRUE(torch::allclose(got.uncond.narrow(1, 77, 77), empty, 1e-6, 1e-6));
}

namespace {

test::CommandResult gen(const std::string& args, const fs::path& out, const std::string& name) {
    return test::run_multilora("generate --threads 1 --no-progress --model " + test::tiny_single_file() +
                               " --steps 3 --width 64 --height 64 --seed 5 --out " + out.string() + " --name " + name +
                               " " + args);
}

}  // namespace

// A <lora:NAME:W> tag is the same LoRA as --lora FILE:W (the prompt without the tag otherwise plain), and the
// PNG's parameters keep the tag, with --lora flags added as tags, for A1111 to read back.
TEST(A1111Cli, LoraTagsActLikeLoraFlagsAndTravelInThePng) {
    const fs::path out = test::make_temp_dir("a1111-cli");
    const fs::path loras = test::tiny_model_dir() / "loras";
    auto tagged = gen("--prompt-syntax a1111 --lora-dir " + loras.string() + " -p 'a fox <lora:tiny-style:0.7>' --lora " +
                          (loras / "tiny-object.safetensors").string() + ":0.5 --method merge",
                      out, "tagged");
    ASSERT_EQ(tagged.exit_code, 0) << tagged.output;
    auto flags = gen("-p 'a fox' --lora " + (loras / "tiny-object.safetensors").string() + ":0.5 --lora " +
                         (loras / "tiny-style.safetensors").string() + ":0.7 --method merge",
                     out, "flags");
    ASSERT_EQ(flags.exit_code, 0) << flags.output;
    int w = 0, h = 0;
    const auto a = io::decode_png_rgb(test::read_bytes(out / "tagged.png"), &w, &h);
    const auto b = io::decode_png_rgb(test::read_bytes(out / "flags.png"), &w, &h);
    EXPECT_EQ(a, b);
    const auto manifest = nlohmann::json::parse(test::read_bytes(out / "tagged.json"));
    EXPECT_EQ(manifest["settings"]["prompt_syntax"], "a1111");
    ASSERT_EQ(manifest["loras"].size(), 2u);
    EXPECT_DOUBLE_EQ(manifest["loras"][1]["weight"].get<double>(), 0.7);
    std::string params;
    for (const auto& [key, value] : io::read_png_text_chunks(test::read_bytes(out / "tagged.png")))
        if (key == "parameters") params = value;
    EXPECT_EQ(params.rfind("a fox <lora:tiny-style:0.7> <lora:tiny-object:0.5>\n", 0), 0u) << params;
}

TEST(A1111Cli, TokenizePrintsChunksWithWeights) {
    auto r = test::run_multilora("tokenize --prompt-syntax a1111 --prompt 'a (fox:1.5) BREAK snow'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    ASSERT_EQ(j["chunks"].size(), 2u);
    EXPECT_EQ(j["chunks"][0]["ids"][0], 49406);
    EXPECT_EQ(j["chunks"][0]["weights"][2], 1.5);
    EXPECT_EQ(j["chunks"][1]["ids"].size(), 77u);
    EXPECT_EQ(j["token_count"], 76);
}
