#!/usr/bin/env bash
# Builds multilora against PyTorch's libtorch and checks it on an NVIDIA GPU, unattended, meant to finish within
# 8 minutes (issue 17). Everything measured goes into one folder: summary.md / summary.json, logs/, the images.
#
#   scripts/gpu_check.sh [--out DIR]                 the GPU check (needs nvidia-smi, python3 with torch, cmake, g++)
#   scripts/gpu_check.sh --device cpu --binary BIN   the CPU fallback: the same stages at small sizes (CI, ctest)
#
# Stages: info, build (cmake against `python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'`,
# -DMULTILORA_WITH_EVAL=OFF -DMULTILORA_BUILD_TESTS=OFF, header-only dependencies from --deps-dir or assembled
# from /usr/include by scripts/make_deps_dir.sh), tiny (make-tiny; every method listed by `generate --help`
# on the CPU in fp32 as the reference, then on the device in fp32 (checked: max pixel difference <= --max-diff)
# and fp16 (for information)), bench (cuda: bench --device cuda --dtype fp16 --size 512 --ranks 128
# --composite-k 2,5 --repeats 3; cpu: bench --quick), images (one whole image per method on bench's random
# model and LoRAs: cuda 50 steps at 512x512 fp16; cpu 4 steps at 64x64). Nothing runs past --budget: a stage
# or image that would start later is skipped, one still running then is stopped (and the summary says so).
#
# Options:
#   --device cuda|cpu     where the checked runs go (default cuda)
#   --out DIR             the results folder (default gpu-check-YYYYmmdd-HHMMSS); must be new or empty
#   --overwrite           reuse a non-empty --out (the files an earlier run wrote there are removed first)
#   --binary PATH         use this multilora instead of building (default with --device cpu: build/multilora)
#   --torch-dir DIR       libtorch's CMake folder (…/share/cmake/Torch); default: from python3's torch
#                         (cuda), the system's libtorch (cpu)
#   --deps-dir DIR        header-only dependencies for -DMULTILORA_DEPS_DIR (default: assembled from /usr/include)
#   --build-dir DIR       where to build (default build-gpu-check in the repository; reused between runs)
#   --work-dir DIR        bench's random model and LoRAs, reused when present (default: cuda BUILD_DIR/bench-work,
#                         a full-size SD1.5 checkpoint; cpu OUT/bench-work)
#   --jobs N              build jobs (default: nproc)
#   --max-diff N          the checked runs' largest allowed pixel difference, of 255 (default 4 cuda, 0 cpu)
#   --budget SECONDS      the whole run's deadline, the summary excepted (default 450)
#   --no-bench            skip bench and images
#   -h, --help            this text
# Exit status: 0 every stage ran and every checked image is within --max-diff; 1 otherwise; 2 bad options.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$ROOT/scripts/gpu_check_report.py"
START=$SECONDS

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "gpu_check.sh: error: $*" >&2; exit 1; }
bad_usage() { echo "gpu_check.sh: $* (see --help)" >&2; exit 2; }
log() { printf '[gpu_check %3ds] %s\n' "$((SECONDS - START))" "$*"; }

