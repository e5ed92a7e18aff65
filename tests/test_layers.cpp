// The include graph between src/ folders points only down the layers of docs/architecture.md, checked by
// scripts/check_layers.py (also run by CI); and the check itself can fail.
#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"

using multilora::test::make_temp_dir;
using multilora::test::run_shell;

namespace {

std::string check(const std::filesystem::path& root) {
    return "python3 " + std::string(ML_SOURCE_DIR) + "/scripts/check_layers.py " + root.string();
}

void write(const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

}  // namespace

TEST(Layers, SourceTreeHasNoUpwardInclude) {
    auto r = run_shell(check(ML_SOURCE_DIR));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("all pointing down, no cycle"), std::string::npos) << r.output;
}

TEST(Layers, UpwardIncludeIsReported) {
    auto dir = make_temp_dir("layers");
    write(dir / "src/models/unet.cpp", "#include \"multilora/models/unet.h\"\n#include \"multilora/pipeline/generation.h\"\n");
    write(dir / "src/pipeline/generation.cpp", "#include \"multilora/models/unet.h\"\n");
    auto r = run_shell(check(dir));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("src/models/unet.cpp:2: models (layer 3) includes pipeline (layer 7)"), std::string::npos)
        << r.output;
}

TEST(Layers, CycleWithinALayerIsReported) {
    auto dir = make_temp_dir("layers");
    write(dir / "src/batch/a.cpp", "#include \"multilora/eval/x.h\"\n");
    write(dir / "src/eval/x.cpp", "#include \"multilora/batch/a.h\"\n");
    auto r = run_shell(check(dir));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("include cycle: batch -> eval -> batch"), std::string::npos) << r.output;
}

TEST(Layers, UnknownFolderIsReported) {
    auto dir = make_temp_dir("layers");
    write(dir / "src/widgets/w.cpp", "#include \"multilora/util/error.h\"\n");
    auto r = run_shell(check(dir));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("folder 'widgets' has no layer"), std::string::npos) << r.output;
}

// Functions stay short (docs/architecture.md): scripts/function_lengths.py fails over 120 lines.
TEST(Layers, NoFunctionInSrcIsOver120Lines) {
    auto r = run_shell("python3 " + std::string(ML_SOURCE_DIR) + "/scripts/function_lengths.py --max 120 " +
                       std::string(ML_SOURCE_DIR) + "/src");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(" 0 over 120"), std::string::npos) << r.output;
}

TEST(Layers, FunctionLengthCheckCanFail) {
    auto dir = make_temp_dir("funclen");
    std::string body = "int long_one(int x) {\n";
    for (int i = 0; i < 130; ++i) body += "    x += " + std::to_string(i) + ";\n";
    body += "    return x;\n}\n";
    write(dir / "a.cpp", "namespace n {\n" + body + "}\n");
    auto r = run_shell("python3 " + std::string(ML_SOURCE_DIR) + "/scripts/function_lengths.py --max 120 " + dir.string());
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("  133  "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("long_one"), std::string::npos) << r.output;
}
