#!/usr/bin/env python3
"""The import graph of src/ kept honest (DESIGN §1), run by scripts/test.sh and so by CI.

Fails (exit 1) on any of:
- a cycle between files: `use crate::/super::/self::` lines and inline `crate::`/`super::`
  paths, with a `mod.rs`'s re-exports followed to the file that defines the item (so a `mod.rs`
  that holds logic its children use shows up as the cycle it is);
- a file that uses a module of a higher layer than its own (the table below, DESIGN §1);
- a runtime or wire crate named outside its folder: glommio and io_uring only under src/rt/,
  redis_protocol only under src/transport/redis/, amq_protocol only under src/transport/amqp/.

Usage: scripts/check-imports.py [src]
"""
import os
import re
import sys
from collections import defaultdict

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
ROOT = os.path.normpath(ROOT)

# DESIGN §1. `error` wraps every module's error type (one enum for the crate), so it may name
# them all; it is used from every layer as `crate::Result`.
LAYERS = {
    "protocol": 0, "error": 0, "config": 1, "rt": 1, "canvas": 1, "transport": 2, "backend": 3,
    "events": 3, "client": 4, "task": 5, "worker": 6, "beat": 6, "control": 6, "app": 7, "cli": 8,
}
FENCES = [("glommio", "rt"), ("io_uring", "rt"), ("redis_protocol", os.path.join("transport", "redis")),
          ("amq_protocol", os.path.join("transport", "amqp"))]

files = {}
for d, _, fs in os.walk(ROOT):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, ROOT)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            files[tuple(rel)] = p


def is_dir_module(m):
    return files[m].endswith(("mod.rs", "lib.rs", "main.rs"))


def strip(src):
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'r#"(.|\n)*?"#', '""', src)
    src = re.sub(r'"(\\.|[^"\\])*"', '""', src)
    return re.split(r"#\[cfg\(test\)\]\s*mod\s+tests", src)[0]


def expand(s):
    s = s.strip()
    if "{" not in s:
        return [s]
    head, rest = s.split("{", 1)
    inner = rest.rsplit("}", 1)[0]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if p == "self":
            out.append(head.rstrip(":"))
        elif p:
            out += [head + q for q in expand(p)]
    return out


def absolute(m, path):
    """(module, remaining segments) a path starts from, or None for external crates."""
    segs = [x.strip() for x in path.split("::") if x.strip()]
    if not segs:
        return None
    here = list(m)
    if segs[0] == "crate":
        return (), segs[1:]
    if segs[0] == "self":
        return tuple(m), segs[1:]
    if segs[0] == "super":
        cur = list(m[:-1])
        segs = segs[1:]
        while segs and segs[0] == "super":
            cur, segs = cur[:-1], segs[1:]
        return tuple(cur), segs
    if tuple(here + [segs[0]]) in files:
        return tuple(here), segs
    return None


text = {m: strip(open(p, encoding="utf-8").read()) for m, p in files.items()}
reexports = defaultdict(dict)  # module -> name -> module it is defined in
for m, t in text.items():
    for grp in re.findall(r"pub(?:\([^)]*\))?\s+use\s+([^;]+);", t):
        for path in expand(grp):
            name = path.split(" as ")[-1].strip().split("::")[-1]
            r = absolute(m, path.split(" as ")[0])
            if not r:
                continue
            cur, segs = list(r[0]), list(r[1])
            while segs and tuple(cur + [segs[0]]) in files:
                cur.append(segs.pop(0))
            if tuple(cur) != m:
                reexports[m][name] = (tuple(cur), segs)


def resolve(mod, segs, depth=0):
    cur, segs = list(mod), list(segs)
    while segs and tuple(cur + [segs[0]]) in files:
        cur.append(segs.pop(0))
    cur = tuple(cur)
    if segs and segs[0] in reexports.get(cur, {}) and depth < 8:
        target, rest = reexports[cur][segs[0]]
        return resolve(target, list(rest) + segs[1:], depth + 1)
    return cur


edges = defaultdict(set)
for m, t in text.items():
    paths = []
    for grp in re.findall(r"\buse\s+([^;]+);", t):
        paths += [p.split(" as ")[0] for p in expand(grp)]
    paths += re.findall(r"\bcrate(?:::\w+)+", t)
    paths += re.findall(r"\bsuper(?:::\w+)+", t)
    for path in paths:
        r = absolute(m, path)
        if not r:
            continue
        target = resolve(*r)
        if target != m and target in files and target != ():
            edges[m].add(target)

# Tarjan's strongly connected components.
sys.setrecursionlimit(10000)
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(comp)


for v in list(files):
    if v not in index:
        visit(v)

problems = []
for c in sccs:
    problems.append("cycle: " + ", ".join(sorted(files[x] for x in c)))
for m, targets in edges.items():
    if not m or m[0] not in LAYERS:
        continue
    for t in targets:
        if t and t[0] in LAYERS and t[0] != m[0] and m[0] != "error" and LAYERS[t[0]] > LAYERS[m[0]]:
            problems.append(f"layer: {files[m]} (layer {LAYERS[m[0]]}) uses {files[t]} (layer {LAYERS[t[0]]})")
for m, t in text.items():
    p = files[m]
    for crate, home in FENCES:
        if re.search(rf"\b{crate}::", t) and not p.startswith(os.path.join(ROOT, home) + os.sep):
            problems.append(f"fence: {crate} named outside src/{home}/: {p}")
for line in sorted(problems):
    print(line)
print(f"check-imports: {len(files)} files, {sum(len(v) for v in edges.values())} imports, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
