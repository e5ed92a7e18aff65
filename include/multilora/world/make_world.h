// `multilora make-world`: the trained world, built from a seed. Renders its scenes, trains the VAE, the
// UNet (the text encoder stays at its seeded weights) and one LoRA per concept, and writes:
//   OUT/world-sd15.safetensors   the model (LDM single file, float16, configs in the metadata)
//   OUT/loras/<id>.safetensors   one kohya LoRA per concept (ids as in ComposLoRA: character_1, ...)
//   OUT/world_lora_info.json     ComposLoRA's {category: [{id, name, trigger[], url}]} file
//   OUT/training.json            per-phase settings, losses and seconds
// While it runs, OUT/make-world.progress.json and OUT/make-world.vae.safetensors record the finished phases
// for MakeWorldOptions::resume; a finished build removes them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/world/world_training.h"

namespace multilora::world {

struct MakeWorldOptions {
    std::string out = "models/world";
    uint64_t seed = 7;
    bool quick = false;  // a smoke build: every phase runs a few steps on little data (about a minute)
    // Continue an interrupted build in `out`: the phases it finished (VAE, UNet, decoder, each LoRA) are kept
    // and the rest runs, to the same files as an uninterrupted build. With nothing recorded, a fresh build; with
    // a finished one (same seed and --quick), that world as it is. Without it, a recorded build is refused.
    bool resume = false;
};

struct WorldPlan {
    VaeTraining vae;
    // On the shipped model, 4000 steps took the mean squared reconstruction error of 64 held-out multi-element
    // scenes from 0.117 to 0.027 (3000: 0.030; the VAE phase sees at most one concept per scene, and its loss
    // still fell when it stopped).
    DecoderTraining decoder;
    UnetTraining unet;
    // Chosen by the detector's verdicts on the shipped model (one LoRA each, 40 unseen seeds): 250 steps at lr
    // 1e-3 on 64 scenes found glint key in 65%, blip hat 48%, pastelle 62%; 500 steps at 3e-3 on 256 scenes
    // 87%, 65%, 82%; 1000 steps blip hat 80%. lr 5e-3 (rank 16) diverged.
    int lora_steps = 1000, lora_batch = 8, lora_images = 256, lora_rank = 8;
    double lora_lr = 3e-3;
    // Steps between the VAE, UNet and decoder phases' checkpoints (for --resume; ~45 s of the UNet phase).
    int checkpoint_every = 200;
};
WorldPlan world_plan(const MakeWorldOptions& options);

struct MakeWorldResult {
    std::string model, lora_info, training_json;
    std::vector<std::string> loras;
    std::map<std::string, std::vector<double>> losses;  // by phase: "vae", "decoder", "unet", concept ids
    std::map<std::string, double> seconds;              // by phase
};

MakeWorldResult make_world(const MakeWorldOptions& options, const PhaseCallback& on_step);

// The result of an earlier make_world in `options.out`, read back from its files and training.json (for
// rebuilding the evidence without training). Throws UsageError when the world is incomplete.
MakeWorldResult read_world(const MakeWorldOptions& options);

// Every LoRA trained again, with world_plan(options)'s settings, on the model of an earlier make_world (`result`,
// from read_world) as shipped: its float16 weights read through the ordinary loader, as a user's train-lora
// would. Updates result's LoRA losses and seconds and rewrites training.json; the model is not touched.
void retrain_loras(const MakeWorldOptions& options, MakeWorldResult& result, const PhaseCallback& on_step);

// The VAE's decoder trained further (world_plan(options).decoder) on the model of an earlier make_world as
// shipped, then the model file rewritten: only the decoder's and post_quant_conv's tensors change, so the
// LoRAs stay valid (the detector, which learns on VAE round trips, should be trained again). Updates result's
// "decoder" losses and seconds and rewrites training.json.
void refine_decoder(const MakeWorldOptions& options, MakeWorldResult& result, const PhaseCallback& on_step);

// OUT/README.md: what each concept looks like, the training settings, the seed, the build time, the pictures
// (evidence.h) and the SHA-256 of every file make-world wrote.
// `sections` are extra markdown sections (the detector's accuracy, the LoRA check), placed before the files.
void write_world_readme(const MakeWorldOptions& options, const MakeWorldResult& result, const std::vector<std::string>& pictures,
                        const std::string& sections = "", const std::vector<std::string>& other_files = {});

// The world's lora_info (ComposLoRA's format) as JSON.
nlohmann::json world_lora_info();

}  // namespace multilora::world
