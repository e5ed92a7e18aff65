// `evaluate --scorer world`: the trained world's detector as a composition scorer. The images are the world's own
// renders (world::render_scene), each drawn with a known subset of its set's elements (and sometimes a concept
// the set lacks), laid out as a batch run whose manifests name the shipped world model.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "eval_test_support.h"
#include "page_check.h"
#include "multilora/eval/text_util.h"
#include "multilora/eval/world_scorer.h"
#include "multilora/io/sha256.h"
#include "multilora/world/detector.h"
#include "multilora/world/scene.h"

namespace fs = std::filesystem;
using nlohmann::json;
using multilora::test::HttpRequest;
using multilora::test::LoopbackServer;
using multilora::test::Reply;
namespace world = multilora::world;

namespace {

const fs::path kWorld = fs::path(ML_SOURCE_DIR) / "models" / "world";

struct Drawn {
    std::string method;
    std::vector<std::string> concepts;  // what the image really shows (ids)
};
struct WorldSet {
    std::vector<std::string> ids;  // the set's LoRAs, character first
    uint64_t seed;
    std::vector<Drawn> images;
};

world::ConceptChoice choice_of(const std::vector<std::string>& ids) {
    world::ConceptChoice c = world::kGeneric;
    for (const auto& id : ids) {
        const world::Concept* k = world::find_concept(id);
        c[static_cast<int>(k->category)] = k->index;
    }
    return c;
}

json lora_set(const std::vector<std::string>& ids) {
    json out = json::array();
    for (const auto& id : ids) {
        const world::Concept* c = world::find_concept(id);
        out.push_back({{"id", id}, {"name", c->name}, {"category", world::category_name(c->category)}, {"trigger", {c->trigger}}});
    }
    return out;
}

// DIR/world/{k}_elements/{method}_{ids}_seed{S}.png + manifest, sheets, batch.jsonl. `model` and `sha` go into
// every manifest; `size` is the images' side.
void make_world_run(const fs::path& dir, const std::vector<WorldSet>& sets, const std::string& model, const std::string& sha,
                    int size = world::kImageSize) {
    std::string log;
    for (const auto& s : sets) {
        const fs::path sub = fs::path("world") / (std::to_string(s.ids.size()) + "_elements");
        const std::string stem = multilora::test::join_ids(s.ids) + "_seed" + std::to_string(s.seed);
        for (const auto& d : s.images) {
            const fs::path rel = sub / (d.method + "_" + stem + ".png");
            const auto rgb = world::render_scene(world::sample_scene(s.seed, choice_of(d.concepts)), size).to_rgb8();
            fs::create_directories((dir / rel).parent_path());
            multilora::io::write_png((dir / rel).string(), rgb.data(), size, size);
            json manifest = {{"prompt", "a creature"}, {"seed", s.seed},
                             {"model", {{"files", {{{"path", model}, {"sha256", sha}}}}}},
                             {"batch", {{"lora_set", lora_set(s.ids)}, {"noise", {{"seed", s.seed}}}}}};
            std::ofstream(fs::path(dir / rel).replace_extension(".json")) << manifest.dump(2);
            log += json{{"style", "world"}, {"k", s.ids.size()}, {"method", d.method}, {"lora_ids", s.ids},
                        {"seed", s.seed}, {"prompt", "a creature"}, {"output", rel.string()}}.dump() + "\n";
        }
        multilora::test::write_test_png(dir / sub / ("sheet_" + multilora::test::join_ids(s.ids) + ".png"), 5, 96, 32);  // one per set, all seeds
    }
    std::ofstream(dir / "batch.jsonl") << log;
}

const std::string& world_model() {
    static const std::string p = (kWorld / "world-sd15.safetensors").string();
    return p;
}
const std::string& world_sha() {
    static const std::string h = multilora::io::sha256_file_hex(world_model());
    return h;
}

// Two k = 2 sets and one k = 3 set, two seeds each; merge shows everything, switch drops the last element,
// composite shows everything plus a concept the set lacks.
std::vector<WorldSet> three_sets() {
    std::vector<WorldSet> sets;
    const std::vector<std::vector<std::string>> ids = {{"character_1", "background_1"},
                                                       {"character_2", "style_1"},
                                                       {"character_3", "clothing_2", "background_3"}};
    for (const auto& set : ids)
        for (uint64_t seed : {41u, 42u}) {
            std::vector<std::string> fewer(set.begin(), set.end() - 1), more = set;
            more.push_back(set.size() == 2 ? "object_2" : "style_3");
            sets.push_back({set, seed, {{"merge", set}, {"switch", fewer}, {"composite", more}}});
        }
    return sets;
}

json read_json(const fs::path& p) { return json::parse(multilora::test::read_bytes(p)); }

const json* world_group(const json& w, int k, const std::string& method) {
    for (const auto& g : w["groups"])
        if (g["k"] == json(k) && g["method"] == method) return &g;
    return nullptr;
}

}  // namespace