DEVICE=cuda OUT="" OVERWRITE=0 BINARY="" TORCH_DIR="" DEPS_DIR="" BUILD_DIR="" WORK_DIR="" JOBS=$(nproc) MAX_DIFF=""
BUDGET=450 BENCH=1 TINY_SIZE=128 TINY_STEPS=10 THREADS=0

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --overwrite) OVERWRITE=1; shift ;;
            --no-bench) BENCH=0; shift ;;
            --device|--out|--binary|--torch-dir|--deps-dir|--build-dir|--work-dir|--jobs|--max-diff|--budget)
                [[ $# -ge 2 && -n "$2" ]] || bad_usage "$1 needs a value"
                case "$1" in
                    --device) DEVICE=$2 ;; --out) OUT=$2 ;; --binary) BINARY=$2 ;; --torch-dir) TORCH_DIR=$2 ;;
                    --deps-dir) DEPS_DIR=$2 ;; --build-dir) BUILD_DIR=$2 ;; --work-dir) WORK_DIR=$2 ;; --jobs) JOBS=$2 ;;
                    --max-diff) MAX_DIFF=$2 ;; --budget) BUDGET=$2 ;;
                esac
                shift 2 ;;
            *) bad_usage "unknown argument '$1'" ;;
        esac
    done
    [[ "$DEVICE" == cpu || "$DEVICE" == cuda || "$DEVICE" == cuda:* ]] || bad_usage "--device must be cpu or cuda[:N]"
    [[ "$JOBS" =~ ^[0-9]+$ && "$BUDGET" =~ ^[0-9]+$ ]] || bad_usage "--jobs and --budget take whole numbers"
    [[ -z "$MAX_DIFF" || "$MAX_DIFF" =~ ^[0-9]+$ ]] || bad_usage "--max-diff takes a whole number (of 255)"
    if [[ "$DEVICE" == cpu ]]; then
        MAX_DIFF=${MAX_DIFF:-0} TINY_SIZE=64 TINY_STEPS=4 THREADS=1  # 1 thread: CI runs it beside other tests
    else
        MAX_DIFF=${MAX_DIFF:-4} TINY_SIZE=128 TINY_STEPS=10 THREADS=0
    fi
    [[ -n "$OUT" ]] || OUT="gpu-check-$(date +%Y%m%d-%H%M%S)"
    [[ -n "$BUILD_DIR" ]] || BUILD_DIR="$ROOT/build-gpu-check"
    if [[ -z "$BINARY" && "$DEVICE" == cpu && -x "$ROOT/build/multilora" ]]; then BINARY="$ROOT/build/multilora"; fi
    return 0
}

prepare_out() {
    if [[ -e "$OUT" && -n "$(ls -A "$OUT" 2>/dev/null)" ]]; then
        [[ $OVERWRITE == 1 ]] || die "$OUT is not empty (use --overwrite or another --out)"
        local f
        for f in logs tiny images bench-work info.tsv stages.tsv runs.tsv methods.txt bench.json bench.md \
                 summary.md summary.json; do rm -rf "${OUT:?}/$f"; done
    fi
    mkdir -p "$OUT/logs" "$OUT/tiny" "$OUT/images"
    OUT=$(cd "$OUT" && pwd)
    if [[ -z "$WORK_DIR" ]]; then
        if [[ "$DEVICE" == cpu ]]; then WORK_DIR="$OUT/bench-work"; else WORK_DIR="$BUILD_DIR/bench-work"; fi
    fi
    mkdir -p "$WORK_DIR"
    WORK_DIR=$(cd "$WORK_DIR" && pwd)
    : > "$OUT/stages.tsv"
    : > "$OUT/runs.tsv"
    : > "$OUT/info.tsv"
}

info() { printf '%s\t%s\n' "$1" "$2" >> "$OUT/info.tsv"; }
stage_row() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$OUT/stages.tsv"; }
remaining() { echo $((BUDGET - (SECONDS - START))); }
within_budget() { (( $(remaining) >= 10 )); }

# limit SECONDS COMMAND...: the command, killed (exit 124) after SECONDS or at the --budget deadline, whichever
# comes first, so that nothing hangs unattended.
BUILD_LIMIT=420 BENCH_LIMIT=300 RUN_LIMIT=120
limit() {
    local secs=$1 left
    shift
    left=$(remaining)
    if (( left < secs )); then secs=$left; fi
    if (( secs <= 0 )); then echo "not started: past the ${BUDGET}s budget: $*"; return 124; fi
    if command -v timeout >/dev/null; then timeout --kill-after=10 "$secs" "$@"; else "$@"; fi
}

