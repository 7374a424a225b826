package lm

import (
	"syscall"
	"unsafe"
)

// hugePage is the size of a transparent huge page on amd64 and arm64 Linux.
const hugePage = 2 << 20

// adviseHuge asks Linux to back the whole 2 MiB pages inside s with
// transparent huge pages (madvise MADV_HUGEPAGE: the machine's default may
// be to use them only where asked). It is meant for buffers of many MiB
// streamed every step, right after they are made and before they are first
// written: one TLB entry then covers 2 MiB instead of 4 KiB. An error (a
// kernel without THP) leaves the pages as they are.
func adviseHuge(s []float32) {
	if len(s)*4 < 2*hugePage {
		return
	}
	base := unsafe.Pointer(&s[0])
	p := uintptr(base)
	lo := (p + hugePage - 1) &^ (hugePage - 1)
	hi := (p + uintptr(len(s))*4) &^ (hugePage - 1)
	if hi > lo {
		_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(base, lo-p)), hi-lo), syscall.MADV_HUGEPAGE)
	}
}
