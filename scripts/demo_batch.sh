#!/usr/bin/env bash
# The batch demo: builds, writes the tiny model and its LoRAs, runs configs/tiny-smoke.json (6 ComposLoRA-style
# sets x merge/switch/composite, 64x64) and prints where the comparison sheets and the gallery went.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
BIN=${BUILD_DIR:-build}/multilora
"$BIN" make-tiny --out models >/dev/null
"$BIN" batch configs/tiny-smoke.json --dry-run
"$BIN" batch configs/tiny-smoke.json
echo "gallery: $(pwd)/out/tiny-smoke/index.html"
echo "sheets:  $(pwd)/out/tiny-smoke/tiny/*_elements/sheet_*.png"
