package kernels

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestPackPanelsAsm checks the assembly packings against their definition,
// dst[q*w*kc + p*w + i] = src[p*lds + q*w + i] for w-wide micro-panels:
// packTA (A^T, w = mr; row counts on both sides of its 8-row blocks) and
// packPanels (B, w = nr). The source ends at the last value packed, right
// before an inaccessible page on Linux (guardedFloats), so a read past it
// faults; a guard value after dst catches a write past the panels.
func TestPackPanelsAsm(t *testing.T) {
	type packer struct {
		name string
		w    int
		kcs  []int
		pack func(dst, src *float32, lds, kc, panels int)
	}
	for _, kern := range cpuKernels() {
		var ps []packer
		if f := kern.packTA; f != nil {
			ps = append(ps, packer{"packTA", kern.mr, []int{1, 7, 8, 9, 16, 23, 256}, f})
		}
		if f := kern.packPanels; f != nil {
			nr := kern.nr
			ps = append(ps, packer{"packPanels", nr, []int{1, 7, 256}, func(dst, src *float32, lds, kc, panels int) {
				f(dst, src, lds, kc, panels, nr)
			}})
		}
		for _, pk := range ps {
			w := pk.w
			for _, kc := range pk.kcs {
				for _, panels := range []int{1, 2, 5, 32, 64} {
					lds := panels*w + 3
					t.Run(fmt.Sprintf("%s/%s/kc=%d/panels=%d", kern.name, pk.name, kc, panels), func(t *testing.T) {
						src := guardedFloats(t, (kc-1)*lds+panels*w)
						for i := range src {
							src[i] = float32(i + 1)
						}
						dst := make([]float32, panels*w*kc+1)
						dst[len(dst)-1] = -1
						pk.pack(&dst[0], &src[0], lds, kc, panels)
						for q := 0; q < panels; q++ {
							for p := 0; p < kc; p++ {
								for i := 0; i < w; i++ {
									if got, want := dst[q*w*kc+p*w+i], src[p*lds+q*w+i]; got != want {
										t.Fatalf("dst[panel %d, step %d, %d] = %v; want %v", q, p, i, got, want)
									}
								}
							}
						}
						if dst[len(dst)-1] != -1 {
							t.Fatal("wrote past its panels")
						}
					})
				}
			}
		}
	}
}

// TestL2PerCore checks CPUID's L2 size against the kernel's view of Linux
// (sysfs, which other CPUID leaves fill), where both are there to compare:
// the blocking that NewPool picks from it must be the one sysfs's size
// would give.
func TestL2PerCore(t *testing.T) {
	l2 := l2PerCore()
	t.Logf("L2 per core: %d KiB", l2>>10)
	const dir = "/sys/devices/system/cpu/cpu0/cache/index2/"
	level, err := os.ReadFile(dir + "level")
	if err != nil || strings.TrimSpace(string(level)) != "2" {
		t.Skipf("no sysfs L2 to compare with (%s: %q, %v)", dir, level, err)
	}
	raw, err := os.ReadFile(dir + "size")
	if err != nil {
		t.Skipf("no sysfs L2 size to compare with: %v", err)
	}
	var kib int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(raw)), "%dK", &kib); err != nil {
		t.Skipf("sysfs L2 size %q: %v", raw, err)
	}
	if l2 == kib<<10 {
		return
	}
	// A hypervisor may fill the two leaves differently; only a different
	// choice of blocking is an error.
	t.Logf("l2PerCore() = %d KiB, sysfs says %d KiB", l2>>10, kib)
	if (l2 >= 1<<20) != (kib >= 1<<10) {
		t.Fatalf("l2PerCore() = %d KiB and sysfs's %d KiB pick different blockings", l2>>10, kib)
	}
}
