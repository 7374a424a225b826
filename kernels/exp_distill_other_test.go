//go:build !amd64

package kernels

func archSelectImpls() []selectImpl { return nil }
