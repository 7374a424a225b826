package allreduce_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/klring/klring/allreduce"
)

func newInbox(t *testing.T, worker string, lim allreduce.Limits) *allreduce.Inbox {
	t.Helper()
	in, err := allreduce.NewInbox(worker, lim)
	if err != nil {
		t.Fatalf("NewInbox(%+v) = %v", lim, err)
	}
	return in
}

func begin(t *testing.T, in *allreduce.Inbox, h allreduce.Header) *allreduce.Receiver {
	t.Helper()
	rx, err := in.Begin(h, []string{"a", in.Worker()}, 1)
	if err != nil {
		t.Fatalf("Begin(%v) = %v", h, err)
	}
	return rx
}

// recvAll reads exactly k messages and checks that no more are waiting.
func recvAll(t *testing.T, rx *allreduce.Receiver, k int) []string {
	t.Helper()
	var got []string
	for range k {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b, err := rx.Recv(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Recv after %v = %v", got, err)
		}
		got = append(got, string(b))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b, err := rx.Recv(ctx); err == nil {
		t.Fatalf("Recv after %v = %q; want nothing more", got, b)
	}
	return got
}

func hdr(run string, epoch, step uint64) allreduce.Header {
	return allreduce.Header{Run: run, Epoch: epoch, Step: step}
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l  allreduce.Limits
		ok bool
	}{
		{allreduce.DefaultLimits(), true},
		{allreduce.Limits{}.WithDefaults(), true},
		{allreduce.Limits{Ahead: 1, Messages: 1, Bytes: 1}, true},
		{allreduce.Limits{Ahead: -1, Messages: 1, Bytes: 1}, false},
		{allreduce.Limits{Ahead: 1, Messages: -1, Bytes: 1}, false},
		{allreduce.Limits{Ahead: 1, Messages: 1, Bytes: -1}, false},
	} {
		if err := tc.l.Validate(); (err == nil) != tc.ok || err != nil && !errors.Is(err, allreduce.ErrBadLimits) {
			t.Errorf("%+v.Validate() = %v; want ok=%v", tc.l, err, tc.ok)
		}
	}
	if _, err := allreduce.NewInbox("w", allreduce.Limits{Ahead: -2}); !errors.Is(err, allreduce.ErrBadLimits) {
		t.Errorf("NewInbox(Ahead -2) = %v; want %v", err, allreduce.ErrBadLimits)
	}
}

func TestHeaderValidate(t *testing.T) {
	for _, tc := range []struct {
		run string
		ok  bool
	}{{"", true}, {"run-1", true}, {"ABCDEFGHIJKLMNOP", true}, {"a.b/c~!", true}, {"a b", false}, {"a\nb", false}, {"é", false}, {"\x7f", false},
		{string(make([]byte, allreduce.MaxRunLen+1)), false}} {
		if err := (allreduce.Header{Run: tc.run}).Validate(); (err == nil) != tc.ok || err != nil && !errors.Is(err, allreduce.ErrBadHeader) {
			t.Errorf("Header{Run: %q}.Validate() = %v; want ok=%v", tc.run, err, tc.ok)
		}
	}
}

// TestInboxOrder files messages of the current attempt and of later ones
// before and after Begin, and checks each attempt gets its own, in order;
// the first Begin drops what waits for another run.
func TestInboxOrder(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{})
	in.File(hdr("r", 1, 2), []byte("a1"))
	in.File(hdr("r", 1, 1), []byte("b1"))
	in.File(hdr("r", 1, 2), []byte("a2"))
	in.File(hdr("s", 1, 1), []byte("c1"))
	rx := begin(t, in, hdr("r", 1, 1))
	in.File(hdr("r", 1, 1), []byte("b2"))
	if got := fmt.Sprint(recvAll(t, rx, 2)); got != "[b1 b2]" {
		t.Errorf("attempt (1, 1) received %s; want [b1 b2]", got)
	}
	rx = begin(t, in, hdr("r", 1, 2))
	in.File(hdr("r", 1, 2), []byte("a3"))
	if got := fmt.Sprint(recvAll(t, rx, 3)); got != "[a1 a2 a3]" {
		t.Errorf("attempt (1, 2) received %s; want [a1 a2 a3]", got)
	}
	recvAll(t, begin(t, in, hdr("s", 1, 1)), 0)
	if st := in.Stats(); st.Dropped() != 1 || st.Stale != 1 || st.Received != 6 || st.Queued != 0 || st.QueuedBytes != 0 {
		t.Errorf("Stats() = %+v; want 6 received, 1 stale, none held", st)
	}
}

