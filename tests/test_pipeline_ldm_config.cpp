// LDM .yaml configs: a same-stem config (or --model-config) gives a single file the heads, noise schedule and
// VAE scale its weights do not record, so that it generates the same image as the diffusers folder whose JSON
// configs say the same.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/models/model_configs.h"
#include "multilora/pipeline/ldm_config.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;

namespace {

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(test::read_bytes(p)); }
void write_json(const fs::path& p, const nlohmann::json& j) { write(p, j.dump(2)); }

// The tiny folder with 2 heads per level, VAE scale 0.2 and beta_end 0.015 in its JSON configs, and the tiny
// single file without its UNet and VAE config metadata (so that only a .yaml can say so).
struct Variant {
    fs::path dir, folder, single;
};

const Variant& variant() {
    static const Variant v = [] {
        Variant r;
        r.dir = test::make_temp_dir("ldm-config");
        r.folder = r.dir / "folder";
        fs::copy(test::tiny_folder(), r.folder, fs::copy_options::recursive);
        auto unet = read_json(r.folder / "unet" / "config.json");
        unet["attention_head_dim"] = {2, 2, 2};
        write_json(r.folder / "unet" / "config.json", unet);
        auto vae = read_json(r.folder / "vae" / "config.json");
        vae["scaling_factor"] = 0.2;
        write_json(r.folder / "vae" / "config.json", vae);
        auto sched = read_json(r.folder / "scheduler" / "scheduler_config.json");
        sched["beta_end"] = 0.015;
        write_json(r.folder / "scheduler" / "scheduler_config.json", sched);
        auto src = io::SafetensorsFile::open(test::tiny_single_file());
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        for (const auto& name : src->names()) tensors.emplace_back(name, src->tensor(name));
        std::map<std::string, std::string> meta = src->metadata();
        meta.erase("multilora.unet_config");
        meta.erase("multilora.vae_config");
        fs::create_directories(r.dir / "single");
        r.single = r.dir / "single" / "variant.safetensors";
        io::save_safetensors(r.single.string(), tensors, meta);
        return r;
    }();
    return v;
}

const char* kYaml = R"(model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.015
    timesteps: 1000
    scale_factor: 0.2
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: 4
        model_channels: 32
        num_heads: 2
        transformer_depth: 1
        context_dim: 32
        use_checkpoint: True
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
)";

std::vector<uint8_t> generate(const std::string& model, const fs::path& out, const std::string& extra = "") {
    auto r = test::run_multilora("generate --threads 1 --no-progress --model " + model +
                                 " --prompt fox --steps 3 --width 64 --height 64 --seed 3 --overwrite --out " +
                                 out.string() + " --name img " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    int w = 0, h = 0;
    return io::decode_png_rgb(test::read_bytes(out / "img.png"), &w, &h);
}

}  // namespace

TEST(LdmConfig, SameStemYamlGivesTheFolderImage) {
    const Variant& v = variant();
    const auto folder = generate(v.folder.string(), v.dir / "out-folder");
    const auto bare = generate(v.single.string(), v.dir / "out-bare");  // SD1.x rules: 8 heads, 0.18215, beta_end 0.012
    EXPECT_NE(bare, folder);
    write(v.single.parent_path() / "variant.yaml", kYaml);
    const auto beside = generate(v.single.string(), v.dir / "out-beside");
    EXPECT_EQ(beside, folder);
    const auto manifest = nlohmann::json::parse(test::read_bytes(v.dir / "out-beside" / "img.json"));
    EXPECT_EQ(manifest["model"]["model_config"], (v.single.parent_path() / "variant.yaml").string());
    EXPECT_EQ(manifest["model"]["unet_config"]["attention_head_dim"], nlohmann::json({2, 2, 2}));  // diffusers' name for the head count
    fs::remove(v.single.parent_path() / "variant.yaml");
    write(v.dir / "elsewhere.yaml", kYaml);
    const auto flag = generate(v.single.string(), v.dir / "out-flag", "--model-config " + (v.dir / "elsewhere.yaml").string());
    EXPECT_EQ(flag, folder);
}

TEST(LdmConfig, ReadsTheFieldsAndChecksThemAgainstTheWeights) {
    const fs::path dir = test::make_temp_dir("ldm-yaml");
    write(dir / "a.yaml", std::string(kYaml) + "    parameterization: \"v\"\n");
    pipeline::LdmConfig c = pipeline::read_ldm_config((dir / "a.yaml").string());
    EXPECT_EQ(*c.num_heads, 2);
    EXPECT_EQ(c.parameterization, "v");
    EXPECT_DOUBLE_EQ(*c.linear_end, 0.015);
    models::UNetConfig unet;
    unet.block_out_channels = {32, 64, 64};
    unet.num_attention_heads = {8, 8, 8};
    unet.cross_attention_dim = 32;
    models::VaeConfig vae;
    nlohmann::json sched = {{"beta_end", 0.012}};
    pipeline::apply_ldm_config(c, unet, vae, sched);
    EXPECT_EQ(unet.num_attention_heads, (std::vector<int>{2, 2, 2}));
    EXPECT_EQ(sched["prediction_type"], "v_prediction");
    EXPECT_DOUBLE_EQ(vae.scaling_factor, 0.2);
    // SD2's rule: heads = width / num_head_channels.
    c.num_heads = -1;
    c.num_head_channels = 16;
    pipeline::apply_ldm_config(c, unet, vae, sched);
    EXPECT_EQ(unet.num_attention_heads, (std::vector<int>{2, 4, 4}));
    c.num_head_channels = 24;
    EXPECT_THROW(pipeline::apply_ldm_config(c, unet, vae, sched), RuntimeError);
    c.num_head_channels = 16;
    c.context_dim = 1024;
    EXPECT_THROW(pipeline::apply_ldm_config(c, unet, vae, sched), RuntimeError);
}
