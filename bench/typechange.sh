#!/usr/bin/env bash
# Benchmark of issue 13's goal 3: a change of image type on a cached tree.
# Builds the qcow2 (cold pipeline cache; packages fetched into the store if
# they are not there yet), then raw (raw.xz), vhd, gce and ami with the same
# blueprint, one after the other in the same store. For each prints the
# wall time, the compression stage's time and the rest, the pipelines that
# ran, and kib's own peak RSS. Builds run one at a time under nice, each
# after sync (QUIET=0: back to back, each paying for the write-back of the last).
# Usage: [FRESH=1] [STORE=DIR] bench/typechange.sh   (root; $BENCH_DIR, default /var/tmp/speed-cache/typechange)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/var/tmp/speed-cache/typechange}
mkdir -p "$W"
. bench/cachelib.sh
warm_memory
go build -o "$W/kib" ./cmd/kib
KIB="$W/kib"
STORE=${STORE:-$W/store}
printf '[customizations]\nhostname = "bench"\n' > "$W/bp.toml"
TYPES="qcow2 raw vhd gce ami"
for t in $TYPES; do "$KIB" manifest --blueprint "$W/bp.toml" "$t" > "$W/$t.json"; done
# FRESH=1: start from an empty pipeline cache (the first qcow2 installs the
# packages); else the store's pipelines are reused (say, bench/edit.sh's).
[ "${FRESH:-0}" = 1 ] && trash "$STORE/objects"
for t in $TYPES; do
  trash "$W/out-$t"
  kib_timed "$W/$t.log" build --manifest "$W/$t.json" --store "$STORE" --output-dir "$W/out-$t"
  comp=0
  for st in xz gce-tar; do comp=$(awk "BEGIN{print $comp + $(stage_secs "$W/$t.log" $st)}"); done
  ran=$(sed -n 's/.*msg="pipeline done" pipeline=\([^ ]*\) built=true.*/\1/p' "$W/$t.log" | tr '\n' ' ')
  printf '%-6s %6.2f s  compression %6.2f s  rest %6.2f s  peak RSS %s MiB  pipelines run: %s\n' \
    "$t" "$SECS" "$comp" "$(awk "BEGIN{print $SECS - $comp}")" "$RSS" "$ran"
done
for t in $TYPES; do echo "$t stages:"; stages "$W/$t.log"; done
untrash
