// CLIPScore: the preprocessing against Pillow's bicubic resize (hashes of Pillow 9.4's output on hand-made
// images), and a tiny random CLIP in transformers' layout whose score is checked against the formula
// computed here with plain tensor operations.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "eval_test_support.h"
#include "multilora/eval/clip_score.h"
#include "multilora/eval/image_preprocess.h"
#include "multilora/io/safetensors.h"
#include "multilora/io/sha256.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

using namespace multilora::eval;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The hand-made test image (also generated in Python for the Pillow references below).
std::vector<uint8_t> pattern(int w, int h) {
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
            p[0] = static_cast<uint8_t>((x * 7 + y * 3) % 256);
            p[1] = static_cast<uint8_t>((x * y) % 256);
            p[2] = static_cast<uint8_t>(((x ^ y) * 5) % 256);
        }
    return rgb;
}

std::string sha(const std::vector<uint8_t>& v) {
    return multilora::io::sha256_hex(std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
}

}  // namespace

// Pillow 9.4 (Debian 12): Image.frombytes("RGB", (w, h), pattern).resize((rw, rh), resample=3,
// reducing_gap=None), then crop((left, top, left+224, top+224)); sha256 of tobytes().
TEST(EvalClipPreprocess, MatchesPillowBicubicAndTransformersSizes) {
    struct Case {
        int w, h, rw, rh;
        const char* resized;
        const char* cropped;
    };
    const Case cases[] = {
        {320, 240, 298, 224, "0f1436b95d7c828162a4a3d6398e02bb8c2a642b81a9a31d7fa0cdc0d93d2d23",
         "9041acdb0c5a1cc9d6a4cea2eb96e5f23afbe2a96e70cbde6e14040c0f3607ad"},
        {100, 150, 224, 336, "a34acf32c4d70774efa7e6fcade031e5dd7899f0bf988dc2f85b53f6e6e5e19a",
         "b262f11052a50173c1e8baa12f1e16aa01551f0e0901a0e01ad666c2f1f50b56"},
        {512, 512, 224, 224, "439ceaa04cddf884616204ab1e4e4cc32e97925b292d7071e2224e5cbedc53e2",
         "439ceaa04cddf884616204ab1e4e4cc32e97925b292d7071e2224e5cbedc53e2"},
        {768, 1024, 224, 298, "17da2715dc353bfbe7b5147e54b4ac31202950eec84647d8b6e649a2d4d7652e",
         "57b325ad297e44e30425e4da852bf072a0032cb4834a9c56b45f07eee8079454"},
        {224, 224, 224, 224, "af158cefa72e4bd54829638b4a49459f4c007b164f6ae0c550e613e3536bf916",
         "af158cefa72e4bd54829638b4a49459f4c007b164f6ae0c550e613e3536bf916"},
    };
    ClipPreprocessConfig cfg;
    for (const auto& c : cases) {
        auto img = pattern(c.w, c.h);
        int rw = 0, rh = 0;
        clip_resize_size(c.w, c.h, 224, rw, rh);
        EXPECT_EQ(rw, c.rw);
        EXPECT_EQ(rh, c.rh);
        auto resized = (rw == c.w && rh == c.h) ? img : resize_bicubic_pil(img.data(), c.w, c.h, rw, rh);
        EXPECT_EQ(sha(resized), c.resized) << c.w << "x" << c.h;
        int ow = 0, oh = 0;
        auto cropped = clip_resize_and_crop(img.data(), c.w, c.h, cfg, ow, oh);
        EXPECT_EQ(ow, 224);
        EXPECT_EQ(oh, 224);
        EXPECT_EQ(sha(cropped), c.cropped) << c.w << "x" << c.h;
    }
    // One-pass and mixed resizes.
    const struct {
        int w, h, ow, oh;
        const char* hash;
    } direct[] = {{50, 40, 30, 40, "a04af2009615d78ac79f0fb9488d695053dde436879552a09d2cc914f3e78867"},
                  {50, 40, 50, 25, "42186e475e5d7ae6a8dcb617509ae6bf67408c9b925802b33bda2d726c3d422a"},
                  {37, 29, 61, 13, "ae3467582185492893e8e49ebf826dee8b287708acedc76efb348eb27f26d9fb"}};
    for (const auto& d : direct) {
        auto img = pattern(d.w, d.h);
        EXPECT_EQ(sha(resize_bicubic_pil(img.data(), d.w, d.h, d.ow, d.oh)), d.hash) << d.ow << "x" << d.oh;
    }
}

