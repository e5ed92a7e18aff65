#!/usr/bin/env bash
# Configures and builds multilora. Extra arguments go to CMake's configure step.
#   scripts/build.sh                          # Release, in ./build (BUILD_DIR)
#   scripts/build.sh -DTorch_DIR=/opt/libtorch/share/cmake/Torch     # against a CUDA libtorch
#   scripts/build.sh --sanitize               # clang, ASan + UBSan + libFuzzer coverage, in ./build-san (SAN_BUILD_DIR)
#   scripts/build.sh --sanitize --target fuzz_tokenizer              # only what those targets need
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0 targets=()
while (($#)); do
  case "$1" in
    --sanitize) sanitize=1; shift ;;
    --target) targets+=(--target "$2"); shift 2 ;;
    *) break ;;
  esac
done
if ((sanitize)); then
  dir=${SAN_BUILD_DIR:-build-san}
  settings=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMULTILORA_SANITIZE=ON)
  export CC=clang CXX=clang++
else
  dir=${BUILD_DIR:-build}
  settings=(-DCMAKE_BUILD_TYPE=Release)
fi
# A new build folder compiles each library's files in batches of up to 8 (CMake's unity build): a translation
# unit that includes <torch/torch.h> pays ~10 s for the templates GCC instantiates at its end, and batching cut
# a fresh Release build on 2 cores from 31 to about 15 min (AMD EPYC host). An existing folder keeps its setting; for
# editing, where one file should rebuild alone, configure it with -DCMAKE_UNITY_BUILD=OFF.
[ -f "$dir/CMakeCache.txt" ] || settings+=(-DCMAKE_UNITY_BUILD=ON)
cmake -S . -B "$dir" "${settings[@]}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
