// bench --profile: one plain step under libtorch's profiler, its top-level operators grouped by what they
// compute. The grouping and arithmetic against rows worked by hand; the capture against a libtorch call whose
// FLOPs are known; the whole option on the tiny model, its FLOPs against the bench's own count.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "multilora/bench/step_profile.h"
#include "test_support.h"

namespace fs = std::filesystem;
using multilora::bench::ProfiledOp;
using nlohmann::json;

namespace {

const json& row(const json& rows, const std::string& group) {
    for (const auto& r : rows)
        if (r["group"] == group) return r;
    static const json none;
    ADD_FAILURE() << "no row " << group << " in " << rows.dump();
    return none;
}

}  // namespace

TEST(StepProfile, GroupsOperatorsByWhatTheyCompute) {
    using multilora::bench::op_group;
    EXPECT_EQ(op_group({"aten::conv2d", 0, {{2, 320, 64, 64}, {320, 320, 3, 3}, {320}}}), "3x3 convolutions at 64x64");
    EXPECT_EQ(op_group({"aten::conv2d", 0, {{1, 320, 8192, 1}, {2560, 320, 1, 1}, {2560}}}),
              "linear layers (1x1 convolutions over rows)");
    EXPECT_EQ(op_group({"aten::conv2d", 0, {{2, 320, 64, 64}, {640, 320, 1, 1}, {640}}}), "1x1 convolutions");
    EXPECT_EQ(op_group({"aten::conv2d", 0, {{1, 320, 4096, 1}, {32768, 40, 1, 1}, {}}}), "grouped convolutions");
    EXPECT_EQ(op_group({"multilora::fused_attention", 0, {{2, 4096, 320}, {2, 77, 320}, {2, 77, 320}}}), "attention");
    EXPECT_EQ(op_group({"multilora::grouped_attention", 0, {}}), "attention");
    EXPECT_EQ(op_group({"aten::layer_norm", 0, {}}), "norms");
    EXPECT_EQ(op_group({"aten::addmm", 0, {}}), "products through BLAS");
    EXPECT_EQ(op_group({"aten::gelu_", 0, {}}), "aten::gelu_");
    // Attention's two products: 4 * rows * keys * width = 4 * (2*4096) * 77 * 320 = 807,403,520.
    EXPECT_DOUBLE_EQ(multilora::bench::op_flops({"multilora::fused_attention", 0, {{2, 4096, 320}, {2, 77, 320}, {2, 77, 320}}}),
                     807403520.0);
    // Other operators keep libtorch's count.
    EXPECT_DOUBLE_EQ(multilora::bench::op_flops({"aten::conv2d", 0, {{1, 1, 1, 1}, {1, 1, 1, 1}}, 123.0}), 123.0);
}

