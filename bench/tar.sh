#!/usr/bin/env bash
# Benchmark: the same tar image from the same pinned package list, built in
# one run (a) by kib with a cold store (packages cached, no pipeline cache) and
# (b) by the plain tools in a shell pipeline (local repo + mmdebstrap, then
# tar + xz with the same settings); then (c) kib's warm rebuild of the
# unchanged manifest. Prints the times and the ratio kib/plain.
# Usage: bench/tar.sh [ROUNDS]   (run as root; uses $BENCH_DIR, default /var/tmp/kib-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
W=${BENCH_DIR:-/var/tmp/kib-bench}
mkdir -p "$W"
go build -o "$W/kib" ./cmd/kib
KIB="$W/kib"
. bench/lib.sh

"$KIB" manifest --distro debian-12 --arch x86_64 tar > "$W/manifest.json"
STORE="$W/store"
# Fill the store's package cache (and nothing else) once.
"$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/warmup" >/dev/null 2>&1
SDE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_date_epoch"])' "$W/manifest.json")
LEVEL=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["pipelines"][1]["stages"][0]["options"]["level"])' "$W/manifest.json")
pins "$W/manifest.json" > "$W/pins.txt"

plain() {
  local d="$W/plain"; rm -rf "$d"; mkdir -p "$d"
  plain_rootfs "$STORE" "$W/pins.txt" "$SDE" "$d/root"
  tar --create --file=- --directory="$d/root" --sort=name --numeric-owner --format=pax \
    --mtime=@$SDE --clamp-mtime --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --xattrs --xattrs-include='*' --anchored . | xz -T0 -$LEVEL -c > "$d/root.tar.xz"
}

kib_cold() {
  rm -rf "$STORE/objects" "$W/out"
  "$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/out" >/dev/null 2>&1
}
kib_warm() {
  rm -rf "$W/out2"
  "$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/out2" >/dev/null 2>&1
}

tk=0; tp=0; tw=0
for r in $(seq "$ROUNDS"); do
  s=$(now); kib_cold; e=$(now); k=$(awk "BEGIN{print $e - $s}")
  s=$(now); plain;    e=$(now); p=$(awk "BEGIN{print $e - $s}")
  s=$(now); kib_warm; e=$(now); w=$(awk "BEGIN{print $e - $s}")
  printf 'round %d: kib cold %.2f s, plain %.2f s, kib warm %.2f s\n' "$r" "$k" "$p" "$w"
  tk=$(awk "BEGIN{print $tk + $k}"); tp=$(awk "BEGIN{print $tp + $p}"); tw=$(awk "BEGIN{print $tw + $w}")
done
printf 'xz level %s, %s packages, image %s bytes\n' "$LEVEL" "$(wc -l < "$W/pins.txt")" "$(stat -c %s "$W/out/archive/root.tar.xz")"
printf 'kib/plain = %.3f (kib %.2f s, plain %.2f s over %d rounds); warm rebuild %.2f s\n' \
  "$(awk "BEGIN{print $tk / $tp}")" "$(awk "BEGIN{print $tk / $ROUNDS}")" "$(awk "BEGIN{print $tp / $ROUNDS}")" "$ROUNDS" "$(awk "BEGIN{print $tw / $ROUNDS}")"
