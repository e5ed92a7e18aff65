// Batch composition in-process: composing a subset of attached LoRAs (LoraComposer's explicit slots) equals
// attaching only that subset, a batch image is exactly `generate` from its set's noise draw, and images of
// several sets in one generation (RunSession::run_images) each get their own LoRAs.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "batch_test_support.h"
#include "multilora/io/png_writer.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/lora/layer_adapters.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/run_session.h"
#include "multilora/compose/registry.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;
using namespace multilora;

namespace {

std::string lora(const std::string& id) { return (test::tiny_model_dir() / "loras" / (id + ".safetensors")).string(); }

pipeline::StableDiffusionModel load_tiny() {
    at::set_num_threads(1);
    pipeline::LoadOptions opt;
    opt.model_path = test::tiny_single_file();
    return pipeline::load_stable_diffusion(opt);
}

std::unique_ptr<lora::AdapterSet> attach(pipeline::StableDiffusionModel& m, const std::vector<std::string>& ids) {
    std::vector<lora::LoraSpec> specs;
    for (const auto& id : ids) specs.push_back({lora(id), 1.0});
    return std::make_unique<lora::AdapterSet>(*m.unet, *m.text_encoder, m.unet->config().to_json(), specs, 0.8, m.dtype,
                                              m.device);
}

pipeline::GenerationResult run(pipeline::StableDiffusionModel& m, lora::AdapterSet* adapters, const std::string& method,
                               const std::vector<int>& slots, const pipeline::GenerationRequest& request) {
    compose::MethodArgs args = compose::default_args(method);
    if (method == "switch") args.set_text("tau", "1", "test");
    auto composer = compose::registry().create(method, {pipeline::model_parts(m), adapters, slots, args});
    auto result = pipeline::generate(m, request, composer.get());
    adapters->clear();
    return result;
}

// The tiny model with four LoRAs attached (slots 0-3: character, peft, style, object), one thread.
std::unique_ptr<pipeline::RunSession> four_lora_session() {
    at::set_num_threads(1);
    std::vector<lora::LoraSpec> specs;
    for (const char* id : {"tiny-character", "tiny-peft", "tiny-style", "tiny-object"}) specs.push_back({lora(id), 1.0});
    pipeline::LoadOptions load;
    load.model_path = test::tiny_single_file();
    return std::make_unique<pipeline::RunSession>(pipeline::SessionOptions{load, specs, 0.8});
}

pipeline::GenerationRequest tiny_request(const std::string& prompt) {
    pipeline::GenerationRequest r;
    r.prompt = prompt;
    r.negative_prompt = "blurry";
    r.steps = 4;
    r.width = 64;
    r.height = 64;
    r.seed = 111;
    return r;
}

}  // namespace

TEST(BatchCompose, ExplicitSlotsEqualAttachingOnlyThoseLoras) {
    auto model = load_tiny();
    auto all = attach(model, {"tiny-character", "tiny-peft", "tiny-style", "tiny-object"});
    auto request = tiny_request("a fox");
    for (std::string method : {"merge", "switch", "composite"}) {
        at::Tensor subset = run(model, all.get(), method, {0, 3}, request).latents;
        at::Tensor other = run(model, all.get(), method, {0, 2}, request).latents;
        all.reset();
        auto two = attach(model, {"tiny-character", "tiny-object"});
        at::Tensor alone = run(model, two.get(), method, {}, request).latents;
        two.reset();
        all = attach(model, {"tiny-character", "tiny-peft", "tiny-style", "tiny-object"});
        EXPECT_TRUE(at::equal(subset, alone)) << method << " max diff "
                                              << (subset - alone).abs().max().item<double>();
        EXPECT_GT((subset - other).abs().max().item<double>(), 1e-4) << "the slots were ignored";
    }
    EXPECT_THROW(compose::registry().create("merge", {pipeline::model_parts(model), all.get(), {4}, compose::default_args("merge")}),
                 std::exception);
}

