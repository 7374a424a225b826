//go:build !linux

package kernels

import "testing"

// guardedFloats returns n float32s; on Linux they end where an
// inaccessible page begins (guard_linux_test.go).
func guardedFloats(t *testing.T, n int) []float32 { return make([]float32, n) }
