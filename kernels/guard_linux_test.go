package kernels

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guardedFloats returns n float32s that end where an inaccessible page
// begins, so that a kernel reading past the last one faults (and the test
// dies) instead of reading whatever follows. The mapping is freed when the
// test ends.
func guardedFloats(t *testing.T, n int) []float32 {
	t.Helper()
	page := unix.Getpagesize()
	size := (n*4 + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size+page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	if err := unix.Mprotect(mem[size:], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[size-n*4])), n)
}
