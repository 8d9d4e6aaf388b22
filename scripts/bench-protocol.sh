#!/usr/bin/env bash
# Runs the criterion benchmarks (benches/protocol.rs: decode, encode, parsers; benches/worker.rs:
# the memory queue and dispatch through a one-shard worker) and writes a dated table to
# perf/results/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="perf/results/$(date -u +%F)-protocol-bench.txt"
raw="$(mktemp)"
cargo bench --bench protocol --bench worker 2>/dev/null | tee "$raw" >/dev/null
{
  echo "# cargo bench --bench protocol --bench worker, $(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), rustc $(rustc --version | cut -d' ' -f2)"
  echo "# criterion estimate [low mid high] per iteration; shared, noisy machine: compare rows within one run"
  python3 - "$raw" <<'PY'
import re, sys
name = None
for line in open(sys.argv[1]):
    line = line.rstrip()
    m = re.match(r'^(\S+/\S+)\s*(time:.*)?$', line)
    if m and not line.startswith(' '):
        name = m.group(1)
        if m.group(2):
            print(f"{name:<40} {m.group(2)}"); name = None
        continue
    t = re.match(r'^\s+time:\s+(\[.*\])$', line)
    if t and name:
        print(f"{name:<40} time: {t.group(1)}"); name = None
PY
} > "$out"
rm -f "$raw"
cat "$out"
