// `batch --batch-images N`: the images of one set and method (the config's seeds) share each UNet forward as
// one batch of noises; with the methods that mix sets (MethodInfo::mixes_sets), any of their images in plan
// order, whatever the set, method or k, each with its own LoRAs, prompt and method. On this CPU the products round a row differently with the number of rows around it
// (OpenBLAS and oneDNN both; M = 77, 154, 300 rows in a probe with Debian's torch), so shared images are not
// bit-identical to lone ones: they must agree within a few 1/255 (each adapter still decides fuse-or-low-rank
// on one image's rows), with identical manifests apart from the PNG's hash; batch.jsonl records how many
// shared each forward. One at a time stays the default.
#include "batch_test_support.h"

#include "multilora/io/png_writer.h"

using multilora::test::batch_args;
using multilora::test::read_bytes;
using multilora::test::run_multilora;
using multilora::test::snapshot;
using multilora::test::tiny_batch;
namespace fs = std::filesystem;

namespace {

// tiny-smoke with three seeds and two methods whose rows differ (Merge: 2 per image, Composite: 2k).
multilora::test::BatchDir three_seeds(const std::string& tag, const std::string& scheduler = "dpmpp-2m") {
    return tiny_batch(tag, [&](nlohmann::ordered_json& j) {
        j["seeds"] = {111, 112, 113};
        j["methods"] = {"merge", "composite"};
        j["scheduler"] = scheduler;
    });
}

std::vector<nlohmann::json> log_lines(const fs::path& out) {
    std::vector<nlohmann::json> lines;
    std::istringstream in(read_bytes(out / "batch.jsonl"));
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

std::map<int, int> images_per_forward(const fs::path& out) {
    std::map<int, int> count;
    std::istringstream in(read_bytes(out / "batch.jsonl"));
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) count[nlohmann::json::parse(line).at("images_per_forward").get<int>()]++;
    return count;
}

}  // namespace

// The largest per-channel difference between two PNGs' pixels, in 1/255.
int max_pixel_difference(const std::string& a, const std::string& b) {
    int wa = 0, ha = 0, wb = 0, hb = 0;
    const auto pa = multilora::io::decode_png_rgb(a, &wa, &ha), pb = multilora::io::decode_png_rgb(b, &wb, &hb);
    EXPECT_EQ(wa, wb);
    EXPECT_EQ(ha, hb);
    int worst = 0;
    for (size_t i = 0; i < std::min(pa.size(), pb.size()); ++i) worst = std::max(worst, std::abs(int(pa[i]) - int(pb[i])));
    return worst;
}

// Every PNG of `shared` against the same PNG of `alone`: manifests identical but for the hash and runtime.
// Returns the largest per-channel difference, and counts the PNGs.
int compare_with_alone(const fs::path& alone_out, const fs::path& shared_out, int& pngs) {
    const auto want = snapshot(alone_out), got = snapshot(shared_out);
    int worst = 0;
    pngs = 0;
    for (const auto& [rel, bytes] : want) {
        if (rel.size() < 4 || rel.substr(rel.size() - 4) != ".png" || rel.find("sheet") != std::string::npos) continue;
        ++pngs;
        EXPECT_TRUE(got.count(rel)) << rel;
        if (!got.count(rel)) continue;
        worst = std::max(worst, max_pixel_difference(got.at(rel), bytes));
        const std::string manifest = rel.substr(0, rel.size() - 4) + ".json";
        auto ma = nlohmann::json::parse(want.at(manifest)), mb = nlohmann::json::parse(got.at(manifest));
        for (auto* m : {&ma, &mb}) {
            m->erase("runtime");
            m->erase("outputs");
            (*m)["model"].erase("files");
            for (auto& l : (*m)["loras"]) l.erase("path");
        }
        EXPECT_EQ(ma, mb) << manifest;
    }
    EXPECT_EQ(want.size(), got.size());
    std::printf("largest difference between shared and lone forwards: %d/255 over %d images\n", worst, pngs);
    return worst;
}

// tiny-smoke with one seed and these methods, run one at a time and with --batch-images 4: the shared run,
// its PNG count and its largest difference from the lone images.
multilora::test::BatchDir alone_and_shared(const std::string& tag, const std::vector<std::string>& methods, int& pngs,
                                           int& worst) {
    const auto config = [&](nlohmann::ordered_json& j) { j["methods"] = methods; };
    auto alone = tiny_batch(tag + "-alone", config), shared = tiny_batch(tag + "-shared", config);
    auto a = run_multilora(batch_args(alone));
    EXPECT_EQ(a.exit_code, 0) << a.output;
    auto b = run_multilora(batch_args(shared, "--batch-images 4"));
    EXPECT_EQ(b.exit_code, 0) << b.output;
    worst = compare_with_alone(alone.out, shared.out, pngs);
    return shared;
}

