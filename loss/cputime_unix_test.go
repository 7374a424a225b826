//go:build unix

package loss

import "syscall"

// cpuSeconds returns the CPU time (user + system) of the process so far, or
// 0 where it is not known. On a shared machine CPU time per op varies less
// than wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
