package natsnet_test

import (
	"context"
	"strings"
	"testing"
	"unsafe"

	"github.com/klring/klring/allreduce"
	"github.com/klring/klring/natsnet"
)

// TestPayloadAligned checks, for attempt headers of every length modulo 8,
// that the ring messages a mailbox receives start 8-byte aligned, so the
// envelope's floats (4-byte aligned within it) are read in place rather
// than byte by byte.
func TestPayloadAligned(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, natsnet.ServerOptions{})
	members := []string{"a", "b"}
	var mbs []*natsnet.Mailbox
	for _, w := range members {
		c := connect(t, natsnet.Options{URL: s.URL()})
		defer c.Close()
		mb, err := natsnet.NewMailbox(context.Background(), c, "align", w)
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		mbs = append(mbs, mb)
	}
	ctx := context.Background()
	for k := range 9 {
		h := allreduce.Header{Run: strings.Repeat("r", k), Epoch: 1, Step: uint64(k)}
		ta, err := mbs[0].Begin(h, members, 0)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := mbs[1].Begin(h, members, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{8, 1000, 100_000} { // in one read, and over several
			if err := ta.Send(ctx, 1, make([]byte, n)); err != nil {
				t.Fatal(err)
			}
			m, err := tb.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if a := uintptr(unsafe.Pointer(&m[0])) % 8; a != 0 || len(m) != n {
				t.Errorf("run %q: a message of %d bytes arrives at an address = %d mod 8 (%d bytes); want 0", h.Run, n, a, len(m))
			}
		}
	}
}
