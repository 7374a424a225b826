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

// Network makes the mailboxes the suite runs on.
type Network interface {
	// Mailbox opens worker's mailbox in job; it listens when Mailbox
	// returns. The suite closes it.
	Mailbox(t testing.TB, job, worker string) allreduce.Mailbox
	// Inject hands msg, labelled with attempt h, to worker's mailbox in job
	// as a client outside the ring would, and returns once the mailbox has
	// filed or dropped it. It is safe for concurrent use.
	Inject(t testing.TB, job, worker string, h allreduce.Header, msg []byte)
	// Limits are the limits of the mailboxes Mailbox opens, defaults filled.
	Limits() allreduce.Limits
}

// Run runs the whole suite against net.
func Run(t *testing.T, net Network) {
	s := &suite{net: net}
	t.Run("ExactSums", s.exactSums)
	t.Run("RandomFloats", s.randomFloats)
	t.Run("BF16", s.bf16)
	t.Run("Buckets", s.buckets)
	t.Run("BucketsMisuse", s.bucketsMisuse)
	t.Run("MixedWires", s.mixedWires)
	t.Run("TwoJobs", s.twoJobs)
	t.Run("EarlySender", s.earlySender)
	t.Run("StaleDropped", s.staleDropped)
	t.Run("NewRunAfterHigherEpoch", s.newRun)
	t.Run("FloodBounded", s.flood)
	t.Run("ForeignGarbage", s.foreignGarbage)
	t.Run("RankKilled", s.rankKilled)
	t.Run("Contract", s.contract)
}

type suite struct {
	net Network
}

// ring is the mailboxes of n <= 11 workers of one job. Ring order is not
// name order: rank r is worker "w<(3r+1) mod 11>", so that a transport that
// maps ranks to names wrongly fails.
type ring struct {
	job     string
	members []string
	mbs     []allreduce.Mailbox
}

func (s *suite) open(t *testing.T, job string, n int) *ring {
	t.Helper()
	r := &ring{job: job}
	for i := range n {
		name := fmt.Sprintf("w%d", (3*i+1)%11)
		r.members = append(r.members, name)
		r.mbs = append(r.mbs, s.net.Mailbox(t, job, name))
	}
	t.Cleanup(func() {
		for i, mb := range r.mbs {
			if err := mb.Close(); err != nil {
				t.Errorf("Close(mailbox of %s) = %v", r.members[i], err)
			}
		}
	})
	return r
}

// result is what one rank returned.
type result struct {
	err     error
	elapsed time.Duration
	owned   map[int][]float32 // offset -> copy of the owned part
}

// hooks change how one call of run starts the ranks.
type hooks struct {
	before func(rank int)                                            // called before rank Begins
	wrap   func(rank int, t allreduce.Transport) allreduce.Transport // wraps rank's Transport
}