TEST(BatchCompose, BatchImageIsGenerateFromTheSetsNoiseDraw) {
    test::BatchDir d = test::tiny_batch("compose");
    auto r = test::run_multilora(test::batch_args(d));
    ASSERT_EQ(r.exit_code, 0) << r.output;

    auto model = load_tiny();
    auto two = attach(model, {"tiny-character", "tiny-object"});
    // k=2, set 2: tiny-character + tiny-object; its noise is draw 2 of the generator seeded with 111.
    auto request = tiny_request("a watercolor painting, tiny fox, red fur, paper lantern");
    request.initial_noise = pipeline::draw_initial_noise(111, 2, {1, 4, 8, 8});
    auto expected = run(model, two.get(), "composite", {}, request);
    int w = 0, h = 0;
    auto got = io::decode_png_rgb(
        test::read_bytes(d.out / "tiny/2_elements/composite_tiny-character_tiny-object.png"), &w, &h);
    ASSERT_EQ(w, 64);
    ASSERT_EQ(h, 64);
    EXPECT_TRUE(got == expected.images.at(0)) << "the batch image differs from generate with noise draw 2";

    // Draw 0 (what a plain --seed 111 run uses) gives another image: the draw index matters.
    request.initial_noise = at::Tensor();
    auto plain = run(model, two.get(), "composite", {}, request);
    EXPECT_FALSE(got == plain.images.at(0));
    // And the three methods of one set start from the same noise: k=2 set 0 merge == generate with draw 0.
    two.reset();
    auto pair = attach(model, {"tiny-character", "tiny-peft"});
    auto r0 = tiny_request("a watercolor painting, tiny fox, red fur, blue scarf");
    r0.initial_noise = pipeline::draw_initial_noise(111, 0, {1, 4, 8, 8});
    for (std::string name : {"merge", "switch", "composite"}) {
        const std::string method = name;
        auto want = run(model, pair.get(), method, {}, r0);
        auto have = io::decode_png_rgb(
            test::read_bytes(d.out / "tiny/2_elements" / (std::string(name) + "_tiny-character_tiny-peft.png")), &w, &h);
        EXPECT_TRUE(have == want.images.at(0)) << name;
    }
}

// RunSession::run_images: two images with the same noise, one composing LoRAs {0, 3} and one {0, 2}, in one
// generation come out as each alone within float rounding (their rows take per-row adapter groups instead of
// one fused weight); two images with the same LoRAs are the plain two-image run exactly.
// Images of four methods and three LoRA counts in one generation (MixedMethods): each image's latents are its
// lone run's within rounding (the shared forward plans its adapters per row group, the lone Merge fuses once),
// and each image records what its own method did (Switch's LoRA per step: 0, 1, 2, 0 at tau 1).
// Stacked runs' seeds (RunSession's joint request) must share the images evenly: 3 images cannot be 2 runs'.
TEST(BatchCompose, ImageSeedsThatDoNotShareTheImagesEvenlyAreRefused) {
    pipeline::GenerationRequest r;
    r.num_images = 3;
    r.image_seeds = {1, 2};
    EXPECT_THROW(pipeline::validate_request(r), RuntimeError);
    r.image_seeds = {1, 2, 3};
    EXPECT_NO_THROW(pipeline::validate_request(r));
}

