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

// kernelAVX512 blocks for an L2 of 1 MiB or more per core (Zen 4 and 5,
// Skylake-SP and later Xeons): the packed A block (mc x kc = 96 x 1024) is
// 384 KiB and stays in L2; a B micro-panel (kc x 32, 128 KiB) streams from
// L2 beside the A micro-panel (48 KiB) for the block's 8 A micro-panels
// (about 25 GB/s at the kernel's peak). With K up to kc, C is written
// once, instead of read and written again for every K block (the 12 rows of
// a C tile, often a multiple of 4 KiB apart, fall on one set of the L1: the
// likely cause of the gain, not measured apart). On Zen 4 (L1d 32 KiB,
// L2 1 MiB) the 1024^3 product ran at 108 GFLOP/s against 101 with blocks
// of 192 x 192 at one thread, 212 against 199 at two, and the products of
// the small model 0-4% faster at one thread, 0-8% at two.
var kernelAVX512 = microKernel{
	name: "avx512-12x32",
	mr:   12, nr: 32,
	mc: 96, kc: 1024, nc: 1024,
	fn:         sgemmKernel12x32AVX512,
	fnRowA:     sgemmKernel12x32AVX512RowA,
	transpose8: transpose8AVX,
	transpose4: transpose4AVX,
	packPanels: packPanelsAVX,
	packTA:     packTA12AVX,
}

// kernelAVX512SmallL2 is kernelAVX512 for an L2 under 1 MiB per core: a
// packed B micro-panel (kc x 32) is 24 KiB and stays in L1 beside the 9
// KiB A micro-panel; the packed A block (mc x kc) is 144 KiB.
var kernelAVX512SmallL2 = func() microKernel {
	k := kernelAVX512
	k.name, k.mc, k.kc = "avx512-12x32-kc192", 192, 192
	return k
}()

// cpuid executes CPUID with EAX = leaf and ECX = sub (cpuid_amd64.s).
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// l2PerCore returns the size in bytes of one core's L2 cache, as CPUID
// leaf 0x80000006 reports it on AMD and Intel CPUs (ECX bits 31..16, in
// KiB), or 0 where the CPU does not report it.
func l2PerCore() int {
	if maxExt, _, _, _ := cpuid(0x80000000, 0); maxExt < 0x80000006 {
		return 0
	}
	_, _, ecx, _ := cpuid(0x80000006, 0)
	return int(ecx>>16) << 10
}

// cpuKernels returns the micro-kernels the CPU supports, fastest first:
// both blockings of the AVX-512 kernel, the one fitted to the L2 first.
func cpuKernels() []*microKernel {
	var ks []*microKernel
	if cpu.X86.HasAVX512F {
		if l2PerCore() >= 1<<20 {
			ks = append(ks, &kernelAVX512, &kernelAVX512SmallL2)
		} else {
			ks = append(ks, &kernelAVX512SmallL2, &kernelAVX512)
		}
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
