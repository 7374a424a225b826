package kernels

import "golang.org/x/sys/cpu"

// sgemmKernel6x16AVX2 is the AVX2+FMA micro-kernel (gemm_amd64.s): one 6x16
// tile of C from packed panels, 12 ymm accumulators.
//
//go:noescape
func sgemmKernel6x16AVX2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// sgemmKernel6x16AVX2RowA is sgemmKernel6x16AVX2 reading A in place from a
// row-major matrix: row i of the tile at a[i*lda], k steps adjacent.
//
//go:noescape
func sgemmKernel6x16AVX2RowA(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// transpose8AVX transposes 8 rows of src and 8*n8 columns into dst:
// dst[p*ldd+i] = src[i*lds+p] (gemm_amd64.s; needs AVX).
//
//go:noescape
func transpose8AVX(dst *float32, ldd int, src *float32, lds int, n8 int)

// transpose4AVX is transpose8AVX for 4 rows (gemm_amd64.s; needs AVX).
//
//go:noescape
func transpose4AVX(dst *float32, ldd int, src *float32, lds int, n8 int)

// packPanelsAVX packs kc rows (lds apart) of panels*nr columns of src into
// micro-panels: dst[q*nr*kc+p*nr+j] = src[p*lds+q*nr+j]; nr is a multiple
// of 8 (gemm_amd64.s; needs AVX).
//
//go:noescape
func packPanelsAVX(dst *float32, src *float32, lds int, kc int, panels int, nr int)

// packTA6AVX packs kc rows (lds apart) of panels*6 columns of src into
// 6-wide micro-panels: dst[q*6*kc+p*6+i] = src[p*lds+q*6+i]
// (gemm_amd64.s; SSE2 and general registers only).
//
//go:noescape
func packTA6AVX(dst *float32, src *float32, lds int, kc int, panels int)

// packTA12AVX is packTA6AVX for 12-wide micro-panels (gemm_amd64.s; needs
// AVX).
//
//go:noescape
func packTA12AVX(dst *float32, src *float32, lds int, kc int, panels int)

// kernelAVX2 blocks for L1 48 KiB / L2 2 MiB per core: a packed B micro-panel
// (kc x 16) is 16 KiB and stays in L1, the packed A block (mc x kc) is 192 KiB
// and stays in L2.
var kernelAVX2 = microKernel{
	name: "avx2-6x16",
	mr:   6, nr: 16,
	mc: 192, kc: 256, nc: 1024,
	fn:         sgemmKernel6x16AVX2,
	fnRowA:     sgemmKernel6x16AVX2RowA,
	transpose8: transpose8AVX,
	transpose4: transpose4AVX,
	packPanels: packPanelsAVX,
	packTA:     packTA6AVX,
}

// sgemmKernel12x32AVX512 is the AVX-512 micro-kernel (gemm_amd64.s): one
// 12x32 tile of C from packed panels, 24 zmm accumulators.
//
//go:noescape
func sgemmKernel12x32AVX512(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// sgemmKernel12x32AVX512RowA is sgemmKernel12x32AVX512 reading A in place
// from a row-major matrix: row i of the tile at a[i*lda], k steps adjacent.
//
//go:noescape
func sgemmKernel12x32AVX512RowA(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

// kernelAVX512 blocks for L1 48 KiB / L2 2 MiB per core: a packed B
// micro-panel (kc x 32) is 24 KiB and stays in L1 beside the 9 KiB A
// micro-panel; the packed A block (mc x kc) is 144 KiB, the B block 768 KiB,
// both in L2.
var kernelAVX512 = microKernel{
	name: "avx512-12x32",
	mr:   12, nr: 32,
	mc: 192, kc: 192, nc: 1024,
	fn:         sgemmKernel12x32AVX512,
	fnRowA:     sgemmKernel12x32AVX512RowA,
	transpose8: transpose8AVX,
	transpose4: transpose4AVX,
	packPanels: packPanelsAVX,
	packTA:     packTA12AVX,
}

// cpuKernels returns the micro-kernels the CPU supports, fastest first.
func cpuKernels() []*microKernel {
	var ks []*microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, &kernelAVX512)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &kernelAVX2)
	}
	return append(ks, &kernelGo)
}

// bestKernel returns the fastest micro-kernel the CPU supports.
func bestKernel() *microKernel {
	return cpuKernels()[0]
}
