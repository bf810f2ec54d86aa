#!/usr/bin/env bash
# The whole benchmark table on this machine, in one run:
#   bash benches/run.sh            # full table (about 10 minutes on 2 cores)
#   QUICK=1 bash benches/run.sh    # smaller counts, for a smoke run
# Needs the local Redis and PostgreSQL (REDIS_URL / DATABASE_URL to move them).
# Writes benches/results/latest.json and benches/results/latest.md; the raw
# JSON line of every run stays in target/bench-runs/.
set -euo pipefail
cd "$(dirname "$0")/.."

# The throughput runs (delivery, queue) are repeated and the table shows the
# median run, with the range: on a shared 2-core machine one run of these
# varies by 20% and more. REPEAT overrides the count.
if [[ -n "${QUICK:-}" ]]; then
    repeat=${REPEAT:-1}
    inbound=20000 rss_total=300000 rss_checkpoint=100000 growth_ids=500000 deliveries=10000 pg_deliveries=5000 jobs=20000 unbatched_jobs=5000
    criterion_args=(--warm-up-time 0.5 --measurement-time 1)
else
    repeat=${REPEAT:-3}
    inbound=100000 rss_total=1000000 rss_checkpoint=100000 growth_ids=4000000 deliveries=50000 pg_deliveries=20000 jobs=100000 unbatched_jobs=30000
    criterion_args=(--warm-up-time 1 --measurement-time 3)
fi

cargo build --release -q -p webhook-armor-benches --bins
bin=target/release
runs=target/bench-runs
rm -rf "$runs" && mkdir -p "$runs"
# The machine's CPU counters, so the summary can say how much of the run the
# hypervisor gave to other guests (steal).
head -1 /proc/stat > "$runs/proc-stat-start"
# What was measured and when, for the summary (which may run later).
date -u +"%Y-%m-%d %H:%M UTC" > "$runs/started-at"
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!benches/results' || echo -dirty)" > "$runs/commit"

step() { echo "== $*" >&2; }

# Inbound: each pipeline next to the bare axum baseline (closed loop, 64 in
# flight), then an open-loop run at half the measured peak for p99 latency.
for target in guard memory redis postgres; do
    step "inbound $target ($inbound webhooks, then at half of peak; bare baseline)"
    "$bin/loadgen" --spawn "$target" --baseline --half-peak -n "$inbound" > "$runs/inbound-$target.json"
done

step "memory stays flat: $rss_total events, RSS after $rss_checkpoint and at the end"
"$bin/loadgen" --spawn memory -n "$rss_total" --rss-after "$rss_checkpoint" \
    --retention-secs 2 --warmup 0 > "$runs/rss.json"

step "no stall while growing: the slowest call into the memory stores up to $growth_ids ids"
"$bin/growth-stall" "$growth_ids" > "$runs/growth-stall.json"

# Round after round, so a slow stretch of the machine lands in one run of
# each rather than in every run of one.
for round in $(seq 1 "$repeat"); do
    for backend in memory redis postgres; do
        count=$deliveries
        [[ $backend == postgres ]] && count=$pg_deliveries
        step "round $round/$repeat: outbound delivery $backend ($count messages; bare hyper client baseline)"
        "$bin/delivery-throughput" "$backend" "$count" > "$runs/delivery-$backend-$round.json"
    done

    for backend in memory redis postgres; do
        step "round $round/$repeat: queue enqueue+lease+ack $backend ($jobs jobs)"
        "$bin/queue-throughput" "$backend" "$jobs" > "$runs/queue-$backend-$round.json"
    done
    # Group commit grows with the number of concurrent producers (concurrent
    # requests); 64 is the load generator's concurrency above.
    for producers in 64 128; do
        step "round $round/$repeat: queue enqueue+lease+ack postgres, $producers producers ($jobs jobs)"
        PRODUCERS=$producers "$bin/queue-throughput" postgres "$jobs" > "$runs/queue-postgres-p$producers-$round.json"
    done
    step "round $round/$repeat: queue enqueue+lease+ack postgres, one transaction per enqueue and per ack ($unbatched_jobs jobs)"
    "$bin/queue-throughput" postgres-unbatched "$unbatched_jobs" > "$runs/queue-postgres-unbatched-$round.json"
done

if command -v valgrind >/dev/null; then
    step "Redis server instructions per delivery (callgrind, a private redis-server)"
    bash benches/redis-instructions.sh 3000 > "$runs/redis-instructions.json"
else
    step "no valgrind: Redis instructions per delivery skipped"
fi

step "criterion: verification per scheme next to raw HMAC-SHA256; the layer next to the bare service"
cargo bench -q -p webhook-armor-benches --bench verify --bench pipeline -- "${criterion_args[@]}" \
    > "$runs/criterion.txt" 2>&1

head -1 /proc/stat > "$runs/proc-stat-end"
date -u +"%Y-%m-%d %H:%M UTC" > "$runs/finished-at"
python3 benches/summarize.py "$runs" target/criterion benches/results
