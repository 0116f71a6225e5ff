# Shared by the benchmarks: the plain shell pipeline of the tools kib drives.
# Source it; it defines functions only.

now() { date +%s.%N; }
el() { awk "BEGIN{print $2 - $1}"; }

# plain: the same steps as kib's stages, as a shell pipeline.
# plain_assemble TREE OUT SIZE_MIB: a hybrid BIOS+UEFI disk.raw and disk.qcow2
# in OUT from the root tree TREE, with the same steps as kib's disk stages.
plain_assemble() {
  local tree=$1 out=$2 SIZE_MIB=$3 w=$2/work
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


# plain_rootfs STORE PINS SDE DIR: a root tree in DIR from the pinned packages
# listed in PINS ("sha256 name" lines, files in STORE/sources/sha256), with a
# local repository and mmdebstrap, as kib's mmdebstrap stage does.
plain_rootfs() {
  local store=$1 pins=$2 sde=$3 dir=$4 w; w=$(mktemp -d "$(dirname "$dir")/plainrepo.XXXX")
  mkdir -p "$w/repo/pool" "$w/tmp"
  while read -r sum name; do ln "$store/sources/sha256/$sum" "$w/repo/pool/$sum.deb"; done < "$pins"
  (cd "$w/repo" && apt-ftparchive packages pool > Packages &&
   apt-ftparchive -o APT::FTPArchive::Release::Suite=bookworm -o APT::FTPArchive::Release::Codename=bookworm \
     -o APT::FTPArchive::Release::Architectures=amd64 release . > Release)
  TMPDIR="$w/tmp" SOURCE_DATE_EPOCH=$sde unshare --mount --propagation private \
    mmdebstrap --mode=root --format=directory --variant=custom --architectures=amd64 \
    --include="$(cut -d' ' -f2 "$pins" | paste -sd,)" \
    --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
    bookworm "$dir" "deb [trusted=yes] file://$w/repo ./" </dev/null >/dev/null 2>&1
  rm -rf "$w"
}

# pins MANIFEST: the "sha256 name" lines of a manifest's packages.
pins() {
  python3 -c 'import json,sys
for d in json.load(open(sys.argv[1]))["sources"]["debs"]: print(d["sha256"], d["name"])' "$1"
}
