// LDM single-file keys <-> diffusers names, over the full SD1.5 module tree (no weights needed).
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <set>

#include "multilora/models/ldm_key_map.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/bench/tiny_model.h"
#include "multilora/text/clip_text_model.h"

using namespace multilora::models;

namespace {

template <typename M>
std::vector<std::pair<std::string, at::Tensor>> params_of(M& module) {
    return named_tensors(*module);
}

int64_t total_numel(const std::vector<std::pair<std::string, at::Tensor>>& ps) {
    int64_t n = 0;
    for (const auto& [k, t] : ps) n += t.numel();
    return n;
}

struct Sd15 {
    UNet2DConditionModel unet{UNetConfig::v1_5()};
    AutoencoderKL vae{VaeConfig::v1_5()};
    multilora::text::ClipTextModel text{multilora::text::ClipTextConfig::v1_5()};
};

Sd15& sd15() {
    static Sd15* m = new Sd15();
    return *m;
}

}  // namespace

// Key and parameter counts of SD1.5's published checkpoints: diffusers' unet/ holds 686 tensors
// (859,520,964 parameters), vae/ 248 (83,653,863), text_encoder/ 196 besides position_ids (123,060,480).
TEST(Sd15ModuleTree, KeyAndParameterCountsMatchPublishedCheckpoint) {
    auto unet = params_of(sd15().unet);
    auto vae = params_of(sd15().vae);
    auto text = params_of(sd15().text);
    EXPECT_EQ(unet.size(), 686u);
    EXPECT_EQ(vae.size(), 248u);
    EXPECT_EQ(text.size(), 196u);
    EXPECT_EQ(total_numel(unet), 859520964);
    EXPECT_EQ(total_numel(vae), 83653863);
    EXPECT_EQ(total_numel(text), 123060480);
}

TEST(Sd15ModuleTree, ParameterNamesAreDiffusers) {
    std::set<std::string> names;
    for (const auto& [k, t] : params_of(sd15().unet)) names.insert(k);
    for (const char* k : {"conv_in.weight", "time_embedding.linear_1.weight",
                          "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
                          "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias",
                          "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                          "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight",
                          "down_blocks.1.resnets.0.conv_shortcut.weight", "down_blocks.2.downsamplers.0.conv.weight",
                          "mid_block.attentions.0.proj_in.weight", "up_blocks.3.attentions.2.proj_out.bias",
                          "up_blocks.0.upsamplers.0.conv.weight", "conv_norm_out.weight"})
        EXPECT_TRUE(names.count(k)) << k;
    auto shapes = params_of(sd15().unet);
    for (const auto& [k, t] : shapes) {
        if (k == "conv_in.weight") EXPECT_EQ(t.sizes(), at::IntArrayRef({320, 4, 3, 3}));
        if (k == "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight")
            EXPECT_EQ(t.sizes(), at::IntArrayRef({640, 768}));
        if (k == "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight")
            EXPECT_EQ(t.sizes(), at::IntArrayRef({2560, 320}));
    }
}

