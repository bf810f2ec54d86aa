#!/usr/bin/env bash
# Redis server instructions per outbound delivery, counted by callgrind:
#   bash benches/redis-instructions.sh            # 3,000 deliveries
#   bash benches/redis-instructions.sh 5000
# Starts a private redis-server on 127.0.0.1:$PORT (default 6391) under
# valgrind's callgrind, runs the delivery-throughput bench against it, and
# prints one JSON line. Unlike deliveries/s, the count does not move with
# what else the machine is doing (repeat runs agree within 1%), so it
# compares two versions of the Redis scripts on a noisy machine. It counts
# the server only: not the bench process, the receiver or the kernel.
# DELIVERY_BIN runs another build of the delivery bench (an older commit's,
# to compare); it must keep its keys when BENCH_KEEP_KEYS is set.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-3000}
port=${PORT:-6391}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

cargo build --release -q -p webhook-armor-benches --bin delivery-throughput
work=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    > "$work/valgrind.log" 2>&1 &
server=$!
for _ in $(seq 1 150); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.2
done
# Count from here: start-up is not a delivery.
callgrind_control -z "$server" >/dev/null 2>&1
BENCH_KEEP_KEYS=1 REDIS_URL="redis://127.0.0.1:$port" \
    ${DELIVERY_BIN:-target/release/delivery-throughput} redis "$count" > "$work/bench.json"
callgrind_control -d "$server" >/dev/null 2>&1
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$server" || true

total=$(callgrind_annotate "$work"/callgrind.*.1 2>/dev/null \
    | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "{\"bench\":\"redis-instructions\",\"deliveries\":$count,\"redis_instructions\":$total,\"redis_instructions_per_delivery\":$((total / count)),\"commit\":\"$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)\"}"
