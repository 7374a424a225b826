//go:build !amd64

package kernels

// bestKernel returns the fastest micro-kernel the CPU supports: on this
// architecture, the pure-Go one.
func bestKernel() *microKernel { return &kernelGo }

// cpuKernels returns the micro-kernels the CPU supports, fastest first.
func cpuKernels() []*microKernel { return []*microKernel{&kernelGo} }