// Worked by hand: two sets {0} and {1}; a resample's mean is 0, 1/2 or 1 with odds 1/4, 1/2, 1/4, so the 2.5th
// and 97.5th percentiles of 4000 resamples are 0 and 1. Identical units give a zero-width interval. 400 units
// of which 120 are 1: the normal approximation 0.3 +- 1.96 * sqrt(0.3 * 0.7 / 400) = [0.2551, 0.3449].
TEST(EvalWorld, BootstrapIntervals) {
    auto [lo, hi] = multilora::eval::bootstrap_interval({{0.0}, {1.0}}, 4000, 1);
    EXPECT_DOUBLE_EQ(lo, 0.0);
    EXPECT_DOUBLE_EQ(hi, 1.0);
    std::tie(lo, hi) = multilora::eval::bootstrap_interval({{0.5, 0.5}, {0.5}, {0.5}}, 500, 2);
    EXPECT_DOUBLE_EQ(lo, 0.5);
    EXPECT_DOUBLE_EQ(hi, 0.5);
    std::vector<std::vector<double>> units(400, {0.0});
    for (int i = 0; i < 120; ++i) units[i] = {1.0};
    std::tie(lo, hi) = multilora::eval::bootstrap_interval(units, 4000, 3);
    EXPECT_NEAR(lo, 0.2551, 0.008);
    EXPECT_NEAR(hi, 0.3449, 0.008);
    // Two levels: one set with seeds {0, 1}: its resampled mean is 0, 1/2 or 1 (odds 1/4, 1/2, 1/4), so [0, 1];
    // resampling the sets alone would always give 1/2.
    std::tie(lo, hi) = multilora::eval::bootstrap_interval({{0.0, 1.0}}, 4000, 4);
    EXPECT_DOUBLE_EQ(lo, 0.0);
    EXPECT_DOUBLE_EQ(hi, 1.0);
    // Reproducible: the same seed gives the same interval.
    EXPECT_EQ(multilora::eval::bootstrap_interval(units, 300, 9), multilora::eval::bootstrap_interval(units, 300, 9));
}

// Worked by hand: sets {0, 1}, {1, 1}, {0, 0} have means 1/2, 1, 0 (sample variance 1/4) and within-set sample
// variances 1/2, 0, 0 (mean 1/6), 2 values each, so the between-set component is 1/4 - (1/6)/2 = 1/6 and the
// half-widths are 1.96·√((1/4)/3) = 0.565803 as run and 1.96·√((1/6)/3) = 0.461976 with unlimited seeds. Sets
// {0, 1} twice differ only by seed: unlimited seeds leave nothing. One set, or no set of two values: NaN.
TEST(EvalWorld, SeedLimitWorkedByHand) {
    auto limit = multilora::eval::seed_limit({{0.0, 1.0}, {1.0, 1.0}, {0.0, 0.0}});
    EXPECT_NEAR(limit.half_width, 1.96 * std::sqrt(0.25 / 3), 1e-12);
    EXPECT_NEAR(limit.unlimited_seeds, 1.96 * std::sqrt((1.0 / 6) / 3), 1e-12);
    EXPECT_NEAR(limit.half_width, 0.565803, 1e-6);
    EXPECT_NEAR(limit.unlimited_seeds, 0.461976, 1e-6);
    limit = multilora::eval::seed_limit({{0.0, 1.0}, {0.0, 1.0}});
    EXPECT_EQ(limit.unlimited_seeds, 0.0);
    EXPECT_TRUE(std::isnan(multilora::eval::seed_limit({{0.0, 1.0}}).unlimited_seeds));
    EXPECT_TRUE(std::isnan(multilora::eval::seed_limit({{0.0}, {1.0}}).unlimited_seeds));
}

