#!/usr/bin/env bash
# Measures kib kojid against the in-process kojitest hub (one run):
#  1. the time from the imageBuilderBuild call to the host's openTask,
#     median and p90 of 50 tasks, with the poll interval KIB_BENCH_INTERVAL
#     (default 1s; goal: median under 1 s);
#  2. a whole imageBuilderBuild task of a tar image (resolve, build, upload,
#     import, tag) against `kib build tar` from the same store state, first
#     both from an empty store, then both from their warm stores
#     (goal: task/build at most 1.10).
# Needs root (real image builds). Numbers on a loaded machine are noisy.
#
# Usage: bench/kojid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o kib ./cmd/kib
export KIB_BIN=$PWD/kib
out=$(go test ./internal/kojid/ -run '^$' -bench 'BenchmarkOpenLatency|BenchmarkTaskVsBuild' -benchtime 1x -timeout 60m)
echo "$out" | grep -E '^Benchmark'
echo
echo "$out" | awk '
function metric(name,   i) { for (i = 1; i <= NF; i++) if ($(i+1) == name) return $i; return "?" }
/^BenchmarkOpenLatency/ {
	printf "imageBuilderBuild -> openTask: median %.3f s, p90 %.3f s (poll interval %s s; goal: median < 1 s)\n", metric("median-s"), metric("p90-s"), metric("poll-interval-s")
}
/^BenchmarkTaskVsBuild/ {
	printf "cold store: kib build %.1f s, kojid task %.1f s, task/build %.3f (goal <= 1.10)\n", metric("cold-build-s"), metric("cold-task-s"), metric("cold-task/build")
	printf "warm store: kib build %.1f s, kojid task %.1f s, task/build %.3f (goal <= 1.10)\n", metric("warm-build-s"), metric("warm-task-s"), metric("warm-task/build")
}'
