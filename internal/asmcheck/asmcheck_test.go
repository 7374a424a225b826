package asmcheck

import (
	"strings"
	"testing"
)

const sample = `#include "textflag.h"

#define SUM(y, x) \
	VEXTRACTF128 $1, y, X1; \
	ADDPS X1, x

// func bad(x *float32, n int) float32
TEXT ·bad(SB), NOSPLIT, $0-20
	MOVQ n+8(FP), BX
	MOVQ BX, X10            // fine: nothing dirty yet
	VBROADCASTSS (SI), Y0
	MOVQ BX, X11            // finding 1
	SUM(Y0, X0)             // finding 2 (ADDPS, from the macro)
	MOVSS X0, ret+16(FP)    // finding 3
	RET                     // finding 4

// func good(x *float32, n int) float32
TEXT ·good(SB), NOSPLIT, $0-20
	VBROADCASTSS (SI), Y0
	VMOVQ BX, X11
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET
`

func TestCheck(t *testing.T) {
	got := Check("sample.s", sample)
	want := []struct {
		line int
		op   string
	}{{12, "MOVQ"}, {13, "ADDPS"}, {14, "MOVSS"}, {15, "RET"}}
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Line != w.line || !strings.HasPrefix(got[i].Text, w.op) || got[i].Func != "·bad(SB)" {
			t.Errorf("finding %d = %v; want line %d, %s in ·bad(SB)", i, got[i], w.line, w.op)
		}
	}
}
