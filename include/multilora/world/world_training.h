// Training the world's model parts from rendered scenes: the VAE (reconstruction + KL) and the UNet
// (ε-prediction with caption dropout for classifier-free guidance). Each step renders or picks its batch
// from a generator seeded by the step, so a run is the same on every machine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/bench/tiny_model.h"
#include "multilora/world/scene.h"

namespace multilora::models {
class AutoencoderKLImpl;
class UNet2DConditionModelImpl;
}  // namespace multilora::models

namespace multilora::world {

// The world's SD1.5-architecture sizes: kImageSize (64) images, 8x8x4 latents; UNet (64, 128, 128) with one
// layer per block; VAE (32, 64, 64, 64); CLIP hidden 64, 2 layers, the full vocabulary.
bench::TinyModelConfigs world_configs();

struct PhaseStatus {
    std::string phase;  // "vae", "unet", a concept id
    int step = 0, total = 0;
    double loss = 0, step_seconds = 0;
};
using PhaseCallback = std::function<void(const PhaseStatus&)>;

// Where a training phase keeps its resumable state (train::TrainingCheckpoint: the module's parameters, AdamW's
// state, the losses), written every `every` steps and removed when the phase ends. A phase that finds the
// file continues from it, to the same weights as an uninterrupted run. No path: no checkpoint.
struct PhaseCheckpoint {
    std::string path, fingerprint;
    int every = 0;
};

// What a training phase gives back: its per-step losses and the seconds it ran (with the runs before a
// resume from its checkpoint).
struct PhaseResult {
    std::vector<double> losses;
    double seconds = 0;
};

// Scenes as a [n, 3, size, size] tensor in [-1, 1], scene i sampled from seeds[i] with `choice`.
at::Tensor render_batch(const std::vector<uint64_t>& seeds, const ConceptChoice& choice, int size = kImageSize);

struct VaeTraining {
    int steps = 1000, batch = 8;
    double lr = 1e-3, kl_weight = 1e-6;
    uint64_t seed = 1;
};
// Trains the VAE on fresh generic and concept scenes. Afterwards sets the
// VAE config's scaling_factor to 1 / std of the latents of 64 scenes (as SD's 0.18215 was chosen).
PhaseResult train_vae(models::AutoencoderKLImpl& vae, const VaeTraining& t, const PhaseCallback& on_step,
                      const PhaseCheckpoint& checkpoint = {});

// The decoder trained further with the encoder frozen, as Stability's sd-vae-ft-mse was: the latents, and so
// the UNet and the LoRAs trained on them, stay as they are, while the pictures sharpen. Scenes with every
// category drawn independently (independent_choice), since compositions show several elements at once.
struct DecoderTraining {
    int steps = 4000, batch = 8;
    double lr = 1e-3;  // a tenth of it for the last quarter
    uint64_t seed = 3;
};
// Trains the decoder and post_quant_conv by the MSE of decode(encode_mean(x)) to x; the encoder, quant_conv
// and the scaling factor are not touched.
PhaseResult refine_vae_decoder(models::AutoencoderKLImpl& vae, const DecoderTraining& t, const PhaseCallback& on_step,
                               const PhaseCheckpoint& checkpoint = {});

struct UnetTraining {
    int steps = 4000, batch = 32, dataset = 8192;
    double lr = 4e-4, caption_dropout = 0.1;
    // The model written is an exponential moving average of the weights (diffusers' EMAModel: the decay is
    // min(ema_decay, (1 + step) / (10 + step))); 0: the last step's weights.
    double ema_decay = 0;
    uint64_t seed = 2;
};
// Trains the UNet on `dataset` base scenes (generic content and captions), encoded once by `vae` and
// the frozen text encoder (`encode` maps a caption to its hidden states). With t.ema_decay, `unet` ends
// holding the average (checkpoints keep it, so a resumed phase ends with the same one).
PhaseResult train_unet(models::UNet2DConditionModelImpl& unet, models::AutoencoderKLImpl& vae,
                       const std::function<at::Tensor(const std::string&)>& encode,
                       const at::Tensor& alphas_cumprod, const UnetTraining& t, const PhaseCallback& on_step,
                       const PhaseCheckpoint& checkpoint = {});

}  // namespace multilora::world
