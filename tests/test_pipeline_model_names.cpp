// Models and LoRAs by name (pipeline/model_names.h): a fake Hugging Face hub cache laid out as huggingface_hub
// writes it (models--ORG--NAME/{refs/main, snapshots/COMMIT/}) holding the tiny diffusers folder, and LoRA folders.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

#include "multilora/io/png_writer.h"
#include "multilora/pipeline/model_names.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;

namespace {

// CACHE/models--acme--tiny-sd/{refs/main -> c0ffee, refs/v2 -> beef, snapshots/{c0ffee, beef}/ = the tiny folder}.
fs::path fake_hub() {
    static const fs::path hub = [] {
        const fs::path h = test::make_temp_dir("hub");
        const fs::path repo = h / "models--acme--tiny-sd";
        fs::create_directories(repo / "snapshots");
        for (const char* commit : {"c0ffee", "beef"})
            fs::copy(test::tiny_folder(), repo / "snapshots" / commit, fs::copy_options::recursive);
        fs::create_directories(repo / "refs");
        std::ofstream(repo / "refs" / "main") << "c0ffee";
        std::ofstream(repo / "refs" / "v2") << "beef\n";
        return h;
    }();
    return hub;
}

std::vector<uint8_t> pixels(const fs::path& png) {
    int w = 0, h = 0;
    return io::decode_png_rgb(test::read_bytes(png), &w, &h);
}

std::string generate_args(const std::string& model, const fs::path& out, const std::string& extra = "") {
    return "generate --threads 1 --no-progress -m " + model + " -p fox --steps 2 --width 64 --height 64 --seed 5 --out " +
           out.string() + " --name x " + extra;
}

}  // namespace

// huggingface_hub's order: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub.
TEST(ModelNames, HubCacheOrder) {
    const char* home_was = std::getenv("HOME");
    const std::string home = home_was ? home_was : "";
    setenv("HF_HUB_CACHE", "/a/hub", 1);
    setenv("HF_HOME", "/b", 1);
    setenv("XDG_CACHE_HOME", "/c", 1);
    setenv("HOME", "/d", 1);
    EXPECT_EQ(pipeline::hub_cache_dirs(),
              (std::vector<std::string>{"/a/hub", "/b/hub", "/c/huggingface/hub", "/d/.cache/huggingface/hub"}));
    unsetenv("HF_HUB_CACHE");
    setenv("HF_HOME", "/d/.cache/huggingface", 1);  // the same folder as the default: listed once
    unsetenv("XDG_CACHE_HOME");
    EXPECT_EQ(pipeline::hub_cache_dirs(), (std::vector<std::string>{"/d/.cache/huggingface/hub"}));
    unsetenv("HF_HOME");
    EXPECT_THROW(pipeline::resolve_model_reference("/no/such/file.safetensors"), RuntimeError);
    EXPECT_THROW(pipeline::resolve_model_reference("acme/x@../../etc"), RuntimeError);  // no path in a revision
    EXPECT_EQ(pipeline::resolve_model_reference(""), "");
    if (home_was) setenv("HOME", home.c_str(), 1);
    else unsetenv("HOME");
}

// A hub name gives the same image as the folder it resolves to; refs/main and @REVISION pick the snapshot; a name
// that is not in the cache says where it looked and writes nothing.
TEST(ModelNames, HubNamesResolveOffline) {
    const std::string env = "HF_HUB_CACHE=" + fake_hub().string();
    const fs::path direct = test::make_temp_dir("names-direct"), named = test::make_temp_dir("names-hub");
    auto a = test::run_multilora(generate_args(test::tiny_folder(), direct));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = test::run_multilora_env(env, generate_args("acme/tiny-sd", named));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    EXPECT_TRUE(pixels(direct / "x.png") == pixels(named / "x.png"));
    EXPECT_NE(test::read_bytes(named / "x.png").find("Model: tiny-sd,"), std::string::npos);  // the name, not the commit
    const auto m = nlohmann::json::parse(test::read_bytes(named / "x.json"));
    EXPECT_NE(m.dump().find("models--acme--tiny-sd/snapshots/c0ffee"), std::string::npos);

    const fs::path v2 = test::make_temp_dir("names-v2");
    auto c = test::run_multilora_env(env, generate_args("acme/tiny-sd@v2", v2, "--vae acme/tiny-sd@beef/vae"));
    EXPECT_EQ(c.exit_code, 1) << c.output;  // "beef/vae" is no revision: a revision has no '/'
    EXPECT_NE(c.output.find("VAE not found: 'acme/tiny-sd@beef/vae'"), std::string::npos) << c.output;
    auto d = test::run_multilora_env(env, generate_args("acme/tiny-sd@v2", v2));
    ASSERT_EQ(d.exit_code, 0) << d.output;
    EXPECT_NE(test::read_bytes(v2 / "x.json").find("snapshots/beef"), std::string::npos);

    const fs::path missing = test::make_temp_dir("names-missing");
    auto e = test::run_multilora_env(env, generate_args("acme/nothing", missing));
    EXPECT_EQ(e.exit_code, 1) << e.output;
    EXPECT_NE(e.output.find("model not found: 'acme/nothing'"), std::string::npos) << e.output;
    EXPECT_NE(e.output.find((fake_hub() / "models--acme--nothing").string()), std::string::npos) << e.output;
    auto f = test::run_multilora_env(env, generate_args("acme/tiny-sd@v9", missing));
    EXPECT_NE(f.output.find("no snapshot for revision 'v9'"), std::string::npos) << f.output;
    EXPECT_TRUE(fs::is_empty(missing));
}

// --lora NAME: NAME.safetensors in --lora-dir, then $MULTILORA_LORA_DIR; the same image as the path itself.
TEST(ModelNames, LoraNamesResolveInLoraFolders) {
    const fs::path loras = test::tiny_model_dir() / "loras";
    const fs::path by_path = test::make_temp_dir("lora-path"), by_dir = test::make_temp_dir("lora-dir"),
                   by_env = test::make_temp_dir("lora-env");
    auto a = test::run_multilora(generate_args(test::tiny_single_file(), by_path,
                                               "--lora " + (loras / "tiny-style.safetensors").string() + ":0.7"));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = test::run_multilora(generate_args(test::tiny_single_file(), by_dir, "--lora-dir /nowhere --lora-dir " +
                                                                                      loras.string() + " --lora tiny-style:0.7"));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    auto c = test::run_multilora_env("MULTILORA_LORA_DIR=/nowhere:" + loras.string(),
                                     generate_args(test::tiny_single_file(), by_env, "--lora tiny-style.safetensors:0.7"));
    ASSERT_EQ(c.exit_code, 0) << c.output;
    EXPECT_TRUE(pixels(by_path / "x.png") == pixels(by_dir / "x.png"));
    EXPECT_TRUE(pixels(by_path / "x.png") == pixels(by_env / "x.png"));
    const fs::path none = test::make_temp_dir("lora-none");
    auto d = test::run_multilora(generate_args(test::tiny_single_file(), none, "--lora-dir " + loras.string() + " --lora nope"));
    EXPECT_EQ(d.exit_code, 1) << d.output;
    EXPECT_NE(d.output.find("LoRA not found: 'nope'"), std::string::npos) << d.output;
    EXPECT_NE(d.output.find(loras.string()), std::string::npos) << d.output;
    EXPECT_TRUE(fs::is_empty(none));
}
