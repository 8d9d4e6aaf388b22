"""Turns the harness's JSON lines into the table written to perf/results/ (medians over runs)."""
import json
import statistics
import sys
from collections import defaultdict

lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
header = open(sys.argv[2]).read()
groups = defaultdict(list)
for r in lines:
    key = (r["impl"], r["scenario"], r["broker"], r.get("task", ""), str(r.get("stealing", r.get("rate", ""))))
    groups[key].append(r)


def med(rows, field):
    vals = [r[field] for r in rows if field in r]
    return statistics.median(vals) if vals else None


out = [header, "", "## Drain throughput (tasks/s, median of runs)", "",
       "| impl | broker | task | results | n | runs | tasks/s | CPU µs/task | Redis cmds/task | Redis CPU µs/task | note |",
       "|---|---|---|---|---|---|---|---|---|---|---|"]
best_py = {}
for (impl, scen, broker, task, _), rows in sorted(groups.items()):
    if scen != "drain":
        continue
    tps = med(rows, "tasks_per_s")
    if impl.startswith("celery-"):
        best_py[(broker, task)] = max(best_py.get((broker, task), 0), tps)
for (impl, scen, broker, task, _), rows in sorted(groups.items()):
    if scen != "drain":
        continue
    tps = med(rows, "tasks_per_s")
    note = ""
    if impl == "celeriac" and (broker, task) in best_py:
        note = f"{tps / best_py[(broker, task)]:.1f}× Python's best"
    cmds, rcpu = med(rows, "redis_cmds_per_task"), med(rows, "redis_cpu_us_per_task")
    cmds = "—" if cmds is None else f"{cmds:.2f}"
    rcpu = "—" if rcpu is None else f"{rcpu:.1f}"
    out.append(f"| {impl} | {broker} | {task} | {rows[0]['results']} | {rows[0]['n']} | {len(rows)} | {tps:,.0f} | {med(rows, 'cpu_us_per_task'):.1f} | {cmds} | {rcpu} | {note} |")
floor = [r for r in lines if r["scenario"] == "amqp_floor"]
if floor:
    f_tps = statistics.median(r["tasks_per_s"] for r in floor)
    f_pub = statistics.median(r["publish_per_s"] for r in floor)
    ours = groups.get(("celeriac", "drain", "amqp", "perf.noop", ""))
    share = f"; celeriac's drain without results is {med(ours, 'tasks_per_s') / f_tps:.0%} of it" if ours else ""
    out += ["", f"Raw AMQP floor (a 400-byte message published with confirms, consumed and acked, nothing of Celery; "
            f"{len(floor)} runs): drain {f_tps:,.0f} msgs/s, publish {f_pub:,.0f} msgs/s{share}."]
out += ["", "## Sequential round trip `delay().get()` (µs, median of runs)", "",
        "| impl | broker | n | runs | p50 | p90 | p99 | p99.9 | max |", "|---|---|---|---|---|---|---|---|---|"]
for (impl, scen, broker, task, _), rows in sorted(groups.items()):
    if scen != "rtt":
        continue
    out.append(f"| {impl} | {broker} | {rows[0]['n']} | {len(rows)} | " + " | ".join(f"{med(rows, f):,.0f}" for f in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]) + " |")
out += ["", "## Open-loop latency (µs from the scheduled send time, corrected for coordinated omission; median of runs)", "",
        "| impl | broker | rate/s | n | runs | errors | p50 | p90 | p99 | p99.9 | max | sender late p99 µs |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for (impl, scen, broker, task, rate), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], int(kv[0][4]) if kv[0][4].isdigit() else 0)):
    if scen != "open_loop":
        continue
    out.append(f"| {impl} | {broker} | {rate} | {rows[0]['n']} | {len(rows)} | {med(rows, 'errors'):.0f} | " + " | ".join(f"{med(rows, f):,.0f}" for f in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]) + (f" | {med(rows, 'sender_late_p99_us'):,.0f} |" if 'sender_late_p99_us' in rows[0] else " | — |"))