TEST(EvalClipPreprocess, NormalisesWithClipMeanAndStd) {
    // A uniform image stays uniform through resize and crop; then (v/255 - mean) / std.
    std::vector<uint8_t> img(300 * 200 * 3);
    for (size_t i = 0; i < img.size(); i += 3) {
        img[i] = 200;
        img[i + 1] = 100;
        img[i + 2] = 0;
    }
    at::Tensor t = clip_preprocess(img.data(), 300, 200, ClipPreprocessConfig{});
    ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 224, 224}));
    const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, stdv[3] = {0.26862954, 0.26130258, 0.27577711};
    const double v[3] = {200, 100, 0};
    for (int c = 0; c < 3; ++c) {
        double want = (v[c] / 255.0 - mean[c]) / stdv[c];
        EXPECT_NEAR(t[c].min().item<double>(), want, 1e-6);
        EXPECT_NEAR(t[c].max().item<double>(), want, 1e-6);
    }
    // A 224x224 image is not resampled: pixel (x=5, y=7) maps straight through.
    auto p = pattern(224, 224);
    at::Tensor u = clip_preprocess(p.data(), 224, 224, ClipPreprocessConfig{});
    for (int c = 0; c < 3; ++c)
        EXPECT_NEAR(u[c][7][5].item<double>(), (p[(7 * 224 + 5) * 3 + c] / 255.0 - mean[c]) / stdv[c], 1e-6);
}

// ---- a tiny random CLIP ----

namespace {

constexpr int kHidden = 32, kInter = 64, kLayers = 2, kHeads = 2, kPatch = 32, kImage = 224, kProj = 16;

std::map<std::string, at::Tensor> tiny_clip_weights(uint64_t seed) {
    torch::manual_seed(seed);
    std::map<std::string, at::Tensor> w;
    auto r = [](std::vector<int64_t> shape, double s) { return torch::randn(shape) * s; };
    auto layers = [&](const std::string& prefix) {
        for (int l = 0; l < kLayers; ++l) {
            std::string p = prefix + ".encoder.layers." + std::to_string(l) + ".";
            for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
                w[p + "self_attn." + proj + ".weight"] = r({kHidden, kHidden}, 0.2);
                w[p + "self_attn." + proj + ".bias"] = r({kHidden}, 0.05);
            }
            for (const char* ln : {"layer_norm1", "layer_norm2"}) {
                w[p + ln + ".weight"] = 1 + r({kHidden}, 0.1);
                w[p + ln + ".bias"] = r({kHidden}, 0.1);
            }
            w[p + "mlp.fc1.weight"] = r({kInter, kHidden}, 0.2);
            w[p + "mlp.fc1.bias"] = r({kInter}, 0.05);
            w[p + "mlp.fc2.weight"] = r({kHidden, kInter}, 0.2);
            w[p + "mlp.fc2.bias"] = r({kHidden}, 0.05);
        }
    };
    const int grid = kImage / kPatch;
    w["vision_model.embeddings.patch_embedding.weight"] = r({kHidden, 3, kPatch, kPatch}, 0.02);
    w["vision_model.embeddings.class_embedding"] = r({kHidden}, 0.5);
    w["vision_model.embeddings.position_embedding.weight"] = r({grid * grid + 1, kHidden}, 0.2);
    w["vision_model.embeddings.position_ids"] = torch::arange(grid * grid + 1, at::kLong).unsqueeze(0);  // unused
    w["vision_model.pre_layrnorm.weight"] = 1 + r({kHidden}, 0.1);
    w["vision_model.pre_layrnorm.bias"] = r({kHidden}, 0.1);
    w["vision_model.post_layernorm.weight"] = 1 + r({kHidden}, 0.1);
    w["vision_model.post_layernorm.bias"] = r({kHidden}, 0.1);
    layers("vision_model");
    w["text_model.embeddings.token_embedding.weight"] = r({49408, kHidden}, 0.3);
    w["text_model.embeddings.position_embedding.weight"] = r({77, kHidden}, 0.2);
    w["text_model.final_layer_norm.weight"] = 1 + r({kHidden}, 0.1);
    w["text_model.final_layer_norm.bias"] = r({kHidden}, 0.1);
    layers("text_model");
    w["visual_projection.weight"] = r({kProj, kHidden}, 0.3);
    w["text_projection.weight"] = r({kProj, kHidden}, 0.3);
    w["logit_scale"] = torch::tensor({2.6592f});
    return w;
}

