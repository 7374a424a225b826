package kernels

import "golang.org/x/sys/cpu"

// sgemmKernel6x16AVX2 is the AVX2+FMA micro-kernel (gemm_amd64.s): one 6x16
// tile of C from packed panels, 12 ymm accumulators.
//
//go:noescape
func sgemmKernel6x16AVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernelAVX2 blocks for L1 48 KiB / L2 2 MiB per core: a packed B micro-panel
// (kc x 16) is 16 KiB and stays in L1, the packed A block (mc x kc) is 192 KiB
// and stays in L2.
var kernelAVX2 = microKernel{
	name: "avx2-6x16",
	mr:   6, nr: 16,
	mc: 192, kc: 256, nc: 1024,
	fn: sgemmKernel6x16AVX2,
}

// bestKernel returns the fastest micro-kernel the CPU supports.
func bestKernel() *microKernel {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return &kernelAVX2
	}
	return &kernelGo
}
