#!/usr/bin/env bash
# Minor page faults per second of the decnet broker, publisher and subscriber
# over one second of a 64 KiB payload run (bench/scale_payload.py, N = 1),
# read from /proc/PID/stat. Arguments, if any, are environment assignments for
# every process of the run, e.g.:
#   bash bench/scale_faults.sh
#   bash bench/scale_faults.sh MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_MMAP_THRESHOLD_=67108864
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
env "$@" .venv/bin/python bench/scale_payload.py --systems decnet --sizes 65536 --mib 4096 --max-events 40000 \
    --rounds 1 >"$log" 2>&1 &
run=$!
sleep 3  # past the start of the processes, inside the 40,000 events
broker=$(pgrep -f "decnet bus --socket /tmp/scale-decnet" | head -1)
pub=$(pgrep -f "fanout_worker.py pub decnet" | head -1)
sub=$(pgrep -f "fanout_worker.py sub decnet" | head -1)
faults() { awk '{print $10}' "/proc/$1/stat"; }
b0=$(faults "$broker"); p0=$(faults "$pub"); s0=$(faults "$sub")
sleep 1
b1=$(faults "$broker"); p1=$(faults "$pub"); s1=$(faults "$sub")
echo "minor faults/s: broker $((b1 - b0)), publisher $((p1 - p0)), subscriber $((s1 - s0))"
wait "$run" || true
grep "round" "$log"
rm -f "$log"
