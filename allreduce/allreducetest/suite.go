package allreducetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
)

// Endpoint is one rank's transport in a ring.
type Endpoint interface {
	allreduce.Transport
	// Close stops the endpoint: it no longer receives, and other ranks'
	// messages to it are lost.
	Close() error
}

// Network makes the rings the suite runs on.
type Network interface {
	// Ring returns the endpoints of ranks 0..n-1 of job's ring in epoch,
	// every one of them listening when Ring returns. The suite closes them.
	Ring(t testing.TB, job string, epoch uint64, n int) []Endpoint
	// Inject sends msg to rank's address in job's ring of epoch as a client
	// outside the ring would. Messages injected before a ring starts
	// sending reach the rank before the ring's own.
	Inject(t testing.TB, job string, epoch uint64, rank int, msg []byte)
}

// Run runs the whole suite against net.
func Run(t *testing.T, net Network) {
	s := &suite{net: net}
	t.Run("ExactSums", s.exactSums)
	t.Run("RandomFloats", s.randomFloats)
	t.Run("TwoJobs", s.twoJobs)
	t.Run("RankKilled", s.rankKilled)
	t.Run("ForeignGarbage", s.foreignGarbage)
}

type suite struct {
	net   Network
	epoch atomic.Uint64
}

func (s *suite) nextEpoch() uint64 { return s.epoch.Add(1) }

// result is what one rank returned.
type result struct {
	err     error
	elapsed time.Duration
	owned   map[int][]float32 // offset -> copy of the owned part
}

// runRing runs one all-reduce on every rank of eps concurrently, each rank
// with its own Reducer and vector, and returns each rank's result.
func runRing(ctx context.Context, eps []Endpoint, reducers []*allreduce.Reducer, h allreduce.Header, data [][]float32, opts allreduce.Options) []result {
	n := len(eps)
	res := make([]result, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			res[r].owned = map[int][]float32{}
			t0 := time.Now()
			res[r].err = reducers[r].AllReduce(ctx, eps[r], h, r, n, data[r], opts, func(off int, seg []float32) {
				res[r].owned[off] = append([]float32(nil), seg...)
			})
			res[r].elapsed = time.Since(t0)
		})
	}
	wg.Wait()
	return res
}

func closeAll(t testing.TB, eps []Endpoint) {
	for _, e := range eps {
		if err := e.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}
}

func newReducers(n int) []*allreduce.Reducer {
	rs := make([]*allreduce.Reducer, n)
	for i := range rs {
		rs[i] = allreduce.NewReducer()
	}
	return rs
}

func testOptions() allreduce.Options {
	return allreduce.Options{ChunkBytes: allreduce.MinChunkBytes, Deadline: 20 * time.Second}
}

// checkOwned checks that the owned parts of all ranks cover [0, len(want))
// exactly once and hold the final values bit for bit.
func checkOwned(t testing.TB, name string, res []result, want []float32) {
	t.Helper()
	cover := make([]int, len(want))
	for r, x := range res {
		for off, seg := range x.owned {
			for i, v := range seg {
				cover[off+i]++
				if math.Float32bits(v) != math.Float32bits(want[off+i]) {
					t.Errorf("%s: rank %d owned[%d] = %v; want %v", name, r, off+i, v, want[off+i])
					return
				}
			}
		}
	}
	for i, c := range cover {
		if c != 1 {
			t.Errorf("%s: element %d owned %d times; want once", name, i, c)
			return
		}
	}
}

// checkIdentical checks that every rank's vector is bit-identical to rank 0's.
func checkIdentical(t testing.TB, name string, data [][]float32) {
	t.Helper()
	for r := 1; r < len(data); r++ {
		for i := range data[0] {
			if math.Float32bits(data[r][i]) != math.Float32bits(data[0][i]) {
				t.Errorf("%s: rank %d [%d] = %v (%08x); rank 0 has %v (%08x)", name, r, i, data[r][i], math.Float32bits(data[r][i]), data[0][i], math.Float32bits(data[0][i]))
				return
			}
		}
	}
}

func lengths(n int) []int {
	return []int{0, 1, n - 1, n, n + 1, 7, 31, 32, 33, 97, 1000, 4099}
}

