# Shared by bench/edit.sh and bench/typechange.sh: run kib, timing it and
# reading its peak RSS (kib's own, without the tools it runs) from its log.
# Source it; it defines functions only.

now() { date +%s.%N; }
. "$(dirname "${BASH_SOURCE[0]}")/memory.sh"

# quiet: each timed build starts on a disk that has written back the one
# before it (issue 13 measures on a quiet machine); QUIET=0 runs them back
# to back, each paying for the writeback of the ones before.
quiet() { [ "${QUIET:-1}" = 0 ] || sync; }

# trash PATH...: moves each PATH to $W/trash instead of removing it; the
# script removes the trash at its end (untrash). On an ext4 without a
# journal (this machine's), the kernel does not reuse an inode deleted in
# the last 5 s (300 s while its inode table block is dirty) and scans past
# each one for every file it creates: right after removing a build's
# 30,000 entries, each file a build created cost 0.5 ms of CPU (a copy of
# 15,000 entries 12-17 s instead of 2 s). bench/qcow2.sh says more.
trash() {
  mkdir -p "$W/trash"
  local p
  for p in "$@"; do [ ! -e "$p" ] || mv "$p" "$(mktemp -d "$W/trash/XXXXXX")/"; done
}
untrash() { rm -rf "$W/trash"; }
el() { awk "BEGIN{print $2 - $1}"; }

# secs DURATION: a Go duration (850ms, 1.5s, 1m2.5s) in seconds.
secs() {
  awk -v d="$1" 'BEGIN{
    t = 0
    while (match(d, /^[0-9.]+(ms|µs|us|ns|h|m|s)/)) {
      tok = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
      n = tok + 0; u = tok; sub(/^[0-9.]+/, "", u)
      if (u == "h") t += n * 3600; else if (u == "m") t += n * 60; else if (u == "s") t += n
      else if (u == "ms") t += n / 1000; else t += n / 1000000
    }
    printf "%.3f", t }'
}

# kib_timed LOG ARGS...: after quiet, runs nice -n 10 $KIB ARGS with its log in LOG and
# sets SECS (wall time) and RSS (kib's peak RSS in MiB, from getrusage, as
# kib logs it at the end of a build; else VmHWM polled from /proc).
kib_timed() {
  local log=$1; shift
  local s hwm=0 pid
  quiet
  s=$(now)
  nice -n 10 "$KIB" "$@" 2> "$log" > /dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local v
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
    sleep 0.1
  done
  wait "$pid" || { echo "kib $* failed; log: $log" >&2; tail -20 "$log" >&2; return 1; }
  SECS=$(el "$s" "$(now)")
  RSS=$(sed -n 's/.*msg="build done" peak_rss_mib=\([0-9.]*\).*/\1/p' "$log" | tail -1)
  [ -n "$RSS" ] || RSS=$(awk "BEGIN{printf \"%.1f\", $hwm / 1024}")
}

# stage_secs LOG STAGE: the seconds the stage STAGE took in the build of LOG
# (0 if it did not run).
stage_secs() {
  local d
  d=$(sed -n "s/.*msg=\"stage done\" pipeline=[^ ]* stage=$2 index=[0-9]* duration=\([^ ]*\).*/\1/p" "$1" | tail -1)
  if [ -n "$d" ]; then secs "$d"; else echo 0; fi
}

# stages LOG: each stage that ran, with its pipeline and time.
stages() {
  sed -n 's/.*msg="stage done" pipeline=\([^ ]*\) stage=\([^ ]*\) index=[0-9]* duration=\([^ ]*\).*/    \1 \2 \3/p' "$1"
}
