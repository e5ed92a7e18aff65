// Images of different composition methods in one generation (batch --batch-images, RunSession::run_images
// when its runs name several methods): each image keeps its own method, built on its own LoRAs, and every
// step runs the rows that all of them ask for (CompositionMethod::step_rows) in one UNet forward with
// per-row adapters; each image's method then forms its guided prediction from its own rows (combine).
#pragma once

#include <memory>
#include <vector>

#include "multilora/compose/method.h"

namespace multilora::lora {
class AdapterSet;
}

namespace multilora::pipeline {

// Several images' encoded prompts stacked as rows [n, T, D], truncated where any was. Throws RuntimeError
// when they encode to different lengths.
text::EncodedPrompts stack_image_prompts(const std::vector<text::EncodedPrompts>& each);

class MixedMethods final : public compose::CompositionMethod {
public:
    // images[b] is image b's method (a MethodInfo::mixes_sets one); `adapters` may be null when no image
    // composes a LoRA.
    MixedMethods(compose::ModelParts model, lora::AdapterSet* adapters,
                 std::vector<std::unique_ptr<compose::CompositionMethod>> images);

    // Not used: each image's prompt goes through its own method (encode_images).
    text::EncodedPrompts encode(const compose::PromptText& text) override;
    // Image b's text through image b's method (its LoRAs in the text encoder), stacked as rows [n, T, D].
    // Throws RuntimeError when the prompts encode to different lengths.
    text::EncodedPrompts encode_images(const std::vector<compose::PromptText>& texts);
    // Image b's rows are latents rows [b·m, (b+1)·m) of ctx (m = rows / images).
    at::Tensor predict(const compose::StepContext& ctx) override;
    // {"method": "mixed", "images": [each image's record]}.
    nlohmann::json record() const override;

    size_t images() const { return images_.size(); }
    const compose::CompositionMethod& image(size_t b) const { return *images_.at(b); }
    const text::EncodedPrompts& image_prompts(size_t b) const { return prompts_.at(b); }

private:
    compose::ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<std::unique_ptr<compose::CompositionMethod>> images_;
    std::vector<text::EncodedPrompts> prompts_;  // each image's, from encode_images
};

}  // namespace multilora::pipeline
