#!/usr/bin/env python3
"""Helper of scripts/gpu_check.sh (Python standard library only).

  gpu_check_report.py methods HELP.txt   the composition methods listed by `multilora generate --help`
  gpu_check_report.py summary OUT        OUT/summary.md and OUT/summary.json from what gpu_check.sh wrote
                                         into OUT; prints summary.md; exit 0 when every check passed, else 1

What summary reads from OUT: info.tsv (KEY<TAB>VALUE), stages.tsv (STAGE<TAB>STATUS<TAB>SECONDS<TAB>LOG<TAB>NOTE),
runs.tsv (TAG<TAB>METHOD<TAB>STATUS), tiny/TAG/METHOD.{png,latents.safetensors} (TAG "ref" is the CPU
reference), bench.json / bench.md, images/METHOD.json (generate's manifests)."""
import json
import pathlib
import re
import struct
import sys
import zlib
from array import array

# ---------------------------------------------------------------- generate --help


def methods_from_help(text):
    """The names of the 'Composition methods' section, else those of --method's {a,b,...} choices."""
    names, inside = [], False
    for line in text.splitlines():
        if line.startswith("Composition methods"):
            inside = True
            continue
        if inside:
            m = re.match(r"^  ([a-z0-9][a-z0-9_-]*): ", line)
            if m:
                names.append(m.group(1))
            elif line and not line.startswith("   "):
                break
    if not names:
        m = re.search(r"--method TEXT:\{([a-z0-9_,-]+)\}", text)
        names = m.group(1).split(",") if m else []
    return names


# ---------------------------------------------------------------- PNG and safetensors


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def unfilter(raw, width, height, bpp):
    stride, out, prev, pos = width * bpp, bytearray(), bytearray(width * bpp), 0
    for _ in range(height):
        ftype, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[ftype]
            line[i] = (line[i] + pred) & 0xFF
        out += line
        prev = line
    return out


def read_png(path):
    """(width, height, channels, bytes) of an 8-bit, non-interlaced grey/RGB/RGBA PNG."""
    data = pathlib.Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, ihdr = 8, bytearray(), None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced grey/RGB/RGBA PNGs are read")
    return width, height, channels, unfilter(zlib.decompress(bytes(idat)), width, height, channels)


def read_latents(path):
    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    t = header["latents"]
    if t["dtype"] != "F32":
        raise ValueError(f"{path}: latents are {t['dtype']}, not F32")
    begin, end = t["data_offsets"]
    values = array("f")
    values.frombytes(data[8 + n + begin:8 + n + end])
    if sys.byteorder != "little":
        values.byteswap()
    return values


def pixel_diff(ref, dev):
    w1, h1, c1, a = read_png(ref)
    w2, h2, c2, b = read_png(dev)
    if (w1, h1, c1) != (w2, h2, c2):
        raise ValueError(f"{dev}: {w2}x{h2}x{c2}, the reference is {w1}x{h1}x{c1}")
    diffs = [abs(x - y) for x, y in zip(a, b)]
    return {"max_px": max(diffs), "mean_px": sum(diffs) / len(diffs),
            "values_differing": sum(1 for d in diffs if d), "values": len(diffs)}


def latent_diff(ref, dev):
    a, b = read_latents(ref), read_latents(dev)
    worst = max(abs(x - y) for x, y in zip(a, b))
    scale = max(abs(x) for x in a) or 1.0
    return {"latents_max_abs": worst, "latents_max_rel": worst / scale}


def compare(tiny, tag, method):
    ref, dev = tiny / "ref", tiny / tag
    r = {"tag": tag, "method": method}
    try:
        r.update(pixel_diff(ref / f"{method}.png", dev / f"{method}.png"))
        r.update(latent_diff(ref / f"{method}.latents.safetensors", dev / f"{method}.latents.safetensors"))
    except (OSError, ValueError, KeyError) as e:
        r["error"] = str(e)
    return r


# ---------------------------------------------------------------- summary


def read_tsv(path, columns):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        rows.append(dict(zip(columns, parts + [""] * (len(columns) - len(parts)))))
    return rows


def comparisons(out, info, runs):
    checked = info.get("checked_tag", "")
    ok_runs = {(r["tag"], r["method"]) for r in runs if r["status"] == "ok"}
    result = []
    for r in runs:
        if r["tag"] == "ref" or r["status"] != "ok":
            continue
        c = {"tag": r["tag"], "method": r["method"], "error": "the CPU reference run failed"}
        if ("ref", r["method"]) in ok_runs:
            c = compare(out / "tiny", r["tag"], r["method"])
        c["checked"] = r["tag"] == checked
        result.append(c)
    return result


