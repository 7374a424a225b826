package allreduce_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/allreduce/allreducetest"
)

type memNet struct{ net *allreduce.MemNetwork }

func (m memNet) Ring(t testing.TB, job string, epoch uint64, n int) []allreducetest.Endpoint {
	eps := make([]allreducetest.Endpoint, n)
	for r := range n {
		eps[r] = m.net.Endpoint(job, epoch, r)
	}
	return eps
}

func (m memNet) Inject(t testing.TB, job string, epoch uint64, rank int, msg []byte) {
	m.net.Publish(job, epoch, rank, msg)
}

func TestConformanceMem(t *testing.T) {
	allreducetest.Run(t, memNet{allreduce.NewMemNetwork()})
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

func TestValidJob(t *testing.T) {
	for _, tc := range []struct {
		job string
		ok  bool
	}{{"a", true}, {"job_1-X", true}, {"", false}, {"a.b", false}, {"a b", false}, {"a*", false}, {"a>", false}, {"é", false}} {
		if err := allreduce.ValidJob(tc.job); (err == nil) != tc.ok {
			t.Errorf("ValidJob(%q) = %v; want ok=%v", tc.job, err, tc.ok)
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