fs::path write_tiny_clip(const fs::path& dir, const std::map<std::string, at::Tensor>& w) {
    fs::create_directories(dir);
    std::vector<std::pair<std::string, at::Tensor>> list(w.begin(), w.end());
    multilora::io::save_safetensors((dir / "model.safetensors").string(), list);
    json cfg = {{"architectures", {"CLIPModel"}},
                {"projection_dim", kProj},
                {"text_config",
                 {{"hidden_size", kHidden}, {"intermediate_size", kInter}, {"num_hidden_layers", kLayers},
                  {"num_attention_heads", kHeads}, {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"},
                  {"layer_norm_eps", 1e-5}, {"vocab_size", 49408}, {"eos_token_id", 2}}},
                {"vision_config",
                 {{"hidden_size", kHidden}, {"intermediate_size", kInter}, {"num_hidden_layers", kLayers},
                  {"num_attention_heads", kHeads}, {"image_size", kImage}, {"patch_size", kPatch},
                  {"hidden_act", "quick_gelu"}, {"layer_norm_eps", 1e-5}}}};
    std::ofstream(dir / "config.json") << cfg.dump(2);
    return dir;
}

// ---- the reference: CLIP written out with plain tensor operations ----

at::Tensor ln(const at::Tensor& x, const std::map<std::string, at::Tensor>& w, const std::string& p) {
    return at::layer_norm(x, {kHidden}, w.at(p + ".weight"), w.at(p + ".bias"), 1e-5);
}
at::Tensor lin(const at::Tensor& x, const std::map<std::string, at::Tensor>& w, const std::string& p, bool bias = true) {
    return at::linear(x, w.at(p + ".weight"), bias ? w.at(p + ".bias") : at::Tensor());
}

at::Tensor encoder(at::Tensor x, const std::map<std::string, at::Tensor>& w, const std::string& prefix, bool causal) {
    const int64_t b = x.size(0), t = x.size(1), d = kHidden / kHeads;
    for (int l = 0; l < kLayers; ++l) {
        std::string p = prefix + ".encoder.layers." + std::to_string(l) + ".";
        at::Tensor h = ln(x, w, p + "layer_norm1");
        auto heads = [&](const at::Tensor& y) { return y.view({b, t, kHeads, d}).transpose(1, 2); };
        at::Tensor q = heads(lin(h, w, p + "self_attn.q_proj")) / std::sqrt(static_cast<double>(d));
        at::Tensor k = heads(lin(h, w, p + "self_attn.k_proj"));
        at::Tensor v = heads(lin(h, w, p + "self_attn.v_proj"));
        at::Tensor s = at::matmul(q, k.transpose(-1, -2));
        if (causal) s = s.masked_fill(at::ones({t, t}, at::kBool).triu(1), -INFINITY);
        at::Tensor a = at::matmul(s.softmax(-1), v).transpose(1, 2).reshape({b, t, kHidden});
        x = x + lin(a, w, p + "self_attn.out_proj");
        at::Tensor m = lin(ln(x, w, p + "layer_norm2"), w, p + "mlp.fc1");
        m = m * at::sigmoid(1.702 * m);
        x = x + lin(m, w, p + "mlp.fc2");
    }
    return x;
}

at::Tensor ref_image_embed(const at::Tensor& px, const std::map<std::string, at::Tensor>& w) {
    at::Tensor x = at::conv2d(px.unsqueeze(0), w.at("vision_model.embeddings.patch_embedding.weight"), {}, kPatch);
    x = x.flatten(2).transpose(1, 2);
    x = at::cat({w.at("vision_model.embeddings.class_embedding").view({1, 1, kHidden}), x}, 1) +
        w.at("vision_model.embeddings.position_embedding.weight");
    x = encoder(ln(x, w, "vision_model.pre_layrnorm"), w, "vision_model", false);
    return lin(ln(x.select(1, 0), w, "vision_model.post_layernorm"), w, "visual_projection", false)[0];
}

at::Tensor ref_text_embed(const std::string& text, const std::map<std::string, at::Tensor>& w) {
    auto ids = multilora::text::ClipTokenizer::builtin()->encode_padded(text);
    std::vector<int64_t> ids64(ids.begin(), ids.end());
    at::Tensor t = torch::tensor(ids64, at::kLong).unsqueeze(0);
    at::Tensor x = at::embedding(w.at("text_model.embeddings.token_embedding.weight"), t) +
                   w.at("text_model.embeddings.position_embedding.weight");
    x = ln(encoder(x, w, "text_model", true), w, "text_model.final_layer_norm");
    int64_t eos = 0;
    for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] == multilora::text::ClipTokenizer::kEosId) {
            eos = static_cast<int64_t>(i);
            break;
        }
    return lin(x[0][eos], w, "text_projection", false);
}