TEST(StepProfile, RowsWorkedByHand) {
    const std::vector<ProfiledOp> ops{
        {"aten::conv2d", 0.030, {{2, 320, 64, 64}, {320, 320, 3, 3}, {320}}, 3.0e10},
        {"aten::conv2d", 0.020, {{2, 320, 64, 64}, {320, 320, 3, 3}, {320}}, 3.0e10},
        {"multilora::fused_attention", 0.010, {{2, 4096, 320}, {2, 77, 320}, {2, 77, 320}}, 0},
        {"aten::layer_norm", 0.004, {{2, 4096, 320}}, 0},
        {"aten::group_norm", 0.002, {{2, 320, 64, 64}}, 0},
        {"aten::silu_", 0.0005, {{2, 320, 64, 64}}, 0},  // under 1% of the wall time: folded
        {"aten::add_", 0.0003, {{2, 320, 64, 64}}, 0},   // likewise
    };
    const json rows = multilora::bench::profile_rows(ops, 0.1);
    ASSERT_EQ(rows.size(), 5u) << rows.dump();
    EXPECT_EQ(rows[0]["group"], "3x3 convolutions at 64x64");
    EXPECT_EQ(rows[0]["calls"], 2);
    EXPECT_DOUBLE_EQ(rows[0]["seconds"].get<double>(), 0.05);
    EXPECT_DOUBLE_EQ(rows[0]["share"].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(rows[0]["gflop"].get<double>(), 60.0);
    EXPECT_DOUBLE_EQ(rows[0]["gflop_per_s"].get<double>(), 1200.0);  // 60 GFLOP in 0.05 s
    EXPECT_EQ(rows[1]["group"], "attention");
    EXPECT_NEAR(rows[1]["gflop_per_s"].get<double>(), 80.740352, 1e-9);  // 0.80740352 GFLOP in 0.01 s
    EXPECT_EQ(rows[2]["group"], "norms");
    EXPECT_EQ(rows[2]["calls"], 2);
    EXPECT_NEAR(rows[2]["seconds"].get<double>(), 0.006, 1e-15);
    EXPECT_EQ(rows[2]["gflop_per_s"].get<double>(), 0.0);
    EXPECT_EQ(rows[3]["group"], "other operators");
    EXPECT_EQ(rows[3]["calls"], 2);
    EXPECT_NEAR(rows[3]["seconds"].get<double>(), 0.0008, 1e-15);
    EXPECT_EQ(rows[4]["group"], "not in an operator");
    EXPECT_NEAR(rows[4]["seconds"].get<double>(), 0.1 - 0.0668, 1e-12);
}

TEST(StepProfile, CapturesTopLevelCallsWithLibtorchsFlops) {
    const at::Tensor x = at::randn({1, 8, 16, 16}), w = at::randn({4, 8, 3, 3}), a = at::randn({5, 6}), b = at::randn({6, 7});
    const at::Tensor bt = b.t();
    const at::Tensor x2 = at::randn({2, 3, 9, 9}), w2 = at::randn({6, 1, 3, 3});
    const std::vector<ProfiledOp> ops = multilora::bench::profile_top_level([&] {
        at::conv2d(x, w, {}, 1, 1);
        at::linear(a, bt);
        at::conv2d(x2, w2, {}, at::IntArrayRef{2, 2}, at::IntArrayRef{0, 0}, at::IntArrayRef{1, 1}, 3);  // stride 2, no padding, 3 groups: 4x4 out
    });
    ASSERT_EQ(ops.size(), 3u);  // the convolutions' and the product's inner calls are nested, not listed
    EXPECT_EQ(ops[0].name, "aten::conv2d");
    EXPECT_EQ(ops[0].shapes.at(0), (std::vector<int64_t>{1, 8, 16, 16}));
    EXPECT_EQ(ops[0].shapes.at(1), (std::vector<int64_t>{4, 8, 3, 3}));
    EXPECT_DOUBLE_EQ(ops[0].flops, 2.0 * 1 * 4 * 16 * 16 * 8 * 9);  // 147,456: 2 * N * out * H * W * in * 3 * 3
    EXPECT_EQ(ops[1].name, "aten::linear");
    EXPECT_DOUBLE_EQ(ops[1].flops, 2.0 * 5 * 6 * 7);  // its inner product's count, 420
    EXPECT_DOUBLE_EQ(ops[2].flops, 2.0 * 2 * 6 * 4 * 4 * 1 * 9);  // 3,456: (9 - 3) / 2 + 1 = 4 rows and columns
    EXPECT_GT(ops[0].seconds, 0.0);
}

TEST(StepProfile, BenchProfilesOnePlainStep) {
    const fs::path dir = multilora::test::make_temp_dir("bench-profile");
    const auto r = multilora::test::run_multilora("bench --quick --threads 1 --repeats 1 --max-spread 10 --methods merge --k merge=1 "
                                                  "--profile --work-dir " + (dir / "work").string() + " --json " +
                                                  (dir / "b.json").string() + " --markdown " + (dir / "b.md").string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const json j = json::parse(multilora::test::read_bytes(dir / "b.json"));
    const json& p = j.at("step_profile");
    double seconds = 0, gflop = 0;
    for (const auto& x : p["rows"]) seconds += x["seconds"].get<double>(), gflop += x["gflop"].get<double>();
    EXPECT_NEAR(seconds, p["step_seconds"].get<double>(), 1e-9);  // the rows cover the step
    // libtorch's count of the products (and ours of attention) against the bench's own count from the layer
    // shapes: the same step, two code paths.
    double step_flops = 0;
    for (const auto& c : j["unet_steps"])
        if (c["case"] == "none") step_flops = c["flops"].get<double>();
    ASSERT_GT(step_flops, 0.0);
    EXPECT_NEAR(gflop * 1e9 / step_flops, 1.0, 0.01) << p.dump(1);
    EXPECT_GT(row(p["rows"], "3x3 convolutions at 8x8")["gflop"].get<double>(), 0.0);
    EXPECT_NE(multilora::test::read_bytes(dir / "b.md").find("Where one plain step goes"), std::string::npos);
}