TEST(BatchImages, SharedForwardsAgreeWithOneAtATime) {
    auto alone = three_seeds("alone");
    auto shared = three_seeds("shared");
    auto a = run_multilora(batch_args(alone));  // the default: one at a time
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = run_multilora(batch_args(shared, "--batch-images 3"));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    int pngs = 0;
    const int worst = compare_with_alone(alone.out, shared.out, pngs);
    EXPECT_EQ(pngs, 36);  // tiny-smoke's 6 sets x 3 seeds x 2 methods
    EXPECT_LE(worst, 3) << "shared forwards drifted from one-at-a-time images";
    // Alone: one per forward; shared: the three seeds of a set and method together.
    EXPECT_EQ(images_per_forward(alone.out), (std::map<int, int>{{1, pngs}}));
    EXPECT_EQ(images_per_forward(shared.out), (std::map<int, int>{{3, pngs}}));
}

TEST(BatchImages, GroupsAreCutAtN) {
    auto d = three_seeds("two");
    auto r = run_multilora(batch_args(d, "--batch-images 2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Merge and Composite mix sets and each other: all 36 images run in plan order in groups of two. (By
    // method and k they would leave an odd image alone in each of the four (method, k) groups of 9.)
    std::map<std::pair<std::string, int>, int> per_key;
    for (const auto& line : log_lines(d.out)) per_key[{line.at("method"), line.at("k")}]++;
    EXPECT_EQ(per_key, (std::map<std::pair<std::string, int>, int>{
                           {{"composite", 2}, 9}, {{"composite", 3}, 9}, {{"merge", 2}, 9}, {{"merge", 3}, 9}}));
    EXPECT_EQ(images_per_forward(d.out), (std::map<int, int>{{2, 36}}));
}

// One seed per set: only forwards across sets can share. Merge, Switch, Composite and the base model mix sets;
// LoRAtorio (it reads each LoRA's own prediction per patch, not only composition slots) stays one at a time.
TEST(BatchImages, ImagesOfSeveralSetsShareAForward) {
    int pngs = 0, worst = 0;
    const auto shared = alone_and_shared("sets", {"merge", "switch", "composite", "none", "loratorio"}, pngs, worst);
    EXPECT_EQ(pngs, 30);  // 6 sets x 5 methods, one seed
    EXPECT_LE(worst, 3) << "forwards shared across sets drifted from one-at-a-time images";
    std::map<std::string, int> widest;
    for (const auto& line : log_lines(shared.out)) {
        int& w = widest[line.at("method")];
        w = std::max(w, line.at("images_per_forward").get<int>());
    }
    for (const char* method : {"merge", "switch", "composite", "none"}) EXPECT_GT(widest[method], 1) << method;
    EXPECT_EQ(widest["loratorio"], 1);
    // Each image's manifest records its own set's LoRAs and prompt (compare_with_alone), and its sheet exists.
    size_t sheets = 0;
    for (const auto& [rel, bytes] : snapshot(shared.out)) sheets += rel.find("/sheet_") != std::string::npos;
    EXPECT_EQ(sheets, 6u);
}

// One seed, four methods that mix: a set's images of every method share a forward (per set: Merge, Switch,
// Composite and the base model, in plan order), and each agrees with its lone image and records its own method.
TEST(BatchImages, ImagesOfSeveralMethodsShareAForward) {
    int pngs = 0, worst = 0;  // compare_with_alone compares the manifests too: each image's own method
    const auto shared = alone_and_shared("methods", {"merge", "switch", "composite", "none"}, pngs, worst);
    EXPECT_EQ(pngs, 24);  // 6 sets x 4 methods, one seed
    EXPECT_LE(worst, 3) << "forwards shared across methods drifted from one-at-a-time images";
    // Grouped by method and k, the three sets of each k would give forwards of three.
    EXPECT_EQ(images_per_forward(shared.out), (std::map<int, int>{{4, 24}}));
}

// euler-a draws fresh noise at every step. Alone, an image draws it from a generator seeded with its own seed;
// sharing a forward, each image still steps with its own scheduler and generator (GenerationRequest::image_seeds),
// so it draws the same numbers. (One generator for the stacked images, as diffusers' num_images_per_prompt, gives
// other noise: 56/255 apart when this was written.)
TEST(BatchImages, AnAncestralSamplersImagesShareAForward) {
    auto alone = three_seeds("ancestral-alone", "euler-a");
    auto shared = three_seeds("ancestral-shared", "euler-a");
    auto a = run_multilora(batch_args(alone));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = run_multilora(batch_args(shared, "--batch-images 3"));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    int pngs = 0;
    const int worst = compare_with_alone(alone.out, shared.out, pngs);
    EXPECT_EQ(pngs, 36);
    EXPECT_LE(worst, 3) << "euler-a images in shared forwards drew other noise than alone";
    EXPECT_EQ(images_per_forward(shared.out), (std::map<int, int>{{3, pngs}}));
}
