#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, Release build, the tiny embedded model written,
# and one image generated with it. Prints where the image went.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
BIN=${BUILD_DIR:-build}/multilora
"$BIN" make-tiny --out models >/dev/null
"$BIN" generate --model models/tiny-sd15.safetensors \
  --prompt "a watercolor fox in a snowy forest" --negative-prompt "blurry" \
  --steps 20 --seed 42 --width 256 --height 256 --out out --name demo --overwrite >/dev/null
echo "demo image: $(pwd)/out/demo.png (manifest: $(pwd)/out/demo.json)"
