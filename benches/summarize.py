#!/usr/bin/env python3
"""Turns one benches/run.sh run into results/latest.json and results/latest.md.

usage: summarize.py RUNS_DIR CRITERION_DIR OUT_DIR

Every figure comes from the JSON lines the bench binaries printed in this run
and from criterion's estimates; nothing here is measured or assumed.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def load(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def load_runs(runs, stem, figure):
    """The repeated runs `stem-1.json`, `stem-2.json`, ... (or one `stem.json`):
    the median run by `figure`, whole, so its baseline and ratio come from the
    same run, and every run's figure, sorted. (None, []) when there is none."""
    paths = sorted(Path(runs).glob(f"{stem}-[0-9]*.json")) or [Path(runs) / f"{stem}.json"]
    records = [load(p) for p in paths if p.exists()]
    if not records:
        return None, []
    records.sort(key=lambda r: r[figure])
    return records[(len(records) - 1) // 2], [r[figure] for r in records]


def spread(values):
    """' (3 runs: 9,452-11,230)' for repeated runs, '' for one."""
    if len(values) < 2:
        return ""
    return f" ({len(values)} runs: {min(values):,.0f}-{max(values):,.0f})"


def criterion_ns(criterion, group, bench, param=None):
    """Mean time per iteration in ns from criterion's estimates, or None."""
    path = Path(criterion) / group / bench
    if param is not None:
        path = path / str(param)
    estimates = path / "new" / "estimates.json"
    if not estimates.exists():
        return None
    with open(estimates) as f:
        return json.load(f)["mean"]["point_estimate"]


def recorded(runs, name):
    """A line run.sh wrote into the run's folder, or None (an older run)."""
    try:
        return (Path(runs) / name).read_text().strip() or None
    except OSError:
        return None


def machine(runs):
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The run's own record: the summary may be made later, at another commit.
    commit = recorded(runs, "commit") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    started, finished = recorded(runs, "started-at"), recorded(runs, "finished-at")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if started and finished:
        date = f"{started} to {finished[-9:]}" if started[:10] == finished[:10] else f"{started} to {finished}"
    else:
        date = started or now
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "date": date,
        "commit": commit,
    }


def cpu_us(record, key):
    """'123.4 µs' from a run that measured it, '' from an older one."""
    return f"{record[key]:.1f} µs" if key in record else ""


def percent(record, key):
    return f"{record[key]:.0f}%" if key in record else ""


def steal_during(runs):
    """The hypervisor's share of the whole run, from the /proc/stat lines
    run.sh saved at its start and end, or None."""
    try:
        start, end = (
            [int(v) for v in open(Path(runs) / name).read().split()[1:9]]
            for name in ("proc-stat-start", "proc-stat-end")
        )
    except (OSError, ValueError):
        return None
    total = sum(end) - sum(start)
    return 100.0 * (end[7] - start[7]) / total if total > 0 else None


def verdict(ok):
    return "met" if ok else "**missed**"


