#!/bin/sh
# osbuildImage in kib kojid (remote mode against kib serve's compose service
# on a kojitest hub):
#  1. latency from the compose finishing in kib serve (the finalize job's
#     finish time) to the Koji task closing, tagBuild subtask included, with
#     kib's adaptive polling and with the builder plugin's fixed 2 s polling
#     as the baseline (goal: median under 250 ms);
#  2. with KIB_BENCH_REAL=1, the whole task building a real tar image against
#     `kib build tar` with a fresh store each (goal: at most 1.15x).
#     KIB_BENCH_MIRROR sets the Debian mirror (default deb.debian.org).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
go test -run '^$' -bench BenchmarkOSBuildImageLatency -benchtime 20x -timeout 30m ./internal/kojid/
if [ -n "${KIB_BENCH_REAL:-}" ]; then
  go build -o kib ./cmd/kib
  d=$(mktemp -d)
  trap 'rm -rf "$d"' EXIT
  t=$(now)
  ./kib build --distro debian-12 --arch x86_64 --store "$d/store" --cache-dir "$d/cache" --output-dir "$d/out" tar >/dev/null
  base=$(el "$t" "$(now)")
  task=$(KIB_BENCH_REAL=1 go test -run '^$' -bench BenchmarkOSBuildImageRealBuild -benchtime 1x -timeout 60m ./internal/kojid/ |
    awk '/KOJID_OSBUILD_TASK_SECONDS/ {print $2}')
  echo "kib build tar: ${base}s; osbuildImage task (tar): ${task}s; ratio $(awk "BEGIN{printf \"%.2f\", $task / $base}")"
fi