# run_stage NAME FUNCTION: runs FUNCTION with its output in logs/NAME.log and records the outcome. The
# stage fails (and the run goes on to the summary) when FUNCTION returns non-zero.
run_stage() {
    local name=$1 fn=$2 t0=$SECONDS rc=0
    if ! within_budget; then
        log "$name: skipped (past the ${BUDGET}s budget)"
        stage_row "$name" skipped 0 "" "past the ${BUDGET}s budget"
        return 0
    fi
    log "$name ..."
    # Not `( ... ) || rc=$?`: errexit would be off inside, and a failing step would not stop the stage.
    set +e
    ( set -euo pipefail; "$fn" ) > "$OUT/logs/$name.log" 2>&1
    rc=$?
    set -e
    local secs=$((SECONDS - t0))
    if [[ $rc == 0 ]]; then
        log "$name: ok (${secs}s)"
        stage_row "$name" ok "$secs" "logs/$name.log"
    else
        log "$name: FAILED (exit $rc, ${secs}s); last lines of logs/$name.log:"
        tail -n 15 "$OUT/logs/$name.log" | sed 's/^/    /'
        stage_row "$name" failed "$secs" "logs/$name.log" "exit $rc"
    fi
    return 0
}

outcome() {  # a command's exit status in words
    case "$1" in 0) echo ok ;; 124|137) echo "exit $1 (stopped: time limit or --budget)" ;; *) echo "exit $1" ;; esac
}

stage_ok() { awk -F'\t' -v s="$1" '$1 == s && $2 == "ok" {found = 1} END {exit !found}' "$OUT/stages.tsv"; }

# ---------------------------------------------------------------- info

torch_python() { python3 -c "import torch; print($1)" 2>/dev/null; }

stage_info() {
    info device "$DEVICE"
    info host "$(hostname) ($(nproc) CPUs, $(uname -sr))"
    info cpu "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || echo unknown)"
    info repository "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') ($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) uncommitted paths)"
    info started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    info max_diff "$MAX_DIFF"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
        info gpu "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n1)"
    elif [[ "$DEVICE" != cpu ]]; then
        echo "nvidia-smi not found"; info gpu "none found (no nvidia-smi)"
    fi
    local tv
    if tv=$(torch_python 'torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.compiled_with_cxx11_abi()'); then
        info python_torch "(version, cuda, cuda available, cxx11 abi) = $tv"
    else
        info python_torch "none (python3 cannot import torch)"
    fi
    cmake --version | head -n1 || true
    c++ --version | head -n1 || true
}

# ---------------------------------------------------------------- build

torch_cmake_dir() {
    if [[ -n "$TORCH_DIR" ]]; then echo "$TORCH_DIR"; return; fi
    [[ "$DEVICE" == cpu ]] && return
    local prefix
    prefix=$(torch_python 'torch.utils.cmake_prefix_path') ||
        { echo "python3 cannot import torch: pass --torch-dir (libtorch's share/cmake/Torch)" >&2; return 1; }
    echo "$prefix/Torch"
}

cuda_hints() {  # CMake flags that point libtorch's CUDA lookup at a toolkit, when one is found
    local nvcc
    nvcc=$(command -v nvcc || true)
    local c
    for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
        if [[ -z "$nvcc" && -n "$c" && -x "$c/bin/nvcc" ]]; then nvcc="$c/bin/nvcc"; fi
    done
    if [[ -z "$nvcc" ]]; then
        echo "note: no nvcc found (PATH, CUDA_HOME, /usr/local/cuda); libtorch's CMake config for a CUDA build" \
             "needs the CUDA toolkit matching torch.version.cuda" >&2
        return
    fi
    local root
    root=$(cd "$(dirname "$nvcc")/.." && pwd)
    echo "-DCMAKE_CUDA_COMPILER=$nvcc -DCUDAToolkit_ROOT=$root -DCUDA_TOOLKIT_ROOT_DIR=$root"
}

