#!/usr/bin/env bash
# End-to-end benchmark, celeriac and Python Celery 5.7 side by side in one run on this machine.
# Starts its own redis-server on a free loopback port (stopped by PID at the end), runs every
# scenario RUNS times (default 3), and writes perf/results/<date>-e2e.md. ONLY=canvas runs the
# canvas scenario alone (both sides) and writes perf/results/<date>-canvas.md; ONLY=ping the
# `inspect ping` round trips alone (perf/results/<date>-ping.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
RUNS="${RUNS:-3}"; N="${N:-200000}"; PY_N="${PY_N:-5000}"; RTT="${RTT:-3000}"; PY_RTT="${PY_RTT:-500}"
AMQP_N="${AMQP_N:-50000}"; CHORD_N="${CHORD_N:-10000}"; CHAIN_N="${CHAIN_N:-1000}"
command -v redis-server >/dev/null || { echo "bench.sh: redis-server is missing (scripts/test.sh installs it)" >&2; exit 1; }
[ -x /usr/sbin/rabbitmq-server ] || { echo "bench.sh: rabbitmq-server is missing (scripts/test.sh installs it)" >&2; exit 1; }
venv="$("$root/scripts/venv.sh")"
cargo build --release --quiet --example perf --example proj

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
rdir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$rdir" --loglevel warning --daemonize no >/dev/null 2>&1 &
rpid=$!
worker_pid=""
# A private RabbitMQ node (the Debian package runs it as user rabbitmq in a session of its own):
# stopped by the PID in its pid file, its epmd by `epmd -kill`.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
aport="$(free_port)"; epmd_port="$(free_port)"; adir="$(mktemp -d)"
mkdir -p "$adir/mnesia" "$adir/log"; echo "[]." >"$adir/enabled_plugins"; chown -R rabbitmq "$adir"
( cd "$adir" && RABBITMQ_NODE_PORT="$aport" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODENAME="bench$aport@localhost" \
  RABBITMQ_MNESIA_BASE="$adir/mnesia" RABBITMQ_LOG_BASE="$adir/log" RABBITMQ_DIST_PORT="$(free_port)" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$adir/enabled_plugins" RABBITMQ_PID_FILE="$adir/pid" ERL_EPMD_PORT="$epmd_port" \
  setsid /usr/sbin/rabbitmq-server >"$adir/server.out" 2>&1 & )
stop_rabbit() {
  if [ -f "$adir/pid" ]; then
    apid="$(cat "$adir/pid")"; kill "$apid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$apid" 2>/dev/null || true
  fi
  epmd -port "$epmd_port" -kill >/dev/null 2>&1 || true
  rm -rf "$adir"
}
cleanup() { [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null || true; kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; rm -rf "$rdir"; stop_rabbit; }
trap cleanup EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
url="redis://127.0.0.1:$port/0"
for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$aport") 2>/dev/null && break; sleep 0.1; done
(echo >"/dev/tcp/127.0.0.1/$aport") 2>/dev/null || { echo "bench.sh: rabbitmq-server did not start: $(cat "$adir/server.out")" >&2; exit 1; }
amqp="amqp://guest:guest@127.0.0.1:$aport//"
raw="$(mktemp)"

canvas_run() {
  echo "run $1/$RUNS: celeriac canvas (redis)" >&2
  target/release/examples/perf --broker "$url" --scenario canvas --chord "$CHORD_N" --chain "$CHAIN_N" >>"$raw"
  # Python's best pool for canvas (-P solo runs the parts one by one).
  echo "run $1/$RUNS: Python Celery 5.7 canvas (redis)" >&2
  (cd perf && PERF_BROKER="$url" PY_CANVAS_POOLS=prefork:2 "$venv/bin/python" pycanvas.py "$CHORD_N" "$CHAIN_N") >>"$raw"
}

ping_run() {
  echo "run $1/$RUNS: inspect ping side by side (redis; celeriac and Python clients, celeriac and Python workers)" >&2
  "$venv/bin/python" perf/pingcmp.py "$url" target/release/examples/proj target/release/examples/perf "${PING_N:-300}" >>"$raw"
}

for i in $(seq "$RUNS"); do
  if [ "${ONLY:-}" = canvas ]; then canvas_run "$i"; continue; fi
  if [ "${ONLY:-}" = ping ]; then ping_run "$i"; continue; fi
  echo "run $i/$RUNS: celeriac memory://" >&2
  target/release/examples/perf --broker memory:// --n "$N" --rtt "$RTT" --rates 10000,50000 >>"$raw"
  target/release/examples/perf --scenario memory_floor --rtt "$RTT" >>"$raw"
  echo "run $i/$RUNS: celeriac redis" >&2
  target/release/examples/perf --broker "$url" --n "$N" --rtt "$RTT" --rates 200,1000,10000 >>"$raw"
  target/release/examples/perf --broker "$url" --scenario redis_floor --rtt "$RTT" >>"$raw"
  target/release/examples/perf --scenario skew >>"$raw"
  target/release/examples/perf --scenario eta --n 100000 >>"$raw"
  echo "run $i/$RUNS: celeriac beat (memory://, 10,000 idle entries)" >&2
  target/release/examples/perf --scenario beat --entries 10000 --seconds 10 >>"$raw"
  echo "run $i/$RUNS: beat side by side on redis (celeriac proj beat, Python celery beat; 10,000 entries)" >&2
  "$venv/bin/python" perf/beatcmp.py "$url" target/release/examples/proj 10000 10 >>"$raw"
  echo "run $i/$RUNS: celeriac amqp (results in redis)" >&2
  target/release/examples/perf --broker "$amqp" --results "$url" --scenario drain --n "$AMQP_N" >>"$raw"
  target/release/examples/perf --broker "$amqp" --results "$url" --scenario rtt --rtt "$RTT" >>"$raw"
  target/release/examples/perf --broker "$amqp" --scenario amqp_floor --n "$AMQP_N" >>"$raw"
  echo "run $i/$RUNS: Python Celery 5.7" >&2
  (cd perf && PERF_BROKER="$url" PY_RATES=200,1000 "$venv/bin/python" pyperf.py "$PY_N" "$PY_RTT") >>"$raw"
  (cd perf && PERF_BROKER="$amqp" PERF_RESULTS="$url" "$venv/bin/python" pyperf_amqp.py "$PY_N" "$PY_RTT") >>"$raw"
  canvas_run "$i"
  ping_run "$i"
done

# Idle worker RSS: examples/proj on Redis, one second after start.
if [ -z "${ONLY:-}" ]; then
redis-cli -p "$port" flushdb >/dev/null
target/release/examples/proj worker -b "$url" --result-backend "$url" -c 2 -l error >/dev/null 2>&1 &
worker_pid=$!
sleep 1.5
rss_mb="$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$worker_pid/status)"
kill "$worker_pid"; wait "$worker_pid" 2>/dev/null || true; worker_pid=""
echo "{\"impl\": \"celeriac\", \"scenario\": \"idle_rss\", \"broker\": \"redis\", \"rss_mb\": $rss_mb, \"detail\": \"examples/proj worker -c 2 on redis, 1.5 s after start\"}" >>"$raw"
fi

out="perf/results/$(date -u +%F)-${ONLY:-e2e}.md"
head="$(mktemp)"
{
  echo "# End-to-end: celeriac vs Python Celery 5.7, $(date -u '+%F %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem/ {print $2}') GiB, shared and noisy; redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2) on loopback on the same 2 cores."
  echo "Versions: celeriac $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2), rustc $(rustc --version | cut -d' ' -f2), celery $("$venv/bin/python" -c 'import celery; print(celery.__version__)'), kombu $("$venv/bin/python" -c 'import kombu; print(kombu.__version__)'), Python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')."
  echo
  echo "Semantics: default (early) acks; json; 'results true' = add(i, i) with the result stored in the same Redis (memory:// for the in-process runs), 'false' = a no-op with ignore_result."
  echo "Drain = N messages loaded with no worker running, then the worker starts; celeriac: seconds from worker start until all N processed and its shutdown flushed every result and ack (start-up included); Python: from the worker's first progress (the queue shrinks) until the queue and unacked are empty and, with results, every result key exists — Python's ~1.5 s start-up is excluded."
  echo "celeriac: $N tasks, 2 shards, prefetch 64/shard, in one process with the client; Python: $PY_N tasks, worker with -P solo -c 1 and -P prefork -c 2."
  echo "Round trip = sequential delay().get() from a client in the same process as the worker (celeriac) or a separate Python client process (Python). 'floor (raw RESP)' = the least any Celery-shaped round trip can cost here: raw RESP on blocking sockets, a client LPUSH, a worker thread's BLPOP and PUBLISH, the client's SUBSCRIBEd read (four sleeping-thread wake-ups, no decoding, no result stored); 'redis PING' = one PING round trip on the same connection kind (two wake-ups). 'floor (thread|glommio executor, same|other CPU)' = the least an in-process round trip can cost: a value sent to a peer pinned to CPU 0 that sends it straight back, from a client pinned to CPU 0 or 1."
  echo "Open loop = add tasks sent at a fixed rate for 2 s; latency from each scheduled send time to the result reaching the client (celeriac: get_async on a one-thread tokio runtime fed by a sender thread; Python: a PSUBSCRIBE listener thread in the sending process)."
  echo "Canvas = a chord of $CHORD_N add parts into tsum: seconds from the first send until the worker stored the body's result (send included; 'client get' adds the client's own get(), where Python drains a pub/sub message per header result first), and a chain of $CHAIN_N add links, seconds to the last result; a hop is one step's date_done to the next's. Worker warmed first; celeriac: 2 shards in the client's process; Python: -P prefork -c 2 (its best; -P solo needs 130 s for the chord)."
  echo "inspect ping = one node pinged ${PING_N:-300} times in a row on Redis (perf/pingcmp.py), by name, from Python Celery's client (app.control.inspect(destination=[node], limit=1).ping(): the call's wall time) and from celeriac's (Client::inspect(): the call's wall time, and the reply's time after the request's publish); both clients keep their reply queue between calls (kombu's per-thread oid; celeriac's Client keeps it bound), Celery's declares it and starts a consumer on each call. Workers: examples/proj worker -c 2, tests/python/pyproj.py -P solo."
  echo "celeriac's harness binary uses mimalloc as its global allocator, a one-line choice of the embedding program (perf/README.md: Performance tuning)."
} >"$head"
"$venv/bin/python" perf/report.py "$raw" "$head" >"$out" \
  || { echo "bench.sh: the report failed; the raw lines are kept in $raw" >&2; exit 1; }
rm -f "$raw" "$head"
cat "$out"
