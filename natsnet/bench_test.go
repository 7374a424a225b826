package natsnet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/natsnet"
)

// benchChunk is the message size of the benchmarks: the default chunk.
const benchChunk = 1 << 20

// benchRing is n ranks ready to all-reduce vectors of length floats.
type benchRing struct {
	eps      []allreduce.Transport
	reducers []*allreduce.Reducer
	data     [][]float32
	close    func()
}

func memRing(n, length int) *benchRing {
	net := allreduce.NewMemNetwork()
	br := &benchRing{}
	var eps []*allreduce.MemEndpoint
	for r := range n {
		e := net.Endpoint("bench", 1, r)
		eps = append(eps, e)
		br.eps = append(br.eps, e)
	}
	br.close = func() {
		for _, e := range eps {
			e.Close()
		}
	}
	return br
}

func natsRing(b *testing.B, url string, n, length int, opts allreduce.Options) *benchRing {
	br := &benchRing{}
	var conns []*natsnet.Conn
	var rings []*natsnet.Ring
	parts := allreduce.MaxMessages(length, n, opts) + 16
	for r := range n {
		c := connect(b, natsnet.Options{URL: url, ChunkBytes: opts.ChunkBytes, PartsInFlight: parts})
		ring, err := c.Ring(context.Background(), "bench", 1, r)
		if err != nil {
			b.Fatal(err)
		}
		conns, rings = append(conns, c), append(rings, ring)
		br.eps = append(br.eps, ring)
	}
	br.close = func() {
		for r := range rings {
			rings[r].Close()
			conns[r].Close()
		}
	}
	return br
}

func (br *benchRing) run(b *testing.B, n int, step uint64, opts allreduce.Options) {
	h := allreduce.Header{Run: "bench", Epoch: 1, Step: step}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Go(func() {
			errs[r] = br.reducers[r].AllReduce(context.Background(), br.eps[r], h, r, n, br.data[r], opts, nil)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			b.Fatalf("AllReduce(rank %d) = %v", r, err)
		}
	}
}

// BenchmarkAllReduce reports, as nccl-tests does, algbw = S/t and busbw =
// algbw * 2(n-1)/n in GB/s, for a vector of S bytes over n ranks.
func BenchmarkAllReduce(b *testing.B) {
	s, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		b.Fatalf("StartServer = %v", err)
	}
	defer s.Shutdown()
	opts := allreduce.Options{ChunkBytes: benchChunk, Deadline: time.Minute}
	for _, tr := range []string{"mem", "nats"} {
		for _, n := range []int{2, 4, 8} {
			for _, mib := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("%s/n=%d/MiB=%d", tr, n, mib), func(b *testing.B) {
					length := mib << 20 / 4
					var br *benchRing
					if tr == "mem" {
						br = memRing(n, length)
					} else {
						br = natsRing(b, s.URL(), n, length, opts)
					}
					defer br.close()
					for range n {
						br.reducers = append(br.reducers, allreduce.NewReducer())
						br.data = append(br.data, make([]float32, length))
					}
					step := uint64(0)
					br.run(b, n, step, opts) // warm up: buffers, connections
					b.SetBytes(int64(mib) << 20)
					b.ResetTimer()
					start := time.Now()
					for b.Loop() {
						step++
						br.run(b, n, step, opts)
					}
					per := time.Since(start).Seconds() / float64(b.N)
					algbw := float64(mib<<20) / per / 1e9
					b.ReportMetric(algbw, "algbw_GB/s")
					b.ReportMetric(algbw*2*float64(n-1)/float64(n), "busbw_GB/s")
				})
			}
		}
	}
}

// pairs is n publisher -> subscriber pairs of connections through one server.
type pairs struct {
	pub, sub []*natsnet.Conn
	rings    []*natsnet.Ring
}