func (s *suite) exactSums(t *testing.T) {
	for n := 1; n <= 8; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			epoch := s.nextEpoch()
			eps := s.net.Ring(t, "exact", epoch, n)
			defer closeAll(t, eps)
			reducers := newReducers(n) // reused over every length: buffers are reused
			for step, L := range lengths(n) {
				name := fmt.Sprintf("n=%d len=%d", n, L)
				data := make([][]float32, n)
				want := make([]float32, L)
				for r := range n {
					data[r] = make([]float32, L)
					for i := range L {
						v := float32((r+1)*(i%97) - 40*r)
						data[r][i] = v
						want[i] += v
					}
				}
				h := allreduce.Header{Run: "run-exact", Epoch: epoch, Step: uint64(step)}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res := runRing(ctx, eps, reducers, h, data, testOptions())
				cancel()
				for r, x := range res {
					if x.err != nil {
						t.Fatalf("%s: AllReduce(rank %d) = %v; want nil", name, r, x.err)
					}
				}
				for r := range n {
					for i := range L {
						if data[r][i] != want[i] {
							t.Fatalf("%s: rank %d [%d] = %v; want %v", name, r, i, data[r][i], want[i])
						}
					}
				}
				checkIdentical(t, name, data)
				checkOwned(t, name, res, want)
				for r, red := range reducers {
					if d := red.Stats().Dropped(); d != 0 {
						t.Errorf("%s: rank %d dropped %d messages; want 0 (%+v)", name, r, d, red.Stats())
					}
				}
			}
		})
	}
}

func (s *suite) randomFloats(t *testing.T) {
	for _, tc := range []struct{ n, L int }{{2, 1001}, {3, 12345}, {5, 777}, {8, 20001}} {
		name := fmt.Sprintf("n=%d len=%d", tc.n, tc.L)
		rng := rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.L)))
		data := make([][]float32, tc.n)
		ref := make([]float64, tc.L)
		abs := make([]float64, tc.L)
		for r := range tc.n {
			data[r] = make([]float32, tc.L)
			for i := range data[r] {
				v := float32(rng.NormFloat64() * math.Exp(4*rng.NormFloat64()))
				data[r][i] = v
				ref[i] += float64(v)
				abs[i] += math.Abs(float64(v))
			}
		}
		epoch := s.nextEpoch()
		eps := s.net.Ring(t, "floats", epoch, tc.n)
		h := allreduce.Header{Run: "run-floats", Epoch: epoch, Step: 7}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		opts := testOptions()
		opts.ChunkBytes = 4096
		res := runRing(ctx, eps, newReducers(tc.n), h, data, opts)
		cancel()
		closeAll(t, eps)
		for r, x := range res {
			if x.err != nil {
				t.Fatalf("%s: AllReduce(rank %d) = %v; want nil", name, r, x.err)
			}
		}
		// Each of the n-1 float32 additions rounds by at most half an ulp
		// of a partial sum, itself at most sum |x|.
		for i := range ref {
			tol := float64(tc.n) * 0x1p-24 * abs[i]
			if d := math.Abs(float64(data[0][i]) - ref[i]); d > tol {
				t.Fatalf("%s: [%d] = %v; want %v within %g (off by %g)", name, i, data[0][i], ref[i], tol, d)
			}
		}
		checkIdentical(t, name, data)
		want := append([]float32(nil), data[0]...)
		checkOwned(t, name, res, want)
	}
}

