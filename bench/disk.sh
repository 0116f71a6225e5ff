#!/bin/bash
# bench/disk.sh: time assembling the same bootable hybrid (BIOS+UEFI) qcow2
# from the same root tree, in the same run, with kib's disk stages
# (bench/diskasm) and with a plain shell pipeline of the same tools, then
# boot kib's image under TCG to a login prompt.
#
# usage: bench/disk.sh [ROOTFS.tar]   (default: the newest tree cached by
#        go test ./internal/boottest, under ~/.cache/kib-test/)
# env:   WORK (scratch dir, default a new dir under /var/tmp), REPS (2),
#        BOOT (bios,uefi; empty to skip booting), SIZE_MIB (2048)
set -euo pipefail
cd "$(dirname "$0")/.."
TAR=${1:-$(ls -t "${XDG_CACHE_HOME:-$HOME/.cache}"/kib-test/rootfs-*.tar 2>/dev/null | head -1)}
[ -n "$TAR" ] && [ -f "$TAR" ] || { echo "no rootfs tar; run: go test -run TestBootImage ./internal/boottest" >&2; exit 1; }
REPS=${REPS:-2}
BOOT=${BOOT-bios,uefi}
SIZE_MIB=${SIZE_MIB:-2048}
WORK=${WORK:-$(mktemp -d /var/tmp/kib-bench.XXXXXX)}
SDE=1716163200
export SOURCE_DATE_EPOCH=$SDE LC_ALL=C.UTF-8 TZ=UTC MTOOLS_SKIP_CHECK=1
trap 'rm -rf "$WORK"' EXIT

. bench/lib.sh

mkdir -p "$WORK/tree"
tar -xf "$TAR" -C "$WORK/tree" --numeric-owner --same-permissions --xattrs --xattrs-include='*'
go build -o "$WORK/diskasm" ./bench/diskasm

declare -a KIB PLAIN
for r in $(seq 1 "$REPS"); do
  rm -rf "$WORK/kib" "$WORK/plain"; mkdir -p "$WORK/kib" "$WORK/plain"; sync
  "$WORK/diskasm" -tree "$WORK/tree" -out "$WORK/kib" -size "$SIZE_MIB" | tee "$WORK/kib.txt"
  KIB+=("$(awk '/^TOTAL/{sub(/s$/,"",$3); print $3}' "$WORK/kib.txt")")
  sync
  plain_assemble "$WORK/tree" "$WORK/plain" "$SIZE_MIB" | tee "$WORK/plain.txt"
  PLAIN+=("$(awk '/^TOTAL/{print $3}' "$WORK/plain.txt")")
done
echo "---"
for i in "${!KIB[@]}"; do
  printf 'run %d: kib %.2fs  plain %.2fs  ratio kib/plain %.2f\n' $((i+1)) "${KIB[$i]}" "${PLAIN[$i]}" "$(awk "BEGIN{print ${KIB[$i]} / ${PLAIN[$i]}}")"
done
ls -ls "$WORK/kib" "$WORK/plain" | grep -E 'disk\.(raw|qcow2)'
if [ -n "$BOOT" ]; then
  "$WORK/diskasm" -tree "$WORK/tree" -out "$WORK/kib-boot" -size "$SIZE_MIB" -boot "$BOOT" 2>/dev/null | grep -E '^BOOT'
fi