chords = {k: v for k, v in groups.items() if k[1] in ("chord", "chain")}
if chords:
    out += ["", "## Canvas on Redis (median of runs)", "",
            "| impl | chord parts | runs | body stored s | parts/s | client get s | chain links | seconds | hop p50 ms | hop p99 ms | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    impls = sorted({k[0] for k in chords})
    row = {i: (chords.get((i, "chord", "redis", "", ""), []), chords.get((i, "chain", "redis", "", ""), [])) for i in impls}
    py = [i for i in impls if i.startswith("celery-")]
    best_chord = min((med(row[i][0], "stored_seconds") for i in py if row[i][0]), default=None)
    for i in impls:
        c, ch = row[i]
        if not c or not ch:
            continue
        note = f"chord {best_chord / med(c, 'stored_seconds'):.1f}× faster than Python's best" if i == "celeriac" and best_chord else ""
        out.append(f"| {i} | {c[0]['n']} | {len(c)} | {med(c, 'stored_seconds'):.3f} | {med(c, 'parts_per_s'):,.0f} | {med(c, 'seconds'):.3f} | {ch[0]['n']} | "
                   f"{med(ch, 'seconds'):.3f} | {med(ch, 'hop_p50_ms'):.3f} | {med(ch, 'hop_p99_ms'):.3f} | {note} |")
if not any(r["scenario"] == "drain" for r in lines):
    out = [header]
beats = [r for r in lines if r["scenario"] == "beat"]
if beats:
    out += ["", "## Beat (memory://): one entry every 0.25 s beside idle entries due hourly, 10 s", "",
            f"- {beats[0]['entries']} entries, {len(beats)} runs: lateness p50 {statistics.median(b['late_p50_ms'] for b in beats):.2f} ms, "
            f"p99 {statistics.median(b['late_p99_ms'] for b in beats):.2f} ms; the process (beat, worker and the 40 runs) used "
            f"{statistics.median(b['cpu_share'] for b in beats):.1%} of a core"]
side = [r for r in lines if r["scenario"] == "beat_redis"]
if side:
    out += ["", "## Beat side by side on Redis: 10,000 entries, one every 0.25 s, 10 s from its first run", "",
            "| impl | runs | lateness p50 ms | p99 ms | beat process CPU (share of a core) |", "|---|---|---|---|---|"]
    for impl in sorted({r["impl"] for r in side}):
        rows = [r for r in side if r["impl"] == impl]
        out.append(f"| {impl} | {len(rows)} | {med(rows, 'late_p50_ms'):.2f} | {med(rows, 'late_p99_ms'):.2f} | {med(rows, 'cpu_share'):.1%} |")
pings = [r for r in lines if r["scenario"] == "ping"]
if pings:
    out += ["", "## `inspect ping` round trip on Redis (µs, median over runs of each run's p50/p99)", "",
            "| client | worker | runs | wall p50 | wall p99 | reply after publish p50 | p99 |", "|---|---|---|---|---|---|---|"]
    for key in sorted({(r["impl"], r["worker"]) for r in pings}):
        rows = [r for r in pings if (r["impl"], r["worker"]) == key]
        rp50, rp99 = med(rows, "reply_p50_us"), med(rows, "reply_p99_us")
        reply = "— | —" if rp50 is None else f"{rp50:,.0f} | {rp99:,.0f}"
        out.append(f"| {key[0]} | {key[1]} | {len(rows)} | {med(rows, 'wall_p50_us'):,.0f} | {med(rows, 'wall_p99_us'):,.0f} | {reply} |")
    if len(pings) == len(lines):
        out += ["", "## Raw lines", "", "```"] + [json.dumps(r) for r in lines] + ["```", ""]
        print("\n".join(out))
        sys.exit(0)
out += ["", "## 100,000 held ETA tasks (memory://, 2 shards)", ""]
for (impl, scen, broker, task, _), rows in sorted(groups.items()):
    if scen == "eta":
        out.append(f"- {rows[0]['held']} held: RSS {med(rows, 'rss_idle_mb'):.1f} MB idle → {med(rows, 'rss_held_mb'):.1f} MB held "
                   f"(≈ {med(rows, 'bytes_per_held'):,.0f} bytes per held task); round trip of ordinary tasks meanwhile "
                   f"p50 {med(rows, 'rtt_p50_us'):.0f} µs, p99 {med(rows, 'rtt_p99_us'):.0f} µs; shutdown returned "
                   f"{med(rows, 'returned'):.0f} in {med(rows, 'shutdown_s'):.2f} s ({len(rows)} runs)")
out += ["", "## Skew: 5 × (one 200 ms body + 100 short tasks), 2 shards, prefetch 64 (memory://)", "",
        "| stealing | runs | total s | short p50 ms | short p99 ms | stolen |", "|---|---|---|---|---|---|"]
for (impl, scen, broker, task, stealing), rows in sorted(groups.items()):
    if scen != "skew":
        continue
    out.append(f"| {stealing} | {len(rows)} | {med(rows, 'seconds'):.3f} | {med(rows, 'short_p50_ms'):.2f} | {med(rows, 'short_p99_ms'):.2f} | {med(rows, 'stolen'):.0f} |")
out += ["", "## Memory", ""]
for r in lines:
    if r["scenario"] == "idle_rss":
        out.append(f"- {r['impl']} idle worker RSS: {r['rss_mb']:.1f} MB ({r['detail']})")
for (impl, scen, broker, task, _), rows in sorted(groups.items()):
    if scen == "rtt" and "worker_rss_mb" in rows[0]:
        out.append(f"- {impl} worker RSS after the round-trip run: {med(rows, 'worker_rss_mb'):.1f} MB (all processes)")
out += ["", "## Raw lines", "", "```"] + [json.dumps(r) for r in lines] + ["```", ""]
print("\n".join(out))