double ref_score(const at::Tensor& px, const std::string& text, const std::map<std::string, at::Tensor>& w) {
    at::Tensor a = ref_image_embed(px, w), b = ref_text_embed(text, w);
    double cos = (a.dot(b) / (a.norm() * b.norm())).item<double>();
    return 100.0 * std::max(cos, 0.0);
}

}  // namespace

TEST(EvalClipScore, TinyRandomClipMatchesTheFormula) {
    auto dir = multilora::test::make_temp_dir("clip-tiny");
    auto w = tiny_clip_weights(7);
    write_tiny_clip(dir / "clip", w);
    auto scorer = ClipScorer::load((dir / "clip").string());
    EXPECT_EQ(scorer->vision_config().image_size, 224);
    EXPECT_EQ(scorer->vision_config().patch_size, 32);
    EXPECT_EQ(scorer->vision_config().num_attention_heads, 2);
    EXPECT_EQ(scorer->text_config().num_attention_heads, 2);

    // Negated text projection: the cosine flips sign, so exactly one of the two models scores 0.
    auto wn = w;
    wn["text_projection.weight"] = -w["text_projection.weight"];
    write_tiny_clip(dir / "clip-neg", wn);
    auto neg = ClipScorer::load((dir / "clip-neg").string());

    const std::string texts[] = {"a photo of a cat", "masterpiece, best quality, kamado nezuko, black hair",
                                 "RAW photo, 8k uhd"};
    int zeros = 0;
    for (int i = 0; i < 3; ++i) {
        auto img = pattern(224, 224);
        for (auto& v : img) v = static_cast<uint8_t>(v + 37 * i);
        // Independent pixel values (no resampling at 224x224).
        at::Tensor px = at::empty({3, 224, 224});
        const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, stdv[3] = {0.26862954, 0.26130258, 0.27577711};
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < 224; ++y)
                for (int x = 0; x < 224; ++x)
                    px[c][y][x] = (img[(y * 224 + x) * 3 + c] / 255.0 - mean[c]) / stdv[c];
        double want = ref_score(px, texts[i], w);
        double want_neg = ref_score(px, texts[i], wn);
        double got = scorer->score_rgb(img.data(), 224, 224, texts[i]);
        double got_neg = neg->score_rgb(img.data(), 224, 224, texts[i]);
        EXPECT_NEAR(got, want, 1e-3) << texts[i];
        EXPECT_NEAR(got_neg, want_neg, 1e-3) << texts[i];
        EXPECT_GE(got, 0.0);
        EXPECT_TRUE(got == 0.0 || got_neg == 0.0);
        zeros += (got == 0.0) + (got_neg == 0.0);
        // The un-clamped cosine, both ways.
        at::Tensor a = ref_image_embed(px, w), b = ref_text_embed(texts[i], w);
        double cos = (a.dot(b) / (a.norm() * b.norm())).item<double>();
        EXPECT_NEAR(std::max(got, got_neg), 100.0 * std::abs(cos), 1e-3);
    }
    EXPECT_EQ(zeros, 3);
    // Embeddings have the projection size.
    EXPECT_EQ(scorer->embed_texts({"x", "y"}).sizes(), (std::vector<int64_t>{2, kProj}));
}

