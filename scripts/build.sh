#!/usr/bin/env bash
# Configures and builds multilora (Release) in ./build. Extra arguments go to CMake's configure step,
# e.g. scripts/build.sh -DTorch_DIR=/opt/libtorch/share/cmake/Torch for a CUDA libtorch.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
