// Tiled VAE decoding (`--vae-tile`): diffusers' tiled_decode (AutoencoderKL.enable_tiling, v0.26.3
// autoencoder_kl.py): latent tiles of tile/8 overlapping by a quarter, each decoded alone; a tile's first
// `blend` = tile/4 pixel rows fade in from the tile above, b[y] = a[T - blend + y] * (1 - y/blend) + b[y] * y/blend,
// then every tile is cut to its first T - blend rows and columns.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "multilora/models/vae.h"
#include "multilora/pipeline/model_loader.h"
#include "test_support.h"

using multilora::test::run_multilora;

namespace {

multilora::pipeline::StableDiffusionModel& tiny() {
    static auto model = multilora::pipeline::load_stable_diffusion({multilora::test::tiny_single_file(), "", "fp32", "cpu"});
    return model;
}

at::Tensor latents(int64_t h, int64_t w) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
    return at::randn({1, 4, h, w}, gen);
}

}  // namespace

TEST(VaeTiling, LatentsThatFitOneTileDecodeWhole) {
    c10::InferenceMode im;
    auto& vae = *tiny().vae;
    const at::Tensor z = latents(12, 6);
    EXPECT_TRUE(at::equal(vae.decode_tiled(z, 96), vae.decode(z)));
}

TEST(VaeTiling, OneSeamFollowsDiffusersBlendFormula) {
    c10::InferenceMode im;
    auto& vae = *tiny().vae;
    // 12 x 6 latents, 64-pixel tiles: latent tiles of 8 rows at stride 6 (rows 0-7 and 6-11), one column;
    // blend 16 pixels, keep 48.
    const at::Tensor z = latents(12, 6);
    const at::Tensor out = vae.decode_tiled(z, 64);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 3, 96, 48}));
    const at::Tensor top = vae.decode(z.narrow(2, 0, 8)), bottom = vae.decode(z.narrow(2, 6, 6));
    ASSERT_EQ(top.size(2), 64);
    ASSERT_EQ(bottom.size(2), 48);
    // Rows 0-47: the top tile as decoded alone.
    EXPECT_TRUE(at::equal(out.narrow(2, 0, 48), top.narrow(2, 0, 48)));
    // Rows 48-63: the seam, row by row from the formula; rows 64-95: the bottom tile alone.
    for (int64_t y = 0; y < 16; ++y) {
        const double w = y / 16.0;
        const at::Tensor want = top.select(2, 48 + y) * (1 - w) + bottom.select(2, y) * w;
        EXPECT_TRUE(at::allclose(out.select(2, 48 + y), want, 0, 1e-6)) << "seam row " << y;
    }
    EXPECT_TRUE(at::equal(out.narrow(2, 64, 32), bottom.narrow(2, 16, 32)));
    // At the seam's first row the image is still the top tile's; the tiled image differs from the whole
    // decode (each tile sees only its own latents).
    EXPECT_TRUE(at::equal(out.select(2, 48), top.select(2, 48)));
    EXPECT_FALSE(at::equal(out, vae.decode(z)));
}

TEST(VaeTiling, GenerateRecordsTheTileAndChangesOnlyTheDecode) {
    auto dir = multilora::test::make_temp_dir("vae-tile");
    const std::string common = "generate --model " + multilora::test::tiny_single_file() +
                               " --prompt fox --steps 2 --width 96 --height 64 --seed 3 --save-latents --out " + dir.string();
    auto whole = run_multilora(common + " --name whole");
    auto tiled = run_multilora(common + " --name tiled --vae-tile 64");
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
    ASSERT_EQ(tiled.exit_code, 0) << tiled.output;
    auto manifest = nlohmann::json::parse(multilora::test::read_bytes(dir / "tiled.json"));
    EXPECT_EQ(manifest["settings"]["vae_tile"], 64);
    // Same latents, different pixels.
    EXPECT_EQ(multilora::test::read_bytes(dir / "whole.latents.safetensors"),
              multilora::test::read_bytes(dir / "tiled.latents.safetensors"));
    EXPECT_NE(multilora::test::read_bytes(dir / "whole.png"), multilora::test::read_bytes(dir / "tiled.png"));
}
