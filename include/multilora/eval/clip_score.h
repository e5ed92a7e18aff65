// CLIPScore (Hessel et al. 2021, as torchmetrics computes it): 100 · max(cos(image embedding, text
// embedding), 0), with CLIP ViT-L/14 (openai/clip-vit-large-patch14) or any CLIP in transformers' layout.
//
// Weights: a folder holding config.json (optional), preprocessor_config.json (optional), tokenizer files
// (vocab.json + merges.txt, optional: else CLIP's built-in vocabulary) and model.safetensors (or several
// *.safetensors), or one .safetensors file. Tensor names as transformers' CLIPModel:
//   vision_model.embeddings.{patch_embedding.weight, class_embedding, position_embedding.weight},
//   vision_model.pre_layrnorm, vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1,
//   mlp.fc1, mlp.fc2, layer_norm2}, vision_model.post_layernorm, visual_projection.weight,
//   text_model.* (as multilora's CLIP text encoder), text_projection.weight.
// Sizes come from the tensors' shapes; heads, activation, epsilon and image size from config.json's
// text_config / vision_config when present (else hidden/64 heads, quick_gelu, 1e-5, and the image size
// implied by the position embeddings).
//
// Image embedding: patches (conv, no bias) + class token + positions -> pre_layrnorm -> encoder (the text
// encoder's ClipEncoderLayer, unmasked) -> post_layernorm of the class token -> visual_projection.
// Text embedding: the 77-token ids (truncated with eos kept, as transformers' tokenizer with truncation)
// -> CLIP text model -> hidden state at the first position of the highest id (eos, 49407), as transformers'
// CLIPTextTransformer pools -> text_projection.
// Note: torchmetrics tokenizes without truncation and then cuts the ids at 77, which drops eos from
// prompts longer than 75 tokens; multilora keeps eos, so scores of such prompts differ from torchmetrics'.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "multilora/eval/image_preprocess.h"
#include "multilora/models/model_configs.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_vision_model.h"

namespace multilora::text {
class ClipTokenizer;
}

namespace multilora::eval {

using text::ClipTextProjection;
using text::ClipVisionConfig;
using text::ClipVisionModel;

class ClipScorer {
public:
    // Throws RuntimeError naming the path when the weights are missing, pickled, or do not fit.
    static std::unique_ptr<ClipScorer> load(const std::string& path);

    // [B, 3, H, W] preprocessed images -> [B, D] image embeddings.
    at::Tensor embed_images(const at::Tensor& pixel_values);
    // Texts -> [B, D] text embeddings.
    at::Tensor embed_texts(const std::vector<std::string>& texts);
    // 100 · max(cos, 0) for each (image, text) pair; images are 8-bit RGB decoded from files (PNG, JPEG),
    // processed `batch` at a time.
    std::vector<double> score_files(const std::vector<std::string>& image_paths, const std::vector<std::string>& texts,
                                    int batch = 8);
    double score_rgb(const uint8_t* rgb, int width, int height, const std::string& text);

    const ClipPreprocessConfig& preprocess_config() const { return pre_; }
    const ClipVisionConfig& vision_config() const { return vision_cfg_; }
    const text::ClipTextConfig& text_config() const { return text_cfg_; }
    // "path (weights N bytes)" for manifests and resume keys.
    const std::string& identity() const { return identity_; }

private:
    ClipScorer() = default;
    ClipVisionConfig vision_cfg_;
    text::ClipTextConfig text_cfg_;
    ClipPreprocessConfig pre_;
    ClipVisionModel vision_{nullptr};
    text::ClipTextModel text_{nullptr};
    ClipTextProjection text_proj_{nullptr};
    std::shared_ptr<const text::ClipTokenizer> tokenizer_;
    std::vector<std::shared_ptr<void>> keep_alive_;  // the mapped weight files
    std::string identity_;
};

}  // namespace multilora::eval