def image_timings(out):
    order = (out / "methods.txt").read_text().split() if (out / "methods.txt").exists() else []
    rank = {m: i for i, m in enumerate(order)}
    rows = []
    for path in sorted((out / "images").glob("*.json"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem)):
        t = json.loads(path.read_text()).get("timings", {})
        steps = t.get("steps_s", [])
        rows.append({"method": path.stem, "generate_s": t.get("generate_s"), "load_s": t.get("load_s"),
                     "encode_s": t.get("encode_s"), "denoise_s": sum(steps), "steps": len(steps),
                     "decode_s": t.get("decode_s")})
    return rows


def verdict(info, stages, runs, comps):
    problems = [f"stage {s['stage']}: {s['status']} {s['note']}".strip() for s in stages
                if s["status"] not in ("ok", "skipped")]
    problems += [f"generate {r['tag']} {r['method']}: {r['status']}" for r in runs if r["status"] != "ok"]
    limit = float(info.get("max_diff", "0"))
    for c in comps:
        if c["checked"] and "error" in c:
            problems.append(f"{c['tag']} {c['method']}: {c['error']}")
        elif c["checked"] and c["max_px"] > limit:
            problems.append(f"{c['tag']} {c['method']}: max pixel difference {c['max_px']} > {limit:g}")
    return problems


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def markdown(info, stages, runs, comps, images, bench_md, problems):
    L = [f"# multilora GPU check: {'PASS' if not problems else 'FAIL'}", ""]
    L += [f"- {k}: {v}" for k, v in info.items()]
    L += ["", "## Stages", "", "| stage | status | seconds | log | note |", "| --- | --- | --- | --- | --- |"]
    L += [f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['log']} | {s['note']} |" for s in stages]
    L += ["", f"## Tiny model, every method: {info.get('tiny_settings', '')}", "",
          f"Each run against the CPU fp32 reference; checked: `{info.get('checked_tag', '')}` "
          f"(max pixel difference <= {info.get('max_diff', '')} of 255), the others are for information.", "",
          "| run | method | max px diff | mean px diff | values differing | latents max abs | latents max rel |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in comps:
        if "error" in c:
            L.append(f"| {c['tag']} | {c['method']} | error: {c['error']} | | | | |")
        else:
            L.append(f"| {c['tag']}{' (checked)' if c['checked'] else ''} | {c['method']} | {c['max_px']} | "
                     f"{c['mean_px']:.4f} | {c['values_differing']}/{c['values']} | {c['latents_max_abs']:.3g} | "
                     f"{c['latents_max_rel']:.3g} |")
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        L += ["", "Failed runs: " + ", ".join(f"{r['tag']}/{r['method']} ({r['status']})" for r in failed)]
    L += ["", f"## bench: `{info.get('bench_command', '')}`", "", bench_md or "(no bench.md)"]
    if images:
        L += ["", f"## Whole images: {info.get('images_settings', '')}", "",
              "| method | generate s | load s | encode s | denoise s (steps) | decode s |",
              "| --- | --- | --- | --- | --- | --- |"]
        L += [f"| {r['method']} | {fmt(r['generate_s'], '.2f')} | {fmt(r['load_s'], '.2f')} | "
              f"{fmt(r['encode_s'], '.2f')} | {fmt(r['denoise_s'], '.2f')} ({r['steps']}) | {fmt(r['decode_s'], '.2f')} |"
              for r in images]
        L += ["", "Step times come from the host clock; on a GPU the launches are asynchronous, so only the "
                  "totals (generate, denoise + decode) are exact."]
    L += ["", "## Verdict", ""] + ([f"- {p}" for p in problems] or ["All stages ran and every checked image is "
                                                                    "within the limit."])
    return "\n".join(L) + "\n"


def summary(out):
    info = {r["key"]: r["value"] for r in read_tsv(out / "info.tsv", ["key", "value"])}
    stages = read_tsv(out / "stages.tsv", ["stage", "status", "seconds", "log", "note"])
    runs = read_tsv(out / "runs.tsv", ["tag", "method", "status"])
    comps = comparisons(out, info, runs)
    images = image_timings(out)
    bench_md = (out / "bench.md").read_text() if (out / "bench.md").exists() else ""
    bench = json.loads((out / "bench.json").read_text()) if (out / "bench.json").exists() else None
    problems = verdict(info, stages, runs, comps)
    md = markdown(info, stages, runs, comps, images, bench_md, problems)
    (out / "summary.md").write_text(md)
    doc = {"verdict": "PASS" if not problems else "FAIL", "problems": problems, "info": info, "stages": stages,
           "runs": runs, "comparisons": comps, "images": images, "bench": bench}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    sys.stdout.write(md)
    return 0 if not problems else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "methods":
        names = methods_from_help(pathlib.Path(argv[2]).read_text())
        print("\n".join(names))
        return 0 if names else 1
    if len(argv) == 3 and argv[1] == "summary":
        return summary(pathlib.Path(argv[2]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
