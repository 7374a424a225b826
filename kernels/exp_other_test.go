//go:build !amd64

package kernels

func archRowImpls() []rowImpl { return nil }

type namedLog struct {
	name string
	log  func(dst, x []float32)
}

func archLogs() []namedLog { return nil }

func archDistillImpls() []distillImpl { return nil }
