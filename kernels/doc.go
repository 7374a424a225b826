// Package kernels holds the float32 numerical kernels that lm/ and loss/ share:
// matrix multiplication and a parallelism budget (Pool) that every kernel of a
// process draws its goroutines from.
//
// Layout: every matrix is row-major. A matrix with r rows and c columns stored
// with leading dimension ld occupies a[i*ld+j] for i < r, j < c; ld >= c.
//
// Written arguments come first (as in llm.c): Sgemm writes C and only C (never
// the padding of its rows beyond n). A, B and C must not alias. Shape
// mismatches are programmer errors and panic with the prefix "kernels:".
//
// Parallelism: a Pool has a budget of threads. A call runs one share of its work
// on the calling goroutine and starts extra goroutines only while the budget has
// free slots, so N simulated workers in one process calling kernels at the same
// time never run more than N + threads - 1 goroutines of kernel work.
//
// Sgemm is a blocked GEMM in the BLIS style (gemm_blocked.go). C is split
// into contiguous ranges of rows (or of columns, when C is wider than tall)
// over the budget; each part loops over column blocks of nc, K blocks of kc
// (packing op(B) into kc x nr micro-panels) and row blocks of mc (packing
// op(A) into kc x mr micro-panels), then calls a micro-kernel per mr x nr tile
// of C. Edge tiles go through a small buffer, so the kernel always computes a
// full tile. The transpositions only change the packing. Packing buffers
// belong to the Pool and are reused, so a call allocates nothing in the
// steady state when it runs on the caller alone (a call split over goroutines
// allocates the goroutines' closures).
//
// Micro-kernels, chosen at run time by NewPool with golang.org/x/sys/cpu:
//
//	avx2-6x16  amd64 with AVX2 and FMA (gemm_amd64.s): 12 ymm accumulators,
//	           mc=192 kc=256 nc=1024 (A block in L2, B micro-panel in L1)
//	go-4x8     anywhere else: portable Go, also run by the tests
//
// beta == 0 overwrites C without reading it (NaNs in C do not propagate);
// alpha == 0 or k == 0 only scales C by beta and reads neither A nor B.
//
// Every fast kernel has a naive reference (SgemmNaive) kept for tests; the
// tests run every micro-kernel against it on odd shapes.
//
// kernels knows nothing of models, losses, data or networks, and imports no
// BLAS library.
package kernels
