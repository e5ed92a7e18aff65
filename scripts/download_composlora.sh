#!/usr/bin/env bash
# Fetches what configs/composlora-{anime,reality}.json need, from their public locations, and checks it:
#   models/composlora/Counterfeit-V2.5/             gsdf/Counterfeit-V2.5 (diffusers folder, safetensors)
#   models/composlora/Realistic_Vision_V5.1_noVAE/  SG161222/Realistic_Vision_V5.1_noVAE (diffusers folder)
#   models/composlora/sd-vae-ft-mse/                stabilityai/sd-vae-ft-mse
#   models/composlora/lora/{anime,reality}/<id>.safetensors   from the authors' ComposLoRA.zip (Google Drive)
# Hugging Face files are checked against the size and SHA-256 that the Hub publishes for them; ComposLoRA.zip
# is checked with `unzip -t`, must hold all 22 LoRAs named in configs/composlora/*_lora_info.json, and its
# SHA-256 is compared with COMPOSLORA_ZIP_SHA256 when set (else recorded in models/composlora/SHA256SUMS and
# checked on later runs). Re-running skips what is already there and verified. Needs internet, curl, python3
# and unzip; not run in CI. About 9 GB in all.
#
# Usage: scripts/download_composlora.sh [DEST]     (DEST defaults to models/composlora in the repository)
#        ONLY=anime|reality|loras scripts/download_composlora.sh   (one part)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_ROOT=$(pwd)
DEST=${1:-$REPO_ROOT/models/composlora}
HF=${HF_ENDPOINT:-https://huggingface.co}
ZIP_ID=1SuwRgV1LtEud8dfjftnw-zxBMgzSCwIT
ZIP_URL=${COMPOSLORA_ZIP_URL:-https://drive.usercontent.google.com/download?id=$ZIP_ID&export=download&confirm=t}
ONLY=${ONLY:-all}

for tool in curl python3 unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "download_composlora: '$tool' is required" >&2; exit 2; }
done
mkdir -p "$DEST"
SUMS="$DEST/SHA256SUMS"
touch "$SUMS"

say() { echo "download_composlora: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The Hub's listing of a repository folder: "path<TAB>size<TAB>sha256-or-empty" per file.
hf_listing() {  # repo folder ("" or "." for the top level)
  local url="$HF/api/models/$1/tree/main"
  case "$2" in ""|.) ;; *) url="$url/$2" ;; esac
  curl -fsSL --retry 3 "$url" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e.get("type") != "file":
        continue
    lfs = e.get("lfs") or {}
    print("%s\t%s\t%s" % (e["path"], lfs.get("size", e.get("size", "")), lfs.get("oid", "")))
'
}

# Downloads one file (resuming a partial download) and checks its size and, for LFS files, its SHA-256.
fetch_checked() {  # url target size sha256
  local url=$1 target=$2 size=$3 sha=$4
  mkdir -p "$(dirname "$target")"
  if [ -f "$target" ] && [ "$(stat -c %s "$target")" = "$size" ]; then
    if [ -z "$sha" ] || grep -q "^$sha  $target\$" "$SUMS"; then return 0; fi
    if [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$sha" ]; then echo "$sha  $target" >>"$SUMS"; return 0; fi
  fi
  say "fetching $url"
  curl -fL --retry 3 -C - -o "$target.part" "$url" || curl -fL --retry 3 -o "$target.part" "$url"
  local got
  got=$(stat -c %s "$target.part")
  [ "$got" = "$size" ] || { rm -f "$target.part"; die "$target: got $got bytes, the Hub lists $size"; }
  if [ -n "$sha" ]; then
    local h
    h=$(sha256sum "$target.part" | cut -d' ' -f1)
    [ "$h" = "$sha" ] || { rm -f "$target.part"; die "$target: SHA-256 $h, the Hub lists $sha"; }
    echo "$sha  $target" >>"$SUMS"
  fi
  mv "$target.part" "$target"
}

# A diffusers folder: the listed sub-folders' configs, tokenizer files and safetensors weights (no .bin,
# no .ckpt, no fp16/ema variants: the configs run in fp32 like the paper). Folder "." is the top level
# without its weights (model_index.json; a repository's single-file checkpoints are not needed); "" is the
# top level with them (a bare VAE repository).
fetch_hf_folder() {  # repo target folders...
  local repo=$1 target=$2
  shift 2
  local folder listing n=0
  for folder in "$@"; do
    listing=$(hf_listing "$repo" "$folder") || die "cannot list $repo/$folder on $HF"
    while IFS=$'\t' read -r path size sha; do
      [ -n "$path" ] || continue
      if [ "$folder" = "." ]; then case "$path" in *.json) ;; *) continue ;; esac; fi
      case "$path" in
        *.safetensors) case "$path" in *fp16*|*ema*|*non_ema*) continue ;; esac ;;
        *.json|*.txt) ;;
        *) continue ;;
      esac
      fetch_checked "$HF/$repo/resolve/main/$path" "$target/$path" "$size" "$sha"
      n=$((n + 1))
    done <<<"$listing"
  done
  [ "$n" -gt 0 ] || die "nothing to fetch from $repo"
  say "$repo: $n file(s) verified in $target"
}

