#!/usr/bin/env bash
# Measures the Azure page-blob upload of a sparse 4 GiB VHD (holes and zero
# ranges skipped) against uploading every byte (the baseline), both in one
# run against the same Azurite, started here on its own port with its
# blobs on disk (a dense 4 GiB blob does not belong in memory). Prints the
# time of each, the bytes each sent and the ratio dense/sparse.
#
# Usage: bench/upload-azure.sh   (env: KIB_BENCH_VHD_GIB, default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${KIB_TOOLS:-$HOME/.cache/kib}/azurite
.ci/azurite.sh >/dev/null # installs Azurite if needed
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kib-bench-azure.XXXXXX")
port=10010
"$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort $port --location "$work/azurite" \
	--disableTelemetry --skipApiVersionCheck --loose >"$work/azurite.log" 2>&1 </dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
until curl -s -o /dev/null "http://127.0.0.1:$port/devstoreaccount1?comp=list"; do sleep 0.2; done
out=$(KIB_TEST_AZURITE="http://127.0.0.1:$port/devstoreaccount1" KIB_BENCH_DIR="$work" \
	go test ./internal/upload/azure/ -run '^$' -bench BenchmarkUploadPageBlob -benchtime 1x -timeout 60m)
echo "$out" | grep -E '^Benchmark'
echo
echo "$out" | awk '
/^BenchmarkUploadPageBlob\// {
	name=$1; sub(/^BenchmarkUploadPageBlob\//, "", name); sub(/-[0-9]+$/, "", name)
	ns[name]=$3
	for (i = 1; i <= NF; i++) if ($(i+1) == "MiB-sent") sent[name]=$i
}
END {
	printf "sparse: %8.2f s, %8.0f MiB sent\n", ns["sparse"]/1e9, sent["sparse"]
	printf "dense:  %8.2f s, %8.0f MiB sent (baseline: every byte)\n", ns["dense"]/1e9, sent["dense"]
	if (ns["sparse"] > 0) printf "dense/sparse time: %.1fx (sparse is faster by this factor)\n", ns["dense"]/ns["sparse"]
	if (sent["sparse"] > 0) printf "dense/sparse bytes sent: %.1fx\n", sent["dense"]/sent["sparse"]
}'
