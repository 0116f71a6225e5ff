#!/usr/bin/env bash
# Measures kib's cloud uploads against the field's own tools, in one run on
# one machine, to the same real servers on loopback:
#  - S3: `kib upload --target aws.s3` of a 2 GiB qcow2 against `aws s3 cp`
#    (Debian's awscli) to the same MinIO; and the peak RSS of each.
#  - Registry: `kib upload --target container` of a container image (OCI
#    archive) against `skopeo copy oci-archive:` to the same docker-registry
#    (TLS and basic auth).
# Prints throughputs and kib/baseline ratios (goal >= 1.0).
#
# Usage: bench/upload.sh      (env: SIZE_MIB=2048 LAYER_MIB=128 LAYERS=4)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-2048}
LAYER_MIB=${LAYER_MIB:-128}
LAYERS=${LAYERS:-4}
for t in aws skopeo docker-registry openssl htpasswd; do
	command -v $t >/dev/null || { echo "bench/upload.sh: $t missing (apt-get install awscli skopeo docker-registry openssl apache2-utils)" >&2; exit 1; }
done
.ci/minio.sh
MINIO=$(command -v minio || echo "$(go env GOPATH)/bin/minio")
work=$(mktemp -d /var/tmp/kib-bench-upload.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

go build -o "$work/kib" ./cmd/kib
go run ./bench/uploadfixture -type qcow2 -size $((SIZE_MIB << 20)) -out "$work/qcow2"
go run ./bench/uploadfixture -type container -size $((LAYER_MIB << 20)) -layers "$LAYERS" -out "$work/container"

# MinIO
s3port=$(port)
export AWS_ACCESS_KEY_ID=kibbench AWS_SECRET_ACCESS_KEY=kibbenchsecret AWS_DEFAULT_REGION=us-east-1
MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY MINIO_BROWSER=off \
	"$MINIO" server --quiet --address 127.0.0.1:$s3port "$work/minio-data" >"$work/minio.log" 2>&1 &
pids+=($!)
until curl -sf http://127.0.0.1:$s3port/minio/health/ready >/dev/null; do sleep 0.2; done
ep=http://127.0.0.1:$s3port
aws --endpoint-url $ep s3 mb s3://bench >/dev/null

# docker-registry with TLS and basic auth
rport=$(port)
mkdir -p "$work/reg/certs.d/127.0.0.1:$rport" "$work/docker"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$work/reg/key.pem" -out "$work/reg/cert.pem" 2>/dev/null
cp "$work/reg/cert.pem" "$work/reg/certs.d/127.0.0.1:$rport/ca.crt"
htpasswd -Bbn bench benchpw >"$work/reg/htpasswd" 2>/dev/null
cat >"$work/reg/config.yml" <<EOC
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/reg/data}}
http: {addr: 127.0.0.1:$rport, tls: {certificate: $work/reg/cert.pem, key: $work/reg/key.pem}}
auth: {htpasswd: {realm: bench, path: $work/reg/htpasswd}}
EOC
docker-registry serve "$work/reg/config.yml" >"$work/reg.log" 2>&1 &
pids+=($!)
until curl -s --cacert "$work/reg/cert.pem" -o /dev/null https://127.0.0.1:$rport/v2/; do sleep 0.2; done
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}' $rport "$(printf bench:benchpw | base64)" >"$work/docker/config.json"

cat >"$work/kib.toml" <<EOC
[upload."aws.s3"]
bucket = "bench"
endpoint = "$ep"
state_dir = "$work/state"
[upload.container]
registry = "127.0.0.1:$rport/kib"
ca_file = "$work/reg/cert.pem"
EOC
echo '{"region":"us-east-1"}' >"$work/s3.json"
echo '{"name":"bench","tag":"kib"}' >"$work/container.json"

# timed CMD...: prints "seconds peak-RSS-KiB"
timed() {
	local t0; t0=$(now)
	/usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	echo "$(awk "BEGIN{print $(now) - $t0}") $(cat "$work/rss")"
}

bytes=$(stat -c %s "$work/qcow2/disk.qcow2")
read -r awst awsrss < <(timed aws --endpoint-url $ep s3 cp "$work/qcow2/disk.qcow2" s3://bench/awscli-disk.qcow2)
read -r kibt kibrss < <(timed "$work/kib" upload --config "$work/kib.toml" --target aws.s3 --options "$work/s3.json" "$work/qcow2/disk.qcow2")
awk -v b=$bytes -v k=$kibt -v a=$awst -v kr=$kibrss -v ar=$awsrss 'BEGIN{
	printf "S3 %d MiB: kib %.1f MiB/s (peak RSS %.0f MiB)  aws s3 cp %.1f MiB/s (peak RSS %.0f MiB)  kib/awscli %.2f (goal >= 1.0)\n",
		b/1048576, b/1048576/k, kr/1024, b/1048576/a, ar/1024, a/k }'

cbytes=$(stat -c %s "$work/container/container.tar")
read -r skot skorss < <(timed skopeo copy --quiet --dest-creds bench:benchpw --dest-cert-dir "$work/reg/certs.d/127.0.0.1:$rport" \
	"oci-archive:$work/container/container.tar" "docker://127.0.0.1:$rport/skopeo/bench:skopeo")
read -r kibct kibcrss < <(DOCKER_CONFIG="$work/docker" timed "$work/kib" upload --config "$work/kib.toml" --target container --options "$work/container.json" "$work/container/container.tar")
awk -v b=$cbytes -v k=$kibct -v a=$skot -v kr=$kibcrss -v ar=$skorss 'BEGIN{
	printf "registry %d MiB: kib %.1f MiB/s (peak RSS %.0f MiB)  skopeo copy %.1f MiB/s (peak RSS %.0f MiB)  kib/skopeo %.2f (goal >= 1.0)\n",
		b/1048576, b/1048576/k, kr/1024, b/1048576/a, ar/1024, a/k }'
