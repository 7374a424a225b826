// Package kernels holds the float32 numerical kernels that lm/ and loss/ share:
// matrix multiplication and a parallelism budget (Pool) that every kernel of a
// process draws its goroutines from.
//
// Layout: every matrix is row-major. A matrix with r rows and c columns stored
// with leading dimension ld occupies a[i*ld+j] for i < r, j < c; ld >= c.
//
// Written arguments come first (as in llm.c): Sgemm writes C and only C. A, B and C
// must not alias. Shape mismatches are programmer errors and panic with the
// prefix "kernels:".
//
// Parallelism: a Pool has a budget of threads. A call runs one share of its work
// on the calling goroutine and starts extra goroutines only while the budget has
// free slots, so N simulated workers in one process calling kernels at the same
// time never run more than N + threads - 1 goroutines of kernel work.
//
// Every fast kernel has a naive reference (SgemmNaive) kept for tests.
//
// kernels knows nothing of models, losses, data or networks. It is the only
// package of klring that imports gonum's BLAS, and it calls it through a value,
// never through the process-wide blas32.Use.
package kernels