TEST(BatchCompose, ImagesOfSeveralMethodsInOneGenerationEachFollowTheirOwn) {
    auto owned = four_lora_session();
    pipeline::RunSession& session = *owned;
    const int64_t factor = session.model().vae->config().downscale_factor();
    const auto image = [&](const std::string& method, const std::vector<int>& slots, const std::string& prompt, uint64_t seed) {
        pipeline::SessionRun r;
        r.request = tiny_request(prompt);
        r.request.initial_noise = pipeline::draw_initial_noise(
            seed, 0, {1, session.model().unet->config().in_channels, 64 / factor, 64 / factor});
        r.method = method;
        r.args = compose::default_args(method);
        if (method == "switch") r.args.set_text("tau", "1", "test");
        r.slots = slots;
        return r;
    };
    const std::vector<pipeline::SessionRun> runs = {image("merge", {0, 3}, "a fox", 111),
                                                    image("composite", {0, 2}, "an owl", 112),
                                                    image("switch", {0, 1, 2}, "a fox", 113), image("none", {}, "a hat", 114)};
    std::vector<pipeline::SessionResult> alone;
    for (const auto& r : runs) alone.push_back(session.run(r));
    const pipeline::SessionResult shared = session.run_images(runs);
    ASSERT_EQ(shared.generation.latents.size(0), 4);
    ASSERT_EQ(shared.image_compositions.size(), 4u);
    EXPECT_EQ(shared.composition.at("method"), "mixed");
    for (size_t b = 0; b < runs.size(); ++b) {
        const at::Tensor lone = alone[b].generation.latents[0];
        EXPECT_LT((shared.generation.latents[b] - lone).abs().max().item<double>(), 1e-3) << runs[b].method;
        EXPECT_EQ(shared.image_compositions[b], alone[b].composition) << runs[b].method;
    }
    EXPECT_EQ(shared.image_compositions[2].at("active_lora_per_step"), nlohmann::json({0, 1, 2, 0}));
    EXPECT_GT((alone[0].generation.latents - alone[1].generation.latents).abs().max().item<double>(), 1e-2);

    pipeline::SessionRun loratorio = runs[1];  // a method that reads more than its slots cannot join
    loratorio.method = "loratorio";
    loratorio.args = compose::default_args("loratorio");
    try {
        session.run_images({runs[0], loratorio});
        ADD_FAILURE() << "LoRAtorio shared a forward with Merge";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("loratorio cannot share a UNet forward"), std::string::npos) << e.what();
    }
}

TEST(BatchCompose, ImagesOfSeveralSetsInOneGenerationGetTheirOwnLoras) {
    auto owned = four_lora_session();
    pipeline::RunSession& session = *owned;
    const int64_t factor = session.model().vae->config().downscale_factor();
    const at::Tensor noise =
        pipeline::draw_initial_noise(111, 0, {1, session.model().unet->config().in_channels, 64 / factor, 64 / factor});
    const auto image = [&](const std::vector<int>& slots, const std::string& prompt) {
        pipeline::SessionRun r;
        r.request = tiny_request(prompt);
        r.request.initial_noise = noise;
        r.method = "merge";
        r.slots = slots;
        return r;
    };
    const pipeline::SessionRun fox = image({0, 3}, "a fox"), owl = image({0, 2}, "an owl");
    const at::Tensor fox_alone = session.run(fox).generation.latents, owl_alone = session.run(owl).generation.latents;
    const at::Tensor mixed = session.run_images({fox, owl}).generation.latents;
    ASSERT_EQ(mixed.size(0), 2);
    EXPECT_LT((mixed[0] - fox_alone[0]).abs().max().item<double>(), 1e-3);
    EXPECT_LT((mixed[1] - owl_alone[0]).abs().max().item<double>(), 1e-3);
    EXPECT_GT((fox_alone - owl_alone).abs().max().item<double>(), 1e-2) << "the LoRAs and prompts made no difference";

    pipeline::SessionRun two = fox;
    two.request.initial_noise = noise.repeat({2, 1, 1, 1});
    two.request.num_images = 2;
    EXPECT_TRUE(at::equal(session.run_images({fox, fox}).generation.latents, session.run(two).generation.latents));

    pipeline::SessionRun loratorio_fox = fox, loratorio_owl = owl;  // a method that reads more than its slots
    loratorio_fox.method = loratorio_owl.method = "loratorio";
    EXPECT_THROW(session.run_images({loratorio_fox, loratorio_owl}), std::exception);
    EXPECT_THROW(session.adapters()->map_images({{0, 7}}, 2), std::exception);

    // Composite's per-LoRA blocks for two images with guidance (LoRA 0's block, then LoRA 1's: 2 rows each
    // image): every layer plans each group on its image's 2 rows, as the image's block would alone.
    lora::AdapterSet& set = *session.adapters();
    set.map_images({{0, 3}, {0, 2}}, 2);
    set.activate_unet_rows({{0}, {0}, {0}, {0}, {1}, {1}, {1}, {1}});
    ASSERT_FALSE(set.unet_layers().empty());
    for (const auto& layer : set.unet_layers()) EXPECT_EQ(layer.adapters->row_image_rows(), 2) << layer.path;
    set.clear();
}