// TestInboxSameAttemptAgain begins the current attempt again: the new
// Receiver takes over the queue, the old one is superseded.
func TestInboxSameAttemptAgain(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{})
	h := hdr("r", 3, 4)
	old := begin(t, in, h)
	in.File(h, []byte("x"))
	rx := begin(t, in, h)
	if _, err := old.Recv(context.Background()); !errors.Is(err, allreduce.ErrSuperseded) {
		t.Errorf("Recv on the old Receiver = %v; want %v", err, allreduce.ErrSuperseded)
	}
	if got := fmt.Sprint(recvAll(t, rx, 1)); got != "[x]" {
		t.Errorf("new Receiver received %s; want [x]", got)
	}
}

func TestInboxMessageAndByteLimits(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{Ahead: 3, Messages: 3, Bytes: 10})
	h := hdr("r", 1, 1)
	for _, m := range []string{"1234", "5678", "90", "x"} { // 10 bytes, then an 11th
		in.File(h, []byte(m))
	}
	if st := in.Stats(); st.Queued != 3 || st.QueuedBytes != 10 || st.OverLimit != 1 {
		t.Errorf("after 11 bytes into a limit of 10: %+v; want 3 held, 10 bytes, 1 over the limit", st)
	}
	in.File(hdr("r", 1, 2), []byte("a"))
	in.File(hdr("r", 1, 2), []byte("b"))
	in.File(hdr("r", 1, 2), []byte("c"))
	in.File(hdr("r", 1, 2), []byte("d"))
	if st := in.Stats(); st.Queued != 6 || st.OverLimit != 2 {
		t.Errorf("after 4 messages into a limit of 3: %+v; want 6 held, 2 over the limit", st)
	}
	// A message larger than a whole queue takes no attempt's place.
	in.File(hdr("r", 1, 3), []byte("12345678901"))
	in.File(hdr("r", 1, 4), []byte("z"))
	if st := in.Stats(); st.Queued != 7 || st.OverLimit != 3 {
		t.Errorf("after a message over the byte limit: %+v; want 7 held, 3 over the limit", st)
	}
	rx := begin(t, in, h)
	if got := fmt.Sprint(recvAll(t, rx, 3)); got != "[1234 5678 90]" {
		t.Errorf("received %s; want [1234 5678 90]", got)
	}
	// Room again once read.
	in.File(h, []byte("y"))
	if got := fmt.Sprint(recvAll(t, rx, 1)); got != "[y]" {
		t.Errorf("received %s; want [y]", got)
	}
}

// TestInboxAheadEvictsFarthest fills the attempts ahead and checks that a
// nearer attempt of the current run replaces the farthest, and that a
// farther one or one of another run is dropped.
func TestInboxAheadEvictsFarthest(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{Ahead: 2})
	begin(t, in, hdr("r", 1, 1))
	in.File(hdr("r", 1, 10), []byte("ten"))
	in.File(hdr("r", 2, 0), []byte("far"))
	in.File(hdr("r", 2, 0), []byte("far"))
	in.File(hdr("r", 3, 0), []byte("farther")) // no room, not nearer
	in.File(hdr("x", 1, 1), []byte("other"))   // no room, another run
	if st := in.Stats(); st.Queued != 3 || st.OverLimit != 2 {
		t.Fatalf("after filling 2 attempts ahead: %+v; want 3 held, 2 over the limit", st)
	}
	in.File(hdr("r", 1, 5), []byte("five")) // replaces epoch 2
	if st := in.Stats(); st.Queued != 2 || st.OverLimit != 4 {
		t.Fatalf("after a nearer attempt: %+v; want 2 held, 4 over the limit", st)
	}
	if got := fmt.Sprint(recvAll(t, begin(t, in, hdr("r", 1, 5)), 1)); got != "[five]" {
		t.Errorf("attempt (1, 5) received %s; want [five]", got)
	}
	if got := fmt.Sprint(recvAll(t, begin(t, in, hdr("r", 1, 10)), 1)); got != "[ten]" {
		t.Errorf("attempt (1, 10) received %s; want [ten]", got)
	}
	recvAll(t, begin(t, in, hdr("r", 2, 0)), 0)
}

