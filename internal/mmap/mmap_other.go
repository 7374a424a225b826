//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package mmap

import (
	"fmt"
	"io"
	"os"
)

// File reads the whole file: this platform has no mmap here.
func File(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return b, func() error { return nil }, nil
}
