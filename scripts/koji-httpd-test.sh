#!/usr/bin/env bash
# Runs sslLogin of internal/koji through Apache httpd set up like Koji's
# stock kojihub httpd.conf: the client certificate is requested only on
# /kojihub/ssllogin (TLS 1.2 renegotiation). Needs apache2 (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v apache2 >/dev/null || { echo "missing apache2: apt-get install apache2" >&2; exit 1; }
go test -tags httpd -count=1 -v -run TestSSLLoginStockHttpd ./internal/koji/