// TestInboxRetiredRuns checks that the runs a mailbox left are stale,
// however high their epochs, and that it remembers a bounded number.
func TestInboxRetiredRuns(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{})
	for i := range 20 {
		begin(t, in, hdr(fmt.Sprintf("run%d", i), 100, 7))
	}
	st := in.Stats()
	in.File(hdr("run18", 200, 0), []byte("old"))
	in.File(hdr("run4", 1, 0), []byte("old"))
	if got := in.Stats().Stale - st.Stale; got != 2 {
		t.Errorf("messages of two runs left recently: %d stale; want 2", got)
	}
	// The 16 runs before the current are remembered; run 0 is forgotten,
	// so its message waits as one of a run not seen yet.
	in.File(hdr("run0", 1, 0), []byte("older"))
	if st := in.Stats(); st.Queued != 1 {
		t.Errorf("a message of a run left long ago: %+v; want it held", st)
	}
	// Returning to a run that was left makes it current again.
	rx := begin(t, in, hdr("run18", 300, 0))
	in.File(hdr("run18", 300, 0), []byte("back"))
	if got := fmt.Sprint(recvAll(t, rx, 1)); got != "[back]" {
		t.Errorf("received %s; want [back]", got)
	}
}

func TestInboxClose(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{})
	rx := begin(t, in, hdr("r", 1, 1))
	in.File(hdr("r", 1, 1), []byte("x"))
	in.File(hdr("r", 1, 2), []byte("y"))
	in.Close()
	in.Close()
	if _, err := rx.Recv(context.Background()); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Recv after Close = %v; want %v", err, allreduce.ErrClosed)
	}
	in.File(hdr("r", 1, 1), []byte("z"))
	if st := in.Stats(); st.Queued != 0 || st.QueuedBytes != 0 || st.Received != 2 {
		t.Errorf("after Close: %+v; want nothing held and the message after Close ignored", st)
	}
	if _, err := in.Begin(hdr("r", 1, 2), []string{"w"}, 0); !errors.Is(err, allreduce.ErrClosed) {
		t.Errorf("Begin after Close = %v; want %v", err, allreduce.ErrClosed)
	}
}

// TestInboxCopiesAllocateNothing checks that a steady stream through
// FileCopy and Recv reuses its buffers.
func TestInboxCopiesAllocateNothing(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{})
	rx := begin(t, in, hdr("r", 1, 1))
	msg := make([]byte, 4096)
	ctx := context.Background()
	step := func() {
		for range 8 {
			in.FileCopy(hdr("r", 1, 1), msg)
		}
		for range 8 {
			if _, err := rx.Recv(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	step()
	if a := testing.AllocsPerRun(100, step); a != 0 {
		t.Errorf("8 FileCopy and 8 Recv allocate %v times; want 0", a)
	}
}

// TestFileCopyOwnsNothing checks that FileCopy copies: the caller may reuse
// its buffer at once.
func TestFileCopyOwnsNothing(t *testing.T) {
	in := newInbox(t, "w", allreduce.Limits{})
	buf := []byte("first")
	in.FileCopy(hdr("r", 1, 1), buf)
	copy(buf, "XXXXX")
	if got := fmt.Sprint(recvAll(t, begin(t, in, hdr("r", 1, 1)), 1)); got != "[first]" {
		t.Errorf("received %s; want [first]", got)
	}
}

func TestMemHub(t *testing.T) {
	hub := allreduce.NewMemHub(allreduce.Limits{})
	if _, err := hub.Mailbox("", "w"); !errors.Is(err, allreduce.ErrBadRing) {
		t.Errorf("Mailbox(no job) = %v; want %v", err, allreduce.ErrBadRing)
	}
	a, err := hub.Mailbox("j", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := hub.Mailbox("j", "a"); !errors.Is(err, allreduce.ErrBadRing) {
		t.Errorf("Mailbox(j, a) twice = %v; want %v", err, allreduce.ErrBadRing)
	}
	h := hdr("r", 1, 1)
	members := []string{"a", "b"}
	ta, err := a.Begin(h, members, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Nobody listens as b: lost, as on NATS.
	if err := ta.Send(ctx, 1, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	b, err := hub.Mailbox("j", "b")
	if err != nil {
		t.Fatal(err)
	}
	hub.SetFilter(func(job, from, to string, h allreduce.Header, msg []byte) bool { return string(msg) != "filtered" })
	for _, m := range []string{"one", "filtered", "two"} {
		if err := ta.Send(ctx, 1, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	hub.SetFilter(nil)
	tb, err := b.Begin(h, members, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		m, err := tb.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(m))
	}
	if fmt.Sprint(got) != "[one two]" {
		t.Errorf("b received %v; want [one two]", got)
	}
	// b closes and opens again: a's cached destination must follow.
	b.Close()
	if err := ta.Send(ctx, 1, []byte("to the closed one")); err != nil {
		t.Fatal(err)
	}
	b2, err := hub.Mailbox("j", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := ta.Send(ctx, 1, []byte("three")); err != nil {
		t.Fatal(err)
	}
	tb2, err := b2.Begin(h, members, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := tb2.Recv(ctx); err != nil || string(m) != "three" {
		t.Errorf("reopened b received %q, %v; want three", m, err)
	}
}