stage_build() {
    command -v cmake >/dev/null || { echo "cmake not found (3.18 or newer is needed)"; return 1; }
    local torch_dir deps
    torch_dir=$(torch_cmake_dir)
    deps=${DEPS_DIR:-$BUILD_DIR/deps}
    [[ -n "$DEPS_DIR" ]] || "$ROOT/scripts/make_deps_dir.sh" "$deps"
    local args=(-S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DMULTILORA_WITH_EVAL=OFF
                -DMULTILORA_BUILD_TESTS=OFF "-DMULTILORA_DEPS_DIR=$(cd "$deps" && pwd)")
    [[ -z "$torch_dir" ]] || args+=("-DTorch_DIR=$torch_dir")
    [[ "$DEVICE" == cpu ]] || read -r -a hints <<< "$(cuda_hints)"
    args+=(${hints[@]+"${hints[@]}"})
    echo "+ cmake ${args[*]}"
    if ! cmake "${args[@]}"; then
        echo "configure failed (see above). A CUDA libtorch's CMake config needs the CUDA toolkit (nvcc) matching"
        echo "torch.version.cuda: set CUDA_HOME or put nvcc on PATH. zlib's headers are needed too (zlib1g-dev)."
        return 1
    fi
    limit "$BUILD_LIMIT" cmake --build "$BUILD_DIR" -j"$JOBS" --target multilora
}

# ---------------------------------------------------------------- tiny model, every method

LORAS=(--lora models/loras/tiny-character.safetensors --triggers "tiny fox, red fur"
       --lora models/loras/tiny-style.safetensors:0.8 --triggers "watercolor, soft edges")

# tiny_run TAG METHOD DEVICE DTYPE: one image of the tiny model into tiny/TAG/, recorded in runs.tsv.
tiny_run() {
    local tag=$1 method=$2 device=$3 dtype=$4 rc=0 loras=()
    [[ "$method" == none ]] || loras=("${LORAS[@]}")
    ( cd "$OUT/tiny" && limit "$RUN_LIMIT" "$BIN" -q generate --model models/tiny-sd15.safetensors --prompt "a tiny fox, red fur, watercolor" \
        --negative-prompt blurry ${loras[@]+"${loras[@]}"} --method "$method" --steps "$TINY_STEPS" \
        --width "$TINY_SIZE" --height "$TINY_SIZE" --seed 7 --device "$device" --dtype "$dtype" --threads "$THREADS" \
        --out "$tag" --name "$method" --save-latents --overwrite --no-progress < /dev/null ) >> "$OUT/logs/tiny-$tag.log" 2>&1 || rc=$?
    printf '%s\t%s\t%s\n' "$tag" "$method" "$(outcome "$rc")" >> "$OUT/runs.tsv"
    echo "$tag $method: $(outcome "$rc") (logs/tiny-$tag.log)"
}

stage_tiny() {
    (cd "$OUT/tiny" && "$BIN" make-tiny --out models)
    "$BIN" generate --help > "$OUT/logs/generate-help.txt"
    python3 "$HELPER" methods "$OUT/logs/generate-help.txt" > "$OUT/methods.txt" ||
        { echo "no composition method found in 'generate --help'"; return 1; }
    echo "methods (from generate --help): $(tr '\n' ' ' < "$OUT/methods.txt")"
    local m failed=0
    while read -r m; do
        tiny_run ref "$m" cpu fp32
        if [[ "$DEVICE" == cpu ]]; then
            tiny_run cpu-rerun "$m" cpu fp32
        else
            tiny_run cuda-fp32 "$m" "$DEVICE" fp32
            tiny_run cuda-fp16 "$m" "$DEVICE" fp16
        fi
    done < "$OUT/methods.txt"
    ! grep -qv $'\tok$' "$OUT/runs.tsv" || failed=1
    return $failed
}

# ---------------------------------------------------------------- bench and whole images

stage_bench() {
    local args
    if [[ "$DEVICE" == cpu ]]; then
        args=(bench --quick --device cpu --composite-k 2 --repeats 1 --threads 1 --max-spread 1)
    else
        args=(bench --device "$DEVICE" --dtype fp16 --size 512 --ranks 128 --composite-k "2,5" --repeats 3)
    fi
    echo "+ multilora ${args[*]}"
    limit "$BENCH_LIMIT" "$BIN" "${args[@]}" --work-dir "$WORK_DIR" --json "$OUT/bench.json" --markdown "$OUT/bench.md"
}

