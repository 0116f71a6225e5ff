#!/bin/sh
# Install MinIO, the S3-compatible server the upload tests run against, with
# `go install` from the Go module proxy (pinned). Idempotent; the tests start
# their own server on loopback (internal/upload/s3test).
set -eu
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
bin=$(go env GOPATH)/bin/minio
if command -v minio >/dev/null 2>&1 || [ -x "$bin" ]; then
	exit 0
fi
echo "installing minio $MINIO_VERSION with go install (a few minutes, once)" >&2
nice -n 10 go install "github.com/minio/minio@$MINIO_VERSION"
