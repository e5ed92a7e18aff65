// --from-png: an image's A1111 parameters re-run (multilora's own and A1111's), flags overriding them, and
// fields that cannot be applied listed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/pipeline/infotext.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;

namespace {

// As A1111 1.9 writes it: a two-line prompt, a negative prompt, a quoted field with commas.
const char* kA1111 =
    "a red fox,\n(snow:1.2), forest\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, Size: 64x48, Model hash: 0123456789, "
    "Model: tiny-sd15, Clip skip: 2, Lora hashes: \"style: abc, object: def\", Version: v1.9.4";

std::vector<uint8_t> pixels(const fs::path& png) {
    int w = 0, h = 0;
    return io::decode_png_rgb(test::read_bytes(png), &w, &h);
}

std::string base(const fs::path& out) {
    return "generate --threads 1 --no-progress --model " + test::tiny_single_file() + " --out " + out.string();
}

}  // namespace

TEST(InfoText, SplitsPromptNegativeAndSettings) {
    const pipeline::InfoText t = pipeline::parse_infotext(kA1111);
    EXPECT_EQ(t.prompt, "a red fox,\n(snow:1.2), forest");
    EXPECT_EQ(t.negative_prompt, "blurry, lowres");
    ASSERT_EQ(t.fields.size(), 11u);
    EXPECT_EQ(*t.field("Schedule type"), "Karras");
    EXPECT_EQ(*t.field("Lora hashes"), "style: abc, object: def");
    EXPECT_EQ(*t.field("Version"), "v1.9.4");
    EXPECT_EQ(pipeline::scheduler_for_a1111_sampler("DPM++ 2M", "Karras"), "dpmpp-2m-karras");
    EXPECT_EQ(pipeline::scheduler_for_a1111_sampler("DPM++ 2M Karras", ""), "dpmpp-2m-karras");
    EXPECT_EQ(pipeline::scheduler_for_a1111_sampler("Euler a", "Automatic"), "euler-a");
    EXPECT_EQ(pipeline::scheduler_for_a1111_sampler("UniPC", ""), "");
    // Fewer than three settings: the last line is prompt text.
    EXPECT_EQ(pipeline::parse_infotext("a fox\nSteps: 3").prompt, "a fox\nSteps: 3");
}

// Our own image, re-run: the same pixels; a flag overrides its field.
TEST(FromPng, ReRunsMultiloraImagesAndFlagsOverride) {
    const fs::path out = test::make_temp_dir("from-png");
    auto first = test::run_multilora(base(out) + " --prompt 'a (red) fox' --negative-prompt blurry --steps 3 --seed 11 "
                                     "--width 64 --height 48 --scheduler euler-a --guidance-scale 5 --prompt-syntax a1111 --name a");
    ASSERT_EQ(first.exit_code, 0) << first.output;
    auto again = test::run_multilora(base(out) + " --from-png " + (out / "a.png").string() + " --name b");
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(pixels(out / "b.png"), pixels(out / "a.png"));
    const auto m = nlohmann::json::parse(test::read_bytes(out / "b.json"));
    EXPECT_EQ(m["settings"]["prompt"], "a (red) fox");
    EXPECT_EQ(m["settings"]["prompt_syntax"], "a1111");
    EXPECT_EQ(m["settings"]["scheduler"], "euler-a");
    EXPECT_EQ(m["from_png"]["not_applied"].size(), 0u);
    auto other = test::run_multilora(base(out) + " --from-png " + (out / "a.png").string() + " --seed 12 --name c");
    ASSERT_EQ(other.exit_code, 0) << other.output;
    EXPECT_NE(pixels(out / "c.png"), pixels(out / "a.png"));
    const auto mc = nlohmann::json::parse(test::read_bytes(out / "c.json"));
    EXPECT_EQ(mc["settings"]["seed"], 12);
    EXPECT_EQ(mc["from_png"]["kept_flags"], nlohmann::json({"Seed (--seed)"}));
}

// An image A1111 wrote: its settings apply (Karras schedule, A1111 syntax), its Clip skip and Lora hashes are
// listed as not applied, in the log and the manifest.
TEST(FromPng, ReadsA1111ImagesAndListsWhatItCannotApply) {
    const fs::path out = test::make_temp_dir("from-a1111");
    const std::vector<uint8_t> rgb(8 * 8 * 3, 128);
    io::write_file_atomic((out / "a1111.png").string(), io::encode_png(rgb.data(), 8, 8, {{"parameters", kA1111}}));
    auto r = test::run_multilora(base(out) + " --from-png " + (out / "a1111.png").string() + " --name x");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("not applied"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Clip skip: 2"), std::string::npos) << r.output;
    const auto m = nlohmann::json::parse(test::read_bytes(out / "x.json"));
    EXPECT_EQ(m["settings"]["scheduler"], "dpmpp-2m-karras");
    EXPECT_EQ(m["settings"]["prompt_syntax"], "a1111");
    EXPECT_EQ(m["settings"]["width"], 64);
    EXPECT_EQ(m["settings"]["height"], 48);
    EXPECT_EQ(m["settings"]["seed"], 42);
    EXPECT_DOUBLE_EQ(m["settings"]["guidance_scale"].get<double>(), 6.5);
    EXPECT_EQ(m["from_png"]["not_applied"], nlohmann::json({"Clip skip: 2", "Lora hashes: style: abc, object: def"}));
    EXPECT_EQ(m["from_png"]["recorded"]["Model"], "tiny-sd15");
}
