// The embedded default: a seeded, randomly initialised SD1.5-architecture model small enough for CI and
// the demo, written in both layouts through the same writers real checkpoints are read with.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "multilora/models/model_configs.h"
#include "multilora/text/clip_config.h"

namespace multilora::bench {

struct TinyModelConfigs {
    models::UNetConfig unet;
    models::VaeConfig vae;
    text::ClipTextConfig text;
};

// UNet (32, 64, 64) with SD1.5's block pattern and two layers per block, cross-attention width 32;
// CLIP hidden 32 with 2 layers and the full 49,408-token vocabulary; a 4-level VAE (so 8x downscaling).
TinyModelConfigs tiny_configs();

struct TinyModelPaths {
    std::string single_file;  // DIR/tiny-sd15.safetensors (LDM layout)
    std::string folder;       // DIR/tiny-sd15 (diffusers layout)
    // DIR/loras/: three kohya files and one PEFT file, all with nonzero up weights:
    //  tiny-character (rank 4, alpha 2): UNet attention, ff and proj_in/out + text-encoder attention and MLP (fc1, fc2);
    //  tiny-style (rank 8, alpha 4): UNet attention + a 3x3 LoCon on down_blocks.0.resnets.0.conv1 + text encoder;
    //  tiny-object (rank 4, no alpha): UNet cross-attention and ff only;
    //  tiny-peft (PEFT names, rank 4): UNet self-attention + text-encoder attention.
    std::vector<std::string> loras;
    // DIR/loras/tiny_lora_info.json: the four LoRAs as a ComposLoRA-style lora_info file
    // ({category: [{id, name, trigger[], url}]}, ids = file stems) for `multilora batch`.
    std::string lora_info;
};

// Writes both layouts with weights drawn from a CPU generator seeded with `seed`.
TinyModelPaths make_tiny_model(const std::string& dir, uint64_t seed = 1234);

}  // namespace multilora::bench
