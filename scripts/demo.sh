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
for method in merge switch composite; do
  "$BIN" generate "${common[@]}" --name "demo-$method" --method "$method" \
    --lora models/loras/tiny-character.safetensors --lora models/loras/tiny-style.safetensors:0.8 >/dev/null
done
# The ComposLoRA-style batch over the tiny LoRAs (6 sets x 3 methods, comparison sheets and a gallery).
"$BIN" batch configs/tiny-smoke.json >/dev/null
echo "demo image: $(pwd)/out/demo.png (manifest: $(pwd)/out/demo.json)"
echo "with two LoRAs: $(pwd)/out/demo-merge.png, $(pwd)/out/demo-switch.png, $(pwd)/out/demo-composite.png"
echo "batch gallery: $(pwd)/out/tiny-smoke/index.html"
