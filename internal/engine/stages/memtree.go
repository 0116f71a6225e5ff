package stages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The package tree is installed into a tmpfs of its own and copied into
// the store once complete, when the machine has the memory for it. mmdebstrap
// extracts the Essential packages and dpkg then writes every file again
// (as .dpkg-new, renamed over what the extraction left): on a disk that is
// still writing back an earlier build, those writes and renames waited for
// it (unpack 8.6 s quiet, 22 s after another build); in memory they do not,
// and the one copy at the end writes each file once. The tmpfs lives in
// mmdebstrap's private mount namespace, so it vanishes with it, also when
// the build is killed. KIB_BUILD_IN_MEMORY=off turns it off, to compare:
// the tree is the same.

// memReserve is the memory left to everything else while the tree is in
// memory: the page cache of the packages, dpkg, the maintainer scripts.
const memReserve = 1 << 30

// memTreeSize returns the size limit of the tmpfs the tree is built in, or
// 0 to build on disk: off by KIB_BUILD_IN_MEMORY=off, or when twice the
// estimated tree does not fit in available memory beside memReserve. The
// estimate is the packages' Installed-Size (in the local repository's index
// idx) plus a quarter, for the extraction, apt's lists and the initramfs.
func memTreeSize(idx []byte, available int64) (limit, estimate int64) {
	estimate = installedSize(idx) * 5 / 4
	if os.Getenv("KIB_BUILD_IN_MEMORY") == "off" || available <= memReserve || estimate == 0 {
		return 0, estimate
	}
	limit = available - memReserve
	if 2*estimate > limit {
		return 0, estimate
	}
	return limit, estimate
}

// installedSize sums the Installed-Size fields (KiB) of a Packages index
// or control file, in bytes; malformed fields count as 0.
func installedSize(idx []byte) int64 {
	var sum int64
	sc := bufio.NewScanner(bytes.NewReader(idx))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "Installed-Size:")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 {
			sum += n << 10
		}
	}
	return sum
}

// memAvailable returns MemAvailable from /proc/meminfo, in bytes; 0 when it
// cannot be read.
func memAvailable() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return parseMemAvailable(data)
}

func parseMemAvailable(meminfo []byte) int64 {
	for line := range strings.SplitSeq(string(meminfo), "\n") {
		v, ok := strings.CutPrefix(line, "MemAvailable:")
		if !ok {
			continue
		}
		var kib int64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err != nil {
			return 0
		}
		return kib << 10
	}
	return 0
}