func (s *suite) twoJobs(t *testing.T) {
	const n, L = 3, 5000
	jobs := []string{"alpha", "beta"}
	epoch := s.nextEpoch()
	type jobRun struct {
		eps  []Endpoint
		data [][]float32
		want []float32
		res  []result
	}
	runs := make([]*jobRun, len(jobs))
	for j, job := range jobs {
		jr := &jobRun{eps: s.net.Ring(t, job, epoch, n), data: make([][]float32, n), want: make([]float32, L)}
		for r := range n {
			jr.data[r] = make([]float32, L)
			for i := range L {
				v := float32((j+1)*1000 + r*10 + i%13)
				jr.data[r][i] = v
				jr.want[i] += v
			}
		}
		runs[j] = jr
	}
	// Same run id, epoch and step in both jobs: only the subjects differ.
	h := allreduce.Header{Run: "shared-run", Epoch: epoch, Step: 3}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, jr := range runs {
		wg.Go(func() { jr.res = runRing(ctx, jr.eps, newReducers(n), h, jr.data, testOptions()) })
	}
	wg.Wait()
	for j, jr := range runs {
		closeAll(t, jr.eps)
		for r, x := range jr.res {
			if x.err != nil {
				t.Fatalf("job %s: AllReduce(rank %d) = %v; want nil", jobs[j], r, x.err)
			}
		}
		for r := range n {
			for i := range L {
				if jr.data[r][i] != jr.want[i] {
					t.Fatalf("job %s: rank %d [%d] = %v; want %v", jobs[j], r, i, jr.data[r][i], jr.want[i])
				}
			}
		}
	}
}

// dying is a transport that closes its endpoint after a number of sends.
type dying struct {
	Endpoint
	left atomic.Int64
}

var errKilled = errors.New("allreducetest: rank killed")

func (d *dying) Send(ctx context.Context, to int, msg []byte) error {
	if d.left.Add(-1) < 0 {
		d.Endpoint.Close()
		return errKilled
	}
	return d.Endpoint.Send(ctx, to, msg)
}

func (s *suite) rankKilled(t *testing.T) {
	const n, L, victim = 4, 4000, 2
	for _, sends := range []int64{0, 3, 40} {
		t.Run(fmt.Sprintf("after=%d", sends), func(t *testing.T) {
			epoch := s.nextEpoch()
			eps := s.net.Ring(t, "killed", epoch, n)
			defer closeAll(t, eps)
			d := &dying{Endpoint: eps[victim]}
			d.left.Store(sends)
			ring := append([]Endpoint(nil), eps...)
			ring[victim] = d
			data := make([][]float32, n)
			for r := range n {
				data[r] = make([]float32, L)
				for i := range data[r] {
					data[r][i] = 1
				}
			}
			opts := testOptions()
			opts.Deadline = 1500 * time.Millisecond
			h := allreduce.Header{Run: "run-killed", Epoch: epoch, Step: 11}
			res := runRing(context.Background(), ring, newReducers(n), h, data, opts)
			if !errors.Is(res[victim].err, errKilled) {
				t.Errorf("AllReduce(victim) = %v; want %v", res[victim].err, errKilled)
			}
			for r, x := range res {
				if r == victim {
					continue
				}
				var ae *allreduce.AbortError
				if !errors.As(x.err, &ae) || !errors.Is(x.err, allreduce.ErrDeadline) || !errors.Is(x.err, context.DeadlineExceeded) {
					t.Errorf("AllReduce(rank %d) = %v; want an *AbortError wrapping ErrDeadline", r, x.err)
					continue
				}
				// Not a speed assertion: it must not hang.
				if x.elapsed > opts.Deadline+10*time.Second {
					t.Errorf("AllReduce(rank %d) took %v; deadline %v", r, x.elapsed, opts.Deadline)
				}
				if ae.Rank != r || ae.From != (r+n-1)%n || ae.Header != h || ae.Received >= ae.Expected {
					t.Errorf("AllReduce(rank %d) = %+v; want rank %d waiting on %d in %+v", r, ae, r, (r+n-1)%n, h)
				}
				for _, want := range []string{fmt.Sprintf("rank %d of %d", r, n), fmt.Sprintf("link %d->%d", (r+n-1)%n, r), "epoch", "step 11", "segment", "part"} {
					if !strings.Contains(x.err.Error(), want) {
						t.Errorf("AllReduce(rank %d) = %q; want it to name %q", r, x.err, want)
					}
				}
			}
		})
	}
}