// Every per-image verdict equals the detector's own verdict on that PNG (a second code path: one image at a
// time from the decoded file), the figures are the image-level means, and the renders' ground truth is met.
TEST(EvalWorld, VerdictsFiguresAndGroundTruth) {
    const auto run = multilora::test::make_temp_dir("world-scorer");
    const auto sets = three_sets();
    make_world_run(run, sets, world_model(), world_sha());
    auto r = multilora::test::run_env("", "evaluate --run " + run.string() + " --scorer world --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json s = read_json(run / "eval" / "summary.json");
    const json& w = s["world"];
    ASSERT_EQ(w["images"].size(), 18u);
    const auto detector = world::ElementDetector::load((kWorld / "detector.safetensors").string());
    int truth_met = 0;
    std::map<std::pair<int, std::string>, std::vector<double>> recalls;
    for (const auto& im : w["images"]) {
        int width = 0, height = 0;
        const auto rgb = multilora::io::decode_png_rgb(multilora::test::read_bytes(run / "eval" / im["image"].get<std::string>()), &width, &height);
        const world::Verdict v = detector.detect_rgb(rgb, width, height);
        int expected = 0, found = 0;
        for (int c = 0; c < world::kCategories; ++c) {
            const json& f = im["found"][world::category_name(static_cast<world::Category>(c))];
            EXPECT_EQ(f.is_null() ? -1 : world::find_concept(f.get<std::string>())->index, v.found[c]) << im.dump();
        }
        for (const auto& [cat, id] : im["expected"].items()) {
            ++expected;
            found += im["found"][cat] == id;
        }
        EXPECT_DOUBLE_EQ(im["recall"].get<double>(), double(found) / expected);
        EXPECT_EQ(im["in_world"].get<bool>(), v.is_in_world());
        // Ground truth of the render: merge shows all, switch all but one, composite all plus one leak.
        const std::string m = im["method"];
        const double truth = m == "switch" ? double(expected - 1) / expected : 1.0;
        const bool leak_truth = m == "composite";
        truth_met += std::abs(im["recall"].get<double>() - truth) < 1e-9 && (im["leaked"].size() == 1) == leak_truth;
        recalls[{im["k"].get<int>(), m}].push_back(im["recall"].get<double>());
    }
    EXPECT_GE(truth_met, 16) << "the detector misread more than 2 of 18 renders";
    for (const auto& [key, v] : recalls) {
        const json* g = world_group(w, key.first, key.second);
        ASSERT_NE(g, nullptr);
        double mean = 0;
        for (double x : v) mean += x / v.size();
        EXPECT_NEAR((*g)["recall"]["mean"].get<double>(), 100 * mean, 1e-9);
        EXPECT_EQ((*g)["images"], v.size());
        EXPECT_LE((*g)["recall"]["ci95"][0].get<double>(), 100 * mean + 1e-9);
        EXPECT_GE((*g)["recall"]["ci95"][1].get<double>(), 100 * mean - 1e-9);
        // k = 2: two sets of two seeds, so the seed limit is known; k = 3 has a single set, so it is not.
        if (key.first == 2) EXPECT_GE((*g)["recall"].value("half_width_unlimited_seeds", -1.0), 0.0);
        else EXPECT_FALSE((*g)["recall"].contains("half_width_unlimited_seeds"));
    }
    ASSERT_EQ(w["typical"].size(), 2u);  // k = 2 and k = 3
    EXPECT_TRUE(fs::exists(run / "eval" / w["typical"][0]["sheet"].get<std::string>()));
    EXPECT_TRUE(fs::exists(run / "eval" / "world_recall.png"));
    const std::string md = multilora::test::read_text(run / "eval" / "summary.md");
    EXPECT_NE(md.find("## World scorer"), std::string::npos);
    EXPECT_NE(md.find("| world | 2 | merge | 4 |"), std::string::npos) << md;
    EXPECT_NE(md.find("### What more seeds would do"), std::string::npos) << md;
    EXPECT_NE(md.find("- world, k = 2: merge ±"), std::string::npos) << md;

    // report.html in headless Chromium: no console message, the plot and both typical sheets load, the tables show.
    const auto page = multilora::test::check_page(run / "eval" / "report.html");
    ASSERT_EQ(page.error, "");
    EXPECT_TRUE(page.console.empty()) << page.console.front();
    EXPECT_EQ(page.images, 3);
    EXPECT_TRUE(page.broken_images.empty()) << page.broken_images.front();
    for (const char* id : {"world-recall", "world-table", "world-seed-limit", "world-wtl"})
        EXPECT_NE(std::find(page.ids.begin(), page.ids.end(), id), page.ids.end()) << id;
    EXPECT_NE(page.text.find("Typical set at k = 3"), std::string::npos) << page.text;
}

// The judge path and the scorer path agree: a loopback judge that scores composition as 10 x the detector's
// recall of the image gives, per set, the same win / tie / loss as the world scorer's recall.
TEST(EvalWorld, LoopbackJudgeAgreesWithTheScorer) {
    const auto run = multilora::test::make_temp_dir("world-loopback");
    std::vector<WorldSet> sets;
    for (const auto& s : three_sets())
        if (s.seed == 41) sets.push_back(s);  // one seed: the judge's sets are (set, seed), the scorer pools seeds
    make_world_run(run, sets, world_model(), world_sha());
    const auto detector = world::ElementDetector::load((kWorld / "detector.safetensors").string());
    std::map<std::string, double> recall_by_url;
    for (const auto& s : sets)
        for (const auto& d : s.images) {
            const fs::path png = run / "world" / (std::to_string(s.ids.size()) + "_elements") /
                                 (d.method + "_" + multilora::test::join_ids(s.ids) + "_seed" + std::to_string(s.seed) + ".png");
            const std::string bytes = multilora::test::read_bytes(png);
            int w = 0, h = 0;
            const std::vector<uint8_t> rgb = multilora::io::decode_png_rgb(bytes, &w, &h);
            const world::Verdict v = detector.detect_rgb(rgb, w, h);
            int found = 0;
            const world::ConceptChoice want = choice_of(s.ids);
            for (int c = 0; c < world::kCategories; ++c) found += want[c] >= 0 && v.found[c] == want[c];
            recall_by_url["data:image/png;base64," + multilora::eval::base64_encode(bytes)] = double(found) / s.ids.size();
        }
    LoopbackServer server([&](const HttpRequest& q, int) {
        const json c = json::parse(q.body)["messages"][0]["content"];
        const double a = recall_by_url.at(c[1]["image_url"]["url"].get<std::string>());
        const double b = recall_by_url.at(c[2]["image_url"]["url"].get<std::string>());
        return multilora::test::ok_reply(multilora::test::judge_answer(10 * a, 5, 10 * b, 5));
    });
    auto r = multilora::test::run_env("OPENAI_API_KEY=sk-loopback",
                                      "evaluate --run " + run.string() + " --scorer judge --scorer world --no-progress "
                                      "--base merge --api-base " + server.base_url() + " --concurrency 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json s = read_json(run / "eval" / "summary.json");
    int compared = 0;
    for (const auto& g : s["groups"]) {
        for (const auto& w : s["world"]["win_tie_loss"]) {
            if (w["k"] != g["k"] || w["method"] != g["compare"]) continue;
            const json& counts = g["win_tie_loss"]["composition"]["counts"];
            EXPECT_EQ(counts["win"], w["win"]) << g.dump() << "\n" << w.dump();
            EXPECT_EQ(counts["tie"], w["tie"]);
            EXPECT_EQ(counts["loss"], w["loss"]);
            ++compared;
        }
    }
    EXPECT_EQ(compared, 6);  // switch and composite against merge, at k = 2, 3 and all
    // The judge's composition score is 10 x recall: a perfect correlation, over all 9 images.
    const json& a = s["world"]["judge_agreement"];
    EXPECT_EQ(a["images"], 9);
    EXPECT_NEAR(a["pearson"].get<double>(), 1.0, 1e-12);
    EXPECT_NEAR(a["spearman"].get<double>(), 1.0, 1e-12);
}

// Worked by hand: x = 1..4 against y = (1, 3, 2, 4): covariance 4, both variances 5, r = 0.8, and the ranks are the
// values, so rho = 0.8 too. Ties: x = (1, 1, 2) ranks (1.5, 1.5, 3) against y = 1..3: r = 1.5 / sqrt(1.5 * 2).
TEST(EvalWorld, Correlations) {
    using multilora::eval::pearson;
    using multilora::eval::spearman;
    EXPECT_NEAR(pearson({1, 2, 3, 4}, {1, 3, 2, 4}), 0.8, 1e-12);
    EXPECT_NEAR(spearman({1, 2, 3, 4}, {10, 30, 20, 40}), 0.8, 1e-12);
    EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 4, 6, 8}), 1.0, 1e-12);
    EXPECT_NEAR(spearman({1, 1, 2}, {1, 2, 3}), 1.5 / std::sqrt(3.0), 1e-12);
    EXPECT_NEAR(spearman({1, 2, 3}, {9, 4, 1}), -1.0, 1e-12);
    EXPECT_TRUE(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
    EXPECT_TRUE(std::isnan(spearman({1}, {2})));
}

