//go:build !linux

package lm

// adviseHuge does nothing here (see huge_linux.go).
func adviseHuge([]float32) {}
