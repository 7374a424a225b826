//go:build linux || darwin || freebsd || netbsd || openbsd

package mmap

import (
	"fmt"
	"os"
	"syscall"
)

// File maps a file of size bytes read-only. The pages live in the page
// cache, not on the Go heap; unmap releases them.
func File(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("mapping %s: %d bytes do not fit in an int", f.Name(), size)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping %s: %w", f.Name(), err)
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
