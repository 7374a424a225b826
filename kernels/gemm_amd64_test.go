package kernels

import (
	"fmt"
	"testing"
)

// TestPackTA checks the assembly packing of A^T micro-panels against its
// definition, dst[q*mr*kc+p*mr+i] = src[p*lds+q*mr+i], for row counts on
// both sides of the 8-row blocks, with a source that ends at the last value
// packed, right before an inaccessible page on Linux (guardedFloats): a
// read past it faults.
func TestPackTA(t *testing.T) {
	for _, kern := range cpuKernels() {
		if kern.packTA == nil {
			continue
		}
		mr := kern.mr
		for _, kc := range []int{1, 7, 8, 9, 16, 23, 256} {
			for _, panels := range []int{1, 2, 5, 32} {
				lds := panels*mr + 3
				t.Run(fmt.Sprintf("%s/kc=%d/panels=%d", kern.name, kc, panels), func(t *testing.T) {
					src := guardedFloats(t, (kc-1)*lds+panels*mr)
					for i := range src {
						src[i] = float32(i + 1)
					}
					dst := make([]float32, panels*mr*kc+1)
					dst[len(dst)-1] = -1
					kern.packTA(&dst[0], &src[0], lds, kc, panels)
					for q := 0; q < panels; q++ {
						for p := 0; p < kc; p++ {
							for i := 0; i < mr; i++ {
								if got, want := dst[q*mr*kc+p*mr+i], src[p*lds+q*mr+i]; got != want {
									t.Fatalf("dst[panel %d, step %d, %d] = %v; want %v", q, p, i, got, want)
								}
							}
						}
					}
					if dst[len(dst)-1] != -1 {
						t.Fatal("packTA wrote past its panels")
					}
				})
			}
		}
	}
}

// TestPackPanels checks the assembly packing of B micro-panels against its
// definition, dst[q*nr*kc+p*nr+j] = src[p*lds+q*nr+j], without writing past
// the panels or reading past the source (guardedFloats).
func TestPackPanels(t *testing.T) {
	for _, kern := range cpuKernels() {
		if kern.packPanels == nil {
			continue
		}
		nr := kern.nr
		for _, kc := range []int{1, 7, 256} {
			for _, panels := range []int{1, 3, 64} {
				lds := panels*nr + 5
				t.Run(fmt.Sprintf("%s/kc=%d/panels=%d", kern.name, kc, panels), func(t *testing.T) {
					src := guardedFloats(t, (kc-1)*lds+panels*nr)
					for i := range src {
						src[i] = float32(i + 1)
					}
					dst := make([]float32, panels*nr*kc+1)
					dst[len(dst)-1] = -1
					kern.packPanels(&dst[0], &src[0], lds, kc, panels, nr)
					for q := 0; q < panels; q++ {
						for p := 0; p < kc; p++ {
							for j := 0; j < nr; j++ {
								if got, want := dst[q*nr*kc+p*nr+j], src[p*lds+q*nr+j]; got != want {
									t.Fatalf("dst[panel %d, step %d, %d] = %v; want %v", q, p, j, got, want)
								}
							}
						}
					}
					if dst[len(dst)-1] != -1 {
						t.Fatal("packPanels wrote past its panels")
					}
				})
			}
		}
	}
}