// What the scorer cannot score is refused before anything is written: images of another size, LoRAs that are
// not the world's, images from another model, a model with no world beside it.
TEST(EvalWorld, RefusesWhatItCannotScore) {
    auto refused = [](const std::string& name, const std::function<void(const fs::path&)>& make, const std::string& says) {
        const auto run = multilora::test::make_temp_dir(name);
        make(run);
        auto r = multilora::test::run_env("", "evaluate --run " + run.string() + " --scorer world --no-progress");
        EXPECT_EQ(r.exit_code, 2) << name << ": " << r.output;
        EXPECT_NE(r.output.find(says), std::string::npos) << name << ": " << r.output;
        EXPECT_FALSE(fs::exists(run / "eval")) << name;
    };
    const WorldSet one{{"character_1", "background_1"}, 41, {{"merge", {"character_1", "background_1"}}, {"switch", {"character_1"}}}};
    refused("world-size", [&](const fs::path& d) { make_world_run(d, {one}, world_model(), world_sha(), 32); },
            "is 32x32; the world detector reads 64x64 images");
    refused("world-foreign-loras", [&](const fs::path& d) {
        make_world_run(d, {one}, world_model(), world_sha());
        // The run's own descriptions say these are ComposLoRA's anime LoRAs.
        std::ofstream(d / "lora_info.json") << R"({"character": [{"id": "character_1", "name": "Kamado Nezuko", "trigger": ["nezuko"]}],
            "background": [{"id": "background_1", "name": "Bamboo", "trigger": ["bamboolight"]}]})";
    }, "is not a concept of the trained world");
    refused("world-other-model", [&](const fs::path& d) { make_world_run(d, {one}, world_model(), std::string(64, 'a')); },
            "not the world");
    refused("world-no-world", [&](const fs::path& d) {
        fs::create_directories(d / "m");
        std::ofstream(d / "m" / "tiny.safetensors") << "x";
        make_world_run(d, {one}, (d / "m" / "tiny.safetensors").string(), std::string(64, 'b'));
    }, "which is not a trained world");
}