fetch_base_models() {
  case "$ONLY" in all|anime)
    fetch_hf_folder gsdf/Counterfeit-V2.5 "$DEST/Counterfeit-V2.5" . scheduler text_encoder tokenizer unet vae ;;
  esac
  case "$ONLY" in all|reality)
    fetch_hf_folder SG161222/Realistic_Vision_V5.1_noVAE "$DEST/Realistic_Vision_V5.1_noVAE" . scheduler text_encoder tokenizer unet
    fetch_hf_folder stabilityai/sd-vae-ft-mse "$DEST/sd-vae-ft-mse" "" ;;
  esac
}

fetch_loras() {
  local zip="$DEST/ComposLoRA.zip"
  if [ ! -f "$zip" ]; then
    say "fetching ComposLoRA.zip from Google Drive"
    curl -fL --retry 3 -o "$zip.part" "$ZIP_URL"
    if head -c 4 "$zip.part" | grep -q '<'; then
      rm -f "$zip.part"
      die "Google Drive answered with a web page instead of ComposLoRA.zip (quota or a changed link); download it by hand from https://drive.google.com/file/d/$ZIP_ID and put it at $zip"
    fi
    mv "$zip.part" "$zip"
  fi
  unzip -tq "$zip" >/dev/null || die "$zip is damaged (unzip -t failed); delete it and run again"
  local h
  h=$(sha256sum "$zip" | cut -d' ' -f1)
  if [ -n "${COMPOSLORA_ZIP_SHA256:-}" ]; then
    [ "$h" = "$COMPOSLORA_ZIP_SHA256" ] || die "$zip: SHA-256 $h, expected $COMPOSLORA_ZIP_SHA256"
  elif grep -q "  $zip\$" "$SUMS"; then
    grep -q "^$h  $zip\$" "$SUMS" || die "$zip changed since it was first verified (SHA-256 now $h)"
  else
    echo "$h  $zip" >>"$SUMS"
    say "ComposLoRA.zip SHA-256 $h (recorded in $SUMS)"
  fi
  local tmp
  tmp=$(mktemp -d "$DEST/.unzip-XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  unzip -q "$zip" -d "$tmp"
  # Place every LoRA the lora_info files name: <id>.safetensors found under a folder named after its style.
  python3 - "$tmp" "$DEST/lora" "$REPO_ROOT/configs/composlora" <<'PY'
import json, os, shutil, sys
src, dest, info_dir = sys.argv[1:4]
found = {}
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".safetensors"):
            found.setdefault(f, []).append(os.path.join(root, f))
missing = []
for style in ("anime", "reality"):
    with open(os.path.join(info_dir, style + "_lora_info.json")) as fh:
        info = json.load(fh)
    os.makedirs(os.path.join(dest, style), exist_ok=True)
    for entries in info.values():
        for e in entries:
            name = e["id"] + ".safetensors"
            cands = [p for p in found.get(name, []) if style in os.path.relpath(p, src).split(os.sep)]
            if len(cands) != 1:
                missing.append("%s/%s (%d candidates)" % (style, name, len(cands)))
                continue
            with open(cands[0], "rb") as fh:
                header = fh.read(8)
            if len(header) < 8 or int.from_bytes(header, "little") > os.path.getsize(cands[0]):
                missing.append("%s/%s (not a safetensors file)" % (style, name))
                continue
            shutil.move(cands[0], os.path.join(dest, style, name))
if missing:
    sys.exit("download_composlora: ComposLoRA.zip lacks: " + ", ".join(missing))
print("download_composlora: 22 LoRAs in " + dest, file=sys.stderr)
PY
  # With a built multilora, every LoRA must also read as a LoRA (kohya keys, consistent ranks).
  local bin=${MULTILORA_BIN:-$REPO_ROOT/build/multilora}
  if [ -x "$bin" ]; then
    local f
    for f in "$DEST"/lora/*/*.safetensors; do
      "$bin" -q inspect "$f" >/dev/null || die "$f does not read as a LoRA"
    done
    say "every LoRA passed 'multilora inspect'"
  fi
}

case "$ONLY" in
  all) fetch_base_models; fetch_loras ;;
  anime|reality) fetch_base_models ;;
  loras) fetch_loras ;;
  *) die "ONLY must be all, anime, reality or loras" ;;
esac
say "done: configs/composlora-anime.json and configs/composlora-reality.json can run (multilora batch CONFIG)"
