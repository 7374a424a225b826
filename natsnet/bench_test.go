package natsnet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/natsnet"
)

// benchChunk is the message size of the benchmarks: the default chunk.
const benchChunk = 1 << 20

// benchRing is n ranks ready to all-reduce vectors of length floats, each
// with its persistent mailbox (and, over NATS, its connection).
type benchRing struct {
	mbs      []allreduce.Mailbox
	members  []string
	reducers []*allreduce.Reducer
	data     [][]float32
	close    func()
	conns    []*natsnet.Conn
}

func members(n int) []string {
	m := make([]string, n)
	for r := range m {
		m[r] = fmt.Sprintf("w%d", r)
	}
	return m
}

// memRing is a ring of in-memory mailboxes.
func memRing(b *testing.B, n int) *benchRing {
	hub := allreduce.NewMemHub(allreduce.Limits{})
	br := &benchRing{members: members(n)}
	for _, w := range br.members {
		mb, err := hub.Mailbox("bench", w)
		if err != nil {
			b.Fatal(err)
		}
		br.mbs = append(br.mbs, mb)
	}
	br.close = func() {
		for _, mb := range br.mbs {
			mb.Close()
		}
	}
	return br
}

// natsRing is a ring of NATS mailboxes, one connection each, as in
// production: pending limits sized for one all-reduce of length floats. Rank
// r connects to servers[r mod len(servers)] (and fails over to the others);
// the ring's subscriptions are known to every server when it returns.
func natsRing(b *testing.B, servers []*natsnet.Server, job string, n, length int, opts allreduce.Options) *benchRing {
	return natsRingWith(b, servers, nil, job, n, length, opts)
}

// natsRingInProcess is natsRing over one embedded server with in-process
// connections (natsnet.Options.InProcess).
func natsRingInProcess(b *testing.B, s *natsnet.Server, job string, n, length int, opts allreduce.Options) *benchRing {
	return natsRingWith(b, []*natsnet.Server{s}, s, job, n, length, opts)
}