func (s *suite) foreignGarbage(t *testing.T) {
	const n, L = 4, 3000
	epoch := s.nextEpoch()
	eps := s.net.Ring(t, "garbage", epoch, n)
	defer closeAll(t, eps)
	h := allreduce.Header{Run: "run-garbage", Epoch: epoch, Step: 5}
	plan := allreduce.NewPlan(L, n, testOptions().PartFloats())
	garbage := func(rank int) [][]byte {
		left := (rank + n - 1) % n
		seg := (rank + n - 1) % n // received on reduce-scatter hop 0
		_, m := plan.Part(seg, 0)
		ones := make([]float32, m)
		for i := range ones {
			ones[i] = 1e6
		}
		ok := allreduce.PartID{Phase: allreduce.ReduceScatter, Hop: 0, Segment: seg, Part: 0}
		enc := func(h allreduce.Header, id allreduce.PartID, sender int, x []float32) []byte {
			return allreduce.AppendMessage(nil, h, id, sender, x)
		}
		other := h
		other.Run = "another-run"
		stale := h
		stale.Epoch--
		old := h
		old.Step--
		return [][]byte{
			nil,
			{0x00},
			[]byte("PUB klring garbage"),
			{0x99, 0xdb, 0xff, 0xff, 0xff, 0xff}, // run of 4 GiB claimed
			{0x99, 0xa1, 'x', 1, 1, 1, 1, 1, 1, 1, 0xc6, 0x7f, 0, 0, 0}, // bin of 2 GiB claimed
			enc(other, ok, left, ones),
			enc(stale, ok, left, ones),
			enc(old, ok, left, ones),
			enc(h, ok, (left+2)%n, ones),         // wrong sender
			enc(h, ok, left, ones[:len(ones)-1]), // bad length
			enc(h, allreduce.PartID{Phase: allreduce.AllGather, Hop: 0, Segment: rank, Part: 0}, left, ones[:1]), // bad length too
			enc(h, allreduce.PartID{Phase: allreduce.ReduceScatter, Hop: 1, Segment: seg, Part: 0}, left, ones),  // wrong hop
			enc(h, allreduce.PartID{Phase: allreduce.ReduceScatter, Hop: 0, Segment: seg, Part: 9999}, left, ones),
			enc(h, allreduce.PartID{Phase: 7, Hop: 0, Segment: seg, Part: 0}, left, ones),
			enc(h, allreduce.PartID{Phase: allreduce.ReduceScatter, Hop: 0, Segment: rank, Part: 0}, left, ones), // own segment
		}
	}
	for r := range n {
		for _, g := range garbage(r) {
			s.net.Inject(t, "garbage", h.Epoch, r, g)
		}
	}
	data := make([][]float32, n)
	want := make([]float32, L)
	for r := range n {
		data[r] = make([]float32, L)
		for i := range L {
			data[r][i] = float32(r*L + i)
			want[i] += data[r][i]
		}
	}
	// Keep injecting harmless garbage while the ring runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		other := h
		other.Run = "intruder"
		msg := allreduce.AppendMessage(nil, other, allreduce.PartID{}, 0, make([]float32, 10))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.net.Inject(t, "garbage", h.Epoch, i%n, msg)
			runtime.Gosched()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	reducers := newReducers(n)
	res := runRing(ctx, eps, reducers, h, data, testOptions())
	cancel()
	close(stop)
	wg.Wait()
	for r, x := range res {
		if x.err != nil {
			t.Fatalf("AllReduce(rank %d) = %v; want nil", r, x.err)
		}
	}
	for r := range n {
		for i := range L {
			if data[r][i] != want[i] {
				t.Fatalf("rank %d [%d] = %v; want %v", r, i, data[r][i], want[i])
			}
		}
	}
	ng := uint64(len(garbage(0)))
	for r, red := range reducers {
		st := red.Stats()
		if st.Dropped() < ng {
			t.Errorf("rank %d: Stats().Dropped() = %d; want >= %d (%+v)", r, st.Dropped(), ng, st)
		}
		for _, c := range []struct {
			name string
			v    uint64
		}{{"Malformed", st.Malformed}, {"ForeignRun", st.ForeignRun}, {"StaleEpoch", st.StaleEpoch}, {"StaleStep", st.StaleStep}, {"WrongSender", st.WrongSender}, {"BadLength", st.BadLength}, {"Unexpected", st.Unexpected}} {
			if c.v == 0 {
				t.Errorf("rank %d: Stats().%s = 0; want > 0", r, c.name)
			}
		}
	}
}
