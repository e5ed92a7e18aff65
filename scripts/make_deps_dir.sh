#!/usr/bin/env bash
# Assembles a folder for -DMULTILORA_DEPS_DIR: copies the header-only dependencies (CLI11, nlohmann_json,
# stb's image and font headers, spdlog and fmt) from this machine's include folders into DIR/include, for a machine that
# has libtorch but not these packages (e.g. a GPU host with only PyTorch's pip wheel). About 3 MB.
#
#   scripts/make_deps_dir.sh DIR [--from PREFIX]...     (default: /usr/include, then /usr/local/include)
#   cmake -S . -B build-gpu -DMULTILORA_DEPS_DIR=DIR -DMULTILORA_WITH_EVAL=OFF -DMULTILORA_BUILD_TESTS=OFF ...
#
# On Debian 12: apt-get install libcli11-dev nlohmann-json3-dev libstb-dev libspdlog-dev libfmt-dev.
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

die() { echo "make_deps_dir.sh: $*" >&2; exit 1; }

OUT=""
PREFIXES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --from) [[ $# -ge 2 ]] || die "--from needs a folder"; PREFIXES+=("$2"); shift 2 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z "$OUT" ]] || die "one DIR only (see --help)"; OUT=$1; shift ;;
    esac
done
[[ -n "$OUT" ]] || { usage >&2; exit 2; }
[[ ${#PREFIXES[@]} -gt 0 ]] || PREFIXES=(/usr/include /usr/local/include)

# The first prefix holding relative path $1 (file or folder), or nothing.
find_in_prefixes() {
    local p
    for p in "${PREFIXES[@]}"; do
        if [[ -e "$p/$1" ]]; then echo "$p/$1"; return 0; fi
    done
    return 1
}

need() {  # need WHAT PATH...: the first of the paths found, or a clear error
    local what=$1 rel found; shift
    for rel in "$@"; do
        if found=$(find_in_prefixes "$rel"); then echo "$found"; return 0; fi
    done
    die "$what not found under ${PREFIXES[*]} (looked for $*)"
}

cli11=$(need "CLI11 (CLI/CLI.hpp)" CLI)
json=$(need "nlohmann_json (nlohmann/json.hpp)" nlohmann)
stb=$(dirname "$(need "stb_image_write.h" stb/stb_image_write.h stb_image_write.h)")
STB_HEADERS=(stb_image.h stb_image_write.h stb_easy_font.h)  # what src/ includes
for h in "${STB_HEADERS[@]}"; do [[ -f "$stb/$h" ]] || die "$stb/$h not found (stb's headers are all needed there)"; done
spdlog=$(need "spdlog (spdlog/spdlog.h)" spdlog)
fmt=$(find_in_prefixes fmt/core.h || true)
if [[ -z "$fmt" && ! -e "$spdlog/fmt/bundled/core.h" ]]; then
    die "spdlog at $spdlog has no bundled fmt and fmt/core.h is not found (install fmt's headers)"
fi

mkdir -p "$OUT/include"
inc=$(cd "$OUT/include" && pwd)
for d in "$cli11" "$json" "$spdlog"; do
    rm -rf "${inc:?}/$(basename "$d")"
    cp -rL "$d" "$inc/"
done
mkdir -p "$inc/stb"
for h in "${STB_HEADERS[@]}"; do cp -L "$stb/$h" "$inc/stb/"; done
if [[ -n "$fmt" ]]; then
    rm -rf "$inc/fmt"
    cp -rL "$(dirname "$fmt")" "$inc/fmt"
fi
{
    echo "Assembled by scripts/make_deps_dir.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) from:"
    printf '  %s\n' "$cli11" "$json" "$stb (${STB_HEADERS[*]})" "$spdlog" ${fmt:+"$(dirname "$fmt")"}
} > "$OUT/SOURCES.txt"
echo "$OUT: $(du -sh "$OUT" | cut -f1) of headers; use -DMULTILORA_DEPS_DIR=$(cd "$OUT" && pwd)"