TEST(EvalClipScore, CommandAddsClipScoreToTheSummary) {
    auto dir = multilora::test::make_temp_dir("clip-cli");
    auto w = tiny_clip_weights(11);
    write_tiny_clip(dir / "clip", w);
    fs::path run = dir / "run";
    multilora::test::make_run(run, {{"anime", {"character_1", "clothing_2"}, {"merge", "switch"}}});
    auto r = multilora::test::run_env("", "evaluate --run " + run.string() + " --no-judge --clipscore --clip-model " +
                                              (dir / "clip").string() + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    json summary = json::parse(multilora::test::read_bytes(run / "eval" / "summary.json"));
    ASSERT_TRUE(summary["clipscore"].is_object()) << summary.dump(2);
    // Reference: each image through the preprocessing (checked against Pillow above) and the formula.
    std::map<std::string, double> want;
    for (const char* m : {"merge", "switch"}) {
        fs::path png = run / "anime/2_elements" / (std::string(m) + "_character_1_clothing_2.png");
        int wd = 0, ht = 0;
        auto rgb = multilora::io::decode_png_rgb(multilora::test::read_bytes(png), &wd, &ht);
        at::Tensor px = clip_preprocess(rgb.data(), wd, ht, ClipPreprocessConfig{});
        want[m] = ref_score(px, "masterpiece, best quality, character_1_clothing_2", w);
    }
    int checked = 0;
    for (const auto& g : summary["clipscore"]["groups"])
        if (g["style"] == "anime" && g["k"] == 2) {
            EXPECT_NEAR(g["mean"].get<double>(), want[g["method"].get<std::string>()], 1e-3) << g;
            EXPECT_EQ(g["images"], 1);
            ++checked;
        }
    EXPECT_EQ(checked, 2);
    EXPECT_NEAR(summary["sets"][0]["clipscore"]["merge"].get<double>(), want["merge"], 1e-3);
    EXPECT_NE(multilora::test::read_bytes(run / "eval" / "summary.md").find("CLIPScore"), std::string::npos);
    // Resume: nothing is scored twice.
    auto lines_before = multilora::test::read_bytes(run / "eval" / "clipscores.jsonl");
    auto r2 = multilora::test::run_env("", "evaluate --run " + run.string() + " --no-judge --clip-model " +
                                               (dir / "clip").string() + " --threads 1");
    ASSERT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_EQ(multilora::test::read_bytes(run / "eval" / "clipscores.jsonl"), lines_before);
}

TEST(EvalClipScore, BadModelPathsAreClearErrors) {
    auto dir = multilora::test::make_temp_dir("clip-bad");
    EXPECT_THROW(ClipScorer::load((dir / "missing").string()), multilora::RuntimeError);
    fs::create_directories(dir / "pickled");
    std::ofstream(dir / "pickled" / "pytorch_model.bin") << "PK\x03\x04";
    try {
        ClipScorer::load((dir / "pickled").string());
        FAIL();
    } catch (const multilora::RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("safetensors"), std::string::npos) << e.what();
    }
    // Weights that are not a CLIP.
    std::vector<std::pair<std::string, at::Tensor>> t = {{"foo", torch::zeros({2})}};
    fs::create_directories(dir / "notclip");
    multilora::io::save_safetensors((dir / "notclip" / "model.safetensors").string(), t);
    try {
        ClipScorer::load((dir / "notclip").string());
        FAIL();
    } catch (const multilora::RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("patch_embedding"), std::string::npos) << e.what();
    }
}
