#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, Release build, then pictures from the trained world that
# ships in models/world/ (docs/world.md): a creature from the base model, zorp holding a glint key under every
# composition method, a weight schedule, and the ComposLoRA-style batch over four of the world's LoRAs with
# its comparison sheets, gallery and offline score (evaluate --scorer world). Prints where they went. About two minutes after the build on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
BIN=${BUILD_DIR:-build}/multilora
W=models/world
common=(--model "$W/world-sd15.safetensors" --steps 30 --guidance-scale 5 --seed 42 --width 64 --height 64
        --lora-scale 1 --out out --overwrite)
"$BIN" generate "${common[@]}" --prompt "a round creature with a ball on a striped background" --name demo >/dev/null
methods=(merge switch composite w-composite loratorio cmlora w-switch klora multlfg)
for method in "${methods[@]}"; do
  "$BIN" generate "${common[@]}" --prompt "zorp with a glint key on a striped background" --name "demo-$method" \
    --method "$method" --lora "$W/loras/character_1.safetensors" --triggers "zorp" \
    --lora "$W/loras/object_1.safetensors" --triggers "glint key" >/dev/null
done
# A weight schedule under Merge: the brick wall comes in over the second half of the steps.
"$BIN" generate "${common[@]}" --prompt "zorp on a brixel wall" --name demo-schedule --method merge \
  --lora "$W/loras/character_1.safetensors" --lora "$W/loras/background_1.safetensors:0@0,0@0.5,1@1:linear" >/dev/null
# A1111's prompt syntax: emphasis, and the LoRAs named by <lora:NAME:W> tags (looked up in --lora-dir); the
# PNG's parameters keep the tags, so A1111 reads the image back with the same LoRAs.
"$BIN" generate "${common[@]}" --prompt-syntax a1111 --lora-dir "$W/loras" --name demo-a1111 \
  --prompt "(zorp:1.2) with a glint key on a striped background <lora:character_1:1> <lora:object_1:1>" >/dev/null
# The ComposLoRA-style batch over four of the world's LoRAs (6 sets x 9 methods, comparison sheets and a gallery).
"$BIN" batch configs/world-smoke.json >/dev/null
# Which of the world's concepts the element detector finds in each picture.
"$BIN" detect --world "$W" out/demo.png out/demo-*.png > out/demo-detected.jsonl
# The batch scored by the detector: recall, success, leakage and in-world per method and k (seconds).
"$BIN" evaluate --run out/world-smoke --scorer world --no-progress 2>/dev/null
echo "demo image: $(pwd)/out/demo.png (manifest: $(pwd)/out/demo.json)"
echo "zorp with a glint key: $(for m in "${methods[@]}"; do printf '%s ' "$(pwd)/out/demo-$m.png"; done)"
echo "with a weight schedule: $(pwd)/out/demo-schedule.png"
echo "A1111 prompt syntax and <lora:...> tags: $(pwd)/out/demo-a1111.png"
echo "what the detector found: $(pwd)/out/demo-detected.jsonl"
echo "batch gallery: $(pwd)/out/world-smoke/index.html"
echo "the batch scored offline: $(pwd)/out/world-smoke/eval/report.html (summary.md, world_recall.png)"