stage_images() {
    local model rank lora0 lora1 steps size dtype m rc failed=0
    if [[ "$DEVICE" == cpu ]]; then
        model=bench-tiny rank=4 steps=4 size=64 dtype=fp32
    else
        model=bench-sd15 rank=128 steps=50 size=512 dtype=fp16
    fi
    lora0="$WORK_DIR/bench-r$rank-0.safetensors" lora1="$WORK_DIR/bench-r$rank-1.safetensors"
    [[ -f "$WORK_DIR/$model.safetensors" && -f "$lora0" && -f "$lora1" ]] ||
        { echo "bench's random model or LoRAs are missing in $WORK_DIR"; return 1; }
    while read -r m; do
        if ! within_budget; then echo "$m: skipped (past the ${BUDGET}s budget)"; failed=1; continue; fi
        local loras=()
        [[ "$m" == none ]] || loras=(--lora "$lora0" --lora "$lora1" --triggers "a" --triggers "b")
        rc=0
        limit "$RUN_LIMIT" "$BIN" -q generate --model "$WORK_DIR/$model.safetensors" ${loras[@]+"${loras[@]}"} --method "$m" \
            --prompt "a photo of a fox in the snow, a, b" --steps "$steps" --width "$size" --height "$size" --seed 1 \
            --device "$DEVICE" --dtype "$dtype" --threads "$THREADS" --out "$OUT/images" --name "$m" --overwrite --no-progress < /dev/null || rc=$?
        echo "$m: $(outcome "$rc")"
        [[ $rc == 0 ]] || failed=1
    done < "$OUT/methods.txt"
    return $failed
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    command -v python3 >/dev/null || die "python3 is needed (the report)"
    prepare_out
    log "results go to $OUT"
    run_stage info stage_info
    if [[ -n "$BINARY" ]]; then
        [[ -x "$BINARY" ]] || die "--binary $BINARY is not an executable"
        BIN=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
        stage_row build skipped 0 "" "--binary $BIN"
    else
        run_stage build stage_build
        BIN="$BUILD_DIR/multilora"
    fi
    info binary "$BIN"
    if [[ -n "$BINARY" ]] || stage_ok build; then  # never a stale binary from an earlier build
        info multilora "$("$BIN" --version 2>&1 | head -n1)"
        info tiny_settings "tiny model, ${TINY_SIZE}x${TINY_SIZE}, $TINY_STEPS steps, dpmpp-2m, guidance 7.5, seed 7, two LoRAs (none: no LoRA)"
        info checked_tag "$([[ "$DEVICE" == cpu ]] && echo cpu-rerun || echo cuda-fp32)"
        run_stage tiny stage_tiny
        if [[ $BENCH == 1 ]]; then
            run_stage bench stage_bench
            if stage_ok bench; then run_stage images stage_images; else stage_row images skipped 0 "" "bench did not run"; fi
        fi
    fi
    info bench_command "$( [[ "$DEVICE" == cpu ]] && echo "bench --quick --device cpu --composite-k 2 --repeats 1 --threads 1 --max-spread 1" ||
        echo "bench --device $DEVICE --dtype fp16 --size 512 --ranks 128 --composite-k 2,5 --repeats 3")"
    info images_settings "$( [[ "$DEVICE" == cpu ]] && echo "bench's tiny random model, 64x64, 4 steps, fp32, rank-4 LoRAs" ||
        echo "bench's random SD1.5, 512x512, 50 steps, fp16, two rank-128 LoRAs (none: no LoRA)")"
    info total_seconds "$((SECONDS - START))"
    log "summary: $OUT/summary.md"
    echo
    python3 "$HELPER" summary "$OUT"
}

main "$@"
