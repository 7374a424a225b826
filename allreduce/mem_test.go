package allreduce_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/allreduce/allreducetest"
)

// memNet runs the conformance suite over one MemHub.
type memNet struct{ hub *allreduce.MemHub }

func (m memNet) Mailbox(t testing.TB, job, worker string) allreduce.Mailbox {
	mb, err := m.hub.Mailbox(job, worker)
	if err != nil {
		t.Fatalf("Mailbox(%s, %s) = %v", job, worker, err)
	}
	return mb
}

func (m memNet) Inject(t testing.TB, job, worker string, h allreduce.Header, msg []byte) {
	m.hub.Inject(job, worker, h, msg)
}

func (m memNet) Limits() allreduce.Limits { return memLimits }

// memLimits are small enough for the suite to flood.
var memLimits = allreduce.Limits{Ahead: 8, Messages: 1024, Bytes: 4 << 20}

func TestConformanceMem(t *testing.T) {
	allreducetest.Run(t, memNet{allreduce.NewMemHub(memLimits)})
}

func TestNoDeadline(t *testing.T) {
	net := allreduce.NewMemNetwork()
	ep := net.Endpoint("j", 1, 0)
	defer ep.Close()
	opts := allreduce.Options{ChunkBytes: 1024}
	err := allreduce.AllReduce(context.Background(), ep, allreduce.Header{}, 0, 2, make([]float32, 4), opts, nil)
	if !errors.Is(err, allreduce.ErrNoDeadline) {
		t.Errorf("AllReduce(no deadline) = %v; want %v", err, allreduce.ErrNoDeadline)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o  allreduce.Options
		ok bool
	}{
		{allreduce.DefaultOptions(), true},
		{allreduce.Options{ChunkBytes: allreduce.MinChunkBytes}, true},
		{allreduce.Options{ChunkBytes: allreduce.MinChunkBytes - 1, Deadline: time.Second}, false},
		{allreduce.Options{ChunkBytes: allreduce.MaxChunkBytes + 1, Deadline: time.Second}, false},
		{allreduce.Options{ChunkBytes: 1024, Deadline: -1}, false},
	} {
		err := tc.o.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, allreduce.ErrBadOptions)) {
			t.Errorf("%+v.Validate() = %v; want ok=%v", tc.o, err, tc.ok)
		}
	}
}

// TestReducerReusesBuffers checks that a Reducer's steady state allocates a
// bounded number of times per call, however many parts the call moves.
func TestReducerReusesBuffers(t *testing.T) {
	const n, L = 2, 1 << 14 // 64 parts of 256 floats per segment at 1152-byte chunks
	net := allreduce.NewMemNetwork()
	eps := []*allreduce.MemEndpoint{net.Endpoint("alloc", 1, 0), net.Endpoint("alloc", 1, 1)}
	reds := []*allreduce.Reducer{allreduce.NewReducer(), allreduce.NewReducer()}
	data := [][]float32{make([]float32, L), make([]float32, L)}
	opts := allreduce.Options{ChunkBytes: 1024 + allreduce.EnvelopeOverhead, Deadline: time.Minute}
	step := uint64(0)
	run := func() {
		step++
		h := allreduce.Header{Run: "r", Epoch: 1, Step: step}
		done := make(chan error, 1)
		go func() { done <- reds[1].AllReduce(context.Background(), eps[1], h, 1, n, data[1], opts, nil) }()
		if err := reds[0].AllReduce(context.Background(), eps[0], h, 0, n, data[0], opts, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run()
	a := testing.AllocsPerRun(10, run)
	t.Logf("%v allocations per all-reduce", a)
	if parts := 2 * allreduce.MaxMessages(L, n, opts); a > 30 {
		t.Errorf("allocations per all-reduce of %d messages = %v; want <= 30", parts, a)
	}
	for _, e := range eps {
		e.Close()
	}
}

// TestMailboxAllReduceAllocations checks that an attempt over persistent
// in-memory mailboxes, Begin included, allocates a bounded number of times,
// however many parts it moves: no allocation per message.
func TestMailboxAllReduceAllocations(t *testing.T) {
	const n, L = 2, 1 << 14 // 64 parts of 256 floats per segment at 1152-byte chunks
	hub := allreduce.NewMemHub(allreduce.Limits{})
	members := []string{"a", "b"}
	var mbs []*allreduce.MemMailbox
	for _, w := range members {
		mb, err := hub.Mailbox("alloc", w)
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		mbs = append(mbs, mb)
	}
	reds := []*allreduce.Reducer{allreduce.NewReducer(), allreduce.NewReducer()}
	data := [][]float32{make([]float32, L), make([]float32, L)}
	opts := allreduce.Options{ChunkBytes: 1024 + allreduce.EnvelopeOverhead, Deadline: time.Minute}
	step := uint64(0)
	run := func() {
		step++
		h := allreduce.Header{Run: "r", Epoch: 1, Step: step}
		trs := make([]allreduce.Transport, n)
		for r := range n {
			tr, err := mbs[r].Begin(h, members, r)
			if err != nil {
				t.Fatal(err)
			}
			trs[r] = tr
		}
		done := make(chan error, 1)
		go func() { done <- reds[1].AllReduce(context.Background(), trs[1], h, 1, n, data[1], opts, nil) }()
		if err := reds[0].AllReduce(context.Background(), trs[0], h, 0, n, data[0], opts, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run()
	a := testing.AllocsPerRun(10, run)
	t.Logf("%v allocations per attempt", a)
	if parts := 2 * allreduce.MaxMessages(L, n, opts); a > 40 {
		t.Errorf("allocations per attempt of %d messages = %v; want <= 40", parts, a)
	}
}
