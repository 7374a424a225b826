package shard

import "math/bits"

// rng is SplitMix64: tiny, fast, and fixed by this file, so that a seed gives
// the same corpus and the same epoch order in every process, on every
// platform and under every Go release (math/rand's derived functions are not
// promised to stay the same).
type rng struct{ s uint64 }

// Domains that separate the streams drawn from one Options.Seed.
const (
	domainSource uint64 = 0x736f75726365 // "source"
	domainOrder  uint64 = 0x6f72646572   // "order"
)

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newRNG returns the stream of seed in domain, for item (an epoch, say).
func newRNG(seed, domain, item uint64) rng {
	return rng{s: mix64(seed^mix64(domain)) ^ mix64(item+0x9e3779b97f4a7c15)}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// float64 returns a uniform value in [0, 1) with 53 random bits.
func (r *rng) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// intn returns a uniform value in [0, n) (Lemire's method, unbiased).
func (r *rng) intn(n int) int {
	un := uint64(n)
	hi, lo := bits.Mul64(r.next(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(r.next(), un)
		}
	}
	return int(hi)
}

// shuffle permutes p uniformly (Fisher-Yates).
func (r *rng) shuffle(p []int32) {
	for i := len(p) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
}
