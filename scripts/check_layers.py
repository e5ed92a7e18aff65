#!/usr/bin/env python3
"""Fails when a folder of src/ or include/multilora/ includes a header from a layer above it, or when the
include graph between folders has a cycle. The layers (docs/architecture.md), lowest first:

  1 util   2 io   3 models, sampling   4 text   5 lora   6 compose   7 pipeline   8 batch, bench, eval, train, world
  9 cli

Only `#include "multilora/FOLDER/..."` lines count (and, in src/cli, its own "cli/..." headers). Prints each
offending line as FILE:LINE: A (layer i) includes B (layer j); exit 1 on any, else 0 with a summary."""
import pathlib
import re
import sys

LAYERS = {"util": 1, "io": 2, "models": 3, "sampling": 3, "text": 4, "lora": 5, "compose": 6,
          "pipeline": 7, "batch": 8, "bench": 8, "eval": 8, "train": 8, "world": 8, "cli": 9}
INCLUDE = re.compile(r'^\s*#\s*include\s+"(?:multilora/)?([a-z_]+)/[^"]+"')


def folder_of(path, root):
    rel = path.relative_to(root).parts
    if rel[0] == "src":
        return rel[1]
    if rel[0] == "include" and len(rel) > 2 and rel[1] == "multilora":
        return rel[2]
    return None


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    problems, edges = [], {}
    files = [p for base in ("src", "include") for p in (root / base).rglob("*") if p.suffix in (".h", ".cpp", ".in")]
    for path in sorted(files):
        src = folder_of(path, root)
        if src is None:
            continue
        if src not in LAYERS:
            problems.append(f"{path.relative_to(root)}: folder '{src}' has no layer (add it to {__file__} and docs/architecture.md)")
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or (m.group(1) not in LAYERS):
                continue
            dst = m.group(1)
            if dst == src:
                continue
            edges.setdefault(src, set()).add(dst)
            if LAYERS[dst] > LAYERS[src]:
                problems.append(f"{path.relative_to(root)}:{n}: {src} (layer {LAYERS[src]}) includes {dst} (layer {LAYERS[dst]})")
    # Cycles among folders (possible only between folders of one layer).
    state = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                problems.append("include cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} problem(s)")
        return 1
    arrows = sum(len(v) for v in edges.values())
    print(f"check_layers: {len(files)} files, {arrows} folder arrows, all pointing down, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
