#!/bin/sh
# Install (npm, under ~/.cache/kib/azurite) and start Azurite, Microsoft's
# Azure Storage emulator, for the azure upload tests: blob service only, in
# memory, on loopback, no telemetry. Idempotent: a running Azurite is
# reused. Prints the blob endpoint on stdout (last line); export it as
# KIB_TEST_AZURITE.
set -eu
exec 3>&1 1>&2
dir=${KIB_TOOLS:-$HOME/.cache/kib}/azurite
port=${AZURITE_PORT:-10000}
endpoint="http://127.0.0.1:$port/devstoreaccount1"
up() { curl -s -o /dev/null "http://127.0.0.1:$port/devstoreaccount1?comp=list" 2>/dev/null; }
if ! up; then
	if [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
		command -v npm >/dev/null || { apt-get install -y -q --no-install-recommends nodejs npm >/dev/null ||
			{ apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm >/dev/null; }; }
		mkdir -p "$dir"
		npm install --no-audit --no-fund --prefix "$dir" azurite@3 >/dev/null
	fi
	# 3>&-: Azurite must not hold the pipe of "$(.ci/azurite.sh)".
	nohup "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
		--inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose \
		>"$dir/azurite.log" 2>&1 3>&- </dev/null &
	i=0
	until up; do
		i=$((i + 1))
		[ $i -lt 100 ] || { cat "$dir/azurite.log"; echo "azurite did not start" >&2; exit 1; }
		sleep 0.2
	done
fi
echo "$endpoint" >&3
