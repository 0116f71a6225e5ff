package engine

import "syscall"

// peakRSSMiB returns the largest resident set size this process has had, in
// MiB (not counting the tools it ran), or -1 if the kernel does not say.
func peakRSSMiB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}
