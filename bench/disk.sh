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

now() { date +%s.%N; }
el() { echo "$2 - $1" | bc; }

mkdir -p "$WORK/tree"
tar -xf "$TAR" -C "$WORK/tree" --numeric-owner --same-permissions --xattrs --xattrs-include='*'
go build -o "$WORK/diskasm" ./bench/diskasm

# plain: the same steps as kib's stages, as a shell pipeline.
plain() {
  local out=$1 tree=$WORK/tree w=$1/work
  mkdir -p "$w"
  local root_uuid=2d6e1a49-8c2b-4f5e-9b3a-7a1f0c0ffee1
  local end=$(( (SIZE_MIB*1048576 - 33*512) / 1048576 * 1048576 ))
  local rstart=$((258*1048576)) rsize=$(( end - 258*1048576 ))
  local t0 t; t0=$(now)
  t=$(now); truncate -s ${SIZE_MIB}M "$out/disk.raw"
  sfdisk -q --no-reread --no-tell-kernel "$out/disk.raw" <<EOS
label: gpt
label-id: 11111111-2222-4333-8444-555555555555
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=AAAAAAAA-0000-4000-8000-000000000001, name="bios"
start=4096, size=524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=AAAAAAAA-0000-4000-8000-000000000002, name="esp"
start=$((rstart/512)), size=$((rsize/512)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=AAAAAAAA-0000-4000-8000-000000000003, name="root"
EOS
  echo "PLAIN gpt       $(el $t $(now))"
  t=$(now)
  mkfs.vfat --invariant -F 32 -s 4 -n ESP -i 1A2B3C4D -h 4096 --offset 4096 "$out/disk.raw" 262144 >/dev/null 2>&1
  mmd -i "$out/disk.raw@@2097152" ::/EFI ::/EFI/BOOT
  echo "PLAIN esp       $(el $t $(now))"
  t=$(now)
  E2FSPROGS_FAKE_TIME=$SDE mkfs.ext4 -q -F -t ext4 -b 4096 -L root -U $root_uuid \
    -E hash_seed=$root_uuid,root_owner=0:0,offset=$rstart,nodiscard -d "$tree" "$out/disk.raw" $((rsize/1024))k
  local dev="$out/disk.raw?offset=$rstart"
  dumpe2fs "$dev" 2>/dev/null | awk -v sde=$SDE '
    /^Inodes per group:/ {ipg=$4}
    /^Group [0-9]+:/ {g++}
    /^  Free inodes:/ {
      first=(g-1)*ipg+1; last=g*ipg; delete free
      sub(/^  Free inodes: */, ""); n=split($0, r, ", ")
      for (i=1;i<=n;i++) { if (r[i]=="") continue; split(r[i], ab, "-"); if (ab[2]=="") ab[2]=ab[1]; for (j=ab[1];j<=ab[2];j++) free[j]=1 }
      for (j=first;j<=last;j++) if (!(j in free)) printf "sif <%d> atime @%d\nsif <%d> ctime @%d\n", j, sde, j, sde
    }' > "$w/sif.txt"
  E2FSPROGS_FAKE_TIME=$SDE debugfs -w -f "$w/sif.txt" "$dev" >/dev/null 2>&1
  echo "PLAIN ext4      $(el $t $(now))"
  cat > "$w/grub.cfg" <<EOS
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root $root_uuid
linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200
initrd /initrd.img
boot
EOS
  local mods="part_gpt ext2 search search_fs_uuid linux boot serial terminal"
  t=$(now)
  grub-mkimage -O x86_64-efi -o "$w/BOOTX64.EFI" -p /boot/grub -c "$w/grub.cfg" $mods
  mcopy -o -i "$out/disk.raw@@2097152" "$w/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  echo "PLAIN grub-efi  $(el $t $(now))"
  t=$(now)
  grub-mkimage -O i386-pc -o "$w/core.img" -p /boot/grub -c "$w/grub.cfg" biosdisk $mods
  dd if="$w/core.img" of="$out/disk.raw" bs=512 seek=2048 conv=notrunc status=none
  printf '\x01\x08\x00\x00\x00\x00\x00\x00' | dd of="$out/disk.raw" bs=1 seek=$((1048576+0x1f4)) conv=notrunc status=none
  dd if=/usr/lib/grub/i386-pc/boot.img of="$out/disk.raw" bs=440 count=1 conv=notrunc status=none
  printf '\x00\x08\x00\x00\x00\x00\x00\x00' | dd of="$out/disk.raw" bs=1 seek=$((0x5c)) conv=notrunc status=none
  printf '\x90\x90' | dd of="$out/disk.raw" bs=1 seek=$((0x66)) conv=notrunc status=none
  echo "PLAIN grub-bios $(el $t $(now))"
  t=$(now); qemu-img convert -f raw -O qcow2 -o compat=1.1 "$out/disk.raw" "$out/disk.qcow2"
  echo "PLAIN qemu-img  $(el $t $(now))"
  echo "TOTAL plain     $(el $t0 $(now))"
}

declare -a KIB PLAIN
for r in $(seq 1 "$REPS"); do
  rm -rf "$WORK/kib" "$WORK/plain"; mkdir -p "$WORK/kib" "$WORK/plain"; sync
  "$WORK/diskasm" -tree "$WORK/tree" -out "$WORK/kib" -size "$SIZE_MIB" | tee "$WORK/kib.txt"
  KIB+=("$(awk '/^TOTAL/{sub(/s$/,"",$3); print $3}' "$WORK/kib.txt")")
  sync
  plain "$WORK/plain" | tee "$WORK/plain.txt"
  PLAIN+=("$(awk '/^TOTAL/{print $3}' "$WORK/plain.txt")")
done
echo "---"
for i in "${!KIB[@]}"; do
  printf 'run %d: kib %.2fs  plain %.2fs  ratio kib/plain %.2f\n' $((i+1)) "${KIB[$i]}" "${PLAIN[$i]}" "$(echo "${KIB[$i]} / ${PLAIN[$i]}" | bc -l)"
done
ls -ls "$WORK/kib" "$WORK/plain" | grep -E 'disk\.(raw|qcow2)'
if [ -n "$BOOT" ]; then
  "$WORK/diskasm" -tree "$WORK/tree" -out "$WORK/kib-boot" -size "$SIZE_MIB" -boot "$BOOT" 2>/dev/null | grep -E '^BOOT'
fi