// --scorer picks exactly the scorers that run; contradictions are usage errors.
TEST(EvalWorld, ScorerOptions) {
    const auto run = multilora::test::make_temp_dir("world-options");
    make_world_run(run, {{{"character_1", "object_1"}, 7, {{"merge", {"character_1"}}, {"switch", {"character_1", "object_1"}}}}},
                   world_model(), world_sha());
    for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
             {"--scorer world --scorer judge --no-judge", "--no-judge contradicts --scorer judge"},
             {"--detector x.safetensors", "--detector is for --scorer world"},
             {"--scorer world --clip-model m", "--clip-model is given but --scorer does not name clipscore"},
             {"--scorer vlm", "--scorer: vlm not in {judge,clipscore,world}"},
             {"--scorer world --bootstrap -1", "--bootstrap must be between 0 and 1000000"}}) {
        auto r = multilora::test::run_env("", "evaluate --run " + run.string() + " " + args);
        EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
        EXPECT_NE(r.output.find(says), std::string::npos) << args << ": " << r.output;
    }
    // Only the world scorer: no API key needed, no judgement requested, the judge reported as not run.
    auto r = multilora::test::run_env("", "evaluate --run " + run.string() + " --scorer world --bootstrap 0 --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json s = read_json(run / "eval" / "summary.json");
    EXPECT_FALSE(s["judge"]["enabled"].get<bool>());
    EXPECT_TRUE(s["clipscore"].is_null());
    EXPECT_TRUE(s["world"]["groups"][0]["recall"]["ci95"].is_null());  // --bootstrap 0: no intervals
    EXPECT_FALSE(fs::exists(run / "eval" / "judgements.jsonl"));
    EXPECT_NE(multilora::test::read_text(run / "eval" / "summary.md").find("Judge: not run."), std::string::npos);
}
