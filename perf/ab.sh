#!/usr/bin/env bash
# A/B of two builds of the harness, alternating on one private redis-server (the only fair
# comparison on a shared, noisy machine): old, new, old, new …
#
#   perf/ab.sh OLD_REV [ROUNDS] [SCENARIOS]
#
# builds OLD_REV's harness in target-ab/ (a temporary git worktree) and this tree's in target/,
# then runs each scenario (default: drain_add drain_noop on Redis, n = 100000) ROUNDS times per
# side (default 3), printing one line per run: side, the harness's JSON line, and what was left in
# kombu's unacked bookkeeping afterwards. Stops its server by PID.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
old_rev="${1:?usage: perf/ab.sh OLD_REV [ROUNDS] [SCENARIOS]}"
rounds="${2:-3}"
scenarios="${3:-drain_add drain_noop}"
n="${N:-100000}"
command -v redis-server >/dev/null || { echo "ab.sh: redis-server is missing (scripts/test.sh installs it)" >&2; exit 1; }

wt="$(mktemp -d)"
git worktree add -q --detach "$wt" "$old_rev"
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
(cd "$wt" && CARGO_TARGET_DIR="$root/target-ab" cargo build --release --quiet --example perf)
cargo build --release --quiet --example perf

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
rdir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$rdir" --loglevel warning --daemonize no >/dev/null 2>&1 &
rpid=$!
trap 'kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; rm -rf "$rdir"; git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
url="redis://127.0.0.1:$port/0"

for _ in $(seq "$rounds"); do
  for s in $scenarios; do
    for side in old new; do
      bin=target/release/examples/perf
      [ "$side" = old ] && bin=target-ab/release/examples/perf
      # An old build may not check its own drains: read what it left behind here (the new
      # harness fails its run itself when anything is left).
      line="$("$bin" --broker "$url" --n "$n" --scenario "$s" || echo '{"failed": true}')"
      echo "$side $line unacked=$(redis-cli -p "$port" hlen unacked) unacked_index=$(redis-cli -p "$port" zcard unacked_index)"
    done
  done
done
