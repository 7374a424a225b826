package cluster

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/klring/klring/protocol"
)

func TestDecodeRejectsLyingLengths(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bin32 claiming 4 GiB", []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"array32 claiming 2^31 items", []byte{0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff}},
		{"map16 claiming 65535 pairs", []byte{0xde, 0xff, 0xff}},
		{"str8 past the end", []byte{0x81, 0xa3, 'r', 'u', 'n', 0xd9, 0x20, 'x'}},
		{"never-used byte", []byte{0xc1}},
		{"trailing bytes", append(mustEncodeB(protocol.Plan{Run: "r"}), 0)},
	}
	for _, tt := range tests {
		var p protocol.Plan
		if err := decode(tt.in, &p); !errors.Is(err, ErrMalformed) {
			t.Errorf("decode(%s) = %v; want ErrMalformed", tt.name, err)
		}
	}
}

func TestDecodeValidChecksBounds(t *testing.T) {
	bad := []validator{
		&protocol.Plan{Run: "r", Epoch: 1, Step: 2, Base: 2, Members: []string{"w0"}, Batch: []int32{1}}, // base != step-1
		&protocol.Plan{Run: "r", Epoch: 1, Step: 1, Members: []string{"w0", "w0"}, Batch: []int32{1}},    // duplicate member
		&protocol.Plan{Run: "r", Epoch: 1, Step: 1, Members: []string{"w 0"}, Batch: []int32{1}},         // not a subject token
		&protocol.Plan{Run: "r", Epoch: 1, Step: 1, Members: []string{"w0"}, Batch: []int32{-1}},         // negative window
		&protocol.Segment{Run: "r", Sender: "w0", Offset: -1, Data: []byte{0, 0, 0, 0}},                  // negative offset
		&protocol.Segment{Run: "r", Sender: "w0", Data: []byte{0, 0, 0}},                                 // not whole floats
		&protocol.Done{Run: "r", Sender: "w0", Rank: -1},                                                 // negative rank
		&protocol.Heartbeat{Run: "r"},                                                                       // no sender
		&protocol.SnapRequest{Run: "r", Sender: "w0", Offset: -8},                                           // negative offset
		&residPart{Run: "r", Sender: "w0", World: 2, Total: 8, Offset: 1<<63 - 1, Data: []byte{0, 0, 0, 0}}, // past the end, overflowing
		&residPart{Run: "r", Sender: "w0", World: 2, Total: 8, Offset: 7, Data: make([]byte, 8)},            // past the end
		&residPart{Run: "r", Sender: "w0", Rank: 2, World: 2, Total: 8, Data: []byte{0, 0, 0, 0}},           // rank outside the world
		&residPart{Run: "r", Sender: "w 0", World: 1, Total: 8, Data: []byte{0, 0, 0, 0}},                   // not a name
		&residPart{Run: "r", Sender: "w0", World: 1, Total: 8, Data: []byte{0, 0, 0}},                       // not whole floats
		&seedRequest{Run: "r", Sender: "w0", World: 1, Offset: -4, Max: 1},                                  // negative offset
		&seedRequest{Run: "r", Sender: "w0", Rank: 1, World: 1, Max: 1},                                     // rank outside the world
	}
	for _, v := range bad {
		var out validator
		switch v.(type) {
		case *protocol.Plan:
			out = new(protocol.Plan)
		case *protocol.Segment:
			out = new(protocol.Segment)
		case *protocol.Done:
			out = new(protocol.Done)
		case *protocol.Heartbeat:
			out = new(protocol.Heartbeat)
		case *protocol.SnapRequest:
			out = new(protocol.SnapRequest)
		case *residPart:
			out = new(residPart)
		case *seedRequest:
			out = new(seedRequest)
		}
		if err := decodeValid(mustEncodeB(v), out); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeValid(%+v) = %v; want ErrMalformed", v, err)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	in := protocol.Plan{Run: "abc", Epoch: 3, Step: 9, Members: []string{"w0", "w1"}, Batch: []int32{4, 1, 7}, LR: 0.5, CommitEpoch: 2, Base: 8}
	var out protocol.Plan
	if err := decodeValid(mustEncodeB(in), &out); err != nil {
		t.Fatal(err)
	}
	if out.Run != in.Run || out.Epoch != 3 || out.Step != 9 || len(out.Members) != 2 || out.Batch[2] != 7 || out.LR != 0.5 || out.CommitEpoch != 2 || out.Base != 8 {
		t.Errorf("decode(encode(%+v)) = %+v", in, out)
	}
}

func mustEncodeB(v any) []byte {
	b, err := encode(v)
	if err != nil {
		panic(err)
	}
	return b
}

// fuzzSeeds are well-formed messages of every kind, and a lying header.
func fuzzSeeds(f *testing.F) {
	f.Add(mustEncodeB(protocol.Plan{Run: "r", Epoch: 1, Step: 1, Members: []string{"a"}, Batch: []int32{1, 2}}))
	f.Add(mustEncodeB(protocol.Done{Run: "r", Epoch: 1, Step: 1, Sender: "a", Windows: []int32{3}}))
	f.Add(mustEncodeB(protocol.Segment{Run: "r", Epoch: 1, Step: 1, Sender: "a", Offset: 1 << 62, Data: []byte{1, 2, 3, 4}}))
	f.Add(mustEncodeB(protocol.Heartbeat{Run: "r", Sender: "a", Leaving: true}))
	f.Add(mustEncodeB(protocol.Hello{Worker: "a"}))
	f.Add(mustEncodeB(protocol.SnapRequest{Run: "r", Sender: "a", Offset: 1 << 40, Max: 1 << 40}))
	f.Add(mustEncodeB(snapChunk{Run: "r", Data: make([]byte, 16)}))
	f.Add(mustEncodeB(welcome{Run: "r", Spec: JobSpec{BatchWindows: 4}, Seed: &seedInfo{Step: 3, World: 2}}))
	f.Add(mustEncodeB(residPart{Run: "r", Epoch: 1, Step: 4, Sender: "a", Rank: 1, World: 2, Total: 1 << 40, Offset: 1 << 40, Data: []byte{1, 2, 3, 4}}))
	f.Add(mustEncodeB(seedRequest{Run: "r", Sender: "a", Step: 4, World: 1, Offset: 1 << 40, Max: 1 << 40}))
	f.Add(mustEncodeB(seedChunk{Run: "r", Total: 4, Data: make([]byte, 16)}))
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0xff})
}