// Pairs read off the real v1-5-pruned-emaonly.safetensors key list.
TEST(LdmKeyMap, KnownSd15Pairs) {
    const UNetConfig u = UNetConfig::v1_5();
    const VaeConfig v = VaeConfig::v1_5();
    const std::vector<std::pair<std::string, std::string>> unet_pairs{
        {"model.diffusion_model.input_blocks.0.0.weight", "conv_in.weight"},
        {"model.diffusion_model.time_embed.2.bias", "time_embedding.linear_2.bias"},
        {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
         "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"},
        {"model.diffusion_model.input_blocks.2.0.in_layers.2.weight", "down_blocks.0.resnets.1.conv1.weight"},
        {"model.diffusion_model.input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
        {"model.diffusion_model.input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"},
        {"model.diffusion_model.input_blocks.11.0.emb_layers.1.weight", "down_blocks.3.resnets.1.time_emb_proj.weight"},
        {"model.diffusion_model.middle_block.1.proj_out.weight", "mid_block.attentions.0.proj_out.weight"},
        {"model.diffusion_model.middle_block.2.out_layers.3.bias", "mid_block.resnets.1.conv2.bias"},
        {"model.diffusion_model.output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
        {"model.diffusion_model.output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"},
        {"model.diffusion_model.output_blocks.8.2.conv.weight", "up_blocks.2.upsamplers.0.conv.weight"},
        {"model.diffusion_model.output_blocks.11.1.norm.weight", "up_blocks.3.attentions.2.norm.weight"},
        {"model.diffusion_model.out.0.weight", "conv_norm_out.weight"},
        {"model.diffusion_model.out.2.bias", "conv_out.bias"},
    };
    for (const auto& [ldm, diff] : unet_pairs) {
        EXPECT_EQ(unet_key_from_ldm(ldm, u), diff) << ldm;
        EXPECT_EQ(unet_key_to_ldm(diff, u), ldm) << diff;
    }
    const std::vector<std::pair<std::string, std::string>> vae_pairs{
        {"first_stage_model.decoder.up.3.block.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"},
        {"first_stage_model.decoder.up.0.block.2.nin_shortcut.weight", "decoder.up_blocks.3.resnets.2.conv_shortcut.weight"},
        {"first_stage_model.decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight"},
        {"first_stage_model.encoder.down.0.downsample.conv.weight", "encoder.down_blocks.0.downsamplers.0.conv.weight"},
        {"first_stage_model.decoder.mid.attn_1.q.weight", "decoder.mid_block.attentions.0.to_q.weight"},
        {"first_stage_model.decoder.mid.attn_1.proj_out.bias", "decoder.mid_block.attentions.0.to_out.0.bias"},
        {"first_stage_model.encoder.mid.attn_1.norm.weight", "encoder.mid_block.attentions.0.group_norm.weight"},
        {"first_stage_model.decoder.mid.block_2.norm2.bias", "decoder.mid_block.resnets.1.norm2.bias"},
        {"first_stage_model.encoder.norm_out.weight", "encoder.conv_norm_out.weight"},
        {"first_stage_model.post_quant_conv.weight", "post_quant_conv.weight"},
    };
    for (const auto& [ldm, diff] : vae_pairs) {
        EXPECT_EQ(vae_key_from_ldm(ldm, v), diff) << ldm;
        EXPECT_EQ(vae_key_to_ldm(diff, v), ldm) << diff;
    }
    EXPECT_EQ(text_key_from_ldm("cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight"),
              "text_model.encoder.layers.3.mlp.fc1.weight");
    // Older files omit "text_model." under the transformer.
    EXPECT_EQ(text_key_from_ldm("cond_stage_model.transformer.final_layer_norm.bias"), "text_model.final_layer_norm.bias");
    EXPECT_EQ(unet_key_from_ldm("model.diffusion_model.nonsense.0.weight", u), "");
}

// Every diffusers name maps to a distinct LDM key and back, for SD1.5 and the tiny model (whose
// three levels and mixed block types exercise the index arithmetic differently).
TEST(LdmKeyMap, RoundTripsWholeModules) {
    auto check = [](const UNetConfig& uc, const VaeConfig& vc, auto& unet, auto& vae, auto& text) -> size_t {
        std::set<std::string> seen;
        size_t count = 0;
        for (const auto& [k, t] : params_of(unet)) {
            std::string ldm = unet_key_to_ldm(k, uc);
            EXPECT_FALSE(ldm.empty()) << k;
            EXPECT_EQ(unet_key_from_ldm(ldm, uc), k);
            seen.insert(ldm);
            ++count;
        }
        for (const auto& [k, t] : params_of(vae)) {
            std::string ldm = vae_key_to_ldm(k, vc);
            EXPECT_FALSE(ldm.empty()) << k;
            EXPECT_EQ(vae_key_from_ldm(ldm, vc), k);
            seen.insert(ldm);
            ++count;
        }
        for (const auto& [k, t] : params_of(text)) {
            std::string ldm = text_key_to_ldm(k);
            EXPECT_EQ(text_key_from_ldm(ldm), k);
            seen.insert(ldm);
            ++count;
        }
        EXPECT_EQ(seen.size(), count);
        return count;
    };
    EXPECT_EQ(check(UNetConfig::v1_5(), VaeConfig::v1_5(), sd15().unet, sd15().vae, sd15().text), 686u + 248u + 196u);

    auto tiny = multilora::bench::tiny_configs();
    UNet2DConditionModel unet(tiny.unet);
    AutoencoderKL vae(tiny.vae);
    multilora::text::ClipTextModel text(tiny.text);
    check(tiny.unet, tiny.vae, unet, vae, text);
}

TEST(ModelConfigs, DetectFromWeightsRecoversSd15) {
    ShapeMap unet_shapes, vae_shapes, text_shapes;
    for (const auto& [k, t] : params_of(sd15().unet)) unet_shapes[k] = t.sizes().vec();
    for (const auto& [k, t] : params_of(sd15().vae)) vae_shapes[k] = t.sizes().vec();
    for (const auto& [k, t] : params_of(sd15().text)) text_shapes[k] = t.sizes().vec();
    EXPECT_EQ(UNetConfig::detect_from_weights(unet_shapes).to_json(), UNetConfig::v1_5().to_json());
    EXPECT_EQ(VaeConfig::detect_from_weights(vae_shapes).to_json(), VaeConfig::v1_5().to_json());
    EXPECT_EQ(multilora::text::ClipTextConfig::detect_from_weights(text_shapes).to_json(), multilora::text::ClipTextConfig::v1_5().to_json());
}
