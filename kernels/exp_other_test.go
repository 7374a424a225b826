//go:build !amd64

package kernels

func archRowImpls() []rowImpl { return nil }
