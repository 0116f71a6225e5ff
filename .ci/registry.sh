#!/bin/sh
# Install Debian's docker-registry (the CNCF distribution registry) for the
# container upload tests; they start it themselves on loopback with TLS and
# basic auth (internal/upload/registrytest). Idempotent.
set -eu
if command -v docker-registry >/dev/null 2>&1; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends docker-registry >/dev/null ||
	{ apt-get update -q && apt-get install -y -q --no-install-recommends docker-registry >/dev/null; }
