#!/usr/bin/env bash
# Benchmark: `kib reproduce` of a qcow2 build in Koji (kojitest on loopback),
# from command to verdict, against a plain `kib build --manifest` of the same
# manifest in the same run. Both start with the pinned packages in the store
# and no pipeline outputs; reproduce also finds the build, downloads and
# checks the manifest, and compares the checksum.
# Usage: bench/reproduce.sh [ROUNDS]   (root; $BENCH_DIR, default /var/tmp/kib-bench-reproduce)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
export KIB_BENCH_DIR=${BENCH_DIR:-/var/tmp/kib-bench-reproduce}
mkdir -p "$KIB_BENCH_DIR"
out=$(go test ./cmd/kib -run '^$' -bench BenchmarkReproduceQCOW2 -benchtime "${ROUNDS}x" -timeout 90m -v)
echo "$out" | grep -E '^Benchmark|verdict|differs|first difference'
echo "$out" | awk '/^BenchmarkReproduceQCOW2.*build-s/ {
	for (i = 1; i <= NF; i++) {
		if ($(i+1) == "build-s") b=$i
		if ($(i+1) == "reproduce-s") r=$i
		if ($(i+1) == "reproduce/build") q=$i
	}
	printf "kib build --manifest %.1f s, kib reproduce %.1f s: reproduce/build = %.3f\n", b, r, q
}'
