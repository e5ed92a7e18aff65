// `multilora train-lora`: trains a LoRA on a captioned image folder against an SD1.x model, with the
// ε-prediction objective, AdamW, and a resumable checkpoint. The UNet's targeted layers get the factors;
// the VAE and the text encoder stay frozen (latents and caption states are computed once).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "multilora/train/learning_rate.h"
#include "multilora/train/trainable_lora.h"

namespace multilora::models {
class UNet2DConditionModelImpl;
}

namespace multilora::train {

struct TrainLoraOptions {
    std::string model;    // LDM single file or diffusers folder
    std::string data;     // image folder (train/image_folder.h)
    std::string trigger;  // put in front of every caption that lacks it ("" = captions as they are)
    std::string out;      // the .safetensors LoRA
    int64_t rank = 8;
    double alpha = 0;     // 0: alpha = rank
    int steps = 500;
    double lr = 1e-4;
    LrScheduler lr_scheduler = LrScheduler::Constant;
    double noise_offset = 0;  // kohya's --noise_offset (train/diffusion_objective.h); 0: off
    int batch_size = 1;
    LoraTargets targets = LoraTargets::Attn;
    uint64_t seed = 0;
    int checkpoint_every = 100;  // steps between checkpoints (OUT.checkpoint); 0: none
    bool resume = false;         // continue from OUT.checkpoint when it exists
    bool half = false;           // write float16 factors
};

struct TrainStatus {
    int step = 0;  // steps done
    int resumed_at = 0;  // steps a resumed run found done
    int total = 0;
    double loss = 0;        // this step's
    double loss_mean = 0;   // of the last up-to-50 steps
    double step_seconds = 0;
};

struct TrainLoraResult {
    std::string path;
    std::vector<double> losses;  // one per step, from step 1 (resumed steps included, as checkpointed)
    size_t layers = 0;
    int resumed_at = 0;  // the checkpoint's step, 0 for a fresh run
    int images = 0;
};

// Examples already encoded: each image's latents ([1, 4, h, w], scaled) and its caption's hidden states.
struct EncodedExamples {
    std::vector<at::Tensor> latents, contexts;
};

// The checkpoint path for an output: OUT.checkpoint.
std::string checkpoint_path(const std::string& out);

// Throws UsageError for bad options or data, RuntimeError for unreadable models; on success the checkpoint
// is removed and only OUT remains. `on_step` runs after every step.
TrainLoraResult train_lora(const TrainLoraOptions& options, const std::function<void(const TrainStatus&)>& on_step);

// The training loop itself, on a loaded UNet and encoded examples (options.model and options.data unused):
// what train_lora runs after loading, and what make-world runs on rendered concepts.
TrainLoraResult train_lora_on(models::UNet2DConditionModelImpl& unet, const at::Tensor& alphas_cumprod,
                              const EncodedExamples& examples, const TrainLoraOptions& options,
                              const std::function<void(const TrainStatus&)>& on_step);

}  // namespace multilora::train
