//go:build amd64 && !purego

package lm

import "golang.org/x/sys/cpu"

// haveAVX512 selects the AVX-512 versions of the element-wise kernels
// (fastmath_avx512_amd64.s), which give the same bits as the AVX2 ones. It is
// set once from the CPU's features and never changes.
var haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ &&
	cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL

// The AVX-512 kernels take n a multiple of 8, as their AVX2 versions do.

//go:noescape
func geluFwdAVX512(out, inp *float32, n int)

//go:noescape
func geluBwdAVX512(dinp, inp, dout *float32, n int)

//go:noescape
func geluBwdSetAVX512(dinp, inp, dout *float32, n int)

//go:noescape
func geluFwdGradAVX512(out, gp, inp *float32, n int)

//go:noescape
func expSubAVX512(x *float32, n int, sub float32) float32
