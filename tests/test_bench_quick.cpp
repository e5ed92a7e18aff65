// `multilora bench --quick`: a smoke test of the benchmark on the tiny model (no timing assertions).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using multilora::test::read_bytes;
using multilora::test::run_multilora;

TEST(BenchQuick, WritesAReportWithEveryCase) {
    auto dir = multilora::test::make_temp_dir("bench");
    auto r = run_multilora("bench --quick --threads 1 --work-dir " + (dir / "work").string() + " --json " +
                           (dir / "b.json").string() + " --markdown " + (dir / "b.md").string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(read_bytes(dir / "b.json"));
    std::map<std::string, int> cases;
    for (const auto& c : j["unet_steps"]) {
        cases[c["case"].get<std::string>()]++;
        EXPECT_GT(c["flops"].get<double>(), 0.0);
        EXPECT_GT(c["median_s"].get<double>(), 0.0);
    }
    EXPECT_EQ(cases["none"], 2);  // at the start and again at the end
    EXPECT_EQ(cases["merge"], 2);      // k = 1 and 5
    EXPECT_EQ(cases["switch"], 1);
    EXPECT_EQ(cases["composite"], 4);  // k = 2..5
    EXPECT_EQ(cases["w-composite"], 2);  // k = 2, 5
    EXPECT_EQ(cases["loratorio"], 2);    // k = 2, 5
    EXPECT_EQ(cases["w-switch"], 1);
    EXPECT_EQ(cases["klora"], 1);        // k = 2 only
    EXPECT_EQ(cases["cmlora"], 2);       // k = 2, 5
    EXPECT_EQ(cases["multlfg"], 2);      // k = 2, 5
    // The FLOP count grows with the batch: Composite k runs k times the rows of one CFG step.
    double none = 0, comp5 = 0;
    for (const auto& c : j["unet_steps"]) {
        if (c["case"] == "none") none = c["flops"].get<double>();
        if (c["case"] == "composite" && c["k"] == 5) comp5 = c["flops"].get<double>();
    }
    EXPECT_NEAR(comp5 / none, 5.0, 0.01);
    // LoRAtorio adds the base model's two rows: 2k + 2 = 12 rows at k = 5, six plain steps.
    double lt5 = 0;
    for (const auto& c : j["unet_steps"])
        if (c["case"] == "loratorio" && c["k"] == 5) lt5 = c["flops"].get<double>();
    EXPECT_NEAR(lt5 / none, 6.0, 0.01);
    EXPECT_EQ(j["ratios"].size(), 17u);
    // Ratios divide by the faster of the two plain-step medians.
    double none_min = 1e30, merge5 = 0;
    for (const auto& c : j["unet_steps"]) {
        if (c["case"] == "none") none_min = std::min(none_min, c["median_s"].get<double>());
        if (c["case"] == "merge" && c["k"] == 5) merge5 = c["median_s"].get<double>();
    }
    double lt5_s = 0;
    for (const auto& c : j["unet_steps"])
        if (c["case"] == "loratorio" && c["k"] == 5) lt5_s = c["median_s"].get<double>();
    for (const auto& q : j["ratios"]) {
        if (q["case"] == "merge" && q["k"] == 5) EXPECT_DOUBLE_EQ(q["ratio"].get<double>(), merge5 / none_min);
        // LoRAtorio's 12 rows at k = 5 are six plain steps' worth.
        if (q["case"] == "loratorio" && q["k"] == 5) {
            EXPECT_EQ(q["against"], "6 x none");
            EXPECT_DOUBLE_EQ(q["ratio"].get<double>(), lt5_s / (6 * none_min));
        }
    }
    EXPECT_GT(j["peaks"]["gemm"]["gflops"].get<double>(), 0.0);
    EXPECT_GT(j["peaks"]["gemm_model_route"]["gflops"].get<double>(), 0.0);
    // "best" is the highest of the three measured rates, and every fraction is taken against it.
    const double best = j["peaks"]["best_gflops"].get<double>();
    EXPECT_EQ(best, std::max({j["peaks"]["gemm"]["gflops"].get<double>(), j["peaks"]["gemm_model_route"]["gflops"].get<double>(),
                              j["peaks"]["conv3x3"]["gflops"].get<double>()}));
    for (const auto& c : j["unet_steps"])
        EXPECT_DOUBLE_EQ(c["fraction_of_peak"].get<double>(), c["gflops"].get<double>() / best);
    // The plain generation's peak RSS is part of the whole run's.
    EXPECT_GT(j["generation_peak_rss_bytes"].get<int64_t>(), 0);
    EXPECT_LE(j["generation_peak_rss_bytes"].get<int64_t>(), j["peak_rss_bytes"].get<int64_t>());
    EXPECT_TRUE(j["machine"]["allocator"]["tuned"].get<bool>());
    std::string md = read_bytes(dir / "b.md");
    EXPECT_NE(md.find("| composite | 4 | 5 |"), std::string::npos) << md;
    EXPECT_NE(md.find("composite / k x none"), std::string::npos);
}

TEST(BenchQuick, RejectsBadLists) {
    auto r = run_multilora("bench --quick --ranks 4,x");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("'x' is not a non-negative integer"), std::string::npos) << r.output;
}
