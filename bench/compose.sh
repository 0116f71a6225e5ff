#!/bin/sh
# Queue benchmark: submit-to-start latency and composes per second on SQLite
# and PostgreSQL, with 1 and 4 workers, build step a no-op. Needs
# KIB_TEST_POSTGRES (see .ci/postgres.sh).
set -eu
cd "$(dirname "$0")/.."
: "${KIB_TEST_POSTGRES:=$(.ci/postgres.sh)}"
export KIB_TEST_POSTGRES
exec go test -run '^$' -bench BenchmarkComposeQueue -benchtime 1x -timeout 30m ./internal/jobs/
