#!/usr/bin/env python3
"""Lists the longest function definitions in C++ sources (default: src/), from the line where the signature
starts to the closing brace, and fails (exit 1) when one is longer than --max lines.

    scripts/function_lengths.py [--max 120] [--top 5] [DIR...]

A small brace matcher, not a compiler: comments, string and character literals and preprocessor lines are
skipped; a '{' opened directly inside a namespace, a class or at file level after a ')' (plus qualifiers,
an initializer list or a trailing return type) starts a function. Lambdas and local classes count toward
the function around them."""
import argparse
import pathlib
import re
import sys

CONTROL = re.compile(r"^\s*(if|for|while|switch|catch|else|do|try)\b")
SCOPE = re.compile(r"\b(namespace|class|struct|union|enum)\b[^()]*$")


def strip(text):
    """Blanks out comments, literals and preprocessor lines, keeping line breaks."""
    out, i, n = [], 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == "#":
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append(" \n")
                    i += 2
                    continue
                out.append(" ")
                i += 1
            continue
        if c == "\n":
            at_line_start = True
            out.append(c)
            i += 1
            continue
        if not c.isspace():
            at_line_start = False
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                out.append(" ")
                i += 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join("\n" if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append("".join("\n" if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    text = strip(path.read_text(encoding="utf-8", errors="replace"))
    stack = []  # 'scope' (namespace/class/file-level braces) or 'func' or 'block'
    header, header_line, line = "", None, 1
    found = []
    for c in text:
        if c == "\n":
            line += 1
            if header.strip():
                header += " "
            continue
        if c == "{":
            h = header.strip()
            outer_ok = all(kind == "scope" for kind, _ in stack)
            if outer_ok and SCOPE.search(h):
                stack.append(("scope", None))
            elif outer_ok and ")" in h and not CONTROL.match(h) and not h.endswith("="):
                stack.append(("func", (header_line, h)))
            else:
                stack.append(("block", None))
            header, header_line = "", None
            continue
        if c == "}":
            if stack:
                kind, info = stack.pop()
                if kind == "func":
                    start, h = info
                    name = re.sub(r"\s+", " ", h.split("(")[0]).strip().split(" ")[-1]
                    found.append((line - start + 1, f"{path}:{start}", name))
            header, header_line = "", None
            continue
        if c == ";":
            header, header_line = "", None
            continue
        if not c.isspace() and header_line is None:
            header_line = line
        header += c
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=None)
    ap.add_argument("--max", type=int, default=120)
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent
    dirs = [pathlib.Path(d) for d in a.dirs] if a.dirs else [root / "src"]
    found = []
    for d in dirs:
        for p in sorted(d.rglob("*.cpp")) + sorted(d.rglob("*.h")):
            found.extend(functions(p))
    found.sort(reverse=True)
    for length, where, name in found[: a.top]:
        print(f"{length:5d}  {where}  {name}")
    over = [f for f in found if f[0] > a.max]
    print(f"function_lengths: {len(found)} functions; longest {found[0][0] if found else 0} lines; "
          f"{len(over)} over {a.max}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
