#!/usr/bin/env bash
# Regenerates tests/fixtures/celery-5.7 from real Python Celery 5.7 (see the README there).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$("$root/scripts/venv.sh")"
out="$root/tests/fixtures/celery-5.7"
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
cp "$out/README.md" "$out.tmp/" 2>/dev/null || true
"$venv/bin/python" "$root/scripts/capture_fixtures.py" "$out.tmp"
rm -rf "$out" && mv "$out.tmp" "$out"
