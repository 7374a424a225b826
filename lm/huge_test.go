package lm

import "testing"

// TestAdviseHuge: adviseHuge takes slices of any size and alignment and
// leaves their contents and later writes alone.
func TestAdviseHuge(t *testing.T) {
	big := make([]float32, 3<<20) // 12 MiB
	for i := range big[:100] {
		big[i] = float32(i)
	}
	for _, s := range [][]float32{big, big[1:], big[7 : len(big)-3], big[:10], big[:1<<20]} {
		adviseHuge(s)
	}
	for i := range big[:100] {
		if big[i] != float32(i) {
			t.Fatalf("[%d] = %v after adviseHuge", i, big[i])
		}
	}
	for i := range big {
		big[i] = 1
	}
	var sum float64
	for _, v := range big {
		sum += float64(v)
	}
	if sum != float64(len(big)) {
		t.Errorf("sum %v; want %d", sum, len(big))
	}
}
