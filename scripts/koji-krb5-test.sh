#!/usr/bin/env bash
# Runs the GSSAPI login of internal/koji against a real MIT Kerberos KDC on
# loopback: a throw-away realm KIB.TEST with principals kib@ and
# HTTP/127.0.0.1@ (the kojitest hub's service), keytabs for both.
# Needs root or the krb5 tools: apt-get install krb5-kdc krb5-admin-server.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in kdb5_util kadmin.local krb5kdc; do
	command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install krb5-kdc krb5-admin-server" >&2; exit 1; }
done
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
kdcpid=
cleanup() { [ -n "$kdcpid" ] && kill "$kdcpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/krb5.conf" <<CONF
[libdefaults]
	default_realm = KIB.TEST
	dns_lookup_kdc = false
	dns_lookup_realm = false
	udp_preference_limit = 1
	rdns = false
[realms]
	KIB.TEST = {
		kdc = 127.0.0.1:$port
	}
CONF
cat > "$work/kdc.conf" <<CONF
[kdcdefaults]
	kdc_ports = $port
	kdc_tcp_ports = $port
[realms]
	KIB.TEST = {
		database_name = $work/principal
		key_stash_file = $work/stash
		acl_file = $work/kadm5.acl
		supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
	}
[logging]
	kdc = FILE:$work/kdc.log
CONF
export KRB5_CONFIG="$work/krb5.conf" KRB5_KDC_PROFILE="$work/kdc.conf"
kdb5_util create -s -r KIB.TEST -P "$(head -c 16 /dev/urandom | base64)" >/dev/null
kadmin.local -r KIB.TEST -q "addprinc -randkey kib@KIB.TEST" >/dev/null
kadmin.local -r KIB.TEST -q "addprinc -randkey HTTP/127.0.0.1@KIB.TEST" >/dev/null
kadmin.local -r KIB.TEST -q "ktadd -k $work/kib.keytab kib@KIB.TEST" >/dev/null
kadmin.local -r KIB.TEST -q "ktadd -k $work/http.keytab HTTP/127.0.0.1@KIB.TEST" >/dev/null
# setpriv: the KDC dies with this script even when it is SIGKILLed.
setpriv --pdeathsig KILL krb5kdc -n -P "$work/kdc.pid" &
kdcpid=$!
sleep 1
KIB_KRB5_DIR="$work" go test -tags krb5 -count=1 -v -run TestGSSAPIRealKDC ./internal/koji/
