//go:build !amd64

package kernels

// bestKernel returns the fastest micro-kernel the CPU supports: on this
// architecture, the pure-Go one.
func bestKernel() *microKernel { return &kernelGo }
