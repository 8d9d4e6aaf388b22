#!/usr/bin/env bash
# Creates (once) the Python venv with the reference Celery 5.7 used by fixture capture and the
# interop tests, and prints its path. Fails loudly when python3 or pip cannot provide it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
want="celery==5.7.0 kombu==5.7.0 redis packaging msgpack pyyaml backports.zstd brotli ephem==4.2.1 flower==2.0.1"
stamp="$venv/.celeriac-$(echo "$want" | md5sum | cut -c1-8)"
if [ ! -f "$stamp" ]; then
  command -v python3 >/dev/null || { echo "venv.sh: python3 is missing" >&2; exit 1; }
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
  touch "$stamp"
fi
echo "$venv"