func natsRingWith(b *testing.B, servers []*natsnet.Server, inproc *natsnet.Server, job string, n, length int, opts allreduce.Options) *benchRing {
	br := &benchRing{members: members(n)}
	parts := allreduce.MaxMessages(length, n, opts) + 16
	for r, w := range br.members {
		co := natsnet.Options{URL: natsnet.URLs(servers, r%len(servers)), ChunkBytes: opts.ChunkBytes + natsnet.HeaderRoom, PartsInFlight: parts}
		if inproc != nil {
			co.InProcess = inproc
		}
		c := connect(b, co)
		mb, err := natsnet.NewMailbox(context.Background(), c, job, w)
		if err != nil {
			b.Fatal(err)
		}
		br.conns, br.mbs = append(br.conns, c), append(br.mbs, mb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range br.members {
		if err := natsnet.WaitInterest(ctx, "klring."+job+".ring."+w, servers...); err != nil {
			b.Fatal(err)
		}
	}
	br.close = func() {
		for r := range br.mbs {
			br.mbs[r].Close()
			br.conns[r].Close()
		}
	}
	return br
}

// run runs one attempt, step, on every rank: Begin, then AllReduce.
func (br *benchRing) run(b *testing.B, n int, step uint64, opts allreduce.Options) {
	h := allreduce.Header{Run: "bench", Epoch: 1, Step: step}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Go(func() {
			t, err := br.mbs[r].Begin(h, br.members, r)
			if err != nil {
				errs[r] = err
				return
			}
			errs[r] = br.reducers[r].AllReduce(context.Background(), t, h, r, n, br.data[r], opts, nil)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			for r2, err2 := range errs {
				b.Logf("rank %d: %v; mailbox %+v", r2, err2, br.mbs[r2].Stats())
				if br.conns != nil {
					b.Logf("rank %d: connection reconnected %d times, %d slow-consumer events", r2, br.conns[r2].NC.Stats().Reconnects, br.conns[r2].SlowConsumers())
				}
			}
			b.Fatalf("AllReduce(rank %d) = %v", r, err)
		}
	}
}

// BenchmarkAllReduce reports, as nccl-tests does, algbw = S/t and busbw =
// algbw * 2(n-1)/n in GB/s, for a vector of S bytes over n ranks, over the
// in-memory mailboxes (mem), the NATS mailboxes production uses through one
// embedded server (nats: every flow of the ring crosses that server, a
// star), and through a cluster of n embedded servers joined by routes, one
// rank on each (nats-cluster: each ring hop crosses one route, between the
// servers of two neighbours).
func BenchmarkAllReduce(b *testing.B) {
	s, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		b.Fatalf("StartServer = %v", err)
	}
	defer s.Shutdown()
	opts := allreduce.Options{ChunkBytes: benchChunk, Deadline: time.Minute}
	for _, tr := range []string{"mem", "nats", "nats-inproc", "nats-cluster"} {
		for _, n := range []int{2, 4, 8} {
			for _, mib := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("%s/n=%d/MiB=%d", tr, n, mib), func(b *testing.B) {
					length := mib << 20 / 4
					var br *benchRing
					switch tr {
					case "mem":
						br = memRing(b, n)
					case "nats":
						br = natsRing(b, []*natsnet.Server{s}, "bench", n, length, opts)
					case "nats-inproc":
						br = natsRingInProcess(b, s, "bench", n, length, opts)
					default:
						servers := benchCluster(b, n)
						br = natsRing(b, servers, "bench", n, length, opts)
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

// benchCluster starts k clustered embedded servers for one benchmark.
func benchCluster(b *testing.B, k int) []*natsnet.Server {
	servers, err := natsnet.StartCluster(k, natsnet.ServerOptions{})
	if err != nil {
		b.Fatalf("StartCluster(%d) = %v", k, err)
	}
	b.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
	})
	return servers
}

// pairs is n publisher -> subscriber pairs of connections through one
// server, with plain synchronous subscriptions: what NATS itself moves.
type pairs struct {
	pub, sub []*natsnet.Conn
	subs     []*nats.Subscription
}

func tputSubject(i int) string { return fmt.Sprintf("klring.tput.pair.%d", i) }

// newPairs connects n pairs; pair i's publisher is on servers[i mod k] and
// its subscriber on servers[(i+1) mod k], so that with k servers in a
// cluster every pair crosses one route, as a ring hop does.
func newPairs(b *testing.B, servers []*natsnet.Server, n, msgs int) *pairs {
	p := &pairs{}
	k := len(servers)
	for i := range n {
		pub := connect(b, natsnet.Options{URL: servers[i%k].URL(), ChunkBytes: benchChunk})
		sub := connect(b, natsnet.Options{URL: servers[(i+1)%k].URL(), ChunkBytes: benchChunk, PartsInFlight: 4 * msgs})
		s, err := sub.NC.SubscribeSync(tputSubject(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetPendingLimits(sub.PendingLimits()); err != nil {
			b.Fatal(err)
		}
		if err := sub.NC.Flush(); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = natsnet.WaitInterest(ctx, tputSubject(i), servers...)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		p.pub, p.sub, p.subs = append(p.pub, pub), append(p.sub, sub), append(p.subs, s)
	}
	return p
}

func (p *pairs) close() {
	for i := range p.subs {
		p.subs[i].Unsubscribe()
		p.sub[i].Close()
		p.pub[i].Close()
	}
}

// transfer sends msgs messages of len(payload) bytes over every pair at once
// and returns when every subscriber has them all.
func (p *pairs) transfer(b *testing.B, msgs int, payload []byte) {
	var wg sync.WaitGroup
	for i := range p.subs {
		subj := tputSubject(i)
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
				if _, err := p.subs[i].NextMsgWithContext(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkNATSThroughput measures the aggregate GB/s that n concurrent
// publisher -> subscriber pairs (2n connections) move in messages of
// benchChunk bytes, through one embedded server (server/pairs=n: a ring
// all-reduce through one server cannot exceed busbw = aggregate/n) and
// through a cluster of n servers where every pair crosses a route
// (cluster/pairs=n: the traffic of a ring placed one rank per server).
func BenchmarkNATSThroughput(b *testing.B) {
	s, err := natsnet.StartServer(natsnet.ServerOptions{})
	if err != nil {
		b.Fatalf("StartServer = %v", err)
	}
	defer s.Shutdown()
	const perPair = 16 << 20
	const msgs = perPair / benchChunk
	payload := make([]byte, benchChunk)
	for _, topo := range []string{"server", "cluster"} {
		for _, n := range []int{1, 2, 4, 8} {
			if topo == "cluster" && n == 1 {
				continue // a cluster of one is a server
			}
			b.Run(fmt.Sprintf("%s/pairs=%d", topo, n), func(b *testing.B) {
				servers := []*natsnet.Server{s}
				if topo == "cluster" {
					servers = benchCluster(b, n)
				}
				p := newPairs(b, servers, n, msgs)
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
			br := natsRing(b, []*natsnet.Server{s}, "bench", n, length, opts)
			defer br.close()
			for range n {
				br.reducers = append(br.reducers, allreduce.NewReducer())
				br.data = append(br.data, make([]float32, length))
			}
			msgs := 2 * (n - 1) * (mib << 20) / n / benchChunk
			p := newPairs(b, []*natsnet.Server{s}, n, msgs)
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
