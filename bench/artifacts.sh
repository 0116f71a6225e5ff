#!/usr/bin/env bash
# Measures /composes/{id}/download with artifacts in object storage (kib
# serve --artifacts s3://...): a compose whose remote worker stored a 1 GiB
# image in MinIO is downloaded through the compose API (streamed from the
# store, sha256 checked on the way) and, as the baseline, with a direct S3
# GET of the same object, in one run on one machine (MinIO on loopback).
# Prints MB/s of both and api/direct-throughput (1.0: the API costs nothing).
#
# Usage: bench/artifacts.sh      (env: SIZE_MIB=1024)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
.ci/minio.sh
# The image is written once by the worker and once into MinIO's data dir:
# keep them off a small /tmp.
export TMPDIR=${TMPDIR:-/var/tmp}
KIB_BENCH_ARTIFACT_MIB=$SIZE_MIB nice -n 10 go test ./internal/composer -run '^$' \
	-bench '^BenchmarkArtifactDownload$' -benchtime 1x -timeout 30m
