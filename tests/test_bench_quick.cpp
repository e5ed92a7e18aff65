// `multilora bench --quick`: the benchmark on the tiny model (no timing assertions): the interleaved rounds,
// the paired ratios recomputed from the report's own per-round times, the verdict, and a peer process.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;
using multilora::test::read_bytes;
using multilora::test::run_multilora;

namespace {

struct QuickRun {
    fs::path dir;
    multilora::test::CommandResult result;
    json report;
    std::string markdown;
};

// `extra` goes after the common flags. The work folder (random model, LoRAs) is shared by the tests of one
// process run; each run writes its own reports.
QuickRun run_quick(const std::string& extra) {
    QuickRun q;
    q.dir = multilora::test::make_temp_dir("bench");
    q.result = run_multilora("bench --quick --threads 1 --work-dir " + (q.dir / "work").string() + " --json " +
                             (q.dir / "b.json").string() + " --markdown " + (q.dir / "b.md").string() + " " + extra);
    if (fs::exists(q.dir / "b.json")) q.report = json::parse(read_bytes(q.dir / "b.json"));
    if (fs::exists(q.dir / "b.md")) q.markdown = read_bytes(q.dir / "b.md");
    return q;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

const json& find_case(const json& steps, const std::string& name, int k) {
    for (const auto& c : steps)
        if (c["case"] == name && c.value("k", 0) == k) return c;
    static const json none;
    ADD_FAILURE() << "no case " << name << " k " << k;
    return none;
}

// The paired ratio of round r, recomputed from the times: the case over its rows times the mean of the two
// plain steps around it.
std::vector<double> paired(const json& c, const json& none, int rows) {
    std::vector<double> out;
    const auto t = c["times_s"].get<std::vector<double>>(), p = none["times_s"].get<std::vector<double>>();
    for (size_t i = 0; i < t.size(); ++i) out.push_back(t[i] / (rows * 0.5 * (p[i] + p[i + 1])));
    return out;
}

}  // namespace

TEST(BenchQuick, RunsEveryCaseInInterleavedRounds) {
    QuickRun q = run_quick("--repeats 3 --max-spread 10");
    ASSERT_EQ(q.result.exit_code, 0) << q.result.output;
    const json& j = q.report;
    std::map<std::string, int> cases;
    for (const auto& c : j["unet_steps"]) {
        cases[c["case"].get<std::string>()]++;
        EXPECT_GT(c["flops"].get<double>(), 0.0);
        // One time per round; the plain step also once more after the last round.
        EXPECT_EQ(c["times_s"].size(), c["case"] == "none" ? 4u : 3u) << c["case"];
    }
    EXPECT_EQ(cases["none"], 1);
    EXPECT_EQ(cases["merge"], 2);      // k = 1 and 5
    EXPECT_EQ(cases["switch"], 1);
    EXPECT_EQ(cases["composite"], 4);  // k = 2..5
    EXPECT_EQ(cases["w-composite"], 2);  // k = 2, 5
    EXPECT_EQ(cases["loratorio"], 2);    // k = 2, 5
    EXPECT_EQ(cases["w-switch"], 1);
    EXPECT_EQ(cases["klora"], 1);        // k = 2 only
    EXPECT_EQ(cases["cmlora"], 2);       // k = 2, 5
    EXPECT_EQ(cases["multlfg"], 2);      // k = 2, 5
    // The plain step again on the attention route the fused kernel replaced, where the CPU takes that kernel.
    const bool fused = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    EXPECT_EQ(cases["none, grouped attention"], fused ? 1 : 0);
    // The FLOP count grows with the batch: Composite k runs k times the rows of one CFG step, LoRAtorio adds
    // the base model's two rows (2k + 2 = 12 rows at k = 5: six plain steps).
    const json& none = find_case(j["unet_steps"], "none", 0);
    EXPECT_NEAR(find_case(j["unet_steps"], "composite", 5)["flops"].get<double>() / none["flops"].get<double>(), 5.0, 0.01);
    EXPECT_NEAR(find_case(j["unet_steps"], "loratorio", 5)["flops"].get<double>() / none["flops"].get<double>(), 6.0, 0.01);
    // VAE decode and text encode ran in the same rounds.
    EXPECT_EQ(j["vae_decode"]["times_s"].size(), 3u);
    EXPECT_EQ(j["text_encode"]["times_s"].size(), 3u);
    EXPECT_EQ(j["vae_decode"]["peak_used"], "conv3x3");
    EXPECT_DOUBLE_EQ(j["vae_decode"]["fraction_of_peak"].get<double>(),
                     j["vae_decode"]["gflops"].get<double>() / j["peaks"]["fp32"]["conv3x3"]["gflops"].get<double>());
    EXPECT_EQ(j["ratios"].size(), fused ? 18u : 17u);
}

TEST(BenchQuick, RatiosAreMediansOfPairedRoundRatios) {
    QuickRun q = run_quick("--repeats 3 --max-spread 10 --methods merge,loratorio --k merge=5 --k loratorio=5");
    ASSERT_EQ(q.result.exit_code, 0) << q.result.output;
    const json& j = q.report;
    const json& none = find_case(j["unet_steps"], "none", 0);
    for (const auto& [name, rows] : std::vector<std::pair<std::string, int>>{{"merge", 1}, {"loratorio", 6}}) {
        const std::vector<double> r = paired(find_case(j["unet_steps"], name, 5), none, rows);
        bool found = false;
        for (const auto& ratio : j["ratios"]) {
            if (ratio["case"] != name) continue;
            found = true;
            EXPECT_DOUBLE_EQ(ratio["ratio"].get<double>(), median(r)) << name;
            EXPECT_DOUBLE_EQ(ratio["min"].get<double>(), *std::min_element(r.begin(), r.end()));
            EXPECT_DOUBLE_EQ(ratio["max"].get<double>(), *std::max_element(r.begin(), r.end()));
            EXPECT_EQ(ratio["against"], rows == 1 ? "none" : "6 x none");
            EXPECT_FALSE(ratio.contains("target"));  // targets are for SD1.5-sized steps, not --quick
        }
        EXPECT_TRUE(found) << name;
    }
    // The spread is (max - min) / median of the four plain steps.
    auto p = none["times_s"].get<std::vector<double>>();
    const double spread = (*std::max_element(p.begin(), p.end()) - *std::min_element(p.begin(), p.end())) / median(p);
    EXPECT_DOUBLE_EQ(j["verdict"]["plain_step_spread"].get<double>(), spread);
    EXPECT_TRUE(j["verdict"]["given"].get<bool>());
    // "best" is the highest of the three measured rates, and every UNet fraction is taken against it.
    const json& peaks = j["peaks"]["fp32"];
    const double best = peaks["best_gflops"].get<double>();
    EXPECT_EQ(best, std::max({peaks["gemm"]["gflops"].get<double>(), peaks["gemm_model_route"]["gflops"].get<double>(),
                              peaks["conv3x3"]["gflops"].get<double>()}));
    for (const auto& c : j["unet_steps"])
        EXPECT_DOUBLE_EQ(c["fraction_of_peak"].get<double>(), c["gflops"].get<double>() / best);
    // The plain generation's peak RSS is part of the whole run's.
    EXPECT_GT(j["generation_peak_rss_bytes"].get<int64_t>(), 0);
    EXPECT_LE(j["generation_peak_rss_bytes"].get<int64_t>(), j["peak_rss_bytes"].get<int64_t>());
    EXPECT_TRUE(j["machine"]["allocator"]["tuned"].get<bool>());
    EXPECT_NE(q.markdown.find("| merge | 4 | 5 |"), std::string::npos) << q.markdown;
    EXPECT_NE(q.markdown.find("loratorio / 6 x none"), std::string::npos);
}

TEST(BenchQuick, RefusesAVerdictWhenThePlainStepSpreadIsTooLarge) {
    // No two timings are equal to the nanosecond, so a zero bound is always exceeded.
    QuickRun q = run_quick("--repeats 2 --max-spread 0 --methods merge --k merge=1");
    EXPECT_EQ(q.result.exit_code, 3) << q.result.output;
    EXPECT_NE(q.result.output.find("too noisy for a verdict"), std::string::npos) << q.result.output;
    ASSERT_TRUE(q.report.is_object()) << "the report is still written";
    EXPECT_FALSE(q.report["verdict"]["given"].get<bool>());
    EXPECT_GT(q.report["verdict"]["plain_step_spread"].get<double>(), 0.0);
    EXPECT_NE(q.markdown.find("**NO VERDICT**"), std::string::npos) << q.markdown;
}

TEST(BenchQuick, TimesAPeerProcessInTheSameRounds) {
    auto dir = multilora::test::make_temp_dir("bench-peer");
    // A stand-in for a Python with diffusers: the line protocol, with a fixed 0.25 s answer.
    const fs::path fake = dir / "fake-python";
    std::ofstream(fake) << "#!/bin/sh\necho \"$@\" > '" << (dir / "args").string() << "'\necho ready\n"
                        << "while read line; do [ \"$line\" = step ] || exit 0; echo 0.25; done\n";
    fs::permissions(fake, fs::perms::owner_all);
    QuickRun q = run_quick("--repeats 3 --max-spread 10 --methods merge --k merge=1 --compare-diffusers " + fake.string());
    ASSERT_EQ(q.result.exit_code, 0) << q.result.output;
    // The peer got the script (written into the work folder), the size, threads and dtype.
    const std::string args = read_bytes(dir / "args");
    // The peer got the script and the tiny UNet's diffusers config (both written into the work folder), the
    // latent size (64 px / 8), threads and dtype.
    EXPECT_NE(args.find("diffusers_peer.py --config " + (q.dir / "work" / "diffusers_peer_unet.json").string() +
                        " --latent-size 8 --threads 1 --dtype fp32"),
              std::string::npos)
        << args;
    EXPECT_NE(read_bytes(q.dir / "work" / "diffusers_peer.py").find("UNet2DConditionModel(**config)"), std::string::npos);
    const json unet = json::parse(read_bytes(q.dir / "work" / "diffusers_peer_unet.json"));
    EXPECT_EQ(unet["block_out_channels"], json({32, 64, 64}));
    const json& none = find_case(q.report["unet_steps"], "none", 0);
    auto p = none["times_s"].get<std::vector<double>>();
    std::vector<double> expected;
    for (size_t i = 0; i < 3; ++i) expected.push_back(0.5 * (p[i] + p[i + 1]) / 0.25);
    bool found = false;
    for (const auto& ratio : q.report["ratios"])
        if (ratio["against"] == "diffusers") {
            found = true;
            EXPECT_DOUBLE_EQ(ratio["ratio"].get<double>(), median(expected));
        }
    EXPECT_TRUE(found) << q.report["ratios"].dump();
    EXPECT_NE(q.markdown.find("none / diffusers"), std::string::npos) << q.markdown;
}

TEST(BenchQuick, APeerThatFailsEndsTheRunWithItsStatus) {
    auto dir = multilora::test::make_temp_dir("bench-peer");
    const fs::path fake = dir / "fake-python";
    std::ofstream(fake) << "#!/bin/sh\necho 'ModuleNotFoundError: No module named diffusers' >&2\nexit 1\n";
    fs::permissions(fake, fs::perms::owner_all);
    QuickRun q = run_quick("--methods merge --k merge=1 --compare-diffusers " + fake.string());
    EXPECT_EQ(q.result.exit_code, 1);
    EXPECT_NE(q.result.output.find("--compare-diffusers: the peer process exited with status 1"), std::string::npos)
        << q.result.output;
    EXPECT_FALSE(fs::exists(q.dir / "b.json"));
    QuickRun missing = run_quick("--methods merge --k merge=1 --compare-diffusers /nonexistent/python3");
    EXPECT_EQ(missing.result.exit_code, 1);
    EXPECT_NE(missing.result.output.find("cannot run '/nonexistent/python3'"), std::string::npos) << missing.result.output;
}

TEST(BenchQuick, RejectsBadLists) {
    auto r = run_multilora("bench --quick --ranks 4,x");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("'x' is not a non-negative integer"), std::string::npos) << r.output;
}
