//go:build !amd64 || purego

package adler

const haveSums32 = false

func sums32([]byte) (total, prefix, weighted uint64) { panic("adler: sums32 without AVX2") }
