#!/usr/bin/env bash
# Installs multilora's build and runtime dependencies from Debian 12 packages (needs root or sudo);
# --tests adds the test suite's (chromium); --sanitize adds clang, its sanitizer and libFuzzer runtimes and
# llvm-symbolizer (scripts/test.sh --sanitize, scripts/fuzz.sh). Both may be given.
# OpenBLAS is required: without it Debian's libtorch runs matrix products on the reference BLAS
# (measured 5.5 GFLOP/s fp32, against 133 GFLOP/s with libopenblas0-openmp).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config python3
  libtorch-dev libopenblas0-openmp zlib1g-dev
  libcli11-dev nlohmann-json3-dev libspdlog-dev libstb-dev libgtest-dev libcurl4-openssl-dev libyaml-cpp-dev
)
# --tests: what the test suite needs besides: headless Chromium opens the pages multilora writes.
for arg in "$@"; do
  case "$arg" in
    --tests) PACKAGES+=(chromium) ;;
    --sanitize) PACKAGES+=(clang libclang-rt-14-dev llvm-14) ;;
    *) echo "install_deps.sh: unknown option '$arg' (--tests, --sanitize)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "multilora: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libtorch links libblas.so.3; make sure the alternative resolves to OpenBLAS.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || readlink -f /usr/lib/*/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *) echo "multilora: warning: libblas.so.3 resolves to '$blas', not OpenBLAS; matrix products will be slow" >&2 ;;
esac
