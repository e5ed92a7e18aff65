#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, Release build, full test suite (ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --tests
python3 scripts/check_layers.py   # no include points up a layer (docs/architecture.md); seconds
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" --timeout 900
