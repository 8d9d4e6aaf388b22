#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh Debian machine,
# then runs every test. Servers the tests use are started by the tests themselves on loopback
# ports and stopped by PID when each test ends. Anything missing is a loud failure, never a skip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
[ -x /usr/sbin/rabbitmq-server ] || need_pkgs+=(rabbitmq-server)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-venv)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_pkgs[*]} with apt-get" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# redis-server and rabbitmq-server from Debian start system services (not where policy-rc.d
# denies it); the tests run their own private instances on free loopback ports.
command -v redis-server >/dev/null || { echo "test.sh: redis-server is still missing" >&2; exit 1; }
[ -x /usr/sbin/rabbitmq-server ] || { echo "test.sh: rabbitmq-server is still missing" >&2; exit 1; }
command -v rabbitmqctl >/dev/null || { echo "test.sh: rabbitmqctl is missing" >&2; exit 1; }
command -v epmd >/dev/null || { echo "test.sh: epmd (erlang) is missing" >&2; exit 1; }
command -v cargo >/dev/null || { echo "test.sh: cargo is missing" >&2; exit 1; }

venv="$("$root/scripts/venv.sh")"
"$venv/bin/python" -c "import celery, kombu; assert celery.__version__ == '5.7.0', celery.__version__" \
  || { echo "test.sh: the venv does not hold celery 5.7.0" >&2; exit 1; }

# The import graph (DESIGN §1): no cycle between files, no layer used from below, runtime and
# wire crates only in their folders.
python3 "$root/scripts/check-imports.py" "$root/src"

export CELERIAC_PYTHON="$venv/bin/python"
export CELERIAC_REDIS_SERVER="$(command -v redis-server)"
export CELERIAC_RABBITMQ_SERVER=/usr/sbin/rabbitmq-server
cargo test --all-features --no-run "$@"

# A test that hangs must fail the run with a picture of where it hangs, not eat CI's time: past
# the limit, the threads of the test binaries still running are printed (gdb, when present), and
# the whole run is killed as one process group, with the servers and workers the tests started.
limit="${CELERIAC_TEST_TIMEOUT:-1200}"
setsid cargo test --all-features "$@" &
tests=$!
trap 'kill -TERM -- "-$tests" 2>/dev/null; exit 130' INT TERM
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$limit" &
  nap=$!
  wait "$nap"
  echo "test.sh: the tests are still running after ${limit}s; where they are:" >&2
  for pid in $(pgrep -f "$root/target/debug/deps/" || true); do
    echo "--- pid $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" >&2
    if command -v gdb >/dev/null; then
      gdb -batch -ex "thread apply all bt" -p "$pid" 2>/dev/null \
        | grep -E '^(Thread |#[0-9]+ +0x[0-9a-f]+ in (celeriac|it)::)' | cut -c1-240 >&2 || true
    else
      for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(cat "$t/wchan" 2>/dev/null)" >&2; done
    fi
  done
  kill -KILL -- "-$tests" 2>/dev/null || true
) &
watchdog=$!
rc=0
wait "$tests" || rc=$?
kill "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
[ "$rc" -eq 0 ] || { echo "test.sh: cargo test failed (exit $rc)" >&2; exit "$rc"; }
cargo check --benches --quiet
