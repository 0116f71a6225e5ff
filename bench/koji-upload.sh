#!/usr/bin/env bash
# Measures kib's Koji upload against a plain HTTP POST of the same bytes over
# loopback (both in one benchmark run, to the in-process kojitest hub and a
# trivial handler writing to a file), for 64 MiB and 1 GiB files, and one
# CGImport round trip. Prints upload/plain and the peak heap in use.
#
# Usage: bench/koji-upload.sh [count]   (env: KIB_BENCH_CHUNK=bytes, KIB_BENCH_VERIFY=sha256)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1}
out=$(go test ./internal/koji/ -run '^$' -bench 'BenchmarkUpload|BenchmarkCGImport' -benchtime "${count}x" -timeout 30m)
echo "$out" | grep -E '^Benchmark'
echo
echo "$out" | awk '
/^BenchmarkUpload\// {
	name=$1; sub(/^BenchmarkUpload\//, "", name); sub(/-[0-9]+$/, "", name)
	for (i = 1; i <= NF; i++) {
		if ($(i+1) == "upload/plain") ratio=$i
		if ($(i+1) == "peak-heap-MiB") peak=$i
		if ($(i+1) == "upload-MiB/s") up=$i
		if ($(i+1) == "plain-MiB/s") plain=$i
	}
	printf "%-22s upload %7.1f MiB/s  plain %7.1f MiB/s  upload/plain %.3f (goal >= 0.8)  peak heap %.1f MiB\n", name, up, plain, ratio, peak
}
/^BenchmarkCGImport/ { printf "CGImport round trip: %.2f ms\n", $3/1e6 }'
