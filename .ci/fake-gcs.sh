#!/bin/sh
# Install (go install, into ~/.cache/kib/bin) and start fake-gcs-server, a
# Google Cloud Storage emulator, for the gcp upload tests: in memory, plain
# HTTP on loopback. Idempotent: a running server is reused. Prints the JSON
# API endpoint on stdout (last line); export it as KIB_TEST_FAKE_GCS.
set -eu
exec 3>&1 1>&2
bin=${KIB_TOOLS:-$HOME/.cache/kib}/bin
port=${FAKE_GCS_PORT:-4443}
version=${FAKE_GCS_VERSION:-v1.56.1}
endpoint="http://127.0.0.1:$port/storage/v1/"
up() { curl -sf -o /dev/null "${endpoint}b?project=kib" 2>/dev/null; }
if ! up; then
	if [ ! -x "$bin/fake-gcs-server" ]; then
		mkdir -p "$bin"
		(cd /tmp && GOBIN="$bin" GOFLAGS= go install "github.com/fsouza/fake-gcs-server@$version")
	fi
	# 3>&-: the server must not hold the pipe of "$(.ci/fake-gcs.sh)".
	nohup "$bin/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
		-public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" -log-level warn \
		>"$bin/../fake-gcs.log" 2>&1 3>&- </dev/null &
	i=0
	until up; do
		i=$((i + 1))
		[ $i -lt 100 ] || { cat "$bin/../fake-gcs.log"; echo "fake-gcs-server did not start" >&2; exit 1; }
		sleep 0.2
	done
fi
echo "$endpoint" >&3
