// Models and LoRAs by name, offline: a Hugging Face hub name ("runwayml/stable-diffusion-v1-5") resolves to its
// snapshot in the local hub cache, as huggingface_hub lays it out; a LoRA name to NAME.safetensors in the LoRA
// folders. Nothing is downloaded.
#pragma once

#include <string>
#include <vector>

namespace multilora::pipeline {

// The hub cache folders huggingface_hub would use, in its order: $HF_HUB_CACHE, $HF_HOME/hub,
// $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub (those whose variables are set, each once).
std::vector<std::string> hub_cache_dirs();

// A --model or --vae argument: the path when it exists; else a hub name ORG/NAME[@REVISION] as the snapshot folder
// CACHE/models--ORG--NAME/snapshots/COMMIT of the first cache that has it, COMMIT read from refs/REVISION
// (default main) or REVISION itself when it is a snapshot. Throws RuntimeError that names every place it looked.
std::string resolve_model_reference(const std::string& ref, const std::string& what = "model");

// A --lora file: the path when it exists; else a bare NAME (no '/') as NAME.safetensors (or NAME when it has that
// extension) in each of `dirs`, then in each folder of $MULTILORA_LORA_DIR (':'-separated). Throws RuntimeError
// that names the folders.
std::string resolve_lora_reference(const std::string& ref, const std::vector<std::string>& dirs);

}  // namespace multilora::pipeline
