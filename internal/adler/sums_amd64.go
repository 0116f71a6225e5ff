//go:build !purego

package adler

import "golang.org/x/sys/cpu"

// haveSums32 reports whether sums32 can run (AVX2).
var haveSums32 = cpu.X86.HasAVX2

// sums32 returns, for p made of 32-byte blocks (at most 64 KiB), the sum of
// its bytes, the sum over the blocks of the byte sum of the blocks before
// each, and the sum of each byte weighted 32, 31, ..., 1 by its place in its
// block.
//
//go:noescape
func sums32(p []byte) (total, prefix, weighted uint64)
