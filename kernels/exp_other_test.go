//go:build !amd64

package kernels

func archRowImpls() []rowImpl { return nil }

type namedLog struct {
	name string
	log  func(dst, x []float32)
}

func archLogs() []namedLog { return nil }

func archDistillImpls() []distillImpl { return nil }

type namedLogMixConst = struct {
	name string
	f    func(dst, z, e []float32, pc, cq, a, b float32) (float64, float64)
}

func archLogMixConst() []namedLogMixConst { return nil }
