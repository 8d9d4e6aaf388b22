#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh Debian machine,
# then runs every test. Servers the tests use are started by the tests themselves on loopback
# ports and stopped by PID when each test ends. Anything missing is a loud failure, never a skip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-venv)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_pkgs[*]} with apt-get" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# redis-server from Debian starts a system service; the tests run their own instances.
command -v redis-server >/dev/null || { echo "test.sh: redis-server is still missing" >&2; exit 1; }
command -v cargo >/dev/null || { echo "test.sh: cargo is missing" >&2; exit 1; }

venv="$("$root/scripts/venv.sh")"
"$venv/bin/python" -c "import celery, kombu; assert celery.__version__ == '5.7.0', celery.__version__" \
  || { echo "test.sh: the venv does not hold celery 5.7.0" >&2; exit 1; }

export CELERIAC_PYTHON="$venv/bin/python"
export CELERIAC_REDIS_SERVER="$(command -v redis-server)"
cargo test --all-features "$@"
cargo check --benches --quiet
