// Package asmcheck reads Go assembly (.s) source and reports legacy SSE
// instructions that may run while the upper halves of the vector registers
// are dirty (after a ymm or zmm register is written, before VZEROUPPER),
// and returns that may leave them dirty. Some CPUs pay heavily for either:
// on an AMD EPYC of family 23 (Zen 2), one MOVQ from a general register into
// an xmm register after AVX code made attention's softmax row 2.8 times
// slower. The packages with assembly (kernels, lm) test their own files with
// it.
//
// It knows nothing of what the assembly computes. It expands #define macros
// where they are used (with their arguments; object-like macros used as
// operands too, as register aliases), strips comments, and follows each TEXT
// block along its jumps to local labels, so an instruction is reported when
// some path from the entry reaches it dirty. Any instruction that names a
// ymm or zmm register counts as dirtying, and any non-VEX instruction that
// names an xmm register as legacy SSE.
package asmcheck
