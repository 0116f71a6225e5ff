#!/bin/bash
# bench/disk.sh: time assembling the same bootable hybrid (BIOS+UEFI) qcow2
# from the same root tree, in the same run, with kib's disk stages
# (bench/diskasm) and with a plain shell pipeline of the same tools, then
# boot kib's image under TCG to a login prompt.
#
# usage: bench/disk.sh [ROOTFS.tar]   (default: a small bootable bookworm
#        tree made once with mmdebstrap and cached under ~/.cache/kib-bench/)
# env:   WORK (scratch dir, default a new dir under /var/tmp), REPS (2),
#        BOOT (bios,uefi; empty to skip booting), SIZE_MIB (2048)
set -euo pipefail
cd "$(dirname "$0")/.."
SDE=1716163200
TAR=${1:-}
if [ -z "$TAR" ]; then
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/kib-bench"
	TAR="$cache/rootfs-bookworm-small.tar"
	if [ ! -f "$TAR" ]; then
		mkdir -p "$cache"
		echo "making the test tree with mmdebstrap (once): $TAR" >&2
		SOURCE_DATE_EPOCH=$SDE mmdebstrap --variant=minbase \
			--include=linux-image-amd64,systemd-sysv,udev,e2fsprogs,dbus \
			--customize-hook='echo kibtest > "$1/etc/hostname"' \
			--customize-hook='rm -f "$1/etc/resolv.conf"' \
			--customize-hook='chroot "$1" passwd -d root' \
			bookworm "$cache/partial.tar" && mv "$cache/partial.tar" "$TAR"
	fi
fi
[ -f "$TAR" ] || { echo "no rootfs tar: $TAR" >&2; exit 1; }
REPS=${REPS:-2}
BOOT=${BOOT-bios,uefi}
SIZE_MIB=${SIZE_MIB:-2048}
WORK=${WORK:-$(mktemp -d /var/tmp/kib-bench.XXXXXX)}
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
