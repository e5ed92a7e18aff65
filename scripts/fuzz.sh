#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.cpp; clang with ASan + UBSan, in build-san/) and runs each
# for SECONDS (default 20), one after another, starting from its seed corpus tests/fuzz/corpus/NAME/. Prints
# executions and crashes per target; exits 1 when any target crashed (its input is kept in
# build-san/fuzz/crashes/; add it to tests/fuzz/corpus/NAME/ once fixed, and it becomes a regression test).
#   scripts/fuzz.sh            # 20 s a target (CI)
#   scripts/fuzz.sh 600        # ten minutes a target
#   FUZZ_TARGETS="fuzz_safetensors fuzz_tokenizer" scripts/fuzz.sh 60
#   FUZZ_SEED=1 scripts/fuzz.sh 20   # the same inputs in the same order on every run (CI); default: a random seed
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number (got '$1')" >&2; exit 2 ;; esac
BUILD=${SAN_BUILD_DIR:-build-san}
scripts/install_deps.sh --sanitize
targets=${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')}
build_args=()
for t in $targets; do build_args+=(--target "$t"); done
scripts/build.sh --sanitize "${build_args[@]}"

work="$BUILD/fuzz"
mkdir -p "$work/crashes"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
printf '%-22s %12s %10s %8s %8s\n' target executions exec/s corpus crashes
total=0; failed=0
for t in $targets; do
  name=${t#fuzz_}
  seeds="tests/fuzz/corpus/$name"
  corpus="$work/corpus-$name"
  mkdir -p "$corpus"
  log="$work/$t.log"
  rc=0
  "$BUILD/tests/$t" -seed="${FUZZ_SEED:-0}" -max_total_time="$SECONDS_PER_TARGET" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/$name-" "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$((rc == 0 ? 0 : 1))
  printf '%-22s %12s %10s %8s %8s\n' "$name" "${execs:-?}" "${rate:-?}" "$(ls "$corpus" | wc -l)" "$crashes"
  total=$((total + ${execs:-0}))
  if ((rc != 0)); then failed=1; echo "--- $t (exit $rc), the end of $log:"; tail -40 "$log"; fi
done
echo "total executions: $total"
exit $failed