func newPairs(b *testing.B, url string, n, msgs int) *pairs {
	p := &pairs{}
	for i := range n {
		pub := connect(b, natsnet.Options{URL: url, ChunkBytes: benchChunk})
		sub := connect(b, natsnet.Options{URL: url, ChunkBytes: benchChunk, PartsInFlight: 4 * msgs})
		ring, err := sub.Ring(context.Background(), "tput", 1, i)
		if err != nil {
			b.Fatal(err)
		}
		p.pub, p.sub, p.rings = append(p.pub, pub), append(p.sub, sub), append(p.rings, ring)
	}
	return p
}

func (p *pairs) close() {
	for i := range p.rings {
		p.rings[i].Close()
		p.sub[i].Close()
		p.pub[i].Close()
	}
}

// transfer sends msgs messages of len(payload) bytes over every pair at once
// and returns when every subscriber has them all.
func (p *pairs) transfer(b *testing.B, msgs int, payload []byte) {
	var wg sync.WaitGroup
	for i := range p.rings {
		subj := allreduce.Subject("tput", 1, i)
		wg.Go(func() {
			for range msgs {
				if err := p.pub[i].NC.Publish(subj, payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for range msgs {
				if _, err := p.rings[i].Recv(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkNATSThroughput measures the aggregate GB/s that n concurrent
// publisher -> subscriber pairs (2n connections) move through one embedded
// server in messages of benchChunk bytes: a ring all-reduce through one
// server cannot exceed busbw = aggregate/n.
func BenchmarkNATSThroughput(b *testing.B) {
	s, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		b.Fatalf("StartServer = %v", err)
	}
	defer s.Shutdown()
	const perPair = 16 << 20
	const msgs = perPair / benchChunk
	payload := make([]byte, benchChunk)
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) {
			p := newPairs(b, s.URL(), n, msgs)
			defer p.close()
			p.transfer(b, msgs, payload)
			b.SetBytes(int64(n) * perPair)
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				p.transfer(b, msgs, payload)
			}
			per := time.Since(start).Seconds() / float64(b.N)
			b.ReportMetric(float64(n*perPair)/per/1e9, "aggregate_GB/s")
		})
	}
}

// BenchmarkNATSRingEfficiency alternates, in one loop, an all-reduce of
// 16 MiB over a ring of n ranks and a transfer over n pairs that moves the
// same bytes through the server (2(n-1)/n of 16 MiB per pair), so that both
// see the same load from the rest of the machine, and reports the ring's
// busbw as a fraction of the ceiling aggregate/n.
func BenchmarkNATSRingEfficiency(b *testing.B) {
	s, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		b.Fatalf("StartServer = %v", err)
	}
	defer s.Shutdown()
	const mib = 16
	opts := allreduce.Options{ChunkBytes: benchChunk, Deadline: time.Minute}
	payload := make([]byte, benchChunk)
	for _, n := range []int{2, 4, 8} {
		b.Run(fmt.Sprintf("n=%d/MiB=%d", n, mib), func(b *testing.B) {
			length := mib << 20 / 4
			br := natsRing(b, s.URL(), n, length, opts)
			defer br.close()
			for range n {
				br.reducers = append(br.reducers, allreduce.NewReducer())
				br.data = append(br.data, make([]float32, length))
			}
			msgs := 2 * (n - 1) * (mib << 20) / n / benchChunk
			p := newPairs(b, s.URL(), n, msgs)
			defer p.close()
			step := uint64(0)
			br.run(b, n, step, opts)
			p.transfer(b, msgs, payload)
			var ring, tput time.Duration
			for b.Loop() {
				step++
				t0 := time.Now()
				br.run(b, n, step, opts)
				t1 := time.Now()
				p.transfer(b, msgs, payload)
				ring, tput = ring+t1.Sub(t0), tput+time.Since(t1)
			}
			busbw := float64(mib<<20) / (ring.Seconds() / float64(b.N)) / 1e9 * 2 * float64(n-1) / float64(n)
			ceiling := float64(n*msgs*benchChunk) / (tput.Seconds() / float64(b.N)) / 1e9 / float64(n)
			b.ReportMetric(busbw, "busbw_GB/s")
			b.ReportMetric(ceiling, "ceiling_GB/s")
			b.ReportMetric(100*busbw/ceiling, "%_of_ceiling")
		})
	}
}