// run runs one all-reduce of attempt h on every rank concurrently, each
// rank with its own Reducer and vector, and returns each rank's result.
func (r *ring) run(ctx context.Context, reducers []*allreduce.Reducer, h allreduce.Header, data [][]float32, opts allreduce.Options, hk hooks) []result {
	n := len(r.mbs)
	res := make([]result, n)
	var wg sync.WaitGroup
	for rank := range n {
		wg.Go(func() {
			if hk.before != nil {
				hk.before(rank)
			}
			t0 := time.Now()
			tr, err := r.mbs[rank].Begin(h, r.members, rank)
			if err != nil {
				res[rank].err = fmt.Errorf("Begin: %w", err)
				return
			}
			if hk.wrap != nil {
				tr = hk.wrap(rank, tr)
			}
			res[rank].owned = map[int][]float32{}
			res[rank].err = reducers[rank].AllReduce(ctx, tr, h, rank, n, data[rank], opts, func(off int, seg []float32) {
				res[rank].owned[off] = append([]float32(nil), seg...)
			})
			res[rank].elapsed = time.Since(t0)
		})
	}
	wg.Wait()
	return res
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

// intData returns n vectors of length L of small integers, whose float32
// sums are exact, and their sum.
func intData(n, L, seed int) (data [][]float32, want []float32) {
	data = make([][]float32, n)
	want = make([]float32, L)
	for r := range n {
		data[r] = make([]float32, L)
		for i := range L {
			v := float32((r+1)*(i%97) - 40*r + seed)
			data[r][i] = v
			want[i] += v
		}
	}
	return data, want
}

// checkExact fails unless every rank succeeded with want, bit-identical on
// every rank, and the owned parts cover want once.
func checkExact(t testing.TB, name string, res []result, data [][]float32, want []float32) {
	t.Helper()
	for r, x := range res {
		if x.err != nil {
			t.Fatalf("%s: AllReduce(rank %d) = %v; want nil", name, r, x.err)
		}
	}
	for r := range data {
		for i := range want {
			if data[r][i] != want[i] {
				t.Fatalf("%s: rank %d [%d] = %v; want %v", name, r, i, data[r][i], want[i])
			}
		}
	}
	checkIdentical(t, name, data)
	checkOwned(t, name, res, want)
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

// waitStats waits until mb's Stats satisfy cond, for 20s at most; it may
// run on any goroutine.
func waitStats(t testing.TB, mb allreduce.Mailbox, what string, cond func(allreduce.MailboxStats) bool) {
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond(mb.Stats()) {
		if time.Now().After(deadline) {
			t.Errorf("mailbox: %+v after 20s; want %s", mb.Stats(), what)
			return
		}
		<-tick.C
	}
}

// waitQueued waits until mb holds at least k messages.
func waitQueued(t testing.TB, mb allreduce.Mailbox, k int) {
	waitStats(t, mb, fmt.Sprintf("at least %d queued", k), func(st allreduce.MailboxStats) bool { return st.Queued >= k })
}

func lengths(n int) []int {
	return []int{0, 1, n - 1, n, n + 1, 7, 31, 32, 33, 97, 1000, 4099}
}

// exactSums runs one attempt per length on persistent mailboxes, each
// attempt a later step of one run.
func (s *suite) exactSums(t *testing.T) {
	for n := 1; n <= 8; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			rg := s.open(t, fmt.Sprintf("exact%d", n), n)
			reducers := newReducers(n) // reused over every length: buffers are reused
			for step, L := range lengths(n) {
				name := fmt.Sprintf("n=%d len=%d", n, L)
				data, want := intData(n, L, step)
				h := allreduce.Header{Run: "run-exact", Epoch: 1, Step: uint64(step)}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res := rg.run(ctx, reducers, h, data, testOptions(), hooks{})
				cancel()
				checkExact(t, name, res, data, want)
				for r, red := range reducers {
					if d := red.Stats().Dropped(); d != 0 {
						t.Errorf("%s: rank %d's Reducer dropped %d messages; want 0 (%+v)", name, r, d, red.Stats())
					}
				}
			}
			for r, mb := range rg.mbs {
				if st := mb.Stats(); st.Dropped() != 0 || st.Queued != 0 {
					t.Errorf("n=%d: mailbox of rank %d: %+v; want nothing dropped or left", n, r, st)
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
		rg := s.open(t, fmt.Sprintf("floats%d", tc.n), tc.n)
		h := allreduce.Header{Run: "run-floats", Epoch: 3, Step: 7}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		opts := testOptions()
		opts.ChunkBytes = 4096
		res := rg.run(ctx, newReducers(tc.n), h, data, opts, hooks{})
		cancel()
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

// twoJobs runs the same attempt among workers of the same names in two
// jobs at once: only the job keeps them apart.
func (s *suite) twoJobs(t *testing.T) {
	const n, L = 3, 5000
	jobs := []string{"alpha", "beta"}
	type jobRun struct {
		rg   *ring
		data [][]float32
		want []float32
		res  []result
	}
	runs := make([]*jobRun, len(jobs))
	for j, job := range jobs {
		data, want := intData(n, L, 1000*(j+1))
		runs[j] = &jobRun{rg: s.open(t, job, n), data: data, want: want}
	}
	h := allreduce.Header{Run: "shared-run", Epoch: 1, Step: 3}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, jr := range runs {
		wg.Go(func() { jr.res = jr.rg.run(ctx, newReducers(n), h, jr.data, testOptions(), hooks{}) })
	}
	wg.Wait()
	for j, jr := range runs {
		checkExact(t, "job "+jobs[j], jr.res, jr.data, jr.want)
	}
}

// earlySender lets every rank but the last start an attempt, waits until
// the last rank's mailbox holds the parts its left neighbour sent, and only
// then lets it Begin: the parts must not be lost. Once on fresh mailboxes,
// once on mailboxes that ran an earlier attempt.
func (s *suite) earlySender(t *testing.T) {
	const n, L = 4, 3000
	opts := testOptions()
	late := n - 1
	plan := allreduce.NewPlan(L, n, opts.PartFloats())
	early := plan.Parts(late - 1) // the left neighbour's segment, sent at once
	for _, fresh := range []bool{true, false} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			rg := s.open(t, fmt.Sprintf("early%v", fresh), n)
			reducers := newReducers(n)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			step := uint64(1)
			if !fresh {
				data, want := intData(n, L, 0)
				checkExact(t, "first attempt", rg.run(ctx, reducers, allreduce.Header{Run: "r", Epoch: 1, Step: step}, data, opts, hooks{}), data, want)
				step++
			}
			before := rg.mbs[late].Stats()
			release := make(chan struct{})
			data, want := intData(n, L, 5)
			res := rg.run(ctx, reducers, allreduce.Header{Run: "r", Epoch: 1, Step: step}, data, opts, hooks{before: func(rank int) {
				if rank != late {
					return
				}
				waitQueued(t, rg.mbs[late], before.Queued+early)
				close(release)
			}})
			<-release
			checkExact(t, "late Begin", res, data, want)
			if d := rg.mbs[late].Dropped() - before.Dropped(); d != 0 {
				t.Errorf("late rank's mailbox dropped %d messages; want 0 (%+v)", d, rg.mbs[late].Stats())
			}
		})
	}
}

// junk is a message no Reducer would apply; the suite counts it at the
// mailbox only.
var junk = []byte("junk")

// staleDropped checks that messages of attempts before the current one are
// dropped and counted, whether they arrive after the Begin that made them
// stale or were queued before it.
func (s *suite) staleDropped(t *testing.T) {
	const n, L, k = 3, 2000, 5
	rg := s.open(t, "stale", n)
	reducers := newReducers(n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := allreduce.Header{Run: "r", Epoch: 2, Step: 5}
	data, want := intData(n, L, 1)
	checkExact(t, "attempt (2, 5)", rg.run(ctx, reducers, a, data, testOptions(), hooks{}), data, want)
	before := make([]allreduce.MailboxStats, n)
	for r, w := range rg.members {
		before[r] = rg.mbs[r].Stats()
		for range k {
			s.net.Inject(t, rg.job, w, allreduce.Header{Run: "r", Epoch: 2, Step: 9}, junk) // ahead: queued
			s.net.Inject(t, rg.job, w, allreduce.Header{Run: "r", Epoch: 2, Step: 4}, junk) // behind: dropped
			s.net.Inject(t, rg.job, w, allreduce.Header{Run: "r", Epoch: 1, Step: 8}, junk) // behind: dropped
		}
		st := rg.mbs[r].Stats()
		if got := st.Stale - before[r].Stale; got != 2*k || st.Queued != k {
			t.Errorf("rank %d: %d stale, %d queued after %d messages behind and %d ahead; want %d and %d (%+v)", r, got, st.Queued, 2*k, k, 2*k, k, st)
		}
	}
	// A later epoch makes the queued step 9 of epoch 2 stale.
	b := allreduce.Header{Run: "r", Epoch: 3, Step: 0}
	data, want = intData(n, L, 2)
	checkExact(t, "attempt (3, 0)", rg.run(ctx, reducers, b, data, testOptions(), hooks{}), data, want)
	for r, w := range rg.members {
		s.net.Inject(t, rg.job, w, allreduce.Header{Run: "r", Epoch: 2, Step: 9}, junk)
		st := rg.mbs[r].Stats()
		if got := st.Stale - before[r].Stale; got != 3*k+1 || st.Queued != 0 || st.Dropped()-before[r].Dropped() != 3*k+1 {
			t.Errorf("rank %d: %d stale, %d queued, %d dropped; want %d stale, none queued, all dropped as stale (%+v)", r, got, st.Queued, st.Dropped()-before[r].Dropped(), 3*k+1, st)
		}
	}
}

// newRun runs a run up to epoch 10, then a new run from epoch 1 on the
// same mailboxes, with a neighbour that starts the new run before the last
// rank has left the old one; the old run's messages are stale from then on,
// whatever their epoch.
func (s *suite) newRun(t *testing.T) {
	const n, L = 3, 2000
	opts := testOptions()
	rg := s.open(t, "newrun", n)
	reducers := newReducers(n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := allreduce.Header{Run: "run-old", Epoch: 10, Step: 5}
	data, want := intData(n, L, 1)
	checkExact(t, "old run", rg.run(ctx, reducers, old, data, opts, hooks{}), data, want)

	late := n - 1
	early := allreduce.NewPlan(L, n, opts.PartFloats()).Parts(late - 1)
	release := make(chan struct{})
	data, want = intData(n, L, 2)
	res := rg.run(ctx, reducers, allreduce.Header{Run: "run-new", Epoch: 1, Step: 0}, data, opts, hooks{before: func(rank int) {
		if rank == late {
			waitQueued(t, rg.mbs[late], early)
			close(release)
		}
	}})
	<-release
	checkExact(t, "new run, epoch 1", res, data, want)
	for r, w := range rg.members {
		d := rg.mbs[r].Stats()
		s.net.Inject(t, rg.job, w, allreduce.Header{Run: "run-old", Epoch: 10, Step: 6}, junk)
		s.net.Inject(t, rg.job, w, allreduce.Header{Run: "run-old", Epoch: 11, Step: 0}, junk)
		st := rg.mbs[r].Stats()
		if st.Stale-d.Stale != 2 || st.Queued != 0 {
			t.Errorf("rank %d: old run's epochs 10 and 11 after the new run began: %d stale, %d queued; want 2 stale (%+v)", r, st.Stale-d.Stale, st.Queued, st)
		}
	}
	data, want = intData(n, L, 3)
	checkExact(t, "new run, step 1", rg.run(ctx, reducers, allreduce.Header{Run: "run-new", Epoch: 1, Step: 1}, data, opts, hooks{}), data, want)
}

// flood fills one mailbox with messages of far attempts, of other runs and
// of one attempt beyond its message limit: what it holds stays within its
// limits, every message is either held or counted as dropped, and the next
// attempt, started early by a neighbour, still runs.
func (s *suite) flood(t *testing.T) {
	const n, L = 3, 2000
	opts := testOptions()
	lim := s.net.Limits()
	rg := s.open(t, "flood", n)
	reducers := newReducers(n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, want := intData(n, L, 1)
	checkExact(t, "attempt (1, 1)", rg.run(ctx, reducers, allreduce.Header{Run: "r", Epoch: 1, Step: 1}, data, opts, hooks{}), data, want)

	const victim = 0
	w, mb := rg.members[victim], rg.mbs[victim]
	before := mb.Stats()
	injected := 0
	inject := func(h allreduce.Header, msg []byte) {
		s.net.Inject(t, rg.job, w, h, msg)
		injected++
	}
	for i := range lim.Messages + 3 {
		inject(allreduce.Header{Run: "r", Epoch: 1, Step: 999}, []byte{byte(i)})
	}
	for i := range lim.Ahead + 3 {
		inject(allreduce.Header{Run: "r", Epoch: 1, Step: 1000 + uint64(i)}, junk)
		inject(allreduce.Header{Run: "r", Epoch: 1, Step: 1000 + uint64(i)}, junk)
		inject(allreduce.Header{Run: fmt.Sprintf("other-%d", i), Epoch: 1, Step: 1}, junk)
	}
	st := mb.Stats()
	held := st.Queued - before.Queued
	if dropped := int(st.Dropped() - before.Dropped()); dropped+held != injected || dropped == 0 {
		t.Errorf("flood of %d messages: %d dropped + %d held; want all accounted for, some dropped (%+v)", injected, dropped, held, st)
	}
	if st.Queued > lim.Ahead*lim.Messages || st.QueuedBytes > lim.Ahead*lim.Bytes || st.OverLimit == before.OverLimit {
		t.Errorf("flood: %+v; want at most %d attempts of %d messages and %d bytes held, some over the limit", st, lim.Ahead, lim.Messages, lim.Bytes)
	}

	// The next attempt, nearer than every attempt the flood queued,
	// replaces the farthest; its neighbour sends before the victim Begins.
	early := uint64(allreduce.NewPlan(L, n, opts.PartFloats()).Parts((victim + n - 1) % n))
	release := make(chan struct{})
	data, want = intData(n, L, 2)
	res := rg.run(ctx, reducers, allreduce.Header{Run: "r", Epoch: 1, Step: 2}, data, opts, hooks{before: func(rank int) {
		if rank == victim {
			// Filing the early parts evicts a queue: wait for them to
			// be received, not for the number held to grow.
			waitStats(t, mb, "the early parts received", func(x allreduce.MailboxStats) bool { return x.Received >= st.Received+early })
			close(release)
		}
	}})
	<-release
	checkExact(t, "attempt (1, 2) after the flood", res, data, want)

	// A new run drops everything the flood left.
	data, want = intData(n, L, 3)
	checkExact(t, "a new run", rg.run(ctx, reducers, allreduce.Header{Run: "r2", Epoch: 1, Step: 0}, data, opts, hooks{}), data, want)
	if st := mb.Stats(); st.Queued != 0 || st.QueuedBytes != 0 {
		t.Errorf("after a new run: %+v; want nothing held", st)
	}
}

func (s *suite) foreignGarbage(t *testing.T) {
	const n, L = 4, 3000
	rg := s.open(t, "garbage", n)
	h := allreduce.Header{Run: "run-garbage", Epoch: 2, Step: 5}
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
			{0x9a, 0xdb, 0xff, 0xff, 0xff, 0xff}, // run of 4 GiB claimed
			{0x9a, 0xa1, 'x', 1, 1, 1, 1, 1, 1, 1, 0, 0xc6, 0x7f, 0, 0, 0}, // bin of 2 GiB claimed
			corrupt(enc(h, ok, left, ones)),                                // one float byte flipped: a bad checksum
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
	// Labelled with the attempt about to run: the mailbox holds them for
	// it, and its Reducer must drop every one.
	for r, w := range rg.members {
		for _, g := range garbage(r) {
			s.net.Inject(t, rg.job, w, h, g)
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
	// Keep injecting harmless garbage while the ring runs, no more than a
	// quarter of what the attempt's queue holds: a flood beyond the limits
	// drops the ring's own parts too (FloodBounded).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		other := h
		other.Run = "intruder"
		msg := allreduce.AppendMessage(nil, other, allreduce.PartID{}, 0, make([]float32, 10))
		for i := range s.net.Limits().Messages / 4 {
			select {
			case <-stop:
				return
			default:
			}
			s.net.Inject(t, rg.job, rg.members[i%n], h, msg)
			runtime.Gosched()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	reducers := newReducers(n)
	res := rg.run(ctx, reducers, h, data, testOptions(), hooks{})
	cancel()
	close(stop)
	wg.Wait()
	checkExact(t, "garbage", res, data, want)
	ng := uint64(len(garbage(0)))
	for r, red := range reducers {
		st := red.Stats()
		if st.Dropped() < ng {
			t.Errorf("rank %d: Stats().Dropped() = %d; want >= %d (%+v)", r, st.Dropped(), ng, st)
		}
		for _, c := range []struct {
			name string
			v    uint64
		}{{"Malformed", st.Malformed}, {"ForeignRun", st.ForeignRun}, {"StaleEpoch", st.StaleEpoch}, {"StaleStep", st.StaleStep}, {"WrongSender", st.WrongSender}, {"BadLength", st.BadLength}, {"BadChecksum", st.BadChecksum}, {"Unexpected", st.Unexpected}} {
			if c.v == 0 {
				t.Errorf("rank %d: Stats().%s = 0; want > 0", r, c.name)
			}
		}
	}
}

// corrupt flips the lowest bit of the last byte of msg, a byte of its last
// float.
func corrupt(msg []byte) []byte {
	msg[len(msg)-1] ^= 1
	return msg
}

// dying is a transport that closes its worker's mailbox after a number of
// sends: the worker is gone, and messages to it are lost.
type dying struct {
	allreduce.Transport
	mb   allreduce.Mailbox
	left atomic.Int64
}

var errKilled = errors.New("allreducetest: rank killed")

func (d *dying) Send(ctx context.Context, to int, msg []byte) error {
	if d.left.Add(-1) < 0 {
		d.mb.Close()
		return errKilled
	}
	return d.Transport.Send(ctx, to, msg)
}

func (s *suite) rankKilled(t *testing.T) {
	const n, L, victim = 4, 4000, 2
	for _, sends := range []int64{0, 3, 40} {
		t.Run(fmt.Sprintf("after=%d", sends), func(t *testing.T) {
			rg := s.open(t, fmt.Sprintf("killed%d", sends), n)
			data := make([][]float32, n)
			for r := range n {
				data[r] = make([]float32, L)
				for i := range data[r] {
					data[r][i] = 1
				}
			}
			opts := testOptions()
			opts.Deadline = 1500 * time.Millisecond
			h := allreduce.Header{Run: "run-killed", Epoch: 4, Step: 11}
			res := rg.run(context.Background(), newReducers(n), h, data, opts, hooks{wrap: func(rank int, tr allreduce.Transport) allreduce.Transport {
				if rank != victim {
					return tr
				}
				d := &dying{Transport: tr, mb: rg.mbs[victim]}
				d.left.Store(sends)
				return d
			}})
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
				from := (r + n - 1) % n
				if ae.Rank != r || ae.From != from || ae.Header != h || ae.Received >= ae.Expected {
					t.Errorf("AllReduce(rank %d) = %+v; want rank %d waiting on %d in %+v", r, ae, r, from, h)
				}
				for _, want := range []string{fmt.Sprintf("rank %d of %d", r, n), fmt.Sprintf("link %d->%d", from, r),
					fmt.Sprintf("(epoch 4, step 11, from %d, ", from), "segment", "part"} {
					if !strings.Contains(x.err.Error(), want) {
						t.Errorf("AllReduce(rank %d) = %q; want it to name %q", r, x.err, want)
					}
				}
			}
		})
	}
}

// contract checks Begin's refusals, a superseded Transport and a closed
// mailbox.
func (s *suite) contract(t *testing.T) {
	rg := s.open(t, "contract", 3)
	mb, members := rg.mbs[1], rg.members
	h := allreduce.Header{Run: "r", Epoch: 1, Step: 1}
	long := allreduce.Header{Run: strings.Repeat("x", allreduce.MaxRunLen+1)}
	for _, tc := range []struct {
		name    string
		h       allreduce.Header
		members []string
		self    int
		want    error
	}{
		{"self -1", h, members, -1, allreduce.ErrBadRing},
		{"self n", h, members, 3, allreduce.ErrBadRing},
		{"not self", h, members, 0, allreduce.ErrBadRing},
		{"no members", h, nil, 0, allreduce.ErrBadRing},
		{"twice", h, []string{members[0], members[1], members[0]}, 1, allreduce.ErrBadRing},
		{"empty member", h, []string{"", members[1]}, 1, allreduce.ErrBadRing},
		{"long run", long, members, 1, allreduce.ErrBadHeader},
		{"space in run", allreduce.Header{Run: "a b"}, members, 1, allreduce.ErrBadHeader},
		{"newline in run", allreduce.Header{Run: "a\r\nb"}, members, 1, allreduce.ErrBadHeader},
	} {
		if _, err := mb.Begin(tc.h, tc.members, tc.self); !errors.Is(err, tc.want) {
			t.Errorf("Begin(%s) = %v; want %v", tc.name, err, tc.want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recvErr := func(tr allreduce.Transport) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := tr.Recv(ctx)
			ch <- err
		}()
		return ch
	}
	tr1, err := mb.Begin(h, members, 1)
	if err != nil {
		t.Fatalf("Begin(%v) = %v", h, err)
	}
	got1 := recvErr(tr1)
	h2 := h
	h2.Step++
	tr2, err := mb.Begin(h2, members, 1)
	if err != nil {
		t.Fatalf("Begin(%v) = %v", h2, err)
	}
	if err := <-got1; !errors.Is(err, allreduce.ErrSuperseded) {
		t.Errorf("Recv on a superseded Transport = %v; want %v", err, allreduce.ErrSuperseded)
	}
	got2 := recvErr(tr2)
	if err := mb.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := <-got2; !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Recv after Close = %v; want %v", err, allreduce.ErrClosed)
	}
	if _, err := tr2.Recv(ctx); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Recv after Close = %v; want %v", err, allreduce.ErrClosed)
	}
	if err := tr2.Send(ctx, 0, junk); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Send after Close = %v; want %v", err, allreduce.ErrClosed)
	}
	if _, err := mb.Begin(h2, members, 1); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Begin after Close = %v; want %v", err, allreduce.ErrClosed)
	}
}
