#!/usr/bin/env bash
# Benchmark of issue 13's goal 2: blueprint edits on a qcow2 whose previous
# build is in the store. Runs (a) the first build of blueprint A (cold
# pipeline cache; packages fetched into the store if they are not there
# yet), (b) the build of the edited blueprint B (one changed file and one
# more user) with A's package tree in the store, (p) the build of blueprint
# P, A with one more package (tree), whose package tree grows from A's,
# (c) for comparison, B and P built clean (no pipeline cache) and a check
# that each edit's image is bit-identical to its clean build's. Prints each
# time and kib's own peak RSS. Builds run one at a time under nice, each after
# sync (QUIET=0: back to back, each paying for the write-back of the last).
# Usage: [STORE=DIR] bench/edit.sh   (root; $BENCH_DIR, default /var/tmp/speed-cache/edit)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/var/tmp/speed-cache/edit}
mkdir -p "$W"
. bench/cachelib.sh
warm_memory
go build -o "$W/kib" ./cmd/kib
KIB="$W/kib"
STORE=${STORE:-$W/store}
HASH='$6$kibsalt$8zTUYBNqnkNUMvoTs26Ed.tHcrGdu9Lqn7syL7TviTuUPXyCHtgtmglwmR7p9LgPQLziRrSDw8m.Se9QCktv1/'
cat > "$W/a.toml" <<EOS
[customizations]
hostname = "bench"
[[customizations.user]]
name = "root"
password = "$HASH"
[[customizations.files]]
path = "/etc/motd"
data = "first\n"
EOS
sed 's/data = "first\\n"/data = "edited\\n"/' "$W/a.toml" > "$W/b.toml"
printf '[[customizations.user]]\nname = "carol"\nuid = 1500\n' >> "$W/b.toml"
cp "$W/a.toml" "$W/p.toml"
printf '[[packages]]\nname = "tree"\n' >> "$W/p.toml"
s=$(now); "$KIB" manifest --blueprint "$W/a.toml" qcow2 > "$W/a.json"; resolve=$(el "$s" "$(now)")
"$KIB" manifest --blueprint "$W/b.toml" qcow2 > "$W/b.json"
"$KIB" manifest --blueprint "$W/p.toml" qcow2 > "$W/p.json"

trash "$STORE/objects" "$W/out-a" "$W/out-b" "$W/out-clean" "$W/out-p" "$W/out-pclean" "$W/out-b2"
kib_timed "$W/a.log" build --manifest "$W/a.json" --store "$STORE" --output-dir "$W/out-a"
first=$SECS; first_rss=$RSS
kib_timed "$W/b.log" build --manifest "$W/b.json" --store "$STORE" --output-dir "$W/out-b"
edit=$SECS; edit_rss=$RSS
# The same edit as a user types it: resolve and build in one command.
kib_timed "$W/b2.log" build --blueprint "$W/b.toml" --store "$STORE" --output-dir "$W/out-b2" qcow2
edit_cmd=$SECS; edit_cmd_rss=$RSS
# One more package: the package tree grows from A's.
kib_timed "$W/p.log" build --manifest "$W/p.json" --store "$STORE" --output-dir "$W/out-p"
pkg=$SECS; pkg_rss=$RSS
grep -q 'msg="grown from a smaller package set"' "$W/p.log" || { echo "the package tree was not grown from A's" >&2; exit 1; }
# B built clean (the build root kept, as in bench/qcow2.sh's cold build), for
# the bits and the baseline.
BRKEY=$(sed -n 's/.*msg="pipeline done" pipeline=build .*key=\([0-9a-f]*\).*/\1/p' "$W/a.log")
mv "$STORE/objects" "$W/objects-kept"
mkdir -p "$STORE/objects"
[ -z "$BRKEY" ] || cp -a "$W/objects-kept/$BRKEY"* "$STORE/objects/"
kib_timed "$W/clean.log" build --manifest "$W/b.json" --store "$STORE" --output-dir "$W/out-clean"
clean=$SECS; clean_rss=$RSS
trash "$STORE/objects"; mkdir -p "$STORE/objects"
[ -z "$BRKEY" ] || cp -a "$W/objects-kept/$BRKEY"* "$STORE/objects/"
KIB_GROW=off kib_timed "$W/pclean.log" build --manifest "$W/p.json" --store "$STORE" --output-dir "$W/out-pclean"
pclean=$SECS; pclean_rss=$RSS
trash "$STORE/objects"; mv "$W/objects-kept" "$STORE/objects"
untrash

same=identical
cmp -s "$W/out-b/qcow2/disk.qcow2" "$W/out-clean/qcow2/disk.qcow2" || same=DIFFERENT
psame=identical
cmp -s "$W/out-p/qcow2/disk.qcow2" "$W/out-pclean/qcow2/disk.qcow2" || psame=DIFFERENT
printf 'resolve (kib manifest) %.2f s\n' "$resolve"
printf 'first build (cold)          %6.2f s  peak RSS %s MiB\n' "$first" "$first_rss"
printf 'edit build (--manifest)     %6.2f s  peak RSS %s MiB  (%.3fx of a clean build)\n' "$edit" "$edit_rss" "$(awk "BEGIN{print $edit / $clean}")"
printf 'edit build (kib build TYPE) %6.2f s  peak RSS %s MiB  (resolve included)\n' "$edit_cmd" "$edit_cmd_rss"
printf 'clean build of the edit     %6.2f s  peak RSS %s MiB\n' "$clean" "$clean_rss"
printf 'one more package           %6.2f s  peak RSS %s MiB  (%.3fx of a clean build)\n' "$pkg" "$pkg_rss" "$(awk "BEGIN{print $pkg / $pclean}")"
printf 'clean build with the package %6.2f s  peak RSS %s MiB\n' "$pclean" "$pclean_rss"
echo "edit build's stages:"; stages "$W/b.log"
echo "one more package's stages:"; stages "$W/p.log"
echo "edited qcow2 vs clean build of the same manifest: $same"
echo "qcow2 with one more package vs its clean build: $psame"
[ "$same" = identical ] && [ "$psame" = identical ]
