// Bad input: each case gives a clear message, the documented exit code, and leaves no output behind.
#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"

namespace fs = std::filesystem;
using multilora::test::run_multilora;

namespace {

std::string base_args(const std::string& model, const fs::path& out, const std::string& size = "--width 64 --height 64") {
    return "generate --threads 1 --no-progress --model " + model + " --prompt fox --steps 2 " + size + " --out " +
           out.string() + " --name x";
}

bool dir_is_empty(const fs::path& d) { return !fs::exists(d) || fs::is_empty(d); }

}  // namespace

TEST(CliErrors, MissingModel) {
    auto out = multilora::test::make_temp_dir("err-missing");
    auto r = run_multilora(base_args("/nonexistent/model.safetensors", out));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("not found"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("/nonexistent/model.safetensors"), std::string::npos);
    EXPECT_TRUE(dir_is_empty(out));
}

TEST(CliErrors, TruncatedModel) {
    auto out = multilora::test::make_temp_dir("err-trunc");
    auto src = multilora::test::tiny_single_file();
    fs::path cut = out.parent_path() / (out.filename().string() + "-cut.safetensors");
    {
        std::string bytes = multilora::test::read_bytes(src);
        std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    }
    auto r = run_multilora(base_args(cut.string(), out));
    fs::remove(cut);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find(cut.filename().string()), std::string::npos) << r.output;
    EXPECT_TRUE(dir_is_empty(out));
}

TEST(CliErrors, PickleCheckpointIsRefusedWithAHint) {
    auto out = multilora::test::make_temp_dir("err-pickle");
    fs::path ckpt = out.parent_path() / (out.filename().string() + ".ckpt");
    std::ofstream(ckpt, std::ios::binary) << std::string("PK\x03\x04 not really a zip");
    auto r = run_multilora(base_args(ckpt.string(), out));
    fs::remove(ckpt);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("pickle"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("safetensors"), std::string::npos) << r.output;
    EXPECT_TRUE(dir_is_empty(out));
}

TEST(CliErrors, UnknownScheduler) {
    auto out = multilora::test::make_temp_dir("err-sched");
    auto r = run_multilora(base_args(multilora::test::tiny_single_file(), out) + " --scheduler plms");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("plms"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("dpmpp-2m"), std::string::npos) << r.output;
    EXPECT_TRUE(dir_is_empty(out));
}

TEST(CliErrors, WidthNotMultipleOf8) {
    auto out = multilora::test::make_temp_dir("err-width");
    auto r = run_multilora(base_args(multilora::test::tiny_single_file(), out, "--width 100 --height 64"));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("multiples of 8"), std::string::npos) << r.output;
    EXPECT_TRUE(dir_is_empty(out));
}

TEST(CliErrors, UnwritableOutDir) {
    auto tmp = multilora::test::make_temp_dir("err-out");
    fs::path blocker = tmp / "a-file";
    std::ofstream(blocker) << "x";
    auto r = run_multilora(base_args(multilora::test::tiny_single_file(), blocker / "sub"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("a-file/sub"), std::string::npos) << r.output;
    EXPECT_EQ(std::vector<fs::path>(fs::directory_iterator(tmp), {}).size(), 1u);
}

TEST(CliErrors, ExistingOutputNeedsOverwrite) {
    auto out = multilora::test::make_temp_dir("err-exists");
    const std::string args = base_args(multilora::test::tiny_single_file(), out);
    ASSERT_EQ(run_multilora(args).exit_code, 0);
    auto before = multilora::test::read_bytes(out / "x.json");
    auto r = run_multilora(args);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("--overwrite"), std::string::npos) << r.output;
    EXPECT_EQ(multilora::test::read_bytes(out / "x.json"), before);
    EXPECT_EQ(run_multilora(args + " --overwrite").exit_code, 0);
}

TEST(CliErrors, UsageErrorsExitTwo) {
    EXPECT_EQ(run_multilora("generate --prompt x").exit_code, 2);  // --model missing
    EXPECT_EQ(run_multilora("frobnicate").exit_code, 2);
    auto help = run_multilora("generate --help");
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.output.find("Examples:"), std::string::npos);
}

// -DMULTILORA_WITH_EVAL=OFF builds keep `evaluate` listed but say that it was not built (exit 2).
TEST(CliErrors, EvaluateSaysWhetherItWasBuilt) {
    auto r = run_multilora("evaluate --run /nonexistent --compare composite");
    if (ML_WITH_EVAL) {
        EXPECT_EQ(run_multilora("evaluate --help").exit_code, 0);
        EXPECT_EQ(r.output.find("not built"), std::string::npos) << r.output;
    } else {
        EXPECT_EQ(r.exit_code, 2);
        EXPECT_NE(r.output.find("evaluate was not built"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find("-DMULTILORA_WITH_EVAL=ON"), std::string::npos) << r.output;
    }
}
