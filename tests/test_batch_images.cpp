// `batch --batch-images N`: the images of one set and method (the config's seeds) share each UNet forward as
// one batch of noises. On this CPU the products round a row differently with the number of rows around it
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

TEST(BatchImages, SharedForwardsAgreeWithOneAtATime) {
    auto alone = three_seeds("alone");
    auto shared = three_seeds("shared");
    auto a = run_multilora(batch_args(alone));  // the default: one at a time
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = run_multilora(batch_args(shared, "--batch-images 3"));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    const auto want = snapshot(alone.out), got = snapshot(shared.out);
    int pngs = 0, worst = 0;
    for (const auto& [rel, bytes] : want) {
        if (rel.size() < 4 || rel.substr(rel.size() - 4) != ".png" || rel.find("sheet") != std::string::npos) continue;
        ++pngs;
        ASSERT_TRUE(got.count(rel)) << rel;
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
    EXPECT_EQ(pngs, 36);  // tiny-smoke's 6 sets x 3 seeds x 2 methods
    std::printf("largest difference between shared and lone forwards: %d/255 over %d images\n", worst, pngs);
    EXPECT_LE(worst, 3) << "shared forwards drifted from one-at-a-time images";
    EXPECT_EQ(want.size(), got.size());
    // Alone: one per forward; shared: the three seeds of a set and method together.
    EXPECT_EQ(images_per_forward(alone.out), (std::map<int, int>{{1, pngs}}));
    EXPECT_EQ(images_per_forward(shared.out), (std::map<int, int>{{3, pngs}}));
}

TEST(BatchImages, GroupsAreCutAtN) {
    auto d = three_seeds("two");
    auto r = run_multilora(batch_args(d, "--batch-images 2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Three seeds per set and method in groups of two: 2 + 1.
    const auto counts = images_per_forward(d.out);
    ASSERT_EQ(counts.size(), 2u);
    EXPECT_EQ(counts.at(2), 2 * counts.at(1));
}

TEST(BatchImages, ASamplerThatDrawsNoiseRunsOneAtATime) {
    auto d = three_seeds("ancestral", "euler-a");
    auto refused = run_multilora(batch_args(d, "--batch-images 2"));
    EXPECT_EQ(refused.exit_code, 2) << refused.output;
    EXPECT_NE(refused.output.find("draws noise at every step from each image's own generator"), std::string::npos)
        << refused.output;
    EXPECT_FALSE(fs::exists(d.out / "batch.jsonl"));
    auto r = run_multilora(batch_args(d));  // the default: one at a time
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto counts = images_per_forward(d.out);
    ASSERT_EQ(counts.size(), 1u);
    EXPECT_EQ(counts.begin()->first, 1);
}
