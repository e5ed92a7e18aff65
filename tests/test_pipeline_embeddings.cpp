// Textual-inversion embeddings: the three file layouts, names as tokens of their own, and an identity: an
// embedding made of the token rows of "red fox" encodes exactly as the words do.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "compose_test_support.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/text/embeddings.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using namespace multilora::compose_test;

namespace {

// The tiny text encoder's token rows of "red fox" (2 vectors), as an A1111 embedding named RedFox.
std::string red_fox_embedding(const fs::path& dir, pipeline::StableDiffusionModel& model) {
    const auto ids = model.tokenizer->encode("red fox");
    at::Tensor rows = model.text_encoder->token_embedding->weight.index_select(
        0, torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong));
    fs::create_directories(dir);
    const std::string path = (dir / "RedFox.safetensors").string();
    io::save_safetensors(path, {{"emb_params", rows.contiguous()}}, {});
    return path;
}

}  // namespace

TEST(Embeddings, ReadsTheThreeLayouts) {
    const fs::path dir = test::make_temp_dir("emb-layouts");
    io::save_safetensors((dir / "EasyNeg.safetensors").string(), {{"emb_params", torch::randn({3, 32})}}, {});
    io::save_safetensors((dir / "learned_embeds.safetensors").string(), {{"<cat-toy>", torch::randn({32})}}, {});
    io::save_safetensors((dir / "conv.safetensors").string(), {{"string_to_param.*", torch::randn({2, 32})}}, {{"name", "Conv"}});
    auto a = text::read_textual_inversion((dir / "EasyNeg.safetensors").string());
    EXPECT_EQ(a.name, "EasyNeg");
    EXPECT_EQ(a.format, "a1111");
    EXPECT_EQ(a.vectors.sizes().vec(), (std::vector<int64_t>{3, 32}));
    auto d = text::read_textual_inversion((dir / "learned_embeds.safetensors").string());
    EXPECT_EQ(d.name, "<cat-toy>");
    EXPECT_EQ(d.format, "diffusers");
    EXPECT_EQ(d.vectors.size(0), 1);
    auto c = text::read_textual_inversion((dir / "conv.safetensors").string());
    EXPECT_EQ(c.name, "Conv");
    EXPECT_EQ(c.format, "a1111-converted");
    io::save_safetensors((dir / "two.safetensors").string(), {{"a", torch::randn({32})}, {"b", torch::randn({32})}}, {});
    EXPECT_THROW(text::read_textual_inversion((dir / "two.safetensors").string()), RuntimeError);
    EXPECT_EQ(text::embedding_files(dir.string()).size(), 4u);
}

// Each name is a token of its own (as written and lowercased); a 2-vector embedding takes 2 ids.
TEST(Embeddings, NamesBecomeTokensWithOneIdPerVector) {
    auto model = load_tiny();
    const fs::path dir = test::make_temp_dir("emb-tokens");
    const auto e = text::read_textual_inversion(red_fox_embedding(dir, model));
    const int32_t first = static_cast<int32_t>(model.text_encoder->token_embedding->weight.size(0));
    auto tok = text::add_textual_inversions(*model.text_encoder, *model.tokenizer, {e});
    const auto a = model.tokenizer->encode("a"), snow = model.tokenizer->encode("snow");
    EXPECT_EQ(tok->encode("a RedFox snow"), (std::vector<int32_t>{a[0], first, first + 1, snow[0]}));
    EXPECT_EQ(tok->encode("a redfox snow"), (std::vector<int32_t>{a[0], first, first + 1, snow[0]}));
    EXPECT_EQ(model.text_encoder->token_embedding->weight.size(0), first + 2);
}

// The identity: the embedding's rows are "red fox"'s, so "a RedFox in snow" encodes as "a red fox in snow",
// through generate too (same PNG), and the manifest lists the embedding.
TEST(Embeddings, AnEmbeddingOfWordRowsEncodesAsTheWords) {
    const fs::path dir = test::make_temp_dir("emb-identity");
    {
        auto model = load_tiny();
        red_fox_embedding(dir / "emb", model);
    }
    auto gen = [&](const std::string& prompt, const std::string& name, const std::string& extra) {
        auto r = test::run_multilora("generate --threads 1 --no-progress --model " + world().paths.single_file +
                                     " --steps 3 --width 64 --height 64 --seed 4 --out " + (dir / "out").string() +
                                     " --name " + name + " --prompt '" + prompt + "' " + extra);
        EXPECT_EQ(r.exit_code, 0) << r.output;
        int w = 0, h = 0;
        return io::decode_png_rgb(test::read_bytes(dir / "out" / (name + ".png")), &w, &h);
    };
    const auto words = gen("a red fox in snow", "words", "");
    const auto emb = gen("a RedFox in snow", "emb", "--embedding-dir " + (dir / "emb").string());
    EXPECT_EQ(words, emb);
    const auto plain = gen("a RedFox in snow", "plain", "");  // without the embedding: other tokens, other image
    EXPECT_NE(plain, emb);
    const auto m = nlohmann::json::parse(test::read_bytes(dir / "out" / "emb.json"));
    ASSERT_EQ(m["model"]["embeddings"].size(), 1u);
    EXPECT_EQ(m["model"]["embeddings"][0]["name"], "RedFox");
    EXPECT_EQ(m["model"]["embeddings"][0]["vectors"], 2);
}
