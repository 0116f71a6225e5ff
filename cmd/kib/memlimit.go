package main

import (
	"os"
	"runtime/debug"
)

// buildMemoryLimit is the Go heap's soft limit during kib build, unless
// GOMEMLIMIT sets another: with Go's default GOGC=100 alone, unpacking the
// build root (whole decompressed data.tar archives, several at once) peaked
// at 228 MiB of RSS; issue 13 bounds kib's own peak at 200 MiB. The GC works
// harder only when the heap nears the limit.
const buildMemoryLimit = 150 << 20

// limitBuildMemory sets buildMemoryLimit unless the user chose one.
func limitBuildMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(buildMemoryLimit)
	}
}
