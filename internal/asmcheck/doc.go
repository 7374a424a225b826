// Package asmcheck reads Go assembly (.s) source and reports legacy SSE
// instructions that run while the upper halves of the vector registers are
// dirty (after a ymm or zmm register is written, before VZEROUPPER), and
// functions that return with them dirty. Some CPUs pay heavily for either:
// on an AMD EPYC of family 23 (Zen 2), one MOVQ from a general register into
// an xmm register after AVX code made attention's softmax row 2.8 times
// slower. The packages with assembly (kernels, lm) test their own files with
// it. It knows nothing of what the assembly computes; it follows each TEXT
// block in source order, expanding #define macros (with their arguments),
// and does not follow jumps, so a function whose paths differ in the state
// they leave is checked along its text only.
package asmcheck
