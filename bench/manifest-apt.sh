#!/usr/bin/env bash
# Benchmark: `kib manifest qcow2` resolved (a) with the host's apt-get and
# (b) with apt in the root kib bootstraps for hosts without apt, both with
# warm apt lists; then (c) the root's cold bootstrap (fresh store, apt lists
# warm). Checks that (a) and (b) print the same bytes; prints the times and
# the ratio root/host.
# Usage: bench/manifest-apt.sh [ROUNDS]   (run as root; uses $BENCH_DIR, default /var/tmp/kib-bench-apt)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
W=${BENCH_DIR:-/var/tmp/kib-bench-apt}
mkdir -p "$W"
go build -o "$W/kib" ./cmd/kib
KIB="$W/kib"

now() { date +%s.%N; }
timeit() { local s e; s=$(now); "$@" >/dev/null; e=$(now); echo "$e - $s" | bc; }
manifest() { "$KIB" manifest --cache-dir "$W/cache-$1" --apt "$1" qcow2 2>/dev/null; }

# Warm both: apt lists, and the root.
manifest host > "$W/host.json"
manifest root > "$W/root.json"
cmp "$W/host.json" "$W/root.json" || { echo "host and root manifests differ" >&2; exit 1; }

for i in $(seq "$ROUNDS"); do
  h=$(timeit manifest host)
  r=$(timeit manifest root)
  printf 'round %d: host apt %.2f s, apt in kib root %.2f s, ratio %.2f\n' "$i" "$h" "$r" "$(echo "$r / $h" | bc -l)"
done
rm -rf "$W/cache-root/store"
c=$(timeit manifest root)
printf 'cold root bootstrap (fresh store) + resolve: %.2f s\n' "$c"
