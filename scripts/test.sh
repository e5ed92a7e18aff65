#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, Release build, full test suite (ctest).
#   scripts/test.sh              # the suite on the Release build (build/)
#   scripts/test.sh --sanitize   # the suite built with clang, ASan + UBSan + -D_GLIBCXX_ASSERTIONS (build-san/),
#                                # plus every fuzz target over its corpus; suppressions: tests/sanitizer/
#   scripts/test.sh --all        # what CI runs: the Release suite; then, built with the sanitizers, the named
#                                # subset "outside_inputs" (tests/CMakeLists.txt: every test of input from
#                                # outside, and every fuzz corpus), which keeps CI within its 90 minutes;
#                                # then scripts/fuzz.sh for 20 s a target
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-release}
case "$mode" in
  release|--sanitize|--all) ;;
  *) echo "test.sh: unknown option '$mode' (none, --sanitize or --all)" >&2; exit 2 ;;
esac

release_suite() {
  scripts/install_deps.sh --tests
  python3 scripts/check_layers.py   # no include points up a layer (docs/architecture.md); seconds
  scripts/build.sh
  (cd "${BUILD_DIR:-build}" && ctest --output-on-failure --no-tests=error -j"$(nproc)" --timeout 900)
}

# $1: "all" (every test) or "outside_inputs" (CI's subset: its label, and the target that builds it).
sanitized_suite() {
  local subset=$1
  scripts/install_deps.sh --tests --sanitize
  local dir=${SAN_BUILD_DIR:-build-san}
  local ctest_args=()
  if [ "$subset" = all ]; then
    scripts/build.sh --sanitize
  else
    scripts/build.sh --sanitize --target outside_input_tests
    ctest_args=(-L "^$subset\$")
  fi
  local supp=$PWD/tests/sanitizer
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j"$(nproc)" --timeout 1800 "${ctest_args[@]}")
}

case "$mode" in
  release) release_suite ;;
  --sanitize) sanitized_suite all ;;
  # CI fuzzes with a fixed seed: a run explores the same inputs in the same order (checked for 40 s a target
  # before landing), so CI stays red or green on the code, not on luck; long runs use random seeds.
  --all) release_suite; sanitized_suite outside_inputs; FUZZ_SEED=1 scripts/fuzz.sh 20 ;;
esac
