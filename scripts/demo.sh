#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, Release build, the tiny embedded model and its example
# LoRAs written, one plain image and one image per composition method generated. Prints where they went.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
BIN=${BUILD_DIR:-build}/multilora
"$BIN" make-tiny --out models >/dev/null
common=(--model models/tiny-sd15.safetensors --prompt "a watercolor fox in a snowy forest" --negative-prompt "blurry"
        --steps 20 --seed 42 --width 256 --height 256 --out out --overwrite)
"$BIN" generate "${common[@]}" --name demo >/dev/null
methods=(merge switch composite w-composite loratorio cmlora w-switch klora multlfg)
for method in "${methods[@]}"; do
  "$BIN" generate "${common[@]}" --name "demo-$method" --method "$method" \
    --lora models/loras/tiny-character.safetensors --triggers "tiny fox, red fur" \
    --lora models/loras/tiny-style.safetensors:0.8 --triggers "watercolor, soft edges" >/dev/null
done
# A weight schedule under Merge: the character fades out as the style comes in.
"$BIN" generate "${common[@]}" --name demo-schedule --method merge \
  --lora models/loras/tiny-character.safetensors:1@0,0.3@0.5 --lora models/loras/tiny-style.safetensors:0@0,1@1:linear >/dev/null
# The ComposLoRA-style batch over the tiny LoRAs (6 sets x 9 methods, comparison sheets and a gallery).
"$BIN" batch configs/tiny-smoke.json >/dev/null
echo "demo image: $(pwd)/out/demo.png (manifest: $(pwd)/out/demo.json)"
echo "with two LoRAs: $(for m in "${methods[@]}"; do printf '%s ' "$(pwd)/out/demo-$m.png"; done)"
echo "with a weight schedule: $(pwd)/out/demo-schedule.png"
echo "batch gallery: $(pwd)/out/tiny-smoke/index.html"
