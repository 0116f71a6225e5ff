#!/usr/bin/env bash
# Benchmark: the same bootable qcow2 from the same pinned package list, in one
# run: (a) kib with a cold store (packages cached, no pipeline cache), (b) the
# plain tools in a shell pipeline (local repo + mmdebstrap, fstab and root
# password, then sfdisk, mkfs.vfat + mtools, mkfs.ext4 -d + debugfs,
# grub-mkimage, qemu-img: bench/lib.sh), (c) kib's warm rebuild of the
# unchanged manifest; kib's time per stage; and the time from manifest to a
# booted login prompt (kib's cold build + boot under TCG). With the pinned
# build root (issue 8): (d) kib cold with the build root cached in the store,
# (e) kib cold with the build root built too, against (a), which runs the
# host's tools (a manifest of the definition without build_root).
# Usage: [QUIET=0] bench/qcow2.sh [ROUNDS]   (root; $BENCH_DIR, default /var/tmp/kib-bench-qcow2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
W=${BENCH_DIR:-/var/tmp/kib-bench-qcow2}
SIZE_MIB=4096
mkdir -p "$W"
. bench/lib.sh
. bench/cachelib.sh
go build -o "$W/kib" ./cmd/kib
go build -o "$W/boottime" ./bench/boottime
KIB="$W/kib"
# root's password is "kib" in both images, for the boot.
HASH='$6$kibsalt$8zTUYBNqnkNUMvoTs26Ed.tHcrGdu9Lqn7syL7TviTuUPXyCHtgtmglwmR7p9LgPQLziRrSDw8m.Se9QCktv1/'
printf '[[customizations.user]]\nname = "root"\npassword = "%s"\n' "$HASH" > "$W/bp.toml"
# Today's kib: the host's tools (the definition without its build root).
mkdir -p "$W/defs"
sed '/^build_root:/,/^  alternatives:/d' distros/debian-12.yaml > "$W/defs/debian-12.yaml"
"$KIB" manifest --definitions "$W/defs" --blueprint "$W/bp.toml" --size ${SIZE_MIB}MiB qcow2 > "$W/manifest.json"
"$KIB" manifest --blueprint "$W/bp.toml" --size ${SIZE_MIB}MiB qcow2 > "$W/manifest-br.json"
STORE="$W/store"
# The warm-ups start from an empty pipeline cache (the packages' copies
# stay), so that the build root's key is in the second one's log.
# trash PATH... (bench/cachelib.sh) moves each PATH to $W/trash, removed
# at the end (see "clear" below).
for o in "$STORE"/objects/*; do [ -e "$o/deb" ] || trash "$o"; done
"$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/warmup" >/dev/null 2>&1
"$KIB" build --manifest "$W/manifest-br.json" --store "$STORE" --output-dir "$W/warmup-br" 2> "$W/kib-br-warmup.log" >/dev/null
BRKEY=$(sed -n 's/.*msg="pipeline \(done\|cached\)" pipeline=build .*key=\([0-9a-f]*\).*/\2/p' "$W/kib-br-warmup.log")
[ -n "$BRKEY" ] || { echo "bench: no build root key in $W/kib-br-warmup.log" >&2; exit 1; }
SDE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_date_epoch"])' "$W/manifest.json")
pins "$W/manifest.json" > "$W/pins.txt"