def main():
    runs, criterion, out = sys.argv[1:4]
    result = {"machine": machine(runs), "inbound": {}, "delivery": {}, "queue": {}, "verify": {}}
    md = []
    m = result["machine"]
    md.append(f"Measured {m['date']} at commit `{m['commit']}` on {m['cpus']} × {m['cpu']} "
              f"(Linux {m['kernel']}); load generator, servers, Redis and PostgreSQL all on this machine.")
    steal = steal_during(runs)
    if steal is not None:
        m["steal_percent"] = round(steal, 1)
        md.append(f"The hypervisor took {steal:.1f}% of the machine's CPU time over the whole run (steal).")
    md.append("")

    # Inbound pipelines.
    targets = {"guard": None, "memory": (80, 2.0), "redis": (50, 3.0), "postgres": (25, 5.0)}
    md.append("### Inbound: signed webhooks over HTTP, next to a bare axum handler")
    md.append("")
    md.append("| pipeline | req/s | bare axum req/s | ratio (target) | completed/s | p99 ack at half peak (target) | p50 / p999 | bare axum p99 at that rate |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, target in targets.items():
        path = Path(runs) / f"inbound-{name}.json"
        if not path.exists():
            continue
        r = load(path)
        half = r.get("at_half_peak", {})
        lat = half.get("ack_latency_ms", {})
        bare_lat = r["baseline"].get("at_same_rate", {}).get("ack_latency_ms", {})
        entry = {
            "requests_per_s": r["requests_per_s"],
            "completed_per_s": r["completed_per_s"],
            "baseline_requests_per_s": r["baseline"]["requests_per_s"],
            "ratio_percent": r["ratio_to_baseline_percent"],
            "errors": r["errors"] + r["baseline"]["errors"],
            "half_peak_offered_per_s": half.get("offered_per_s"),
            "half_peak_ack_latency_ms": lat,
            "bare_ack_latency_ms_at_same_rate": bare_lat,
        }
        result["inbound"][name] = entry
        label = {"guard": "guard mode (layer + handler, memory claims)",
                 "memory": "queue mode, memory", "redis": "queue mode, Redis",
                 "postgres": "queue mode, PostgreSQL (group commit)"}[name]
        if target:
            ratio = f"{entry['ratio_percent']}% (≥{target[0]}%: {verdict(entry['ratio_percent'] >= target[0])})"
            p99 = f"{lat.get('p99')} ms at {half.get('offered_per_s'):.0f}/s (<{target[1]} ms: {verdict(lat.get('p99', 1e9) < target[1])})"
        else:
            ratio = f"{entry['ratio_percent']}%"
            p99 = f"{lat.get('p99')} ms at {half.get('offered_per_s'):.0f}/s"
        md.append(f"| {label} | {entry['requests_per_s']:,.0f} | {entry['baseline_requests_per_s']:,.0f} | "
                  f"{ratio} | {entry['completed_per_s']:,.0f} | {p99} | {lat.get('p50')} / {lat.get('p999')} ms | {bare_lat.get('p99')} ms |")
    md.append("")

    rss_path = Path(runs) / "rss.json"
    if rss_path.exists():
        r = load(rss_path)
        rss = r["rss"]
        result["rss"] = {"events": r["requests"], **rss}
        md.append(f"**Memory stays flat:** {r['requests']:,} events through the memory pipeline "
                  f"(completed ids kept 2 s): RSS {rss['at_checkpoint_mib']} MiB after "
                  f"{rss['after_events']:,}, {rss['at_end_mib']} MiB at the end = "
                  f"{rss['end_vs_checkpoint_percent']}% (≤120%: {verdict(rss['end_vs_checkpoint_percent'] <= 120)}); "
                  f"{r['requests_per_s']:,.0f} req/s sustained.")
        md.append("")

    growth_path = Path(runs) / "growth-stall.json"
    if growth_path.exists():
        r = load(growth_path)
        result["growth_stall"] = r
        q, i = r["queue_ack"], r["idempotency_claim_and_complete"]
        md.append(f"**No stall while growing** (`growth-stall`, {r['ids']:,} ids kept 24 h): slowest "
                  f"memory-queue ack {q['growing']['slowest_call_ms']} ms (a queue that keeps none: "
                  f"{q['baseline_retention_zero']['slowest_call_ms']} ms), slowest idempotency claim or "
                  f"complete {i['growing']['slowest_call_ms']} ms (keeping none: "
                  f"{i['baseline_retention_zero']['slowest_call_ms']} ms).")
        md.append("")

    # Outbound delivery.
    md.append("### Outbound: signed deliveries to a local receiver, next to bare hyper POSTs")
    md.append("")
    md.append("Repeated runs show the median run (its baseline and ratio are that run's) and the range.")
    md.append("")
    md.append("Machine CPU is the busy time of the whole machine (bench, receiver, Redis or PostgreSQL, "
              "kernel; the hypervisor's steal excluded) per delivery and per bare POST: it moves less than "
              "the rates when the machine is shared. In brackets, the bench process's own share (worker, "
              "client, receiver); the rest is Redis or PostgreSQL and the kernel outside the process. "
              "Steal is the hypervisor's share of the run.")
    md.append("")
    md.append("| store | deliveries/s (target) | bare POSTs/s | ratio | machine CPU per delivery | per bare POST | steal |")
    md.append("|---|---:|---:|---:|---:|---:|---:|")
    for name, target in {"memory": 40000, "redis": 20000, "postgres": 10000}.items():
        r, values = load_runs(runs, f"delivery-{name}", "deliveries_per_second")
        if r is None:
            continue
        result["delivery"][name] = {**r, "runs_deliveries_per_second": values}
        md.append(f"| {name} | {r['deliveries_per_second']:,.0f} (≥{target:,}: {verdict(r['deliveries_per_second'] >= target)})"
                  f"{spread(values)} | "
                  f"{r['baseline_posts_per_second']:,.0f} | {r['ratio_to_baseline_percent']:.0f}% | "
                  f"{cpu_us(r, 'machine_cpu_us_per_delivery')}"
                  + (f" ({cpu_us(r, 'bench_process_cpu_us_per_delivery')} in the bench process)"
                     if 'bench_process_cpu_us_per_delivery' in r else "")
                  + f" | {cpu_us(r, 'baseline_machine_cpu_us_per_post')} | "
                  f"{percent(r, 'steal_percent')} |")
    md.append("")
    instructions_path = Path(runs) / "redis-instructions.json"
    if instructions_path.exists():
        r = load(instructions_path)
        result["redis_instructions"] = r
        md.append(f"**Redis server instructions per delivery** (`benches/redis-instructions.sh`, "
                  f"callgrind, {r['deliveries']:,} deliveries): {r['redis_instructions_per_delivery']:,}. "
                  "A count, not a time: it moves 1-2% between runs whatever else the machine does, "
                  "so it compares the Redis scripts across runs and machines where the rates cannot.")
        md.append("")

    # Queue alone.
    md.append("### Queue alone: enqueue + lease + ack")
    md.append("")
    md.append("| backend | producers | jobs/s (target) | baseline |")
    md.append("|---|---:|---:|---|")
    # The PostgreSQL targets are judged at 64 producers, the concurrency of
    # the inbound load generator; the other rows show how group commit scales.
    runs_and_targets = {"memory": None, "redis": 30000, "postgres": None,
                        "postgres-p64": 20000, "postgres-p128": None, "postgres-unbatched": 5000}
    for name, target in runs_and_targets.items():
        r, values = load_runs(runs, f"queue-{name}", "jobs_per_second")
        if r is None:
            continue
        result["queue"][name] = {**r, "runs_jobs_per_second": values}
        goal = f" (≥{target:,}: {verdict(r['jobs_per_second'] >= target)})" if target else ""
        bare = "bare Redis list" if name == "redis" else "bare PostgreSQL table"
        base = (f"{bare} {r['baseline_jobs_per_second']:,.0f}/s, ratio {r['ratio_to_baseline']:.0f}%"
                if "baseline_jobs_per_second" in r else "")
        label = {"postgres": "postgres (group commit)", "postgres-p64": "postgres (group commit)",
                 "postgres-p128": "postgres (group commit)",
                 "postgres-unbatched": "postgres (a transaction per enqueue and per ack)"}.get(name, name)
        md.append(f"| {label} | {r['producers']} | {r['jobs_per_second']:,.0f}{goal}{spread(values)} | {base} |")
    md.append("")

    # Verification next to raw HMAC.
    md.append("### Verification next to a raw HMAC-SHA256 of the same body (criterion, mean)")
    md.append("")
    md.append("| body | raw HMAC | Standard Webhooks | Stripe | GitHub | Slack | Shopify | worst ratio (≤1.2×) |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    schemes = ["standard-webhooks", "stripe", "github", "slack", "shopify"]
    for size in [256, 1024, 65536]:
        raw = criterion_ns(criterion, "verify", "raw-hmac-sha256", size)
        if raw is None:
            continue
        cells, worst = [], 0.0
        row = {"raw_hmac_ns": raw}
        for scheme in schemes:
            ns = criterion_ns(criterion, "verify", scheme, size)
            if ns is None:
                cells.append("–")
                continue
            ratio = ns / raw
            worst = max(worst, ratio)
            row[scheme] = {"ns": ns, "ratio": round(ratio, 3)}
            cells.append(f"{ns / 1000:.2f} µs ({ratio:.2f}×)")
        result["verify"][size] = row
        md.append(f"| {size:,} B | {raw / 1000:.2f} µs | " + " | ".join(cells)
                  + f" | {worst:.2f}× {verdict(worst <= 1.2)} |")
    md.append("")
    layer = {k: criterion_ns(criterion, "layer-1KiB", k)
             for k in ["bare-service", "armored-guard-mode", "armored-queue-mode"]}
    if all(layer.values()):
        result["layer"] = layer
        md.append(f"Tower layer, 1 KiB body, in process (criterion): bare service {layer['bare-service'] / 1000:.2f} µs, "
                  f"guard mode {layer['armored-guard-mode'] / 1000:.2f} µs, queue mode into the memory queue "
                  f"{layer['armored-queue-mode'] / 1000:.2f} µs per request.")
        md.append("")

    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "latest.json", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(Path(out) / "latest.md", "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
