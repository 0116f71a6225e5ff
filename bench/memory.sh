# Sourced by the bench scripts: warm_memory touches the machine's free
# memory once before the timed builds (WARM=0 skips it).
#
# On this workplace's VMs the host backs guest memory on first touch: until
# the guest has used a page once, each new page costs about 2 µs more (perf:
# the page allocation, not the copy; dd into a tmpfs ran at 1.2 GB/s). A
# freshly booted machine pays it for every page its page cache grows by:
# copying a 669 MB disk image took 1.1-1.7 s instead of 0.16 s, and
# mkinitramfs, mkfs.ext4 and qemu-img slowed as much, by a different amount
# in each run. A builder that has run for a while has touched all of its
# memory (the page cache fills it), so the bench measures that state, for
# kib and the plain pipeline alike: it fills a tmpfs with the free memory
# less 1 GiB (the page cache stays) and removes it. It helps for a while
# only: these VMs run DAMON with a "pageout" scheme
# (/sys/kernel/mm/damon/admin/kdamonds/0: memory idle for 60 s is paged
# out, up to 128 MiB/s, and goes back to the host), so the store's page
# cache drops between builds and new pages cost the first touch again;
# the figures still move by a fifth between runs.
warm_memory() {
  [ "${WARM:-1}" = 0 ] && return 0
  local free mib d
  free=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
  mib=$(( free / 1024 - 1024 ))
  [ "$mib" -gt 0 ] || return 0
  d=$(mktemp -d)
  mount -t tmpfs -o "size=${mib}m" kib-bench-warm "$d"
  dd if=/dev/zero of="$d/fill" bs=1M count="$mib" status=none || true
  umount "$d"
  rmdir "$d"
}