# Each run below has two parts: "clear" moves what the run before left
# (the pipeline objects, the output) to $W/trash, removed at the end;
# "build" builds, timed, after a sync. This disk's ext4 has no journal, and
# there the kernel does not reuse an inode deleted in the last 5 s (300 s
# while its inode table block is dirty): each new file scans past them
# (recently_deleted() in find_inode_bit, 16 % of cp's samples in perf), and
# right after a removal of the 30,000 entries of a build every file
# created cost 0.5 ms of CPU. Removing in the timed part, or just before
# it, made kib's tmpfs-to-store copy of 15,000 entries take 12-17 s instead
# of 2 s; the plain pipeline paid the same in its own steps.
plain() {
  local d="$W/plain"
  if [ "$1" = clear ]; then trash "$d"; return; fi
  mkdir -p "$d/out"
  plain_rootfs "$STORE" "$W/pins.txt" "$SDE" "$d/root"
  echo "UUID=2d6e1a49-8c2b-4f5e-9b3a-7a1f0c0ffee1 / ext4 errors=remount-ro 0 1" > "$d/root/etc/fstab"
  chroot "$d/root" usermod -p "$HASH" root
  rm -f "$d/root/etc/resolv.conf"
  plain_assemble "$d/root" "$d/out" "$SIZE_MIB" >/dev/null
}
# pipeline_objects: the store's pipeline outputs, not the packages'
# uncompressed copies and extraction stubs (objects holding a deb), which
# belong with the packages: "cold" is an empty pipeline cache, packages in
# the store, as the issue defines it. kib_first also drops those copies.
pipeline_objects() {
  local o
  for o in "$STORE"/objects/*; do
    [ -e "$o/deb" ] || echo "$o"
  done
}
kib_cold() {
  # shellcheck disable=SC2046
  if [ "$1" = clear ]; then trash $(pipeline_objects) "$W/out"; return; fi
  "$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/out" 2> "$W/kib.log" >/dev/null
}
kib_first() {
  if [ "$1" = clear ]; then trash "$STORE"/objects/* "$W/out-first"; return; fi
  "$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/out-first" 2> "$W/kib-first.log" >/dev/null
}
# kib_br MODE clear|build: kib cold with the build root; MODE "keep" keeps
# the build root.
kib_br() {
  local o
  if [ "$2" = clear ]; then
    for o in $(pipeline_objects); do
      case "$1:$(basename "$o")" in keep:"$BRKEY"*) ;; *) trash "$o" ;; esac
    done
    trash "$W/out-br"
    return
  fi
  "$KIB" build --manifest "$W/manifest-br.json" --store "$STORE" --output-dir "$W/out-br" 2> "$W/kib-br-$1.log" >/dev/null
}
kib_warm() {
  if [ "$1" = clear ]; then trash "$W/out2"; return; fi
  "$KIB" build --manifest "$W/manifest.json" --store "$STORE" --output-dir "$W/out2" >/dev/null 2>&1
}

# quiet (bench/cachelib.sh): each timed build starts on a disk that has
# written back the one before it; QUIET=0 runs them back to back.
warm_memory
tk=0; tp=0; tw=0; tbc=0; tbk=0; tf=0
for r in $(seq "$ROUNDS"); do
  timed() { "$@" clear; quiet; local s; s=$(now); "$@" build; T=$(el "$s" "$(now)"); }
  timed kib_first; f=$T
  timed kib_cold; k=$T
  timed plain; p=$T
  timed kib_warm; w=$T
  # cold first: kib_first removed every object, the build root's too.
  timed kib_br cold; bc=$T
  timed kib_br keep; bk=$T
  printf 'round %d: kib cold %.2f s, plain %.2f s, kib warm %.2f s, build root cached %.2f s, build root cold %.2f s, kib first (uncompressed package copies made too) %.2f s\n' "$r" "$k" "$p" "$w" "$bk" "$bc" "$f"
  tf=$(awk "BEGIN{print $tf + $f}")
  tk=$(awk "BEGIN{print $tk + $k}"); tp=$(awk "BEGIN{print $tp + $p}"); tw=$(awk "BEGIN{print $tw + $w}")
  tbk=$(awk "BEGIN{print $tbk + $bk}"); tbc=$(awk "BEGIN{print $tbc + $bc}")
done
untrash
cmp -s "$W/out-br/qcow2/disk.qcow2" "$W/warmup-br/qcow2/disk.qcow2" || echo "WARNING: the build-root images differ between runs"
printf 'build root: cached %.3fx of kib cold with host tools, cold %.3fx; the build root itself: %s (cold, last round)\n' \
  "$(awk "BEGIN{print $tbk / $tk}")" "$(awk "BEGIN{print $tbc / $tk}")" \
  "$(sed -n 's/.*msg="pipeline done" pipeline=build .*duration=\(.*\)/\1/p' "$W/kib-br-cold.log")"
echo "kib's stages (last cold round):"
sed -n 's/.*msg="stage done" pipeline=\([^ ]*\) stage=\([^ ]*\) index=[0-9]* duration=\(.*\)/  \1 \2 \3/p' "$W/kib.log"
# The inner phases of the rootfs stage (extract, unpack, configure,
# triggers, initramfs, ...), and dpkg's steps of a second or more.
for l in kib kib-br-cold; do
  echo "rootfs phases ($l.log, last cold round):"
  sed -n 's/.*msg="phase done" pipeline=\([^ ]*\) stage=\([^ ]*\) phase=\([^ ]*\) duration=\(.*\)/  \2 \3 \4/p' "$W/$l.log"
  sed -n 's/.*msg="slow step" pipeline=[^ ]* stage=\([^ ]*\) step="\{0,1\}\([^"]*\)"\{0,1\} duration=\(.*\)/  \1 step "\2" \3/p' "$W/$l.log"
done
printf 'kib with build root cold / plain = %.3f (%.2f s / %.2f s)\n' \
  "$(awk "BEGIN{print $tbc / $tp}")" "$(awk "BEGIN{print $tbc / $ROUNDS}")" "$(awk "BEGIN{print $tp / $ROUNDS}")"
printf 'kib first build of these packages / plain = %.3f (%.2f s)\n' "$(awk "BEGIN{print $tf / $tp}")" "$(awk "BEGIN{print $tf / $ROUNDS}")"
cmp -s "$W/out-first/qcow2/disk.qcow2" "$W/out/qcow2/disk.qcow2" || echo "WARNING: the first and the cold build's images differ"
printf '%s packages, qcow2 %s bytes\n' "$(wc -l < "$W/pins.txt")" "$(stat -c %s "$W/out/qcow2/disk.qcow2")"
printf 'kib/plain = %.3f (kib %.2f s, plain %.2f s over %d rounds); warm rebuild %.2f s\n' \
  "$(awk "BEGIN{print $tk / $tp}")" "$(awk "BEGIN{print $tk / $ROUNDS}")" "$(awk "BEGIN{print $tp / $ROUNDS}")" "$ROUNDS" "$(awk "BEGIN{print $tw / $ROUNDS}")"
"$W/boottime" -image "$W/out/qcow2/disk.qcow2" -password kib | while read -r line; do
  echo "$line"
  login=$(echo "$line" | sed -n 's/.*login \([0-9.]*\) s.*/\1/p')
  printf '  manifest to login prompt: %.1f s (kib cold build %.1f s + boot)\n' "$(awk "BEGIN{print $tk / $ROUNDS + $login}")" "$(awk "BEGIN{print $tk / $ROUNDS}")"
done
