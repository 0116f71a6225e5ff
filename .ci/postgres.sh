#!/bin/sh
# Install, start and prepare a local PostgreSQL for kib's queue tests.
# Idempotent: safe to run again. Prints the DSN on stdout (last line);
# export it as KIB_TEST_POSTGRES.
set -eu
exec 3>&1 1>&2
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends postgresql >/dev/null ||
		{ apt-get update -q && apt-get install -y -q --no-install-recommends postgresql >/dev/null; }
fi
ver=$(ls /etc/postgresql | sort -n | tail -1)
# 3>&-: the server must not inherit the pipe of "$(.ci/postgres.sh)", or
# the command substitution never ends.
pg_ctlcluster "$ver" main start 3>&- </dev/null >/dev/null 2>&1 || true
pg_lsclusters
psql_() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname='kib'")" != 1 ]; then
	psql_ -c "CREATE ROLE kib LOGIN PASSWORD 'kib' CREATEDB"
fi
if [ "$(psql_ -c "SELECT 1 FROM pg_database WHERE datname='kib_test'")" != 1 ]; then
	psql_ -c "CREATE DATABASE kib_test OWNER kib"
fi
echo "postgres://kib:kib@127.0.0.1:5432/kib_test?sslmode=disable" >&3
