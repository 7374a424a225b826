package kernels

import (
	"testing"

	"github.com/klring/klring/internal/asmcheck"
)

// TestAsmNoSSETransitions checks this package's assembly for legacy SSE
// instructions run while the upper halves of the vector registers are dirty,
// and for returns without VZEROUPPER: on Zen 2 one such MOVQ made
// attention's softmax row 2.8 times slower.
func TestAsmNoSSETransitions(t *testing.T) { asmcheck.TestDir(t, ".") }
