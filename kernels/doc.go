// Package kernels holds the float32 numerical kernels that lm/ and loss/ share:
// matrix multiplication, a parallelism budget (Pool) that every kernel of a
// process draws its goroutines from, and vectorised row kernels for the loss's
// softmax pass (exp.go: MaxMinSum, ExpSum, ExpSumStream, XLogXDot, Log, Dot,
// ScaleShift, Axpby, MulShift; exp_distill.go, for rows against a teacher's: ExpDiffDot,
// LogMixDot, LogMixConst, MulDiff, and GroupMaxMin, IndicesAbove and TopBound
// for a top-k selection;
// AVX-512 or AVX2 assembly chosen at run time, a Go loop elsewhere, each
// tested against its Go loop and a float64 reference. The exp and log heavy
// kernels and IndicesAbove have AVX-512 versions; the others run their AVX2
// code there).
//
// Layout: every matrix is row-major. A matrix with r rows and c columns stored
// with leading dimension ld occupies a[i*ld+j] for i < r, j < c; ld >= c.
//
// Written arguments come first (as in llm.c): Sgemm writes C and only C (never
// the padding of its rows beyond n). A, B and C must not alias. Shape
// mismatches are programmer errors and panic with the prefix "kernels:".
// beta == 0 overwrites C without reading it (NaNs in C do not propagate);
// alpha == 0 or k == 0 only scales C by beta and reads neither A nor B.
//
// # Parallelism
//
// A Pool has a budget of threads. A call runs one share of its work on the
// calling goroutine and starts extra goroutines only while the budget has free
// slots, never waiting for one, so N simulated workers in one process calling
// kernels at the same time never run more than N + threads - 1 goroutines of
// kernel work, and a call nested in a parallel loop runs inline. A call that
// runs on its caller alone allocates nothing; a call split over goroutines
// allocates their start-up (a few small objects). A goroutine whose share
// is done spins for up to 250 µs, yielding at every turn, for a share of
// the next call before it exits, and a caller whose share ends first waits
// for the others the same way before it parks: on these VMs a worker started
// for a call began its share 118-167 µs after its caller, a core idle at
// both ends of every call. A pool in yield mode (SetYield) parks at once: a
// spinning goroutine would hold off the network poller.
//
// # Sgemm
//
// Sgemm is a blocked GEMM in the BLIS style (gemm_blocked.go). The operand on
// the smaller side of C (op(B) when C has at least as many rows as columns,
// else op(A)) is packed once, whole, by all goroutines of the call together.
// C is then cut along its longer side into chunks of at most mc rows (or nc
// columns), shrinking towards the end (guided self-scheduling), that the
// goroutines claim one at a time and run over every column block of nc and K
// block of kc in order: a goroutine slowed by another process on its core
// leaves its share to the others. A goroutine waits for another only for a
// K block of the shared operand that the other is still packing. For each chunk and
// block, a goroutine packs its block of the other operand and calls the
// micro-kernel on every mr x nr tile, with the B micro-panel (kc x nr) outer
// so that it stays in L1 while the A micro-panels stream from L2. Edge tiles
// go through a small buffer, so the micro-kernel always computes whole
// tiles.
//
// op(A) = A^T is read in place (its micro-panels already lie in memory as the
// micro-kernel reads them); only its partial edge panel is packed. Small
// products (2mnk <= 2*160^3) also read op(B) = B in place, and row-major A
// too (micro-kernel variants that broadcast from mr row pointers), so that
// packing does not dominate them; tiny products (m*n*k <= 256) are plain
// loops. Packing buffers belong to the Pool and are reused.
//
// Every element of C is summed over k in the same order whatever the budget:
// results are bitwise identical for any number of threads.
//
// SgemmThen is Sgemm with an epilogue: when C is cut into chunks of rows
// (m >= n), each chunk's rows are handed to the caller's function on the
// goroutine that computed them, right after their last K block, while they
// are in cache; otherwise the rows are handed over after the product, split
// over the budget. lm fuses biases, GELU, residual adds and LayerNorm (and
// their backward) into its products this way.
//
// A row-major A is read in place (fnRowA) for small products and whenever C
// is at most 256 columns wide (its panels serve too few B panels to pay for
// packing); A^T is read in place unless its leading dimension is a multiple
// of 1024 floats, where every k step would fall on the same cache sets.
//
// Micro-kernels, chosen at run time by NewPool with golang.org/x/sys/cpu
// (no build tags; gemm_amd64.s holds the Plan 9 assembly, one macro per k
// step of each micro-kernel; other architectures build gemm_other.go):
//
//	avx512-12x32  AVX-512F: 24 zmm accumulators; mc=96 kc=1024 nc=1024
//	              where a core's L2 is 1 MiB or more (CPUID 0x80000006):
//	              A block 384 KiB in L2, B micro-panel 128 KiB streamed
//	              from L2, C written once for K <= 1024
//	avx512-12x32-kc192  the same kernel with mc=192 kc=192 for a smaller
//	              L2 (B micro-panel 24 KiB in L1, A block 144 KiB in L2)
//	avx2-6x16     AVX2+FMA: 12 ymm accumulators; mc=192 kc=256 nc=1024
//	              (B micro-panel 16 KiB and the streaming A micro-panel
//	              6 KiB in an L1 of 32 KiB, A block 192 KiB in an L2 of
//	              512 KiB: AMD Zen 3; 12 FMAs per 8 loads keep both FMA
//	              pipes busy at 97% of their peak in L1)
//	go-4x4        portable Go with scalar accumulators (kept to test the
//	              blocked driver without assembly)
//
// Where no assembly micro-kernel fits the CPU, Sgemm calls gonum's pure-Go
// Sgemm instead (through a value, one call per block of rows of C split over
// the budget), which is faster than the blocked driver around go-4x4.
//
// On amd64, packing uses AVX too: 8x8 and 4x8 register transposes for
// row-major A and transposed B, and a panel copy for row-major B.
//
// Every fast kernel has a naive reference (SgemmNaive) kept for tests; the
// tests run every micro-kernel the CPU supports, and the portable one,
// against it on odd shapes.
//
// kernels knows nothing of models, losses, data or networks, and calls no
// native BLAS library (no cgo): its only fallback is gonum's pure-Go Sgemm.
package kernels