// FuzzDecode: no input makes a decoder panic or allocate beyond what the
// input's own bytes can back, for every kind of message.
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []validator{new(protocol.Plan), new(protocol.Done), new(protocol.Segment),
			new(protocol.Heartbeat), new(protocol.Hello), new(protocol.SnapRequest), new(seedRequest)} {
			_ = decodeValid(b, v)
		}
		var rp residPart
		if decodeValid(b, &rp) == nil && (rp.Offset < 0 || rp.Offset+int64(len(rp.Data)/4) > rp.Total) {
			t.Fatalf("a residual part at %d of %d floats in %d passed", rp.Offset, len(rp.Data)/4, rp.Total)
		}
		var sc seedChunk
		_ = decode(b, &sc)
		var s protocol.Segment
		if decode(b, &s) == nil && len(s.Data) > len(b) {
			t.Fatalf("decoded %d data bytes from a %d-byte message", len(s.Data), len(b))
		}
		var c snapChunk
		_ = decode(b, &c)
		var w welcome
		if decode(b, &w) == nil {
			_ = w.Spec.Validate()
		}
	})
}

// FuzzCoordinatorMessage: whatever a peer sends on any control subject, a
// coordinator in the middle of an attempt drops it or acts on it, and never
// panics; its actions stay inside the vector and the snapshot.
func FuzzCoordinatorMessage(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.Unix(1000, 0)
		const vec = 1002
		core, err := protocol.NewCoordinator(protocol.CoordinatorConfig{Run: "r", Steps: 3, MinWorkers: 1, StartWorkers: 1,
			Heartbeat: time.Second, StepDeadline: 5 * time.Second, MaxAttempts: 8, MaxNonFinite: 3, EvictAfter: 3,
			VectorLen: vec, PartFloats: 100, SnapBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		core.Step(protocol.HelloMsg{Hello: protocol.Hello{Worker: "a"}, Reply: "x"}, now)
		core.Step(protocol.NextStep{Step: 1, Batch: []int32{1, 2}, LR: 0.1}, now)
		if !core.Running() {
			t.Fatal("no attempt running")
		}
		evs := []protocol.Event{}
		for _, v := range []validator{new(protocol.Done), new(protocol.Segment), new(protocol.Heartbeat)} {
			if decodeValid(b, v) == nil {
				evs = append(evs, v.(protocol.Event))
			}
		}
		var h protocol.Hello
		if decodeValid(b, &h) == nil {
			evs = append(evs, protocol.HelloMsg{Hello: h, Reply: "r"})
		}
		var r protocol.SnapRequest
		if decodeValid(b, &r) == nil {
			evs = append(evs, protocol.SnapRequestMsg{SnapRequest: r, Reply: "r"})
		}
		for _, ev := range evs {
			for _, a := range core.Step(ev, now) {
				switch a := a.(type) {
				case protocol.StoreSegment:
					if a.Offset < 0 || a.Offset+len(a.Data)/4 > vec {
						t.Fatalf("stores %d floats at %d in a %d-float vector", len(a.Data)/4, a.Offset, vec)
					}
				case protocol.ServeSnap:
					if a.Offset < 0 || a.Len < 0 || a.Offset+a.Len > 4096 {
						t.Fatalf("serves [%d, +%d) of a 4096-byte snapshot", a.Offset, a.Len)
					}
				}
			}
		}
	})
}

// TestFiniteGradient: every NaN and infinity is found, wherever it sits
// (the vectorised pass and its scalar tail), and finite extremes pass.
func TestFiniteGradient(t *testing.T) {
	for _, n := range []int{1, 7, 16, 33, 1000} {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(i%7) - 3
		}
		g[n/2] = math.MaxFloat32
		g[0] = -math.MaxFloat32
		if !finiteGradient(g) {
			t.Fatalf("n=%d: finite gradient reported as not finite", n)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for _, at := range []int{0, n / 2, n - 1} {
				h := append([]float32(nil), g...)
				h[at] = bad
				if finiteGradient(h) {
					t.Errorf("n=%d: %v at %d not found", n, bad, at)
				}
			}
		}
	}
	if !finiteGradient(nil) {
		t.Error("empty gradient reported as not finite")
	}
}
