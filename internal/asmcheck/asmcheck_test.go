package asmcheck

import (
	"strings"
	"testing"
)

const sample = `#include "textflag.h"

#define SUM(y, x) \
	VEXTRACTF128 $1, y, X1; \
	ADDPS X1, x

  #define ACC Y8
/* MOVQ BX, X1 in a block comment is no code */

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
loop: VMOVSS X0, (DI)
	RET

// func paths(n int)
TEXT ·paths(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	TESTQ CX, CX
	JZ   clean
	VXORPS ACC, ACC, ACC    // through the alias
	JMP  tail

clean:
	VZEROUPPER
	RET

tail:
	MOVSS X0, (DI)          // finding 5: dirty on the path through JMP
	done: RET               // finding 6
`

func TestCheck(t *testing.T) {
	rep := Check("sample.s", sample)
	want := []struct {
		line int
		fn   string
		op   string
	}{
		{15, "·bad(SB)", "MOVQ"}, {16, "·bad(SB)", "ADDPS"}, {17, "·bad(SB)", "MOVSS"}, {18, "·bad(SB)", "RET"},
		{42, "·paths(SB)", "MOVSS"}, {43, "·paths(SB)", "RET"},
	}
	if rep.Funcs != 3 {
		t.Errorf("read %d TEXT blocks; want 3", rep.Funcs)
	}
	got := rep.Findings
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Line != w.line || !strings.HasPrefix(got[i].Text, w.op) || got[i].Func != w.fn {
			t.Errorf("finding %d = %v; want line %d, %s in %s", i, got[i], w.line, w.op, w.fn)
		}
	}
}
